# cs-vit: instructor-only (part of the grading runtime)
"""Stand-ins for sub-layers, so that a task's cases test that task's code alone.

A case of task 7 runs the student's encoder block, whose LayerNorms, attention
and MLP belong to tasks 3 to 5. At build time :class:`Recorder` runs the
solution with those sub-layers wrapped: it records each call's arguments and
output, and the sub-layer's Jacobian at that input. In the sandbox
:class:`Replayer` puts a replay in their place: given the recorded input it
returns the recorded output, and its backward returns ``dout @ J``, exact for any
``dout`` since a backward pass is linear in it. An input or argument the solution
never passed raises :class:`ReplayMismatch`, naming the sub-layer: the student's
code before that call computes something else. A token-wise sub-layer
(LayerNorm, MLP) is matched row by row, so that normalising the CLS row alone
and normalising every token both work.

Both sides fix dropout masks (:meth:`Swap.fixed_dropout`) and set parameters
(:meth:`Swap.params`): the recorder draws them, the replayer loads them.
"""
import inspect

import numpy as np

# An input matches a recorded one within this fraction of the recorded input's largest entry.
TOLERANCE = 1e-6
# Drawn parameters are the layer's own initial values plus this much Gaussian noise,
# so that LayerNorm's weight is not all ones and its bias not all zeros.
PARAM_NOISE = 0.3
ARRAY = "<array>"  # stands for an array argument in a call's JSON description


class ReplayMismatch(RuntimeError):
    """A replayed sub-layer got an input or argument the solution never gave it."""


def _is_array(value):
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _plain(value):
    """Whether ``value`` survives a JSON round trip (tuples come back as lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _tuples(value):
    """``value`` from JSON with its lists turned back into tuples (shapes compare as tuples)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _attributes(layer):
    """The layer's plain attributes (sizes, shapes, flags) as its forward pass left them."""
    return {name: value for name, value in vars(layer).items() if _plain(value)}


def _same(got, recorded):
    """Whether an argument equals the recorded one (arrays: same shape and entries)."""
    if _is_array(got) or _is_array(recorded):
        return (_is_array(got) and _is_array(recorded) and np.shape(got) == recorded.shape
                and np.array_equal(np.asarray(got), recorded))
    return got == recorded


def _bind(method, args, kwargs):
    """The BoundArguments of a call of ``method``, its defaults filled in."""
    bound = inspect.signature(method).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound


class Swap:
    """What a case's ``run_`` function uses to set up the layer under test."""

    def __init__(self, arrays, meta):
        self.arrays, self.meta = arrays, meta

    def fixed_dropout(self, layer, key):
        """Make the Dropout ``layer`` apply the mask ``arrays[key]`` (already scaled by 1/(1-p)).

        A Dropout draws its mask from the random generator, so the student's call
        order would change it; a fixed mask makes the case's outputs exact.
        """
        mask = self.arrays[key]

        def forward(x):
            layer.input_shape = x.shape
            layer.mask = _aligned(mask, x.shape, key) if layer.training else None
            return x if layer.mask is None else x * layer.mask

        def backward(dout):
            return dout if layer.mask is None else dout * layer.mask

        layer.forward, layer.backward = forward, backward


def _aligned(mask, shape, key):
    """``mask`` laid out as an input of ``shape``.

    Another layout of the same axes (a keys-first attention array, say) gets the
    mask moved along; the cases give such axes different sizes to tell them apart.
    """
    shape = tuple(shape)
    if mask.shape == shape:
        return mask
    if sorted(mask.shape) == sorted(shape) and len(set(shape)) == len(shape):
        return mask.transpose([mask.shape.index(size) for size in shape])
    raise ValueError(f"a dropout layer got an input of shape {shape}, but the grader's fixed "
                     f"dropout mask '{key}' has shape {mask.shape}")


class Recorder(Swap):
    """Build time: draw parameters, record what the solution's sub-layers do."""

    def __init__(self, arrays, rng):
        super().__init__(arrays, {})
        self.rng = rng
        self._wrapped = []

    def params(self, layer, scale=None):
        """Give every parameter of ``layer`` drawn values (times ``scale[name]``) and store them."""
        for name, value, _ in layer.parameters():
            value[...] = value + PARAM_NOISE * self.rng.standard_normal(value.shape)
            value *= (scale or {}).get(name, 1.0)
            self.arrays["param." + name] = np.array(value)

    def replay(self, layer, key, tokenwise=False):
        """Record every forward call of ``layer`` (the solution's), to replay under ``key``."""
        forward, backward = layer.forward, layer.backward
        calls = []

        def recording_forward(*args, **kwargs):
            bound = _bind(forward, args, kwargs)
            out = forward(*args, **kwargs)
            if not _is_array(out):
                raise TypeError(f"{key}.forward returned a {type(out).__name__}; only a layer "
                                "that returns one array can be replayed")
            for name, value in bound.arguments.items():
                if _is_array(value):
                    bound.arguments[name] = np.array(value)
            calls.append((bound, np.array(out), _attributes(layer)))
            return out

        layer.forward = recording_forward
        self._wrapped.append((key, forward, backward, tokenwise, calls))

    def finish(self):
        """Store each recorded call, with its Jacobian, in ``arrays`` and ``meta``."""
        for key, forward, backward, tokenwise, calls in self._wrapped:
            self.meta[key] = [self._store(f"replay.{key}.{i}", forward, backward, tokenwise, call)
                              for i, call in enumerate(calls)]
        return self.meta

    def _store(self, prefix, forward, backward, tokenwise, call):
        bound, out, attributes = call
        (_, x), *others = bound.arguments.items()
        self.arrays[prefix + ".x"], self.arrays[prefix + ".y"] = x, out
        self.arrays[prefix + ".J"] = _jacobian(forward, backward, bound, out, tokenwise)
        args = {}
        for name, value in others:
            if _is_array(value):
                self.arrays[f"{prefix}.arg.{name}"] = value
                args[name] = ARRAY
            elif _plain(value):
                args[name] = value
            else:
                raise TypeError(f"{prefix}: argument {name}={value!r} cannot be recorded")
        return {"args": args, "attributes": attributes, "tokenwise": tokenwise}


def _jacobian(forward, backward, bound, out, tokenwise):
    """d out / d input at a recorded call, from one backward pass per output column.

    Whole: (out.size, x.size). Token-wise: (rows, D_out, D_in), one matrix per row,
    found with one backward pass per output feature (all rows at once).
    """
    x = next(iter(bound.arguments.values()))
    columns = out.shape[-1] if tokenwise else out.size
    rows = []
    for column in range(columns):
        forward(*bound.args, **bound.kwargs)
        dout = np.zeros(out.shape)
        if tokenwise:
            dout[..., column] = 1.0
        else:
            dout.reshape(-1)[column] = 1.0
        rows.append(np.array(backward(dout)))
    if tokenwise:
        return np.stack([r.reshape(-1, x.shape[-1]) for r in rows], axis=1)
    return np.stack([r.reshape(-1) for r in rows])


class Replayer(Swap):
    """In the sandbox: load parameters, replay the recorded sub-layers."""

    def params(self, layer, scale=None):
        """Load the parameters drawn at build time into ``layer``."""
        for name, value, _ in layer.parameters():
            if "param." + name in self.arrays:
                value[...] = self.arrays["param." + name]

    def replay(self, layer, key, tokenwise=False):
        """Make ``layer`` return the solution's recorded outputs (and input gradients)."""
        forward, backward = layer.forward, layer.backward
        calls = [_Call(self.arrays, f"replay.{key}.{i}", call)
                 for i, call in enumerate(self.meta.get(key, []))]
        state = {}

        def replay_forward(*args, **kwargs):
            arguments = _bind(forward, args, kwargs).arguments
            reasons = []
            for call in calls:
                try:
                    out, rows = call.match(arguments)
                except ReplayMismatch as why:
                    reasons.append(str(why))
                    continue
                state.update(call=call, rows=rows, shape=np.shape(next(iter(arguments.values()))))
                layer.__dict__.update(call.attributes)
                return out
            why = reasons[0] if reasons else "the reference solution never calls it"
            raise ReplayMismatch(f"{key}.forward (a stand-in for the reference's layer): {why}")

        def replay_backward(dout, *args, **kwargs):
            if not state:
                raise ReplayMismatch(f"{key}.backward was called before {key}.forward")
            if _bind(backward, (dout,) + args, kwargs).arguments.get("input_grad", True) is False:
                return None
            return state["call"].backward(dout, state["rows"], state["shape"], key)

        layer.forward, layer.backward = replay_forward, replay_backward


class _Call:
    """One recorded call of a sub-layer: input, other arguments, output and Jacobian."""

    def __init__(self, arrays, prefix, description):
        self.x, self.y, self.J = (arrays[f"{prefix}.{part}"] for part in ("x", "y", "J"))
        self.args = {name: arrays[f"{prefix}.arg.{name}"] if value == ARRAY else _tuples(value)
                     for name, value in description["args"].items()}
        self.attributes = _tuples(description["attributes"])
        self.tokenwise = description["tokenwise"]
        self.tolerance = TOLERANCE * max(1.0, float(np.abs(self.x).max(initial=0.0)))

    def match(self, arguments):
        """(output, matched rows or None) for a call with ``arguments``; else ReplayMismatch."""
        for name, recorded in self.args.items():
            got = arguments.get(name)
            if not _same(got, recorded):
                shown = f"an array of shape {np.shape(got)}" if _is_array(got) else repr(got)
                wanted = (f"an array of shape {recorded.shape}" if _is_array(recorded)
                          else repr(recorded))
                raise ReplayMismatch(f"it got {name}={shown}; the reference passes {wanted}")
        x = next(iter(arguments.values()))
        if not _is_array(x):
            raise ReplayMismatch(f"its input is a {type(x).__name__}, not an array")
        x = np.asarray(x, dtype=float)
        if self.tokenwise:
            return self._match_rows(x)
        if x.shape != self.x.shape:
            raise ReplayMismatch(f"it got an input of shape {x.shape}; the reference passes "
                                 f"one of shape {self.x.shape}")
        gap = float(np.abs(x - self.x).max(initial=0.0))
        if not gap <= self.tolerance:
            raise ReplayMismatch(f"its input differs from the one the reference passes (max "
                                 f"|diff| {gap:.3g}): the code before this call computes it "
                                 "differently")
        return self.y.copy(), None

    def _match_rows(self, x):
        width = self.x.shape[-1]
        if x.ndim == 0 or x.shape[-1] != width:
            raise ReplayMismatch(f"it got an input of shape {x.shape}; the reference passes "
                                 f"rows of {width} features")
        rows, recorded = x.reshape(-1, width), self.x.reshape(-1, width)
        distance = np.abs(rows[:, None, :] - recorded[None]).max(axis=-1, initial=0.0)
        nearest = distance.argmin(axis=1)
        gap = float(distance[np.arange(len(rows)), nearest].max(initial=0.0))
        if not gap <= self.tolerance:
            raise ReplayMismatch(f"it got a token (row) that the reference never passes it "
                                 f"(max |diff| to the closest: {gap:.3g}): the code before "
                                 "this call computes it differently")
        out = self.y.reshape(len(recorded), -1)[nearest]
        return out.reshape(x.shape[:-1] + out.shape[-1:]), nearest

    def backward(self, dout, rows, shape, key):
        """dx = dout @ J for the matched call (row by row for a token-wise layer)."""
        dout = np.asarray(dout, dtype=float)
        if rows is None:
            if dout.shape != self.y.shape:
                raise ReplayMismatch(f"{key}.backward got a gradient of shape {dout.shape}; "
                                     f"its output has shape {self.y.shape}")
            return (dout.reshape(-1) @ self.J).reshape(self.x.shape)
        expected = tuple(shape[:-1]) + (self.J.shape[1],)
        if dout.shape != expected:
            raise ReplayMismatch(f"{key}.backward got a gradient of shape {dout.shape}; its "
                                 f"output has shape {expected}")
        dx = np.einsum("ro,roi->ri", dout.reshape(len(rows), -1), self.J[rows])
        return dx.reshape(shape)
