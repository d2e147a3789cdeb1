"""Exact resumes: BackupAndRestore and ModelCheckpoint continue a stopped fit
bit for bit (weights and loss history), within a process and across processes.

Run as a script (``python test_resume.py worker <config json>``) this module
is the training process that the cross-process tests start, stop and restart.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cdl
from cdl import callbacks, io, layers, schedules
from cdl.io import ModelFileError
from helpers import (BATCH, EPOCHS, SAMPLES, TESTS, Interrupted, StopBefore, dataset, same_run,
                     train)

CONFIGS = [{"dtype": dtype, "optimizer": opt, "schedule": sched}
           for dtype in ("float32", "float64") for opt in ("sgd", "adam")
           for sched in (None, "step_per_epoch", "onecycle_per_batch", "function")]


def config_id(config):
    return "-".join(str(config[k]) for k in ("dtype", "optimizer", "schedule"))


# --- within one process: an exception stops fit, a new model resumes -------------------


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_resume_after_an_interruption_is_exact(config, fast_dir):
    reference = train(config)
    # Before any backup, mid-epoch, on both sides of an epoch boundary, and late.
    for k in (0, 1, 5, 6, 7, 13, 23):
        backup = fast_dir / f"backup-{k}"
        with pytest.raises(Interrupted):
            train(config, [callbacks.BackupAndRestore(backup, save_freq=1), StopBefore(k)])
        assert (backup / "backup.cdl").exists() == (k > 0)
        resumed = train(config, [callbacks.BackupAndRestore(backup)])
        same_run(reference, resumed)
        assert not backup.exists()   # deleted (with its directory) after a normal end


@pytest.mark.parametrize("save_freq", ["epoch", 4])
def test_resume_from_sparser_backups_is_exact(save_freq, fast_dir):
    config = {"dtype": "float32", "optimizer": "adam", "schedule": "onecycle_per_batch"}
    reference = train(config)
    for k in (3, 6, 9, 17):
        backup = fast_dir / f"backup-{k}"
        with pytest.raises(Interrupted):
            train(config, [callbacks.BackupAndRestore(backup, save_freq=save_freq),
                           StopBefore(k)])
        same_run(reference, train(config, [callbacks.BackupAndRestore(backup,
                                                                      save_freq=save_freq)]))


def test_a_backup_does_not_change_training_and_can_be_kept(tmp_path):
    config = CONFIGS[5]
    reference = train(config)
    kept = callbacks.BackupAndRestore(tmp_path / "b", save_freq=2, delete_checkpoint=False)
    same_run(reference, train(config, [kept]))
    assert os.listdir(tmp_path / "b") == ["backup.cdl"]
    # Starting again from a finished run's backup trains nothing more.
    again = train(config, [callbacks.BackupAndRestore(tmp_path / "b")])
    same_run(reference, again)


def test_resume_with_validation_early_stopping_and_plateau_is_exact(fast_dir):
    tmp_path = fast_dir
    config = {"dtype": "float64", "optimizer": "sgd", "schedule": None}

    def cbs(backup=None):
        out = [callbacks.EarlyStopping(monitor="val_loss", patience=50,
                                       restore_best_weights=True),
               callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
                                           min_delta=10.0),
               callbacks.ModelCheckpoint(tmp_path / "best.cdl", monitor="val_loss",
                                         save_best_only=True)]
        return out + ([callbacks.BackupAndRestore(backup, save_freq=3)] if backup else [])

    reference = train(config, cbs(), epochs=6, validation_split=0.2)
    for k in (4, 9, 14):
        with pytest.raises(Interrupted):
            train(config, cbs(tmp_path / "b") + [StopBefore(k)], epochs=6,
                  validation_split=0.2)
        same_run(reference, train(config, cbs(tmp_path / "b"), epochs=6,
                                  validation_split=0.2))
    assert reference[1].history["lr"][-1] < reference[1].history["lr"][0]
    # The checkpoint carries EarlyStopping's best weights as training arrays.
    state = io.read_training_state(tmp_path / "best.cdl")
    assert len(state["callbacks"][0]["state"]["best_weights"]) == 4
    cdl.load_model(tmp_path / "best.cdl")


def test_without_shuffling_and_with_sample_weights(tmp_path):
    config = {"dtype": "float32", "optimizer": "sgd", "schedule": None, "shuffle": False}
    weights = np.linspace(0.5, 2.0, SAMPLES)
    reference = train(config, sample_weight=weights)
    with pytest.raises(Interrupted):
        train(config, [callbacks.BackupAndRestore(tmp_path, save_freq=1), StopBefore(8)],
              sample_weight=weights)
    header = _header(tmp_path / "backup.cdl")
    assert header["training_state"]["shuffle_order"] is None
    same_run(reference, train(config, [callbacks.BackupAndRestore(tmp_path, save_freq=1)],
                              sample_weight=weights))


def _header(path):
    raw = path.read_bytes()
    length = int.from_bytes(raw[12:20], "little")
    return json.loads(raw[20:20 + length])


def test_the_backup_is_a_model_file_with_a_training_state(tmp_path):
    config = CONFIGS[0]
    with pytest.raises(Interrupted):
        train(config, [callbacks.BackupAndRestore(tmp_path, save_freq=1), StopBefore(9)])
    path = tmp_path / "backup.cdl"
    header = _header(path)
    state = header["training_state"]
    assert (state["epoch"], state["batch"], state["steps"], state["seen"]) == (1, 3, 6, 48)
    assert state["shuffle_order"] == {"$array": "training/shuffle_order"}
    assert "training/shuffle_order" in [entry["name"] for entry in header["arrays"]]
    assert [m["name"] for m in state["metrics"]] == ["accuracy", "f1"]
    assert state["history"]["epoch"] == [0] and len(state["history"]["logs"]["loss"]) == 1
    decoded = io.read_training_state(path)
    assert sorted(decoded["shuffle_order"]) == list(range(SAMPLES))
    assert decoded["metrics"][1]["state"]["_present"].dtype == bool
    loaded = cdl.load_model(path)   # an ordinary model file to load_model
    assert loaded.optimizer.iterations == 9
    plain = tmp_path / "plain.cdl"
    loaded.save(plain)
    assert io.read_training_state(plain) is None and "training_state" not in _header(plain)


# --- refusals ---------------------------------------------------------------------------


def _interrupted_backup(tmp_path, config, k=8, **fit_kwargs):
    with pytest.raises(Interrupted):
        train(config, [callbacks.BackupAndRestore(tmp_path, save_freq=1), StopBefore(k)],
              **fit_kwargs)


def test_a_backup_from_another_setup_is_refused(tmp_path):
    config = CONFIGS[0]
    _interrupted_backup(tmp_path, config)
    backup = callbacks.BackupAndRestore(tmp_path, save_freq=1)
    with pytest.raises(ValueError, match="batch_size=16, this fit has batch_size=32"):
        train(dict(config, batch_size=32), [backup])
    with pytest.raises(ValueError, match="not shuffled|shuffle=False"):
        train(dict(config, shuffle=False), [backup])
    with pytest.raises(ValueError, match="stateful callbacks"):
        train(dict(config, schedule="step_per_epoch"), [backup])
    with pytest.raises(ValueError, match="the optimizer state is for SGD"):
        train(dict(config, optimizer="adam"), [backup])
    with pytest.raises(ValueError, match="float32 model"):
        train(dict(config, dtype="float64"), [backup])
    x, y = dataset()
    other = cdl.Sequential([layers.Dense(5), layers.Dense(3)], input_shape=(6,), seed=0)
    other.compile("sgd", "cross_entropy", metrics=["accuracy", "f1"])
    with pytest.raises(ValueError, match="weight 0 has shape"):
        other.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[backup])
    train(config, [backup])   # the matching setup still resumes


def test_a_damaged_backup_is_refused(tmp_path):
    _interrupted_backup(tmp_path, CONFIGS[0])
    path = tmp_path / "backup.cdl"
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="checksum"):
        train(CONFIGS[0], [callbacks.BackupAndRestore(tmp_path)])


def test_bad_arguments():
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.BackupAndRestore("d", save_freq="batch")
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.BackupAndRestore("d", save_freq=0)
    assert "BackupAndRestore" in callbacks.__all__


# --- ModelCheckpoint: load_model + fit(initial_epoch=...) --------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_checkpoint_files_continue_exactly_at_epoch_boundaries(dtype, tmp_path):
    config = {"dtype": dtype, "optimizer": "sgd", "schedule": "step_per_epoch"}
    epochs = 5
    reference = train(config, epochs=epochs)
    # The checkpoint comes first in the list, yet saves after the schedule's step.
    pattern = str(tmp_path / "ckpt-{epoch}.cdl")
    train(config, [callbacks.ModelCheckpoint(pattern)], epochs=2)
    for saved_epoch in (1, 2):
        path = pattern.format(epoch=saved_epoch)
        state = io.read_training_state(path)
        assert state["epoch"] == saved_epoch and state["batch"] == 0
        model = cdl.load_model(path)
        sched = schedules.StepLR(model.optimizer, step_size=1, gamma=0.7)
        sched.load_state_dict(state["callbacks"][0]["state"]["schedule"])
        x, y = dataset()
        history = model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0,
                            initial_epoch=state["epoch"],
                            callbacks=[callbacks.LearningRateScheduler(sched)])
        assert np.array_equal(model.param_buffer, reference[0].param_buffer)
        logs = state["history"]["logs"]
        assert {k: logs[k] + history.history[k] for k in logs} == reference[1].history
        assert state["history"]["epoch"] + history.epoch == list(range(epochs))


def test_model_checkpoint_without_a_schedule_needs_only_the_epoch(tmp_path):
    config = {"dtype": "float32", "optimizer": "adam", "schedule": None}
    reference = train(config)
    train(config, [callbacks.ModelCheckpoint(tmp_path / "last.cdl")], epochs=3)
    model = cdl.load_model(tmp_path / "last.cdl")
    x, y = dataset()
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0,
              initial_epoch=io.read_training_state(tmp_path / "last.cdl")["epoch"])
    assert np.array_equal(model.param_buffer, reference[0].param_buffer)


# --- across processes: a clean exit or SIGKILL, then a new process -----------------------


#: The worker's environment: it imports ``helpers`` from the tests folder.
WORKER_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}


def run_worker(config, timeout=120):
    return subprocess.run([sys.executable, __file__, "worker", json.dumps(config)],
                          capture_output=True, text=True, timeout=timeout, env=WORKER_ENV)


def worker(config):
    """Train as ``config`` says with a backup; stop as ``config["stop"]`` says
    (or finish and write the weights and history to ``config["out"]``)."""
    stop = config.get("stop")
    extra = [callbacks.BackupAndRestore(config["backup_dir"], save_freq=config["save_freq"])]
    if stop:
        extra.append(StopBefore(stop["before"], stop["how"]))
    if config.get("pause"):
        extra.append(callbacks.LambdaCallback(
            on_train_batch_end=lambda b, logs: time.sleep(config["pause"])))
    model, history = train(config, extra)
    np.save(config["out"] + ".npy", model.param_buffer)
    with open(config["out"] + ".json", "w") as f:
        json.dump({"history": history.history, "epoch": history.epoch}, f)


def result_of(out):
    with open(out + ".json") as f:
        saved = json.load(f)
    return np.load(out + ".npy"), saved


def same_as_reference(config, out):
    model, history = train(config)
    params, saved = result_of(out)
    assert params.dtype == model.param_buffer.dtype
    assert np.array_equal(params, model.param_buffer)
    assert saved["history"] == history.history and saved["epoch"] == history.epoch


PROCESS_CONFIGS = [
    {"dtype": "float32", "optimizer": "adam", "schedule": "onecycle_per_batch",
     "save_freq": 1},
    {"dtype": "float64", "optimizer": "sgd", "schedule": "function", "save_freq": "epoch"},
]


@pytest.mark.parametrize("how", ["exit", "kill"])
@pytest.mark.parametrize("config", PROCESS_CONFIGS, ids=lambda c: c["dtype"])
def test_resume_in_a_new_process_is_exact(config, how, tmp_path):
    config = dict(config, backup_dir=str(tmp_path / "backup"), out=str(tmp_path / "out"))
    first = run_worker(dict(config, stop={"before": 14, "how": how}))
    assert first.returncode == (0 if how == "exit" else -signal.SIGKILL), first.stderr
    assert os.path.exists(os.path.join(config["backup_dir"], "backup.cdl"))
    assert not os.path.exists(config["out"] + ".npy")
    second = run_worker(config)
    assert second.returncode == 0, second.stderr
    same_as_reference(config, config["out"])
    assert not os.path.exists(config["backup_dir"])


def test_sigkill_at_random_moments_then_resume_is_exact(tmp_path):
    """Kills land anywhere, also while the backup is being written."""
    # Fixed delays: a run that fails can be repeated (the moment a kill
    # lands still varies with scheduling; the resume must be exact anyway).
    rng = np.random.default_rng(0)
    config = {"dtype": "float32", "optimizer": "adam", "schedule": "onecycle_per_batch",
              "save_freq": 1, "pause": 0.004}
    for trial in range(2):
        trial_config = dict(config, backup_dir=str(tmp_path / f"backup{trial}"),
                            out=str(tmp_path / f"out{trial}"))
        backup = os.path.join(trial_config["backup_dir"], "backup.cdl")
        child = subprocess.Popen([sys.executable, __file__, "worker",
                                  json.dumps(trial_config)], env=WORKER_ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not os.path.exists(backup) and child.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.08))
        child.send_signal(signal.SIGKILL)
        child.wait()
        resumed = run_worker(trial_config)
        assert resumed.returncode == 0, resumed.stderr
        same_as_reference(trial_config, trial_config["out"])


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(json.loads(sys.argv[2]))
