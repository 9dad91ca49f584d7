"""Weight files: read them safely, load them strictly. One implementation for every model here.

Every loader in the package (SAM, the vision tower, XMem, the VISA checkpoints) reads files with
:func:`read_state_dict` and checks them with :func:`check_state_dict` before ``load_state_dict``,
so they all fail the same way: a missing, unexpected or wrongly shaped key is an error that names
it, never a silently random layer (the most reported failure of LISA and VISA checkpoints).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch


class CheckpointKeyError(KeyError, ValueError):
    """Missing or unexpected checkpoint keys, all named. A ``KeyError`` (and a ``ValueError``) whose
    message prints without the quotes ``KeyError`` would add."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _natural_key(key: str) -> list[int | str]:
    """Sort ``blocks.2`` before ``blocks.10``, so messages list keys in model order."""
    return [int(part) if part.isdigit() else part for part in key.split(".")]


def format_keys(keys: Iterable[str], limit: int = 8) -> str:
    """``"a.0, a.1, ..., z.9 (40 in all)"``: the first and last few keys, in model order."""
    keys = sorted(keys, key=_natural_key)
    if len(keys) <= limit:
        return ", ".join(keys)
    # First and last few: for a wrong model size this shows both ends of the extra blocks.
    head, tail = keys[: limit - 3], keys[-3:]
    return f"{', '.join(head)}, ..., {', '.join(tail)} ({len(keys)} in all)"


def read_state_dict(
    path: str | Path, what: str = "checkpoint", mmap: bool = False
) -> dict[str, torch.Tensor]:
    """Read a flat state dict from ``.safetensors`` or a torch pickle (``.pth``/``.bin``/``.pt``), on the CPU.

    Torch pickles are read with ``torch.load(..., weights_only=True)``: a file holding anything but
    tensors and plain containers is refused instead of executing code. ``{"state_dict": ...}`` and
    ``{"model": ...}`` / ``{"network": ...}`` wrappers are unwrapped.

    Args:
        path: the file.
        what: what the file should be (``"SAM checkpoint"``), for messages.
        mmap: memory-map a torch pickle instead of reading it (large checkpoints).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    # torch.save writes a zip archive (PK..); older torch wrote a raw pickle (protocol byte 0x80).
    if not (magic.startswith(b"PK") or magic[:1] == b"\x80"):
        raise ValueError(
            f"{what} {path}: not a torch checkpoint (it starts with {magic!r}); an interrupted download or "
            "an error page saved under this name? Fetch the file again"
        )
    try:
        # Only the zip format can be memory-mapped; a legacy pickle is read whole.
        zip_format = magic.startswith(b"PK")
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zip_format)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0]
        raise ValueError(
            f"{what} {path}: refused by torch.load(weights_only=True) because it holds more than tensors "
            f"({first_line}). Re-save it as a plain state dict: torch.save(model.state_dict(), path)"
        ) from err
    except (RuntimeError, EOFError) as err:  # truncated download, HTML error page, wrong file
        raise ValueError(f"{what} {path}: not a readable torch checkpoint ({err}); fetch it again") from err
    if not isinstance(loaded, Mapping):
        kind = type(loaded).__name__
        raise ValueError(f"{what} {path}: expected a state dict (names -> tensors), got a {kind}")
    for wrapper in ("state_dict", "model", "network"):
        if wrapper in loaded and isinstance(loaded[wrapper], Mapping) and len(loaded) <= 3:
            loaded = loaded[wrapper]
            break
    bad = [k for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{what} {path}: entries that are not tensors: {bad[:5]}; need a flat state dict")
    return dict(loaded)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored in a ``.safetensors`` file (``{}`` when there is none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def check_state_dict(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str, hint: str = ""
) -> None:
    """Raise unless ``state`` has exactly the keys of ``expected``, each with the same shape.

    Args:
        expected: the model's own state dict (or the part of it being loaded).
        state: what the checkpoint provides, already renamed to the model's key names.
        source: where ``state`` came from (file name, loader), the start of every message.
        hint: what to do, appended to the message (e.g. "build the model with the size of the file").

    Raises:
        CheckpointKeyError: missing and/or unexpected keys, named.
        ValueError: shape mismatches, each with both shapes.
    """
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    tail = f". {hint}" if hint else ""
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {format_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {format_keys(unexpected)}")
        raise CheckpointKeyError(f"{source}: {'; '.join(parts)}{tail}")
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise ValueError(f"{source}: shape mismatches ({len(wrong)}): {'; '.join(wrong[:6])}{tail}")


def load_strict(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    hint: str = "",
    assign: bool = False,
) -> torch.nn.Module:
    """:func:`check_state_dict` against ``module.state_dict()``, then ``load_state_dict(strict=True)``."""
    check_state_dict(module.state_dict(), state, source, hint)
    module.load_state_dict(state, strict=True, assign=assign)
    return module
