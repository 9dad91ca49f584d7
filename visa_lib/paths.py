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
