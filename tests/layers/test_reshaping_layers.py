"""ZeroPadding1D/2D, Cropping1D/2D and UpSampling1D/2D: PyTorch parity of
outputs and input gradients, gradient checks, configs, saving, and bad
arguments."""
import numpy as np
import numpy.testing as npt
import pytest

import cdl
from cdl import layers
from cdl._kernels import pooling as kernels
from helpers import GRADCHECK_TOL, check_layer, random_array

# (id, layer factory, sample shape, PyTorch function of a channels-first tensor);
# F.pad with negative amounts crops.
CASES = [
    ("zeropad1d-int", lambda: layers.ZeroPadding1D(2), (4, 3),
     lambda F, t: F.pad(t, (2, 2))),
    ("zeropad1d-pair", lambda: layers.ZeroPadding1D((0, 3)), (4, 2),
     lambda F, t: F.pad(t, (0, 3))),
    ("zeropad2d-int", lambda: layers.ZeroPadding2D(1), (3, 4, 2),
     lambda F, t: F.pad(t, (1, 1, 1, 1))),
    ("zeropad2d-per-axis", lambda: layers.ZeroPadding2D((2, 0)), (3, 4, 2),
     lambda F, t: F.pad(t, (0, 0, 2, 2))),
    ("zeropad2d-pairs", lambda: layers.ZeroPadding2D(((1, 2), (0, 3))), (3, 4, 2),
     lambda F, t: F.pad(t, (0, 3, 1, 2))),
    ("crop1d-int", lambda: layers.Cropping1D(1), (5, 3),
     lambda F, t: F.pad(t, (-1, -1))),
    ("crop1d-pair", lambda: layers.Cropping1D((2, 0)), (5, 2),
     lambda F, t: F.pad(t, (-2, 0))),
    ("crop2d-per-axis", lambda: layers.Cropping2D((1, 2)), (5, 6, 2),
     lambda F, t: F.pad(t, (-2, -2, -1, -1))),
    ("crop2d-pairs", lambda: layers.Cropping2D(((1, 2), (0, 1))), (5, 6, 2),
     lambda F, t: F.pad(t, (0, -1, -1, -2))),
    ("upsample1d", lambda: layers.UpSampling1D(3), (4, 2),
     lambda F, t: F.interpolate(t, scale_factor=3, mode="nearest")),
    ("upsample2d-nearest", lambda: layers.UpSampling2D((2, 3)), (3, 4, 2),
     lambda F, t: F.interpolate(t, scale_factor=(2, 3), mode="nearest")),
    ("upsample2d-nearest-5", lambda: layers.UpSampling2D(5), (2, 3, 1),
     lambda F, t: F.interpolate(t, scale_factor=5, mode="nearest")),
    ("upsample2d-bilinear", lambda: layers.UpSampling2D(2, interpolation="bilinear"),
     (3, 4, 2), lambda F, t: F.interpolate(t, scale_factor=2, mode="bilinear")),
    ("upsample2d-bilinear-3x2", lambda: layers.UpSampling2D((3, 2), interpolation="bilinear"),
     (4, 3, 2), lambda F, t: F.interpolate(t, scale_factor=(3, 2), mode="bilinear")),
    ("upsample2d-bilinear-corners",
     lambda: layers.UpSampling2D((2, 3), interpolation="bilinear", align_corners=True),
     (3, 4, 2), lambda F, t: F.interpolate(t, scale_factor=(2, 3), mode="bilinear",
                                           align_corners=True)),
    ("upsample2d-bilinear-one-row",
     lambda: layers.UpSampling2D((3, 1), interpolation="bilinear", align_corners=True),
     (1, 3, 2), lambda F, t: F.interpolate(t, scale_factor=(3, 1), mode="bilinear",
                                           align_corners=True)),
]
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_pytorch(case):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    _, make, shape, torch_fn = case
    x = random_array((2,) + shape, seed=3)
    layer = make()
    y = layer.forward(x)
    grad = random_array(y.shape, seed=4)
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
    errors = cdl.gradcheck(make(), random_array((2,) + shape, seed=5))
    assert max(errors.values()) < GRADCHECK_TOL


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer_contract_config_and_saving(case, dtype, tmp_path):
    _, make, shape, _ = case
    out_shape = make().compute_output_shape(shape)
    check_layer(make, shape, out_shape, 0, dtype)
    model = cdl.Sequential([make()], input_shape=shape, dtype=dtype, seed=0)
    path = tmp_path / "reshape.cdl"
    model.save(path)
    loaded = cdl.load_model(path)
    assert loaded.get_config() == model.get_config()
    x = random_array((3,) + shape, dtype, seed=6)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_bilinear_threads_give_the_bits_of_one_thread(dtype):
    x = random_array((12, 30, 20, 8), dtype, seed=7)
    results = []
    for threads in (1, 2):
        layer = layers.UpSampling2D(3, interpolation="bilinear")
        with cdl.threads(threads):
            y = layer.forward(x)
            results.append((y, layer.backward(y * 0.5)))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_config_forms():
    assert layers.ZeroPadding2D(((1, 1), (1, 1))).get_config()["padding"] == 1
    assert layers.ZeroPadding2D([2, 1]).get_config()["padding"] == (2, 1)
    assert layers.Cropping1D([1, 2]).get_config()["cropping"] == (1, 2)
    assert layers.Cropping2D().get_config()["cropping"] == 0
    assert layers.UpSampling2D([2, 1], interpolation="BILINEAR", name="u").get_config() == \
        {"name": "u", "size": (2, 1), "interpolation": "bilinear", "align_corners": False}
    assert layers.UpSampling1D().get_config()["size"] == 2


@pytest.mark.parametrize("make,error,match", [
    (lambda: layers.ZeroPadding1D(-1), ValueError, "padding must be >= 0"),
    (lambda: layers.ZeroPadding1D((1, 2, 3)), TypeError, "padding must be"),
    (lambda: layers.ZeroPadding2D("same"), TypeError, "padding must be"),
    (lambda: layers.Cropping2D(((1, 2), 1.0)), TypeError, "cropping must be"),
    (lambda: layers.Cropping1D(-2), ValueError, "cropping must be >= 0"),
    (lambda: layers.UpSampling1D(0), ValueError, "size"),
    (lambda: layers.UpSampling1D((2, 2)), TypeError, "size"),
    (lambda: layers.UpSampling2D(2.0), TypeError, "size"),
    (lambda: layers.UpSampling2D(2, interpolation="bicubic"), ValueError, "interpolation"),
    (lambda: layers.UpSampling2D(2, align_corners=True), ValueError, "bilinear"),
    (lambda: layers.UpSampling2D(2, interpolation="bilinear", align_corners=1), TypeError,
     "align_corners"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs():
    with pytest.raises(ValueError, match="leaves nothing"):
        layers.Cropping1D((2, 2)).forward(np.ones((1, 4, 1)))
    with pytest.raises(ValueError, match="takes samples of shape"):
        layers.ZeroPadding2D(1).forward(np.ones((1, 4, 4)))
    layer = layers.UpSampling2D(2, interpolation="bilinear")
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 4, 4, 1)))
    layer.forward(np.ones((1, 2, 2, 1)))
    with pytest.raises(ValueError, match="gradient"):
        layer.backward(np.ones((1, 4, 5, 1)))
    with pytest.raises(TypeError, match="align_corners"):
        kernels.bilinear_forward(np.ones((1, 2, 2, 1)), np.empty((1, 4, 4, 1)), "yes")
    with pytest.raises(ValueError, match="batch .* channel"):
        kernels.bilinear_forward(np.ones((1, 2, 2, 1)), np.empty((1, 4, 4, 2)))
    with pytest.raises(TypeError, match="same dtype"):
        kernels.bilinear_backward(np.ones((1, 4, 4, 1)), np.empty((1, 2, 2, 1), np.float32))


def test_empty_batch():
    for layer in (layers.UpSampling2D(2, interpolation="bilinear"), layers.Cropping2D(1),
                  layers.ZeroPadding2D(1), layers.UpSampling2D(2)):
        y = layer.forward(np.zeros((0, 3, 3, 2)))
        assert y.shape[0] == 0
        assert layer.backward(np.zeros_like(y)).shape == (0, 3, 3, 2)


def test_in_a_model_with_pooling_trains(tmp_path):
    model = cdl.Sequential([
        layers.ZeroPadding2D(((1, 0), (0, 1))), layers.MaxPool2D(2, padding=1),
        layers.UpSampling2D(2, interpolation="bilinear"), layers.Cropping2D(1),
        layers.AdaptiveAvgPool2D((2, 2)), layers.Flatten(), layers.Dense(2)],
        input_shape=(6, 6, 1), seed=0)
    x = random_array((16, 6, 6, 1), seed=8)
    y = np.eye(2)[np.arange(16) % 2]
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.cdl")
    loaded = cdl.load_model(tmp_path / "m.cdl")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
