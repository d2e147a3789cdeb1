"""Layers without weights that reshape or regularise: Dropout, Flatten."""
import math

import numpy as np

from cdl import _sharding
from cdl._kernels import dropout as _dropout
from cdl._validation import check_bool, check_number
from cdl.layers.base import FusedStep, Layer

__all__ = ["Dropout", "Flatten"]


class Dropout(Layer):
    """Inverted dropout: during training, zero each element with probability
    ``rate`` and scale the rest by 1 / (1 - rate); at inference, identity.

    The mask is drawn from the model's seeded generator.

    Parameters
    ----------
    rate : float in [0, 1)

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.Dropout(0.5)], input_shape=(8,), seed=0)
    >>> x = np.ones((1, 8), dtype=np.float32)
    >>> model.forward(x, training=True)     # kept elements scaled by 1 / (1 - 0.5)
    array([[2., 2., 2., 0., 0., 0., 0., 0.]], dtype=float32)
    >>> model.forward(x)                    # identity at inference
    array([[1., 1., 1., 1., 1., 1., 1., 1.]], dtype=float32)
    """

    supports_masking = True

    def __init__(self, rate, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.rate = check_number(rate, "rate", low=0.0, high=1.0, high_inclusive=False)
        self._mask = None
        self._out_shape = None

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}

    def fused_steps(self):
        if self.rate == 0.0:
            return []   # the identity, which draws nothing
        width = self.input_shape[0]
        return [FusedStep("dropout", width, width, 0, self.rate)]

    def forward(self, x, training=False):
        x = self._check_input(x)
        self._out_shape = x.shape
        if not check_bool(training, "training") or self.rate == 0.0:
            self._mask = None
            return x
        mask = _sharding.per_sample(self._rng, x.shape, self.dtype)
        y = np.empty_like(x)
        _dropout.forward(x, mask, mask, y, self.rate)
        self._mask = mask
        return y

    def backward(self, grad):
        dy = self._check_grad(grad, self._out_shape)
        if self._mask is None:
            return dy
        dx = np.empty_like(dy)
        _dropout.backward(self._mask, dy, dx)
        return dx


class Flatten(Layer):
    """Flatten each sample to one axis: (n, d1, d2, ...) -> (n, d1 * d2 * ...).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.Flatten()(np.zeros((2, 3, 4, 5))).shape
    (2, 60)
    """

    def __init__(self, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._in_shape = None

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def flops_per_sample(self, input_shape):
        return 0

    def fused_steps(self):
        return []   # 1-D samples stay as they are

    def forward(self, x, training=False):
        x = self._check_input(x)
        self._in_shape = x.shape
        # An explicit size, not -1, which NumPy cannot infer for an empty batch.
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, grad):
        if self._in_shape is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        expected = (self._in_shape[0], math.prod(self._in_shape[1:]))
        return self._check_grad(grad, expected).reshape(self._in_shape)
