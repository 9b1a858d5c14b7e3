"""Read the CIFAR-10 pickles without letting a file run code.

``pickle.load`` calls whatever functions a file names, so a doctored file can
run ``os.system``. This unpickler resolves only the globals that NumPy needs to
rebuild an array; dicts, lists, bytes, str and ints need none. Any other global
stops the load with an ``UnsafePickleError`` before anything is called.
"""
from __future__ import annotations

import pickle

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy < 2
    from numpy.core.multiarray import _reconstruct

# Files written under NumPy 1 and 2 spell the module differently; both mean the same function.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list; nothing from it was run."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only NumPy's array-rebuilding globals."""

    def __init__(self, file, source="<stream>"):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load {self.source}: it asks for the global "
                f"{module}.{name}, and only NumPy arrays, dicts, lists, strings and numbers "
                "are allowed; a genuine CIFAR-10 file never does this, so the file may be "
                "tampered with"
            ) from None


def safe_load(path):
    """Unpickle the file at ``path`` with :class:`RestrictedUnpickler` (bytes keys)."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, source=path).load()
