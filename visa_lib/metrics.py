"""ReVOS / DAVIS video-segmentation metrics J, F, A and R, exact and fast.

All four give one value per frame; a video score is the mean over its frames (done by the caller).

- **J** (region similarity, Jaccard): ``|P ∩ G| / |P ∪ G|``; an empty union counts as J = 1.
- **F** (contour accuracy): 1-px boundary maps ``bP``, ``bG`` (DAVIS ``_seg2bmap`` rules); a boundary
  pixel is matched if the other boundary lies within the disk of radius ``r = ceil(0.008·‖(H, W)‖)``;
  precision ``Pr = matched(bP) / |bP|``, recall ``Rc = matched(bG) / |bG|``, ``F = 2·Pr·Rc / (Pr + Rc)``.
- **A** (accuracy): ``mean(gt == pred)`` over the pixels of a frame.
- **R** (robustness, ReVOS): ``max(1 − Σ(1 − gt)·pred / (Σ foreground + 1e-6), 0)``, i.e. false
  positives measured against the size of the video's foreground; an empty prediction scores 1.

J and F binarise their inputs with ``!= 0``; their values are bit-identical to DAVIS's
``db_eval_iou`` / ``db_eval_boundary`` (and VISA's copy of them). A and R come in two modes:

- ``mode="visa"`` repeats the arithmetic of VISA's ``tools/eval_revos.py`` on raw values: the
  prediction is expected as VISA writes it (uint8 0/255, see :func:`to_visa_prediction`) and the
  ground truth as the uint8 *sum* of the decoded masks of all annotation ids (0/1). Consequently A
  counts only agreeing background (1 != 255 on true positives) and each false-positive pixel weighs
  255 in R. numpy's dtype rules apply unchanged: for uint8 inputs ``1 - gt`` wraps (gt = 2 -> 255)
  and the product wraps mod 256, while the sums are taken in 64 bits. Follow-up papers report ReVOS
  A and R with VISA's script, so this is the mode to compare with published numbers.
- ``mode="binary"`` binarises everything with ``!= 0`` first: A is plain pixel accuracy and
  ``R = max(1 − FP / (|foreground| + 1e-6), 0)``.

Inputs are numpy arrays ``[H, W]`` (one frame -> ``float``) or ``[T, H, W]`` (-> ``float64 [T]``)
of dtype bool or any integer type.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from skimage.morphology import disk

__all__ = ["jaccard", "f_measure", "accuracy", "robustness", "to_visa_prediction", "boundary_radius"]

#: Boundary tolerance of DAVIS and ReVOS: a fraction of the image diagonal (< 1) or pixels (>= 1).
BOUND_TH = 0.008
#: Added to the foreground size in R, as in VISA's evaluator (keeps empty foregrounds finite).
R_EPS = 1e-6
#: Above this share of boundary pixels per frame, F works on whole frames instead of pixel by pixel
#: (720p, independent random ellipses: pixel by pixel is cheaper at 6.5 %, whole frames at 14 %).
DENSE_FRACTION = 0.1
_MODES = ("visa", "binary")
#: A boundary map cropped out of its frame: ``(uint8 0/1 map [h, w], top row, left column)``.
_Crop = tuple[np.ndarray, int, int]
# 2x2 window anchored top-left: its max != min is exactly "pixel differs from its E, S or SE neighbour".
_BMAP_KERNEL = np.ones((2, 2), np.uint8)


# --------------------------------------------------------------------------- input handling
def _frames(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as a ``[T, H, W]`` array (a view), checking ndim and dtype."""
    x = np.asarray(x)
    if x.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a mask [H, W] or a stack [T, H, W], got shape {x.shape}")
    if x.dtype != bool and not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name}: expected a bool or integer mask, got dtype {x.dtype}; "
                        "threshold probabilities first (e.g. prob > 0.5)")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{name}: frames must have at least one pixel, got shape {x.shape}")
    return x if x.ndim == 3 else x[None]


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate a prediction/ground-truth pair; return both as ``[T, H, W]`` and whether input was 2-D."""
    p, g = _frames(pred, "pred"), _frames(gt, "gt")
    if np.shape(pred) != np.shape(gt):
        raise ValueError(f"pred has shape {np.shape(pred)} but gt has shape {np.shape(gt)}; "
                         "resize the prediction to the ground-truth frame size")
    return p, g, np.ndim(pred) == 2


def _binary(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == bool else x != 0


def _count(frames: np.ndarray) -> np.ndarray:
    """Nonzero pixels per frame, ``[T, H, W]`` -> int64 ``[T]`` (per-frame counts: 4x faster than axis=)."""
    return np.array([np.count_nonzero(frame) for frame in frames], np.int64)


def _sum(frames: np.ndarray) -> np.ndarray:
    """``np.sum`` per frame of ``[T, H, W]``, same values and dtype; uint8 frames are summed by OpenCV."""
    if frames.dtype != np.uint8:
        return np.sum(frames, axis=(1, 2))
    # cv2.sumElems sums 8-bit data in integer blocks into a float64: exact below 2**45 pixels, and ~5x faster.
    return np.array([cv2.sumElems(frame)[0] for frame in frames], np.uint64)


def _out(values: np.ndarray, single: bool) -> float | np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return float(values[0]) if single else values


# --------------------------------------------------------------------------- J
def jaccard(pred: np.ndarray, gt: np.ndarray) -> float | np.ndarray:
    """Region similarity J per frame (DAVIS ``db_eval_iou`` without void pixels).

    Args:
        pred: prediction, bool/int ``[H, W]`` or ``[T, H, W]``; nonzero = object.
        gt: ground truth, same shape as ``pred``.
    Returns:
        ``float`` for one frame, ``float64 [T]`` for a stack; frames where both masks are empty give 1.
    """
    p, g, single = _pair(pred, gt)
    p, g = _binary(p), _binary(g)
    inter = _count(p & g)
    union = _count(p) + _count(g) - inter
    j = inter / np.maximum(union, 1)  # integer division result is identical to inter / union where union > 0
    j[union == 0] = 1.0
    return _out(j, single)


# --------------------------------------------------------------------------- F (fast)
def _radius(bound_th: float, shape: tuple[int, int]) -> int:
    """Dilation radius in pixels, computed with the reference's own expression so it matches bit for bit."""
    if bound_th < 0:
        raise ValueError(f"bound_th must be >= 0, got {bound_th}")
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"bound_th >= 1 is a radius in pixels and must be a whole number, "
                             f"got {bound_th}")
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm(shape)))


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """F's matching radius in pixels for frames of ``shape`` ``(H, W)`` (pass it as ``bound_th`` to
    :func:`f_measure` to score crops of such frames with the whole frame's tolerance)."""
    return _radius(bound_th, shape)


@lru_cache(maxsize=32)
def _disk(radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The scikit-image ``disk(radius)`` footprint and its exact cover by centred rectangles.

    Row ``dy`` of the disk spans ``|dx| <= half[dy]``, and ``half`` shrinks as ``|dy|`` grows, so the disk
    is exactly the union of the rectangles ``|dx| <= half_j, |dy| <= reach_j``, one per distinct
    half-width (9 rectangles at radius 12 instead of 441 pixels).

    Returns:
        ``(footprint uint8 [2r+1, 2r+1], rect_dx int64 [K], rect_dy int64 [K], inner)`` where
        ``inner`` indexes the rectangle of largest area.
    """
    footprint = disk(radius).astype(np.uint8)
    half = (footprint[radius:].sum(axis=1).astype(np.int64) - 1) // 2  # rows dy = 0..r
    widths = np.unique(half)
    reach = np.array([np.flatnonzero(half >= wd).max() for wd in widths], np.int64)
    return footprint, widths, reach, int(np.argmax((2 * widths + 1) * (2 * reach + 1)))


def _boundary(seg: np.ndarray) -> _Crop:
    """Boundary map of DAVIS's ``_seg2bmap`` for a bool ``[H, W]`` mask, cropped to where it can be nonzero.

    ``_seg2bmap`` marks a pixel that differs from its E, S or SE neighbour; on the last row only E
    counts, on the last column only S, and the bottom-right pixel is 0. The 2x2 max != min test with a
    replicated border gives exactly that (missing neighbours equal the pixel itself). Boundaries lie in the
    object's bounding box grown by one pixel, so only that crop is processed; its extra zero row/column
    below/right behaves like the rest of the (empty) frame.

    Returns:
        ``(bmap, top, left)``: uint8 0/1 map of the crop and the crop's offset in the frame
        (an empty ``[0, 0]`` map for an empty mask).
    """
    seg = np.ascontiguousarray(seg).view(np.uint8)
    x, y, w, h = cv2.boundingRect(seg)
    if w == 0:
        return np.zeros((0, 0), np.uint8), 0, 0
    top, left = max(y - 1, 0), max(x - 1, 0)
    crop = seg[top:min(y + h + 1, seg.shape[0]), left:min(x + w + 1, seg.shape[1])]
    bmap = cv2.morphologyEx(crop, cv2.MORPH_GRADIENT, _BMAP_KERNEL, anchor=(0, 0),
                            borderType=cv2.BORDER_REPLICATE)
    return bmap, top, left


def _to_frame(crop: _Crop, shape: tuple[int, int]) -> np.ndarray:
    """Paste a cropped boundary map back into a zero uint8 ``[H, W]`` frame."""
    bmap, top, left = crop
    frame = np.zeros(shape, np.uint8)
    frame[top:top + bmap.shape[0], left:left + bmap.shape[1]] = bmap
    return frame


def _count_matched(query: _Crop, target: _Crop, radius: int) -> int:
    """How many ``query`` boundary pixels have a ``target`` boundary pixel inside the disk around them.

    Equals ``sum(query_map * cv2.dilate(target_map, disk(radius)))`` but never dilates: the disk is a
    union of a few rectangles (:func:`_disk`), and an integral image of the target map counts the target
    pixels in any rectangle with four look-ups. Two rectangles settle most pixels: the biggest one inside
    the disk (a hit there is a match) and the square around it (no hit there, no match); only the pixels
    in between are tested against every rectangle.

    Args:
        query, target: cropped boundary maps ``(uint8 [h, w], top, left)`` from :func:`_boundary`.
        radius: disk radius in pixels.
    """
    qmap, qtop, qleft = query
    tmap, ttop, tleft = target
    ys, xs = np.divmod(np.flatnonzero(qmap.view(bool)), qmap.shape[1])
    # Work in the query crop grown by `radius` on every side (zeros where it sticks out of the frame): it
    # holds every target pixel that can match, and no rectangle around a query pixel leaves it.
    top, left = qtop - radius, qleft - radius
    region = np.zeros((qmap.shape[0] + 2 * radius, qmap.shape[1] + 2 * radius), np.uint8)
    y0, x0 = max(top, ttop), max(left, tleft)
    y1 = min(top + region.shape[0], ttop + tmap.shape[0])
    x1 = min(left + region.shape[1], tleft + tmap.shape[1])
    if y0 >= y1 or x0 >= x1 or ys.size == 0:
        return 0
    region[y0 - top:y1 - top, x0 - left:x1 - left] = tmap[y0 - ttop:y1 - ttop, x0 - tleft:x1 - tleft]
    counts = cv2.integral(region).ravel()  # int32; counts[y * stride + x] = region[:y, :x].sum()
    stride = region.shape[1] + 1
    corner = ((ys + radius) * stride + xs + radius)[:, None]  # [N, 1] flat index of each query pixel

    def any_target(at: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """[N, 1] pixels x [K] centred rectangles -> bool [N]: a target pixel in at least one rectangle."""
        below, above = (dy + 1) * stride, -dy * stride
        inside = (counts.take(at + below + dx + 1) - counts.take(at + above + dx + 1)
                  - counts.take(at + below - dx) + counts.take(at + above - dx))
        return inside.any(axis=1)

    _, rect_dx, rect_dy, inner = _disk(radius)
    sure = any_target(corner, rect_dx[inner:inner + 1], rect_dy[inner:inner + 1])
    maybe = any_target(corner, np.array([radius]), np.array([radius])) & ~sure
    todo = np.flatnonzero(maybe)
    matched = int(np.count_nonzero(sure))
    if todo.size:
        matched += int(np.count_nonzero(any_target(corner[todo], rect_dx, rect_dy)))
    return matched


def _count_matched_dense(query: np.ndarray, target: np.ndarray, radius: int) -> int:
    """:func:`_count_matched` for full uint8 ``[H, W]`` maps with boundaries everywhere (noise-like masks).

    Per-pixel look-ups would cost more than whole-frame passes here. A dilation by the biggest rectangle
    inside the disk (separable, hence cheap) settles nearly every pixel; the rest take the exact test.
    """
    _, rect_dx, rect_dy, inner = _disk(radius)
    size = (2 * int(rect_dx[inner]) + 1, 2 * int(rect_dy[inner]) + 1)
    near = cv2.dilate(target, cv2.getStructuringElement(cv2.MORPH_RECT, size))
    rest = cv2.subtract(query, near)  # query pixels without a target in that rectangle (uint8 saturates)
    settled = cv2.countNonZero(query) - cv2.countNonZero(rest)
    return settled + _count_matched((rest, 0, 0), (target, 0, 0), radius)


def _f_from_counts(n_pred: int, n_gt: int, pred_matched: int, gt_matched: int) -> float:
    """DAVIS's precision/recall conventions for empty boundaries, then F = 2PR/(P+R) (0 if P+R = 0)."""
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision, recall = pred_matched / float(n_pred), gt_matched / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def _f_frame(pred: np.ndarray, gt: np.ndarray, radius: int) -> float:
    """F of one frame from bool ``[H, W]`` masks."""
    shape = pred.shape
    pred_crop, gt_crop = _boundary(pred), _boundary(gt)
    n_pred, n_gt = cv2.countNonZero(pred_crop[0]), cv2.countNonZero(gt_crop[0])
    if n_pred == 0 or n_gt == 0:
        return _f_from_counts(n_pred, n_gt, 0, 0)
    if n_pred + n_gt > DENSE_FRACTION * pred.size:
        pred_map, gt_map = _to_frame(pred_crop, shape), _to_frame(gt_crop, shape)
        return _f_from_counts(n_pred, n_gt, _count_matched_dense(pred_map, gt_map, radius),
                              _count_matched_dense(gt_map, pred_map, radius))
    return _f_from_counts(n_pred, n_gt, _count_matched(pred_crop, gt_crop, radius),
                          _count_matched(gt_crop, pred_crop, radius))


def f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float | np.ndarray:
    """Contour accuracy F per frame, bit-identical to DAVIS ``db_eval_boundary`` (no void pixels).

    Args:
        pred: prediction, bool/int ``[H, W]`` or ``[T, H, W]``; nonzero = object.
        gt: ground truth, same shape as ``pred``.
        bound_th: tolerance; ``< 1`` is a fraction of the frame diagonal (radius
            ``ceil(bound_th·hypot(H, W))``: 8 px at 480x854, 12 at 720x1280), ``>= 1`` a whole radius
            in pixels.
    Returns:
        ``float`` for one frame, ``float64 [T]`` for a stack. An empty boundary (an empty or a full-frame
        mask) scores 1 against another empty boundary and 0 against a non-empty one.
    """
    p, g, single = _pair(pred, gt)
    radius = _radius(bound_th, p.shape[1:])
    p, g = _binary(p), _binary(g)
    return _out([_f_frame(p[t], g[t], radius) for t in range(p.shape[0])], single)


# --------------------------------------------------------------------------- F (slow reference)
def _seg2bmap_reference(seg: np.ndarray) -> np.ndarray:
    """DAVIS's boundary map written out with shifted copies (bool ``[H, W]`` -> bool ``[H, W]``)."""
    seg = seg.astype(bool)
    east, south, south_east = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def _f_measure_reference(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Slow per-frame F as DAVIS computes it: full-frame boundary maps and full-frame disk dilations.

    Kept as the ground truth for tests and ``benchmarks/metrics_speed.py``. ``pred``, ``gt``: ``[H, W]``.
    """
    radius = _radius(bound_th, np.shape(pred))
    pred_b, gt_b = _seg2bmap_reference(pred), _seg2bmap_reference(gt)
    footprint = disk(radius).astype(np.uint8)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), footprint)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), footprint)
    pred_matched = int(np.sum(pred_b * gt_dil))
    gt_matched = int(np.sum(gt_b * pred_dil))
    return _f_from_counts(int(np.sum(pred_b)), int(np.sum(gt_b)), pred_matched, gt_matched)


# --------------------------------------------------------------------------- A and R
def to_visa_prediction(mask: np.ndarray) -> np.ndarray:
    """A binary mask (bool/int ``[..., H, W]``, nonzero = object) as VISA saves it: uint8 0/255."""
    return np.where(np.asarray(mask) != 0, np.uint8(255), np.uint8(0))


def _check_mode(mode: str, pred: np.ndarray, fn: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"{fn}: mode must be one of {_MODES}, got {mode!r}")
    if mode == "visa" and pred.dtype == bool:
        raise TypeError(f"{fn}(mode='visa') expects the prediction as VISA writes it (uint8 0/255), "
                        "got bool; convert it with to_visa_prediction(mask) or use mode='binary'")


def _visa_gt(gt: np.ndarray) -> np.ndarray:
    # VISA decodes the ground truth to uint8 0/1; a bool mask means the same (numpy cannot subtract bools).
    return gt.astype(np.uint8) if gt.dtype == bool else gt


def accuracy(pred: np.ndarray, gt: np.ndarray, mode: str = "visa",
             frame_pixels: int | None = None) -> float | np.ndarray:
    """Pixel accuracy A per frame: ``mean(gt == pred)``.

    Args:
        pred: prediction ``[H, W]`` or ``[T, H, W]``; in ``mode="visa"`` uint8 0/255 (see module docstring).
        gt: ground truth, same shape; in ``mode="visa"`` the uint8 0/1 sum over annotation ids.
        mode: ``"visa"`` (raw values, as VISA's evaluator) or ``"binary"`` (both binarised with ``!= 0``).
        frame_pixels: pixels of the whole frame when ``pred`` and ``gt`` are crops of it holding every
            nonzero pixel of both (the pixels left out are 0 in both, so they agree); ``None``: not crops.
    Returns:
        ``float`` for one frame, ``float64 [T]`` for a stack.
    """
    _check_mode(mode, np.asarray(pred), "accuracy")
    p, g, single = _pair(pred, gt)
    if mode == "binary":
        p, g = _binary(p), _binary(g)
    else:
        g = _visa_gt(g)
    area = p.shape[1] * p.shape[2]
    outside = 0 if frame_pixels is None else frame_pixels - area
    if outside < 0:
        raise ValueError(f"frame_pixels={frame_pixels} is smaller than the crop ({area} pixels)")
    return _out((_count(g == p) + outside) / (area + outside), single)


def robustness(pred: np.ndarray, gt: np.ndarray, foreground: np.ndarray,
               mode: str = "visa") -> float | np.ndarray:
    """ReVOS robustness R per frame: ``max(1 − Σ(1 − gt)·pred / (Σ foreground + 1e-6), 0)``.

    Args:
        pred: prediction ``[H, W]`` or ``[T, H, W]``; in ``mode="visa"`` uint8 0/255.
        gt: ground truth, same shape; in ``mode="visa"`` the uint8 0/1 sum over annotation ids.
        foreground: the video's foreground mask for the same frames (ReVOS ``mask_dict_foreground``),
            same shape, 0/1 or bool.
        mode: ``"visa"`` (raw arithmetic; each false-positive pixel of a 0/255 prediction weighs 255)
            or ``"binary"`` (false-positive pixel count over foreground pixel count).
    Returns:
        ``float`` for one frame, ``float64 [T]`` for a stack, each in [0, 1].
    """
    _check_mode(mode, np.asarray(pred), "robustness")
    p, g, single = _pair(pred, gt)
    fg = _frames(foreground, "foreground")
    if np.shape(foreground) != np.shape(gt):
        raise ValueError(f"foreground has shape {np.shape(foreground)} but gt has shape {np.shape(gt)}")
    if mode == "binary":
        false_pos = _count(_binary(p) & ~_binary(g))
        size = _count(fg)
    else:
        false_pos = _sum((1 - _visa_gt(g)) * p)
        size = _sum(fg)
    return _out(np.maximum(1 - false_pos / (size + R_EPS), 0), single)
