"""Layers that rearrange each sample: Reshape, Permute, zero padding,
cropping and upsampling of channels-last sequences and images."""
import math
import numbers

import numpy as np

from cdl._kernels import pooling as _pool
from cdl._validation import check_bool, choose
from cdl.layers.base import Layer
from cdl.layers.pooling import check_spatial, int_tuple, parse_padding

__all__ = ["Reshape", "Permute", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D",
           "Cropping2D", "UpSampling1D", "UpSampling2D"]


def _int_sequence(value, name):
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of ints, got {value!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in items):
        raise TypeError(f"{name} must be a tuple of ints, got {value!r}")
    return tuple(int(v) for v in items)


class Reshape(Layer):
    """Give each sample a new shape, as Keras' Reshape: ``(batch, *input_shape)``
    -> ``(batch, *target_shape)``.

    Parameters
    ----------
    target_shape : tuple of int
        Per-sample output shape (without the batch axis). One entry may be
        -1: it is inferred from the input size.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.Reshape((8, 8, 1))(np.zeros((5, 64))).shape
    (5, 8, 8, 1)
    >>> layers.Reshape((-1, 2))(np.zeros((5, 6))).shape
    (5, 3, 2)
    """

    def __init__(self, target_shape, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(target_shape, numbers.Integral) and not isinstance(target_shape, bool):
            target_shape = (target_shape,)
        shape = _int_sequence(target_shape, "target_shape")
        if any(d < 1 and d != -1 for d in shape) or shape.count(-1) > 1:
            raise ValueError(
                f"target_shape must hold positive ints and at most one -1, got {target_shape!r}")
        self.target_shape = shape
        self._in_shape = None

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(
                    f"{self.name}: cannot reshape samples of shape {tuple(input_shape)} "
                    f"(size {size}) to {self.target_shape}: {size} is not a multiple of {known}")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if size != known:
            raise ValueError(
                f"{self.name}: cannot reshape samples of shape {tuple(input_shape)} "
                f"(size {size}) to {self.target_shape} (size {known})")
        return self.target_shape

    def build(self, input_shape):
        self.compute_output_shape(input_shape)

    def flops_per_sample(self, input_shape):
        return 0

    def forward(self, x, training=False):
        x = self._check_input(x)
        self._in_shape = x.shape
        # A view: x is C-contiguous, so is any reshape of it.
        return x.reshape((x.shape[0],) + self.output_shape)

    def backward(self, grad):
        if self._in_shape is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        expected = (self._in_shape[0],) + self.output_shape
        return self._check_grad(grad, expected).reshape(self._in_shape)


class Permute(Layer):
    """Permute the axes of each sample, as Keras' Permute.

    Parameters
    ----------
    dims : tuple of int
        A permutation of 1, ..., rank (1-based; the batch axis stays
        first). ``Permute((2, 1))`` swaps the two axes of each sample:
        output axis i is input axis ``dims[i - 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.Permute((2, 1))(np.zeros((5, 10, 3))).shape    # swap the two sample axes
    (5, 3, 10)
    """

    def __init__(self, dims, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        dims = _int_sequence(dims, "dims")
        if not dims or sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(
                f"dims must be a permutation of 1, ..., rank (1-based sample axes), "
                f"got {dims!r}")
        self.dims = dims
        self._axes = (0,) + dims
        self._inverse = tuple(int(a) for a in np.argsort(self._axes))
        self._out_shape = None

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims):
            raise ValueError(
                f"{self.name}: dims {self.dims} permute {len(self.dims)} axes, but the "
                f"samples have shape {tuple(input_shape)}")
        return tuple(input_shape[d - 1] for d in self.dims)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)

    def flops_per_sample(self, input_shape):
        return 0

    def forward(self, x, training=False):
        x = self._check_input(x)
        y = np.ascontiguousarray(x.transpose(self._axes))
        self._out_shape = y.shape
        return y

    def backward(self, grad):
        dy = self._check_grad(grad, self._out_shape)
        return np.ascontiguousarray(dy.transpose(self._inverse))


class _Spatial(Layer):
    """A layer on channels-last samples with ``_rank`` spatial axes that
    computes its output shape from the spatial sizes."""

    _rank = 1

    def __init__(self, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._in_shape = None

    def _spatial_out(self, spatial, input_shape):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        spatial = check_spatial(self, tuple(input_shape))[2 - self._rank:]
        return tuple(self._spatial_out(spatial, input_shape)) + (input_shape[-1],)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)

    def flops_per_sample(self, input_shape):
        return 0

    def backward(self, grad):
        if self._in_shape is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        dy = self._check_grad(grad, (self._in_shape[0],) + self.output_shape)
        return self._backward(dy)


class _ZeroPadding(_Spatial):
    def __init__(self, padding, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._pads, self.padding = parse_padding(padding, self._rank)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}

    def _spatial_out(self, spatial, input_shape):
        return tuple(s + b + a for s, (b, a) in zip(spatial, self._pads))

    def forward(self, x, training=False):
        x = self._check_input(x)
        self._in_shape = x.shape
        return np.pad(x, ((0, 0),) + self._pads + ((0, 0),))

    def _backward(self, dy):
        index = (slice(None),) + tuple(slice(b, b + s) for (b, _), s in
                                       zip(self._pads, self._in_shape[1:-1]))
        return np.ascontiguousarray(dy[index])


class _Cropping(_Spatial):
    def __init__(self, cropping, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._crops, self.cropping = parse_padding(cropping, self._rank, "cropping")

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping}

    def _spatial_out(self, spatial, input_shape):
        out = tuple(s - b - a for s, (b, a) in zip(spatial, self._crops))
        if min(out) < 1:
            raise ValueError(f"{self.name}: cropping {self.cropping!r} leaves nothing of "
                             f"samples of shape {tuple(input_shape)}")
        return out

    def forward(self, x, training=False):
        x = self._check_input(x)
        self._in_shape = x.shape
        index = (slice(None),) + tuple(slice(b, s - a) for (b, a), s in
                                       zip(self._crops, x.shape[1:-1]))
        return np.ascontiguousarray(x[index])

    def _backward(self, dy):
        return np.pad(dy, ((0, 0),) + self._crops + ((0, 0),))


class ZeroPadding1D(_ZeroPadding):
    """Pad each sequence with zero steps at its start and end (Keras'
    ZeroPadding1D), channels last.

    Input (batch, steps, channels); output (batch, left + steps + right,
    channels).

    Parameters
    ----------
    padding : int or pair of ints
        Steps added at both ends, or ``(left, right)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.ZeroPadding1D((1, 2))(np.ones((1, 2, 1))).ravel()
    array([0., 1., 1., 0., 0.])
    """

    _rank = 1

    def __init__(self, padding=1, name=None, dtype=None):
        super().__init__(padding, name=name, dtype=dtype)


class ZeroPadding2D(_ZeroPadding):
    """Pad each image with rows and columns of zeros (Keras' ZeroPadding2D),
    channels last.

    Input (batch, height, width, channels); output (batch, top + height +
    bottom, left + width + right, channels).

    Parameters
    ----------
    padding : int, pair of ints, or pair of pairs
        The same on every side; ``(rows, columns)`` on both sides of each
        axis; or ``((top, bottom), (left, right))``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.ZeroPadding2D(((1, 0), (0, 2)))(np.ones((1, 2, 2, 1)))[0, :, :, 0]
    array([[0., 0., 0., 0.],
           [1., 1., 0., 0.],
           [1., 1., 0., 0.]])
    """

    _rank = 2

    def __init__(self, padding=(1, 1), name=None, dtype=None):
        super().__init__(padding, name=name, dtype=dtype)


class Cropping1D(_Cropping):
    """Remove steps from the start and end of each sequence (Keras'
    Cropping1D), channels last.

    Input (batch, steps, channels); output (batch, steps - left - right,
    channels).

    Parameters
    ----------
    cropping : int or pair of ints
        Steps removed at both ends, or ``(left, right)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.Cropping1D((1, 2))(np.arange(5.0).reshape(1, 5, 1)).ravel()
    array([1., 2.])
    """

    _rank = 1

    def __init__(self, cropping=(1, 1), name=None, dtype=None):
        super().__init__(cropping, name=name, dtype=dtype)


class Cropping2D(_Cropping):
    """Remove rows and columns at the edges of each image (Keras'
    Cropping2D), channels last.

    Input (batch, height, width, channels); output (batch, height - top -
    bottom, width - left - right, channels).

    Parameters
    ----------
    cropping : int, pair of ints, or pair of pairs
        The same on every side; ``(rows, columns)`` on both sides of each
        axis; or ``((top, bottom), (left, right))``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.Cropping2D(((1, 0), (0, 1)))(np.arange(9.0).reshape(1, 3, 3, 1))[0, :, :, 0]
    array([[3., 4.],
           [6., 7.]])
    """

    _rank = 2

    def __init__(self, cropping=((0, 0), (0, 0)), name=None, dtype=None):
        super().__init__(cropping, name=name, dtype=dtype)


class UpSampling1D(_Spatial):
    """Repeat each step ``size`` times (Keras' UpSampling1D; PyTorch's
    nearest ``Upsample`` with an integer ``scale_factor``), channels last.

    Input (batch, steps, channels); output (batch, steps * size, channels).

    Parameters
    ----------
    size : int
        Repeats per step: output step o copies input step floor(o / size).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.UpSampling1D(2)(np.array([1.0, 2.0]).reshape(1, 2, 1)).ravel()
    array([1., 1., 2., 2.])
    """

    _rank = 1

    def __init__(self, size=2, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.size = int_tuple(size, 1, "size")[0]

    def get_config(self):
        return {**super().get_config(), "size": self.size}

    def _spatial_out(self, spatial, input_shape):
        return (spatial[0] * self.size,)

    def forward(self, x, training=False):
        x = self._check_input(x)
        self._in_shape = x.shape
        return np.repeat(x, self.size, axis=1)

    def _backward(self, dy):
        n, steps, c = self._in_shape
        return np.ascontiguousarray(dy.reshape(n, steps, self.size, c).sum(axis=2))


class UpSampling2D(_Spatial):
    """Enlarge each image ``size`` times, by nearest-neighbour copies or
    bilinear interpolation (Keras' UpSampling2D; PyTorch's ``Upsample`` /
    ``F.interpolate`` with an integer ``scale_factor``), channels last.

    Input (batch, height, width, channels); output (batch, height * sh,
    width * sw, channels).

    Parameters
    ----------
    size : int or pair of ints
        Factors (sh, sw); an int is used for both.
    interpolation : {"nearest", "bilinear"}
        "nearest": output row o copies input row floor(o / sh) (PyTorch's
        floor(o * in / out)), likewise columns. "bilinear": each output
        mixes the four input elements around its source point, as
        PyTorch's ``mode="bilinear"``.
    align_corners : bool
        Bilinear only, as PyTorch: True aligns the corner elements (source
        point o * (in - 1) / (out - 1)); False (default) aligns the outer
        edges (source point (o + 0.5) * in / out - 0.5, at least 0).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    >>> layers.UpSampling2D(2)(x)[0, :, :, 0]
    array([[1., 1., 2., 2.],
           [1., 1., 2., 2.],
           [3., 3., 4., 4.],
           [3., 3., 4., 4.]])
    >>> layers.UpSampling2D((1, 3), interpolation="bilinear", align_corners=True)(x)[0, :, :, 0]
    array([[1. , 1.2, 1.4, 1.6, 1.8, 2. ],
           [3. , 3.2, 3.4, 3.6, 3.8, 4. ]])
    """

    _rank = 2

    def __init__(self, size=(2, 2), interpolation="nearest", align_corners=False, name=None,
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.size = int_tuple(size, 2, "size")
        if isinstance(interpolation, str):
            interpolation = interpolation.lower()
        self.interpolation = choose(interpolation, ("nearest", "bilinear"), "interpolation")
        self.align_corners = check_bool(align_corners, "align_corners")
        if self.align_corners and self.interpolation == "nearest":
            raise ValueError("align_corners=True only applies to interpolation='bilinear' "
                             "(as in PyTorch)")

    def get_config(self):
        return {**super().get_config(), "size": self.size,
                "interpolation": self.interpolation, "align_corners": self.align_corners}

    def _spatial_out(self, spatial, input_shape):
        return tuple(s * f for s, f in zip(spatial, self.size))

    def flops_per_sample(self, input_shape):
        if self.interpolation == "nearest":
            return 0
        # Six multiplies and three adds per output element.
        return 9 * math.prod(self.compute_output_shape(input_shape))

    def forward(self, x, training=False):
        x = self._check_input(x)
        self._in_shape = x.shape
        if self.interpolation == "nearest":
            return np.repeat(np.repeat(x, self.size[0], axis=1), self.size[1], axis=2)
        y = np.empty((x.shape[0],) + self.output_shape, dtype=self.dtype)
        return _pool.bilinear_forward(x, y, self.align_corners)

    def _backward(self, dy):
        n, h, w, c = self._in_shape
        if self.interpolation == "nearest":
            sh, sw = self.size
            return np.ascontiguousarray(dy.reshape(n, h, sh, w, sw, c).sum(axis=(2, 4)))
        dx = np.empty(self._in_shape, dtype=self.dtype)
        return _pool.bilinear_backward(np.ascontiguousarray(dy), dx, self.align_corners)
