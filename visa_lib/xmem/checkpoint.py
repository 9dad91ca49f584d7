"""Reading and strictly loading XMem checkpoints (official ``XMem.pth`` or toy ``.safetensors``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from visa_lib.weights import load_strict
from visa_lib.weights import read_state_dict as read_weights

#: What an XMem checkpoint is, for "file not found" messages.
_WHAT = (
    "XMem checkpoint (the official weights are XMem.pth from the XMem v1.0 release; the toy weights ship as "
    "data_samples/weights/toy_xmem.safetensors)"
)
#: What to do when a checkpoint does not fit the network.
_HINT = (
    "Pass the official XMem.pth (or a file written by scripts/train_toy_xmem.py), or give the matching "
    "XMemConfig"
)

#: The single-object release stores a 4-channel value-encoder stem; multi-object inference needs 5.
WIDENED_KEY = "value_encoder.conv1.weight"


def read_state_dict(
    path_or_state_dict: str | Path | Mapping[str, Tensor], map_location: str | torch.device = "cpu"
) -> dict[str, Tensor]:
    """Load an XMem state dict: read safely, unwrap, cast to float32, widen the value stem to 5 channels.

    Args:
        path_or_state_dict: a ``.pth`` (read with ``torch.load(weights_only=True)``) or ``.safetensors``
            path, or a mapping that is returned as a dict.
        map_location: device for the loaded tensors (``XMem.pth`` was saved from CUDA).

    Returns:
        dict[str, Tensor]: the state dict (a ``{"model"|"state_dict"|"network": ...}`` wrapper is unwrapped).
    """
    if isinstance(path_or_state_dict, Mapping):
        sd = dict(path_or_state_dict)
    else:
        sd = read_weights(path_or_state_dict, what=_WHAT)
    for wrapper in ("model", "state_dict", "network"):
        if wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = dict(sd[wrapper])
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"XMem checkpoint: entries {bad[:5]} are not tensors; expected a plain state_dict()")
    # XMem runs in float32; half-precision files (the toy weights) are widened here.
    sd = {k: (v.float() if v.is_floating_point() else v).to(map_location) for k, v in sd.items()}
    return widen_value_stem(sd)


def widen_value_stem(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Append a zero "other objects" input channel to a 4-channel ``value_encoder.conv1.weight``."""
    w = sd.get(WIDENED_KEY)
    if w is not None and w.dim() == 4 and w.shape[1] == 4:
        sd = dict(sd)
        sd[WIDENED_KEY] = torch.cat([w, torch.zeros_like(w[:, :1])], dim=1)
    return sd


def load_state_dict_strict(
    model: nn.Module, sd: Mapping[str, Tensor], source: str = "state dict", assign: bool = False
) -> None:
    """``model.load_state_dict(sd, strict=True)`` with an error that names every offending key.

    Args:
        model (nn.Module): the network (may live on the meta device when ``assign`` is True).
        sd (Mapping[str, Tensor]): the state dict.
        source (str): where ``sd`` came from, for the message.
        assign (bool): adopt the tensors of ``sd`` instead of copying into existing ones.

    Raises:
        CheckpointKeyError (a ValueError): missing or unexpected keys, named, with what to do.
        ValueError: shape mismatches, each with both shapes.
    """
    load_strict(model, sd, f"XMem checkpoint ({source})", _HINT, assign=assign)
