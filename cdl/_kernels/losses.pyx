# Rendered from losses.pyx.tp by setup.py: edit the template, not this file.
"""Loss functions (mean over all elements or over the batch) and gradients.

Sums are accumulated in float64 whatever the input dtype, so a float32
loss over a large batch does not lose precision. Every backward returns
the gradient of the *mean*, i.e. it includes the 1/n factor.
"""
from cython cimport floating
from libc.stdint cimport int64_t
import numpy as np
cimport numpy as cnp

from cdl._kernels._checks cimport (
    check_float_array, check_int64_array, check_same_dtype, check_same_shape, data_ptr,
    is_float32, optional_ptr)
from cdl._kernels._math cimport f_exp, f_log, f_log1p, f_abs, f_sigmoid

cnp.import_array()

#: Regression loss names mapped to kernel codes.
KINDS = {"mse": LOSS_MSE, "mae": LOSS_MAE, "huber": LOSS_HUBER}


# --- regression: MSE, MAE, Huber -------------------------------------------

cdef double regression_forward(int kind, double delta, Py_ssize_t rows, Py_ssize_t cols,
                               const floating* P, const floating* T,
                               const floating* W) noexcept nogil:
    """sum(w_row * l(P - T)) / n with l = d^2, |d| or Huber(delta); W may be NULL."""
    cdef Py_ssize_t r, j, i
    cdef double d, ad, row_total, total = 0.0
    for r in range(rows):
        row_total = 0.0
        for j in range(cols):
            i = r * cols + j
            d = <double>P[i] - <double>T[i]
            if kind == LOSS_MSE:
                row_total += d * d
            elif kind == LOSS_MAE:
                row_total += d if d >= 0 else -d
            else:
                ad = d if d >= 0 else -d
                row_total += 0.5 * d * d if ad < delta else delta * (ad - 0.5 * delta)
        total += row_weight(W, r) * row_total
    return total / (rows * cols)


cdef void regression_backward(int kind, double delta, Py_ssize_t rows, Py_ssize_t cols,
                              const floating* P, const floating* T, const floating* W,
                              floating* dP) noexcept nogil:
    """dP = w_row * l'(P - T) / n. NaN in P - T gives NaN."""
    cdef Py_ssize_t r, j, i
    cdef double d, scale
    for r in range(rows):
        scale = row_weight(W, r) / (rows * cols)
        for j in range(cols):
            i = r * cols + j
            d = <double>P[i] - <double>T[i]
            if kind == LOSS_MSE:
                dP[i] = <floating>(2.0 * d * scale)
            elif kind == LOSS_MAE:
                # sign(d), propagating NaN (d != d) so that it is not hidden.
                dP[i] = <floating>(scale if d > 0 else (-scale if d < 0 else d * scale))
            else:
                d = delta if d >= delta else d
                d = -delta if d <= -delta else d
                dP[i] = <floating>(d * scale)


def _rows_cols(P):
    """Rows (samples, weighted together) and elements per row of a prediction."""
    rows = P.shape[0] if P.ndim > 0 else 1
    return rows, (P.size // rows if rows else 0)


def _check_weights(W, P, str name="pred"):
    """Per-sample weights: None, or a 1-D array of P's dtype with one per row."""
    if W is None:
        return
    check_float_array(W, "sample_weight", 1, False)
    check_same_dtype(P, W, name, "sample_weight")
    rows = P.shape[0] if P.ndim > 0 else 1
    if W.shape[0] != rows:
        raise ValueError(
            f"sample_weight has {W.shape[0]} elements, expected one per sample ({rows})")



def _check_pair(P, T):
    check_float_array(P, "pred", -1, False)
    check_float_array(T, "target", -1, False)
    check_same_dtype(P, T, "pred", "target")
    check_same_shape(P, T, "pred", "target")
    if P.size == 0:
        raise ValueError("the loss of an empty batch is undefined")


def _check_kind(int kind):
    if kind < LOSS_MSE or kind > LOSS_HUBER:
        raise ValueError(f"unknown regression loss code {kind}")


def regression_loss(int kind, P, T, double delta=1.0, W=None):
    """Mean regression loss of predictions ``P`` against targets ``T``.

    ``kind`` is LOSS_MSE, LOSS_MAE or LOSS_HUBER; ``delta`` is Huber's
    threshold between its quadratic and linear parts. ``W``, optional,
    weights each sample (row); the sum is still divided by the number of
    elements.
    """
    _check_kind(kind)
    _check_pair(P, T)
    _check_weights(W, P)
    rows, cols = _rows_cols(P)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* pp = data_ptr(P)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef double loss
    if is_float32(P):
        with nogil:
            loss = regression_forward(kind, delta, r, c, <float*>pp, <float*>pt, <float*>pw)
    else:
        with nogil:
            loss = regression_forward(kind, delta, r, c, <double*>pp, <double*>pt, <double*>pw)
    return loss


def regression_grad(int kind, P, T, dP, double delta=1.0, W=None):
    """Gradient of ``regression_loss`` with respect to ``P``, into ``dP``."""
    _check_kind(kind)
    _check_pair(P, T)
    _check_weights(W, P)
    check_float_array(dP, "dP", -1, True)
    check_same_dtype(P, dP, "pred", "dP")
    check_same_shape(P, dP, "pred", "dP")
    rows, cols = _rows_cols(P)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* pp = data_ptr(P)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef void* pd = data_ptr(dP)
    if is_float32(P):
        with nogil:
            regression_backward(kind, delta, r, c, <float*>pp, <float*>pt, <float*>pw,
                                <float*>pd)
    else:
        with nogil:
            regression_backward(kind, delta, r, c, <double*>pp, <double*>pt, <double*>pw,
                                <double*>pd)
    return dP


# --- softmax cross-entropy from logits ------------------------------------

cdef double _log_softmax_row(Py_ssize_t c, const floating* z, floating* p) noexcept nogil:
    """p = softmax(z); return log(sum(exp(z))) (log-sum-exp, max-shifted)."""
    cdef Py_ssize_t j
    cdef floating zmax = z[0]
    cdef double total = 0.0
    cdef floating e, x
    for j in range(1, c):
        x = z[j]
        zmax = x if x > zmax else zmax
    for j in range(c):
        e = f_exp(z[j] - zmax)
        p[j] = e
        total += e
    for j in range(c):
        p[j] = <floating>(p[j] / total)
    return zmax + f_log(<floating>total) if floating is float else zmax + f_log(total)


cdef double ce_labels_forward(Py_ssize_t n, Py_ssize_t c, const floating* Z,
                              const int64_t* labels, const floating* W,
                              floating* P) noexcept nogil:
    """sum_i w_i [logsumexp(Z_i) - Z_i[label_i]] / n; P = softmax(Z)."""
    cdef Py_ssize_t i
    cdef double lse, total = 0.0
    for i in range(n):
        lse = _log_softmax_row(c, Z + i * c, P + i * c)
        total += row_weight(W, i) * (lse - Z[i * c + labels[i]])
    return total / n


cdef void ce_labels_backward(Py_ssize_t n, Py_ssize_t c, const floating* P,
                             const int64_t* labels, const floating* W,
                             floating* dZ) noexcept nogil:
    """dZ = w_i (P - onehot(labels)) / n"""
    cdef Py_ssize_t i, j
    cdef floating scale
    for i in range(n):
        scale = <floating>(row_weight(W, i) / n)
        for j in range(c):
            dZ[i * c + j] = P[i * c + j] * scale
        dZ[i * c + labels[i]] -= scale


cdef double ce_soft_forward(Py_ssize_t n, Py_ssize_t c, const floating* Z,
                            const floating* T, const floating* W, const floating* CW,
                            floating* P) noexcept nogil:
    """sum_i w_i sum_j cw_j T_ij [logsumexp(Z_i) - Z_ij] / n; P = softmax(Z).

    CW (class weights, length c) may be NULL for all ones; the divisor is n
    either way (PyTorch's rule for probability targets).
    """
    cdef Py_ssize_t i, j
    cdef double lse, row_total, total = 0.0
    for i in range(n):
        lse = _log_softmax_row(c, Z + i * c, P + i * c)
        row_total = 0.0
        if CW == NULL:
            for j in range(c):
                row_total += T[i * c + j] * (lse - Z[i * c + j])
        else:
            for j in range(c):
                row_total += <double>CW[j] * T[i * c + j] * (lse - Z[i * c + j])
        total += row_weight(W, i) * row_total
    return total / n


cdef void ce_soft_backward(Py_ssize_t n, Py_ssize_t c, const floating* P,
                           const floating* T, const floating* W, const floating* CW,
                           floating* dZ) noexcept nogil:
    """dZ = w_i (P * sum_j cw_j T_ij - cw T) / n; CW may be NULL (all ones)."""
    cdef Py_ssize_t i, j
    cdef double mass, scale, t
    for i in range(n):
        scale = row_weight(W, i) / n
        mass = 0.0
        if CW == NULL:
            for j in range(c):
                mass += T[i * c + j]
            for j in range(c):
                dZ[i * c + j] = <floating>((P[i * c + j] * mass - T[i * c + j]) * scale)
        else:
            for j in range(c):
                mass += <double>CW[j] * T[i * c + j]
            for j in range(c):
                t = <double>CW[j] * T[i * c + j]
                dZ[i * c + j] = <floating>((P[i * c + j] * mass - t) * scale)


cdef double class_weight_total(Py_ssize_t n, const int64_t* labels,
                               const floating* CW) noexcept nogil:
    """sum_i CW[labels[i]] in float64 (n when CW is NULL): the divisor of a
    class-weighted mean, as PyTorch's NLLLoss/CrossEntropyLoss(weight=...)."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    if CW == NULL:
        return <double>n
    for i in range(n):
        total += CW[labels[i]]
    return total


cdef double ce_labels_cw_forward(Py_ssize_t n, Py_ssize_t c, const floating* Z,
                                 const int64_t* labels, const floating* CW,
                                 double smoothing, const floating* W,
                                 floating* P) noexcept nogil:
    """Class-weighted, label-smoothed softmax cross-entropy; P = softmax(Z).

    With l_ij = logsumexp(Z_i) - Z_ij, y_i = labels[i] and s = smoothing::

        sum_i w_i [(1 - s) cw_{y_i} l_{i,y_i} + (s / c) sum_j cw_j l_ij]
        / sum_i cw_{y_i}

    which is PyTorch's CrossEntropyLoss(weight=cw, label_smoothing=s) with
    mean reduction (times the per-sample weights w_i). CW and W may be NULL.
    """
    cdef Py_ssize_t i, j
    cdef int64_t y
    cdef double lse, row_total, smooth, total = 0.0
    cdef double den = class_weight_total(n, labels, CW)
    cdef double cwy
    for i in range(n):
        lse = _log_softmax_row(c, Z + i * c, P + i * c)
        y = labels[i]
        cwy = row_weight(CW, y)
        row_total = (1.0 - smoothing) * cwy * (lse - Z[i * c + y])
        if smoothing != 0.0:
            smooth = 0.0
            if CW == NULL:
                for j in range(c):
                    smooth += lse - Z[i * c + j]
            else:
                for j in range(c):
                    smooth += <double>CW[j] * (lse - Z[i * c + j])
            row_total += smoothing / c * smooth
        total += row_weight(W, i) * row_total
    return total / den


cdef void ce_labels_cw_backward(Py_ssize_t n, Py_ssize_t c, const floating* P,
                                const int64_t* labels, const floating* CW,
                                double smoothing, const floating* W,
                                floating* dZ) noexcept nogil:
    """dZ_ij = w_i (P_ij m_i - t_ij) / sum_k cw_{y_k}, with the weighted target
    t_ij = (1 - s) cw_{y_i} [j == y_i] + (s / c) cw_j and m_i = sum_j t_ij."""
    cdef Py_ssize_t i, j
    cdef int64_t y
    cdef double den = class_weight_total(n, labels, CW)
    cdef double cw_sum = 0.0, per_class = smoothing / c
    cdef double scale, hard, mass, t
    if CW == NULL:
        cw_sum = <double>c
    else:
        for j in range(c):
            cw_sum += CW[j]
    for i in range(n):
        scale = row_weight(W, i) / den
        y = labels[i]
        hard = (1.0 - smoothing) * row_weight(CW, y)
        mass = hard + per_class * cw_sum
        if CW == NULL:
            for j in range(c):
                t = per_class + (hard if j == y else 0.0)
                dZ[i * c + j] = <floating>((P[i * c + j] * mass - t) * scale)
        else:
            for j in range(c):
                t = per_class * CW[j] + (hard if j == y else 0.0)
                dZ[i * c + j] = <floating>((P[i * c + j] * mass - t) * scale)


cdef Py_ssize_t first_bad_label(Py_ssize_t n, Py_ssize_t c,
                                 const int64_t* labels) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if labels[i] < 0 or labels[i] >= c:
            return i
    return -1


def _check_logits(Z, P):
    check_float_array(Z, "logits", 2, False)
    check_float_array(P, "probs", 2, True)
    check_same_dtype(Z, P, "logits", "probs")
    check_same_shape(Z, P, "logits", "probs")
    if Z.shape[0] == 0:
        raise ValueError("the loss of an empty batch is undefined")
    if Z.shape[1] == 0:
        raise ValueError("logits must have at least one class column")


def _check_labels(labels, Py_ssize_t n, Py_ssize_t c):
    check_int64_array(labels, "labels", -1, False)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    cdef const int64_t* pl = <const int64_t*>data_ptr(labels)
    cdef Py_ssize_t bad
    with nogil:
        bad = first_bad_label(n, c, pl)
    if bad >= 0:
        raise ValueError(
            f"label {labels[bad]} at position {bad} is out of range for {c} classes")


def cross_entropy_labels(Z, labels, P, W=None):
    """Mean softmax cross-entropy of logits ``Z`` (n, c) against int64 labels.

    Writes softmax(Z) into ``P`` (kept for the backward pass) and returns
    the loss as a float. ``W``, optional, weights each sample; the sum is
    divided by n either way.
    """
    _check_logits(Z, P)
    _check_weights(W, Z, "logits")
    cdef Py_ssize_t n = Z.shape[0], c = Z.shape[1]
    _check_labels(labels, n, c)
    cdef void* pz = data_ptr(Z)
    cdef void* pp = data_ptr(P)
    cdef void* pw = optional_ptr(W)
    cdef const int64_t* pl = <const int64_t*>data_ptr(labels)
    cdef double loss
    if is_float32(Z):
        with nogil:
            loss = ce_labels_forward(n, c, <float*>pz, pl, <float*>pw, <float*>pp)
    else:
        with nogil:
            loss = ce_labels_forward(n, c, <double*>pz, pl, <double*>pw, <double*>pp)
    return loss


def cross_entropy_labels_grad(P, labels, dZ, W=None):
    """Gradient of ``cross_entropy_labels`` w.r.t. the logits, from P = softmax(Z)."""
    _check_logits(P, dZ)
    _check_weights(W, P, "probs")
    cdef Py_ssize_t n = P.shape[0], c = P.shape[1]
    _check_labels(labels, n, c)
    cdef void* pp = data_ptr(P)
    cdef void* pd = data_ptr(dZ)
    cdef void* pw = optional_ptr(W)
    cdef const int64_t* pl = <const int64_t*>data_ptr(labels)
    if is_float32(P):
        with nogil:
            ce_labels_backward(n, c, <float*>pp, pl, <float*>pw, <float*>pd)
    else:
        with nogil:
            ce_labels_backward(n, c, <double*>pp, pl, <double*>pw, <double*>pd)
    return dZ


def cross_entropy_soft(Z, T, P, W=None, CW=None):
    """Mean softmax cross-entropy of logits ``Z`` against class probabilities ``T``.

    Both (n, c). Writes softmax(Z) into ``P`` and returns the loss; ``W``,
    optional, weights each sample, and ``CW``, optional (length c), each
    class: sum_i w_i sum_j cw_j T_ij (logsumexp(Z_i) - Z_ij) / n.
    """
    _check_logits(Z, P)
    _check_weights(W, Z, "logits")
    check_float_array(T, "target", 2, False)
    check_same_dtype(Z, T, "logits", "target")
    check_same_shape(Z, T, "logits", "target")
    cdef Py_ssize_t n = Z.shape[0], c = Z.shape[1]
    _check_class_weights(CW, Z, c, "logits")
    cdef void* pz = data_ptr(Z)
    cdef void* pt = data_ptr(T)
    cdef void* pp = data_ptr(P)
    cdef void* pw = optional_ptr(W)
    cdef void* pc = optional_ptr(CW)
    cdef double loss
    if is_float32(Z):
        with nogil:
            loss = ce_soft_forward(n, c, <float*>pz, <float*>pt, <float*>pw, <float*>pc,
                                   <float*>pp)
    else:
        with nogil:
            loss = ce_soft_forward(n, c, <double*>pz, <double*>pt, <double*>pw, <double*>pc,
                                   <double*>pp)
    return loss


def cross_entropy_soft_grad(P, T, dZ, W=None, CW=None):
    """Gradient of ``cross_entropy_soft`` w.r.t. the logits, from P = softmax(Z)."""
    _check_logits(P, dZ)
    _check_weights(W, P, "probs")
    check_float_array(T, "target", 2, False)
    check_same_dtype(P, T, "probs", "target")
    check_same_shape(P, T, "probs", "target")
    cdef Py_ssize_t n = P.shape[0], c = P.shape[1]
    _check_class_weights(CW, P, c, "probs")
    cdef void* pp = data_ptr(P)
    cdef void* pt = data_ptr(T)
    cdef void* pd = data_ptr(dZ)
    cdef void* pw = optional_ptr(W)
    cdef void* pc = optional_ptr(CW)
    if is_float32(P):
        with nogil:
            ce_soft_backward(n, c, <float*>pp, <float*>pt, <float*>pw, <float*>pc, <float*>pd)
    else:
        with nogil:
            ce_soft_backward(n, c, <double*>pp, <double*>pt, <double*>pw, <double*>pc, <double*>pd)
    return dZ


# --- class weights (PyTorch's weight=) ---------------------------------------

def _check_class_weights(CW, P, Py_ssize_t c, str name="pred"):
    """Class weights: None, or a 1-D array of P's dtype with one per class."""
    if CW is None:
        return
    check_float_array(CW, "class_weight", 1, False)
    check_same_dtype(P, CW, name, "class_weight")
    if CW.shape[0] != c:
        raise ValueError(
            f"class_weight has {CW.shape[0]} elements, expected one per class ({c})")


def _class_weight_total(CW, labels):
    """sum_i CW[labels[i]] for checked, in-range ``labels``; a zero total is an error."""
    cdef Py_ssize_t n = labels.shape[0]
    cdef const int64_t* pl = <const int64_t*>data_ptr(labels)
    cdef void* pc = optional_ptr(CW)
    cdef double total
    if CW is None:
        return <double>n
    if is_float32(CW):
        with nogil:
            total = class_weight_total(n, pl, <float*>pc)
    else:
        with nogil:
            total = class_weight_total(n, pl, <double*>pc)
    if not total > 0.0:
        raise ValueError(
            "the class weights of this batch's labels sum to 0, so their weighted mean "
            "is undefined (every sample belongs to a class of weight 0)")
    return total


def cross_entropy_labels_weighted(Z, labels, P, CW=None, double smoothing=0.0, W=None):
    """Class-weighted, label-smoothed softmax cross-entropy of logits ``Z`` (n, c)
    against int64 labels, as PyTorch's
    ``cross_entropy(Z, labels, weight=CW, label_smoothing=smoothing)``.

    With l_ij = logsumexp(Z_i) - Z_ij and s = ``smoothing``::

        sum_i w_i [(1 - s) cw_{y_i} l_{i,y_i} + (s / c) sum_j cw_j l_ij] / sum_i cw_{y_i}

    The divisor is the sum of the class weights of the labels (n when ``CW``
    is None); per-sample weights ``W`` do not change it. Writes softmax(Z)
    into ``P`` and returns the loss.
    """
    _check_logits(Z, P)
    _check_weights(W, Z, "logits")
    cdef Py_ssize_t n = Z.shape[0], c = Z.shape[1]
    _check_labels(labels, n, c)
    _check_class_weights(CW, Z, c, "logits")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing}")
    _class_weight_total(CW, labels)
    cdef void* pz = data_ptr(Z)
    cdef void* pp = data_ptr(P)
    cdef void* pw = optional_ptr(W)
    cdef void* pc = optional_ptr(CW)
    cdef const int64_t* pl = <const int64_t*>data_ptr(labels)
    cdef double loss
    if is_float32(Z):
        with nogil:
            loss = ce_labels_cw_forward(n, c, <float*>pz, pl, <float*>pc, smoothing,
                                        <float*>pw, <float*>pp)
    else:
        with nogil:
            loss = ce_labels_cw_forward(n, c, <double*>pz, pl, <double*>pc, smoothing,
                                        <double*>pw, <double*>pp)
    return loss


def cross_entropy_labels_weighted_grad(P, labels, dZ, CW=None, double smoothing=0.0,
                                       W=None):
    """Gradient of ``cross_entropy_labels_weighted`` w.r.t. the logits, from
    P = softmax(Z), into ``dZ``."""
    _check_logits(P, dZ)
    _check_weights(W, P, "probs")
    cdef Py_ssize_t n = P.shape[0], c = P.shape[1]
    _check_labels(labels, n, c)
    _check_class_weights(CW, P, c, "probs")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing}")
    _class_weight_total(CW, labels)
    cdef void* pp = data_ptr(P)
    cdef void* pd = data_ptr(dZ)
    cdef void* pw = optional_ptr(W)
    cdef void* pc = optional_ptr(CW)
    cdef const int64_t* pl = <const int64_t*>data_ptr(labels)
    if is_float32(P):
        with nogil:
            ce_labels_cw_backward(n, c, <float*>pp, pl, <float*>pc, smoothing,
                                  <float*>pw, <float*>pd)
    else:
        with nogil:
            ce_labels_cw_backward(n, c, <double*>pp, pl, <double*>pc, smoothing,
                                  <double*>pw, <double*>pd)
    return dZ


# --- binary cross-entropy from logits --------------------------------------

cdef double bce_forward(Py_ssize_t rows, Py_ssize_t cols, const floating* Z,
                        const floating* T, const floating* W) noexcept nogil:
    """sum(w_row (max(z, 0) - z t + log(1 + exp(-|z|)))) / n, stable for any |z|."""
    cdef Py_ssize_t r, j, i
    cdef double row_total, total = 0.0
    cdef floating z
    for r in range(rows):
        row_total = 0.0
        for j in range(cols):
            i = r * cols + j
            z = Z[i]
            row_total += (z if z > 0 else 0) - <double>z * T[i] + f_log1p(f_exp(-f_abs(z)))
        total += row_weight(W, r) * row_total
    return total / (rows * cols)


cdef void bce_backward(Py_ssize_t rows, Py_ssize_t cols, const floating* Z,
                       const floating* T, const floating* W, floating* dZ) noexcept nogil:
    """dZ = w_row (sigmoid(Z) - T) / n"""
    cdef Py_ssize_t r, j, i
    cdef double scale
    for r in range(rows):
        scale = row_weight(W, r) / (rows * cols)
        for j in range(cols):
            i = r * cols + j
            dZ[i] = <floating>((f_sigmoid(Z[i]) - T[i]) * scale)


def binary_cross_entropy(Z, T, W=None):
    """Mean binary cross-entropy of logits ``Z`` against targets ``T`` in [0, 1];
    ``W``, optional, weights each sample (row)."""
    _check_pair(Z, T)
    _check_weights(W, Z)
    rows, cols = _rows_cols(Z)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* pz = data_ptr(Z)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef double loss
    if is_float32(Z):
        with nogil:
            loss = bce_forward(r, c, <float*>pz, <float*>pt, <float*>pw)
    else:
        with nogil:
            loss = bce_forward(r, c, <double*>pz, <double*>pt, <double*>pw)
    return loss


def binary_cross_entropy_grad(Z, T, dZ, W=None):
    """Gradient of ``binary_cross_entropy`` with respect to the logits, into ``dZ``."""
    _check_pair(Z, T)
    _check_weights(W, Z)
    check_float_array(dZ, "dZ", -1, True)
    check_same_dtype(Z, dZ, "logits", "dZ")
    check_same_shape(Z, dZ, "logits", "dZ")
    rows, cols = _rows_cols(Z)
    cdef Py_ssize_t r = rows, c = cols
    cdef void* pz = data_ptr(Z)
    cdef void* pt = data_ptr(T)
    cdef void* pw = optional_ptr(W)
    cdef void* pd = data_ptr(dZ)
    if is_float32(Z):
        with nogil:
            bce_backward(r, c, <float*>pz, <float*>pt, <float*>pw, <float*>pd)
    else:
        with nogil:
            bce_backward(r, c, <double*>pz, <double*>pt, <double*>pw, <double*>pd)
    return dZ
