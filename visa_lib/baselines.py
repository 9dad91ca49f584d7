"""Simple reference predictors for ReVOS-format splits, and a way to score them.

A predictor is a function ``(split: RevosSplit, video: str, exp: Expression) -> bool [T, H, W]``:

* :func:`all_empty` predicts nothing. It scores J = F = 1 exactly on frames where the target is absent
  (and on every frame of a no-target expression), so it measures how much of a split is "empty".
* :func:`gt_middle_frame_copied` copies the ground truth of the middle frame to every frame: a perfect
  single-frame segmentation with no tracking at all (an upper-ish reference for "right object, no
  propagation").
* :func:`largest_moving_object` ignores the text: a per-pixel temporal median is the background, pixels
  far from it are "moving", and the largest connected moving blob of each frame is the prediction.
* :func:`random_object` also ignores the text but knows the objects: it returns the ground-truth masks
  of one object of the video picked at random (seeded by the video and expression), i.e. a perfect
  segmenter that does not read the query.

Command line (writes PNGs for each baseline, scores them with :func:`visa_lib.evaluate.evaluate_revos`
and prints a markdown table)::

    python -m visa_lib.baselines --data-root data_samples/reasonvos_lite --split valid --out outputs/baselines
"""

from __future__ import annotations

import argparse
import functools
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from visa_lib.data.revos import FRAME_EXT, Expression, RevosSplit, load_revos
from visa_lib.data.rle import decode_rle
from visa_lib.evaluate import RevosResult, evaluate_revos, write_predictions

#: ``(split, video name, expression) -> bool [T, H, W]``.
Predictor = Callable[[RevosSplit, str, Expression], np.ndarray]

#: A pixel is "moving" when some channel differs from the temporal median by more than this (0-255).
MOTION_THRESHOLD = 40


def _shape(split: RevosSplit, video: str) -> tuple[int, int, int]:
    meta = split.videos[video]
    return len(meta.frames), meta.height, meta.width


def all_empty(split: RevosSplit, video: str, exp: Expression) -> np.ndarray:
    """Predict no object on any frame. Returns bool [T, H, W] of False."""
    return np.zeros(_shape(split, video), dtype=bool)


def gt_middle_frame_copied(split: RevosSplit, video: str, exp: Expression) -> np.ndarray:
    """The ground truth at frame ``T // 2`` repeated on every frame. Returns bool [T, H, W]."""
    t = len(split.videos[video].frames)
    middle = split.gt_masks(video, exp.exp_id, frames=slice(t // 2, t // 2 + 1))[0] > 0
    return np.repeat(middle[None], t, axis=0)


@functools.lru_cache(maxsize=4)
def _moving_blobs(frame_root: str, video: str, frames: tuple[str, ...]) -> np.ndarray:
    # Text-blind, so one result per video serves all its expressions (cached).
    stack = np.stack([_read(Path(frame_root) / video / f"{f}{FRAME_EXT}") for f in frames]).astype(np.int16)
    background = np.median(stack, axis=0).astype(np.int16)
    moving = np.abs(stack - background[None]).max(axis=3) > MOTION_THRESHOLD
    out = np.zeros(moving.shape, dtype=bool)
    structure = np.ones((3, 3), bool)
    for t, m in enumerate(moving):
        # opening removes JPEG / texture speckle before picking the largest blob
        labels, count = ndimage.label(ndimage.binary_opening(m, structure))
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        out[t] = labels == (int(np.argmax(sizes)) + 1)
    return out


def _read(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: frame missing or unreadable; check the dataset's JPEGImages folder")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def largest_moving_object(split: RevosSplit, video: str, exp: Expression) -> np.ndarray:
    """Text-blind motion heuristic: median background, frame differencing (threshold
    :data:`MOTION_THRESHOLD`), largest connected component per frame. Returns bool [T, H, W]."""
    frames = tuple(split.videos[video].frames)
    return _moving_blobs(str(split.frame_root), video, frames).copy()


def random_object(split: RevosSplit, video: str, exp: Expression) -> np.ndarray:
    """Ground-truth masks of one object of the video chosen at random, ignoring the text.

    The objects are the ``anno_id``s that any expression of the video refers to; the choice is seeded by
    ``crc32("video/exp_id")``, so it is reproducible. Returns bool [T, H, W].
    """
    meta = split.videos[video]
    objects = sorted({a for e in meta.expressions.values() for a in e.anno_ids})
    if not objects:
        return all_empty(split, video, exp)
    rng = np.random.default_rng(zlib.crc32(f"{video}/{exp.exp_id}".encode()))
    anno_id = objects[int(rng.integers(len(objects)))]
    size = (meta.height, meta.width)
    return np.stack([decode_rle(rle, size) for rle in split.mask_dict[str(anno_id)]]) > 0


#: Every baseline by name.
BASELINES: dict[str, Predictor] = {
    "all_empty": all_empty,
    "gt_middle_frame_copied": gt_middle_frame_copied,
    "largest_moving_object": largest_moving_object,
    "random_object": random_object,
}


def write_baseline_predictions(split: RevosSplit, predictor: Predictor, pred_dir: str | Path,
                               progress: bool = True) -> Path:
    """Run ``predictor`` on every expression of ``split`` and write ``pred_dir/<video>/<exp_id>/<frame>.png``
    (0/255 grayscale, as VISA writes them). Returns ``pred_dir``."""
    pred_dir = Path(pred_dir)
    for video, exp in tqdm(list(split.expressions()), desc="predicting", unit="expr", disable=not progress):
        masks = np.asarray(predictor(split, video, exp))
        expected = _shape(split, video)
        if masks.shape != expected:
            raise ValueError(f"predictor {getattr(predictor, '__name__', predictor)!r} returned shape "
                             f"{list(masks.shape)} for video '{video}', expected {list(expected)} [T, H, W]")
        write_predictions(pred_dir, video, exp.exp_id, split.videos[video].frames, masks)
    return pred_dir


def score_baselines(data_root: str | Path, split: str, out: str | Path, names: Sequence[str] | None = None,
                    workers: int | None = None, progress: bool = True) -> dict[str, RevosResult]:
    """Write every baseline's PNGs under ``out/<name>/`` and score them with
    :func:`~visa_lib.evaluate.evaluate_revos`. Returns ``{name: RevosResult}``."""
    data = load_revos(data_root, split)
    results = {}
    for name in names or list(BASELINES):
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
        pred_dir = write_baseline_predictions(data, BASELINES[name], Path(out) / name, progress)
        results[name] = evaluate_revos(pred_dir, data_root, split, workers=workers, progress=progress)
    return results


def results_table(results: dict[str, RevosResult]) -> str:
    """Markdown table: one row per baseline, J&F of each subset plus overall J, F, A, R; then the number of
    expressions that could not be scored and count as 0 (should be none)."""
    lines = ["| baseline | referring J&F | reasoning J&F | overall J&F | overall J | overall F | "
             "overall A | overall R | no-target J&F |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, result in results.items():
        s = result.summary()
        cells = [s["referring"]["J&F"], s["reasoning"]["J&F"], s["overall"]["J&F"], s["overall"]["J"],
                 s["overall"]["F"], s["overall"]["A"], s["overall"]["R"], s["no_target"]["J&F"]]
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
    failed = {name: len(result.failures) for name, result in results.items() if result.failures}
    if failed:
        lines.append("")
        lines.append(f"expressions that could not be scored (counted as 0): {failed}; see .failures")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m visa_lib.baselines --data-root ROOT --split valid --out DIR [--only NAME ...]``."""
    parser = argparse.ArgumentParser(description="Score the simple baselines on a ReVOS-format split.")
    parser.add_argument("--data-root", required=True, type=Path)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--out", required=True, type=Path, help="folder for the baselines' PNG predictions")
    parser.add_argument("--only", nargs="*", default=None, help=f"subset of {sorted(BASELINES)}")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    results = score_baselines(args.data_root, args.split, args.out, args.only, args.workers)
    print(results_table(results))


if __name__ == "__main__":
    main()
