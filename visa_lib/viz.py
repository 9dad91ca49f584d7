"""Pictures: one vocabulary of drawing helpers for every notebook, the demo and the explorer.

Like the SAM notebooks' ``show_mask`` / ``show_points`` / ``show_box``, each ``show_*`` helper draws
on a matplotlib axes, so a figure is composed from the same few calls everywhere:

==================  ==========================================================================
``apply_style()``   figure resolution (100 dpi), font sizes (>= 9 pt), the colour cycle; set once
                    by :func:`visa_lib.notebook.setup`
``show_image``      a frame on an axes, without ticks, with a title
``show_mask``       a mask as a filled, outlined overlay in the palette colour of its object
``show_points``     positive / negative clicks
``show_box``        a box ``(x0, y0, x1, y1)``
``show_frames``     a grid of frames, each with its masks and a title
``overlay``         the same fill + outline burnt into a ``uint8`` array (GIFs, PNG files)
``shrink``          downscale pictures so committed notebooks stay small
==================  ==========================================================================

The palette is Okabe-Ito's, which stays distinguishable for the common colour-vision deficiencies.
Everything takes numpy arrays (``uint8 [H,W,3]`` RGB frames, ``bool [H,W]`` masks); nothing here
touches a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

#: RGB colours for object 1, 2, ... (object 0 is background). Colour-blind safe (Okabe-Ito).
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

#: Resolution of figures in notebooks and saved files (dots per inch).
FIGURE_DPI = 100
#: Base font size in points; tick labels and legends use ``FONT_SIZE - 1``, never below 9.
FONT_SIZE = 10
#: Mask overlays: opacity of the fill and width of the outline (points on an axes, pixels in arrays).
MASK_ALPHA = 0.45
OUTLINE_WIDTH = 2

#: Colours of positive / negative clicks (bluish green / vermillion, as in the palette).
POSITIVE, NEGATIVE = "#009E73", "#D55E00"


def colour(index: int) -> np.ndarray:
    """The palette colour ``uint8 [3]`` for object ``index`` (0-based, wraps around)."""
    return PALETTE[index % len(PALETTE)]


def hex_colour(index: int) -> str:
    """The palette colour of object ``index`` as ``"#rrggbb"`` (for matplotlib arguments)."""
    return "#{:02x}{:02x}{:02x}".format(*colour(index))


def apply_style(dpi: int = FIGURE_DPI, font_size: int = FONT_SIZE) -> None:
    """Set matplotlib's defaults once: resolution, legible fonts, the palette as colour cycle."""
    import matplotlib
    from cycler import cycler

    small = max(9, font_size - 1)
    matplotlib.rcParams.update(
        {
            "figure.dpi": dpi,
            "savefig.dpi": dpi,
            "font.size": font_size,
            "axes.titlesize": font_size,
            "axes.labelsize": font_size,
            "figure.titlesize": font_size + 1,
            "xtick.labelsize": small,
            "ytick.labelsize": small,
            "legend.fontsize": small,
            "axes.prop_cycle": cycler(color=[hex_colour(i) for i in range(len(PALETTE))]),
            "image.interpolation": "nearest",
        }
    )


def _boundary(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels of ``mask`` (bool [H,W]) within ``width`` pixels of the background (4-neighbourhood)."""
    inner = mask
    for _ in range(width):
        padded = np.pad(inner, 1, mode="constant", constant_values=False)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & inner
    return mask & ~inner


def _mask_stack(masks, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``bool [K,H,W]`` from one mask ``[H,W]``, a stack ``[K,H,W]`` or a list of K masks."""
    stack = np.asarray(masks)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise ValueError(f"masks must be [H,W] or [K,H,W], got shape {stack.shape}")
    if shape is not None and stack.shape[1:] != tuple(shape):
        raise ValueError(f"overlay: masks of size {stack.shape[1:]} do not match the frame {tuple(shape)}")
    return stack.astype(bool)


def overlay(
    frame: np.ndarray,
    masks: np.ndarray | Sequence[np.ndarray],
    alpha: float = MASK_ALPHA,
    outline: bool | int = True,
) -> np.ndarray:
    """Burn one or several masks into a frame: filled in the object's colour, outlined.

    Arguments:
      frame: uint8 [H,W,3] RGB frame.
      masks: bool [H,W] for one object, or [K,H,W] / a list of K masks; object k gets ``colour(k)``.
      alpha: opacity of the fill.
      outline: draw each mask's boundary at full opacity; an int gives its width in pixels
        (True: ``OUTLINE_WIDTH``, or 1 on frames smaller than 64 pixels).

    Returns:
      uint8 [H,W,3], a new array.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"overlay: frame must be [H,W,3] RGB, got shape {frame.shape}")
    stack = _mask_stack(masks, frame.shape[:2])
    width = int(outline) if outline is not True else (OUTLINE_WIDTH if min(frame.shape[:2]) >= 64 else 1)
    out = frame.astype(np.float32)
    for k, mask in enumerate(stack):
        out[mask] = (1 - alpha) * out[mask] + alpha * colour(k)
        if width:
            out[_boundary(mask, width)] = colour(k)
    return out.round().astype(np.uint8)


def show_image(image: np.ndarray, ax=None, title: str | None = None, **imshow_kwargs):
    """Draw a frame (``uint8 [H,W,3]``) or a map (``[H,W]``) on ``ax`` without ticks; returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    ax.imshow(image, **imshow_kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return ax


def show_mask(mask: np.ndarray, ax=None, index: int = 0, alpha: float = MASK_ALPHA, outline: bool = True):
    """Draw a mask (``bool [H,W]``) on ``ax`` as a filled overlay with an outline, in ``colour(index)``.

    Call it after :func:`show_image` on the same axes. Several objects: one call per object with
    its ``index`` (or give ``[K,H,W]`` and object k gets ``colour(index + k)``).
    """
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    for k, one in enumerate(_mask_stack(mask)):
        rgba = np.zeros((*one.shape, 4), np.float32)
        rgba[..., :3] = colour(index + k) / 255.0
        rgba[..., 3] = one * alpha
        ax.imshow(rgba, interpolation="nearest")
        if outline and one.any() and not one.all():
            ax.contour(
                one.astype(np.float32),
                levels=[0.5],
                colors=[hex_colour(index + k)],
                linewidths=OUTLINE_WIDTH * 0.75,
            )
    return ax


def show_points(points: np.ndarray, labels: np.ndarray | None = None, ax=None, size: float = 160):
    """Draw clicks ``float [P,2]`` as ``(x, y)``: label 1 positive (green star), 0 negative (red star)."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    labels = np.ones(len(points), int) if labels is None else np.asarray(labels).reshape(-1)
    for value, face in ((1, POSITIVE), (0, NEGATIVE)):
        chosen = points[labels == value]
        ax.scatter(
            chosen[:, 0], chosen[:, 1], s=size, marker="*", color=face, edgecolor="white", linewidth=1.2
        )
    return ax


def show_box(box: Sequence[float], ax=None, index: int = 0):
    """Draw a box ``(x0, y0, x1, y1)`` in pixels, outlined in ``colour(index)``."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(
        plt.Rectangle(
            (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=hex_colour(index), linewidth=OUTLINE_WIDTH
        )
    )
    return ax


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
    fig_height = width / columns * height / frame_width * rows + 0.35 * rows * (titles is not None)
    fig, axes = plt.subplots(rows, columns, figsize=(width, fig_height), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= count:
            continue
        show_image(frames[i], ax, titles[i] if titles is not None else None)
        if masks is not None:
            show_mask(masks[i], ax)
    if suptitle:
        fig.suptitle(suptitle)
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
