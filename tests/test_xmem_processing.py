"""XMem pre/post-processing and probability aggregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visa_lib.xmem.network import others_of, soft_aggregate
from visa_lib.xmem.processing import (
    labels_from_probabilities,
    normalize_frame,
    pad_divide_by,
    postprocess_probabilities,
    resize_mask,
    resized_shape,
    unpad,
)


@pytest.mark.parametrize(("w", "pad"), [(854, (5, 5)), (853, (5, 6)), (864, (0, 0)), (17, (7, 8))])
def test_pad_divide_by_splits_floor_left(w, pad):
    x = torch.arange(2 * 3 * w, dtype=torch.float32).view(2, 3, w) + 1
    padded, p = pad_divide_by(x, 16)
    assert padded.shape[-1] % 16 == 0 and padded.shape[-2] == 16
    assert p[:2] == pad
    assert (padded[..., :, : p[0]] == 0).all() and (padded[..., :, padded.shape[-1] - p[1] :] == 0).all()
    assert torch.equal(unpad(padded, p), x)


def test_resized_shape_follows_torchvision_rule():
    assert resized_shape(480, 854, 480) == (480, 854)
    assert resized_shape(240, 320, 480) == (480, 640)
    assert resized_shape(1080, 1920, 480) == (480, 853)  # int() truncates 853.33
    assert resized_shape(320, 240, 120) == (160, 120)
    assert resized_shape(33, 47, -1) == (33, 47)


def test_normalize_frame_values_and_resize():
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[..., 0] = 255
    x = normalize_frame(frame, size=-1)
    assert x.shape == (3, 4, 6)
    assert torch.allclose(x[0], torch.full((4, 6), (1 - 0.485) / 0.229))
    assert torch.allclose(x[2], torch.full((4, 6), (0 - 0.406) / 0.225))
    assert normalize_frame(frame, size=8).shape == (3, 8, 12)
    with pytest.raises(ValueError, match="uint8"):
        normalize_frame(frame.astype(np.float32), 8)


def test_mask_resize_is_nearest_and_post_is_bilinear():
    m = torch.zeros(1, 4, 4)
    m[0, :2, :2] = 1
    r = resize_mask(m, (8, 8))
    assert set(r.unique().tolist()) == {0.0, 1.0} and r.sum() == 16
    prob = torch.stack([1 - r[0], r[0]])
    up = postprocess_probabilities(prob, (16, 16))
    assert up.shape == (2, 16, 16) and torch.allclose(up.sum(0), torch.ones(16, 16))
    assert labels_from_probabilities(up).sum() == 64


def test_aggregate_by_hand():
    p = torch.tensor([0.8, 0.5]).view(2, 1, 1)
    logits, prob = soft_aggregate(p, dim=0)
    raw = torch.tensor([0.2 * 0.5, 0.8, 0.5])
    odds = raw / (1 - raw)
    torch.testing.assert_close(prob.flatten(), odds / odds.sum())
    torch.testing.assert_close(logits.flatten(), odds.log())
    # a one-hot mask is clamped to [1e-7, 1-1e-7] before the logit: finite, and still almost one-hot
    _, onehot = soft_aggregate(torch.tensor([1.0, 0.0]).view(2, 1, 1), dim=0)
    assert torch.isfinite(onehot).all() and onehot[1] > 0.999999


def test_others_is_sum_of_other_objects():
    m = torch.tensor([0.2, 0.3, 0.5]).view(1, 3, 1, 1)
    assert torch.allclose(others_of(m).flatten(), torch.tensor([0.8, 0.7, 0.5]))
    assert torch.equal(others_of(m[:, :1]), torch.zeros(1, 1, 1, 1))
