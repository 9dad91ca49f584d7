"""COCO run-length encoding of binary masks, the on-disk mask format of ReVOS, MeViS and Ref-DAVIS17.

``mask_dict.json`` stores one compressed RLE per frame, ``{"size": [H, W], "counts": str}``, or ``null``
for a frame where the object is absent. pycocotools walks the mask in column-major (Fortran) order, so
the array handed to it must be Fortran-contiguous; forgetting this gives a transposed, garbled mask.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as _coco_mask

#: An RLE as stored in the JSON files: ``{"size": [H, W], "counts": str}``.
RLE = dict[str, Any]


def encode_rle(mask: np.ndarray) -> RLE:
    """Encode one binary mask as a COCO compressed RLE.

    Args:
        mask: ``bool`` or integer array ``[H, W]``; every non-zero pixel is foreground.

    Returns:
        ``{"size": [H, W], "counts": str}``, JSON-serialisable (``counts`` decoded from bytes to ASCII).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_rle: expected a mask of shape [H, W], got shape {tuple(mask.shape)}")
    binary = np.asfortranarray(mask != 0, dtype=np.uint8)
    rle = _coco_mask.encode(binary)
    counts = rle["counts"]
    return {
        "size": [int(mask.shape[0]), int(mask.shape[1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else str(counts),
    }


def decode_rle(rle: RLE | None, size: Sequence[int] | None = None) -> np.ndarray:
    """Decode a COCO compressed RLE (or ``None`` for an absent object) into a ``uint8`` 0/1 mask.

    Args:
        rle: ``{"size": [H, W], "counts": str | bytes}`` or ``None``.
        size: ``(H, W)``; required when ``rle`` is ``None`` (the frame is then all zeros). When both are
            given they must agree.

    Returns:
        ``uint8`` array ``[H, W]`` with values 0 and 1.
    """
    if rle is None:
        if size is None:
            raise ValueError("decode_rle: rle is None (object absent) and no size given; pass size=(H, W)")
        return np.zeros((int(size[0]), int(size[1])), dtype=np.uint8)
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"decode_rle: expected a dict with 'size' and 'counts', got {type(rle).__name__}")
    height, width = (int(v) for v in rle["size"])
    if size is not None and (int(size[0]), int(size[1])) != (height, width):
        raise ValueError(f"decode_rle: RLE size {[height, width]} differs from size= {list(size)}")
    if height == 0 or width == 0:
        return np.zeros((height, width), dtype=np.uint8)
    return decode_rles([rle], (height, width))[0]


def _compressed(rle: RLE) -> RLE:
    """pycocotools wants bytes for compressed counts; a list of ints is the uncompressed variant."""
    counts = rle["counts"]
    if isinstance(counts, str):
        return {"size": rle["size"], "counts": counts.encode("ascii")}
    if isinstance(counts, list):
        height, width = (int(v) for v in rle["size"])
        return _coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return rle


#: Rows and columns of a crop of a frame: ``(slice(top, bottom), slice(left, right))``.
Box = tuple[slice, slice]


def decode_rles(rles: Sequence[RLE | None], size: Sequence[int], box: Box | None = None) -> np.ndarray:
    """Decode a list of RLEs (``None`` = empty frame) of one size in a single pycocotools call.

    Args:
        rles: ``T`` RLE dicts or ``None``; every RLE must have size ``size``.
        size: ``(H, W)``.
        box: only return this crop of each frame (cheaper than the whole frame when it is small).

    Returns:
        ``uint8`` array ``[T, H, W]`` (or ``[T, h, w]`` of ``box``) with values 0 and 1.
    """
    height, width = int(size[0]), int(size[1])
    rows, cols = box if box is not None else (slice(0, height), slice(0, width))
    crop_shape = (len(range(*rows.indices(height))), len(range(*cols.indices(width))))
    out = np.zeros((len(rles), *crop_shape), dtype=np.uint8)
    present = [i for i, rle in enumerate(rles) if rle is not None]
    if not present or height == 0 or width == 0:
        return out
    for i in present:
        if [int(v) for v in rles[i]["size"]] != [height, width]:
            raise ValueError(f"decode_rles: RLE {i} has size {rles[i]['size']}, expected {[height, width]}")
    with warnings.catch_warnings():
        # pycocotools' Cython code trips numpy 2's copy-keyword deprecation; it is harmless here.
        warnings.simplefilter("ignore", DeprecationWarning)
        for i in present:
            # One frame at a time: pycocotools' batched decode is ~8x slower per frame. Its output is
            # Fortran-ordered [H, W], i.e. a C-ordered [W, H]; cv2.transpose turns it around at memory speed.
            decoded = _coco_mask.decode(_compressed(rles[i]))
            if box is None:
                cv2.transpose(decoded.T, dst=out[i])
            else:
                out[i] = decoded[rows, cols]  # a small crop: numpy's strided copy is cheap enough
    return out


def rle_box(rles: Sequence[RLE | None]) -> tuple[int, int, int, int] | None:
    """``(top, left, bottom, right)`` (exclusive ends) of a box holding every foreground pixel of ``rles``.

    Read from the run lengths without decoding (pycocotools ``toBbox``; a run that wraps from one column
    into the next widens the box to whole columns, so it may be larger than the tightest box, never
    smaller). ``None`` when every RLE is empty or ``None``.
    """
    present = [_compressed(rle) for rle in rles if rle is not None]
    if not present:
        return None
    boxes = np.asarray(_coco_mask.toBbox(present), np.int64).reshape(-1, 4)  # x, y, w, h
    boxes = boxes[boxes[:, 2] > 0]
    if not len(boxes):
        return None
    return (int(boxes[:, 1].min()), int(boxes[:, 0].min()),
            int((boxes[:, 1] + boxes[:, 3]).max()), int((boxes[:, 0] + boxes[:, 2]).max()))


def _parse_counts(counts: Sequence[str | bytes | list]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run lengths of many RLEs at once: ``(runs int64 [R], owner int64 [R], bad bool [N])``.

    ``owner[r]`` is the RLE that run ``r`` belongs to (runs in order, background first); ``bad[i]`` marks
    a malformed ``counts`` (its runs are then meaningless). See :func:`rle_pixel_counts` for the format.
    """
    n = len(counts)
    bad = np.zeros(n, bool)
    packed: list[bytes] = []
    lists: list[tuple[int, list]] = []
    for i, c in enumerate(counts):
        if isinstance(c, list):
            if all(isinstance(v, int) and v >= 0 for v in c):
                lists.append((i, c))
            else:
                bad[i] = True
            packed.append(b"")
            continue
        try:
            packed.append(c.encode("ascii") if isinstance(c, str) else bytes(c))
        except (UnicodeEncodeError, TypeError):
            bad[i] = True
            packed.append(b"")
    lengths = np.array([len(b) for b in packed], dtype=np.int64)
    string_of = np.repeat(np.arange(n), lengths)
    bits = np.frombuffer(b"".join(packed), np.uint8).astype(np.int64) - 48
    if len(bits):
        bad[string_of[(bits < 0) | (bits > 63)]] = True
        bits = np.clip(bits, 0, 63)
        last_char = np.cumsum(lengths) - 1
        nonempty = lengths > 0
        ends = (bits & 0x20) == 0
        bad[nonempty] |= ~ends[last_char[nonempty]]  # the last number is cut off
        ends[last_char[nonempty]] = True  # numbers never run across strings
        start_flags = np.r_[True, ends[:-1]]
        starts = np.flatnonzero(start_flags)
        token_of = np.cumsum(start_flags) - 1
        shift = 5 * (np.arange(len(bits)) - starts[token_of])
        bad[string_of[shift > 55]] = True  # more than 12 characters: no real run is that long
        values = np.add.reduceat((bits & 0x1F) << np.minimum(shift, 55), starts)
        sign = (bits[ends] & 0x10) != 0
        values[sign] -= np.int64(1) << np.minimum(shift[ends][sign] + 5, 62)
        # Runs 3, 4, ... are differences to the run two before: cumulative sums along three chains per
        # string (run 0 alone, the odd runs, the even runs from run 2 on).
        owner = string_of[starts]
        first = np.r_[0, np.cumsum(np.bincount(owner, minlength=n))[:-1]]
        index = np.arange(len(values)) - first[owner]
        chain = owner * 3 + np.where(index == 0, 0, np.where(index % 2 == 1, 1, 2))
        order = np.argsort(chain, kind="stable")
        sums = np.cumsum(values[order])
        chain_sorted = chain[order]
        chain_start = np.r_[True, chain_sorted[1:] != chain_sorted[:-1]]
        base = np.maximum.accumulate(np.where(chain_start, np.arange(len(order)), 0))
        runs = np.empty_like(values)
        runs[order] = sums - np.r_[0, sums][base]
        bad[owner[runs < 0]] = True
    else:
        runs = owner = np.zeros(0, np.int64)
    if lists:  # uncompressed RLEs: their runs as they are, merged in string order
        extra_runs = np.concatenate([np.asarray(c, np.int64) for _, c in lists])
        extra_owner = np.concatenate([np.full(len(c), i, np.int64) for i, c in lists])
        order = np.argsort(np.r_[owner, extra_owner], kind="stable")
        runs, owner = np.r_[runs, extra_runs][order], np.r_[owner, extra_owner][order]
    return runs, owner, bad


def rle_pixel_counts(counts: Sequence[str | bytes | list]) -> np.ndarray:
    """Pixels covered by each RLE's runs, checked without decoding a mask: ``int64 [N]``, -1 if malformed.

    A compressed ``counts`` string holds one number per run, 5 bits per character (``chr(48 + bits)``),
    with a continuation bit (0x20), a sign bit on the last character (0x10), and every run from the
    fourth on stored as its difference to the run two before it. This parses all strings at once with
    numpy. A valid RLE of an ``H x W`` mask covers exactly ``H * W`` pixels; truncated or corrupted
    counts do not (or are malformed: a character outside the alphabet, a number cut off at the end, a
    negative run) -- pycocotools decodes them without a word, leaving the rest of the mask undefined.

    Args:
        counts: compressed strings / bytes, or uncompressed lists of run lengths.
    Returns:
        ``int64 [N]``: the sum of the runs, or -1 for a malformed ``counts``.
    """
    runs, owner, bad = _parse_counts(counts)
    totals = np.bincount(owner, weights=runs.astype(np.float64), minlength=len(counts)).astype(np.int64)
    totals[bad] = -1
    return totals


def encode_video_rle(masks: np.ndarray, empty_as_none: bool = True) -> list[RLE | None]:
    """Encode every frame of a ``[T, H, W]`` mask stack.

    Args:
        masks: ``bool``/integer array ``[T, H, W]``.
        empty_as_none: write ``None`` for an empty frame, as ReVOS does for frames where the object is absent.

    Returns:
        A list of ``T`` RLE dicts (or ``None``).
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"encode_video_rle: expected masks of shape [T, H, W], got {tuple(masks.shape)}")
    return [None if (empty_as_none and not frame.any()) else encode_rle(frame) for frame in masks]


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO ``segmentation`` field (polygons or RLE) into one ``uint8`` 0/1 mask ``[H, W]``.

    Args:
        segmentation: a list of polygons ``[[x0, y0, x1, y1, ...], ...]`` (their union is the object),
            an uncompressed RLE ``{"size", "counts": [int, ...]}``, a compressed one (``counts`` str/bytes),
            or a list of RLEs (their union). An empty list gives an empty mask.
        height, width: the image size.

    Returns:
        ``uint8`` array ``[H, W]`` with values 0 and 1.
    """
    height, width = int(height), int(width)
    if isinstance(segmentation, dict) and "size" in segmentation and "counts" in segmentation:
        return decode_rles([segmentation], (height, width))[0]
    if not isinstance(segmentation, list):
        raise ValueError(
            "decode_segmentation: expected a list of polygons or an RLE dict {'size', 'counts'}, got "
            f"{type(segmentation).__name__}"
        )
    if segmentation and all(isinstance(part, dict) for part in segmentation):  # several RLEs: their union
        return np.any([decode_segmentation(part, height, width) for part in segmentation], axis=0).astype(
            np.uint8
        )
    polygons = [[float(v) for v in poly] for poly in segmentation if len(poly) >= 6]
    if not polygons:
        return np.zeros((height, width), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        rles = _coco_mask.frPyObjects(polygons, height, width)
        merged = _coco_mask.merge(rles)
    return decode_rles([merged], (height, width))[0]
