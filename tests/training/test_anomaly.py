"""Anomaly detection: the first layer, pass and array that produced NaN/infinity."""
import numpy as np
import pytest

import cdl
from cdl import callbacks, layers, optimizers


@pytest.fixture(autouse=True)
def _detection_off():
    cdl.set_detect_anomaly(False)
    yield
    cdl.set_detect_anomaly(False)


def _model(dtype="float64", **compile_options):
    model = cdl.Sequential([layers.Dense(6, activation="relu", name="hidden"),
                            layers.Dense(4, activation="tanh", name="middle"),
                            layers.Dense(2, name="head")],
                           input_shape=(3,), dtype=dtype, seed=0)
    model.compile(optimizers.SGD(lr=0.1), "mse", **compile_options)
    return model


def _batch(dtype="float64", n=5):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 3)).astype(dtype), rng.standard_normal((n, 2)).astype(dtype)


class _BadInputGradient(layers.Layer):
    """sqrt(|x|): finite forward, infinite input gradient where x = 0."""

    def forward(self, x, training=False):
        self._x = self._check_input(x)
        return np.sqrt(np.abs(self._x))

    def backward(self, grad):
        with np.errstate(divide="ignore", invalid="ignore"):
            return grad * 0.5 / np.sqrt(np.abs(self._x)) * np.sign(self._x)


class _BadWeightGradient(layers.Layer):
    """x * w, whose backward pass (deliberately) writes NaN into w's gradient."""

    def build(self, input_shape):
        self.add_weight("w", input_shape, "ones")

    def forward(self, x, training=False):
        self._x = self._check_input(x)
        return self._x * self.w

    def backward(self, grad):
        self.w_grad[...] = (grad * self._x).sum(axis=0)
        self.w_grad[1] = np.nan
        return grad * self.w


def test_off_by_default_and_nan_goes_through():
    model = _model()
    model.params[2][0, 0] = np.nan
    assert not cdl.is_anomaly_enabled()
    assert np.isnan(model.train_step(*_batch()))


def test_forward_names_the_layer_pass_array_and_count():
    model = _model()
    model.params[2][0, 0] = np.nan   # middle's kernel: its first output column turns NaN
    with cdl.detect_anomaly():
        with pytest.raises(cdl.NonFiniteError) as info:
            model.train_step(*_batch(n=5))
    error = info.value
    assert isinstance(error, FloatingPointError) and isinstance(error, ArithmeticError)
    assert (error.where, error.name, error.class_name, error.index) == \
        ("layer", "middle", "Dense", 1)
    assert (error.pass_name, error.array, error.count, error.size) == \
        ("forward", "output", 5, 20)
    assert str(error) == ("layer 'middle' (Dense, index 1) produced 5 non-finite values "
                          "(NaN or infinity) out of 20 in its output during the forward pass")


def test_backward_input_gradient():
    model = cdl.Sequential([layers.Dense(3, name="first"), _BadInputGradient(name="root"),
                            layers.Dense(2, name="last")], input_shape=(3,), seed=0)
    model.compile("sgd", "mse")
    x, y = _batch("float32")
    x[0] = 0.0  # the first Dense has zero bias: its output row 0 is 0
    with cdl.detect_anomaly(), pytest.raises(cdl.NonFiniteError) as info:
        model.train_step(x, y)
    error = info.value
    assert (error.name, error.class_name, error.index, error.pass_name, error.array) == \
        ("root", "_BadInputGradient", 1, "backward", "input gradient")
    assert error.count == 3


def test_backward_weight_gradient_names_the_weight():
    model = cdl.Sequential([layers.Dense(3, name="first"), _BadWeightGradient(name="scale"),
                            layers.Dense(2, name="last")], input_shape=(3,), seed=0)
    model.compile("sgd", "mse", check_numerics=True)
    with pytest.raises(cdl.NonFiniteError, match="index 1.*1 non-finite value .* in its "
                                                  "gradient of weight 'w' during the "
                                                  "backward pass"):
        model.train_step(*_batch("float32"))


def test_the_loss_is_named_when_it_overflows():
    model = _model()
    model.params[4][...] = 1e200    # head's bias: finite outputs whose squares overflow
    with cdl.detect_anomaly(), pytest.raises(cdl.NonFiniteError) as info:
        model.train_step(*_batch())
    assert (info.value.where, info.value.class_name, info.value.pass_name) == \
        ("loss", "MSE", "forward")


def test_the_optimizer_step_is_named_when_it_overflows():
    model = _model("float32")
    model.optimizer.lr = 3e38   # finite, but not times a gradient above 1.2
    x, y = _batch("float32")
    with cdl.detect_anomaly(), pytest.raises(cdl.NonFiniteError) as info:
        model.train_step(x * 100, y)
    error = info.value
    assert (error.where, error.class_name, error.pass_name) == ("optimizer", "SGD", "step")
    assert "of layer 'hidden' (Dense, index 0)" in error.array


def test_check_numerics_is_per_model():
    checked, unchecked = _model(check_numerics=True), _model()
    for model in (checked, unchecked):
        model.params[0][0, 0] = np.nan
    with pytest.raises(cdl.NonFiniteError, match="'hidden'"):
        checked.fit(*_batch(), epochs=1, verbose=0)
    assert not np.isfinite(unchecked.train_step(*_batch()))
    with pytest.raises(TypeError, match="check_numerics"):
        unchecked.compile("sgd", "mse", check_numerics="yes")


def test_checking_trains_layer_by_layer_with_the_same_numbers():
    plain, checked = _model(), _model(check_numerics=True)
    x, y = _batch(n=40)
    h1 = plain.fit(x, y, epochs=2, batch_size=8, verbose=0)
    h2 = checked.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert plain._plan is not None and checked._fused_plan(8) is None
    assert h1.history == h2.history
    np.testing.assert_array_equal(plain.param_buffer, checked.param_buffer)
    np.testing.assert_array_equal(plain.predict(x), checked.predict(x))
    assert checked._predict_plan is None


def test_predict_and_explicit_passes_are_checked_too():
    model = _model()
    model.params[4][1] = np.nan  # head's bias
    x, _ = _batch()
    assert np.isnan(model.predict(x)).any()
    with cdl.detect_anomaly():
        with pytest.raises(cdl.NonFiniteError, match="'head' .* forward pass"):
            model.predict(x)
        with pytest.raises(cdl.NonFiniteError, match="'head'"):
            model.forward(x)


def test_switches_restore_the_previous_setting():
    assert cdl.set_detect_anomaly(True) is False
    assert cdl.is_anomaly_enabled()
    with cdl.detect_anomaly(False):
        assert not cdl.is_anomaly_enabled()
        with cdl.detect_anomaly():
            assert cdl.is_anomaly_enabled()
        assert not cdl.is_anomaly_enabled()
    assert cdl.set_detect_anomaly(False) is True

    @cdl.detect_anomaly()
    def checked():
        return cdl.is_anomaly_enabled()

    assert checked() and not cdl.is_anomaly_enabled()
    with pytest.raises(TypeError):
        cdl.detect_anomaly("on")


# --- TerminateOnNaN: no optimizer step after the batch whose loss is not finite ----------

class _PoisonAt(callbacks.Callback):
    """Puts NaN into a weight before one batch, so that batch's loss is NaN."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            self.model.params[0][0, 0] = np.nan


@pytest.mark.parametrize("fused", [True, False])
def test_terminate_on_nan_stops_within_the_bad_batch(fused, capsys):
    model = _model()
    model.use_fused_step = fused
    steps = []
    step = model.optimizer.step
    model.optimizer.step = lambda params, grads: (steps.append(1), step(params, grads))
    x, y = _batch(n=80)
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0,
                        callbacks=[_PoisonAt(1, 3), callbacks.TerminateOnNaN()])
    assert len(steps) == 10 + 4   # epoch 0, then batches 0-3 of epoch 1
    assert len(history.history["loss"]) == 2
    assert "Batch 3: invalid loss nan" in capsys.readouterr().out
