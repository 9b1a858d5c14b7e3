"""gradient_check refuses what would give a student a silently wrong gradient."""
import numpy as np
import pytest

from cs_vit.gradient_check import (
    eval_numerical_gradient, eval_numerical_gradient_array, grad_check_sparse, rel_error,
)


def test_rel_error_refuses_arrays_of_different_shapes():
    with pytest.raises(ValueError, match=r"rel_error compares arrays of one shape, got \(3,\) "
                                         r"and \(3, 3\)"):
        rel_error(np.ones(3), np.ones((3, 3)))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, np.bool_])
def test_an_x_that_cannot_hold_x_plus_h_is_refused(dtype):
    x = np.ones(3, dtype=dtype)
    with pytest.raises(TypeError, match=rf"eval_numerical_gradient needs x of a float dtype that "
                                        rf"can hold x \+ h, got dtype {np.dtype(dtype)}; gradient "
                                        rf"checks compute in float64"):
        eval_numerical_gradient(lambda a: float(np.sum(a * a)), x, verbose=False)


def test_x_is_restored_when_f_raises():
    x = np.array([1.0, 2.0, 3.0])

    def fails(a):
        raise RuntimeError("the student's forward has a bug")

    with pytest.raises(RuntimeError, match="forward has a bug"):
        eval_numerical_gradient(fails, x, verbose=False)
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])


def test_a_function_returning_an_array_is_pointed_to_the_array_version():
    with pytest.raises(ValueError, match=r"needs f to return one number \(a loss\), got an array "
                                         r"of shape \(2, 3\); for a function that returns an "
                                         r"array, use eval_numerical_gradient_array"):
        eval_numerical_gradient(np.sin, np.ones((2, 3)), verbose=False)


def test_an_upstream_gradient_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"f\(x\) has shape \(2, 3\) but df has shape \(3,\)"):
        eval_numerical_gradient_array(np.sin, np.ones((2, 3)), np.ones(3))


@pytest.mark.parametrize("x, h, match", [
    (np.ones((0, 3)), 1e-5, r"got an empty x \(shape \(0, 3\)\): there is no gradient"),
    (np.ones(3), 0.0, r"needs a step h > 0 \(1e-5 is usual\), got 0.0"),
    (np.ones(3), float("nan"), "needs a step h > 0"),
])
def test_an_empty_x_or_a_zero_step_is_refused(x, h, match):
    with pytest.raises(ValueError, match=match):
        grad_check_sparse(lambda a: float(np.sum(a)), x, np.ones_like(x), h=h)


def test_a_float32_x_still_gets_a_float64_gradient():
    x = np.array([0.5, -1.5], dtype=np.float32)
    grad = eval_numerical_gradient(lambda a: float(np.sum(a.astype(np.float64) ** 2)), x,
                                   verbose=False, h=1e-3)
    assert grad.dtype == np.float64 and rel_error(grad, 2 * x.astype(np.float64)) < 1e-4
