import numpy as np

from cs_vit.gradient_check import (
    eval_numerical_gradient, eval_numerical_gradient_array, eval_numerical_gradient_blobs,
    grad_check_sparse, rel_error,
)


def test_rel_error_is_zero_for_equal_arrays_and_relative_otherwise():
    assert rel_error(np.ones(3), np.ones(3)) == 0.0
    assert np.isclose(rel_error(np.array([1.0]), np.array([3.0])), 0.5)
    assert rel_error(np.zeros(2), np.full(2, 1e-12)) < 1e-3  # tiny values use the 1e-8 floor


def test_numerical_gradient_of_a_scalar_function():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    grad = eval_numerical_gradient(lambda a: np.sum(a ** 3), x, verbose=False)
    assert rel_error(grad, 3 * x ** 2) < 1e-8


def test_numerical_gradient_of_an_array_function_restores_x():
    x = np.random.default_rng(0).standard_normal((3, 4))
    before = x.copy()
    df = np.random.default_rng(1).standard_normal((3, 4))
    grad = eval_numerical_gradient_array(np.sin, x, df)
    assert rel_error(grad, np.cos(x) * df) < 1e-8
    np.testing.assert_array_equal(x, before)


def test_numerical_gradient_blobs_covers_every_input():
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    out = np.ones(2)
    grads = eval_numerical_gradient_blobs(lambda x, y: x * y, (a, b), out)
    assert rel_error(grads[0], b) < 1e-8 and rel_error(grads[1], a) < 1e-8


def test_grad_check_sparse_reports_small_errors_for_a_correct_gradient(capsys):
    x = np.random.default_rng(2).standard_normal((4, 5))
    errors = grad_check_sparse(lambda a: np.sum(a ** 2), x, 2 * x, num_checks=5)
    assert len(errors) == 5 and max(errors) < 1e-7
    assert "relative error" in capsys.readouterr().out
