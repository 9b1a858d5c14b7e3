import ast
import pathlib

import numpy as np
import pytest

import cs_vit
from cs_vit import backend
from cs_vit.models import VisionTransformer

PACKAGE = pathlib.Path(cs_vit.__file__).parent
ARRAY_CODE = ["layers", "models", "optim", "solvers"]
HOST_SIDE = {  # files that work on host arrays by design, and why
    "models/torchvision_convert.py": "converts NumPy state dicts to and from torch",
    "solvers/classification_solver_vit.py": "seeds and epoch statistics live on the host",
    "solvers/checkpoint.py": "checkpoints are NumPy .npz files",
}


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("folder", ARRAY_CODE)
def test_array_code_never_imports_numpy_directly(folder):
    offenders = [str(p.relative_to(PACKAGE)) for p in (PACKAGE / folder).glob("*.py")
                 if any(m == "numpy" or m.startswith("numpy.") for m in imported_modules(p))]
    offenders = [p for p in offenders if p not in HOST_SIDE]
    assert not offenders, f"use `from cs_vit.backend import xp` instead of numpy in {offenders}"


def test_xp_follows_the_active_backend():
    assert backend.name() == "numpy"
    assert backend.xp.zeros(3).__class__ is np.ndarray
    assert "numpy" in repr(backend.xp)


def test_asking_for_cupy_without_it_is_a_clear_error():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(backend.BackendUnavailableError, match="pip install"):
        backend.use("cupy")
    assert backend.name() == "numpy"


def test_unknown_backends_and_devices_are_rejected():
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        backend.use("torch")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        backend.use_device("tpu")


def test_default_dtype_is_float32_and_can_be_raised_for_checks():
    assert backend.default_dtype() == np.float32
    assert backend.asarray([1.0, 2.0]).dtype == np.float32
    with backend.precision("float64"):
        assert backend.asarray([1.0]).dtype == np.float64
    assert backend.default_dtype() == np.float32
    with pytest.raises(ValueError, match="float32 or float64"):
        backend.set_default_dtype("float16")


def test_asarray_keeps_integer_labels_integer():
    assert backend.asarray(np.array([1, 2])).dtype.kind == "i"


def test_seed_makes_random_draws_repeatable():
    backend.seed(3)
    first = backend.rng().random(4)
    backend.seed(3)
    np.testing.assert_array_equal(first, backend.rng().random(4))


TINY_VIT = dict(image_size=8, patch_size=4, in_channels=3, num_classes=3, embed_dim=8, depth=1,
                num_heads=2, mlp_dim=16)


def test_initialisers_draw_from_the_host_generator_and_match_across_backends(monkeypatch):
    backend.seed(4)
    expected = VisionTransformer(**TINY_VIT).state_dict()
    made = []

    class FakeGpuRandom:  # stands in for cupy.random: records the generators it makes
        @staticmethod
        def default_rng(seed):
            made.append(seed)
            return np.random.default_rng(seed)

    class FakeCupy:  # NumPy under CuPy's name, with that random module
        __name__, random = "cupy", FakeGpuRandom

        def __getattr__(self, name):
            return getattr(np, name)

    fake_cupy = FakeCupy()
    monkeypatch.setattr(backend._state, "name", "cupy")
    monkeypatch.setattr(backend._state, "module", fake_cupy)
    monkeypatch.setattr(backend._state, "device_rng", None)  # put back afterwards
    backend.seed(4)
    model = VisionTransformer(**TINY_VIT)
    assert made == []  # building a model draws on the host only
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    assert backend.rng() is backend.rng()  # the GPU generator: made once, when first asked for
    assert made == [4]


def test_rng_state_round_trips():
    backend.seed(5)
    state = backend.get_rng_state()
    expected = backend.rng().random(3)
    backend.seed(99)
    backend.set_rng_state(state)
    np.testing.assert_array_equal(backend.rng().random(3), expected)


def test_to_numpy_passes_numpy_through():
    a = np.arange(3)
    assert backend.to_numpy(a) is a
