"""The first cell of every notebook: device cascade, seeds, and where things are.

Notebooks call :func:`setup` once, so device selection and seeding are written in one place::

    from visa_lib.notebook import setup
    DEVICE = setup(seed=0)
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np

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


#: Resolution of notebook figures: low enough that committed notebooks stay small (< 1 MB).
FIGURE_DPI = 60


def setup(seed: int = 0, device: str | None = None, verbose: bool = True, figure_dpi: int = FIGURE_DPI):
    """Pick the device, seed everything, set the figure resolution, print what was chosen.

    ``VISA_DEVICE`` in the environment overrides the cascade (e.g. ``VISA_DEVICE=cpu``).
    Returns the ``torch.device``.
    """
    import matplotlib
    import torch

    matplotlib.rcParams["figure.dpi"] = figure_dpi

    chosen = pick_device(device or os.environ.get("VISA_DEVICE"))
    seed_everything(seed)
    if verbose:
        name = torch.cuda.get_device_name(chosen) if chosen.type == "cuda" else chosen.type
        print(f"device: {name} | torch {torch.__version__} | seed {seed} | colab: {IN_COLAB}")
        if chosen.type == "cpu":
            print("running on the CPU: the notebooks use the toy rung (tiny models, minutes).")
    return chosen
