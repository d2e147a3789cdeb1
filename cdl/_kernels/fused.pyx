# Rendered from fused.pyx.tp by setup.py: edit the template, not this file.
"""A whole training step of a dense network in one compiled call.

``TrainPlan`` holds, for one model and a largest batch size, every buffer
a step needs (activations, pre-activations, dropout masks, gradients) and
pointers to the model's parameters and gradients. ``train_step`` then runs
the forward pass, the loss and its gradient, and the backward pass without
the GIL, without allocating, and without returning to Python between
layers. It calls the very kernels the layer-by-layer path calls, in the
same order, so both give the same numbers bit for bit.

Supported steps: dense (with its fused activation), a standalone
activation, and dropout (with uniforms drawn by the caller). Supported
losses: cross-entropy from logits with integer labels, MSE, MAE, Huber and
binary cross-entropy from logits, each with optional per-sample weights.
"""
from cython cimport floating
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
import numpy as np
cimport numpy as cnp

from cdl._kernels._checks cimport check_float_array, check_same_dtype, data_ptr, is_float32
from cdl._kernels._blas cimport check_blas_int
from cdl._kernels.activations cimport (
    act_forward, act_backward, act_rowwise, backward_needs_input, ACT_LINEAR, ACT_LAST)
from cdl._kernels.dense cimport dense_forward, dense_backward
from cdl._kernels.dropout cimport dropout_forward, dropout_backward
from cdl._kernels.losses cimport (
    regression_forward, regression_backward, ce_labels_forward, ce_labels_backward,
    bce_forward, bce_backward, first_bad_label, LOSS_MSE, LOSS_HUBER)

cnp.import_array()

cdef enum StepKind:
    STEP_DENSE = 0
    STEP_ACTIVATION = 1
    STEP_DROPOUT = 2

cdef enum PlanLoss:
    PLAN_CROSS_ENTROPY = 10
    PLAN_BINARY_CROSS_ENTROPY = 11

#: Loss codes of ``TrainPlan``: regression kinds 0-2 (as losses.KINDS), then these.
LOSS_CROSS_ENTROPY = PLAN_CROSS_ENTROPY
LOSS_BINARY_CROSS_ENTROPY = PLAN_BINARY_CROSS_ENTROPY
#: Step kinds.
DENSE, ACTIVATION, DROPOUT = STEP_DENSE, STEP_ACTIVATION, STEP_DROPOUT


cdef struct Step:
    int kind
    Py_ssize_t d_in, d_out
    int act
    double param        # leaky ReLU slope / ELU alpha, or the dropout rate
    void* W
    void* b
    void* dW
    void* db
    void* Z             # pre-activation (may equal Y)
    void* Y             # output
    void* U             # dropout uniforms, turned into the scaled mask


cdef double _run(Step* steps, int n_steps, Py_ssize_t n, const floating* X,
                 int loss, double delta, const int64_t* labels, const floating* T,
                 const floating* SW, floating* P, floating* G0, floating* G1,
                 floating* dZ) noexcept nogil:
    """Forward, loss, backward. Returns the loss; fills every dW/db."""
    cdef int s
    cdef Step* st
    cdef const floating* inp = X
    cdef Py_ssize_t c
    cdef double value
    cdef floating* g = G0
    cdef floating* other = G1
    cdef floating* swap
    for s in range(n_steps):
        st = &steps[s]
        if st.kind == STEP_DENSE:
            dense_forward(n, st.d_in, st.d_out, inp, <floating*>st.W, <floating*>st.b,
                          st.act, st.param, <floating*>st.Z, <floating*>st.Y)
        elif st.kind == STEP_ACTIVATION:
            if act_rowwise(st.act):
                act_forward(st.act, st.param, n, st.d_out, inp, <floating*>st.Y)
            else:
                act_forward(st.act, st.param, 1, n * st.d_out, inp, <floating*>st.Y)
        else:
            dropout_forward(n * st.d_out, st.param, inp, <floating*>st.U, <floating*>st.U,
                            <floating*>st.Y)
        inp = <floating*>st.Y
    c = steps[n_steps - 1].d_out
    if loss == PLAN_CROSS_ENTROPY:
        value = ce_labels_forward(n, c, inp, labels, SW, P)
        ce_labels_backward(n, c, P, labels, SW, g)
    elif loss == PLAN_BINARY_CROSS_ENTROPY:
        value = bce_forward(n, c, inp, T, SW)
        bce_backward(n, c, inp, T, SW, g)
    else:
        value = regression_forward(loss, delta, n, c, inp, T, SW)
        regression_backward(loss, delta, n, c, inp, T, SW, g)
    for s in range(n_steps - 1, -1, -1):
        st = &steps[s]
        inp = X if s == 0 else <floating*>steps[s - 1].Y
        if st.kind == STEP_DENSE:
            # The input gradient of the first layer is never needed.
            dense_backward(n, st.d_in, st.d_out, inp, <floating*>st.W, st.act, st.param,
                           <floating*>st.Z, <floating*>st.Y, g, dZ, <floating*>st.dW,
                           <floating*>st.db, other if s > 0 else NULL)
            if s == 0:
                break
        elif st.kind == STEP_ACTIVATION:
            if act_rowwise(st.act):
                act_backward(st.act, st.param, n, st.d_out, inp, <floating*>st.Y, g, other)
            else:
                act_backward(st.act, st.param, 1, n * st.d_out, inp, <floating*>st.Y, g, other)
        else:
            dropout_backward(n * st.d_out, <floating*>st.U, g, other)
        swap = g
        g = other
        other = swap
    return value


cdef const floating* _infer(Step* steps, int n_steps, Py_ssize_t n,
                            const floating* X) noexcept nogil:
    """Inference forward pass (dropout is the identity); returns the output."""
    cdef int s
    cdef Step* st
    cdef const floating* inp = X
    for s in range(n_steps):
        st = &steps[s]
        if st.kind == STEP_DENSE:
            dense_forward(n, st.d_in, st.d_out, inp, <floating*>st.W, <floating*>st.b,
                          st.act, st.param, <floating*>st.Z, <floating*>st.Y)
        elif st.kind == STEP_ACTIVATION:
            if act_rowwise(st.act):
                act_forward(st.act, st.param, n, st.d_out, inp, <floating*>st.Y)
            else:
                act_forward(st.act, st.param, 1, n * st.d_out, inp, <floating*>st.Y)
        else:
            continue
        inp = <floating*>st.Y
    return inp


cdef class TrainPlan:
    """Buffers and parameter pointers for fused training steps of one model.

    Parameters
    ----------
    steps : list of tuple
        Per step ``(kind, d_in, d_out, act, param, W, b, dW, db)``: kind is
        ``DENSE``, ``ACTIVATION`` or ``DROPOUT``; W/b/dW/db are the model's
        parameter and gradient arrays for a dense step (b/db may be None),
        else None; ``param`` is the activation parameter or dropout rate.
    batch_size : int
        Largest batch the plan serves.
    dtype : float32 or float64
    loss : int
        A regression kind (0 MSE, 1 MAE, 2 Huber), ``LOSS_CROSS_ENTROPY`` or
        ``LOSS_BINARY_CROSS_ENTROPY``.
    delta : float
        Huber's delta.
    """

    cdef Step* _steps
    cdef int _n_steps
    cdef readonly Py_ssize_t batch_size
    cdef readonly object dtype
    cdef readonly int loss
    cdef double _delta
    cdef list _keep            # arrays the raw pointers point into
    cdef readonly list uniforms  # per dropout step, the buffer to fill with uniforms
    cdef object _out, _probs, _g0, _g1, _dz
    cdef Py_ssize_t _d_in, _d_out

    def __cinit__(self):
        self._steps = NULL

    def __init__(self, steps, Py_ssize_t batch_size, dtype, int loss, double delta=1.0):
        if not steps:
            raise ValueError("a plan needs at least one step")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if loss not in (0, 1, 2, PLAN_CROSS_ENTROPY, PLAN_BINARY_CROSS_ENTROPY):
            raise ValueError(f"unknown loss code {loss}")
        if steps[0][0] != STEP_DENSE:
            raise ValueError("the first step of a plan must be dense")
        cdef Step* st
        cdef Py_ssize_t bad
        self.batch_size = batch_size
        self.loss = loss
        self._delta = delta
        self._keep = []
        self.uniforms = []
        self._n_steps = len(steps)
        self._steps = <Step*>malloc(self._n_steps * sizeof(Step))
        if self._steps == NULL:
            raise MemoryError()
        widest = 1
        d_prev = steps[0][1]
        for i, (kind, d_in, d_out, act, param, W, b, dW, db) in enumerate(steps):
            if d_in != d_prev or d_out < 1:
                raise ValueError(f"step {i} takes {d_in} inputs after a step with {d_prev} outputs")
            if act < ACT_LINEAR or act > ACT_LAST:
                raise ValueError(f"step {i}: unknown activation code {act}")
            check_blas_int(batch_size * max(d_in, d_out), "plan buffer size")
            st = &self._steps[i]
            st.kind, st.d_in, st.d_out, st.act, st.param = kind, d_in, d_out, act, param
            st.W = NULL
            st.b = NULL
            st.dW = NULL
            st.db = NULL
            st.U = NULL
            Y = np.empty(batch_size * d_out, dtype=self.dtype)
            self._keep.append(Y)
            st.Y = data_ptr(Y)
            st.Z = st.Y
            if kind == STEP_DENSE:
                for arr, name, shape in ((W, "W", (d_in, d_out)), (dW, "dW", (d_in, d_out)),
                                         (b, "b", (d_out,)), (db, "db", (d_out,))):
                    if arr is None and name in ("W", "dW"):
                        raise ValueError(f"step {i}: a dense step needs {name}")
                    if arr is None:
                        continue
                    check_float_array(arr, name, len(shape), name.startswith("d"))
                    if arr.dtype != self.dtype or arr.shape != shape:
                        raise ValueError(f"step {i}: {name} must be {self.dtype} of shape {shape}")
                    self._keep.append(arr)
                if (b is None) != (db is None):
                    raise ValueError(f"step {i}: give both b and db, or neither")
                st.W, st.dW = data_ptr(W), data_ptr(dW)
                st.b = NULL if b is None else data_ptr(b)
                st.db = NULL if db is None else data_ptr(db)
                if backward_needs_input(act):  # its derivative reads the pre-activation
                    Z = np.empty(batch_size * d_out, dtype=self.dtype)
                    self._keep.append(Z)
                    st.Z = data_ptr(Z)
            elif kind == STEP_DROPOUT:
                if not 0.0 <= param < 1.0:
                    raise ValueError(f"step {i}: dropout rate must be in [0, 1), got {param}")
                U = np.empty(batch_size * d_out, dtype=self.dtype)
                self._keep.append(U)
                self.uniforms.append(U)
                st.U = data_ptr(U)
            elif kind != STEP_ACTIVATION:
                raise ValueError(f"step {i}: unknown step kind {kind}")
            widest = max(widest, d_in, d_out)
            d_prev = d_out
        self._d_in = steps[0][1]
        self._d_out = d_prev
        self._out = Y
        self._probs = np.empty(batch_size * self._d_out, dtype=self.dtype)
        self._g0 = np.empty(batch_size * widest, dtype=self.dtype)
        self._g1 = np.empty(batch_size * widest, dtype=self.dtype)
        self._dz = np.empty(batch_size * widest, dtype=self.dtype)

    def __dealloc__(self):
        free(self._steps)

    def predict(self, X, out):
        """Inference forward pass of the batch ``X`` into ``out`` (dropout off).

        Parameters
        ----------
        X : ndarray of shape (n, d_in), the plan's dtype, C-contiguous
        out : ndarray of shape (n, d_out), the plan's dtype, C-contiguous
        """
        check_float_array(X, "X", 2, False)
        check_float_array(out, "out", 2, True)
        if X.dtype != self.dtype or out.dtype != self.dtype:
            raise TypeError(f"X and out must be {self.dtype}")
        cdef Py_ssize_t n = X.shape[0]
        if X.shape[1] != self._d_in or out.shape[0] != n or out.shape[1] != self._d_out:
            raise ValueError(f"X must be (n, {self._d_in}) and out (n, {self._d_out})")
        if n > self.batch_size:
            raise ValueError(f"batch of {n} samples; the plan serves up to {self.batch_size}")
        if n == 0:
            return out
        cdef void* px = data_ptr(X)
        cdef void* po = data_ptr(out)
        cdef const float* result_float
        cdef const double* result_double
        cdef Py_ssize_t i, size = n * self._d_out
        if self.dtype == np.float32:
            with nogil:
                result_float = _infer(self._steps, self._n_steps, n, <const float*>px)
                for i in range(size):
                    (<float*>po)[i] = result_float[i]
        else:
            with nogil:
                result_double = _infer(self._steps, self._n_steps, n, <const double*>px)
                for i in range(size):
                    (<double*>po)[i] = result_double[i]
        return out

    def output(self, Py_ssize_t n):
        """The last step's output for the last batch of ``n`` samples (a view)."""
        return self._out[:n * self._d_out].reshape(n, self._d_out)

    def train_step(self, X, y, sample_weight=None):
        """Forward, loss and backward for one batch; returns the loss.

        Parameters
        ----------
        X : ndarray of shape (n, d_in), the plan's dtype, C-contiguous
        y : ndarray
            int64 labels of shape (n,) for cross-entropy, else targets of
            shape (n, d_out) in the plan's dtype.
        sample_weight : ndarray of shape (n,) or None

        The caller fills ``uniforms`` (first n * width elements of each)
        with uniform draws in [0, 1) before the call when there is dropout.
        """
        check_float_array(X, "X", 2, False)
        if X.dtype != self.dtype:
            raise TypeError(f"X must be {self.dtype}, got {X.dtype}")
        cdef Py_ssize_t n = X.shape[0]
        if X.shape[1] != self._d_in:
            raise ValueError(f"X has {X.shape[1]} features, the plan {self._d_in}")
        if n < 1 or n > self.batch_size:
            raise ValueError(f"batch of {n} samples; the plan serves 1 to {self.batch_size}")
        cdef const int64_t* labels = NULL
        cdef Py_ssize_t bad
        cdef void* targets = NULL
        cdef void* weights = NULL
        if self.loss == PLAN_CROSS_ENTROPY:
            if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.ndim != 1 \
                    or y.shape[0] != n or not y.flags.c_contiguous or not y.flags.aligned:
                raise ValueError(f"labels must be a C-contiguous, aligned int64 array of "
                                 f"shape ({n},)")
            labels = <const int64_t*>data_ptr(y)
            with nogil:
                bad = first_bad_label(n, self._d_out, labels)
            if bad >= 0:
                raise ValueError(f"label {y[bad]} at position {bad} is out of range "
                                 f"for {self._d_out} classes")
        else:
            check_float_array(y, "target", 2, False)
            if y.dtype != self.dtype or y.shape[0] != n or y.shape[1] != self._d_out:
                raise ValueError(f"targets must be {self.dtype} of shape ({n}, {self._d_out})")
            targets = data_ptr(y)
        if sample_weight is not None:
            check_float_array(sample_weight, "sample_weight", 1, False)
            if sample_weight.dtype != self.dtype or sample_weight.shape[0] != n:
                raise ValueError(f"sample_weight must be {self.dtype} of shape ({n},)")
            weights = data_ptr(sample_weight)
        cdef void* px = data_ptr(X)
        cdef void* pp = data_ptr(self._probs)
        cdef void* g0 = data_ptr(self._g0)
        cdef void* g1 = data_ptr(self._g1)
        cdef void* dz = data_ptr(self._dz)
        cdef double value
        cdef int loss = self.loss
        cdef double delta = self._delta
        if self.dtype == np.float32:
            with nogil:
                value = _run(self._steps, self._n_steps, n, <float*>px, loss, delta, labels,
                             <float*>targets, <float*>weights, <float*>pp, <float*>g0,
                             <float*>g1, <float*>dz)
        else:
            with nogil:
                value = _run(self._steps, self._n_steps, n, <double*>px, loss, delta, labels,
                             <double*>targets, <double*>weights, <double*>pp, <double*>g0,
                             <double*>g1, <double*>dz)
        return value
