"""Every compiled kernel against a plain NumPy reference.

References are computed in float64 from the same inputs the kernel sees and
compared with the tolerance of the kernel's dtype (``helpers.TOLERANCES``).
Outputs are pre-filled with NaN so that a kernel which skips writing an
element, or reads an output it should only write, fails.
"""
import re
import threading

import numpy as np
import pytest
from scipy.special import erf

from cdl._kernels import _blas, activations, dense, dropout, losses
from helpers import assert_allclose, random_array, ref_backward, ref_forward

ACT = activations.CODES
ACT_NAMES = list(ACT)

#: ``param`` per activation: leaky ReLU slope, ELU alpha; ignored otherwise,
#: so a nonzero value there also checks that it is ignored.
ACT_PARAM = {"leaky_relu": 0.1, "elu": 0.7, "softplus": 0.8}
IGNORED_PARAM = 0.3


def act_param(name):
    """The ``param`` passed to the kernels for activation ``name``."""
    return ACT_PARAM.get(name, IGNORED_PARAM)


def _shape_id(shape):
    """Test id of a shape tuple, e.g. ``6x4``."""
    return "x".join(str(s) for s in shape)


def _nans(shape, dtype):
    """An output array whose every element must be overwritten."""
    return np.full(shape, np.nan, dtype=dtype)


# --- NumPy references -------------------------------------------------------

def ref_softmax(x):
    """Softmax over the last axis, max-shifted so it never overflows.

    Parameters
    ----------
    x : ndarray, at least 1-D

    Returns
    -------
    ndarray of float64, same shape
    """
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ref_logsumexp(x):
    """log(sum(exp(x))) over the last axis, computed stably in float64."""
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


def ref_sigmoid(x):
    """Logistic sigmoid in float64; the tanh form cannot overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def ref_act_forward(name, x, param):
    """Reference activation ``name`` applied to ``x``.

    Parameters
    ----------
    name : str
        A key of ``activations.CODES``.
    x : ndarray
    param : float
        Leaky ReLU slope or ELU alpha.

    Returns
    -------
    ndarray of float64
    """
    x = np.asarray(x, np.float64)
    if name == "linear":
        return x.copy()
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, x, param * x)
    if name == "sigmoid":
        return ref_sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "gelu":
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
    if name == "elu":
        return np.where(x > 0, x, param * np.expm1(np.minimum(x, 0.0)))
    if name == "softmax":
        return ref_softmax(x)
    # The newer activations have their references beside their own tests.
    return ref_forward(name, x, beta=param if name == "softplus" else 1.0)


def ref_act_backward(name, x, dy, param):
    """Reference gradient dL/dx of activation ``name`` given dL/dy.

    Conventions at x = 0 follow PyTorch: relu'(0) = 0, leaky_relu'(0) =
    slope, elu'(0) = alpha.

    Parameters
    ----------
    name : str
    x : ndarray
        The forward input.
    dy : ndarray
        Gradient with respect to the forward output.
    param : float

    Returns
    -------
    ndarray of float64
    """
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    if name == "linear":
        return dy.copy()
    if name == "relu":
        return np.where(x > 0, dy, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, dy, param * dy)
    if name == "sigmoid":
        s = ref_sigmoid(x)
        return dy * s * (1.0 - s)
    if name == "tanh":
        return dy * (1.0 - np.tanh(x) ** 2)
    if name == "gelu":
        cdf = 0.5 * (1.0 + erf(x / np.sqrt(2.0)))
        pdf = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
        return dy * (cdf + x * pdf)
    if name == "elu":
        return np.where(x > 0, dy, dy * param * np.exp(np.minimum(x, 0.0)))
    if name == "softmax":
        y = ref_softmax(x)
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    return ref_backward(name, x, dy, beta=param if name == "softplus" else 1.0)


def act_inputs(shape, dtype, seed=0):
    """Activation test inputs: normal draws scaled by 3, with exact zeros.

    The zeros pin the derivative conventions at the kink of ReLU-like
    activations.
    """
    x = random_array(shape, dtype, seed=seed) * 3
    x.flat[::5] = 0
    return x


# --- activations ------------------------------------------------------------

def test_codes_cover_every_activation():
    assert set(ACT) == {"linear", "relu", "leaky_relu", "sigmoid", "tanh",
                        "gelu", "elu", "softmax", "selu", "silu", "swish", "mish",
                        "softplus", "softsign", "hard_sigmoid", "hard_swish", "relu6",
                        "log_softmax"}
    assert len(set(ACT.values())) == len(ACT) - len(activations.ALIASES)


@pytest.mark.parametrize("name", ACT_NAMES)
@pytest.mark.parametrize("shape", [(7,), (4, 5), (2, 3, 4)], ids=["1d", "2d", "3d"])
def test_activation_forward(dtype, name, shape):
    X = act_inputs(shape, dtype)
    X0 = X.copy()
    Y = _nans(shape, dtype)
    out = activations.forward(ACT[name], X, Y, act_param(name))
    assert out is Y
    assert_allclose(Y, ref_act_forward(name, X, act_param(name)), dtype=dtype)
    np.testing.assert_array_equal(X, X0)


@pytest.mark.parametrize("name", ACT_NAMES)
@pytest.mark.parametrize("shape", [(7,), (4, 5), (2, 3, 4)], ids=["1d", "2d", "3d"])
def test_activation_backward(dtype, name, shape):
    param = act_param(name)
    X = act_inputs(shape, dtype)
    Y = ref_act_forward(name, X, param).astype(dtype)
    dY = random_array(shape, dtype, seed=1)
    dX = _nans(shape, dtype)
    out = activations.backward(ACT[name], X, Y, dY, dX, param)
    assert out is dX
    assert_allclose(dX, ref_act_backward(name, X, dY, param), dtype=dtype)


@pytest.mark.parametrize("name", ACT_NAMES)
def test_activation_backward_reads_only_what_needs_input_says(dtype, name):
    # Layers keep only the array needs_input names; the other is None.
    param = act_param(name)
    X = act_inputs((4, 5), dtype)
    Y = ref_act_forward(name, X, param).astype(dtype)
    dY = random_array((4, 5), dtype, seed=1)
    dX = _nans((4, 5), dtype)
    if activations.needs_input(ACT[name]):
        activations.backward(ACT[name], X, None, dY, dX, param)
    else:
        activations.backward(ACT[name], None, Y, dY, dX, param)
    assert_allclose(dX, ref_act_backward(name, X, dY, param), dtype=dtype)


@pytest.mark.parametrize("name", ACT_NAMES)
def test_activation_backward_missing_saved_array(name):
    code = ACT[name]
    dY = np.ones((2, 3))
    if activations.needs_input(code):
        args = (None, dY)
        missing = "X"
    else:
        args = (dY, None)
        missing = "Y"
    with pytest.raises(ValueError, match=f"needs {missing}, got None"):
        activations.backward(code, *args, dY, np.empty((2, 3)))


def test_needs_input():
    # The derivative is a function of the output for these...
    for name in ["relu", "sigmoid", "tanh", "softmax"]:
        assert activations.needs_input(ACT[name]) is False
    # ...and only of the input for these.
    for name in ["leaky_relu", "gelu", "elu"]:
        assert activations.needs_input(ACT[name]) is True


@pytest.mark.parametrize("name", ACT_NAMES)
def test_activation_in_place(dtype, name):
    param = act_param(name)
    X = act_inputs((3, 4, 5), dtype)
    X0 = X.copy()
    out = activations.forward(ACT[name], X, X, param)
    assert out is X
    assert_allclose(X, ref_act_forward(name, X0, param), dtype=dtype)

    Y = ref_act_forward(name, X0, param).astype(dtype)
    dY = random_array(X0.shape, dtype, seed=1)
    dY0 = dY.copy()
    out = activations.backward(ACT[name], X0, Y, dY, dY, param)
    assert out is dY
    assert_allclose(dY, ref_act_backward(name, X0, dY0, param), dtype=dtype)


@pytest.mark.parametrize("name", ACT_NAMES)
def test_activation_large_inputs_are_finite(dtype, name):
    # exp(1000) overflows both dtypes: a naive sigmoid/softmax gives NaN.
    param = act_param(name)
    X = np.array([[-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0],
                  [1000.0, 999.0, -1000.0, 0.0, 1.0, -1.0, 1000.0]], dtype)
    Y = _nans(X.shape, dtype)
    activations.forward(ACT[name], X, Y, param)
    assert np.isfinite(Y).all()
    assert_allclose(Y, ref_act_forward(name, X, param), dtype=dtype)

    dY = np.ones_like(X)
    dX = _nans(X.shape, dtype)
    activations.backward(ACT[name], X, Y, dY, dX, param)
    assert np.isfinite(dX).all()
    assert_allclose(dX, ref_act_backward(name, X, dY, param), dtype=dtype)


def test_sigmoid_saturates_exactly(dtype):
    X = np.array([-1000.0, 1000.0], dtype)
    Y = activations.forward(ACT["sigmoid"], X, np.empty_like(X))
    np.testing.assert_array_equal(Y, [0.0, 1.0])


def test_softmax_applies_over_last_axis(dtype):
    X = random_array((2, 3, 4), dtype, seed=3) * 5
    Y = activations.forward(ACT["softmax"], X, _nans(X.shape, dtype))
    assert_allclose(Y.sum(axis=-1), np.ones((2, 3)), dtype=dtype)
    # Not over another axis: rows of the (6, 4) reshape are independent.
    assert_allclose(Y.reshape(6, 4), ref_softmax(X.reshape(6, 4)), dtype=dtype)
    assert not np.allclose(Y.sum(axis=1), 1.0)


def test_softmax_extreme_logits(dtype):
    X = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]], dtype)
    Y = activations.forward(ACT["softmax"], X, _nans(X.shape, dtype))
    assert_allclose(Y, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], dtype=dtype)


@pytest.mark.parametrize("name", ACT_NAMES)
@pytest.mark.parametrize("shape", [(0,), (0, 5), (5, 0)], ids=["0", "0x5", "5x0"])
def test_activation_empty(dtype, name, shape):
    X = np.empty(shape, dtype)
    assert activations.forward(ACT[name], X, np.empty(shape, dtype)).shape == shape
    assert activations.backward(ACT[name], X, X, X, np.empty(shape, dtype)).shape == shape


def test_softmax_rejects_0d():
    with pytest.raises(ValueError, match="at least one axis"):
        activations.forward(ACT["softmax"], np.array(1.0), np.array(0.0))


@pytest.mark.parametrize("code", [-1, max(ACT.values()) + 1])
def test_activation_unknown_code(code):
    X = np.ones(3)
    with pytest.raises(ValueError, match=f"unknown activation code {code}"):
        activations.forward(code, X, X)
    with pytest.raises(ValueError, match=f"unknown activation code {code}"):
        activations.backward(code, X, X, X, X)
    with pytest.raises(ValueError, match=f"unknown activation code {code}"):
        activations.needs_input(code)


# --- dense ------------------------------------------------------------------

D_IN, D_OUT = 4, 3


def ref_dense_forward(X, W, b, name, param):
    """Reference Z = X @ W + b and Y = f(Z), in float64."""
    Z = np.asarray(X, np.float64) @ np.asarray(W, np.float64)
    if b is not None:
        Z = Z + b
    return Z, ref_act_forward(name, Z, param)


def ref_dense_backward(X, W, Z, dY, name, param):
    """Reference dZ, dW, db, dX of a dense layer, in float64."""
    dZ = ref_act_backward(name, Z, dY, param)
    X = np.asarray(X, np.float64)
    W = np.asarray(W, np.float64)
    return dZ, X.T @ dZ, dZ.sum(axis=0), dZ @ W.T


def dense_inputs(n, dtype, seed=0):
    """X (n, D_IN), W (D_IN, D_OUT), b (D_OUT,) of one dtype."""
    return (random_array((n, D_IN), dtype, seed=seed),
            random_array((D_IN, D_OUT), dtype, seed=seed + 1),
            random_array((D_OUT,), dtype, seed=seed + 2))


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("n", [0, 1, 5, 33], ids=lambda n: f"n={n}")
@pytest.mark.parametrize("name", ACT_NAMES)
def test_dense_forward(dtype, name, n, with_bias):
    param = act_param(name)
    X, W, b = dense_inputs(n, dtype)
    if not with_bias:
        b = None
    Z = _nans((n, D_OUT), dtype)
    Y = _nans((n, D_OUT), dtype)
    out = dense.forward(X, W, b, Z, Y, ACT[name], param)
    assert out is Y
    Z_ref, Y_ref = ref_dense_forward(X, W, b, name, param)
    assert_allclose(Z, Z_ref, dtype=dtype)
    assert_allclose(Y, Y_ref, dtype=dtype)


@pytest.mark.parametrize("name", ["linear", "relu", "sigmoid", "softmax"])
def test_dense_forward_z_is_y(dtype, name):
    # Allowed when backward reads only the output: one buffer for both.
    X, W, b = dense_inputs(6, dtype)
    Y = _nans((6, D_OUT), dtype)
    dense.forward(X, W, b, Y, Y, ACT[name], act_param(name))
    assert_allclose(Y, ref_dense_forward(X, W, b, name, act_param(name))[1], dtype=dtype)


@pytest.mark.parametrize("variant", ["full", "no-db", "no-dX", "no-db-no-dX"])
@pytest.mark.parametrize("n", [0, 1, 5, 33], ids=lambda n: f"n={n}")
@pytest.mark.parametrize("name", ACT_NAMES)
def test_dense_backward(dtype, name, n, variant):
    param = act_param(name)
    X, W, b = dense_inputs(n, dtype)
    Z_ref, Y_ref = ref_dense_forward(X, W, b, name, param)
    Z, Y = Z_ref.astype(dtype), Y_ref.astype(dtype)
    dY = random_array((n, D_OUT), dtype, seed=7)
    dY0 = dY.copy()
    dZ = _nans((n, D_OUT), dtype)
    dW = _nans((D_IN, D_OUT), dtype)
    db = None if "no-db" in variant else _nans((D_OUT,), dtype)
    dX = None if "no-dX" in variant else _nans((n, D_IN), dtype)

    out = dense.backward(X, W, Z, Y, dY, dZ, dW, db, dX, ACT[name], param)

    assert out is dX
    dZ_ref, dW_ref, db_ref, dX_ref = ref_dense_backward(X, W, Z, dY0, name, param)
    assert_allclose(dW, dW_ref, dtype=dtype)
    if db is not None:
        assert_allclose(db, db_ref, dtype=dtype)
    if dX is not None:
        assert_allclose(dX, dX_ref, dtype=dtype)
    if name != "linear":
        assert_allclose(dZ, dZ_ref, dtype=dtype)
    np.testing.assert_array_equal(dY, dY0)


@pytest.mark.parametrize("name", ["linear", "tanh"])
def test_dense_backward_empty_batch_gives_zero_gradients(dtype, name):
    # No samples: the sums over the batch are empty, so dW and db are 0
    # (not left as they were, here NaN).
    X = np.empty((0, D_IN), dtype)
    W = random_array((D_IN, D_OUT), dtype)
    Z = np.empty((0, D_OUT), dtype)
    dW = _nans((D_IN, D_OUT), dtype)
    db = _nans((D_OUT,), dtype)
    dense.backward(X, W, Z, Z, Z.copy(), Z.copy(), dW, db, np.empty((0, D_IN), dtype),
                   ACT[name])
    np.testing.assert_array_equal(dW, np.zeros((D_IN, D_OUT)))
    np.testing.assert_array_equal(db, np.zeros(D_OUT))


def test_dense_backward_linear_needs_no_saved_arrays(dtype):
    # A linear layer keeps neither Z nor Y; dZ may be dY.
    X, W, _ = dense_inputs(5, dtype)
    dY = random_array((5, D_OUT), dtype, seed=7)
    dW, db, dX = _nans((D_IN, D_OUT), dtype), _nans((D_OUT,), dtype), _nans((5, D_IN), dtype)
    dense.backward(X, W, None, None, dY, dY, dW, db, dX, ACT["linear"])
    _, dW_ref, db_ref, dX_ref = ref_dense_backward(X, W, X @ W, dY, "linear", 0.0)
    assert_allclose(dW, dW_ref, dtype=dtype)
    assert_allclose(db, db_ref, dtype=dtype)
    assert_allclose(dX, dX_ref, dtype=dtype)


@pytest.mark.parametrize("name", ["tanh", "gelu", "softmax"])
def test_dense_backward_dz_is_dy(dtype, name):
    # dZ may be dY, which is then overwritten with the gradient w.r.t. Z.
    param = act_param(name)
    X, W, b = dense_inputs(5, dtype)
    Z_ref, Y_ref = ref_dense_forward(X, W, b, name, param)
    dY = random_array((5, D_OUT), dtype, seed=7)
    dY0 = dY.copy()
    dW, db, dX = _nans((D_IN, D_OUT), dtype), _nans((D_OUT,), dtype), _nans((5, D_IN), dtype)
    dense.backward(X, W, Z_ref.astype(dtype), Y_ref.astype(dtype), dY, dY, dW, db, dX,
                   ACT[name], param)
    dZ_ref, dW_ref, db_ref, dX_ref = ref_dense_backward(X, W, Z_ref, dY0, name, param)
    assert_allclose(dY, dZ_ref, dtype=dtype)
    assert_allclose(dW, dW_ref, dtype=dtype)
    assert_allclose(db, db_ref, dtype=dtype)
    assert_allclose(dX, dX_ref, dtype=dtype)


def test_dense_backward_missing_saved_array():
    X, W, _ = dense_inputs(2, np.float64)
    g = np.ones((2, D_OUT))
    dW = np.empty((D_IN, D_OUT))
    with pytest.raises(ValueError, match="needs Z, got None"):
        dense.backward(X, W, None, g, g, g.copy(), dW, None, None, ACT["gelu"])
    with pytest.raises(ValueError, match="needs Y, got None"):
        dense.backward(X, W, g, None, g, g.copy(), dW, None, None, ACT["sigmoid"])


@pytest.mark.parametrize("d_in, d_out", [(0, 3), (4, 0)], ids=["d_in=0", "d_out=0"])
def test_dense_zero_width(dtype, d_in, d_out):
    # d_in = 0: Z = b (an empty product is 0); d_out = 0: nothing to do.
    X = np.empty((5, d_in), dtype)
    W = np.empty((d_in, d_out), dtype)
    b = random_array((d_out,), dtype)
    Z, Y = _nans((5, d_out), dtype), _nans((5, d_out), dtype)
    dense.forward(X, W, b, Z, Y, ACT["linear"])
    assert_allclose(Z, np.broadcast_to(b, (5, d_out)), dtype=dtype)
    dW, db, dX = _nans((d_in, d_out), dtype), _nans((d_out,), dtype), _nans((5, d_in), dtype)
    dY = random_array((5, d_out), dtype)
    dense.backward(X, W, None, None, dY, dY, dW, db, dX, ACT["linear"])
    assert_allclose(db, dY.sum(axis=0), dtype=dtype)
    np.testing.assert_array_equal(dX, np.zeros((5, d_in)))


def test_dense_size_guard(tmp_path):
    """A batch of 2**31 rows is refused before BLAS sees a truncated int."""
    n = 2**31
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.truncate(n * 4)  # sparse: costs no disk while untouched
    try:
        col = np.memmap(path, dtype=np.float32, mode="r+", shape=(n, 1))
    except (OSError, ValueError, MemoryError) as err:
        pytest.skip(f"cannot map an 8 GiB sparse file: {err}")
    one = np.zeros((1, 1), np.float32)
    # Linear with Z is Y and no bias: were the guard missing, the only work
    # would be a gemm with a negative size, which BLAS rejects untouched.
    with pytest.raises(ValueError, match="dense batch size is 2147483648, larger than"):
        dense.forward(col, one, None, col, col, ACT["linear"])
    with pytest.raises(ValueError, match="dense batch size is 2147483648, larger than"):
        dense.backward(col, one, None, None, col, None, one.copy(), None, None,
                       ACT["linear"])
    del col


# --- losses -----------------------------------------------------------------

KIND = losses.KINDS


def ref_regression(kind, P, T, delta):
    """Reference mean loss and its gradient (PyTorch MSELoss, L1Loss, HuberLoss).

    Returns
    -------
    loss : float
    grad : ndarray of float64, d loss / d P
    """
    d = np.asarray(P, np.float64) - np.asarray(T, np.float64)
    n = d.size
    if kind == "mse":
        return np.mean(d * d), 2.0 * d / n
    if kind == "mae":
        return np.mean(np.abs(d)), np.sign(d) / n
    if kind == "huber":
        ad = np.abs(d)
        loss = np.where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta))
        return np.mean(loss), np.clip(d, -delta, delta) / n
    raise KeyError(kind)


def ref_ce_labels(Z, labels):
    """Reference mean softmax cross-entropy and gradient for integer labels."""
    n, c = Z.shape
    loss = np.mean(ref_logsumexp(Z) - np.asarray(Z, np.float64)[np.arange(n), labels])
    onehot = np.eye(c)[labels]
    return loss, (ref_softmax(Z) - onehot) / n


def ref_ce_soft(Z, T):
    """Reference mean soft-target cross-entropy and its gradient."""
    T = np.asarray(T, np.float64)
    n = Z.shape[0]
    log_p = np.asarray(Z, np.float64) - ref_logsumexp(Z)[:, None]
    loss = -np.sum(T * log_p) / n
    return loss, (ref_softmax(Z) * T.sum(axis=1, keepdims=True) - T) / n


def ref_bce(Z, T):
    """Reference mean BCE-with-logits (stable form) and its gradient."""
    z = np.asarray(Z, np.float64)
    t = np.asarray(T, np.float64)
    loss = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return np.mean(loss), (ref_sigmoid(z) - t) / z.size


def test_kinds():
    assert set(KIND) == {"mse", "mae", "huber"}


# delta only matters for Huber; 0.5 and 3.0 move its kink below and above
# most of the |P - T| (which are ~ 2.8 on average).
REGRESSION_CASES = [("mse", 1.0), ("mae", 1.0), ("huber", 1.0), ("huber", 0.5),
                    ("huber", 3.0)]


@pytest.mark.parametrize("shape", [(1,), (9,), (6, 4)], ids=_shape_id)
@pytest.mark.parametrize("kind, delta", REGRESSION_CASES,
                         ids=[f"{k}-delta={d:g}" for k, d in REGRESSION_CASES])
def test_regression(dtype, kind, delta, shape):
    P = random_array(shape, dtype, seed=1) * 2
    T = random_array(shape, dtype, seed=2) * 2
    P.flat[0] = T.flat[0]  # d = 0: MAE's gradient there is 0, as sign(0)
    loss_ref, grad_ref = ref_regression(kind, P, T, delta)

    loss = losses.regression_loss(KIND[kind], P, T, delta)
    assert type(loss) is float
    assert_allclose(loss, loss_ref, dtype=dtype)

    dP = _nans(shape, dtype)
    out = losses.regression_grad(KIND[kind], P, T, dP, delta)
    assert out is dP
    assert_allclose(dP, grad_ref, dtype=dtype)


def test_huber_boundary(dtype):
    # |d| == delta belongs to the linear part (torch: quadratic iff |d| < delta);
    # both parts agree there, so check the neighbours as well.
    delta = 0.5
    P = np.array([0.5, -0.5, 0.25, 2.0, -2.0], dtype)
    T = np.zeros(5, dtype)
    loss_ref, grad_ref = ref_regression("huber", P, T, delta)
    assert_allclose(losses.regression_loss(KIND["huber"], P, T, delta), loss_ref, dtype=dtype)
    dP = losses.regression_grad(KIND["huber"], P, T, _nans(5, dtype), delta)
    assert_allclose(dP, grad_ref, dtype=dtype)


@pytest.mark.parametrize("n, c", [(1, 2), (6, 4), (50, 10)])
def test_cross_entropy_labels(dtype, n, c):
    Z = random_array((n, c), dtype, seed=1) * 3
    labels = np.random.default_rng(2).integers(0, c, size=n).astype(np.int64)
    loss_ref, grad_ref = ref_ce_labels(Z, labels)

    P = _nans((n, c), dtype)
    loss = losses.cross_entropy_labels(Z, labels, P)
    assert type(loss) is float
    assert_allclose(loss, loss_ref, dtype=dtype)
    assert_allclose(P, ref_softmax(Z), dtype=dtype)

    dZ = _nans((n, c), dtype)
    out = losses.cross_entropy_labels_grad(P, labels, dZ)
    assert out is dZ
    assert_allclose(dZ, grad_ref, dtype=dtype)


def test_cross_entropy_labels_extreme_logits(dtype):
    Z = np.array([[1000.0, -1000.0, 0.0],    # label 0: right and sure, loss 0
                  [1000.0, -1000.0, 0.0],    # label 1: wrong and sure, loss 2000
                  [-1000.0, -1000.0, -1000.0],  # uniform: loss log 3
                  [1000.0, 999.0, -1000.0]], dtype)  # loss log(1 + e^-1)
    labels = np.array([0, 1, 2, 0], np.int64)
    expected_rows = [0.0, 2000.0, np.log(3.0), np.log1p(np.exp(-1.0))]
    loss_ref, grad_ref = ref_ce_labels(Z, labels)
    assert_allclose(loss_ref, np.mean(expected_rows))  # the reference itself

    P = _nans(Z.shape, dtype)
    loss = losses.cross_entropy_labels(Z, labels, P)
    assert np.isfinite(loss)
    assert_allclose(loss, loss_ref, dtype=dtype)
    dZ = losses.cross_entropy_labels_grad(P, labels, _nans(Z.shape, dtype))
    assert np.isfinite(dZ).all()
    assert_allclose(dZ, grad_ref, dtype=dtype)


@pytest.mark.parametrize("normalized", [True, False], ids=["probs", "unnormalized"])
@pytest.mark.parametrize("n, c", [(1, 2), (6, 4), (50, 10)])
def test_cross_entropy_soft(dtype, n, c, normalized):
    rng = np.random.default_rng(3)
    Z = random_array((n, c), dtype, seed=1) * 3
    T = rng.dirichlet(np.ones(c), size=n)
    if not normalized:
        # Rows not summing to 1 exercise the sum(t) factor of the gradient.
        T = T * rng.uniform(0.2, 3.0, size=(n, 1))
    T = T.astype(dtype)
    loss_ref, grad_ref = ref_ce_soft(Z, T)

    P = _nans((n, c), dtype)
    loss = losses.cross_entropy_soft(Z, T, P)
    assert_allclose(loss, loss_ref, dtype=dtype)
    assert_allclose(P, ref_softmax(Z), dtype=dtype)
    dZ = _nans((n, c), dtype)
    out = losses.cross_entropy_soft_grad(P, T, dZ)
    assert out is dZ
    assert_allclose(dZ, grad_ref, dtype=dtype)


def test_cross_entropy_soft_matches_labels_for_onehot(dtype):
    Z = random_array((5, 3), dtype, seed=1)
    labels = np.array([0, 2, 1, 1, 0], np.int64)
    T = np.eye(3, dtype=dtype)[labels]
    hard = losses.cross_entropy_labels(Z, labels, np.empty_like(Z))
    soft = losses.cross_entropy_soft(Z, T, np.empty_like(Z))
    assert_allclose(soft, hard, dtype=dtype)


def test_cross_entropy_soft_extreme_logits(dtype):
    Z = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]], dtype)
    T = np.array([[0.5, 0.5], [1.0, 0.0]], dtype)
    loss_ref, grad_ref = ref_ce_soft(Z, T)
    P = np.empty_like(Z)
    loss = losses.cross_entropy_soft(Z, T, P)
    assert np.isfinite(loss)
    assert_allclose(loss, loss_ref, dtype=dtype)
    assert_allclose(loss_ref, (1000.0 + 2000.0) / 2)  # the reference itself
    assert_allclose(losses.cross_entropy_soft_grad(P, T, np.empty_like(Z)), grad_ref,
                    dtype=dtype)


@pytest.mark.parametrize("shape", [(1,), (8,), (5, 3)], ids=_shape_id)
def test_binary_cross_entropy(dtype, shape):
    Z = random_array(shape, dtype, seed=1) * 4
    T = random_array(shape, dtype, seed=2, low=0.0, high=1.0)
    T.flat[::2] = np.round(T.flat[::2])  # hard 0/1 targets as well as soft ones
    loss_ref, grad_ref = ref_bce(Z, T)
    loss = losses.binary_cross_entropy(Z, T)
    assert type(loss) is float
    assert_allclose(loss, loss_ref, dtype=dtype)
    dZ = _nans(shape, dtype)
    out = losses.binary_cross_entropy_grad(Z, T, dZ)
    assert out is dZ
    assert_allclose(dZ, grad_ref, dtype=dtype)


def test_binary_cross_entropy_extreme_logits(dtype):
    Z = np.array([1000.0, 1000.0, -1000.0, -1000.0, 0.0], dtype)
    T = np.array([1.0, 0.0, 1.0, 0.0, 1.0], dtype)
    # Per element: 0, 1000, 1000, 0, log 2 (a naive log(sigmoid) gives inf).
    expected = (2000.0 + np.log(2.0)) / 5
    loss = losses.binary_cross_entropy(Z, T)
    assert np.isfinite(loss)
    assert_allclose(loss, expected, dtype=dtype)
    dZ = losses.binary_cross_entropy_grad(Z, T, _nans(5, dtype))
    assert_allclose(dZ, np.array([0.0, 1.0, -1.0, 0.0, -0.5]) / 5, dtype=dtype)


def _labels(*values):
    """An int64 label vector."""
    return np.array(values, np.int64)


@pytest.mark.parametrize("fn", ["loss", "grad"])
@pytest.mark.parametrize("labels, bad", [(_labels(0, 4, 1), "label 4 at position 1"),
                                         (_labels(0, 1, 7), "label 7 at position 2"),
                                         (_labels(-1, 0, 0), "label -1 at position 0")],
                         ids=["too-big", "last", "negative"])
def test_cross_entropy_labels_out_of_range(fn, labels, bad):
    # Checked before the kernel indexes with the label (which would read
    # or write out of bounds), in the gradient as well as the loss.
    Z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=f"{bad} is out of range for 4 classes"):
        if fn == "loss":
            losses.cross_entropy_labels(Z, labels, np.empty_like(Z))
        else:
            losses.cross_entropy_labels_grad(Z, labels, np.empty_like(Z))


LOSS_EMPTY_CASES = {
    "regression": lambda e: losses.regression_loss(KIND["mse"], e, e),
    "regression-grad": lambda e: losses.regression_grad(KIND["mae"], e, e, e.copy()),
    "ce-labels": lambda e: losses.cross_entropy_labels(
        e.reshape(0, 3), np.empty(0, np.int64), e.reshape(0, 3).copy()),
    "ce-labels-grad": lambda e: losses.cross_entropy_labels_grad(
        e.reshape(0, 3), np.empty(0, np.int64), e.reshape(0, 3).copy()),
    "ce-soft": lambda e: losses.cross_entropy_soft(
        e.reshape(0, 3), e.reshape(0, 3), e.reshape(0, 3).copy()),
    "ce-soft-grad": lambda e: losses.cross_entropy_soft_grad(
        e.reshape(0, 3), e.reshape(0, 3), e.reshape(0, 3).copy()),
    "bce": lambda e: losses.binary_cross_entropy(e, e),
    "bce-grad": lambda e: losses.binary_cross_entropy_grad(e, e, e.copy()),
}


@pytest.mark.parametrize("case", list(LOSS_EMPTY_CASES))
def test_loss_empty_batch(dtype, case):
    # A mean over nothing is 0/0: refuse rather than return NaN.
    with pytest.raises(ValueError, match="empty batch"):
        LOSS_EMPTY_CASES[case](np.empty(0, dtype))


def test_cross_entropy_no_classes():
    Z = np.empty((3, 0))
    with pytest.raises(ValueError, match="at least one class"):
        losses.cross_entropy_labels(Z, _labels(0, 0, 0), np.empty_like(Z))


@pytest.mark.parametrize("kind", [-1, 3])
def test_regression_unknown_kind(kind):
    P = np.ones(3)
    with pytest.raises(ValueError, match=f"unknown regression loss code {kind}"):
        losses.regression_loss(kind, P, P)


# --- dropout ----------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.9])
def test_dropout(dtype, rate):
    X = random_array((4, 5, 6), dtype, seed=1)
    U = random_array((4, 5, 6), dtype, seed=2, low=0.0, high=1.0)
    # U == rate is kept (the test is U >= rate); rate 0 keeps everything.
    U.flat[:3] = dtype(rate)
    mask_ref = (U >= dtype(rate)) / (1.0 - rate)
    mask, Y = _nans(X.shape, dtype), _nans(X.shape, dtype)

    out = dropout.forward(X, U, mask, Y, rate)

    assert out is Y
    assert_allclose(mask, mask_ref, dtype=dtype)
    assert_allclose(Y, X * mask_ref, dtype=dtype)
    assert np.all(mask.flat[:3] > 0)

    dY = random_array(X.shape, dtype, seed=3)
    dX = _nans(X.shape, dtype)
    out = dropout.backward(mask, dY, dX)
    assert out is dX
    assert_allclose(dX, dY * mask_ref, dtype=dtype)


def test_dropout_in_place(dtype):
    # mask may be U, and backward may run in place (dX is dY).
    rate = 0.3
    X = random_array((50,), dtype, seed=1)
    U = random_array((50,), dtype, seed=2, low=0.0, high=1.0)
    mask_ref = (U >= dtype(rate)) / (1.0 - rate)
    Y = np.empty_like(X)
    dropout.forward(X, U, U, Y, rate)
    assert_allclose(U, mask_ref, dtype=dtype)
    assert_allclose(Y, X * mask_ref, dtype=dtype)
    dY = random_array((50,), dtype, seed=3)
    expected = dY * mask_ref
    assert dropout.backward(U, dY, dY) is dY
    assert_allclose(dY, expected, dtype=dtype)


def test_dropout_rate_half_keeps_half(dtype):
    # With many uniform draws, the kept fraction is close to 1 - rate and
    # the mean of Y stays the mean of X (inverted dropout).
    X = np.ones(20000, dtype)
    U = random_array(X.shape, dtype, seed=4, low=0.0, high=1.0)
    mask, Y = np.empty_like(X), np.empty_like(X)
    dropout.forward(X, U, mask, Y, 0.5)
    assert abs(np.mean(mask > 0) - 0.5) < 0.02
    assert abs(Y.mean() - 1.0) < 0.04


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_bad_rate(rate):
    X = np.ones(3)
    with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\)"):
        dropout.forward(X, X, np.empty(3), np.empty(3), rate)


# --- argument checks of every module ----------------------------------------

f32, f64 = np.ones((2, 3), np.float32), np.ones((2, 3), np.float64)


def _arr(shape, dtype=np.float64):
    """A C-contiguous array of ones."""
    return np.ones(shape, dtype)


def _ro(a):
    """``a`` made read-only."""
    a.flags.writeable = False
    return a


LAB = np.zeros(2, np.int64)
MSE, RELU, GELU = KIND["mse"], ACT["relu"], ACT["gelu"]

# id, call, exception, regex
KERNEL_ERROR_CASES = [
    # activations
    ("act-int", lambda: activations.forward(RELU, _arr(3, int), _arr(3, int)),
     TypeError, "X must have dtype float32 or float64"),
    ("act-mixed", lambda: activations.forward(RELU, _arr(3), _arr(3, np.float32)),
     TypeError, "X and Y must have the same dtype"),
    ("act-shape", lambda: activations.forward(RELU, _arr((2, 3)), _arr((3, 2))),
     ValueError, re.escape("X and Y must have the same shape, got (2, 3) and (3, 2)")),
    ("act-list", lambda: activations.forward(RELU, [1.0], _arr(1)),
     TypeError, "numpy.ndarray"),
    ("act-fortran", lambda: activations.forward(RELU, np.asfortranarray(_arr((2, 3))),
                                                _arr((2, 3))),
     ValueError, "C-contiguous"),
    ("act-readonly", lambda: activations.forward(RELU, _arr(3), _ro(_arr(3))),
     ValueError, "Y is written in place"),
    ("act-bwd-mixed", lambda: activations.backward(GELU, _arr(3), None,
                                                   _arr(3, np.float32), _arr(3)),
     TypeError, "X and dY must have the same dtype"),
    ("act-bwd-shape", lambda: activations.backward(RELU, None, _arr(3), _arr(3), _arr(4)),
     ValueError, "Y and dX must have the same shape"),
    # dense
    ("dense-int", lambda: dense.forward(_arr((2, 4), int), _arr((4, 3)), None,
                                        _arr((2, 3)), _arr((2, 3))),
     TypeError, "X must have dtype"),
    ("dense-mixed-W", lambda: dense.forward(_arr((2, 4)), _arr((4, 3), np.float32), None,
                                            _arr((2, 3)), _arr((2, 3))),
     TypeError, "X and W must have the same dtype"),
    ("dense-mixed-b", lambda: dense.forward(_arr((2, 4)), _arr((4, 3)),
                                            _arr(3, np.float32), _arr((2, 3)), _arr((2, 3))),
     TypeError, "X and b must have the same dtype"),
    ("dense-W", lambda: dense.forward(_arr((2, 4)), _arr((5, 3)), None,
                                      _arr((2, 3)), _arr((2, 3))),
     ValueError, re.escape("W has shape (5, 3), expected (4, 3)")),
    ("dense-b", lambda: dense.forward(_arr((2, 4)), _arr((4, 3)), _arr(2),
                                      _arr((2, 3)), _arr((2, 3))),
     ValueError, re.escape("b has shape (2,), expected (3,)")),
    ("dense-Y", lambda: dense.forward(_arr((2, 4)), _arr((4, 3)), None,
                                      _arr((2, 3)), _arr((3, 3))),
     ValueError, re.escape("Y has shape (3, 3), expected (2, 3)")),
    ("dense-1d-X", lambda: dense.forward(_arr(4), _arr((4, 3)), None,
                                         _arr((1, 3)), _arr((1, 3))),
     ValueError, "X must be 2-dimensional"),
    ("dense-bwd-dW", lambda: dense.backward(_arr((2, 4)), _arr((4, 3)), None, None,
                                            _arr((2, 3)), None, _arr((3, 4)), None, None),
     ValueError, re.escape("dW has shape (3, 4), expected (4, 3)")),
    ("dense-bwd-dX", lambda: dense.backward(_arr((2, 4)), _arr((4, 3)), None, None,
                                            _arr((2, 3)), None, _arr((4, 3)), None,
                                            _arr((2, 3))),
     ValueError, re.escape("dX has shape (2, 3), expected (2, 4)")),
    ("dense-bwd-mixed-db", lambda: dense.backward(_arr((2, 4)), _arr((4, 3)), None, None,
                                                  _arr((2, 3)), None, _arr((4, 3)),
                                                  _arr(3, np.float32), None),
     TypeError, "X and db must have the same dtype"),
    ("dense-bwd-readonly-dW", lambda: dense.backward(_arr((2, 4)), _arr((4, 3)), None, None,
                                                     _arr((2, 3)), None, _ro(_arr((4, 3))),
                                                     None, None),
     ValueError, "dW is written in place"),
    ("dense-bwd-dZ-shape", lambda: dense.backward(_arr((2, 4)), _arr((4, 3)), None,
                                                  _arr((2, 3)), _arr((2, 3)), _arr((3, 2)),
                                                  _arr((4, 3)), None, None, RELU),
     ValueError, re.escape("dZ has shape (3, 2), expected (2, 3)")),
    ("dense-bad-act", lambda: dense.forward(_arr((2, 4)), _arr((4, 3)), None,
                                            _arr((2, 3)), _arr((2, 3)), 99),
     ValueError, "unknown activation code 99"),
    # losses
    ("reg-int", lambda: losses.regression_loss(MSE, _arr(3, int), _arr(3, int)),
     TypeError, "pred must have dtype"),
    ("reg-mixed", lambda: losses.regression_loss(MSE, _arr(3), _arr(3, np.float32)),
     TypeError, "pred and target must have the same dtype"),
    ("reg-shape", lambda: losses.regression_loss(MSE, _arr(3), _arr(4)),
     ValueError, re.escape("pred and target must have the same shape, got (3,) and (4,)")),
    ("reg-grad-shape", lambda: losses.regression_grad(MSE, _arr(3), _arr(3), _arr(2)),
     ValueError, "pred and dP must have the same shape"),
    ("reg-grad-mixed", lambda: losses.regression_grad(MSE, _arr(3), _arr(3),
                                                      _arr(3, np.float32)),
     TypeError, "pred and dP must have the same dtype"),
    ("ce-float16", lambda: losses.cross_entropy_labels(_arr((2, 3), np.float16), LAB,
                                                       _arr((2, 3), np.float16)),
     TypeError, "logits must have dtype"),
    ("ce-mixed", lambda: losses.cross_entropy_labels(f32, LAB, f64.copy()),
     TypeError, "logits and probs must have the same dtype"),
    ("ce-P-shape", lambda: losses.cross_entropy_labels(f64, LAB, _arr((3, 2))),
     ValueError, "logits and probs must have the same shape"),
    ("ce-int32-labels", lambda: losses.cross_entropy_labels(f64, LAB.astype(np.int32),
                                                            f64.copy()),
     TypeError, "labels must be an int64 ndarray"),
    ("ce-list-labels", lambda: losses.cross_entropy_labels(f64, [0, 0], f64.copy()),
     TypeError, "labels must be an int64 ndarray"),
    ("ce-labels-shape", lambda: losses.cross_entropy_labels(f64, np.zeros(3, np.int64),
                                                            f64.copy()),
     ValueError, re.escape("labels must have shape (2,), got (3,)")),
    ("ce-labels-strided", lambda: losses.cross_entropy_labels(f64, np.zeros(4, np.int64)[::2],
                                                              f64.copy()),
     ValueError, "labels must be C-contiguous"),
    ("ce-1d-logits", lambda: losses.cross_entropy_labels(_arr(3), LAB, _arr(3)),
     ValueError, "logits must be 2-dimensional"),
    ("ce-soft-mixed-T", lambda: losses.cross_entropy_soft(f64, f32, f64.copy()),
     TypeError, "logits and target must have the same dtype"),
    ("ce-soft-T-shape", lambda: losses.cross_entropy_soft(f64, _arr((2, 4)), f64.copy()),
     ValueError, "logits and target must have the same shape"),
    ("ce-soft-grad-T", lambda: losses.cross_entropy_soft_grad(f64, _arr((3, 3)), f64.copy()),
     ValueError, "probs and target must have the same shape"),
    ("bce-mixed", lambda: losses.binary_cross_entropy(f64, f32),
     TypeError, "same dtype"),
    ("bce-grad-shape", lambda: losses.binary_cross_entropy_grad(f64, f64, _arr((3, 2))),
     ValueError, "logits and dZ must have the same shape"),
    ("bce-grad-readonly", lambda: losses.binary_cross_entropy_grad(f64, f64, _ro(_arr((2, 3)))),
     ValueError, "dZ is written in place"),
    # dropout
    ("drop-int", lambda: dropout.forward(_arr(3, int), _arr(3), _arr(3), _arr(3), 0.5),
     TypeError, "X must have dtype"),
    ("drop-mixed-U", lambda: dropout.forward(_arr(3), _arr(3, np.float32), _arr(3),
                                             _arr(3), 0.5),
     TypeError, "X and U must have the same dtype"),
    ("drop-shape-mask", lambda: dropout.forward(_arr(3), _arr(3), _arr(4), _arr(3), 0.5),
     ValueError, re.escape("X and mask must have the same shape, got (3,) and (4,)")),
    ("drop-readonly-Y", lambda: dropout.forward(_arr(3), _arr(3), _arr(3), _ro(_arr(3)), 0.5),
     ValueError, "Y is written in place"),
    ("drop-bwd-mixed", lambda: dropout.backward(_arr(3), _arr(3, np.float32), _arr(3)),
     TypeError, "mask and dY must have the same dtype"),
    ("drop-bwd-shape", lambda: dropout.backward(_arr(3), _arr(3), _arr((3, 1))),
     ValueError, "mask and dX must have the same shape"),
]


@pytest.mark.parametrize("call, exc, match",
                         [case[1:] for case in KERNEL_ERROR_CASES],
                         ids=[case[0] for case in KERNEL_ERROR_CASES])
def test_kernel_argument_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --- threads ----------------------------------------------------------------

N_THREADS = 4


def run_in_threads(work, n_threads=N_THREADS, repeats=10):
    """Run ``work(i)`` for i in range(n_threads), each in its own thread.

    The threads start together at a barrier and each calls ``work`` ``repeats``
    times, so the calls overlap when the kernel releases the GIL.

    Returns
    -------
    list
        The last return value of each thread's ``work``.
    """
    barrier = threading.Barrier(n_threads)
    results = [None] * n_threads
    errors = []

    def target(i):
        try:
            barrier.wait()
            for _ in range(repeats):
                results[i] = work(i)
        except BaseException as err:  # re-raised in the main thread
            errors.append(err)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_gemm_from_threads(dtype):
    A = random_array((200, 150), dtype, seed=1)
    B = random_array((150, 120), dtype, seed=2)
    expected = _blas.gemm(A, B, np.empty((200, 120), dtype))
    outputs = [np.empty((200, 120), dtype) for _ in range(N_THREADS)]

    def work(i):
        outputs[i].fill(np.nan)
        return _blas.gemm(A, B, outputs[i]).copy()

    for result in run_in_threads(work):
        assert_allclose(result, expected, dtype=dtype)


def test_dense_forward_from_threads(dtype):
    X = random_array((300, 64), dtype, seed=1)
    W = random_array((64, 32), dtype, seed=2)
    b = random_array((32,), dtype, seed=3)
    code = ACT["tanh"]
    Z_ref, Y_ref = np.empty((300, 32), dtype), np.empty((300, 32), dtype)
    dense.forward(X, W, b, Z_ref, Y_ref, code)
    outs = [(np.empty_like(Z_ref), np.empty_like(Y_ref)) for _ in range(N_THREADS)]

    def work(i):
        Z, Y = outs[i]
        Z.fill(np.nan)
        Y.fill(np.nan)
        dense.forward(X, W, b, Z, Y, code)
        return Z.copy(), Y.copy()

    for Z, Y in run_in_threads(work):
        assert_allclose(Z, Z_ref, dtype=dtype)
        assert_allclose(Y, Y_ref, dtype=dtype)


def unaligned_labels(values):
    """int64 labels, C-contiguous, at an odd byte offset (flags.aligned False)."""
    raw = np.zeros(len(values) * 8 + 1, dtype=np.uint8)
    labels = raw[1:].view(np.int64)
    labels[:] = values
    assert labels.flags.c_contiguous and not labels.flags.aligned
    return labels


def test_label_kernels_refuse_unaligned_labels_and_the_losses_realign_them():
    from cdl import losses
    from cdl._kernels import losses as kernel

    z = np.random.default_rng(0).standard_normal((4, 3))
    labels = unaligned_labels([0, 2, 1, 2])
    with pytest.raises(ValueError, match="aligned"):
        kernel.cross_entropy_labels(z, labels, np.empty_like(z))
    expected = losses.CrossEntropy().forward(z, np.array([0, 2, 1, 2]))
    assert losses.CrossEntropy().forward(z, labels) == expected
