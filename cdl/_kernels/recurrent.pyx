# Rendered from recurrent.pyx.tp by setup.py: edit the template, not this file.
"""Recurrent layers (SimpleRNN, LSTM, GRU): forward pass and backpropagation
through time.

Shapes: X (n, T, F); input kernel W (F, G*H); recurrent kernel U (H, G*H);
biases bi, bh (G*H,); H units and G gates (1 SimpleRNN, 4 LSTM, 3 GRU).
Gate blocks follow PyTorch: LSTM (input, forget, cell, output), GRU (reset,
update, new). The equations, with xp = x_t W + bi and hp = h U + bh:

- SimpleRNN: h' = act(xp + hp)
- LSTM: i, f, g, o = s(xp_i + hp_i), s(xp_f + hp_f), tanh(xp_g + hp_g),
  s(xp_o + hp_o); c' = f c + i g; h' = o tanh(c')
- GRU: r = s(xp_r + hp_r); z = s(xp_z + hp_z); n = tanh(xp_n + r hp_n);
  h' = (1 - z) n + z h

Time step ``s`` reads input time ``t = s`` (or ``T - 1 - s`` with
``go_backwards``); the sequence output is in step order. Arrays saved for
the backward pass are indexed by input time ``t``:

- ``gates`` (n, T, G*H): on entry to ``forward`` the caller's scratch; on
  exit the activated gates (SimpleRNN: h'; LSTM: i, f, g, o; GRU: r, z, n);
- ``hprev`` (n, T, H): the state h entering the step that reads time t;
- ``cprev`` (n, T, H): the LSTM cell state entering that step;
- ``hn`` (n, T, H): the GRU recurrent projection of the new gate, hp_n.

``mask`` (n, T) of uint8, optional: a zero marks a padding step, through
which the state is carried unchanged and whose sequence output is zero.

The input projection of every time step is one matrix product; each step
of the recurrence is one more (h U), and the backward pass forms the weight
gradients with one product each after the loop over time.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating

from cdl._kernels._blas cimport _gemm, NoTrans, Trans, blas_int, check_blas_int
from cdl._kernels._checks cimport (
    check_float_array, check_same_dtype, data_ptr, is_float32)
from cdl._kernels._math cimport f_tanh, f_sigmoid

cnp.import_array()

cdef enum:
    CELL_RNN = 0
    CELL_LSTM = 1
    CELL_GRU = 2

# SimpleRNN activation codes (each derivative is a function of the output).
cdef enum:
    ACT_TANH = 0
    ACT_RELU = 1
    ACT_SIGMOID = 2
    ACT_LINEAR = 3

ACTIVATIONS = {"tanh": ACT_TANH, "relu": ACT_RELU, "sigmoid": ACT_SIGMOID,
               "linear": ACT_LINEAR}
#: Cell codes, by layer class name.
CELLS = {"SimpleRNN": CELL_RNN, "LSTM": CELL_LSTM, "GRU": CELL_GRU}
GATES = {CELL_RNN: 1, CELL_LSTM: 4, CELL_GRU: 3}


cdef inline floating _act(int act, floating a) noexcept nogil:
    if act == ACT_TANH:
        return f_tanh(a)
    if act == ACT_RELU:
        return a if a > 0 else 0
    if act == ACT_SIGMOID:
        return f_sigmoid(a)
    return a


cdef inline floating _act_grad(int act, floating y) noexcept nogil:
    """Derivative of the activation, from its output ``y``."""
    if act == ACT_TANH:
        return 1 - y * y
    if act == ACT_RELU:
        return 1 if y > 0 else 0
    if act == ACT_SIGMOID:
        return y * (1 - y)
    return 1


cdef void rnn_forward(int cell, int act, Py_ssize_t n, Py_ssize_t T, Py_ssize_t F,
                      Py_ssize_t H, const floating* X, const floating* W,
                      const floating* U, const floating* bi, const floating* bh,
                      const unsigned char* mask, bint backwards, bint sequences,
                      floating* Y, floating* gates, floating* hprev, floating* cprev,
                      floating* hn, floating* h, floating* c, floating* hp) noexcept nogil:
    """Run the recurrence; ``h`` (and ``c``) hold the initial state on entry
    and the final state on exit; ``hp`` is (n, G*H) scratch."""
    cdef Py_ssize_t GH = H * (4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1)
    cdef Py_ssize_t s, t, i, j, row
    cdef floating* xp
    cdef floating* hq
    cdef floating* yrow
    cdef floating a, ig, fg, gg, og, cn, r, z, nn, hv
    if n == 0 or T == 0:
        if not sequences:
            for i in range(n * H):
                Y[i] = h[i]
        return
    # Input projection of every time step at once: gates = X W + bi.
    for i in range(n * T):
        for j in range(GH):
            gates[i * GH + j] = bi[j]
    _gemm(NoTrans, NoTrans, <blas_int>(n * T), <blas_int>GH, <blas_int>F,
          <floating>1, X, <blas_int>F, W, <blas_int>GH, <floating>1, gates, <blas_int>GH)
    for s in range(T):
        t = T - 1 - s if backwards else s
        # Recurrent projection hp = h U + bh.
        for i in range(n):
            for j in range(GH):
                hp[i * GH + j] = bh[j]
        _gemm(NoTrans, NoTrans, <blas_int>n, <blas_int>GH, <blas_int>H,
              <floating>1, h, <blas_int>H, U, <blas_int>GH, <floating>1, hp, <blas_int>GH)
        for i in range(n):
            row = i * T + t
            xp = gates + row * GH
            hq = hp + i * GH
            for j in range(H):
                hprev[row * H + j] = h[i * H + j]
            if cell == CELL_LSTM:
                for j in range(H):
                    cprev[row * H + j] = c[i * H + j]
            yrow = Y + (i * T + s) * H if sequences else NULL
            if mask != NULL and mask[row] == 0:
                for j in range(GH):
                    xp[j] = 0
                if cell == CELL_GRU:
                    for j in range(H):
                        hn[row * H + j] = 0
                if yrow != NULL:
                    for j in range(H):
                        yrow[j] = 0
                continue
            if cell == CELL_RNN:
                for j in range(H):
                    a = _act(act, xp[j] + hq[j])
                    xp[j] = a
                    h[i * H + j] = a
            elif cell == CELL_LSTM:
                for j in range(H):
                    ig = f_sigmoid(xp[j] + hq[j])
                    fg = f_sigmoid(xp[H + j] + hq[H + j])
                    gg = f_tanh(xp[2 * H + j] + hq[2 * H + j])
                    og = f_sigmoid(xp[3 * H + j] + hq[3 * H + j])
                    xp[j] = ig
                    xp[H + j] = fg
                    xp[2 * H + j] = gg
                    xp[3 * H + j] = og
                    cn = fg * c[i * H + j] + ig * gg
                    c[i * H + j] = cn
                    h[i * H + j] = og * f_tanh(cn)
            else:
                for j in range(H):
                    r = f_sigmoid(xp[j] + hq[j])
                    z = f_sigmoid(xp[H + j] + hq[H + j])
                    hv = hq[2 * H + j]
                    nn = f_tanh(xp[2 * H + j] + r * hv)
                    xp[j] = r
                    xp[H + j] = z
                    xp[2 * H + j] = nn
                    hn[row * H + j] = hv
                    h[i * H + j] = (1 - z) * nn + z * h[i * H + j]
            if yrow != NULL:
                for j in range(H):
                    yrow[j] = h[i * H + j]
    if not sequences:
        for i in range(n * H):
            Y[i] = h[i]


cdef void rnn_backward(int cell, int act, Py_ssize_t n, Py_ssize_t T, Py_ssize_t F,
                       Py_ssize_t H, const floating* X, const floating* W,
                       const floating* U, const unsigned char* mask,
                       bint backwards, bint sequences,
                       const floating* gates, const floating* hprev,
                       const floating* cprev, const floating* hn, const floating* dY,
                       floating* dxp, floating* dhp, floating* dh, floating* dc,
                       floating* dW, floating* dU, floating* dbi, floating* dbh,
                       floating* dX) noexcept nogil:
    """Backpropagation through time.

    ``dh`` (and ``dc``) (n, H) are scratch that end as the gradient w.r.t.
    the initial state; ``dxp`` (n, T, G*H) receives the gradient w.r.t. the
    input projection and ``dhp`` (same shape; may be ``dxp`` except for the
    GRU) w.r.t. the recurrent one. ``dX`` may be NULL.
    """
    cdef Py_ssize_t GH = H * (4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1)
    cdef Py_ssize_t s, t, i, j, row
    cdef const floating* g
    cdef floating* dx_row
    cdef floating* dh_row
    cdef floating d, dct, ig, fg, gg, og, tc, r, z, nn, da
    for j in range(GH):
        dbi[j] = 0
        dbh[j] = 0
    for i in range(n * H):
        dh[i] = 0 if sequences else dY[i]
        dc[i] = 0
    if n == 0 or T == 0:
        for i in range(F * GH):
            dW[i] = 0
        for i in range(H * GH):
            dU[i] = 0
        return
    for s in range(T - 1, -1, -1):
        t = T - 1 - s if backwards else s
        for i in range(n):
            row = i * T + t
            dx_row = dxp + row * GH
            if mask != NULL and mask[row] == 0:
                # Padding: the state passed through unchanged, the output was 0.
                for j in range(GH):
                    dx_row[j] = 0
                if cell == CELL_GRU:
                    for j in range(GH):
                        dhp[row * GH + j] = 0
                continue
            g = gates + row * GH
            dh_row = dh + i * H
            if sequences:
                for j in range(H):
                    dh_row[j] += dY[(i * T + s) * H + j]
            if cell == CELL_RNN:
                for j in range(H):
                    dx_row[j] = dh_row[j] * _act_grad(act, g[j])
                    dh_row[j] = 0
            elif cell == CELL_LSTM:
                for j in range(H):
                    ig = g[j]
                    fg = g[H + j]
                    gg = g[2 * H + j]
                    og = g[3 * H + j]
                    tc = f_tanh(fg * cprev[row * H + j] + ig * gg)
                    d = dh_row[j]
                    dct = dc[i * H + j] + d * og * (1 - tc * tc)
                    dx_row[j] = dct * gg * ig * (1 - ig)
                    dx_row[H + j] = dct * cprev[row * H + j] * fg * (1 - fg)
                    dx_row[2 * H + j] = dct * ig * (1 - gg * gg)
                    dx_row[3 * H + j] = d * tc * og * (1 - og)
                    dc[i * H + j] = dct * fg
                    dh_row[j] = 0
            else:
                for j in range(H):
                    r = g[j]
                    z = g[H + j]
                    nn = g[2 * H + j]
                    d = dh_row[j]
                    da = d * (1 - z) * (1 - nn * nn)
                    dx_row[2 * H + j] = da
                    dhp[row * GH + 2 * H + j] = da * r
                    dx_row[j] = da * hn[row * H + j] * r * (1 - r)
                    dhp[row * GH + j] = dx_row[j]
                    dx_row[H + j] = d * (hprev[row * H + j] - nn) * z * (1 - z)
                    dhp[row * GH + H + j] = dx_row[H + j]
                    dh_row[j] = d * z
        # dh (state entering this step) += dhp_t U^T; padding rows of dhp are 0.
        _gemm(NoTrans, Trans, <blas_int>n, <blas_int>H, <blas_int>GH,
              <floating>1, dhp + t * GH, <blas_int>(T * GH), U, <blas_int>GH,
              <floating>1, dh, <blas_int>H)
    # Weight gradients, one product each over all (sample, time) rows.
    _gemm(Trans, NoTrans, <blas_int>F, <blas_int>GH, <blas_int>(n * T),
          <floating>1, X, <blas_int>F, dxp, <blas_int>GH, <floating>0, dW, <blas_int>GH)
    _gemm(Trans, NoTrans, <blas_int>H, <blas_int>GH, <blas_int>(n * T),
          <floating>1, hprev, <blas_int>H, dhp, <blas_int>GH, <floating>0, dU, <blas_int>GH)
    for i in range(n * T):
        for j in range(GH):
            dbi[j] += dxp[i * GH + j]
            dbh[j] += dhp[i * GH + j]
    if dX != NULL:
        _gemm(NoTrans, Trans, <blas_int>(n * T), <blas_int>F, <blas_int>GH,
              <floating>1, dxp, <blas_int>GH, W, <blas_int>GH, <floating>0, dX, <blas_int>F)


# --- checked entry points ----------------------------------------------------

cdef int _check(a, str name, tuple shape, ref, bint writable) except -1:
    check_float_array(a, name, len(shape), writable)
    check_same_dtype(ref, a, "X", name)
    if tuple(a.shape) != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    return 0


cdef int _check_cell(int cell, int act) except -1:
    if cell not in GATES:
        raise ValueError(f"unknown cell code {cell}")
    if act < ACT_TANH or act > ACT_LINEAR:
        raise ValueError(f"unknown activation code {act}")
    return 0


cdef int _check_mask(mask, Py_ssize_t n, Py_ssize_t T) except -1:
    if mask is None:
        return 0
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy.ndarray, got {type(mask).__name__}")
    if mask.dtype != np.uint8:
        raise TypeError(f"mask must have dtype uint8, got {mask.dtype}")
    if mask.shape != (n, T):
        raise ValueError(f"mask has shape {mask.shape}, expected ({n}, {T})")
    if not mask.flags.c_contiguous:
        raise ValueError("mask must be C-contiguous")
    return 0


cdef int _check_sizes(Py_ssize_t n, Py_ssize_t T, Py_ssize_t F, Py_ssize_t GH) except -1:
    check_blas_int(n * T, "recurrent batch size times time steps")
    check_blas_int(T * GH, "recurrent time steps times gate width")
    check_blas_int(F, "recurrent input width")
    check_blas_int(GH, "recurrent gate width")
    return 0


def forward(int cell, int act, X, W, U, bi, bh, mask, bint go_backwards,
            bint return_sequences, Y, gates, hprev, cprev, hn, h, c):
    """Run a recurrent layer over a batch, writing outputs and saved state in place.

    Parameters
    ----------
    cell : int
        CELL_RNN, CELL_LSTM or CELL_GRU.
    act : int
        SimpleRNN activation code (ACTIVATIONS); ignored by the LSTM and GRU.
    X : ndarray of shape (n, T, F)
    W : ndarray of shape (F, G*H), input kernel
    U : ndarray of shape (H, G*H), recurrent kernel
    bi, bh : ndarray of shape (G*H,), input and recurrent biases
    mask : uint8 ndarray of shape (n, T) or None
        Zero marks a padding step (state carried, output zero).
    go_backwards : bool
        Read the input from the last time step to the first.
    return_sequences : bool
        Y is (n, T, H), the output of every step in step order, else (n, H).
    Y : ndarray, output
    gates : ndarray of shape (n, T, G*H), saved activated gates (output)
    hprev : ndarray of shape (n, T, H), saved input states (output)
    cprev : ndarray of shape (n, T, H) for the LSTM (saved cell states), else None
    hn : ndarray of shape (n, T, H) for the GRU (saved hp_n), else None
    h : ndarray of shape (n, H)
        Initial state on entry, final state on exit.
    c : ndarray of shape (n, H) for the LSTM (initial, then final cell state), else None
    """
    _check_cell(cell, act)
    check_float_array(X, "X", 3, False)
    cdef Py_ssize_t n = X.shape[0], T = X.shape[1], F = X.shape[2]
    check_float_array(U, "U", 2, False)
    cdef Py_ssize_t H = U.shape[0]
    cdef Py_ssize_t GH = GATES[cell] * H
    _check(W, "W", (F, GH), X, False)
    _check(U, "U", (H, GH), X, False)
    _check(bi, "bi", (GH,), X, False)
    _check(bh, "bh", (GH,), X, False)
    _check_mask(mask, n, T)
    y_shape = (n, T, H) if return_sequences else (<object>n, <object>H)
    _check(Y, "Y", y_shape, X, True)
    _check(gates, "gates", (n, T, GH), X, True)
    _check(hprev, "hprev", (n, T, H), X, True)
    _check(h, "h", (n, H), X, True)
    if cell == CELL_LSTM:
        _check(cprev, "cprev", (n, T, H), X, True)
        _check(c, "c", (n, H), X, True)
    if cell == CELL_GRU:
        _check(hn, "hn", (n, T, H), X, True)
    _check_sizes(n, T, F, GH)
    hp = np.empty((n, GH), dtype=X.dtype)
    cdef void* px = data_ptr(X)
    cdef void* pw = data_ptr(W)
    cdef void* pu = data_ptr(U)
    cdef void* pbi = data_ptr(bi)
    cdef void* pbh = data_ptr(bh)
    cdef const unsigned char* pm = (<const unsigned char*>data_ptr(mask)
                                    if mask is not None else NULL)
    cdef void* py = data_ptr(Y)
    cdef void* pg = data_ptr(gates)
    cdef void* php = data_ptr(hprev)
    cdef void* pcp = data_ptr(cprev) if cell == CELL_LSTM else NULL
    cdef void* phn = data_ptr(hn) if cell == CELL_GRU else NULL
    cdef void* ph = data_ptr(h)
    cdef void* pc = data_ptr(c) if cell == CELL_LSTM else NULL
    cdef void* pq = data_ptr(hp)
    if is_float32(X):
        with nogil:
            rnn_forward(cell, act, n, T, F, H, <float*>px, <float*>pw, <float*>pu,
                        <float*>pbi, <float*>pbh, pm, go_backwards, return_sequences,
                        <float*>py, <float*>pg, <float*>php, <float*>pcp, <float*>phn,
                        <float*>ph, <float*>pc, <float*>pq)
    else:
        with nogil:
            rnn_forward(cell, act, n, T, F, H, <double*>px, <double*>pw, <double*>pu,
                        <double*>pbi, <double*>pbh, pm, go_backwards, return_sequences,
                        <double*>py, <double*>pg, <double*>php, <double*>pcp, <double*>phn,
                        <double*>ph, <double*>pc, <double*>pq)
    return Y


def backward(int cell, int act, X, W, U, mask, bint go_backwards, bint return_sequences,
             gates, hprev, cprev, hn, dY, dW, dU, dbi, dbh, dX, dh0=None, dc0=None):
    """Backpropagation through time for ``forward``'s call, gradients in place.

    Parameters
    ----------
    cell, act, X, W, U, mask, go_backwards, return_sequences
        As given to ``forward``.
    gates, hprev, cprev, hn
        As filled by ``forward``.
    dY : ndarray, gradient w.r.t. Y ((n, T, H) or (n, H))
    dW, dU, dbi, dbh : ndarrays shaped like W, U, bi, bh, overwritten
    dX : ndarray of shape (n, T, F) or None, overwritten
    dh0 : ndarray of shape (n, H) or None
        Receives the gradient w.r.t. the initial state h.
    dc0 : ndarray of shape (n, H) or None
        LSTM only (ignored otherwise): receives the gradient w.r.t. the
        initial cell state c.

    Returns
    -------
    dX
    """
    _check_cell(cell, act)
    check_float_array(X, "X", 3, False)
    cdef Py_ssize_t n = X.shape[0], T = X.shape[1], F = X.shape[2]
    check_float_array(U, "U", 2, False)
    cdef Py_ssize_t H = U.shape[0]
    cdef Py_ssize_t GH = GATES[cell] * H
    _check(W, "W", (F, GH), X, False)
    _check(U, "U", (H, GH), X, False)
    _check_mask(mask, n, T)
    _check(gates, "gates", (n, T, GH), X, False)
    _check(hprev, "hprev", (n, T, H), X, False)
    if cell == CELL_LSTM:
        _check(cprev, "cprev", (n, T, H), X, False)
    if cell == CELL_GRU:
        _check(hn, "hn", (n, T, H), X, False)
    y_shape = (n, T, H) if return_sequences else (<object>n, <object>H)
    _check(dY, "dY", y_shape, X, False)
    _check(dW, "dW", (F, GH), X, True)
    _check(dU, "dU", (H, GH), X, True)
    _check(dbi, "dbi", (GH,), X, True)
    _check(dbh, "dbh", (GH,), X, True)
    if dX is not None:
        _check(dX, "dX", (n, T, F), X, True)
    if dh0 is None:
        dh0 = np.empty((n, H), dtype=X.dtype)
    _check(dh0, "dh0", (n, H), X, True)
    _check_sizes(n, T, F, GH)
    dxp = np.empty((n, T, GH), dtype=X.dtype)
    dhp = np.empty((n, T, GH), dtype=X.dtype) if cell == CELL_GRU else dxp
    if cell == CELL_LSTM and dc0 is not None:
        _check(dc0, "dc0", (n, H), X, True)
        dc = dc0
    else:
        dc = np.empty((n, H), dtype=X.dtype)
    cdef void* px = data_ptr(X)
    cdef void* pw = data_ptr(W)
    cdef void* pu = data_ptr(U)
    cdef const unsigned char* pm = (<const unsigned char*>data_ptr(mask)
                                    if mask is not None else NULL)
    cdef void* pg = data_ptr(gates)
    cdef void* php = data_ptr(hprev)
    cdef void* pcp = data_ptr(cprev) if cell == CELL_LSTM else NULL
    cdef void* phn = data_ptr(hn) if cell == CELL_GRU else NULL
    cdef void* pdy = data_ptr(dY)
    cdef void* pdxp = data_ptr(dxp)
    cdef void* pdhp = data_ptr(dhp)
    cdef void* pdh = data_ptr(dh0)
    cdef void* pdc = data_ptr(dc)
    cdef void* pdw = data_ptr(dW)
    cdef void* pdu = data_ptr(dU)
    cdef void* pdbi = data_ptr(dbi)
    cdef void* pdbh = data_ptr(dbh)
    cdef void* pdx = data_ptr(dX) if dX is not None else NULL
    if is_float32(X):
        with nogil:
            rnn_backward(cell, act, n, T, F, H, <float*>px, <float*>pw, <float*>pu, pm,
                         go_backwards, return_sequences, <float*>pg, <float*>php,
                         <float*>pcp, <float*>phn, <float*>pdy, <float*>pdxp,
                         <float*>pdhp, <float*>pdh, <float*>pdc, <float*>pdw,
                         <float*>pdu, <float*>pdbi, <float*>pdbh, <float*>pdx)
    else:
        with nogil:
            rnn_backward(cell, act, n, T, F, H, <double*>px, <double*>pw, <double*>pu, pm,
                         go_backwards, return_sequences, <double*>pg, <double*>php,
                         <double*>pcp, <double*>phn, <double*>pdy, <double*>pdxp,
                         <double*>pdhp, <double*>pdh, <double*>pdc, <double*>pdw,
                         <double*>pdu, <double*>pdbi, <double*>pdbh, <double*>pdx)
    return dX
