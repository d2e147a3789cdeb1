# Rendered from pooling.pyx.tp by setup.py: edit the template, not this file.
"""Max and average pooling over channels-last arrays, and their gradients.

Every array is 4-D: inputs X and dX are (n, H, W, C), outputs Y and dY and
the argmax buffer are (n, OH, OW, C); one-dimensional pooling is the case
H = 1 and global pooling the case of one window covering the whole input.
Output (oh, ow) reads the window of rows ``oh * sh - pad_h`` to
``oh * sh - pad_h + ph - 1`` (clipped to the input) and likewise for
columns. Padded positions are ignored: max pooling takes the maximum of the
real elements, and average pooling divides by their number (Keras "same",
PyTorch ``count_include_pad=False``).

Max pooling records, for each output element, the flat index into X of the
element it took: the first maximum in row-major window order, or the last
NaN if the window holds any (NaN propagates, as in PyTorch). The backward
pass scatters the gradient to those indices. Average pooling's backward
spreads each gradient evenly over its window's real elements.
"""
from cython cimport floating
from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t, INT32_MAX

import numpy as np
cimport numpy as cnp

from cdl._kernels._checks cimport (
    check_array_layout, check_float_array, check_same_dtype, data_ptr, is_float32)

cnp.import_array()


# Window positions in the max pooling scratch: as wide as the data type, so
# that the channel loop, which mixes values and positions, can vectorise
# (with SSE2, float32 does; float64 needs SSE4.2 for its 64-bit masks and
# otherwise runs as branch-free scalar code).
ctypedef fused key_t:
    int32_t
    int64_t


cdef struct Geometry:
    Py_ssize_t n, H, W, C       # input
    Py_ssize_t OH, OW           # output
    Py_ssize_t ph, pw           # window
    Py_ssize_t sh, sw           # strides
    Py_ssize_t pad_h, pad_w     # padding before the first row / column


cdef inline void _window(const Geometry* g, Py_ssize_t oh, Py_ssize_t ow,
                         Py_ssize_t* h0, Py_ssize_t* h1,
                         Py_ssize_t* w0, Py_ssize_t* w1) noexcept nogil:
    """Rows [h0, h1) and columns [w0, w1) of the input under output (oh, ow)."""
    cdef Py_ssize_t start = oh * g.sh - g.pad_h
    cdef Py_ssize_t stop = start + g.ph
    h0[0] = start if start > 0 else 0
    h1[0] = stop if stop < g.H else g.H
    start = ow * g.sw - g.pad_w
    stop = start + g.pw
    w0[0] = start if start > 0 else 0
    w1[0] = stop if stop < g.W else g.W


cdef void max_pool_forward(const Geometry* g, const floating* X, floating* Y,
                           int64_t* A, key_t* K, key_t* KN) noexcept nogil:
    """Y = max over each window; A = flat index into X of the element taken.

    Ties go to the first maximum in row-major window order; NaN wins, and
    of several NaN the last (PyTorch's rules). ``K`` and ``KN`` are scratch
    of C integers: per channel, the position of the running maximum and of
    the last NaN (-1: none), as (row - first row) * W + (column - first
    column).
    """
    cdef Py_ssize_t b, oh, ow, h, w, c, h0, h1, w0, w1, first, i
    cdef Py_ssize_t C = g.C
    cdef floating x, m
    cdef key_t k, kk, kn
    cdef Py_ssize_t position
    cdef bint gt, isnan
    cdef floating* Yo
    cdef int64_t* Ao
    cdef const floating* Xw
    for b in range(g.n):
        for oh in range(g.OH):
            for ow in range(g.OW):
                _window(g, oh, ow, &h0, &h1, &w0, &w1)
                Yo = Y + ((b * g.OH + oh) * g.OW + ow) * C
                Ao = A + ((b * g.OH + oh) * g.OW + ow) * C
                # -inf and the first element, as PyTorch: a window of -inf
                # (or of nothing larger) reports its first element.
                for c in range(C):
                    Yo[c] = -INFINITY
                    K[c] = 0
                    KN[c] = -1
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        # Position relative to the window's first element.
                        k = <key_t>((h - h0) * g.W + (w - w0))
                        Xw = X + ((b * g.H + h) * g.W + w) * C
                        # Over contiguous channels, without control flow: the
                        # float select is a max instruction (x > m keeps the
                        # first maximum and never takes NaN) and the integer
                        # selects are masks. Conditional stores (if gt: ...)
                        # would compile to branches and block vectorisation.
                        for c in range(C):
                            x = Xw[c]
                            m = Yo[c]
                            kk = K[c]
                            kn = KN[c]
                            gt = x > m
                            isnan = x != x
                            Yo[c] = x if gt else m
                            K[c] = kk ^ ((kk ^ k) & -<key_t>gt)
                            KN[c] = kn ^ ((kn ^ k) & -<key_t>isnan)
                # Position -> flat index; the value is read back from there,
                # which also gives the NaN of a window that holds one.
                first = ((b * g.H + h0) * g.W + w0) * C
                for c in range(C):
                    kk = K[c]
                    kn = KN[c]
                    position = kn if kn >= 0 else kk
                    i = first + position * C + c
                    Ao[c] = i
                    Yo[c] = X[i]


cdef void max_pool_backward(Py_ssize_t n_in, Py_ssize_t n_out, const floating* dY,
                            const int64_t* A, floating* dX) noexcept nogil:
    """dX = 0; dX[A[o]] += dY[o] for every output element o."""
    cdef Py_ssize_t i, o
    cdef int64_t a
    cdef floating d
    for i in range(n_in):
        dX[i] = 0
    for o in range(n_out):
        a = A[o]
        d = dY[o]
        dX[a] += d


cdef void _index_range(Py_ssize_t n, const int64_t* A, int64_t* lo,
                       int64_t* hi) noexcept nogil:
    """Smallest and largest entries of A (n > 0)."""
    cdef Py_ssize_t i
    cdef int64_t a, mn = A[0], mx = A[0]
    for i in range(n):
        a = A[i]
        mn = a if a < mn else mn
        mx = a if a > mx else mx
    lo[0] = mn
    hi[0] = mx


cdef void avg_pool_forward(const Geometry* g, const floating* X,
                           floating* Y) noexcept nogil:
    """Y = mean of the real (unpadded) elements of each window."""
    cdef Py_ssize_t b, oh, ow, h, w, c, h0, h1, w0, w1
    cdef Py_ssize_t C = g.C
    cdef floating inv
    cdef floating* Yo
    cdef const floating* Xw
    for b in range(g.n):
        for oh in range(g.OH):
            for ow in range(g.OW):
                _window(g, oh, ow, &h0, &h1, &w0, &w1)
                Yo = Y + ((b * g.OH + oh) * g.OW + ow) * C
                for c in range(C):
                    Yo[c] = 0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        Xw = X + ((b * g.H + h) * g.W + w) * C
                        for c in range(C):
                            Yo[c] += Xw[c]
                inv = <floating>(1.0 / <double>((h1 - h0) * (w1 - w0)))
                for c in range(C):
                    Yo[c] *= inv


cdef void avg_pool_backward(const Geometry* g, const floating* dY,
                            floating* dX) noexcept nogil:
    """dX = sum over the windows holding each element of dY / window count."""
    cdef Py_ssize_t b, oh, ow, h, w, c, h0, h1, w0, w1, i
    cdef Py_ssize_t C = g.C
    cdef floating inv
    cdef const floating* Go
    cdef floating* Dw
    for i in range(g.n * g.H * g.W * C):
        dX[i] = 0
    for b in range(g.n):
        for oh in range(g.OH):
            for ow in range(g.OW):
                _window(g, oh, ow, &h0, &h1, &w0, &w1)
                Go = dY + ((b * g.OH + oh) * g.OW + ow) * C
                inv = <floating>(1.0 / <double>((h1 - h0) * (w1 - w0)))
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        Dw = dX + ((b * g.H + h) * g.W + w) * C
                        for c in range(C):
                            Dw[c] += Go[c] * inv


# --- argument checks --------------------------------------------------------

cdef int _check_pair(object value, str name, Py_ssize_t low,
                     Py_ssize_t* first, Py_ssize_t* second) except -1:
    try:
        a, b = value
        a, b = int(a), int(b)
        ok = a == value[0] and b == value[1]
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or a < low or b < low:
        raise ValueError(f"{name} must be a pair of ints >= {low}, got {value!r}")
    first[0] = a
    second[0] = b
    return 0


cdef int _check_index_array(object a, str name, tuple shape, bint writable) except -1:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if cnp.PyArray_TYPE(<cnp.ndarray>a) != cnp.NPY_INT64:
        raise TypeError(f"{name} must have dtype int64, got {a.dtype}")
    check_array_layout(<cnp.ndarray>a, name, -1, writable)
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    return 0


cdef int _geometry(Geometry* g, object X, str x_name, object Y, str y_name,
                   bint y_writable, bint x_writable, object pool, object strides,
                   object padding) except -1:
    """Check the input-side array X, the output-side array Y and the pooling
    arguments, and fill ``g``."""
    check_float_array(X, x_name, 4, x_writable)
    check_float_array(Y, y_name, 4, y_writable)
    check_same_dtype(X, Y, x_name, y_name)
    _check_pair(pool, "pool", 1, &g.ph, &g.pw)
    _check_pair(strides, "strides", 1, &g.sh, &g.sw)
    _check_pair(padding, "padding", 0, &g.pad_h, &g.pad_w)
    g.n, g.H, g.W, g.C = X.shape
    g.OH, g.OW = Y.shape[1], Y.shape[2]
    if Y.shape[0] != g.n or Y.shape[3] != g.C:
        raise ValueError(
            f"{x_name} has shape {X.shape} and {y_name} has shape {Y.shape}: "
            "they must agree in the batch (first) and channel (last) axes")
    if g.H < 1 or g.W < 1 or g.OH < 1 or g.OW < 1:
        raise ValueError(
            f"{x_name} of shape {X.shape} and {y_name} of shape {Y.shape} "
            "must have at least one row and one column")
    if g.pad_h >= g.ph or g.pad_w >= g.pw:
        raise ValueError(f"padding {padding!r} must be smaller than the pool {pool!r}")
    # Every window must hold at least one real element.
    if (g.OH - 1) * g.sh - g.pad_h >= g.H or (g.OW - 1) * g.sw - g.pad_w >= g.W:
        raise ValueError(
            f"an output of shape {Y.shape} with pool {pool!r}, strides {strides!r} "
            f"and padding {padding!r} has windows outside an input of shape {X.shape}")
    return 0


# --- entry points -------------------------------------------------------------

def max_forward(X, Y, argmax, pool, strides, padding):
    """Max pooling: Y and argmax written in place.

    Parameters
    ----------
    X : ndarray of shape (n, H, W, C)
    Y : ndarray of shape (n, OH, OW, C), same dtype as X
    argmax : int64 ndarray of the shape of Y
        Receives the flat index into X of each output's maximum.
    pool, strides : pairs of ints >= 1
    padding : pair of ints, 0 <= padding < pool
        Rows and columns of (ignored) padding before the input.
    """
    cdef Geometry g
    _geometry(&g, X, "X", Y, "Y", True, False, pool, strides, padding)
    _check_index_array(argmax, "argmax", Y.shape, True)
    cdef bint single = is_float32(X)
    if single and g.ph * g.W > INT32_MAX:
        raise ValueError(f"pool {pool!r} over rows of {g.W} is too large for int32 "
                         "window positions; use float64")
    scratch = np.empty(2 * g.C, dtype=np.int32 if single else np.int64)
    cdef void* pk = cnp.PyArray_DATA(<cnp.ndarray>scratch)
    cdef void* px = data_ptr(X)
    cdef void* py = data_ptr(Y)
    cdef int64_t* pa = <int64_t*>data_ptr(argmax)
    if single:
        with nogil:
            max_pool_forward(&g, <float*>px, <float*>py, pa,
                             <int32_t*>pk, <int32_t*>pk + g.C)
    else:
        with nogil:
            max_pool_forward(&g, <double*>px, <double*>py, pa,
                             <int64_t*>pk, <int64_t*>pk + g.C)
    return Y


def max_backward(dY, argmax, dX):
    """Gradient of max pooling: dX = 0, then dX.flat[argmax] += dY.

    Parameters
    ----------
    dY : ndarray of shape (n, OH, OW, C)
    argmax : int64 ndarray of the shape of dY, from ``max_forward``
    dX : ndarray of shape (n, H, W, C), same dtype as dY, overwritten
    """
    check_float_array(dY, "dY", 4, False)
    check_float_array(dX, "dX", 4, True)
    check_same_dtype(dY, dX, "dY", "dX")
    _check_index_array(argmax, "argmax", dY.shape, False)
    if dY.shape[0] != dX.shape[0] or dY.shape[3] != dX.shape[3]:
        raise ValueError(
            f"dY has shape {dY.shape} and dX has shape {dX.shape}: they must "
            "agree in the batch (first) and channel (last) axes")
    cdef Py_ssize_t n_in = dX.size, n_out = dY.size
    cdef int64_t* pa = <int64_t*>data_ptr(argmax)
    cdef int64_t lo = 0, hi = 0
    if n_out > 0:
        with nogil:
            _index_range(n_out, pa, &lo, &hi)
        if lo < 0 or hi >= n_in:
            raise ValueError(
                f"argmax holds indices from {lo} to {hi}, outside dX of shape "
                f"{dX.shape} (size {n_in})")
    cdef void* pdy = data_ptr(dY)
    cdef void* pdx = data_ptr(dX)
    if is_float32(dY):
        with nogil:
            max_pool_backward(n_in, n_out, <float*>pdy, pa, <float*>pdx)
    else:
        with nogil:
            max_pool_backward(n_in, n_out, <double*>pdy, pa, <double*>pdx)
    return dX


def avg_forward(X, Y, pool, strides, padding):
    """Average pooling over the real elements of each window; Y written in place.

    Parameters are those of ``max_forward``, without ``argmax``.
    """
    cdef Geometry g
    _geometry(&g, X, "X", Y, "Y", True, False, pool, strides, padding)
    cdef void* px = data_ptr(X)
    cdef void* py = data_ptr(Y)
    if is_float32(X):
        with nogil:
            avg_pool_forward(&g, <float*>px, <float*>py)
    else:
        with nogil:
            avg_pool_forward(&g, <double*>px, <double*>py)
    return Y


def avg_backward(dY, dX, pool, strides, padding):
    """Gradient of average pooling, written in place in ``dX``.

    Parameters
    ----------
    dY : ndarray of shape (n, OH, OW, C)
    dX : ndarray of shape (n, H, W, C), same dtype, overwritten
    pool, strides, padding : as given to ``avg_forward``
    """
    cdef Geometry g
    _geometry(&g, dX, "dX", dY, "dY", False, True, pool, strides, padding)
    cdef void* pdy = data_ptr(dY)
    cdef void* pdx = data_ptr(dX)
    if is_float32(dY):
        with nogil:
            avg_pool_backward(&g, <float*>pdy, <float*>pdx)
    else:
        with nogil:
            avg_pool_backward(&g, <double*>pdy, <double*>pdx)
    return dX
