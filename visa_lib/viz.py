"""Pictures: mask overlays, frame strips, timelines and GIFs.

One colour palette and one overlay routine for the whole package, so every notebook draws masks
the same way. Everything takes numpy arrays (``uint8 [H,W,3]`` RGB frames, ``bool [H,W]`` masks)
and returns arrays or matplotlib figures; nothing here touches a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: RGB colours for object 1, 2, ... (object 0 is background). Colour-blind friendly (Okabe-Ito).
PALETTE: np.ndarray = np.array(
    [
        [230, 159, 0],  # orange
        [86, 180, 233],  # sky blue
        [0, 158, 115],  # bluish green
        [240, 228, 66],  # yellow
        [0, 114, 178],  # blue
        [213, 94, 0],  # vermillion
        [204, 121, 167],  # reddish purple
    ],
    dtype=np.uint8,
)


def colour(index: int) -> np.ndarray:
    """The palette colour ``uint8 [3]`` for object ``index`` (0-based, wraps around)."""
    return PALETTE[index % len(PALETTE)]


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` (bool [H,W]) that touch a background pixel (4-neighbourhood)."""
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def overlay(
    frame: np.ndarray,
    masks: np.ndarray | Sequence[np.ndarray],
    alpha: float = 0.5,
    outline: bool = True,
) -> np.ndarray:
    """Draw one or several masks over a frame.

    Arguments:
      frame: uint8 [H,W,3] RGB frame.
      masks: bool [H,W] for one object, or [K,H,W] / a list of K masks; object k gets ``colour(k)``.
      alpha: opacity of the fill.
      outline: also draw each mask's boundary at full opacity.

    Returns:
      uint8 [H,W,3], a new array.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"overlay: frame must be [H,W,3] RGB, got shape {frame.shape}")
    stack = np.asarray(masks)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.shape[1:] != frame.shape[:2]:
        raise ValueError(f"overlay: masks of size {stack.shape[1:]} do not match the frame {frame.shape[:2]}")
    out = frame.astype(np.float32)
    for k, mask in enumerate(stack.astype(bool)):
        out[mask] = (1 - alpha) * out[mask] + alpha * colour(k)
        if outline:
            out[_boundary(mask)] = colour(k)
    return out.round().astype(np.uint8)


def shrink(images: Sequence[np.ndarray] | np.ndarray, factor: int = 2) -> list[np.ndarray]:
    """Every ``factor``-th pixel of each image or mask (``[H,W,...]`` -> ``[H/f,W/f,...]``).

    For pictures only: it keeps the figures committed in the notebooks small. Never score on it.
    """
    return [np.asarray(image)[::factor, ::factor] for image in images]


def show_frames(
    frames: Sequence[np.ndarray],
    masks: Sequence[np.ndarray] | None = None,
    titles: Sequence[str] | None = None,
    columns: int = 6,
    width: float = 12.0,
    suptitle: str | None = None,
):
    """A grid of frames, optionally with masks drawn over them; returns the matplotlib figure.

    Arguments:
      frames: T frames, each uint8 [H,W,3].
      masks: T masks (bool [H,W] or [K,H,W]) or None.
      titles: T short titles or None.
      columns: frames per row.
      width: figure width in inches (the height follows the aspect ratio).
    """
    import matplotlib.pyplot as plt

    count = len(frames)
    if count == 0:
        raise ValueError("show_frames: no frames given")
    columns = min(columns, count)
    rows = -(-count // columns)
    height, frame_width = np.asarray(frames[0]).shape[:2]
    fig_height = width / columns * height / frame_width * rows + 0.3 * (titles is not None)
    fig, axes = plt.subplots(rows, columns, figsize=(width, fig_height))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i >= count:
            continue
        image = frames[i] if masks is None else overlay(frames[i], masks[i])
        ax.imshow(image)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def save_gif(path: str | Path, frames: Sequence[np.ndarray], fps: float = 8.0, max_side: int = 320) -> Path:
    """Write frames (uint8 [H,W,3] each) as an animated GIF, downscaled so the longer side is ``max_side``."""
    import imageio.v3 as iio
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    resized = []
    for frame in frames:
        image = Image.fromarray(np.asarray(frame))
        scale = max_side / max(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        resized.append(np.asarray(image))
    iio.imwrite(path, np.stack(resized), duration=1000 / fps, loop=0)
    return path
