# Rendered from optim.pyx.tp by setup.py: edit the template, not this file.
"""Fused, in-place optimizer updates over flat parameter buffers.

Each kernel performs one optimizer step for ``n`` parameters: it reads
the gradient, updates the optimizer's state buffers and the parameters in
a single pass, without temporaries. Scalar work that is the same for every
element (bias corrections, schedules) is done by the caller in Python and
passed in. The formulas follow PyTorch's ``torch.optim`` single-tensor
implementations, including the order of operations where it matters for
reproducibility. Gradients are never modified. On x86 CPUs an update
flushes subnormal numbers (below 1.2e-38 in float32) to zero, as
TensorFlow does by default: a moment that decays past the normal range
would otherwise stick at the smallest subnormal and slow every later step
several-fold.
"""
from cython cimport floating

from cdl._kernels._checks cimport (
    check_float_array, check_same_dtype, data_ptr, is_float32, optional_ptr)
from cdl._kernels._math cimport f_sqrt, f_abs


# Every update runs between these two calls (see the module docstring).
cdef extern from *:
    """
    #if defined(__SSE2__) || defined(_M_X64) || defined(__x86_64__)
    #include <xmmintrin.h>
    /* Flush-to-zero and denormals-are-zero: MXCSR bits 15 and 6. */
    static unsigned int cdl_flush_denormals_begin(void) {
        unsigned int saved = _mm_getcsr();
        _mm_setcsr(saved | 0x8040u);
        return saved;
    }
    static void cdl_flush_denormals_end(unsigned int saved) { _mm_setcsr(saved); }
    #else
    /* Other CPUs (ARM) run subnormal arithmetic at full speed. */
    static unsigned int cdl_flush_denormals_begin(void) { return 0u; }
    static void cdl_flush_denormals_end(unsigned int saved) { (void)saved; }
    #endif
    """
    unsigned int flush_denormals_begin "cdl_flush_denormals_begin" () noexcept nogil
    void flush_denormals_end "cdl_flush_denormals_end" (unsigned int saved) noexcept nogil


cdef inline floating lerp(floating start, floating end, floating weight) noexcept nogil:
    """start + weight * (end - start), evaluated as torch.lerp does.

    Both forms are computed and one selected, which keeps loops free of
    branches (and so vectorisable); ``weight`` is the same for every element.
    """
    cdef floating low = start + weight * (end - start)
    cdef floating high = end - (end - start) * (1 - weight)
    return low if weight < 0.5 else high


cdef inline floating nan_max(floating a, floating b) noexcept nogil:
    """max(a, b) propagating NaN from either side, as torch.maximum."""
    return a if (a > b or a != a) else b


# --- kernels ----------------------------------------------------------------

cdef void sgd_kernel(Py_ssize_t n, floating* p, const floating* g, floating* buf,
                     floating lr, floating wd, floating momentum, floating dampening,
                     bint nesterov, bint first) noexcept nogil:
    """d = g + wd p; buf = d (first step) or momentum buf + (1 - dampening) d;
    p -= lr * (d + momentum buf if nesterov else buf)   (buf NULL: p -= lr d)

    The branches are taken outside the loops, so that each loop is simple
    enough for the compiler to vectorise.
    """
    cdef Py_ssize_t i
    cdef floating d, keep = 1 - dampening
    if buf == NULL:
        if wd != 0:
            for i in range(n):
                p[i] = p[i] - lr * (g[i] + wd * p[i])
        else:
            for i in range(n):
                p[i] = p[i] - lr * g[i]
        return
    if wd != 0:
        for i in range(n):
            d = g[i] + wd * p[i]
            buf[i] = d if first else momentum * buf[i] + keep * d
            p[i] = p[i] - lr * (d + momentum * buf[i] if nesterov else buf[i])
    elif first:
        for i in range(n):
            buf[i] = g[i]
            p[i] = p[i] - lr * (g[i] + momentum * buf[i] if nesterov else buf[i])
    elif nesterov:
        for i in range(n):
            buf[i] = momentum * buf[i] + keep * g[i]
            p[i] = p[i] - lr * (g[i] + momentum * buf[i])
    else:
        for i in range(n):
            buf[i] = momentum * buf[i] + keep * g[i]
            p[i] = p[i] - lr * buf[i]


cdef void adagrad_kernel(Py_ssize_t n, floating* p, const floating* g, floating* sums,
                         floating clr, floating wd, floating eps) noexcept nogil:
    """d = g + wd p; sums += d^2; p -= clr * d / (sqrt(sums) + eps)"""
    cdef Py_ssize_t i
    cdef floating d
    for i in range(n):
        d = g[i]
        if wd != 0:
            d = d + wd * p[i]
        sums[i] = sums[i] + d * d
        p[i] = p[i] - clr * (d / (f_sqrt(sums[i]) + eps))


cdef void rmsprop_kernel(Py_ssize_t n, floating* p, const floating* g, floating* square_avg,
                         floating* grad_avg, floating* buf, floating lr, floating alpha,
                         floating eps, floating wd, floating momentum) noexcept nogil:
    """d = g + wd p; s = alpha s + (1 - alpha) d^2; (centered: a = lerp(a, d, 1 - alpha),
    denom = sqrt(s - a^2) + eps, else sqrt(s) + eps); buf = momentum buf + d / denom,
    p -= lr buf (momentum > 0) or p -= lr d / denom."""
    cdef Py_ssize_t i
    cdef floating d, denom
    for i in range(n):
        d = g[i]
        if wd != 0:
            d = d + wd * p[i]
        square_avg[i] = square_avg[i] * alpha + (1 - alpha) * d * d
        if grad_avg != NULL:
            grad_avg[i] = lerp(grad_avg[i], d, 1 - alpha)
            denom = f_sqrt(square_avg[i] - grad_avg[i] * grad_avg[i]) + eps
        else:
            denom = f_sqrt(square_avg[i]) + eps
        if buf != NULL:
            buf[i] = buf[i] * momentum + d / denom
            p[i] = p[i] - lr * buf[i]
        else:
            p[i] = p[i] - lr * (d / denom)


cdef inline void _adam_one(Py_ssize_t i, floating* p, const floating* g, floating* m,
                           floating* v, floating* v_max, floating step_size,
                           floating bc2_sqrt, floating beta1, floating beta2, floating eps,
                           floating wd, bint coupled, bint amsgrad) noexcept nogil:
    cdef floating d = g[i] + wd * p[i] if coupled else g[i]
    cdef floating second
    m[i] = lerp(m[i], d, 1 - beta1)
    v[i] = v[i] * beta2 + (1 - beta2) * d * d
    second = v[i]
    if amsgrad:
        v_max[i] = nan_max(v[i], v_max[i])
        second = v_max[i]
    p[i] = p[i] - step_size * (m[i] / (f_sqrt(second) / bc2_sqrt + eps))


cdef void adam_kernel(Py_ssize_t n, floating* p, const floating* g, floating* m,
                      floating* v, floating* v_max, floating step_size,
                      floating bc2_sqrt, floating beta1, floating beta2, floating eps,
                      floating wd, floating decay) noexcept nogil:
    """p *= decay (AdamW); d = g + wd p (Adam); m = lerp(m, d, 1 - beta1);
    v = beta2 v + (1 - beta2) d^2; v_max = max(v_max, v) (amsgrad);
    p -= step_size * m / (sqrt(v or v_max) / bc2_sqrt + eps)

    One loop per combination of options (the flags are constants in each
    inlined copy of ``_adam_one``), so that each loop can be vectorised.
    """
    cdef Py_ssize_t i
    cdef bint coupled = wd != 0
    if decay != 1:
        for i in range(n):
            p[i] = p[i] * decay
    if v_max == NULL:
        if coupled:
            for i in range(n):
                _adam_one(i, p, g, m, v, v_max, step_size, bc2_sqrt, beta1, beta2, eps, wd,
                          True, False)
        else:
            for i in range(n):
                _adam_one(i, p, g, m, v, v_max, step_size, bc2_sqrt, beta1, beta2, eps, wd,
                          False, False)
    elif coupled:
        for i in range(n):
            _adam_one(i, p, g, m, v, v_max, step_size, bc2_sqrt, beta1, beta2, eps, wd,
                      True, True)
    else:
        for i in range(n):
            _adam_one(i, p, g, m, v, v_max, step_size, bc2_sqrt, beta1, beta2, eps, wd,
                      False, True)


cdef void adamax_kernel(Py_ssize_t n, floating* p, const floating* g, floating* m,
                        floating* u, floating clr, floating beta1, floating beta2,
                        floating eps, floating wd) noexcept nogil:
    """d = g + wd p; m = lerp(m, d, 1 - beta1); u = max(beta2 u, |d| + eps);
    p -= clr * m / u"""
    cdef Py_ssize_t i
    cdef floating d, a
    for i in range(n):
        d = g[i]
        if wd != 0:
            d = d + wd * p[i]
        m[i] = lerp(m[i], d, 1 - beta1)
        a = f_abs(d) + eps
        u[i] = nan_max(u[i] * beta2, a)
        p[i] = p[i] - clr * (m[i] / u[i])


cdef inline floating _adam_moments(Py_ssize_t i, floating* p, const floating* g,
                                   floating* m, floating* v, floating beta1, floating beta2,
                                   floating wd, floating decay) noexcept nogil:
    """p *= decay; d = g + wd p; m = lerp(m, d, 1 - beta1); v = beta2 v + (1 - beta2) d^2.

    The first half of an NAdam or RAdam step; returns d.
    """
    cdef floating d
    if decay != 1:
        p[i] = p[i] * decay
    d = g[i]
    if wd != 0:
        d = d + wd * p[i]
    m[i] = lerp(m[i], d, 1 - beta1)
    v[i] = v[i] * beta2 + (1 - beta2) * d * d
    return d


cdef void nadam_kernel(Py_ssize_t n, floating* p, const floating* g, floating* m,
                       floating* v, floating c_grad, floating c_avg, floating bc2,
                       floating beta1, floating beta2, floating eps, floating wd,
                       floating decay) noexcept nogil:
    """p *= decay (decoupled); d = g + wd p; m = lerp(m, d, 1 - beta1);
    v = beta2 v + (1 - beta2) d^2; denom = sqrt(v / bc2) + eps;
    p -= c_grad d / denom; p -= c_avg m / denom"""
    cdef Py_ssize_t i
    cdef floating d, denom
    for i in range(n):
        d = _adam_moments(i, p, g, m, v, beta1, beta2, wd, decay)
        denom = f_sqrt(v[i] / bc2) + eps
        p[i] = p[i] - c_grad * (d / denom)
        p[i] = p[i] - c_avg * (m[i] / denom)


cdef void radam_kernel(Py_ssize_t n, floating* p, const floating* g, floating* m,
                       floating* v, floating lr, floating bc1, floating bc2_sqrt,
                       floating rect, bint rectified, floating beta1, floating beta2,
                       floating eps, floating wd, floating decay) noexcept nogil:
    """p *= decay (decoupled); d = g + wd p; m = lerp(m, d, 1 - beta1);
    v = beta2 v + (1 - beta2) d^2; m_hat = m / bc1;
    p -= lr * m_hat * rect * bc2_sqrt / (sqrt(v) + eps) if rectified else lr * m_hat"""
    cdef Py_ssize_t i
    cdef floating m_hat
    for i in range(n):
        _adam_moments(i, p, g, m, v, beta1, beta2, wd, decay)
        m_hat = m[i] / bc1
        if rectified:
            p[i] = p[i] + m_hat * lr * (bc2_sqrt / (f_sqrt(v[i]) + eps)) * rect * -1
        else:
            p[i] = p[i] + m_hat * lr * -1


# --- checked entry points -----------------------------------------------------

cdef Py_ssize_t _check_flat(p, g, tuple states) except -1:
    """Check a parameter vector, its gradient and state vectors (None allowed)."""
    check_float_array(p, "param", 1, True)
    check_float_array(g, "grad", 1, False)
    check_same_dtype(p, g, "param", "grad")
    cdef Py_ssize_t n = p.shape[0]
    if g.shape[0] != n:
        raise ValueError(f"grad has {g.shape[0]} elements, param {n}")
    for i, s in enumerate(states):
        if s is None:
            continue
        check_float_array(s, f"state buffer {i}", 1, True)
        check_same_dtype(p, s, "param", f"state buffer {i}")
        if s.shape[0] != n:
            raise ValueError(f"state buffer {i} has {s.shape[0]} elements, param {n}")
    return n



def sgd(p, g, buf, double lr, double weight_decay, double momentum, double dampening,
        bint nesterov, bint first):
    """One SGD step in place; ``buf`` is the momentum buffer or None."""
    cdef Py_ssize_t n = _check_flat(p, g, (buf,))
    cdef void* pp = data_ptr(p)
    cdef void* pg = data_ptr(g)
    cdef void* pb = optional_ptr(buf)
    cdef unsigned int saved = flush_denormals_begin()
    if is_float32(p):
        with nogil:
            sgd_kernel(n, <float*>pp, <float*>pg, <float*>pb, <float>lr, <float>weight_decay,
                       <float>momentum, <float>dampening, nesterov, first)
    else:
        with nogil:
            sgd_kernel(n, <double*>pp, <double*>pg, <double*>pb, <double>lr, <double>weight_decay,
                       <double>momentum, <double>dampening, nesterov, first)
    flush_denormals_end(saved)


def adagrad(p, g, sums, double clr, double weight_decay, double eps):
    """One Adagrad step in place with the decayed learning rate ``clr``."""
    cdef Py_ssize_t n = _check_flat(p, g, (sums,))
    if sums is None:
        raise ValueError("Adagrad needs its sum buffer")
    cdef void* pp = data_ptr(p)
    cdef void* pg = data_ptr(g)
    cdef void* ps = data_ptr(sums)
    cdef unsigned int saved = flush_denormals_begin()
    if is_float32(p):
        with nogil:
            adagrad_kernel(n, <float*>pp, <float*>pg, <float*>ps, <float>clr,
                           <float>weight_decay, <float>eps)
    else:
        with nogil:
            adagrad_kernel(n, <double*>pp, <double*>pg, <double*>ps, <double>clr,
                           <double>weight_decay, <double>eps)
    flush_denormals_end(saved)


def rmsprop(p, g, square_avg, grad_avg, buf, double lr, double alpha, double eps,
            double weight_decay, double momentum):
    """One RMSprop step in place; ``grad_avg`` (centered) and ``buf`` (momentum) may be None."""
    cdef Py_ssize_t n = _check_flat(p, g, (square_avg, grad_avg, buf))
    if square_avg is None:
        raise ValueError("RMSprop needs its square average buffer")
    cdef void* pp = data_ptr(p)
    cdef void* pg = data_ptr(g)
    cdef void* ps = data_ptr(square_avg)
    cdef void* pa = optional_ptr(grad_avg)
    cdef void* pb = optional_ptr(buf)
    cdef unsigned int saved = flush_denormals_begin()
    if is_float32(p):
        with nogil:
            rmsprop_kernel(n, <float*>pp, <float*>pg, <float*>ps, <float*>pa, <float*>pb,
                           <float>lr, <float>alpha, <float>eps, <float>weight_decay,
                           <float>momentum)
    else:
        with nogil:
            rmsprop_kernel(n, <double*>pp, <double*>pg, <double*>ps, <double*>pa, <double*>pb,
                           <double>lr, <double>alpha, <double>eps, <double>weight_decay,
                           <double>momentum)
    flush_denormals_end(saved)


def adam(p, g, m, v, v_max, double step_size, double bc2_sqrt, double beta1, double beta2,
         double eps, double weight_decay, double decay):
    """One Adam/AdamW step in place; ``v_max`` (amsgrad) may be None.

    ``weight_decay`` is the coupled L2 term (Adam); ``decay`` the factor
    1 - lr * weight_decay applied to the parameters first (AdamW), else 1.
    """
    cdef Py_ssize_t n = _check_flat(p, g, (m, v, v_max))
    if m is None or v is None:
        raise ValueError("Adam needs its moment buffers")
    cdef void* pp = data_ptr(p)
    cdef void* pg = data_ptr(g)
    cdef void* pm = data_ptr(m)
    cdef void* pv = data_ptr(v)
    cdef void* px = optional_ptr(v_max)
    cdef unsigned int saved = flush_denormals_begin()
    if is_float32(p):
        with nogil:
            adam_kernel(n, <float*>pp, <float*>pg, <float*>pm, <float*>pv, <float*>px,
                        <float>step_size, <float>bc2_sqrt, <float>beta1, <float>beta2,
                        <float>eps, <float>weight_decay, <float>decay)
    else:
        with nogil:
            adam_kernel(n, <double*>pp, <double*>pg, <double*>pm, <double*>pv, <double*>px,
                        <double>step_size, <double>bc2_sqrt, <double>beta1, <double>beta2,
                        <double>eps, <double>weight_decay, <double>decay)
    flush_denormals_end(saved)


def adamax(p, g, m, u, double clr, double beta1, double beta2, double eps, double weight_decay):
    """One Adamax step in place."""
    cdef Py_ssize_t n = _check_flat(p, g, (m, u))
    if m is None or u is None:
        raise ValueError("Adamax needs its moment buffers")
    cdef void* pp = data_ptr(p)
    cdef void* pg = data_ptr(g)
    cdef void* pm = data_ptr(m)
    cdef void* pu = data_ptr(u)
    cdef unsigned int saved = flush_denormals_begin()
    if is_float32(p):
        with nogil:
            adamax_kernel(n, <float*>pp, <float*>pg, <float*>pm, <float*>pu, <float>clr,
                          <float>beta1, <float>beta2, <float>eps, <float>weight_decay)
    else:
        with nogil:
            adamax_kernel(n, <double*>pp, <double*>pg, <double*>pm, <double*>pu, <double>clr,
                          <double>beta1, <double>beta2, <double>eps, <double>weight_decay)
    flush_denormals_end(saved)


def nadam(p, g, m, v, double c_grad, double c_avg, double bc2, double beta1, double beta2,
          double eps, double weight_decay, double decay):
    """One NAdam step in place, with the momentum-schedule coefficients precomputed."""
    cdef Py_ssize_t n = _check_flat(p, g, (m, v))
    if m is None or v is None:
        raise ValueError("NAdam needs its moment buffers")
    cdef void* pp = data_ptr(p)
    cdef void* pg = data_ptr(g)
    cdef void* pm = data_ptr(m)
    cdef void* pv = data_ptr(v)
    cdef unsigned int saved = flush_denormals_begin()
    if is_float32(p):
        with nogil:
            nadam_kernel(n, <float*>pp, <float*>pg, <float*>pm, <float*>pv, <float>c_grad,
                         <float>c_avg, <float>bc2, <float>beta1, <float>beta2, <float>eps,
                         <float>weight_decay, <float>decay)
    else:
        with nogil:
            nadam_kernel(n, <double*>pp, <double*>pg, <double*>pm, <double*>pv, <double>c_grad,
                         <double>c_avg, <double>bc2, <double>beta1, <double>beta2, <double>eps,
                         <double>weight_decay, <double>decay)
    flush_denormals_end(saved)


def radam(p, g, m, v, double lr, double bc1, double bc2_sqrt, double rect, bint rectified,
          double beta1, double beta2, double eps, double weight_decay, double decay):
    """One RAdam step in place; ``rect`` is the variance rectification term."""
    cdef Py_ssize_t n = _check_flat(p, g, (m, v))
    if m is None or v is None:
        raise ValueError("RAdam needs its moment buffers")
    cdef void* pp = data_ptr(p)
    cdef void* pg = data_ptr(g)
    cdef void* pm = data_ptr(m)
    cdef void* pv = data_ptr(v)
    cdef unsigned int saved = flush_denormals_begin()
    if is_float32(p):
        with nogil:
            radam_kernel(n, <float*>pp, <float*>pg, <float*>pm, <float*>pv, <float>lr,
                         <float>bc1, <float>bc2_sqrt, <float>rect, rectified, <float>beta1,
                         <float>beta2, <float>eps, <float>weight_decay, <float>decay)
    else:
        with nogil:
            radam_kernel(n, <double*>pp, <double*>pg, <double*>pm, <double*>pv, <double>lr,
                         <double>bc1, <double>bc2_sqrt, <double>rect, rectified, <double>beta1,
                         <double>beta2, <double>eps, <double>weight_decay, <double>decay)
    flush_denormals_end(saved)
