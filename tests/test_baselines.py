"""Baselines: shapes, what each one must score by construction, and the motion heuristic on a clean clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visa_lib import metrics
from visa_lib.baselines import (
    BASELINES,
    all_empty,
    gt_middle_frame_copied,
    largest_moving_object,
    random_object,
    results_table,
    score_baselines,
    write_baseline_predictions,
)
from visa_lib.data.reasonvos_lite.generator import generate_split
from visa_lib.data.revos import Expression, VideoMeta, load_revos, write_revos_split


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    """Two short ReasonVOS-lite videos (split "valid")."""
    root = tmp_path_factory.mktemp("rvl_base")
    generate_split(root, "valid", 11, 2, frames_min=8, frames_max=9, progress=False)
    return root


@pytest.fixture(scope="module")
def moving_square_root(tmp_path_factory) -> Path:
    """One clip: a bright square slides right over a static textured background; a small grey square
    stays still. Expressions: the moving square (type 0) and a no-target query (type 2)."""
    root = tmp_path_factory.mktemp("square")
    t, h, w = 10, 60, 80
    rng = np.random.default_rng(0)
    background = rng.integers(40, 70, (h, w, 3), dtype=np.uint8)
    frames = np.repeat(background[None], t, axis=0)
    moving = np.zeros((t, h, w), bool)
    still = np.zeros((t, h, w), bool)
    for i in range(t):
        moving[i, 20:36, 4 + 5 * i: 20 + 5 * i] = True
    still[:, 5:10, 60:65] = True
    frames[moving] = (230, 60, 60)
    frames[still] = (120, 120, 120)
    video = VideoMeta("toy/square", [f"{i:05d}" for i in range(t)], {
        "0": Expression("0", "the red square", [1], [1], 0),
        "1": Expression("1", "the blue circle", [], [], 2),
        "2": Expression("2", "the grey square", [2], [2], 0),
    }, h, w)
    write_revos_split(root, "valid", [video], {1: moving, 2: still}, {video.name: list(frames)})
    return root


def test_every_baseline_returns_bool_masks_of_the_video_shape(synthetic_root):
    split = load_revos(synthetic_root, "valid")
    for name, predictor in BASELINES.items():
        for video, exp in split.expressions():
            meta = split.videos[video]
            out = predictor(split, video, exp)
            assert out.dtype == bool and out.shape == (len(meta.frames), meta.height, meta.width), name


def test_all_empty_scores_one_exactly_on_frames_without_target(synthetic_root):
    split = load_revos(synthetic_root, "valid")
    for video, exp in split.expressions():
        gt = split.gt_masks(video, exp.exp_id)
        j = metrics.jaccard(all_empty(split, video, exp), gt)
        np.testing.assert_array_equal(j, (gt.reshape(len(gt), -1).sum(1) == 0).astype(float))


def test_gt_middle_frame_copied_is_perfect_on_the_middle_frame(synthetic_root):
    split = load_revos(synthetic_root, "valid")
    for video, exp in split.expressions():
        gt = split.gt_masks(video, exp.exp_id) > 0
        pred = gt_middle_frame_copied(split, video, exp)
        mid = len(gt) // 2
        np.testing.assert_array_equal(pred[mid], gt[mid])
        assert all(np.array_equal(p, gt[mid]) for p in pred)


def test_random_object_returns_one_real_object_and_is_reproducible(synthetic_root):
    split = load_revos(synthetic_root, "valid")
    for video, exp in split.expressions():
        objects = {a for e in split.videos[video].expressions.values() for a in e.anno_ids}
        pred = random_object(split, video, exp)
        np.testing.assert_array_equal(pred, random_object(split, video, exp))
        fg = split.foreground_masks(video) > 0
        assert not (pred & ~fg).any()  # only pixels of annotated objects
        if objects:
            assert pred.any()


def test_largest_moving_object_finds_the_only_moving_thing(moving_square_root):
    split = load_revos(moving_square_root, "valid")
    exp = split.videos["toy/square"].expressions["0"]
    pred = largest_moving_object(split, "toy/square", exp)
    gt = split.gt_masks("toy/square", "0")
    assert metrics.jaccard(pred, gt).mean() > 0.6
    # text-blind: the same answer for every query, so the still square is never found
    still = split.videos["toy/square"].expressions["2"]
    np.testing.assert_array_equal(pred, largest_moving_object(split, "toy/square", still))
    assert metrics.jaccard(pred, split.gt_masks("toy/square", "2")).mean() < 0.05


def test_scores_through_the_evaluator(moving_square_root, tmp_path):
    results = score_baselines(moving_square_root, "valid", tmp_path, ["all_empty", "gt_middle_frame_copied"],
                              workers=1, progress=False)
    empty = results["all_empty"].summary()
    copied = results["gt_middle_frame_copied"].summary()
    assert empty["no_target"]["J"] == pytest.approx(100.0)
    assert empty["referring"]["J"] == pytest.approx(0.0)
    # the still square is found perfectly on every frame, the moving one only near the middle
    assert 50.0 < copied["referring"]["J"] < 100.0
    assert (tmp_path / "all_empty" / "toy/square" / "0" / "00000.png").is_file()
    assert "gt_middle_frame_copied" in results_table(results)


def test_wrong_predictor_shape_is_reported(moving_square_root, tmp_path):
    split = load_revos(moving_square_root, "valid")
    with pytest.raises(ValueError, match="expected"):
        write_baseline_predictions(split, lambda s, v, e: np.zeros((1, 2, 2), bool), tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown baseline"):
        score_baselines(moving_square_root, "valid", tmp_path, ["oracle"], workers=1, progress=False)
