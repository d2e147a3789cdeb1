from cython cimport floating

cdef void dense_forward(Py_ssize_t n, Py_ssize_t d_in, Py_ssize_t d_out,
                        const floating* X, const floating* W, const floating* b,
                        int act, double param,
                        floating* Z, floating* Y) noexcept nogil

cdef void dense_backward(Py_ssize_t n, Py_ssize_t d_in, Py_ssize_t d_out,
                         const floating* X, const floating* W,
                         int act, double param, const floating* Z, const floating* Y,
                         const floating* dY, floating* dZ,
                         floating* dW, floating* db, floating* dX) noexcept nogil

cdef void column_sums(Py_ssize_t rows, Py_ssize_t cols, const floating* A,
                      floating* out) noexcept nogil
