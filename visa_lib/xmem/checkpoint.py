"""Reading and strictly loading XMem checkpoints (official ``XMem.pth`` or toy ``.safetensors``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

#: The single-object release stores a 4-channel value-encoder stem; multi-object inference needs 5.
WIDENED_KEY = "value_encoder.conv1.weight"


def read_state_dict(
    path_or_state_dict: str | Path | Mapping[str, Tensor], map_location: str | torch.device = "cpu"
) -> dict[str, Tensor]:
    """Load a state dict from a path (``.pth`` via ``torch.load(weights_only=True)``, or ``.safetensors``).

    Args:
        path_or_state_dict: file path or a mapping that is returned as a dict.
        map_location: device for the loaded tensors (``XMem.pth`` was saved from CUDA).

    Returns:
        dict[str, Tensor]: the state dict (a ``{"model": ...}`` / ``{"state_dict": ...}`` wrapper
            is unwrapped).
    """
    if isinstance(path_or_state_dict, Mapping):
        sd = dict(path_or_state_dict)
    else:
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise FileNotFoundError(
                f"XMem checkpoint '{path}' not found. The official weights are XMem.pth from the XMem v1.0 "
                "release; the toy weights ship as data_samples/weights/toy_xmem.safetensors."
            )
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device=str(map_location))
        else:
            sd = torch.load(str(path), map_location=map_location, weights_only=True)
    for wrapper in ("model", "state_dict", "network"):
        if wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = dict(sd[wrapper])
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"XMem checkpoint: entries {bad[:5]} are not tensors; expected a plain state_dict()")
    # XMem runs in float32; half-precision files (the toy weights) are widened here.
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
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
        ValueError: listing missing keys, unexpected keys and shape mismatches, with what to do.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:20]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:20]}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {mismatched[:20]}")
        raise ValueError(
            f"XMem checkpoint ({source}) does not match the network: "
            + "; ".join(parts)
            + ". Pass the official XMem.pth (or a file written by scripts/train_toy_xmem.py), "
            "or give the matching XMemConfig."
        )
    model.load_state_dict(sd, strict=True, assign=assign)
