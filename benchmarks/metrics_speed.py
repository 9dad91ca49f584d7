"""Speed of the boundary F-measure: ``visa_lib.metrics.f_measure`` against the DAVIS-style reference.

Both sides run in this one process with one thread (``OMP_NUM_THREADS=1``, ``cv2.setNumThreads(1)``)
on the same seeded masks, and every fast value must equal the reference value exactly (float ``==``).

Cases:
    objects     ground truth = 1-4 random filled ellipses; prediction = the same ellipses slightly moved,
                resized and turned, one sometimes dropped and a false positive sometimes added
                (what a segmentation model produces).
    unrelated   prediction and ground truth are independent random ellipses (boundaries far apart).
    many        like ``objects`` but with 200 small ellipses (axes 2-12 px): long, scattered boundaries.
    noise       i.i.d. 50 % pixel noise for both: boundaries everywhere, the worst case for both methods.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/metrics_speed.py [--frames 30] [--repeats 3] [--out FILE.md]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy loads its thread pools

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from visa_lib.metrics import (  # noqa: E402
    _f_measure_reference,
    _radius,
    accuracy,
    f_measure,
    jaccard,
    robustness,
    to_visa_prediction,
)

RESOLUTIONS = {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920)}
#: (case, resolution) rows of the table, in order.
ROWS = [("objects", "480p"), ("objects", "720p"), ("objects", "1080p"),
        ("unrelated", "720p"), ("many", "720p"), ("noise", "720p")]


def _ellipse_params(rng: np.random.Generator, shape: tuple[int, int],
                    small: bool = False) -> tuple[float, ...]:
    h, w = shape
    if small:
        axes = rng.uniform(2, 12, size=2)
    else:
        axes = (rng.uniform(0.03, 0.2) * w, rng.uniform(0.03, 0.2) * h)
    return rng.uniform(0, w), rng.uniform(0, h), axes[0], axes[1], rng.uniform(0, 180)


def _draw(shape: tuple[int, int], ellipses: list[tuple[float, ...]]) -> np.ndarray:
    """Filled ellipses ``(cx, cy, ax, ay, angle)`` -> bool ``[H, W]``."""
    canvas = np.zeros(shape, np.uint8)
    for cx, cy, ax, ay, angle in ellipses:
        axes = (max(round(ax), 1), max(round(ay), 1))
        cv2.ellipse(canvas, (round(cx), round(cy)), axes, angle, 0, 360, 1, thickness=-1)
    return canvas.view(bool)


def make_pair(case: str, shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (prediction, ground truth) pair of bool ``[H, W]`` masks for ``case``."""
    if case == "noise":
        return rng.random(shape) < 0.5, rng.random(shape) < 0.5
    count = 200 if case == "many" else rng.integers(1, 5)
    gt = [_ellipse_params(rng, shape, small=case == "many") for _ in range(count)]
    if case == "unrelated":
        pred = [_ellipse_params(rng, shape) for _ in range(rng.integers(1, 5))]
        return _draw(shape, pred), _draw(shape, gt)
    h, w = shape
    pred = [(cx + rng.normal(0, 0.01 * w), cy + rng.normal(0, 0.01 * h), ax * rng.uniform(0.9, 1.1),
             ay * rng.uniform(0.9, 1.1), angle + rng.normal(0, 5)) for cx, cy, ax, ay, angle in gt]
    if len(pred) > 1 and rng.random() < 0.2:
        pred.pop()
    if rng.random() < 0.3:
        pred.append(_ellipse_params(rng, shape))
    return _draw(shape, pred), _draw(shape, gt)


def _best_time(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def run(frames: int, repeats: int, seed: int) -> list[dict[str, object]]:
    """Time both implementations on every row of :data:`ROWS`; assert identical values."""
    results = []
    for case, res in ROWS:
        shape = RESOLUTIONS[res]
        rng = np.random.default_rng(seed)
        pairs = [make_pair(case, shape, rng) for _ in range(frames)]
        pred, gt = np.stack([p for p, _ in pairs]), np.stack([g for _, g in pairs])

        def fast(pred: np.ndarray = pred, gt: np.ndarray = gt) -> np.ndarray:
            return f_measure(pred, gt)

        def reference(pred: np.ndarray = pred, gt: np.ndarray = gt) -> np.ndarray:
            return np.array([_f_measure_reference(p, g) for p, g in zip(pred, gt, strict=True)])

        fast_values, ref_values = fast(), reference()  # also warms both up
        mismatch = np.flatnonzero(fast_values != ref_values)
        assert mismatch.size == 0, f"{case} {res}: fast F differs from the reference at frames {mismatch}"
        t_ref = t_fast = float("inf")
        for _ in range(repeats):  # interleave so that load from other processes hits both sides alike
            t_ref = min(t_ref, _best_time(reference, 1))
            t_fast = min(t_fast, _best_time(fast, 1))
        results.append({"case": case, "res": res, "shape": shape, "radius": _radius(0.008, shape),
                        "ref_ms": 1e3 * t_ref / frames, "fast_ms": 1e3 * t_fast / frames,
                        "mean_f": float(ref_values.mean())})
    return results


def time_other_metrics(frames: int, repeats: int, seed: int) -> str:
    """ms/frame of J, A and R (VISA mode: 0/255 prediction, 0/1 ground truth) on 720p ``objects`` masks."""
    rng = np.random.default_rng(seed)
    pairs = [make_pair("objects", RESOLUTIONS["720p"], rng) for _ in range(frames)]
    pred, gt = np.stack([p for p, _ in pairs]), np.stack([g for _, g in pairs])
    pred255, gt01 = to_visa_prediction(pred), gt.astype(np.uint8)
    calls = {"J": lambda: jaccard(pred, gt), "A": lambda: accuracy(pred255, gt01),
             "R": lambda: robustness(pred255, gt01, gt01)}
    cells = []
    for fn in calls.values():
        fn()
        cells.append(f"{1e3 * _best_time(fn, repeats) / frames:.2f}")
    return ("| 720x1280 objects, ms/frame | " + " | ".join(calls) + " |\n|---|---|---|---|\n"
            "| visa_lib.metrics | " + " | ".join(cells) + " |\n")


def to_markdown(results: list[dict[str, object]], frames: int, repeats: int) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [f"{frames} frames per row, best of {repeats} runs (process CPU time), one thread, {cpu}; "
             "values identical (exact float equality) on every frame.", "",
             "| case | resolution | radius (px) | mean F | reference ms/frame | fast ms/frame | speed-up |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        h, w = r["shape"]
        lines.append(f"| {r['case']} | {h}x{w} | {r['radius']} | {r['mean_f']:.3f} | {r['ref_ms']:.2f} | "
                     f"{r['fast_ms']:.2f} | {r['ref_ms'] / r['fast_ms']:.1f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per row (default 30)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side, best kept (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    table = to_markdown(run(args.frames, args.repeats, args.seed), args.frames, args.repeats)
    table += "\n" + time_other_metrics(args.frames, args.repeats, args.seed)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
