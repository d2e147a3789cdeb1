"""The fused training step equals the layer-by-layer path bit for bit."""
import numpy as np
import pytest

import cdl
from cdl import _fused, layers, losses, optimizers
from cdl._kernels import fused as _k

ARCHITECTURES = {
    "relu-dropout": lambda: [layers.Dense(12, activation="relu"), layers.Dropout(0.3),
                             layers.Dense(8, activation="tanh"), layers.Dense(3)],
    "gelu-elu-leaky": lambda: [layers.Dense(10, activation="gelu"),
                               layers.Dense(9, activation="elu"),
                               layers.Dense(7, activation="leaky_relu"), layers.Dense(3)],
    "standalone-activations": lambda: [layers.Flatten(), layers.Dense(10), layers.ReLU(),
                                       layers.Dense(8, use_bias=False), layers.GELU(),
                                       layers.Dropout(0.5), layers.LeakyReLU(0.2),
                                       layers.Dense(6), layers.ELU(0.5), layers.Sigmoid(),
                                       layers.Dense(3, activation="sigmoid"), layers.Tanh()],
    "softmax-layer": lambda: [layers.Dense(8, activation="tanh"), layers.Dense(3),
                              layers.Softmax()],
    "dense-softmax": lambda: [layers.Dense(8), layers.Dense(3, activation="softmax")],
}
LOSSES = {
    "cross_entropy": (losses.CrossEntropy, "labels"),
    "mse": (losses.MSE, "values"),
    "mae": (losses.MAE, "values"),
    "huber": (lambda: losses.Huber(delta=0.3), "values"),
    "bce": (losses.BinaryCrossEntropy, "binary"),
}


def make_data(kind, n=50, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    if kind == "labels":
        y = rng.integers(0, 3, n)
    elif kind == "binary":
        y = rng.uniform(0, 1, (n, 3))
    else:
        y = rng.standard_normal((n, 3))
    return x, y


def train(arch, loss_name, dtype, fused, weighted=False, optimizer=optimizers.Adam):
    model = cdl.Sequential(ARCHITECTURES[arch](), input_shape=(5,), dtype=dtype, seed=3)
    make_loss, kind = LOSSES[loss_name]
    model.compile(optimizer(lr=0.01), make_loss(), metrics=["mae"] if kind == "values" else None)
    model.use_fused_step = fused
    x, y = make_data(kind)
    weights = np.random.default_rng(1).uniform(0, 2, len(x)) if weighted else None
    history = model.fit(x, y, epochs=3, batch_size=16, sample_weight=weights, verbose=0)
    return model, history


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_equals_layer_by_layer(arch, loss_name, dtype):
    fused, h1 = train(arch, loss_name, dtype, True)
    plain, h2 = train(arch, loss_name, dtype, False)
    assert fused._plan is not None and plain._plan is None
    np.testing.assert_array_equal(fused.param_buffer, plain.param_buffer)
    assert h1.history == h2.history


@pytest.mark.parametrize("loss_name", LOSSES)
def test_fused_with_sample_weights_and_sgd(loss_name):
    fused, _ = train("relu-dropout", loss_name, "float64", True, weighted=True,
                     optimizer=lambda lr: optimizers.SGD(lr=lr, momentum=0.9))
    plain, _ = train("relu-dropout", loss_name, "float64", False, weighted=True,
                     optimizer=lambda lr: optimizers.SGD(lr=lr, momentum=0.9))
    np.testing.assert_array_equal(fused.param_buffer, plain.param_buffer)


def test_model_state_after_fused_training_is_usable():
    model, _ = train("relu-dropout", "cross_entropy", "float64", True)
    x, y = make_data("labels")
    out = model.forward(x, training=True)  # the layer path works after fused steps
    model.backward(np.ones_like(out))
    np.testing.assert_array_equal(model.predict(x), model.forward(x))


class Doubler(layers.Layer):
    def forward(self, x, training=False):
        return self._check_input(x) * 2

    def backward(self, grad):
        return grad * 2


@pytest.mark.parametrize("model_layers, loss", [
    ([layers.Dense(3), Doubler()], losses.MSE()),
    ([layers.Dense(3)], losses.CrossEntropy(label_smoothing=0.1)),
    ([layers.ReLU(), layers.Dense(3)], losses.MSE()),
], ids=["user-layer", "label-smoothing", "activation-first"])
def test_unsupported_models_use_the_layer_path(model_layers, loss):
    model = cdl.Sequential(model_layers, input_shape=(4,), seed=0)
    model.compile("sgd", loss)
    assert _fused.build_plan(model, 8) is None
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 8) if isinstance(loss, losses.CrossEntropy) else rng.random((8, 3))
    model.fit(rng.random((8, 4)), y, epochs=1, verbose=0)


def test_probability_targets_fall_back_per_batch():
    model = cdl.Sequential([layers.Dense(3)], input_shape=(4,), dtype="float64", seed=0)
    model.compile(optimizers.SGD(lr=0.1), "cross_entropy")
    twin = cdl.Sequential([layers.Dense(3)], input_shape=(4,), dtype="float64", seed=0)
    twin.compile(optimizers.SGD(lr=0.1), "cross_entropy")
    twin.use_fused_step = False
    rng = np.random.default_rng(0)
    x, probs = rng.random((8, 4)), rng.dirichlet(np.ones(3), 8)
    model.fit(x, probs, epochs=2, verbose=0)
    twin.fit(x, probs, epochs=2, verbose=0)
    np.testing.assert_array_equal(model.param_buffer, twin.param_buffer)


def test_plan_checks_its_inputs():
    model = cdl.Sequential([layers.Dense(3)], input_shape=(4,), dtype="float64", seed=0)
    model.compile("sgd", "cross_entropy")
    plan = _fused.build_plan(model, 8)
    x = np.zeros((4, 4))
    with pytest.raises(ValueError, match="out of range"):
        plan.train_step(x, np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="-1"):
        plan.train_step(x, np.array([0, 1, -1, 0]))
    with pytest.raises(ValueError, match="int64"):
        plan.train_step(x, np.array([0, 1, 2, 0], dtype=np.int32))
    with pytest.raises(ValueError, match="plan serves 1 to 8"):
        plan.train_step(np.zeros((9, 4)), np.zeros(9, dtype=np.int64))
    with pytest.raises(ValueError, match="features"):
        plan.train_step(np.zeros((4, 5)), np.zeros(4, dtype=np.int64))
    with pytest.raises(TypeError, match="float64"):
        plan.train_step(np.zeros((4, 4), dtype=np.float32), np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="sample_weight"):
        plan.train_step(x, np.zeros(4, dtype=np.int64), np.ones(3))


def test_plan_constructor_rejects_bad_steps():
    w = np.zeros((4, 3))
    with pytest.raises(ValueError, match="first step"):
        _k.TrainPlan([(_k.ACTIVATION, 4, 4, 1, 0.0, None, None, None, None)], 8, "float64", 0)
    with pytest.raises(ValueError, match="shape"):
        _k.TrainPlan([(_k.DENSE, 4, 2, 0, 0.0, w, None, w, None)], 8, "float64", 0)
    with pytest.raises(ValueError, match="inputs after"):
        _k.TrainPlan([(_k.DENSE, 4, 3, 0, 0.0, w, None, w, None),
                      (_k.ACTIVATION, 5, 5, 1, 0.0, None, None, None, None)], 8, "float64", 0)
    with pytest.raises(ValueError, match="loss"):
        _k.TrainPlan([(_k.DENSE, 4, 3, 0, 0.0, w, None, w, None)], 8, "float64", 7)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_predict_equals_layer_by_layer(arch, dtype):
    model = cdl.Sequential(ARCHITECTURES[arch](), input_shape=(5,), dtype=dtype, seed=3)
    x = np.random.default_rng(2).standard_normal((37, 5))
    fused = model.predict(x, batch_size=8)
    assert model._predict_plan is not None
    one = model.predict(x[:1])  # one sample takes the matrix-vector route
    model.use_fused_step = False
    np.testing.assert_array_equal(fused, model.predict(x, batch_size=8))
    np.testing.assert_array_equal(one, model.predict(x[:1]))


def test_predict_plan_checks_its_inputs():
    model = cdl.Sequential([layers.Dense(3)], input_shape=(4,), dtype="float64", seed=0)
    plan = _fused.build_plan(model, 4, training=False)._plan
    with pytest.raises(ValueError, match="up to 4"):
        plan.predict(np.zeros((5, 4)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="out"):
        plan.predict(np.zeros((2, 4)), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="float64"):
        plan.predict(np.zeros((2, 4), np.float32), np.zeros((2, 3), np.float32))
