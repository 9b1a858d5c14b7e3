# cs-vit: instructor-only (tests of the fast tier, which the student release leaves out)
"""The fast tier on a real GPU: its kernels and its whole model equal the textbook tier.

Skipped on machines without CuPy and a CUDA GPU (CI has neither).
"""
import numpy as np
import pytest

from cs_vit import backend, fast
from cs_vit.fast.gelu import normal_cdf, normal_pdf
from cs_vit.models import VisionTransformer
from tests.test_gpu import SMALL_VIT, _gpu_available, adamw_on_both_backends, run_model

pytestmark = pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and a CUDA GPU")


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-15), (np.float32, 1e-6)])
def test_fused_gpu_kernels_equal_the_operations_they_replace(dtype, tol):
    backend.use("cupy")
    x = backend.xp.asarray(np.random.default_rng(5).standard_normal((64, 33)).astype(dtype))
    for function in (normal_cdf, normal_pdf):
        fused, plain = function(x), function.__wrapped__(x)
        assert function.kernel is not None, f"{function.__name__} ran without its fused kernel"
        assert fused.dtype == dtype
        np.testing.assert_allclose(backend.to_numpy(fused), backend.to_numpy(plain), rtol=0,
                                   atol=tol, err_msg=function.__name__)


@pytest.mark.parametrize("options", [dict(), dict(pool="mean", pos_encoding="sincos2d")])
@pytest.mark.parametrize("training", [True, False])
def test_fast_vit_on_the_gpu_equals_the_textbook_vit_on_numpy_in_float64(float64, options,
                                                                          training):
    rng = np.random.default_rng(0)
    images, dlogits = rng.standard_normal((3, 2, 8, 8)), rng.standard_normal((3, 5))
    model = VisionTransformer(**SMALL_VIT, **options).train(training)
    host = run_model(model, images, dlogits)
    backend.use("cupy")
    model.to_active_backend()
    with fast.enabled(True):
        device = run_model(model, images, dlogits)
    np.testing.assert_allclose(device[0], host[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(device[1], host[1], rtol=0, atol=1e-12)
    for name in host[2]:
        np.testing.assert_allclose(device[2][name], host[2][name], rtol=0, atol=1e-12,
                                   err_msg=name)


def test_flat_adamw_on_the_gpu_equals_the_textbook_adamw_on_numpy(float64):
    host, device = adamw_on_both_backends(lambda: fast.enabled(True))
    for name in host:  # not 1e-12: see tests/test_gpu.py's AdamW test
        np.testing.assert_allclose(device[name], host[name], rtol=0, atol=1e-8, err_msg=name)
