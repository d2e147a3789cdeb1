# Rendered from activations.pyx.tp by setup.py: edit the template, not this file.
"""Activation functions and their derivatives.

Each activation is applied element by element, except softmax and
log-softmax, which work on each row of a (rows, cols) array. Forward
kernels may run in place (``X`` is ``Y``), and so may backward kernels
(``dY`` is ``dX``). ``param`` is the negative slope of leaky ReLU, the
alpha of ELU and the beta of softplus (whose threshold is then
``SOFTPLUS_THRESHOLD``; the entry points ``softplus_forward`` and
``softplus_backward`` take any threshold); other activations ignore it.

Backward kernels read the saved output ``Y`` where the derivative is a
function of it (ReLU, sigmoid, tanh, softmax, ReLU6, log-softmax) and the
saved input ``X`` otherwise (leaky ReLU, GELU, ELU, SELU, SiLU, Mish,
softplus, softsign, hard sigmoid, hard swish); ``backward_needs_input``
says which, so that layers keep only what they need.

Definitions and conventions at the kinks follow PyTorch; every function
is computed without overflow for large |x|, and a NaN input gives a NaN
output. The kernels from SELU on compute float32 arrays in float32
arithmetic (constants are typed locals: a bare literal is a C double),
except that sums over a row are accumulated in double, as for softmax; the
older sigmoid and GELU still round through double in places.

``prelu_forward``/``prelu_backward`` implement PReLU, whose slopes are a
weight rather than a fixed parameter.
"""
from cython cimport floating

from cdl._kernels._checks cimport (
    check_float_array, check_same_dtype, check_same_shape, data_ptr, is_float32)
from cdl._kernels._math cimport (
    f_exp, f_expm1, f_tanh, f_erf, f_sigmoid, f_abs, f_log, f_log1p, f_log1p_exp)

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
    "selu": ACT_SELU,
    "silu": ACT_SILU,
    "swish": ACT_SILU,
    "mish": ACT_MISH,
    "softplus": ACT_SOFTPLUS,
    "softsign": ACT_SOFTSIGN,
    "hard_sigmoid": ACT_HARD_SIGMOID,
    "hard_swish": ACT_HARD_SWISH,
    "relu6": ACT_RELU6,
    "log_softmax": ACT_LOG_SOFTMAX,
}

#: Names in ``CODES`` that are other names of an activation listed there.
ALIASES = {"swish": "silu"}

#: SELU's constants (Klambauer et al. 2017), as in PyTorch.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

#: Threshold of softplus under ``act_forward``: linear where beta * x > 20
#: (PyTorch's default).
SOFTPLUS_THRESHOLD = 20.0

cdef double SQRT1_2 = 0.70710678118654752440      # 1 / sqrt(2)
cdef double INV_SQRT_2PI = 0.39894228040143267794  # 1 / sqrt(2 pi)


cdef double _SELU_ALPHA = SELU_ALPHA
cdef double _SELU_SCALE = SELU_SCALE
cdef double _SOFTPLUS_THRESHOLD = SOFTPLUS_THRESHOLD
# 3/2, set when the module loads: a value the C compiler cannot see, so that
# it does not split the hard swish derivative's loop on it (see there).
cdef double _THREE_HALVES = 1.5


cdef bint backward_needs_input(int act) noexcept nogil:
    return (act == ACT_LEAKY_RELU or act == ACT_GELU or act == ACT_ELU or act == ACT_SELU
            or act == ACT_SILU or act == ACT_MISH or act == ACT_SOFTPLUS
            or act == ACT_SOFTSIGN or act == ACT_HARD_SIGMOID or act == ACT_HARD_SWISH)


cdef bint act_rowwise(int act) noexcept nogil:
    return act == ACT_SOFTMAX or act == ACT_LOG_SOFTMAX


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


cdef void _log_softmax_rows(Py_ssize_t rows, Py_ssize_t cols,
                            const floating* X, floating* Y) noexcept nogil:
    """Y[i] = (X[i] - max X[i]) - log(sum(exp(X[i] - max X[i])))"""
    cdef Py_ssize_t i, j
    cdef floating row_max, x, log_total
    cdef double total
    for i in range(rows):
        row_max = X[i * cols]
        for j in range(1, cols):
            x = X[i * cols + j]
            row_max = x if x > row_max else row_max
        total = 0.0
        for j in range(cols):
            total += f_exp(X[i * cols + j] - row_max)
        log_total = f_log(<floating>total)
        for j in range(cols):
            Y[i * cols + j] = (X[i * cols + j] - row_max) - log_total


cdef void _softplus_fwd(Py_ssize_t n, double beta, double threshold,
                           const floating* X, floating* Y) noexcept nogil:
    """Y = log(1 + exp(beta X)) / beta, or X where beta X > threshold (PyTorch)."""
    cdef Py_ssize_t i
    cdef floating x, z, sp, b = <floating>beta, t = <floating>threshold
    for i in range(n):
        x = X[i]
        z = x * b
        sp = f_log1p_exp(z) / b
        Y[i] = x if z > t else sp


cdef void _elementwise_forward(int act, Py_ssize_t n, const floating* X,
                               floating* Y) noexcept nogil:
    """The parameter-free activations added after softmax (SELU onwards)."""
    cdef Py_ssize_t i
    cdef floating x, e, c, s, num, den
    # Constants as typed locals: a bare literal is a C double and would
    # promote float32 arithmetic to float64.
    cdef floating zero = 0, one = 1, two = 2, three = 3, six = 6
    cdef floating scale = <floating>_SELU_SCALE
    cdef floating neg = <floating>(_SELU_ALPHA * _SELU_SCALE)
    # Every operand of a select is computed into a local first (no
    # conditional loads or calls), so that the loops compile without branches.
    if act == ACT_SELU:
        for i in range(n):
            x = X[i]
            e = f_expm1(x)
            Y[i] = x * scale if x > zero else e * neg
    elif act == ACT_SILU:
        # x * sigmoid(x), the sigmoid from exp(-|x|), which cannot overflow.
        for i in range(n):
            x = X[i]
            e = f_exp(-f_abs(x))
            s = (one if x >= zero else e) / (one + e)
            Y[i] = x * s
    elif act == ACT_MISH:
        # x * tanh(softplus(x)); with e = exp(-|x|), tanh(log(1 + exp(x))) is
        # e (e + 2) / (e (e + 2) + 2) for x <= 0 and (1 + 2e) / (1 + 2e + 2e^2)
        # for x > 0: no overflow, no cancellation.
        for i in range(n):
            x = X[i]
            e = f_exp(-f_abs(x))
            num = one + two * e if x > zero else e * (e + two)
            den = num + (two * e * e if x > zero else two)
            Y[i] = x * (num / den)
    elif act == ACT_SOFTSIGN:
        for i in range(n):
            x = X[i]
            Y[i] = x / (one + f_abs(x))
    elif act == ACT_HARD_SIGMOID:
        # min(max(x + 3, 0), 6) / 6, clamped after the division (the same
        # numbers, and a form GCC vectorises); NaN fails both tests and stays NaN.
        for i in range(n):
            c = (X[i] + three) / six
            c = zero if c < zero else c
            Y[i] = one if c > one else c
    elif act == ACT_HARD_SWISH:
        for i in range(n):
            x = X[i]
            c = x + three
            c = zero if c < zero else c
            c = six if c > six else c
            Y[i] = x * c / six
    elif act == ACT_RELU6:
        for i in range(n):
            x = X[i]
            x = zero if x <= zero else x
            Y[i] = six if x >= six else x


cdef void act_forward(int act, double param, Py_ssize_t rows, Py_ssize_t cols,
                      const floating* X, floating* Y) noexcept nogil:
    """Y = f(X) for the activation ``act``."""
    cdef Py_ssize_t i, n = rows * cols
    cdef floating x, slope = <floating>param
    if act == ACT_SOFTMAX:
        _softmax_rows(rows, cols, X, Y)
    elif act == ACT_LOG_SOFTMAX:
        _log_softmax_rows(rows, cols, X, Y)
    elif act == ACT_SOFTPLUS:
        _softplus_fwd(n, param, _SOFTPLUS_THRESHOLD, X, Y)
    elif act >= ACT_SELU and act <= ACT_LAST:
        _elementwise_forward(act, n, X, Y)
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


cdef void _log_softmax_backward_rows(Py_ssize_t rows, Py_ssize_t cols, const floating* Y,
                                     const floating* dY, floating* dX) noexcept nogil:
    """dX[i] = dY[i] - exp(Y[i]) * sum(dY[i])"""
    cdef Py_ssize_t i, j
    cdef double acc
    cdef floating total
    for i in range(rows):
        acc = 0.0
        for j in range(cols):
            acc += dY[i * cols + j]
        total = <floating>acc
        for j in range(cols):
            dX[i * cols + j] = dY[i * cols + j] - f_exp(Y[i * cols + j]) * total


cdef void _softplus_bwd(Py_ssize_t n, double beta, double threshold, const floating* X,
                        const floating* dY, floating* dX) noexcept nogil:
    """dX = dY * sigmoid(beta X), or dY where beta X > threshold."""
    cdef Py_ssize_t i
    cdef floating z, e, s, d, zero = 0, one = 1
    cdef floating b = <floating>beta, t = <floating>threshold
    for i in range(n):
        z = X[i] * b
        d = dY[i]
        e = f_exp(-f_abs(z))
        s = (one if z >= zero else e) / (one + e)
        dX[i] = d if z > t else d * s


cdef void _elementwise_backward(int act, Py_ssize_t n, const floating* X, const floating* Y,
                                const floating* dY, floating* dX) noexcept nogil:
    """Derivatives of the activations of ``_elementwise_forward``."""
    cdef Py_ssize_t i
    cdef floating x, y, d, e, s, sc, num, den, g, r, a
    cdef floating zero = 0, one = 1, two = 2, three = 3, four = 4, six = 6, half = 0.5
    cdef floating three_halves = <floating>_THREE_HALVES, sixth = <floating>(1.0 / 6.0)
    cdef floating scale = <floating>_SELU_SCALE
    cdef floating neg = <floating>(_SELU_ALPHA * _SELU_SCALE)
    if act == ACT_SELU:
        for i in range(n):
            x = X[i]
            d = dY[i]
            e = f_exp(x)
            dX[i] = d * scale if x > zero else d * neg * e
    elif act == ACT_SILU:
        # d/dx [x s(x)] = s (1 + x (1 - s)), with 1 - s computed directly.
        for i in range(n):
            x = X[i]
            d = dY[i]
            e = f_exp(-f_abs(x))
            s = (one if x >= zero else e) / (one + e)
            sc = (e if x >= zero else one) / (one + e)
            dX[i] = d * (s * (one + x * sc))
    elif act == ACT_MISH:
        # With t = num / den = tanh(softplus(x)) as in the forward pass,
        # d/dx [x t] = t + x (1 - t^2) sigmoid(x), and
        # (1 - t^2) sigmoid(x) = 4 (1 + e) g / den^2, g = e^2 (x > 0) or e.
        for i in range(n):
            x = X[i]
            d = dY[i]
            e = f_exp(-f_abs(x))
            num = one + two * e if x > zero else e * (e + two)
            den = num + (two * e * e if x > zero else two)
            g = e * e if x > zero else e
            dX[i] = d * (num / den + x * (four * (one + e) * g / (den * den)))
    elif act == ACT_SOFTSIGN:
        for i in range(n):
            r = one / (one + f_abs(X[i]))
            dX[i] = dY[i] * (r * r)
    # The piecewise-linear derivatives select a slope from constants and
    # unconditionally computed values, then multiply: arithmetic inside a
    # select would keep the loop branchy (GCC does not speculate operations
    # that may trap). A NaN upstream gradient therefore stays NaN even where
    # the slope is 0.
    elif act == ACT_HARD_SIGMOID:
        # 1/6 strictly inside (-3, 3), else 0 (as PyTorch, NaN gets 0 too).
        for i in range(n):
            x = X[i]
            a = sixth if f_abs(x) < three else zero
            dX[i] = dY[i] * a
    elif act == ACT_HARD_SWISH:
        # 0 up to -3, x / 3 + 1/2 on (-3, 3), 1 from 3 on and for NaN
        # (PyTorch's conventions): x is first replaced by -3/2 or 3/2 outside
        # (-3, 3), where x / 3 + 1/2 is then exactly 0 or 1. (Were 3/2 a
        # literal, GCC would fold that path into a branch of its own.)
        for i in range(n):
            x = X[i]
            x = x if x < three else three_halves
            x = -three_halves if x <= -three else x
            dX[i] = dY[i] * (x / three + half)
    elif act == ACT_RELU6:
        # From the output: 1 strictly inside (0, 6), 0 at and beyond the kinks.
        for i in range(n):
            y = Y[i]
            d = dY[i]
            dX[i] = zero if (y <= zero) | (y >= six) else d


cdef void act_backward(int act, double param, Py_ssize_t rows, Py_ssize_t cols,
                       const floating* X, const floating* Y,
                       const floating* dY, floating* dX) noexcept nogil:
    """dX = f'(.) * dY for the activation ``act``."""
    cdef Py_ssize_t i, n = rows * cols
    cdef floating x, y, d, slope = <floating>param
    if act == ACT_SOFTMAX:
        _softmax_backward_rows(rows, cols, Y, dY, dX)
    elif act == ACT_LOG_SOFTMAX:
        _log_softmax_backward_rows(rows, cols, Y, dY, dX)
    elif act == ACT_SOFTPLUS:
        _softplus_bwd(n, param, _SOFTPLUS_THRESHOLD, X, dY, dX)
    elif act >= ACT_SELU and act <= ACT_LAST:
        _elementwise_backward(act, n, X, Y, dY, dX)
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
    """Rows and row length seen by the kernel: softmax and log-softmax work
    on the last axis."""
    if act_rowwise(act):
        if X.ndim == 0:
            raise ValueError("softmax and log_softmax need at least one axis")
        cols = X.shape[X.ndim - 1]
        return (X.size // cols if cols else 0), cols
    return 1, X.size


def _check_code(int act):
    if act < ACT_LINEAR or act > ACT_LAST:
        raise ValueError(f"unknown activation code {act}")


cdef double _param(int act, param) except? -1.0:
    """``param`` as a double, None meaning the default: 1 (beta) for softplus, else 0."""
    if param is None:
        return 1.0 if act == ACT_SOFTPLUS else 0.0
    cdef double value = param
    if act == ACT_SOFTPLUS:
        _check_beta(value)
    return value


cdef int _check_beta(double beta) except -1:
    if not beta > 0:
        raise ValueError(f"softplus needs beta > 0, got {beta}")
    return 0


def forward(int act, X, Y, param=None):
    """Y = f(X), in place in ``Y`` (which may be ``X``).

    Parameters
    ----------
    act : int
        Activation code, one of ``CODES.values()``.
    X, Y : ndarray, same shape and floating dtype, C-contiguous
    param : float, optional
        Negative slope (leaky ReLU), alpha (ELU) or beta (softplus, > 0);
        ignored otherwise. Default: 1 for softplus, else 0.
    """
    _check_code(act)
    cdef double p = _param(act, param)
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
            act_forward(act, p, r, c, <float*>px, <float*>py)
    else:
        with nogil:
            act_forward(act, p, r, c, <double*>px, <double*>py)
    return Y


def backward(int act, X, Y, dY, dX, param=None):
    """dX = f'(.) * dY, in place in ``dX`` (which may be ``dY``).

    ``X`` is the forward input and ``Y`` its output; pass None for the one
    the activation does not need (see ``needs_input``). ``param`` as in
    ``forward``.
    """
    _check_code(act)
    cdef double p = _param(act, param)
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
            act_backward(act, p, r, c, <float*>ps, <float*>ps, <float*>pdy, <float*>pdx)
    else:
        with nogil:
            act_backward(act, p, r, c, <double*>ps, <double*>ps, <double*>pdy, <double*>pdx)
    return dX


def needs_input(int act):
    """True if the backward of ``act`` reads the forward input, False if the output."""
    _check_code(act)
    return backward_needs_input(act)


def softplus_forward(X, Y, double beta=1.0, double threshold=SOFTPLUS_THRESHOLD):
    """Y = log(1 + exp(beta X)) / beta, or X where beta X > threshold.

    PyTorch's ``softplus``; in place in ``Y`` (which may be ``X``).

    Parameters
    ----------
    X, Y : ndarray, same shape and floating dtype, C-contiguous
    beta : float > 0
    threshold : float
    """
    _check_beta(beta)
    check_float_array(X, "X", -1, False)
    check_float_array(Y, "Y", -1, True)
    check_same_dtype(X, Y, "X", "Y")
    check_same_shape(X, Y, "X", "Y")
    cdef Py_ssize_t n = X.size
    cdef void* px = data_ptr(X)
    cdef void* py = data_ptr(Y)
    if is_float32(X):
        with nogil:
            _softplus_fwd(n, beta, threshold, <float*>px, <float*>py)
    else:
        with nogil:
            _softplus_fwd(n, beta, threshold, <double*>px, <double*>py)
    return Y


def softplus_backward(X, dY, dX, double beta=1.0, double threshold=SOFTPLUS_THRESHOLD):
    """dX = dY * sigmoid(beta X), or dY where beta X > threshold; in place in
    ``dX`` (which may be ``dY``). ``X`` is the forward input."""
    _check_beta(beta)
    check_float_array(X, "X", -1, False)
    check_float_array(dY, "dY", -1, False)
    check_float_array(dX, "dX", -1, True)
    for a, name in ((dY, "dY"), (dX, "dX")):
        check_same_dtype(X, a, "X", name)
        check_same_shape(X, a, "X", name)
    cdef Py_ssize_t n = X.size
    cdef void* px = data_ptr(X)
    cdef void* pdy = data_ptr(dY)
    cdef void* pdx = data_ptr(dX)
    if is_float32(X):
        with nogil:
            _softplus_bwd(n, beta, threshold, <float*>px, <float*>pdy, <float*>pdx)
    else:
        with nogil:
            _softplus_bwd(n, beta, threshold, <double*>px, <double*>pdy, <double*>pdx)
    return dX


# --- PReLU -------------------------------------------------------------------

cdef void _prelu_forward(Py_ssize_t rows, Py_ssize_t cols, const floating* X,
                         const floating* A, floating* Y) noexcept nogil:
    """Y[i, j] = X[i, j] if X[i, j] > 0 else A[j] * X[i, j]

    Written as max(x, 0) + A[j] * min(x, 0), both parts from selects of the
    loaded x: the slope is then read on every path, which keeps the loop
    free of branches (a select between 1 and A[j] would make its load
    conditional). Adding a zero leaves each value unchanged.
    """
    cdef Py_ssize_t i, j
    cdef floating x, a, p, q, zero = 0
    for i in range(rows):
        for j in range(cols):
            x = X[i * cols + j]
            a = A[j]
            p = x if x > zero else zero
            q = zero if x > zero else x
            Y[i * cols + j] = p + a * q


cdef void _prelu_backward(Py_ssize_t rows, Py_ssize_t cols, const floating* X,
                          const floating* A, const floating* dY, floating* dX,
                          floating* dA) noexcept nogil:
    """dX = dY where X > 0 else A dY; dA[j] = sum_i (X dY)[i, j] over X <= 0.

    Branch-free as in ``_prelu_forward``."""
    cdef Py_ssize_t i, j
    cdef floating x, a, d, p, q, m, zero = 0
    for j in range(cols):
        dA[j] = zero
    for i in range(rows):
        for j in range(cols):
            x = X[i * cols + j]
            a = A[j]
            d = dY[i * cols + j]
            p = d if x > zero else zero
            q = zero if x > zero else d
            m = zero if x > zero else x
            dX[i * cols + j] = p + a * q
            dA[j] += m * d


cdef int _check_prelu(X, alpha) except -1:
    check_float_array(X, "X", 2, False)
    check_float_array(alpha, "alpha", 1, False)
    check_same_dtype(X, alpha, "X", "alpha")
    if alpha.shape[0] != X.shape[1]:
        raise ValueError(f"alpha has {alpha.shape[0]} slopes for {X.shape[1]} columns")
    return 0


def prelu_forward(X, alpha, Y):
    """PReLU: Y = X where X > 0, else alpha * X, one slope per column.

    Parameters
    ----------
    X, Y : ndarray of shape (rows, cols), same floating dtype, C-contiguous
        ``Y`` may be ``X``.
    alpha : ndarray of shape (cols,)
    """
    _check_prelu(X, alpha)
    check_float_array(Y, "Y", 2, True)
    check_same_dtype(X, Y, "X", "Y")
    check_same_shape(X, Y, "X", "Y")
    cdef Py_ssize_t r = X.shape[0], c = X.shape[1]
    cdef void* px = data_ptr(X)
    cdef void* pa = data_ptr(alpha)
    cdef void* py = data_ptr(Y)
    if is_float32(X):
        with nogil:
            _prelu_forward(r, c, <float*>px, <float*>pa, <float*>py)
    else:
        with nogil:
            _prelu_forward(r, c, <double*>px, <double*>pa, <double*>py)
    return Y


def prelu_backward(X, alpha, dY, dX, dalpha):
    """Gradients of PReLU, written in place.

    Parameters
    ----------
    X : ndarray of shape (rows, cols), the forward input
    alpha : ndarray of shape (cols,)
    dY : ndarray of shape (rows, cols), gradient with respect to the output
    dX : ndarray of shape (rows, cols), overwritten (may be ``dY``)
    dalpha : ndarray of shape (cols,), overwritten with the slopes' gradient
    """
    _check_prelu(X, alpha)
    check_float_array(dY, "dY", 2, False)
    check_float_array(dX, "dX", 2, True)
    check_float_array(dalpha, "dalpha", 1, True)
    for a, name in ((dY, "dY"), (dX, "dX")):
        check_same_dtype(X, a, "X", name)
        check_same_shape(X, a, "X", name)
    check_same_dtype(X, dalpha, "X", "dalpha")
    check_same_shape(alpha, dalpha, "alpha", "dalpha")
    cdef Py_ssize_t r = X.shape[0], c = X.shape[1]
    cdef void* px = data_ptr(X)
    cdef void* pa = data_ptr(alpha)
    cdef void* pdy = data_ptr(dY)
    cdef void* pdx = data_ptr(dX)
    cdef void* pda = data_ptr(dalpha)
    if is_float32(X):
        with nogil:
            _prelu_backward(r, c, <float*>px, <float*>pa, <float*>pdy, <float*>pdx,
                            <float*>pda)
    else:
        with nogil:
            _prelu_backward(r, c, <double*>px, <double*>pa, <double*>pdy, <double*>pdx,
                            <double*>pda)
    return dX
