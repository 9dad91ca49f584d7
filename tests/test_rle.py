"""COCO RLE round trips: random, non-square, empty, full masks; the Fortran-order trap; error cases."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from visa_lib.data.rle import decode_rle, decode_rles, encode_rle, encode_video_rle


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (13, 7), (64, 48), (3, 200)])
@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_random_masks_round_trip(shape, density):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    mask = rng.random(shape) < density
    rle = encode_rle(mask)
    assert rle["size"] == list(shape)
    assert isinstance(rle["counts"], str)
    json.dumps(rle)  # must be JSON-serialisable as stored in mask_dict.json
    decoded = decode_rle(rle)
    assert decoded.dtype == np.uint8 and decoded.shape == shape
    np.testing.assert_array_equal(decoded, mask.astype(np.uint8))


@pytest.mark.parametrize("fill", [False, True])
def test_empty_and_full(fill):
    mask = np.full((5, 9), fill)
    decoded = decode_rle(encode_rle(mask))
    np.testing.assert_array_equal(decoded, mask.astype(np.uint8))


def test_non_contiguous_and_integer_inputs():
    """A transposed (Fortran-strided) view and a 0/255 uint8 mask both encode what they show."""
    rng = np.random.default_rng(1)
    base = rng.random((11, 6)) < 0.4
    view = base.T  # not C-contiguous
    np.testing.assert_array_equal(decode_rle(encode_rle(view)), view.astype(np.uint8))
    np.testing.assert_array_equal(decode_rle(encode_rle(base.astype(np.uint8) * 255)), base.astype(np.uint8))


def test_counts_match_pycocotools_column_major():
    """Counts equal pycocotools' own encoding of the Fortran array: compatible with real mask_dict.json."""
    mask = np.zeros((3, 5), np.uint8)
    mask[1, 2:] = 1
    expected = coco_mask.encode(np.asfortranarray(mask))["counts"].decode()
    assert encode_rle(mask)["counts"] == expected
    # bytes counts (as pycocotools returns them) decode as well
    assert decode_rle({"size": [3, 5], "counts": expected.encode()}).sum() == 3


def test_uncompressed_counts_list():
    mask = np.zeros((2, 3), np.uint8)
    mask[:, 1] = 1  # column-major runs: 2 zeros, 2 ones, 2 zeros
    np.testing.assert_array_equal(decode_rle({"size": [2, 3], "counts": [2, 2, 2]}), mask)


def test_none_gives_zeros_of_size():
    out = decode_rle(None, (4, 6))
    assert out.shape == (4, 6) and out.dtype == np.uint8 and not out.any()


def test_errors():
    with pytest.raises(ValueError, match="no size given"):
        decode_rle(None)
    with pytest.raises(ValueError, match="differs from size"):
        decode_rle(encode_rle(np.zeros((4, 6), bool)), (6, 4))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        encode_rle(np.zeros((2, 3, 4), bool))
    with pytest.raises(ValueError, match="'size' and 'counts'"):
        decode_rle({"counts": "0"})


def test_encode_video_rle_nulls_empty_frames():
    masks = np.zeros((3, 4, 5), bool)
    masks[1, 1:3, 2] = True
    rles = encode_video_rle(masks)
    assert rles[0] is None and rles[2] is None
    np.testing.assert_array_equal(decode_rle(rles[1]), masks[1].astype(np.uint8))
    assert all(r is not None for r in encode_video_rle(masks, empty_as_none=False))


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    seed=st.integers(0, 2**31 - 1),
    density=st.floats(0.0, 1.0),
)
def test_round_trip_property(shape, seed, density):
    mask = np.random.default_rng(seed).random(shape) < density
    np.testing.assert_array_equal(decode_rle(encode_rle(mask)), mask.astype(np.uint8))
    stack = decode_rles([encode_rle(mask), None, encode_rle(~mask)], shape)
    np.testing.assert_array_equal(stack, np.stack([mask, np.zeros(shape, bool), ~mask]).astype(np.uint8))


def test_pixel_counts_of_valid_rles_equal_the_mask_size():
    from visa_lib.data.rle import rle_pixel_counts

    rng = np.random.default_rng(3)
    rles = [encode_rle(rng.random((h, w)) < d) for h, w, d in [(1, 1, 0.5), (40, 33, 0.02), (9, 200, 0.5)]]
    rles += [encode_rle(np.ones((30, 30), bool)), encode_rle(np.zeros((30, 30), bool))]
    rles.append(coco_mask.encode(np.asfortranarray(rng.random((50, 70)) < 0.3, dtype=np.uint8)))  # bytes
    sizes = [r["size"][0] * r["size"][1] for r in rles]
    counts = [r["counts"] for r in rles] + [[3, 4, 5]]
    assert rle_pixel_counts(counts).tolist() == [*sizes, 12]


def test_pixel_counts_catch_truncated_and_garbled_counts():
    from visa_lib.data.rle import rle_pixel_counts

    def compress(runs):  # pycocotools compresses any runs, whatever they add up to
        return coco_mask.frPyObjects({"size": [60, 80], "counts": runs}, 60, 80)["counts"]

    whole, short = compress([1000, 300, 45, 3455]), compress([1000, 300, 45])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        coco_mask.decode({"size": [60, 80], "counts": short})  # no error: the rest is left undefined
    counts = whole.decode()
    covered = rle_pixel_counts([whole, short, counts[:-1], counts + "\x7f", "}" * 30, "", [1, -2]])
    assert covered.tolist() == [4800, 1345, -1, -1, -1, 0, -1]
