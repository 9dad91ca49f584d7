"""How well does a tracker propagate a given mask? ReasonVOS-lite protocol for XMem alone.

For every expression that has a target: the ground-truth mask of the *middle* frame (``T // 2``; if the
target is not visible there, the visible frame closest to the middle) is given, ``propagate`` runs both ways,
and J and F are computed on every frame of the video (VISA-style plain means, as ReVOS scores). The
"copy the given mask to every frame" baseline is scored the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from visa_lib.data.revos import RevosSplit
from visa_lib.data.video import SplitVideoFrames
from visa_lib.metrics import f_measure, jaccard
from visa_lib.xmem.inference import XMemTracker
from visa_lib.xmem.propagate import propagate


@dataclass
class PropagationResult:
    """Per-frame scores of one expression.

    Attributes:
        video, exp_id: which expression.
        start: the frame whose ground truth was given.
        j, f: float ``[T]`` J and F of the tracker on every frame.
        j_copy, f_copy: float ``[T]`` the copy-the-mask baseline.
    """

    video: str
    exp_id: str
    start: int
    j: np.ndarray
    f: np.ndarray
    j_copy: np.ndarray
    f_copy: np.ndarray


@dataclass
class PropagationSummary:
    """Dataset-level numbers on the 0-100 scale (mean over expressions of the per-expression frame means)."""

    results: list[PropagationResult] = field(default_factory=list)

    def _mean(self, attr: str) -> float:
        return float(100 * np.mean([getattr(r, attr).mean() for r in self.results])) if self.results else 0.0

    def table(self) -> dict[str, dict[str, float]]:
        """``{"xmem": {"J", "F", "J&F"}, "copy": {...}}`` rounded to 2 decimals."""
        out = {}
        for name, (j, f) in {"xmem": ("j", "f"), "copy": ("j_copy", "f_copy")}.items():
            jm, fm = self._mean(j), self._mean(f)
            out[name] = {"J": round(jm, 2), "F": round(fm, 2), "J&F": round((jm + fm) / 2, 2)}
        out["count"] = {"expressions": len(self.results)}  # type: ignore[dict-item]
        return out

    def by_distance(self, attr: str = "j") -> tuple[np.ndarray, np.ndarray]:
        """Mean score against ``|t - start|``: (distances ``[D]``, mean value ``[D]``)."""
        sums: dict[int, list[float]] = {}
        for r in self.results:
            values = getattr(r, attr)
            for t, v in enumerate(values):
                sums.setdefault(abs(t - r.start), []).append(float(v))
        d = np.array(sorted(sums))
        return d, np.array([np.mean(sums[i]) for i in d])


def middle_start(gt: np.ndarray) -> int | None:
    """The middle frame, or the visible frame closest to it; None if the target is never visible."""
    visible = np.flatnonzero(gt.reshape(gt.shape[0], -1).any(axis=1))
    if len(visible) == 0:
        return None
    mid = gt.shape[0] // 2
    return int(visible[np.argmin(np.abs(visible - mid))])


def evaluate_propagation(
    split: RevosSplit,
    tracker: XMemTracker,
    size: int | None = None,
    max_expressions: int | None = None,
    progress: bool = True,
) -> PropagationSummary:
    """Score ``tracker`` on every expression with a target in ``split`` (middle-frame start, both ways).

    Args:
        split (RevosSplit): e.g. ``load_revos(REASONVOS_LITE, "valid")``.
        tracker (XMemTracker): the tracker to score.
        size (int | None): working resolution (default: the tracker's).
        max_expressions (int | None): stop after this many (quick looks).
        progress (bool): show a progress bar over expressions.

    Returns:
        PropagationSummary with per-frame J/F of the tracker and of the copy baseline.
    """
    todo = [(v, e) for v, e in split.expressions() if e.anno_ids]
    if max_expressions is not None:
        todo = todo[:max_expressions]
    summary = PropagationSummary()
    for video, exp in tqdm(todo, desc="propagation eval", disable=not progress):
        gt = split.gt_masks(video, exp.exp_id) > 0
        start = middle_start(gt)
        if start is None:
            continue
        pred = propagate(SplitVideoFrames(split, video), gt[start], start, tracker, size=size, progress=False)
        copy = np.broadcast_to(gt[start], gt.shape)
        summary.results.append(
            PropagationResult(
                video, exp.exp_id, start,
                np.asarray(jaccard(pred, gt)), np.asarray(f_measure(pred, gt)),
                np.asarray(jaccard(copy, gt)), np.asarray(f_measure(copy, gt)),
            )
        )
    return summary
