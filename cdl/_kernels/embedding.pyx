# Rendered from embedding.pyx.tp by setup.py: edit the template, not this file.
"""Embedding lookup: Y[i] = W[indices[i]], and its gradient, a scatter-add.

Shapes: indices (n,) int64, W (v, d), Y and dY (n, d). The backward adds
each row of dY into the row of dW its index names, so repeated indices
accumulate; the sums are kept in dW's own dtype (a float64 copy of a
(v, d) table would cost more than it saves).
"""
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy
import numpy as np
cimport numpy as cnp

from cdl._kernels._checks cimport (
    check_float_array, check_int64_array, check_same_dtype, data_ptr, is_float32,
)

cnp.import_array()


cdef Py_ssize_t first_bad_index(Py_ssize_t n, Py_ssize_t v,
                                const int64_t* indices) noexcept nogil:
    """Position of the first index outside [0, v), or -1."""
    cdef Py_ssize_t i
    cdef int64_t k
    for i in range(n):
        k = indices[i]
        if k < 0 or k >= v:
            return i
    return -1


cdef void embedding_forward(Py_ssize_t n, Py_ssize_t d, const int64_t* indices,
                            const floating* W, floating* Y) noexcept nogil:
    """Y[i] = W[indices[i]] (indices already checked)."""
    cdef Py_ssize_t i
    for i in range(n):
        memcpy(Y + i * d, W + indices[i] * d, d * sizeof(floating))


cdef void embedding_backward(Py_ssize_t n, Py_ssize_t v, Py_ssize_t d,
                             const int64_t* indices, const floating* dY,
                             floating* dW) noexcept nogil:
    """dW = 0; dW[indices[i]] += dY[i] for every i (indices already checked)."""
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef const floating* g
    for i in range(v * d):
        dW[i] = 0
    for i in range(n):
        row = dW + indices[i] * d
        g = dY + i * d
        for j in range(d):
            row[j] += g[j]


def _check_indices(indices):
    check_int64_array(indices, "indices", 1, False)


def first_out_of_range(indices, Py_ssize_t num_rows):
    """Position of the first of the int64 ``indices`` (n,) outside
    [0, num_rows), or -1 if they are all in range."""
    _check_indices(indices)
    cdef Py_ssize_t n = indices.shape[0]
    cdef const int64_t* pi = <const int64_t*>data_ptr(indices)
    cdef Py_ssize_t bad
    with nogil:
        bad = first_bad_index(n, num_rows, pi)
    return bad


cdef int _check_all(indices, table, str table_name, bint table_writable,
                    rows, str rows_name, bint rows_writable) except -1:
    """indices (n,) in range for ``table`` (v, d); ``rows`` (n, d) of its dtype."""
    _check_indices(indices)
    check_float_array(table, table_name, 2, table_writable)
    check_float_array(rows, rows_name, 2, rows_writable)
    check_same_dtype(table, rows, table_name, rows_name)
    cdef Py_ssize_t n = indices.shape[0], d = table.shape[1]
    if rows.shape[0] != n or rows.shape[1] != d:
        raise ValueError(f"{rows_name} has shape {rows.shape}, expected ({n}, {d}) for "
                         f"indices of shape {indices.shape} and a table of shape "
                         f"{table.shape}")
    bad = first_out_of_range(indices, table.shape[0])
    if bad >= 0:
        raise ValueError(f"index {indices[bad]} at position {bad} is out of range for an "
                         f"embedding table of {table.shape[0]} rows (shape {table.shape})")
    return 0


def forward(indices, W, Y):
    """Y[i] = W[indices[i]], written in place.

    Parameters
    ----------
    indices : int64 ndarray of shape (n,), each in [0, v)
    W : ndarray of shape (v, d)
    Y : ndarray of shape (n, d)
    """
    _check_all(indices, W, "W", False, Y, "Y", True)
    cdef Py_ssize_t n = indices.shape[0], d = W.shape[1]
    cdef const int64_t* pi = <const int64_t*>data_ptr(indices)
    cdef void* pw = data_ptr(W)
    cdef void* py = data_ptr(Y)
    if is_float32(W):
        with nogil:
            embedding_forward(n, d, pi, <float*>pw, <float*>py)
    else:
        with nogil:
            embedding_forward(n, d, pi, <double*>pw, <double*>py)
    return Y


def backward(indices, dY, dW):
    """dW = scatter-add of the rows of dY at ``indices`` (overwritten).

    Parameters
    ----------
    indices : int64 ndarray of shape (n,), each in [0, v)
    dY : ndarray of shape (n, d)
    dW : ndarray of shape (v, d)
    """
    _check_all(indices, dW, "dW", True, dY, "dY", False)
    cdef Py_ssize_t n = indices.shape[0], v = dW.shape[0], d = dW.shape[1]
    cdef const int64_t* pi = <const int64_t*>data_ptr(indices)
    cdef void* pdy = data_ptr(dY)
    cdef void* pdw = data_ptr(dW)
    if is_float32(dW):
        with nogil:
            embedding_backward(n, v, d, pi, <float*>pdy, <float*>pdw)
    else:
        with nogil:
            embedding_backward(n, v, d, pi, <double*>pdy, <double*>pdw)
    return dW
