"""Activation functions and their derivatives.

Each activation is applied element by element, except softmax, which
works on each row of a (rows, cols) array. Forward kernels may run in
place (``X`` is ``Y``), and so may backward kernels (``dY`` is ``dX``).
``param`` is the negative slope of leaky ReLU and the alpha of ELU.

Backward kernels read the saved output ``Y`` where the derivative is a
function of it (ReLU, sigmoid, tanh, softmax) and the saved input ``X``
otherwise (leaky ReLU, GELU, ELU); ``backward_needs_input`` says which,
so that layers keep only what they need.
"""
from cython cimport floating

from cdl._kernels._checks cimport (
    check_float_array, check_same_dtype, check_same_shape, data_ptr, is_float32)
from cdl._kernels._math cimport f_exp, f_expm1, f_tanh, f_erf, f_sigmoid

#: Activation names accepted by the layers, mapped to kernel codes.
CODES = {
    "linear": ACT_LINEAR,
    "relu": ACT_RELU,
    "leaky_relu": ACT_LEAKY_RELU,
    "sigmoid": ACT_SIGMOID,
    "tanh": ACT_TANH,
    "gelu": ACT_GELU,
    "elu": ACT_ELU,
    "softmax": ACT_SOFTMAX,
}

cdef double SQRT1_2 = 0.70710678118654752440      # 1 / sqrt(2)
cdef double INV_SQRT_2PI = 0.39894228040143267794  # 1 / sqrt(2 pi)


cdef bint backward_needs_input(int act) noexcept nogil:
    return act == ACT_LEAKY_RELU or act == ACT_GELU or act == ACT_ELU


cdef bint act_rowwise(int act) noexcept nogil:
    return act == ACT_SOFTMAX


cdef void _softmax_rows(Py_ssize_t rows, Py_ssize_t cols,
                        const floating* X, floating* Y) noexcept nogil:
    """Y[i] = exp(X[i] - max X[i]) / sum(exp(X[i] - max X[i]))"""
    cdef Py_ssize_t i, j
    cdef floating row_max, e, x
    cdef double total
    for i in range(rows):
        row_max = X[i * cols]
        for j in range(1, cols):
            x = X[i * cols + j]
            row_max = x if x > row_max else row_max
        total = 0.0
        for j in range(cols):
            e = f_exp(X[i * cols + j] - row_max)
            Y[i * cols + j] = e
            total += e
        for j in range(cols):
            Y[i * cols + j] = <floating>(Y[i * cols + j] / total)


cdef void act_forward(int act, double param, Py_ssize_t rows, Py_ssize_t cols,
                      const floating* X, floating* Y) noexcept nogil:
    """Y = f(X) for the activation ``act``."""
    cdef Py_ssize_t i, n = rows * cols
    cdef floating x, slope = <floating>param
    if act == ACT_SOFTMAX:
        _softmax_rows(rows, cols, X, Y)
    # Operands are loaded before each select so that the loops compile
    # without branches (vectorised, and blind to the data's sign pattern).
    elif act == ACT_RELU:
        # Written so that NaN propagates (NaN <= 0 is false), as in PyTorch.
        for i in range(n):
            x = X[i]
            Y[i] = 0 if x <= 0 else x
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            x = X[i]
            Y[i] = x if x > 0 else x * slope
    elif act == ACT_SIGMOID:
        for i in range(n):
            Y[i] = f_sigmoid(X[i])
    elif act == ACT_TANH:
        for i in range(n):
            Y[i] = f_tanh(X[i])
    elif act == ACT_GELU:
        for i in range(n):
            x = X[i]
            Y[i] = <floating>(0.5 * x * (1 + f_erf(<floating>(x * SQRT1_2))))
    elif act == ACT_ELU:
        for i in range(n):
            Y[i] = X[i] if X[i] > 0 else slope * f_expm1(X[i])
    elif X != Y:
        for i in range(n):
            Y[i] = X[i]


cdef void _softmax_backward_rows(Py_ssize_t rows, Py_ssize_t cols, const floating* Y,
                                 const floating* dY, floating* dX) noexcept nogil:
    """dX[i] = Y[i] * (dY[i] - <dY[i], Y[i]>)"""
    cdef Py_ssize_t i, j
    cdef double inner
    for i in range(rows):
        inner = 0.0
        for j in range(cols):
            inner += dY[i * cols + j] * Y[i * cols + j]
        for j in range(cols):
            dX[i * cols + j] = <floating>(Y[i * cols + j] * (dY[i * cols + j] - inner))


cdef void act_backward(int act, double param, Py_ssize_t rows, Py_ssize_t cols,
                       const floating* X, const floating* Y,
                       const floating* dY, floating* dX) noexcept nogil:
    """dX = f'(.) * dY for the activation ``act``."""
    cdef Py_ssize_t i, n = rows * cols
    cdef floating x, y, d, slope = <floating>param
    if act == ACT_SOFTMAX:
        _softmax_backward_rows(rows, cols, Y, dY, dX)
    elif act == ACT_RELU:
        for i in range(n):
            y = Y[i]
            d = dY[i]
            dX[i] = 0 if y <= 0 else d
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            x = X[i]
            d = dY[i]
            dX[i] = d if x > 0 else d * slope
    elif act == ACT_SIGMOID:
        for i in range(n):
            y = Y[i]
            dX[i] = dY[i] * y * (1 - y)
    elif act == ACT_TANH:
        for i in range(n):
            y = Y[i]
            dX[i] = dY[i] * (1 - y * y)
    elif act == ACT_GELU:
        # d/dx [x Phi(x)] = Phi(x) + x phi(x)
        for i in range(n):
            x = X[i]
            dX[i] = <floating>(dY[i] * (0.5 * (1 + f_erf(<floating>(x * SQRT1_2)))
                                        + x * INV_SQRT_2PI * f_exp(<floating>(-0.5 * x * x))))
    elif act == ACT_ELU:
        for i in range(n):
            dX[i] = dY[i] if X[i] > 0 else dY[i] * slope * f_exp(X[i])
    elif dX != dY:
        for i in range(n):
            dX[i] = dY[i]


def _rows_cols(X, int act):
    """Rows and row length seen by the kernel: softmax works on the last axis."""
    if act_rowwise(act):
        if X.ndim == 0:
            raise ValueError("softmax needs at least one axis")
        cols = X.shape[X.ndim - 1]
        return (X.size // cols if cols else 0), cols
    return 1, X.size


def _check_code(int act):
    if act < ACT_LINEAR or act > ACT_LAST:
        raise ValueError(f"unknown activation code {act}")


def forward(int act, X, Y, double param=0.0):
    """Y = f(X), in place in ``Y`` (which may be ``X``).

    Parameters
    ----------
    act : int
        Activation code, one of ``CODES.values()``.
    X, Y : ndarray, same shape and floating dtype, C-contiguous
    param : float
        Negative slope (leaky ReLU) or alpha (ELU); ignored otherwise.
    """
    _check_code(act)
    check_float_array(X, "X", -1, False)
    check_float_array(Y, "Y", -1, True)
    check_same_dtype(X, Y, "X", "Y")
    check_same_shape(X, Y, "X", "Y")
    rows, cols = _rows_cols(X, act)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* px = data_ptr(X)
    cdef void* py = data_ptr(Y)
    if is_float32(X):
        with nogil:
            act_forward(act, param, r, c, <float*>px, <float*>py)
    else:
        with nogil:
            act_forward(act, param, r, c, <double*>px, <double*>py)
    return Y


def backward(int act, X, Y, dY, dX, double param=0.0):
    """dX = f'(.) * dY, in place in ``dX`` (which may be ``dY``).

    ``X`` is the forward input and ``Y`` its output; pass None for the one
    the activation does not need (see ``needs_input``).
    """
    _check_code(act)
    cdef bint need_x = backward_needs_input(act)
    saved = X if need_x else Y
    saved_name = "X" if need_x else "Y"
    if saved is None:
        raise ValueError(f"this activation's backward needs {saved_name}, got None")
    check_float_array(saved, saved_name, -1, False)
    check_float_array(dY, "dY", -1, False)
    check_float_array(dX, "dX", -1, True)
    check_same_dtype(saved, dY, saved_name, "dY")
    check_same_dtype(saved, dX, saved_name, "dX")
    check_same_shape(saved, dY, saved_name, "dY")
    check_same_shape(saved, dX, saved_name, "dX")
    rows, cols = _rows_cols(dY, act)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* ps = data_ptr(saved)
    cdef void* pdy = data_ptr(dY)
    cdef void* pdx = data_ptr(dX)
    if is_float32(dY):
        with nogil:
            act_backward(act, param, r, c, <float*>ps, <float*>ps, <float*>pdy, <float*>pdx)
    else:
        with nogil:
            act_backward(act, param, r, c, <double*>ps, <double*>ps, <double*>pdy, <double*>pdx)
    return dX


def needs_input(int act):
    """True if the backward of ``act`` reads the forward input, False if the output."""
    _check_code(act)
    return backward_needs_input(act)
