"""Normalisation layers over the channels (last) axis: BatchNorm, LayerNorm,
GroupNorm, RMSNorm."""
import math
import numbers

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
    ``(x - mean) / sqrt(var + eps) * gamma + beta``. With ``momentum=None``
    the running statistics are the plain (cumulative) average of every
    training batch's, as PyTorch's: the k-th batch updates them with
    momentum 1 / k, k counted in the buffer ``num_batches_tracked``. With
    ``track_running_stats=False`` there are no running statistics: the
    batch's own normalise the input at inference too, as in PyTorch.

    Parameters
    ----------
    momentum : float in [0, 1] or None
        Weight of the new batch in the running statistics (PyTorch's
        convention; Keras' ``momentum`` is ``1 - momentum``); None: the
        cumulative average.
    eps : float > 0
    center : bool
        Learn a shift ``beta`` (initially 0).
    scale : bool
        Learn a scale ``gamma`` (initially 1).
    track_running_stats : bool
        Keep running statistics for inference (default), or normalise
        with each batch's statistics in training and at inference alike.

    Attributes
    ----------
    gamma, beta : ndarray of shape (channels,), if ``scale`` / ``center``
    running_mean, running_var : ndarray of shape (channels,), or None
        Not weights (no optimizer touches them) but buffers: ``buffers()``
        returns them and saved models keep them. None with
        ``track_running_stats=False``.
    num_batches_tracked : ndarray of shape (1,), with ``momentum=None`` only
        The number of training batches averaged so far (a buffer).

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

    def __init__(self, momentum=0.1, eps=1e-5, center=True, scale=True,
                 track_running_stats=True, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.momentum = None if momentum is None else \
            check_number(momentum, "momentum", low=0.0, high=1.0)
        self.eps = _check_eps(eps)
        self.center = check_bool(center, "center")
        self.scale = check_bool(scale, "scale")
        self.track_running_stats = check_bool(track_running_stats, "track_running_stats")
        self.running_mean = None
        self.running_var = None
        self.num_batches_tracked = None
        self._cache = None

    def get_config(self):
        config = {**super().get_config(), "momentum": self.momentum, "eps": self.eps,
                  "center": self.center, "scale": self.scale}
        if not self.track_running_stats:  # older files lack the key: True
            config["track_running_stats"] = False
        return config

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}: BatchNorm needs inputs with a channels axis")
        channels = input_shape[-1]
        if self.scale:
            self.add_weight("gamma", (channels,), "ones")
        if self.center:
            self.add_weight("beta", (channels,), "zeros")
        if not self.track_running_stats:
            return
        # Buffers, saved with the model: {"running_mean": ..., "running_var": ...}.
        self.add_buffer("running_mean", (channels,), 0.0)
        self.add_buffer("running_var", (channels,), 1.0)
        if self.momentum is None:
            # Counted in the layer's dtype: exact up to 2 ** 24 batches in float32.
            self.add_buffer("num_batches_tracked", (1,), 0.0)

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
        momentum = self.momentum
        running_mean, running_var = self.running_mean, self.running_var
        if not self.track_running_stats:
            # Batch statistics always; the kernel's running update goes to scratch.
            training, momentum = True, 0.0
            running_mean, running_var = np.zeros((2, channels), x2.dtype)
            if x2.shape[0] < 2:
                raise ValueError(
                    f"{self.name}: BatchNorm(track_running_stats=False) normalises with the "
                    f"batch's statistics, which need more than one value per channel; got "
                    f"an input of shape {x.shape}")
        elif momentum is None:
            if training:
                self.num_batches_tracked += 1
            momentum = 1.0 / float(self.num_batches_tracked[0]) if training else 0.0
        _norm.batchnorm_forward(x2, self.gamma if self.scale else None,
                                self.beta if self.center else None,
                                running_mean, running_var, mean, invstd, y,
                                training, momentum, self.eps)
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
    returning (n, s, groups, channels) for an input of the given full shape
    (``channels``: the width of the kernel's rows, the normalised trailing
    axes' size for LayerNorm).
    """

    _rms = False
    _center = True

    def __init__(self, eps, affine=True, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.eps = _check_eps(eps)
        self.affine = check_bool(affine, "affine")
        self._cache = None
        self._ones = None

    def get_config(self):
        config = {**super().get_config(), "eps": self.eps}
        if not self.affine:  # older files lack the key: True
            config["affine"] = False
        return config

    def _param_shape(self, input_shape):
        """The shape of gamma and beta: one per channel."""
        return (input_shape[-1],)

    def _has_shift(self):
        return self._center and self.affine

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}: {type(self).__name__} needs inputs with a "
                             "channels axis")
        if self.affine:
            self.add_weight("gamma", self._param_shape(input_shape), "ones")
        if self._has_shift():
            self.add_weight("beta", self._param_shape(input_shape), "zeros")

    def flops_per_sample(self, input_shape):
        return int(math.prod(input_shape) * (3 if self._has_shift() else 2))

    def _eps(self, dtype):
        return self.eps

    def _scale(self, channels, dtype):
        """gamma as the kernel's vector, or ones without affine parameters."""
        if self.affine:
            return self.gamma.reshape(-1)
        if self._ones is None or self._ones.dtype != dtype or self._ones.shape[0] != channels:
            self._ones = np.ones(channels, dtype)
        return self._ones

    def forward(self, x, training=False):
        x = self._check_input(x)
        n, s, groups, channels = self._layout(x.shape)
        x3 = x.reshape(n, s, channels)
        y = np.empty_like(x3)
        mean = np.empty((n, groups))
        invstd = np.empty((n, groups))
        _norm.group_norm_forward(x3, self._scale(channels, x3.dtype),
                                 self.beta.reshape(-1) if self._has_shift() else None,
                                 mean, invstd, y, groups, self._eps(x3.dtype), self._rms)
        self._cache = (x3, mean, invstd, groups, x.shape)
        return y.reshape(x.shape)

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x3, mean, invstd, groups, x_shape = self._cache
        channels = x3.shape[2]
        dy = self._check_grad(grad, x_shape).reshape(x3.shape)
        dx = np.empty_like(x3)
        # Without affine parameters their gradients go to scratch.
        dgamma = self.gamma_grad.reshape(-1) if self.affine else np.empty(channels, x3.dtype)
        _norm.group_norm_backward(x3, dy, mean, invstd, self._scale(channels, x3.dtype), dx,
                                  dgamma, self.beta_grad.reshape(-1) if self._has_shift()
                                  else None, groups, self._rms)
        return dx.reshape(x_shape)


class LayerNorm(_GroupNormBase):
    """Layer normalisation over the last axis (or several trailing axes), as
    PyTorch's ``LayerNorm(normalized_shape)``: each vector along the last
    axis becomes ``(x - mean) / sqrt(var + eps) * gamma + beta`` (biased
    variance). Same in training and at inference.

    ``axis`` is Keras' argument: -1, or a tuple of the trailing axes to
    normalise over together (counted with the batch axis, as Keras:
    ``axis=(-2, -1)`` or ``(2, 3)`` for a (N, T, H, C) input), which is
    PyTorch's ``normalized_shape=(H, C)``; gamma and beta then have that
    shape. Axes that are not the trailing ones are refused (Keras allows
    them; PyTorch does not).

    Parameters
    ----------
    eps : float > 0
    axis : int or tuple of int
        The trailing axes normalised together; never the batch axis 0.
    elementwise_affine : bool
        Learn gamma (and beta, see ``bias``), as PyTorch.
    bias : bool
        Learn beta (with ``elementwise_affine``), as PyTorch.

    Attributes
    ----------
    gamma, beta : ndarray of the normalised shape, initially ones and zeros
        (without ``elementwise_affine``: neither; without ``bias``: no beta)

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.LayerNorm()(np.array([[1.0, 2.0, 3.0]])).round(4)
    array([[-1.2247,  0.    ,  1.2247]])
    """

    supports_masking = True

    def __init__(self, eps=1e-5, axis=-1, elementwise_affine=True, bias=True, name=None,
                 dtype=None):
        super().__init__(eps, affine=check_bool(elementwise_affine, "elementwise_affine"),
                         name=name, dtype=dtype)
        self.axis = _check_axes(axis)
        self.bias = check_bool(bias, "bias")

    def get_config(self):
        config = Layer.get_config(self)
        config["eps"] = self.eps
        # Written only when not the defaults, so that older versions read the rest.
        if self.axis != -1:
            config["axis"] = list(self.axis)
        if not self.affine:
            config["elementwise_affine"] = False
        if not self.bias:
            config["bias"] = False
        return config

    def _has_shift(self):
        return self.affine and self.bias

    def _trailing(self, input_shape):
        """How many trailing axes of a sample of ``input_shape`` are normalised."""
        if self.axis == -1:
            return 1
        rank = len(input_shape) + 1  # with the batch axis
        axes = sorted(a + rank if a < 0 else a for a in self.axis)
        if any(not 0 < a < rank for a in axes):
            raise ValueError(
                f"{self.name}: axis {self.axis} is out of range for inputs of {rank} "
                "dimensions (with the batch axis), or names the batch axis 0")
        if axes != list(range(rank - len(axes), rank)):
            raise ValueError(
                f"{self.name}: LayerNorm normalises over trailing axes, got axis "
                f"{self.axis} for inputs of {rank} dimensions (expected e.g. "
                f"{tuple(range(rank - len(axes), rank))})")
        return len(axes)

    def _param_shape(self, input_shape):
        return tuple(input_shape[len(input_shape) - self._trailing(input_shape):])

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}: LayerNorm needs inputs with a channels axis")
        self._param_shape(input_shape)  # checks axis against the shape
        super().build(input_shape)

    def _layout(self, shape):
        k = self._trailing(shape[1:])
        width = math.prod(shape[len(shape) - k:])
        return math.prod(shape[:len(shape) - k]), 1, 1, width


def _check_axes(axis):
    """LayerNorm's ``axis``: -1, or a tuple of distinct integers."""
    if isinstance(axis, (list, tuple)):
        axes = tuple(axis)
    else:
        axes = (axis,)
    if not axes or any(isinstance(a, (bool, np.bool_)) or not isinstance(a, numbers.Integral)
                       for a in axes):
        raise TypeError(f"axis must be an integer or a tuple of integers, got {axis!r}")
    axes = tuple(int(a) for a in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis has repeated axes: {axis!r}")
    return -1 if axes == (-1,) else axes


class RMSNorm(_GroupNormBase):
    """Root-mean-square normalisation over the last axis, as PyTorch's
    ``RMSNorm(channels, eps)``: ``x / sqrt(mean(x ** 2) + eps) * gamma``.

    The default ``eps=None`` is PyTorch's: the machine epsilon of the
    input's dtype (``np.finfo(dtype).eps``: 1.19e-7 in float32, 2.2e-16 in
    float64). Earlier cdl versions defaulted to 1e-6; their saved files
    carry that eps and keep it.

    Parameters
    ----------
    eps : float > 0 or None
    affine : bool
        Learn the scale gamma (PyTorch's ``elementwise_affine``).

    Attributes
    ----------
    gamma : ndarray of shape (channels,), initially ones (if ``affine``)

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

    def __init__(self, eps=None, affine=True, name=None, dtype=None):
        super().__init__(1.0 if eps is None else eps, affine=affine, name=name, dtype=dtype)
        if eps is None:
            self.eps = None

    def _eps(self, dtype):
        return float(np.finfo(dtype).eps) if self.eps is None else self.eps

    def _layout(self, shape):
        return math.prod(shape[:-1]), 1, 1, shape[-1]


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
    affine : bool
        Learn the per-channel gamma and beta, as PyTorch.

    Attributes
    ----------
    gamma, beta : ndarray of shape (channels,), initially ones and zeros (if
        ``affine``)

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.arange(8.0).reshape(1, 2, 4)        # 2 positions, 4 channels
    >>> layers.GroupNorm(2)(x).round(4)             # channels {0, 1} and {2, 3}
    array([[[-1.2127, -0.7276, -1.2127, -0.7276],
            [ 0.7276,  1.2127,  0.7276,  1.2127]]])
    """

    def __init__(self, groups, eps=1e-5, affine=True, name=None, dtype=None):
        super().__init__(eps, affine=affine, name=name, dtype=dtype)
        self.groups = check_number(groups, "groups", low=1, integer=True)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}

    def build(self, input_shape):
        if len(input_shape) >= 1 and input_shape[-1] % self.groups:
            raise ValueError(f"{self.name}: groups ({self.groups}) must divide the number "
                             f"of channels, the last axis of the input shape {input_shape}")
        super().build(input_shape)

    def _layout(self, shape):
        return shape[0], math.prod(shape[1:-1]), self.groups, shape[-1]
