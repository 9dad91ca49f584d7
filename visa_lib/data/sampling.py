"""Which frames VISA looks at: training clips, the evaluation reference rule, and the TFS strategies.

A video of L frames cannot be fed whole to the multi-modal LLM (13 frames x 112 tokens already
make ~1 500 visual tokens), so every sample is a handful of REFERENCE frames plus one TARGET frame
whose mask SAM decodes (docs/pipeline.md).

* Training (``utils/rvos_dataset.py``): T ~ U{8..12} reference frames, one drawn at random inside
  each of T equal segments of the video (``linspace(0, L, T + 1)``); the target frame is one of the
  references; up to 3 expressions of the video share the clip; with probability 0.05 the target
  frame is replaced by a frame of ANOTHER video and every ground truth becomes empty.
* Evaluation (``rvos_eval_dataset.py``): ``step = ceil(L / 11)``, references =
  ``range(target % step, L, step)`` -- a whole-video stride whose phase contains the target.
* Paper strategies around the target frame chosen by the Text-guided Frame Sampler, with T_r
  reference frames: **Global** (T_r frames spread uniformly over the whole video), **Local** (T_r
  consecutive frames around the target) and **Global-Local** (half local around the target, the
  other half spread uniformly over the rest of the video). The original repository only ships
  the stride rule above; these three are written from the paper's description (docs/pipeline.md)
  and are our reading of it.

Every function that draws takes a ``numpy.random.Generator`` so results are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from visa_lib.data.revos import VideoMeta

#: Training defaults (``rvos_num_frames_sample_range='8,12'``, ``num_classes_per_sample=3``,
#: ``prob_no_in_video=0.05``) and the evaluation budget (``max_image_token=12`` -> 11 references).
TRAIN_FRAME_RANGE = (8, 12)
MAX_EXPRESSIONS = 3
NEGATIVE_PROB = 0.05
EVAL_MAX_REFERENCES = 11
STRATEGIES = ("global", "local", "global_local")


@dataclass
class TrainingSample:
    """One training clip.

    Attributes:
        video: the video the references and expressions come from.
        reference_frames: sorted frame indices into ``video`` (8-12, or all frames if fewer).
        target_video: the video of the target frame (``!= video`` for a negative sample).
        target_frame: frame index into ``target_video``.
        expression_ids: up to 3 distinct expression keys of ``video``.
        negative: True when the target frame comes from another video; every GT is then empty.
    """

    video: str
    reference_frames: list[int]
    target_video: str
    target_frame: int
    expression_ids: list[str]
    negative: bool = False


def _check_length(num_frames: int, where: str) -> None:
    if num_frames < 1:
        raise ValueError(f"{where}: the video has {num_frames} frames; it needs at least 1")


def uniform_segment_frames(num_frames: int, num_refs: int, rng: np.random.Generator) -> list[int]:
    """VISA's training policy: one random frame in each of ``num_refs`` equal segments.

    Arguments:
        num_frames (int): video length L.
        num_refs (int): T, the number of reference frames.
        rng (np.random.Generator): source of randomness.

    Returns:
        list[int]: T sorted, distinct frame indices (all L frames when ``L <= T``).
    """
    _check_length(num_frames, "uniform_segment_frames")
    if num_frames <= num_refs:
        return list(range(num_frames))
    split = np.linspace(0, num_frames, num_refs + 1, dtype=int)
    return [int(rng.integers(split[i], split[i + 1])) for i in range(num_refs)]


def random_frames(num_frames: int, num_refs: int, rng: np.random.Generator) -> list[int]:
    """VISA's ``random`` training policy: T sorted distinct random frames (all if ``L <= T``)."""
    _check_length(num_frames, "random_frames")
    if num_frames <= num_refs:
        return list(range(num_frames))
    return sorted(int(i) for i in rng.choice(num_frames, size=num_refs, replace=False))


def sample_training_clip(
    videos: Mapping[str, VideoMeta],
    rng: np.random.Generator,
    video: str | None = None,
    frame_range: tuple[int, int] = TRAIN_FRAME_RANGE,
    max_expressions: int = MAX_EXPRESSIONS,
    negative_prob: float = NEGATIVE_PROB,
    policy: str = "uniform",
) -> TrainingSample:
    """Draw one training clip the way VISA's ``RVOSDataset`` does.

    Arguments:
        videos (Mapping[str, VideoMeta]): the split (e.g. ``load_revos(...).videos``).
        rng (np.random.Generator): source of randomness.
        video (str | None): fix the video (default: uniform over videos with an expression and >= 2 frames).
        frame_range (tuple[int, int]): inclusive range of T.
        max_expressions (int): at most this many distinct expressions per clip.
        negative_prob (float): probability of a negative target frame from another video.
        policy (str): ``"uniform"`` (segments, the default) or ``"random"``.

    Returns:
        TrainingSample: references, target, expressions and the negative flag.
    """
    usable = [n for n, v in videos.items() if len(v.frames) >= 2 and v.expressions]
    if video is None:
        if not usable:
            raise ValueError("sample_training_clip: no video has >= 2 frames and at least one expression")
        video = usable[int(rng.integers(len(usable)))]
    if video not in videos:
        raise KeyError(f"sample_training_clip: unknown video {video!r}")
    meta = videos[video]
    if not meta.expressions:
        raise ValueError(f"sample_training_clip: video {video!r} has no expression")
    exp_keys = list(meta.expressions)
    chosen = rng.choice(len(exp_keys), size=min(max_expressions, len(exp_keys)), replace=False)
    expression_ids = [exp_keys[int(i)] for i in chosen]

    low, high = frame_range
    num_refs = int(rng.integers(low, high + 1))
    if policy == "uniform":
        refs = uniform_segment_frames(len(meta.frames), num_refs, rng)
    elif policy == "random":
        refs = random_frames(len(meta.frames), num_refs, rng)
    else:
        raise ValueError(f"sample_training_clip: policy must be 'uniform' or 'random', got {policy!r}")
    target = refs[int(rng.integers(len(refs)))]  # the target is always one of the references

    others = [n for n in videos if n != video and videos[n].frames]
    if others and rng.random() < negative_prob:
        other = others[int(rng.integers(len(others)))]
        return TrainingSample(
            video, refs, other, int(rng.integers(len(videos[other].frames))), expression_ids, negative=True
        )
    return TrainingSample(video, refs, video, target, expression_ids)


def eval_reference_frames(num_frames: int, target: int, max_refs: int = EVAL_MAX_REFERENCES) -> list[int]:
    """VISA's released evaluation rule: a whole-video stride whose phase contains the target.

    ``step = ceil(L / max_refs)``; references = ``range(target % step, L, step)``; all frames when
    ``L <= max_refs``. The target frame is then appended separately as the Target Image.

    Arguments:
        num_frames (int): video length L.
        target (int): target frame index in ``[0, L)``.
        max_refs (int): reference budget (11 = ``max_image_token`` 12 minus the target).

    Returns:
        list[int]: at most ``max_refs`` sorted frame indices, always containing ``target``.
    """
    _check_target(num_frames, target, "eval_reference_frames")
    if num_frames <= max_refs:
        return list(range(num_frames))
    step = math.ceil(num_frames / max_refs)
    return list(range(target % step, num_frames, step))


def _check_target(num_frames: int, target: int, where: str) -> None:
    _check_length(num_frames, where)
    if not 0 <= target < num_frames:
        raise ValueError(f"{where}: target frame {target} is outside the video's [0, {num_frames}) frames")


def _spread(candidates: Sequence[int], count: int) -> list[int]:
    """``count`` elements of ``candidates`` at evenly spaced positions (first and last included)."""
    if count <= 0 or not candidates:
        return []
    if count >= len(candidates):
        return list(candidates)
    positions = np.linspace(0, len(candidates) - 1, count).round().astype(int)
    return [candidates[int(p)] for p in positions]


def global_frames(num_frames: int, target: int, num_refs: int) -> list[int]:
    """Global sampling: ``num_refs`` frames spread uniformly over the whole video (target-independent)."""
    _check_target(num_frames, target, "global_frames")
    return _spread(list(range(num_frames)), num_refs)


def local_frames(num_frames: int, target: int, num_refs: int) -> list[int]:
    """Local sampling: ``num_refs`` consecutive frames around the target, shifted to fit the video."""
    _check_target(num_frames, target, "local_frames")
    if num_frames <= num_refs:
        return list(range(num_frames))
    start = min(max(target - num_refs // 2, 0), num_frames - num_refs)
    return list(range(start, start + num_refs))


def global_local_frames(num_frames: int, target: int, num_refs: int) -> list[int]:
    """Global-Local sampling: half the budget local around the target, half spread over the rest.

    The local half is ``num_refs // 2`` consecutive frames around the target; the global half
    (``num_refs - num_refs // 2``) is spread uniformly over the frames outside that window.
    """
    _check_target(num_frames, target, "global_local_frames")
    if num_frames <= num_refs:
        return list(range(num_frames))
    local = local_frames(num_frames, target, num_refs // 2) if num_refs >= 2 else []
    rest = [i for i in range(num_frames) if i not in set(local)]
    return sorted(local + _spread(rest, num_refs - len(local)))


def reference_frames(strategy: str, num_frames: int, target: int, num_refs: int) -> list[int]:
    """Dispatch to :func:`global_frames`, :func:`local_frames` or :func:`global_local_frames`.

    Arguments:
        strategy (str): ``"global"``, ``"local"`` or ``"global_local"``.
        num_frames (int): video length L.
        target (int): target frame (from the TFS).
        num_refs (int): T_r, the number of reference frames.

    Returns:
        list[int]: ``min(T_r, L)`` sorted distinct frame indices.
    """
    functions = {"global": global_frames, "local": local_frames, "global_local": global_local_frames}
    if strategy not in functions:
        raise ValueError(f"reference_frames: strategy must be one of {STRATEGIES}, got {strategy!r}")
    if num_refs < 1:
        raise ValueError(f"reference_frames: num_refs must be >= 1, got {num_refs}")
    return functions[strategy](num_frames, target, num_refs)
