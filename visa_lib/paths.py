"""Every path the package relies on, in one place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: Root of the repository checkout (the folder holding ``visa_lib/``).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Bundled sample data and toy weights. Override with ``VISA_DATA_SAMPLES``.
DATA_SAMPLES = Path(os.environ.get("VISA_DATA_SAMPLES", REPO_ROOT / "data_samples"))

#: ReasonVOS-lite, the synthetic ReVOS-format dataset shipped with the package.
REASONVOS_LITE = DATA_SAMPLES / "reasonvos_lite"

#: Shipped toy weights (small safetensors files, each reproducible by a script in ``scripts/``).
TOY_WEIGHTS = DATA_SAMPLES / "weights"

#: Where notebooks and the demo write their results. Override with ``VISA_OUTPUTS``.
OUTPUTS = Path(os.environ.get("VISA_OUTPUTS", REPO_ROOT / "outputs"))


def display_path(path: str | Path) -> str:
    """``path`` as printed in notebooks and logs: relative to the repository when inside it.

    Keeps machine-specific folders (``/home/...``, ``/content/...``) out of saved notebook outputs.
    """
    path = Path(path)
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix() or "."
    except ValueError:
        return str(path)


#: Suffix of a finished result renamed aside while its replacement moves in (``.<name>.replaced``).
REPLACED_SUFFIX = ".replaced"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def swap_in(new: Path, final: Path) -> None:
    """Rename the finished ``new`` to ``final``; an earlier ``final`` is removed only once ``new`` is there.

    The earlier result is renamed aside to ``.<name>.replaced`` first (one rename), then ``new`` in,
    then the aside copy is removed, so an interruption at any point leaves a whole result: the new one
    at ``final``, or the old one at ``final`` or aside, where :func:`restore_replaced` puts it back.
    """
    aside = final.with_name(f".{final.name}{REPLACED_SUFFIX}")
    if final.exists() or final.is_symlink():
        _remove(aside)
        os.replace(final, aside)
    os.replace(new, final)
    _remove(aside)


def restore_replaced(folder: Path) -> None:
    """Finish the swaps an interruption cut short in ``folder``: put back each old result still aside
    whose replacement never arrived, and drop those whose replacement did."""
    for aside in Path(folder).glob(f".*{REPLACED_SUFFIX}"):
        final = aside.with_name(aside.name[1 : -len(REPLACED_SUFFIX)])
        if final.exists():
            _remove(aside)
        else:
            os.replace(aside, final)
