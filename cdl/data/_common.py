"""Checks shared by the modules of :mod:`cdl.data`: seeds, array inputs and
the listing of values in error messages."""
import numbers

import numpy as np

__all__ = ["as_generator", "as_array", "check_real", "count_samples", "default_float",
           "list_values"]


def as_generator(seed, name="seed"):
    """Return a ``numpy.random.Generator`` for ``seed`` (None, int or Generator).

    A Generator is returned as is (not copied), so drawing from the result
    advances it.
    """
    if seed is None or isinstance(seed, (np.random.Generator, np.random.SeedSequence)):
        return np.random.default_rng(seed)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"{name} must be None, an int or a numpy.random.Generator, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed}")
    return np.random.default_rng(int(seed))


def as_array(x, name):
    """``x`` as an ndarray (memmaps and other ndarrays are not converted or copied)."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} could not be turned into an array: {err}") from None


def check_real(arr, name, hint=""):
    """Raise TypeError unless ``arr`` holds real numbers (bool, int or float);
    ``hint`` ends the message."""
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers, got an array of dtype {arr.dtype}{hint}")


def count_samples(arr, name):
    """The number of samples of ``arr`` (its first axis); ValueError for a 0-d array."""
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the samples), "
                         f"got a 0-d array")
    return arr.shape[0]


def default_float(arr):
    """float32 for float32 input (any byte order), float64 for anything else."""
    return np.dtype(np.float32) if arr.dtype.kind == "f" and arr.dtype.itemsize == 4 \
        else np.dtype(np.float64)


def list_values(values, limit=10):
    """The first ``limit`` of ``values`` as text for an error message, and how
    many more there are."""
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:limit])
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return f"[{shown}{more}]"

