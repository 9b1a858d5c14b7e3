"""The base class every layer and model shares: parameters, gradients, modes.

A layer keeps its learnable arrays in ``self.params`` and their gradients, under
the same keys, in ``self.grads``. ``backward`` writes the gradients; optimizers
read them. Sub-layers are found automatically (attributes that are layers, or
lists of layers), so ``model.parameters()`` walks the whole tree with dotted
names such as ``blocks.0.attn.q_proj.weight``.
"""
from __future__ import annotations

import contextlib
import contextvars

from cs_vit import backend
from cs_vit.backend import xp

_KEEPING = contextvars.ContextVar("cs_vit_keeping_for_backward", default=True)


@contextlib.contextmanager
def no_grad():
    """Forward passes inside keep nothing for ``backward``, as inside ``torch.no_grad()``.

    Inference then holds only the activations in flight instead of every layer's
    cache (and no attention weights); ``backward`` needs a forward pass run outside.
    """
    token = _KEEPING.set(False)
    try:
        yield
    finally:
        _KEEPING.reset(token)


def keeping():
    """False inside ``no_grad()``: whether forward passes store what backward needs."""
    return _KEEPING.get()


def keep(value):
    """``value``, or None inside ``no_grad()``; layers store their caches through it."""
    return value if _KEEPING.get() else None


def _is_array(value):
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "__array__")


class GradientDict(dict):
    """``grads`` dictionary of gradient buffers, each made when first needed.

    As in PyTorch, where ``.grad`` stays None until a backward pass, a parameter
    gets its zeroed buffer the first time it is read or written, so a model used
    only for inference holds none. Optimizers hold references to these buffers,
    so ``grads["weight"] = dw`` copies ``dw`` into the buffer instead of replacing
    it, and a gradient of the wrong shape is reported where it is assigned.
    """

    def __init__(self, params):
        super().__init__()
        self._params = params  # the layer's params dict: the buffers take their shapes

    def __missing__(self, key):
        if key not in self._params:
            raise KeyError(f"no parameter {key!r} to hold a gradient; gradients take the keys "
                           f"of params: {', '.join(map(repr, self._params)) or 'none'}")
        buffer = xp.zeros_like(self._params[key])
        dict.__setitem__(self, key, buffer)
        return buffer

    def __reduce__(self):
        """For pickle and copy: rebuilt around the same params, then its buffers copied in."""
        return GradientDict, (self._params,), None, None, iter(self.items())

    def __setitem__(self, key, value):
        buffer = self[key]
        if buffer.shape != value.shape:
            raise ValueError(
                f"gradient '{key}' has shape {value.shape}, but the parameter has shape "
                f"{buffer.shape}; a gradient must have its parameter's shape"
            )
        buffer[...] = value


class Layer:
    """Base class: ``params``/``grads`` dicts, ``train()``/``eval()``, ``parameters()``."""

    def __init__(self):
        self.params = {}
        self.grads = GradientDict(self.params)
        self.training = True

    def add_param(self, key, value):
        """Register a learnable array; ``grads[key]`` is made (zeroed) when first used."""
        self.params[key] = value

    def children(self):
        """(name, layer) pairs of the direct sub-layers, in definition order."""
        for attr, value in vars(self).items():
            if isinstance(value, Layer):
                yield attr, value
            elif isinstance(value, (list, tuple)) and value and isinstance(value[0], Layer):
                for i, layer in enumerate(value):
                    yield f"{attr}.{i}", layer

    def parameters(self, prefix=""):
        """Yield ``(name, value, grad)`` for every parameter of this layer and below."""
        for name, layer, key in self._parameter_slots(prefix):
            yield name, layer.params[key], layer.grads[key]

    def _parameter_slots(self, prefix=""):
        """Yield ``(name, layer, key)``: where each parameter lives, in ``parameters()`` order."""
        for key in self.params:
            yield prefix + key, self, key
        for attr, child in self.children():
            yield from child._parameter_slots(prefix + attr + ".")

    def zero_grad(self):
        for _, _, grad in self.parameters():
            grad[...] = 0

    def train(self, mode=True):
        """Training mode (dropout active); ``train(False)`` is the same as ``eval()``."""
        self.training = mode
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def to_active_backend(self):
        """Move every array of this layer and below onto the active backend (numpy/cupy).

        Call it after ``backend.use(...)`` and before creating an optimizer: the
        parameters are replaced by copies on the new device, and their gradient
        buffers are dropped (new ones are made there when first used).
        """
        for attr, value in list(vars(self).items()):
            if _is_array(value):
                setattr(self, attr, backend.asarray(value, dtype=value.dtype))
        for key, value in self.params.items():
            self.params[key] = backend.asarray(value, dtype=value.dtype)
            self.grads.pop(key, None)
        for _, child in self.children():
            child.to_active_backend()
        return self

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)
