# Rendered from clip.pyx.tp by setup.py: edit the template, not this file.
"""Gradient clipping over flat gradient vectors: norms, scaling, clamping."""
from cython cimport floating
from libc.math cimport fabs, pow, INFINITY

from cdl._kernels._blas cimport _nrm2, _scal, blas_int, check_blas_int
from cdl._kernels._checks cimport check_float_array, data_ptr, is_float32


cdef double norm_kernel(Py_ssize_t n, const floating* g, double norm_type) noexcept nogil:
    """||g||_p for p = norm_type (2: BLAS nrm2; inf: max |g|; else (sum |g|^p)^(1/p))."""
    cdef Py_ssize_t i
    cdef double total = 0.0, a
    if n == 0:
        return 0.0
    if norm_type == 2.0:
        return _nrm2(<blas_int>n, g, 1)
    if norm_type == INFINITY:
        for i in range(n):
            a = fabs(g[i])
            if a > total or a != a:  # keep NaN visible
                total = a
        return total
    for i in range(n):
        total += pow(fabs(g[i]), norm_type)
    return pow(total, 1.0 / norm_type)


cdef void clamp_kernel(Py_ssize_t n, floating* g, floating limit) noexcept nogil:
    """g = min(max(g, -limit), limit)"""
    cdef Py_ssize_t i
    for i in range(n):
        if g[i] > limit:
            g[i] = limit
        elif g[i] < -limit:
            g[i] = -limit


def norm(g, double norm_type=2.0):
    """The ``norm_type``-norm of a 1-D gradient vector, as a float."""
    check_float_array(g, "grad", 1, False)
    if not norm_type > 0:
        raise ValueError(f"norm_type must be positive, got {norm_type}")
    cdef Py_ssize_t n = g.shape[0]
    if norm_type == 2.0:
        check_blas_int(n, "gradient length")
    cdef void* pg = data_ptr(g)
    cdef double result
    if is_float32(g):
        with nogil:
            result = norm_kernel(n, <float*>pg, norm_type)
    else:
        with nogil:
            result = norm_kernel(n, <double*>pg, norm_type)
    return result


def scale(g, double factor):
    """g *= factor, in place."""
    check_float_array(g, "grad", 1, True)
    cdef Py_ssize_t n = g.shape[0]
    check_blas_int(n, "gradient length")
    cdef void* pg = data_ptr(g)
    if n == 0:
        return
    if is_float32(g):
        with nogil:
            _scal(<blas_int>n, <float>factor, <float*>pg, 1)
    else:
        with nogil:
            _scal(<blas_int>n, <double>factor, <double*>pg, 1)


def clamp(g, double limit):
    """Clamp every element of g to [-limit, limit], in place."""
    check_float_array(g, "grad", 1, True)
    if not limit >= 0:
        raise ValueError(f"clip value must be non-negative, got {limit}")
    cdef Py_ssize_t n = g.shape[0]
    cdef void* pg = data_ptr(g)
    if is_float32(g):
        with nogil:
            clamp_kernel(n, <float*>pg, <float>limit)
    else:
        with nogil:
            clamp_kernel(n, <double*>pg, <double>limit)
