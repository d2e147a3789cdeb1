"""SELU, SiLU/swish, Mish, Softplus, Softsign, HardSigmoid, HardSwish, ReLU6,
LogSoftmax and PReLU: kernels against NumPy/SciPy references, layers against
PyTorch, float64 gradient checks, extreme and NaN inputs, the fused training
step, and the layer contract."""
import numpy as np
import pytest
from scipy.special import log_softmax as sp_log_softmax

import cdl
from cdl import _fused, layers, losses, optimizers
from cdl._kernels import activations
from helpers import (GRADCHECK_TOL, SELU_ALPHA, SELU_SCALE, assert_allclose, check_layer,
                     random_array, ref_backward, ref_forward)

ACT = activations.CODES

#: The activation names this file covers ("swish" is another name of "silu").
NAMES = ["selu", "silu", "swish", "mish", "softplus", "softsign", "hard_sigmoid",
         "hard_swish", "relu6", "log_softmax"]
ELEMENTWISE = [n for n in NAMES if n != "log_softmax"]

#: Layer class per activation name (with default parameters).
LAYER_OF = {
    "selu": layers.SELU, "silu": layers.SiLU, "mish": layers.Mish,
    "softplus": layers.Softplus, "softsign": layers.Softsign,
    "hard_sigmoid": layers.HardSigmoid, "hard_swish": layers.HardSwish,
    "relu6": layers.ReLU6, "log_softmax": layers.LogSoftmax,
}

#: Points where the function or its derivative is not smooth.
KINKS = {"selu": [0.0], "hard_sigmoid": [-3.0, 3.0], "hard_swish": [-3.0, 3.0],
         "relu6": [0.0, 6.0]}


def inputs(shape, dtype, seed=0):
    """Normal draws scaled by 4 (covering every piece of the hard functions),
    with the kinks themselves planted."""
    x = random_array(shape, dtype, seed=seed) * 4
    flat = x.reshape(-1)
    for i, k in enumerate([0.0, -3.0, 3.0, 6.0]):
        flat[7 * i::29] = k
    return x


def away_from_kinks(x, kinks, margin=0.05):
    """Move entries within ``margin`` of any kink off it."""
    x = x.copy()
    for kink in kinks:
        close = np.abs(x - kink) < margin
        x[close] = kink + np.where(x[close] >= kink, margin, -margin)
    return x


def _param(name):
    return 1.0 if name == "softplus" else 0.0


# --- kernels against the references ---------------------------------------------

def test_codes_and_aliases():
    last = activations.Activation.ACT_LAST
    for name in NAMES:
        assert name in ACT and 0 <= ACT[name] <= last
    assert ACT["swish"] == ACT["silu"] and activations.ALIASES == {"swish": "silu"}
    canonical = [n for n in ACT if n not in activations.ALIASES]
    assert len({ACT[n] for n in canonical}) == len(canonical)
    assert max(ACT.values()) == last
    # The codes that existed before keep their values (saved plans, other kernels).
    assert [ACT[n] for n in ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu",
                             "elu", "softmax"]] == list(range(8))


def test_needs_input_and_rowwise():
    for name in ["selu", "silu", "mish", "softplus", "softsign", "hard_sigmoid", "hard_swish"]:
        assert activations.needs_input(ACT[name]) is True
    for name in ["relu6", "log_softmax"]:
        assert activations.needs_input(ACT[name]) is False


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(7,), (4, 5), (2, 3, 6)], ids=["1d", "2d", "3d"])
def test_kernel_forward_backward(dtype, name, shape):
    x = inputs(shape, dtype)
    x0 = x.copy()
    y = np.full(shape, np.nan, dtype)
    assert activations.forward(ACT[name], x, y) is y
    assert_allclose(y, ref_forward(name, x), dtype=dtype)
    np.testing.assert_array_equal(x, x0)
    dy = random_array(shape, dtype, seed=1)
    dx = np.full(shape, np.nan, dtype)
    saved = (x, None) if activations.needs_input(ACT[name]) else (None, y)
    assert activations.backward(ACT[name], *saved, dy, dx) is dx
    assert_allclose(dx, ref_backward(name, x, dy), dtype=dtype)


@pytest.mark.parametrize("name", NAMES)
def test_kernel_in_place(dtype, name):
    x = inputs((3, 8), dtype)
    y = x.copy()
    activations.forward(ACT[name], y, y)
    assert_allclose(y, ref_forward(name, x), dtype=dtype)
    dy = random_array(x.shape, dtype, seed=2)
    expected = ref_backward(name, x, dy)
    activations.backward(ACT[name], x, y, dy, dy)
    assert_allclose(dy, expected, dtype=dtype)


@pytest.mark.parametrize("beta, threshold", [(1.0, 20.0), (2.0, 1.0), (0.5, 3.0), (3.0, -2.0)])
def test_softplus_parameters(dtype, beta, threshold):
    x = inputs((6, 7), dtype)
    x.flat[3] = threshold / beta  # exactly at the threshold: still the logarithm
    y = activations.softplus_forward(x, np.empty_like(x), beta, threshold)
    assert_allclose(y, ref_forward("softplus", x, beta, threshold), dtype=dtype)
    dy = random_array(x.shape, dtype, seed=3)
    dx = activations.softplus_backward(x, dy, np.empty_like(x), beta, threshold)
    assert_allclose(dx, ref_backward("softplus", x, dy, beta, threshold), dtype=dtype)
    if threshold == 20.0:  # the activation code runs the same kernel
        y2 = activations.forward(ACT["softplus"], x, np.empty_like(x), beta)
        np.testing.assert_array_equal(y, y2)
        dx2 = activations.backward(ACT["softplus"], x, None, dy, np.empty_like(x), beta)
        np.testing.assert_array_equal(dx, dx2)


def test_softplus_beta_must_be_positive():
    x = np.ones(3)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="beta > 0"):
            activations.forward(ACT["softplus"], x, np.empty_like(x), bad)
        with pytest.raises(ValueError, match="beta > 0"):
            activations.backward(ACT["softplus"], x, None, x, np.empty_like(x), bad)
        with pytest.raises(ValueError, match="beta > 0"):
            activations.softplus_forward(x, np.empty_like(x), bad)
    # Without a parameter softplus takes beta = 1; the others keep 0.
    y = activations.forward(ACT["softplus"], x, np.empty_like(x))
    np.testing.assert_allclose(y, np.log1p(np.e))
    with pytest.raises(ValueError, match="beta"):
        layers.Softplus(beta=0)
    with pytest.raises(ValueError, match="finite"):
        layers.Softplus(threshold=float("nan"))


def test_log_softmax_rows(dtype):
    x = random_array((2, 3, 4), dtype, seed=3) * 5
    y = activations.forward(ACT["log_softmax"], x, np.empty_like(x))
    assert_allclose(np.exp(y).sum(axis=-1), np.ones((2, 3)), dtype=dtype)
    assert_allclose(y.reshape(6, 4), sp_log_softmax(x.reshape(6, 4).astype(np.float64), axis=1),
                    dtype=dtype)
    with pytest.raises(ValueError, match="at least one axis"):
        activations.forward(ACT["log_softmax"], np.array(1.0), np.array(0.0))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(0,), (0, 5), (5, 0)], ids=["0", "0x5", "5x0"])
def test_kernel_empty(dtype, name, shape):
    x = np.empty(shape, dtype)
    assert activations.forward(ACT[name], x, np.empty(shape, dtype)).shape == shape
    assert activations.backward(ACT[name], x, x, x, np.empty(shape, dtype)).shape == shape


# --- extreme inputs and NaN -------------------------------------------------------

LARGE = [-1e30, -1000.0, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1000.0, 1e30]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_large_inputs_are_finite_and_right(dtype, name):
    x = np.array(LARGE, dtype)
    y = activations.forward(ACT[name], x, np.full_like(x, np.nan))
    assert np.isfinite(y).all()
    assert_allclose(y, ref_forward(name, x), dtype=dtype)
    dy = np.ones_like(x)
    dx = activations.backward(ACT[name], x, y, dy, np.full_like(x, np.nan))
    assert np.isfinite(dx).all()
    assert_allclose(dx, ref_backward(name, x, dy), dtype=dtype)


def test_large_inputs_limits(dtype):
    x = np.array([-1000.0, 1000.0], dtype)
    run = lambda name: activations.forward(ACT[name], x, np.empty_like(x))  # noqa: E731
    np.testing.assert_array_equal(run("silu"), [0.0, 1000.0])
    np.testing.assert_array_equal(run("mish"), [0.0, 1000.0])
    np.testing.assert_array_equal(run("softplus"), [0.0, 1000.0])
    np.testing.assert_array_equal(run("hard_sigmoid"), [0.0, 1.0])
    np.testing.assert_array_equal(run("hard_swish"), [0.0, 1000.0])
    np.testing.assert_array_equal(run("relu6"), [0.0, 6.0])
    assert_allclose(run("selu"), [-SELU_SCALE * SELU_ALPHA, 1000 * SELU_SCALE], dtype=dtype)
    # Softplus above the threshold is exactly x, even with a threshold past exp's range.
    big = np.array([50.0, 500.0, 5000.0], dtype)
    y = activations.softplus_forward(big, np.empty_like(big), 1.0, 1e6)
    assert_allclose(y, big, dtype=dtype)
    assert np.isfinite(activations.softplus_backward(big, np.ones_like(big),
                                                     np.empty_like(big), 1.0, 1e6)).all()


def test_log_softmax_extreme_logits(dtype):
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0],
                  [1e30, 0.0, -1e30]], dtype)
    y = activations.forward(ACT["log_softmax"], x, np.full_like(x, np.nan))
    assert np.isfinite(y).all()
    assert_allclose(y, ref_forward("log_softmax", x), dtype=dtype)
    assert_allclose(y[1], np.full(3, -np.log(3.0)), dtype=dtype)
    dy = random_array(x.shape, dtype, seed=4)
    dx = activations.backward(ACT["log_softmax"], None, y, dy, np.full_like(x, np.nan))
    assert np.isfinite(dx).all()
    assert_allclose(dx, ref_backward("log_softmax", x, dy), dtype=dtype)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_nan_propagates(dtype, name):
    x = np.array([np.nan, -2.0, 0.5, 4.0], dtype)
    y = activations.forward(ACT[name], x, np.empty_like(x))
    assert np.isnan(y[0]) and np.isfinite(y[1:]).all()
    # A NaN upstream gradient reaches the input wherever the derivative is not
    # 0 (the piecewise-linear ones multiply by their slope, so everywhere).
    dy = np.full_like(x, np.nan)
    dx = activations.backward(ACT[name], x, y, dy, np.empty_like(x))
    slope = ref_backward(name, x[1:], np.ones(3))
    assert np.isnan(dx[1:][slope != 0]).all()
    if name not in ("hard_sigmoid", "hard_swish", "relu6"):
        # Smooth functions: a NaN input makes a NaN gradient. (The piecewise
        # linear ones follow PyTorch there; their NaN output poisons the loss.)
        dx = activations.backward(ACT[name], x, y, np.ones_like(x), np.empty_like(x))
        assert np.isnan(dx[0]) and np.isfinite(dx[1:]).all()


def test_nan_propagates_log_softmax(dtype):
    x = np.array([[0.0, np.nan, 1.0], [np.nan, 2.0, 1.0], [1.0, 2.0, 3.0]], dtype)
    y = activations.forward(ACT["log_softmax"], x, np.empty_like(x))
    assert np.isnan(y[:2]).all() and np.isfinite(y[2]).all()


def test_nan_propagates_prelu(dtype):
    layer = layers.PReLU(dtype=dtype)
    y = layer.forward(np.array([[np.nan, -1.0, 1.0]], dtype))
    assert np.isnan(y[0, 0]) and np.isfinite(y[0, 1:]).all()


# --- layers -------------------------------------------------------------------------

def test_names_reach_the_layers(dtype):
    x = inputs((5, 6), dtype)
    for name in NAMES:
        y = layers.Activation(name, dtype=dtype).forward(x)
        assert_allclose(y, ref_forward(name, x), dtype=dtype)
    assert layers.Activation("swish").get_config()["activation"] == "swish"
    a = cdl.Sequential([layers.Dense(4, activation="swish")], input_shape=(6,), dtype=dtype,
                       seed=1)
    b = cdl.Sequential([layers.Dense(4, activation="silu")], input_shape=(6,), dtype=dtype,
                       seed=1)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))


@pytest.mark.parametrize("name", list(LAYER_OF))
def test_layer_class_equals_activation_by_name(dtype, name):
    x = inputs((4, 7), dtype)
    by_class = LAYER_OF[name](dtype=dtype)
    by_name = layers.Activation(name, dtype=dtype)
    np.testing.assert_array_equal(by_class.forward(x), by_name.forward(x))
    dy = random_array(x.shape, dtype, seed=5)
    np.testing.assert_array_equal(by_class.backward(dy), by_name.backward(dy))


@pytest.mark.parametrize("name", list(LAYER_OF))
def test_dense_activation_matches_separate_layer(dtype, name):
    fused = cdl.Sequential([layers.Dense(5, activation=name)], input_shape=(3,), dtype=dtype,
                           seed=5)
    split = cdl.Sequential([layers.Dense(5), LAYER_OF[name]()], input_shape=(3,), dtype=dtype,
                           seed=5)
    x = random_array((6, 3), dtype, seed=6) * 3
    np.testing.assert_array_equal(fused.forward(x), split.forward(x))
    g = random_array((6, 5), dtype, seed=7)
    np.testing.assert_array_equal(fused.backward(g), split.backward(g))
    for a, b in zip(fused.grads, split.grads):
        np.testing.assert_array_equal(a, b)


# --- PyTorch parity -----------------------------------------------------------------

def _torch_cases():
    return {
        "SELU": (layers.SELU, lambda t, F, x: F.selu(x)),
        "SiLU": (layers.SiLU, lambda t, F, x: F.silu(x)),
        "Mish": (layers.Mish, lambda t, F, x: F.mish(x)),
        "Softplus": (layers.Softplus, lambda t, F, x: F.softplus(x)),
        "Softplus-beta2-threshold1": (lambda **kw: layers.Softplus(beta=2.0, threshold=1.0, **kw),
                                      lambda t, F, x: F.softplus(x, beta=2.0, threshold=1.0)),
        "Softplus-beta0.5": (lambda **kw: layers.Softplus(beta=0.5, **kw),
                             lambda t, F, x: F.softplus(x, beta=0.5)),
        "Softsign": (layers.Softsign, lambda t, F, x: F.softsign(x)),
        "HardSigmoid": (layers.HardSigmoid, lambda t, F, x: F.hardsigmoid(x)),
        "HardSwish": (layers.HardSwish, lambda t, F, x: F.hardswish(x)),
        "ReLU6": (layers.ReLU6, lambda t, F, x: F.relu6(x)),
        "LogSoftmax": (layers.LogSoftmax, lambda t, F, x: F.log_softmax(x, dim=-1)),
    }


@pytest.mark.parametrize("case", list(_torch_cases()))
def test_pytorch_parity(dtype, case):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    make, torch_fn = _torch_cases()[case]
    # Kinks included: conventions there must match PyTorch's.
    x = inputs((6, 10), dtype, seed=8)
    x.flat[5] = 0.5  # Softplus(beta=2, threshold=1): exactly at the threshold
    dy = random_array(x.shape, dtype, seed=9)
    layer = make(dtype=dtype)
    y = layer.forward(x)
    dx = layer.backward(dy)

    tx = torch.tensor(x, requires_grad=True)
    ty = torch_fn(torch, F, tx)
    ty.backward(torch.tensor(dy))
    assert_allclose(y, ty.detach().numpy(), dtype=dtype)
    overrides = {}
    if case == "HardSigmoid" and dtype == np.float64:
        # PyTorch's float64 hardsigmoid gradient uses 1/6 rounded to float32.
        overrides = {"rtol": 1e-7}
    assert_allclose(dx, tx.grad.numpy(), dtype=dtype, **overrides)


@pytest.mark.parametrize("shape", [(10,), (4, 10), (3, 4, 10)], ids=["1d", "2d", "3d"])
def test_prelu_pytorch_parity(dtype, shape):
    torch = pytest.importorskip("torch")
    layer = layers.PReLU(alpha_initializer="normal", dtype=dtype)
    model = cdl.Sequential([layer], input_shape=shape, dtype=dtype, seed=0)
    x = random_array((5,) + shape, dtype, seed=10)
    dy = random_array(x.shape, dtype, seed=11)
    y = model.forward(x)
    dx = model.backward(dy)
    assert layer.alpha.shape == (shape[-1],)

    # PyTorch's channel axis is 1: move ours (the last) there and back.
    tx = torch.tensor(np.moveaxis(x, -1, 1).copy(), requires_grad=True)
    tw = torch.tensor(layer.alpha.copy(), requires_grad=True)
    ty = torch.nn.functional.prelu(tx, tw)
    ty.backward(torch.tensor(np.moveaxis(dy, -1, 1).copy()))
    assert_allclose(y, np.moveaxis(ty.detach().numpy(), 1, -1), dtype=dtype)
    assert_allclose(dx, np.moveaxis(tx.grad.numpy(), 1, -1), dtype=dtype)
    assert_allclose(layer.alpha_grad, tw.grad.numpy(), dtype=dtype)


def test_prelu_default_matches_pytorch_init():
    torch = pytest.importorskip("torch")
    layer = layers.PReLU()
    cdl.Sequential([layer], input_shape=(3,), seed=0)
    np.testing.assert_array_equal(layer.alpha, torch.nn.PReLU(3).weight.detach().numpy())


# --- float64 gradient checks --------------------------------------------------------

GRADCHECK_LAYERS = {
    **{cls.__name__: (cls, KINKS.get(name, [])) for name, cls in LAYER_OF.items()},
    "Softplus-beta2-threshold3": (lambda: layers.Softplus(beta=2.0, threshold=3.0), [1.5]),
    "Activation-swish": (lambda: layers.Activation("swish"), []),
}


@pytest.mark.parametrize("case", list(GRADCHECK_LAYERS))
@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4)], ids=["2d", "3d"])
def test_gradcheck_activation_layers(case, shape):
    make, kinks = GRADCHECK_LAYERS[case]
    x = away_from_kinks(random_array(shape, seed=1) * 4, kinks)
    errors = cdl.gradcheck(make(), x)
    assert max(errors.values()) < GRADCHECK_TOL


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_dense(name):
    layer = layers.Dense(4, activation=name)
    # Seeded weights: with fresh draws, about 1 run in 130 put a pre-activation
    # within 1e-3 of a kink, where finite differences disagree with the
    # one-sided derivative (seed 0 keeps every one at least 0.05 away).
    cdl.Sequential([layer], input_shape=(5,), dtype="float64", seed=0)
    # Wide inputs reach every piece of the hard functions; check the kinks
    # are not hit by the pre-activations.
    x = random_array((6, 5), seed=2) * 3
    z = x @ layer.kernel + layer.bias
    assert all(np.abs(z - k).min() > 1e-3 for k in KINKS.get(name, []))
    errors = cdl.gradcheck(layer, x)
    assert max(errors.values()) < GRADCHECK_TOL


PRELU_CASES = {
    # (shared_axes, per-sample input shape, expected alpha shape)
    "default-1d": (None, (5,), (5,)),
    "default-3d": (None, (2, 3, 5), (5,)),
    "per-element": ([], (3, 4), (3, 4)),
    "single": ([1, 2], (3, 4), (1,)),
    "inner-shared": ([2], (2, 3, 4), (2, 1, 4)),
    "leading-shared": (1, (3, 4), (4,)),
    "negative-axis": (-2, (2, 3, 4), (2, 1, 4)),
    "channels-shared": ([-1], (3, 4), (3, 1)),
}


@pytest.mark.parametrize("case", list(PRELU_CASES))
def test_prelu_gradcheck_and_shapes(case):
    shared_axes, shape, alpha_shape = PRELU_CASES[case]
    layer = layers.PReLU(alpha_initializer="normal", shared_axes=shared_axes)
    cdl.Sequential([layer], input_shape=shape, dtype="float64", seed=3)
    assert layer.alpha.shape == alpha_shape
    x = away_from_kinks(random_array((4,) + shape, seed=4), [0.0])
    errors = cdl.gradcheck(layer, x)
    assert set(errors) == {"input", f"{layer.name}.alpha"}
    assert max(errors.values()) < GRADCHECK_TOL


@pytest.mark.parametrize("case", list(PRELU_CASES))
def test_prelu_against_numpy(dtype, case):
    shared_axes, shape, _ = PRELU_CASES[case]
    layer = layers.PReLU(alpha_initializer="normal", shared_axes=shared_axes)
    cdl.Sequential([layer], input_shape=shape, dtype=dtype, seed=3)
    x = random_array((4,) + shape, dtype, seed=5)
    x.flat[::7] = 0
    dy = random_array(x.shape, dtype, seed=6)
    alpha = np.broadcast_to(layer.alpha.astype(np.float64), shape)
    y = layer.forward(x)
    assert_allclose(y, np.where(x > 0, x, alpha * x), dtype=dtype)
    dx = layer.backward(dy)
    assert_allclose(dx, np.where(x > 0, dy, alpha * dy), dtype=dtype)
    full = np.where(x > 0, 0.0, x.astype(np.float64) * dy).sum(axis=0)
    shared = tuple(a for a in range(len(shape)) if layer.alpha.ndim < len(shape) - a
                   or layer.alpha.shape[a - len(shape)] == 1 and shape[a] != 1)
    expected = full.sum(axis=shared, keepdims=True).reshape(layer.alpha.shape)
    assert_allclose(layer.alpha_grad, expected, dtype=dtype)


def test_prelu_kernel(dtype):
    x = random_array((6, 4), dtype, seed=7)
    x[0] = 0
    a = random_array((4,), dtype, seed=8)
    dy = random_array((6, 4), dtype, seed=9)
    y = activations.prelu_forward(x, a, np.full_like(x, np.nan))
    assert_allclose(y, np.where(x > 0, x, a * x), dtype=dtype)
    dx, da = np.full_like(x, np.nan), np.full_like(a, np.nan)
    activations.prelu_backward(x, a, dy, dx, da)
    assert_allclose(dx, np.where(x > 0, dy, a * dy), dtype=dtype)
    assert_allclose(da, np.where(x > 0, 0.0, x.astype(np.float64) * dy).sum(axis=0),
                    dtype=dtype)
    # In place.
    y2 = x.copy()
    activations.prelu_forward(y2, a, y2)
    np.testing.assert_array_equal(y2, y)
    dy2 = dy.copy()
    activations.prelu_backward(x, a, dy2, dy2, da)
    np.testing.assert_array_equal(dy2, dx)
    with pytest.raises(ValueError, match="slopes"):
        activations.prelu_forward(x, a[:3], np.empty_like(x))
    with pytest.raises(TypeError, match="dtype"):
        activations.prelu_forward(x, a.astype(np.float16), np.empty_like(x))


def test_prelu_arguments():
    with pytest.raises(ValueError, match="batch axis"):
        layers.PReLU(shared_axes=[0])
    with pytest.raises(TypeError, match="shared_axes"):
        layers.PReLU(shared_axes="channels")
    with pytest.raises(TypeError, match="shared_axes"):
        layers.PReLU(shared_axes=[1.5])
    with pytest.raises(ValueError, match="out of range"):
        cdl.Sequential([layers.PReLU(shared_axes=[3])], input_shape=(4, 5))
    with pytest.raises(ValueError, match="finite"):
        layers.PReLU(alpha_initializer=float("inf"))
    with pytest.raises(ValueError, match="unknown initializer"):
        layers.PReLU(alpha_initializer="bogus")


@pytest.mark.parametrize("init, expected", [(0.25, 0.25), (-0.5, -0.5), ("ones", "ones"),
                                            ("constant", 0.0)])
def test_prelu_config(init, expected):
    layer = layers.PReLU(alpha_initializer=init, shared_axes=[1])
    config = layer.get_config()
    assert config["alpha_initializer"] == expected and config["shared_axes"] == [1]
    clone = layers.PReLU.from_config(config)
    assert clone.get_config() == config


def test_save_and_load_new_layers(tmp_path):
    model = cdl.Sequential([layers.Dense(6, activation="mish"), layers.PReLU(),
                            layers.Softplus(beta=2.0, threshold=5.0), layers.Dense(4),
                            layers.HardSwish(), layers.GaussianNoise(0.1), layers.SELU(),
                            layers.Activation("swish"), layers.Dense(3), layers.LogSoftmax()],
                           input_shape=(5,), dtype="float64", seed=0)
    model.params[2][...] = np.linspace(-1, 1, 6)  # the PReLU slopes, away from their start
    path = tmp_path / "model.cdl"
    model.save(path)
    again = cdl.load_model(path)
    assert [type(a) for a in again.layers] == [type(b) for b in model.layers]
    x = random_array((7, 5), seed=1)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


# --- the fused training step --------------------------------------------------------

def _train(make_layers, dtype, fused, loss="mse", epochs=3):
    model = cdl.Sequential(make_layers(), input_shape=(5,), dtype=dtype, seed=3)
    model.compile(optimizers.Adam(lr=0.01), loss)
    model.use_fused_step = fused
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 5)) * 2
    y = rng.integers(0, 3, 50) if loss == "cross_entropy" else rng.standard_normal((50, 3))
    history = model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    return model, history


FUSED_ARCHS = {
    "dense": lambda name: lambda: [layers.Dense(8, activation=name), layers.Dense(3)],
    "standalone": lambda name: lambda: [layers.Dense(8), layers.Activation(name),
                                        layers.Dense(3)],
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("arch", list(FUSED_ARCHS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_step_equals_layer_path(name, arch, dtype):
    make = FUSED_ARCHS[arch](name)
    fused, h1 = _train(make, dtype, True)
    plain, h2 = _train(make, dtype, False)
    assert fused._plan is not None and plain._plan is None
    assert np.array_equal(fused.param_buffer, plain.param_buffer)
    assert h1.history == h2.history
    x = np.random.default_rng(5).standard_normal((9, 5))
    fused_pred = fused.predict(x, batch_size=4)
    assert fused._predict_plan is not None
    fused.use_fused_step = False
    np.testing.assert_array_equal(fused_pred, fused.predict(x, batch_size=4))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_step_with_every_new_layer_class(dtype):
    def make():
        return [layers.Dense(8), layers.SELU(), layers.Dense(8), layers.SiLU(),
                layers.Dense(8), layers.Mish(), layers.Dense(8), layers.Softplus(beta=1.5),
                layers.Dense(8), layers.Softsign(), layers.Dense(8), layers.HardSigmoid(),
                layers.Dense(8), layers.HardSwish(), layers.Dropout(0.2), layers.Dense(8),
                layers.ReLU6(), layers.Dense(3), layers.LogSoftmax()]
    for loss in ("mse", "cross_entropy"):
        fused, h1 = _train(make, dtype, True, loss=loss)
        plain, h2 = _train(make, dtype, False, loss=loss)
        assert fused._plan is not None
        assert np.array_equal(fused.param_buffer, plain.param_buffer)
        assert h1.history == h2.history


def test_layers_outside_the_fused_step_fall_back():
    for extra in (layers.Softplus(threshold=5.0), layers.PReLU(), layers.GaussianNoise(0.1)):
        model = cdl.Sequential([layers.Dense(8), extra, layers.Dense(3)], input_shape=(5,),
                               seed=0)
        model.compile("sgd", losses.MSE())
        assert _fused.build_plan(model, 8) is None
    make = lambda: [layers.Dense(8), layers.Softplus(beta=2.0, threshold=5.0),  # noqa: E731
                    layers.PReLU(), layers.Dense(3)]
    a, _ = _train(make, "float64", True)
    b, _ = _train(make, "float64", False)
    assert np.array_equal(a.param_buffer, b.param_buffer)


# --- the layer contract ---------------------------------------------------------------

CONTRACT_CASES = {
    **{cls.__name__: (lambda cls=cls: cls(), (4,), (4,), 0) for cls in LAYER_OF.values()},
    "Softplus-params": (lambda: layers.Softplus(beta=2.0, threshold=3.0), (4,), (4,), 0),
    "Activation-swish": (lambda: layers.Activation("swish"), (4,), (4,), 0),
    "LogSoftmax-3d": (lambda: layers.LogSoftmax(), (3, 4), (3, 4), 0),
    "Dense-mish": (lambda: layers.Dense(3, activation="mish"), (4,), (3,), 15),
    "Dense-log_softmax": (lambda: layers.Dense(3, activation="log_softmax"), (4,), (3,), 15),
    "PReLU": (lambda: layers.PReLU(), (4,), (4,), 4),
    "PReLU-3d": (lambda: layers.PReLU(), (2, 3, 4), (2, 3, 4), 4),
    "PReLU-inner": (lambda: layers.PReLU(shared_axes=[2]), (2, 3, 4), (2, 3, 4), 8),
    "PReLU-single": (lambda: layers.PReLU(shared_axes=[1, 2]), (3, 4), (3, 4), 1),
    "PReLU-per-element": (lambda: layers.PReLU(shared_axes=[]), (3, 4), (3, 4), 12),
}


@pytest.mark.parametrize("case", list(CONTRACT_CASES))
def test_layer_contract(case, dtype):
    check_layer(*CONTRACT_CASES[case], dtype=dtype)


@pytest.mark.parametrize("case", list(CONTRACT_CASES))
def test_float32_agrees_with_float64(case):
    make, shape, _, _ = CONTRACT_CASES[case]
    results = {}
    for dtype in (np.float32, np.float64):
        model = cdl.Sequential([make()], input_shape=shape, dtype=dtype, seed=0)
        x = random_array((4,) + shape, dtype, seed=2) * 2
        y = model.forward(x)
        dx = model.backward(np.ones_like(y))
        results[dtype] = (y, dx, [g.copy() for g in model.grads])
    (y32, dx32, g32), (y64, dx64, g64) = results[np.float32], results[np.float64]
    assert_allclose(y32, y64, dtype=np.float32)
    assert_allclose(dx32, dx64, dtype=np.float32)
    for a, b in zip(g32, g64):
        assert_allclose(a, b, dtype=np.float32)


# --- every instruction-set path of the float32 loops ------------------------------

_SIMD_SCRIPT = r"""
import json, sys
import numpy as np
from cdl._kernels import activations as A, vmath
rng = np.random.default_rng(7)
# Normal draws scaled by 4, the kinks, large values, and a length that
# leaves a remainder after every vector width.
x64 = np.concatenate([rng.standard_normal(4099) * 4, [0.0, -0.0, 3.0, -3.0, 6.0, 30.0, -30.0,
                                                      90.0, -90.0, 1e-30, -1e-30]])
x64 = x64.astype(np.float32).astype(np.float64)
d64 = rng.standard_normal(x64.size).astype(np.float32).astype(np.float64)
worst = {}
for name in sys.argv[1].split(","):
    code = A.CODES[name]
    p = {"leaky_relu": 0.01, "elu": 1.0, "softplus": 1.0}.get(name)
    shape = (-1, 1030) if name in ("softmax", "log_softmax") else (-1,)
    x = x64[: (x64.size // 1030) * 1030] if shape != (-1,) else x64
    d = d64[: x.size]
    out = []
    for dt in (np.float32, np.float64):
        X = x.astype(dt).reshape(shape)
        Y = A.forward(code, X, np.empty_like(X), p)
        saved = X if A.needs_input(code) else Y
        dX = A.backward(code, saved, saved, d.astype(dt).reshape(shape), np.empty_like(X), p)
        out.append((Y, dX))
    errs = []
    # Error in units of float32's epsilon, relative to max(|reference|, 1e-3)
    # forward and to max(|reference|, |dY|) backward: a derivative read from
    # a float32 output (1 - y^2 of tanh near 1) keeps an absolute accuracy
    # of an ulp of dY, not a relative one.
    dd = np.abs(d).reshape(out[1][0].shape)
    for (a, b), scale in zip(zip(out[0], out[1]), (1e-3, dd)):
        a = a.astype(np.float64)
        den = np.maximum(np.maximum(np.abs(b), scale), 1e-30)
        errs.append(float(np.max(np.abs(a - b) / den)) / 2.0 ** -23)
    worst[name] = errs
print(json.dumps({"path": vmath.simd_path(), "worst": worst}))
"""

_SIMD_NAMES = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "elu", "selu", "silu", "mish",
               "softplus", "softsign", "hard_sigmoid", "hard_swish", "relu6", "softmax",
               "log_softmax"]


@pytest.mark.parametrize("simd", ["default", "avx2", "native"])
def test_every_simd_path_agrees_with_float64(simd, tmp_path):
    """Each dispatched loop (SSE2, AVX2+FMA, the CPU's best), run in a fresh
    process since the choice is made once, stays within a few float32 ulps
    (relative to max(|reference|, 1e-3)) of the float64 kernels, forward and
    backward."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env.pop("CDL_SIMD", None)
    if simd != "native":
        env["CDL_SIMD"] = simd
    # Run outside the source tree, whose cdl/ has no compiled extensions
    # unless built in place: the child imports the cdl these tests import.
    run = subprocess.run([sys.executable, "-c", _SIMD_SCRIPT, ",".join(_SIMD_NAMES)],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    expected = {"default": "sse2/default", "avx2": "avx2"}.get(simd)
    if expected is not None and result["path"] != expected:
        pytest.skip(f"this CPU has no {simd} path (got {result['path']})")
    for name, (fwd, bwd) in result["worst"].items():
        assert fwd <= 16 and bwd <= 32, (result["path"], name, fwd, bwd)
