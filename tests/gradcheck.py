"""Test helpers: numerical gradient checks of a whole layer, and comparisons with torch.

Every check here must be able to fail. The gradient check runs at random parameters
(a LayerNorm left at ones/zeros is an identity that hides a wrong term or two norms
swapped); a gradient counts as zero only where it is named as zero by construction;
every input needs its gradient; torch comparisons are float64 at 1e-10 relative.
"""
import numpy as np

from cs_vit import backend
from cs_vit.backend import get_array_module, to_numpy
from cs_vit.gradient_check import eval_numerical_gradient_array, rel_error

GRAD_TOL = 1e-7
# float64 against float64: only rounding differs (about 1e-15), so 1e-10 of the largest value
# still fails a LayerNorm with eps=0 where torch has 1e-6 (a 4e-7 difference on a unit input).
TORCH_RTOL = 1e-10
# float32 against float64 with the same (float32-rounded) parameters and inputs.
FLOAT32_RTOL = 1e-5
# Below this a gradient is zero: the numerical estimate of a zero gradient is rounding noise.
ZERO_GRAD = 1e-9
# The only gradient that is exactly zero by construction: attention's key bias. Adding b to
# every key adds q.b to all of a query's scores alike, and softmax ignores such a shift.
ZERO_BY_CONSTRUCTION = "k_proj.bias"


def as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def randomize_parameters(layer, seed=0, scale=0.5):
    """Draw every parameter of ``layer`` from N(0, scale^2), in place; returns ``layer``.

    A fresh layer starts with LayerNorm gains at one and biases at zero: identities under
    which a dropped term or two norms wired the wrong way round give the right numbers.
    """
    rng = np.random.default_rng(seed)
    for _, value, _ in layer.parameters():
        values = scale * rng.standard_normal(value.shape)
        value[...] = get_array_module(value).asarray(values, dtype=value.dtype)
    return layer


def with_fixed_masks(forward, seed=0):
    """``forward`` that reseeds the backend first, so every call draws the same dropout masks."""
    def call(*inputs):
        backend.seed(seed)
        return forward(*inputs)
    return call


def _as_numpy(value):
    return value.detach().numpy() if hasattr(value, "detach") else to_numpy(value)


def _largest(value):
    return float(np.max(np.abs(_as_numpy(value)), initial=0))


def is_zero_by_construction(name):
    """Whether the gradient called ``name`` must be exactly zero (attention's key bias)."""
    return name == ZERO_BY_CONSTRUCTION or name.endswith("." + ZERO_BY_CONSTRUCTION)


def gradient_problem(name, analytic, numerical, tol):
    """Why the gradient ``name`` fails the check (a sentence), or None when it passes."""
    analytic, numerical = to_numpy(analytic), to_numpy(numerical)
    if analytic.shape != numerical.shape:
        return f"has shape {analytic.shape}, expected {numerical.shape}"
    largest = max(_largest(analytic), _largest(numerical))
    if is_zero_by_construction(name):
        return None if largest < ZERO_GRAD else (
            f"must be zero (softmax ignores a shift shared by all keys), max |grad| {largest:.3g}")
    if largest < ZERO_GRAD:
        return (f"is zero on both sides, so the check says nothing: the output does not depend "
                f"on it (only {ZERO_BY_CONSTRUCTION} may be zero)")
    error = rel_error(analytic, numerical)
    return None if error < tol else f"rel_error {error:.3g} >= {tol}"


def numerical_gradient(f, x, df, h=1e-3):
    """Gradient of sum(f(x) * df), accurate to ~1e-12 even for tiny entries.

    A centred difference has error O(h^2) from truncation plus O(eps/h) from
    rounding; Richardson extrapolation of two of them, (4 g(h/2) - g(h)) / 3,
    cancels the h^2 term, so a large h keeps rounding small too.
    """
    coarse = eval_numerical_gradient_array(f, x, df, h)
    fine = eval_numerical_gradient_array(f, x, df, h / 2)
    return (4 * fine - coarse) / 3


def layer_gradients(layer, inputs, call=None, seed=0, h=1e-3):
    """{"dx0": (analytic, numerical), ..., parameter name: (analytic, numerical)}.

    ``inputs`` is a tuple of float64 arrays; ``call(*inputs)`` (default
    ``layer.forward``) must be deterministic. Backward must return one gradient per input.
    """
    call = call or layer.forward
    out = call(*inputs)
    # dout lives where out does (NumPy or CuPy), in float64.
    dout = get_array_module(out).asarray(np.random.default_rng(seed).standard_normal(out.shape))
    input_grads = as_tuple(layer.backward(dout))
    assert len(input_grads) == len(inputs), (
        f"backward returned {len(input_grads)} input gradient(s) for {len(inputs)} input(s); "
        "it must return one per input, in the order of the inputs")
    pairs = {f"dx{i}": (dx, numerical_gradient(lambda _: call(*inputs), x, dout, h))
             for i, (x, dx) in enumerate(zip(inputs, input_grads))}
    param_grads = {name: grad.copy() for name, _, grad in layer.parameters()}
    for name, value, _ in layer.parameters():
        pairs[name] = (param_grads[name],
                       numerical_gradient(lambda _: call(*inputs), value, dout, h))
    return pairs


def assert_gradients_match(layer, inputs, call=None, tol=GRAD_TOL, h=1e-3, seed=0):
    """Every input and parameter gradient of ``layer`` equals the numerical one.

    The parameters are first drawn at random (:func:`randomize_parameters`). Each
    gradient must have rel_error < ``tol`` and must not be zero, except the ones zero by
    construction (:data:`ZERO_BY_CONSTRUCTION`), which must be. Returns {name: rel_error}.
    """
    randomize_parameters(layer, seed + 1)
    pairs = layer_gradients(layer, inputs, call, seed, h)
    problems = {name: problem for name, (analytic, numerical) in pairs.items()
                if (problem := gradient_problem(name, analytic, numerical, tol))}
    errors = {name: rel_error(analytic, numerical) for name, (analytic, numerical) in pairs.items()
              if analytic.shape == numerical.shape}
    assert not problems, (f"gradients off against the numerical gradient: {problems}; "
                          f"all rel_errors: {errors}")
    return errors


def relative_diff(actual, expected, scale=None):
    """max |actual - expected| / scale, by default max |expected| (inf for different shapes)."""
    actual, expected = _as_numpy(actual), _as_numpy(expected)
    if actual.shape != expected.shape:
        return np.inf
    diff = _largest(actual - expected)
    scale = _largest(expected) if scale is None else scale
    return diff / scale if scale else (0.0 if diff == 0 else np.inf)


def assert_close(actual, expected, what, rtol=TORCH_RTOL):
    """``actual`` equals ``expected`` to ``rtol`` of expected's largest magnitude (0: exactly)."""
    actual, expected = _as_numpy(actual), _as_numpy(expected)
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape}, expected {expected.shape}")
    diff = np.abs(actual - expected)
    bound = rtol * _largest(expected)
    if not np.all(diff <= bound):  # NaN fails too
        index = np.unravel_index(np.argmax(np.where(np.isnan(diff), np.inf, diff)), diff.shape)
        raise AssertionError(
            f"{what} is off: max |diff| {np.max(diff)} > {rtol} x max |expected| = {bound:.3g} "
            f"(rel_error {rel_error(actual, expected):.3g}); at index {index} got "
            f"{actual[index]!r}, expected {expected[index]!r}")


def assert_all_close(pairs, what, rtol=TORCH_RTOL):
    """Each {name: (actual, expected)} pair agrees to ``rtol`` of expected's largest value.

    A gradient zero by construction is rounding noise on both sides: it must be zero to
    ``rtol`` of the largest value compared.
    """
    largest = max(_largest(expected) for _, expected in pairs.values())
    diffs = {name: relative_diff(actual, expected,
                                 largest if is_zero_by_construction(name) else None)
             for name, (actual, expected) in pairs.items()}
    bad = {name: diff for name, diff in diffs.items() if not diff <= rtol}
    assert not bad, (f"differs from {what} by more than {rtol} of the largest value "
                     f"(max |diff| / max |expected|): {bad}; all: {diffs}")


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


def param_grad_pairs(layer, pairs):
    """{name: (our gradient, torch's ``.grad`` rows)} for each of ``layer``'s parameters."""
    return {name: (grad, pairs[name][0].grad[pairs[name][1]])
            for name, _, grad in layer.parameters()}


def assert_matches_torch(layer, ref, x, torch_params):
    """Forward and backward of ``layer`` equal those of the torch module ``ref``.

    ``torch_params`` maps each of ``layer``'s parameter names to the torch
    parameter it copies into; both get the same random parameters, input and
    upstream gradient.
    """
    import torch

    randomize_parameters(layer)
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


def torch_optimizer(torch_cls, tensors, decayed, weight_decay=0.0, **options):
    """``torch_cls`` over {name: tensor}, with weight decay only on the names in ``decayed``."""
    groups = [{"params": [t for n, t in tensors.items() if n in decayed],
               "weight_decay": weight_decay},
              {"params": [t for n, t in tensors.items() if n not in decayed],
               "weight_decay": 0.0}]
    return torch_cls([group for group in groups if group["params"]], **options)


def _forward_and_backward(layer, inputs, dout_seed, call):
    """{"out": ..., "dx0": ..., parameter name: grad} of one forward and backward pass."""
    out = call(layer, *inputs)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape).astype(np.float32)
    input_grads = as_tuple(layer.backward(dout.astype(out.dtype)))
    results = {"out": out, **{f"dx{i}": dx for i, dx in enumerate(input_grads)}}
    results.update({name: grad.copy() for name, _, grad in layer.parameters()})
    return results


def assert_float32_matches_float64(make_layer, inputs, call=None, rtol=FLOAT32_RTOL, seed=0):
    """``make_layer()`` in float32 computes what it computes in float64, and stays float32.

    Both copies get the same random parameters, inputs and upstream gradient, rounded to
    float32, so only the arithmetic differs. The float32 output, input gradients and
    parameter gradients must be float32 and within ``rtol`` of the float64 ones (relative
    to each one's largest value). ``call(layer, *inputs)`` defaults to ``layer.forward``.
    """
    call = call or (lambda layer, *xs: layer.forward(*xs))
    with backend.precision("float32"):
        layer32 = randomize_parameters(make_layer(), seed)
    with backend.precision("float64"):
        layer64 = make_layer()
    for (_, value64, _), (_, value32, _) in zip(layer64.parameters(), layer32.parameters()):
        value64[...] = value32
    runs = {}
    for dtype, layer in ((np.float64, layer64), (np.float32, layer32)):
        arrays = tuple(np.asarray(x).astype(np.float32).astype(dtype) for x in inputs)
        with backend.precision(dtype):
            runs[dtype] = _forward_and_backward(layer, arrays, seed + 1, call)
    wrong_dtype = {name: value.dtype for name, value in runs[np.float32].items()
                   if value.dtype != np.float32}
    assert not wrong_dtype, f"a float32 layer gave arrays of another dtype: {wrong_dtype}"
    assert_all_close({name: (runs[np.float32][name], runs[np.float64][name])
                      for name in runs[np.float64]}, "the float64 run", rtol)


def assert_same_parameters(model, other):
    """Every parameter of ``model`` equals the same-named one of ``other``, bit for bit."""
    for (name, a, _), (other_name, b, _) in zip(model.parameters(), other.parameters()):
        assert name == other_name
        np.testing.assert_array_equal(a, b, err_msg=name)
