"""Scaling benchmark of cdl's data-parallel training over MPI.

Measures training throughput (samples/s) of ``model.fit(..., distributed=True)``
with 1, 2, ... processes and reports the speed-up and parallel efficiency::

    python benchmarks/distributed.py [--processes 1 2] [--rounds 3] [--workloads ...]
                                     [--quick] [--mpiexec mpiexec] [--hostfile FILE]

Run it as a plain Python script; it launches itself under ``mpiexec -n P``
for every measurement and prints a Markdown report on stdout (progress on
stderr)::

    python benchmarks/distributed.py                  # P = 1 and 2, 3 rounds
    python benchmarks/distributed.py --quick          # small workloads, one round
    python benchmarks/distributed.py --workloads mlp-wide cnn --rounds 5

On a cluster, list the nodes in a hostfile (with MPICH, one host a line,
``host:4`` for 4 processes on it) and give the process counts::

    python benchmarks/distributed.py --hostfile hosts --processes 1 2 4 8

The script then runs ``mpiexec -n P -hostfile hosts python
benchmarks/distributed.py --worker ...`` for each P; with MPICH's Hydra that
is the same as ``mpiexec -n P -f hosts``, the form to use for your own
training scripts (``-f hosts`` is also accepted here in place of
``--hostfile hosts``). Python, cdl and this script must be at the same
paths on every node (a shared file system or identical environments). The
``--worker`` mode is internal: it is what ``mpiexec`` runs, not a way to
start the benchmark. A failing or hung measurement (``--timeout``) stops
the benchmark with the worker's output and a non-zero exit status.

Method
------
Each workload (float32, Adam, random data drawn from a fixed seed and held
in memory, the same array on every process) is trained for a fixed number
of global batches, sized for a few seconds at P = 1 on a 2-core machine,
after one short warm-up fit that is not timed. ``batch`` is the global
batch: each of the P processes computes the gradient of its ``batch / P``
rows, so a step does the same arithmetic for every P and samples/s compare
directly. Throughput is timed from the start to the end of the training
loop on rank 0 (``on_train_begin`` to ``on_train_end``), which leaves out
the broadcast of the weights and optimizer state when ``fit`` starts. Runs
longer than an epoch over ``DATA_BYTES`` of inputs are several fits, each
restarting from the weights and optimizer state after the warm-up.

- P = 1 is the baseline: ``fit(distributed=False)`` in one process, with as
  many BLAS threads as the node has cores, the total that the P processes
  of a node share. That is the fair comparison: both sides get the same
  cores, and the question is whether splitting the batch between processes
  beats splitting each matrix product between threads.
- "1 (MPI)" is ``fit(distributed=True)`` under ``mpiexec -n 1`` with the same
  threads: the cost of the distributed code path alone, for reference.
- P > 1 is ``fit(distributed=True)`` under ``mpiexec -n P``; cdl gives each
  process cores // processes-on-its-node BLAS threads (unless
  ``OMP_NUM_THREADS`` or ``OPENBLAS_NUM_THREADS`` is set). The table shows
  the threads each process actually had.

Each round runs every workload at every P, rotating the order of the P
values from round to round, so that a slow spell of a shared machine hits
all of them; the table gives medians over the rounds, and the speed-up is
the median of the speed-ups measured within a round.

The per-step split is measured cheaply: after training, each worker times
the reductions of one step on their own (an ``Allreduce`` of a buffer the
size of ``model.grad_buffer`` and the 5-double statistics ``fit`` sums
with it), median over many repetitions. "compute" is the step time minus
that; it includes any time a process waits for a slower one.

What to expect
--------------
Every step sums the gradients over the processes: the allreduce volume is
the parameter bytes (params x 4 for float32), and a ring allreduce sends
and receives about twice that per process. Data parallelism pays off when
the computation of a step is large relative to that volume divided by the
bandwidth between the processes: large batches, convolutions (many
operations per weight), wide layers with large batches. A small MLP on
small batches does microseconds of arithmetic per step, so the
communication and the fixed cost of a step dominate and its efficiency is
well below 1. Every process also applies the whole optimizer update to its
replica, a cost per step that does not shrink with P.

On a single 2-core machine the processes share the cores, caches and
memory bandwidth, and the baseline already runs its matrix products on
both cores through threaded BLAS. Two processes win there only where one
process leaves a core idle: in cdl's own kernels (im2col, pooling,
activations, the optimizer update), which run on one thread, and in small
matrix products that BLAS does not split well; where threaded BLAS keeps
both cores busy, the processes add the allreduce and the duplicated
update and gain nothing.
"""
import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

#: Prefix of the line in which rank 0 of a worker prints its result.
RESULT_PREFIX = "cdl-distributed-benchmark-result "
#: Classes of the random labels (every workload ends in a 10-way softmax).
CLASSES = 10
LEARNING_RATE = 1e-3
#: Most bytes of training inputs a worker generates; more steps are more epochs.
DATA_BYTES = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class Workload:
    """One network to train.

    Attributes
    ----------
    name : str
    input_shape : tuple of int
        Shape of one sample.
    batch : int
        Global batch size.
    steps : int
        Timed optimizer steps, a few seconds at P = 1 on a 2-core machine.
    hidden : tuple of int
        Widths of the hidden ReLU layers of an MLP; empty for the CNN.
    """

    name: str
    input_shape: tuple
    batch: int
    steps: int
    hidden: tuple = ()

    @property
    def is_cnn(self):
        return len(self.input_shape) == 3

    def describe(self):
        """Short text for the table, e.g. ``MLP 64-128-128-10``."""
        if self.is_cnn:
            return "CNN 28x28x1, conv16-pool-conv32-pool-10"
        sizes = (self.input_shape[0],) + self.hidden + (CLASSES,)
        return "MLP " + "-".join(str(s) for s in sizes)


WORKLOADS = {w.name: w for w in (
    # Communication and per-step overhead dominate: efficiency < 1 expected.
    Workload("mlp-small", (64,), batch=32, steps=20000, hidden=(128, 128)),
    Workload("mlp-medium", (784,), batch=256, steps=300, hidden=(512, 512)),
    Workload("mlp-wide", (784,), batch=512, steps=20, hidden=(2048, 2048)),
    # Few weights, much arithmetic per weight: the case that scales best.
    Workload("cnn", (28, 28, 1), batch=128, steps=75),
)}
QUICK_WORKLOADS = ("mlp-small", "mlp-medium")
#: --quick times this fraction of each workload's steps.
QUICK_STEP_FRACTION = 0.5


# --- worker: one measurement, run under mpiexec ---------------------------------

def build_model(workload):
    """The compiled cdl model of ``workload`` (seeded, float32, Adam)."""
    import cdl
    from cdl import layers, optimizers

    if workload.is_cnn:
        stack = [layers.Conv2D(16, 3, padding="same", activation="relu"),
                 layers.MaxPool2D(2),
                 layers.Conv2D(32, 3, padding="same", activation="relu"),
                 layers.MaxPool2D(2),
                 layers.Flatten(),
                 layers.Dense(CLASSES)]
    else:
        stack = [layers.Dense(width, activation="relu") for width in workload.hidden]
        stack.append(layers.Dense(CLASSES))
    model = cdl.Sequential(stack, input_shape=workload.input_shape, seed=0, dtype="float32")
    model.compile(optimizers.Adam(lr=LEARNING_RATE), "cross_entropy")
    return model


def make_data(workload, n_samples, seed=0):
    """Random standard-normal inputs and labels; the same on every process."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples,) + workload.input_shape, dtype=np.float32)
    y = rng.integers(0, CLASSES, n_samples)
    return x, y


def segments_and_batches(workload, steps):
    """``(segments, batches)``: at least ``steps`` steps as fits of one
    epoch of ``batches`` batches each, with at most ``DATA_BYTES`` of
    inputs a fit (fast workloads loop over a small data set instead of
    holding hundreds of megabytes)."""
    batch_bytes = workload.batch * int(np.prod(workload.input_shape)) * 4
    most = max(1, DATA_BYTES // batch_bytes)
    segments = -(-steps // most)
    return segments, -(-steps // segments)


def node_cores():
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _loop_clock():
    """A callback that records the BLAS threads and adds up the seconds
    from the start to the end of the training loops of the fits it is
    passed to (after ``fit``'s setup, before its return)."""
    import cdl
    from cdl.callbacks import Callback

    class LoopClock(Callback):
        seconds = 0.0

        def on_train_begin(self, logs=None):
            # fit has set the per-process BLAS threads by now.
            self.threads = cdl.get_num_threads()
            self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds += time.perf_counter() - self.start

    return LoopClock()


def time_step_reductions(comm, grad_buffer, min_seconds=0.3):
    """Median seconds of one step's reductions alone: the gradient buffer
    and the 5-double statistics that ``fit`` sums with it.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
    grad_buffer : numpy.ndarray
        The model's flat gradient buffer (only its size and dtype are used).
    min_seconds : float
        Time to spend, roughly.

    Returns
    -------
    float
        The largest over the processes of each one's median.
    """
    from mpi4py import MPI

    grads = np.zeros_like(grad_buffer)  # zeros: no denormals, no overflow
    stats = np.zeros(5)

    def once():
        start = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, stats, op=MPI.SUM)
        comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
        return time.perf_counter() - start

    comm.Barrier()
    trial = statistics.median(once() for _ in range(5))
    # Every process must run the same number of collectives: rank 0 decides.
    count = int(np.clip(min_seconds / max(trial, 1e-7), 10, 2000))
    count = comm.bcast(count, root=0)
    median = statistics.median(once() for _ in range(count))
    return comm.allreduce(median, op=MPI.MAX)


def worker(workload_name, steps, distributed, threads):
    """Train one workload once and return rank 0's result (None on other ranks).

    Parameters
    ----------
    workload_name : str
    steps : int
        Timed optimizer steps (rounded up to whole segments).
    distributed : bool
        ``fit(distributed=True)`` (under mpiexec), else a plain one-process fit.
    threads : int or None
        BLAS threads of a single process (default: the node's cores). With
        more than one process, cdl sets them (cores // processes per node).

    Returns
    -------
    dict or None
    """
    import cdl

    workload = WORKLOADS[workload_name]
    comm = None
    if distributed:
        import cdl.distributed

        comm = cdl.distributed.init()
    processes = 1 if comm is None else comm.Get_size()
    if processes == 1:
        # cdl sets the threads only when several processes share a node.
        cdl.set_num_threads(threads or node_cores())

    model = build_model(workload)
    segments, batches = segments_and_batches(workload, steps)
    steps = segments * batches
    x, y = make_data(workload, workload.batch * batches)
    warm_up = workload.batch * min(batches, max(2, steps // 20))
    model.fit(x[:warm_up], y[:warm_up], batch_size=workload.batch, epochs=1, verbose=0,
              distributed=distributed)
    weights = model.param_buffer.copy()
    optimizer_state = model.optimizer.state_dict()

    clock = _loop_clock()
    fit_seconds = 0.0
    for _ in range(segments):
        model.param_buffer[...] = weights
        model.optimizer.load_state_dict(optimizer_state)
        fit_start = time.perf_counter()
        model.fit(x, y, batch_size=workload.batch, epochs=1, verbose=0,
                  distributed=distributed, callbacks=[clock])
        fit_seconds += time.perf_counter() - fit_start

    reductions = None
    thread_counts = [clock.threads]
    if comm is not None:
        reductions = time_step_reductions(comm, model.grad_buffer)
        thread_counts = comm.gather(clock.threads, root=0)
        if comm.Get_rank() != 0:
            return None
    loop_seconds = clock.seconds
    return {
        "workload": workload.name, "processes": processes, "distributed": distributed,
        "threads": thread_counts, "steps": steps, "batch": workload.batch,
        "params": model.count_params(), "itemsize": model.grad_buffer.itemsize,
        "loop_seconds": loop_seconds, "fit_seconds": fit_seconds,
        "samples_per_second": workload.batch * steps / loop_seconds,
        "step_seconds": loop_seconds / steps, "reduction_seconds": reductions,
    }


# --- harness: launch the workers, collect, report --------------------------------

@dataclasses.dataclass(frozen=True)
class Config:
    """How one measurement runs: ``processes`` under mpiexec, with
    ``fit(distributed=...)``."""

    processes: int
    distributed: bool

    @property
    def label(self):
        if self.processes == 1:
            return "1 (MPI)" if self.distributed else "1"
        return str(self.processes)


BASELINE = Config(1, distributed=False)


class WorkerFailed(RuntimeError):
    """A worker exited with an error or ran out of time."""


def _stop(proc):
    """End the mpiexec process group ``proc`` leads: an interrupt first, so
    that mpiexec can stop its processes (remote ones too), then a kill."""
    for sig, grace in ((signal.SIGINT, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(command, timeout):
    """Run ``command`` and return its stdout; WorkerFailed (with its stderr)
    if it fails or takes longer than ``timeout`` seconds."""
    # A session of its own, so that the whole mpiexec tree can be stopped.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        stdout, stderr = proc.communicate()
        raise WorkerFailed(f"timed out after {timeout:g} s: {' '.join(command)}\n"
                           f"{stdout}{stderr}") from None
    except BaseException:  # an interrupt of this script: stop the workers too
        _stop(proc)
        raise
    if proc.returncode != 0:
        raise WorkerFailed(f"exit status {proc.returncode}: {' '.join(command)}\n"
                           f"{stdout}{stderr}")
    return stdout


def worker_command(args, workload, steps, config):
    """The mpiexec command line of one measurement."""
    command = shlex.split(args.mpiexec) + ["-n", str(config.processes)]
    if args.hostfile:
        # MPICH's Hydra takes -hostfile as well as -f, and Open MPI only -hostfile.
        command += ["-hostfile", args.hostfile]
    command += [sys.executable, os.path.abspath(__file__), "--worker",
                "--workloads", workload.name, "--steps", str(steps)]
    if config.distributed:
        command.append("--distributed")
    if args.threads:
        command += ["--threads", str(args.threads)]
    return command


def measure(args, workload, steps, config):
    """Run one measurement; rank 0's result dict."""
    stdout = run_command(worker_command(args, workload, steps, config), args.timeout)
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise WorkerFailed(f"no result from the worker of {workload.name} at P = "
                           f"{config.label}; its output:\n{stdout}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def rotated(items, shift):
    """``items`` rotated left by ``shift``."""
    shift %= len(items)
    return items[shift:] + items[:shift]


def timed_steps(workload, fraction):
    """Timed steps of ``workload`` in a run with ``fraction`` of its steps,
    rounded up to whole segments (see ``segments_and_batches``)."""
    segments, batches = segments_and_batches(workload, max(4, round(workload.steps * fraction)))
    return segments * batches


def run_rounds(args, workloads, configs, steps_fraction, log):
    """Every workload at every config, ``args.rounds`` times; the results as
    ``{(workload name, config): [result per round]}``."""
    results = {(w.name, c): [] for w in workloads for c in configs}
    for round_index in range(args.rounds):
        for workload in workloads:
            steps = timed_steps(workload, steps_fraction)
            for config in rotated(configs, round_index):
                result = measure(args, workload, steps, config)
                results[workload.name, config].append(result)
                log(f"round {round_index + 1}/{args.rounds} {workload.name:<10} "
                    f"P={config.label:<8} {result['samples_per_second']:>12,.0f} samples/s")
    return results


def summarize(workload, configs, results):
    """One table row per config of ``workload``, as dicts."""
    baseline = results[workload.name, BASELINE]
    rows = []
    for config in configs:
        runs = results[workload.name, config]
        # Ratios within a round: both runs saw the same state of the machine.
        speedups = [run["samples_per_second"] / base["samples_per_second"]
                    for run, base in zip(runs, baseline)]
        step = statistics.median(run["step_seconds"] for run in runs)
        reduction = None
        if config.distributed:
            reduction = statistics.median(run["reduction_seconds"] for run in runs)
        rows.append({
            "config": config, "params": runs[0]["params"],
            "megabytes": runs[0]["params"] * runs[0]["itemsize"] / 1e6,
            "threads": runs[0]["threads"],
            "samples_per_second": statistics.median(r["samples_per_second"] for r in runs),
            "speedup": statistics.median(speedups),
            "speedup_range": (min(speedups), max(speedups)),
            "step": step, "reduction": reduction,
        })
    return rows


def _threads_text(counts):
    """The BLAS threads of each process: ``1`` if all have one, ``1,2`` if not."""
    if len(set(counts)) == 1:
        return str(counts[0])
    return ",".join(str(c) for c in counts)


def _speedup_text(median, extremes):
    """``1.47 (1.41-1.52)``: the median and, over several rounds, the range."""
    low, high = extremes
    if low == high:
        return f"{median:.2f}"
    return f"{median:.2f} ({low:.2f}-{high:.2f})"


def _ms(seconds):
    """Milliseconds to 3 significant digits, ``-`` for None."""
    return "-" if seconds is None else f"{seconds * 1e3:.3g}"


def format_table(workloads, configs, results):
    """The Markdown table of all results."""
    lines = ["| workload | params | MB/step | batch | P | threads/process | samples/s | speed-up "
             "| efficiency | ms/step | allreduce ms | compute ms |",
             "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for workload in workloads:
        for i, row in enumerate(summarize(workload, configs, results)):
            first = i == 0
            compute = row["step"] - (row["reduction"] or 0.0)
            cells = [
                f"{workload.name} ({workload.describe()})" if first else "",
                f"{row['params']:,}" if first else "",
                f"{row['megabytes']:.3g}" if first else "",
                str(workload.batch) if first else "",
                row["config"].label,
                _threads_text(row["threads"]),
                f"{row['samples_per_second']:,.0f}",
                _speedup_text(row["speedup"], row["speedup_range"]),
                f"{row['speedup'] / row['config'].processes:.2f}",
                _ms(row["step"]), _ms(row["reduction"]), _ms(compute),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mpi_library_version():
    """First line of ``MPI.Get_library_version()``, read without starting MPI
    in this process (the standard allows the call before initialisation)."""
    import mpi4py

    mpi4py.rc.initialize = False
    from mpi4py import MPI

    return MPI.Get_library_version().strip().splitlines()[0]


def header(args, workloads, steps_fraction):
    """The lines printed above the table: when, what, on which software."""
    import cdl
    import mpi4py

    processes = " ".join(str(p) for p in args.processes)
    steps = ", ".join(f"{w.name} {timed_steps(w, steps_fraction)}" for w in workloads)
    threads = f"{args.threads} BLAS threads" if args.threads else \
        "as many BLAS threads as its node has cores"
    return "\n".join([
        "# cdl data-parallel scaling benchmark",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- cdl {cdl.__version__}, numpy {np.__version__}, mpi4py {mpi4py.__version__}, "
        f"Python {platform.python_version()}",
        f"- MPI: {mpi_library_version()}",
        f"- machine: {platform.node()}, {platform.machine()}, {node_cores()} cores; "
        f"hostfile: {args.hostfile or 'none (this machine)'}",
        f"- processes P: {processes}; rounds: {args.rounds} (medians; the order of P "
        f"rotates from round to round); timed steps per run: {steps}",
        f"- P=1: fit(distributed=False) in one process with {threads} (the "
        "cores that the processes of a node share)",
        "- 1 (MPI): fit(distributed=True) under mpiexec -n 1, same threads: the cost of "
        "the distributed code path alone",
        "- P>1: fit(distributed=True) under mpiexec -n P; cdl gives each process "
        "cores // processes-per-node BLAS threads",
        "- float32, Adam, random data in memory (seeded); batch is the global batch; "
        "MB/step = parameter bytes, the allreduce volume of a step; speed-up = samples/s "
        "over P=1's in the same round (median, range over rounds); efficiency = "
        "speed-up / P",
        "- allreduce ms: one step's reductions (gradients + 5 statistics) timed alone "
        "after training; compute ms = ms/step - allreduce ms",
    ])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Throughput and parallel efficiency of cdl's data-parallel training "
                    "with 1, 2, ... MPI processes.")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], metavar="P",
                        help="process counts (P=1, the one-process baseline, always runs)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=None,
                        metavar="NAME",
                        help=f"workloads to run, of {', '.join(WORKLOADS)} (default: all; "
                             f"with --quick: {', '.join(QUICK_WORKLOADS)})")
    parser.add_argument("--quick", action="store_true",
                        help="one round of the small workloads with fewer steps")
    parser.add_argument("--mpiexec", default="mpiexec",
                        help='the MPI launcher, with any options ("mpiexec -bind-to core")')
    parser.add_argument("--hostfile", "-f", default=None, metavar="FILE",
                        help="hostfile passed to mpiexec (as -hostfile FILE)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads of the one-process runs (default: the cores)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds before a measurement is stopped as hung")
    # Internal: what mpiexec runs.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or any(p < 1 for p in args.processes) or \
            (args.threads is not None and args.threads < 1):
        parser.error("--rounds, --processes and --threads must be positive")
    if args.worker and (args.steps is None or args.steps < 1 or not args.workloads):
        parser.error("--worker needs --workloads NAME and --steps N >= 1")
    return args


def worker_main(args):
    """The ``--worker`` mode: one measurement, printed by rank 0 as JSON."""
    result = worker(args.workloads[0], args.steps, args.distributed, args.threads)
    if result is not None:
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.quick:
        args.rounds = 1
    names = args.workloads or (QUICK_WORKLOADS if args.quick else list(WORKLOADS))
    workloads = [WORKLOADS[name] for name in names]
    steps_fraction = QUICK_STEP_FRACTION if args.quick else 1.0
    configs = [BASELINE, Config(1, distributed=True)]
    configs += [Config(p, distributed=True) for p in sorted(set(args.processes)) if p > 1]

    print(header(args, workloads, steps_fraction), flush=True)
    # Progress goes to stderr, so that stdout is the Markdown report alone.
    log = functools.partial(print, file=sys.stderr, flush=True)
    try:
        results = run_rounds(args, workloads, configs, steps_fraction, log)
    except WorkerFailed as err:
        print(f"\nbenchmark worker failed: {err}", file=sys.stderr)
        return 1
    print()
    print(format_table(workloads, configs, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
