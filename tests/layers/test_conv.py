"""Conv1D, Conv2D and Conv2DTranspose: gradients, references, PyTorch parity, errors."""
import itertools
import json
import math

import numpy as np
import pytest

import cdl
from cdl import layers, optimizers
from cdl._kernels import conv as _conv
from helpers import GRADCHECK_TOL, assert_allclose, check_layer, random_array


# --- independent references --------------------------------------------------

def tf_same_pads(size, k, stride, dilation):
    """TensorFlow's "same" padding of one axis: (before, after)."""
    span = (k - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def axis_pads(size, k, stride, dilation, padding):
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return tf_same_pads(size, k, stride, dilation)
    if padding == "causal":
        return (k - 1) * dilation, 0
    return padding, padding


def ref_conv2d(x, w, b, strides, dilation, pads, activation=None):
    """Direct loops: x (n, H, W, C), w (kh, kw, C, F), pads (top, bottom, left, right)."""
    n, H, W, C = x.shape
    kh, kw, _, F = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    xp = np.zeros((n, H + pads[0] + pads[1], W + pads[2] + pads[3], C))
    xp[:, pads[0]:pads[0] + H, pads[2]:pads[2] + W] = x
    OH = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    OW = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((n, OH, OW, F))
    for s in range(n):
        for oh in range(OH):
            for ow in range(OW):
                for f in range(F):
                    total = 0.0 if b is None else float(b[f])
                    for i in range(kh):
                        for j in range(kw):
                            for c in range(C):
                                total += (float(xp[s, oh * sh + i * dh, ow * sw + j * dw, c])
                                          * float(w[i, j, c, f]))
                    y[s, oh, ow, f] = total
    if activation == "relu":
        y = np.maximum(y, 0)
    elif activation == "tanh":
        y = np.tanh(y)
    return y


def reference(layer, x):
    """The reference output of a built Conv1D/Conv2D for x."""
    b = layer.bias if layer.use_bias else None
    if isinstance(layer, layers.Conv1D):
        L = x.shape[1]
        (k,), (s,), (d,) = layer.kernel_size, layer.strides, layer.dilation_rate
        pad = layer.padding if isinstance(layer.padding, str) else layer.padding[0]
        pads = (0, 0) + axis_pads(L, k, s, d, pad)
        y = ref_conv2d(x[:, None], layer.kernel[None], b, (1, s), (1, d), pads,
                       layer.activation)
        return y[:, 0]
    pads = ()
    for axis in range(2):
        pad = layer.padding if isinstance(layer.padding, str) else layer.padding[axis]
        pads += axis_pads(x.shape[1 + axis], layer.kernel_size[axis], layer.strides[axis],
                          layer.dilation_rate[axis], pad)
    return ref_conv2d(x, layer.kernel, b, layer.strides, layer.dilation_rate, pads,
                      layer.activation)


def built(layer, input_shape, dtype=np.float64, seed=0):
    """Build ``layer`` in a model (seeded weights) and give it a random bias."""
    model = cdl.Sequential([layer], input_shape=input_shape, dtype=dtype, seed=seed)
    if layer.use_bias:
        layer.bias[...] = random_array(layer.bias.shape, dtype, seed=seed + 7)
    return model


# --- gradients over a grid of geometries ------------------------------------

KERNELS, STRIDES, PADDINGS, DILATIONS = (1, 2, 3, 5), (1, 2, 3), ("valid", "same", 1), (1, 2)
SHAPES = {1: (11, 2), 2: (9, 10, 2)}
GRID = [(rank, k, s, p, d)
        for rank, k, s, p, d in itertools.product((1, 2), KERNELS, STRIDES, PADDINGS,
                                                  DILATIONS)
        if p != "valid" or (k - 1) * d + 1 <= min(SHAPES[rank][:-1])]


def make_conv(rank, filters, *args, **kwargs):
    return (layers.Conv1D if rank == 1 else layers.Conv2D)(filters, *args, **kwargs)


@pytest.mark.parametrize("rank,k,s,p,d", GRID,
                         ids=[f"{r}d-k{k}-s{s}-{p}-d{d}" for r, k, s, p, d in GRID])
def test_gradcheck_grid(rank, k, s, p, d):
    layer = make_conv(rank, 3, k, strides=s, padding=p, dilation_rate=d)
    built(layer, SHAPES[rank])
    x = random_array((2,) + SHAPES[rank], seed=k * 100 + s * 10 + d)
    errors = cdl.gradcheck(layer, x, tol=GRADCHECK_TOL)
    assert set(errors) == {"input", f"{layer.name}.kernel", f"{layer.name}.bias"}
    assert max(errors.values()) < GRADCHECK_TOL


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=(2, 3), strides=(2, 1), padding=(1, 0), dilation_rate=(1, 2)),
    dict(kernel_size=(3, 1), strides=(1, 3), padding="same", dilation_rate=(2, 1)),
    dict(kernel_size=(1, 4), strides=(3, 2), padding="valid", use_bias=False),
    dict(kernel_size=2, strides=2, padding=(0, 2)),
], ids=["mixed-int-pads", "mixed-same", "mixed-valid-nobias", "pad-pair"])
def test_gradcheck_asymmetric_geometry(kwargs):
    layer = layers.Conv2D(2, **kwargs)
    built(layer, (7, 8, 3))
    assert max(cdl.gradcheck(layer, random_array((2, 7, 8, 3), seed=3)).values()) \
        < GRADCHECK_TOL


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid", "gelu",
                                        "elu", "softmax"])
def test_gradcheck_fused_activations(activation):
    for layer, shape in ((layers.Conv2D(3, 3, strides=2, padding="same",
                                        activation=activation), (6, 5, 2)),
                         (layers.Conv1D(3, 2, padding=1, activation=activation), (7, 2)),
                         (layers.Conv2DTranspose(3, 3, strides=2, padding="same",
                                                 activation=activation), (3, 4, 2))):
        built(layer, shape)
        x = random_array((2,) + shape, seed=5)
        assert max(cdl.gradcheck(layer, x).values()) < GRADCHECK_TOL, layer


def test_causal_conv1d_sees_only_the_past():
    layer = layers.Conv1D(2, 3, padding="causal", dilation_rate=2)
    built(layer, (10, 2))
    x = random_array((1, 10, 2), seed=1)
    y = layer.forward(x)
    assert y.shape == (1, 10, 2)
    x2 = x.copy()
    x2[:, 6:] += 1.0                      # change the future of t = 5
    assert np.array_equal(layer.forward(x2)[:, :6], y[:, :6])
    assert not np.allclose(layer.forward(x2)[:, 6:], y[:, 6:])
    assert_allclose(y, reference(layer, x))
    assert max(cdl.gradcheck(layer, x).values()) < GRADCHECK_TOL


# --- forward against the direct-loop reference -------------------------------

REFERENCE_CASES = [
    (lambda: layers.Conv2D(4, 3), (6, 7, 3)),
    (lambda: layers.Conv2D(4, 3, padding="same", activation="relu"), (6, 7, 3)),
    (lambda: layers.Conv2D(3, (2, 4), strides=(2, 3), padding="same"), (7, 8, 2)),
    (lambda: layers.Conv2D(3, 3, strides=2, padding=2, dilation_rate=2), (7, 6, 2)),
    (lambda: layers.Conv2D(5, 1, use_bias=False), (4, 5, 3)),             # direct 1x1
    (lambda: layers.Conv2D(2, 1, strides=2), (5, 5, 3)),                   # strided 1x1
    (lambda: layers.Conv1D(4, 3, strides=2, padding="same", activation="tanh"), (9, 3)),
    (lambda: layers.Conv1D(2, 5, dilation_rate=2, padding=3), (8, 2)),
]


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=range(len(REFERENCE_CASES)))
def test_forward_matches_direct_loops(case, dtype):
    make, shape = case
    layer = make()
    built(layer, shape, dtype)
    x = random_array((3,) + shape, dtype, seed=4)
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape == (3,) + layer.output_shape
    assert_allclose(y, reference(layer, x), dtype=dtype)


@pytest.mark.parametrize("rank", [1, 2])
def test_kernel_larger_than_input_with_same_padding(rank):
    shape = (3, 1) if rank == 1 else (3, 2, 1)
    layer = make_conv(rank, 2, 5, strides=2, padding="same")
    built(layer, shape)
    assert layer.output_shape == ((2, 2) if rank == 1 else (2, 1, 2))
    x = random_array((2,) + shape, seed=8)
    assert_allclose(layer.forward(x), reference(layer, x))
    assert max(cdl.gradcheck(layer, x).values()) < GRADCHECK_TOL


@pytest.mark.parametrize("rank", [1, 2])
def test_batch_of_one(rank):
    shape = SHAPES[rank]
    layer = make_conv(rank, 3, 3, strides=2, padding="same", activation="tanh")
    built(layer, shape)
    x = random_array((1,) + shape, seed=9)
    assert_allclose(layer.forward(x), reference(layer, x))
    assert max(cdl.gradcheck(layer, x).values()) < GRADCHECK_TOL


def test_same_padding_follows_tensorflow():
    # Even totals split evenly, odd ones put the extra zero at the end.
    assert tf_same_pads(7, 3, 2, 1) == (1, 1)
    assert tf_same_pads(8, 3, 2, 1) == (0, 1)
    layer = layers.Conv2D(1, 3, strides=2, padding="same", use_bias=False,
                          kernel_initializer="ones")
    built(layer, (8, 7, 1))
    assert layer.output_shape == (4, 4, 1)
    y = layer.forward(np.ones((1, 8, 7, 1)))[0, :, :, 0]
    # Height 8: pads (0, 1), so the first row of windows is full (3 rows) and
    # the last covers rows 6, 7 and a zero. Width 7: pads (1, 1).
    assert y[0, 1] == 9 and y[3, 1] == 6 and y[0, 0] == 6 and y[3, 0] == 4


def test_empty_batch():
    layer = layers.Conv2D(3, 3, padding="same")
    built(layer, (5, 5, 2))
    y = layer.forward(np.zeros((0, 5, 5, 2)))
    assert y.shape == (0, 5, 5, 3)
    dx = layer.backward(np.zeros((0, 5, 5, 3)))
    assert dx.shape == (0, 5, 5, 2)
    assert not layer.kernel_grad.any() and not layer.bias_grad.any()


# --- chunking and the column buffer -------------------------------------------

@pytest.mark.parametrize("budget", [1, 3 * 16 * 18 * 8], ids=["one-sample", "three-samples"])
def test_chunked_batches_match_one_product(budget):
    """A small col budget splits the batch; results must not change."""
    shape = (4, 4, 2)      # 'same' 3x3: 16 positions of 18 values per sample
    x = random_array((7,) + shape, seed=11)
    dy = random_array((7, 4, 4, 5), seed=12)
    outputs = []
    for col_budget in (None, budget):
        layer = layers.Conv2D(5, 3, padding="same", activation="gelu")
        if col_budget is not None:
            layer.col_budget_bytes = col_budget
        built(layer, shape)
        y = layer.forward(x)
        dx = layer.backward(dy)
        outputs.append((y, dx, layer.kernel_grad.copy(), layer.bias_grad.copy(),
                        layer._col.shape[0]))
    (y0, dx0, dw0, db0, rows0), (y1, dx1, dw1, db1, rows1) = outputs
    assert rows0 == 7 * 16 and rows1 == (16 if budget == 1 else 3 * 16)
    for a, b in ((y0, y1), (dx0, dx1), (dw0, dw1), (db0, db1)):
        assert_allclose(a, b)


def test_column_buffer_is_reused_and_grows_only_when_needed():
    layer = layers.Conv2D(4, 3)
    built(layer, (6, 6, 2))
    layer.forward(random_array((8, 6, 6, 2)))
    col = layer._col
    layer.backward(np.ones((8, 4, 4, 4)))
    layer.forward(random_array((8, 6, 6, 2), seed=1))
    assert layer._col is col
    layer.forward(random_array((3, 6, 6, 2), seed=2))     # a smaller last batch
    assert layer._col is col
    layer.forward(random_array((9, 6, 6, 2), seed=3))
    assert layer._col is not col and layer._col.shape == (9 * 16, 18)


def test_backward_twice_after_one_forward_gives_the_same_gradients():
    # The backward pass overwrites the columns; a second one recomputes them.
    layer = layers.Conv2D(3, 3, strides=2, padding="same")
    built(layer, (5, 6, 2))
    layer.forward(random_array((2, 5, 6, 2)))
    dy = random_array((2, 3, 3, 3), seed=1)
    dx1, dw1 = layer.backward(dy), layer.kernel_grad.copy()
    dx2, dw2 = layer.backward(dy), layer.kernel_grad.copy()
    assert np.array_equal(dx1, dx2) and np.array_equal(dw1, dw2)


# --- dtypes -------------------------------------------------------------------

@pytest.mark.parametrize("make,shape", [
    (lambda: layers.Conv2D(4, 3, strides=2, padding="same", activation="elu"), (7, 6, 3)),
    (lambda: layers.Conv1D(4, 3, dilation_rate=2, padding=1), (9, 3)),
    (lambda: layers.Conv2DTranspose(3, 3, strides=2, activation="tanh"), (4, 3, 2)),
], ids=["Conv2D", "Conv1D", "Conv2DTranspose"])
def test_float32_agrees_with_float64(make, shape):
    results = {}
    for dtype in (np.float32, np.float64):
        model = cdl.Sequential([make()], input_shape=shape, dtype=dtype, seed=0)
        x = random_array((4,) + shape, dtype, seed=2)
        y = model.forward(x)
        dx = model.backward(random_array(y.shape, dtype, seed=3))
        results[dtype] = (y, dx, [g.copy() for g in model.grads])
    (y32, dx32, g32), (y64, dx64, g64) = results[np.float32], results[np.float64]
    assert y32.dtype == np.float32
    assert_allclose(y32, y64, dtype=np.float32)
    assert_allclose(dx32, dx64, dtype=np.float32)
    for a, b in zip(g32, g64):
        assert_allclose(a, b, dtype=np.float32)


# --- the layer contract -----------------------------------------------------------

CONTRACT_CASES = [
    (lambda: layers.Conv2D(4, 3), (6, 5, 2), (4, 3, 4), 3 * 3 * 2 * 4 + 4),
    (lambda: layers.Conv2D(3, (2, 3), strides=2, padding="same", activation="relu",
                           use_bias=False), (5, 6, 2), (3, 3, 3), 2 * 3 * 2 * 3),
    (lambda: layers.Conv2D(2, 3, padding=1, dilation_rate=2, activation="gelu"),
     (6, 6, 3), (4, 4, 2), 3 * 3 * 3 * 2 + 2),
    (lambda: layers.Conv1D(5, 3, strides=2, padding="same"), (9, 3), (5, 5), 3 * 3 * 5 + 5),
    (lambda: layers.Conv1D(2, 2, padding="causal", activation="tanh"), (6, 3), (6, 2),
     2 * 3 * 2 + 2),
    (lambda: layers.Conv2DTranspose(3, 3, strides=2), (3, 4, 2), (7, 9, 3), 3 * 3 * 3 * 2 + 3),
    (lambda: layers.Conv2DTranspose(2, (2, 3), strides=(2, 1), padding="same",
                                    activation="sigmoid"), (3, 4, 3), (6, 4, 2),
     2 * 3 * 2 * 3 + 2),
]
CONTRACT_IDS = ["Conv2D", "Conv2D-same-relu-nobias", "Conv2D-dilated-gelu", "Conv1D-same",
                "Conv1D-causal", "Conv2DTranspose", "Conv2DTranspose-same"]


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=CONTRACT_IDS)
def test_layer_contract(case, dtype):
    check_layer(*case, dtype=dtype)


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=CONTRACT_IDS)
def test_config_survives_json(case):
    layer = case[0]()
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(config)
    assert clone.get_config() == layer.get_config()
    assert clone.compute_output_shape(case[1]) == case[2]


def test_config_values():
    config = layers.Conv2D(8, (3, 5), strides=2, padding=1, activation="relu").get_config()
    assert config["kernel_size"] == [3, 5] and config["strides"] == [2, 2]
    assert config["padding"] == 1 and config["dilation_rate"] == [1, 1]
    assert layers.Conv2D(8, 3, padding=(1, 2)).get_config()["padding"] == [1, 2]
    config = layers.Conv1D(8, 3, dilation_rate=2, padding="causal").get_config()
    assert config["kernel_size"] == 3 and config["dilation_rate"] == 2
    assert config["padding"] == "causal"
    assert layers.get("Conv2D") is layers.Conv2D
    assert layers.get("Conv2DTranspose") is layers.Conv2DTranspose


def test_flops_per_sample():
    layer = layers.Conv2D(32, 3, padding="same", activation="relu")
    assert layer.flops_per_sample((8, 8, 16)) == 64 * (2 * 9 * 16 * 32 + 32 + 32)
    layer = layers.Conv1D(4, 3, strides=2, use_bias=False)
    assert layer.flops_per_sample((9, 2)) == 4 * (2 * 3 * 2 * 4)
    layer = layers.Conv2DTranspose(4, 3, strides=2, use_bias=False)
    assert layer.flops_per_sample((3, 3, 2)) == 9 * 2 * 9 * 2 * 4


def test_save_and_load_a_cnn(tmp_path):
    model = cdl.Sequential([layers.Conv2D(3, 3, padding="same", activation="relu"),
                            layers.Conv2DTranspose(2, 2, strides=2),
                            layers.Flatten(),
                            layers.Dense(2)], input_shape=(4, 4, 1), seed=0)
    path = tmp_path / "cnn.cdl"
    cdl.io.save_model(model, path)
    loaded = cdl.io.load_model(path)
    x = random_array((2, 4, 4, 1), np.float32, seed=1)
    assert np.array_equal(loaded.forward(x), model.forward(x))


# --- transposed convolution ---------------------------------------------------------

@pytest.mark.parametrize("k,s,padding,d,size,expected", [
    (3, 2, "valid", 1, 4, 9), (3, 2, "same", 1, 4, 8), (1, 3, "valid", 1, 4, 12),
    (2, 2, "valid", 1, 5, 10), (3, 1, "valid", 2, 4, 8), (5, 3, "same", 1, 2, 6),
])
def test_transpose_output_size_follows_keras(k, s, padding, d, size, expected):
    layer = layers.Conv2DTranspose(1, k, strides=s, padding=padding, dilation_rate=d)
    assert layer.compute_output_shape((size, size, 2)) == (expected, expected, 1)


@pytest.mark.parametrize("k,s,padding,d", [(3, 2, "valid", 1), (3, 2, "same", 1),
                                           (2, 3, "valid", 1), (4, 2, "same", 1),
                                           (3, 1, "same", 2), (1, 1, "valid", 1)])
def test_transpose_is_the_adjoint_of_conv2d(k, s, padding, d):
    """<conv(x), y> == <x, conv_transpose(y)> with the same kernel array."""
    up = layers.Conv2DTranspose(3, k, strides=s, padding=padding, dilation_rate=d,
                                use_bias=False)
    built(up, (4, 5, 2))
    big = up.output_shape
    down = layers.Conv2D(2, k, strides=s, padding=padding, dilation_rate=d, use_bias=False)
    built(down, big)
    assert down.output_shape == (4, 5, 2)
    down.kernel[...] = up.kernel
    x = random_array((2,) + big, seed=1)
    y = random_array((2, 4, 5, 2), seed=2)
    np.testing.assert_allclose(np.sum(down.forward(x) * y), np.sum(x * up.forward(y)),
                               rtol=1e-12)
    # And the transposed layer's forward is the convolution's input gradient.
    down.forward(x)
    assert_allclose(up.forward(y), down.backward(y))


@pytest.mark.parametrize("k,s,padding", [(3, 2, "valid"), (2, 2, "same"), (3, 3, "same"),
                                         (1, 2, "valid")])
def test_transpose_gradcheck(k, s, padding):
    layer = layers.Conv2DTranspose(2, k, strides=s, padding=padding, activation="tanh")
    built(layer, (3, 4, 2))
    assert max(cdl.gradcheck(layer, random_array((2, 3, 4, 2), seed=6)).values()) \
        < GRADCHECK_TOL


# --- PyTorch parity -------------------------------------------------------------------

TORCH_CASES = [
    dict(kernel_size=3, strides=1, padding="same", dilation_rate=1),
    dict(kernel_size=3, strides=2, padding="same", dilation_rate=1),
    dict(kernel_size=(2, 5), strides=(3, 1), padding="valid", dilation_rate=(2, 1)),
    dict(kernel_size=4, strides=2, padding=1, dilation_rate=1),
    dict(kernel_size=3, strides=2, padding=(2, 0), dilation_rate=2),
    dict(kernel_size=1, strides=1, padding="valid", dilation_rate=1),
]


def to_torch(torch, array, axes, **kwargs):
    """A contiguous torch copy of ``array.transpose(axes)``."""
    return torch.tensor(np.ascontiguousarray(array.transpose(axes)), **kwargs)


def _torch_pads(layer, spatial):
    pads = []
    for axis, size in enumerate(spatial):
        pad = layer.padding if isinstance(layer.padding, str) else layer.padding[axis]
        pads.append(axis_pads(size, layer.kernel_size[axis], layer.strides[axis],
                              layer.dilation_rate[axis], pad))
    return pads


@pytest.mark.parametrize("kwargs", TORCH_CASES, ids=range(len(TORCH_CASES)))
def test_conv2d_matches_torch(kwargs, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    layer = layers.Conv2D(5, activation="relu", **kwargs)
    built(layer, (9, 8, 3), dtype)
    x = random_array((2, 9, 8, 3), dtype, seed=1)
    y = layer.forward(x)
    dy = random_array(y.shape, dtype, seed=2)
    dx = layer.backward(dy)

    xt = to_torch(torch, x, (0, 3, 1, 2), dtype=tdtype, requires_grad=True)
    wt = to_torch(torch, layer.kernel, (3, 2, 0, 1), dtype=tdtype, requires_grad=True)
    bt = torch.tensor(layer.bias, dtype=tdtype, requires_grad=True)
    (pt, pb), (pl, pr) = _torch_pads(layer, (9, 8))
    yt = torch.relu(F.conv2d(F.pad(xt, (pl, pr, pt, pb)), wt, bt, stride=layer.strides,
                             dilation=layer.dilation_rate))
    yt.backward(to_torch(torch, dy, (0, 3, 1, 2)))
    assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1))
    assert_allclose(layer.kernel_grad, wt.grad.numpy().transpose(2, 3, 1, 0))
    assert_allclose(layer.bias_grad, bt.grad.numpy())


# --- the threaded path: images on several threads -----------------------------
# Large enough batches go image by image over cdl's OpenMP threads, with the
# BLAS held to one thread meanwhile; small ones run the same per-image code
# on one thread, and ``_conv._unit_path_enabled = False`` selects the
# products over the whole batch. The cases cover each branch of the column
# copy: fewer than 4 channels, 4 or more, a dilated kernel, no padding at
# all, a direct 1x1 kernel.

THREADED_CASES = [
    (dict(kernel_size=3, padding="same", activation="relu"), (20, 18, 1)),
    (dict(kernel_size=3, strides=2, padding="same", activation="tanh"), (21, 18, 6)),
    (dict(kernel_size=(2, 5), strides=(3, 1), padding="valid", dilation_rate=(2, 1)),
     (20, 18, 6)),
    (dict(kernel_size=3, strides=2, padding=(2, 0), dilation_rate=2), (20, 18, 5)),
    (dict(kernel_size=3, padding="valid", dilation_rate=2, activation="gelu"), (20, 18, 2)),
    (dict(kernel_size=1, padding="valid"), (24, 24, 8)),
]


def _conv_pass(kwargs, shape, dtype, threads, batch=16):
    layer = layers.Conv2D(12, **kwargs)
    built(layer, shape, dtype)
    x = random_array((batch,) + shape, dtype, seed=21)
    with cdl.threads(threads):
        y = layer.forward(x)
        dx = layer.backward(random_array(y.shape, dtype, seed=22))
    return layer, x, y, dx, layer.kernel_grad.copy(), layer.bias_grad.copy()


@pytest.mark.parametrize("case", THREADED_CASES, ids=range(len(THREADED_CASES)))
def test_threaded_cases_take_the_threaded_path(case):
    from cdl._kernels import _openmp
    if not _openmp.OPENMP:
        pytest.skip("the kernels were built without OpenMP")
    kwargs, shape = case
    layer = layers.Conv2D(12, **kwargs)
    built(layer, shape)
    x = np.zeros((16,) + shape)
    w = layer._kernel_2d(layer.kernel)
    col = layer._col_buffer(16, math.prod(layer.output_shape[:2]), w.shape[0] * w.shape[1]
                            * w.shape[2])
    with cdl.threads(2):
        assert _conv._unit_threads(x, w, col, *layer._geom[:3]) == 2
    with cdl.threads(1):
        assert _conv._unit_threads(x, w, col, *layer._geom[:3]) == 1
    with cdl.threads(2):
        assert _conv._unit_threads(x[:1], w, col, *layer._geom[:3]) == 1


@pytest.mark.parametrize("case", THREADED_CASES, ids=range(len(THREADED_CASES)))
def test_threaded_path_gives_the_bits_of_one_thread(case, dtype):
    kwargs, shape = case
    one = _conv_pass(kwargs, shape, dtype, 1)[2:]
    two = _conv_pass(kwargs, shape, dtype, 2)[2:]
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", THREADED_CASES, ids=range(len(THREADED_CASES)))
def test_threaded_path_matches_torch(case):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    kwargs, shape = case
    layer, x, y, dx, dw, db = _conv_pass(kwargs, shape, np.float64, 2)
    dy = random_array(y.shape, np.float64, seed=22)
    xt = to_torch(torch, x, (0, 3, 1, 2), dtype=torch.float64, requires_grad=True)
    wt = to_torch(torch, layer.kernel, (3, 2, 0, 1), dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(layer.bias, dtype=torch.float64, requires_grad=True)
    (pt, pb), (pl, pr) = _torch_pads(layer, shape[:2])
    zt = F.conv2d(F.pad(xt, (pl, pr, pt, pb)), wt, bt, stride=layer.strides,
                  dilation=layer.dilation_rate)
    act = {"relu": torch.relu, "tanh": torch.tanh, "gelu": F.gelu,
           "linear": lambda t: t}[layer.activation]
    yt = act(zt)
    yt.backward(to_torch(torch, dy, (0, 3, 1, 2)))
    assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1))
    assert_allclose(dw, wt.grad.numpy().transpose(2, 3, 1, 0))
    assert_allclose(db, bt.grad.numpy())


@pytest.mark.parametrize("case", THREADED_CASES, ids=range(len(THREADED_CASES)))
def test_batched_products_agree_with_the_threaded_path(case, monkeypatch):
    kwargs, shape = case
    threaded = _conv_pass(kwargs, shape, np.float64, 2)[2:]
    monkeypatch.setattr(_conv, "_unit_path_enabled", False)
    batched = _conv_pass(kwargs, shape, np.float64, 2)[2:]
    for a, b in zip(threaded, batched):
        assert_allclose(a, b)


def test_threaded_path_restores_the_blas_thread_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                if lib["user_api"] == "blas"]

    with cdl.threads(2):
        before = blas_threads()
        _conv_pass(*THREADED_CASES[1], np.float32, 2)
        assert blas_threads() == before


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, strides=2, padding="same"),
                                    dict(kernel_size=4, strides=1, padding=2,
                                         dilation_rate=2),
                                    dict(kernel_size=2, padding="causal", dilation_rate=3)],
                         ids=["same", "int", "causal"])
def test_conv1d_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer = layers.Conv1D(4, activation="tanh", **kwargs)
    built(layer, (10, 3))
    x = random_array((2, 10, 3), seed=1)
    y = layer.forward(x)
    dy = random_array(y.shape, seed=2)
    dx = layer.backward(dy)

    xt = to_torch(torch, x, (0, 2, 1), requires_grad=True)
    wt = to_torch(torch, layer.kernel, (2, 1, 0), requires_grad=True)
    bt = torch.tensor(layer.bias, requires_grad=True)
    pad = layer.padding if isinstance(layer.padding, str) else layer.padding[0]
    left, right = axis_pads(10, layer.kernel_size[0], layer.strides[0],
                            layer.dilation_rate[0], pad)
    yt = torch.tanh(F.conv1d(F.pad(xt, (left, right)), wt, bt, stride=layer.strides[0],
                             dilation=layer.dilation_rate[0]))
    yt.backward(to_torch(torch, dy, (0, 2, 1)))
    assert_allclose(y, yt.detach().numpy().transpose(0, 2, 1))
    assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 1))
    assert_allclose(layer.kernel_grad, wt.grad.numpy().transpose(2, 1, 0))
    assert_allclose(layer.bias_grad, bt.grad.numpy())


@pytest.mark.parametrize("k,s,padding,d", [(3, 2, "valid", 1), (3, 2, "same", 1),
                                           (4, 2, "same", 1), (3, 1, "valid", 2),
                                           (2, 3, "valid", 1)])
def test_conv2d_transpose_matches_torch(k, s, padding, d):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer = layers.Conv2DTranspose(3, k, strides=s, padding=padding, dilation_rate=d)
    built(layer, (4, 5, 2))
    x = random_array((2, 4, 5, 2), seed=1)
    y = layer.forward(x)
    dy = random_array(y.shape, seed=2)
    dx = layer.backward(dy)

    xt = to_torch(torch, x, (0, 3, 1, 2), requires_grad=True)
    # Keras (kh, kw, filters, in) -> PyTorch ConvTranspose2d (in, filters, kh, kw).
    wt = to_torch(torch, layer.kernel, (3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(layer.bias, requires_grad=True)
    full = F.conv_transpose2d(xt, wt, stride=s, dilation=d)
    # PyTorch crops symmetrically: crop TensorFlow's (possibly uneven) way by hand.
    # Keras's "valid" output is longer than PyTorch's when the kernel is shorter
    # than the stride: those extra rows and columns see only the bias.
    oh, ow = y.shape[1:3]
    top, left = [tf_same_pads(size * s, k, s, d)[0] if padding == "same" else 0
                 for size in (4, 5)]
    full = F.pad(full, (0, max(0, left + ow - full.shape[3]), 0,
                        max(0, top + oh - full.shape[2])))
    yt = full[:, :, top:top + oh, left:left + ow] + bt[:, None, None]
    yt.backward(to_torch(torch, dy, (0, 3, 1, 2)))
    assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1))
    assert_allclose(layer.kernel_grad, wt.grad.numpy().transpose(2, 3, 1, 0))
    assert_allclose(layer.bias_grad, bt.grad.numpy())


# --- training ---------------------------------------------------------------------------

def bars(n, seed=0):
    """8x8 images holding a vertical (class 0) or a horizontal (class 1) bar, plus noise."""
    rng = np.random.default_rng(seed)
    x = 0.1 * rng.standard_normal((n, 8, 8, 1))
    y = rng.integers(0, 2, n)
    where = rng.integers(0, 8, n)
    for i in range(n):
        if y[i] == 0:
            x[i, :, where[i], 0] += 1.0
        else:
            x[i, where[i], :, 0] += 1.0
    return x.astype(np.float32), y


def test_sequential_cnn_trains():
    x, y = bars(256)
    model = cdl.Sequential([
        layers.Conv2D(4, 3, padding="same"),
        layers.ReLU(),
        layers.Conv2D(4, 3, strides=2, activation="relu"),
        layers.Flatten(),
        layers.Dense(2),
    ], input_shape=(8, 8, 1), seed=0)
    model.compile(optimizers.Adam(lr=0.01), "cross_entropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    loss = history.history["loss"]
    assert loss[-1] < 0.5 * loss[0]
    x_test, y_test = bars(200, seed=1)
    assert np.mean(np.argmax(model.predict(x_test), axis=1) == y_test) > 0.9


# --- bad arguments and inputs --------------------------------------------------------------

@pytest.mark.parametrize("make,error,match", [
    (lambda: layers.Conv2D(0, 3), ValueError, "filters"),
    (lambda: layers.Conv2D(2.5, 3), TypeError, "filters"),
    (lambda: layers.Conv2D(2, 0), ValueError, "kernel_size"),
    (lambda: layers.Conv2D(2, (3, 3, 3)), ValueError, "kernel_size"),
    (lambda: layers.Conv2D(2, "3"), TypeError, "kernel_size"),
    (lambda: layers.Conv2D(2, 3, strides=0), ValueError, "strides"),
    (lambda: layers.Conv2D(2, 3, strides=(1, -1)), ValueError, "strides"),
    (lambda: layers.Conv2D(2, 3, dilation_rate=0), ValueError, "dilation_rate"),
    (lambda: layers.Conv2D(2, 3, padding="full"), ValueError, "padding 'full'"),
    (lambda: layers.Conv2D(2, 3, padding="causal"), ValueError, "padding 'causal'"),
    (lambda: layers.Conv2D(2, 3, padding=-1), ValueError, "padding"),
    (lambda: layers.Conv2D(2, 3, padding=True), TypeError, "padding"),
    (lambda: layers.Conv1D(2, (3, 3)), ValueError, "kernel_size"),
    (lambda: layers.Conv2DTranspose(2, 3, padding=1.5), TypeError, "padding"),
    (lambda: layers.Conv2D(2, 3, activation="no_such_thing"), ValueError, "activation"),
])
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_wrong_rank_raises_naming_the_shapes():
    with pytest.raises(ValueError, match=r"Conv2D .* expects 4-D inputs .*\(6, 3\)"):
        layers.Conv2D(2, 3).forward(np.ones((2, 6, 3)))
    with pytest.raises(ValueError, match=r"Conv1D .* expects 3-D inputs .*\(6, 6, 3\)"):
        layers.Conv1D(2, 3).forward(np.ones((2, 6, 6, 3)))
    layer = layers.Conv2D(2, 3)
    layer.forward(np.ones((2, 6, 6, 3)))
    with pytest.raises(ValueError, match=r"expects 4-D inputs"):
        layer.forward(np.ones((2, 6, 3)))
    with pytest.raises(ValueError, match="rank"):
        cdl.Sequential([layers.Conv2D(2, 3)], input_shape=(6, 3))


def test_wrong_channel_count_raises():
    layer = layers.Conv2D(2, 3)
    layer.forward(np.ones((2, 6, 6, 3)))
    with pytest.raises(ValueError, match=r"3 input channels.*\(2, 6, 6, 4\)"):
        layer.forward(np.ones((2, 6, 6, 4)))
    with pytest.raises(ValueError, match=r"\(2, 7, 6, 3\)"):        # other spatial size
        layer.forward(np.ones((2, 7, 6, 3)))


@pytest.mark.parametrize("make,shape,match", [
    (lambda: layers.Conv2D(2, 5), (4, 6, 1), r"spans 5 along the height axis.*\(4, 6, 1\)"),
    (lambda: layers.Conv2D(2, 3, dilation_rate=(1, 3)), (6, 6, 1),
     r"spans 7 along the width axis.*\(6, 6, 1\)"),
    (lambda: layers.Conv1D(2, 4), (3, 2), r"spans 4 along the length axis.*\(3, 2\)"),
])
def test_kernel_larger_than_input_with_valid_padding(make, shape, match):
    with pytest.raises(ValueError, match=match):
        cdl.Sequential([make()], input_shape=shape)
    with pytest.raises(ValueError, match=match):
        make().forward(np.ones((1,) + shape))


def test_kernel_entry_points_check_their_arrays():
    x = np.ones((2, 5, 5, 3))
    w = np.ones((3, 3, 3, 4))
    y = np.empty((2, 3, 3, 4))
    col = np.empty((9, 27))
    geom = ((1, 1), (1, 1), (0, 0, 0, 0))
    _conv.forward(x, w, None, y, y, col, *geom)
    assert np.all(y == 27)
    with pytest.raises(ValueError, match=r"expected \(2, 3, 3, 4\)"):
        _conv.forward(x, w, None, y[:, :2].copy(), y[:, :2].copy(), col, *geom)
    with pytest.raises(ValueError, match="input channels"):
        _conv.forward(x, np.ones((3, 3, 2, 4)), None, y, y, col, *geom)
    with pytest.raises(TypeError, match="dtype"):
        _conv.forward(x.astype(np.float32), w, None, y, y, col, *geom)
    with pytest.raises(ValueError, match="C-contiguous"):
        _conv.forward(np.ones((2, 5, 10, 3))[:, :, ::2], w, None, y, y, col, *geom)
    with pytest.raises(ValueError, match="col has shape"):
        _conv.forward(x, w, None, y, y, np.empty((8, 27)), *geom)
    with pytest.raises(ValueError, match="col"):
        _conv.forward(x, w, None, y, y, None, *geom)
    with pytest.raises(ValueError, match="larger than the padded image"):
        _conv.forward(np.ones((2, 2, 5, 3)), w, None, y, y, col, *geom)
    with pytest.raises(ValueError, match="stride"):
        _conv.forward(x, w, None, y, y, col, (0, 1), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match="padding"):
        _conv.forward(x, w, None, y, y, col, (1, 1), (1, 1), (0, -1, 0, 0))
    with pytest.raises(ValueError, match="col_filled"):
        _conv.backward(x, w, None, None, y, None, np.empty_like(w), None, None, col, *geom,
                       col_filled=True)
