"""Pooling layers over channels-last inputs, as Keras: (batch, steps, channels)
for 1-D pooling and (batch, height, width, channels) for 2-D pooling."""
import math
import numbers

import numpy as np

from cdl._kernels import pooling as _pool
from cdl._validation import check_bool, choose
from cdl.layers.base import Layer

__all__ = ["MaxPool1D", "AvgPool1D", "MaxPool2D", "AvgPool2D",
           "GlobalMaxPool1D", "GlobalAvgPool1D", "GlobalMaxPool2D", "GlobalAvgPool2D",
           "AdaptiveMaxPool1D", "AdaptiveAvgPool1D", "AdaptiveMaxPool2D", "AdaptiveAvgPool2D"]


def int_tuple(value, rank, name):
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


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _pair_or_int(value):
    """``value`` as a (before, after) pair if it is an int or a pair of
    ints, else None."""
    if _is_int(value):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_int, value)):
        return int(value[0]), int(value[1])
    return None


def parse_padding(padding, rank, name="padding", keras_pairs=True):
    """Explicit padding as ``rank`` (before, after) pairs of ints >= 0, and
    its canonical form for ``get_config``.

    Accepted forms: an int (every side); for one axis a (before, after)
    pair; for two axes a pair of items, each an int (both sides of that
    axis) or a (before, after) pair -- Keras' ``((top, bottom), (left,
    right))``. The canonical form is the shortest of: an int, per-axis
    ints (two axes), the pairs.
    """
    if rank == 1:
        forms = "an int or a (left, right) pair of ints"
        pairs = None
        if _pair_or_int(padding) is not None:
            pairs = (_pair_or_int(padding),)
        elif isinstance(padding, (tuple, list)) and len(padding) == 1:
            one = _pair_or_int(padding[0])
            pairs = None if one is None else (one,)
    else:
        forms = ("an int, a pair of ints (rows, columns) or a pair of pairs "
                 "((top, bottom), (left, right))")
        pairs = None
        if _is_int(padding):
            pairs = ((int(padding),) * 2,) * 2
        elif isinstance(padding, (tuple, list)) and len(padding) == 2:
            items = tuple(_pair_or_int(v) for v in padding)
            pairs = None if None in items else items
    if pairs is None:
        raise TypeError(f"{name} must be {forms}, got {padding!r}")
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"{name} must be >= 0, got {padding!r}")
    flat = {v for pair in pairs for v in pair}
    if len(flat) == 1:
        canonical = flat.pop()
    elif rank == 2 and all(b == a for b, a in pairs):
        canonical = tuple(b for b, _ in pairs)
    else:
        canonical = pairs[0] if rank == 1 else pairs
    return pairs, canonical


def pool_axis(size, pool, stride, dilation, padding, ceil_mode):
    """Output length and the (before, after) padding along one axis.

    ``padding`` is "valid", "same" or a (before, after) pair; None as the
    output length when no window fits.
    """
    span = (pool - 1) * dilation + 1
    if padding == "same":
        # Keras / TensorFlow "same": ceil(size / stride) outputs, the padding
        # split evenly with any odd element at the end.
        out = -(-size // stride)
        total = max((out - 1) * stride + span - size, 0)
        return out, (total // 2, total - total // 2)
    before, after = (0, 0) if padding == "valid" else padding
    room = size + before + after - span
    if room < 0:
        return None, (before, after)
    out = (room + (stride - 1 if ceil_mode else 0)) // stride + 1
    # PyTorch's rule: the last window starts inside the input or its left
    # padding, never in the right padding alone.
    if ceil_mode and (out - 1) * stride >= size + before:
        out -= 1
    return out, (before, after)


def _sample_shape_error(layer, input_shape, axes):
    return ValueError(
        f"{layer.name}: {type(layer).__name__} takes samples of shape ({axes}), "
        f"got input shape {tuple(input_shape)}")


def check_spatial(layer, input_shape):
    """The (H, W) kernel view of a sample's spatial axes (1-D: H = 1)."""
    if len(input_shape) != layer._rank + 1:
        raise _sample_shape_error(
            layer, input_shape, "steps, channels" if layer._rank == 1
            else "height, width, channels")
    spatial = (1,) * (2 - layer._rank) + tuple(input_shape[:-1])
    if min(spatial) < 1:
        raise ValueError(f"{layer.name}: input shape {tuple(input_shape)} has an "
                         "empty spatial axis")
    return spatial


class _Geometry(tuple):
    """What a pooling layer computes for one input shape: ``spatial`` (H, W)
    and ``out`` (OH, OW) as the kernel sees them, ``args`` after the arrays
    for its kernel, and ``out_shape`` per sample. Nothing in it grows with
    the input: a forged saved model cannot make building allocate."""

    __slots__ = ()
    spatial = property(lambda self: self[0])
    out = property(lambda self: self[1])
    args = property(lambda self: self[2])
    out_shape = property(lambda self: self[3])


def _reads_padding_only(size, out, pool, stride, dilation, before):
    """Whether a window along one axis reads no input element. Only windows
    that start in the left padding can (a window starting inside the input
    reads its first element), so at most ``pool`` windows are looked at."""
    for o in range(out):
        start = o * stride - before
        if start >= 0:
            break
        first = (-start + dilation - 1) // dilation     # its first index >= 0
        if first >= pool or start + first * dilation >= size:
            return True
    return False


class _Pool(Layer):
    """Shared forward and backward of the pooling layers.

    Subclasses implement ``_geometry(input_shape)``, which returns a
    ``_Geometry``; ``_adaptive`` layers call the kernels' adaptive entry
    points, the others the window ones.
    """

    _max = False
    _adaptive = False

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
        return self._geometry(tuple(input_shape)).out_shape

    def _read(self, geom):
        """Input elements read per channel, over all windows."""
        return math.prod(geom.spatial)

    def flops_per_sample(self, input_shape):
        geom = self._geometry(tuple(input_shape))
        channels, out_elements = input_shape[-1], math.prod(geom.out_shape[:-1])
        # A comparison per element read, or an add per element read and a
        # multiply per output.
        return int(self._read(geom) * channels + (0 if self._max else out_elements * channels))

    def forward(self, x, training=False):
        x = self._check_input(x)
        (h, w), (oh, ow), args, out_shape = self._geom
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
            if self._adaptive:
                _pool.adaptive_max_forward(x4, y, argmax)
            else:
                _pool.max_forward(x4, y, argmax, *args)
        else:
            argmax = None
            if self._adaptive:
                _pool.adaptive_avg_forward(x4, y)
            else:
                _pool.avg_forward(x4, y, *args)
        self._cache = (x.shape, argmax)
        return y.reshape((n,) + out_shape)

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x_shape, argmax = self._cache
        (h, w), (oh, ow), args, out_shape = self._geom
        n, c = x_shape[0], x_shape[-1]
        dy = self._check_grad(grad, (n,) + out_shape).reshape(n, oh, ow, c)
        dx = np.empty((n, h, w, c), dtype=self.dtype)
        if self._max:
            _pool.max_backward(dy, argmax, dx)
        elif self._adaptive:
            _pool.adaptive_avg_backward(dy, dx)
        else:
            _pool.avg_backward(dy, dx, *args)
        return dx.reshape(x_shape)


class _WindowPool(_Pool):
    """Pooling over sliding windows; ``_rank`` spatial axes."""

    _rank = 2

    def __init__(self, pool_size, strides=None, padding="valid", ceil_mode=False,
                 dilation=1, count_include_pad=None, divisor_override=None, name=None,
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        pool = int_tuple(pool_size, self._rank, "pool_size")
        stride = pool if strides is None else int_tuple(strides, self._rank, "strides")
        dilation = int_tuple(dilation, self._rank, "dilation")
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        if isinstance(padding, str):
            self.padding = choose(padding.lower(), ("valid", "same"), "padding")
            pads = None
        else:
            pads, self.padding = parse_padding(padding, self._rank)
            # PyTorch's check: at most half the pool on each side.
            if any(v > p // 2 for pair, p in zip(pads, pool) for v in pair):
                raise ValueError(
                    f"padding {padding!r} must be at most half of pool_size {pool_size!r} "
                    "on each side (PyTorch's rule)")
        if self.ceil_mode and self.padding == "same":
            raise ValueError("ceil_mode=True has no effect with padding='same' (which sets "
                             "the output length itself); use 'valid' or explicit padding")
        if count_include_pad is not None:
            count_include_pad = check_bool(count_include_pad, "count_include_pad")
        if divisor_override is not None and (not _is_int(divisor_override)
                                             or divisor_override < 1):
            raise ValueError(f"divisor_override must be None or an int >= 1, "
                             f"got {divisor_override!r}")
        self.count_include_pad = count_include_pad
        self.divisor_override = None if divisor_override is None else int(divisor_override)
        # 1-D layers keep plain ints, as they are given.
        self.pool_size = pool[0] if self._rank == 1 else pool
        self.strides = stride[0] if self._rank == 1 else stride
        self.dilation = dilation[0] if self._rank == 1 else dilation
        self._pool = (1,) * (2 - self._rank) + pool
        self._strides = (1,) * (2 - self._rank) + stride
        self._dilation = (1,) * (2 - self._rank) + dilation
        self._pads = None if pads is None else ((0, 0),) * (2 - self._rank) + pads

    @property
    def _include_pad(self):
        """count_include_pad as used: by default True for explicit padding
        (PyTorch's default), False for "valid" and "same" (Keras')."""
        if self.count_include_pad is None:
            return self._pads is not None
        return self.count_include_pad

    def get_config(self):
        config = {**super().get_config(), "pool_size": self.pool_size,
                  "strides": self.strides, "padding": self.padding,
                  "ceil_mode": self.ceil_mode}
        if self._max:
            config["dilation"] = self.dilation
        else:
            config["count_include_pad"] = self.count_include_pad
            config["divisor_override"] = self.divisor_override
        return config

    def _geometry(self, input_shape):
        spatial = check_spatial(self, input_shape)
        axes = []
        for axis, (size, p, st, d) in enumerate(zip(spatial, self._pool, self._strides,
                                                    self._dilation)):
            padding = self.padding if self._pads is None else self._pads[axis]
            out, pads = pool_axis(size, p, st, d, padding, self.ceil_mode)
            if out is None:
                raise ValueError(
                    f"{self.name}: pool_size {self.pool_size} is larger than the input "
                    f"shape {tuple(input_shape)} (channels last) with padding="
                    f"{self.padding!r}; use a smaller pool or padding='same'")
            if _reads_padding_only(size, out, p, st, d, pads[0]):
                raise ValueError(
                    f"{self.name}: with pool_size {self.pool_size}, dilation "
                    f"{self.dilation} and padding {self.padding!r}, a window over input "
                    f"shape {tuple(input_shape)} reads padding only")
            axes.append((out, pads))
        (oh, (bh, ah)), (ow, (bw, aw)) = axes
        if self._max:
            args = (self._pool, self._strides, (bh, bw), self._dilation)
        else:
            args = (self._pool, self._strides, (bh, bw), (ah, aw), self._include_pad,
                    self.divisor_override or 0)
        out_shape = (ow,) if self._rank == 1 else (oh, ow)
        return _Geometry((spatial, (oh, ow), args, out_shape + (input_shape[-1],)))

    def _read(self, geom):
        return math.prod(
            int(_pool.window_table(size, out, p, st, before, 0, d, False)[1].sum())
            for size, out, p, st, d, before in zip(geom.spatial, geom.out, self._pool,
                                                   self._strides, self._dilation,
                                                   geom.args[2]))


class _GlobalPool(_Pool):
    """Pooling over all ``_rank`` spatial axes at once: one value per channel."""

    _rank = 2

    def __init__(self, keepdims=False, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.keepdims = check_bool(keepdims, "keepdims")

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}

    def _geometry(self, input_shape):
        spatial = check_spatial(self, input_shape)
        channels = input_shape[-1]
        out_shape = (1,) * self._rank + (channels,) if self.keepdims else (channels,)
        args = (spatial, (1, 1), (0, 0)) + (((1, 1),) if self._max else ())
        return _Geometry((spatial, (1, 1), args, out_shape))


def _output_size(value, rank):
    """``output_size`` as ``rank`` entries, each an int >= 1 or None."""
    what = "an int" if rank == 1 else f"an int or a tuple of {rank} ints or None"
    items = (value,) * rank if _is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"output_size must be {what}, got {value!r}") from None
    if len(items) != rank or any(v is not None and not _is_int(v) for v in items):
        raise TypeError(f"output_size must be {what}, got {value!r}")
    if any(v is not None and v < 1 for v in items):
        raise ValueError(f"output_size must be >= 1, got {value!r}")
    return tuple(None if v is None else int(v) for v in items)


class _AdaptivePool(_Pool):
    """Pooling into a fixed output size with PyTorch's adaptive bins."""

    _rank = 2
    _adaptive = True

    def __init__(self, output_size, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        sizes = _output_size(output_size, self._rank)
        self.output_size = sizes[0] if self._rank == 1 else sizes
        self._sizes = (1,) * (2 - self._rank) + sizes

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}

    def _geometry(self, input_shape):
        spatial = check_spatial(self, input_shape)
        out = tuple(s if o is None else o for s, o in zip(spatial, self._sizes))
        out_shape = out[2 - self._rank:] + (input_shape[-1],)
        return _Geometry((spatial, out, (), out_shape))

    def _read(self, geom):
        return math.prod(int(_pool.adaptive_table(s, o)[1].sum())
                         for s, o in zip(geom.spatial, geom.out))


class MaxPool1D(_WindowPool):
    """Max pooling over windows of steps, channels last (Keras' MaxPooling1D).

    Input (batch, steps, channels); output (batch, out_steps, channels).

    Parameters
    ----------
    pool_size : int
        Window length.
    strides : int or None
        Step between windows; defaults to ``pool_size``.
    padding : {"valid", "same"}, int, or explicit padding
        "valid" keeps only windows inside the input; "same" gives
        ceil(size / strides) outputs per axis, padding as Keras (evenly, any
        odd element at the end). An int pads every side by that many
        elements, as PyTorch's ``padding``; a (left, right) pair pads
        the two ends as given.
        Explicit padding is at most half the pool on each side (PyTorch's
        check). Padding never wins.
    ceil_mode : bool
        Round the output length up, not down (PyTorch's ``ceil_mode``): a
        last, partial window is kept if it starts inside the input or its
        left padding. Not with "same".
    dilation : int
        Step between the elements a window reads (PyTorch's ``dilation``).

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

    def __init__(self, pool_size=2, strides=None, padding="valid", ceil_mode=False,
                 dilation=1, name=None, dtype=None):
        super().__init__(pool_size, strides, padding, ceil_mode=ceil_mode, dilation=dilation,
                         name=name, dtype=dtype)


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
    padding : {"valid", "same"}, int, or explicit padding
        As in ``MaxPool1D``.
    ceil_mode : bool
        As in ``MaxPool1D``.
    count_include_pad : bool or None
        Divide by the window's size including its padded elements (clipped
        to the padded input, as PyTorch) rather than by its number of real
        elements. None (default): True with explicit padding (PyTorch's
        default), False with "valid" and "same" (Keras: padding is not
        averaged). Given True with "same", each window divides by the whole
        pool, as PyTorch with that padding written out.
    divisor_override : int or None
        If given, every window's sum is divided by it (PyTorch's
        ``divisor_override``).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([1.0, 5.0, 2.0, 0.0, 3.0, 4.0]).reshape(1, 6, 1)
    >>> layers.AvgPool1D(2)(x).ravel()
    array([3. , 1. , 3.5])
    >>> layers.AvgPool1D(4, strides=4, padding="same")(x).ravel()   # padding is not averaged
    array([2.66666667, 2.33333333])
    >>> layers.AvgPool1D(2, padding=1)(x).ravel()   # PyTorch: padding counts
    array([0.5, 3.5, 1.5, 2. ])
    """

    _rank = 1

    def __init__(self, pool_size=2, strides=None, padding="valid", ceil_mode=False,
                 count_include_pad=None, divisor_override=None, name=None, dtype=None):
        super().__init__(pool_size, strides, padding, ceil_mode=ceil_mode,
                         count_include_pad=count_include_pad,
                         divisor_override=divisor_override, name=name, dtype=dtype)


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
    padding : {"valid", "same"}, int, or explicit padding
        "valid" keeps only windows inside the input; "same" gives
        ceil(size / strides) outputs per axis, padding as Keras (evenly, any
        odd element at the end). An int pads every side by that many
        elements, as PyTorch's ``padding``; a pair (rows, columns) pads
        each axis on both sides; Keras' ``((top, bottom), (left, right))``
        pads each side as given.
        Explicit padding is at most half the pool on each side (PyTorch's
        check). Padding never wins.
    ceil_mode : bool
        Round the output length up, not down (PyTorch's ``ceil_mode``): a
        last, partial window is kept if it starts inside the input or its
        left padding. Not with "same".
    dilation : int or pair of ints
        Step between the elements a window reads (PyTorch's ``dilation``).

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

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", ceil_mode=False,
                 dilation=1, name=None, dtype=None):
        super().__init__(pool_size, strides, padding, ceil_mode=ceil_mode, dilation=dilation,
                         name=name, dtype=dtype)


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
    padding : {"valid", "same"}, int, or explicit padding
        As in ``MaxPool2D``.
    ceil_mode : bool
        As in ``MaxPool2D``.
    count_include_pad : bool or None
        Divide by the window's size including its padded elements (clipped
        to the padded input, as PyTorch) rather than by its number of real
        elements. None (default): True with explicit padding (PyTorch's
        default), False with "valid" and "same" (Keras: padding is not
        averaged). Given True with "same", each window divides by the whole
        pool, as PyTorch with that padding written out.
    divisor_override : int or None
        If given, every window's sum is divided by it (PyTorch's
        ``divisor_override``).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> layers.AvgPool2D(2)(x)[0, :, :, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", ceil_mode=False,
                 count_include_pad=None, divisor_override=None, name=None, dtype=None):
        super().__init__(pool_size, strides, padding, ceil_mode=ceil_mode,
                         count_include_pad=count_include_pad,
                         divisor_override=divisor_override, name=name, dtype=dtype)


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
        return y.reshape((x.shape[0],) + self._geom.out_shape)

    def backward(self, grad):
        if self._masked is None:
            return super().backward(grad)
        x_shape, _ = self._cache
        n, c = x_shape[0], x_shape[-1]
        dy = self._check_grad(grad, (n,) + self._geom.out_shape).reshape(n, c)
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


class AdaptiveMaxPool1D(_AdaptivePool):
    """Max pooling into a fixed number of steps (PyTorch's AdaptiveMaxPool1d),
    channels last.

    Input (batch, steps, channels); output (batch, output_size, channels).
    Ties and NaN as ``MaxPool1D``.

    Parameters
    ----------
    output_size : int or None
        Output steps; None keeps the input's.

    Notes
    -----
    Output step i of an input of L steps pools steps floor(i * L / out) to
    ceil((i + 1) * L / out) - 1, as PyTorch (bins overlap when L is not a
    multiple of out, and repeat when out > L).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([1.0, 5.0, 2.0, 0.0, 3.0]).reshape(1, 5, 1)
    >>> layers.AdaptiveMaxPool1D(2)(x).ravel()      # bins [0, 3) and [2, 5)
    array([5., 3.])
    """

    _rank = 1
    _max = True

    def __init__(self, output_size, name=None, dtype=None):
        super().__init__(output_size, name=name, dtype=dtype)


class AdaptiveAvgPool1D(_AdaptivePool):
    """Average pooling into a fixed number of steps (PyTorch's
    AdaptiveAvgPool1d), channels last.

    Input (batch, steps, channels); output (batch, output_size, channels).

    Parameters
    ----------
    output_size : int or None
        Output steps; None keeps the input's.

    Notes
    -----
    Bins as ``AdaptiveMaxPool1D``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([1.0, 5.0, 2.0, 0.0, 3.0]).reshape(1, 5, 1)
    >>> layers.AdaptiveAvgPool1D(2)(x).ravel()
    array([2.66666667, 1.66666667])
    """

    _rank = 1

    def __init__(self, output_size, name=None, dtype=None):
        super().__init__(output_size, name=name, dtype=dtype)


class AdaptiveMaxPool2D(_AdaptivePool):
    """Max pooling into a fixed (height, width) (PyTorch's AdaptiveMaxPool2d),
    channels last.

    Input (batch, height, width, channels); output (batch, out_height,
    out_width, channels). Ties and NaN as ``MaxPool2D``.

    Parameters
    ----------
    output_size : int or pair of (int or None)
        Output (height, width); an int is used for both, None keeps that
        axis of the input.

    Notes
    -----
    Bins along each axis as ``AdaptiveMaxPool1D``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> layers.AdaptiveMaxPool2D((1, 2))(x)[0, :, :, 0]
    array([[13., 15.]])
    """

    _max = True

    def __init__(self, output_size, name=None, dtype=None):
        super().__init__(output_size, name=name, dtype=dtype)


class AdaptiveAvgPool2D(_AdaptivePool):
    """Average pooling into a fixed (height, width) (PyTorch's
    AdaptiveAvgPool2d), channels last.

    Input (batch, height, width, channels); output (batch, out_height,
    out_width, channels).

    Parameters
    ----------
    output_size : int or pair of (int or None)
        Output (height, width); an int is used for both, None keeps that
        axis of the input.

    Notes
    -----
    Bins along each axis as ``AdaptiveMaxPool1D``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
    >>> layers.AdaptiveAvgPool2D(1)(x)[0, :, :, 0]
    array([[7.5]])
    """

    def __init__(self, output_size, name=None, dtype=None):
        super().__init__(output_size, name=name, dtype=dtype)
