"""One place that decides which array library runs the maths: NumPy or CuPy.

Layer code never imports numpy. It writes ``from cs_vit.backend import xp`` and
calls ``xp.zeros(...)``, ``xp.matmul(...)``; ``xp`` forwards to whichever module
is active, so the same line runs on the CPU (NumPy) and on the GPU (CuPy).

    >>> from cs_vit import backend
    >>> backend.use("numpy")           # the default
    >>> backend.set_default_dtype("float64")   # for gradient checks
    >>> backend.seed(0)                # seeds init (backend.host_rng()) and dropout (backend.rng())

CuPy is optional: without it, or without a GPU, ``import cs_vit`` works and
``backend.use("cupy")`` raises a ``BackendUnavailableError`` that says why.
"""
from __future__ import annotations

import contextlib
import json

import numpy

_BACKENDS = ("numpy", "cupy")


class BackendUnavailableError(RuntimeError):
    """Raised when a backend is asked for but cannot run on this machine."""


class _State:
    name = "numpy"
    module = numpy
    dtype = numpy.dtype(numpy.float32)
    rng = numpy.random.default_rng(0)  # the host's generator
    device_rng, device_seed = None, 0  # CuPy's, made from device_seed when first asked for


_state = _State()


class _ActiveArrayModule:
    """Forwards attribute access to the active array module (numpy or cupy)."""

    def __getattr__(self, attr):
        return getattr(_state.module, attr)

    def __repr__(self):
        return f"<cs_vit.backend.xp -> {_state.name}>"


xp = _ActiveArrayModule()


def _import_cupy():
    try:
        import cupy
    except ImportError as err:
        raise BackendUnavailableError(
            "the 'cupy' backend needs CuPy, which is not installed "
            f"({err}). Install it with: pip install -e \".[gpu]\" "
            "(or the cupy-cudaXXx wheel matching your CUDA version), "
            "or use device='cpu'."
        ) from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken
        raise BackendUnavailableError(
            f"CuPy is installed but no usable CUDA GPU was found ({err}). "
            "Use device='cpu' on this machine."
        ) from err
    if count == 0:
        raise BackendUnavailableError(
            "CuPy is installed but this machine has no CUDA GPU. Use device='cpu'."
        )
    return cupy


def use(name: str) -> None:
    """Make ``name`` ("numpy" or "cupy") the active backend; keeps dtype and seed."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {_BACKENDS}")
    if name == _state.name:
        return
    module = numpy if name == "numpy" else _import_cupy()
    _state.name, _state.module = name, module
    seed(int(numpy.random.SeedSequence().entropy % 2**32))


def use_device(device: str) -> None:
    """Map a torch-style device string ("cpu" / "cuda") onto a backend."""
    names = {"cpu": "numpy", "numpy": "numpy", "cuda": "cupy", "gpu": "cupy", "cupy": "cupy"}
    if device not in names:
        raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")
    use(names[device])


def name() -> str:
    """The active backend's name: "numpy" or "cupy"."""
    return _state.name


def get_array_module(*arrays):
    """The module (numpy or cupy) that owns ``arrays``; the active one if none given."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy
            return cupy
    return _state.module if not arrays else numpy


def default_dtype():
    """The floating dtype new parameters and inputs get (float32 unless changed)."""
    return _state.dtype


def set_default_dtype(dtype) -> None:
    """Set the default float dtype: "float32" for training, "float64" for gradient checks."""
    dtype = numpy.dtype(dtype)
    if dtype not in (numpy.float32, numpy.float64):
        raise ValueError(f"default dtype must be float32 or float64, got {dtype}")
    _state.dtype = dtype


@contextlib.contextmanager
def precision(dtype):
    """Temporarily change the default dtype: ``with precision("float64"): ...``."""
    previous = _state.dtype
    set_default_dtype(dtype)
    try:
        yield
    finally:
        _state.dtype = previous


def asarray(a, dtype=None):
    """``a`` as an array of the active backend (floats in the default dtype).

    Host data is cast on the host, before any copy to the GPU.
    """
    arr = a if type(a).__module__.startswith("cupy") else numpy.asarray(a)
    if dtype is None and arr.dtype.kind == "f":
        dtype = _state.dtype
    arr = arr if dtype is None else arr.astype(dtype, copy=False)
    return _state.module.asarray(arr)


def to_numpy(a):
    """A NumPy copy (or view) of ``a``, wherever it lives; scalars pass through."""
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    return numpy.asarray(a)


def seed(value: int) -> None:
    """Seed the random generators: the host's, and the GPU's for what runs there.

    Parameter initialisers draw on the host (:func:`host_rng`), so a model built right
    after ``seed(value)`` has the same initial weights on every device. Dropout draws
    from :func:`rng`: on NumPy that same host generator, on CuPy a GPU generator seeded
    with ``value``, made when first asked for (its states take GPU memory, which a run
    without dropout never spends). So dropout masks differ between the two devices.
    """
    _state.rng = numpy.random.default_rng(int(value))
    _state.device_rng, _state.device_seed = None, int(value)


def host_rng():
    """The host's (NumPy's) random generator, which parameter initialisers draw from."""
    return _state.rng


def rng():
    """The active backend's random generator: NumPy's or CuPy's."""
    if _state.name == "numpy":
        return _state.rng
    if _state.device_rng is None:
        _state.device_rng = _state.module.random.default_rng(_state.device_seed)
    return _state.device_rng


def get_rng_state() -> str:
    """The generator's state as a JSON string (stored in checkpoints)."""
    if _state.name != "numpy":
        raise BackendUnavailableError("saving the RNG state is supported on the numpy backend")
    return json.dumps(_state.rng.bit_generator.state)


def set_rng_state(state: str) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    generator = numpy.random.default_rng()
    generator.bit_generator.state = json.loads(state)
    _state.rng = generator
