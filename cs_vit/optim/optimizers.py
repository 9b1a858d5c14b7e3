"""SGD, Adam and AdamW, updating ``(name, value, grad)`` parameters in place.

    >>> optimizer = AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
    >>> loss, dout = softmax_cross_entropy(model.forward(x), y)
    >>> model.backward(dout); optimizer.step(); optimizer.zero_grad()

Each update is the textbook formula, parameter by parameter, with Python float
hyperparameters so float32 parameters stay float32. The maths follows
``torch.optim`` step for step, so a torch run and a cs_vit run agree.
``make_optimizer(name, model, ...)`` builds one by name (the fast tier, where
installed, then updates all parameters at once in one flat buffer).
"""
from __future__ import annotations

import math

from cs_vit import backend
from cs_vit.backend import xp
from cs_vit.checks import finite_non_negative
from cs_vit.tiers import replaceable

NO_DECAY_WORDS = ("norm", "pos_embed", "cls_token")


def decays(name, value):
    """Whether the default rule applies weight decay to a parameter.

    Decay shrinks weight matrices. Biases, LayerNorm gains and shifts, position
    embeddings and the CLS token are left alone (as in ViT and timm): they are
    1-D (``value.ndim <= 1``), named ``*.bias``, or their name contains one of
    ``NO_DECAY_WORDS``.
    """
    excluded = value.ndim <= 1 or name.endswith(".bias") or any(
        word in name for word in NO_DECAY_WORDS
    )
    return not excluded


def excluded_from_decay(name, value):
    """The default ``no_decay`` option: every parameter :func:`decays` rejects."""
    return not decays(name, value)


DEFAULT_NO_DECAY = excluded_from_decay


def _as_param_list(params):
    if hasattr(params, "parameters"):
        raise TypeError(
            "optimizers take the (name, value, grad) triples of a model, not the model; "
            "pass model.parameters()"
        )
    params = list(params)
    if not params:
        raise ValueError(
            "the optimizer got an empty parameter list; pass model.parameters() of a model "
            "that has parameters (a generator can only be used once)"
        )
    names = [name for name, _, _ in params]
    if len(set(names)) != len(names):
        raise ValueError(f"parameter names must be unique to key the optimizer state, got {names}")
    return params


class Optimizer:
    """Shared machinery: the parameter list, ``lr``, weight-decay rule, state dict.

    Subclasses name their per-parameter state arrays in ``buffers`` and write, for
    one parameter, ``_decay(value, grad, weight_decay)``, which applies the
    weight-decay rule and returns the gradient to step with, and the element-wise
    ``_update(value, g, state)``, ``state`` mapping each buffer to its array.
    """

    buffers = ()

    def __init__(self, params, lr, weight_decay, no_decay):
        self.params = _as_param_list(params)
        self.lr = lr
        self.weight_decay = finite_non_negative("weight_decay", weight_decay)
        if no_decay is not None and not callable(no_decay):
            raise TypeError(f"no_decay must be a callable (name, value) -> bool or None, got {no_decay!r}")
        self.decayed = [no_decay is None or not no_decay(name, value) for name, value, _ in self.params]
        self.step_count = 0
        self.state = self._zero_state()

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = finite_non_negative("lr", value)

    @replaceable
    def _zero_state(self):
        """The state before the first step: ``{buffer: {param name: zeros shaped like it}}``.

        (The fast tier replaces this method to lay each state out in one flat buffer.)
        """
        return {buffer: {name: xp.zeros_like(value) for name, value, _ in self.params}
                for buffer in self.buffers}

    @replaceable
    def step(self):
        """Update every parameter once from its current gradient."""
        self.step_count += 1
        for (name, value, grad), decayed in zip(self.params, self.decayed):
            g = self._decay(value, grad, self.weight_decay if decayed else 0.0)
            self._update(value, g, {buffer: self.state[buffer][name] for buffer in self.buffers})

    def zero_grad(self):
        for _, _, grad in self.params:
            grad[...] = 0

    def state_dict(self):
        """A flat dict of NumPy arrays and scalars, ready for ``numpy.savez``.

        Keys: ``"step"``, ``"lr"`` and ``"<buffer>/<param name>"`` for each state
        array, e.g. ``"exp_avg/blocks.0.attn.q_proj.weight"``.
        """
        state = {"step": self.step_count, "lr": self.lr}
        for buffer, arrays in self.state.items():
            for name, array in arrays.items():
                state[f"{buffer}/{name}"] = backend.to_numpy(array).copy()
        return state

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict` taken from an optimizer over the same parameters."""
        expected = set(self.state_dict())
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise ValueError(
                f"this state dict does not belong to this optimizer over these parameters: "
                f"missing keys {sorted(missing)}, unexpected keys {sorted(unexpected)}"
            )
        for buffer, arrays in self.state.items():
            for name, array in arrays.items():
                saved = state[f"{buffer}/{name}"]
                if tuple(saved.shape) != array.shape:
                    raise ValueError(
                        f"state '{buffer}/{name}' has shape {tuple(saved.shape)}, but the "
                        f"parameter has shape {array.shape}; was it saved from another model?"
                    )
                array[...] = xp.asarray(saved)
        self.step_count = int(state["step"])
        self.lr = float(state["lr"])


def _with_l2(value, grad, weight_decay):
    """The gradient of loss + weight_decay/2 * ||value||^2 (a new array only if decaying)."""
    return grad + weight_decay * value if weight_decay else grad


def _check_unit_interval(arg, value):
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{arg} must be in [0, 1), got {value}")
    return value


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    buf = momentum * buf + g;  value -= lr * (g + momentum * buf if nesterov else buf).
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0,
                 no_decay=DEFAULT_NO_DECAY):
        self.momentum = finite_non_negative("momentum", momentum)
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs a momentum > 0, got momentum=0")
        self.nesterov = nesterov
        self.buffers = ("momentum_buffer",) if self.momentum else ()
        super().__init__(params, lr, weight_decay, no_decay)

    def _decay(self, value, grad, weight_decay):
        return _with_l2(value, grad, weight_decay)

    def _update(self, value, g, state):
        if self.momentum:
            buf = state["momentum_buffer"]
            buf[...] = self.momentum * buf + g
            g = g + self.momentum * buf if self.nesterov else buf
        value -= self.lr * g


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient, as ``torch.optim.Adam``."""

    buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 no_decay=DEFAULT_NO_DECAY):
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.beta1 = _check_unit_interval("betas[0]", betas[0])
        self.beta2 = _check_unit_interval("betas[1]", betas[1])
        self.eps = finite_non_negative("eps", eps)
        super().__init__(params, lr, weight_decay, no_decay)

    def _decay(self, value, grad, weight_decay):
        return _with_l2(value, grad, weight_decay)

    def _update(self, value, g, state):
        """m, v: running means of g and g**2; dividing by 1 - beta**t undoes their zero start."""
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m[...] = self.beta1 * m + (1.0 - self.beta1) * g
        v[...] = self.beta2 * v + (1.0 - self.beta2) * g * g
        bias_correction1 = 1.0 - self.beta1 ** self.step_count
        bias_correction2 = 1.0 - self.beta2 ** self.step_count
        # lr * m_hat / (sqrt(v_hat) + eps), in torch's order of operations.
        denom = xp.sqrt(v) / math.sqrt(bias_correction2) + self.eps
        value -= self.lr / bias_correction1 * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    value *= 1 - lr * weight_decay, then a plain Adam step: the decay does not
    pass through the adaptive scaling, so every decayed weight shrinks alike.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 no_decay=DEFAULT_NO_DECAY):
        super().__init__(params, lr, betas, eps, weight_decay, no_decay)

    def _decay(self, value, grad, weight_decay):
        if weight_decay:
            value *= 1.0 - self.lr * weight_decay
        return grad


OPTIMIZERS = {"adamw": AdamW, "adam": Adam, "sgd": SGD}


@replaceable
def make_optimizer(name, model, lr, weight_decay=0.0, **options):
    """The optimizer ``name`` ("adamw", "adam" or "sgd") over ``model.parameters()``.

    ``options`` go to its constructor (``momentum`` for SGD, ``betas`` for Adam, ...).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](model.parameters(), lr=lr, weight_decay=weight_decay, **options)
