"""Layers that rearrange each sample without computing: Reshape, Permute."""
import math
import numbers

import numpy as np

from cdl.layers.base import Layer

__all__ = ["Reshape", "Permute"]


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
