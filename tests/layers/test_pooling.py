"""Pooling layers: NumPy loop references, gradient checks, PyTorch parity, the
layer harness, training in a model, and bad inputs."""
import math

import numpy as np
import pytest

import cdl
from cdl import layers, optimizers
from cdl._kernels import pooling as kernels
from helpers import GRADCHECK_TOL, assert_allclose, check_layer, random_array

POOL_1D = {"max": layers.MaxPool1D, "avg": layers.AvgPool1D}
POOL_2D = {"max": layers.MaxPool2D, "avg": layers.AvgPool2D}
GLOBAL = {("max", 1): layers.GlobalMaxPool1D, ("avg", 1): layers.GlobalAvgPool1D,
          ("max", 2): layers.GlobalMaxPool2D, ("avg", 2): layers.GlobalAvgPool2D}

# (pool, strides, padding) per axis; with an input length of 5 or 6 these
# cover whole and partial final windows, overlapping windows (stride < pool),
# skipped elements (stride > pool), and even and odd "same" padding.
CASES_1D = [(2, None, "valid"), (3, 1, "valid"), (2, 3, "valid"), (3, 2, "valid"),
            (2, None, "same"), (3, 1, "same"), (3, 2, "same"), (4, 3, "same"), (1, 2, "same")]
CASES_2D = [((2, 2), None, "valid"), ((3, 2), (1, 2), "valid"), ((2, 3), (3, 1), "valid"),
            ((2, 2), None, "same"), ((3, 3), (2, 1), "same"), ((2, 4), (1, 3), "same")]


def case_id(case):
    pool, strides, padding = case
    return f"p{pool}-s{strides}-{padding}".replace(" ", "")


def distinct_array(shape, dtype=np.float64, seed=0):
    """Values at least 0.1 apart in a random order: no ties, not even within
    a gradient check's finite-difference step."""
    rng = np.random.default_rng(seed)
    size = math.prod(shape)
    values = (rng.permutation(size) - size / 2) * 0.1 + rng.uniform(0, 0.01, size)
    return values.reshape(shape).astype(dtype)


# --- NumPy references: direct loops over the output positions --------------

def same_padding(size, pool, stride):
    """Keras/TensorFlow "same": ceil(size / stride) outputs, the padding split
    with the odd element after the input."""
    out = -(-size // stride)
    total = max((out - 1) * stride + pool - size, 0)
    return out, total // 2


def reference_pool(x, pool, strides, padding, mode):
    """Pool a channels-last (n, *spatial, c) array with explicit loops.

    Padding is NaN, skipped by nanmax / nanmean, so that padded elements
    neither win a maximum nor count in an average.
    """
    spatial = x.shape[1:-1]
    outs, before = [], []
    for size, p, s in zip(spatial, pool, strides):
        if padding == "valid":
            outs.append((size - p) // s + 1)
            before.append(0)
        else:
            out, b = same_padding(size, p, s)
            outs.append(out)
            before.append(b)
    pad_width = [(0, 0)] + [(b, p + o * s) for b, p, o, s in zip(before, pool, outs, strides)]
    padded = np.pad(x.astype(np.float64), pad_width + [(0, 0)], constant_values=np.nan)
    y = np.empty((x.shape[0], *outs, x.shape[-1]))
    reduce = np.nanmax if mode == "max" else np.nanmean
    for index in np.ndindex(*outs):
        window = tuple(slice(o * s, o * s + p) for o, s, p in zip(index, strides, pool))
        block = padded[(slice(None),) + window]
        y[(slice(None),) + index] = reduce(block.reshape(x.shape[0], -1, x.shape[-1]), axis=1)
    return y


def make_1d(mode, case):
    pool, strides, padding = case
    return POOL_1D[mode](pool, strides=strides, padding=padding)


def make_2d(mode, case):
    pool, strides, padding = case
    return POOL_2D[mode](pool, strides=strides, padding=padding)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", CASES_1D, ids=case_id)
def test_pool1d_matches_reference(mode, case, dtype):
    pool, strides, padding = case
    x = random_array((3, 6, 2), dtype, seed=1)
    layer = make_1d(mode, case)
    y = layer.forward(x)
    expected = reference_pool(x, (pool,), (strides or pool,), padding, mode)
    assert y.shape == expected.shape == (3,) + layer.compute_output_shape((6, 2))
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_allclose(y, expected, dtype=dtype)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", CASES_2D, ids=case_id)
def test_pool2d_matches_reference(mode, case, dtype):
    pool, strides, padding = case
    x = random_array((2, 5, 6, 3), dtype, seed=2)
    layer = make_2d(mode, case)
    y = layer.forward(x)
    expected = reference_pool(x, pool, strides or pool, padding, mode)
    assert y.shape == expected.shape == (2,) + layer.compute_output_shape((5, 6, 3))
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_allclose(y, expected, dtype=dtype)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pool_matches_reference(mode, rank, keepdims, dtype):
    shape = (3, 7, 4) if rank == 1 else (3, 4, 5, 2)
    x = random_array(shape, dtype, seed=3)
    layer = GLOBAL[mode, rank](keepdims=keepdims)
    axes = tuple(range(1, rank + 1))
    expected = x.astype(np.float64).max(axis=axes, keepdims=keepdims) if mode == "max" \
        else x.astype(np.float64).mean(axis=axes, keepdims=keepdims)
    y = layer.forward(x)
    assert y.shape == expected.shape and y.dtype == dtype
    assert_allclose(y, expected, dtype=dtype)
    # The gradient of a global average is grad / positions everywhere; of a
    # global maximum, grad at the argmax and 0 elsewhere.
    grad = random_array(y.shape, dtype, seed=4)
    dx = layer.backward(grad)
    if mode == "avg":
        expected_dx = np.broadcast_to(grad.reshape(3, *(1,) * rank, -1), shape) \
            / math.prod(shape[1:-1])
    else:
        expected_dx = np.where(x == x.max(axis=axes, keepdims=True),
                               grad.reshape(3, *(1,) * rank, -1), 0)
    assert_allclose(dx, expected_dx, dtype=dtype)


# --- several threads: large calls split the samples between them -----------

@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", CASES_2D, ids=case_id)
def test_threaded_pooling_gives_the_bits_of_one_thread(mode, case, dtype):
    pool, strides, padding = case
    x = random_array((12, 30, 29, 16), dtype, seed=5)
    x[3, 4, 5, 6] = np.nan         # a NaN window, and ties, on both threads' samples
    x[9, :4, :4, :] = 1.0
    results = []
    for threads in (1, 2):
        layer = make_2d(mode, case)
        with cdl.threads(threads):
            y = layer.forward(x)
            dx = layer.backward(random_array(y.shape, dtype, seed=6))
        results.append((y, dx))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    # The reference skips NaN: compare the windows without it.
    y = results[1][0]
    expected = reference_pool(x, pool, strides or pool, padding, mode)
    nan = np.isnan(y)
    assert nan[3].any() and not nan[np.arange(12) != 3].any()
    assert_allclose(y[~nan], expected[~nan], dtype=dtype)


def test_max_backward_refuses_an_index_into_another_sample():
    x = random_array((2, 4, 4, 1), seed=3)
    y = np.empty((2, 2, 2, 1))
    a = np.empty(y.shape, np.int64)
    kernels.max_forward(x, y, a, (2, 2), (2, 2), (0, 0))
    a[1, 0, 0, 0] = 3              # sample 1's output pointing into sample 0
    with pytest.raises(ValueError, match="for sample 1, outside dX"):
        kernels.max_backward(y, a, np.empty_like(x))


def test_keras_same_padding_by_hand():
    # Keras: AveragePooling1D(2, padding="same") on 1..5 -> [1.5, 3.5, 5]
    # (the last window holds 5 and one padded element, which is not counted).
    x = np.arange(1.0, 6.0).reshape(1, 5, 1)
    assert layers.AvgPool1D(2, padding="same").forward(x).ravel().tolist() == [1.5, 3.5, 5.0]
    assert layers.MaxPool1D(2, padding="same").forward(x).ravel().tolist() == [2.0, 4.0, 5.0]
    # Pool 3, stride 1: one padded element on each side.
    assert layers.AvgPool1D(3, 1, "same").forward(x).ravel().tolist() == [1.5, 2, 3, 4, 4.5]
    # Pool 4, stride 1: one before, two after (the odd one goes at the end).
    assert layers.MaxPool1D(4, 1, "same").forward(-x).ravel().tolist() == [-1, -1, -2, -3, -4]
    assert layers.MaxPool2D((2, 2), padding="same").compute_output_shape((5, 7, 3)) == (3, 4, 3)
    assert layers.MaxPool2D(3, 2).compute_output_shape((7, 8, 1)) == (3, 3, 1)


# --- gradients --------------------------------------------------------------

@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", CASES_1D, ids=case_id)
def test_pool1d_gradcheck(mode, case):
    layer = make_1d(mode, case)
    errors = cdl.gradcheck(layer, distinct_array((2, 6, 2), seed=5))
    assert max(errors.values()) < GRADCHECK_TOL


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", CASES_2D, ids=case_id)
def test_pool2d_gradcheck(mode, case):
    layer = make_2d(mode, case)
    errors = cdl.gradcheck(layer, distinct_array((2, 5, 6, 2), seed=6))
    assert max(errors.values()) < GRADCHECK_TOL


@pytest.mark.parametrize("key", list(GLOBAL), ids=lambda k: f"{k[0]}{k[1]}d")
def test_global_pool_gradcheck(key):
    shape = (2, 5, 3) if key[1] == 1 else (2, 3, 4, 2)
    errors = cdl.gradcheck(GLOBAL[key](), distinct_array(shape, seed=7))
    assert max(errors.values()) < GRADCHECK_TOL


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.array([[[1.0], [3.0], [3.0], [2.0], [2.0], [2.0]]])
    layer = layers.MaxPool1D(3, strides=1)
    assert layer.forward(x).ravel().tolist() == [3, 3, 3, 2]
    # Windows [1 3 3], [3 3 2], [3 2 2], [2 2 2] take rows 1, 1, 2, 3.
    dx = layer.backward(np.array([[[1.0], [10.0], [100.0], [1000.0]]]))
    assert dx.ravel().tolist() == [0, 11, 100, 1000, 0, 0]


def test_max_pool_propagates_nan_and_handles_infinities():
    x = np.array([[[1.0], [np.nan], [5.0], [-np.inf], [-np.inf], [np.inf]]])
    layer = layers.MaxPool1D(2)
    y = layer.forward(x).ravel()
    assert np.isnan(y[0]) and y[1] == 5.0 and y[2] == np.inf
    dx = layer.backward(np.ones((1, 3, 1)))
    assert dx.ravel().tolist() == [0, 1, 1, 0, 0, 1]
    # A window of -inf reports -inf and sends its gradient to the first element.
    all_ninf = layers.MaxPool1D(3)
    assert all_ninf.forward(np.full((1, 3, 1), -np.inf)).item() == -np.inf
    assert all_ninf.backward(np.ones((1, 1, 1))).ravel().tolist() == [1, 0, 0]


def test_avg_pool_gradient_counts_only_real_elements():
    layer = layers.AvgPool1D(2, padding="same")
    layer.forward(np.ones((1, 5, 1)))
    dx = layer.backward(np.ones((1, 3, 1)))
    assert dx.ravel().tolist() == [0.5, 0.5, 0.5, 0.5, 1.0]


# --- PyTorch parity ---------------------------------------------------------

def torch_pool(torch, x, grad, pool, strides, pad_before, pad_after, mode):
    """PyTorch's pooling of a channels-last array, with explicit (possibly
    asymmetric) padding that is ignored like Keras': -inf for max, and for
    average a sum over zero padding divided by the count of real elements."""
    import torch.nn.functional as F

    rank = x.ndim - 2
    t = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    # F.pad takes (before, after) pairs from the last axis backwards.
    pads = [p for b, a in zip(reversed(pad_before), reversed(pad_after)) for p in (b, a)]
    fn = {1: (F.max_pool1d, F.avg_pool1d), 2: (F.max_pool2d, F.avg_pool2d)}[rank]
    if mode == "max":
        out = fn[0](F.pad(t, pads, value=-math.inf), pool, strides)
    else:
        padded = F.pad(t, pads)
        ones = F.pad(torch.ones_like(t), pads)
        window = math.prod(pool)
        out = fn[1](padded, pool, strides) * window / (fn[1](ones, pool, strides) * window)
    out.backward(torch.tensor(np.moveaxis(grad, -1, 1)))
    return np.moveaxis(out.detach().numpy(), 1, -1), np.moveaxis(t.grad.numpy(), 1, -1)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("rank,case", [(1, c) for c in CASES_1D] + [(2, c) for c in CASES_2D],
                         ids=lambda v: case_id(v) if isinstance(v, tuple) else f"{v}d")
def test_matches_pytorch(rank, case, mode, dtype):
    torch = pytest.importorskip("torch")
    pool, strides, padding = case
    pool = (pool,) if rank == 1 else pool
    strides = pool if strides is None else ((strides,) if rank == 1 else strides)
    shape = (2, 7, 3) if rank == 1 else (2, 5, 6, 9)
    x = random_array(shape, dtype, seed=8)
    layer = (make_1d if rank == 1 else make_2d)(mode, case)
    y = layer.forward(x)
    grad = random_array(y.shape, dtype, seed=9)
    dx = layer.backward(grad)
    before, after = [], []
    for size, p, s, o in zip(shape[1:-1], pool, strides, y.shape[1:-1]):
        b = same_padding(size, p, s)[1] if padding == "same" else 0
        before.append(b)
        after.append(max((o - 1) * s + p - size - b, 0))
    ty, tdx = torch_pool(torch, x, grad, pool, strides, before, after, mode)
    assert ty.shape == y.shape
    assert_allclose(y, ty, dtype=dtype)
    assert_allclose(dx, tdx, dtype=dtype)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_matches_pytorch_symmetric_padding_argument(mode, dtype):
    # Keras "same" with pool 3, stride 1 pads one element on each side, which
    # PyTorch's own padding argument does (count_include_pad=False for avg).
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    x = random_array((2, 5, 4, 3), dtype, seed=10)
    layer = POOL_2D[mode](3, strides=1, padding="same")
    y = layer.forward(x)
    grad = random_array(y.shape, dtype, seed=11)
    dx = layer.backward(grad)
    t = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    out = F.max_pool2d(t, 3, 1, padding=1) if mode == "max" else \
        F.avg_pool2d(t, 3, 1, padding=1, count_include_pad=False)
    out.backward(torch.tensor(np.moveaxis(grad, -1, 1)))
    assert_allclose(y, np.moveaxis(out.detach().numpy(), 1, -1), dtype=dtype)
    assert_allclose(dx, np.moveaxis(t.grad.numpy(), 1, -1), dtype=dtype)


def test_max_pool_ties_and_nan_match_pytorch(dtype):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(12)
    # Many ties; 11 channels: whole vectors of channels and a remainder.
    x = rng.integers(0, 3, (2, 6, 7, 11)).astype(dtype)
    x[0, 1, 1, 0] = x[0, 2, 2, 0] = x[1, 4, 5, 1] = x[0, 3, 3, 9] = x[1, 2, 4, 6] = np.nan
    x[1, :3, :3, 10] = -np.inf
    x[1, 0, 0, 1] = x[1, 0, 1, 1] = x[1, 1, 0, 1] = x[1, 1, 1, 1] = -np.inf
    layer = layers.MaxPool2D(3, strides=(1, 2))
    y = layer.forward(x)
    grad = random_array(y.shape, dtype, seed=13)
    dx = layer.backward(grad)
    t = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    out = F.max_pool2d(t, 3, (1, 2))
    out.backward(torch.tensor(np.moveaxis(grad, -1, 1)))
    np.testing.assert_array_equal(y, np.moveaxis(out.detach().numpy(), 1, -1))
    assert_allclose(dx, np.moveaxis(t.grad.numpy(), 1, -1), dtype=dtype)


# --- the layer harness, models -----------------------------------------------

HARNESS_CASES = [
    (lambda: layers.MaxPool1D(), (6, 2), (3, 2)),
    (lambda: layers.AvgPool1D(3, 2, "same"), (6, 2), (3, 2)),
    (lambda: layers.MaxPool2D((2, 3), padding="same"), (5, 5, 2), (3, 2, 2)),
    (lambda: layers.AvgPool2D(2, strides=1), (3, 4, 2), (2, 3, 2)),
    (lambda: layers.GlobalMaxPool1D(), (5, 3), (3,)),
    (lambda: layers.GlobalAvgPool1D(keepdims=True), (5, 3), (1, 3)),
    (lambda: layers.GlobalMaxPool2D(keepdims=True), (3, 4, 2), (1, 1, 2)),
    (lambda: layers.GlobalAvgPool2D(), (3, 4, 2), (2,)),
]


@pytest.mark.parametrize("case", HARNESS_CASES,
                         ids=["MaxPool1D", "AvgPool1D", "MaxPool2D", "AvgPool2D",
                              "GlobalMaxPool1D", "GlobalAvgPool1D", "GlobalMaxPool2D",
                              "GlobalAvgPool2D"])
def test_layer_contract(case, dtype):
    make_layer, input_shape, output_shape = case
    check_layer(make_layer, input_shape, output_shape, 0, dtype)


def test_config_round_trip_and_defaults():
    layer = layers.MaxPool2D(3, padding="SAME", name="p")
    assert layer.get_config() == {"name": "p", "pool_size": (3, 3), "strides": (3, 3),
                                  "padding": "same", "ceil_mode": False,
                                  "dilation": (1, 1)}
    one = layers.AvgPool1D(strides=1)
    assert (one.pool_size, one.strides, one.padding) == (2, 1, "valid")
    assert layers.AvgPool1D.from_config(one.get_config()).get_config() == one.get_config()
    assert layers.GlobalMaxPool2D(keepdims=True).get_config()["keepdims"] is True
    # Lists (as a JSON round trip gives back) are accepted.
    assert layers.MaxPool2D([2, 1], [1, 1]).get_config()["pool_size"] == (2, 1)


def test_flops_per_sample():
    # A comparison per element read; an add per element read and a multiply per output.
    assert layers.MaxPool2D(2).flops_per_sample((4, 6, 3)) == 4 * 6 * 3
    assert layers.AvgPool2D(2).flops_per_sample((4, 6, 3)) == 4 * 6 * 3 + 2 * 3 * 3
    # "same" windows at the edge read fewer elements: 1..5 in pools of 2 read 5.
    assert layers.MaxPool1D(2, padding="same").flops_per_sample((5, 2)) == 5 * 2
    assert layers.MaxPool1D(3, 1).flops_per_sample((5, 1)) == 3 * 3
    assert layers.GlobalAvgPool2D().flops_per_sample((3, 4, 2)) == 3 * 4 * 2 + 2


def test_model_with_pooling_trains_and_saves(tmp_path):
    # Images with a bright 2x2 patch in the top or bottom half, flattened.
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 2, n)
    images = rng.uniform(0, 0.3, (n, 6, 6))
    rows = rng.integers(0, 2, n) + 3 * y
    cols = rng.integers(0, 5, n)
    for i in range(n):
        images[i, rows[i]:rows[i] + 2, cols[i]:cols[i] + 2] += 1.0
    x = images.reshape(n, 36).astype(np.float32)
    model = cdl.Sequential([
        layers.Reshape((6, 6, 1)),
        layers.MaxPool2D(2),
        layers.AvgPool2D(2, strides=1, padding="same"),
        layers.Flatten(),
        layers.Dense(2),
    ], input_shape=(36,), seed=0)
    model.compile(optimizers.Adam(lr=0.05), "cross_entropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert model.evaluate(x, y)["accuracy"] > 0.95

    path = tmp_path / "pool.cdl"
    cdl.io.save_model(model, path)
    loaded = cdl.io.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers] == \
        ["Reshape", "MaxPool2D", "AvgPool2D", "Flatten", "Dense"]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_empty_batch(dtype):
    layer = layers.MaxPool2D(2, padding="same")
    y = layer.forward(np.zeros((0, 3, 3, 2), dtype))
    assert y.shape == (0, 2, 2, 2)
    assert layer.backward(np.zeros_like(y)).shape == (0, 3, 3, 2)


# --- bad inputs -------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error", [
    ({"pool_size": 0}, ValueError),
    ({"pool_size": (2, -1)}, ValueError),
    ({"pool_size": 2.5}, TypeError),
    ({"pool_size": (2, 2, 2)}, TypeError),
    ({"pool_size": "2"}, TypeError),
    ({"pool_size": True}, TypeError),
    ({"pool_size": 2, "strides": 0}, ValueError),
    ({"pool_size": 2, "strides": (1,)}, TypeError),
    ({"pool_size": 2, "padding": "full"}, ValueError),
    ({"pool_size": 2, "padding": None}, TypeError),
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="pool_size|strides|padding"):
        layers.MaxPool2D(**kwargs)


def test_bad_1d_arguments_and_keepdims():
    with pytest.raises(TypeError, match="pool_size must be an int"):
        layers.AvgPool1D((2, 2))
    with pytest.raises(TypeError, match="keepdims"):
        layers.GlobalAvgPool2D(keepdims="yes")


def test_pool_larger_than_input_raises_at_build():
    layer = layers.MaxPool2D((4, 2))
    with pytest.raises(ValueError, match=r"pool_size \(4, 2\).*\(3, 5, 2\).*valid"):
        cdl.Sequential([layer], input_shape=(3, 5, 2))
    with pytest.raises(ValueError, match=r"pool_size 7.*\(6, 1\)"):
        layers.AvgPool1D(7).forward(np.ones((2, 6, 1)))
    # "same" padding makes any pool fit.
    assert layers.AvgPool1D(7, padding="same").forward(np.ones((2, 6, 1))).shape == (2, 1, 1)


@pytest.mark.parametrize("make,shape", [
    (lambda: layers.MaxPool2D(), (4, 4)),
    (lambda: layers.MaxPool1D(), (4, 4, 1)),
    (lambda: layers.GlobalAvgPool2D(), (4,)),
    (lambda: layers.GlobalMaxPool1D(), (2, 2, 2)),
])
def test_wrong_sample_rank(make, shape):
    with pytest.raises(ValueError, match=r"takes samples of shape .*got input shape"):
        make().forward(np.ones((1,) + shape))


def test_wrong_input_and_gradient_shapes():
    layer = layers.MaxPool2D()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 2, 2, 1)))
    layer.forward(np.ones((2, 4, 4, 1)))
    with pytest.raises(ValueError, match=r"\(2, 5, 4, 1\)"):
        layer.forward(np.ones((2, 5, 4, 1)))
    with pytest.raises(ValueError, match=r"gradient .*\(2, 2, 3, 1\).*\(2, 2, 2, 1\)"):
        layer.backward(np.ones((2, 2, 3, 1)))
    with pytest.raises(TypeError, match="real numbers"):
        layer.forward(np.ones((2, 4, 4, 1), dtype=complex))


def test_kernel_entry_points_check_their_arrays():
    x = np.ones((1, 4, 4, 2))
    y = np.empty((1, 2, 2, 2))
    a = np.empty(y.shape, np.int64)
    args = ((2, 2), (2, 2), (0, 0))
    with pytest.raises(TypeError, match="same dtype"):
        kernels.max_forward(x, y.astype(np.float32), a, *args)
    with pytest.raises(TypeError, match="argmax must have dtype int64"):
        kernels.max_forward(x, y, a.astype(np.int32), *args)
    with pytest.raises(ValueError, match="argmax has shape"):
        kernels.max_forward(x, y, a[:, :1], *args)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.avg_forward(np.ones((1, 4, 4, 4))[..., ::2], y, *args)
    with pytest.raises(ValueError, match="4-dimensional"):
        kernels.avg_forward(x[0], y, *args)
    with pytest.raises(ValueError, match="batch .* channel"):
        kernels.avg_forward(x, np.empty((1, 2, 2, 3)), *args)
    with pytest.raises(ValueError, match="padding .* smaller than the pool"):
        kernels.avg_forward(x, y, (2, 2), (2, 2), (2, 0))
    with pytest.raises(ValueError, match="windows outside"):
        kernels.avg_forward(x, np.empty((1, 3, 2, 2)), *args)
    with pytest.raises(ValueError, match="pool must be a pair"):
        kernels.avg_forward(x, y, (2, 0), (2, 2), (0, 0))
    with pytest.raises(ValueError, match="strides must be a pair"):
        kernels.avg_forward(x, y, (2, 2), 2, (0, 0))
    readonly = y.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="Y is written in place"):
        kernels.avg_forward(x, readonly, *args)
    kernels.max_forward(x, y, a, *args)
    a[0, 0, 0, 0] = x.size
    with pytest.raises(ValueError, match="argmax holds indices .* outside dX"):
        kernels.max_backward(y, a, np.empty_like(x))
    a[0, 0, 0, 0] = -1
    with pytest.raises(ValueError, match="outside dX"):
        kernels.max_backward(y, a, np.empty_like(x))
