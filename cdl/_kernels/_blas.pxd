# Row-major BLAS seam over scipy.linalg.cython_blas.
#
# Every routine takes C-ordered (row-major) operands. BLAS itself is
# column-major; the operand swap that bridges the two lives in _blas.pyx
# and nowhere else. Integers are passed as ``blas_int`` (BLAS's 32-bit
# ``int``); callers check sizes with ``check_blas_int`` before calling.
from cython cimport floating

ctypedef int blas_int

# The largest blas_int: the one definition of BLAS's size limit, for the
# kernels and (as cdl._kernels._blas.BLAS_INT_MAX) for cdl._validation.
cpdef enum:
    BLAS_INT_MAX = 2147483647

cpdef enum BLAS_Trans:
    NoTrans = 110  # ord('n')
    Trans = 116    # ord('t')

cdef floating _dot(blas_int n, const floating* x, blas_int incx,
                   const floating* y, blas_int incy) noexcept nogil

cdef floating _nrm2(blas_int n, const floating* x, blas_int incx) noexcept nogil

cdef void _axpy(blas_int n, floating alpha, const floating* x, blas_int incx,
                floating* y, blas_int incy) noexcept nogil

cdef void _scal(blas_int n, floating alpha, floating* x, blas_int incx) noexcept nogil

cdef void _gemv(BLAS_Trans ta, blas_int m, blas_int n, floating alpha,
                const floating* A, blas_int lda, const floating* x, blas_int incx,
                floating beta, floating* y, blas_int incy) noexcept nogil

cdef void _gemm(BLAS_Trans ta, BLAS_Trans tb, blas_int m, blas_int n, blas_int k,
                floating alpha, const floating* A, blas_int lda,
                const floating* B, blas_int ldb,
                floating beta, floating* C, blas_int ldc) noexcept nogil

cdef int check_blas_int(Py_ssize_t value, str what) except -1

# Whether the BLAS's thread count can be set (GIL held), and a scope
# (nested scopes counted) holding it to one thread while a kernel calls it
# from several OpenMP threads at once.
cdef bint blas_threads_settable() noexcept
cdef void blas_single_begin() noexcept nogil
cdef void blas_single_end() noexcept nogil
