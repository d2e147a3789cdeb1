"""Weight and activity regularizers."""
import numpy as np
import pytest

import cdl
from cdl import layers, losses, optimizers, regularizers
from helpers import random_array


@pytest.mark.parametrize("reg, penalty, grad", [
    (regularizers.L1(0.1), lambda w: 0.1 * np.abs(w).sum(), lambda w: 0.1 * np.sign(w)),
    (regularizers.L2(0.2), lambda w: 0.2 * (w ** 2).sum(), lambda w: 0.4 * w),
    (regularizers.L1L2(0.1, 0.2), lambda w: 0.1 * np.abs(w).sum() + 0.2 * (w ** 2).sum(),
     lambda w: 0.1 * np.sign(w) + 0.4 * w),
], ids=["L1", "L2", "L1L2"])
def test_penalty_and_gradient(reg, penalty, grad):
    w = random_array((4, 3), seed=0)
    assert reg.penalty(w) == pytest.approx(penalty(w))
    g = np.ones_like(w)
    reg.add_gradient(w, g)
    np.testing.assert_allclose(g, 1 + grad(w))


def _model(**dense_kwargs):
    model = cdl.Sequential([layers.Dense(5, activation="tanh", **dense_kwargs),
                            layers.Dense(2)], input_shape=(3,), dtype="float64", seed=0)
    model.compile(optimizers.SGD(lr=0.1), "mse")
    return model


def test_train_step_adds_penalty_and_its_gradient():
    x, y = random_array((8, 3), seed=1), random_array((8, 2), seed=2)
    reg = _model(kernel_regularizer=regularizers.L2(0.05), bias_regularizer="l1")
    plain = _model()
    kernel = reg.layers[0].kernel.copy()
    bias = reg.layers[0].bias.copy()
    loss = reg.train_step(x, y)
    plain_loss = plain.train_step(x, y)
    expected_penalty = 0.05 * (kernel ** 2).sum() + 0.01 * np.abs(bias).sum()
    assert loss == pytest.approx(plain_loss + expected_penalty, rel=1e-12)
    # The regularized step moved the kernel further by lr * 2 * 0.05 * kernel.
    diff = (reg.layers[0].kernel - plain.layers[0].kernel)
    np.testing.assert_allclose(diff, -0.1 * 2 * 0.05 * kernel, atol=1e-12)


def test_whole_objective_gradcheck_with_activity_regularizer():
    model = _model(kernel_regularizer=regularizers.L2(0.1),
                   activity_regularizer=regularizers.L2(0.3))
    x, y = random_array((6, 3), seed=3), random_array((6, 2), seed=4)
    mse = losses.MSE()

    def objective():
        return mse.forward(model.forward(x, training=True), y) + model.regularization_loss()

    objective()
    model.backward(mse.backward())
    model.add_regularization_gradients()
    analytic = model.grad_buffer.copy()
    numeric = np.empty_like(analytic)
    for i in range(model.param_buffer.size):
        saved = model.param_buffer[i]
        model.param_buffer[i] = saved + 1e-6
        up = objective()
        model.param_buffer[i] = saved - 1e-6
        down = objective()
        model.param_buffer[i] = saved
        numeric[i] = (up - down) / 2e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_fit_and_evaluate_report_the_penalty(tmp_path):
    x, y = random_array((32, 3), seed=5), random_array((32, 2), seed=6)
    model = _model(kernel_regularizer="l2")
    result = model.evaluate(x, y)
    data_loss = losses.MSE().forward(model.predict(x), y)
    assert result["loss"] == pytest.approx(data_loss + model.regularization_loss())
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "reg.cdl"
    model.save(path)
    loaded = cdl.load_model(path)
    assert loaded.layers[0].kernel_regularizer.get_config() == {"l2": 0.01}
    assert loaded.regularization_loss() == pytest.approx(model.regularization_loss())


def test_activity_regularizer_uses_the_layer_path():
    from cdl import _fused
    model = _model(activity_regularizer="l1")
    assert _fused.build_plan(model, 8) is None
    assert _fused.build_plan(_model(kernel_regularizer="l2"), 8) is not None


def test_bad_regularizers():
    with pytest.raises(ValueError, match="unknown regularizer"):
        layers.Dense(3, kernel_regularizer="l3")
    with pytest.raises(ValueError, match="l2"):
        regularizers.L2(-1.0)


def test_conv_regularizers_round_trip(tmp_path):
    model = cdl.Sequential([layers.Conv2D(2, 3, kernel_regularizer="l2", bias_regularizer="l1"),
                            layers.Flatten(), layers.Dense(2)], input_shape=(4, 4, 1),
                           dtype="float64", seed=0)
    conv = model.layers[0]
    expected = 0.01 * (conv.kernel ** 2).sum() + 0.01 * np.abs(conv.bias).sum()
    assert model.regularization_loss() == pytest.approx(expected)
    model.compile("sgd", "mse")
    model.fit(random_array((8, 4, 4, 1), seed=7), random_array((8, 2), seed=8), verbose=0)
    model.save(tmp_path / "conv.cdl")
    loaded = cdl.load_model(tmp_path / "conv.cdl")
    assert loaded.layers[0].kernel_regularizer.get_config() == {"l2": 0.01}
