# Rendered from dropout.pyx.tp by setup.py: edit the template, not this file.
"""Inverted dropout: Y = X * mask, mask = (U >= rate) / (1 - rate).

The uniform draws ``U`` come from the model's seeded NumPy generator, so
a run is reproducible; the kernel turns them into the scaled mask and
applies it in one pass.
"""
from cython cimport floating

from cdl._kernels._checks cimport (
    check_float_array, check_same_dtype, check_same_shape, data_ptr, is_float32)


cdef void dropout_forward(Py_ssize_t n, double rate, const floating* X,
                          const floating* U, floating* mask, floating* Y) noexcept nogil:
    """mask = (U >= rate) / (1 - rate); Y = X * mask. ``mask`` may be ``U``."""
    cdef Py_ssize_t i
    cdef floating keep = <floating>(1.0 / (1.0 - rate))
    cdef floating r = <floating>rate
    cdef floating m
    for i in range(n):
        m = keep if U[i] >= r else 0
        mask[i] = m
        Y[i] = X[i] * m


cdef void dropout_backward(Py_ssize_t n, const floating* mask, const floating* dY,
                           floating* dX) noexcept nogil:
    """dX = dY * mask"""
    cdef Py_ssize_t i
    for i in range(n):
        dX[i] = dY[i] * mask[i]


def forward(X, U, mask, Y, double rate):
    """Apply inverted dropout to ``X``; write the scaled mask and ``Y``.

    Parameters
    ----------
    X, U, mask, Y : ndarrays of one shape and floating dtype
        ``U`` holds uniform draws in [0, 1); ``mask`` may be ``U``.
    rate : float in [0, 1)
        Probability that an element is zeroed.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    for a, name, writable in ((X, "X", False), (U, "U", False),
                              (mask, "mask", True), (Y, "Y", True)):
        check_float_array(a, name, -1, writable)
        check_same_dtype(X, a, "X", name)
        check_same_shape(X, a, "X", name)
    cdef Py_ssize_t n = X.size
    cdef void* px = data_ptr(X)
    cdef void* pu = data_ptr(U)
    cdef void* pm = data_ptr(mask)
    cdef void* py = data_ptr(Y)
    if is_float32(X):
        with nogil:
            dropout_forward(n, rate, <float*>px, <float*>pu, <float*>pm, <float*>py)
    else:
        with nogil:
            dropout_forward(n, rate, <double*>px, <double*>pu, <double*>pm, <double*>py)
    return Y


def backward(mask, dY, dX):
    """dX = dY * mask, in place in ``dX`` (which may be ``dY``)."""
    for a, name, writable in ((mask, "mask", False), (dY, "dY", False), (dX, "dX", True)):
        check_float_array(a, name, -1, writable)
        check_same_dtype(mask, a, "mask", name)
        check_same_shape(mask, a, "mask", name)
    cdef Py_ssize_t n = mask.size
    cdef void* pm = data_ptr(mask)
    cdef void* pdy = data_ptr(dY)
    cdef void* pdx = data_ptr(dX)
    if is_float32(mask):
        with nogil:
            dropout_backward(n, <float*>pm, <float*>pdy, <float*>pdx)
    else:
        with nogil:
            dropout_backward(n, <double*>pm, <double*>pdy, <double*>pdx)
    return dX
