"""Inverted dropout: zero random activations while training, nothing at test time."""
from __future__ import annotations

from cs_vit import backend
from cs_vit.checks import check_dout, check_float_array, real_number
from cs_vit.layers.base import Layer, keep


class Dropout(Layer):
    """Drops each activation with probability ``p`` in training mode.

    ``p`` is the probability of *dropping* an element, as in ``torch.nn.Dropout``
    (older course code used the keep-probability instead). Kept elements are
    scaled by ``1 / (1 - p)`` so the expected output equals the input, which is
    why evaluation mode (and ``p == 0``) is simply the identity.
    """

    def __init__(self, p=0.5):
        super().__init__()
        p = real_number("Dropout p (the probability of dropping an element)", p)
        if not 0 <= p < 1:
            raise ValueError(
                f"Dropout p is the probability of dropping an element and must lie "
                f"in [0, 1), got p={p}"
            )
        self.p = p
        self.mask = None
        self.input_shape = None

    def forward(self, x):
        """x: any shape -> out: same shape and dtype."""
        check_float_array(x, "x", "Dropout")
        self.input_shape = keep(x.shape)
        if not self.training or self.p == 0:
            self.mask = None
            return x
        kept = backend.rng().random(x.shape, dtype=x.dtype) >= self.p
        mask = kept.astype(x.dtype) / (1.0 - self.p)
        self.mask = keep(mask)
        return x * mask

    def backward(self, dout):
        """dout: any shape -> dx: same shape; the forward pass's mask routes the gradient."""
        check_dout(dout, self.input_shape, "Dropout")
        if self.mask is None:
            return dout
        return dout * self.mask
