"""Evaluator: VISA's aggregation rules on hand-computed numbers, failures, workers, in-memory API."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from visa_lib import evaluate as ev
from visa_lib.data.formats import load_davis17, load_mevis, write_davis17_split, write_mevis_split
from visa_lib.data.revos import Expression, VideoMeta, load_revos, write_revos_split
from visa_lib.evaluate import (
    RevosResult,
    RvosResult,
    evaluate_davis17,
    evaluate_mevis,
    evaluate_predictions,
    evaluate_revos,
    write_predictions,
)

H, W, T = 4, 6, 2


def _hand_split(root):
    """One video, 2 frames of 4x6; anno 1 = the 2x2 square rows 1-2, cols 1-2 (4 px, 20 px background)."""
    square = np.zeros((T, H, W), bool)
    square[:, 1:3, 1:3] = True
    expressions = {
        "0": Expression("0", "perfect", [0], [1], 0),
        "1": Expression("1", "empty prediction", [0], [1], 0),
        "2": Expression("2", "perfect again", [0], [1], 0),
        "3": Expression("3", "right in frame 0 only?", [0], [1], 1),
        "4": Expression("4", "nothing is there?", [], [], 1),
        "5": Expression("5", "type two, perfect", [0], [1], 2),
    }
    frames = [f"{i:05d}" for i in range(T)]
    write_revos_split(root, "valid", [VideoMeta("v", frames, expressions, H, W)], {1: square})
    one_pixel = np.zeros((T, H, W), bool)
    one_pixel[:, 0, 5] = True  # a false positive outside the foreground
    half = square.copy()
    half[1] = False
    empty = np.zeros_like(square)
    predictions = {"0": square, "1": empty, "2": square, "3": half, "4": one_pixel, "5": square}
    return load_revos(root), predictions


@pytest.fixture
def hand(tmp_path):
    split, predictions = _hand_split(tmp_path / "data")
    pred_dir = tmp_path / "pred"
    for exp_id, masks in predictions.items():
        write_predictions(pred_dir, "v", exp_id, split.videos["v"].frames, masks)
    return split, predictions, pred_dir


def test_per_expression_scores_by_hand(hand):
    split, _, pred_dir = hand
    result = evaluate_revos(pred_dir, split.root, workers=1, progress=False)
    values = {s.exp_id: s.values for s in result.scores}
    # A (visa mode) = agreeing background only: 20/24 = 83.33; with the 1-px FP: 23/24 = 95.83
    assert values["0"] == {"J": 100.0, "F": 100.0, "A": 83.33, "R": 100.0, "J&F": 100.0}
    assert values["1"] == {"J": 0.0, "F": 0.0, "A": 83.33, "R": 100.0, "J&F": 0.0}
    assert values["3"] == {"J": 50.0, "F": 50.0, "A": 83.33, "R": 100.0, "J&F": 50.0}
    # GT empty: J = 0 (union 1 px), F = 0; R = max(1 - 255 * 1 / 4, 0) = 0 in VISA's arithmetic
    assert values["4"] == {"J": 0.0, "F": 0.0, "A": 95.83, "R": 0.0, "J&F": 0.0}
    assert not result.failures


def test_aggregation_rules_by_hand(hand):
    split, _, pred_dir = hand
    summary = evaluate_revos(pred_dir, split.root, workers=1, progress=False).summary()
    referring = {"J": 200 / 3, "F": 200 / 3, "A": 83.33, "R": 100.0, "J&F": 200 / 3}
    reasoning = {"J": 25.0, "F": 25.0, "A": (83.33 + 95.83) / 2, "R": 50.0, "J&F": 25.0}
    for name in referring:
        assert summary["referring"][name] == pytest.approx(referring[name])
        assert summary["reasoning"][name] == pytest.approx(reasoning[name])
        # overall = mean of the two subsets (45.83 for J), not of the 5 expressions (50.0), type 2 excluded
        assert summary["overall"][name] == pytest.approx((referring[name] + reasoning[name]) / 2)
    assert summary["overall"]["J"] == pytest.approx(45.8333, abs=1e-4)
    no_target = {"J": 100.0, "F": 100.0, "A": 83.33, "R": 100.0, "J&F": 100.0}
    assert summary["no_target"] == pytest.approx(no_target)


def test_binary_mode_changes_only_a_and_r(hand):
    split, _, pred_dir = hand
    visa = evaluate_revos(pred_dir, split.root, mode="visa", workers=1, progress=False)
    binary = evaluate_revos(pred_dir, split.root, mode="binary", workers=1, progress=False)
    values = {s.exp_id: s.values for s in binary.scores}
    assert values["0"]["A"] == 100.0
    assert values["4"]["R"] == 75.0  # 1 - 1 / 4
    assert values["3"]["A"] == pytest.approx(91.67)  # (24/24 + 20/24) / 2
    for name in ("J", "F", "J&F"):
        assert binary.summary()["overall"][name] == visa.summary()["overall"][name]


def test_in_memory_matches_files(hand):
    split, predictions, pred_dir = hand
    from_files = evaluate_revos(pred_dir, split.root, workers=1, progress=False)
    in_memory = evaluate_predictions(split, {("v", k): m for k, m in predictions.items()}, progress=False)
    assert isinstance(in_memory, RevosResult)
    assert [s.values for s in in_memory.scores] == [s.values for s in from_files.scores]
    via_callable = evaluate_predictions(split, lambda video, exp: predictions[exp.exp_id], progress=False)
    assert via_callable.summary() == from_files.summary()


def test_in_memory_failures(hand):
    split, predictions, _ = hand

    def predict(video, exp):
        if exp.exp_id == "0":
            raise RuntimeError("model crashed")
        if exp.exp_id == "1":
            return np.zeros((T, H + 1, W), bool)
        return predictions[exp.exp_id]

    result = evaluate_predictions(split, predict, progress=False)
    reasons = {f.exp_id: f.reason for f in result.failures}
    assert reasons["0"] == "RuntimeError: model crashed"
    assert "shape [2, 5, 6], expected [2, 4, 6]" in reasons["1"]
    partial = evaluate_predictions(split, {("v", "3"): predictions["3"]}, progress=False)
    assert len(partial.failures) == 5 and "no prediction for ('v', '0')" in partial.failures[0].reason


def test_chunking_does_not_change_scores(tiny_revos, tmp_path, monkeypatch):
    split = load_revos(tiny_revos)
    rng = np.random.default_rng(0)
    preds = {(v, e.exp_id): rng.random((len(split.videos[v].frames), split.videos[v].height,
                                        split.videos[v].width)) < 0.2
             for v, e in split.expressions()}  # fmt: skip
    whole = evaluate_predictions(split, preds, progress=False)
    monkeypatch.setattr(ev, "FRAME_CHUNK", 2)
    chunked = evaluate_predictions(split, preds, progress=False)
    assert [s.values for s in chunked.scores] == [s.values for s in whole.scores]


def _write_gt_predictions(split, pred_dir, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    for video, exp in split.expressions():
        gt = split.gt_masks(video, exp.exp_id) > 0
        flip = rng.random(gt.shape) < noise
        write_predictions(pred_dir, video, exp.exp_id, split.videos[video].frames, gt ^ flip)


def test_failures_score_zero_and_are_listed(tiny_revos, tmp_path):
    split = load_revos(tiny_revos)
    pred_dir = tmp_path / "pred"
    _write_gt_predictions(split, pred_dir)
    intact = evaluate_revos(pred_dir, tiny_revos, workers=1, progress=False)
    assert not intact.failures and intact.summary()["overall"]["J"] == 100.0
    # break four expressions in four different ways, keep TAO/seq_a/2 intact
    (pred_dir / "TAO/seq_a/0/00003.png").unlink()
    (pred_dir / "TAO/seq_a/1/00002.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    write_predictions(pred_dir / "wrong", "x", "0", ["00001"], np.ones((1, 21, 28), bool))
    shutil.copy(pred_dir / "wrong/x/0/00001.png", pred_dir / "MOSE/seq_b/0/00001.png")
    shutil.rmtree(pred_dir / "MOSE/seq_b/1")
    result = evaluate_revos(pred_dir, tiny_revos, workers=1, progress=False)
    reasons = {(f.video, f.exp_id): f.reason for f in result.failures}
    assert set(reasons) == {("TAO/seq_a", "0"), ("TAO/seq_a", "1"), ("MOSE/seq_b", "0"), ("MOSE/seq_b", "1")}
    assert reasons[("TAO/seq_a", "0")].startswith("missing frame")
    assert reasons[("TAO/seq_a", "0")].endswith("TAO/seq_a/0/00003.png")
    assert reasons[("TAO/seq_a", "1")].startswith("unreadable PNG")
    assert "is 21x28, expected 20x28" in reasons[("MOSE/seq_b", "0")]
    assert reasons[("MOSE/seq_b", "1")].startswith("missing folder")
    for score in result.scores:
        expected = 0.0 if (score.video, score.exp_id) in reasons else 100.0
        assert score.values["J"] == expected and score.values["F"] == expected
        if expected == 0.0:
            assert set(score.values.values()) == {0.0}  # A and R too, as VISA
    table = result.table()
    assert "4 expression(s) scored 0" in table and "MOSE/seq_b / 1: missing folder" in table
    # a missing video folder names the video folder
    shutil.rmtree(pred_dir / "MOSE")
    result = evaluate_revos(pred_dir, tiny_revos, workers=1, progress=False)
    missing = [f.reason for f in result.failures if f.video == "MOSE/seq_b"]
    assert len(missing) == 2 and all(r.endswith("pred/MOSE/seq_b") for r in missing)


def test_workers_give_identical_results(tiny_revos, tmp_path):
    split = load_revos(tiny_revos)
    pred_dir = tmp_path / "pred"
    _write_gt_predictions(split, pred_dir, noise=0.1)
    shutil.rmtree(pred_dir / "MOSE/seq_b/1")  # a failure must be listed the same way too
    one = evaluate_revos(pred_dir, tiny_revos, workers=1, progress=False)
    two = evaluate_revos(pred_dir, tiny_revos, workers=2, progress=False)
    assert one.as_dict() == two.as_dict()
    rows = [[(s.video, s.exp_id, s.values) for s in r.scores] for r in (one, two)]
    assert rows[0] == rows[1]
    assert 0 < one.summary()["overall"]["J"] < 100


def test_json_and_csv(hand, tmp_path):
    split, _, pred_dir = hand
    result = evaluate_revos(pred_dir, split.root, workers=1, progress=False)
    data = json.loads(result.to_json(tmp_path / "out/scores.json").read_text())
    assert set(data) >= {"referring", "reasoning", "overall", "no_target", "failures", "mode"}
    assert set(data["overall"]) == {"J", "F", "J&F", "A", "R"}
    assert data["overall"]["J"] == pytest.approx(45.8333, abs=1e-4) and data["failures"] == []
    assert data["num_expressions"] == {"referring": 3, "reasoning": 2, "overall": 5, "no_target": 1}
    with open(result.to_csv(tmp_path / "out/scores.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and rows[3]["J"] == "50.00" and rows[3]["text"] == "right in frame 0 only?"
    assert rows[5]["type_id"] == "2"


def test_empty_subset_is_null(tmp_path):
    mask = np.zeros((1, 3, 3), bool)
    mask[0, 1, 1] = True
    video = VideoMeta("v", ["0"], {"0": Expression("0", "only referring", [0], [1], 0)}, 3, 3)
    write_revos_split(tmp_path, "valid", [video], {1: mask})
    result = evaluate_predictions(load_revos(tmp_path), {("v", "0"): mask}, progress=False)
    summary = result.summary()
    assert summary["reasoning"]["J"] is None and summary["overall"] == summary["referring"]
    assert "| reasoning | 0 | - |" in result.table()
    assert json.loads(result.to_json(tmp_path / "s.json").read_text())["reasoning"]["J"] is None


def test_mevis_and_davis17(tmp_path):
    mask = np.zeros((3, 5, 7), bool)
    mask[:, 1:4, 2:5] = True
    other = np.zeros_like(mask)
    other[:, 0, :] = True
    video = VideoMeta("clip", ["00000", "00001", "00002"], {
        "0": Expression("0", "the box", [0], [1]),
        "1": Expression("1", "the line", [1], [2]),
    }, 5, 7)  # fmt: skip
    write_mevis_split(tmp_path / "mevis", "valid_u", [video], {1: mask, 2: other})
    write_davis17_split(tmp_path / "davis", "valid", [video], {("clip", "0"): mask, ("clip", "1"): other})
    pred_dir = tmp_path / "pred"
    write_predictions(pred_dir, "clip", "0", video.frames, mask)
    write_predictions(pred_dir, "clip", "1", video.frames, np.zeros_like(mask))
    for result in (
        evaluate_mevis(pred_dir, tmp_path / "mevis", workers=1, progress=False),
        evaluate_davis17(pred_dir, tmp_path / "davis", workers=2, progress=False),
    ):
        assert isinstance(result, RvosResult)
        assert result.summary() == {"J": 50.0, "F": 50.0, "J&F": 50.0}
        data = result.as_dict()
        assert data["J&F"] == 50.0 and "A" not in data
    mevis = load_mevis(tmp_path / "mevis")
    in_memory = evaluate_predictions(mevis, {("clip", "0"): mask}, metric_names=("J", "F"), progress=False)
    assert in_memory.summary()["J"] == 50.0 and len(in_memory.failures) == 1
    assert load_davis17(tmp_path / "davis").num_expressions == 2


def test_bad_arguments(hand, tmp_path):
    split, _, pred_dir = hand
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluate_revos(pred_dir, split.root, mode="clean")
    with pytest.raises(FileNotFoundError, match="prediction folder .* does not exist"):
        evaluate_revos(tmp_path / "nope", split.root)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        evaluate_revos(pred_dir, split.root, workers=0, progress=False)
    with pytest.raises(ValueError, match="T = len"):
        write_predictions(tmp_path, "v", "0", ["a"], np.zeros((2, 3, 3), bool))


def test_matches_a_naive_per_frame_loop(tiny_revos, tmp_path):
    """The chunked, per-video, multi-process evaluator equals a plain per-frame loop written from §6.1-6.2."""
    import cv2

    from visa_lib import metrics

    split = load_revos(tiny_revos)
    pred_dir = tmp_path / "pred"
    _write_gt_predictions(split, pred_dir, noise=0.05, seed=3)
    result = evaluate_revos(pred_dir, tiny_revos, workers=2, progress=False)
    per_type: dict[int, list[dict[str, float]]] = {0: [], 1: [], 2: []}
    for (video, exp), score in zip(split.expressions(), result.scores, strict=True):
        meta = split.videos[video]
        gt_all, fg_all = split.gt_masks(video, exp.exp_id), split.foreground_masks(video)
        j = f = a = r = 0.0
        for t, frame in enumerate(meta.frames):
            pred = cv2.imread(str(pred_dir / video / exp.exp_id / f"{frame}.png"), cv2.IMREAD_GRAYSCALE)
            gt, fg = gt_all[t], fg_all[t]
            j += metrics.jaccard(pred, gt)
            f += metrics.f_measure(pred, gt)
            a += np.mean(gt == pred)
            r += max(1 - np.sum((1 - gt) * pred) / (np.sum(fg) + 1e-6), 0)  # uint8 arithmetic, as VISA
        n = len(meta.frames)
        expected = {"J": round(100 * j / n, 2), "F": round(100 * f / n, 2), "A": round(100 * a / n, 2),
                    "R": round(100 * r / n, 2), "J&F": round(100 * (j + f) / 2 / n, 2)}  # fmt: skip
        assert score.values == pytest.approx(expected, abs=1e-9), (video, exp.exp_id)
        per_type[exp.type_id].append(expected)
    summary = result.summary()
    for name in ("J", "F", "A", "R"):
        referring = np.mean([e[name] for e in per_type[0]])
        reasoning = np.mean([e[name] for e in per_type[1]])
        assert summary["overall"][name] == pytest.approx((referring + reasoning) / 2)


def _random_stack(rng: np.random.Generator, t: int, h: int, w: int, kind: str) -> np.ndarray:
    """uint8 [t, h, w] masks of one kind: empty, noise, a rectangle at an image edge or corner, or full."""
    out = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        if kind == "noise":
            out[i] = rng.random((h, w)) < 0.3
        elif kind == "edge":
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            side = rng.integers(0, 4)
            rows = slice(0, y0 + 1) if side == 0 else slice(y0, h) if side == 1 else slice(0, h)
            cols = slice(0, x0 + 1) if side == 2 else slice(x0, w) if side == 3 else slice(0, w)
            out[i, rows, cols] = 1
        elif kind == "blob":
            y, x = rng.integers(0, h, 2), rng.integers(0, w, 2)
            out[i, y.min():y.max() + 1, x.min():x.max() + 1] = 1
        elif kind == "full":
            out[i] = 1
    return out


@pytest.mark.parametrize("mode", ["visa", "binary"])
def test_cropped_scoring_equals_whole_frame_scoring(tmp_path, mode):
    """The evaluator decodes and scores only inside the box of prediction, ground truth and foreground; its
    per-frame values must be exactly the metrics' on whole frames (masks touching borders and corners,
    empty, full, noise; two objects; a foreground file larger than the objects; frames of 1 pixel)."""
    from visa_lib import metrics
    from visa_lib.data.rle import encode_rle
    from visa_lib.evaluate import _ChunkTruth

    rng = np.random.default_rng(0)
    kinds = ["empty", "noise", "edge", "blob", "full"]
    names = ["J", "F", "A", "R"]
    t = 3
    checked = 0
    for h, w in [(1, 1), (1, 7), (9, 1), (17, 23), (40, 64)]:
        for gt_kind in kinds:
            root = tmp_path / f"{h}x{w}_{gt_kind}"
            annos = {1: _random_stack(rng, t, h, w, gt_kind), 2: _random_stack(rng, t, h, w, "blob")}
            exps = {"0": Expression("0", "one", [0], [1], 0), "1": Expression("1", "two", [0], [1, 2], 1),
                    "2": Expression("2", "none", [], [], 2)}
            frames = [f"{i:05d}" for i in range(t)]
            write_revos_split(root, "valid", [VideoMeta("v", frames, exps, h, w)], annos)
            split = load_revos(root)
            if gt_kind in ("empty", "blob"):  # a foreground file reaching beyond the objects
                extra = np.maximum(annos[1] | annos[2], _random_stack(rng, t, h, w, "blob"))
                split.foreground = {"v": {"masks_rle": [encode_rle(m) for m in extra]}}
            fg_all = split.foreground_masks("v")
            truth = _ChunkTruth(split, "v", slice(0, t), with_foreground=True)
            for exp_id in exps:
                gt = split.gt_masks("v", exp_id)
                for pred_kind in kinds:
                    pred = _random_stack(rng, t, h, w, pred_kind) * np.uint8(255)
                    got = truth.scores(exp_id, pred, names, mode)
                    want = {
                        "J": metrics.jaccard(pred, gt),
                        "F": np.array([metrics._f_measure_reference(pred[i], gt[i]) for i in range(t)]),
                        "A": metrics.accuracy(pred, gt, mode=mode),
                        "R": metrics.robustness(pred, gt, fg_all, mode=mode),
                    }
                    for name in names:
                        assert np.array_equal(got[name], want[name]), (h, w, gt_kind, exp_id, pred_kind, name)
                    checked += 1
    assert checked == 5 * 5 * 3 * 5
