from cython cimport floating

cpdef enum Activation:
    ACT_LINEAR = 0
    ACT_RELU = 1
    ACT_LEAKY_RELU = 2
    ACT_SIGMOID = 3
    ACT_TANH = 4
    ACT_GELU = 5
    ACT_ELU = 6
    ACT_SOFTMAX = 7
    ACT_SELU = 8
    ACT_SILU = 9
    ACT_MISH = 10
    ACT_SOFTPLUS = 11
    ACT_SOFTSIGN = 12
    ACT_HARD_SIGMOID = 13
    ACT_HARD_SWISH = 14
    ACT_RELU6 = 15
    ACT_LOG_SOFTMAX = 16
    # The highest code: entry points accept ACT_LINEAR .. ACT_LAST.
    ACT_LAST = 16

cdef bint backward_needs_input(int act) noexcept nogil

# True for activations computed per row of the last axis (softmax,
# log-softmax), False for element-by-element ones.
cdef bint act_rowwise(int act) noexcept nogil

cdef void act_forward(int act, double param, Py_ssize_t rows, Py_ssize_t cols,
                      const floating* X, floating* Y) noexcept nogil

cdef void act_backward(int act, double param, Py_ssize_t rows, Py_ssize_t cols,
                       const floating* X, const floating* Y,
                       const floating* dY, floating* dX) noexcept nogil
