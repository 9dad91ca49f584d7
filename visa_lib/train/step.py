"""One VISA training sample and one optimisation step over a few of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from visa_lib.model.visa import SamImage, VisaModel, VisaOutput
from visa_lib.train.conversation import tokenize_conversations
from visa_lib.train.losses import VisaLoss, visa_loss


@dataclass
class VisaSample:
    """One clip with N expressions about it (VISA trains on up to 3 per sample).

    Attributes:
      reference_frames (uint8 [T,H,W,3] | None): reference frames in time order (None when
        ``image_tokens`` and ``sam_image`` are given).
      target_image (uint8 [H,W,3] | None): the frame whose masks are supervised (idem).
      expressions (list[str]): N queries.
      gt_masks (bool [N,H,W]): ground truth at the target frame (all zero for an absent object).
      question_index (list[int]), answer_index (list[int]): template choices (VISA draws them at random).
      answers (list[str] | None): free answers instead of ``ANSWER_LIST`` (a text-only warm-up);
        ``gt_masks`` then holds one mask per ``[SEG]`` in them (``[0,H,W]`` when there is none).
      image_tokens (Tensor | None): cached ``encode_images(refs + [target])`` (frozen, so reusable).
      sam_image (SamImage | None): cached ``encode_sam_image(target)``.
      prompts (list[str] | None): whole conversations used as they are instead of the VISA templates
        (instruction data, ``visa_lib.train.conversation.instruction_prompt``); the loss falls on every
        answer. Their ``<image>`` slots take the reference frames, then the target image.
      dataset (str): name of the dataset the sample was drawn from (for logs).
    """

    reference_frames: np.ndarray | None
    target_image: np.ndarray | None
    expressions: list[str]
    gt_masks: np.ndarray | torch.Tensor
    question_index: list[int] = field(default_factory=list)
    answer_index: list[int] = field(default_factory=list)
    answers: list[str] | None = None
    image_tokens: torch.Tensor | None = None
    sam_image: SamImage | None = None
    prompts: list[str] | None = None
    dataset: str = ""


def sample_forward(
    model: VisaModel, sample: VisaSample, forward: Callable[..., VisaOutput] | None = None
) -> tuple[VisaLoss, VisaOutput]:
    """Teacher-forced forward pass of one sample and its VISA loss.

    Arguments:
      model (VisaModel): the model (train or eval mode); encodes and tokenizes.
      sample (VisaSample): the clip, expressions and masks.
      forward (Callable | None): what runs ``model.forward`` (e.g. the DistributedDataParallel
        wrapper that ``accelerate`` puts around ``model``; default: ``model``).
    Returns:
      (VisaLoss, VisaOutput)
    """
    n = len(sample.expressions)
    tokens, sam_image = sample.image_tokens, sample.sam_image
    if (tokens is None or sam_image is None) and (
        sample.reference_frames is None or sample.target_image is None
    ):
        raise ValueError("VisaSample: give the frames, or both image_tokens and sam_image")
    if tokens is None:
        tokens = model.encode_images(np.concatenate([sample.reference_frames, sample.target_image[None]]))
    if sam_image is None:
        sam_image = model.encode_sam_image(sample.target_image)
    if sample.prompts is not None:
        conv = tokenize_conversations(model.tokenizer, sample.prompts)
    else:
        conv = model.tokenize(
            sample.expressions,
            tokens.shape[0] - 1,  # every image but the last (the target) is a reference
            question_index=sample.question_index or [0] * n,
            answer_index=sample.answer_index or [0] * n,
            answers=sample.answers,
        )
    out = (forward or model)(conv.input_ids, tokens, sam_image, conv.attention_mask, conv.labels)
    gt = torch.as_tensor(np.asarray(sample.gt_masks)).float()
    if len(out.seg_rows) != len(gt):
        raise RuntimeError(
            f"sample_forward: {len(out.seg_rows)} [SEG] tokens for {len(gt)} ground-truth masks"
        )
    return visa_loss(out.ce_loss, out.mask_logits, gt), out


def weighted_loss(
    model: VisaModel,
    sample: VisaSample,
    micro_batch: Sequence[VisaSample],
    forward: Callable[..., VisaOutput] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One sample's share of its micro-batch's loss (call ``backward`` on it, one sample at a time).

    The mask terms are weighted by the sample's number of masks, i.e. averaged over all masks of
    the micro-batch as in VISA; CE is averaged over samples. The shares of a micro-batch sum to its
    loss, so one backward per sample gives the micro-batch gradient with one graph alive at a time.

    Arguments:
      model (VisaModel), forward (Callable | None): as in :func:`sample_forward`.
      sample (VisaSample): one sample of ``micro_batch``.
      micro_batch (Sequence[VisaSample]): all samples whose losses are averaged together.
    Returns:
      (Tensor, dict[str, float]): the weighted loss (scalar) and the sample's "total", "ce",
      "bce", "dice" divided by the micro-batch size (they sum to the micro-batch means).
    """
    total_masks = max(1, sum(len(s.gt_masks) for s in micro_batch))
    loss, out = sample_forward(model, sample, forward)
    share = len(sample.gt_masks) / total_masks
    weighted = loss.ce / len(micro_batch) + share * (loss.total - loss.ce)  # CE per sample, masks per mask
    if len(sample.gt_masks) == 0:
        # A text-only answer runs the [SEG] head on zero rows; tying that empty output to the loss
        # gives the head a zero gradient, which DistributedDataParallel needs from every process.
        weighted = weighted + 0.0 * out.seg_embeddings.sum()
    return weighted, {key: value / len(micro_batch) for key, value in loss.as_floats().items()}


def training_step(
    model: VisaModel,
    samples: Sequence[VisaSample],
    optimizer: torch.optim.Optimizer,
    grad_clip: float | None = 1.0,
) -> dict[str, float]:
    """One plain-PyTorch update on a micro-batch (no accelerate; for experiments around the loss).

    :func:`visa_lib.train.train` is the training loop; this is the same update for a single
    process without gradient accumulation, scheduling or checkpoints.

    Arguments:
      model (VisaModel): prepared with ``prepare_for_training``.
      samples (Sequence[VisaSample]): the micro-batch.
      optimizer (torch.optim.Optimizer): over the trainable parameters.
      grad_clip (float | None): max gradient norm (VISA: 1.0).
    Returns:
      dict[str, float]: mean "total", "ce", "bce", "dice" over the micro-batch.
    """
    if not samples:
        raise ValueError("training_step: empty batch")
    optimizer.zero_grad(set_to_none=True)
    logs = {"total": 0.0, "ce": 0.0, "bce": 0.0, "dice": 0.0}
    for sample in samples:
        weighted, parts = weighted_loss(model, sample, samples)
        weighted.backward()
        for key, value in parts.items():
            logs[key] += value
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    return logs
