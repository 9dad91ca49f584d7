"""Tests for visa_lib.metrics: hand-computed values, DAVIS/VISA conventions, fast F == reference F."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.morphology import disk

import visa_lib.metrics as metrics
from visa_lib.metrics import accuracy, f_measure, jaccard, robustness, to_visa_prediction

# ---------------------------------------------------------------------------------------------- fixtures

# A 2x2 square and the same square grown by one column to the right (used by several hand computations).
SQUARE = np.array([[0, 0, 0, 0],
                   [0, 1, 1, 0],
                   [0, 1, 1, 0],
                   [0, 0, 0, 0]], bool)
WIDE = np.array([[0, 0, 0, 0],
                 [0, 1, 1, 1],
                 [0, 1, 1, 1],
                 [0, 0, 0, 0]], bool)


def ellipses(shape: tuple[int, int], params: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """Filled ellipses ``(cx, cy, ax, ay, angle)`` -> bool ``[H, W]`` (centres may lie outside the frame)."""
    canvas = np.zeros(shape, np.uint8)
    for cx, cy, ax, ay, angle in params:
        cv2.ellipse(canvas, (cx, cy), (ax, ay), angle, 0, 360, 1, thickness=-1)
    return canvas.astype(bool)


def full_map(seg: np.ndarray) -> np.ndarray:
    """The fast (cropped) boundary map of ``seg`` pasted back into a full bool frame."""
    return metrics._to_frame(metrics._boundary(seg), seg.shape).astype(bool)


# ---------------------------------------------------------------------------------------------- J
def test_jaccard_hand_example() -> None:
    # SQUARE has 4 pixels, WIDE 6; they share the 4 of SQUARE -> J = 4 / 6.
    assert jaccard(SQUARE, WIDE) == pytest.approx(4 / 6)
    assert jaccard(SQUARE, SQUARE) == 1.0


def test_jaccard_empty_union_is_one_and_empty_vs_object_is_zero() -> None:
    empty = np.zeros((5, 7), bool)
    assert jaccard(empty, empty) == 1.0
    assert jaccard(empty, np.ones((5, 7), bool)) == 0.0
    assert jaccard(np.ones((5, 7), bool), np.ones((5, 7), bool)) == 1.0


def test_jaccard_matches_literal_formula_on_a_stack() -> None:
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 3, (6, 9, 11)).astype(np.uint8)  # labels 0..2; nonzero = object
    gt = rng.random((6, 9, 11)) < 0.4
    pred[2] = 0
    gt[2] = False  # one frame with an empty union
    values = jaccard(pred, gt)
    assert values.dtype == np.float64 and values.shape == (6,)
    for t in range(6):
        p, g = pred[t] != 0, gt[t]
        union = np.sum(p | g)
        expected = 1.0 if union == 0 else np.sum(p & g) / union
        assert values[t] == expected


# ---------------------------------------------------------------------------------------------- boundaries
def test_boundary_map_by_hand() -> None:
    # _seg2bmap marks pixels that differ from their E, S or SE neighbour (zero outside the frame); on the
    # last row only E counts, on the last column only S; the bottom-right pixel is 0. For SQUARE the
    # boundary sits half a pixel "towards the origin": outside at the top/left, inside at the bottom/right.
    expected = np.array([[1, 1, 1, 0],
                         [1, 0, 1, 0],
                         [1, 1, 1, 0],
                         [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(metrics._seg2bmap_reference(SQUARE), expected)
    np.testing.assert_array_equal(full_map(SQUARE), expected)
    # WIDE touches the right border: there only the S neighbour counts, so (0,3) and (2,3) are boundary.
    expected_wide = np.array([[1, 1, 1, 1],
                              [1, 0, 0, 0],
                              [1, 1, 1, 1],
                              [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(metrics._seg2bmap_reference(WIDE), expected_wide)
    np.testing.assert_array_equal(full_map(WIDE), expected_wide)


def test_boundary_of_objects_touching_the_border() -> None:
    # Left half of a 4x4 frame: column 1 is the boundary (E neighbour differs), and the frame border
    # itself (top row, left column) is never a boundary.
    left = np.zeros((4, 4), bool)
    left[:, :2] = True
    expected = np.zeros((4, 4), bool)
    expected[:, 1] = True
    np.testing.assert_array_equal(metrics._seg2bmap_reference(left), expected)
    np.testing.assert_array_equal(full_map(left), expected)
    # A single pixel in the bottom-right corner: the corner itself is forced to 0, its three
    # up/left neighbours see it as their S, E or SE neighbour.
    corner = np.zeros((3, 5), bool)
    corner[-1, -1] = True
    expected = np.zeros((3, 5), bool)
    expected[1, 3:] = True
    expected[2, 3] = True
    np.testing.assert_array_equal(metrics._seg2bmap_reference(corner), expected)
    np.testing.assert_array_equal(full_map(corner), expected)


def test_full_frame_mask_has_no_boundary() -> None:
    full = np.ones((6, 8), bool)
    assert not metrics._seg2bmap_reference(full).any()
    assert not full_map(full).any()


# ---------------------------------------------------------------------------------------------- F by hand
def test_f_measure_hand_example_radius_0_and_1() -> None:
    # Boundaries from test_boundary_map_by_hand: 8 pixels for SQUARE, 9 for WIDE; they share 7.
    # Radius 0 (bound_th=0 -> ceil(0) = 0, disk(0) = one pixel): P = 7/8, R = 7/9,
    # F = 2PR/(P+R) = (98/72) / (119/72) = 14/17.
    assert f_measure(SQUARE, WIDE, bound_th=0) == pytest.approx(14 / 17, abs=1e-15)
    # Radius 1 (disk(1) = the pixel and its 4 neighbours): SQUARE's (1,2) touches WIDE's (0,2), WIDE's
    # (0,3)/(2,3) touch SQUARE's (0,2)/(2,2): every boundary pixel is matched, F = 1.
    assert f_measure(SQUARE, WIDE, bound_th=1) == 1.0
    assert f_measure(SQUARE, WIDE, bound_th=0) == metrics._f_measure_reference(SQUARE, WIDE, bound_th=0)


def test_f_measure_one_pixel_objects() -> None:
    a = np.zeros((9, 9), bool)
    b = np.zeros((9, 9), bool)
    a[4, 4] = True
    b[4, 7] = True
    # Each boundary is the 2x2 block up-left of its pixel: columns 3-4 and 6-7, rows 3-4.
    assert f_measure(a, a) == 1.0
    assert f_measure(a, b, bound_th=1) == 0.0  # nearest boundary pixels are 2 apart
    assert f_measure(a, b, bound_th=2) == 0.5  # only the inner columns 4 and 6 match: P = R = 2/4
    assert f_measure(a, b, bound_th=3) == 1.0  # the outer columns 3 and 7 are 3 from the other block
    assert jaccard(a, b) == 0.0


def test_f_measure_empty_boundary_conventions() -> None:
    empty, full = np.zeros((10, 12), bool), np.ones((10, 12), bool)
    obj = np.zeros((10, 12), bool)
    obj[3:6, 4:9] = True
    assert f_measure(empty, empty) == 1.0  # both boundaries empty -> P = R = 1
    assert f_measure(empty, obj) == 0.0  # prediction empty -> P = 1, R = 0
    assert f_measure(obj, empty) == 0.0  # ground truth empty -> P = 0, R = 1
    # A full-frame mask has no boundary either, so it behaves like an empty one (as in DAVIS).
    assert f_measure(full, full) == 1.0
    assert f_measure(full, empty) == 1.0
    assert f_measure(full, obj) == 0.0
    for p, g in [(empty, empty), (empty, obj), (obj, empty), (full, full), (full, obj)]:
        assert f_measure(p, g) == metrics._f_measure_reference(p, g)


def test_radius_follows_the_frame_diagonal() -> None:
    # ceil(0.008 * hypot(H, W)): the radii DAVIS/ReVOS use at common resolutions.
    assert metrics._radius(0.008, (480, 854)) == 8
    assert metrics._radius(0.008, (720, 1280)) == 12
    assert metrics._radius(0.008, (1080, 1920)) == 18
    assert metrics._radius(3, (1080, 1920)) == 3  # >= 1: a radius in pixels
    assert metrics._radius(3.0, (10, 10)) == 3


def test_bound_th_of_one_or_more_is_a_pixel_radius() -> None:
    a = np.zeros((40, 40), bool)
    b = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    b[10:20, 14:24] = True  # shifted 4 px right: left/right edges 4 px apart
    assert f_measure(a, b, bound_th=4) == 1.0
    assert f_measure(a, b, bound_th=3) < 1.0
    for th in (1, 2, 3, 4, 5):
        assert f_measure(a, b, bound_th=th) == metrics._f_measure_reference(a, b, bound_th=th)


@pytest.mark.parametrize("radius", range(0, 31))
def test_disk_is_exactly_the_union_of_its_rectangles(radius: int) -> None:
    footprint, rect_dx, rect_dy, inner = metrics._disk(radius)
    np.testing.assert_array_equal(footprint, disk(radius))
    union = np.zeros_like(footprint)
    for dx, dy in zip(rect_dx, rect_dy, strict=True):
        union[radius - dy:radius + dy + 1, radius - dx:radius + dx + 1] = 1
    np.testing.assert_array_equal(union, footprint)
    areas = (2 * rect_dx + 1) * (2 * rect_dy + 1)
    assert areas[inner] == areas.max()


# ---------------------------------------------------------------------------------------------- F shapes
def test_f_measure_2d_and_3d_agree_and_types() -> None:
    rng = np.random.default_rng(1)
    shape = (31, 47)  # non-square, odd sizes
    pred = np.stack([ellipses(shape, [(int(rng.integers(0, 47)), int(rng.integers(0, 31)), 9, 5, 30)])
                     for _ in range(4)])
    gt = np.stack([ellipses(shape, [(int(rng.integers(0, 47)), int(rng.integers(0, 31)), 7, 8, 0)])
                   for _ in range(4)])
    stack = f_measure(pred, gt, bound_th=0.1)
    assert isinstance(stack, np.ndarray) and stack.dtype == np.float64 and stack.shape == (4,)
    for t in range(4):
        single = f_measure(pred[t], gt[t], bound_th=0.1)
        assert isinstance(single, float)
        assert single == stack[t] == metrics._f_measure_reference(pred[t], gt[t], bound_th=0.1)
    assert f_measure(pred[:0], gt[:0]).shape == (0,)


def test_f_measure_binarises_integer_inputs() -> None:
    labels = np.zeros((20, 30), np.int64)
    labels[3:9, 4:12] = 2
    labels[12:18, 15:25] = 7
    gt = np.zeros((20, 30), bool)
    gt[4:10, 5:12] = True
    assert f_measure(labels, gt) == f_measure(labels != 0, gt)
    assert f_measure(to_visa_prediction(labels), gt) == f_measure(labels != 0, gt)
    assert jaccard(labels, gt) == jaccard(labels != 0, gt)


@pytest.mark.parametrize("dense_fraction", [0.0, 1e9])
def test_sparse_and_dense_paths_both_match_the_reference(monkeypatch: pytest.MonkeyPatch,
                                                         dense_fraction: float) -> None:
    # 0.0 forces the whole-frame path, 1e9 the per-pixel rectangle test, on the same masks.
    monkeypatch.setattr(metrics, "DENSE_FRACTION", dense_fraction)
    rng = np.random.default_rng(2)
    for _ in range(15):
        shape = (int(rng.integers(20, 70)), int(rng.integers(20, 90)))
        if rng.random() < 0.3:
            p, g = rng.random(shape) < 0.5, rng.random(shape) < 0.5
        else:
            params = [(int(rng.integers(-10, shape[1] + 10)), int(rng.integers(-10, shape[0] + 10)),
                       int(rng.integers(1, 25)), int(rng.integers(1, 25)), int(rng.integers(0, 180)))
                      for _ in range(4)]
            p, g = ellipses(shape, params[:2]), ellipses(shape, params[2:])
        for th in (0.008, 0.05, 0.15, 2):
            assert f_measure(p, g, bound_th=th) == metrics._f_measure_reference(p, g, bound_th=th)


# ---------------------------------------------------------------------------------------------- properties
BOUND_THS = st.sampled_from([0.008, 0.03, 0.1, 0.3, 1, 2, 3, 5])
random_pairs = st.integers(1, 24).flatmap(lambda h: st.integers(1, 24).flatmap(
    lambda w: st.tuples(arrays(bool, (h, w)), arrays(bool, (h, w)))))
ellipse_params = st.tuples(st.integers(-8, 56), st.integers(-8, 40), st.integers(0, 20), st.integers(0, 20),
                           st.integers(0, 179))


@settings(max_examples=80, deadline=None)
@given(pair=random_pairs, bound_th=BOUND_THS)
def test_fast_f_equals_reference_on_random_masks(pair: tuple[np.ndarray, np.ndarray],
                                                 bound_th: float) -> None:
    pred, gt = pair
    assert f_measure(pred, gt, bound_th) == metrics._f_measure_reference(pred, gt, bound_th)


@settings(max_examples=60, deadline=None)
@given(a=st.lists(ellipse_params, max_size=3), b=st.lists(ellipse_params, max_size=3), bound_th=BOUND_THS)
def test_fast_f_equals_reference_on_blobs(a: list, b: list, bound_th: float) -> None:
    shape = (32, 48)
    pred, gt = ellipses(shape, a), ellipses(shape, b)
    assert f_measure(pred, gt, bound_th) == metrics._f_measure_reference(pred, gt, bound_th)


@settings(max_examples=60, deadline=None)
@given(pair=random_pairs, bound_th=BOUND_THS)
def test_j_and_f_are_symmetric_and_bounded(pair: tuple[np.ndarray, np.ndarray], bound_th: float) -> None:
    a, b = pair
    j, f = jaccard(a, b), f_measure(a, b, bound_th)
    assert j == jaccard(b, a) and f == f_measure(b, a, bound_th)
    assert 0.0 <= j <= 1.0 and 0.0 <= f <= 1.0


# ---------------------------------------------------------------------------------------------- A and R
def test_to_visa_prediction() -> None:
    out = to_visa_prediction(np.array([[True, False], [False, True]]))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[255, 0], [0, 255]])
    np.testing.assert_array_equal(to_visa_prediction(np.array([0, 3, -1])), [0, 255, 255])


def test_accuracy_visa_counts_only_agreeing_background() -> None:
    gt = SQUARE.astype(np.uint8)  # 4 object pixels of 16
    perfect = to_visa_prediction(SQUARE)  # 0/255 as VISA writes it
    # VISA compares raw values: 1 != 255 on the 4 true positives, so only the 12 background pixels agree.
    assert accuracy(perfect, gt) == 12 / 16
    assert accuracy(perfect, gt, mode="binary") == 1.0
    # One false positive: visa 11/16; binary 15/16.
    fp = perfect.copy()
    fp[0, 0] = 255
    assert accuracy(fp, gt) == 11 / 16
    assert accuracy(fp, gt, mode="binary") == 15 / 16
    # A bool ground truth is read as 0/1, like VISA's decoded masks.
    assert accuracy(fp, SQUARE) == 11 / 16


def test_robustness_visa_weighs_each_false_positive_255() -> None:
    gt = np.zeros((10, 10), np.uint8)
    gt[0, :10] = 1
    foreground = gt.copy()  # 10 foreground pixels
    pred = to_visa_prediction(gt)
    assert robustness(pred, gt, foreground) == 1.0  # no false positive
    pred[5, 0:3] = 255  # 3 false-positive pixels
    # VISA: 1 - 3*255 / (10 + 1e-6) < 0 -> clipped to 0.
    assert robustness(pred, gt, foreground) == 0.0
    # Binary: 1 - 3 / (10 + 1e-6).
    assert robustness(pred, gt, foreground, mode="binary") == pytest.approx(0.7, abs=1e-6)
    assert robustness(pred, gt, foreground, mode="binary") == 1 - 3 / (10 + 1e-6)


def test_robustness_visa_between_zero_and_one() -> None:
    gt = np.zeros((40, 40), np.uint8)
    gt[:25, :] = 1  # 1000 foreground pixels
    pred = to_visa_prediction(gt)
    pred[39, 39] = 255  # one false positive
    assert robustness(pred, gt, gt) == 1 - 255 / (1000 + 1e-6)
    assert robustness(pred, gt, gt) == pytest.approx(0.745, abs=1e-6)
    assert robustness(np.zeros_like(pred), gt, gt) == 1.0  # an empty prediction is never penalised


def test_robustness_visa_keeps_numpy_uint8_arithmetic() -> None:
    # GT is the uint8 SUM over annotation ids, so overlapping objects give 2; (1 - 2) wraps to 255 in uint8
    # and 255 * 255 wraps to 1: VISA's script counts such a pixel as 1, and so do we.
    gt = np.zeros((4, 5), np.uint8)
    gt[0, :] = 1
    gt[1, :] = 1
    gt[0, 0] = 2
    pred = np.zeros((4, 5), np.uint8)
    pred[0, 0] = 255
    assert robustness(pred, gt, gt != 0) == 1 - 1 / (10 + 1e-6)
    assert robustness(pred, gt, gt != 0, mode="binary") == 1.0


def test_a_and_r_stacks_match_per_frame_values() -> None:
    rng = np.random.default_rng(3)
    gt = (rng.random((5, 12, 16)) < 0.3).astype(np.uint8)
    pred = to_visa_prediction(rng.random((5, 12, 16)) < 0.3)
    fg = (rng.random((5, 12, 16)) < 0.5).astype(np.uint8)
    for mode in ("visa", "binary"):
        a, r = accuracy(pred, gt, mode=mode), robustness(pred, gt, fg, mode=mode)
        assert a.shape == r.shape == (5,) and a.dtype == r.dtype == np.float64
        for t in range(5):
            assert accuracy(pred[t], gt[t], mode=mode) == a[t]
            assert robustness(pred[t], gt[t], fg[t], mode=mode) == r[t]
        assert np.all((r >= 0) & (r <= 1)) and np.all((a >= 0) & (a <= 1))
    for t in range(5):  # the VISA formulas written out literally
        assert accuracy(pred, gt)[t] == np.mean(gt[t] == pred[t])
        false_pos = np.sum((1 - gt[t]) * pred[t])
        assert robustness(pred, gt, fg)[t] == max(1 - false_pos / (np.sum(fg[t]) + 1e-6), 0)


def test_per_frame_sum_equals_numpy_sum_beyond_float32_precision() -> None:
    # 512*512 random bytes sum to ~3.3e7 > 2**24: a float32 accumulator would round, numpy's uint64 does not.
    frames = np.random.default_rng(4).integers(0, 256, (2, 512, 512), dtype=np.uint8)
    expected = np.sum(frames, axis=(1, 2))
    got = metrics._sum(frames)
    assert got.dtype == expected.dtype and np.array_equal(got, expected) and expected.min() > 2**24
    np.testing.assert_array_equal(metrics._sum(frames.astype(np.int16)), expected)


# ---------------------------------------------------------------------------------------------- errors
def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 6\)"):
        jaccard(np.zeros((4, 5), bool), np.zeros((4, 6), bool))
    with pytest.raises(ValueError, match=r"\(2, 4, 5\).*\(4, 5\)"):
        f_measure(np.zeros((2, 4, 5), bool), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="foreground has shape"):
        robustness(np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8))


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4), ()])
def test_wrong_ndim_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\[H, W\] or a stack \[T, H, W\]"):
        f_measure(np.zeros(shape, bool), np.zeros(shape, bool))
    with pytest.raises(ValueError, match="pred"):
        jaccard(np.zeros(shape, bool), np.zeros(shape, bool))


def test_other_bad_inputs_have_clear_errors() -> None:
    mask = np.zeros((4, 4), bool)
    with pytest.raises(TypeError, match="threshold probabilities"):
        jaccard(np.zeros((4, 4), np.float32), mask)
    with pytest.raises(TypeError, match="to_visa_prediction"):
        accuracy(mask, mask)  # mode="visa" wants the 0/255 prediction VISA writes
    with pytest.raises(TypeError, match="to_visa_prediction"):
        robustness(mask, mask, mask)
    with pytest.raises(ValueError, match="mode must be one of"):
        accuracy(mask, mask, mode="clean")
    with pytest.raises(ValueError, match="whole number"):
        f_measure(mask, mask, bound_th=2.5)
    with pytest.raises(ValueError, match=">= 0"):
        f_measure(mask, mask, bound_th=-0.1)
    with pytest.raises(ValueError, match="at least one pixel"):
        jaccard(np.zeros((3, 0), bool), np.zeros((3, 0), bool))
