"""Data-parallel training over MPI (through mpi4py).

Launch the same script in N processes, ``mpiexec -n N python train.py``,
and train with ``model.fit(x, y, ..., distributed=True)``. Every process
holds a replica of the model. Each global batch of ``batch_size`` samples
is split into N contiguous parts, one per process; each process computes
the gradient of its part, the gradients are summed with one allreduce
over the model's flat gradient buffer, and every process applies the same
optimizer step. The result is the model one process would train on the
same batches (to rounding), so a script does not change with N:

- ``batch_size`` is the global batch; the learning rate means the same;
- the weights, optimizer state and random generator of rank 0 are
  broadcast when ``fit`` starts;
- dropout and noise layers draw their numbers for the whole global batch
  from the shared generator and keep their part's rows, so each sample
  gets the same mask with any number of processes;
- losses and metrics are reduced over the processes before callbacks see
  them; validation data is split between the processes as well;
- only rank 0 prints progress and runs the callbacks that write files
  (``Callback.rank_zero_only``); ``BackupAndRestore`` restores on every
  rank and backs up from rank 0.

Graph models (``cdl.Model``, several inputs and outputs, shared layers)
train the same way, given the same lists or dicts of arrays on every
process: the rows of every input, target and per-output sample weight are
split alike, and the per-output losses and metrics (``cls_loss``,
``cls_accuracy``, ...) are merged over the processes like the others. The
processes' gradients are weighted by their share of the batch's samples,
so with a loss per output every output's loss must average over the
samples: a class-weighted loss (``CrossEntropy(weight=...)``) on one of
several outputs is refused when ``fit`` starts (weight the samples per
output instead); a model with one output may use one.

When a process fails inside ``fit`` (bad data in its part, an exception
in a layer), every process raises ``DistributedError`` naming the rank and
the error, at the same step. A failure that the others cannot be told
about in step (an exception in a rank-0 callback, an interrupt) aborts
the whole MPI job with the error printed, rather than leaving the other
processes waiting forever. ``init(timeout=...)`` adds a time limit to
every wait for the other processes.

Batch normalisation computes its batch statistics on each process's part
(as PyTorch's DistributedDataParallel without SyncBatchNorm), so a model
with it differs from one-process training; every other built-in layer
gives the one-process result.

mpi4py and an MPI library are an optional extra: ``pip install
"cdl[mpi]"`` installs mpi4py and MPICH as Python wheels, no system MPI
needed. For custom training loops, ``broadcast_parameters`` and
``average_gradients`` are the two calls to add.
"""
import copy
import importlib.util
import os
import sys
import time
import traceback

import numpy as np

from cdl import _concurrency, _sharding
from cdl._validation import check_bool, check_number, choose
from cdl.metrics import Metric
from cdl.training import adapters
from cdl.training.outputs import OutputLosses, OutputMetric
from cdl.training.strategy import Strategy

__all__ = ["DistributedError", "is_available", "init", "rank", "size", "is_main_process",
           "shard", "broadcast_parameters", "average_gradients", "allreduce", "barrier"]

_INSTALL_HINT = ('distributed training needs mpi4py and an MPI library: pip install "cdl[mpi]" '
                 "(mpi4py with the MPICH wheel), then launch with mpiexec -n N python script.py")


class DistributedError(RuntimeError):
    """A process of a distributed training failed; raised on every process.

    Attributes
    ----------
    failures : list of (int, str)
        The failing ranks and their errors, as ``"ExceptionType: message"``.

    Examples
    --------
    >>> from cdl.distributed import DistributedError
    >>> err = DistributedError([(1, "ValueError: x contains NaN")], "in step 3 of epoch 1")
    >>> print(err)
    rank 1 failed in step 3 of epoch 1: ValueError: x contains NaN
    """

    def __init__(self, failures, where=""):
        self.failures = list(failures)
        where = f" {where}" if where else ""
        text = "; ".join(f"rank {rank} failed{where}: {error}" for rank, error in self.failures)
        super().__init__(text)


def is_available():
    """True if mpi4py can be imported (without importing it, which starts MPI).

    Examples
    --------
    >>> import cdl.distributed
    >>> isinstance(cdl.distributed.is_available(), bool)
    True
    """
    return importlib.util.find_spec("mpi4py") is not None


def _mpi():
    """mpi4py's MPI module, or ImportError saying what to install."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return MPI


class _State:
    """Settings of this process: the communicator, the time limit."""

    comm = None
    timeout = None
    hook_installed = False


def init(comm=None, timeout=None, abort_on_exception=True):
    """Set up distributed training for this process (``fit(distributed=True)``
    calls it with the defaults if it was not called).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The processes that train together; default ``MPI.COMM_WORLD``.
    timeout : float, optional
        Seconds a process waits for the others in one collective
        operation before it aborts the job, printing which wait timed out.
        Default: wait as long as it takes (MPI's own behaviour), unless
        the environment variable ``CDL_DISTRIBUTED_TIMEOUT`` gives seconds.
    abort_on_exception : bool, default True
        Make an exception that nothing catches abort the whole MPI job
        (after printing its traceback) instead of ending this process
        alone while the others wait for it (what ``python -m mpi4py``
        does). Call ``init`` at the top of the script to cover the code
        before ``fit`` too.

    Returns
    -------
    mpi4py.MPI.Comm
        The communicator.

    Raises
    ------
    ImportError
        If mpi4py is not installed.
    TypeError
        If ``abort_on_exception`` is not True or False, or ``timeout`` is
        not a number.

    Examples
    --------
    >>> import cdl.distributed
    >>> comm = cdl.distributed.init(timeout=600)    # doctest: +SKIP
    """
    # Arguments first: a mistyped one is reported with or without mpi4py.
    abort_on_exception = check_bool(abort_on_exception, "abort_on_exception")
    if timeout is None and os.environ.get("CDL_DISTRIBUTED_TIMEOUT"):
        # Only the environment's text is parsed; an argument must be a number.
        raw = os.environ["CDL_DISTRIBUTED_TIMEOUT"]
        try:
            timeout = float(raw)
        except ValueError:
            raise ValueError("the environment variable CDL_DISTRIBUTED_TIMEOUT must be a "
                             f"number of seconds, got {raw!r}") from None
    if timeout is not None:
        timeout = check_number(timeout, "timeout", low=0.0)
    MPI = _mpi()
    _State.comm = MPI.COMM_WORLD if comm is None else comm
    _State.timeout = timeout
    if abort_on_exception and not _State.hook_installed:
        _install_abort_hook()
    return _State.comm


def _install_abort_hook():
    previous = sys.excepthook

    def abort_on_uncaught(kind, value, tb):
        previous(kind, value, tb)
        comm = _State.comm
        if comm is not None and comm.Get_size() > 1:
            _abort(comm, f"rank {comm.Get_rank()} ended with an uncaught {kind.__name__}")

    sys.excepthook = abort_on_uncaught
    _State.hook_installed = True


def _abort(comm, message):
    """Print ``message`` and end every process of ``comm``'s job."""
    sys.stderr.write(f"cdl.distributed: {message}; aborting the {comm.Get_size()} "
                     "processes\n")
    sys.stderr.flush()
    # mpiexec forwards the processes' output through pipes that the abort
    # tears down: give it a moment to pass the message on.
    time.sleep(0.5)
    comm.Abort(1)
    raise SystemExit(1)  # not reached: Abort ends the process


def _comm(comm=None):
    if comm is not None:
        return comm
    if _State.comm is None:
        init()
    return _State.comm


def rank(comm=None):
    """This process's rank (0 .. size - 1).

    Examples
    --------
    >>> import cdl.distributed
    >>> cdl.distributed.rank()          # doctest: +SKIP
    0
    """
    return _comm(comm).Get_rank()


def size(comm=None):
    """The number of processes training together.

    Examples
    --------
    >>> import cdl.distributed
    >>> cdl.distributed.size()          # doctest: +SKIP
    1
    """
    return _comm(comm).Get_size()


def is_main_process(comm=None):
    """True on rank 0, the process that should print and write files; True
    too when mpi4py is not installed (a single process).

    Examples
    --------
    >>> import cdl.distributed
    >>> if cdl.distributed.is_main_process():   # doctest: +SKIP
    ...     print("written once")
    """
    if comm is None and _State.comm is None and not is_available():
        return True
    return rank(comm) == 0


def shard(n, comm=None):
    """The rows ``slice(start, stop)`` of ``n`` that this process takes:
    contiguous parts whose sizes differ by at most one.

    Examples
    --------
    >>> import cdl.distributed
    >>> x_part = x[cdl.distributed.shard(len(x))]    # doctest: +SKIP
    """
    start, stop = _sharding.shard_bounds(int(n), rank(comm), size(comm))
    return slice(start, stop)


def barrier(comm=None):
    """Wait until every process gets here (with the ``init`` time limit).

    Examples
    --------
    >>> import cdl.distributed
    >>> cdl.distributed.barrier()     # doctest: +SKIP
    """
    _Group(_comm(comm)).barrier("barrier")


def allreduce(value, op="sum", comm=None):
    """Sum (or max, min) ``value`` over the processes; every process gets
    the result. Numbers give a float, arrays an array of their dtype.

    Examples
    --------
    >>> import cdl.distributed
    >>> total = cdl.distributed.allreduce(len(x_part))   # doctest: +SKIP
    """
    choose(op, ("sum", "max", "min"), "op")
    scalar = np.ndim(value) == 0
    buffer = np.array(value, dtype=np.float64 if scalar else None, copy=True)
    if buffer.dtype.kind not in "biuf":
        raise TypeError(f"allreduce takes numbers or arrays of numbers, got dtype "
                        f"{buffer.dtype}")
    buffer = np.ascontiguousarray(buffer)
    _Group(_comm(comm)).allreduce(buffer, op, "allreduce")
    return float(buffer) if scalar else buffer


def broadcast_parameters(model, root=0, comm=None):
    """Copy rank ``root``'s weights into every process's ``model`` (one
    broadcast of the flat parameter buffer), and its random generator's
    state, so that dropout draws the same numbers everywhere.

    Examples
    --------
    >>> import cdl.distributed
    >>> cdl.distributed.broadcast_parameters(model)     # doctest: +SKIP
    """
    model.ensure_built()
    group = _Group(_comm(comm))
    group.bcast_buffer(model.param_buffer, root, "broadcast_parameters")
    state = group.bcast_object(model.rng.bit_generator.state, root, "broadcast_parameters")
    model.rng.bit_generator.state = state


def average_gradients(model, weight=None, comm=None):
    """Average the gradients in ``model.grad_buffer`` over the processes
    (one allreduce), after each computed its own with ``backward``.

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
    weight : float, optional
        This process's weight in the average, e.g. the number of samples
        of its part of the batch; the result is sum(weight_r * grad_r) /
        sum(weight_r). Default: equal weights.

    Examples
    --------
    >>> import cdl.distributed
    >>> out = model.forward(x_part, training=True)             # doctest: +SKIP
    >>> loss = model.loss.forward(out, y_part)                 # doctest: +SKIP
    >>> model.backward(model.loss.backward())                  # doctest: +SKIP
    >>> cdl.distributed.average_gradients(model, weight=len(x_part))  # doctest: +SKIP
    >>> model.optimizer.step(model.params, model.grads)        # doctest: +SKIP
    """
    group = _Group(_comm(comm))
    grads = model.grad_buffer
    if weight is None:
        group.allreduce(grads, "sum", "average_gradients")
        grads *= grads.dtype.type(1.0 / group.size)
        return
    weight = check_number(weight, "weight", low=0.0)
    grads *= grads.dtype.type(weight)
    total = np.array([weight])
    group.allreduce(total, "sum", "average_gradients")
    group.allreduce(grads, "sum", "average_gradients")
    if total[0] == 0:
        raise ValueError("average_gradients: the weights of all processes are 0")
    grads *= grads.dtype.type(1.0 / total[0])


class _Group:
    """Collective operations of a communicator, waiting at most the
    ``init`` time limit; past it, the job is aborted with a message."""

    def __init__(self, comm):
        self.MPI = _mpi()
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = _State.timeout

    def _op(self, op):
        return {"sum": self.MPI.SUM, "max": self.MPI.MAX, "min": self.MPI.MIN}[op]

    def _wait(self, request, what):
        if self.timeout is None:
            request.Wait()
            return
        deadline = time.monotonic() + self.timeout
        while not request.Test():
            if time.monotonic() > deadline:
                self.abort(f"rank {self.rank} waited more than {self.timeout:g} s for the "
                           f"other processes in {what}; one of them has failed or hangs")

    def allreduce(self, buffer, op, what):
        """Reduce the contiguous array ``buffer`` in place over the processes."""
        if self.timeout is None:
            self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self._op(op))
        else:
            self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buffer, op=self._op(op)), what)

    def barrier(self, what):
        if self.timeout is None:
            self.comm.Barrier()
        else:
            self._wait(self.comm.Ibarrier(), what)

    def bcast_buffer(self, buffer, root, what):
        if self.timeout is None:
            self.comm.Bcast(buffer, root=root)
        else:
            self._wait(self.comm.Ibcast(buffer, root=root), what)

    def bcast_object(self, value, root, what):
        # Objects go through pickle between these processes (mpi4py's way);
        # a barrier first puts the time limit on the wait.
        self.barrier(what)
        return self.comm.bcast(value, root=root)

    def allgather(self, value, what):
        self.barrier(what)
        return self.comm.allgather(value)

    def abort(self, message):
        _abort(self.comm, message)


class DataParallel(Strategy):
    """The strategy of ``fit(distributed=True)`` and ``evaluate(distributed=True)``:
    each process's part of every batch, the reductions, and the handling of
    failures (see the module's documentation and
    ``cdl.training.strategy.Strategy`` for the methods).

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
        The model that this process trains.
    comm : mpi4py.MPI.Comm, optional
        The processes that train together; default that of ``init``.

    Examples
    --------
    >>> from cdl.distributed import DataParallel
    >>> strategy = DataParallel(model)       # doctest: +SKIP
    >>> strategy.rank, strategy.size         # doctest: +SKIP
    (0, 4)
    """

    def __init__(self, model, comm=None):
        self.model = model
        self.group = _Group(_comm(comm))
        self.rank, self.size = self.group.rank, self.group.size
        self.stage, self.epoch, self.batch = "when training started", None, None
        # divisor, loss * divisor, samples, failed, processes that drew noise
        self._stats = np.zeros(5)
        self._local_error = None
        self._agreed_error = None

    @property
    def where(self):
        """Where training is, for error messages."""
        if self.batch is None:
            return self.stage
        return f"in step {self.batch + 1} of epoch {self.epoch + 1}"

    # --- the whole fit call -------------------------------------------------

    def run(self, body):
        """Run ``fit``'s ``body``; a failure the other processes were not
        told about (they may be waiting in a collective) aborts the job."""
        try:
            with _blas_threads_per_process(self.group):
                return body()
        except DistributedError:
            raise
        except BaseException as err:
            if self.size == 1 or err is self._agreed_error:
                raise
            traceback.print_exc()
            self.group.abort(f"rank {self.rank} failed {self.where}: "
                             f"{type(err).__name__}: {err}")
            raise

    def agree(self, body, what):
        """Run ``body`` on every process; if it raises on any of them, raise
        on all (the original exception where it happened)."""
        error = None
        try:
            result = body()
        except Exception as err:  # reported to the others, then re-raised
            error = err
        failures = self.group.allgather(
            None if error is None else f"{type(error).__name__}: {error}", what)
        failed = [(r, text) for r, text in enumerate(failures) if text is not None]
        if error is not None:
            self._agreed_error = error  # the others know: raise it, do not abort
            raise error
        if failed:
            raise DistributedError(failed, what)
        return result

    def start(self, model):
        """Make every replica start from rank 0's weights, optimizer state
        and random generator."""
        broadcast_parameters(model, comm=self.group.comm)
        state = self.group.bcast_object(model.optimizer.state_dict(), 0, "starting fit")
        if self.rank != 0:
            model.optimizer.load_state_dict(state)
            progress = model.fit_progress
            if progress.resumes(progress.epoch):
                # A mid-epoch backup holds the metrics of all processes
                # merged: rank 0 continues from them, the others from zero.
                for metric in model.metrics:
                    metric.reset()

    def check_metrics(self, metrics):
        """Raise TypeError unless every metric can be merged across processes
        (the metric inside a per-output one included), and ValueError if the
        model's loss cannot be split between them (see ``_check_loss``);
        ``fit`` calls it, on every process, before training starts."""
        _check_mergeable(metrics)
        _check_loss(getattr(self.model, "loss", None))

    def check_same(self, value, what):
        """Raise DistributedError on every process if ``value`` differs between them."""
        values = self.group.allgather(value, what)
        if any(v != values[0] for v in values):
            raise DistributedError([(r, f"{what} is {v!r}") for r, v in enumerate(values)],
                                   "(the processes must agree)")

    # --- batches ------------------------------------------------------------

    def place(self, index):
        """This process's rows of the global batch ``index`` (a slice or an
        index array), and its window ``(start, stop, total)``."""
        if isinstance(index, slice):
            total = index.stop - index.start
            start, stop = _sharding.shard_bounds(total, self.rank, self.size)
            return slice(index.start + start, index.start + stop), (start, stop, total)
        total = len(index)
        start, stop = _sharding.shard_bounds(total, self.rank, self.size)
        return index[start:stop], (start, stop, total)

    def place_local(self, rows, error=None):
        """``(running, window)`` for a batch of ``rows`` that this process
        read itself (an iterable input); ``running`` is False on every
        process once any has run out (``rows`` of None). An ``error`` in
        reading it is raised on every process."""
        text = None if error is None else f"{type(error).__name__}: {error}"
        sizes = self.group.allgather((-1 if rows is None else int(rows), text), self.where)
        failed = [(r, t) for r, (_, t) in enumerate(sizes) if t is not None]
        if failed:
            raise DistributedError(failed, self.where) from error
        sizes = [n for n, _ in sizes]
        if any(s < 0 for s in sizes):
            return False, None
        start = sum(sizes[:self.rank])
        return True, (start, start + sizes[self.rank], sum(sizes))

    def reader(self, source):
        """``source.load``, returning (None, None, None) where it fails: the
        next ``step`` then tells every process."""
        def read(rows):
            try:
                return source.load(rows)
            except Exception as err:  # reported by step
                self._local_error = err
                return None, None, None
        return read

    # --- one step -----------------------------------------------------------

    def step(self, model, x, y, w, plan, window):
        """Forward and backward on this process's part, the gradients summed
        over the processes, then the update; returns (batch loss, this
        part's outputs or None, batch size)."""
        start, stop, total = window
        rows = stop - start
        stats = self._stats
        stats[:] = 0.0
        grads = model.grad_buffer
        out = None
        ran = False
        by_samples = model.loss._divides_by_samples()
        try:
            if x is None:
                raise self._local_error  # reading the batch failed
            divisor = model.loss._divisor(y, rows) if rows else 0.0
            if divisor > 0:
                with _sharding.window(start, stop, total):
                    loss, out = model.compute_gradients(x, y, w, plan)
                # Weighted by the part's share of the batch's divisor; when
                # that is the sample count, the total is known already and
                # one pass over the gradients does it.
                grads *= grads.dtype.type(divisor / total if by_samples else divisor)
                stats[0], stats[1], stats[2], stats[4] = divisor, loss * divisor, rows, 1.0
                ran = True
            else:
                grads[...] = 0
                stats[2] = rows
        except Exception as err:  # told to every process below
            self._local_error = err
            grads[...] = 0
            stats[3] = 1.0
        self.group.allreduce(stats, "sum", self.where)
        self.group.allreduce(grads, "sum", self.where)
        if stats[3]:
            self._raise_step_failure()
        if stats[0] == 0:
            # Every process sees it: raised everywhere, as one process would.
            self._agreed_error = ValueError(
                "the class weights of this batch's labels sum to 0, so their weighted mean "
                "is undefined (every sample belongs to a class of weight 0)")
            raise self._agreed_error
        if not by_samples:
            grads *= grads.dtype.type(1.0 / stats[0])
        if 0 < stats[4] < self.size:
            # A process without rows of its own (a batch smaller than the
            # number of processes) ran no layer, so drew no noise: give it
            # the generator of one that did.
            self._sync_generator(model, ran)
        loss = model.apply_gradients(float(stats[1] / stats[0]))
        return loss, out, int(stats[2])

    def _sync_generator(self, model, drew):
        source = self.group.allgather(drew, self.where).index(True)
        state = self.group.bcast_object(model.rng.bit_generator.state, source, self.where)
        model.rng.bit_generator.state = state

    def _raise_step_failure(self):
        error, self._local_error = self._local_error, None
        text = None if error is None else f"{type(error).__name__}: {error}"
        failures = [(r, t) for r, t in enumerate(self.group.allgather(text, self.where))
                    if t is not None]
        raise DistributedError(failures, self.where) from error

    # --- reductions ---------------------------------------------------------

    def any(self, flag):
        """True on every process if ``flag`` is true on any."""
        value = np.array([1.0 if flag else 0.0])
        self.group.allreduce(value, "max", self.where)
        return bool(value[0])

    def merge_metrics(self, metrics):
        """Make every process's metrics hold what all processes accumulated."""
        for metric, merged in zip(metrics, self._merged(metrics)):
            metric.reset()
            metric.merge_state(merged)

    def metric_states(self, metrics):
        """The accumulators of ``metrics`` merged over the processes, leaving
        the metrics themselves as they are."""
        return [merged.get_state() for merged in self._merged(metrics)]

    def _merged(self, metrics):
        """For each metric, a new one holding every process's accumulators,
        merged in rank order (so every process gets the same numbers)."""
        if not metrics:
            return []
        states = self.group.allgather([m.get_state() for m in metrics], self.where)
        merged = []
        for i, metric in enumerate(metrics):
            total = _fresh_copy(metric)
            total.reset()
            for per_process in states:
                part = _fresh_copy(metric)
                part.set_state(per_process[i])
                total.merge_state(part)
            merged.append(total)
        return merged

    def evaluate(self, model, x, y, weights, batch_size):
        """Loss and metrics on (x, y), each process evaluating its part."""
        n = adapters.num_rows(x)
        start, stop = _sharding.shard_bounds(n, self.rank, self.size)
        part = slice(start, stop)
        loss_sum = 0.0
        # The loss and metric objects accumulate over one call: calls take turns.
        with _concurrency.guard_of(model).evaluate_lock:
            for m in model.metrics:
                m.reset()
            if stop > start:
                loss_sum = model.evaluation_sums(adapters.take_rows(x, part),
                                                adapters.take_rows(y, part),
                                                adapters.take_rows(weights, part), batch_size)
            return self.evaluation_results(model, loss_sum, stop - start)

    def evaluation_results(self, model, loss_sum, n):
        """``evaluate``'s results from each process's summed loss over its
        ``n`` samples."""
        sums = np.array([loss_sum, n])
        self.group.allreduce(sums, "sum", "validation")
        if sums[1] == 0:
            raise ValueError("cannot evaluate on zero samples")
        self.merge_metrics(model.metrics)
        return model.evaluation_results(sums[0], sums[1])


def _check_mergeable(metrics):
    """Raise TypeError unless every metric of ``metrics`` can be merged
    across processes: it implements ``merge_state``, and so does the metric
    that a per-output one (``cdl.training.outputs.OutputMetric``) wraps."""
    for metric in metrics:
        inner = metric
        while isinstance(inner, OutputMetric):
            inner = inner._metric
        if type(inner).merge_state is Metric.merge_state:
            what = f"metric {metric.name!r} ({type(inner).__name__})"
            raise TypeError(f"{what} does not implement merge_state, so distributed "
                            "training cannot combine it across processes")


def _check_loss(loss):
    """Raise ValueError if data-parallel training cannot split ``loss``
    between the processes: a loss per output (a model with several
    outputs) whose outputs' losses do not all average over the samples.

    One process's part of a batch carries its share of the batch's divisor.
    With one loss that divisor may be anything (the sum of the class
    weights of the batch's labels); with a loss per output, each output's
    mean has its own, and the processes' gradients, summed in one buffer,
    can only be weighted by one: the sample count.
    """
    if not isinstance(loss, OutputLosses) or loss._divides_by_samples():
        return
    weighted = [f"{name!r} ({type(part).__name__})" for name, part in zip(loss.names, loss.losses)
                if part is not None and not part._divides_by_samples()]
    raise ValueError(
        "distributed training of a model with a loss per output needs every output's loss to "
        "average over the samples, but the loss of output(s) " + ", ".join(weighted) +
        " divides by another sum (the class weights of the batch's labels, for a loss with "
        "weight=...): weight the samples instead (sample_weight per output), or train in one "
        "process")


def _fresh_copy(metric):
    """A copy of ``metric`` that shares no accumulators with it."""
    other = copy.copy(metric)
    for key, value in vars(metric).items():
        if isinstance(value, Metric):
            setattr(other, key, _fresh_copy(value))
    return other


class _blas_threads_per_process:
    """Share the node's cores between its processes: each runs BLAS on
    cores // processes-on-the-node threads, unless the environment
    already says how many (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS...)."""

    _VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "BLIS_NUM_THREADS")

    def __init__(self, group):
        self.group = group
        self._limits = None

    def __enter__(self):
        if self.group.size == 1 or any(os.environ.get(v) for v in self._VARIABLES):
            return self
        # Split_type waits for every process with no time limit: a barrier
        # that has one goes first.
        self.group.barrier("starting distributed training")
        node = self.group.comm.Split_type(self.group.MPI.COMM_TYPE_SHARED)
        try:
            per_node = node.Get_size()
        finally:
            node.Free()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
        from threadpoolctl import threadpool_limits

        self._limits = threadpool_limits(limits=max(1, cores // per_node), user_api="blas")
        return self

    def __exit__(self, *exc):
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None
        return False
