"""Finite-difference gradient checks (float64) of every layer, loss and a model."""
import numpy as np
import pytest

import cdl
from cdl import layers, losses
from helpers import GRADCHECK_TOL, random_array


def _away_from_kinks(x, kink=0.0, margin=0.05):
    """Move entries within ``margin`` of a non-differentiable point off it."""
    x = x.copy()
    close = np.abs(x - kink) < margin
    x[close] = kink + np.where(x[close] >= kink, margin, -margin)
    return x


ACTIVATION_LAYERS = [
    pytest.param(lambda: layers.ReLU(), id="ReLU"),
    pytest.param(lambda: layers.LeakyReLU(0.1), id="LeakyReLU"),
    pytest.param(lambda: layers.LeakyReLU(-0.3), id="LeakyReLU-negative-slope"),
    pytest.param(lambda: layers.Sigmoid(), id="Sigmoid"),
    pytest.param(lambda: layers.Tanh(), id="Tanh"),
    pytest.param(lambda: layers.Softmax(), id="Softmax"),
    pytest.param(lambda: layers.GELU(), id="GELU"),
    pytest.param(lambda: layers.ELU(0.7), id="ELU"),
    pytest.param(lambda: layers.Activation("linear"), id="Activation-linear"),
]


@pytest.mark.parametrize("make_layer", ACTIVATION_LAYERS)
@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4)], ids=["2d", "3d"])
def test_activation_layers(make_layer, shape):
    x = _away_from_kinks(random_array(shape, seed=1))
    errors = cdl.gradcheck(make_layer(), x)
    assert max(errors.values()) < GRADCHECK_TOL


ACTIVATIONS = [None, "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "elu", "softmax"]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
def test_dense(activation, use_bias):
    layer = layers.Dense(4, activation=activation, use_bias=use_bias, dtype="float64")
    errors = cdl.gradcheck(layer, random_array((6, 5), seed=2))
    expected = {"input", f"{layer.name}.kernel"} | ({f"{layer.name}.bias"} if use_bias else set())
    assert set(errors) == expected
    assert max(errors.values()) < GRADCHECK_TOL


def test_dense_on_3d_input():
    layer = layers.Dense(3, activation="tanh", dtype="float64")
    errors = cdl.gradcheck(layer, random_array((2, 4, 5), seed=3))
    assert max(errors.values()) < GRADCHECK_TOL


def test_dropout_in_training_mode_uses_one_mask():
    model = cdl.Sequential([layers.Dense(6), layers.Dropout(0.5), layers.Dense(2)],
                           input_shape=(4,), dtype="float64", seed=0)
    errors = cdl.gradcheck(model, random_array((5, 4), seed=4), training=True)
    assert max(errors.values()) < GRADCHECK_TOL


def test_flatten_and_dropout_at_inference():
    for layer in (layers.Flatten(), layers.Dropout(0.3)):
        errors = cdl.gradcheck(layer, random_array((3, 2, 4), seed=5))
        assert max(errors.values()) < GRADCHECK_TOL


REGRESSION_LOSSES = [
    pytest.param(losses.MSE(), id="MSE"),
    pytest.param(losses.MAE(), id="MAE"),
    pytest.param(losses.Huber(), id="Huber"),
    pytest.param(losses.Huber(delta=0.3), id="Huber-0.3"),
]


@pytest.mark.parametrize("loss", REGRESSION_LOSSES)
def test_regression_losses(loss):
    target = random_array((6, 3), seed=6)
    # Keep pred - target away from 0 (MAE's kink) and from +-delta (Huber's seam).
    diff = random_array((6, 3), seed=7, low=0.1, high=2.0) * np.where(
        random_array((6, 3), seed=8) > 0, 1, -1)
    delta = getattr(loss, "delta", None)
    if delta is not None:
        diff[np.abs(np.abs(diff) - delta) < 0.05] += 0.1
    errors = cdl.gradcheck(loss, target + diff, target)
    assert errors["input"] < GRADCHECK_TOL


def test_cross_entropy_with_labels():
    errors = cdl.gradcheck(losses.CrossEntropy(), random_array((7, 4), seed=9),
                           np.array([0, 3, 1, 2, 2, 0, 3]))
    assert errors["input"] < GRADCHECK_TOL


def test_cross_entropy_with_probabilities_and_smoothing():
    probs = random_array((5, 3), seed=10, low=0.0, high=1.0)
    probs /= probs.sum(axis=1, keepdims=True)
    for loss in (losses.CrossEntropy(), losses.CrossEntropy(label_smoothing=0.2)):
        errors = cdl.gradcheck(loss, random_array((5, 3), seed=11), probs)
        assert errors["input"] < GRADCHECK_TOL
    errors = cdl.gradcheck(losses.CrossEntropy(label_smoothing=0.1),
                           random_array((4, 3), seed=12), np.array([0, 2, 1, 1]))
    assert errors["input"] < GRADCHECK_TOL


def test_binary_cross_entropy():
    target = random_array((6, 2), seed=13, low=0.0, high=1.0)
    errors = cdl.gradcheck(losses.BinaryCrossEntropy(), 3 * random_array((6, 2), seed=14), target)
    assert errors["input"] < GRADCHECK_TOL


@pytest.mark.parametrize("loss_name, target", [
    ("mse", random_array((8, 3), seed=15)),
    ("cross_entropy", np.array([0, 1, 2, 0, 1, 2, 2, 1])),
], ids=["mse", "cross_entropy"])
def test_whole_model_with_a_loss(loss_name, target):
    model = cdl.Sequential([
        layers.Dense(5, activation="tanh"),
        layers.Dense(4, activation="gelu"),
        layers.ELU(),
        layers.Dense(3),
    ], input_shape=(4,), dtype="float64", seed=3)
    errors = cdl.gradcheck(model, random_array((8, 4), seed=16), target, loss=loss_name)
    assert len(errors) == 1 + 6
    assert max(errors.values()) < GRADCHECK_TOL


class Square(layers.Layer):
    """y = x * x * w: a user layer written in NumPy."""

    def build(self, input_shape):
        self.add_weight("w", input_shape, "ones")

    def forward(self, x, training=False):
        self._x = self._check_input(x)
        return self._x * self._x * self.w

    def backward(self, grad):
        self.w_grad[...] = (grad * self._x * self._x).sum(axis=0)
        return grad * 2 * self._x * self.w


class WrongSquare(Square):
    def backward(self, grad):
        super().backward(grad)
        return grad * self._x * self.w  # missing the factor 2


def test_user_layer_passes_and_a_wrong_one_is_caught():
    errors = cdl.gradcheck(Square(), random_array((4, 3), seed=17))
    assert max(errors.values()) < GRADCHECK_TOL
    with pytest.raises(cdl.GradcheckError, match="input"):
        cdl.gradcheck(WrongSquare(), random_array((4, 3), seed=17))
    report = cdl.gradcheck(WrongSquare(), random_array((4, 3), seed=17), raise_on_error=False)
    assert report["input"] > 0.1 and all(
        v < GRADCHECK_TOL for k, v in report.items() if k != "input")


def test_gradcheck_rejects_float32_and_bad_objects():
    model = cdl.Sequential([layers.Dense(2)], input_shape=(3,))
    with pytest.raises(TypeError, match="float64"):
        cdl.gradcheck(model, np.ones((2, 3)))
    with pytest.raises(TypeError, match="Layer"):
        cdl.gradcheck(lambda x: x, np.ones((2, 3)))
    with pytest.raises(ValueError, match="target"):
        cdl.gradcheck(losses.MSE(), np.ones((2, 3)))


WEIGHTED_LOSSES = [
    pytest.param(losses.MSE(), random_array((6, 3), seed=20), id="MSE"),
    pytest.param(losses.Huber(delta=0.5), random_array((6, 3), seed=20), id="Huber"),
    pytest.param(losses.CrossEntropy(), np.array([0, 2, 1, 1, 0, 2]), id="CE-labels"),
    pytest.param(losses.CrossEntropy(label_smoothing=0.1), np.array([0, 2, 1, 1, 0, 2]),
                 id="CE-smoothing"),
    pytest.param(losses.BinaryCrossEntropy(), random_array((6, 3), seed=20, low=0.0, high=1.0),
                 id="BCE"),
]


@pytest.mark.parametrize("loss, target", WEIGHTED_LOSSES)
def test_losses_with_sample_weights(loss, target):
    weights = random_array((6,), seed=21, low=0.0, high=3.0)
    pred = random_array((6, 3), seed=22) * 2
    errors = cdl.gradcheck(loss, pred, target, sample_weight=weights)
    assert errors["input"] < GRADCHECK_TOL
    # Weighting is per sample: the weighted loss is the mean of weighted per-sample losses.
    per_sample = [loss.forward(pred[i:i + 1], target[i:i + 1]) for i in range(6)]
    assert np.isclose(loss.forward(pred, target, weights), np.mean(weights * per_sample),
                      rtol=1e-12)
    assert np.isclose(loss.forward(pred, target, np.ones(6)), loss.forward(pred, target),
                      rtol=1e-14)


def test_model_gradcheck_with_weighted_loss():
    model = cdl.Sequential([layers.Dense(4, activation="tanh"), layers.Dense(3)],
                           input_shape=(2,), dtype="float64", seed=1)
    errors = cdl.gradcheck(model, random_array((5, 2), seed=23), np.array([0, 1, 2, 1, 0]),
                           loss="cross_entropy", sample_weight=[1.0, 0.0, 2.0, 0.5, 1.5])
    assert max(errors.values()) < GRADCHECK_TOL
