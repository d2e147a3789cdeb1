"""SpatialDropout1D/2D and GaussianNoise: active in training only, seeded by
the model's generator, whole channels dropped, gradients through the same draw."""
import numpy as np
import pytest

import cdl
from cdl import layers
from helpers import GRADCHECK_TOL, assert_allclose, check_layer, random_array

SPATIAL = {
    # class, per-sample input shape
    "1D": (layers.SpatialDropout1D, (6, 5)),
    "2D": (layers.SpatialDropout2D, (3, 4, 5)),
}


def _model(layer, shape, dtype=np.float32, seed=0):
    return cdl.Sequential([layer], input_shape=shape, dtype=dtype, seed=seed)


# --- spatial dropout ----------------------------------------------------------------

@pytest.mark.parametrize("kind", list(SPATIAL))
def test_spatial_dropout_is_identity_at_inference(dtype, kind):
    cls, shape = SPATIAL[kind]
    model = _model(cls(0.5), shape, dtype)
    x = random_array((4,) + shape, dtype, seed=1)
    np.testing.assert_array_equal(model.forward(x), x)
    np.testing.assert_array_equal(model.backward(x), x)
    # Rate 0 is the identity in training too, and draws nothing.
    model = _model(cls(0.0), shape, dtype)
    state = model.rng.bit_generator.state
    np.testing.assert_array_equal(model.forward(x, training=True), x)
    assert model.rng.bit_generator.state == state


@pytest.mark.parametrize("kind", list(SPATIAL))
def test_spatial_dropout_drops_whole_channels(dtype, kind):
    cls, shape = SPATIAL[kind]
    rate = 0.4
    model = _model(cls(rate), shape, dtype, seed=2)
    n, channels = 200, shape[-1]
    x = np.ones((n,) + shape, dtype)
    y = model.forward(x, training=True)
    assert y.dtype == dtype and y.shape == x.shape
    # Per sample and channel, every position is zero or every one is scaled.
    per_channel = np.moveaxis(y, -1, 1).reshape(n, channels, -1)
    first = per_channel[:, :, :1]
    assert np.array_equal(per_channel, np.broadcast_to(first, per_channel.shape))
    kept = first[:, :, 0] != 0
    np.testing.assert_array_equal(first[kept, 0], dtype(1 / (1 - rate)))
    assert abs(kept.mean() - (1 - rate)) < 0.05
    # Different samples get different channel masks.
    assert not np.all(kept == kept[0])
    # The backward pass applies the same mask.
    g = random_array(x.shape, dtype, seed=3)
    dx = model.backward(g)
    mask = y  # x is ones, so y is the scaled mask
    np.testing.assert_array_equal(dx, g * mask)


@pytest.mark.parametrize("kind", list(SPATIAL))
def test_spatial_dropout_mask_comes_from_the_model_generator(dtype, kind):
    cls, shape = SPATIAL[kind]
    rate, n = 0.5, 7
    model = _model(cls(rate), shape, dtype, seed=11)  # no weights: no draw before ours
    x = random_array((n,) + shape, dtype, seed=4)
    y = model.forward(x, training=True)
    u = np.random.default_rng(11).random((n, shape[-1]), dtype=dtype)
    keep = (u >= dtype(rate)).reshape((n,) + (1,) * (len(shape) - 1) + (shape[-1],))
    np.testing.assert_array_equal(y, x * np.where(keep, dtype(1 / (1 - rate)), dtype(0)))


@pytest.mark.parametrize("kind", list(SPATIAL))
def test_spatial_dropout_is_seeded(kind):
    cls, shape = SPATIAL[kind]
    x = np.ones((6,) + shape)

    def run(seed):
        model = _model(cls(0.5), shape, seed=seed)
        return model.forward(x, training=True), model.forward(x, training=True)

    a1, a2 = run(3)
    b1, b2 = run(3)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)  # a new mask each batch
    assert not np.array_equal(run(4)[0], a1)


def test_spatial_dropout_checks_input_rank():
    with pytest.raises(ValueError, match="steps, channels"):
        _model(layers.SpatialDropout1D(0.5), (5,))
    with pytest.raises(ValueError, match="steps, channels"):
        _model(layers.SpatialDropout1D(0.5), (2, 3, 5))
    with pytest.raises(ValueError, match="height, width, channels"):
        _model(layers.SpatialDropout2D(0.5), (3, 5))


@pytest.mark.parametrize("rate, error, match", [
    (1.0, ValueError, "rate must be < 1.0"), (-0.1, ValueError, "rate must be >= 0.0"),
    (float("nan"), ValueError, "finite"), ("half", TypeError, "number")])
@pytest.mark.parametrize("kind", list(SPATIAL))
def test_spatial_dropout_rejects_bad_rates(kind, rate, error, match):
    with pytest.raises(error, match=match):
        SPATIAL[kind][0](rate)


@pytest.mark.parametrize("kind", list(SPATIAL))
def test_spatial_dropout_gradcheck_in_training(kind):
    cls, shape = SPATIAL[kind]
    model = cdl.Sequential([layers.Dense(4), cls(0.5), layers.Dense(2)], input_shape=shape,
                           dtype="float64", seed=0)
    errors = cdl.gradcheck(model, random_array((3,) + shape, seed=5), training=True)
    assert max(errors.values()) < GRADCHECK_TOL


# --- Gaussian noise -----------------------------------------------------------------

def test_gaussian_noise_only_in_training(dtype):
    model = _model(layers.GaussianNoise(0.3), (1000,), dtype, seed=1)
    x = random_array((20, 1000), dtype, seed=2)
    np.testing.assert_array_equal(model.forward(x), x)
    y = model.forward(x, training=True)
    assert y.dtype == dtype
    noise = (y - x).astype(np.float64)
    assert abs(noise.mean()) < 0.01
    assert abs(noise.std() - 0.3) < 0.01
    # Inference again: no noise, and nothing drawn.
    state = model.rng.bit_generator.state
    np.testing.assert_array_equal(model.forward(x), x)
    assert model.rng.bit_generator.state == state


def test_gaussian_noise_draws_from_the_model_generator(dtype):
    model = _model(layers.GaussianNoise(0.5), (3, 4), dtype, seed=7)
    x = random_array((5, 3, 4), dtype, seed=3)
    y = model.forward(x, training=True)
    expected = np.random.default_rng(7).standard_normal(x.shape, dtype=dtype) * dtype(0.5) + x
    np.testing.assert_array_equal(y, expected)


def test_gaussian_noise_is_seeded():
    x = np.zeros((4, 10))

    def run(seed):
        return _model(layers.GaussianNoise(1.0), (10,), seed=seed).forward(x, training=True)

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_gaussian_noise_gradient_is_identity(dtype):
    model = _model(layers.GaussianNoise(0.2), (6,), dtype)
    x = random_array((3, 6), dtype, seed=1)
    for training in (False, True):
        model.forward(x, training=training)
        g = random_array((3, 6), dtype, seed=2)
        np.testing.assert_array_equal(model.backward(g), g)
    errors = cdl.gradcheck(cdl.Sequential([layers.Dense(3), layers.GaussianNoise(0.5)],
                                          input_shape=(6,), dtype="float64", seed=0),
                           random_array((4, 6), seed=3), training=True)
    assert max(errors.values()) < GRADCHECK_TOL


def test_gaussian_noise_zero_stddev_and_bad_values():
    model = _model(layers.GaussianNoise(0.0), (5,), np.float64)
    x = random_array((2, 5), seed=1)
    np.testing.assert_array_equal(model.forward(x, training=True), x)
    with pytest.raises(ValueError, match="stddev must be >= 0.0"):
        layers.GaussianNoise(-1.0)
    with pytest.raises(TypeError, match="number"):
        layers.GaussianNoise(None)
    with pytest.raises(ValueError, match="finite"):
        layers.GaussianNoise(float("inf"))


# --- the layer contract, training and saving ------------------------------------------

CONTRACT_CASES = [
    (lambda: layers.SpatialDropout1D(0.3), (5, 4), (5, 4), 0),
    (lambda: layers.SpatialDropout2D(0.3), (2, 3, 4), (2, 3, 4), 0),
    (lambda: layers.GaussianNoise(0.1), (4,), (4,), 0),
    (lambda: layers.GaussianNoise(0.1), (2, 3), (2, 3), 0),
]
IDS = ["SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianNoise-2d"]


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=IDS)
def test_layer_contract(case, dtype):
    check_layer(*case, dtype=dtype)


def test_configs():
    assert layers.SpatialDropout1D(0.2, name="sd").get_config() == {"name": "sd", "rate": 0.2}
    assert layers.SpatialDropout2D(0.2, name="sd").get_config() == {"name": "sd", "rate": 0.2}
    assert layers.GaussianNoise(0.5, name="gn").get_config() == {"name": "gn", "stddev": 0.5}


def test_training_and_saving_a_model_with_noise_layers(tmp_path):
    model = cdl.Sequential([layers.Dense(6), layers.SpatialDropout1D(0.3),
                            layers.GaussianNoise(0.2), layers.Flatten(), layers.Dense(2)],
                           input_shape=(4, 3), dtype="float64", seed=0)
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 4, 3)), rng.standard_normal((32, 2))
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    np.testing.assert_array_equal(model.predict(x), model.predict(x))  # inference: no noise
    path = tmp_path / "model.cdl"
    model.save(path)
    again = cdl.load_model(path)
    assert [type(a) for a in again.layers] == [type(b) for b in model.layers]
    assert_allclose(again.predict(x), model.predict(x), dtype=np.float64, rtol=0, atol=0)
