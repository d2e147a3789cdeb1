"""Regularising noise layers, active in training only: SpatialDropout1D,
SpatialDropout2D and GaussianNoise.

Inputs are channels-last, as Keras: (batch, steps, channels) for 1-D and
(batch, height, width, channels) for 2-D spatial dropout. Random draws come
from the model's seeded generator, so a run is reproducible.
"""
import numpy as np

from cdl import _sharding
from cdl._validation import check_bool, check_number
from cdl.layers.base import Layer

__all__ = ["SpatialDropout1D", "SpatialDropout2D", "GaussianNoise"]


class _SpatialDropout(Layer):
    """Inverted dropout of whole channels: during training, each channel of
    each sample is zeroed with probability ``rate`` (at every position) and
    the kept ones are scaled by 1 / (1 - rate); at inference, identity."""

    supports_masking = True
    #: Rank of a sample: spatial axes, then channels.
    _rank = None

    def __init__(self, rate, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.rate = check_number(rate, "rate", low=0.0, high=1.0, high_inclusive=False)
        self._mask = None
        self._out_shape = None

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}

    def build(self, input_shape):
        if len(input_shape) != self._rank:
            axes = ("steps" if self._rank == 2 else "height, width") + ", channels"
            raise ValueError(
                f"{self.name}: {type(self).__name__} takes inputs of shape "
                f"(batch, {axes}), got samples of shape {tuple(input_shape)}")

    def forward(self, x, training=False):
        x = self._check_input(x)
        self._out_shape = x.shape
        if not check_bool(training, "training") or self.rate == 0.0:
            self._mask = None
            return x
        n, channels = x.shape[0], x.shape[-1]
        # One uniform per (sample, channel), turned into the scaled mask as the
        # dropout kernel does: keep where u >= rate, scaled in the layer's dtype.
        u = _sharding.per_sample(self._rng, (n, channels), self.dtype)
        keep = self.dtype.type(1.0 / (1.0 - self.rate))
        mask = np.where(u >= self.dtype.type(self.rate), keep, self.dtype.type(0))
        self._mask = mask.reshape((n,) + (1,) * (self._rank - 1) + (channels,))
        return x * self._mask

    def backward(self, grad):
        dy = self._check_grad(grad, self._out_shape)
        if self._mask is None:
            return dy
        return dy * self._mask


class SpatialDropout1D(_SpatialDropout):
    """Dropout of whole channels of (batch, steps, channels) inputs.

    Zeroing a channel at every step, rather than elements one by one,
    regularises convolutional features whose neighbours are correlated.

    Parameters
    ----------
    rate : float in [0, 1)
        Probability that a channel is zeroed.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.SpatialDropout1D(0.5)], input_shape=(3, 4), seed=0)
    >>> model.forward(np.ones((1, 3, 4)), training=True)[0]   # whole channels dropped
    array([[2., 2., 2., 0.],
           [2., 2., 2., 0.],
           [2., 2., 2., 0.]], dtype=float32)
    """

    _rank = 2


class SpatialDropout2D(_SpatialDropout):
    """Dropout of whole channels (feature maps) of (batch, height, width,
    channels) inputs.

    Parameters
    ----------
    rate : float in [0, 1)
        Probability that a channel is zeroed.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.SpatialDropout2D(0.5)], input_shape=(2, 2, 4), seed=0)
    >>> y = model.forward(np.ones((1, 2, 2, 4)), training=True)
    >>> y[0, 0, 0], y[0, 1, 1]       # the same channels are dropped at every position
    (array([2., 2., 2., 0.], dtype=float32), array([2., 2., 2., 0.], dtype=float32))
    """

    _rank = 3


class GaussianNoise(Layer):
    """Add zero-mean Gaussian noise of standard deviation ``stddev`` during
    training; identity at inference. The gradient passes through unchanged.

    Parameters
    ----------
    stddev : float >= 0

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.GaussianNoise(0.1)], input_shape=(3,), seed=0)
    >>> model.forward(np.zeros((1, 3)), training=True).round(3)
    array([[ 0.112, -0.139, -0.043]], dtype=float32)
    >>> model.forward(np.zeros((1, 3)))          # no noise at inference
    array([[0., 0., 0.]], dtype=float32)
    """

    supports_masking = True

    def __init__(self, stddev, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.stddev = check_number(stddev, "stddev", low=0.0)
        self._out_shape = None

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}

    def forward(self, x, training=False):
        x = self._check_input(x)
        self._out_shape = x.shape
        if not check_bool(training, "training") or self.stddev == 0.0:
            return x
        y = _sharding.per_sample(self._rng, x.shape, self.dtype, normal=True)
        y *= self.dtype.type(self.stddev)
        y += x
        return y

    def backward(self, grad):
        return self._check_grad(grad, self._out_shape)
