"""Merge layers: one output from several inputs, for graphs of layers.

``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum`` and
``Minimum`` combine inputs of one shape element by element; ``Dot`` takes
the dot product of two inputs along an axis of each (``Concatenate``, in
``cdl.layers.composite``, joins inputs along an axis). They compute what
Keras' layers of the same names compute, and are called on a list of
tensors: ``layers.Add()([a, b])``, symbolic tensors of ``cdl.Input`` or
arrays alike.

They hold no weights. Their ``forward`` takes a list of arrays (batch axis
first) and ``backward`` returns one gradient per input, in order. Unlike
NumPy, they do not broadcast: inputs of different shapes are refused, so
that a mistake in a graph shows up where it is made. Gradients of
several inputs may be one array (``Add`` gives each input the upstream
gradient itself): callers sum them into new arrays, never in place.
"""
import math
import numbers

import numpy as np

from cdl._validation import check_bool
from cdl.layers.base import Layer

__all__ = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot"]

#: What ``Dot(normalize=True)`` divides by at least: an input's L2 norm is
#: taken as max(norm, epsilon), as Keras does (its backend epsilon), so that
#: a zero vector gives zeros instead of NaN.
NORMALIZE_EPSILON = 1e-7


def _shapes_text(shapes):
    return ", ".join(str(tuple(shape)) for shape in shapes)


class _Merge(Layer):
    """The shared contract of the merge layers: a list of inputs, checked
    for their number and, for the element-wise ones, their shapes."""

    takes_list = True
    #: Element-wise merges keep the time axis: their inputs' padding masks
    #: merge into the output's (see ``Layer.compute_mask``).
    supports_masking = True
    #: Fewest and most inputs (None: no limit).
    _min_inputs = 2
    _max_inputs = None
    #: Verb for messages: "Add adds inputs of one shape".
    _verb = "merges"

    def __init__(self, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._out_shape = None

    def _check_count(self, input_shapes):
        """``input_shapes`` as a list of tuples, or ValueError for a wrong count."""
        shapes = [tuple(shape) for shape in input_shapes]
        low, high = self._min_inputs, self._max_inputs
        if len(shapes) < low or (high is not None and len(shapes) > high):
            wanted = f"exactly {low}" if low == high else f"{low} or more"
            raise ValueError(f"{self.name} ({type(self).__name__}) takes {wanted} inputs, "
                             f"got {len(shapes)}")
        return shapes

    def compute_output_shape(self, input_shape):
        shapes = self._check_count(input_shape)
        if len(set(shapes)) != 1:
            raise ValueError(
                f"{self.name} ({type(self).__name__}) {self._verb} inputs of one shape, "
                f"without broadcasting; got samples of shapes {_shapes_text(shapes)}")
        return shapes[0]

    def build(self, input_shape):
        self.compute_output_shape(input_shape)

    def flops_per_sample(self, input_shape):
        # One operation per element for each input after the first.
        return (len(input_shape) - 1) * math.prod(self.compute_output_shape(input_shape))

    def forward(self, x, training=False):
        """Merge the list ``x`` of arrays of shape ``(batch_size, *shape)``."""
        xs = self._check_inputs(x)
        y = self._merge(xs)
        self._out_shape = y.shape
        return y

    def backward(self, grad):
        """The gradients with respect to the inputs of the last ``forward``,
        a list in input order (arrays the caller must not write into)."""
        grad = self._check_grad(grad, self._out_shape)
        if not self._input_grad_needed:   # no weights: nothing else to compute
            return [None] * len(self.input_shape)
        return self._merge_backward(grad)

    def _merge(self, xs):
        raise NotImplementedError

    def _merge_backward(self, grad):
        raise NotImplementedError


class Add(_Merge):
    """The element-wise sum of two or more inputs of one shape, as Keras' Add.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> layers.Add()([np.ones((2, 3)), np.full((2, 3), 2.0)])
    array([[3., 3., 3.],
           [3., 3., 3.]])

    In a graph, a skip connection:

    >>> x = cdl.Input(shape=(8,))
    >>> layers.Add(name="skip")([x, layers.Dense(8)(x)])
    <SymbolicTensor 'skip' shape=(None, 8)>
    """

    _verb = "adds"

    def _merge(self, xs):
        y = np.add(xs[0], xs[1])
        for x in xs[2:]:
            np.add(y, x, out=y)
        return y

    def _merge_backward(self, grad):
        # The upstream gradient is every input's: one array, not copies.
        return [grad] * len(self.input_shape)


class Subtract(_Merge):
    """The difference of exactly two inputs of one shape, ``x0 - x1``, as
    Keras' Subtract.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.Subtract()([np.full((1, 2), 5.0), np.ones((1, 2))])
    array([[4., 4.]])
    """

    _max_inputs = 2
    _verb = "subtracts"

    def _merge(self, xs):
        return np.subtract(xs[0], xs[1])

    def _merge_backward(self, grad):
        return [grad, np.negative(grad)]


class Multiply(_Merge):
    """The element-wise product of two or more inputs of one shape, as
    Keras' Multiply.

    The gradient of each input is the upstream gradient times the product
    of the other inputs, formed from running products (no division, so
    zeros in the inputs are exact).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.Multiply()([np.full((1, 2), 3.0), np.full((1, 2), 2.0), np.ones((1, 2))])
    array([[6., 6.]])
    """

    _verb = "multiplies"

    def __init__(self, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._xs = None

    def _merge(self, xs):
        self._xs = xs
        y = np.multiply(xs[0], xs[1])
        for x in xs[2:]:
            np.multiply(y, x, out=y)
        return y

    def _merge_backward(self, grad):
        xs = self._xs
        n = len(xs)
        if n == 2:
            return [grad * xs[1], grad * xs[0]]
        # prefix[i] = x0 * ... * x(i-1); the suffix x(i+1) * ... * x(n-1) is
        # kept as a running product from the right.
        prefix = [None, xs[0]]
        for x in xs[1:n - 1]:
            prefix.append(prefix[-1] * x)
        dxs = [None] * n
        dxs[n - 1] = grad * prefix[n - 1]
        suffix = xs[n - 1]
        for i in range(n - 2, 0, -1):
            dxs[i] = grad * (prefix[i] * suffix)
            suffix = suffix * xs[i]
        dxs[0] = grad * suffix
        return dxs


class Average(_Merge):
    """The element-wise mean of two or more inputs of one shape, as Keras'
    Average: their sum divided by their number.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.Average()([np.zeros((1, 2)), np.full((1, 2), 3.0)])
    array([[1.5, 1.5]])
    """

    _verb = "averages"

    def flops_per_sample(self, input_shape):
        return super().flops_per_sample(input_shape) + \
            math.prod(self.compute_output_shape(input_shape))   # the division

    def _merge(self, xs):
        y = np.add(xs[0], xs[1])
        for x in xs[2:]:
            np.add(y, x, out=y)
        np.divide(y, len(xs), out=y)
        return y

    def _merge_backward(self, grad):
        # Every input gets the same share: one array.
        return [np.divide(grad, len(self.input_shape))] * len(self.input_shape)


class _Extremum(_Merge):
    """Maximum and Minimum: the output takes the extreme input at each
    element; the gradient goes to the inputs that reach it, shared equally
    between ties (as ``torch.stack(xs).amax(0)`` shares it)."""

    _pick = None   # np.maximum or np.minimum

    def __init__(self, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._xs = None
        self._y = None

    def _merge(self, xs):
        y = self._pick(xs[0], xs[1])
        for x in xs[2:]:
            self._pick(y, x, out=y)
        self._xs, self._y = xs, y
        return y

    def _merge_backward(self, grad):
        hits = [np.equal(x, self._y) for x in self._xs]
        count = hits[0].astype(grad.dtype)
        for hit in hits[1:]:
            np.add(count, hit, out=count)
        # Where an input is NaN the output is NaN and no input reaches it:
        # 0 / 0, so every input's gradient there is NaN, as in PyTorch.
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.divide(grad, count)
            return [np.multiply(share, hit) for hit in hits]


class Maximum(_Extremum):
    """The element-wise maximum of two or more inputs of one shape, as
    Keras' Maximum.

    Where several inputs hold the maximum, each gets an equal share of the
    gradient; NaN in an input gives NaN in the output.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layer = layers.Maximum()
    >>> layer([np.array([[1.0, 4.0]]), np.array([[2.0, 4.0]])])
    array([[2., 4.]])
    >>> layer.backward(np.ones((1, 2)))      # the tie at 4 shares its gradient
    [array([[0. , 0.5]]), array([[1. , 0.5]])]
    """

    _pick = np.maximum
    _verb = "takes the maximum of"


class Minimum(_Extremum):
    """The element-wise minimum of two or more inputs of one shape, as
    Keras' Minimum.

    Where several inputs hold the minimum, each gets an equal share of the
    gradient; NaN in an input gives NaN in the output.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> layers.Minimum()([np.array([[1.0, 4.0]]), np.array([[2.0, 3.0]])])
    array([[1., 3.]])
    """

    _pick = np.minimum
    _verb = "takes the minimum of"


def _check_axes(axes):
    """``axes`` as an int or a tuple of two ints, or raise."""
    def is_int(value):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    if is_int(axes):
        return int(axes)
    if isinstance(axes, (list, tuple)) and len(axes) == 2 and all(is_int(a) for a in axes):
        return (int(axes[0]), int(axes[1]))
    raise TypeError(f"Dot's axes must be an int or a pair of ints, got {axes!r}")


def _l2_normalize(x, axis):
    """``x / max(||x||, epsilon)`` along ``axis``, and what its gradient needs."""
    norm = np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
    denom = np.maximum(norm, NORMALIZE_EPSILON)
    return np.divide(x, denom), (norm >= NORMALIZE_EPSILON, denom)


def _l2_normalize_backward(grad, xn, saved, axis):
    """The gradient with respect to x of ``xn = x / max(||x||, eps)``: where
    the norm is at least eps, ``(g - xn <g, xn>) / ||x||``; elsewhere the
    divisor is the constant eps, so ``g / eps``."""
    through_norm, denom = saved
    inner = np.sum(grad * xn, axis=axis, keepdims=True)
    np.multiply(inner, through_norm, out=inner)
    return np.divide(grad - xn * inner, denom)


class Dot(_Merge):
    """The dot product of two inputs along one axis of each, sample by
    sample, as Keras' Dot.

    Parameters
    ----------
    axes : int or pair of int
        The axis of each input to sum over (one int: the same for both),
        counted with the batch axis as in Keras: ``axes=1`` on inputs of
        shape ``(batch, d)`` gives ``(batch, 1)``; ``axes=2`` on
        ``(batch, n, d)`` and ``(batch, m, d)`` gives ``(batch, n, m)``.
        Negative axes count from the last one; the batch axis cannot be
        summed over. The two axes must have the same size.
    normalize : bool
        L2-normalise each input along its axis first, so that the output is
        the cosine similarity of the two. The norm is taken as at least
        ``NORMALIZE_EPSILON`` (1e-7, Keras' value).

    Notes
    -----
    The output holds, per sample, the remaining axes of the first input and
    then those of the second, in order (``(1,)`` if none remain). It is
    computed by a batched matrix product (``np.matmul``) of the inputs seen
    as ``(batch, rows, d)`` and ``(batch, d, columns)``.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> a, b = np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]])
    >>> layers.Dot(axes=1)([a, b])
    array([[11.]])
    >>> layers.Dot(axes=1, normalize=True)([a, 2 * a])          # cosine similarity
    array([[1.]])

    Attention scores of queries and keys, in a graph:

    >>> q, k = cdl.Input(shape=(5, 16)), cdl.Input(shape=(7, 16))
    >>> layers.Dot(axes=2)([q, k]).shape
    (5, 7)
    """

    _max_inputs = 2

    supports_masking = False   # sums over an axis, perhaps the time axis

    def __init__(self, axes, normalize=False, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.axes = _check_axes(axes)
        self.normalize = check_bool(normalize, "normalize")
        self._sample_axes = None
        self._saved = None

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}

    def _resolve_axes(self, shapes):
        """The summed axis of each input, as a per-sample axis (0 = first after the batch)."""
        pair = (self.axes, self.axes) if isinstance(self.axes, int) else self.axes
        resolved = []
        for i, (axis, shape) in enumerate(zip(pair, shapes)):
            rank = len(shape) + 1   # with the batch axis, as Keras counts
            full = axis + rank if axis < 0 else axis
            if not 1 <= full < rank:
                what = "the batch axis" if full == 0 else "not an axis"
                raise ValueError(
                    f"{self.name} (Dot): axis {axis} of input {i} is {what} of samples of "
                    f"shape {shape} (axes count the batch axis, as in Keras: 1 to {rank - 1}, "
                    f"or -1 to -{rank - 1})")
            resolved.append(full - 1)
        return resolved

    def compute_output_shape(self, input_shape):
        shapes = self._check_count(input_shape)
        ax, ay = self._resolve_axes(shapes)
        (sx, sy) = shapes
        if sx[ax] != sy[ay]:
            raise ValueError(
                f"{self.name} (Dot): the summed axes differ in size, {sx[ax]} (axis {ax + 1} "
                f"of samples {sx}) and {sy[ay]} (axis {ay + 1} of samples {sy})")
        return (sx[:ax] + sx[ax + 1:] + sy[:ay] + sy[ay + 1:]) or (1,)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        self._sample_axes = self._resolve_axes(input_shape)

    def flops_per_sample(self, input_shape):
        sx, sy = (tuple(s) for s in input_shape)
        ax, ay = self._resolve_axes([sx, sy])
        products = math.prod(sx) * math.prod(sy) // sx[ax]   # rows * columns * d
        return products + (3 * (math.prod(sx) + math.prod(sy)) if self.normalize else 0)

    def _merge(self, xs):
        x, y = xs
        ax, ay = self._sample_axes
        saved_norms = None
        if self.normalize:
            x, x_norm = _l2_normalize(x, ax + 1)
            y, y_norm = _l2_normalize(y, ay + 1)
            saved_norms = (x, x_norm, y, y_norm)
        batch, d = x.shape[0], x.shape[ax + 1]
        # x as (batch, rows, d) and y as (batch, d, columns): reshape copies
        # only where moving the axis made the view non-contiguous.
        xm = np.moveaxis(x, ax + 1, -1)
        ym = np.moveaxis(y, ay + 1, 1)
        rows, columns = math.prod(xm.shape[1:-1]), math.prod(ym.shape[2:])
        x3 = xm.reshape(batch, rows, d)
        y3 = ym.reshape(batch, d, columns)
        z = np.matmul(x3, y3)
        self._saved = (x3, y3, xm.shape, ym.shape, saved_norms)
        return np.ascontiguousarray(z.reshape((batch,) + self.output_shape))

    def _merge_backward(self, grad):
        x3, y3, xm_shape, ym_shape, saved_norms = self._saved
        ax, ay = self._sample_axes
        batch = grad.shape[0]
        rows, columns = x3.shape[1], y3.shape[2]
        gz = grad.reshape(batch, rows, columns)
        if rows == columns == 1:
            # One product per sample: a broadcast multiply is about 3 times
            # as fast as a batch of 1 x 1 by 1 x d matrix products.
            dx3 = gz * y3.transpose(0, 2, 1)
            dy3 = x3.transpose(0, 2, 1) * gz
        else:
            dx3 = np.matmul(gz, y3.transpose(0, 2, 1))    # (batch, rows, d)
            dy3 = np.matmul(x3.transpose(0, 2, 1), gz)    # (batch, d, columns)
        dx = np.moveaxis(dx3.reshape(xm_shape), -1, ax + 1)
        dy = np.moveaxis(dy3.reshape(ym_shape), 1, ay + 1)
        if saved_norms is not None:
            xn, x_norm, yn, y_norm = saved_norms
            dx = _l2_normalize_backward(dx, xn, x_norm, ax + 1)
            dy = _l2_normalize_backward(dy, yn, y_norm, ay + 1)
        return [np.ascontiguousarray(dx), np.ascontiguousarray(dy)]
