"""Losses and metrics of models with several outputs.

``compile`` of a model with several outputs (or given a loss per output)
makes one ``OutputLosses``: a loss per output (or none: that output is not
trained through), each weighted by its ``loss_weights`` entry, summed into
the one loss the trainer minimises. Its ``forward`` and ``backward`` take
and return lists in output order, so the training loops, which call a
loss's ``forward`` and ``backward``, are the same for one output and for
several. Metrics are made per output (``OutputMetric``, reported as
``<output>_<metric>``), and every trained output reports its own loss
(``OutputLoss``, ``<output>_loss``), the names Keras writes in ``History``.
"""
import copy

from cdl import losses as _losses
from cdl import metrics as _metrics
from cdl._validation import check_number

__all__ = ["OutputLosses", "OutputLoss", "OutputMetric", "compile_outputs", "per_output"]


def per_output(value, index):
    """The entry of output ``index`` of a per-output value: a list's entry,
    or the value itself when it is shared by every output (one array of
    sample weights) or None."""
    if isinstance(value, list):
        return value[index]
    return value


def listed(value):
    """Outputs or targets as a list in output order: a model with one output
    computes one array, not a list of one (its loss may still be an
    ``OutputLosses``, when compiled with ``loss_weights``)."""
    return value if isinstance(value, list) else [value]


class OutputLosses:
    """The loss of a model with several outputs: the weighted sum of a loss
    per output.

    Parameters
    ----------
    names : list of str
        The model's output names, in order.
    losses : list of (cdl.losses.Loss or None)
        Each output's loss; None for an output that is not trained.
    weights : list of float
        Each output's weight in the sum (``loss_weights``).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> from cdl.training.outputs import OutputLosses
    >>> loss = OutputLosses(["cls", "reg"], [losses.CrossEntropy(), losses.MSE()], [1.0, 0.5])
    >>> preds = [np.zeros((2, 3)), np.ones((2, 1))]
    >>> value = loss.forward(preds, [np.array([0, 2]), np.zeros((2, 1))])
    >>> round(value, 4)                      # log(3) + 0.5 * 1
    1.5986
    >>> [g.shape for g in loss.backward()]
    [(2, 3), (2, 1)]
    """

    def __init__(self, names, losses, weights):
        self.names = list(names)
        self.losses = list(losses)
        self.weights = [float(w) for w in weights]
        if not any(loss is not None for loss in self.losses):
            raise ValueError("no output has a loss: give at least one")
        self._last = None
        self._single = False

    def __repr__(self):
        parts = ", ".join(f"{n}: {loss!r} x {w:g}" for n, loss, w in
                          zip(self.names, self.losses, self.weights) if loss is not None)
        return f"OutputLosses({parts})"

    def loss_of(self, index):
        """The loss of output ``index`` (None if it is not trained)."""
        return self.losses[index]

    def forward(self, pred, target, sample_weight=None):
        """The weighted sum of the outputs' losses (each a mean over the
        batch); ``pred`` and ``target`` are lists in output order,
        ``sample_weight`` None, one array for every output or a list.
        A model with one output may give ``pred`` as one array (and then
        gets one array from ``backward``)."""
        self._single = not isinstance(pred, list)
        pred, target = listed(pred), listed(target)
        total = 0.0
        self._last = []
        for i, (loss, weight) in enumerate(zip(self.losses, self.weights)):
            if loss is None:
                continue
            if target[i] is None:
                raise ValueError(f"output {self.names[i]!r} has a loss but no targets")
            value = loss.forward(pred[i], target[i], per_output(sample_weight, i))
            total += weight * value
            self._last.append(i)
        return total

    def backward(self):
        """The gradients with respect to each output of the last
        ``forward`` (the loss weights applied), None for an untrained one;
        one array if ``forward`` was given one."""
        if self._last is None:
            raise RuntimeError("backward called before forward")
        grads = [None] * len(self.losses)
        for i in self._last:
            grad = self.losses[i].backward()
            if self.weights[i] != 1.0:
                grad = grad * grad.dtype.type(self.weights[i])
            grads[i] = grad
        return grads[0] if self._single else grads

    def _divides_by_samples(self):
        return all(loss is None or loss._divides_by_samples() for loss in self.losses)

    def _divisor(self, target, n):
        """The batch's divisor for data-parallel training: the sample count,
        which every output's mean must then be divided by."""
        if not self._divides_by_samples():
            raise ValueError("data-parallel training of several outputs needs every output's "
                             "loss to average over samples; a class-weighted loss "
                             "(weight=...) divides by the batch's class weights instead")
        return float(n)

    def get_config(self):
        """``{"losses": {name: loss config or None}, "loss_weights": {name: w}}``."""
        return {
            "losses": {n: None if loss is None else {"class_name": type(loss).__name__,
                                                     "config": loss.get_config()}
                       for n, loss in zip(self.names, self.losses)},
            "loss_weights": {n: w for n, loss, w in zip(self.names, self.losses, self.weights)
                             if loss is not None},
        }


class OutputMetric(_metrics.Metric):
    """A metric of one output of a model with several outputs, reported as
    ``<output name>_<metric name>``.

    Parameters
    ----------
    metric : cdl.metrics.Metric
    index : int
        The output's position.
    output : str
        The output's name.
    """

    def __init__(self, metric, index, output):
        self.index = index
        self.output = output
        self._metric = metric
        super().__init__(f"{output}_{metric.name}")

    def reset(self):
        self._metric.reset()

    def update(self, y_true, y_pred, sample_weight=None):
        self._metric.update(listed(y_true)[self.index], listed(y_pred)[self.index],
                            per_output(sample_weight, self.index))

    def result(self):
        return self._metric.result()

    def merge_state(self, other):
        if not isinstance(other, OutputMetric):
            raise TypeError(f"cannot merge a {type(other).__name__} into {self.name!r}")
        self._metric.merge_state(other._metric)

    def get_state(self):
        return {"_metric": self._metric.get_state()}

    def set_state(self, state):
        if not isinstance(state, dict) or set(state) != {"_metric"}:
            raise ValueError(f"the saved state of metric {self.name!r} does not fit it")
        self._metric.set_state(state["_metric"])

    def __repr__(self):
        return f"OutputMetric({self._metric!r}, output={self.output!r})"


class OutputLoss(_metrics.Metric):
    """The mean loss of one output (without its loss weight), reported as
    ``<output name>_loss``.

    Parameters
    ----------
    loss : cdl.losses.Loss
        The output's loss; the metric computes it on a copy of its own, so
        that it never disturbs the loss the model trains with.
    index : int
    output : str
    """

    def __init__(self, loss, index, output):
        self.index = index
        self.output = output
        self._loss = copy.deepcopy(loss)
        self._mean = _metrics.Mean()
        super().__init__(f"{output}_loss")

    def reset(self):
        self._mean.reset()

    def update(self, y_true, y_pred, sample_weight=None):
        pred = listed(y_pred)[self.index]
        n = pred.shape[0]
        if n:
            value = self._loss.forward(pred, listed(y_true)[self.index],
                                       per_output(sample_weight, self.index))
            self._mean.update(value, sample_weight=n)

    def result(self):
        return self._mean.result()

    def merge_state(self, other):
        if not isinstance(other, OutputLoss):
            raise TypeError(f"cannot merge a {type(other).__name__} into {self.name!r}")
        self._mean.merge_state(other._mean)

    def get_state(self):
        return {"_mean": self._mean.get_state()}

    def set_state(self, state):
        if not isinstance(state, dict) or set(state) != {"_mean"}:
            raise ValueError(f"the saved state of metric {self.name!r} does not fit it")
        self._mean.set_state(state["_mean"])

    def __repr__(self):
        return f"OutputLoss({self._loss!r}, output={self.output!r})"


def _per_name(value, names, what, allow_missing):
    """A per-output argument (a dict by output name, or a list in output
    order) as a list in output order; None entries for missing names."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"{what} has unknown output name(s) "
                             f"{', '.join(repr(k) for k in unknown)}; the outputs are "
                             f"{', '.join(repr(n) for n in names)}")
        missing = [n for n in names if n not in value]
        if missing and not allow_missing:
            raise ValueError(f"{what} is missing output(s) {', '.join(repr(n) for n in missing)}")
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"{what} has {len(value)} entries, the model has {len(names)} "
                             f"outputs ({', '.join(repr(n) for n in names)})")
        return list(value)
    return None


def compile_outputs(names, loss, loss_weights, metrics):
    """What ``compile`` makes of ``loss``, ``loss_weights`` and ``metrics``
    for a model with outputs ``names``.

    Returns
    -------
    (loss, metrics, metric_specs)
        With one output and one loss: the plain loss and metrics (as for a
        Sequential). Otherwise an ``OutputLosses``, the per-output loss
        metrics followed by the ``OutputMetric`` of each output, and the
        metric names given, per output (a dict, for ``compile_config``).

    Raises
    ------
    ValueError
        For a key that names no output, a count that differs from the
        outputs', no loss for any output, or metrics for an output
        without a loss.
    """
    per_loss = _per_name(loss, names, "loss", allow_missing=True)
    if per_loss is None:
        per_loss = [loss] * len(names)   # one loss for every output, as Keras
    if loss_weights is None:
        weights = [1.0] * len(names)
    else:
        weights = _per_name(loss_weights, names, "loss_weights", allow_missing=True)
        if weights is None:
            raise TypeError("loss_weights must be a dict by output name or a list in output "
                            f"order, got {type(loss_weights).__name__}")
        weights = [1.0 if w is None else check_number(w, f"loss_weights[{n!r}]", low=0.0)
                   for n, w in zip(names, weights)]
    every_output = False
    if metrics is None:
        per_metrics = [[] for _ in names]
    elif isinstance(metrics, dict):
        per_metrics = [list(m) if isinstance(m, (list, tuple)) else [m]
                       for m in (x or [] for x in _per_name(metrics, names, "metrics", True))]
    elif isinstance(metrics, (list, tuple)) and metrics and all(
            isinstance(m, (list, tuple)) or m is None for m in metrics):
        per_metrics = [list(m or []) for m in _per_name(list(metrics), names, "metrics", True)]
    elif isinstance(metrics, (list, tuple)):
        per_metrics = [list(metrics) for _ in names]   # every output, as Keras 2
        every_output = True
    else:
        raise TypeError(f"metrics must be a list, a list per output or a dict by output name, "
                        f"got {type(metrics).__name__}")
    resolved, used = [], set()
    for spec in per_loss:
        loss_i = None if spec is None else _losses.get(spec)
        if loss_i is not None and id(loss_i) in used:
            # A loss keeps what its last forward needs for backward: one object
            # given for several outputs would hand every output the last one's.
            loss_i = copy.deepcopy(loss_i)
        if loss_i is not None:
            used.add(id(loss_i))
        resolved.append(loss_i)
    for i, (name, loss_i) in enumerate(zip(names, resolved)):
        if loss_i is None and per_metrics[i]:
            if every_output:
                per_metrics[i] = []   # one list for every output: those that are trained
                continue
            # Targets are only read for outputs with a loss: a metric of an
            # untrained output would get None at the first batch.
            raise ValueError(f"metrics are given for output {name!r}, which has no loss, so "
                             "no targets are read for it: give it a loss (with loss_weights 0 "
                             "to measure it without training through it)")
    if len(names) == 1 and resolved[0] is not None and weights[0] == 1.0:
        single = resolved[0]
        return single, [_metrics.get(m, loss=single) for m in per_metrics[0]], per_metrics[0]
    losses = OutputLosses(names, resolved, weights)
    made = []
    for i, (name, loss_i) in enumerate(zip(names, resolved)):
        if loss_i is not None:
            made.append(OutputLoss(loss_i, i, name))
    for i, (name, loss_i) in enumerate(zip(names, resolved)):
        for spec in per_metrics[i]:
            # A metric object given for several outputs: one copy each.
            own = copy.deepcopy(spec) if isinstance(spec, _metrics.Metric) else spec
            made.append(OutputMetric(_metrics.get(own, loss=loss_i), i, name))
    specs = {name: list(m) for name, m in zip(names, per_metrics) if m}
    return losses, made, specs
