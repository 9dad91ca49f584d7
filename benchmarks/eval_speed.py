"""Speed of ``visa eval revos`` against a VISA-style evaluator on a generated 720p ReVOS split.

The split: ``--videos`` videos of ``--frames`` frames at 1280x720, 1-3 moving ellipses per video
(``anno_id`` s), ``--expressions`` expressions per video (referring, reasoning, a few no-target, some
referring to two objects, whose ground truth is the sum as in ReVOS). Predictions are the ground truth
slightly moved and resized, written as 0/255 8-bit PNGs as VISA writes them.

The baseline (:func:`visa_style_eval`) follows the approach of VISA's ``tools/eval_revos.py`` (written
here from its description in docs/robustness.md, not copied): one task per expression on a process
pool, and per expression, for every frame: ``cv2.imread`` of the PNG, a pycocotools decode of every
ground-truth RLE and of the foreground RLE, J, the DAVIS F-measure with full-frame boundary maps and
disk dilations, A and R on raw values; per-expression means x100 rounded to 2 decimals, subset means,
overall = mean(referring, reasoning). Both evaluators get the same number of processes, and the script
checks that the two summary tables agree to 1e-4 before it reports the times.

Usage::

    python benchmarks/eval_speed.py [--videos 8] [--frames 30] [--expressions 6] [--workers 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from visa_lib.data.revos import Expression, VideoMeta, load_revos, read_json, write_revos_split
from visa_lib.evaluate import evaluate_revos, write_mask_png
from visa_lib.metrics import _f_measure_reference

HEIGHT, WIDTH = 720, 1280


# --------------------------------------------------------------------------------------------- the split
def _ellipses(rng: np.random.Generator, frames: int, jitter: float = 0.0) -> np.ndarray:
    """bool [T, H, W]: one ellipse moving across the frames (``jitter`` moves/resizes it a little)."""
    cx, cy = rng.uniform(0.2, 0.8) * WIDTH, rng.uniform(0.2, 0.8) * HEIGHT
    ax, ay, vx, vy = rng.uniform(40, 200), rng.uniform(30, 150), rng.uniform(-8, 8), rng.uniform(-5, 5)
    out = np.zeros((frames, HEIGHT, WIDTH), np.uint8)
    for t in range(frames):
        dx, dy, ds = (rng.normal(0, jitter, 3) if jitter else (0, 0, 0))
        centre = (int(cx + vx * t + dx), int(cy + vy * t + dy))
        axes = (max(2, int(ax * (1 + ds / 50))), max(2, int(ay * (1 + ds / 50))))
        cv2.ellipse(out[t], centre, axes, 0, 0, 360, 1, -1)
    return out.astype(bool)


def make_split(root: Path, pred_dir: Path, videos: int, frames: int, expressions: int, seed: int = 0) -> None:
    """Write the 720p split into ``root`` and near-perfect 0/255 PNG predictions into ``pred_dir``."""
    rng = np.random.default_rng(seed)
    metas, annos, next_id = [], {}, 1
    for v in range(videos):
        ids = list(range(next_id, next_id + int(rng.integers(1, 4))))
        next_id += len(ids)
        for anno_id in ids:
            annos[anno_id] = _ellipses(np.random.default_rng(seed * 1000 + anno_id), frames)
        exps = {}
        for e in range(expressions):
            type_id = 2 if e % 5 == 4 else e % 2
            chosen = [] if type_id == 2 else ids[: 1 + (e % 3 == 2 and len(ids) > 1)]
            exps[str(e)] = Expression(str(e), f"expression {e}", [0] if chosen else [], chosen, type_id)
        names = [f"{t:05d}" for t in range(frames)]
        metas.append(VideoMeta(f"TAO/video_{v:03d}", names, exps, HEIGHT, WIDTH))
    write_revos_split(root, "valid", metas, annos)
    for meta in metas:
        for exp in meta.expressions.values():
            if exp.anno_ids:
                truth = np.any([annos[a] for a in exp.anno_ids], axis=0)
                moved = np.roll(truth, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(1, 2))
            else:
                moved = np.zeros((frames, HEIGHT, WIDTH), bool)
                moved[:, 100:140, 200:260] = rng.random() < 0.5  # some no-target predictions hallucinate
            folder = pred_dir / meta.name / exp.exp_id
            folder.mkdir(parents=True, exist_ok=True)
            for name, mask in zip(meta.frames, moved, strict=True):
                write_mask_png(folder / f"{name}.png", mask)


# ------------------------------------------------------------------------------------ VISA-style baseline
_STATE: dict = {}


def _decode(rle) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(np.uint8)


def _visa_expression(task: tuple[str, str]) -> tuple[str, str, list[float]]:
    """One expression as VISA's evaluator scores it: J, F, A, R means over all frames (0-1)."""
    video, exp_id = task
    meta, masks, foreground, pred_dir = _STATE["meta"], _STATE["masks"], _STATE["fg"], _STATE["pred"]
    info = meta[video]
    anno_ids = info["expressions"][exp_id]["anno_id"]
    folder = pred_dir / video / exp_id
    if not folder.is_dir():
        return video, exp_id, [0.0, 0.0, 0.0, 0.0]
    j, f, a, r = [], [], [], []
    for t, frame in enumerate(info["frames"]):
        pred = cv2.imread(str(folder / f"{frame}.png"), cv2.IMREAD_GRAYSCALE)
        gt = np.zeros(pred.shape, np.uint8)
        for anno_id in anno_ids:
            rle = masks[str(anno_id)][t]
            if rle is not None:
                gt += _decode(rle)
        fg_rle = foreground[video]["masks_rle"][t]
        fg = np.zeros(pred.shape, np.uint8) if fg_rle is None else _decode(fg_rle)
        p, g = pred.astype(bool), gt.astype(bool)
        union = np.sum(p | g)
        j.append(1.0 if union == 0 else np.sum(p & g) / union)
        f.append(_f_measure_reference(p, g))
        a.append(np.mean(gt == pred))
        r.append(max(1 - np.sum((1 - gt) * pred) / (np.sum(fg) + 1e-6), 0))
    return video, exp_id, [float(np.mean(x)) for x in (j, f, a, r)]


def visa_style_eval(pred_dir: Path, root: Path, workers: int) -> dict[str, dict[str, float]]:
    """The baseline: ``{referring, reasoning, overall} -> {J, F, A, R, J&F}`` on 0-100."""
    meta = read_json(root / "meta_expressions_valid_.json")["videos"]
    _STATE.update(
        meta=meta,
        masks=read_json(root / "mask_dict.json"),
        fg=read_json(root / "mask_dict_foreground.json"),
        pred=pred_dir,
    )
    tasks = [(v, e) for v, info in meta.items() for e in info["expressions"]]
    with mp.get_context("fork").Pool(workers) as pool:
        results = pool.map(_visa_expression, tasks, chunksize=1)
    rows = {0: [], 1: []}
    for video, exp_id, (j, f, a, r) in results:
        type_id = int(meta[video]["expressions"][exp_id]["type_id"])
        if type_id in rows:
            jr, fr = round(100 * j, 2), round(100 * f, 2)
            rows[type_id].append({"J": jr, "F": fr, "A": round(100 * a, 2), "R": round(100 * r, 2)})
    table = {}
    for name, type_id in (("referring", 0), ("reasoning", 1)):
        table[name] = {k: float(np.mean([row[k] for row in rows[type_id]])) for k in "JFAR"}
        table[name]["J&F"] = (table[name]["J"] + table[name]["F"]) / 2
    table["overall"] = {k: (table["referring"][k] + table["reasoning"][k]) / 2 for k in table["referring"]}
    return table


# -------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--expressions", type=int, default=6, help="per video")
    parser.add_argument("--workers", type=int, default=2, help="processes, the same for both")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs each (interleaved)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root, pred_dir = Path(tmp) / "data", Path(tmp) / "pred"
        make_split(root, pred_dir, args.videos, args.frames, args.expressions)
        split = load_revos(root, "valid")
        print(f"720p split: {len(split.videos)} videos x {args.frames} frames, {split.num_expressions} "
              f"expressions; {args.workers} processes each", flush=True)
        times: dict[str, list[float]] = {"visa_lib": [], "visa_style": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours = evaluate_revos(pred_dir, root, workers=args.workers, progress=False)
            times["visa_lib"].append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs = visa_style_eval(pred_dir, root, args.workers)
            times["visa_style"].append(time.perf_counter() - start)
        summary = ours.summary()
        for subset in ("referring", "reasoning", "overall"):
            for key, value in theirs[subset].items():
                assert abs(summary[subset][key] - value) < 1e-4, (subset, key, summary[subset][key], value)
        assert not ours.failures, ours.failures
    best = {k: min(v) for k, v in times.items()}
    ratio = best["visa_style"] / best["visa_lib"]
    print(ours.table())
    print(f"tables agree to 1e-4; best of {args.repeats}: visa_lib {best['visa_lib']:.2f} s, "
          f"VISA-style {best['visa_style']:.2f} s ({platform.machine()}, {os.cpu_count()} cores)")
    print(f"ratio {ratio:.2f}")
    return {"seconds": best, "ratio": ratio}


if __name__ == "__main__":
    main()
