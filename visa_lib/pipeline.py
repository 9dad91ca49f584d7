"""VISA end to end on one video: frame sampler -> VISA on the target frame -> XMem both ways.

This is VISA's inference (docs/pipeline.md), one expression at a time:

1. **TFS**: the frame sampler answers "which percentage mark of the video should I check?" K = 10
   times; the mean of the parsed answers is ``tp`` and the target frame is ``int(N * tp)``
   (clamped to ``N - 1``).
2. **VISA**: the reference frames follow VISA's evaluation rule (a stride over the whole video whose
   phase contains the target, at most 11); the model reads them with the target frame and decodes
   the target frame's mask from ``[SEG]`` (teacher-forced "It is [SEG].").
3. **XMem**: the mask is propagated forwards and backwards from the target frame. An empty mask
   means "no target": every frame is empty and XMem does not run, as in VISA's scripts.

:func:`run_on_video` is these three stages and nothing else: ``pipeline.sampler.choose(frames, texts)``
(the sampler owns subsampling, encoding the video once, the K answers and their aggregation),
``pipeline.model.segment(...)`` per distinct target frame (queries picking the same frame share its
encodings) -- both in :func:`segment_target_frames` -- and :func:`track_target`, XMem both ways one frame
at a time (:func:`visa_lib.xmem.propagate.track_both_ways`). ``visa infer`` and ``visa predict`` call the
same two functions and write each mask as it comes, so their memory does not grow with the video.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from visa_lib.data.revos import RevosSplit
from visa_lib.data.sampling import EVAL_MAX_REFERENCES, eval_reference_frames
from visa_lib.data.video import VideoFrames
from visa_lib.model.build import build_visa
from visa_lib.model.visa import VisaModel
from visa_lib.tfs import FrameSampler, TFSResult, build_frame_sampler
from visa_lib.xmem.inference import XMemTracker
from visa_lib.xmem.propagate import track_both_ways


@dataclass
class VisaPipeline:
    """The three models of VISA's inference and its two knobs.

    Attributes:
      model (VisaModel): segments the target frame.
      sampler (FrameSampler | None): picks the target frame (None: give ``target_frame=`` to
        :func:`run_on_video`); it also holds K, ``sampler.num_answers``.
      tracker (XMemTracker): propagates the target mask.
      max_references (int): reference budget of VISA's evaluation rule (11).
    """

    model: VisaModel
    sampler: FrameSampler | None
    tracker: XMemTracker
    max_references: int = EVAL_MAX_REFERENCES


@dataclass
class TargetSegmentation:
    """What VISA decided for one query before tracking (stages 1 and 2): the target frame and its mask.

    Attributes:
      text (str): the query.
      target_frame (int): the frame VISA segmented.
      tp (float | None): the sampler's mean percentage (None when the target frame was given).
      answers (list[str]): the sampler's raw answers.
      reference_frames (list[int]): the frames the LLM read besides the target.
      target_mask (np.ndarray): bool ``[H,W]``, VISA's mask on the target frame.
    """

    text: str
    target_frame: int
    tp: float | None
    answers: list[str] = field(repr=False)
    reference_frames: list[int] = field(repr=False)
    target_mask: np.ndarray = field(repr=False)

    @property
    def found(self) -> bool:
        """Whether VISA found an object at all (an empty target mask means "no target")."""
        return bool(self.target_mask.any())


@dataclass
class VideoSegmentation(TargetSegmentation):
    """The result for one query: a :class:`TargetSegmentation` plus ``masks``, bool ``[T,H,W]``, the mask
    of every frame after propagation."""

    masks: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]


def build_pipeline(
    name: str = "toy",
    sampler: str | FrameSampler | None = "toy",
    device: str | torch.device = "cpu",
    seed: int = 0,
    *,
    xmem_weights: str | Path | None = None,
    **visa_kwargs,
) -> VisaPipeline:
    """The toy pipeline (shipped toy VISA, toy sampler, toy XMem), or a full-rung one.

    On the full rung (a config whose weights come from a checkpoint folder) no toy part is used
    silently: the toy frame sampler and the toy XMem are refused with what to pass instead.

    Arguments:
      name (str): VISA config for :func:`visa_lib.model.build.build_visa` ("toy", "chatunivi-7b", ...).
      sampler (str | FrameSampler | None): a :func:`visa_lib.tfs.build_frame_sampler` name ("toy",
        "uniform", "first_frame", "hf:<id or folder>", "tpfile:<file>") or a built sampler;
        None = no sampler (every call then gives ``target_frame=``).
      device (str | torch.device): where VISA and XMem run.
      seed (int): seed of the sampler's answers.
      xmem_weights (str | Path | None): the official ``XMem.pth``; None = the toy XMem (toy rung only).
      **visa_kwargs: passed to ``build_visa`` (``weights=``, ``clip_weights=``, ``sam_weights=``,
        ``dtype=``, ``load_in_4bit=``, ...).
    Returns:
      VisaPipeline
    """
    from visa_lib.model.configs import get_config

    if get_config(name).tokenizer != "toy":  # the full rung: real weights everywhere
        if sampler == "toy":
            raise ValueError(
                f"build_pipeline({name!r}): the toy frame sampler only knows ReasonVOS-lite's synthetic "
                "videos; pass sampler='uniform' or 'first_frame' (CLI: --sampler), or give target_frame= "
                "to run_on_video (CLI: --target-frame)"
            )
        if xmem_weights is None:
            raise ValueError(
                f"build_pipeline({name!r}): the toy XMem is trained on synthetic sprites only; pass "
                "xmem_weights= the official XMem.pth (CLI: --xmem-weights)"
            )
    model = build_visa(name, device=device, seed=seed, **visa_kwargs)
    tracker = (
        XMemTracker.official(xmem_weights, device=device)
        if xmem_weights is not None
        else XMemTracker.toy(device=device)
    )
    frame_sampler = (
        build_frame_sampler(sampler, seed=seed, device=device) if isinstance(sampler, str) else sampler
    )
    return VisaPipeline(model=model, sampler=frame_sampler, tracker=tracker)


def _as_frames(frames) -> np.ndarray | Sequence[np.ndarray]:
    """An array, or a lazy reader kept lazy (``VideoFrames`` or any ``Sequence`` that is not a list)."""
    if isinstance(frames, (str, Path)):
        return VideoFrames(frames)
    if isinstance(frames, Sequence) and not isinstance(frames, (list, tuple)):
        if len(frames) == 0:
            raise ValueError("run_on_video: the video has no frames")
        return frames
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"run_on_video: frames must be uint8 [T,H,W,3] (RGB), a folder of frames or a video file; "
            f"got {array.dtype} {tuple(array.shape)}"
        )
    if len(array) == 0:
        raise ValueError("run_on_video: the video has no frames")
    return array


def _take(frames: np.ndarray | Sequence[np.ndarray], indices: Sequence[int]) -> np.ndarray:
    if isinstance(frames, (np.ndarray, VideoFrames)):
        return frames[list(indices)]  # one batched read for a video file
    return np.stack([frames[i] for i in indices])


def segment_target_frames(
    frames: np.ndarray | Sequence[np.ndarray],
    texts: Sequence[str],
    pipeline: VisaPipeline,
    *,
    target_frame: int | None = None,
    keys: Sequence[str] | None = None,
) -> list[TargetSegmentation]:
    """Stages 1 and 2 for several queries about one video: the sampler picks each target frame, VISA
    segments it (queries picking the same frame share its encodings).

    Arguments:
      frames: uint8 ``[T,H,W,3]`` or a lazy reader (see :func:`run_on_video`).
      texts (Sequence[str]): non-empty queries.
      pipeline (VisaPipeline): the models.
      target_frame (int | None): skip the sampler and segment this frame for every query.
      keys (Sequence[str] | None): ``"<video>/<exp_id>"`` per query (see :func:`run_on_video`).
    Returns:
      One :class:`TargetSegmentation` per query, in order.
    """
    n = len(frames)
    # Stage 1: the frame sampler picks each query's target frame.
    if target_frame is not None:
        if not -n <= target_frame < n:
            raise ValueError(f"run_on_video: target_frame={target_frame} is outside the video's {n} frames")
        choices = [TFSResult([], [], None, target_frame % n, n) for _ in texts]
    elif pipeline.sampler is None:
        raise ValueError("run_on_video: the pipeline has no frame sampler; pass target_frame=")
    else:
        choices = pipeline.sampler.choose(frames, texts, keys=keys)
    targets = [c.frame for c in choices]

    # Stage 2: VISA on each distinct target frame (queries picking the same frame share its encodings).
    target_masks: dict[int, np.ndarray] = {}
    references: dict[int, list[int]] = {}
    for target in dict.fromkeys(targets):
        asked = [k for k, t in enumerate(targets) if t == target]
        refs = eval_reference_frames(n, target, pipeline.max_references)
        logits = pipeline.model.segment(_take(frames, refs), frames[target], [texts[k] for k in asked])
        for k, mask in zip(asked, (logits > 0).cpu().numpy(), strict=True):
            target_masks[k] = mask
        references[target] = refs
    return [
        TargetSegmentation(
            t, targets[k], choices[k].tp, choices[k].answers, references[targets[k]], target_masks[k]
        )
        for k, t in enumerate(texts)
    ]


def track_target(
    frames: np.ndarray | Sequence[np.ndarray], target: TargetSegmentation, pipeline: VisaPipeline
) -> Iterator[tuple[int, np.ndarray]]:
    """Stage 3: XMem carries the target mask to every frame, both ways, one frame at a time.

    Built on :func:`visa_lib.xmem.propagate.track_both_ways`; nothing is kept between frames, so a caller
    that writes each mask away (``visa infer``, ``visa predict``) holds one frame whatever the length.
    An empty target mask is VISA's "no target": every frame is empty and XMem does not run.

    Yields:
      ``(frame index, bool [H,W])``, each of the video's frames exactly once (backward run first).
    """
    if not target.found:
        empty = np.zeros_like(target.target_mask, dtype=bool)
        for index in range(len(frames)):
            yield index, empty
        return
    yield from track_both_ways(frames, target.target_mask, target.target_frame, pipeline.tracker)


def run_on_video(
    frames,
    text: str | Sequence[str],
    pipeline: VisaPipeline | None = None,
    *,
    target_frame: int | None = None,
    keys: Sequence[str] | None = None,
    progress: bool = True,
) -> VideoSegmentation | list[VideoSegmentation]:
    """Segment and track what ``text`` refers to, in every frame of a video (all masks in memory).

    The three stages: :func:`segment_target_frames` (the sampler chooses, VISA segments), then
    :func:`track_target` per query, gathered into ``[T,H,W]``.

    Arguments:
      frames: uint8 ``[T,H,W,3]`` RGB frames, a folder of frames, a video file, or a lazy reader
        such as :class:`~visa_lib.data.video.VideoFrames` (frames are then decoded only when needed).
      text (str | Sequence[str]): one query or several about the same video.
      pipeline (VisaPipeline | None): default: :func:`build_pipeline` ("toy"), built on each call --
        build it once yourself for repeated calls.
      target_frame (int | None): skip the sampler and segment this frame first (VISA's oracle-frame
        ablation, or a frame you chose).
      keys (Sequence[str] | None): ``"<video>/<exp_id>"`` per query, for samplers that look answers up
        (``tpfile:``); the others ignore them.
      progress (bool): tqdm bars for XMem.
    Returns:
      VideoSegmentation for one query, a list for several (same order).
    Raises:
      ValueError: bad frames, an empty query, ``target_frame`` out of range, no sampler and no frame.
    """
    single = isinstance(text, str)
    texts = [text] if single else list(text)
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise ValueError("run_on_video: give a non-empty text query (or a list of them)")
    frames = _as_frames(frames)
    pipeline = pipeline or build_pipeline()
    results = []
    for target in segment_target_frames(frames, texts, pipeline, target_frame=target_frame, keys=keys):
        masks = np.zeros((len(frames), *target.target_mask.shape), dtype=bool)
        steps = track_target(frames, target, pipeline)
        bar = tqdm(steps, total=len(frames), desc="XMem both ways", disable=not progress, leave=False)
        for index, mask in bar:
            masks[index] = mask
        results.append(VideoSegmentation(**vars(target), masks=masks))
    return results[0] if single else results


def write_split_predictions(
    split: RevosSplit,
    pipeline: VisaPipeline,
    pred_dir: str | Path,
    videos: Sequence[str] | None = None,
    progress: bool = True,
) -> Path:
    """Run the pipeline on every expression of a ReVOS-format split; write VISA's prediction PNGs.

    Writes ``pred_dir/<video>/<exp_id>/<frame>.png`` (0/255), the layout ``visa eval revos`` reads,
    and ``pred_dir/target_frames.json`` (per expression: target frame, ``tp``, answers). Everything is
    predicted again (``visa predict`` / :func:`visa_lib.predict.predict_split` resume and use every core).

    Arguments:
      split (RevosSplit): e.g. ``load_revos(REASONVOS_LITE, "valid")``.
      pipeline (VisaPipeline): from :func:`build_pipeline`.
      pred_dir (str | Path): output folder.
      videos (Sequence[str] | None): only these videos (default: all).
      progress (bool): a tqdm bar over expressions.
    Returns:
      Path: ``pred_dir``.
    """
    from visa_lib.predict import predict_split

    report = predict_split(
        split, pred_dir, pipeline, workers=1, videos=videos, resume=False, progress=progress
    )
    if report.failed:
        video, reason = next(iter(report.failed.items()))
        raise FileNotFoundError(f"write_split_predictions: video {video!r} cannot be read ({reason})")
    return report.pred_dir
