# Rendered from norm.pyx.tp by setup.py: edit the template, not this file.
"""Normalisation: batch norm, and group norm with layer and RMS norm as cases.

Every input is channels-last. Batch norm views X as (m, c): c channels
with m values each (batch and spatial positions together) and normalises
each channel over its m values. Group norm views X as (n, s, c): n
samples, s positions, c channels in g groups of c / g, and normalises each
(sample, group) over its s * c / g values; layer norm is the case s = 1,
g = 1 (each row on its own), and RMS norm is that case without the mean.

Statistics are computed and kept in float64 whatever the input dtype:
``mean`` and ``invstd`` = 1 / sqrt(var + eps) (biased variance, two
passes), which the forward writes and the backward reads. Parameter
gradients are accumulated in float64 too.
"""
from cython cimport floating
from libc.math cimport sqrt, isfinite
import numpy as np
cimport numpy as cnp

from cdl._kernels._checks cimport (
    check_float_array, check_same_dtype, check_same_shape, data_ptr, is_float32, optional_ptr)

cnp.import_array()


# --- batch norm ------------------------------------------------------------------

cdef void bn_stats(Py_ssize_t m, Py_ssize_t c, const floating* X, double eps,
                   double* mean, double* var, double* invstd) noexcept nogil:
    """Per-channel mean, biased variance and 1 / sqrt(var + eps) of X (m, c); m >= 1."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    cdef double d
    for j in range(c):
        mean[j] = 0.0
        var[j] = 0.0
    for i in range(m):
        row = X + i * c
        for j in range(c):
            mean[j] += row[j]
    for j in range(c):
        mean[j] /= m
    for i in range(m):
        row = X + i * c
        for j in range(c):
            d = row[j] - mean[j]
            var[j] += d * d
    for j in range(c):
        var[j] /= m
        invstd[j] = 1.0 / sqrt(var[j] + eps)


cdef void bn_update_running(Py_ssize_t m, Py_ssize_t c, double momentum,
                            const double* mean, const double* var,
                            floating* running_mean, floating* running_var) noexcept nogil:
    """running = (1 - momentum) running + momentum batch, with the unbiased
    batch variance (as PyTorch); m >= 2."""
    cdef Py_ssize_t j
    cdef double unbias = <double>m / (m - 1)
    cdef double keep = 1.0 - momentum
    for j in range(c):
        running_mean[j] = <floating>(keep * running_mean[j] + momentum * mean[j])
        running_var[j] = <floating>(keep * running_var[j] + momentum * var[j] * unbias)


cdef void bn_running_stats(Py_ssize_t c, double eps, const floating* running_mean,
                           const floating* running_var, double* mean,
                           double* invstd) noexcept nogil:
    """mean = running_mean; invstd = 1 / sqrt(running_var + eps)."""
    cdef Py_ssize_t j
    for j in range(c):
        mean[j] = running_mean[j]
        invstd[j] = 1.0 / sqrt(<double>running_var[j] + eps)


cdef void bn_apply(Py_ssize_t m, Py_ssize_t c, const floating* X, const double* mean,
                   const double* invstd, const floating* gamma, const floating* beta,
                   double* scale, double* shift, floating* Y) noexcept nogil:
    """Y = (X - mean) * invstd * gamma + beta per channel; gamma, beta may be NULL
    (1 and 0). ``scale`` and ``shift`` are scratch of c values."""
    cdef Py_ssize_t i, j
    cdef const floating* x
    cdef floating* y
    for j in range(c):
        scale[j] = invstd[j]
        shift[j] = 0.0
    if gamma != NULL:
        for j in range(c):
            scale[j] *= gamma[j]
    if beta != NULL:
        for j in range(c):
            shift[j] = beta[j]
    for i in range(m):
        x = X + i * c
        y = Y + i * c
        for j in range(c):
            y[j] = <floating>((x[j] - mean[j]) * scale[j] + shift[j])


cdef void bn_backward(Py_ssize_t m, Py_ssize_t c, bint training, const floating* X,
                      const floating* dY, const double* mean, const double* invstd,
                      const floating* gamma, double* sum_dy, double* sum_dy_xhat,
                      double* scale, floating* dX, floating* dgamma,
                      floating* dbeta) noexcept nogil:
    """dbeta = sum dY; dgamma = sum dY xhat (sums over the m rows);
    dX = gamma invstd (dY - [sum dY + xhat sum dY xhat] / m), the bracket only
    in training, where the statistics are functions of X. With xhat =
    (X - mean) invstd. ``gamma``, ``dX``, ``dgamma``, ``dbeta`` may be NULL;
    ``sum_dy``, ``sum_dy_xhat``, ``scale`` are scratch of c values."""
    cdef Py_ssize_t i, j
    cdef const floating* x
    cdef const floating* dy
    cdef floating* dx
    cdef double g, xhat
    for j in range(c):
        sum_dy[j] = 0.0
        sum_dy_xhat[j] = 0.0
    for i in range(m):
        x = X + i * c
        dy = dY + i * c
        for j in range(c):
            g = dy[j]
            xhat = (x[j] - mean[j]) * invstd[j]
            sum_dy[j] += g
            sum_dy_xhat[j] += g * xhat
    if dgamma != NULL:
        for j in range(c):
            dgamma[j] = <floating>sum_dy_xhat[j]
    if dbeta != NULL:
        for j in range(c):
            dbeta[j] = <floating>sum_dy[j]
    if dX == NULL:
        return
    for j in range(c):
        scale[j] = invstd[j]
    if gamma != NULL:
        for j in range(c):
            scale[j] *= gamma[j]
    for j in range(c):
        if training:
            sum_dy[j] /= m
            sum_dy_xhat[j] /= m
        else:
            sum_dy[j] = 0.0
            sum_dy_xhat[j] = 0.0
    for i in range(m):
        x = X + i * c
        dy = dY + i * c
        dx = dX + i * c
        for j in range(c):
            xhat = (x[j] - mean[j]) * invstd[j]
            dx[j] = <floating>(scale[j] * (dy[j] - sum_dy[j] - xhat * sum_dy_xhat[j]))


# --- group norm (and layer norm, RMS norm) ------------------------------------------

cdef void gn_forward(Py_ssize_t n, Py_ssize_t s, Py_ssize_t c, Py_ssize_t g, bint rms,
                     double eps, const floating* X, const floating* gamma,
                     const floating* beta, double* mean, double* invstd,
                     floating* Y) noexcept nogil:
    """Statistics of each (sample, group) over its s * c / g values into mean and
    invstd (n, g), then Y = (X - mean) invstd gamma + beta. With ``rms`` the
    mean is 0 (the variance is then mean(X^2)). ``beta`` may be NULL."""
    cdef Py_ssize_t i, p, k, t, ch
    cdef Py_ssize_t gs = c // g
    cdef double count = <double>(s * gs)
    cdef const floating* xs
    cdef const floating* row
    cdef floating* out
    cdef double* mu
    cdef double* iv
    cdef double acc, d, mk, ik
    for i in range(n):
        xs = X + i * s * c
        mu = mean + i * g
        iv = invstd + i * g
        for k in range(g):
            mu[k] = 0.0
            iv[k] = 0.0
        if not rms:
            for p in range(s):
                for k in range(g):
                    row = xs + p * c + k * gs
                    acc = 0.0
                    for t in range(gs):
                        acc += row[t]
                    mu[k] += acc
            for k in range(g):
                mu[k] /= count
        for p in range(s):
            for k in range(g):
                row = xs + p * c + k * gs
                mk = mu[k]
                acc = 0.0
                for t in range(gs):
                    d = row[t] - mk
                    acc += d * d
                iv[k] += acc
        for k in range(g):
            iv[k] = 1.0 / sqrt(iv[k] / count + eps)
        for p in range(s):
            for k in range(g):
                row = xs + p * c + k * gs
                out = Y + i * s * c + p * c + k * gs
                mk = mu[k]
                ik = iv[k]
                ch = k * gs
                if beta != NULL:
                    for t in range(gs):
                        out[t] = <floating>((row[t] - mk) * ik * gamma[ch + t] + beta[ch + t])
                else:
                    for t in range(gs):
                        out[t] = <floating>((row[t] - mk) * ik * gamma[ch + t])


cdef void gn_backward(Py_ssize_t n, Py_ssize_t s, Py_ssize_t c, Py_ssize_t g, bint rms,
                      const floating* X, const floating* dY, const double* mean,
                      const double* invstd, const floating* gamma,
                      double* dgamma_acc, double* dbeta_acc, double* mean_g,
                      double* mean_gx, floating* dX, floating* dgamma,
                      floating* dbeta) noexcept nogil:
    """With xhat = (X - mean) invstd and G = dY gamma over each (sample, group):
    dX = invstd (G - mean(G) - xhat mean(G xhat)) (no mean(G) term with ``rms``);
    dgamma = sum dY xhat and dbeta = sum dY over samples and positions.
    ``dX`` and ``dbeta`` may be NULL. Scratch: ``dgamma_acc``, ``dbeta_acc`` (c
    values), ``mean_g``, ``mean_gx`` (g values)."""
    cdef Py_ssize_t i, p, k, t, ch, base
    cdef Py_ssize_t gs = c // g
    cdef double count = <double>(s * gs)
    cdef double dy, xhat, gv, mk, ik, sg, sgx, mg, mgx
    for ch in range(c):
        dgamma_acc[ch] = 0.0
        dbeta_acc[ch] = 0.0
    for i in range(n):
        for k in range(g):
            mk = mean[i * g + k]
            ik = invstd[i * g + k]
            sg = 0.0
            sgx = 0.0
            for p in range(s):
                base = i * s * c + p * c + k * gs
                for t in range(gs):
                    ch = k * gs + t
                    dy = dY[base + t]
                    xhat = (X[base + t] - mk) * ik
                    dgamma_acc[ch] += dy * xhat
                    dbeta_acc[ch] += dy
                    gv = dy * gamma[ch]
                    sg += gv
                    sgx += gv * xhat
            mean_g[k] = 0.0 if rms else sg / count
            mean_gx[k] = sgx / count
        if dX == NULL:
            continue
        for k in range(g):
            mk = mean[i * g + k]
            ik = invstd[i * g + k]
            mg = mean_g[k]
            mgx = mean_gx[k]
            for p in range(s):
                base = i * s * c + p * c + k * gs
                for t in range(gs):
                    ch = k * gs + t
                    xhat = (X[base + t] - mk) * ik
                    dX[base + t] = <floating>(ik * (dY[base + t] * gamma[ch] - mg - xhat * mgx))
    for ch in range(c):
        dgamma[ch] = <floating>dgamma_acc[ch]
    if dbeta != NULL:
        for ch in range(c):
            dbeta[ch] = <floating>dbeta_acc[ch]


# --- argument checks ---------------------------------------------------------------

cdef int _check_vector(a, str name, Py_ssize_t c, ref, bint writable) except -1:
    """A 1-D array of c values with the dtype of ``ref`` (X)."""
    check_float_array(a, name, 1, writable)
    check_same_dtype(ref, a, "X", name)
    if a.shape[0] != c:
        raise ValueError(f"{name} has shape {a.shape}, expected ({c},) for X of shape "
                         f"{ref.shape}")
    return 0


cdef int _check_stats(a, str name, tuple shape, ref, bint writable) except -1:
    """float64 statistics of the given shape."""
    check_float_array(a, name, len(shape), writable)
    if a.dtype != np.float64:
        raise TypeError(f"{name} holds statistics and must be float64, got {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape} for X of shape "
                         f"{ref.shape}")
    return 0


cdef int _check_like_x(a, str name, X, bint writable) except -1:
    check_float_array(a, name, X.ndim, writable)
    check_same_dtype(X, a, "X", name)
    check_same_shape(X, a, "X", name)
    return 0


def _check_eps(double eps):
    if not (eps >= 0.0 and isfinite(eps)):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")



# --- batch norm entry points ---------------------------------------------------------

def batchnorm_forward(X, gamma, beta, running_mean, running_var, mean, invstd, Y,
                      bint training, double momentum=0.1, double eps=1e-5):
    """Batch normalisation of X (m, c) over its rows, per channel, into Y.

    In training the batch statistics normalise X and the running ones are
    updated in place, PyTorch's rule: running = (1 - momentum) * running +
    momentum * batch, with the unbiased batch variance. At inference the
    running statistics normalise X and nothing is updated.

    Parameters
    ----------
    X : ndarray of shape (m, c)
        In training m must be at least 2 (the variance of one value is
        undefined).
    gamma, beta : ndarray of shape (c,) or None
        Scale and shift (None: 1 and 0).
    running_mean, running_var : ndarray of shape (c,), X's dtype
    mean, invstd : float64 ndarrays of shape (c,)
        Written: the statistics used, mean and 1 / sqrt(var + eps), for the
        backward pass.
    Y : ndarray of shape (m, c)
    training : bool
    momentum : float in [0, 1]
    eps : float >= 0
    """
    check_float_array(X, "X", 2, False)
    cdef Py_ssize_t m = X.shape[0], c = X.shape[1]
    if gamma is not None:
        _check_vector(gamma, "gamma", c, X, False)
    if beta is not None:
        _check_vector(beta, "beta", c, X, False)
    _check_vector(running_mean, "running_mean", c, X, training)
    _check_vector(running_var, "running_var", c, X, training)
    _check_stats(mean, "mean", (c,), X, True)
    _check_stats(invstd, "invstd", (c,), X, True)
    _check_like_x(Y, "Y", X, True)
    _check_eps(eps)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if training and m < 2:
        raise ValueError(
            f"batch norm in training needs more than one value per channel, got X of "
            f"shape {X.shape} (m = {m}); use a larger batch, or inference mode")
    scratch = np.empty(3 * c, dtype=np.float64)
    cdef double* pw = <double*>data_ptr(scratch)
    cdef void* px = data_ptr(X)
    cdef void* pg = optional_ptr(gamma)
    cdef void* pb = optional_ptr(beta)
    cdef void* prm = data_ptr(running_mean)
    cdef void* prv = data_ptr(running_var)
    cdef double* pmean = <double*>data_ptr(mean)
    cdef double* pinv = <double*>data_ptr(invstd)
    cdef void* py = data_ptr(Y)
    if is_float32(X):
        with nogil:
            if training:
                bn_stats(m, c, <float*>px, eps, pmean, pw, pinv)
                bn_update_running(m, c, momentum, pmean, pw, <float*>prm, <float*>prv)
            else:
                bn_running_stats(c, eps, <float*>prm, <float*>prv, pmean, pinv)
            bn_apply(m, c, <float*>px, pmean, pinv, <float*>pg, <float*>pb,
                     pw + c, pw + 2 * c, <float*>py)
    else:
        with nogil:
            if training:
                bn_stats(m, c, <double*>px, eps, pmean, pw, pinv)
                bn_update_running(m, c, momentum, pmean, pw, <double*>prm, <double*>prv)
            else:
                bn_running_stats(c, eps, <double*>prm, <double*>prv, pmean, pinv)
            bn_apply(m, c, <double*>px, pmean, pinv, <double*>pg, <double*>pb,
                     pw + c, pw + 2 * c, <double*>py)
    return Y


def batchnorm_backward(X, dY, mean, invstd, gamma, dX, dgamma, dbeta, bint training):
    """Gradients of ``batchnorm_forward``, written in place.

    Parameters
    ----------
    X, dY : ndarrays of shape (m, c): forward input, gradient w.r.t. Y
    mean, invstd : float64 (c,), as written by the forward pass
    gamma : ndarray of shape (c,) or None
    dX : ndarray of shape (m, c) or None, overwritten
    dgamma, dbeta : ndarrays of shape (c,) or None, overwritten
    training : bool
        The mode of the forward pass: in training the batch statistics
        depend on X and add two terms to dX; at inference dX is the affine
        map's gradient gamma * invstd * dY.
    """
    check_float_array(X, "X", 2, False)
    cdef Py_ssize_t m = X.shape[0], c = X.shape[1]
    _check_like_x(dY, "dY", X, False)
    _check_stats(mean, "mean", (c,), X, False)
    _check_stats(invstd, "invstd", (c,), X, False)
    if gamma is not None:
        _check_vector(gamma, "gamma", c, X, False)
    if dX is not None:
        _check_like_x(dX, "dX", X, True)
    if dgamma is not None:
        _check_vector(dgamma, "dgamma", c, X, True)
    if dbeta is not None:
        _check_vector(dbeta, "dbeta", c, X, True)
    scratch = np.empty(3 * c, dtype=np.float64)
    cdef double* pw = <double*>data_ptr(scratch)
    cdef void* px = data_ptr(X)
    cdef void* pdy = data_ptr(dY)
    cdef const double* pmean = <double*>data_ptr(mean)
    cdef const double* pinv = <double*>data_ptr(invstd)
    cdef void* pg = optional_ptr(gamma)
    cdef void* pdx = optional_ptr(dX)
    cdef void* pdg = optional_ptr(dgamma)
    cdef void* pdb = optional_ptr(dbeta)
    if is_float32(X):
        with nogil:
            bn_backward(m, c, training, <float*>px, <float*>pdy, pmean, pinv, <float*>pg,
                        pw, pw + c, pw + 2 * c, <float*>pdx, <float*>pdg, <float*>pdb)
    else:
        with nogil:
            bn_backward(m, c, training, <double*>px, <double*>pdy, pmean, pinv, <double*>pg,
                        pw, pw + c, pw + 2 * c, <double*>pdx, <double*>pdg, <double*>pdb)
    return dX


# --- group norm entry points ---------------------------------------------------------

cdef int _check_groups(X, Py_ssize_t groups) except -1:
    check_float_array(X, "X", 3, False)
    if groups < 1 or X.shape[2] % groups != 0:
        raise ValueError(f"groups must divide the {X.shape[2]} channels of X "
                         f"(shape {X.shape}), got {groups}")
    return 0


def group_norm_forward(X, gamma, beta, mean, invstd, Y, Py_ssize_t groups,
                       double eps=1e-5, bint rms=False):
    """Group normalisation of X (n, s, c) into Y; layer norm is s = 1, groups = 1.

    Each sample's channels form ``groups`` contiguous groups of c / groups;
    each (sample, group) is normalised over its s * c / groups values, then
    scaled by ``gamma`` and shifted by ``beta`` per channel.

    Parameters
    ----------
    X, Y : ndarrays of shape (n, s, c)
    gamma : ndarray of shape (c,)
    beta : ndarray of shape (c,) or None (no shift)
    mean, invstd : float64 ndarrays of shape (n, groups), written
    groups : int dividing c
    eps : float >= 0
    rms : bool
        RMS norm: no mean subtraction, X / sqrt(mean(X^2) + eps) * gamma
        (``mean`` is written as zeros).
    """
    _check_groups(X, groups)
    cdef Py_ssize_t n = X.shape[0], s = X.shape[1], c = X.shape[2]
    _check_vector(gamma, "gamma", c, X, False)
    if beta is not None:
        _check_vector(beta, "beta", c, X, False)
    _check_stats(mean, "mean", (n, groups), X, True)
    _check_stats(invstd, "invstd", (n, groups), X, True)
    _check_like_x(Y, "Y", X, True)
    _check_eps(eps)
    if s * (c // groups) == 0:
        raise ValueError(f"X of shape {X.shape} has groups without values")
    cdef void* px = data_ptr(X)
    cdef void* pg = data_ptr(gamma)
    cdef void* pb = optional_ptr(beta)
    cdef double* pmean = <double*>data_ptr(mean)
    cdef double* pinv = <double*>data_ptr(invstd)
    cdef void* py = data_ptr(Y)
    if is_float32(X):
        with nogil:
            gn_forward(n, s, c, groups, rms, eps, <float*>px, <float*>pg, <float*>pb,
                       pmean, pinv, <float*>py)
    else:
        with nogil:
            gn_forward(n, s, c, groups, rms, eps, <double*>px, <double*>pg, <double*>pb,
                       pmean, pinv, <double*>py)
    return Y


def group_norm_backward(X, dY, mean, invstd, gamma, dX, dgamma, dbeta, Py_ssize_t groups,
                        bint rms=False):
    """Gradients of ``group_norm_forward``, written in place.

    Parameters
    ----------
    X, dY : ndarrays of shape (n, s, c): forward input, gradient w.r.t. Y
    mean, invstd : float64 (n, groups), as written by the forward pass
    gamma : ndarray of shape (c,)
    dX : ndarray of shape (n, s, c) or None, overwritten
    dgamma : ndarray of shape (c,), overwritten
    dbeta : ndarray of shape (c,) or None, overwritten
    groups : int
    rms : bool, as in the forward pass
    """
    _check_groups(X, groups)
    cdef Py_ssize_t n = X.shape[0], s = X.shape[1], c = X.shape[2]
    _check_like_x(dY, "dY", X, False)
    _check_stats(mean, "mean", (n, groups), X, False)
    _check_stats(invstd, "invstd", (n, groups), X, False)
    _check_vector(gamma, "gamma", c, X, False)
    if dX is not None:
        _check_like_x(dX, "dX", X, True)
    _check_vector(dgamma, "dgamma", c, X, True)
    if dbeta is not None:
        _check_vector(dbeta, "dbeta", c, X, True)
    scratch = np.empty(2 * c + 2 * groups, dtype=np.float64)
    cdef double* pw = <double*>data_ptr(scratch)
    cdef void* px = data_ptr(X)
    cdef void* pdy = data_ptr(dY)
    cdef const double* pmean = <double*>data_ptr(mean)
    cdef const double* pinv = <double*>data_ptr(invstd)
    cdef void* pg = data_ptr(gamma)
    cdef void* pdx = optional_ptr(dX)
    cdef void* pdg = data_ptr(dgamma)
    cdef void* pdb = optional_ptr(dbeta)
    if is_float32(X):
        with nogil:
            gn_backward(n, s, c, groups, rms, <float*>px, <float*>pdy, pmean, pinv,
                        <float*>pg, pw, pw + c, pw + 2 * c, pw + 2 * c + groups,
                        <float*>pdx, <float*>pdg, <float*>pdb)
    else:
        with nogil:
            gn_backward(n, s, c, groups, rms, <double*>px, <double*>pdy, pmean, pinv,
                        <double*>pg, pw, pw + c, pw + 2 * c, pw + 2 * c + groups,
                        <double*>pdx, <double*>pdg, <double*>pdb)
    return dX
