"""Each callback's behaviour during fit."""
import csv
import math

import numpy as np
import pytest

import cdl
from cdl import callbacks, layers, optimizers, schedules


def data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return x, y


def model(seed=0, lr=0.05):
    m = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
                       input_shape=(3,), seed=seed)
    m.compile(optimizers.SGD(lr=lr), "cross_entropy", metrics=["accuracy"])
    return m


class Scripted(callbacks.Callback):
    """Replace the logs' ``key`` with scripted values, one per epoch."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


class RecordWeights(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.param_buffer.copy())


def test_hooks_are_called_in_order():
    calls = []
    cb = callbacks.LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_begin=lambda e, logs: calls.append(f"epoch_begin {e}"),
        on_train_batch_end=lambda b, logs: calls.append(f"batch_end {b} {'loss' in logs}"),
        on_epoch_end=lambda e, logs: calls.append(f"epoch_end {e} {sorted(logs)}"),
        on_train_end=lambda logs: calls.append("train_end"))
    x, y = data(n=40)
    model().fit(x, y, epochs=2, batch_size=20, callbacks=[cb], verbose=0)
    assert calls == [
        "train_begin", "epoch_begin 0", "batch_end 0 True", "batch_end 1 True",
        "epoch_end 0 ['accuracy', 'loss', 'lr']", "epoch_begin 1", "batch_end 0 True",
        "batch_end 1 True", "epoch_end 1 ['accuracy', 'loss', 'lr']", "train_end"]


def test_early_stopping_restores_the_best_weights():
    x, y = data()
    recorder = RecordWeights()
    scores = [0.9, 0.5, 0.7, 0.6, 0.8, 0.4, 0.3]
    stop = callbacks.EarlyStopping(monitor="score", patience=3, restore_best_weights=True)
    m = model()
    # Order matters: the scripted value must be in the logs before EarlyStopping reads it.
    m.fit(x, y, epochs=7, callbacks=[Scripted("score", scores), recorder, stop], verbose=0)
    assert stop.best_epoch == 1 and stop.stopped_epoch == 4
    assert len(recorder.weights) == 5
    np.testing.assert_array_equal(m.param_buffer, recorder.weights[1])


def test_early_stopping_restores_when_the_epochs_run_out():
    x, y = data()
    recorder = RecordWeights()
    stop = callbacks.EarlyStopping(monitor="score", patience=10, restore_best_weights=True)
    m = model()
    m.fit(x, y, epochs=4, callbacks=[Scripted("score", [0.5, 0.2, 0.4, 0.3]), recorder, stop],
          verbose=0)
    assert stop.stopped_epoch is None
    np.testing.assert_array_equal(m.param_buffer, recorder.weights[1])


def test_early_stopping_min_delta_baseline_and_max_mode():
    x, y = data()
    stop = callbacks.EarlyStopping(monitor="score", min_delta=0.1, patience=1, mode="max")
    model().fit(x, y, epochs=5, callbacks=[Scripted("score", [0.5, 0.55, 0.58, 0.9, 1.0]),
                                           stop], verbose=0)
    assert stop.stopped_epoch == 1  # +0.05 is not an improvement of at least 0.1
    stop = callbacks.EarlyStopping(monitor="score", patience=2, baseline=0.1)
    model().fit(x, y, epochs=6, callbacks=[Scripted("score", [0.5, 0.4, 0.3, 0.2, 0.1, 0.05]),
                                           stop], verbose=0)
    assert stop.stopped_epoch == 1  # two epochs without beating the baseline


def test_early_stopping_on_val_loss_needs_validation_data():
    x, y = data()
    with pytest.raises(KeyError, match="val_loss"):
        model().fit(x, y, epochs=2, callbacks=[callbacks.EarlyStopping()], verbose=0)
    h = model().fit(x, y, epochs=3, validation_split=0.25,
                    callbacks=[callbacks.EarlyStopping(patience=1)], verbose=0)
    assert "val_loss" in h.history


def test_model_checkpoint_keeps_the_best(tmp_path):
    x, y = data()
    path = tmp_path / "best.cdl"
    recorder = RecordWeights()
    ckpt = callbacks.ModelCheckpoint(path, monitor="score", save_best_only=True,
                                     save_weights_only=True)
    m = model()
    m.fit(x, y, epochs=4, callbacks=[Scripted("score", [0.5, 0.2, 0.3, 0.4]), recorder, ckpt],
          verbose=0)
    assert ckpt.best == 0.2 and ckpt.last_saved == str(path)
    m.load_weights(path)
    np.testing.assert_array_equal(m.param_buffer, recorder.weights[1])


def test_model_checkpoint_formats_the_path(tmp_path):
    x, y = data()
    ckpt = callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{loss:.2f}.cdl"))
    model().fit(x, y, epochs=2, callbacks=[ckpt], verbose=0)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0].startswith("m-01-") and names[1].startswith("m-02-")


def test_checkpoints_run_after_the_other_callbacks(tmp_path):
    x, y = data()
    ckpt = callbacks.ModelCheckpoint(tmp_path / "best.cdl", monitor="score",
                                     save_best_only=True, save_weights_only=True)
    m = model(lr=0.1)
    sched = schedules.StepLR(m.optimizer, step_size=1, gamma=0.5)
    # Listed first, the checkpoint still sees the score and the stepped schedule.
    m.fit(x, y, epochs=3, verbose=0, callbacks=[
        ckpt, Scripted("score", [0.5, 0.2, 0.3]), callbacks.LearningRateScheduler(sched)])
    assert ckpt.best == 0.2


def test_a_rate_function_runs_once_per_epoch_in_every_fit():
    x, y = data()
    m = model(lr=0.1)
    cb = callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    m.fit(x, y, epochs=1, callbacks=[cb], verbose=0)
    h = m.fit(x, y, epochs=1, callbacks=[cb], verbose=0)
    assert h.history["lr"] == [pytest.approx(0.025)]


def test_reduce_lr_on_plateau():
    x, y = data()
    m = model(lr=0.1)
    cb = callbacks.ReduceLROnPlateau(monitor="score", factor=0.5, patience=1, min_lr=0.02)
    h = m.fit(x, y, epochs=6, callbacks=[Scripted("score", [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), cb],
              verbose=0)
    lrs = h.history["lr"]
    assert lrs[0] == 0.1 and lrs[-1] == pytest.approx(0.025) or lrs[-1] == pytest.approx(0.02)
    assert m.optimizer.lr >= 0.02 and m.optimizer.lr < 0.1


def test_learning_rate_scheduler_with_a_schedule_and_a_function():
    x, y = data()
    m = model(lr=0.1)
    sched = schedules.StepLR(m.optimizer, step_size=1, gamma=0.5)
    h = m.fit(x, y, epochs=3, callbacks=[callbacks.LearningRateScheduler(sched)], verbose=0)
    # The history records the rate each epoch trained with.
    assert h.history["lr"] == pytest.approx([0.1, 0.05, 0.025])
    assert m.optimizer.lr == pytest.approx(0.0125)
    m = model(lr=0.1)
    cb = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    h = m.fit(x, y, epochs=3, callbacks=[cb], verbose=0)
    assert h.history["lr"] == pytest.approx([0.1, 0.05, 0.1 / 3])


def test_learning_rate_scheduler_per_batch():
    x, y = data(n=40)
    m = model(lr=0.1)
    sched = schedules.LinearLR(m.optimizer, start_factor=0.25, total_iters=4)
    m.fit(x, y, epochs=2, batch_size=20,
          callbacks=[callbacks.LearningRateScheduler(sched, per="batch")], verbose=0)
    assert sched.last_epoch == 4 and m.optimizer.lr == pytest.approx(0.1)


def test_terminate_on_nan_stops_in_the_bad_batch(capsys):
    x, y = data(n=100)
    m = model()
    seen = []

    def record_and_poison(batch, logs):
        seen.append(logs["loss"])
        if len(seen) == 4:
            m.param_buffer[0] = np.nan  # the next batch's loss is NaN

    m.fit(x, y, epochs=5, batch_size=10, verbose=0,
          callbacks=[callbacks.LambdaCallback(on_train_batch_end=record_and_poison),
                     callbacks.TerminateOnNaN()])
    assert len(seen) == 5 and math.isnan(seen[-1])
    assert all(math.isfinite(v) for v in seen[:-1])
    assert "terminating" in capsys.readouterr().out


def test_loss_threshold_callback_per_batch():
    x, y = data()
    m = model(lr=0.5)
    stop = callbacks.LossThreshold(0.3, per_batch=True)
    seen = []
    m.fit(x, y, epochs=100, batch_size=10, verbose=0,
          callbacks=[callbacks.LambdaCallback(
              on_train_batch_end=lambda b, logs: seen.append(logs["loss"])), stop])
    assert seen[-1] < 0.3 and all(v >= 0.3 for v in seen[:-1])


def test_csv_logger(tmp_path):
    x, y = data()
    path = tmp_path / "log.csv"
    model().fit(x, y, epochs=3, callbacks=[callbacks.CSVLogger(path)], verbose=0)
    rows = list(csv.DictReader(open(path)))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and "accuracy" in rows[0]
    model().fit(x, y, epochs=2, callbacks=[callbacks.CSVLogger(path, append=True)], verbose=0)
    assert len(list(csv.DictReader(open(path)))) == 5


def test_history_plot(tmp_path):
    x, y = data()
    h = model().fit(x, y, epochs=3, validation_split=0.2, verbose=0)
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    h.plot(path)
    assert path.stat().st_size > 5_000


def test_history_plot_without_matplotlib(monkeypatch, tmp_path):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    h = callbacks.History()
    h.on_epoch_end(0, {"loss": 1.0})
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        h.plot(tmp_path / "x.png")


def test_progress_bar_on_a_terminal():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    x, y = data(n=64)
    model().fit(x, y, epochs=1, batch_size=8, verbose=0,
                callbacks=[callbacks.ProgbarLogger(1, stream=stream)])
    text = stream.getvalue()
    assert "\r" in text and "8/8 [" in text and "ETA" in text and "accuracy:" in text


def test_bad_callback_arguments():
    with pytest.raises(TypeError):
        model().fit(*data(), callbacks=[object()], verbose=0)
    with pytest.raises(ValueError, match="mode"):
        callbacks.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=2.0)
    with pytest.raises(ValueError, match="per"):
        callbacks.LearningRateScheduler(lambda e, lr: lr, per="week")
