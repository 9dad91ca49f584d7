"""The ``FrameSampler`` interface and its simple backends (baselines and the ground-truth oracle).

A frame sampler owns the whole TFS decision for one video: :meth:`FrameSampler.choose` takes the
video and all of its queries and returns one :class:`TFSResult` per query. It

1. shows the backend at most ``max_frames`` frames, spread uniformly over the video (percent
   positions are preserved, so the answer still refers to the whole video);
2. encodes those frames ONCE for all the queries (:meth:`FrameSampler.encode`);
3. draws K answers per query (:meth:`FrameSampler.draw`), seeded from the sampler's seed and the
   query's own text, so a query gets the same answers whatever was asked before it, in which order,
   or in which process;
4. parses and averages them exactly as VISA does (:mod:`visa_lib.tfs.answers`) into ``tp`` and the
   target frame ``int(N * tp)`` of the FULL video (N = all its frames).

Backends: :class:`~visa_lib.tfs.video_llm.VideoLLMSampler` (LLaMA-VID-style, toy weights shipped),
:class:`~visa_lib.tfs.hf_video_llm.HFVideoLLMSampler` (a Hugging Face video LLM),
:class:`~visa_lib.tfs.tp_file.TpFileSampler` (answers published in a file), and here
:class:`UniformSampler` (chance level), :class:`FirstFrameSampler` (always "0%") and
:class:`OracleSampler` (answers from the ground truth, an upper bound for ablations).
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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

#: Frames a sampler is shown at most (longer videos are subsampled uniformly).
SAMPLER_MAX_FRAMES = 64


@dataclass
class TFSResult:
    """What the TFS decided for one expression.

    Attributes:
        answers: the K raw answers (empty when ``tp`` was read from a file).
        percentages: each answer parsed (None where nothing matched).
        tp: their mean (0.5 when none parsed; None when the frame was given, not chosen).
        frame: the target frame ``int(N * tp)`` clamped to ``N - 1``.
        num_frames: N.
    """

    answers: list[str]
    percentages: list[float | None]
    tp: float | None
    frame: int
    num_frames: int

    @classmethod
    def from_answers(cls, answers: Sequence[str], num_frames: int) -> TFSResult:
        """Parse, average (VISA's rules) and map to a frame of a video of ``num_frames`` frames."""
        answers = list(answers)
        tp = aggregate(answers)
        return cls(
            answers, [parse_percentage(a) for a in answers], tp, target_frame(tp, num_frames), num_frames
        )

    @classmethod
    def from_tp(cls, tp: float, num_frames: int) -> TFSResult:
        """A ``tp`` given directly (e.g. read from VISA's published file): no answers."""
        return cls([], [], float(tp), target_frame(float(tp), num_frames), num_frames)


def subsample(frames, max_frames: int):
    """At most ``max_frames`` items of ``frames`` (an array or ``np.arange(N)``), spread uniformly."""
    if len(frames) <= max_frames:
        return frames
    return frames[np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]


def query_seed(seed: int, text: str) -> int:
    """The seed of one query's draws: the sampler's ``seed`` mixed with a stable hash of ``text``.

    ``zlib.crc32`` is the same in every process and Python version (``hash()`` is salted per process).
    """
    return (int(seed) * 1_000_003 + zlib.crc32(text.encode("utf-8"))) % (2**63 - 1)


class FrameSampler(ABC):
    """Interface: :meth:`choose` picks the target frame of every query of one video.

    Subclasses implement :meth:`draw` (K answers to one query) and, when they look at the video,
    :meth:`encode` (called once per video). Backends that do not draw answers override :meth:`choose`.

    Arguments:
        num_answers (int): K, answers per query (VISA: 10).
        max_frames (int): frames shown to the backend at most.
        seed (int): seed of the answer draws (mixed with each query's text, :func:`query_seed`).
    """

    #: Short name used in reports.
    name = "sampler"

    def __init__(self, num_answers: int = NUM_ANSWERS, max_frames: int = SAMPLER_MAX_FRAMES, seed: int = 0):
        if num_answers < 1 or max_frames < 1:
            raise ValueError(f"{type(self).__name__}: num_answers and max_frames must be >= 1")
        self.num_answers = num_answers
        self.max_frames = max_frames
        self.seed = seed

    def encode(self, frames: Sequence[np.ndarray], indices: np.ndarray) -> Any:
        """Encode the shown frames ``frames[i] for i in indices`` once per video (default: read none).

        Arguments:
            frames: the whole video, ``uint8 [N, H, W, 3]`` or a lazy reader (decode only what you need).
            indices (np.ndarray): int ``[T]``, the uniformly spread frames to show (T <= max_frames).

        Returns:
            Anything :meth:`draw` reads (None by default).
        """
        return None

    @abstractmethod
    def draw(
        self, video: Any, text: str, num_answers: int, seed: int, gt_masks: np.ndarray | None = None
    ) -> list[str]:
        """Answer the TFS question about ``text`` ``num_answers`` times.

        Arguments:
            video: what :meth:`encode` returned for this video.
            text (str): the query.
            num_answers (int): K.
            seed (int): this query's seed (:func:`query_seed`).
            gt_masks (np.ndarray | None): ``bool [N, H, W]`` ground truth; only the oracle reads it.

        Returns:
            list[str]: K answers such as ``"40%"``.
        """

    def check_queries(self, keys: Sequence[str]) -> None:
        """Raise a ValueError naming the queries this sampler cannot answer (default: it answers all)."""
        return None

    def choose(
        self,
        frames: Sequence[np.ndarray],
        texts: Sequence[str],
        *,
        keys: Sequence[str] | None = None,
        gt_masks: Sequence[np.ndarray] | None = None,
        num_answers: int | None = None,
    ) -> list[TFSResult]:
        """Pick the target frame for every query about one video.

        Arguments:
            frames: the video, ``uint8 [N, H, W, 3]`` RGB or a lazy reader (only shown frames are read).
            texts (Sequence[str]): the queries.
            keys (Sequence[str] | None): ``"<video>/<exp_id>"`` per query, for backends that look answers
                up (:class:`~visa_lib.tfs.tp_file.TpFileSampler`); others ignore them.
            gt_masks (Sequence[np.ndarray] | None): ``bool [N, H, W]`` per query; only the oracle reads them.
            num_answers (int | None): K for this call (default: ``self.num_answers``).

        Returns:
            list[TFSResult]: one per query, in order.
        """
        n = len(frames)
        if n < 1:
            raise ValueError(f"{type(self).__name__}.choose: the video has no frames")
        k = self.num_answers if num_answers is None else num_answers
        video = self.encode(frames, subsample(np.arange(n), self.max_frames))
        results = []
        for i, text in enumerate(texts):
            gt = None if gt_masks is None else gt_masks[i]
            answers = self.draw(video, text, k, query_seed(self.seed, text), gt_masks=gt)
            results.append(TFSResult.from_answers(answers, n))
        return results

    def sample(
        self,
        frames: Sequence[np.ndarray],
        expression: str,
        num_answers: int | None = None,
        gt_masks: np.ndarray | None = None,
    ) -> TFSResult:
        """One query: ``choose(frames, [expression])[0]`` (arguments as :meth:`choose`)."""
        gts = None if gt_masks is None else [gt_masks]
        return self.choose(frames, [expression], gt_masks=gts, num_answers=num_answers)[0]


class UniformSampler(FrameSampler):
    """Chance level: every answer is one of the 11 choices, uniformly at random (seeded per query)."""

    name = "uniform"

    def draw(self, video, text, num_answers, seed, gt_masks=None) -> list[str]:
        rng = np.random.default_rng(seed)
        return [percentage_answer(CHOICES[int(i)]) for i in rng.integers(0, len(CHOICES), num_answers)]


class FirstFrameSampler(FrameSampler):
    """Always the first frame ("0%"), as a pipeline that simply starts from frame 0."""

    name = "first_frame"

    def draw(self, video, text, num_answers, seed, gt_masks=None) -> list[str]:
        return ["0%"] * num_answers


class OracleSampler(FrameSampler):
    """Answers from the ground truth: the 10 % mark nearest to the oracle ``tp`` (see ``oracle_tp``).

    When the target never appears it answers "no target" (which does not parse: tp falls back to 0.5).
    """

    name = "oracle"

    def draw(self, video, text, num_answers, seed, gt_masks=None) -> list[str]:
        if gt_masks is None:
            raise ValueError("OracleSampler: pass gt_masks (bool [N, H, W] per query); the oracle reads them")
        tp = oracle_tp(_areas(gt_masks))
        return ["no target"] * num_answers if tp is None else [percentage_answer(tp)] * num_answers


def _areas(masks: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Visible area per frame of ``masks [N, H, W]`` -> float ``[N]``."""
    m = np.asarray(masks)
    return (m > 0).reshape(len(m), -1).sum(1).astype(float)
