"""Shared test helpers: dtype-keyed tolerances and small array factories."""
import numpy as np
import numpy.testing as npt

DTYPES = [np.float32, np.float64]

#: One tolerance table for every comparison against a reference.
TOLERANCES = {
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
}

#: Largest accepted relative error of a float64 finite-difference gradient check.
GRADCHECK_TOL = 1e-6


def assert_allclose(actual, desired, dtype=None, **overrides):
    """assert_allclose with the tolerance of ``dtype`` (default: actual's dtype)."""
    dtype = np.dtype(dtype if dtype is not None else np.asarray(actual).dtype)
    npt.assert_allclose(actual, desired, **{**TOLERANCES[dtype], **overrides})


def random_array(shape, dtype=np.float64, seed=0, low=None, high=None):
    """Standard normal (or uniform in [low, high)) draws of the given dtype."""
    rng = np.random.default_rng(seed)
    if low is not None:
        return rng.uniform(low, high, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)
