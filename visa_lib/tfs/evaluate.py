"""How good is a frame sampler? Hit rate of the chosen frame and distance to the oracle ``tp``.

For every expression that has a target (``type_id`` 0 or 1 and a non-empty ground truth):

* **hit**: the chosen frame ``target_frame(tp, N)`` shows the target (ground-truth area > 0);
* **|tp - oracle tp|**: distance to :func:`visa_lib.tfs.answers.oracle_tp` (centre of the frames
  where the target is most visible).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from visa_lib.data.revos import RevosSplit
from visa_lib.tfs.answers import NUM_ANSWERS, oracle_tp
from visa_lib.tfs.samplers import FrameSampler, TFSResult


@dataclass
class ExpressionRecord:
    """TFS outcome for one expression."""

    video: str
    exp_id: str
    text: str
    type_id: int
    result: TFSResult
    oracle_tp: float
    hit: bool


@dataclass
class TFSReport:
    """Summary over a split for one sampler.

    Attributes:
        sampler: the sampler's name.
        hit_rate: fraction of target-bearing expressions whose chosen frame shows the target.
        mean_tp_error: mean ``|tp - oracle tp|``.
        count: number of expressions scored.
        records: per-expression details.
    """

    sampler: str
    hit_rate: float
    mean_tp_error: float
    count: int
    records: list[ExpressionRecord] = field(default_factory=list)

    def row(self) -> dict:
        """``{"sampler", "hit_rate", "mean_tp_error", "count"}`` rounded, for tables."""
        return {
            "sampler": self.sampler,
            "hit_rate": round(self.hit_rate, 4),
            "mean_tp_error": round(self.mean_tp_error, 4),
            "count": self.count,
        }


def evaluate_sampler(
    split: RevosSplit,
    samplers: Sequence[FrameSampler],
    num_answers: int = NUM_ANSWERS,
    videos: Sequence[str] | None = None,
    progress: bool = True,
) -> list[TFSReport]:
    """Score several samplers on the target-bearing expressions of a split (each video read once).

    Arguments:
        split (RevosSplit): e.g. ``load_revos(REASONVOS_LITE, "valid")``.
        samplers (Sequence[FrameSampler]): the backends to compare.
        num_answers (int): K.
        videos (Sequence[str] | None): restrict to these videos (default: all).
        progress (bool): show a tqdm bar over videos.

    Returns:
        list[TFSReport]: one per sampler, in order.
    """
    records: list[list[ExpressionRecord]] = [[] for _ in samplers]
    names = list(videos) if videos is not None else list(split.videos)
    for video in tqdm(names, disable=not progress, desc="TFS"):
        meta = split.videos[video]
        frames = None
        for exp_id, exp in meta.expressions.items():
            if exp.type_id not in (0, 1) or not exp.anno_ids:
                continue
            gt = split.gt_masks(video, exp_id) > 0
            areas = gt.reshape(len(gt), -1).sum(1)
            ref_tp = oracle_tp(areas)
            if ref_tp is None:
                continue
            if frames is None:
                frames = np.stack(list(split.iter_frames(video)))
            for i, sampler in enumerate(samplers):
                result = sampler.sample(frames, exp.text, num_answers, gt_masks=gt)
                hit = bool(areas[result.frame] > 0)
                records[i].append(ExpressionRecord(video, exp_id, exp.text, exp.type_id, result, ref_tp, hit))
    reports = []
    for sampler, recs in zip(samplers, records, strict=True):
        if not recs:
            raise ValueError(f"evaluate_sampler: {split.meta_path} has no expression with a visible target")
        hit = float(np.mean([r.hit for r in recs]))
        err = float(np.mean([abs(r.result.tp - r.oracle_tp) for r in recs]))
        reports.append(TFSReport(sampler.name, hit, err, len(recs), recs))
    return reports
