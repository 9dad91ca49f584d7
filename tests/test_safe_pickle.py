"""The restricted unpickler: plain data loads, anything that could run code is refused and does not run."""

from __future__ import annotations

import pickle
from collections import OrderedDict

import numpy as np
import pytest
from dataset_fixtures import OpensFile, RunsShell

from visa_lib.data.safe_pickle import UnsafePickleError, load_pickle


def test_plain_data_and_numpy_arrays_round_trip(tmp_path):
    data = {
        "0": [{"size": [4, 5], "counts": b"abc"}, None],
        "1": (1, 2.5, "x", True, None, {3, 4}, frozenset({5}), bytearray(b"z")),
        "arr": np.arange(6, dtype=np.int16).reshape(2, 3),
        "scalar": np.float32(1.5),
        "od": OrderedDict(a=1),
    }
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"mask_dict_{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        out = load_pickle(path)
        assert out["0"] == data["0"] and out["1"] == data["1"] and out["od"] == data["od"]
        assert out["arr"].dtype == np.int16 and np.array_equal(out["arr"], data["arr"])
        assert out["scalar"] == np.float32(1.5)


def test_a_pickle_that_tries_to_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "mask_dict.pkl"
    path.write_bytes(pickle.dumps({"0": [OpensFile(marker)]}))
    with pytest.raises(UnsafePickleError, match=r"mask_dict\.pkl: the pickle asks for (io|builtins)\.open"):
        load_pickle(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"0": [RunsShell("true")]}))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system|nt.system"):
        load_pickle(path)


def test_garbage_and_missing_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "mask_dict.pkl"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match=r"mask_dict\.pkl: not a readable pickle"):
        load_pickle(bad)
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_pickle(tmp_path / "nope.pkl")
