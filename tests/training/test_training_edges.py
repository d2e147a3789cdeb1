"""Edge cases of training: max_steps across a resume, sample weights out of
the model's range, diverged runs with metrics, memoryviews, and replacing
the weights while other threads predict."""
import array
import sys
import threading

import numpy as np
import pytest

import cdl
from cdl import callbacks, io, layers, optimizers
from cdl.saving.checkpoint import restore_checkpoint, save_checkpoint
from helpers import Interrupted, StopBefore, make_model, same_run, train


# --- max_steps and stop decisions survive a resume -------------------------------------


class RaiseIn(callbacks.Callback):
    """Interrupt ``fit`` in ``hook`` (of epoch ``epoch`` for on_epoch_end),
    before BackupAndRestore, which runs after the other callbacks, acts there."""

    def __init__(self, hook, epoch=None):
        super().__init__()
        self.epoch = epoch
        setattr(self, hook, self._raise)

    def _raise(self, *args, **kwargs):
        if self.epoch is None or args[0] == self.epoch:
            raise Interrupted


def same_state(reference, resumed):
    """Weights, history and optimizer state bit for bit."""
    same_run(reference, resumed)
    a, b = reference[0].optimizer.state_dict(), resumed[0].optimizer.state_dict()
    assert a["iterations"] == b["iterations"]
    assert a["scalars"] == b["scalars"]
    assert a["state"].keys() == b["state"].keys()
    for key in a["state"]:
        if a["state"][key] is None:
            assert b["state"][key] is None
        else:
            assert all(np.array_equal(x, y) for x, y in zip(a["state"][key], b["state"][key]))


CONFIG = {"dtype": "float32", "optimizer": "adam", "schedule": "onecycle_per_batch"}


# 6 batches per epoch: 15 steps end mid-epoch (epoch 3, batch 3), 12 at an epoch end.
@pytest.mark.parametrize("max_steps", [15, 12])
def test_max_steps_counts_the_whole_run_across_a_resume(max_steps, fast_dir):
    reference = train(CONFIG, max_steps=max_steps)
    assert reference[0].optimizer.iterations == max_steps
    for k in (0, 1, 5, 6, 7, max_steps - 1):
        backup = fast_dir / f"backup-{k}"
        with pytest.raises(Interrupted):
            train(CONFIG, [callbacks.BackupAndRestore(backup, save_freq=1), StopBefore(k)],
                  max_steps=max_steps)
        resumed = train(CONFIG, [callbacks.BackupAndRestore(backup)], max_steps=max_steps)
        same_state(reference, resumed)
        assert not backup.exists()


@pytest.mark.parametrize("save_freq", [1, "epoch"])
def test_max_steps_reached_then_killed_before_the_end_resumes_exactly(save_freq, fast_dir):
    """Killed after the last step's backup but before the epoch's end, or
    after the epoch-end backup but before fit returned: the resumed run
    does only what was left, no step more."""
    reference = train(CONFIG, max_steps=15)
    stops = [RaiseIn("on_train_end")]
    if save_freq == 1:
        stops.append(RaiseIn("on_epoch_end", epoch=2))
    for i, stop in enumerate(stops):
        backup = fast_dir / f"backup-{i}"
        with pytest.raises(Interrupted):
            train(CONFIG, [stop, callbacks.BackupAndRestore(backup, save_freq=save_freq)],
                  max_steps=15)
        # A batch backup holds the count that decides; an epoch-end one
        # also holds that training was stopping.
        state = io.read_training_state(backup / "backup.cdl")
        assert state["total_steps"] == 15
        assert state["stop_training"] is (save_freq == "epoch")
        same_state(reference, train(CONFIG, [callbacks.BackupAndRestore(backup)],
                                    max_steps=15))


def test_an_early_stop_saved_in_the_backup_is_not_trained_past(fast_dir):
    def cbs(*extra):
        return [callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0), *extra]

    reference = train(CONFIG, cbs())
    assert len(reference[1].epoch) == 2        # stopped early
    backup = fast_dir / "backup"
    with pytest.raises(Interrupted):
        train(CONFIG, cbs(RaiseIn("on_train_end"), callbacks.BackupAndRestore(backup)))
    assert io.read_training_state(backup / "backup.cdl")["stop_training"] is True
    same_state(reference, train(CONFIG, cbs(callbacks.BackupAndRestore(backup))))


def test_a_stop_in_the_middle_of_an_epoch_saved_in_the_backup_ends_that_epoch(fast_dir):
    """A callback stopped training in a batch (LossThreshold per batch, as
    TerminateOnNaN does): killed before the epoch's end, the resumed run
    ends that epoch without another step."""
    losses = []
    train(CONFIG, [callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(logs["loss"]))])
    # The first batch, past the first epoch and not an epoch's last, whose
    # loss is below every earlier one: a threshold between them stops there.
    k = next(k for k in range(7, len(losses)) if k % 6 != 5 and losses[k] < min(losses[:k]))
    threshold = (losses[k] + min(losses[:k])) / 2

    def stop():
        return callbacks.LossThreshold(threshold, per_batch=True)

    reference = train(CONFIG, [stop()])
    assert reference[0].optimizer.iterations == k + 1
    backup = fast_dir / "backup"
    with pytest.raises(Interrupted):
        train(CONFIG, [RaiseIn("on_epoch_end", epoch=k // 6), stop(),
                       callbacks.BackupAndRestore(backup, save_freq=1)])
    assert io.read_training_state(backup / "backup.cdl")["stop_training"] is True
    same_state(reference, train(CONFIG, [stop(), callbacks.BackupAndRestore(backup)]))


def test_a_backup_without_the_step_count_still_resumes(fast_dir):
    """Backups written before the step count was saved continue (counting
    max_steps afresh); a damaged count is refused."""
    backup = fast_dir / "backup"
    with pytest.raises(Interrupted):
        train(CONFIG, [callbacks.BackupAndRestore(backup, save_freq=1), StopBefore(4)])
    path = backup / "backup.cdl"
    model = make_model(CONFIG)
    model.build()
    state = io.read_training_state(path)
    old = {k: v for k, v in state.items() if k not in ("total_steps", "stop_training")}
    restore_checkpoint(model, path)
    save_checkpoint(model, path, old)
    same_run(train(CONFIG), train(CONFIG, [callbacks.BackupAndRestore(backup)]))
    with pytest.raises(Interrupted):
        train(CONFIG, [callbacks.BackupAndRestore(backup, save_freq=1), StopBefore(4)])
    for key, bad in (("total_steps", -1), ("stop_training", "yes")):
        restore_checkpoint(model, path)
        save_checkpoint(model, path, dict(state, **{key: bad}))
        with pytest.raises(io.ModelFileError, match=key):
            train(CONFIG, [callbacks.BackupAndRestore(backup)])


# --- sample weights are checked in the model's dtype ------------------------------------


def _regressor(dtype="float32", metrics=("mae",)):
    model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), dtype=dtype, seed=0)
    model.compile(optimizers.SGD(lr=0.1), "mse", metrics=list(metrics))
    return model


X = np.linspace(-1, 1, 64).reshape(-1, 1)
Y = 3 * X


@pytest.mark.parametrize("call", ["fit", "evaluate", "train_step", "validation"])
def test_sample_weights_too_large_for_float32_are_refused_everywhere(call):
    weights = np.full(64, 1e39)
    model = _regressor()
    run = {"fit": lambda: model.fit(X, Y, sample_weight=weights, verbose=0),
           "evaluate": lambda: model.evaluate(X, Y, sample_weight=weights),
           "train_step": lambda: model.train_step(X, Y, sample_weight=weights),
           "validation": lambda: model.fit(X, Y, validation_data=(X, Y, weights),
                                           verbose=0)}[call]
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"sample_weight contains infinity \(or values too "
                                         r"large for float32\)"):
        run()
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_float64_models_take_those_weights_and_class_weights_are_checked_too():
    model = _regressor("float64")
    model.fit(X, Y, sample_weight=np.full(64, 1e39), epochs=1, verbose=0)
    classifier = cdl.Sequential([layers.Dense(2)], input_shape=(1,), seed=0)
    classifier.compile("sgd", "cross_entropy")
    labels = (X[:, 0] > 0).astype(int)
    with pytest.raises(ValueError, match="sample_weight times class_weight contains infinity"):
        classifier.fit(X, labels, sample_weight=np.full(64, 1e20),
                       class_weight={0: 1e20, 1: 1.0}, verbose=0)


@pytest.mark.parametrize("weights, error, message", [
    (np.full(64, np.nan), ValueError, "sample_weight contains NaN"),
    (-np.ones(64), ValueError, "non-negative"),
    (np.ones(63), ValueError, r"shape \(63,\), expected \(64,\)"),
    (np.ones(64, dtype=complex), TypeError, "real numbers"),
])
def test_fit_and_evaluate_refuse_the_same_bad_weights(weights, error, message):
    model = _regressor()
    for run in (lambda: model.fit(X, Y, sample_weight=weights, verbose=0),
                lambda: model.evaluate(X, Y, sample_weight=weights)):
        with pytest.raises(error, match=message):
            run()


# --- a diverged run reports its divergence, not a metric's complaint --------------------


def _diverging(metrics=("mae",)):
    model = _regressor(metrics=metrics)
    model.compile(optimizers.SGD(lr=1e30), "mse", metrics=list(metrics))
    return model


def test_terminate_on_nan_example_with_a_metric(capsys):
    history = _diverging().fit(X, Y, epochs=5, batch_size=16, verbose=0,
                               callbacks=[callbacks.TerminateOnNaN()])
    assert "invalid loss nan, terminating training" in capsys.readouterr().out
    assert len(history.epoch) == 1 and np.isnan(history.history["loss"][0])
    assert np.isfinite(history.history["mae"][0])    # the batches before the divergence


def test_a_metric_that_saw_only_diverged_batches_reports_nan(capsys):
    # Weights that are NaN already: the first batch diverges.
    model = _diverging(metrics=("mae", "mse"))
    model.set_weights([np.full((1, 1), np.nan), np.zeros(1)])
    history = model.fit(X, Y, epochs=2, batch_size=16, verbose=0,
                        callbacks=[callbacks.TerminateOnNaN()])
    assert "Batch 0: invalid loss" in capsys.readouterr().out
    assert history.epoch == [0]
    assert all(np.isnan(history.history[key][0]) for key in ("loss", "mae", "mse"))


def test_without_terminate_on_nan_the_history_shows_the_divergence():
    history = _diverging().fit(X, Y, epochs=4, batch_size=16, verbose=0,
                               validation_split=0.25)
    logs = history.history
    assert history.epoch == [0, 1, 2, 3]
    assert all(np.isnan(v) for key in ("loss", "val_loss", "val_mae") for v in logs[key])
    assert np.isfinite(logs["mae"][0]) and all(np.isnan(v) for v in logs["mae"][1:])


def test_evaluate_of_a_diverged_model_reports_nan():
    model = cdl.Sequential([layers.Dense(2)], input_shape=(1,), seed=0)
    model.compile("sgd", "cross_entropy", metrics=["accuracy", "f1"])
    model.set_weights([np.full((1, 2), np.nan), np.zeros(2)])
    result = model.evaluate(X, (X[:, 0] > 0).astype(int))
    assert set(result) == {"loss", "accuracy", "f1"}
    assert all(np.isnan(v) for v in result.values())


def test_a_metric_without_samples_on_a_finite_run_still_raises():
    """NaN stands for "diverged", not for a metric that fails on its own."""
    metric = cdl.metrics.MeanMetricWrapper(lambda t, p: 0.0, name="zero")
    model = _regressor(metrics=[])
    model.compile("sgd", "mse", metrics=[metric])
    with pytest.raises(ValueError, match="weights sum to zero"):
        model.fit(X, Y, sample_weight=np.zeros(64), verbose=0)


# --- memoryviews are arrays everywhere ----------------------------------------------------


def test_memoryviews_and_buffers_are_array_data_for_every_entry_point():
    x, y = np.ascontiguousarray(X), np.ascontiguousarray(Y)
    reference = _regressor()
    expected = reference.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    model = _regressor()
    history = model.fit(memoryview(x), memoryview(y), epochs=2, batch_size=16, verbose=0,
                        validation_data=(memoryview(x), memoryview(y)))
    assert history.history["loss"] == expected["loss"]
    assert np.array_equal(model.predict(memoryview(x)), reference.predict(x))
    assert model.evaluate(memoryview(x), memoryview(y)) == reference.evaluate(x, y)
    assert model.train_step(memoryview(x), memoryview(y)) == reference.train_step(x, y)
    # array.array (1-D) is array data too: refused for its shape, not as batches.
    with pytest.raises(ValueError, match="expected"):
        _regressor().fit(array.array("d", X[:, 0]), Y[:, 0], verbose=0)


@pytest.mark.parametrize("call", ["predict", "evaluate", "train_step"])
def test_iterables_of_batches_are_for_fit_only(call):
    model = _regressor()
    batches = iter([(X, Y)])
    run = {"predict": lambda: model.predict(batches),
           "evaluate": lambda: model.evaluate(batches, None),
           "train_step": lambda: model.train_step(batches, None)}[call]
    with pytest.raises(TypeError, match=f"{call} takes array data; x is an iterable of "
                                        "batches"):
        run()


# --- set_weights refuses what the layers refuse ----------------------------------------------


@pytest.mark.parametrize("bad, error, message", [
    (lambda shape: np.full(shape, 1.0 + 2.0j), TypeError, "must hold real numbers.*complex"),
    (lambda shape: np.full(shape, "1.5"), TypeError, "must hold real numbers.*<U3"),
    (lambda shape: np.full(shape, "1.5").tolist(), TypeError, "must hold real numbers"),
    (lambda shape: np.full(shape, None, dtype=object), TypeError, "must hold real numbers"),
    (lambda shape: np.full(shape, 1e39), ValueError, "has values too large for float32"),
    (lambda shape: np.ones(shape + (2,)), ValueError, "has shape"),
])
@pytest.mark.parametrize("position", [0, 1])
def test_set_weights_refuses_non_real_values_and_changes_nothing(bad, error, message,
                                                                 position):
    model = _regressor()
    before = model.get_weights()
    weights = [np.full((1, 1), 7.0), np.full(1, 5.0)]
    weights[position] = bad(before[position].shape)
    with pytest.raises(error, match=f"weight {position} {message}"):
        model.set_weights(weights)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_set_weights_converts_real_values_and_keeps_nan_as_loading_does(tmp_path):
    model = _regressor()
    model.set_weights([np.array([[True]]), np.array([3], dtype=np.int64)])
    assert model.get_weights()[0][0, 0] == 1.0 and model.get_weights()[1][0] == 3.0
    model.set_weights([np.array([[np.nan]]), np.array([np.inf])])
    model.save_weights(tmp_path / "w.cdl")
    other = _regressor()
    other.load_weights(tmp_path / "w.cdl")
    assert np.isnan(other.params[0][0, 0]) and np.isposinf(other.params[1][0])


# --- replacing the weights while other threads predict -----------------------------------


def _two_weight_sets(model, x):
    first = model.get_weights()
    second = [w * -0.5 + 0.25 for w in first]
    model.set_weights(first)
    out_first = model.predict(x)
    model.set_weights(second)
    out_second = model.predict(x)
    assert not np.array_equal(out_first, out_second)
    return (first, out_first), (second, out_second)


def _writer(model, how, first, second, tmp_path):
    """Two calls that replace the model's weights by ``first`` and ``second``."""
    if how == "set_weights":
        return [lambda: model.set_weights(first), lambda: model.set_weights(second)]
    paths = [tmp_path / "first.cdl", tmp_path / "second.cdl"]
    for weights, path in zip((first, second), paths):
        model.set_weights(weights)
        model.save_weights(path)
    if how == "io.load_weights":   # the module function guards the model too
        return [lambda: cdl.io.load_weights(model, paths[0]),
                lambda: cdl.io.load_weights(model, paths[1])]
    return [lambda: model.load_weights(paths[0]), lambda: model.load_weights(paths[1])]


class PauseIn(layers.Activation):
    """An identity layer that, in the thread ``thread``, waits in the middle
    of the forward pass until ``resume`` is set."""

    def __init__(self):
        super().__init__("linear")
        self.thread, self.reached, self.resume = None, threading.Event(), threading.Event()

    def forward(self, x, training=False):
        if threading.get_ident() == self.thread:
            self.reached.set()
            self.resume.wait(10)
        return super().forward(x, training)


@pytest.mark.parametrize("how", ["set_weights", "load_weights", "io.load_weights"])
def test_a_weight_change_waits_for_a_prediction_half_way_through(how, tmp_path):
    pause = PauseIn()
    model = cdl.Sequential([layers.Dense(8, activation="tanh"), pause, layers.Dense(3)],
                           input_shape=(4,), seed=0)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    (first, out_first), (second, out_second) = _two_weight_sets(model, x)
    write = _writer(model, how, first, second, tmp_path)
    write[0]()
    outputs, written = [], threading.Event()

    def predict_with_a_pause():
        pause.thread = threading.get_ident()
        outputs.append(model.predict(x))

    def replace():
        write[1]()
        written.set()

    reader, writer = threading.Thread(target=predict_with_a_pause), threading.Thread(
        target=replace)
    reader.start()
    try:
        assert pause.reached.wait(10)          # first layer done with the old weights
        writer.start()
        assert not written.wait(0.3)           # the write waits for the prediction
    finally:
        pause.resume.set()
        reader.join()
        if writer.is_alive() or not written.is_set():
            writer.join()
    assert written.is_set()
    assert np.array_equal(outputs[0], out_first)
    assert np.array_equal(model.predict(x), out_second)


@pytest.mark.parametrize("how", ["set_weights", "load_weights", "io.load_weights"])
def test_predictions_see_one_whole_weight_set_while_weights_change(how, tmp_path):
    model = cdl.Sequential([layers.Dense(64, activation="relu"), layers.Dense(64),
                            layers.Dense(4)], input_shape=(16,), seed=0)
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    (first, out_first), (second, out_second) = _two_weight_sets(model, x)
    write = _writer(model, how, first, second, tmp_path)
    done = threading.Event()
    counts, errors = [], []

    def predict_in_a_loop():
        calls = mixed = 0
        try:
            while not done.is_set() or calls < 20:
                out = model.predict(x)
                calls += 1
                mixed += not (np.array_equal(out, out_first)
                              or np.array_equal(out, out_second))
        except Exception as err:  # reported by the main thread
            errors.append(err)
        counts.append((calls, mixed))

    readers = [threading.Thread(target=predict_in_a_loop) for _ in range(3)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)    # threads take turns often, so races would show
    try:
        for thread in readers:
            thread.start()
        for i in range(1000 if how == "set_weights" else 200):
            write[i % 2]()
        done.set()
        for thread in readers:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert not errors
    assert [mixed for _, mixed in counts] == [0, 0, 0]


def test_weights_cannot_be_replaced_while_another_thread_trains(tmp_path):
    model = _regressor()
    model.save_weights(tmp_path / "w.cdl")
    started, release = threading.Event(), threading.Event()

    class Pause(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            started.set()
            release.wait(10)

    trainer = threading.Thread(target=lambda: model.fit(
        X, Y, epochs=1, batch_size=64, verbose=0, callbacks=[Pause()]))
    trainer.start()
    try:
        assert started.wait(10)
        weights = model.get_weights()
        with pytest.raises(RuntimeError, match="training in another thread; set_weights"):
            model.set_weights(weights)
        with pytest.raises(RuntimeError, match="training in another thread; load_weights"):
            model.load_weights(tmp_path / "w.cdl")
        with pytest.raises(RuntimeError, match="training in another thread; load_weights"):
            cdl.io.load_weights(model, tmp_path / "w.cdl")
    finally:
        release.set()
        trainer.join()
    model.set_weights(weights)    # free again once fit returned


def test_the_training_thread_may_replace_the_weights():
    model = _regressor()
    saved = model.get_weights()
    restore = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: model.set_weights(saved))
    model.fit(X, Y, epochs=2, verbose=0, callbacks=[restore])
    assert all(np.array_equal(a, b) for a, b in zip(saved, model.get_weights()))
