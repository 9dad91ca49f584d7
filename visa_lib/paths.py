"""Every path the package relies on, in one place."""

from __future__ import annotations

import os
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
