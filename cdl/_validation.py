"""Checks and coercions for user-supplied arrays and options.

Everything that reaches a compiled kernel passes through here first (or
through a layer's own check built on these), so that bad input becomes a
``TypeError``/``ValueError`` naming what was wrong.
"""
import math
import numbers

import numpy as np

# Largest size BLAS takes (its dimensions and strides are 32-bit ints):
# defined once, in _blas.pxd, for the kernels and the Python code alike.
from cdl._kernels._blas import BLAS_INT_MAX

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_dtype(dtype, name="dtype"):
    """Return ``dtype`` as a NumPy float32 or float64 dtype, or raise."""
    if dtype is None:   # np.dtype(None) is float64: not what None means here
        raise TypeError(f"{name} must be 'float32' or 'float64', got None")
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be 'float32' or 'float64', got {dtype!r}") from None
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be 'float32' or 'float64', got {dtype!r}")
    return resolved


def as_float_array(x, dtype, name="x"):
    """Return ``x`` as a C-contiguous ndarray of ``dtype``, copying only if needed.

    Booleans, integers and floats of any width are converted; complex,
    object, string and ragged inputs raise ``TypeError``/``ValueError``.
    """
    if type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous \
            and x.flags.aligned:
        return x
    arr = as_real_array(x, name)
    # Not np.ascontiguousarray: it turns a 0-d array into shape (1,), and it
    # returns an unaligned array as is, which the kernels reject.
    arr = np.asarray(arr, dtype=dtype, order="C")
    if not arr.flags.aligned:
        arr = arr.copy()
    return arr


def as_real_array(x, name="x"):
    """``x`` as an ndarray of real numbers (bool, int or float, any width), or raise."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except ValueError as err:  # ragged nested lists
            raise ValueError(f"{name} could not be turned into an array: {err}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got an array of dtype {arr.dtype}")
    return arr


def check_finite(x, name="x"):
    """Raise ValueError if the float array ``x`` holds NaN or infinity."""
    if x.size and not np.isfinite(x).all():
        bad = "NaN" if np.isnan(x).any() else "infinity"
        if bad == "infinity" and x.dtype == np.float32:
            bad += " (or values too large for float32)"
        raise ValueError(f"{name} contains {bad}")


def shape_fits(shape, expected):
    """True if a per-sample ``shape`` matches ``expected``, where an axis of
    size None (a free time axis) takes any size."""
    shape, expected = tuple(shape), tuple(expected)
    return len(shape) == len(expected) and all(
        e is None or e == d for d, e in zip(shape, expected))


def check_feature_shape(x, expected, name="x"):
    """Check that ``x`` is a batch of samples of shape ``expected`` (where an
    axis of size None, such as a free time axis, takes any size)."""
    if x.ndim != len(expected) + 1 or any(
            d is not None and d != e for d, e in zip(expected, x.shape[1:])):
        raise ValueError(
            f"{name} has shape {x.shape}, expected (batch_size, "
            f"{', '.join(str(d) for d in expected)}{',' if len(expected) == 1 else ''})")


def check_bool(value, name):
    """Return the flag ``value`` as a Python bool, or raise ``TypeError``.

    Only ``True``/``False`` and NumPy's ``np.True_``/``np.False_`` are
    flags: a string such as ``"no"`` or ``"False"`` is truthy, and ``0``/``1``
    or ``None`` usually mean a mistyped argument (a level, a count, a
    missing value), so all of them are refused rather than coerced with
    ``bool()``.

    Parameters
    ----------
    value : object
        The argument to check.
    name : str
        The parameter's name, for the error message.

    Returns
    -------
    bool

    Raises
    ------
    TypeError
        If ``value`` is not a ``bool`` or ``np.bool_``.

    Examples
    --------
    >>> import numpy as np
    >>> check_bool(np.True_, "shuffle")
    True
    >>> check_bool("no", "shuffle")
    Traceback (most recent call last):
    ...
    TypeError: shuffle must be True or False, got 'no'
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_blas_size(count, what, hint="split the input into smaller batches"):
    """Raise ValueError if ``count``, a dimension of a BLAS call, exceeds
    BLAS's 32-bit integer limit (rather than let it be truncated)."""
    if count > BLAS_INT_MAX:
        raise ValueError(
            f"{what} is {count}, larger than BLAS's 32-bit integer limit ({BLAS_INT_MAX}); "
            f"{hint}")


def check_number(value, name, low=None, high=None, low_inclusive=True,
                 high_inclusive=True, integer=False, finite=True):
    """Validate a numeric hyper-parameter and return it as float (or int).

    Parameters
    ----------
    value : object
        The argument to check: a real number (Python's or NumPy's), not a
        bool, not NaN or infinity.
    name : str
        The parameter's name, for the error message.
    low, high : float, optional
        Bounds; None leaves that side open-ended.
    low_inclusive, high_inclusive : bool, default True
        Whether ``value`` may equal ``low`` (``high``): False makes that
        side an open interval, as ``(0, 1)`` for a fraction.
    integer : bool, default False
        Require a whole number (``3.0`` is accepted as ``3``) and return an
        int.
    finite : bool, default True
        Refuse infinity; False accepts it (within the bounds), as for the
        order of a norm. NaN is always refused.

    Returns
    -------
    float or int

    Raises
    ------
    TypeError
        If ``value`` is not a real number (strings, None and bools included),
        or is not whole when ``integer`` is set.
    ValueError
        If ``value`` is NaN, infinite (unless ``finite`` is False) or lies
        outside the bounds.

    Examples
    --------
    >>> check_number(0.5, "dropout", 0.0, 1.0, high_inclusive=False)
    0.5
    >>> check_number(1.0, "dropout", 0.0, 1.0, high_inclusive=False)
    Traceback (most recent call last):
    ...
    ValueError: dropout must be < 1.0, got 1.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not isinstance(value, numbers.Integral) and not math.isfinite(value) and (
            finite or math.isnan(value)):
        raise ValueError(f"{name} must be {'finite' if finite else 'a number, not NaN'}, "
                         f"got {value}")
    if integer and (math.isinf(value) or value != int(value)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value) if integer else float(value)
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        raise ValueError(f"{name} must be {'<=' if high_inclusive else '<'} {high}, got {value}")
    return value


def check_shape_tuple(shape, name="input_shape", allow_none=False):
    """Return ``shape`` as a tuple of positive ints, or raise. With
    ``allow_none``, an axis may be None (any size: a free time axis)."""
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of positive ints, got {shape!r}") from None
    for i, dim in enumerate(shape):
        if dim is None and allow_none:
            continue
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            what = "positive ints (or None for a free axis)" if allow_none else "positive ints"
            raise ValueError(f"{name} must be a tuple of {what}, got {shape!r}")
    return tuple(None if d is None else int(d) for d in shape)


def choose(value, options, name):
    """Return ``value`` if it is one of ``options``, else raise naming them."""
    if value not in options:
        known = ", ".join(repr(o) for o in options)
        raise ValueError(f"unknown {name} {value!r}; expected one of {known}")
    return value
