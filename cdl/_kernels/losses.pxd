from cython cimport floating
from libc.stdint cimport int64_t

cpdef enum RegressionLoss:
    LOSS_MSE = 0
    LOSS_MAE = 1
    LOSS_HUBER = 2

cdef inline double row_weight(const floating* W, Py_ssize_t row) noexcept nogil:
    """Weight of sample ``row``: W[row], or 1 without weights (W NULL)."""
    return 1.0 if W == NULL else <double>W[row]

cdef double regression_forward(int kind, double delta, Py_ssize_t rows, Py_ssize_t cols,
                               const floating* P, const floating* T,
                               const floating* W) noexcept nogil

cdef void regression_backward(int kind, double delta, Py_ssize_t rows, Py_ssize_t cols,
                              const floating* P, const floating* T, const floating* W,
                              floating* dP) noexcept nogil

cdef double ce_labels_forward(Py_ssize_t n, Py_ssize_t c, const floating* Z,
                              const int64_t* labels, const floating* W,
                              floating* P) noexcept nogil

cdef void ce_labels_backward(Py_ssize_t n, Py_ssize_t c, const floating* P,
                             const int64_t* labels, const floating* W,
                             floating* dZ) noexcept nogil

cdef double bce_forward(Py_ssize_t rows, Py_ssize_t cols, const floating* Z,
                        const floating* T, const floating* W) noexcept nogil

cdef void bce_backward(Py_ssize_t rows, Py_ssize_t cols, const floating* Z,
                       const floating* T, const floating* W, floating* dZ) noexcept nogil

cdef Py_ssize_t first_bad_label(Py_ssize_t n, Py_ssize_t c,
                                const int64_t* labels) noexcept nogil

# Class weights (PyTorch's ``weight=``): sum_i CW[labels[i]], or n if CW is NULL.
cdef double class_weight_total(Py_ssize_t n, const int64_t* labels,
                               const floating* CW) noexcept nogil

cdef double ce_labels_cw_forward(Py_ssize_t n, Py_ssize_t c, const floating* Z,
                                 const int64_t* labels, const floating* CW,
                                 double smoothing, const floating* W,
                                 floating* P) noexcept nogil

cdef void ce_labels_cw_backward(Py_ssize_t n, Py_ssize_t c, const floating* P,
                                const int64_t* labels, const floating* CW,
                                double smoothing, const floating* W,
                                floating* dZ) noexcept nogil
