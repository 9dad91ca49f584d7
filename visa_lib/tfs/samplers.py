"""The ``FrameSampler`` interface and its simple backends (baselines and the ground-truth oracle).

A frame sampler answers VISA's TFS question K times for one video and one expression; the
answers are parsed and averaged exactly as VISA does (:mod:`visa_lib.tfs.answers`). Backends:

* :class:`~visa_lib.tfs.video_llm.VideoLLMSampler`: a LLaMA-VID-style video LLM (toy or full size);
* :class:`UniformSampler`: a chance-level guesser, every answer drawn uniformly from the 11 choices;
* :class:`FirstFrameSampler`: always "0%" -- what a pipeline that starts from frame 0 does;
* :class:`OracleSampler`: answers from the ground truth (an upper bound for ablations).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from visa_lib.tfs.answers import (
    CHOICES,
    NUM_ANSWERS,
    aggregate,
    oracle_tp,
    parse_percentage,
    percentage_answer,
    target_frame,
)


@dataclass
class TFSResult:
    """What the TFS decided for one expression.

    Attributes:
        answers: the K raw answers.
        percentages: each answer parsed (None where nothing matched).
        tp: their mean (0.5 when none parsed).
        frame: the target frame ``int(N * tp)`` clamped to ``N - 1``.
        num_frames: N.
    """

    answers: list[str]
    percentages: list[float | None]
    tp: float
    frame: int
    num_frames: int


class FrameSampler(ABC):
    """Interface: ``answer`` returns K text answers; ``sample`` parses them into a target frame."""

    #: Short name used in reports.
    name = "sampler"

    @abstractmethod
    def answer(
        self,
        frames: np.ndarray,
        expression: str,
        num_answers: int = NUM_ANSWERS,
        gt_masks: np.ndarray | None = None,
    ) -> list[str]:
        """Answer the TFS question ``num_answers`` times.

        Arguments:
            frames (np.ndarray): the video, ``uint8 [N, H, W, 3]`` RGB.
            expression (str): the query.
            num_answers (int): K.
            gt_masks (np.ndarray | None): ``bool [N, H, W]`` ground truth; only the oracle reads it.

        Returns:
            list[str]: K answers such as ``"40%"``.
        """

    def sample(
        self,
        frames: np.ndarray,
        expression: str,
        num_answers: int = NUM_ANSWERS,
        gt_masks: np.ndarray | None = None,
    ) -> TFSResult:
        """Answer, parse, average and map to a frame (arguments as :meth:`answer`)."""
        if len(frames) < 1:
            raise ValueError(f"{type(self).__name__}.sample: the video has no frames")
        answers = self.answer(frames, expression, num_answers, gt_masks)
        tp = aggregate(answers)
        return TFSResult(
            answers, [parse_percentage(a) for a in answers], tp, target_frame(tp, len(frames)), len(frames)
        )


class UniformSampler(FrameSampler):
    """Chance level: every answer is one of the 11 choices, uniformly at random (seeded).

    Arguments:
        seed (int): seed of the answer draws.
    """

    name = "uniform"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def answer(self, frames, expression, num_answers=NUM_ANSWERS, gt_masks=None) -> list[str]:
        return [percentage_answer(CHOICES[int(i)]) for i in self.rng.integers(0, len(CHOICES), num_answers)]


class FirstFrameSampler(FrameSampler):
    """Always the first frame ("0%"), as a pipeline that simply starts from frame 0."""

    name = "first_frame"

    def answer(self, frames, expression, num_answers=NUM_ANSWERS, gt_masks=None) -> list[str]:
        return ["0%"] * num_answers


class OracleSampler(FrameSampler):
    """Answers from the ground truth: the 10 % mark nearest to the oracle ``tp`` (see ``oracle_tp``).

    When the target never appears it answers "no target" (which does not parse: tp falls back to 0.5).
    """

    name = "oracle"

    def answer(self, frames, expression, num_answers=NUM_ANSWERS, gt_masks=None) -> list[str]:
        if gt_masks is None:
            raise ValueError("OracleSampler.answer: pass gt_masks (bool [N, H, W]); the oracle reads them")
        tp = oracle_tp(_areas(gt_masks))
        return ["no target"] * num_answers if tp is None else [percentage_answer(tp)] * num_answers


def _areas(masks: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Visible area per frame of ``masks [N, H, W]`` -> float ``[N]``."""
    m = np.asarray(masks)
    return (m > 0).reshape(len(m), -1).sum(1).astype(float)
