"""Read the CIFAR-10 pickles without letting a file run code or claim memory it does not hold.

``pickle.load`` calls whatever functions a file names, so a doctored file can
run ``os.system``. This unpickler resolves only what plain data needs: NumPy's
array and dtype rebuilders (as pickle protocols 2 to 5 write them), and the
latin-1 ``_codecs.encode`` that protocol 2 uses for bytes. Any other global stops
the load with an ``UnsafePickleError`` before anything is called.

Before unpickling, the opcodes are walked without running any, so a length or
memo index larger than the file itself (which CPython would allocate up front)
is refused; and the rebuilders refuse object arrays and shapes NumPy never
writes. Unpickling therefore takes memory in proportion to the file's size.
"""
from __future__ import annotations

import io
import pickle
import pickletools

import numpy as np

from cs_vit.io import open_regular

try:
    from numpy._core import multiarray, numeric
except ImportError:  # NumPy < 2
    from numpy.core import multiarray, numeric

_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list; nothing from it was run."""


def _refuse(what):
    raise UnsafePickleError(f"it asks for {what}, which plain data never needs")


def _plain_dtype(*args):
    """``numpy.dtype(*args)``, refusing object dtypes (each element would be a pickled object)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        _refuse(f"an object array ({dtype})")
    return dtype


def _empty_array(cls, shape, typecode):
    """NumPy's ``_reconstruct`` as it is pickled: an empty ndarray that ``__setstate__`` fills."""
    if cls is not np.ndarray or tuple(shape) != (0,):
        _refuse(f"an array of class {getattr(cls, '__name__', cls)} and shape {shape}")
    return multiarray._reconstruct(cls, shape, typecode)


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode`` as protocol 2 pickles bytes: ``text.encode("latin1")`` only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        _refuse(f"_codecs.encode with {type(text).__name__} and encoding {encoding!r}")
    return text.encode("latin1")


# Files written under NumPy 1 and 2 spell the modules differently; both mean the same function.
_ALLOWED = {
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _empty_array for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): multiarray.scalar for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): numeric._frombuffer for core in ("core", "_core")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals plain NumPy data needs."""

    def __init__(self, file, source="<stream>"):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"it asks for the global {module}.{name}, and only NumPy arrays, dicts, lists, "
                "strings and numbers are allowed; a genuine CIFAR-10 file never does this"
            ) from None

    def load(self):
        """The unpickled object; an UnsafePickleError naming the source if it asks for more."""
        try:
            return super().load()
        except UnsafePickleError as err:
            raise UnsafePickleError(f"refused to load {self.source}: {err}, so the file may be "
                                    "tampered with") from None


def check_opcodes(data):
    """An UnpicklingError if the pickle ``data`` declares more than it holds.

    Walks the opcodes without building anything: a bytes or string length past
    the end of the data, or a memo index larger than the data, is refused.
    """
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in _MEMO_PUTS and int(arg) > len(data):
                raise ValueError(f"memo index {arg} in a pickle of {len(data):,} bytes")
    except ValueError as err:
        raise pickle.UnpicklingError(str(err)) from None


def safe_load(path):
    """Unpickle the file at ``path`` with :class:`RestrictedUnpickler` (bytes keys)."""
    with open_regular(path) as f:
        data = f.read()
    check_opcodes(data)
    return RestrictedUnpickler(io.BytesIO(data), source=path).load()
