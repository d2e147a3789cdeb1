"""Convolution layers over channels-last inputs: Conv1D, Conv2D, their
grouped, depthwise and separable forms, and the transposed convolutions.

They run the compiled kernels of ``cdl._kernels.conv`` (a 1-D convolution
is a 2-D one of height 1), with the bias and the activation fused into the
same call, as in ``Dense``: im2col and matrix products for ordinary
convolutions and wide groups, direct loops for thin groups (depthwise).
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

__all__ = ["Conv1D", "Conv2D", "Conv2DTranspose", "Conv1DTranspose", "DepthwiseConv1D",
           "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"]

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


def _int_pair(value, name):
    """An int >= 0, as the pair (value, value), or a pair of ints >= 0."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = check_number(value, name, low=0, integer=True)
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(check_number(v, name, low=0, integer=True) for v in value)
    raise TypeError(f"{name} must hold ints >= 0 or (before, after) pairs of them, "
                    f"got {value!r}")


def _check_padding(padding, rank, names):
    """A padding name, or explicit padding as ``rank`` (before, after) pairs.

    Explicit padding is an int (every side), a tuple of ``rank`` ints (each
    axis symmetric, as PyTorch's ``padding``) or of ``rank`` (before,
    after) pairs (Keras's ``ZeroPadding2D`` form, ``((top, bottom), (left,
    right))``); a 1-D layer also takes one (left, right) pair.
    """
    if isinstance(padding, str):
        if padding not in names:
            known = ", ".join(repr(p) for p in names)
            raise ValueError(f"unknown padding {padding!r}; expected one of {known}"
                             f"{'' if rank is None else ', an int, or a tuple of ints or of (before, after) pairs'}")
        return padding
    if rank is None:
        raise TypeError(f"padding must be one of {', '.join(map(repr, names))}, "
                        f"got {padding!r}")
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        return (_int_pair(padding, "padding"),) * rank
    if not isinstance(padding, (tuple, list)):
        raise TypeError(f"padding must be a padding name, an int or a tuple, got {padding!r}")
    padding = tuple(padding)
    if rank == 1 and len(padding) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in padding):
        return (_int_pair(padding, "padding"),)     # (left, right)
    if len(padding) != rank:
        raise ValueError(f"padding must be an int, {rank} ints or {rank} (before, after) "
                         f"pairs, got {padding!r}")
    return tuple(_int_pair(p, "padding") for p in padding)


def _padding_attribute(pairs):
    """The ``padding`` attribute of explicit pads: one int per axis when
    every axis is symmetric (PyTorch's form), else the pairs."""
    if all(a == b for a, b in pairs):
        return tuple(a for a, _ in pairs)
    return pairs


def _padding_config(padding):
    """``padding`` as JSON: a name, an int, a list of ints or of pairs."""
    if isinstance(padding, str):
        return padding
    if all(isinstance(p, int) for p in padding):
        return padding[0] if len(set(padding)) == 1 else list(padding)
    if len(padding) == 1:
        return list(padding[0])                   # 1-D: [left, right]
    return [list(p) for p in padding]


def _pairs(padding):
    """The (before, after) pairs of an explicit ``padding`` attribute."""
    return tuple(p if isinstance(p, tuple) else (p, p) for p in padding)


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
    return _pairs(padding)[axis]


def _check_padding_mode(padding_mode):
    if padding_mode != "zeros":
        raise ValueError(f"padding_mode {padding_mode!r} is not supported: cdl pads with "
                         f"zeros only (padding_mode='zeros'); pad the input first for "
                         f"reflect, replicate or circular padding")
    return padding_mode


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
        padding = _check_padding(padding, rank if self._int_padding else None,
                                 self._paddings)
        self.padding = padding if isinstance(padding, str) else _padding_attribute(padding)
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
        config = {**super().get_config(), "filters": self.filters,
                  "kernel_size": _config_value(self.kernel_size),
                  "strides": _config_value(self.strides),
                  "padding": _padding_config(self.padding),
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


#: Input channels per group up to which a grouped convolution runs the
#: direct loops rather than one im2col product per group. Measured on
#: 28 x 28 x 64 images, 3x3 kernels, one thread: the loops took a third of
#: the products' time at 1 and 2 channels per group, half at 4, 1.5 times
#: it at 8 and 3.5 times at 16.
DIRECT_GROUP_CHANNELS = 4


class _Conv(_ConvBase):
    """Shared body of Conv1D and Conv2D (and their depthwise forms)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, padding_mode="zeros",
                 name=None, dtype=None):
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         dilation_rate=dilation_rate, activation=activation,
                         use_bias=use_bias, kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, name=name, dtype=dtype)
        self.groups = check_number(groups, "groups", low=1, integer=True)
        if self.filters % self.groups:
            raise ValueError(f"{type(self).__name__}: filters ({self.filters}) must be "
                             f"divisible by groups ({self.groups})")
        self.padding_mode = _check_padding_mode(padding_mode)

    def get_config(self):
        config = super().get_config()
        config["groups"] = self.groups
        return config

    def _check_groups(self, channels):
        if channels % self.groups:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: its input has {channels} channels, "
                f"not divisible by groups ({self.groups}); in and out channels "
                f"({self.filters}) must both be divisible by groups")

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
                    f"kernel shape {self._kernel_shape(input_shape[-1])}")
            pads += [before, after]
            out.append((size + before + after - span) // s + 1)
        pads = tuple(pads) if self._rank == 2 else (0, 0) + tuple(pads)
        return (self._as_2d(self.strides, 1), self._as_2d(self.dilation_rate, 1),
                pads, tuple(out))

    def _out_channels(self, channels):
        return self.filters

    def _kernel_shape(self, channels):
        return self.kernel_size + (channels // self.groups, self.filters)

    def _make_weights(self, channels):
        self.add_weight("kernel", self._kernel_shape(channels), self.kernel_initializer,
                        self.kernel_regularizer)

    def build(self, input_shape):
        self._check_rank(input_shape)
        self._check_groups(input_shape[-1])
        self._geom = self._geometry(input_shape)
        self._make_weights(input_shape[-1])
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, self.bias_regularizer)
        channels_per_group = input_shape[-1] // self.groups
        self._direct = self.groups > 1 and channels_per_group <= DIRECT_GROUP_CHANNELS

    def compute_output_shape(self, input_shape):
        return self._geometry(input_shape)[3] + (self._out_channels(input_shape[-1]),)

    def flops_per_sample(self, input_shape):
        filters = self._out_channels(input_shape[-1])
        positions = math.prod(self._geometry(input_shape)[3])
        per_position = 2 * math.prod(self.kernel_size) * (input_shape[-1] // self.groups) \
            * filters
        per_position += filters if self.use_bias else 0
        per_position += filters if self.activation != "linear" else 0
        return int(positions * per_position)

    def _kernel_2d(self, array):
        return array.reshape(self._as_2d(self.kernel_size, 1) + array.shape[-2:])

    def _kernel4(self):
        """The kernel as (kh, kw, in_channels / groups, filters)."""
        return self._kernel_2d(self.kernel)

    def _kernel_grad4(self):
        return self._kernel_2d(self.kernel_grad)

    def forward(self, x, training=False):
        x = self._check_input(x)
        n = x.shape[0]
        strides, dilation, pads, out = self._geom
        x4 = x.reshape((n,) + self._as_2d(self.input_shape[:-1], 1) + self.input_shape[-1:])
        y = np.empty((n,) + self._as_2d(out, 1) + (self.filters,), dtype=self.dtype)
        z = np.empty_like(y) if self._needs_z else y
        bias = self.bias if self.use_bias else None
        col = None
        if self.groups == 1:
            positions = y.shape[1] * y.shape[2]
            col = self._col_buffer(n, positions, math.prod(self.kernel_size) * x4.shape[3])
            _conv.forward(x4, self._kernel4(), bias, z, y, col, strides, dilation, pads,
                          self._code, self._param)
            self._col_filled = col is not None and col.shape[0] >= n * positions
        elif self._direct:
            _conv.grouped_forward(x4, self._kernel4(), bias, z, y, strides, dilation, pads,
                                  self.groups, self._code, self._param)
        else:
            self._grouped_products_forward(x4, bias, z, y)
        self._cache = (x4, z, y, x.shape, col)
        return y.reshape((n,) + out + (self.filters,))

    def _group_slices(self, channels):
        cg, fg = channels // self.groups, self.filters // self.groups
        return [(slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg))
                for g in range(self.groups)]

    def _grouped_products_forward(self, x4, bias, z, y):
        """Wide groups: one im2col convolution per group, on copies of the
        group's channels; the activation applied once at the end."""
        strides, dilation, pads, _ = self._geom
        kernel = self._kernel4()
        positions = y.shape[1] * y.shape[2]
        col = self._col_buffer(x4.shape[0], positions,
                               math.prod(self.kernel_size) * kernel.shape[2])
        linear = _act.CODES["linear"]
        for cs, fs in self._group_slices(x4.shape[3]):
            xg = np.ascontiguousarray(x4[..., cs])
            zg = np.empty(y.shape[:3] + (fs.stop - fs.start,), dtype=self.dtype)
            _conv.forward(xg, np.ascontiguousarray(kernel[..., fs]),
                          None if bias is None else bias[fs], zg, zg, col, strides,
                          dilation, pads, linear, 0.0)
            z[..., fs] = zg
        if z is not y or self._code != linear:
            _act.forward(self._code, z.reshape(-1, self.filters),
                         y.reshape(-1, self.filters), self._param)

    def _grouped_products_backward(self, x4, dz, dx):
        strides, dilation, pads, _ = self._geom
        kernel, kernel_grad = self._kernel4(), self._kernel_grad4()
        positions = dz.shape[1] * dz.shape[2]
        col = self._col_buffer(x4.shape[0], positions,
                               math.prod(self.kernel_size) * kernel.shape[2])
        linear = _act.CODES["linear"]
        for cs, fs in self._group_slices(x4.shape[3]):
            xg = np.ascontiguousarray(x4[..., cs])
            dzg = np.ascontiguousarray(dz[..., fs])
            wg = np.ascontiguousarray(kernel[..., fs])
            dwg = np.empty_like(wg)
            dbg = np.empty(fs.stop - fs.start, dtype=self.dtype) if self.use_bias else None
            dxg = np.empty_like(xg) if dx is not None else None
            _conv.backward(xg, wg, None, None, dzg, dzg, dwg, dbg, dxg, col, strides,
                           dilation, pads, linear, 0.0)
            kernel_grad[..., fs] = dwg
            if dbg is not None:
                self.bias_grad[fs] = dbg
            if dx is not None:
                dx[..., cs] = dxg

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
        bias_grad = self.bias_grad if self.use_bias else None
        if self.groups == 1:
            _conv.backward(x4, self._kernel4(), z, y, dy, dz, self._kernel_grad4(),
                           bias_grad, dx, col, strides, dilation, pads, self._code,
                           self._param, col_filled=self._col_filled and col is self._col)
            self._col_filled = False  # the backward pass overwrote the columns
        elif self._direct:
            _conv.grouped_backward(x4, self._kernel4(), z, y, dy, dz, self._kernel_grad4(),
                                   bias_grad, dx, strides, dilation, pads, self.groups,
                                   self._code, self._param)
        else:
            if self._code != _act.CODES["linear"]:
                _act.backward(self._code, z.reshape(-1, self.filters),
                              y.reshape(-1, self.filters), dy.reshape(-1, self.filters),
                              dz.reshape(-1, self.filters), self._param)
            self._grouped_products_backward(x4, dz, dx)
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
    padding : {"valid", "same", "causal"}, int or (int, int)
        "valid": none; "same": TensorFlow's rule, ``ceil(length / strides)``
        outputs with the total padding ``max((out - 1) * strides +
        dilated_kernel - length, 0)`` split evenly, the odd one at the end;
        "causal": ``dilated_kernel - 1`` zeros at the start only (the output
        at t sees inputs up to t); an int: that many zeros at both ends
        (PyTorch's ``padding``); a pair: (left, right) zeros.
    dilation_rate : int
        Spacing between kernel taps; the kernel spans
        ``(kernel_size - 1) * dilation_rate + 1`` inputs.
    groups : int
        As PyTorch's: the input and output channels are split into
        ``groups`` equal parts, output channel f (of group ``f // (filters
        / groups)``) seeing only its group's ``in_channels / groups`` input
        channels. ``groups == in_channels`` is a depthwise convolution
        (see ``DepthwiseConv1D``). Both channel counts must be divisible
        by it.
    activation : str or None
        Fused into the layer's kernel, as in ``Dense``.
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
        Defaults: glorot uniform kernel, zero bias.
    kernel_regularizer, bias_regularizer : str or Regularizer, optional
        Weight penalties (``cdl.regularizers``), added to the loss.

    padding_mode : {"zeros"}
        PyTorch's argument; only zero padding is supported.

    Attributes
    ----------
    kernel : ndarray of shape (kernel_size, in_channels / groups, filters)
        PyTorch's ``weight`` is ``kernel.transpose(2, 1, 0)``.
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
    padding : {"valid", "same"}, int, (int, int) or ((int, int), (int, int))
        "valid": none; "same": TensorFlow's rule per axis, ``ceil(size /
        stride)`` outputs with the total padding ``max((out - 1) * stride +
        dilated_kernel - size, 0)`` split evenly, the odd one at the end
        (bottom, right); an int or a pair: that many zeros on both sides of
        each axis (PyTorch's ``padding``); ``((top, bottom), (left,
        right))``: each side's zeros.
    dilation_rate : int or (int, int)
        Spacing between kernel taps.
    groups : int
        As PyTorch's: the input and output channels are split into
        ``groups`` equal parts, output channel f (of group ``f // (filters
        / groups)``) seeing only its group's ``in_channels / groups`` input
        channels. ``groups == in_channels`` is a depthwise convolution
        (see ``DepthwiseConv2D``). Both channel counts must be divisible
        by it. Groups of up to ``DIRECT_GROUP_CHANNELS`` input channels run
        direct loops; wider ones one im2col product per group.
    activation : str or None
        Fused into the layer's kernel, as in ``Dense``.
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
        Defaults: glorot uniform kernel, zero bias.
    kernel_regularizer, bias_regularizer : str or Regularizer, optional
        Weight penalties (``cdl.regularizers``), added to the loss.

    padding_mode : {"zeros"}
        PyTorch's argument; only zero padding is supported.

    Attributes
    ----------
    kernel : ndarray of shape (kernel_h, kernel_w, in_channels / groups, filters)
        PyTorch's ``weight`` is ``kernel.transpose(3, 2, 0, 1)``.
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


class _Depthwise(_Conv):
    """Shared body of DepthwiseConv1D and DepthwiseConv2D: a convolution of
    ``groups == in_channels`` and ``filters == in_channels *
    depth_multiplier``, whose kernel keeps Keras's shape (..., in_channels,
    depth_multiplier)."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, padding_mode="zeros",
                 name=None, dtype=None):
        self.depth_multiplier = check_number(depth_multiplier, "depth_multiplier", low=1,
                                             integer=True)
        # filters and groups are known once the input's channels are.
        super().__init__(1, kernel_size, strides=strides, padding=padding,
                         dilation_rate=dilation_rate, activation=activation,
                         use_bias=use_bias, kernel_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer,
                         kernel_regularizer=depthwise_regularizer,
                         bias_regularizer=bias_regularizer, padding_mode=padding_mode,
                         name=name, dtype=dtype)
        self.filters = None
        self.groups = None

    def get_config(self):
        config = super().get_config()
        for key in ("filters", "groups"):
            del config[key]
        config["depth_multiplier"] = self.depth_multiplier
        for old, new in (("kernel_initializer", "depthwise_initializer"),
                         ("kernel_regularizer", "depthwise_regularizer")):
            if old in config:
                config[new] = config.pop(old)
        return config

    def _check_groups(self, channels):
        self.groups = channels
        self.filters = channels * self.depth_multiplier

    def _out_channels(self, channels):
        return channels * self.depth_multiplier

    def _kernel_shape(self, channels):
        return self.kernel_size + (channels, self.depth_multiplier)

    def _make_weights(self, channels):
        self.add_weight("depthwise_kernel", self._kernel_shape(channels),
                        self.kernel_initializer, self.kernel_regularizer)

    def flops_per_sample(self, input_shape):
        positions = math.prod(self._geometry(input_shape)[3])
        filters = self._out_channels(input_shape[-1])
        per_position = 2 * math.prod(self.kernel_size) * filters
        per_position += filters * (int(self.use_bias) + int(self.activation != "linear"))
        return int(positions * per_position)

    def _kernel4(self):
        # (..., C, M) and (..., 1, C * M) are the same memory: output
        # channel c * M + m is the m-th filter of input channel c.
        return self.depthwise_kernel.reshape(self._as_2d(self.kernel_size, 1)
                                             + (1, self.filters))

    def _kernel_grad4(self):
        return self.depthwise_kernel_grad.reshape(self._as_2d(self.kernel_size, 1)
                                                  + (1, self.filters))


_DEPTHWISE_DOC = """Depthwise {rank}-D convolution, as Keras's ``{name}``.

    Each input channel is convolved with ``depth_multiplier`` filters of
    its own: output channel ``c * depth_multiplier + m`` is input channel c
    through filter m. The same maths as ``{conv}(groups=in_channels,
    filters=in_channels * depth_multiplier)`` (and PyTorch's
    ``{torch}(C, C * depth_multiplier, groups=C)``), run by the direct
    grouped loops.

    Parameters
    ----------
    kernel_size, strides, dilation_rate : {ints}
    padding : {padding}
        As ``{conv}``'s.
    depth_multiplier : int
        Output channels per input channel.
    activation : str or None
        Fused into the layer's kernel, as in ``Dense``.
    use_bias : bool
    depthwise_initializer, bias_initializer : str or callable
        Defaults: glorot uniform kernel, zero bias.
    depthwise_regularizer, bias_regularizer : str or Regularizer, optional
        Weight penalties (``cdl.regularizers``), added to the loss.
    padding_mode : {{"zeros"}}
        PyTorch's argument; only zero padding is supported.

    Attributes
    ----------
    depthwise_kernel : ndarray of shape {kshape}
        Keras's layout; PyTorch's ``weight`` (C * depth_multiplier, 1,
        {tk}) is ``depthwise_kernel.reshape({flat}).transpose({perm})``.
    bias : ndarray of shape (in_channels * depth_multiplier,), if ``use_bias``

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> conv = layers.{name}(3, depth_multiplier=2, padding="same")
    >>> conv(np.zeros({xshape}, dtype=np.float32)).shape, conv.depthwise_kernel.shape
    ({yshape}, {kexample})
    """


class DepthwiseConv1D(_Depthwise):
    __doc__ = _DEPTHWISE_DOC.format(
        rank=1, name="DepthwiseConv1D", conv="Conv1D", torch="Conv1d", ints="int",
        padding='{"valid", "same", "causal"}, int or (int, int)',
        kshape="(kernel_size, in_channels, depth_multiplier)", tk="kernel_size",
        flat="kernel_size, 1, -1", perm="2, 1, 0", xshape="(2, 10, 4)",
        yshape="(2, 10, 8)", kexample="(3, 4, 2)")
    _rank = 1
    _paddings = ("valid", "same", "causal")


class DepthwiseConv2D(_Depthwise):
    __doc__ = _DEPTHWISE_DOC.format(
        rank=2, name="DepthwiseConv2D", conv="Conv2D", torch="Conv2d",
        ints="int or (int, int)",
        padding='{"valid", "same"}, int, (int, int) or ((int, int), (int, int))',
        kshape="(kernel_h, kernel_w, in_channels, depth_multiplier)",
        tk="kernel_h, kernel_w", flat="kernel_h, kernel_w, 1, -1", perm="3, 2, 0, 1",
        xshape="(2, 8, 8, 4)", yshape="(2, 8, 8, 8)", kexample="(3, 3, 4, 2)")
    _rank = 2


class _Separable(_Depthwise):
    """Shared body of SeparableConv1D and SeparableConv2D: a depthwise
    convolution (no bias) then a 1x1 convolution with the bias and the
    activation."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, padding_mode="zeros", name=None, dtype=None):
        super().__init__(kernel_size, strides=strides, padding=padding,
                         depth_multiplier=depth_multiplier, dilation_rate=dilation_rate,
                         activation=activation, use_bias=use_bias,
                         depthwise_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer,
                         depthwise_regularizer=depthwise_regularizer,
                         bias_regularizer=bias_regularizer, padding_mode=padding_mode,
                         name=name, dtype=dtype)
        self.pointwise_filters = check_number(filters, "filters", low=1, integer=True)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)

    def get_config(self):
        config = super().get_config()
        config["filters"] = self.pointwise_filters
        name = initializers.name_of(self.pointwise_initializer)
        if name is not None:
            config["pointwise_initializer"] = name
        if self.pointwise_regularizer is not None:
            config["pointwise_regularizer"] = regularizers.config_of(
                self.pointwise_regularizer)
        return config

    def _out_channels(self, channels):
        return self.pointwise_filters

    def build(self, input_shape):
        self._check_rank(input_shape)
        self._check_groups(input_shape[-1])
        self._geom = self._geometry(input_shape)
        self._make_weights(input_shape[-1])
        self.add_weight("pointwise_kernel",
                        (1,) * self._rank + (self.filters, self.pointwise_filters),
                        self.pointwise_initializer, self.pointwise_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.pointwise_filters,), self.bias_initializer,
                            self.bias_regularizer)
        self._direct = True

    def flops_per_sample(self, input_shape):
        positions = math.prod(self._geometry(input_shape)[3])
        middle = self.filters if self.built else input_shape[-1] * self.depth_multiplier
        out = self.pointwise_filters
        per_position = 2 * math.prod(self.kernel_size) * middle + 2 * middle * out
        per_position += out * (int(self.use_bias) + int(self.activation != "linear"))
        return int(positions * per_position)

    def _pointwise4(self, array):
        return array.reshape((1, 1) + array.shape[-2:])

    def forward(self, x, training=False):
        x = self._check_input(x)
        n = x.shape[0]
        strides, dilation, pads, out = self._geom
        x4 = x.reshape((n,) + self._as_2d(self.input_shape[:-1], 1) + self.input_shape[-1:])
        u = np.empty((n,) + self._as_2d(out, 1) + (self.filters,), dtype=self.dtype)
        linear = _act.CODES["linear"]
        _conv.grouped_forward(x4, self._kernel4(), None, u, u, strides, dilation, pads,
                              self.groups, linear, 0.0)
        y = np.empty(u.shape[:3] + (self.pointwise_filters,), dtype=self.dtype)
        z = np.empty_like(y) if self._needs_z else y
        # A 1x1 convolution with unit strides reads the image as its columns.
        _conv.forward(u, self._pointwise4(self.pointwise_kernel),
                      self.bias if self.use_bias else None, z, y, None, (1, 1), (1, 1),
                      (0, 0, 0, 0), self._code, self._param)
        self._cache = (x4, u, z, y, x.shape)
        return y.reshape((n,) + out + (self.pointwise_filters,))

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x4, u, z, y, x_shape = self._cache
        n = x_shape[0]
        dy = self._check_grad(grad, (n,) + self._geom[3] + (self.pointwise_filters,))
        dy = dy.reshape(y.shape)
        dz = np.empty_like(dy) if self._code != _act.CODES["linear"] else dy
        du = np.empty_like(u)
        _conv.backward(u, self._pointwise4(self.pointwise_kernel), z, y, dy, dz,
                       self._pointwise4(self.pointwise_kernel_grad),
                       self.bias_grad if self.use_bias else None, du, None, (1, 1), (1, 1),
                       (0, 0, 0, 0), self._code, self._param)
        dx = np.empty_like(x4) if self._input_grad_needed else None
        strides, dilation, pads, _ = self._geom
        linear = _act.CODES["linear"]
        _conv.grouped_backward(x4, self._kernel4(), None, None, du, du,
                               self._kernel_grad4(), None, dx, strides, dilation, pads,
                               self.groups, linear, 0.0)
        return None if dx is None else dx.reshape(x_shape)


_SEPARABLE_DOC = """Depthwise separable {rank}-D convolution, as Keras's ``{name}``.

    A depthwise convolution (``Depthwise{conv}``, without bias: each input
    channel through ``depth_multiplier`` filters of its own), then a
    pointwise (1x1) convolution to ``filters`` channels, with the bias and
    the activation. In PyTorch: ``{torch}(C, C * depth_multiplier, k,
    groups=C, bias=False)`` then ``{torch}(C * depth_multiplier, filters,
    1)``.

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size, strides, dilation_rate : {ints}
        Of the depthwise step.
    padding : {padding}
        As ``{conv}``'s, of the depthwise step.
    depth_multiplier : int
        Depthwise output channels per input channel.
    activation : str or None
        Fused into the pointwise kernel.
    use_bias : bool
    depthwise_initializer, pointwise_initializer, bias_initializer : str or callable
        Defaults: glorot uniform kernels, zero bias.
    depthwise_regularizer, pointwise_regularizer, bias_regularizer : optional
        Weight penalties (``cdl.regularizers``), added to the loss.
    padding_mode : {{"zeros"}}
        PyTorch's argument; only zero padding is supported.

    Attributes
    ----------
    depthwise_kernel : ndarray of shape {kshape}
    pointwise_kernel : ndarray of shape {pshape}
    bias : ndarray of shape (filters,), if ``use_bias``

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> conv = layers.{name}(16, 3, padding="same")
    >>> conv(np.zeros({xshape}, dtype=np.float32)).shape, conv.pointwise_kernel.shape
    ({yshape}, {pexample})
    """


class SeparableConv1D(_Separable):
    __doc__ = _SEPARABLE_DOC.format(
        rank=1, name="SeparableConv1D", conv="Conv1D", torch="Conv1d", ints="int",
        padding='{"valid", "same", "causal"}, int or (int, int)',
        kshape="(kernel_size, in_channels, depth_multiplier)",
        pshape="(1, in_channels * depth_multiplier, filters)", xshape="(2, 10, 4)",
        yshape="(2, 10, 16)", pexample="(1, 4, 16)")
    _rank = 1
    _paddings = ("valid", "same", "causal")


class SeparableConv2D(_Separable):
    __doc__ = _SEPARABLE_DOC.format(
        rank=2, name="SeparableConv2D", conv="Conv2D", torch="Conv2d",
        ints="int or (int, int)",
        padding='{"valid", "same"}, int, (int, int) or ((int, int), (int, int))',
        kshape="(kernel_h, kernel_w, in_channels, depth_multiplier)",
        pshape="(1, 1, in_channels * depth_multiplier, filters)", xshape="(2, 8, 8, 4)",
        yshape="(2, 8, 8, 16)", pexample="(1, 1, 4, 16)")
    _rank = 2


class _ConvTranspose(_ConvBase):
    """Shared body of Conv1DTranspose and Conv2DTranspose."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, padding_mode="zeros",
                 name=None, dtype=None):
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         dilation_rate=dilation_rate, activation=activation,
                         use_bias=use_bias, kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, name=name, dtype=dtype)
        if not isinstance(self.padding, str) and any(
                isinstance(p, tuple) for p in self.padding):
            raise ValueError(f"{type(self).__name__} takes symmetric padding (an int per "
                             f"axis, PyTorch's), got {padding!r}")
        if output_padding is not None:
            output_padding = _int_tuple(output_padding, self._rank, "output_padding", low=0)
            if self.padding == "same" and any(output_padding):
                raise ValueError(f"{type(self).__name__}: output_padding needs padding "
                                 f"'valid' or explicit ints, not 'same'")
            for op, s, d in zip(output_padding, self.strides, self.dilation_rate):
                if op >= s and op >= d:
                    raise ValueError(
                        f"{type(self).__name__}: output_padding {output_padding} must be "
                        f"smaller than either the strides {self.strides} or the "
                        f"dilation_rate {self.dilation_rate} along each axis (PyTorch's "
                        f"rule)")
        self.output_padding = output_padding
        self.padding_mode = _check_padding_mode(padding_mode)

    def get_config(self):
        config = super().get_config()
        config["output_padding"] = None if self.output_padding is None \
            else _config_value(self.output_padding)
        return config

    def _geometry(self, input_shape):
        """(strides, dilation, pads) of the underlying convolution in 2-D
        kernel form, and the output spatial shape. The padding after the
        image may be negative: ``output_padding`` beyond ``padding`` adds
        rows no window of the underlying convolution reaches."""
        self._check_rank(input_shape)
        pads, out = [], []
        for axis, (size, k, s, d) in enumerate(zip(input_shape[:-1], self.kernel_size,
                                                   self.strides, self.dilation_rate)):
            span = (k - 1) * d + 1
            if self.padding == "same":
                length = size * s
                total = max(span - s, 0)
                pads += [total // 2, total - total // 2]
            elif self.padding == "valid" and self.output_padding is None:
                length = size * s + max(span - s, 0)
                pads += [0, 0]
            else:
                # PyTorch's ConvTranspose: (size - 1) * stride - 2 * padding
                # + dilated_kernel + output_padding.
                p = 0 if self.padding == "valid" else self.padding[axis]
                op = 0 if self.output_padding is None else self.output_padding[axis]
                length = (size - 1) * s - 2 * p + span + op
                if length < 1:
                    raise ValueError(
                        f"{self._describe()}: the output's {_AXES[self._rank][axis]} "
                        f"would be {length} for an input of {size} (padding {p} on each "
                        f"side removes more than the transposed convolution makes)")
                pads += [p, p - op]
            out.append(length)
        pads = tuple(pads) if self._rank == 2 else (0, 0) + tuple(pads)
        return (self._as_2d(self.strides, 1), self._as_2d(self.dilation_rate, 1), pads,
                tuple(out))

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

    def _kernel_2d(self, array):
        return array.reshape(self._as_2d(self.kernel_size, 1) + array.shape[-2:])

    def forward(self, x, training=False):
        x = self._check_input(x)
        n = x.shape[0]
        strides, dilation, pads, out = self._geom
        x4 = x.reshape((n,) + self._as_2d(self.input_shape[:-1], 1) + self.input_shape[-1:])
        y = np.empty((n,) + self._as_2d(out, 1) + (self.filters,), dtype=self.dtype)
        z = np.empty_like(y) if self._needs_z else y
        col = self._col_buffer(n, x4.shape[1] * x4.shape[2],
                               math.prod(self.kernel_size) * self.filters)
        _conv.transpose_forward(x4, self._kernel_2d(self.kernel),
                                self.bias if self.use_bias else None,
                                z, y, col, strides, dilation, pads, self._code, self._param)
        self._cache = (x4, z, y, col, x.shape)
        return y.reshape((n,) + out + (self.filters,))

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x4, z, y, col, x_shape = self._cache
        dy = self._check_grad(grad, (x_shape[0],) + self._geom[3] + (self.filters,))
        dy = dy.reshape(y.shape)
        dx = np.empty_like(x4)
        dz = np.empty_like(dy) if self._code != _act.CODES["linear"] else dy
        strides, dilation, pads, _ = self._geom
        _conv.transpose_backward(x4, self._kernel_2d(self.kernel), z, y, dy, dz,
                                 self._kernel_2d(self.kernel_grad),
                                 self.bias_grad if self.use_bias else None, dx, col,
                                 strides, dilation, pads, self._code, self._param)
        return dx.reshape(x_shape)


_TRANSPOSE_DOC = """Transposed {rank}-D convolution ("deconvolution"), as Keras's
    ``{name}`` and PyTorch's ``{torch}``.

    The adjoint of a ``{conv}`` with the same kernel size, strides,
    dilation and padding: its forward pass is that convolution's
    input-gradient computation (a matrix product, then col2im), which maps
    {inshape} to {outshape} with, per spatial axis,

    - padding "valid" (Keras's rule): ``L = l * stride + max(dilated_kernel
      - stride, 0)``;
    - padding "same": ``L = l * stride``;
    - an int padding p, or "valid" with ``output_padding`` (p = 0), as
      PyTorch: ``L = (l - 1) * stride - 2 * p + dilated_kernel +
      output_padding``.

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size, strides, dilation_rate : {ints}
    padding : {padding}
        "valid", "same", or PyTorch's symmetric zero padding per axis
        (which crops the full transposed output).
    output_padding : {ints}, optional
        PyTorch's: extra rows added at the end of each axis, to pick one
        of the input sizes a strided convolution maps to the same output
        size; smaller than the stride or the dilation of its axis. Not
        with "same".
    activation : str or None
        Fused into the layer's kernel, as in ``Dense``.
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
    kernel_regularizer, bias_regularizer : str or Regularizer, optional
        Weight penalties (``cdl.regularizers``), added to the loss.
    padding_mode : {{"zeros"}}
        PyTorch's argument; only zeros is supported.

    Attributes
    ----------
    kernel : ndarray of shape {kshape}
        Keras's layout; in PyTorch's ``{torch}`` it is
        {tshape}.
    bias : ndarray of shape (filters,), if ``use_bias``

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> up = layers.{name}(4, 2, strides=2)     # doubles each spatial size
    >>> up(np.zeros({xshape}, dtype=np.float32)).shape
    {yshape}
    """


class Conv2DTranspose(_ConvTranspose):
    __doc__ = _TRANSPOSE_DOC.format(
        rank=2, name="Conv2DTranspose", torch="ConvTranspose2d", conv="Conv2D",
        inshape="(batch, h, w, in_channels)", outshape="(batch, H, W, filters)",
        ints="int or (int, int)", padding='{"valid", "same"}, int or (int, int)',
        kshape="(kernel_h, kernel_w, filters, in_channels)",
        tshape="``(in_channels, filters, kernel_h, kernel_w)``", xshape="(1, 7, 7, 8)",
        yshape="(1, 14, 14, 4)")
    _rank = 2


class Conv1DTranspose(_ConvTranspose):
    __doc__ = _TRANSPOSE_DOC.format(
        rank=1, name="Conv1DTranspose", torch="ConvTranspose1d", conv="Conv1D",
        inshape="(batch, l, in_channels)", outshape="(batch, L, filters)", ints="int",
        padding='{"valid", "same"} or int', kshape="(kernel_size, filters, in_channels)",
        tshape="``(in_channels, filters, kernel_size)``", xshape="(1, 7, 8)",
        yshape="(1, 14, 4)")
    _rank = 1
