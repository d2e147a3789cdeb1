# Vectorisable float32 exp, expm1, log, log1p, tanh, sigmoid, erf and
# softplus: branch-free inline C (see _vmath.h for the method and the
# accuracy bounds), so that loops calling them compile to SIMD code.
cdef extern from "_vmath.h" nogil:
    float cdl_expf(float x)
    float cdl_expm1f(float x)
    float cdl_logf(float x)
    float cdl_log1pf(float x)
    float cdl_tanhf(float x)
    float cdl_sigmoidf(float x)
    float cdl_log1p_expf(float x)
    float cdl_erff(float x)
