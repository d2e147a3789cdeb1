"""How ``fit`` and ``evaluate`` run: in one process, or data-parallel over many.

The trainer's loops are written once, over a ``Strategy``: the strategy
decides which rows of each batch this process trains on, how a step's
gradients are combined, how results are reduced and how failures are
reported. ``SingleProcess`` is the strategy of ordinary training;
``cdl.distributed.DataParallel`` splits every batch between the MPI
processes of a job.

What a strategy calls on the model
----------------------------------
Besides the model protocol (``cdl.training.protocol``), a strategy uses the
trainer's batch-level methods, which take data already checked by ``fit``:

- ``compute_gradients(x, y, sample_weight, plan)``: the batch loss and
  outputs, with the loss's gradients in ``grads``;
- ``apply_gradients(loss)``: weight penalties, clipping and the optimizer
  step; returns the loss with the penalties;
- ``evaluation_sums(x, y, sample_weight, batch_size)``: the loss summed
  over the batches of ``(x, y)``, updating the metrics;
- ``evaluation_results(loss_sum, n)``: ``evaluate``'s dict.
"""
import abc

from cdl import _concurrency
from cdl.training import adapters
from cdl._validation import check_number

__all__ = ["Strategy", "SingleProcess"]


class Strategy(abc.ABC):
    """The execution strategy of ``fit`` and ``evaluate``.

    A ``fit`` call makes one strategy and gives it to the loop: the strategy
    runs the whole call (``run``), makes every process agree on the checked
    arguments and starting state (``agree``, ``check_same``, ``start``),
    places each batch (``place`` for array data, ``place_local`` for an
    iterable), reads it (``reader``), takes the step (``step``) and reduces
    the results (``any``, ``merge_metrics``, ``metric_states``,
    ``evaluate``, ``evaluation_results``). The model exposes the running
    strategy as ``model.strategy``; callbacks ask it whether their process
    writes files (``writes``) and for the metrics' accumulators.

    Attributes
    ----------
    rank : int
        This process's index among the ``size`` processes.
    size : int
        The number of processes training the model together.
    stage, epoch, batch
        Where training is (for error messages); the loop sets them.

    Examples
    --------
    >>> from cdl.training.strategy import SingleProcess
    >>> strategy = SingleProcess()
    >>> strategy.rank, strategy.size, strategy.writes
    (0, 1, True)
    >>> strategy.place(slice(0, 32))     # one process trains on the whole batch
    (slice(0, 32, None), None)
    """

    rank, size = 0, 1
    stage = epoch = batch = None

    @property
    def writes(self):
        """True in the process that prints progress and writes files (rank 0)."""
        return self.rank == 0

    @abc.abstractmethod
    def run(self, body):
        """Run ``body()`` (the whole ``fit`` or ``evaluate`` call) and return
        its result."""

    @abc.abstractmethod
    def agree(self, body, what):
        """Run ``body()`` in every process; if it raises in any of them,
        raise in all. ``what`` names the stage in error messages."""

    @abc.abstractmethod
    def start(self, model):
        """Put ``model`` in the state training starts from (every replica
        the same), after the callbacks' ``on_train_begin``."""

    @abc.abstractmethod
    def check_same(self, value, what):
        """Raise if ``value`` differs between the processes."""

    @abc.abstractmethod
    def check_metrics(self, metrics):
        """Raise TypeError if a metric cannot be used with this strategy."""

    @abc.abstractmethod
    def place(self, index):
        """This process's rows of the batch ``index`` (a slice or an index
        array over array data) and the ``window`` that places them in the
        batch (passed on to ``step``)."""

    @abc.abstractmethod
    def place_local(self, rows, error=None):
        """``(running, window)`` for a batch of ``rows`` samples that this
        process read itself from an iterable (``rows`` None when it ran
        out); ``error``, raised while reading it, is raised here."""

    @abc.abstractmethod
    def reader(self, source):
        """The function that loads a placed batch of ``source`` as
        ``(x, y, sample_weight)``."""

    @abc.abstractmethod
    def step(self, model, x, y, w, plan, window):
        """One optimizer step on a loaded batch; returns ``(batch loss, the
        outputs of this process's rows or None, batch size)``. ``plan`` is
        the fused step to use (None: layer by layer)."""

    @abc.abstractmethod
    def any(self, flag):
        """True in every process if ``flag`` is true in any."""

    @abc.abstractmethod
    def merge_metrics(self, metrics):
        """Make every process's metrics hold what all of them accumulated."""

    @abc.abstractmethod
    def metric_states(self, metrics):
        """The accumulators of ``metrics`` (``Metric.get_state``) over all
        the processes, leaving the metrics as they are; every process calls
        it."""

    @abc.abstractmethod
    def evaluate(self, model, x, y, weights, batch_size):
        """``evaluate``'s results on checked arrays ``(x, y)``."""

    @abc.abstractmethod
    def evaluation_results(self, model, loss_sum, n):
        """``evaluate``'s results from the summed loss over ``n`` samples
        (per process) and the metrics' accumulators."""


class SingleProcess(Strategy):
    """Training in this process alone: every batch whole, nothing to reduce.

    Examples
    --------
    >>> from cdl.training.strategy import SingleProcess
    >>> SingleProcess().any(False)
    False
    """

    def run(self, body):
        return body()

    def agree(self, body, what):
        return body()

    def start(self, model):
        pass

    def check_same(self, value, what):
        pass

    def check_metrics(self, metrics):
        pass

    def place(self, index):
        return index, None

    def place_local(self, rows, error=None):
        if error is not None:
            raise error
        return rows is not None, None

    def reader(self, source):
        return source.load

    def step(self, model, x, y, w, plan, window):
        n = adapters.num_rows(x)
        if n == 0:
            raise ValueError("a batch has no samples")
        loss, out = model.compute_gradients(x, y, w, plan)
        return model.apply_gradients(loss), out, n

    def any(self, flag):
        return flag

    def merge_metrics(self, metrics):
        pass

    def metric_states(self, metrics):
        return [m.get_state() for m in metrics]

    def evaluate(self, model, x, y, weights, batch_size):
        # The loss and metric objects accumulate over one call: calls take turns.
        with _concurrency.guard_of(model).evaluate_lock:
            batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
            n = adapters.num_rows(x)
            if n == 0:
                raise ValueError("cannot evaluate on zero samples")
            for m in model.metrics:
                m.reset()
            return model.evaluation_results(
                model.evaluation_sums(x, y, weights, batch_size), n)

    def evaluation_results(self, model, loss_sum, n):
        if n == 0:
            raise ValueError("cannot evaluate on zero samples")
        return model.evaluation_results(loss_sum, n)
