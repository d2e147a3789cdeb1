from cython cimport floating

cdef void dropout_forward(Py_ssize_t n, double rate, const floating* X,
                          const floating* U, floating* mask, floating* Y) noexcept nogil

cdef void dropout_backward(Py_ssize_t n, const floating* mask, const floating* dY,
                           floating* dX) noexcept nogil
