"""Where the pipeline's error comes from: the frame sampler, the mask on the target frame, or XMem.

Four ways to run the pipeline on a ReVOS-format split (frame sampler -> mask on the target frame ->
XMem both ways), each scored with VISA's ReVOS metrics:

====================  ==========================================================================
row                   target frame from / target-frame mask from
====================  ==========================================================================
``tfs:visa``          the pipeline's frame sampler / VISA: the real pipeline
``oracle:visa``       the frame where the target is largest / VISA
``tfs:gt``            the pipeline's frame sampler / the ground truth on that frame
``oracle:gt``         the frame where the target is largest / the ground truth
====================  ==========================================================================

Comparing rows tells how much the sampler costs (``tfs`` vs ``oracle``), how much the mask on the
target frame costs (``visa`` vs ``gt``) and how well XMem carries a perfect mask (``oracle:gt``). A
no-target expression has no "largest" frame: its oracle frame is the sampler's. An empty mask on the
target frame is "no target" in every frame, as in the pipeline. ``scripts/toy_report.py`` prints
the table for the toy, and :func:`iou_by_kind` splits a row's target-frame IoU by what the query
asks (name, position, motion, knowledge, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from visa_lib.data.revos import RevosSplit
from visa_lib.data.video import SplitVideoFrames
from visa_lib.evaluate import evaluate_revos, write_predictions
from visa_lib.pipeline import VisaPipeline, run_on_video
from visa_lib.train.revos_samples import TargetFrameScore
from visa_lib.xmem.propagate import propagate

#: Every row, in the order tables show them.
ROWS = ("tfs:visa", "oracle:visa", "tfs:gt", "oracle:gt")
#: "target frame from | target-frame mask from" of each row.
ROW_NAMES = {
    "tfs:visa": "frame sampler | VISA",
    "oracle:visa": "largest-target frame | VISA",
    "tfs:gt": "frame sampler | ground truth",
    "oracle:gt": "largest-target frame | ground truth",
}


def largest_target_frame(split: RevosSplit, video: str, exp_id: str) -> int | None:
    """Frame where the expression's target covers most pixels (None when it has no target)."""
    areas = split.gt_masks(video, exp_id).reshape(len(split.videos[video].frames), -1).sum(1)
    return int(areas.argmax()) if areas.max() > 0 else None


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two bool masks; 1.0 when both are empty (a correct "no target")."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def write_decomposition(
    split: RevosSplit,
    pipeline: VisaPipeline,
    out: str | Path,
    rows: Sequence[str] = ROWS,
    progress: bool = True,
) -> dict[str, list[TargetFrameScore]]:
    """Write every row's prediction PNGs under ``out/<row>`` (ReVOS layout).

    Returns:
      dict[str, list[TargetFrameScore]]: per row, every expression's target frame and mask IoU.
    """
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ValueError(f"write_decomposition: unknown rows {unknown}; choose from {ROWS}")
    out = Path(out)
    scores: dict[str, list[TargetFrameScore]] = {row: [] for row in rows}
    total = sum(len(m.expressions) for m in split.videos.values())
    bar = tqdm(total=total, desc="decomposition", unit="expr", disable=not progress)
    for video, meta in split.videos.items():
        exp_ids = list(meta.expressions)
        if not exp_ids:
            continue
        frames = SplitVideoFrames(split, video)
        texts = [meta.expressions[e].text for e in exp_ids]
        tfs = run_on_video(frames, texts, pipeline, progress=False)  # the real pipeline
        for k, exp_id in enumerate(exp_ids):
            oracle = largest_target_frame(split, video, exp_id)
            chosen = tfs[k].target_frame
            frame_of = {"tfs": chosen, "oracle": chosen if oracle is None else oracle}
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
                exp = meta.expressions[exp_id]
                score = TargetFrameScore(video, exp_id, exp.text, exp.type_id, t, mask_iou(mask, gt))
                scores[row].append(score)
        bar.update(len(exp_ids))
    bar.close()
    return scores


def decomposition_table(
    split: RevosSplit,
    data_root: str | Path,
    split_name: str,
    pipeline: VisaPipeline,
    out: str | Path,
    rows: Sequence[str] = ROWS,
    progress: bool = True,
) -> dict[str, dict[str, float | None]]:
    """Run :func:`write_decomposition`, then :func:`score_decomposition`.

    Returns:
      ``{row: {"referring", "reasoning", "overall", "no_target" (J&F, 0-100), "overall_R",
      "no_target_R", "target_frame_iou" (0-1)}}``.
    """
    scores = write_decomposition(split, pipeline, out, rows, progress=progress)
    return score_decomposition(out, data_root, split_name, scores)


def score_decomposition(
    out: str | Path, data_root: str | Path, split_name: str, scores: dict[str, list[TargetFrameScore]]
) -> dict[str, dict[str, float | None]]:
    """Score every row written under ``out`` with ``evaluate_revos`` (:func:`decomposition_table`'s table)."""
    out = Path(out)
    table: dict[str, dict[str, float | None]] = {}
    for row in scores:
        summary = evaluate_revos(out / row, data_root, split_name, workers=1, progress=False).summary()
        table[row] = {
            **{k: summary[k]["J&F"] for k in ("referring", "reasoning", "overall", "no_target")},
            "overall_R": summary["overall"]["R"],
            "no_target_R": summary["no_target"]["R"],
            "target_frame_iou": float(np.mean([s.iou for s in scores[row]])),
        }
    return table


def format_table(table: dict[str, dict[str, float | None]]) -> str:
    """The table as Markdown (J&F and R in %, target-frame IoU in 0-1)."""
    lines = [
        "| target frame | target-frame mask | referring | reasoning | overall J&F | R | no-target J&F | "
        "target-frame IoU |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row, r in table.items():
        cells = [r["referring"], r["reasoning"], r["overall"], r["overall_R"], r["no_target"]]
        text = " | ".join("-" if v is None else f"{v:.2f}" for v in cells)
        lines.append(f"| {ROW_NAMES[row]} | {text} | {r['target_frame_iou']:.3f} |")
    return "\n".join(lines)


#: Group of the expressions without a target in :func:`iou_by_kind`.
NO_TARGET_KIND = "no target"


def iou_by_kind(scores: Sequence[TargetFrameScore], kinds: dict[tuple[str, str], str]) -> dict[str, dict]:
    """Mean target-frame IoU per query kind.

    Arguments:
      scores (Sequence[TargetFrameScore]): one row of :func:`write_decomposition`.
      kinds (dict): ``(video, exp_id) -> kind`` (for ReasonVOS-lite: ``info.expressions[e].kind``
        from ``generator.regenerate_infos``); expressions without a target (type 2) are grouped
        as :data:`NO_TARGET_KIND` whatever their kind.
    Returns:
      ``{kind: {"count": int, "iou": float}}``, largest group first.
    """
    groups: dict[str, list[float]] = {}
    for s in scores:
        kind = NO_TARGET_KIND if s.type_id == 2 else kinds[(s.video, s.exp_id)]
        groups.setdefault(kind, []).append(s.iou)
    order = sorted(groups, key=lambda k: (-len(groups[k]), k))
    return {k: {"count": len(groups[k]), "iou": float(np.mean(groups[k]))} for k in order}


def _column_name(row: str) -> str:
    """E.g. "VISA mask at the sampler's frame" for ``tfs:visa``."""
    source, mask_from = row.split(":")
    frame = {"tfs": "the sampler's frame", "oracle": "the largest-target frame"}[source]
    return f"{'VISA' if mask_from == 'visa' else 'ground-truth'} mask at {frame}"


def format_kind_table(by_row: dict[str, dict[str, dict]]) -> str:
    """:func:`iou_by_kind` of several rows as Markdown: one line per kind, one column per row."""
    rows = list(by_row)
    kinds = list(dict.fromkeys(k for table in by_row.values() for k in table))
    lines = [
        "| query kind | expressions | " + " | ".join(f"IoU, {_column_name(r)}" for r in rows) + " |",
        "|---|---:|" + "---:|" * len(rows),
    ]
    for kind in kinds:
        count = next(t[kind]["count"] for t in by_row.values() if kind in t)
        cells = ["-" if kind not in by_row[r] else f"{by_row[r][kind]['iou']:.3f}" for r in rows]
        lines.append(f"| {kind} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
