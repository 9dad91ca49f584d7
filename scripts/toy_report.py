"""The toy VISA end to end on a ReasonVOS-lite split, and where its error comes from.

Four ways to run the pipeline (frame sampler -> mask on the target frame -> toy XMem both ways), each
scored with VISA's ReVOS metrics (``visa eval revos``'s evaluator):

====================  ==========================================================================
row                   target frame from / target-frame mask from
====================  ==========================================================================
``tfs:visa``          the toy TFS sampler / the toy VISA: the real pipeline (``make demo``'s row)
``oracle:visa``       the frame where the target is largest / the toy VISA
``tfs:gt``            the toy TFS sampler / the ground truth on that frame
``oracle:gt``         the frame where the target is largest / the ground truth
====================  ==========================================================================

Comparing the rows tells how much the sampler costs (``tfs`` vs ``oracle``), how much the mask on the
target frame costs (``visa`` vs ``gt``) and how well XMem carries a perfect mask (``oracle:gt``). A
no-target expression has no "largest" frame: its oracle frame is the sampler's. An empty mask on the
target frame is "no target" in every frame, as in the pipeline. Besides J&F per expression type, the
table shows R (ReVOS robustness) and the mean IoU of the mask on the target frame.

    OMP_NUM_THREADS=1 python scripts/toy_report.py                       # shipped weights, valid
    python -m visa_lib.data.reasonvos_lite --out /tmp/seed7 --split valid --seed 7 --videos 24
    OMP_NUM_THREADS=1 python scripts/toy_report.py --data-root /tmp/seed7   # a split never trained on
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from visa_lib.data.revos import RevosSplit, load_revos
from visa_lib.data.video import SplitVideoFrames
from visa_lib.evaluate import evaluate_revos, write_predictions
from visa_lib.paths import OUTPUTS, REASONVOS_LITE
from visa_lib.pipeline import VisaPipeline, build_pipeline, run_on_video
from visa_lib.xmem.propagate import propagate

ROWS = ("tfs:visa", "oracle:visa", "tfs:gt", "oracle:gt")
ROW_NAMES = {
    "tfs:visa": "toy TFS | toy VISA",
    "oracle:visa": "largest-target frame | toy VISA",
    "tfs:gt": "toy TFS | ground truth",
    "oracle:gt": "largest-target frame | ground truth",
}


def largest_target_frame(split: RevosSplit, video: str, exp_id: str) -> int | None:
    """Frame where the expression's target covers most pixels (None when it has no target)."""
    areas = split.gt_masks(video, exp_id).reshape(len(split.videos[video].frames), -1).sum(1)
    return int(areas.argmax()) if areas.max() > 0 else None


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def run_rows(
    split: RevosSplit, pipeline: VisaPipeline, out: Path, rows: tuple[str, ...]
) -> dict[str, list[float]]:
    """Write the prediction PNGs of every row under ``out/<row>``; returns target-frame IoUs per row."""
    ious: dict[str, list[float]] = {row: [] for row in rows}
    bar = tqdm(total=sum(len(m.expressions) for m in split.videos.values()), desc="toy report", unit="expr")
    for video, meta in split.videos.items():
        exp_ids = list(meta.expressions)
        if not exp_ids:
            continue
        frames = SplitVideoFrames(split, video)
        texts = [meta.expressions[e].text for e in exp_ids]
        tfs = run_on_video(frames, texts, pipeline, progress=False)  # the real pipeline
        for k, exp_id in enumerate(exp_ids):
            oracle = largest_target_frame(split, video, exp_id)
            frame_of = {
                "tfs": tfs[k].target_frame,
                "oracle": tfs[k].target_frame if oracle is None else oracle,
            }
            for row in rows:
                source, mask_from = row.split(":")
                t = frame_of[source]
                gt = split.gt_masks(video, exp_id, frames=slice(t, t + 1))[0] > 0
                if row == "tfs:visa":
                    mask, masks = tfs[k].target_mask, tfs[k].masks
                elif mask_from == "visa":
                    result = run_on_video(frames, texts[k], pipeline, target_frame=t, progress=False)
                    mask, masks = result.target_mask, result.masks
                else:
                    mask = gt
                    masks = (
                        propagate(frames, gt, t, pipeline.tracker, direction="both", progress=False)
                        if gt.any()
                        else np.zeros((len(meta.frames), *gt.shape), dtype=bool)
                    )
                write_predictions(out / row, video, exp_id, meta.frames, masks)
                ious[row].append(_iou(mask, gt))
        bar.update(len(exp_ids))
    bar.close()
    return ious


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=REASONVOS_LITE, help="ReVOS-format split root")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--visa-weights", type=Path, default=None, help="default: the shipped toy VISA")
    parser.add_argument("--sam-weights", type=Path, default=None, help="default: the shipped toy SAM")
    parser.add_argument("--out", type=Path, default=OUTPUTS / "toy_report")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler's answers")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    split = load_revos(args.data_root, args.split)
    kwargs = {}
    if args.visa_weights is not None:
        kwargs["weights"] = args.visa_weights
    if args.sam_weights is not None:
        kwargs["sam_checkpoint"] = args.sam_weights
    pipeline = build_pipeline("toy", sampler="toy", seed=args.seed, **kwargs)
    ious = run_rows(split, pipeline, args.out, tuple(args.rows))
    table = {}
    for row in args.rows:
        summary = evaluate_revos(
            args.out / row, args.data_root, args.split, workers=1, progress=False
        ).summary()
        table[row] = {
            **{k: summary[k]["J&F"] for k in ("referring", "reasoning", "overall", "no_target")},
            "overall_R": summary["overall"]["R"],
            "no_target_R": summary["no_target"]["R"],
            "target_frame_iou": float(np.mean(ious[row])),
        }
    print(f"\n{args.data_root} / {args.split}")
    print(
        "| target frame | target-frame mask | referring | reasoning | overall J&F | R | no-target J&F | "
        "target-frame IoU |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row, r in table.items():
        cells = [r["referring"], r["reasoning"], r["overall"], r["overall_R"], r["no_target"]]
        text = " | ".join("-" if v is None else f"{v:.2f}" for v in cells)
        print(f"| {ROW_NAMES[row]} | {text} | {r['target_frame_iou']:.3f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(table, indent=1))
    return table


if __name__ == "__main__":
    main()
