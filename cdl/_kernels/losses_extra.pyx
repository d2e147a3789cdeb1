# Rendered from losses_extra.pyx.tp by setup.py: edit the template, not this file.
"""Kernels of the probabilistic, similarity and margin losses: negative
log-likelihood, KL divergence, Poisson negative log-likelihood, cosine
similarity and hinge.

Same conventions as ``losses.pyx``: the ``def`` entry points check every
array, then call ``cdef ... noexcept nogil`` kernels over the fused
``floating`` type; sums are accumulated in float64; ``W``, optional, weights
each sample (row) and never changes the divisor; every backward returns the
gradient of the *mean* (divisor included). A NaN prediction gives a NaN
gradient wherever it is read, even where the exact gradient does not depend
on it, so that it is not hidden.
"""
from cython cimport floating
from libc.stdint cimport int64_t
from libc.math cimport sqrt
import numpy as np
cimport numpy as cnp

from cdl._kernels._checks cimport (
    check_float_array, check_same_dtype, check_same_shape, data_ptr, is_float32, optional_ptr)
from cdl._kernels._math cimport f_exp, f_log
from cdl._kernels.losses cimport class_weight_total, row_weight
from cdl._kernels.losses import (
    _check_class_weights, _check_labels, _check_pair, _check_weights, _class_weight_total,
    _rows_cols)

cnp.import_array()

#: Floor of the L2 norms in the cosine similarity: Keras 3's
#: ``ops.normalize`` (keras.backend.epsilon()), x / max(||x||, 1e-7).
COSINE_EPSILON = 1e-7


cdef inline floating _nan_or(floating x, floating value) noexcept nogil:
    """``value``, or ``x`` if ``x`` is NaN (propagates NaN into a gradient)."""
    return value if x == x else x



# --- negative log-likelihood -------------------------------------------------

cdef double nll_forward(Py_ssize_t n, Py_ssize_t c, const floating* X,
                        const int64_t* labels, const floating* CW,
                        const floating* W) noexcept nogil:
    """-sum_i w_i cw_{y_i} X[i, y_i] / sum_i cw_{y_i}; CW and W may be NULL
    (the divisor is then n)."""
    cdef Py_ssize_t i
    cdef int64_t y
    cdef double total = 0.0
    cdef double den = class_weight_total(n, labels, CW)
    for i in range(n):
        y = labels[i]
        total -= row_weight(W, i) * row_weight(CW, y) * X[i * c + y]
    return total / den


cdef void nll_backward(Py_ssize_t n, Py_ssize_t c, const floating* X,
                       const int64_t* labels, const floating* CW, const floating* W,
                       floating* dX) noexcept nogil:
    """dX[i, j] = -w_i cw_{y_i} / sum_k cw_{y_k} if j == y_i, else 0."""
    cdef Py_ssize_t i, j
    cdef int64_t y
    cdef double den = class_weight_total(n, labels, CW)
    cdef floating g, x, zero = 0
    for i in range(n):
        y = labels[i]
        g = <floating>(-row_weight(W, i) * row_weight(CW, y) / den)
        for j in range(c):
            x = X[i * c + j]
            dX[i * c + j] = _nan_or(x, g if j == y else zero)


def _check_log_probs(X, dX=None):
    check_float_array(X, "log_probs", 2, False)
    if dX is not None:
        check_float_array(dX, "dX", 2, True)
        check_same_dtype(X, dX, "log_probs", "dX")
        check_same_shape(X, dX, "log_probs", "dX")
    if X.shape[0] == 0:
        raise ValueError("the loss of an empty batch is undefined")
    if X.shape[1] == 0:
        raise ValueError("log_probs must have at least one class column")


def nll_loss(X, labels, CW=None, W=None):
    """Mean negative log-likelihood of log-probabilities ``X`` (n, c) at int64
    ``labels``: -sum_i w_i cw_{y_i} X[i, y_i] / sum_i cw_{y_i}.

    ``CW``, optional, weights each class (length c) and, as in PyTorch's
    NLLLoss, the sum is divided by the total class weight of the labels (n
    without ``CW``); ``W``, optional, weights each sample without changing
    the divisor.
    """
    _check_log_probs(X)
    _check_weights(W, X, "log_probs")
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1]
    _check_labels(labels, n, c)
    _check_class_weights(CW, X, c, "log_probs")
    _class_weight_total(CW, labels)
    cdef void* px = data_ptr(X)
    cdef void* pc = optional_ptr(CW)
    cdef void* pw = optional_ptr(W)
    cdef const int64_t* pl = <const int64_t*>data_ptr(labels)
    cdef double loss
    if is_float32(X):
        with nogil:
            loss = nll_forward(n, c, <float*>px, pl, <float*>pc, <float*>pw)
    else:
        with nogil:
            loss = nll_forward(n, c, <double*>px, pl, <double*>pc, <double*>pw)
    return loss


def nll_grad(X, labels, dX, CW=None, W=None):
    """Gradient of ``nll_loss`` with respect to ``X``, into ``dX``."""
    _check_log_probs(X, dX)
    _check_weights(W, X, "log_probs")
    cdef Py_ssize_t n = X.shape[0], c = X.shape[1]
    _check_labels(labels, n, c)
    _check_class_weights(CW, X, c, "log_probs")
    _class_weight_total(CW, labels)
    cdef void* px = data_ptr(X)
    cdef void* pd = data_ptr(dX)
    cdef void* pc = optional_ptr(CW)
    cdef void* pw = optional_ptr(W)
    cdef const int64_t* pl = <const int64_t*>data_ptr(labels)
    if is_float32(X):
        with nogil:
            nll_backward(n, c, <float*>px, pl, <float*>pc, <float*>pw, <float*>pd)
    else:
        with nogil:
            nll_backward(n, c, <double*>px, pl, <double*>pc, <double*>pw, <double*>pd)
    return dX


# --- element-wise losses: checks shared by KL divergence, Poisson, hinge ------

def _check_grad_out(P, dP):
    check_float_array(dP, "dP", -1, True)
    check_same_dtype(P, dP, "pred", "dP")
    check_same_shape(P, dP, "pred", "dP")


# --- KL divergence -------------------------------------------------------------

cdef double kl_div_forward(bint log_target, Py_ssize_t rows, Py_ssize_t cols,
                           const floating* X, const floating* T,
                           const floating* W) noexcept nogil:
    """sum_r w_r sum_j T_rj (log T_rj - X_rj) / rows, 0 where T == 0 (PyTorch's
    KLDivLoss, reduction="batchmean"). With ``log_target``, T holds log
    targets: sum exp(T) (T - X), 0 where exp(T) == 0."""
    cdef Py_ssize_t r, j, i
    cdef double row_total, total = 0.0
    cdef floating x, t, e, v, zero = 0
    for r in range(rows):
        row_total = 0.0
        if log_target:
            for j in range(cols):
                i = r * cols + j
                x = X[i]
                t = T[i]
                e = f_exp(t)
                v = e * (t - x)
                row_total += v if e != 0 else zero
        else:
            for j in range(cols):
                i = r * cols + j
                x = X[i]
                t = T[i]
                v = t * (f_log(t) - x)
                row_total += v if t > 0 else zero
        total += row_weight(W, r) * row_total
    return total / rows


cdef void kl_div_backward(bint log_target, Py_ssize_t rows, Py_ssize_t cols,
                          const floating* X, const floating* T, const floating* W,
                          floating* dX) noexcept nogil:
    """dX = -w_r T / rows (-w_r exp(T) / rows with ``log_target``)."""
    cdef Py_ssize_t r, j, i
    cdef double scale
    cdef floating x, t
    for r in range(rows):
        scale = -row_weight(W, r) / rows
        if log_target:
            for j in range(cols):
                i = r * cols + j
                x = X[i]
                t = T[i]
                dX[i] = _nan_or(x, <floating>(f_exp(t) * scale))
        else:
            for j in range(cols):
                i = r * cols + j
                x = X[i]
                t = T[i]
                dX[i] = _nan_or(x, <floating>(t * scale))


def _check_target_pair(X, T, W):
    """``_check_pair`` (pred/target, same dtype and shape, not empty) and weights."""
    _check_pair(X, T)
    _check_weights(W, X)


def kl_divergence(X, T, bint log_target=False, W=None):
    """KL divergence of log-probabilities ``X`` from targets ``T`` (probabilities,
    or log-probabilities with ``log_target``), summed and divided by the batch
    size (``X.shape[0]``), as PyTorch's KLDivLoss(reduction="batchmean")."""
    _check_target_pair(X, T, W)
    rows, cols = _rows_cols(X)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* px = data_ptr(X)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef double loss
    if is_float32(X):
        with nogil:
            loss = kl_div_forward(log_target, r, c, <float*>px, <float*>pt, <float*>pw)
    else:
        with nogil:
            loss = kl_div_forward(log_target, r, c, <double*>px, <double*>pt, <double*>pw)
    return loss


def kl_divergence_grad(X, T, dX, bint log_target=False, W=None):
    """Gradient of ``kl_divergence`` with respect to ``X``, into ``dX``."""
    _check_target_pair(X, T, W)
    _check_grad_out(X, dX)
    rows, cols = _rows_cols(X)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* px = data_ptr(X)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef void* pd = data_ptr(dX)
    if is_float32(X):
        with nogil:
            kl_div_backward(log_target, r, c, <float*>px, <float*>pt, <float*>pw, <float*>pd)
    else:
        with nogil:
            kl_div_backward(log_target, r, c, <double*>px, <double*>pt, <double*>pw, <double*>pd)
    return dX


# --- Poisson negative log-likelihood ------------------------------------------

cdef double poisson_forward(bint log_input, double eps, Py_ssize_t rows, Py_ssize_t cols,
                            const floating* X, const floating* T,
                            const floating* W) noexcept nogil:
    """sum_r w_r sum_j l(X_rj, T_rj) / (rows cols), with l(x, t) = exp(x) - t x
    (``log_input``) or x - t log(x + eps): PyTorch's PoissonNLLLoss(full=False)."""
    cdef Py_ssize_t r, j, i
    cdef double row_total, total = 0.0
    cdef floating x, t, e = <floating>eps
    for r in range(rows):
        row_total = 0.0
        if log_input:
            for j in range(cols):
                i = r * cols + j
                x = X[i]
                t = T[i]
                row_total += f_exp(x) - <double>t * x
        else:
            for j in range(cols):
                i = r * cols + j
                x = X[i]
                t = T[i]
                row_total += x - <double>t * f_log(x + e)
        total += row_weight(W, r) * row_total
    return total / (rows * cols)


cdef void poisson_backward(bint log_input, double eps, Py_ssize_t rows, Py_ssize_t cols,
                           const floating* X, const floating* T, const floating* W,
                           floating* dX) noexcept nogil:
    """dX = w_r (exp(X) - T) / (rows cols), or w_r (1 - T / (X + eps)) / (rows cols)."""
    cdef Py_ssize_t r, j, i
    cdef double scale
    cdef floating x, t, e = <floating>eps
    for r in range(rows):
        scale = row_weight(W, r) / (rows * cols)
        if log_input:
            for j in range(cols):
                i = r * cols + j
                x = X[i]
                t = T[i]
                dX[i] = <floating>((f_exp(x) - <double>t) * scale)
        else:
            for j in range(cols):
                i = r * cols + j
                x = X[i]
                t = T[i]
                dX[i] = <floating>((1.0 - <double>t / (x + e)) * scale)


def poisson_nll(X, T, bint log_input=True, double eps=1e-8, W=None):
    """Mean Poisson negative log-likelihood of predictions ``X`` (log-rates with
    ``log_input``, else rates) against counts ``T``, over all elements."""
    _check_target_pair(X, T, W)
    rows, cols = _rows_cols(X)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* px = data_ptr(X)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef double loss
    if is_float32(X):
        with nogil:
            loss = poisson_forward(log_input, eps, r, c, <float*>px, <float*>pt, <float*>pw)
    else:
        with nogil:
            loss = poisson_forward(log_input, eps, r, c, <double*>px, <double*>pt, <double*>pw)
    return loss


def poisson_nll_grad(X, T, dX, bint log_input=True, double eps=1e-8, W=None):
    """Gradient of ``poisson_nll`` with respect to ``X``, into ``dX``."""
    _check_target_pair(X, T, W)
    _check_grad_out(X, dX)
    rows, cols = _rows_cols(X)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* px = data_ptr(X)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef void* pd = data_ptr(dX)
    if is_float32(X):
        with nogil:
            poisson_backward(log_input, eps, r, c, <float*>px, <float*>pt, <float*>pw,
                             <float*>pd)
    else:
        with nogil:
            poisson_backward(log_input, eps, r, c, <double*>px, <double*>pt, <double*>pw,
                             <double*>pd)
    return dX


# --- hinge -------------------------------------------------------------------

cdef double hinge_forward(Py_ssize_t rows, Py_ssize_t cols, const floating* P,
                          const floating* T, const floating* W) noexcept nogil:
    """sum_r w_r sum_j max(1 - T_rj P_rj, 0) / (rows cols); NaN stays NaN."""
    cdef Py_ssize_t r, j, i
    cdef double row_total, total = 0.0
    cdef floating p, t, v, zero = 0
    for r in range(rows):
        row_total = 0.0
        for j in range(cols):
            i = r * cols + j
            p = P[i]
            t = T[i]
            v = 1 - t * p
            row_total += zero if v <= 0 else v
        total += row_weight(W, r) * row_total
    return total / (rows * cols)


cdef void hinge_backward(Py_ssize_t rows, Py_ssize_t cols, const floating* P,
                         const floating* T, const floating* W, floating* dP) noexcept nogil:
    """dP = -w_r T / (rows cols) where 1 - T P > 0, else 0 (0 at the kink)."""
    cdef Py_ssize_t r, j, i
    cdef double scale
    cdef floating p, t, v, g, zero = 0
    for r in range(rows):
        scale = row_weight(W, r) / (rows * cols)
        for j in range(cols):
            i = r * cols + j
            p = P[i]
            t = T[i]
            v = 1 - t * p
            g = <floating>(-t * scale)
            dP[i] = zero if v <= 0 else (g if v > 0 else v)


def hinge(P, T, W=None):
    """Mean hinge loss max(1 - T P, 0) of predictions ``P`` against targets
    ``T`` in {-1, 1} (not checked here), over all elements."""
    _check_target_pair(P, T, W)
    rows, cols = _rows_cols(P)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* pp = data_ptr(P)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef double loss
    if is_float32(P):
        with nogil:
            loss = hinge_forward(r, c, <float*>pp, <float*>pt, <float*>pw)
    else:
        with nogil:
            loss = hinge_forward(r, c, <double*>pp, <double*>pt, <double*>pw)
    return loss


def hinge_grad(P, T, dP, W=None):
    """Gradient of ``hinge`` with respect to ``P``, into ``dP``."""
    _check_target_pair(P, T, W)
    _check_grad_out(P, dP)
    rows, cols = _rows_cols(P)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* pp = data_ptr(P)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef void* pd = data_ptr(dP)
    if is_float32(P):
        with nogil:
            hinge_backward(r, c, <float*>pp, <float*>pt, <float*>pw, <float*>pd)
    else:
        with nogil:
            hinge_backward(r, c, <double*>pp, <double*>pt, <double*>pw, <double*>pd)
    return dP


# --- cosine similarity ---------------------------------------------------------

cdef inline void _dot_norms(Py_ssize_t d, const floating* p, const floating* t,
                            double* dot, double* pp, double* tt) noexcept nogil:
    cdef Py_ssize_t k
    cdef double a = 0.0, b = 0.0, e = 0.0
    cdef floating x, y
    for k in range(d):
        x = p[k]
        y = t[k]
        a += <double>x * y
        b += <double>x * x
        e += <double>y * y
    dot[0] = a
    pp[0] = b
    tt[0] = e


cdef double cosine_forward(Py_ssize_t rows, Py_ssize_t m, Py_ssize_t d, double eps,
                           const floating* P, const floating* T,
                           const floating* W) noexcept nogil:
    """-sum_r w_r sum_v cos(P_rv, T_rv) / (rows m) over the ``m`` vectors of
    length ``d`` of each row, with cos(p, t) = p.t / (max(|p|, eps) max(|t|, eps))."""
    cdef Py_ssize_t r, v
    cdef const floating* p
    cdef const floating* t
    cdef double dot, pp, tt, np_, nt, row_total, total = 0.0
    for r in range(rows):
        row_total = 0.0
        for v in range(m):
            p = P + (r * m + v) * d
            t = T + (r * m + v) * d
            _dot_norms(d, p, t, &dot, &pp, &tt)
            np_ = sqrt(pp)
            nt = sqrt(tt)
            # `<=` so that a NaN norm is not replaced by eps.
            np_ = eps if np_ <= eps else np_
            nt = eps if nt <= eps else nt
            row_total += dot / (np_ * nt)
        total += row_weight(W, r) * row_total
    return -total / (rows * m)


cdef void cosine_backward(Py_ssize_t rows, Py_ssize_t m, Py_ssize_t d, double eps,
                          const floating* P, const floating* T, const floating* W,
                          floating* dP) noexcept nogil:
    """dP = -w_r / (rows m) (t / (Np Nt) - [|p| > eps] cos p / Np^2) per vector,
    with Np = max(|p|, eps), Nt = max(|t|, eps)."""
    cdef Py_ssize_t r, v, k
    cdef const floating* p
    cdef const floating* t
    cdef floating* g
    cdef double dot, pp, tt, norm_p, np_, nt, cos, a, b, scale
    cdef floating x, y
    for r in range(rows):
        scale = -row_weight(W, r) / (rows * m)
        for v in range(m):
            p = P + (r * m + v) * d
            t = T + (r * m + v) * d
            g = dP + (r * m + v) * d
            _dot_norms(d, p, t, &dot, &pp, &tt)
            norm_p = sqrt(pp)
            nt = sqrt(tt)
            np_ = eps if norm_p <= eps else norm_p
            nt = eps if nt <= eps else nt
            cos = dot / (np_ * nt)
            a = scale / (np_ * nt)
            b = 0.0 if norm_p <= eps else scale * cos / (np_ * np_)
            for k in range(d):
                x = p[k]
                y = t[k]
                g[k] = <floating>(y * a - x * b)


def _check_cosine(P, T, W):
    _check_target_pair(P, T, W)
    if P.ndim < 2:
        raise ValueError(
            f"cosine similarity needs pred of shape (n, ..., features), got {P.shape}")
    if P.shape[P.ndim - 1] == 0:
        raise ValueError("cosine similarity of vectors of length 0 is undefined")


def _rows_vectors_dim(P):
    cdef Py_ssize_t rows = P.shape[0], d = P.shape[P.ndim - 1]
    return rows, P.size // (rows * d), d


def cosine_similarity(P, T, W=None, double eps=COSINE_EPSILON):
    """Minus the mean cosine similarity of ``P`` and ``T`` along their last
    axis, both (n, ..., d): -sum_r w_r sum_v cos(P_rv, T_rv) / (vectors)."""
    _check_cosine(P, T, W)
    rows, vectors, dim = _rows_vectors_dim(P)
    cdef Py_ssize_t r = rows, m = vectors, d = dim
    cdef void* pp = data_ptr(P)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef double loss
    if is_float32(P):
        with nogil:
            loss = cosine_forward(r, m, d, eps, <float*>pp, <float*>pt, <float*>pw)
    else:
        with nogil:
            loss = cosine_forward(r, m, d, eps, <double*>pp, <double*>pt, <double*>pw)
    return loss


def cosine_similarity_grad(P, T, dP, W=None, double eps=COSINE_EPSILON):
    """Gradient of ``cosine_similarity`` with respect to ``P``, into ``dP``."""
    _check_cosine(P, T, W)
    _check_grad_out(P, dP)
    rows, vectors, dim = _rows_vectors_dim(P)
    cdef Py_ssize_t r = rows, m = vectors, d = dim
    cdef void* pp = data_ptr(P)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef void* pd = data_ptr(dP)
    if is_float32(P):
        with nogil:
            cosine_backward(r, m, d, eps, <float*>pp, <float*>pt, <float*>pw, <float*>pd)
    else:
        with nogil:
            cosine_backward(r, m, d, eps, <double*>pp, <double*>pt, <double*>pw, <double*>pd)
    return dP
