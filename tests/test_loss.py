import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from cs_vit.gradient_check import eval_numerical_gradient, rel_error
from cs_vit.layers import softmax_cross_entropy
from tests.gradcheck import GRAD_TOL, assert_close


def random_problem(N, K, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((N, K)), rng.integers(0, K, size=N)


def torch_cross_entropy(logits, labels, label_smoothing):
    logits_t = torch.from_numpy(logits).requires_grad_()
    loss_t = F.cross_entropy(logits_t, torch.from_numpy(labels), label_smoothing=label_smoothing)
    loss_t.backward()
    return loss_t.item(), logits_t.grad


@pytest.mark.task6
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_loss_gradient_matches_numerical_gradient(label_smoothing):
    logits, labels = random_problem(4, 5, seed=1)
    _, dlogits = softmax_cross_entropy(logits, labels, label_smoothing)
    numerical = eval_numerical_gradient(
        lambda x: softmax_cross_entropy(x, labels, label_smoothing)[0], logits, verbose=False
    )
    assert rel_error(dlogits, numerical) < GRAD_TOL


@pytest.mark.task6
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
def test_loss_matches_torch_cross_entropy(label_smoothing):
    logits, labels = random_problem(8, 10, seed=2, scale=3.0)
    loss_t, dlogits_t = torch_cross_entropy(logits, labels, label_smoothing)
    loss, dlogits = softmax_cross_entropy(logits, labels, label_smoothing)
    assert isinstance(loss, float)
    assert_close(np.float64(loss), loss_t, "loss vs torch")
    assert_close(dlogits, dlogits_t, 'dlogits vs torch')


@pytest.mark.task6
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_loss_is_stable_for_huge_logits(label_smoothing):
    logits, labels = random_problem(6, 5, seed=3)
    logits = np.sign(logits) * 1e4
    logits[0] = [1e4, -1e4, 1e4, -1e4, 1e4]
    loss_t, dlogits_t = torch_cross_entropy(logits, labels, label_smoothing)
    loss, dlogits = softmax_cross_entropy(logits, labels, label_smoothing)
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert_close(np.float64(loss), loss_t, "loss vs torch")
    assert_close(dlogits, dlogits_t, 'dlogits vs torch')


@pytest.mark.task6
def test_loss_is_stable_for_huge_float32_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=np.float32)
    loss, dlogits = softmax_cross_entropy(logits, np.array([1, 2]), label_smoothing=0.1)
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))


@pytest.mark.task6
def test_loss_keeps_logits_dtype_for_the_gradient():
    logits, labels = random_problem(3, 4, seed=4)
    _, dlogits = softmax_cross_entropy(logits.astype(np.float32), labels)
    assert dlogits.dtype == np.float32


@pytest.mark.task6
def test_loss_of_uniform_logits_is_log_k():
    loss, _ = softmax_cross_entropy(np.zeros((3, 7)), np.array([0, 3, 6]))
    assert loss == pytest.approx(np.log(7))


def test_loss_rejects_logits_that_are_not_2d():
    with pytest.raises(ValueError, match=r"logits must have shape \(N, K\).*got shape \(2, 3, 4\)"):
        softmax_cross_entropy(np.zeros((2, 3, 4)), np.array([0, 1]))


def test_loss_rejects_labels_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(2,\).*got shape \(3,\)"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))


def test_loss_rejects_labels_that_are_not_integers():
    with pytest.raises(TypeError, match="labels must be integer class indices, got dtype float64"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))


@pytest.mark.parametrize("bad_label", [-1, 3])
def test_loss_rejects_labels_out_of_range(bad_label):
    with pytest.raises(ValueError, match=rf"labels must lie in \[0, 3\).*got label {bad_label}"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, bad_label]))


@pytest.mark.parametrize("label_smoothing", [-0.1, 1.5])
def test_loss_rejects_label_smoothing_outside_zero_one(label_smoothing):
    with pytest.raises(ValueError, match=r"label_smoothing must lie in \[0, 1\]"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing)


problems = st.tuples(st.integers(1, 6), st.integers(1, 8), st.integers(0, 2**16),
                     st.floats(0.0, 1.0))


@pytest.mark.task6
@settings(max_examples=25, deadline=None)
@given(problem=problems)
def test_loss_gradient_rows_sum_to_zero(problem):
    # softmax and the smoothed target each sum to 1 over the classes.
    N, K, seed, label_smoothing = problem
    logits, labels = random_problem(N, K, seed, scale=5.0)
    _, dlogits = softmax_cross_entropy(logits, labels, label_smoothing)
    np.testing.assert_allclose(dlogits.sum(axis=1), 0, atol=1e-12)


@pytest.mark.task6
@settings(max_examples=25, deadline=None)
@given(problem=problems)
def test_loss_is_non_negative(problem):
    N, K, seed, label_smoothing = problem
    logits, labels = random_problem(N, K, seed, scale=5.0)
    loss, _ = softmax_cross_entropy(logits, labels, label_smoothing)
    assert loss >= 0
