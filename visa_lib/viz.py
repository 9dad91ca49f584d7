"""Pictures: mask overlays, frame strips, timelines and GIFs.

One colour palette and one overlay routine for the whole package, so every notebook draws masks
the same way. Everything takes numpy arrays (``uint8 [H,W,3]`` RGB frames, ``bool [H,W]`` masks)
and returns arrays or matplotlib figures; nothing here touches a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


#: Codec and pixel format per animation suffix: a GIF holds 8-bit colour, an MP4 H.264 (even sizes).
_ANIMATION_CODECS = {".gif": ("gif", "rgb8"), ".mp4": ("libx264", "yuv420p")}


def save_animation(
    path: str | Path, frames: Iterable[np.ndarray], fps: float = 8.0, max_side: int = 320
) -> Path:
    """Write frames (uint8 [H,W,3] each) as an animated ``.gif`` or ``.mp4``, one frame at a time.

    Frames are downscaled so the longer side is at most ``max_side`` and encoded as they arrive
    (imageio's PyAV writer), so a generator of any length needs the memory of one frame.
    Returns the path.
    """
    import imageio.v3 as iio
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() not in _ANIMATION_CODECS:
        raise ValueError(f"{path}: an animation is .gif or .mp4, got {path.suffix!r}")
    codec, pixel_format = _ANIMATION_CODECS[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    size = None
    with iio.imopen(path, "w", plugin="pyav") as writer:
        writer.init_video_stream(codec, fps=fps, pixel_format=pixel_format)
        for frame in frames:
            image = Image.fromarray(np.asarray(frame))
            if size is None:
                scale = min(1.0, max_side / max(image.size))
                # H.264 needs even sizes; a GIF does not mind.
                size = tuple(max(2, 2 * round(side * scale / 2)) for side in image.size)
            if image.size != size:
                image = image.resize(size, Image.BILINEAR)
            writer.write_frame(np.asarray(image))
    return path


def save_gif(path: str | Path, frames: Iterable[np.ndarray], fps: float = 8.0, max_side: int = 320) -> Path:
    """Write frames (uint8 [H,W,3] each) as an animated GIF, streamed (see :func:`save_animation`)."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"save_gif: {path} does not end in .gif")
    return save_animation(path, frames, fps, max_side)
