# Rendered from _blas.pyx.tp by setup.py: edit the template, not this file.
"""Row-major wrappers of the BLAS routines cdl uses.

The ``cdef`` routines are the seam every kernel goes through. The ``def``
functions at the bottom (``gemm``, ``gemv``, ...) expose them to Python
for testing; they check their arguments and then call the seam without
the GIL.
"""
from scipy.linalg.cython_blas cimport sdot, ddot, snrm2, dnrm2
from scipy.linalg.cython_blas cimport saxpy, daxpy, sscal, dscal
from scipy.linalg.cython_blas cimport sgemv, dgemv, sgemm, dgemm

from cdl._kernels._checks cimport check_float_array, check_same_dtype, data_ptr, is_float32


cdef int check_blas_int(Py_ssize_t value, str what) except -1:
    """Raise ValueError if ``value`` does not fit BLAS's 32-bit int."""
    if value > BLAS_INT_MAX:
        raise ValueError(
            f"{what} is {value}, larger than BLAS's 32-bit integer limit "
            f"({BLAS_INT_MAX}); split the operation into smaller pieces")
    return 0


cdef floating _dot(blas_int n, const floating* x, blas_int incx,
                   const floating* y, blas_int incy) noexcept nogil:
    """x . y"""
    if floating is float:
        return sdot(&n, <float*>x, &incx, <float*>y, &incy)
    else:
        return ddot(&n, <double*>x, &incx, <double*>y, &incy)


cdef floating _nrm2(blas_int n, const floating* x, blas_int incx) noexcept nogil:
    """||x||_2"""
    if floating is float:
        return snrm2(&n, <float*>x, &incx)
    else:
        return dnrm2(&n, <double*>x, &incx)


cdef void _axpy(blas_int n, floating alpha, const floating* x, blas_int incx,
                floating* y, blas_int incy) noexcept nogil:
    """y := alpha * x + y"""
    if floating is float:
        saxpy(&n, &alpha, <float*>x, &incx, y, &incy)
    else:
        daxpy(&n, &alpha, <double*>x, &incx, y, &incy)


cdef void _scal(blas_int n, floating alpha, floating* x, blas_int incx) noexcept nogil:
    """x := alpha * x"""
    if floating is float:
        sscal(&n, &alpha, x, &incx)
    else:
        dscal(&n, &alpha, x, &incx)


cdef void _gemv(BLAS_Trans ta, blas_int m, blas_int n, floating alpha,
                const floating* A, blas_int lda, const floating* x, blas_int incx,
                floating beta, floating* y, blas_int incy) noexcept nogil:
    """y := alpha * op(A) @ x + beta * y, with A of shape (m, n) in C order.

    A row-major (m, n) matrix is the column-major (n, m) matrix A^T, so the
    transpose flag flips and the dimensions swap.
    """
    cdef char trans = b't' if ta == NoTrans else b'n'
    cdef blas_int i, n_in = n if ta == NoTrans else m
    cdef blas_int n_out = m if ta == NoTrans else n
    cdef blas_int step = incy if incy > 0 else -incy
    if n_in == 0:
        # BLAS returns at once when a dimension is 0, leaving y as it was;
        # the empty product is 0, so y := beta * y (0 for beta = 0, as BLAS).
        for i in range(n_out):
            y[i * step] = 0 if beta == 0 else beta * y[i * step]
        return
    if lda < 1:
        lda = 1
    if floating is float:
        sgemv(&trans, &n, &m, &alpha, <float*>A, &lda, <float*>x, &incx,
              &beta, y, &incy)
    else:
        dgemv(&trans, &n, &m, &alpha, <double*>A, &lda, <double*>x, &incx,
              &beta, y, &incy)


cdef void _gemm(BLAS_Trans ta, BLAS_Trans tb, blas_int m, blas_int n, blas_int k,
                floating alpha, const floating* A, blas_int lda,
                const floating* B, blas_int ldb,
                floating beta, floating* C, blas_int ldc) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C, all in C order; C is (m, n).

    Computed as the column-major product C^T = op(B)^T @ op(A)^T, which
    reads the same memory without copying: swap the operands and the
    dimensions m and n.
    """
    cdef char transa = <char>ta
    cdef char transb = <char>tb
    # BLAS rejects leading dimensions below 1 even when a size is 0.
    if lda < 1:
        lda = 1
    if ldb < 1:
        ldb = 1
    if ldc < 1:
        ldc = 1
    if floating is float:
        sgemm(&transb, &transa, &n, &m, &k, &alpha, <float*>B, &ldb,
              <float*>A, &lda, &beta, C, &ldc)
    else:
        dgemm(&transb, &transa, &n, &m, &k, &alpha, <double*>B, &ldb,
              <double*>A, &lda, &beta, C, &ldc)


# ---------------------------------------------------------------------------
# Python entry points (checked), for tests and for users who want a
# row-major BLAS call without NumPy's temporaries.


def gemm(A, B, C, bint trans_a=False, bint trans_b=False,
         double alpha=1.0, double beta=0.0):
    """C := alpha * op(A) @ op(B) + beta * C, in place.

    Parameters
    ----------
    A : ndarray of shape (m, k), or (k, m) if ``trans_a``
    B : ndarray of shape (k, n), or (n, k) if ``trans_b``
    C : ndarray of shape (m, n), written in place
        All three C-contiguous, of one floating dtype (float32 or float64).

    Returns
    -------
    C : ndarray of shape (m, n)
    """
    check_float_array(A, "A", 2, False)
    check_float_array(B, "B", 2, False)
    check_float_array(C, "C", 2, True)
    check_same_dtype(A, B, "A", "B")
    check_same_dtype(A, C, "A", "C")
    cdef Py_ssize_t m = A.shape[1] if trans_a else A.shape[0]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    cdef Py_ssize_t kb = B.shape[1] if trans_b else B.shape[0]
    cdef Py_ssize_t n = B.shape[0] if trans_b else B.shape[1]
    if k != kb:
        raise ValueError(
            f"gemm: inner dimensions differ: op(A) is ({m}, {k}), op(B) is ({kb}, {n})")
    if C.shape[0] != m or C.shape[1] != n:
        raise ValueError(f"gemm: C has shape {C.shape}, expected ({m}, {n})")
    check_blas_int(m, "gemm rows")
    check_blas_int(n, "gemm columns")
    check_blas_int(k, "gemm inner dimension")
    check_blas_int(A.shape[1], "gemm row length of A")
    check_blas_int(B.shape[1], "gemm row length of B")
    cdef BLAS_Trans ta = Trans if trans_a else NoTrans
    cdef BLAS_Trans tb = Trans if trans_b else NoTrans
    cdef blas_int lda = A.shape[1], ldb = B.shape[1], ldc = C.shape[1]
    cdef blas_int bm = m, bn = n, bk = k
    cdef void* pA = data_ptr(A)
    cdef void* pB = data_ptr(B)
    cdef void* pC = data_ptr(C)
    if m == 0 or n == 0:
        return C
    if is_float32(A):
        with nogil:
            _gemm(ta, tb, bm, bn, bk, <float>alpha, <float*>pA, lda, <float*>pB, ldb,
                  <float>beta, <float*>pC, ldc)
    else:
        with nogil:
            _gemm(ta, tb, bm, bn, bk, <double>alpha, <double*>pA, lda, <double*>pB, ldb,
                  <double>beta, <double*>pC, ldc)
    return C


def gemv(A, x, y, bint trans_a=False, double alpha=1.0, double beta=0.0):
    """y := alpha * op(A) @ x + beta * y, in place; A is (m, n) in C order.

    Returns
    -------
    y : ndarray of shape (m,), or (n,) if ``trans_a``
    """
    check_float_array(A, "A", 2, False)
    check_float_array(x, "x", 1, False)
    check_float_array(y, "y", 1, True)
    check_same_dtype(A, x, "A", "x")
    check_same_dtype(A, y, "A", "y")
    cdef Py_ssize_t m = A.shape[0], n = A.shape[1]
    cdef Py_ssize_t n_in = m if trans_a else n
    cdef Py_ssize_t n_out = n if trans_a else m
    if x.shape[0] != n_in or y.shape[0] != n_out:
        raise ValueError(
            f"gemv: A{' transposed' if trans_a else ''} has shape {A.shape}: "
            f"x must have {n_in} elements (has {x.shape[0]}), "
            f"y must have {n_out} (has {y.shape[0]})")
    check_blas_int(m, "gemv rows")
    check_blas_int(n, "gemv columns")
    cdef BLAS_Trans ta = Trans if trans_a else NoTrans
    cdef blas_int bm = m, bn = n
    cdef void* pA = data_ptr(A)
    cdef void* px = data_ptr(x)
    cdef void* py = data_ptr(y)
    if n_out == 0:
        return y
    if is_float32(A):
        with nogil:
            _gemv(ta, bm, bn, <float>alpha, <float*>pA, bn, <float*>px, 1,
                  <float>beta, <float*>py, 1)
    else:
        with nogil:
            _gemv(ta, bm, bn, <double>alpha, <double*>pA, bn, <double*>px, 1,
                  <double>beta, <double*>py, 1)
    return y


def axpy(double alpha, x, y):
    """y := alpha * x + y, in place, for 1-D arrays x and y."""
    _check_vector_pair(x, y, "axpy")
    cdef blas_int n = x.shape[0]
    cdef void* px = data_ptr(x)
    cdef void* py = data_ptr(y)
    if n == 0:
        return y
    if is_float32(x):
        with nogil:
            _axpy(n, <float>alpha, <float*>px, 1, <float*>py, 1)
    else:
        with nogil:
            _axpy(n, <double>alpha, <double*>px, 1, <double*>py, 1)
    return y


def scal(double alpha, x):
    """x := alpha * x, in place, for a 1-D array x."""
    check_float_array(x, "x", 1, True)
    check_blas_int(x.shape[0], "scal length")
    cdef blas_int n = x.shape[0]
    cdef void* px = data_ptr(x)
    if n == 0:
        return x
    if is_float32(x):
        with nogil:
            _scal(n, <float>alpha, <float*>px, 1)
    else:
        with nogil:
            _scal(n, <double>alpha, <double*>px, 1)
    return x


def dot(x, y):
    """Return the inner product x . y of two 1-D arrays as a Python float."""
    _check_vector_pair(x, y, "dot", False)
    cdef blas_int n = x.shape[0]
    cdef void* px = data_ptr(x)
    cdef void* py = data_ptr(y)
    cdef double result = 0.0
    if n == 0:
        return 0.0
    if is_float32(x):
        with nogil:
            result = _dot(n, <float*>px, 1, <float*>py, 1)
    else:
        with nogil:
            result = _dot(n, <double*>px, 1, <double*>py, 1)
    return result


def nrm2(x):
    """Return the Euclidean norm of a 1-D array as a Python float."""
    check_float_array(x, "x", 1, False)
    check_blas_int(x.shape[0], "nrm2 length")
    cdef blas_int n = x.shape[0]
    cdef void* px = data_ptr(x)
    cdef double result = 0.0
    if n == 0:
        return 0.0
    if is_float32(x):
        with nogil:
            result = _nrm2(n, <float*>px, 1)
    else:
        with nogil:
            result = _nrm2(n, <double*>px, 1)
    return result


def _check_vector_pair(x, y, str op, bint y_written=True):
    check_float_array(x, "x", 1, False)
    check_float_array(y, "y", 1, y_written)
    check_same_dtype(x, y, "x", "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{op}: x has {x.shape[0]} elements, y has {y.shape[0]}")
    check_blas_int(x.shape[0], op + " length")
