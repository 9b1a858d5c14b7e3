"""Test helpers: numerical gradient checks of a whole layer, and torch conversion."""
import numpy as np

from cs_vit.backend import get_array_module, to_numpy
from cs_vit.gradient_check import eval_numerical_gradient_array, rel_error

GRAD_TOL = 1e-7
TORCH_TOL = 1e-6
ZERO_GRAD = 1e-9


def as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def _error(analytic, numerical):
    """rel_error, except that two gradients both zero up to rounding count as equal.

    Some gradients are exactly 0 by construction (e.g. attention's key bias,
    which softmax ignores); their numerical estimate is pure rounding noise,
    whose rel_error says nothing.
    """
    analytic, numerical = to_numpy(analytic), to_numpy(numerical)
    if max(np.max(np.abs(analytic)), np.max(np.abs(numerical))) < ZERO_GRAD:
        return 0.0
    return rel_error(analytic, numerical)


def numerical_gradient(f, x, df, h=1e-3):
    """Gradient of sum(f(x) * df), accurate to ~1e-12 even for tiny entries.

    A centred difference has error O(h^2) from truncation plus O(eps/h) from
    rounding; Richardson extrapolation of two of them, (4 g(h/2) - g(h)) / 3,
    cancels the h^2 term, so a large h keeps rounding small too.
    """
    coarse = eval_numerical_gradient_array(f, x, df, h)
    fine = eval_numerical_gradient_array(f, x, df, h / 2)
    return (4 * fine - coarse) / 3


def layer_gradient_errors(layer, inputs, call=None, seed=0, h=1e-3):
    """rel_error of every input and parameter gradient of ``layer`` vs numerical ones.

    ``inputs`` is a tuple of float64 arrays; ``call(*inputs)`` (default
    ``layer.forward``) must be deterministic. Returns {"dx0": err, "weight": err, ...}.
    """
    call = call or layer.forward
    out = call(*inputs)
    # dout lives where out does (NumPy or CuPy), in float64.
    dout = get_array_module(out).asarray(np.random.default_rng(seed).standard_normal(out.shape))
    input_grads = as_tuple(layer.backward(dout))
    param_grads = {name: grad.copy() for name, _, grad in layer.parameters()}
    errors = {}
    for i, (x, dx) in enumerate(zip(inputs, input_grads)):
        numerical = numerical_gradient(lambda _: call(*inputs), x, dout, h)
        errors[f"dx{i}"] = _error(dx, numerical)
    for name, value, _ in layer.parameters():
        numerical = numerical_gradient(lambda _: call(*inputs), value, dout, h)
        errors[name] = _error(param_grads[name], numerical)
    return errors


def assert_gradients_match(layer, inputs, call=None, tol=GRAD_TOL, h=1e-3):
    errors = layer_gradient_errors(layer, inputs, call, h=h)
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, (f"gradients off (rel_error >= {tol}) against the numerical gradient: "
                     f"{bad}; all: {errors}")
    return errors


def assert_close(actual, expected, what, tol=TORCH_TOL):
    """``actual`` equals ``expected`` to ``tol`` (max |diff|), or a message showing the values."""
    actual = to_numpy(actual)
    expected = expected.detach().numpy() if hasattr(expected, "detach") else np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape}, expected {expected.shape}")
    diff = np.abs(actual - expected)
    if not np.all(diff <= tol):  # NaN fails too
        index = np.unravel_index(np.argmax(np.where(np.isnan(diff), np.inf, diff)), diff.shape)
        raise AssertionError(
            f"{what} is off: max |diff| {np.nanmax(diff) if np.isfinite(diff).any() else diff.max()}"
            f" > {tol} (rel_error {rel_error(actual, expected):.3g}); at index {index} got "
            f"{actual[index]!r}, expected {expected[index]!r}")


def max_abs_diff(ours, theirs):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    return float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))


def torch_attention_params(ref):
    """Our MultiHeadAttention parameter names -> (torch parameter, rows) of ``ref``.

    torch's ``nn.MultiheadAttention`` packs the q, k and v projections into one
    ``in_proj_weight`` (3D, D) and ``in_proj_bias`` (3D,); ours are separate Linears.
    """
    D = ref.embed_dim
    pairs = {}
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        rows = slice(i * D, (i + 1) * D)
        pairs[f"{name}.weight"] = (ref.in_proj_weight, rows)
        pairs[f"{name}.bias"] = (ref.in_proj_bias, rows)
    pairs["out_proj.weight"] = (ref.out_proj.weight, slice(None))
    pairs["out_proj.bias"] = (ref.out_proj.bias, slice(None))
    return pairs


def torch_encoder_layer_params(ref):
    """TransformerEncoderBlock names -> (torch parameter, rows) of ``nn.TransformerEncoderLayer``."""
    pairs = {f"attn.{name}": pair for name, pair in torch_attention_params(ref.self_attn).items()}
    for ours, theirs in (("norm1", ref.norm1), ("norm2", ref.norm2),
                         ("mlp.fc1", ref.linear1), ("mlp.fc2", ref.linear2)):
        for key in ("weight", "bias"):
            pairs[f"{ours}.{key}"] = (getattr(theirs, key), slice(None))
    return pairs


def copy_params_to_torch(layer, pairs):
    """Overwrite the torch parameters in ``pairs`` with ``layer``'s values."""
    for name, value, _ in layer.parameters():
        tensor, rows = pairs[name]
        tensor.data[rows] = tensor.new_tensor(np.asarray(value))


def param_grad_diffs(layer, pairs):
    """max_abs_diff of each of ``layer``'s parameter gradients vs torch's ``.grad``."""
    return {name: max_abs_diff(grad, pairs[name][0].grad[pairs[name][1]])
            for name, _, grad in layer.parameters()}


def assert_matches_torch(layer, ref, x, torch_params):
    """Forward and backward of ``layer`` equal those of the torch module ``ref``.

    ``torch_params`` maps each of ``layer``'s parameter names to the torch
    parameter it copies into; both get the same input and upstream gradient.
    """
    import torch

    with torch.no_grad():
        for name, value, _ in layer.parameters():
            torch_params[name].copy_(torch.from_numpy(value))
    x_t = torch.from_numpy(x).requires_grad_()
    out_t = ref(x_t)
    dout = np.random.default_rng(3).standard_normal(tuple(out_t.shape))
    out_t.backward(torch.from_numpy(dout))
    assert_close(layer.forward(x), out_t, "forward output vs torch")
    assert_close(layer.backward(dout), x_t.grad, "dx vs torch")
    for name, _, grad in layer.parameters():
        assert_close(grad, torch_params[name].grad, f"gradient of {name} vs torch")


def assert_same_parameters(model, other):
    """Every parameter of ``model`` equals the same-named one of ``other``, bit for bit."""
    for (name, a, _), (other_name, b, _) in zip(model.parameters(), other.parameters()):
        assert name == other_name
        np.testing.assert_array_equal(a, b, err_msg=name)
