"""Checks and coercions for user-supplied arrays and options.

Everything that reaches a compiled kernel passes through here first (or
through a layer's own check built on these), so that bad input becomes a
``TypeError``/``ValueError`` naming what was wrong.
"""
import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_dtype(dtype, name="dtype"):
    """Return ``dtype`` as a NumPy float32 or float64 dtype, or raise."""
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


def check_feature_shape(x, expected, name="x"):
    """Check that ``x`` is a batch of samples of shape ``expected``."""
    if x.ndim != len(expected) + 1 or x.shape[1:] != tuple(expected):
        raise ValueError(
            f"{name} has shape {x.shape}, expected (batch_size, "
            f"{', '.join(str(d) for d in expected)}{',' if len(expected) == 1 else ''})")


def check_number(value, name, low=None, high=None, low_inclusive=True,
                 high_inclusive=True, integer=False):
    """Validate a numeric hyper-parameter and return it as float (or int)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not isinstance(value, numbers.Integral) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if integer and value != int(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value) if integer else float(value)
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        raise ValueError(f"{name} must be {'<=' if high_inclusive else '<'} {high}, got {value}")
    return value


def check_shape_tuple(shape, name="input_shape"):
    """Return ``shape`` as a tuple of positive ints, or raise."""
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of positive ints, got {shape!r}") from None
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"{name} must be a tuple of positive ints, got {shape!r}")
    return tuple(int(d) for d in shape)


def choose(value, options, name):
    """Return ``value`` if it is one of ``options``, else raise naming them."""
    if value not in options:
        known = ", ".join(repr(o) for o in options)
        raise ValueError(f"unknown {name} {value!r}; expected one of {known}")
    return value
