"""Shapes at every stage of the XMem network, the GRU gate, determinism of a tracking run."""

from __future__ import annotations

import pytest
import torch

from visa_lib.xmem import MemoryConfig, XMem, XMemConfig, XMemTracker
from visa_lib.xmem.modules import CBAM, GroupResBlock, gru_update


@pytest.mark.parametrize("cfg", [XMemConfig.toy(), XMemConfig.official()], ids=["toy", "official"])
def test_shapes_at_every_stage(cfg):
    torch.manual_seed(0)
    with torch.device("meta"):  # shapes only: no memory, no compute
        net = XMem(cfg)
        h, w, n = 64, 96, 2
        frame = torch.empty(1, 3, h, w)
        key, shrink, sel, f16, f8, f4 = net.encode_key(frame)
        assert key.shape == (1, cfg.key_dim, h // 16, w // 16) and sel.shape == key.shape
        assert shrink.shape == (1, 1, h // 16, w // 16)
        assert f16.shape == (1, cfg.f16_dim, h // 16, w // 16)
        assert f8.shape == (1, cfg.f8_dim, h // 8, w // 8)
        assert f4.shape == (1, cfg.f4_dim, h // 4, w // 4)
        hidden = torch.empty(1, n, cfg.hidden_dim, h // 16, w // 16)
        value, hidden2 = net.encode_value(frame, f16, hidden, torch.empty(1, n, h, w))
        assert value.shape == (1, n, cfg.value_dim, h // 16, w // 16) and hidden2.shape == hidden.shape
        hidden3, logits, prob = net.segment((f16, f8, f4), value, hidden, strip_bg=False)
        assert logits.shape == prob.shape == (1, n + 1, h, w) and hidden3.shape == hidden.shape


def test_official_widths_match_reference():
    cfg = XMemConfig.official()
    assert (cfg.f16_dim, cfg.f8_dim, cfg.f4_dim) == (1024, 512, 256)


def test_key_projection_ranges_and_unpadded_input_error():
    torch.manual_seed(0)
    net = XMem(XMemConfig.toy()).eval()
    with torch.inference_mode():
        _, shrink, sel, *_ = net.encode_key(torch.randn(1, 3, 32, 48))
    assert (shrink >= 1).all() and ((sel > 0) & (sel < 1)).all()
    with pytest.raises(ValueError, match="multiples of 16"):
        net.encode_key(torch.randn(1, 3, 30, 48))


def test_gru_gate_by_hand():
    h = torch.full((1, 1, 2, 1, 1), 0.5)
    values = torch.zeros(1, 1, 6, 1, 1)
    values[:, :, 4:] = 1.0  # new-value pre-activation
    out = gru_update(values, h, 2)
    f = u = 0.5
    n = torch.tanh(torch.tensor(1.0))
    assert torch.allclose(out, f * 0.5 * (1 - u) + u * n)


def test_group_res_block_is_pre_activation_with_conv_projection():
    torch.manual_seed(0)
    block = GroupResBlock(2, 3)
    g = -torch.rand(1, 1, 2, 5, 5)  # all negative: relu(g) = 0, so the residual branch sees only biases
    out = block(g)
    branch = block.conv2(torch.relu(block.conv1(torch.zeros_like(g))))
    assert torch.allclose(out, branch + block.downsample(g), atol=1e-6)


def test_cbam_spatial_pooling_order_is_max_then_mean():
    cbam = CBAM(4, reduction=2)
    conv = cbam.SpatialGate.spatial.conv
    torch.nn.init.zeros_(conv.weight)
    torch.nn.init.zeros_(conv.bias)
    conv.weight.data[0, 0, 3, 3] = 1.0  # only the FIRST pooled channel, at the centre tap
    x = torch.zeros(1, 4, 3, 3)
    x[0, 0] = 2.0  # channel max 2, channel mean 0.5
    y = cbam.SpatialGate(x)
    assert torch.allclose(y[0, 0], 2.0 * torch.sigmoid(torch.tensor(2.0)).expand(3, 3))


def test_tracking_is_deterministic():
    torch.manual_seed(0)
    tracker = XMemTracker(XMem(XMemConfig.toy()), MemoryConfig.toy().with_(size=-1))
    frames = torch.randn(7, 3, 48, 64)
    mask = torch.zeros(2, 48, 64)
    mask[0, 10:30, 10:30] = 1
    mask[1, 20:40, 35:60] = 1

    def run():
        s = tracker.new_session(7)
        return torch.stack([s.step(f, mask if i == 0 else None, end=i == 6) for i, f in enumerate(frames)])

    a, b = run(), run()
    assert a.shape == (7, 3, 48, 64)
    assert torch.equal(a, b)
    assert torch.allclose(a.sum(1), torch.ones(7, 48, 64), atol=1e-5)
