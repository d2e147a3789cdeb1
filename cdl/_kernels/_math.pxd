# Scalar math on the fused ``floating`` type, so float32 kernels never
# promote: for float, the branch-free approximations of _vmath.h (within
# 2-3 ulp, and loops calling them vectorise); for double, libm.
from cython cimport floating
from cdl._kernels._vmath cimport (
    cdl_expf, cdl_expm1f, cdl_logf, cdl_log1pf, cdl_tanhf, cdl_sigmoidf, cdl_log1p_expf,
    cdl_erff)
from libc.math cimport exp, expm1, log, log1p, tanh, erf, fabs, fabsf, sqrt, sqrtf


cdef inline floating f_exp(floating x) noexcept nogil:
    if floating is float:
        return cdl_expf(x)
    else:
        return exp(x)


cdef inline floating f_expm1(floating x) noexcept nogil:
    if floating is float:
        return cdl_expm1f(x)
    else:
        return expm1(x)


cdef inline floating f_log(floating x) noexcept nogil:
    if floating is float:
        return cdl_logf(x)
    else:
        return log(x)


cdef inline floating f_log1p(floating x) noexcept nogil:
    if floating is float:
        return cdl_log1pf(x)
    else:
        return log1p(x)


cdef inline floating f_tanh(floating x) noexcept nogil:
    if floating is float:
        return cdl_tanhf(x)
    else:
        return tanh(x)


cdef inline floating f_erf(floating x) noexcept nogil:
    if floating is float:
        return cdl_erff(x)
    else:
        return erf(x)


cdef inline floating f_sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating f_abs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating f_sigmoid(floating x) noexcept nogil:
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    cdef floating e
    if floating is float:
        return cdl_sigmoidf(x)
    elif x >= 0:
        return 1 / (1 + f_exp(-x))
    else:
        e = f_exp(x)
        return e / (1 + e)


cdef inline floating f_log1p_exp(floating x) noexcept nogil:
    """log(1 + exp(x)) (softplus), without overflow for large |x|; NaN stays NaN."""
    cdef floating zero = 0
    if floating is float:
        return cdl_log1p_expf(x)
    else:
        return (x if x > zero else zero) + f_log1p(f_exp(-f_abs(x)))
