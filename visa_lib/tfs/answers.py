"""The TFS question, VISA's answer parsing, averaging into ``tp`` and the target frame.

VISA asks a video LLM (LLaMA-VID) which part of the video to look at, K = 10 times with sampling,
and turns the answers into one target frame (docs/pipeline.md):

1. Question (exact, one trailing "?" of the expression stripped; the 13 spaces after the newline
   come from a line continuation inside the original string literal)::

       If I want to find '<exp>', which percentage mark of the video should I check?
                    Please choose one answer from 0%, 10%, ..., 90%, and 100%.

2. Parsing: for each answer, scan a FIXED list of substrings in list order and keep the first that
   occurs anywhere in the answer: "last 0%" -> 1.0, "last 10%" -> 0.9, ..., "last 100%" -> 0.0,
   then "10%" -> 0.1, ..., "100%" -> 1.0, finally "0%" -> 0.0. No regular expression: "50% or 10%"
   parses as 0.1 because "10%" comes first in the list. Answers without a match are dropped.
3. ``tp = mean(parsed)``, or 0.5 when nothing parsed.
4. Target frame ``int(N * tp)``, with ``N`` itself mapped to ``N - 1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

#: Number of sampled answers per expression (``repeat_num``).
NUM_ANSWERS = 10
#: ``tp`` when no answer could be parsed.
FALLBACK_TP = 0.5
#: The 11 answer choices offered by the question.
CHOICES: tuple[float, ...] = tuple(i / 10 for i in range(11))

QUESTION_TEMPLATE = (
    "If I want to find '{exp}', which percentage mark of the video should I check?\n"
    "             Please choose one answer from 0%, 10%, 20%, 30%, 40%, 50%, 60%, 70%, 80%, 90%, and 100%."
)

#: VISA's pattern list, in the order it is scanned: "last X%" forms, then 10%..100%, then 0%.
PERCENT_PATTERNS: tuple[tuple[str, float], ...] = (
    *((f"last {p}%", round(1 - p / 100, 1)) for p in range(0, 101, 10)),
    *((f"{p}%", p / 100) for p in range(10, 101, 10)),
    ("0%", 0.0),
)


def build_tfs_question(expression: str) -> str:
    """The TFS question for one expression (one trailing "?" removed first).

    Arguments:
        expression (str): the query, e.g. ``"which object appears last?"``.

    Returns:
        str: the exact question VISA's client sends.
    """
    if not expression or not expression.strip():
        raise ValueError("build_tfs_question: the expression is empty; pass the query text")
    if expression.endswith("?"):
        expression = expression[:-1]
    return QUESTION_TEMPLATE.format(exp=expression)


def parse_percentage(text: str) -> float | None:
    """Parse one answer with VISA's rule: first pattern of :data:`PERCENT_PATTERNS` found in ``text``.

    Arguments:
        text (str): the generated answer.

    Returns:
        float | None: the fraction of the video in ``[0, 1]``, or None when no pattern occurs.
    """
    for pattern, value in PERCENT_PATTERNS:
        if pattern in text:
            return value
    return None


def aggregate(answers: Iterable[str]) -> float:
    """Average the parsed answers into ``tp``; 0.5 when none parses.

    Arguments:
        answers (Iterable[str]): the K sampled answers.

    Returns:
        float: ``tp`` in ``[0, 1]``.
    """
    parsed = [v for v in (parse_percentage(a) for a in answers) if v is not None]
    return float(np.mean(parsed)) if parsed else FALLBACK_TP


def target_frame(tp: float, num_frames: int) -> int:
    """VISA's frame mapping ``int(N * tp)``, clamped to ``N - 1``.

    Arguments:
        tp (float): the aggregated fraction, in ``[0, 1]``.
        num_frames (int): N, the number of frames.

    Returns:
        int: a frame index in ``[0, N)``.
    """
    if num_frames < 1:
        raise ValueError(f"target_frame: num_frames must be >= 1, got {num_frames}")
    if not 0.0 <= tp <= 1.0:
        raise ValueError(f"target_frame: tp must lie in [0, 1], got {tp}")
    return min(int(num_frames * tp), num_frames - 1)


def percentage_answer(tp: float) -> str:
    """The answer string closest to ``tp`` among the 11 choices, e.g. ``0.34 -> "30%"``."""
    return f"{int(round(float(tp) * 10)) * 10}%"


def oracle_frame(areas: Sequence[float], ratio: float = 0.8) -> int | None:
    """The frame where the target is most visible, robust to a single-frame peak.

    Among the frames whose visible area is at least ``ratio`` x the maximum, take the one closest
    to their mean index (the centre of the "most visible" frames, always one of them).

    Arguments:
        areas (Sequence[float]): visible target area per frame (pixels), length N.
        ratio (float): how close to the maximum counts as "most visible".

    Returns:
        int | None: a frame index, or None when the target never appears.
    """
    a = np.asarray(areas, dtype=float)
    if a.size == 0 or a.max() <= 0:
        return None
    good = np.flatnonzero(a >= ratio * a.max())
    return int(good[np.argmin(np.abs(good - good.mean()))])


def oracle_tp(areas: Sequence[float], ratio: float = 0.8) -> float | None:
    """Oracle ``tp`` from ground truth: ``(oracle_frame + 0.5) / N`` (maps back to that frame).

    Returns None when the target never appears. The toy sampler learns
    ``percentage_answer(oracle_tp(...))``; the TFS report measures ``|tp - oracle_tp|``.
    """
    frame = oracle_frame(areas, ratio)
    return None if frame is None else (frame + 0.5) / len(areas)
