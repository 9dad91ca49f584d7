"""The first cell of every notebook: device cascade, seeds, figure style.

Notebooks call :func:`setup` once, so device selection, seeding and the look of figures are written
in one place::

    from visa_lib.notebook import setup
    DEVICE = setup(seed=0)

Run the notebooks locally with ``make lab`` (JupyterLab on the repository), or on Colab from the badge
at the top of each notebook (its install cell runs only there).
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np

from visa_lib.viz import FIGURE_DPI

#: True when running inside Google Colab (the install cell of each notebook checks this).
IN_COLAB = "google.colab" in sys.modules


def pick_device(prefer: str | None = None):
    """The best available torch device: CUDA, then Apple MPS, then CPU (``prefer`` forces one)."""
    import torch

    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for reproducible notebook runs."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0, device: str | None = None, verbose: bool = True, figure_dpi: int = FIGURE_DPI):
    """Pick the device, seed everything, set the figure style, print what was chosen.

    The style (:func:`visa_lib.viz.apply_style`): ``figure_dpi`` dots per inch, fonts of 9 pt and more,
    the colour-blind-safe palette as colour cycle. ``VISA_DEVICE`` in the environment overrides the
    device cascade (e.g. ``VISA_DEVICE=cpu``). Returns the ``torch.device``.
    """
    import torch

    from visa_lib.viz import apply_style

    apply_style(dpi=figure_dpi)

    chosen = pick_device(device or os.environ.get("VISA_DEVICE"))
    seed_everything(seed)
    if verbose:
        name = torch.cuda.get_device_name(chosen) if chosen.type == "cuda" else chosen.type
        print(f"device: {name} | torch {torch.__version__} | seed {seed} | colab: {IN_COLAB}")
        if chosen.type == "cpu":
            print("running on the CPU: the notebooks use the toy rung (tiny models, minutes).")
    return chosen
