"""Normalisation layers over the channels (last) axis: BatchNorm, LayerNorm,
GroupNorm, RMSNorm."""
import math

import numpy as np

from cdl._kernels import norm as _norm
from cdl._validation import check_bool, check_number
from cdl.layers.base import Layer

__all__ = ["BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm"]


def _check_eps(eps):
    return check_number(eps, "eps", low=0.0, low_inclusive=False)


class BatchNorm(Layer):
    """Batch normalisation over the last (channels) axis.

    Every leading axis is a batch or spatial axis, as for PyTorch's
    BatchNorm1d/2d on channels-last data: a (N, H, W, C) input has C
    channels of N * H * W values each. In training each channel is
    normalised with the mean and biased variance of its values in the
    batch, and the running statistics are updated as in PyTorch::

        running_mean = (1 - momentum) * running_mean + momentum * batch_mean
        running_var = (1 - momentum) * running_var + momentum * unbiased_batch_var

    At inference the running statistics normalise the input. The output is
    ``(x - mean) / sqrt(var + eps) * gamma + beta``.

    Parameters
    ----------
    momentum : float in [0, 1]
        Weight of the new batch in the running statistics (PyTorch's
        convention; Keras' ``momentum`` is ``1 - momentum``).
    eps : float > 0
    center : bool
        Learn a shift ``beta`` (initially 0).
    scale : bool
        Learn a scale ``gamma`` (initially 1).

    Attributes
    ----------
    gamma, beta : ndarray of shape (channels,), if ``scale`` / ``center``
    running_mean, running_var : ndarray of shape (channels,)
        Not weights (no optimizer touches them) but buffers: ``buffers()``
        returns them and saved models keep them.

    Raises
    ------
    ValueError
        From ``forward`` in training when a channel has a single value (a
        batch of one sample without spatial axes): its variance is undefined.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> bn = layers.BatchNorm()
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> bn(x, training=True).round(4)    # each channel: mean 0, variance 1 in the batch
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> bn.running_mean            # moved 10% of the way to the batch mean
    array([0.2, 2. ])
    """

    def __init__(self, momentum=0.1, eps=1e-5, center=True, scale=True, name=None,
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.momentum = check_number(momentum, "momentum", low=0.0, high=1.0)
        self.eps = _check_eps(eps)
        self.center = check_bool(center, "center")
        self.scale = check_bool(scale, "scale")
        self.running_mean = None
        self.running_var = None
        self._cache = None

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "eps": self.eps,
                "center": self.center, "scale": self.scale}

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}: BatchNorm needs inputs with a channels axis")
        channels = input_shape[-1]
        if self.scale:
            self.add_weight("gamma", (channels,), "ones")
        if self.center:
            self.add_weight("beta", (channels,), "zeros")
        # Buffers, saved with the model: {"running_mean": ..., "running_var": ...}.
        self.add_buffer("running_mean", (channels,), 0.0)
        self.add_buffer("running_var", (channels,), 1.0)

    def flops_per_sample(self, input_shape):
        # Subtract, multiply (and add with a shift) per element.
        return int(math.prod(input_shape) * (3 if self.center else 2))

    def forward(self, x, training=False):
        x = self._check_input(x)
        training = check_bool(training, "training")
        channels = x.shape[-1]
        x2 = x.reshape(x.size // channels, channels)
        if training and x2.shape[0] < 2:
            raise ValueError(
                f"{self.name}: BatchNorm in training needs more than one value per channel, "
                f"got an input of shape {x.shape}; use a batch of at least 2 samples")
        y = np.empty_like(x2)
        mean = np.empty(channels)
        invstd = np.empty(channels)
        _norm.batchnorm_forward(x2, self.gamma if self.scale else None,
                                self.beta if self.center else None,
                                self.running_mean, self.running_var, mean, invstd, y,
                                training, self.momentum, self.eps)
        self._cache = (x2, mean, invstd, training, x.shape)
        return y.reshape(x.shape)

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x2, mean, invstd, training, x_shape = self._cache
        dy = self._check_grad(grad, x_shape).reshape(x2.shape)
        dx = np.empty_like(x2)
        _norm.batchnorm_backward(x2, dy, mean, invstd, self.gamma if self.scale else None,
                                 dx, self.gamma_grad if self.scale else None,
                                 self.beta_grad if self.center else None, training)
        return dx.reshape(x_shape)


class _GroupNormBase(Layer):
    """Shared forward/backward of layers computed by the group-norm kernel.

    Subclasses set ``_rms`` and ``_center`` and define ``_layout(shape)``,
    returning (n, s, groups) for an input of the given full shape.
    """

    _rms = False
    _center = True

    def __init__(self, eps, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.eps = _check_eps(eps)
        self._cache = None

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}: {type(self).__name__} needs inputs with a "
                             "channels axis")
        self.add_weight("gamma", (input_shape[-1],), "ones")
        if self._center:
            self.add_weight("beta", (input_shape[-1],), "zeros")

    def flops_per_sample(self, input_shape):
        return int(math.prod(input_shape) * (3 if self._center else 2))

    def forward(self, x, training=False):
        x = self._check_input(x)
        n, s, groups = self._layout(x.shape)
        x3 = x.reshape(n, s, x.shape[-1])
        y = np.empty_like(x3)
        mean = np.empty((n, groups))
        invstd = np.empty((n, groups))
        _norm.group_norm_forward(x3, self.gamma, self.beta if self._center else None,
                                 mean, invstd, y, groups, self.eps, self._rms)
        self._cache = (x3, mean, invstd, groups, x.shape)
        return y.reshape(x.shape)

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x3, mean, invstd, groups, x_shape = self._cache
        dy = self._check_grad(grad, x_shape).reshape(x3.shape)
        dx = np.empty_like(x3)
        _norm.group_norm_backward(x3, dy, mean, invstd, self.gamma, dx, self.gamma_grad,
                                  self.beta_grad if self._center else None, groups,
                                  self._rms)
        return dx.reshape(x_shape)


class LayerNorm(_GroupNormBase):
    """Layer normalisation over the last axis, as PyTorch's
    ``LayerNorm(normalized_shape=channels)``: each vector along the last
    axis becomes ``(x - mean) / sqrt(var + eps) * gamma + beta`` (biased
    variance). Same in training and at inference.

    Parameters
    ----------
    eps : float > 0

    Attributes
    ----------
    gamma, beta : ndarray of shape (channels,), initially ones and zeros

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.LayerNorm()(np.array([[1.0, 2.0, 3.0]])).round(4)
    array([[-1.2247,  0.    ,  1.2247]])
    """

    supports_masking = True

    def __init__(self, eps=1e-5, name=None, dtype=None):
        super().__init__(eps, name=name, dtype=dtype)

    def _layout(self, shape):
        return math.prod(shape[:-1]), 1, 1


class RMSNorm(_GroupNormBase):
    """Root-mean-square normalisation over the last axis, as PyTorch's
    ``RMSNorm(channels, eps)``: ``x / sqrt(mean(x ** 2) + eps) * gamma``.

    Parameters
    ----------
    eps : float > 0

    Attributes
    ----------
    gamma : ndarray of shape (channels,), initially ones

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.RMSNorm()(np.array([[3.0, 4.0]])).round(4)   # divided by sqrt((9 + 16) / 2)
    array([[0.8485, 1.1314]])
    """

    supports_masking = True
    _rms = True
    _center = False

    def __init__(self, eps=1e-6, name=None, dtype=None):
        super().__init__(eps, name=name, dtype=dtype)

    def _layout(self, shape):
        return math.prod(shape[:-1]), 1, 1


class GroupNorm(_GroupNormBase):
    """Group normalisation of channels-last inputs, as PyTorch's
    ``GroupNorm(groups, channels, eps)`` on the channels-first transpose.

    The C channels (last axis) are split into ``groups`` contiguous groups
    of C / groups; each sample's group is normalised over all its values
    (every spatial position and channel of the group), then scaled and
    shifted per channel. ``groups=1`` normalises each whole sample;
    ``groups=C`` is instance normalisation.

    Parameters
    ----------
    groups : int
        Must divide the number of channels.
    eps : float > 0

    Attributes
    ----------
    gamma, beta : ndarray of shape (channels,), initially ones and zeros

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.arange(8.0).reshape(1, 2, 4)        # 2 positions, 4 channels
    >>> layers.GroupNorm(2)(x).round(4)             # channels {0, 1} and {2, 3}
    array([[[-1.2127, -0.7276, -1.2127, -0.7276],
            [ 0.7276,  1.2127,  0.7276,  1.2127]]])
    """

    def __init__(self, groups, eps=1e-5, name=None, dtype=None):
        super().__init__(eps, name=name, dtype=dtype)
        self.groups = check_number(groups, "groups", low=1, integer=True)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}

    def build(self, input_shape):
        if len(input_shape) >= 1 and input_shape[-1] % self.groups:
            raise ValueError(f"{self.name}: groups ({self.groups}) must divide the number "
                             f"of channels, the last axis of the input shape {input_shape}")
        super().build(input_shape)

    def _layout(self, shape):
        return shape[0], math.prod(shape[1:-1]), self.groups
