"""cdl.averaging: EMA and SWA callbacks against averages computed by hand, and
the BatchNorm statistics update."""
import math

import numpy as np
import pytest

import cdl
from cdl import averaging, callbacks, layers, optimizers


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
    return x, y


def regressor(extra=(), seed=0, lr=0.05):
    model = cdl.Sequential([layers.Dense(8, activation="tanh"), *extra, layers.Dense(1)],
                           input_shape=(3,), seed=seed)
    model.compile(optimizers.SGD(lr=lr), "mse")
    return model


class Snapshots(callbacks.Callback):
    """The flat weights after every batch and after every epoch."""

    def __init__(self):
        super().__init__()
        self.start, self.batches, self.epochs = None, [], []

    def on_train_begin(self, logs=None):
        self.start = self.model.param_buffer.astype(np.float64)

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(self.model.param_buffer.astype(np.float64))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.model.param_buffer.astype(np.float64))


# --- EMA --------------------------------------------------------------------------------------


@pytest.mark.parametrize("warmup, update_every, start_step", [
    (True, 1, 0), (False, 1, 0), (True, 3, 0), (False, 2, 5)])
def test_ema_matches_the_average_by_hand(warmup, update_every, start_step):
    x, y = data()
    model = regressor()
    snapshots = Snapshots()
    ema = averaging.ExponentialMovingAverage(decay=0.9, warmup=warmup, update_every=update_every,
                                             start_step=start_step, apply_on_train_end=False)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[snapshots, ema])
    expected, t = snapshots.start.copy(), 0
    for step, weights in enumerate(snapshots.batches, start=1):
        if step <= start_step:
            if step == start_step:
                expected = weights.copy()
            continue
        if (step - start_step) % update_every:
            continue
        decay = min(0.9, (1 + t) / (10 + t)) if warmup else 0.9
        expected = decay * expected + (1 - decay) * weights
        t += 1
    assert ema.n_averaged == t
    np.testing.assert_allclose(ema._average, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(model.param_buffer, snapshots.batches[-1].astype(np.float32))


def test_ema_is_applied_at_the_end_and_can_be_undone():
    x, y = data()
    model = regressor()
    snapshots = Snapshots()
    ema = averaging.ExponentialMovingAverage(decay=0.95)
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[snapshots, ema])
    np.testing.assert_array_equal(model.param_buffer, ema.average)
    assert [w.shape for w in ema.average_weights()] == [p.shape for p in model.params]
    ema.restore()
    np.testing.assert_array_equal(model.param_buffer, snapshots.batches[-1].astype(np.float32))


def test_ema_smooths_noisy_training():
    # With a large learning rate SGD jitters around the optimum; its average does not.
    x, y = data(256)
    model = cdl.Sequential([layers.Dense(1)], input_shape=(3,), seed=0)
    model.compile(optimizers.SGD(lr=0.3), "mse")
    ema = averaging.ExponentialMovingAverage(decay=0.98)
    model.fit(x, y, epochs=30, batch_size=8, verbose=0, callbacks=[ema])
    averaged = model.evaluate(x, y)["loss"]
    ema.restore()
    raw = model.evaluate(x, y)["loss"]
    assert averaged < raw


def test_swapped_puts_the_average_in_for_the_block_only():
    x, y = data()
    model = regressor()
    ema = averaging.ExponentialMovingAverage(decay=0.9, apply_on_train_end=False)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[ema])
    trained = model.param_buffer.copy()
    with ema.swapped():
        np.testing.assert_array_equal(model.param_buffer, ema.average)
    np.testing.assert_array_equal(model.param_buffer, trained)


def test_evaluation_hooks_swap_the_average_in_and_out():
    x, y = data()
    model = regressor()
    ema = averaging.ExponentialMovingAverage(decay=0.9, apply_on_train_end=False)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[ema])
    trained = model.param_buffer.copy()
    ema.on_test_begin({})
    np.testing.assert_array_equal(model.param_buffer, ema.average)
    ema.on_test_end({})
    np.testing.assert_array_equal(model.param_buffer, trained)
    quiet = averaging.ExponentialMovingAverage(decay=0.9, evaluate_with_average=False,
                                               apply_on_train_end=False)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[quiet])
    trained = model.param_buffer.copy()
    quiet.on_test_begin({})
    np.testing.assert_array_equal(model.param_buffer, trained)
    quiet.on_test_end({})


def test_apply_before_training_raises():
    ema = averaging.ExponentialMovingAverage()
    with pytest.raises(RuntimeError, match="no average"):
        ema.apply()
    assert ema.average is None


@pytest.mark.parametrize("kwargs, match", [
    ({"decay": 1.0}, "decay"), ({"update_every": 0}, "update_every"),
    ({"start_step": -1}, "start_step"), ({"bn_batch_size": 1}, "bn_batch_size")])
def test_ema_checks_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        averaging.ExponentialMovingAverage(**kwargs)


# --- SWA -----------------------------------------------------------------------------------


@pytest.mark.parametrize("start_epoch, frequency", [(0, 1), (3, 1), (2, 2)])
def test_swa_is_the_mean_of_the_epoch_snapshots(start_epoch, frequency):
    x, y = data()
    model = regressor()
    snapshots = Snapshots()
    swa = averaging.StochasticWeightAveraging(start_epoch, frequency=frequency)
    model.fit(x, y, epochs=7, batch_size=16, verbose=0, callbacks=[snapshots, swa])
    chosen = snapshots.epochs[start_epoch::frequency]
    assert swa.n_averaged == len(chosen)
    np.testing.assert_allclose(model.param_buffer, np.mean(chosen, axis=0).astype(np.float32),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("anneal_epochs, strategy", [(0, "cos"), (3, "cos"), (3, "linear")])
def test_swa_learning_rate_schedule(anneal_epochs, strategy):
    x, y = data()
    model = regressor(lr=0.1)
    swa = averaging.StochasticWeightAveraging(2, swa_lr=0.01, anneal_epochs=anneal_epochs,
                                              anneal_strategy=strategy)
    history = model.fit(x, y, epochs=7, batch_size=16, verbose=0, callbacks=[swa])
    expected = []
    for epoch in range(7):
        if epoch < 2:
            expected.append(0.1)
            continue
        progress = 1.0 if anneal_epochs == 0 else min(1.0, (epoch - 1) / anneal_epochs)
        if strategy == "cos":
            progress = (1 - math.cos(math.pi * progress)) / 2
        expected.append((1 - progress) * 0.1 + progress * 0.01)
    np.testing.assert_allclose(history.history["lr"], expected, rtol=1e-12)


def test_swa_before_start_epoch_leaves_the_model_alone():
    x, y = data()
    model = regressor()
    snapshots = Snapshots()
    swa = averaging.StochasticWeightAveraging(start_epoch=10)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[snapshots, swa])
    assert swa.n_averaged == 0
    np.testing.assert_array_equal(model.param_buffer, snapshots.epochs[-1].astype(np.float32))


# --- BatchNorm statistics -----------------------------------------------------------------


def test_update_batch_norm_averages_the_batch_statistics():
    model = cdl.Sequential([layers.Dense(4), layers.Dropout(0.5), layers.BatchNorm()],
                           input_shape=(3,), dtype="float64", seed=0)
    x, _ = data(40)
    assert averaging.update_batch_norm(model, x, batch_size=16) == 1
    # Dropout stays off, so the BatchNorm sees the Dense outputs themselves.
    hidden = model.layers[0].forward(x.astype(np.float64))
    batches = np.split(hidden, [20])  # 40 samples in batches of at least 16: two of 20
    norm = model.layers[2]
    np.testing.assert_allclose(norm.running_mean, np.mean([b.mean(axis=0) for b in batches],
                                                          axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm.running_var,
                               np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0),
                               rtol=1e-12)
    assert norm.momentum == 0.1  # restored


def test_update_batch_norm_reaches_blocks_and_ignores_models_without_it():
    model = cdl.Sequential([layers.Residual([layers.Dense(3), layers.BatchNorm()])],
                           input_shape=(3,), seed=0)
    x, _ = data(32)
    assert averaging.update_batch_norm(model, x) == 1
    np.testing.assert_allclose(model.layers[0].layers[1].running_mean,
                               model.layers[0].layers[0].forward(x).mean(axis=0), rtol=1e-5,
                               atol=1e-6)
    assert averaging.update_batch_norm(regressor(), x) == 0
    with pytest.raises(ValueError, match="2 samples"):
        averaging.update_batch_norm(model, x[:1])


@pytest.mark.parametrize("make", [
    lambda x: averaging.StochasticWeightAveraging(1, bn_data=x),
    lambda x: averaging.ExponentialMovingAverage(0.9, bn_data=x, bn_batch_size=32)])
def test_bn_data_recomputes_the_statistics_for_the_average(make):
    x, y = data()
    model = regressor(extra=[layers.BatchNorm()])
    callback = make(x)
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[callback])
    norm = model.layers[1]
    after = norm.running_mean.copy(), norm.running_var.copy()
    averaging.update_batch_norm(model, x, callback.bn_batch_size)
    np.testing.assert_allclose(norm.running_mean, after[0], rtol=1e-6)
    np.testing.assert_allclose(norm.running_var, after[1], rtol=1e-6)
    # restore() brings back the trained weights with their own statistics.
    callback.restore()
    assert not np.allclose(norm.running_mean, after[0])
