"""Property-based fuzzing of every public entry point, in child interpreters.

``fuzz_entry_points.py`` defines, for each entry point that takes arrays
(layers, losses, metrics, optimizer steps, clipping, the training loops,
scalers and data helpers, gradcheck) and for the graph models' builders
(``cdl.Input``, ``cdl.Model``, ``compile``), the odd inputs to draw and the
property every call must keep (see its docstring). This module runs it in
subprocesses, split over ``WORKERS`` processes that run at the same time,
and turns each entry point's summary into one test. A crash of the
interpreter (a segfault or an abort in a kernel) fails the test of the
entry point that was running, naming the signal and the input being
checked; the entry points after it are run in a new process.

Environment variables:

``CDL_FUZZ_EXAMPLES``
    Examples per entry point (default 2000, the CI run: about two minutes
    on two idle cores). The nightly run takes more, for example::

        CDL_FUZZ_EXAMPLES=50000 pytest tests/robustness/test_fuzz.py -q

``CDL_FUZZ_SEED``
    Shifts the seed of every entry point's examples (default 0), for runs
    that explore other examples than CI's; a nightly run can take the
    date, for example ``CDL_FUZZ_SEED=$(date +%Y%m%d)``.

To rerun one entry point by hand::

    python tests/fuzz_entry_points.py --examples 2000 --only losses.MSE
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading

import pytest

from fuzz_entry_points import ENTRIES
from helpers import TESTS

SCRIPT = os.path.join(TESTS, "fuzz_entry_points.py")
EXAMPLES = int(os.environ.get("CDL_FUZZ_EXAMPLES", "2000"))
SEED = os.environ.get("CDL_FUZZ_SEED")
WORKERS = 2
#: Longest a single entry point may run before it counts as hung: the
#: slowest entry point takes about 15 ms per example on a busy machine.
SECONDS_PER_ENTRY = 120 + 0.05 * EXAMPLES

DONE = re.compile(r"DONE (\S+): examples=(\d+) ok=(\d+) rejected=(\d+) failures=(\d+) "
                  r"known=(\d+)")


class EntryResult:
    """What the child reported about one entry point."""

    def __init__(self, name):
        self.name = name
        self.examples = self.failures = 0
        self.summary = None     # the DONE line
        self.details = []       # FAILURE and KNOWN lines that follow it
        self.crash = None       # why the child died while running this entry point


def _command(names, examples, trace):
    command = [sys.executable, "-W", "ignore", SCRIPT, "--examples", str(examples),
               "--only", ",".join(names), "--trace", trace, "--show", "5"]
    if SEED is not None:
        command += ["--seed", SEED]
    return command


def _describe_exit(returncode):
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def _parse(stdout, results):
    """Fill ``results`` from a child's output; return the entry point it
    started but did not finish, or None."""
    running = None
    current = None
    for line in stdout.splitlines():
        if line.startswith("START "):
            running = line.split(" ", 1)[1]
        elif line.startswith("DONE "):
            match = DONE.match(line)
            current = results[match.group(1)]
            current.summary = line
            current.examples, current.failures = int(match.group(2)), int(match.group(5))
            running = None
        elif line.startswith("  ") and current is not None:
            current.details.append(line)
    return running


def _run_child(names, examples, trace, env):
    """Run the fuzz of ``names`` in a child; return its stdout, its stderr
    and how it ended."""
    timeout = SECONDS_PER_ENTRY * len(names)
    try:
        proc = subprocess.run(_command(names, examples, trace), cwd=TESTS, capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as err:
        output = [o.decode() if isinstance(o, bytes) else (o or "")
                  for o in (err.stdout, err.stderr)]
        return output[0], output[1], f"a hang (no result within {timeout:.0f} s)"
    return proc.stdout, proc.stderr, _describe_exit(proc.returncode)


def _read(path):
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().strip()


def run_worker(names, examples, results, env=None):
    """Fuzz ``names`` in child interpreters, restarting after a crash or a
    hang, and record each entry point's outcome in ``results``."""
    remaining = list(names)
    with tempfile.TemporaryDirectory() as folder:
        trace = os.path.join(folder, "trace.txt")
        while remaining:
            stdout, stderr, why = _run_child(remaining, examples, trace, env)
            running = _parse(stdout, results)
            unfinished = [n for n in remaining if results[n].summary is None]
            if running is None:
                for name in unfinished:
                    results[name].crash = f"the child stopped with {why} before it:\n" \
                                          f"{stderr[-3000:]}"
                return
            results[running].crash = (f"the interpreter died with {why} while fuzzing "
                                      f"{running}, on the example: {_read(trace)}\n"
                                      f"{stderr[-3000:]}")
            remaining = [n for n in unfinished if n != running]


def run_all(names, examples, workers=WORKERS, env=None):
    """Fuzz every entry point in ``names`` with ``workers`` children at a time."""
    results = {name: EntryResult(name) for name in names}
    shares = [names[i::workers] for i in range(workers)]
    threads = [threading.Thread(target=run_worker, args=(share, examples, results, env))
               for share in shares if share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture(scope="module")
def fuzz_results():
    results = run_all(list(ENTRIES), EXAMPLES)
    for result in results.values():  # shown with pytest -s
        print(result.summary or f"{result.name}: no result")
    return results


@pytest.mark.parametrize("name", list(ENTRIES))
def test_entry_point_keeps_the_property(fuzz_results, name):
    result = fuzz_results[name]
    assert result.crash is None, result.crash
    assert result.summary is not None, f"{name} reported no result"
    details = "\n".join(result.details)
    assert result.failures == 0, f"{result.summary}\n{details}"
    assert result.examples >= EXAMPLES, result.summary


def test_a_crash_fails_its_entry_point_and_the_rest_still_run():
    names = ["losses.MSE", "metrics.accuracy", "data.one_hot"]
    env = {**os.environ, "CDL_FUZZ_CRASH_IN": "metrics.accuracy"}
    results = run_all(names, 8, workers=1, env=env)
    crash = results["metrics.accuracy"].crash
    assert crash is not None and "SIGSEGV" in crash and "metrics.accuracy:" in crash
    assert results["losses.MSE"].examples == 8 and results["losses.MSE"].crash is None
    assert results["data.one_hot"].examples == 8 and results["data.one_hot"].crash is None
