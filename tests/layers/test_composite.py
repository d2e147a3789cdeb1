"""Residual and Concatenate: layers made of layers."""
import numpy as np
import pytest

import cdl
from cdl import layers
from helpers import GRADCHECK_TOL, check_layer, random_array


def residual():
    return layers.Residual([layers.Dense(6, activation="tanh"), layers.Dropout(0.2),
                            layers.Dense(4)])


def concatenate():
    return layers.Concatenate([[layers.Dense(3, activation="relu")],
                               [layers.Dense(5, activation="tanh"), layers.Dense(2)],
                               layers.Activation("sigmoid")])


@pytest.mark.parametrize("make, out_shape, n_params", [
    (residual, (4,), 4 * 6 + 6 + 6 * 4 + 4),
    (concatenate, (3 + 2 + 4,), 4 * 3 + 3 + 4 * 5 + 5 + 5 * 2 + 2),
], ids=["Residual", "Concatenate"])
def test_layer_contract(make, out_shape, n_params, dtype):
    check_layer(make, (4,), out_shape, n_params, dtype)


def test_gradients_of_nested_blocks():
    model = cdl.Sequential([
        layers.Dense(4, activation="tanh"),
        layers.Residual([layers.Dense(4, activation="gelu"),
                         layers.Residual([layers.Dense(4, activation="elu")])]),
        concatenate(),
        layers.Dense(3),
    ], input_shape=(5,), dtype="float64", seed=0)
    errors = cdl.gradcheck(model, random_array((6, 5), seed=1), training=True)
    assert len(errors) == 1 + len(model.params)
    assert max(errors.values()) < GRADCHECK_TOL


def test_forward_matches_the_formula():
    inner = [layers.Dense(4, activation="relu")]
    block = layers.Residual(inner)
    x = random_array((3, 4), seed=2)
    y = block.forward(x)
    np.testing.assert_allclose(y, x + np.maximum(x @ inner[0].kernel + inner[0].bias, 0))
    branches = layers.Concatenate([[layers.Dense(2)], [layers.Tanh()]])
    out = branches.forward(x)
    dense = branches.branches[0][0]
    np.testing.assert_allclose(out, np.concatenate([x @ dense.kernel + dense.bias, np.tanh(x)],
                                                   axis=1))


def test_sublayer_weights_live_in_the_model_buffer():
    model = cdl.Sequential([residual(), layers.Dense(2)], input_shape=(4,), seed=0)
    inner = model.layers[0].layers[0]
    assert np.shares_memory(inner.kernel, model.param_buffer)
    assert np.shares_memory(inner.kernel_grad, model.grad_buffer)
    assert model.count_params() == model.layers[0].count_params() + 4 * 2 + 2


def test_fit_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(np.int64)
    model = cdl.Sequential([layers.Dense(4), residual(), concatenate(), layers.Dense(2)],
                           input_shape=(4,), seed=0)
    model.compile("adam", "cross_entropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=20, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "blocks.cdl"
    model.save(path)
    loaded = cdl.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.get_config() == model.get_config()


def test_config_round_trip():
    for make in (residual, concatenate):
        layer = make()
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_bad_blocks():
    with pytest.raises(ValueError, match="needs them equal"):
        cdl.Sequential([layers.Residual([layers.Dense(3)])], input_shape=(4,))
    with pytest.raises(TypeError, match="Layer instances"):
        layers.Residual([layers.Dense(3), "relu"])
    with pytest.raises(ValueError, match="empty"):
        layers.Residual([])
    with pytest.raises(ValueError, match="at least one branch"):
        layers.Concatenate([])
    with pytest.raises(ValueError, match="cannot be concatenated"):
        cdl.Sequential([layers.Concatenate([[layers.Dense(3)], [layers.Flatten()]])],
                       input_shape=(2, 2))
