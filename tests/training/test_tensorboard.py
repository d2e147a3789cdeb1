"""The TensorBoard callback: the event files it writes, read back with
TensorBoard's own reader, hold what ``History`` and the model held."""
import sys

import numpy as np
import pytest

import cdl
from cdl import callbacks, layers, optimizers, schedules
from helpers import BATCH, EPOCHS, SAMPLES, Interrupted, StopBefore, same_run, train
from test_distributed import load, needs_mpi, run_mpi

STEPS = -(-SAMPLES // BATCH)   # batches per epoch of helpers.dataset


def accumulator(run_dir):
    """TensorBoard's reader over every event file of ``run_dir``, loaded."""
    pytest.importorskip("tensorboardX", reason="the TensorBoard callback needs tensorboardX "
                        "(pip install 'cdl[tensorboard]')")
    module = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="reading event files back needs the tensorboard package")
    reader = module.EventAccumulator(str(run_dir), size_guidance={
        module.SCALARS: 0, module.HISTOGRAMS: 0, module.TENSORS: 0})
    reader.Reload()
    return reader


def scalars(reader, tag):
    """(steps, values) of a scalar tag."""
    events = reader.Scalars(tag)
    return [e.step for e in events], [e.value for e in events]


def float32(values):
    """What an event file keeps of these numbers (float32), as Python floats."""
    return [float(np.float32(v)) for v in values]


@pytest.fixture
def board():
    pytest.importorskip("tensorboardX", reason="the TensorBoard callback needs tensorboardX "
                        "(pip install 'cdl[tensorboard]')")
    return callbacks.TensorBoard


def classifier(seed=0, lr=0.05):
    m = cdl.Sequential([layers.Dense(8, activation="tanh", name="hidden"),
                        layers.Dense(2, name="output")], input_shape=(3,), seed=seed)
    m.compile(optimizers.SGD(lr=lr, momentum=0.9), "cross_entropy", metrics=["accuracy"])
    return m


def classes(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return x, y


def test_epoch_scalars_are_the_history_in_keras_layout(board, tmp_path):
    x, y = classes()
    model = classifier()
    history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0,
                        callbacks=[board(tmp_path / "logs")])
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["train", "validation"]
    train_run = accumulator(tmp_path / "logs" / "train")
    assert sorted(train_run.Tags()["scalars"]) == ["epoch_accuracy", "epoch_learning_rate",
                                                   "epoch_loss"]
    for tag, key in (("epoch_loss", "loss"), ("epoch_accuracy", "accuracy"),
                     ("epoch_learning_rate", "lr")):
        assert scalars(train_run, tag) == ([0, 1, 2], float32(history.history[key]))
    val_run = accumulator(tmp_path / "logs" / "validation")
    assert sorted(val_run.Tags()["scalars"]) == ["epoch_accuracy", "epoch_loss"]
    for key in ("loss", "accuracy"):
        assert scalars(val_run, "epoch_" + key) == ([0, 1, 2],
                                                    float32(history.history["val_" + key]))
    # Per epoch only: no batch scalars, no histograms, no text.
    assert train_run.Tags()["histograms"] == [] and train_run.Tags()["tensors"] == []


def test_without_validation_there_is_no_validation_run(board, tmp_path):
    x, y = classes()
    classifier().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[board(tmp_path)])
    assert [p.name for p in tmp_path.iterdir()] == ["train"]


def test_batch_scalars_and_a_per_batch_schedule(board, tmp_path):
    x, y = classes()
    model = classifier()
    schedule = schedules.OneCycleLR(model.optimizer, max_lr=0.2, total_steps=3 * 8 + 1)
    seen = {"loss": [], "lr": []}
    record = callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: seen["lr"].append(model.optimizer.lr),
        on_train_batch_end=lambda batch, logs: seen["loss"].append(logs["loss"]))
    # The scheduler steps before TensorBoard's batch end: the rate written
    # is still the one the batch used.
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[
        record, callbacks.LearningRateScheduler(schedule, per="batch"),
        board(tmp_path / "every", update_freq=1), board(tmp_path / "third", update_freq=3)])
    assert len(seen["lr"]) == 3 * 8 and len(set(seen["lr"])) > 10
    every = accumulator(tmp_path / "every" / "train")
    steps = list(range(1, 3 * 8 + 1))
    assert scalars(every, "batch_loss") == (steps, float32(seen["loss"]))
    assert scalars(every, "batch_learning_rate") == (steps, float32(seen["lr"]))
    assert scalars(every, "epoch_learning_rate") == ([0, 1, 2], float32(history.history["lr"]))
    third = accumulator(tmp_path / "third" / "train")
    assert scalars(third, "batch_loss") == (steps[2::3], float32(seen["loss"][2::3]))
    assert scalars(third, "epoch_loss") == ([0, 1, 2], float32(history.history["loss"]))


def test_a_per_epoch_function_schedule_is_the_epoch_learning_rate(board, tmp_path):
    x, y = classes()
    model = classifier()
    history = model.fit(x, y, epochs=4, batch_size=32, verbose=0, callbacks=[
        board(tmp_path), callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / 2 ** epoch)])
    assert history.history["lr"] == [0.1, 0.05, 0.025, 0.0125]
    assert scalars(accumulator(tmp_path / "train"), "epoch_learning_rate") == \
        ([0, 1, 2, 3], float32(history.history["lr"]))


@pytest.mark.parametrize("fused", [True, False])
def test_weight_and_gradient_histograms(board, tmp_path, fused):
    x, y = classes()
    model = classifier()
    model.use_fused_step = fused
    kept = {}

    def keep(epoch, logs):
        kept[epoch] = ([p.copy() for p in model.params], [g.copy() for g in model.grads])

    model.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=[
        callbacks.LambdaCallback(on_epoch_end=keep), board(tmp_path, histogram_freq=2)])
    run = accumulator(tmp_path / "train")
    tags = [f"{layer.name}/{name}" for layer in model.layers for name in layer._param_names]
    assert len(tags) == 4
    assert sorted(run.Tags()["histograms"]) == sorted(tags + [t + "/gradient" for t in tags])
    for i, tag in enumerate(tags):
        for suffix, which in (("", 0), ("/gradient", 1)):
            events = run.Histograms(tag + suffix)
            assert [e.step for e in events] == [0, 2, 4]
            for event in events:
                values = kept[event.step][which][i].astype(np.float64)
                h = event.histogram_value
                assert h.num == values.size
                assert h.min == values.min() and h.max == values.max()
                assert h.sum == pytest.approx(values.sum(), rel=1e-6, abs=1e-7)
                assert sum(h.bucket) == values.size
    # The gradients are those of a real step, not zeros.
    assert np.abs(kept[4][1][0]).max() > 0


def test_model_summary_as_text(board, tmp_path):
    x, y = classes()
    model = classifier()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0,
              callbacks=[board(tmp_path, write_graph=True)])
    lines = []
    model.summary(print_fn=lines.append)
    events = accumulator(tmp_path / "train").Tensors("model_summary/text_summary")
    assert [e.step for e in events] == [0]
    text = events[0].tensor_proto.string_val[0].decode()
    assert text == "\n".join("    " + line for line in lines)
    assert "hidden (Dense)" in text and "Total params: 50" in text


def test_a_graph_model_summary_names_the_connections(board, tmp_path):
    a = cdl.Input(shape=(3,), name="a")
    h = layers.Dense(4, name="left")(a)
    out = layers.Add(name="sum")([layers.Dense(4, name="right")(a), h])
    model = cdl.Model(a, out, seed=0)
    model.compile(optimizers.SGD(lr=0.01), "mse")
    x = np.ones((8, 3), np.float32)
    model.fit(x, np.zeros((8, 4), np.float32), epochs=1, verbose=0,
              callbacks=[board(tmp_path, write_graph=True, histogram_freq=1)])
    run = accumulator(tmp_path / "train")
    text = run.Tensors("model_summary/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "right, left" in text or "left, right" in text
    assert {"left/kernel", "right/bias/gradient"} <= set(run.Tags()["histograms"])


def test_a_resumed_run_continues_the_steps(board, fast_dir):
    config = {"dtype": "float32", "optimizer": "adam", "schedule": "onecycle_per_batch"}
    reference = train(config)
    total = EPOCHS * STEPS
    for k in (5, 13):   # mid-epoch, and in another epoch
        logs, backup = fast_dir / f"logs-{k}", fast_dir / f"backup-{k}"
        crashed = board(logs, update_freq=1)
        with pytest.raises(Interrupted):
            train(config, [callbacks.BackupAndRestore(backup, save_freq=1), StopBefore(k),
                           crashed])
        # What Python does at exit for a process that crashed with an
        # exception (tensorboardX closes its writers then).
        crashed._close()
        resumed = train(config, [callbacks.BackupAndRestore(backup),
                                 board(logs, update_freq=1)])
        same_run(reference, resumed)
        run = accumulator(logs / "train")
        # Each step once: the interrupted run's, then the resumed run's, not from 0 again.
        steps, losses = scalars(run, "batch_loss")
        assert steps == list(range(1, total + 1))
        assert scalars(run, "epoch_loss") == (list(range(EPOCHS)),
                                              float32(reference[1].history["loss"]))
        assert len(list((logs / "train").iterdir())) == 2   # one event file per fit


def test_only_rank_zero_writes(board, tmp_path):
    model = classifier()
    model.ensure_built()
    tb = board(tmp_path / "logs", update_freq=1, histogram_freq=1, write_graph=True)
    assert tb.rank_zero_only
    hooks = callbacks.CallbackList([tb], model=model, params={"epochs": 1}, rank=1)
    assert not hooks.wants_batch_logs and hooks.has_batch_hooks
    hooks.on_train_begin({})
    hooks.on_train_batch_begin(0, {})
    hooks.on_train_batch_end(0, {"loss": 1.0})
    hooks.on_epoch_end(0, {"loss": 1.0, "lr": 0.1})
    hooks.on_train_end({})
    assert not (tmp_path / "logs").exists()


@needs_mpi
def test_only_rank_zero_writes_under_mpi(board, tmp_path):
    accumulator(tmp_path)   # skips without the tensorboard package, before starting MPI
    run_mpi(2, "tensorboard", tmp_path)
    assert not (tmp_path / "tb-1").exists()
    _, history, _ = load(tmp_path, "tensorboard", 0)
    train_run = accumulator(tmp_path / "tb-0" / "train")
    for key in ("loss", "lr"):
        tag = "epoch_learning_rate" if key == "lr" else "epoch_" + key
        assert scalars(train_run, tag) == ([0, 1], float32(history[key]))
    assert scalars(accumulator(tmp_path / "tb-0" / "validation"), "epoch_loss") == \
        ([0, 1], float32(history["val_loss"]))
    assert [e.step for e in train_run.Scalars("batch_loss")] == list(range(1, 2 * 6 + 1))
    assert train_run.Tags()["histograms"] and train_run.Tags()["tensors"]


def test_per_epoch_logging_adds_no_batch_hooks(board, tmp_path):
    hooks = callbacks.CallbackList([board(tmp_path)], model=None, params={})
    assert not hooks.has_batch_hooks
    hooks = callbacks.CallbackList([board(tmp_path, update_freq=5)], model=None, params={})
    assert hooks.wants_batch_logs


def test_a_second_fit_adds_an_event_file_and_closes_it(board, tmp_path):
    x, y = classes()
    model = classifier()
    tb = board(tmp_path)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[tb])
    model.fit(x, y, epochs=3, initial_epoch=1, batch_size=32, verbose=0, callbacks=[tb])
    assert tb._writers == {}   # closed at the end of training
    assert len(list((tmp_path / "train").iterdir())) == 2
    assert scalars(accumulator(tmp_path / "train"), "epoch_loss")[0] == [0, 1, 2]


def test_bad_arguments(board, tmp_path):
    with pytest.raises(ValueError, match="update_freq"):
        board(tmp_path, update_freq="batch")
    with pytest.raises(ValueError, match="update_freq"):
        board(tmp_path, update_freq=0)
    with pytest.raises(TypeError, match="update_freq"):
        board(tmp_path, update_freq=True)
    with pytest.raises(ValueError, match="histogram_freq"):
        board(tmp_path, histogram_freq=-1)
    with pytest.raises(TypeError, match="histogram_freq"):
        board(tmp_path, histogram_freq="1")
    with pytest.raises(TypeError, match="write_graph"):
        board(tmp_path, write_graph="yes")
    with pytest.raises(TypeError, match="log_dir"):
        board(None)


def test_without_tensorboardx_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)   # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'cdl\[tensorboard\]'"):
        callbacks.TensorBoard(tmp_path)
