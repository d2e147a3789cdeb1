"""Saving survives being killed: a process saving in a loop is killed with
SIGKILL at random moments; the target always holds a complete checkpoint,
and the next save removes the temporary file the killed save left.

``CDL_KILL_TRIALS=<n>`` runs n kill trials instead of the default 100.
"""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cdl
from cdl import io, layers, optimizers
from cdl.saving import writer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")

TRIALS = int(os.environ.get("CDL_KILL_TRIALS", "100"))


def big_model(shift):
    """About 2 MB of float32 weights and 4 MB of Adam state (a save takes
    tens of milliseconds), with weights that tell ``shift`` apart."""
    model = cdl.Sequential([layers.Dense(700), layers.Dense(10)], input_shape=(700,), seed=0)
    model.compile(optimizers.Adam(lr=1e-3), "mse")
    x = np.ones((2, 700), dtype=np.float32)
    model.train_step(x, np.zeros((2, 10), dtype=np.float32))
    model.param_buffer[...] += shift
    return model


def temp_files(directory, target):
    pattern = re.compile(re.escape("." + target + ".") + r"([0-9]+)\.[a-z0-9_]{8}\.tmp")
    return [name for name in os.listdir(directory) if pattern.fullmatch(name)]


def save_forever(models, path):
    """The child: save the models in turn until killed; never return to pytest."""
    try:
        i = 0
        while True:
            models[i % len(models)].save(path)
            i += 1
    finally:
        os._exit(1)


def kill_while_saving(models, path, delay):
    pid = os.fork()
    if pid == 0:
        save_forever(models, path)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return pid


def seconds_per_save(model, path):
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.save(path)
        times.append(time.perf_counter() - start)
    return sorted(times)[1]


def test_killed_saves_never_leave_a_partial_target(tmp_path):
    models = [big_model(0.0), big_model(1.0)]
    reference = tmp_path / "reference"
    reference.mkdir()
    expected = {}
    for shift, model in zip((0.0, 1.0), models):
        model.save(reference / "m.cdl")
        expected[(reference / "m.cdl").read_bytes()] = shift
    directory = tmp_path / "run"
    directory.mkdir()
    path = directory / "m.cdl"
    save_time = seconds_per_save(models[0], path)
    # Kills land before, during and between saves: within about two saves
    # (at least 20 ms, for file systems that save in a blink).
    window = max(2 * save_time, 0.02)
    # Delays spread over the window, the same ones on every run (where each
    # kill lands still varies with scheduling; the property must hold anyway).
    rng = np.random.default_rng(0)
    leftovers = 0
    start = time.perf_counter()
    for trial in range(TRIALS):
        pid = kill_while_saving(models, path, rng.uniform(0.0, window))
        raw = path.read_bytes()
        assert raw in expected, f"trial {trial}: the target is not a complete checkpoint"
        loaded = cdl.load_model(path)
        assert np.array_equal(loaded.param_buffer, models[int(expected[raw])].param_buffer)
        stale = temp_files(directory, "m.cdl")
        assert set(os.listdir(directory)) == {"m.cdl", *stale}
        assert all(name.split(".")[3] == str(pid) for name in stale) and len(stale) <= 1
        leftovers += bool(stale)
        models[trial % 2].save(path)   # the next save removes what the killed one left
        assert os.listdir(directory) == ["m.cdl"], f"trial {trial}: stale files remain"
    elapsed = time.perf_counter() - start
    print(f"{TRIALS} kill trials in {elapsed:.1f} s (a save takes {save_time * 1e3:.1f} ms); "
          f"{leftovers} kills left a temporary file")
    # Most kills land while a file is being written; if none did, the test tests nothing.
    assert leftovers >= max(1, TRIALS // 10)


# --- which temporary files a save removes ----------------------------------------------


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def touch(path, age=0.0):
    path.write_bytes(b"partial")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path.name


def test_only_stale_temp_files_of_the_target_are_removed(tmp_path):
    model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = dead_pid()
        removed = [
            touch(tmp_path / f".m.cdl.{gone}.abcdefgh.tmp"),           # its writer died
            touch(tmp_path / f".m.cdl.{sleeper.pid}.k2j4l5m6.tmp", age=7200),  # idle an hour
            touch(tmp_path / ".m.cdl.q1w2e3r4.tmp", age=7200),         # older naming, idle
        ]
        kept = [
            touch(tmp_path / f".m.cdl.{sleeper.pid}.abcdefgh.tmp"),    # its writer is alive
            touch(tmp_path / f".m.cdl.{os.getpid()}.zzzzzzzz.tmp"),    # this process's own
            touch(tmp_path / ".m.cdl.q1w2e3r4.tmp".replace("q1", "x9")),  # older naming, fresh
            touch(tmp_path / f".other.cdl.{gone}.abcdefgh.tmp"),       # another target's
            touch(tmp_path / f".m.cdl.{gone}.abcdefghi.tmp"),          # not our pattern
            touch(tmp_path / f".m.cdl.{gone}.ABCDEFGH.tmp"),
            touch(tmp_path / f"m.cdl.{gone}.abcdefgh.tmp"),
            touch(tmp_path / f".m.cdl.{gone}.abcdefgh.tmp.bak"),
            touch(tmp_path / ".m.cdl.tmp", age=7200),
            touch(tmp_path / "notes.txt", age=7200),
        ]
        (tmp_path / f".m.cdl.{gone}.dirdirdi.tmp").mkdir()            # not a file
        kept.append(f".m.cdl.{gone}.dirdirdi.tmp")
        model.save(tmp_path / "m.cdl")
        left = set(os.listdir(tmp_path))
        assert left == {"m.cdl", *kept}, (left, removed)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_save_writes_its_temp_file_under_its_pid(tmp_path, monkeypatch):
    model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
    seen = []
    real = writer.write_arrays

    def spy(write, prepared):
        seen.extend(os.listdir(tmp_path))
        return real(write, prepared)

    monkeypatch.setattr(writer, "write_arrays", spy)
    model.save(tmp_path / "m.cdl")
    assert len(seen) == 1 and re.fullmatch(
        rf"\.m\.cdl\.{os.getpid()}\.[a-z0-9_]{{8}}\.tmp", seen[0]), seen
    assert os.listdir(tmp_path) == ["m.cdl"]


def test_long_names_and_save_weights_clean_up_too(tmp_path):
    name = "x" * 100 + ".cdl"   # temp names use the first 64 characters of the name
    model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
    stale = tmp_path / f".{name[:64]}.{dead_pid()}.abcdefgh.tmp"
    stale.write_bytes(b"partial")
    model.save_weights(tmp_path / name)
    assert os.listdir(tmp_path) == [name]
