# Rendered from dense.pyx.tp by setup.py: edit the template, not this file.
"""Fully connected layer: Y = f(X @ W + b) and its gradients.

Shapes: X (n, d_in), W (d_in, d_out), b (d_out,), Z and Y (n, d_out).
The bias add and the activation are fused into the forward call, and the
activation derivative into the backward call, so a Dense layer costs one
Python-level kernel call each way.
"""
from cython cimport floating

from cdl._kernels._blas cimport _gemm, _gemv, NoTrans, Trans, blas_int, check_blas_int
from cdl._kernels._checks cimport (
    check_float_array, check_same_dtype, data_ptr, is_float32)
from cdl._kernels.activations cimport (
    act_forward, act_backward, backward_needs_input, ACT_LINEAR, ACT_LAST)


cdef void dense_forward(Py_ssize_t n, Py_ssize_t d_in, Py_ssize_t d_out,
                        const floating* X, const floating* W, const floating* b,
                        int act, double param,
                        floating* Z, floating* Y) noexcept nogil:
    """Z = X @ W + b; Y = f(Z). ``b`` may be NULL; ``Z`` may be ``Y``."""
    cdef Py_ssize_t i, j
    cdef floating beta = 0
    if n == 0:
        return
    if b != NULL:
        for i in range(n):
            for j in range(d_out):
                Z[i * d_out + j] = b[j]
        beta = 1
    if n == 1:
        # One sample (online prediction): a matrix-vector product reads W once
        # with less overhead than a one-row matrix product.
        _gemv(Trans, <blas_int>d_in, <blas_int>d_out, <floating>1, W, <blas_int>d_out,
              X, 1, beta, Z, 1)
    else:
        _gemm(NoTrans, NoTrans, <blas_int>n, <blas_int>d_out, <blas_int>d_in,
              <floating>1, X, <blas_int>d_in, W, <blas_int>d_out, beta, Z, <blas_int>d_out)
    if act != ACT_LINEAR or Z != Y:
        act_forward(act, param, n, d_out, Z, Y)


cdef void dense_backward(Py_ssize_t n, Py_ssize_t d_in, Py_ssize_t d_out,
                         const floating* X, const floating* W,
                         int act, double param, const floating* Z, const floating* Y,
                         const floating* dY, floating* dZ,
                         floating* dW, floating* db, floating* dX) noexcept nogil:
    """dZ = f'(Z) * dY; dW = X^T dZ; db = sum_rows dZ; dX = dZ W^T.

    ``db`` and ``dX`` may be NULL (no bias, first layer). With a linear
    activation ``dZ`` may be ``dY``.
    """
    cdef Py_ssize_t i, j
    cdef const floating* grad = dY
    if act != ACT_LINEAR:
        act_backward(act, param, n, d_out, Z, Y, dY, dZ)
        grad = dZ
    # dW (d_in, d_out) = X^T (d_in, n) @ dZ (n, d_out); k = n may be 0.
    _gemm(Trans, NoTrans, <blas_int>d_in, <blas_int>d_out, <blas_int>n,
          <floating>1, X, <blas_int>d_in, grad, <blas_int>d_out,
          <floating>0, dW, <blas_int>d_out)
    if db != NULL:
        for j in range(d_out):
            db[j] = 0
        for i in range(n):
            for j in range(d_out):
                db[j] += grad[i * d_out + j]
    if dX != NULL and n > 0:
        _gemm(NoTrans, Trans, <blas_int>n, <blas_int>d_in, <blas_int>d_out,
              <floating>1, grad, <blas_int>d_out, W, <blas_int>d_out,
              <floating>0, dX, <blas_int>d_in)


cdef int _check_matrix(a, str name, Py_ssize_t rows, Py_ssize_t cols, ref,
                       bint writable) except -1:
    check_float_array(a, name, 2, writable)
    check_same_dtype(ref, a, "X", name)
    if a.shape[0] != rows or a.shape[1] != cols:
        raise ValueError(f"{name} has shape {a.shape}, expected ({rows}, {cols})")
    return 0


cdef int _check_bias(b, str name, Py_ssize_t d_out, ref, bint writable) except -1:
    check_float_array(b, name, 1, writable)
    check_same_dtype(ref, b, "X", name)
    if b.shape[0] != d_out:
        raise ValueError(f"{name} has shape {b.shape}, expected ({d_out},)")
    return 0


cdef int _check_sizes(Py_ssize_t n, Py_ssize_t d_in, Py_ssize_t d_out) except -1:
    check_blas_int(n, "dense batch size")
    check_blas_int(d_in, "dense input width")
    check_blas_int(d_out, "dense output width")
    return 0


def _check_activation(int act):
    if act < ACT_LINEAR or act > ACT_LAST:
        raise ValueError(f"unknown activation code {act}")


def forward(X, W, b, Z, Y, int act=ACT_LINEAR, double param=0.0):
    """Z = X @ W + b and Y = f(Z), written in place.

    Parameters
    ----------
    X : ndarray of shape (n, d_in)
    W : ndarray of shape (d_in, d_out)
    b : ndarray of shape (d_out,) or None
    Z : ndarray of shape (n, d_out)
        Pre-activation, kept for the backward pass. May be ``Y`` itself
        when the activation's backward reads only its output.
    Y : ndarray of shape (n, d_out)
    act : int
        Activation code from ``cdl._kernels.activations.CODES``.
    param : float
        Leaky ReLU slope or ELU alpha.
    """
    _check_activation(act)
    check_float_array(X, "X", 2, False)
    cdef Py_ssize_t n = X.shape[0], d_in = X.shape[1]
    check_float_array(W, "W", 2, False)
    cdef Py_ssize_t d_out = W.shape[1]
    _check_matrix(W, "W", d_in, d_out, X, False)
    if b is not None:
        _check_bias(b, "b", d_out, X, False)
    _check_matrix(Z, "Z", n, d_out, X, True)
    _check_matrix(Y, "Y", n, d_out, X, True)
    _check_sizes(n, d_in, d_out)
    cdef void* px = data_ptr(X)
    cdef void* pw = data_ptr(W)
    cdef void* pb = data_ptr(b) if b is not None else NULL
    cdef void* pz = data_ptr(Z)
    cdef void* py = data_ptr(Y)
    if is_float32(X):
        with nogil:
            dense_forward(n, d_in, d_out, <float*>px, <float*>pw, <float*>pb,
                          act, param, <float*>pz, <float*>py)
    else:
        with nogil:
            dense_forward(n, d_in, d_out, <double*>px, <double*>pw, <double*>pb,
                          act, param, <double*>pz, <double*>py)
    return Y


def backward(X, W, Z, Y, dY, dZ, dW, db, dX, int act=ACT_LINEAR, double param=0.0):
    """Gradients of a dense layer, written in place.

    Parameters
    ----------
    X, W : the forward inputs, shapes (n, d_in) and (d_in, d_out)
    Z, Y : the forward pre-activation and output, shape (n, d_out)
        Only the one the activation's backward reads is used; the other
        may be None. Both may be None for a linear activation.
    dY : ndarray of shape (n, d_out), gradient with respect to Y
    dZ : ndarray of shape (n, d_out), scratch for the gradient w.r.t. Z
        (may be ``dY``, which is then overwritten)
    dW : ndarray of shape (d_in, d_out), overwritten
    db : ndarray of shape (d_out,) or None, overwritten
    dX : ndarray of shape (n, d_in) or None, overwritten
    """
    _check_activation(act)
    check_float_array(X, "X", 2, False)
    cdef Py_ssize_t n = X.shape[0], d_in = X.shape[1]
    check_float_array(W, "W", 2, False)
    cdef Py_ssize_t d_out = W.shape[1]
    _check_matrix(W, "W", d_in, d_out, X, False)
    _check_matrix(dY, "dY", n, d_out, X, False)
    _check_matrix(dW, "dW", d_in, d_out, X, True)
    if db is not None:
        _check_bias(db, "db", d_out, X, True)
    if dX is not None:
        _check_matrix(dX, "dX", n, d_in, X, True)
    cdef void* pz = NULL
    cdef void* pdz = data_ptr(dY)
    if act != ACT_LINEAR:
        saved, saved_name = (Z, "Z") if backward_needs_input(act) else (Y, "Y")
        if saved is None:
            raise ValueError(f"this activation's backward needs {saved_name}, got None")
        _check_matrix(saved, saved_name, n, d_out, X, False)
        _check_matrix(dZ, "dZ", n, d_out, X, True)
        pz = data_ptr(saved)
        pdz = data_ptr(dZ)
    _check_sizes(n, d_in, d_out)
    cdef void* px = data_ptr(X)
    cdef void* pw = data_ptr(W)
    cdef void* pdy = data_ptr(dY)
    cdef void* pdw = data_ptr(dW)
    cdef void* pdb = data_ptr(db) if db is not None else NULL
    cdef void* pdx = data_ptr(dX) if dX is not None else NULL
    if is_float32(X):
        with nogil:
            dense_backward(n, d_in, d_out, <float*>px, <float*>pw, act, param,
                           <float*>pz, <float*>pz, <float*>pdy, <float*>pdz,
                           <float*>pdw, <float*>pdb, <float*>pdx)
    else:
        with nogil:
            dense_backward(n, d_in, d_out, <double*>px, <double*>pw, act, param,
                           <double*>pz, <double*>pz, <double*>pdy, <double*>pdz,
                           <double*>pdw, <double*>pdb, <double*>pdx)
    return dX
