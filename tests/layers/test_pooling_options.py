"""Pooling options as PyTorch has them (integer, per-axis and Keras-style
asymmetric padding, ceil_mode, count_include_pad, divisor_override,
dilation) and the adaptive pools: PyTorch parity of outputs and input
gradients, gradient checks, configs, saving, and bad arguments.

Inputs hold distinct values, so max pooling never meets a tie (cdl gives a
tie to the first maximum in row-major window order, as PyTorch's CPU
kernels)."""
import math

import numpy as np
import numpy.testing as npt
import pytest

import cdl
from cdl import layers
from helpers import GRADCHECK_TOL, check_layer

INF = math.inf


def distinct_array(shape, seed=0):
    """Values at least 0.1 apart in a random order: no ties, not even within
    a gradient check's finite-difference step."""
    rng = np.random.default_rng(seed)
    size = math.prod(shape)
    values = (rng.permutation(size) - size / 2) * 0.1 + rng.uniform(0, 0.01, size)
    return values.reshape(shape)


def _ratio(F, fn, t, pads, *args):
    """PyTorch's average over the real elements of explicitly padded windows:
    the sum over zero padding divided by the count of real elements."""
    return fn(F.pad(t, pads), *args) / fn(F.pad(t * 0 + 1, pads), *args)


# (id, layer factory, sample shape, PyTorch function of a channels-first tensor)
CASES = [
    ("max1d-pad1", lambda: layers.MaxPool1D(3, 2, padding=1), (7, 3),
     lambda F, t: F.max_pool1d(t, 3, 2, padding=1)),
    ("max1d-pad1-ceil", lambda: layers.MaxPool1D(3, 2, padding=1, ceil_mode=True), (8, 2),
     lambda F, t: F.max_pool1d(t, 3, 2, padding=1, ceil_mode=True)),
    ("max1d-ceil-drops-window-in-padding",
     lambda: layers.MaxPool1D(3, 3, padding=1, ceil_mode=True), (5, 2),
     lambda F, t: F.max_pool1d(t, 3, 3, padding=1, ceil_mode=True)),
    ("max1d-valid-ceil", lambda: layers.MaxPool1D(3, 2, ceil_mode=True), (8, 2),
     lambda F, t: F.max_pool1d(t, 3, 2, ceil_mode=True)),
    ("max1d-dilation", lambda: layers.MaxPool1D(2, 1, padding=1, dilation=2), (7, 2),
     lambda F, t: F.max_pool1d(t, 2, 1, padding=1, dilation=2)),
    ("max1d-dilation-ceil", lambda: layers.MaxPool1D(3, 2, dilation=2, ceil_mode=True),
     (10, 2), lambda F, t: F.max_pool1d(t, 3, 2, dilation=2, ceil_mode=True)),
    ("max1d-asymmetric", lambda: layers.MaxPool1D(3, 2, padding=(1, 0)), (8, 2),
     lambda F, t: F.max_pool1d(F.pad(t, (1, 0), value=-INF), 3, 2)),
    ("avg1d-pad1", lambda: layers.AvgPool1D(3, 2, padding=1), (7, 3),
     lambda F, t: F.avg_pool1d(t, 3, 2, padding=1)),
    ("avg1d-pad1-exclude", lambda: layers.AvgPool1D(3, 2, padding=1, count_include_pad=False),
     (7, 3), lambda F, t: F.avg_pool1d(t, 3, 2, padding=1, count_include_pad=False)),
    ("avg1d-pad1-ceil", lambda: layers.AvgPool1D(3, 2, padding=1, ceil_mode=True), (8, 2),
     lambda F, t: F.avg_pool1d(t, 3, 2, padding=1, ceil_mode=True)),
    ("avg1d-ceil-drops-window-in-padding",
     lambda: layers.AvgPool1D(3, 3, padding=1, ceil_mode=True), (5, 2),
     lambda F, t: F.avg_pool1d(t, 3, 3, padding=1, ceil_mode=True)),
    ("avg1d-valid-ceil-exclude",
     lambda: layers.AvgPool1D(3, 2, ceil_mode=True, count_include_pad=False), (8, 2),
     lambda F, t: F.avg_pool1d(t, 3, 2, ceil_mode=True, count_include_pad=False)),
    ("avg1d-divisor", lambda: layers.AvgPool1D(3, 2, padding=1, divisor_override=2), (7, 2),
     lambda F, t: F.avg_pool2d(t[:, :, None], (1, 3), (1, 2), (0, 1),
                               divisor_override=2)[:, :, 0]),
    ("avg1d-asymmetric", lambda: layers.AvgPool1D(3, 2, padding=(0, 1)), (8, 2),
     lambda F, t: F.avg_pool1d(F.pad(t, (0, 1)), 3, 2)),
    ("avg1d-asymmetric-exclude",
     lambda: layers.AvgPool1D(3, 2, padding=(0, 1), count_include_pad=False), (8, 2),
     lambda F, t: _ratio(F, F.avg_pool1d, t, (0, 1), 3, 2)),
    ("max2d-pad1", lambda: layers.MaxPool2D(3, 2, padding=1), (7, 6, 2),
     lambda F, t: F.max_pool2d(t, 3, 2, padding=1)),
    ("max2d-per-axis-ceil", lambda: layers.MaxPool2D((3, 2), (2, 1), padding=(1, 0),
                                                     ceil_mode=True), (8, 5, 2),
     lambda F, t: F.max_pool2d(t, (3, 2), (2, 1), padding=(1, 0), ceil_mode=True)),
    ("max2d-dilation", lambda: layers.MaxPool2D(3, 2, padding=1, dilation=(2, 1)), (9, 6, 2),
     lambda F, t: F.max_pool2d(t, 3, 2, padding=1, dilation=(2, 1))),
    ("max2d-asymmetric", lambda: layers.MaxPool2D(3, 2, padding=((1, 0), (0, 1))), (7, 6, 2),
     lambda F, t: F.max_pool2d(F.pad(t, (0, 1, 1, 0), value=-INF), 3, 2)),
    ("avg2d-pad1", lambda: layers.AvgPool2D(3, 2, padding=1), (7, 6, 2),
     lambda F, t: F.avg_pool2d(t, 3, 2, padding=1)),
    ("avg2d-per-axis-ceil-exclude",
     lambda: layers.AvgPool2D((3, 2), (2, 1), padding=(1, 0), ceil_mode=True,
                              count_include_pad=False), (8, 5, 2),
     lambda F, t: F.avg_pool2d(t, (3, 2), (2, 1), padding=(1, 0), ceil_mode=True,
                               count_include_pad=False)),
    ("avg2d-ceil-include", lambda: layers.AvgPool2D(3, 2, padding=1, ceil_mode=True),
     (8, 6, 2), lambda F, t: F.avg_pool2d(t, 3, 2, padding=1, ceil_mode=True)),
    ("avg2d-divisor", lambda: layers.AvgPool2D(2, 1, padding=1, divisor_override=3),
     (5, 4, 2), lambda F, t: F.avg_pool2d(t, 2, 1, padding=1, divisor_override=3)),
    ("avg2d-asymmetric", lambda: layers.AvgPool2D(3, 2, padding=((1, 0), (0, 1))), (7, 6, 2),
     lambda F, t: F.avg_pool2d(F.pad(t, (0, 1, 1, 0)), 3, 2)),
    ("avg2d-asymmetric-exclude",
     lambda: layers.AvgPool2D(3, 2, padding=((1, 0), (0, 1)), count_include_pad=False),
     (7, 6, 2), lambda F, t: _ratio(F, F.avg_pool2d, t, (0, 1, 1, 0), 3, 2)),
    ("avg2d-same-include", lambda: layers.AvgPool2D(3, 1, padding="same",
                                                    count_include_pad=True), (5, 4, 2),
     lambda F, t: F.avg_pool2d(t, 3, 1, padding=1)),
    ("adaptive-max1d", lambda: layers.AdaptiveMaxPool1D(3), (7, 3),
     lambda F, t: F.adaptive_max_pool1d(t, 3)),
    ("adaptive-avg1d", lambda: layers.AdaptiveAvgPool1D(4), (7, 3),
     lambda F, t: F.adaptive_avg_pool1d(t, 4)),
    ("adaptive-avg1d-larger", lambda: layers.AdaptiveAvgPool1D(10), (7, 2),
     lambda F, t: F.adaptive_avg_pool1d(t, 10)),
    ("adaptive-max1d-larger", lambda: layers.AdaptiveMaxPool1D(9), (4, 2),
     lambda F, t: F.adaptive_max_pool1d(t, 9)),
    ("adaptive-max2d", lambda: layers.AdaptiveMaxPool2D((3, 4)), (7, 6, 2),
     lambda F, t: F.adaptive_max_pool2d(t, (3, 4))),
    ("adaptive-max2d-int", lambda: layers.AdaptiveMaxPool2D(5), (7, 6, 2),
     lambda F, t: F.adaptive_max_pool2d(t, 5)),
    ("adaptive-avg2d-keep-rows", lambda: layers.AdaptiveAvgPool2D((None, 4)), (5, 7, 2),
     lambda F, t: F.adaptive_avg_pool2d(t, (None, 4))),
    ("adaptive-avg2d-1", lambda: layers.AdaptiveAvgPool2D(1), (5, 7, 3),
     lambda F, t: F.adaptive_avg_pool2d(t, 1)),
]
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_pytorch(case):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    _, make, shape, torch_fn = case
    x = distinct_array((2,) + shape, seed=3)
    layer = make()
    y = layer.forward(x)
    grad = np.random.default_rng(4).standard_normal(y.shape)
    dx = layer.backward(grad)
    t = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    out = torch_fn(F, t)
    out.backward(torch.tensor(np.moveaxis(grad, -1, 1)))
    ty = np.moveaxis(out.detach().numpy(), 1, -1)
    assert ty.shape == y.shape
    npt.assert_allclose(y, ty, rtol=1e-10, atol=1e-10)
    npt.assert_allclose(dx, np.moveaxis(t.grad.numpy(), 1, -1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck(case):
    _, make, shape, _ = case
    errors = cdl.gradcheck(make(), distinct_array((2,) + shape, seed=5))
    assert max(errors.values()) < GRADCHECK_TOL


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer_contract_config_and_saving(case, dtype, tmp_path):
    _, make, shape, _ = case
    out_shape = make().compute_output_shape(shape)
    check_layer(make, shape, out_shape, 0, dtype)
    model = cdl.Sequential([make()], input_shape=shape, dtype=dtype, seed=0)
    path = tmp_path / "pool.cdl"
    model.save(path)
    loaded = cdl.load_model(path)
    assert loaded.get_config() == model.get_config()
    x = distinct_array((3,) + shape, seed=6).astype(dtype)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_threaded_calls_give_the_bits_of_one_thread():
    x = distinct_array((16, 40, 33, 8), seed=7)
    for make in (lambda: layers.MaxPool2D(3, 2, padding=1, dilation=2, ceil_mode=True),
                 lambda: layers.AvgPool2D(3, 2, padding=((1, 0), (1, 1)), ceil_mode=True),
                 lambda: layers.AdaptiveMaxPool2D((7, 5)),
                 lambda: layers.AdaptiveAvgPool2D((9, 4))):
        results = []
        for threads in (1, 2):
            with cdl.threads(threads):
                layer = make()
                y = layer.forward(x)
                results.append((y, layer.backward(np.ones_like(y) * 0.5 + y)))
        for a, b in zip(*results):
            np.testing.assert_array_equal(a, b)


def test_output_lengths_follow_pytorch():
    # (7 + 2 - 3) / 2 + 1 = 4 either way; ceil keeps a last partial window.
    assert layers.MaxPool1D(3, 2, padding=1).compute_output_shape((7, 1)) == (4, 1)
    assert layers.MaxPool1D(3, 2, ceil_mode=True).compute_output_shape((8, 1)) == (4, 1)
    assert layers.MaxPool1D(3, 2).compute_output_shape((8, 1)) == (3, 1)
    # The last window would start in the right padding alone: dropped.
    assert layers.AvgPool1D(3, 3, padding=1, ceil_mode=True).compute_output_shape((5, 1)) \
        == (2, 1)
    assert layers.MaxPool2D(2, dilation=2).compute_output_shape((5, 6, 1)) == (2, 2, 1)
    assert layers.AdaptiveAvgPool2D((None, 3)).compute_output_shape((5, 7, 2)) == (5, 3, 2)


def test_count_include_pad_defaults():
    x = np.ones((1, 4, 1))
    # Explicit padding counts (PyTorch); "same" does not (Keras) unless asked.
    assert layers.AvgPool1D(3, 1, padding=1)(x).ravel().tolist() == [2 / 3, 1, 1, 2 / 3]
    assert layers.AvgPool1D(3, 1, padding="same")(x).ravel().tolist() == [1, 1, 1, 1]
    assert layers.AvgPool1D(3, 1, padding="same", count_include_pad=True)(x).ravel().tolist() \
        == [2 / 3, 1, 1, 2 / 3]
    assert layers.AvgPool1D(3, 1, padding=1, count_include_pad=False)(x).ravel().tolist() \
        == [1, 1, 1, 1]
    assert layers.AvgPool1D(3, 1, padding=1, divisor_override=1)(x).ravel().tolist() \
        == [2, 3, 3, 2]


def test_config_forms():
    assert layers.MaxPool2D(3, padding=1).get_config()["padding"] == 1
    assert layers.MaxPool2D(3, padding=(1, 0)).get_config()["padding"] == (1, 0)
    assert layers.MaxPool2D(3, padding=((1, 0), (1, 1))).get_config()["padding"] == \
        ((1, 0), (1, 1))
    assert layers.MaxPool2D(3, padding=[[1, 1], [1, 1]]).get_config()["padding"] == 1
    assert layers.MaxPool1D(3, padding=[0, 1]).get_config()["padding"] == (0, 1)
    config = layers.AvgPool2D(3, padding=1, ceil_mode=True, divisor_override=2,
                              name="a").get_config()
    assert config == {"name": "a", "pool_size": (3, 3), "strides": (3, 3), "padding": 1,
                      "ceil_mode": True, "count_include_pad": None, "divisor_override": 2}
    assert layers.MaxPool1D(2, dilation=2).get_config()["dilation"] == 2
    assert layers.AdaptiveMaxPool2D([3, None]).get_config()["output_size"] == (3, None)
    assert layers.AdaptiveAvgPool1D(4).get_config()["output_size"] == 4


@pytest.mark.parametrize("make,error,match", [
    (lambda: layers.MaxPool2D(2, padding=2), ValueError, "at most half"),
    (lambda: layers.MaxPool1D(3, padding=(2, 0)), ValueError, "at most half"),
    (lambda: layers.MaxPool2D(2, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: layers.MaxPool2D(2, padding=(1, 1, 1)), TypeError, "padding must be"),
    (lambda: layers.MaxPool2D(2, padding=((1, 0), (1,))), TypeError, "padding must be"),
    (lambda: layers.MaxPool1D(2, padding=1.5), TypeError, "padding must be"),
    (lambda: layers.MaxPool1D(2, padding=True), TypeError, "padding must be"),
    (lambda: layers.MaxPool1D(2, padding="same", ceil_mode=True), ValueError, "ceil_mode"),
    (lambda: layers.MaxPool1D(2, ceil_mode="yes"), TypeError, "ceil_mode"),
    (lambda: layers.MaxPool2D(2, dilation=0), ValueError, "dilation"),
    (lambda: layers.MaxPool2D(2, dilation=(1, 2, 3)), TypeError, "dilation"),
    (lambda: layers.AvgPool1D(2, count_include_pad=1), TypeError, "count_include_pad"),
    (lambda: layers.AvgPool1D(2, divisor_override=0), ValueError, "divisor_override"),
    (lambda: layers.AvgPool1D(2, divisor_override=1.5), ValueError, "divisor_override"),
    (lambda: layers.AdaptiveAvgPool1D(0), ValueError, "output_size"),
    (lambda: layers.AdaptiveAvgPool1D(None), TypeError, "output_size"),
    (lambda: layers.AdaptiveMaxPool2D((2, 2, 2)), TypeError, "output_size"),
    (lambda: layers.AdaptiveMaxPool2D("2"), TypeError, "output_size"),
    (lambda: layers.AdaptiveMaxPool2D(2.0), TypeError, "output_size"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs():
    with pytest.raises(ValueError, match="larger than the input"):
        layers.MaxPool1D(5, padding=1).forward(np.ones((1, 2, 1)))
    with pytest.raises(ValueError, match="reads padding only"):
        layers.MaxPool1D(2, 1, padding=1, dilation=3).forward(np.ones((1, 2, 1)))
    with pytest.raises(ValueError, match="takes samples of shape"):
        layers.AdaptiveMaxPool2D(2).forward(np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match="empty spatial axis"):
        layers.AdaptiveAvgPool1D(2).compute_output_shape((0, 3))
    layer = layers.AdaptiveMaxPool1D(2)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 2, 1)))
    layer.forward(np.ones((1, 5, 1)))
    with pytest.raises(ValueError, match="gradient"):
        layer.backward(np.ones((1, 3, 1)))


def test_empty_batch():
    for layer in (layers.AdaptiveMaxPool2D(2), layers.AvgPool2D(3, 2, padding=1,
                                                                ceil_mode=True)):
        y = layer.forward(np.zeros((0, 5, 5, 2)))
        assert y.shape[0] == 0
        assert layer.backward(np.zeros_like(y)).shape == (0, 5, 5, 2)


def test_flops_count_the_elements_read():
    # Adaptive bins of 5 into 2: [0, 3) and [2, 5), six reads.
    assert layers.AdaptiveMaxPool1D(2).flops_per_sample((5, 1)) == 6
    assert layers.AdaptiveAvgPool1D(2).flops_per_sample((5, 3)) == 6 * 3 + 2 * 3
    # Padding 1 with pool 3 stride 2 over 7: windows read 2, 3, 3, 2.
    assert layers.MaxPool1D(3, 2, padding=1).flops_per_sample((7, 1)) == 10


# --- ONNX export of the window pools' options ---------------------------------------

ONNX_CASES = [
    ("max1d-pad1", lambda: layers.MaxPool1D(3, 2, padding=1), (7, 3)),
    ("max1d-asymmetric-dilation", lambda: layers.MaxPool1D(2, 1, padding=(1, 0), dilation=2),
     (7, 3)),
    ("max2d-pad-ceil-no-effect", lambda: layers.MaxPool2D(3, 2, padding=1, ceil_mode=True),
     (7, 9, 2)),
    ("max2d-asymmetric", lambda: layers.MaxPool2D(3, 2, padding=((1, 0), (0, 1))), (7, 6, 2)),
    ("avg1d-pad1-include", lambda: layers.AvgPool1D(3, 2, padding=1), (7, 3)),
    ("avg1d-pad1-exclude", lambda: layers.AvgPool1D(3, 2, padding=1, count_include_pad=False),
     (7, 3)),
    ("avg2d-asymmetric", lambda: layers.AvgPool2D(3, 2, padding=((1, 0), (0, 1))), (7, 6, 2)),
    ("avg2d-same-include", lambda: layers.AvgPool2D(3, 1, padding="same",
                                                    count_include_pad=True), (5, 4, 2)),
]


@pytest.mark.parametrize("case", ONNX_CASES, ids=[c[0] for c in ONNX_CASES])
def test_window_pool_options_export_to_onnx(case, tmp_path):
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    import cdl.onnx

    _, make, shape = case
    model = cdl.Sequential([make()], input_shape=shape, seed=0)
    x = distinct_array((3,) + shape, seed=8).astype(np.float32)
    path = tmp_path / "pool.onnx"
    cdl.onnx.export(model, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x})[0]
    npt.assert_allclose(got, model.predict(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make,shape,match", [
    (lambda: layers.AvgPool1D(3, 2, padding=1, divisor_override=2), (7, 2),
     "divisor_override"),
    (lambda: layers.AvgPool1D(3, 2, padding=1, ceil_mode=True, count_include_pad=True),
     (8, 2), "ceil_mode"),
])
def test_onnx_refuses_what_it_cannot_express(make, shape, match, tmp_path):
    pytest.importorskip("onnx")
    import cdl.onnx

    model = cdl.Sequential([make()], input_shape=shape, seed=0)
    with pytest.raises(ValueError, match=match):
        cdl.onnx.export(model, tmp_path / "pool.onnx")
