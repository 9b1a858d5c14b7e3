# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""All parameters in one buffer, all gradients in another: one optimizer update for all.

The textbook optimizer runs a dozen NumPy operations per parameter, about a
thousand calls a step for a ViT's ~80 arrays. ``flatten_parameters`` moves every
parameter into one contiguous 1-D buffer (and every gradient into another); the
layers keep their arrays as views, so nothing else changes. The optimizer then
runs its update once over the whole buffer, in cache-sized blocks and with
scratch arrays kept between steps, and clipping takes one dot product. On the
GPU, AdamW's whole update (weight decay included) is one kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy

from cs_vit import backend
from cs_vit.backend import xp
from cs_vit.fast import cuda_kernels
from cs_vit.fast.row_blocks import row_blocks
from cs_vit.optim.clipping import EPS, check_max_norm, clip_grad_norm
from cs_vit.optim.optimizers import Adam, AdamW, Optimizer, make_optimizer


@dataclass
class FlatParameters:
    """The two buffers and where each parameter lies in them: ``spans`` maps name -> (slice, shape)."""

    values: object
    grads: object
    spans: dict

    def views(self, buffer):
        """{name: the view of ``buffer`` (shaped like the parameter) for each parameter}."""
        return _views(buffer, self.spans)


def _spans(names, arrays):
    """{name: (slice, shape)}: where each of ``arrays`` lies when they are laid end to end
    in one 1-D buffer, in order."""
    spans, offset = {}, 0
    for name, a in zip(names, arrays):
        spans[name] = (slice(offset, offset + a.size), a.shape)
        offset += a.size
    return spans


def _views(buffer, spans):
    """{name: the view of the 1-D ``buffer`` that ``spans`` gives that name}."""
    return {name: buffer[span].reshape(shape) for name, (span, shape) in spans.items()}


def flatten_parameters(model):
    """Move ``model``'s parameters and gradients into two buffers; returns FlatParameters.

    ``params`` and ``grads`` keep their keys, shapes and values; their arrays
    become views of the buffers. All parameters must share one dtype.
    """
    slots = list(model._parameter_slots())
    if not slots:
        raise ValueError(f"{type(model).__name__} has no parameters to flatten")
    arrays = [layer.params[key] for _, layer, key in slots]
    dtypes = {str(a.dtype) for a in arrays}
    if len(dtypes) > 1:
        raise TypeError(f"flatten_parameters needs one dtype for all parameters, got {sorted(dtypes)}")
    spans = _spans([name for name, _, _ in slots], arrays)
    size, dtype = sum(a.size for a in arrays), arrays[0].dtype
    flat = FlatParameters(xp.empty(size, dtype), xp.zeros(size, dtype), spans)
    values, grads = flat.views(flat.values), flat.views(flat.grads)
    for name, layer, key in slots:
        values[name][...] = layer.params[key]
        if key in layer.grads:  # a buffer made already (else it starts at zero)
            grads[name][...] = layer.grads[key]
        layer.params[key] = values[name]
        dict.__setitem__(layer.grads, key, grads[name])
    return flat


def shared_buffer(arrays):
    """The 1-D array that ``arrays`` tile end to end, in order, if they do; else None."""
    base = _root(arrays[0]) if arrays else None
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    expected = _address(base)
    for a in arrays:
        if _root(a) is not base or not a.flags.c_contiguous or _address(a) != expected:
            return None
        expected += a.nbytes
    return base if expected == _address(base) + base.nbytes else None


def _root(a):
    """The array owning ``a``'s memory (None if ``a`` owns it)."""
    base = a.base
    while base is not None and getattr(base, "base", None) is not None:
        base = base.base
    return base


def _address(a):
    """Address of an array's first element, for NumPy and CuPy arrays alike."""
    return a.data.ptr if hasattr(a.data, "ptr") else a.__array_interface__["data"][0]


def flat_make_optimizer(name, model, lr, weight_decay=0.0, **options):
    """``make_optimizer``, after laying the model's parameters out in two flat buffers.

    The optimizer's state arrays are views of one flat buffer per state too
    (:func:`flat_zero_state`), so its ``state_dict`` is the same as the textbook
    optimizer's.
    """
    flat = flatten_parameters(model)
    optimizer = make_optimizer.reference(name, model, lr, weight_decay, **options)
    optimizer.flat = flat
    optimizer.flat_state = {buffer: shared_buffer(list(arrays.values()))
                            for buffer, arrays in optimizer.state.items()}
    if any(state is None for state in optimizer.flat_state.values()):
        raise RuntimeError(f"{type(optimizer).__name__}'s state does not lie in one flat buffer "
                           "per state; its _zero_state must lay the state out as the "
                           "parameters are (flat_zero_state)")
    optimizer.flat_scratch = None  # the block update's temporaries, made at its first step
    # The GPU's AdamW kernel decays where this flat 0/1 mask says (the CPU walks the params).
    optimizer.decay_mask = _decay_mask(optimizer) if backend.name() == "cupy" else None
    return optimizer


def flat_zero_state(self):
    """``Optimizer._zero_state``: for parameters that tile one buffer end to end, each
    state is one zeroed buffer like it, handed out as views shaped like the parameters."""
    values = [value for _, value, _ in self.params]
    base = shared_buffer(values)
    if base is None:
        return Optimizer._zero_state.reference(self)
    spans = _spans([name for name, _, _ in self.params], values)
    return {buffer: _views(xp.zeros_like(base), spans) for buffer in self.buffers}


def _decay_mask(optimizer):
    """A flat array over the parameters: 1 where weight decay applies, 0 elsewhere."""
    flat = optimizer.flat
    mask = numpy.zeros(flat.values.size, dtype=flat.values.dtype)
    for (name, _, _), decayed in zip(optimizer.params, optimizer.decayed):
        if decayed:
            mask[flat.spans[name][0]] = 1
    return xp.asarray(mask)


def flat_step(self):
    """``Optimizer.step`` over the flat buffers, block by block (one block on the GPU)."""
    flat = getattr(self, "flat", None)
    if flat is None:
        return Optimizer.step.reference(self)
    self.step_count += 1
    if isinstance(self, AdamW) and backend.name() == "cupy":
        cuda_kernels.adamw(flat.values, flat.grads, self.flat_state["exp_avg"],
                           self.flat_state["exp_avg_sq"], self.decay_mask,
                           (self.beta1, self.beta2), self.eps, adamw_step_numbers(self))
        return None
    g = _decayed_flat_grad(self, flat)
    update = _adam_update if isinstance(self, Adam) else _sgd_update
    arrays = {**self.flat_state, **_adam_scratch(self)}
    for block in row_blocks(g):
        update(self, flat.values[block], g[block],
               {name: array[block] for name, array in arrays.items()})
    return None


def _adam_scratch(optimizer):
    """Adam's two scratch buffers for the block update (made at its first step, then
    kept); none for SGD."""
    if not isinstance(optimizer, Adam):
        return {}
    if optimizer.flat_scratch is None:
        optimizer.flat_scratch = {name: xp.empty_like(optimizer.flat.values)
                                  for name in ("scratch", "denom")}
    return optimizer.flat_scratch


def adamw_step_numbers(optimizer):
    """(lr / (1 - beta1^t), 1 - lr * weight_decay, sqrt(1 - beta2^t)) for its step t."""
    t = optimizer.step_count
    lr = optimizer.lr
    return (lr / (1.0 - optimizer.beta1 ** t), 1.0 - lr * optimizer.weight_decay,
            math.sqrt(1.0 - optimizer.beta2 ** t))


def _decayed_flat_grad(optimizer, flat):
    """The flat gradient after each decayed parameter's ``_decay`` (copied if one changes it)."""
    g = flat.grads
    if not optimizer.weight_decay:
        return g
    for (name, value, grad), decayed in zip(optimizer.params, optimizer.decayed):
        decayed_grad = optimizer._decay(value, grad, optimizer.weight_decay) if decayed else grad
        if decayed_grad is not grad:
            g = flat.grads.copy() if g is flat.grads else g
            g[flat.spans[name][0]] = decayed_grad.ravel()
    return g


def _sgd_update(self, value, g, state):
    """SGD._update, in place."""
    if self.momentum:
        buf = state["momentum_buffer"]
        buf *= self.momentum
        buf += g
        g = g + self.momentum * buf if self.nesterov else buf
    value -= self.lr * g


def _adam_update(self, value, g, state):
    """Adam._update in place, its temporaries in the kept scratch arrays."""
    m, v, scratch = state["exp_avg"], state["exp_avg_sq"], state["scratch"]
    xp.multiply(g, 1.0 - self.beta1, out=scratch)
    m *= self.beta1
    m += scratch
    xp.multiply(g, 1.0 - self.beta2, out=scratch)
    scratch *= g
    v *= self.beta2
    v += scratch
    bias_correction1 = 1.0 - self.beta1 ** self.step_count
    bias_correction2 = 1.0 - self.beta2 ** self.step_count
    denom = xp.sqrt(v, out=state["denom"])
    denom /= math.sqrt(bias_correction2)
    denom += self.eps
    step = xp.multiply(m, self.lr / bias_correction1, out=scratch)
    step /= denom
    value -= step


def flat_clip_grad_norm(params, max_norm):
    """``clip_grad_norm``; gradients that tile one buffer take one dot product and one scaling."""
    params = list(params)
    flat = shared_buffer([grad for _, _, grad in params])
    if flat is None:
        return clip_grad_norm.reference(params, max_norm)
    max_norm = check_max_norm(max_norm)
    total_norm = float(xp.sqrt(xp.dot(flat, flat)))
    clip_coef = max_norm / (total_norm + EPS)
    if clip_coef < 1.0:
        flat *= clip_coef
    return total_norm


REPLACEMENTS = {make_optimizer: flat_make_optimizer, Optimizer._zero_state: flat_zero_state,
                Optimizer.step: flat_step, clip_grad_norm: flat_clip_grad_norm}
