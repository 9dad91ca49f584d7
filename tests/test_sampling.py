"""Tests of visa_lib.data.sampling: training clips, VISA's evaluation stride, the TFS strategies."""

from __future__ import annotations

import math

import numpy as np
import pytest

from visa_lib.data.revos import Expression, VideoMeta
from visa_lib.data.sampling import (
    eval_reference_frames,
    global_frames,
    global_local_frames,
    local_frames,
    reference_frames,
    sample_training_clip,
    uniform_segment_frames,
)


def _videos(lengths: dict[str, int], num_exp: int = 4) -> dict[str, VideoMeta]:
    return {
        name: VideoMeta(
            name,
            [f"{i:05d}" for i in range(length)],
            {str(e): Expression(str(e), f"object {e}", [e], [e]) for e in range(num_exp)},
            240,
            320,
        )
        for name, length in lengths.items()
    }


def test_uniform_segments_one_frame_per_segment():
    rng = np.random.default_rng(0)
    for _ in range(50):
        refs = uniform_segment_frames(100, 10, rng)
        assert [r // 10 for r in refs] == list(range(10))  # segments [0,10), [10,20), ...
    assert uniform_segment_frames(6, 10, rng) == list(range(6))
    # Uneven split: linspace(0, 25, 9, dtype=int) boundaries.
    split = np.linspace(0, 25, 9, dtype=int)
    refs = uniform_segment_frames(25, 8, np.random.default_rng(1))
    assert all(split[i] <= r < split[i + 1] for i, r in enumerate(refs))


def test_training_clip_follows_visa_rules():
    videos = _videos({"a": 60, "b": 40, "c": 1})
    rng = np.random.default_rng(0)
    counts, negatives = set(), 0
    for _ in range(2000):
        s = sample_training_clip(videos, rng)
        assert s.video in ("a", "b")  # "c" has a single frame: skipped, as VISA's loader does
        assert 8 <= len(s.reference_frames) <= 12 and s.reference_frames == sorted(set(s.reference_frames))
        counts.add(len(s.reference_frames))
        assert len(s.expression_ids) == 3 and len(set(s.expression_ids)) == 3
        if s.negative:
            negatives += 1
            assert s.target_video != s.video
            assert 0 <= s.target_frame < len(videos[s.target_video].frames)
        else:
            assert s.target_video == s.video and s.target_frame in s.reference_frames
    assert counts == set(range(8, 13))
    assert 0.03 < negatives / 2000 < 0.07  # 5 % negative target frames


def test_training_clip_is_seeded_and_handles_short_videos():
    videos = _videos({"a": 5, "b": 30}, num_exp=2)
    s1 = sample_training_clip(videos, np.random.default_rng(3), video="a", negative_prob=0)
    s2 = sample_training_clip(videos, np.random.default_rng(3), video="a", negative_prob=0)
    assert s1 == s2
    assert s1.reference_frames == [0, 1, 2, 3, 4] and len(s1.expression_ids) == 2
    with pytest.raises(ValueError, match="policy"):
        sample_training_clip(videos, np.random.default_rng(0), policy="dense")


def test_eval_stride_rule_matches_visa():
    # L = 50: step = ceil(50 / 11) = 5; target 23 -> phase 3 -> 3, 8, ..., 48.
    assert eval_reference_frames(50, 23) == list(range(3, 50, 5))
    for length in (12, 37, 100, 121):
        step = math.ceil(length / 11)
        for target in range(0, length, 7):
            refs = eval_reference_frames(length, target)
            assert target in refs and len(refs) <= 11
            assert all(b - a == step for a, b in zip(refs, refs[1:], strict=False))
    assert eval_reference_frames(9, 4) == list(range(9))
    with pytest.raises(ValueError, match="outside"):
        eval_reference_frames(10, 10)


def test_strategies_on_hand_checked_examples():
    assert global_frames(100, 37, 5) == [0, 25, 50, 74, 99]
    assert local_frames(100, 37, 5) == [35, 36, 37, 38, 39]
    assert local_frames(100, 1, 4) == [0, 1, 2, 3]  # shifted to fit at the start
    assert local_frames(100, 98, 4) == [96, 97, 98, 99]  # ... and at the end
    # 3 local frames around the target + 3 spread over the 97 other frames (0, rest[48] = 51, 99).
    assert global_local_frames(100, 20, 6) == [0, 19, 20, 21, 51, 99]
    for strategy in ("global", "local", "global_local"):
        assert reference_frames(strategy, 7, 3, 10) == list(range(7))
        refs = reference_frames(strategy, 200, 120, 12)
        assert len(refs) == 12 and refs == sorted(set(refs))
    with pytest.raises(ValueError, match="strategy"):
        reference_frames("middle", 10, 3, 4)
