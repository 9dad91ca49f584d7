"""The notebook set-up helper seeds reproducibly and honours an explicit device."""

import numpy as np
import torch

from visa_lib.notebook import pick_device, setup


def test_setup_seeds_numpy_and_torch():
    setup(seed=3, verbose=False)
    a = (np.random.rand(3), torch.rand(3))
    setup(seed=3, verbose=False)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_explicit_device_wins(monkeypatch):
    assert pick_device("cpu").type == "cpu"
    monkeypatch.setenv("VISA_DEVICE", "cpu")
    assert setup(verbose=False).type == "cpu"


def test_setup_sets_legible_figures():
    import matplotlib

    setup(verbose=False)
    rc = matplotlib.rcParams
    assert rc["figure.dpi"] >= 100 and rc["savefig.dpi"] >= 100
    sizes = [
        rc[k]
        for k in (
            "font.size",
            "axes.titlesize",
            "axes.labelsize",
            "xtick.labelsize",
            "ytick.labelsize",
            "legend.fontsize",
        )
    ]
    assert all(isinstance(s, (int, float)) and s >= 9 for s in sizes), sizes
