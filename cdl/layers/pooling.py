"""Pooling layers over channels-last inputs, as Keras: (batch, steps, channels)
for 1-D pooling and (batch, height, width, channels) for 2-D pooling."""
import math
import numbers

import numpy as np

from cdl._kernels import pooling as _pool
from cdl._validation import check_bool, choose
from cdl.layers.base import Layer

__all__ = ["MaxPool1D", "AvgPool1D", "MaxPool2D", "AvgPool2D",
           "GlobalMaxPool1D", "GlobalAvgPool1D", "GlobalMaxPool2D", "GlobalAvgPool2D"]


def _int_tuple(value, rank, name):
    """``value`` (an int, or ``rank`` ints) as a tuple of ``rank`` ints >= 1."""
    what = "an int" if rank == 1 else f"an int or a tuple of {rank} ints"
    items = (value,) * rank if isinstance(value, numbers.Integral) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{name} must be {what}, got {value!r}") from None
    if len(items) != rank or any(isinstance(v, bool) or not isinstance(v, numbers.Integral)
                                 for v in items):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if any(v < 1 for v in items):
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return tuple(int(v) for v in items)


def _axis(size, pool, stride, padding):
    """Output length, padding before the first element, and the number of
    input elements read (summed over the windows) along one axis."""
    if padding == "valid":
        out = (size - pool) // stride + 1
        before = 0
    else:
        # Keras / TensorFlow "same": ceil(size / stride) outputs, the padding
        # split evenly with any odd element at the end.
        out = -(-size // stride)
        before = max((out - 1) * stride + pool - size, 0) // 2
    read = sum(min(o * stride - before + pool, size) - max(o * stride - before, 0)
               for o in range(out))
    return out, before, read


def _sample_shape_error(layer, input_shape, axes):
    return ValueError(
        f"{layer.name}: {type(layer).__name__} takes samples of shape ({axes}), "
        f"got input shape {tuple(input_shape)}")


class _Pool(Layer):
    """Shared forward and backward of the pooling layers.

    Subclasses implement ``_geometry(input_shape)``, which returns the
    kernel's view of a sample -- the (H, W) of the input and output, the
    pool, strides and padding as pairs -- the per-sample output shape and
    the number of input elements the windows read.
    """

    _max = False

    def __init__(self, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._geom = None
        self._cache = None
        self._argmax = None

    def _geometry(self, input_shape):
        raise NotImplementedError

    def build(self, input_shape):
        self._geom = self._geometry(input_shape)

    def compute_output_shape(self, input_shape):
        return self._geometry(tuple(input_shape))[5]

    def flops_per_sample(self, input_shape):
        geom = self._geometry(tuple(input_shape))
        channels, out_elements, read = input_shape[-1], math.prod(geom[5]), geom[6]
        # A comparison per element read, or an add per element read and a
        # multiply per output.
        return int(read * channels + (0 if self._max else out_elements))

    def forward(self, x, training=False):
        x = self._check_input(x)
        (h, w), (oh, ow), pool, strides, pads, out_shape, _ = self._geom
        n, c = x.shape[0], x.shape[-1]
        x4 = x.reshape(n, h, w, c)
        y = np.empty((n, oh, ow, c), dtype=self.dtype)
        if self._max:
            # The argmax array is this layer's own state, read only by its
            # next backward: reused from call to call, since a fresh
            # multi-megabyte array costs a page fault per 4 KiB when first
            # written.
            argmax = self._argmax
            if argmax is None or argmax.shape != y.shape:
                argmax = self._argmax = np.empty(y.shape, dtype=np.int64)
            _pool.max_forward(x4, y, argmax, pool, strides, pads)
        else:
            argmax = None
            _pool.avg_forward(x4, y, pool, strides, pads)
        self._cache = (x.shape, argmax)
        return y.reshape((n,) + out_shape)

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x_shape, argmax = self._cache
        (h, w), (oh, ow), pool, strides, pads, out_shape, _ = self._geom
        n, c = x_shape[0], x_shape[-1]
        dy = self._check_grad(grad, (n,) + out_shape).reshape(n, oh, ow, c)
        dx = np.empty((n, h, w, c), dtype=self.dtype)
        if self._max:
            _pool.max_backward(dy, argmax, dx)
        else:
            _pool.avg_backward(dy, dx, pool, strides, pads)
        return dx.reshape(x_shape)


class _WindowPool(_Pool):
    """Pooling over sliding windows; ``_rank`` spatial axes."""

    _rank = 2

    def __init__(self, pool_size, strides=None, padding="valid", name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        pool = _int_tuple(pool_size, self._rank, "pool_size")
        stride = pool if strides is None else _int_tuple(strides, self._rank, "strides")
        if isinstance(padding, str):
            padding = padding.lower()
        self.padding = choose(padding, ("valid", "same"), "padding")
        # 1-D layers keep plain ints, as they are given.
        self.pool_size = pool[0] if self._rank == 1 else pool
        self.strides = stride[0] if self._rank == 1 else stride
        self._pool = (1,) * (2 - self._rank) + pool
        self._strides = (1,) * (2 - self._rank) + stride

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size,
                "strides": self.strides, "padding": self.padding}

    def _geometry(self, input_shape):
        if len(input_shape) != self._rank + 1:
            raise _sample_shape_error(
                self, input_shape, "steps, channels" if self._rank == 1
                else "height, width, channels")
        spatial = (1,) * (2 - self._rank) + tuple(input_shape[:-1])
        if min(spatial) < 1:
            raise ValueError(f"{self.name}: input shape {tuple(input_shape)} has an "
                             "empty spatial axis")
        if self.padding == "valid" and any(s < p for s, p in zip(spatial, self._pool)):
            raise ValueError(
                f"{self.name}: pool_size {self.pool_size} is larger than the input "
                f"shape {tuple(input_shape)} (channels last) with padding='valid'; "
                "use a smaller pool or padding='same'")
        (oh, pad_h, read_h), (ow, pad_w, read_w) = (
            _axis(s, p, st, self.padding)
            for s, p, st in zip(spatial, self._pool, self._strides))
        out_shape = (ow,) if self._rank == 1 else (oh, ow)
        return (spatial, (oh, ow), self._pool, self._strides, (pad_h, pad_w),
                out_shape + (input_shape[-1],), read_h * read_w)


class _GlobalPool(_Pool):
    """Pooling over all ``_rank`` spatial axes at once: one value per channel."""

    _rank = 2

    def __init__(self, keepdims=False, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.keepdims = check_bool(keepdims, "keepdims")

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}

    def _geometry(self, input_shape):
        if len(input_shape) != self._rank + 1:
            raise _sample_shape_error(
                self, input_shape, "steps, channels" if self._rank == 1
                else "height, width, channels")
        spatial = (1,) * (2 - self._rank) + tuple(input_shape[:-1])
        if min(spatial) < 1:
            raise ValueError(f"{self.name}: input shape {tuple(input_shape)} has an "
                             "empty spatial axis")
        channels = input_shape[-1]
        out_shape = (1,) * self._rank + (channels,) if self.keepdims else (channels,)
        return (spatial, (1, 1), spatial, (1, 1), (0, 0), out_shape, math.prod(spatial))


class MaxPool1D(_WindowPool):
    """Max pooling over windows of steps, channels last (Keras' MaxPooling1D).

    Input (batch, steps, channels); output (batch, out_steps, channels).

    Parameters
    ----------
    pool_size : int
        Window length.
    strides : int or None
        Step between windows; defaults to ``pool_size``.
    padding : {"valid", "same"}
        "valid" keeps only windows inside the input; "same" gives
        ceil(steps / strides) outputs, padding as Keras (evenly, any odd
        element at the end). Padding never wins.

    Notes
    -----
    Ties go to the first maximum in the window; NaN propagates (the last
    NaN of a window takes the gradient), as in PyTorch.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([1.0, 5.0, 2.0, 0.0, 3.0, 4.0]).reshape(1, 6, 1)   # (batch, steps, channels)
    >>> layers.MaxPool1D(2)(x).ravel()
    array([5., 2., 4.])
    """

    _rank = 1
    _max = True

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None, dtype=None):
        super().__init__(pool_size, strides, padding, name=name, dtype=dtype)


class AvgPool1D(_WindowPool):
    """Average pooling over windows of steps, channels last (Keras'
    AveragePooling1D).

    Input (batch, steps, channels); output (batch, out_steps, channels).

    Parameters
    ----------
    pool_size : int
        Window length.
    strides : int or None
        Step between windows; defaults to ``pool_size``.
    padding : {"valid", "same"}
        As in ``MaxPool1D``. With "same", each output averages only the
        real (unpadded) elements of its window, as Keras.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([1.0, 5.0, 2.0, 0.0, 3.0, 4.0]).reshape(1, 6, 1)
    >>> layers.AvgPool1D(2)(x).ravel()
    array([3. , 1. , 3.5])
    >>> layers.AvgPool1D(4, strides=4, padding="same")(x).ravel()   # padding is not averaged
    array([2.66666667, 2.33333333])
    """

    _rank = 1

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None, dtype=None):
        super().__init__(pool_size, strides, padding, name=name, dtype=dtype)


class MaxPool2D(_WindowPool):
    """Max pooling over 2-D windows, channels last (Keras' MaxPooling2D).

    Input (batch, height, width, channels); output (batch, out_height,
    out_width, channels).

    Parameters
    ----------
    pool_size : int or pair of ints
        Window (rows, columns); an int is used for both.
    strides : int, pair of ints or None
        Step between windows; defaults to ``pool_size``.
    padding : {"valid", "same"}
        "valid" keeps only windows inside the input; "same" gives
        ceil(size / stride) outputs per axis, padding as Keras (evenly, any
        odd row or column at the end). Padding never wins.

    Notes
    -----
    Ties go to the first maximum in row-major window order; NaN propagates
    (the last NaN of a window takes the gradient), as in PyTorch.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)     # (batch, height, width, channels)
    >>> layers.MaxPool2D(2)(x)[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """

    _max = True

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", name=None,
                 dtype=None):
        super().__init__(pool_size, strides, padding, name=name, dtype=dtype)


class AvgPool2D(_WindowPool):
    """Average pooling over 2-D windows, channels last (Keras'
    AveragePooling2D).

    Input (batch, height, width, channels); output (batch, out_height,
    out_width, channels).

    Parameters
    ----------
    pool_size : int or pair of ints
        Window (rows, columns); an int is used for both.
    strides : int, pair of ints or None
        Step between windows; defaults to ``pool_size``.
    padding : {"valid", "same"}
        As in ``MaxPool2D``. With "same", each output averages only the
        real (unpadded) elements of its window, as Keras.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> layers.AvgPool2D(2)(x)[0, :, :, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", name=None,
                 dtype=None):
        super().__init__(pool_size, strides, padding, name=name, dtype=dtype)


def _padding_mask(layer, x):
    """``layer.input_mask`` checked against the input ``x`` (batch, steps,
    channels): a bool (batch, steps) array."""
    mask = layer.input_mask
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or \
            mask.shape != x.shape[:2]:
        got = f"an array of dtype {mask.dtype} and shape {mask.shape}" \
            if isinstance(mask, np.ndarray) else type(mask).__name__
        raise ValueError(f"the padding mask of {layer.name} ({type(layer).__name__}) must "
                         f"be a bool array of shape {x.shape[:2]} (batch, steps), got {got}")
    return mask


class _MaskedGlobalPool1D(_GlobalPool):
    """A global 1-D pooling that skips padded steps when a model gives it a
    padding mask (``input_mask``) and drops the mask."""

    _rank = 1

    def __init__(self, keepdims=False, name=None, dtype=None):
        super().__init__(keepdims=keepdims, name=name, dtype=dtype)
        self._masked = None

    def forward(self, x, training=False):
        if self.input_mask is None:
            self._masked = None
            return super().forward(x, training)
        x = self._check_input(x)
        mask = _padding_mask(self, x)
        y, self._masked = self._masked_forward(x, mask)
        self._cache = (x.shape, None)
        return y.reshape((x.shape[0],) + self._geom[5])

    def backward(self, grad):
        if self._masked is None:
            return super().backward(grad)
        x_shape, _ = self._cache
        n, c = x_shape[0], x_shape[-1]
        dy = self._check_grad(grad, (n,) + self._geom[5]).reshape(n, c)
        return self._masked_backward(dy, x_shape)


class GlobalMaxPool1D(_MaskedGlobalPool1D):
    """Maximum of each channel over all steps (Keras' GlobalMaxPooling1D).

    Input (batch, steps, channels); output (batch, channels), or
    (batch, 1, channels) with ``keepdims``. Ties and NaN as ``MaxPool1D``.

    Parameters
    ----------
    keepdims : bool
        Keep the steps axis, with length 1.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[[1.0, -1.0], [3.0, -2.0], [2.0, 0.0]]])   # 3 steps, 2 channels
    >>> layers.GlobalMaxPool1D()(x)
    array([[3., 0.]])

    With a padding mask (from ``Embedding(mask_zero=True)`` through a
    model), padded steps are ignored: the maximum is over real steps, a
    sequence of padding only gives 0 (and no gradient).
    """

    _max = True

    def _masked_forward(self, x, mask):
        n = x.shape[0]
        filled = np.where(mask[:, :, None], x, -np.inf)
        index = filled.argmax(axis=1)[:, None, :]          # first maximum, as the kernel
        y = np.take_along_axis(x, index, axis=1)[:, 0, :].copy()
        empty = ~mask.any(axis=1)
        y[empty] = 0
        return y, (index, empty, n)

    def _masked_backward(self, dy, x_shape):
        index, empty, _ = self._masked
        dy = dy.copy()
        dy[empty] = 0
        dx = np.zeros(x_shape, dtype=self.dtype)
        np.put_along_axis(dx, index, dy[:, None, :], axis=1)
        return dx


class GlobalAvgPool1D(_MaskedGlobalPool1D):
    """Mean of each channel over all steps (Keras' GlobalAveragePooling1D).

    Input (batch, steps, channels); output (batch, channels), or
    (batch, 1, channels) with ``keepdims``.

    Parameters
    ----------
    keepdims : bool
        Keep the steps axis, with length 1.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[[1.0, -1.0], [3.0, -2.0], [2.0, 0.0]]])
    >>> layers.GlobalAvgPool1D()(x)
    array([[ 2., -1.]])

    With a padding mask (from ``Embedding(mask_zero=True)`` through a
    model), the mean is over real steps only, and the gradient goes to
    them alone; a sequence of padding only averages to 0.
    """

    def _masked_forward(self, x, mask):
        # Each real step's share of the mean: 1 / (number of real steps).
        counts = mask.sum(axis=1, keepdims=True)
        weights = (mask / np.maximum(counts, 1)).astype(self.dtype)
        return np.matmul(weights[:, None, :], x)[:, 0, :], weights

    def _masked_backward(self, dy, x_shape):
        return self._masked[:, :, None] * dy[:, None, :]


class GlobalMaxPool2D(_GlobalPool):
    """Maximum of each channel over all positions (Keras' GlobalMaxPooling2D).

    Input (batch, height, width, channels); output (batch, channels), or
    (batch, 1, 1, channels) with ``keepdims``. Ties and NaN as ``MaxPool2D``.

    Parameters
    ----------
    keepdims : bool
        Keep the height and width axes, with length 1.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
    >>> layers.GlobalMaxPool2D()(x)
    array([[6., 7.]])
    """

    _max = True


class GlobalAvgPool2D(_GlobalPool):
    """Mean of each channel over all positions (Keras'
    GlobalAveragePooling2D).

    Input (batch, height, width, channels); output (batch, channels), or
    (batch, 1, 1, channels) with ``keepdims``.

    Parameters
    ----------
    keepdims : bool
        Keep the height and width axes, with length 1.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
    >>> layers.GlobalAvgPool2D()(x)
    array([[3., 4.]])
    """
