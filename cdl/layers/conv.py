"""Convolution layers over channels-last inputs: Conv1D, Conv2D, Conv2DTranspose.

All three run the compiled im2col kernels of ``cdl._kernels.conv`` (a 1-D
convolution is a 2-D one of height 1), with the bias and the activation
fused into the same call, as in ``Dense``.
"""
import math
import numbers

import numpy as np

from cdl import initializers, regularizers
from cdl._kernels import activations as _act
from cdl._kernels import conv as _conv
from cdl._validation import as_float_array, check_bool, check_number
from cdl.layers.activation import resolve_activation
from cdl.layers.base import Layer

__all__ = ["Conv1D", "Conv2D", "Conv2DTranspose"]

_AXES = {1: ("length",), 2: ("height", "width")}


def _int_tuple(value, rank, name, low=1):
    """``value`` (an int or ``rank`` ints) as a tuple of ``rank`` ints >= ``low``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * rank
    elif isinstance(value, (tuple, list)):
        if len(value) != rank:
            raise ValueError(f"{name} must be an int or {rank} ints, got {value!r}")
    else:
        raise TypeError(f"{name} must be an int or {rank} ints, got {value!r}")
    return tuple(check_number(v, name, low=low, integer=True) for v in value)


def _check_padding(padding, rank, names):
    """A padding name, or a tuple of ``rank`` ints >= 0 (symmetric per axis)."""
    if isinstance(padding, str):
        if padding not in names:
            known = ", ".join(repr(p) for p in names)
            raise ValueError(f"unknown padding {padding!r}; expected one of {known}"
                             f"{'' if rank is None else ' or non-negative ints'}")
        return padding
    if rank is None:
        raise TypeError(f"padding must be one of {', '.join(map(repr, names))}, "
                        f"got {padding!r}")
    return _int_tuple(padding, rank, "padding", low=0)


def _axis_padding(size, k, stride, dilation, padding, axis):
    """(before, after) padding of one spatial axis."""
    span = (k - 1) * dilation + 1
    if padding == "valid":
        return 0, 0
    if padding == "same":
        # TensorFlow's rule: ceil(size / stride) outputs, the odd pixel at the end.
        out = -(-size // stride)
        total = max((out - 1) * stride + span - size, 0)
        return total // 2, total - total // 2
    if padding == "causal":
        return span - 1, 0
    return padding[axis], padding[axis]


def _config_value(values):
    """Tuple hyper-parameters as JSON lists in configs; Conv1D's as plain ints."""
    return values[0] if len(values) == 1 else list(values)


class _ConvBase(Layer):
    """What Conv1D, Conv2D and Conv2DTranspose share: arguments, config, the
    im2col buffer, input checks. Internally every layer is two-dimensional;
    a 1-D layer works on views of height 1."""

    _rank = 2
    _paddings = ("valid", "same")
    _int_padding = True

    #: Largest im2col buffer, in bytes, before a batch is split into chunks of
    #: samples (one matrix product per chunk instead of one per batch).
    col_budget_bytes = 64 * 2 ** 20

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        rank = self._rank
        self.filters = check_number(filters, "filters", low=1, integer=True)
        self.kernel_size = _int_tuple(kernel_size, rank, "kernel_size")
        self.strides = _int_tuple(strides, rank, "strides")
        self.dilation_rate = _int_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = _check_padding(padding, rank if self._int_padding else None,
                                      self._paddings)
        self.activation, self._code, self._param = resolve_activation(activation)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self._needs_z = _act.needs_input(self._code)
        self._cache = None
        self._col = None
        self._col_filled = False
        self._dz = None
        self._geom = None

    def get_config(self):
        padding = self.padding
        if not isinstance(padding, str):
            padding = padding[0] if len(set(padding)) == 1 else list(padding)
        config = {**super().get_config(), "filters": self.filters,
                  "kernel_size": _config_value(self.kernel_size),
                  "strides": _config_value(self.strides),
                  "padding": padding,
                  "dilation_rate": _config_value(self.dilation_rate),
                  "activation": None if self.activation == "linear" else self.activation,
                  "use_bias": self.use_bias}
        for key in ("kernel_initializer", "bias_initializer"):
            name = initializers.name_of(getattr(self, key))
            if name is not None:
                config[key] = name
        for key in ("kernel_regularizer", "bias_regularizer"):
            if getattr(self, key) is not None:
                config[key] = regularizers.config_of(getattr(self, key))
        return config

    # --- shapes ------------------------------------------------------------

    def _describe(self):
        return (f"{type(self).__name__} {self.name!r} (kernel_size {self.kernel_size}, "
                f"strides {self.strides}, dilation_rate {self.dilation_rate}, "
                f"padding {self.padding!r})")

    def _check_rank(self, input_shape):
        rank = self._rank
        if len(input_shape) != rank + 1:
            axes = ", ".join(("batch",) + _AXES[rank] + ("channels",))
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects {rank + 2}-D inputs "
                f"({axes}), got samples of shape {tuple(input_shape)} "
                f"(inputs of rank {len(input_shape) + 1})")

    def _check_input(self, x):
        if self.built:
            x = as_float_array(x, self.dtype, f"input of {self.name}")
            self._check_rank(x.shape[1:])
            channels = self.input_shape[-1]
            if x.shape[-1] != channels:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r} was built for {channels} input "
                    f"channels (the last axis), got input of shape {x.shape}")
        return super()._check_input(x)

    def _as_2d(self, values, fill):
        return values if self._rank == 2 else (fill,) + tuple(values)

    # --- the im2col buffer -------------------------------------------------

    def _col_buffer(self, n, positions, patch):
        """The layer's im2col buffer, large enough for ``n`` samples if the
        budget allows (else for as many as it allows, at least one); reused
        until a call needs a larger one. None for a direct 1x1 convolution."""
        kh, kw = self._as_2d(self.kernel_size, 1)
        sh, sw = self._as_2d(self.strides, 1)
        pads = self._geom[2]
        if kh == kw == 1 and sh == sw == 1 and not any(pads):
            return None
        itemsize = np.dtype(self.dtype).itemsize
        fits = max(1, self.col_budget_bytes // max(1, positions * patch * itemsize))
        rows = min(max(n, 1), fits) * positions
        col = self._col
        if col is None or col.dtype != self.dtype or col.shape[1] != patch \
                or col.shape[0] < rows:
            col = self._col = np.empty((rows, patch), dtype=self.dtype)
        return col


class _Conv(_ConvBase):
    """Shared body of Conv1D and Conv2D."""

    def _geometry(self, input_shape):
        """(strides, dilation, pads) in 2-D kernel form, and the output spatial shape."""
        self._check_rank(input_shape)
        spatial = tuple(input_shape[:-1])
        pads, out = [], []
        for axis, (size, k, s, d) in enumerate(zip(spatial, self.kernel_size, self.strides,
                                                   self.dilation_rate)):
            before, after = _axis_padding(size, k, s, d, self.padding, axis)
            span = (k - 1) * d + 1
            if size + before + after < span:
                raise ValueError(
                    f"{self._describe()}: the kernel spans {span} along the "
                    f"{_AXES[self._rank][axis]} axis, more than the input's {size} "
                    f"(+ padding {before} + {after}); input shape {tuple(input_shape)}, "
                    f"kernel shape {self.kernel_size + (input_shape[-1], self.filters)}")
            pads += [before, after]
            out.append((size + before + after - span) // s + 1)
        pads = tuple(pads) if self._rank == 2 else (0, 0) + tuple(pads)
        return (self._as_2d(self.strides, 1), self._as_2d(self.dilation_rate, 1),
                pads, tuple(out))

    def build(self, input_shape):
        self._geom = self._geometry(input_shape)
        self.add_weight("kernel", self.kernel_size + (input_shape[-1], self.filters),
                        self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, self.bias_regularizer)

    def compute_output_shape(self, input_shape):
        return self._geometry(input_shape)[3] + (self.filters,)

    def flops_per_sample(self, input_shape):
        positions = math.prod(self._geometry(input_shape)[3])
        per_position = 2 * math.prod(self.kernel_size) * input_shape[-1] * self.filters
        per_position += self.filters if self.use_bias else 0
        per_position += self.filters if self.activation != "linear" else 0
        return int(positions * per_position)

    def _kernel_2d(self, array):
        return array.reshape(self._as_2d(self.kernel_size, 1) + array.shape[-2:])

    def forward(self, x, training=False):
        x = self._check_input(x)
        n = x.shape[0]
        strides, dilation, pads, out = self._geom
        x4 = x.reshape((n,) + self._as_2d(self.input_shape[:-1], 1) + self.input_shape[-1:])
        y = np.empty((n,) + self._as_2d(out, 1) + (self.filters,), dtype=self.dtype)
        z = np.empty_like(y) if self._needs_z else y
        positions = y.shape[1] * y.shape[2]
        col = self._col_buffer(n, positions, math.prod(self.kernel_size) * x4.shape[3])
        _conv.forward(x4, self._kernel_2d(self.kernel), self.bias if self.use_bias else None,
                      z, y, col, strides, dilation, pads, self._code, self._param)
        self._col_filled = col is not None and col.shape[0] >= n * positions
        self._cache = (x4, z, y, x.shape, col)
        return y.reshape((n,) + out + (self.filters,))

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x4, z, y, x_shape, col = self._cache
        n = x_shape[0]
        dy = self._check_grad(grad, (n,) + self._geom[3] + (self.filters,)).reshape(y.shape)
        dx = np.empty_like(x4) if self._input_grad_needed else None
        dz = dy
        if self._code != _act.CODES["linear"]:
            # Scratch for the gradient before the activation, kept from call
            # to call: a fresh multi-megabyte array costs a page fault per
            # 4 KiB when first written.
            dz = self._dz
            if dz is None or dz.shape != dy.shape or dz.dtype != dy.dtype:
                dz = self._dz = np.empty_like(dy)
        strides, dilation, pads, _ = self._geom
        _conv.backward(x4, self._kernel_2d(self.kernel), z, y, dy, dz,
                       self._kernel_2d(self.kernel_grad),
                       self.bias_grad if self.use_bias else None, dx, col,
                       strides, dilation, pads, self._code, self._param,
                       col_filled=self._col_filled and col is self._col)
        self._col_filled = False  # the backward pass overwrote the columns
        return None if dx is None else dx.reshape(x_shape)


class Conv1D(_Conv):
    """1-D convolution over inputs of shape (batch, length, channels).

    ``y[n, t, f] = activation(b[f] + sum_{i, c} x[n, t * stride + i * dilation
    - pad, c] * kernel[i, c, f])`` (a cross-correlation, as in Keras and
    PyTorch), computed by im2col and matrix products, sample by sample on
    cdl's threads (see ``Conv2D``).

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size : int
    strides : int
    padding : {"valid", "same", "causal"} or int
        "valid": none; "same": TensorFlow's rule, ``ceil(length / strides)``
        outputs with the total padding ``max((out - 1) * strides +
        dilated_kernel - length, 0)`` split evenly, the odd one at the end;
        "causal": ``dilated_kernel - 1`` zeros at the start only (the output
        at t sees inputs up to t); an int: that many zeros at both ends
        (PyTorch's ``padding``).
    dilation_rate : int
        Spacing between kernel taps; the kernel spans
        ``(kernel_size - 1) * dilation_rate + 1`` inputs.
    activation : str or None
        Fused into the layer's kernel, as in ``Dense``.
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
        Defaults: glorot uniform kernel, zero bias.
    kernel_regularizer, bias_regularizer : str or Regularizer, optional
        Weight penalties (``cdl.regularizers``), added to the loss.

    Attributes
    ----------
    kernel : ndarray of shape (kernel_size, in_channels, filters)
    bias : ndarray of shape (filters,), if ``use_bias``

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> conv = layers.Conv1D(8, 3, padding="same", activation="relu")
    >>> x = np.zeros((2, 20, 4), dtype=np.float32)       # (batch, steps, channels)
    >>> conv(x).shape, conv.kernel.shape
    ((2, 20, 8), (3, 4, 8))
    """

    _rank = 1
    _paddings = ("valid", "same", "causal")


class Conv2D(_Conv):
    """2-D convolution over inputs of shape (batch, height, width, channels).

    A cross-correlation as in Keras and PyTorch, computed by im2col into a
    buffer the layer keeps and matrix products, with the bias and
    activation fused; col2im (a scatter-add) gives the input gradient.
    Each sample's columns and products run while they are in cache, the
    samples spread over the threads of ``cdl.set_num_threads``; the
    results do not depend on the thread count. (Where the BLAS's thread
    count cannot be set, one product per batch is threaded by the BLAS,
    per chunk of samples when the buffer would exceed
    ``col_budget_bytes``, 64 MiB by default.)

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size : int or (int, int)
    strides : int or (int, int)
    padding : {"valid", "same"}, int or (int, int)
        "valid": none; "same": TensorFlow's rule per axis, ``ceil(size /
        stride)`` outputs with the total padding ``max((out - 1) * stride +
        dilated_kernel - size, 0)`` split evenly, the odd one at the end
        (bottom, right); an int or a pair: that many zeros on both sides of
        each axis (PyTorch's ``padding``).
    dilation_rate : int or (int, int)
        Spacing between kernel taps.
    activation : str or None
        Fused into the layer's kernel, as in ``Dense``.
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
        Defaults: glorot uniform kernel, zero bias.
    kernel_regularizer, bias_regularizer : str or Regularizer, optional
        Weight penalties (``cdl.regularizers``), added to the loss.

    Attributes
    ----------
    kernel : ndarray of shape (kernel_h, kernel_w, in_channels, filters)
    bias : ndarray of shape (filters,), if ``use_bias``

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> conv = layers.Conv2D(16, 3, strides=2, padding="same")
    >>> x = np.zeros((2, 28, 28, 1), dtype=np.float32)   # (batch, height, width, channels)
    >>> conv(x).shape, conv.kernel.shape
    ((2, 14, 14, 16), (3, 3, 1, 16))
    """

    _rank = 2


class Conv2DTranspose(_ConvBase):
    """Transposed 2-D convolution ("deconvolution"), as Keras's.

    The adjoint of a ``Conv2D`` with the same kernel size, strides,
    dilation and padding: its forward pass is that convolution's
    input-gradient computation (a matrix product, then col2im), which maps
    (batch, h, w, in_channels) to (batch, H, W, filters) with

    - padding "valid": ``H = h * stride + max(dilated_kernel - stride, 0)``;
    - padding "same": ``H = h * stride``.

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size, strides, dilation_rate : int or (int, int)
    padding : {"valid", "same"}
    activation : str or None
        Fused into the layer's kernel, as in ``Dense``.
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
    kernel_regularizer, bias_regularizer : str or Regularizer, optional
        Weight penalties (``cdl.regularizers``), added to the loss.

    Attributes
    ----------
    kernel : ndarray of shape (kernel_h, kernel_w, filters, in_channels)
        Keras's layout; in PyTorch's ``ConvTranspose2d`` it is
        ``(in_channels, filters, kernel_h, kernel_w)``.
    bias : ndarray of shape (filters,), if ``use_bias``

    Notes
    -----
    Keras's ``output_padding`` is not supported.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> up = layers.Conv2DTranspose(4, 2, strides=2)     # doubles height and width
    >>> up(np.zeros((1, 7, 7, 8), dtype=np.float32)).shape
    (1, 14, 14, 4)
    """

    _rank = 2
    _int_padding = False

    def _geometry(self, input_shape):
        """(strides, dilation, pads) of the underlying convolution, and the
        output spatial shape."""
        self._check_rank(input_shape)
        pads, out = [], []
        for size, k, s, d in zip(input_shape[:-1], self.kernel_size, self.strides,
                                 self.dilation_rate):
            span = (k - 1) * d + 1
            if self.padding == "valid":
                length = size * s + max(span - s, 0)
                pads += [0, 0]
            else:
                length = size * s
                total = max(span - s, 0)
                pads += [total // 2, total - total // 2]
            out.append(length)
        return self.strides, self.dilation_rate, tuple(pads), tuple(out)

    def build(self, input_shape):
        self._geom = self._geometry(input_shape)
        self.add_weight("kernel", self.kernel_size + (self.filters, input_shape[-1]),
                        self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, self.bias_regularizer)

    def compute_output_shape(self, input_shape):
        return self._geometry(input_shape)[3] + (self.filters,)

    def flops_per_sample(self, input_shape):
        inputs = math.prod(input_shape[:-1])
        flops = inputs * 2 * math.prod(self.kernel_size) * input_shape[-1] * self.filters
        outputs = math.prod(self._geometry(input_shape)[3])
        flops += outputs * self.filters * (int(self.use_bias) + int(self.activation != "linear"))
        return int(flops)

    def forward(self, x, training=False):
        x = self._check_input(x)
        n = x.shape[0]
        strides, dilation, pads, out = self._geom
        y = np.empty((n,) + out + (self.filters,), dtype=self.dtype)
        z = np.empty_like(y) if self._needs_z else y
        col = self._col_buffer(n, x.shape[1] * x.shape[2],
                               math.prod(self.kernel_size) * self.filters)
        _conv.transpose_forward(x, self.kernel, self.bias if self.use_bias else None,
                                z, y, col, strides, dilation, pads, self._code, self._param)
        self._cache = (x, z, y, col)
        return y

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x, z, y, col = self._cache
        dy = self._check_grad(grad, y.shape)
        dx = np.empty_like(x)
        dz = np.empty_like(dy) if self._code != _act.CODES["linear"] else dy
        strides, dilation, pads, _ = self._geom
        _conv.transpose_backward(x, self.kernel, z, y, dy, dz, self.kernel_grad,
                                 self.bias_grad if self.use_bias else None, dx, col,
                                 strides, dilation, pads, self._code, self._param)
        return dx
