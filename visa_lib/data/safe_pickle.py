"""Read dataset pickles without running code: a restricted unpickler for ``mask_dict.pkl`` and refer files.

Python's ``pickle.load`` calls whatever callable a file names, so a doctored dataset file can run any code.
Datasets that ship pickles (Ref-YouTube-VOS / Ref-DAVIS17 ``mask_dict.pkl``, the refer annotations
``refs(unc).p``) only need plain data: containers, numbers, strings, bytes and numpy arrays. Everything
else is refused with :class:`UnsafePickleError` naming the file and the global it asked for, and nothing
from the file runs.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
from pathlib import Path
from typing import Any

#: ``(module, name)`` pairs a dataset pickle may name: plain containers and numpy array reconstruction.
_ALLOWED = {
    ("builtins", name)
    for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "complex", "slice")
} | {
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # how protocol-2 pickles (Python 2 era) store bytes
    ("copyreg", "_reconstructor"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class UnsafePickleError(ValueError):
    """A pickle asked for something other than plain data; it was not loaded and nothing in it ran."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="latin1")  # latin1 reads Python 2 pickles' byte strings losslessly
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles written by Python 2 name modules by their old names.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"{self.source}: the pickle asks for {module}.{name}, which is not plain data; refusing to "
                "load it (a dataset pickle holds only containers, numbers, strings and numpy arrays). "
                "Re-download the file from its publisher."
            )
        return super().find_class(module, name)


def load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` allowing plain data only.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafePickleError: the file names a global outside plain containers and numpy arrays.
        ValueError: the file is not a readable pickle (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as fh:
        try:
            return _RestrictedUnpickler(fh, str(path)).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError) as err:
            raise ValueError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None
