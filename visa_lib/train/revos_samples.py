"""ReVOS-format data -> VISA training samples, with a cache of the frozen per-frame features.

The vision tower, the token merge and SAM's image encoder are frozen, so each frame's merged
visual tokens ``[n, C]`` and SAM image embedding ``[1, D, h, w]`` never change during training.
``FrameFeatureCache`` computes them once per frame; on the toy rung this makes a training step
cost only the LLM, the ``[SEG]`` head and the mask decoder.

``target_frame_scores`` is the quick check used by the toy training script and notebook 04: the
mask of each expression at one target frame, with VISA's evaluation reference rule
(``evaluation_forward``, the one forward pass it and the diagnostic scripts share).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from visa_lib.data.revos import RevosSplit
from visa_lib.data.sampling import (
    EVAL_MAX_REFERENCES,
    TrainingSample,
    eval_reference_frames,
    sample_training_clip,
)
from visa_lib.metrics import jaccard
from visa_lib.model.prompts import ANSWER_LIST, question_templates
from visa_lib.model.visa import SamImage, VisaModel, VisaOutput
from visa_lib.train.step import VisaSample
from visa_lib.train.target_descriptions import target_answer


class FrameFeatureCache:
    """Frozen features of dataset frames, computed on first use.

    Arguments:
      model (VisaModel): provides ``encode_images`` and ``encode_sam_image``.
      split (RevosSplit): where frames are read from.
      keep (bool): keep computed features (False: compute on every call -- a full-size dataset's
        SAM embeddings, 4 MB per frame, do not fit in memory).
    """

    def __init__(self, model: VisaModel, split: RevosSplit, keep: bool = True) -> None:
        self.model = model
        self.split = split
        self.keep = keep
        self._tokens: dict[tuple[str, int], torch.Tensor] = {}
        self._sam: dict[tuple[str, int], SamImage] = {}

    def frame(self, video: str, index: int) -> np.ndarray:
        """``uint8 [H,W,3]`` frame ``index`` of ``video``."""
        return self.split.read_frame(video, index)

    def tokens(self, video: str, indices: Sequence[int]) -> torch.Tensor:
        """Merged visual tokens ``[len(indices), n, C]`` of the given frames."""
        todo = [i for i in dict.fromkeys(indices) if (video, i) not in self._tokens]
        fresh: dict[tuple[str, int], torch.Tensor] = {}
        if todo:
            encoded = self.model.encode_images(np.stack([self.frame(video, i) for i in todo]))
            fresh = {(video, i): t for i, t in zip(todo, encoded, strict=True)}
            if self.keep:
                self._tokens.update(fresh)
        return torch.stack([fresh.get((video, i), self._tokens.get((video, i))) for i in indices])

    def sam_image(self, video: str, index: int) -> SamImage:
        """SAM's embedding of frame ``index`` of ``video``."""
        key = (video, index)
        if key in self._sam:
            return self._sam[key]
        embedding = self.model.encode_sam_image(self.frame(video, index))
        if self.keep:
            self._sam[key] = embedding
        return embedding

    def __len__(self) -> int:
        return len(self._tokens)


def clip_ground_truth(split: RevosSplit, clip: TrainingSample) -> np.ndarray:
    """``bool [N,H,W]``: union of each chosen expression's objects at the clip's target frame.

    A negative clip (target frame from another video) gets all-empty masks of the target's size.
    """
    target_meta = split.videos[clip.target_video]
    gt = np.zeros((len(clip.expression_ids), target_meta.height, target_meta.width), dtype=bool)
    if not clip.negative:
        t = clip.target_frame
        for k, exp_id in enumerate(clip.expression_ids):
            gt[k] = split.gt_masks(clip.video, exp_id, frames=slice(t, t + 1))[0] > 0
    return gt


def draw_templates(
    expressions: Sequence[str], rng: np.random.Generator, random_templates: bool = True
) -> tuple[list[int], list[int]]:
    """VISA's template choice per expression: a random question of its list and a random answer.

    Arguments:
      expressions (Sequence[str]): the N queries (the list depends on whether each ends with "?").
      rng (np.random.Generator): source of randomness.
      random_templates (bool): False uses template 0 everywhere (the evaluation prompt).
    Returns:
      tuple[list[int], list[int]]: ``(question_index, answer_index)``, N each.
    """
    if not random_templates:
        return [0] * len(expressions), [0] * len(expressions)
    questions = [int(rng.integers(len(question_templates(e)))) for e in expressions]
    answers = [int(rng.integers(len(ANSWER_LIST))) for _ in expressions]
    return questions, answers


def training_sample(
    cache: FrameFeatureCache, clip: TrainingSample, rng: np.random.Generator, random_templates: bool = True
) -> VisaSample:
    """Turn a sampled clip into a ``VisaSample`` with cached features and union ground truth.

    Arguments:
      cache (FrameFeatureCache): features of ``cache.split``.
      clip (TrainingSample): from ``visa_lib.data.sampling.sample_training_clip``.
      rng (np.random.Generator): draws the question and answer templates, as VISA does.
      random_templates (bool): False uses template 0 everywhere (the evaluation prompt).
    Returns:
      VisaSample (frames are not kept; the cached features are attached).
    """
    split = cache.split
    meta = split.videos[clip.video]
    expressions = [meta.expressions[e].text.strip() for e in clip.expression_ids]
    gt = clip_ground_truth(split, clip)
    questions, answers = draw_templates(expressions, rng, random_templates)
    refs = cache.tokens(clip.video, clip.reference_frames)
    target = cache.tokens(clip.target_video, [clip.target_frame])
    return VisaSample(
        reference_frames=None,  # the frozen features are cached instead
        target_image=None,
        expressions=expressions,
        gt_masks=gt,
        question_index=questions,
        answer_index=answers,
        image_tokens=torch.cat([refs, target]),
        sam_image=cache.sam_image(clip.target_video, clip.target_frame),
    )


def draw_training_sample(
    cache: FrameFeatureCache,
    rng: np.random.Generator,
    frame_range: tuple[int, int] = (8, 12),
    **sampling_kwargs,
) -> VisaSample:
    """``sample_training_clip`` (VISA's sampler) + :func:`training_sample` in one call."""
    clip = sample_training_clip(cache.split.videos, rng, frame_range=frame_range, **sampling_kwargs)
    return training_sample(cache, clip, rng)


def draw_warmup_sample(
    cache: FrameFeatureCache,
    rng: np.random.Generator,
    frame_range: tuple[int, int] = (8, 12),
    descriptions: dict[str, list[str]] | None = None,
) -> VisaSample:
    """A text-only warm-up sample for a toy LLM trained from scratch: the answer names the target.

    With ``descriptions`` (video -> description per object id, e.g. from
    ``visa_lib.train.target_descriptions.generated_object_descriptions``) the answer is
    ``"It is {description of the target}."``: the state before the answer's first word -- the one
    VISA reads for ``[SEG]`` -- must then resolve the query against the frames. Without them the
    answer repeats the query (that state then only predicts the query's first word).

    Same clips and question templates as VISA, but the answer is ``"It is {expression}."`` and
    there is no ``[SEG]``: only the CE loss applies. Copying the query out of a long sequence of
    visual tokens teaches the LLM to attend to it -- which a pretrained LLM (Chat-UniVi) already
    does, and which the ``[SEG]`` state needs. Without it, the toy LLM's state before ``[SEG]`` is
    the same for every query.
    """
    clip = sample_training_clip(cache.split.videos, rng, frame_range=frame_range, negative_prob=0.0)
    meta = cache.split.videos[clip.video]
    expressions = [meta.expressions[e].text.strip() for e in clip.expression_ids]
    questions = [int(rng.integers(len(question_templates(e)))) for e in expressions]
    if descriptions is None:
        answers = [f"It is {e}." for e in expressions]
    else:
        answers = [
            target_answer(descriptions[clip.video], meta.expressions[e].obj_ids) for e in clip.expression_ids
        ]
    return VisaSample(
        reference_frames=None,
        target_image=None,
        expressions=expressions,
        gt_masks=np.zeros((0, meta.height, meta.width), dtype=bool),
        question_index=questions,
        answers=answers,
        image_tokens=torch.cat(
            [cache.tokens(clip.video, clip.reference_frames), cache.tokens(clip.video, [clip.target_frame])]
        ),
        sam_image=cache.sam_image(clip.video, clip.target_frame),
    )


def drop_no_target_expressions(split: RevosSplit) -> RevosSplit:
    """Remove, in place, every expression without a target object from ``split``; returns it.

    The toy VISA trains on expressions with a target only (``scripts/train_toy_visa.py`` says why).
    """
    for name, meta in list(split.videos.items()):
        kept = {k: e for k, e in meta.expressions.items() if e.obj_ids}
        split.videos[name] = dataclasses.replace(meta, expressions=kept)
    return split


@dataclass
class TargetFrameScore:
    """One expression scored at one target frame."""

    video: str
    exp_id: str
    text: str
    type_id: int
    target: int
    iou: float


def pick_target_frames(split: RevosSplit, max_items: int | None = None, type_ids: Sequence[int] = (0, 1)):
    """``(video, exp_id, frame)`` for expressions of the given types: the frame where the object is largest.

    Arguments:
      split (RevosSplit): the data.
      max_items (int | None): keep at most this many (in file order).
      type_ids (Sequence[int]): expression types to use (0 referring, 1 reasoning).
    Returns:
      list[tuple[str, str, int]]
    """
    items = []
    for video, exp in split.expressions():
        if exp.type_id not in type_ids:
            continue
        areas = split.gt_masks(video, exp.exp_id).reshape(len(split.videos[video].frames), -1).sum(1)
        if areas.max() == 0:
            continue
        items.append((video, exp.exp_id, int(areas.argmax())))
        if max_items is not None and len(items) >= max_items:
            break
    return items


@torch.no_grad()
def evaluation_forward(
    model: VisaModel,
    split: RevosSplit,
    video: str,
    exp_id: str,
    target: int,
    cache: FrameFeatureCache,
    max_refs: int = EVAL_MAX_REFERENCES,
) -> VisaOutput:
    """VISA's evaluation forward for one expression: its mask (and ``[SEG]`` state) on frame ``target``.

    References follow VISA's evaluation rule (``eval_reference_frames``); the prompt uses template 0,
    the lower-cased expression and the teacher-forced answer "It is [SEG]."
    """
    exp = split.videos[video].expressions[exp_id]
    refs = eval_reference_frames(len(split.videos[video].frames), target, max_refs)
    conv = model.tokenize(" ".join(exp.text.lower().split()), len(refs))
    tokens = cache.tokens(video, [*refs, target])
    return model(conv.input_ids, tokens, cache.sam_image(video, target), conv.attention_mask)


@torch.no_grad()
def target_frame_scores(
    model: VisaModel,
    split: RevosSplit,
    items: Sequence[tuple[str, str, int]],
    max_refs: int = 11,
    cache: FrameFeatureCache | None = None,
    progress: bool = True,
) -> list[TargetFrameScore]:
    """IoU of the teacher-forced mask of each ``(video, exp_id, target)`` with its ground truth.

    References follow VISA's evaluation rule (``eval_reference_frames``) and the prompt uses
    template 0 and the lower-cased expression, as in VISA's evaluation.

    Arguments:
      model (VisaModel): the model (eval mode is set here).
      split (RevosSplit): the data.
      items (Sequence[tuple[str, str, int]]): e.g. from :func:`pick_target_frames`.
      max_refs (int): reference budget.
      cache (FrameFeatureCache | None): reuse features across calls.
      progress (bool): tqdm bar.
    Returns:
      list[TargetFrameScore]
    """
    model.eval()
    cache = cache or FrameFeatureCache(model, split)
    scores = []
    for video, exp_id, target in tqdm(items, desc="target frames", disable=not progress):
        exp = split.videos[video].expressions[exp_id]
        out = evaluation_forward(model, split, video, exp_id, target, cache, max_refs)
        pred = (out.mask_logits[0] > 0).cpu().numpy()
        gt = split.gt_masks(video, exp_id, frames=slice(target, target + 1))[0] > 0
        iou = float(jaccard(pred, gt))
        scores.append(TargetFrameScore(video, exp_id, exp.text, exp.type_id, target, iou))
    return scores
