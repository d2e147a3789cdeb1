"""Normalisation options as PyTorch's: LayerNorm over several trailing axes and
without affine parameters or bias, GroupNorm/RMSNorm without affine parameters,
RMSNorm's machine-epsilon default, BatchNorm's cumulative average
(momentum=None) and track_running_stats=False: PyTorch parity of outputs,
every gradient and running statistics, gradchecks, configs, saving, ONNX."""
import numpy as np
import pytest

import cdl
from cdl import layers

from helpers import GRADCHECK_TOL

torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")

TOL = {"rtol": 1e-10, "atol": 1e-10}
RNG = np.random.default_rng(7)


def _randomise(layer):
    for name in ("gamma", "beta"):
        if getattr(layer, name, None) is not None:
            getattr(layer, name)[...] = RNG.normal(size=getattr(layer, name).shape)


def _compare(layer, module, x, to_torch=lambda t: t, from_torch=lambda t: t, training=True,
             params=()):
    """Forward and backward of a cdl layer and a torch module on x; ``to_torch``
    maps cdl's channels-last input to the module's layout, ``from_torch`` back."""
    y = layer.forward(x, training=training)
    dy = RNG.normal(size=y.shape)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = from_torch(module(to_torch(xt)))
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    for mine, theirs in params:
        np.testing.assert_allclose(getattr(layer, mine + "_grad"),
                                   getattr(module, theirs).grad.numpy(), **TOL)


def _copy_params(layer, module, pairs):
    with torch.no_grad():
        for mine, theirs in pairs:
            getattr(module, theirs).copy_(torch.tensor(getattr(layer, mine)))


@pytest.mark.parametrize("axis, shape", [(-1, (3, 4, 5)), ((-2, -1), (3, 4, 5)),
                                          ((2, 3), (2, 3, 4, 5)), ((-3, -2, -1), (2, 3, 4, 5)),
                                          ((1, 2), (4, 3, 5))])
@pytest.mark.parametrize("affine, bias", [(True, True), (True, False), (False, True)])
def test_layer_norm_matches_torch(axis, shape, affine, bias):
    layer = layers.LayerNorm(eps=1e-4, axis=axis, elementwise_affine=affine, bias=bias,
                             dtype="float64")
    x = RNG.normal(size=shape) * 3 + 1
    layer.forward(x)
    trailing = 1 if axis == -1 else len(axis)
    normalised = shape[len(shape) - trailing:]
    module = torch.nn.LayerNorm(normalised, eps=1e-4, elementwise_affine=affine, bias=bias,
                                dtype=torch.float64)
    pairs = [("gamma", "weight")] * affine + [("beta", "bias")] * (affine and bias)
    if affine:
        assert layer.gamma.shape == normalised
    assert (getattr(layer, "beta", None) is not None) == (affine and bias)
    assert len(layer.params) == len(pairs)
    _randomise(layer)
    _copy_params(layer, module, pairs)
    _compare(layer, module, x, params=pairs)
    cdl.gradcheck(layers.LayerNorm(axis=axis, elementwise_affine=affine, bias=bias),
                  x[:2], tol=GRADCHECK_TOL)


@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_matches_torch(affine):
    layer = layers.GroupNorm(2, eps=1e-3, affine=affine, dtype="float64")
    x = RNG.normal(size=(3, 4, 5, 6))
    layer.forward(x)
    module = torch.nn.GroupNorm(2, 6, eps=1e-3, affine=affine, dtype=torch.float64)
    pairs = [("gamma", "weight"), ("beta", "bias")] if affine else []
    assert len(layer.params) == len(pairs)
    _randomise(layer)
    _copy_params(layer, module, pairs)
    _compare(layer, module, x, lambda t: t.permute(0, 3, 1, 2), lambda t: t.permute(0, 2, 3, 1),
             params=pairs)
    cdl.gradcheck(layers.GroupNorm(2, affine=affine), x[:2], tol=GRADCHECK_TOL)


@pytest.mark.parametrize("eps", [None, 1e-3])
@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm_matches_torch(eps, affine):
    layer = layers.RMSNorm(eps=eps, affine=affine, dtype="float64")
    x = RNG.normal(size=(3, 4, 6)) * 1e-3  # small enough for eps to matter
    layer.forward(x)
    module = torch.nn.RMSNorm(6, eps=eps, elementwise_affine=affine, dtype=torch.float64)
    pairs = [("gamma", "weight")] if affine else []
    assert len(layer.params) == len(pairs)
    _randomise(layer)
    _copy_params(layer, module, pairs)
    _compare(layer, module, x, params=pairs)
    cdl.gradcheck(layers.RMSNorm(eps=eps, affine=affine), x[:2] * 1e3, tol=GRADCHECK_TOL)


def test_rms_norm_default_eps_is_the_dtypes_machine_epsilon():
    x = np.full((2, 4), 1e-4)
    for dtype in (np.float32, np.float64):
        layer = layers.RMSNorm(dtype=np.dtype(dtype).name)
        y = layer(x.astype(dtype))
        eps = np.finfo(dtype).eps
        np.testing.assert_allclose(y, x / np.sqrt(1e-8 + eps), rtol=1e-6)
        expected = torch.nn.RMSNorm(4, dtype=getattr(torch, np.dtype(dtype).name))(
            torch.tensor(x.astype(dtype))).detach().numpy()
        np.testing.assert_allclose(y, expected, rtol=1e-6)
    assert layers.RMSNorm().get_config()["eps"] is None
    # A file saved when the default was 1e-6 carries eps=1e-6, and keeps it.
    old = layers.RMSNorm.from_config({"name": "rms", "eps": 1e-6})
    assert old.eps == 1e-6 and old.affine


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 2, 3)])
def test_batch_norm_cumulative_average_matches_torch(shape):
    layer = layers.BatchNorm(momentum=None, eps=1e-3, dtype="float64")
    module = torch.nn.BatchNorm1d(3, momentum=None, eps=1e-3, dtype=torch.float64)
    to_torch = (lambda t: t) if len(shape) == 2 else (lambda t: t.reshape(-1, 3))
    layer.forward(RNG.normal(size=shape), training=True)
    module(to_torch(torch.tensor(RNG.normal(size=shape))))
    layer.running_mean[...] = 0.0  # both start from the same statistics
    layer.running_var[...] = 1.0
    layer.num_batches_tracked[...] = 0
    module.reset_running_stats()
    _randomise(layer)
    pairs = [("gamma", "weight"), ("beta", "bias")]
    _copy_params(layer, module, pairs)
    for step in range(4):
        x = RNG.normal(size=shape) * (step + 1) + step
        module.zero_grad()
        _compare(layer, module, x, to_torch, lambda t: t.reshape(shape), params=pairs)
        np.testing.assert_allclose(layer.running_mean, module.running_mean.numpy(), **TOL)
        np.testing.assert_allclose(layer.running_var, module.running_var.numpy(), **TOL)
        assert layer.num_batches_tracked[0] == module.num_batches_tracked.item() == step + 1
    module.eval()
    _compare(layer, module, RNG.normal(size=shape), to_torch, lambda t: t.reshape(shape),
             training=False)


def test_batch_norm_without_running_stats_matches_torch():
    layer = layers.BatchNorm(track_running_stats=False, dtype="float64")
    module = torch.nn.BatchNorm1d(3, track_running_stats=False, dtype=torch.float64)
    x = RNG.normal(size=(6, 3))
    layer.forward(x)
    assert layer.running_mean is None and layer.buffers() == {}
    _randomise(layer)
    pairs = [("gamma", "weight"), ("beta", "bias")]
    _copy_params(layer, module, pairs)
    for training in (True, False):
        module.train(training)
        module.zero_grad()
        _compare(layer, module, RNG.normal(size=(6, 3)), training=training, params=pairs)
    with pytest.raises(ValueError, match="more than one value per channel"):
        layer.forward(x[:1])
    cdl.gradcheck(layers.BatchNorm(track_running_stats=False), x, tol=GRADCHECK_TOL)
    cdl.gradcheck(layers.BatchNorm(momentum=None), x, training=True, tol=GRADCHECK_TOL)


@pytest.mark.parametrize("make", [
    lambda: layers.LayerNorm(axis=(-2, -1)),
    lambda: layers.LayerNorm(elementwise_affine=False),
    lambda: layers.LayerNorm(bias=False, axis=(1, 2)),
    lambda: layers.GroupNorm(2, affine=False),
    lambda: layers.RMSNorm(),
    lambda: layers.RMSNorm(affine=False, eps=1e-5),
    lambda: layers.BatchNorm(momentum=None),
    lambda: layers.BatchNorm(track_running_stats=False),
], ids=["ln_axes", "ln_plain", "ln_no_bias", "gn_plain", "rms_default", "rms_plain",
        "bn_cumulative", "bn_batch_stats"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_saving_round_trip(make, dtype, tmp_path):
    model = cdl.Sequential([make()], input_shape=(3, 4), dtype=dtype, seed=0)
    x = RNG.normal(size=(5, 3, 4)).astype(dtype)
    for _ in range(2):
        model.forward(x, training=True)
    path = tmp_path / "model.cdl"
    cdl.io.save_model(model, path)
    loaded = cdl.io.load_model(path)
    assert loaded.get_config() == model.get_config()
    again = type(model.layers[0]).from_config(model.layers[0].get_config())
    assert again.get_config() == model.layers[0].get_config()
    for name, array in model.layers[0].buffers().items():
        np.testing.assert_array_equal(loaded.layers[0].buffers()[name], array)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_old_configs_load_with_the_old_behaviour():
    assert layers.BatchNorm.from_config(
        {"name": "bn", "momentum": 0.1, "eps": 1e-5, "center": True, "scale": True}
    ).track_running_stats
    ln = layers.LayerNorm.from_config({"name": "ln", "eps": 1e-5})
    assert (ln.axis, ln.affine, ln.bias) == (-1, True, True)
    assert layers.GroupNorm.from_config({"name": "gn", "eps": 1e-5, "groups": 2}).affine
    # Defaults leave the config as it was, so older versions read new files.
    assert set(layers.LayerNorm().get_config()) == {"name", "eps"}
    assert "affine" not in layers.GroupNorm(2).get_config()
    assert "track_running_stats" not in layers.BatchNorm().get_config()


@pytest.mark.parametrize("kwargs, shape, error, match", [
    ({"axis": (1, 3)}, (2, 3, 4, 5), ValueError, "trailing axes"),
    ({"axis": (0, 1)}, (3, 4), ValueError, "batch axis"),
    ({"axis": 1}, (3, 4, 5), ValueError, "trailing axes"),
    ({"axis": (5,)}, (3, 4), ValueError, "out of range"),
    ({"axis": "last"}, (3, 4), TypeError, "axis must be"),
    ({"axis": (-1, -1)}, (3, 4), ValueError, "repeated"),
    ({"elementwise_affine": "yes"}, (3, 4), TypeError, "elementwise_affine"),
    ({"bias": 1.5}, (3, 4), TypeError, "bias"),
])
def test_layer_norm_rejects_bad_options(kwargs, shape, error, match):
    with pytest.raises(error, match=match):
        layers.LayerNorm(**kwargs)(np.zeros(shape))


def test_other_bad_options():
    with pytest.raises(TypeError, match="affine"):
        layers.GroupNorm(2, affine="no")
    with pytest.raises(TypeError, match="track_running_stats"):
        layers.BatchNorm(track_running_stats=None)
    with pytest.raises((TypeError, ValueError), match="eps"):
        layers.RMSNorm(eps=0.0)
    with pytest.raises((TypeError, ValueError), match="momentum"):
        layers.BatchNorm(momentum="none")


try:
    import onnx  # noqa: F401
    import onnxruntime
except ImportError:
    onnxruntime = None


@pytest.mark.skipif(onnxruntime is None, reason="onnx and onnxruntime are optional extras")
@pytest.mark.parametrize("make, shape", [
    (lambda: layers.LayerNorm(axis=(-2, -1)), (5, 6)),
    (lambda: layers.LayerNorm(axis=(2, 3), bias=False), (4, 5, 6)),
    (lambda: layers.LayerNorm(elementwise_affine=False), (5, 6)),
    (lambda: layers.GroupNorm(2, affine=False), (5, 5, 4)),
    (lambda: layers.RMSNorm(), (5, 6)),
    (lambda: layers.RMSNorm(affine=False, eps=1e-4), (5, 6)),
    (lambda: layers.BatchNorm(momentum=None), (5, 3)),
    (lambda: layers.BatchNorm(track_running_stats=False), (5, 3)),
], ids=["ln_axes", "ln_axes_no_bias", "ln_plain", "gn_plain", "rms_default", "rms_plain",
        "bn_cumulative", "bn_batch_stats"])
def test_onnx_export_agrees(make, shape, tmp_path):
    model = cdl.Sequential([make()], input_shape=shape, seed=0)
    layer = model.layers[0]
    for name in ("gamma", "beta"):
        if getattr(layer, name, None) is not None:
            getattr(layer, name)[...] = RNG.normal(size=getattr(layer, name).shape)
    x = RNG.normal(size=(3,) + shape).astype(np.float32)
    if isinstance(layer, layers.BatchNorm):
        model.forward(x, training=True)
    path = tmp_path / "model.onnx"
    cdl.onnx.export(model, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x})[0]
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-5, atol=1e-5)
