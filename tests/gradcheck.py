"""Test helpers: numerical gradient checks of a whole layer, and torch conversion."""
import numpy as np

from cs_vit.gradient_check import eval_numerical_gradient_array, rel_error

GRAD_TOL = 1e-7
TORCH_TOL = 1e-6


def as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def layer_gradient_errors(layer, inputs, call=None, seed=0):
    """rel_error of every input and parameter gradient of ``layer`` vs numerical ones.

    ``inputs`` is a tuple of float64 arrays; ``call(*inputs)`` (default
    ``layer.forward``) must be deterministic. Returns {"dx0": err, "weight": err, ...}.
    """
    call = call or layer.forward
    out = call(*inputs)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    input_grads = as_tuple(layer.backward(dout))
    param_grads = {name: grad.copy() for name, _, grad in layer.parameters()}
    errors = {}
    for i, (x, dx) in enumerate(zip(inputs, input_grads)):
        numerical = eval_numerical_gradient_array(lambda _: call(*inputs), x, dout)
        errors[f"dx{i}"] = rel_error(dx, numerical)
    for name, value, _ in layer.parameters():
        numerical = eval_numerical_gradient_array(lambda _: call(*inputs), value, dout)
        errors[name] = rel_error(param_grads[name], numerical)
    return errors


def assert_gradients_match(layer, inputs, call=None, tol=GRAD_TOL):
    errors = layer_gradient_errors(layer, inputs, call)
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, f"gradients off (rel_error >= {tol}): {bad}"
    return errors


def max_abs_diff(ours, theirs):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    return float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))
