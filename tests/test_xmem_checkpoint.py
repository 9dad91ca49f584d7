"""Strict loading of XMem checkpoints with the official layout (built from our module at official widths)."""

from __future__ import annotations

import pytest
import torch

from visa_lib.xmem import XMem, XMemConfig
from visa_lib.xmem.checkpoint import read_state_dict

# (key, shape) pairs of the official XMem.pth, as XMem's model/network.py builds it (docs/xmem.md).
REFERENCE_SHAPES = {
    "key_encoder.conv1.weight": (64, 3, 7, 7),
    "key_encoder.res2.0.downsample.0.weight": (256, 64, 1, 1),
    "key_encoder.res2.1.conv1.weight": (64, 256, 1, 1),
    "key_encoder.layer2.0.conv2.weight": (128, 128, 3, 3),
    "key_encoder.layer3.5.conv1.weight": (256, 1024, 1, 1),
    "key_encoder.layer3.0.downsample.0.weight": (1024, 512, 1, 1),
    "value_encoder.conv1.weight": (64, 5, 7, 7),
    "value_encoder.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "value_encoder.fuser.block1.downsample.weight": (512, 1280, 3, 3),
    "value_encoder.fuser.attention.ChannelGate.mlp.1.weight": (32, 512),
    "value_encoder.fuser.attention.SpatialGate.spatial.conv.weight": (1, 2, 7, 7),
    "value_encoder.hidden_reinforce.transform.weight": (192, 576, 3, 3),
    "key_proj.d_proj.weight": (1, 1024, 3, 3),
    "key_proj.e_proj.weight": (64, 1024, 3, 3),
    "decoder.fuser.block1.conv1.weight": (512, 1600, 3, 3),
    "decoder.hidden_update.g4_conv.weight": (256, 257, 1, 1),
    "decoder.hidden_update.transform.weight": (192, 320, 3, 3),
    "decoder.up_16_8.skip_conv.weight": (512, 512, 3, 3),
    "decoder.up_16_8.out_conv.downsample.weight": (256, 512, 3, 3),
    "decoder.up_8_4.skip_conv.weight": (256, 256, 3, 3),
    "decoder.pred.weight": (1, 256, 3, 3),
    "key_encoder.bn1.num_batches_tracked": (),
    "value_encoder.layer3.1.bn2.running_var": (256,),
}


@pytest.fixture(scope="module")
def official_sd() -> dict[str, torch.Tensor]:
    """A synthetic XMem.pth: the official layout (shapes from our module on the meta device), zero tensors."""
    with torch.device("meta"):
        layout = XMem(XMemConfig.official()).state_dict()
    return {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in layout.items()}


def test_official_layout(official_sd):
    assert len(official_sd) == 412
    assert sum(k.endswith("num_batches_tracked") for k in official_sd) == 58
    assert not any(".layer4." in k or k.startswith("key_encoder.layer1.") for k in official_sd)
    for key, shape in REFERENCE_SHAPES.items():
        assert tuple(official_sd[key].shape) == shape, key
    learnable = sum(
        v.numel() for k, v in official_sd.items() if "running_" not in k and "num_batches" not in k
    )
    assert learnable == 62_185_224
    assert XMemConfig.from_state_dict(official_sd) == XMemConfig.official()


def test_strict_load_roundtrip(official_sd):
    sd = {k: v.clone() for k, v in official_sd.items()}
    sd["decoder.pred.bias"].fill_(0.25)
    model = XMem.from_checkpoint(sd)
    assert not model.training
    assert torch.equal(model.decoder.pred.bias, torch.full((1,), 0.25))
    sd["key_encoder.layer2.1.bn3.running_mean"].fill_(-3.0)
    assert torch.equal(model.key_encoder.layer2[1].bn3.running_mean, torch.zeros(512))  # copied, not aliased
    assert model.decoder.pred.weight.device.type == "cpu" and model.decoder.pred.weight.requires_grad


@pytest.mark.parametrize("change", ["renamed", "removed", "extra"])
def test_strict_load_names_bad_keys(official_sd, change):
    sd = dict(official_sd)
    if change == "renamed":
        sd["decoder.pred.weights"] = sd.pop("decoder.pred.weight")
        names = ["decoder.pred.weights", "decoder.pred.weight"]
    elif change == "removed":
        del sd["value_encoder.layer1.0.bn2.num_batches_tracked"]
        names = ["value_encoder.layer1.0.bn2.num_batches_tracked"]
    else:
        sd["key_encoder.layer4.0.conv1.weight"] = torch.zeros(1)
        names = ["key_encoder.layer4.0.conv1.weight"]
    with pytest.raises(ValueError) as err:
        XMem.from_checkpoint(sd, cfg=XMemConfig.official())
    for name in names:
        assert name in str(err.value)


def test_shape_mismatch_is_named():
    sd = XMem(XMemConfig.toy()).state_dict()
    sd["key_proj.e_proj.bias"] = torch.zeros(3)
    with pytest.raises(ValueError, match="key_proj.e_proj.bias"):
        XMem.from_checkpoint(sd, cfg=XMemConfig.toy())


def test_single_object_checkpoint_is_widened():
    sd = XMem(XMemConfig.toy()).state_dict()
    w5 = sd["value_encoder.conv1.weight"]
    sd["value_encoder.conv1.weight"] = w5[:, :4].clone()
    model = XMem.from_checkpoint(sd)
    w = model.value_encoder.conv1.weight
    assert w.shape[1] == 5
    assert torch.equal(w[:, :4], w5[:, :4]) and torch.count_nonzero(w[:, 4]) == 0


def test_load_from_pth_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    src = XMem(XMemConfig.toy())
    pth, st = tmp_path / "toy.pth", tmp_path / "toy.safetensors"
    torch.save(src.state_dict(), pth)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(st))
    for path in (pth, st):
        model = XMem.from_checkpoint(path)
        assert model.cfg == XMemConfig.toy()
        for k, v in src.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), k
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_state_dict(tmp_path / "missing.pth")


def test_no_sensory_checkpoint_builds_without_hidden():
    cfg = XMemConfig.from_state_dict(
        {k: v for k, v in XMem(XMemConfig.toy()).state_dict().items() if "hidden" not in k}
    )
    assert cfg.hidden_dim == 0
    assert XMem(cfg).decoder.hidden_update is None
