"""Reading weight files safely and loading them strictly (visa_lib.weights)."""

import pytest
import torch
from safetensors.torch import save_file

from visa_lib.weights import CheckpointKeyError, check_state_dict, format_keys, load_strict, read_state_dict


def _state():
    return {"layer.weight": torch.ones(2, 3), "layer.bias": torch.zeros(2)}


def test_reads_pth_and_safetensors_identically(tmp_path):
    torch.save(_state(), tmp_path / "a.pth")
    save_file(_state(), str(tmp_path / "a.safetensors"))
    for name in ("a.pth", "a.safetensors"):
        state = read_state_dict(tmp_path / name)
        assert set(state) == {"layer.weight", "layer.bias"}
        assert torch.equal(state["layer.weight"], torch.ones(2, 3))


def test_unwraps_state_dict_wrappers(tmp_path):
    torch.save({"state_dict": _state(), "epoch": 3}, tmp_path / "wrapped.pth")
    assert set(read_state_dict(tmp_path / "wrapped.pth")) == {"layer.weight", "layer.bias"}


class _NotATensor:
    pass


def test_refuses_pickled_objects_and_broken_files(tmp_path):
    torch.save({"w": _NotATensor()}, tmp_path / "code.pth")
    with pytest.raises(ValueError, match="weights_only"):
        read_state_dict(tmp_path / "code.pth", what="SAM checkpoint")
    (tmp_path / "broken.pth").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="broken.pth: not a torch checkpoint"):
        read_state_dict(tmp_path / "broken.pth")
    with pytest.raises(FileNotFoundError, match="XMem weights .*missing.pth does not exist"):
        read_state_dict(tmp_path / "missing.pth", what="XMem weights")


def test_check_names_missing_unexpected_and_misshaped_keys():
    expected = _state()
    renamed = {"layer.weight": torch.ones(2, 3), "layer.b": torch.zeros(2)}
    message = "src: missing keys: layer.bias; unexpected keys: layer.b. Fix it"
    with pytest.raises(CheckpointKeyError, match=message):
        check_state_dict(expected, renamed, "src", "Fix it")
    transposed = {"layer.weight": torch.ones(3, 2), "layer.bias": torch.zeros(2)}
    message = r"mismatches \(1\): layer.weight: checkpoint \(3, 2\) vs model \(2, 3\)"
    with pytest.raises(ValueError, match=message):
        check_state_dict(expected, transposed, "src")
    check_state_dict(expected, _state(), "src")  # exact match: no error


def test_checkpoint_key_error_is_both_key_and_value_error_and_prints_plainly():
    err = CheckpointKeyError("file: missing keys: a")
    assert isinstance(err, KeyError) and isinstance(err, ValueError)
    assert str(err) == "file: missing keys: a"


def test_format_keys_lists_in_model_order_and_counts():
    keys = [f"blocks.{i}.w" for i in range(12)]
    text = format_keys(reversed(keys), limit=5)
    assert text.startswith("blocks.0.w, blocks.1.w") and text.endswith("blocks.11.w (12 in all)")


def test_load_strict_loads_only_a_complete_state():
    layer = torch.nn.Linear(3, 2)
    load_strict(layer, {"weight": torch.ones(2, 3), "bias": torch.full((2,), 5.0)}, "test")
    assert torch.equal(layer.bias, torch.full((2,), 5.0))
    with pytest.raises(CheckpointKeyError, match="missing keys: bias"):
        load_strict(layer, {"weight": torch.ones(2, 3)}, "test")
