"""Validation during training: J&F of the model being trained, through the real inference pipeline.

Every few hundred steps the loop scores a fixed handful of held-out expressions exactly as at test
time: the frame sampler picks the target frame, VISA segments it, XMem propagates the mask to every
frame, and VISA's evaluation averages J and F over all frames
(:func:`visa_lib.pipeline.run_on_video`, :func:`visa_lib.evaluate.evaluate_predictions`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from visa_lib.data.revos import RevosSplit
from visa_lib.data.video import SplitVideoFrames
from visa_lib.model.visa import VisaModel


def first_expressions(split: RevosSplit, count: int) -> RevosSplit:
    """The first ``count`` expressions with a target of ``split``, in file order, as a smaller split."""
    import dataclasses

    videos = {}
    left = count
    for name, meta in split.videos.items():
        if left <= 0:
            break
        kept = dict(list({k: e for k, e in meta.expressions.items() if e.obj_ids}.items())[:left])
        if kept:
            videos[name] = dataclasses.replace(meta, expressions=kept)
            left -= len(kept)
    return RevosSplit(
        split.root,
        split.split,
        videos,
        split.mask_dict,
        foreground=split.foreground,
        meta_path=split.meta_path,
        mask_path=split.mask_path,
        frame_root=split.frame_root,
    )


class Validator:
    """Scores a model on a fixed subset of a split (built once, reused at every validation).

    Arguments:
      split (RevosSplit): the held-out split.
      expressions (int): how many expressions (with a target) to score.
      sampler (str | None): frame sampler name (``visa_lib.tfs.build_frame_sampler``); None uses the
        frame where the object is largest (an oracle, for a pipeline without a sampler).
      xmem_weights (str | None): official ``XMem.pth``; None uses the shipped toy XMem.
      device: where the sampler and XMem run.
    """

    def __init__(
        self,
        split: RevosSplit,
        expressions: int = 20,
        sampler: str | None = "toy",
        xmem_weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        from visa_lib.tfs import build_frame_sampler
        from visa_lib.xmem.inference import XMemTracker

        self.split = first_expressions(split, expressions)
        if not self.split.videos:
            raise ValueError(
                f"validation split {split.split!r} of {split.root} has no expression with a target"
            )
        self.sampler = build_frame_sampler(sampler, seed=seed) if sampler is not None else None
        self.tracker = (
            XMemTracker.official(xmem_weights, device=device)
            if xmem_weights is not None
            else XMemTracker.toy(device=device)
        )

    @property
    def num_expressions(self) -> int:
        return self.split.num_expressions

    @torch.no_grad()
    def __call__(self, model: VisaModel) -> dict[str, float | None]:
        """``{"J", "F", "J&F"}`` (0-100) of ``model`` on the subset; ``model`` is left in eval mode."""
        from visa_lib.evaluate import RVOS_METRICS, evaluate_predictions
        from visa_lib.pipeline import VisaPipeline, run_on_video

        model.eval()
        pipeline = VisaPipeline(model=model, sampler=self.sampler, tracker=self.tracker)

        def predict(video: str, expression) -> object:
            frames = SplitVideoFrames(self.split, video)
            target = None if self.sampler is not None else self._largest_frame(video, expression.exp_id)
            return run_on_video(frames, expression.text, pipeline, target_frame=target, progress=False).masks

        result = evaluate_predictions(self.split, predict, metric_names=RVOS_METRICS, progress=False)
        if result.failures:
            raise RuntimeError(f"validation failed on {result.failures[0]}")
        return result.summary()

    def _largest_frame(self, video: str, exp_id: str) -> int:
        masks = self.split.gt_masks(video, exp_id)
        return int(masks.reshape(len(masks), -1).sum(1).argmax())
