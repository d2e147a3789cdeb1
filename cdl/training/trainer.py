"""Training, evaluation and prediction loops for models (Keras-style comfort).

``TrainingMixin`` gives a model ``compile``, ``fit``, ``evaluate``,
``predict``, ``train_step`` and friends on top of the model protocol
(``cdl.training.protocol``: a checked forward and backward pass, the
parameters and their gradients, the layers) and an optimizer's ``step``;
a ``Strategy`` (``cdl.training.strategy``) decides how each step runs. The loops gather
each batch into buffers allocated once per ``fit``/``predict`` call and
validate the data once, up front, not per batch.
"""
import copy
import math
import time

import numpy as np

from cdl import _anomaly, _concurrency, _determinism, _fused, _sharding
from cdl import losses as _losses
from cdl import optimizers as _optimizers
from cdl._validation import check_bool, check_number, choose
from cdl.training import adapters
from cdl.training.strategy import SingleProcess


def _metric_results(metrics, loss):
    """The metrics' results by name, for the logs of an epoch or of an
    evaluation whose mean loss is ``loss``.

    Batches whose loss is NaN or infinite (a diverged run) are not given to
    the metrics, which refuse non-finite predictions: they report what the
    other batches gave them, and a metric left without any batch reports
    NaN ("no data") instead of raising, so that the NaN loss shows what
    happened.
    """
    if math.isfinite(loss):
        return {m.name: float(m.result()) for m in metrics}
    return {m.name: float(m.result()) if _has_samples(m) else math.nan for m in metrics}


def _has_samples(metric):
    """False if ``metric``'s accumulators are those of a reset metric (it
    was given no samples); True as well when they cannot be compared (a
    custom metric keeping objects other than numbers and arrays)."""
    try:
        return not _same_state(metric.get_state(), _reset_copy(metric).get_state())
    except TypeError:
        return True


def _reset_copy(metric):
    """A reset copy of ``metric`` that leaves ``metric`` as it is: a shallow
    copy (a deep one would also copy whatever its function refers to) with
    its nested metrics copied too, since ``reset`` rebinds the accumulators
    (as the merge of distributed training assumes)."""
    from cdl.metrics import Metric

    other = copy.copy(metric)
    for key, value in vars(metric).items():
        if isinstance(value, Metric):
            setattr(other, key, _reset_copy(value))
    other.reset()
    return other


def _same_state(a, b):
    """Equality of two metric states (dicts of numbers, None, arrays and dicts)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(
            _same_state(a[key], b[key]) for key in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and \
            np.array_equal(a, b)
    return a == b


class FitProgress:
    """Where ``fit`` stands: the part of the training state that the loop keeps.

    ``fit`` keeps it as ``model.fit_progress``: the ``epoch``, the number of
    its batches done (``batch``), its shuffle ``order`` (None without
    shuffling), ``loss_sum``, the sum of batch loss times batch size over
    the ``seen`` samples, ``total_steps``, the optimizer steps of the whole
    run (what ``max_steps`` limits), and ``stopped``: True when the saved
    run was stopping (``stop_training``) as it was saved. A callback may
    call ``resume_at`` from ``on_train_begin`` to make ``fit`` start where
    a saved run stopped (``cdl.training.checkpoint.restore_training_state`` does).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl.training.trainer import FitProgress
    >>> progress = FitProgress(epoch=0, n=6, batch_size=4, shuffle=True)
    >>> progress.resume_at(2, batch=1, order=np.arange(6)[::-1], loss_sum=1.5, seen=4,
    ...                    total_steps=5)
    >>> progress.resumes(2), progress.batch, progress.order.tolist()
    (True, 1, [5, 4, 3, 2, 1, 0])
    """

    __slots__ = ("epoch", "batch", "order", "loss_sum", "seen", "n", "batch_size", "shuffle",
                 "total_steps", "stopped", "_resumed")

    def __init__(self, epoch, n, batch_size, shuffle):
        self.epoch, self.batch, self.order, self.loss_sum, self.seen = epoch, 0, None, 0.0, 0
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.total_steps, self.stopped = 0, False
        self._resumed = False

    def resume_at(self, epoch, batch=0, order=None, loss_sum=0.0, seen=0, total_steps=0,
                  stopped=False):
        """Start at batch ``batch`` of ``epoch`` with that epoch's shuffle
        ``order`` and running loss, ``total_steps`` optimizer steps into the
        run; ``stopped`` if the saved run was stopping: then only the end of
        a saved mid-epoch remains, and nothing after an epoch boundary. The
        caller restores the metrics' accumulators. Raises ValueError if
        they do not fit this ``fit`` call."""
        if batch and self.n is None:
            raise ValueError("cannot resume in the middle of an epoch when x is an iterable "
                             "of batches (it cannot be rewound); back up at epoch ends")
        if batch:
            steps = math.ceil(self.n / self.batch_size)
            if batch > steps:
                raise ValueError(f"cannot resume at batch {batch}: an epoch has {steps}")
            if self.shuffle != (order is not None):
                raise ValueError(f"the saved epoch was {'' if order is not None else 'not '}"
                                 f"shuffled, but this fit has shuffle={self.shuffle}")
            if order is not None and order.shape != (self.n,):
                raise ValueError(f"the saved shuffle order covers {order.size} samples, this "
                                 f"fit trains on {self.n}")
        self.epoch, self.batch, self.order = epoch, batch, order
        self.loss_sum, self.seen, self.total_steps = loss_sum, seen, total_steps
        self.stopped = stopped
        self._resumed = batch > 0

    def resumes(self, epoch):
        """True if ``epoch`` continues a saved epoch (its metrics were restored)."""
        return self._resumed and epoch == self.epoch

    def begin_epoch(self, epoch, rng):
        """Start ``epoch``, unless it continues a saved one: no batches done,
        no loss, a new shuffle order."""
        if not self.resumes(epoch):
            self.epoch, self.batch, self.loss_sum, self.seen = epoch, 0, 0.0, 0
            self.order = rng.permutation(self.n) if self.shuffle else None
        self._resumed = False


def _strategy_for(model, distributed):
    """``fit``'s and ``evaluate``'s strategy for their ``distributed`` argument:
    False, True (all MPI processes) or an mpi4py communicator."""
    if isinstance(distributed, (bool, np.bool_)) and not distributed:
        return SingleProcess()
    # Imported when asked for: it needs mpi4py, an optional package.
    from cdl.distributed import DataParallel

    if isinstance(distributed, (bool, np.bool_)):
        return DataParallel(model)
    # A communicator is any other object; these are mistakes (None included:
    # "no communicator" is distributed=False).
    if distributed is None or isinstance(distributed, (int, float, str, bytes)):
        raise TypeError(f"distributed must be True, False or an mpi4py communicator, got "
                        f"{distributed!r}")
    return DataParallel(model, distributed)


class TrainingMixin:
    """``compile``/``fit``/``evaluate``/``predict`` for a model class that
    satisfies the model protocol (``cdl.training.protocol.TrainableModel``):
    the loops use the members listed there and nothing else of the model."""

    optimizer = None
    loss = None
    metrics = ()
    stop_training = False
    #: Use the fused compiled training step when the model supports it; the
    #: layer-by-layer path computes the same numbers and is kept for tests.
    use_fused_step = True
    #: Check every layer's output and gradients for NaN/infinity (set by
    #: ``compile(check_numerics=True)``; see ``cdl.detect_anomaly``).
    check_numerics = False
    _regularized = False
    _plan = None
    _plan_key = None
    _strategy = None
    #: Where the last ``fit`` stands (a ``FitProgress``; None before any):
    #: what a saved training state records of the loop.
    fit_progress = None

    @property
    def strategy(self):
        """The execution strategy (``cdl.training.strategy.Strategy``) of the
        ``fit`` or ``evaluate`` call running; a ``SingleProcess`` outside of
        them. Callbacks ask it whether their process writes files."""
        return SingleProcess() if self._strategy is None else self._strategy

    def _run(self, strategy, body):
        """``strategy.run(body)``, with ``strategy`` as ``self.strategy`` meanwhile."""
        previous, self._strategy = self._strategy, strategy
        try:
            return strategy.run(body)
        finally:
            self._strategy = previous

    # --- configuration ------------------------------------------------------

    def compile(self, optimizer="adam", loss=None, metrics=None, clip_norm=None,
                clip_value=None, check_numerics=False, loss_weights=None):
        """Choose how the model trains.

        Parameters
        ----------
        optimizer : str or cdl.optimizers.Optimizer
            A name ("sgd", "adam", ...; default hyper-parameters) or an instance.
        loss : str, cdl.losses.Loss, dict or list
            E.g. "cross_entropy", "mse", or an instance. For a model with
            several outputs: a dict by output name or a list in output
            order (an output left out, or given None, is not trained
            through), or one loss for every output.
        metrics : list of str or cdl.metrics.Metric, optional
            E.g. ["accuracy"]; reported by ``fit`` and ``evaluate`` under
            the names given here. For several outputs: a dict by output
            name (or a list per output), reported as ``<output>_<name>``;
            each trained output also reports ``<output>_loss``.
        clip_norm : float, optional
            Clip the gradients' global norm before each step.
        clip_value : float, optional
            Clamp every gradient element to [-clip_value, clip_value].
        loss_weights : dict or list of float, optional
            For several outputs: each output's weight in the summed loss
            (default 1); the weight of an output without a loss counts for
            nothing.
        check_numerics : bool, default False
            Anomaly detection for this model (``cdl.detect_anomaly`` turns
            it on for every model): train and predict layer by layer, and
            raise ``cdl.NonFiniteError`` (a ``FloatingPointError``) naming
            the first layer (name, class, index), pass and array in which
            a NaN or infinity appears, or the loss or optimizer step that
            produced one. Slower; not saved with the model.

        Raises
        ------
        ValueError
            If ``loss`` is missing or metric names repeat.
        TypeError
            If ``check_numerics`` is not a bool.

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers, optimizers
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> y = np.array([0, 1, 1, 0])
        >>> model = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
        ...                        input_shape=(2,), seed=0)
        >>> model.compile(optimizers.Adam(lr=0.05), "cross_entropy", metrics=["accuracy"])
        >>> type(model.optimizer).__name__, model.loss.reduction
        ('Adam', 'mean')
        """
        from cdl import metrics as _metrics

        check_numerics = check_bool(check_numerics, "check_numerics")
        if loss is None:
            raise ValueError("compile needs a loss, e.g. loss='cross_entropy' or 'mse'")
        self.optimizer = _optimizers.get(optimizer)
        outputs = list(self.output_names)
        if len(outputs) > 1 or isinstance(loss, (dict, list, tuple)) or \
                loss_weights is not None or isinstance(metrics, dict):
            from cdl.training.outputs import compile_outputs

            self.loss, self.metrics, specs = compile_outputs(outputs, loss, loss_weights,
                                                             metrics)
        else:
            self.loss = _losses.get(loss)
            self.metrics = [_metrics.get(m, loss=self.loss) for m in (metrics or [])]
            specs = list(metrics or [])
        parts = self.loss.losses if isinstance(getattr(self.loss, "losses", None), list) \
            else [self.loss]
        for part in parts:
            if getattr(part, "reduction", "mean") == "none":
                # Training follows one number; "none" leaves the reduction to the caller.
                raise ValueError(
                    f"compile needs a loss that returns one number, but {part!r} returns "
                    "the loss of every sample (reduction='none'): use reduction='mean' "
                    "or 'sum'")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"metric names must be unique and not 'loss', got {names}")
        self.clip_norm = None if clip_norm is None else check_number(clip_norm, "clip_norm",
                                                                     low=0.0)
        self.clip_value = None if clip_value is None else check_number(
            clip_value, "clip_value", low=0.0)
        self._metric_specs = specs
        self.check_numerics = check_numerics

    def compile_config(self):
        """What ``compile`` was given, as a JSON-friendly dict (None if not compiled).

        Parameter groups of the optimizer are not part of it.
        """
        if self.optimizer is None:
            return None
        specs = self._metric_specs
        for spec in (s for group in specs.values() for s in group) if isinstance(specs, dict) \
                else specs:
            if not isinstance(spec, str):
                raise ValueError(
                    f"metric {spec!r} was given as an object; only metrics named "
                    "by a string can be saved with the model")
        return {
            "optimizer": {"class_name": type(self.optimizer).__name__,
                          "config": self.optimizer.get_config()},
            "loss": {"class_name": type(self.loss).__name__, "config": self.loss.get_config()},
            "metrics": dict(specs) if isinstance(specs, dict) else list(specs),
            "clip_norm": self.clip_norm,
            "clip_value": self.clip_value,
        }

    def compile_from_config(self, config):
        """``compile`` again from what ``compile_config`` returned."""
        optimizer = _optimizers.from_config(config["optimizer"])
        loss_weights = None
        if isinstance(config["loss"], dict) and config["loss"].get("class_name") == \
                "OutputLosses":
            per_output = config["loss"]["config"]
            loss = {name: None if spec is None else _losses.from_config(spec)
                    for name, spec in per_output["losses"].items()}
            loss_weights = per_output["loss_weights"]
        else:
            loss = _losses.from_config(config["loss"])
        self.compile(optimizer, loss, config.get("metrics") or None,
                     clip_norm=config.get("clip_norm"), clip_value=config.get("clip_value"),
                     loss_weights=loss_weights)

    def require_compiled(self):
        """Raise RuntimeError unless ``compile`` has been called."""
        if self.optimizer is None or self.loss is None:
            raise RuntimeError("the model must be compiled first: model.compile(optimizer, loss)")

    # --- one step ------------------------------------------------------------

    def _fused_plan(self, batch_size):
        """The fused training step for batches of up to ``batch_size``, or None
        if a layer or the loss is one it does not cover (or anomaly detection,
        which checks layer by layer, is on)."""
        if _anomaly.checking(self):
            return None
        key = (batch_size, id(self.param_buffer), id(self.loss), len(self.layers))
        if key == self._plan_key:
            return self._plan
        self._plan, self._plan_key = _fused.build_plan(self, batch_size), key
        return self._plan

    def _inference_plan(self, batch_size):
        """The calling thread's fused forward pass for ``predict`` with room for
        ``batch_size`` samples, or None (see ``_fused_plan``).

        A plan owns work buffers, so each thread has its own; it is rebuilt
        when the weights move to a new buffer, the layers change, or a
        larger batch needs more room.
        """
        if _anomaly.checking(self):
            return None
        local = _concurrency.guard_of(self).local
        key = (id(self.param_buffer), len(self.layers))
        cached = getattr(local, "predict_plan", None)
        if cached is not None and cached[0] == key and (cached[2] is None
                                                        or cached[1] >= batch_size):
            return cached[2]
        plan = _fused.build_plan(self, batch_size, training=False)
        local.predict_plan = (key, batch_size, plan)
        return plan

    @property
    def _predict_plan(self):
        """The calling thread's inference plan (None before its first ``predict``)."""
        cached = getattr(_concurrency.guard_of(self).local, "predict_plan", None)
        return None if cached is None else cached[2]

    def compute_gradients(self, x, y, sample_weight=None, plan=None):
        """The loss and outputs of a training forward pass on a batch, with
        the loss's gradients in ``grads`` (what a strategy's ``step`` does
        before the gradients are combined and applied).

        Parameters
        ----------
        x, y : ndarray
            A batch already checked by ``fit`` (of the model's dtype, finite).
        sample_weight : ndarray, optional
        plan : optional
            The fused training step to use (``fit`` makes it); None: layer
            by layer.

        Returns
        -------
        (float, ndarray)
            The batch loss without weight penalties, and the outputs.
        """
        w = sample_weight
        check = _anomaly.checking(self)
        targets = None if plan is None or check else _fused.plan_targets(plan, y, x.shape[0])
        if targets is not None:
            n = x.shape[0]
            for uniforms, width in zip(plan.uniforms, plan.dropout_widths):
                _sharding.fill_uniforms(self.rng, uniforms, n, width, self.dtype)
            loss = plan.train_step(x, targets, w)
            return loss, plan.output(n)
        out = self.forward_checked(x, True)
        loss = self.loss.forward(out, y, w)
        grad = self.loss.backward()
        if check:
            _anomaly.check_loss(self.loss, loss, grad)
        self.backward_checked(grad, input_grad=False)
        return loss, out

    def apply_gradients(self, loss):
        """Add the weight penalties, clip and take the optimizer step on the
        gradients in ``grads``; returns the batch ``loss`` with the penalties."""
        check = _anomaly.checking(self)
        if self._regularized:
            loss += self.regularization_loss()
            self.add_regularization_gradients()
        if self.clip_value is not None:
            _optimizers.clip_grad_value(self.grad_buffer, self.clip_value)
        if self.clip_norm is not None:
            _optimizers.clip_grad_norm(self.grad_buffer, self.clip_norm)
        self.optimizer.step(self.params, self.grads)
        if check:
            _anomaly.check_weights(self)
        return loss

    @_concurrency.training_call
    @_determinism.blas_scope
    def train_step(self, x, y, sample_weight=None):
        """One optimizer step on the batch (x, y); returns the batch loss.

        For custom training loops: equivalent to forward, loss, backward
        and ``optimizer.step``, with the compiled clipping.

        Raises
        ------
        RuntimeError
            If another thread is training this model (``fit`` or
            ``train_step``); a model trains in one thread at a time. Calls
            of ``predict``/``evaluate`` already running in other threads
            are waited for.

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers, optimizers
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> y = np.array([0, 1, 1, 0])
        >>> model = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
        ...                        input_shape=(2,), seed=0)
        >>> model.compile(optimizers.Adam(lr=0.05), "cross_entropy", metrics=["accuracy"])
        >>> losses = [model.train_step(x, y) for _ in range(50)]
        >>> losses[-1] < losses[0]
        True
        """
        self.require_compiled()
        adapters.refuse_batch_iterable(x, "x", "train_step")
        x = self.check_input(x)
        n = adapters.num_rows(x)
        if n == 0:
            raise ValueError("train_step needs a batch of at least one sample, got 0")
        # The checks fit applies to targets, for both paths (the fused step
        # reads them raw): lists, odd layouts, NaN, labels converted once.
        y = adapters.targets_for(self, y, n).data
        weights = None if sample_weight is None else adapters.weights_for(
            self, sample_weight, None, None, n)
        plan = self._fused_plan(n) if self.use_fused_step else None
        self._regularized = self.has_regularization()
        loss, _ = self.compute_gradients(x, y, weights, plan)
        return self.apply_gradients(loss)

    # --- fit ------------------------------------------------------------------

    @_concurrency.training_call
    @_determinism.blas_scope
    def fit(self, x, y=None, epochs=1, batch_size=None, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, max_time=None, loss_threshold=None,
            max_steps=None, steps_per_epoch=None, validation_steps=None, distributed=False):
        """Train the model.

        Parameters
        ----------
        x : array_like of shape ``(n_samples, *input_shape)``, or iterable
            NumPy arrays, including read-only and memory-mapped ones (a
            ``np.memmap``, e.g. from ``np.load(path, mmap_mode="r")``, is
            read batch by batch, never whole); or an iterable of batches
            (a generator, a ``cdl.data.BatchLoader``) yielding ``(x, y)``
            or ``(x, y, sample_weight)`` tuples, with ``y`` omitted.
        y : array_like
            Targets: class labels or probabilities for classification,
            values for regression.
        epochs : int
            Index of the last epoch (training runs ``initial_epoch`` ..
            ``epochs - 1``).
        batch_size : int, default 32
            Samples per optimizer step; in distributed training the global
            batch, split between the processes. Not used with an iterable
            of batches.
        verbose : {"auto", 0, 1, 2}
            0 silent; 1 progress bar (one line per epoch when not on a
            terminal); 2 one line per epoch. "auto" is 1.
        callbacks : list of cdl.callbacks.Callback
        validation_split : float in [0, 1)
            Fraction of the data, taken from the end before shuffling,
            held out for validation.
        validation_data : tuple (x_val, y_val) or (x_val, y_val, weights), or iterable
            Or an iterable of such batches, evaluated in full each epoch
            (or ``validation_steps`` batches of it).
        shuffle : bool
            Reshuffle the samples every epoch (seeded by the model's seed).
        class_weight : dict or "balanced"
            Weight of each class in the loss; "balanced" uses
            n_samples / (n_classes * count(class)).
        sample_weight : array_like of shape (n_samples,)
        initial_epoch : int
        max_time : float, optional
            Stop after this many seconds (checked after every batch). Wall
            clock time: a run resumed by ``BackupAndRestore`` counts it
            afresh, so where it stops is not reproducible.
        loss_threshold : float, optional
            Stop at the end of the epoch whose training loss is below this
            (the "train until the loss is small enough" rule).
        max_steps : int, optional
            Stop after this many optimizer steps in total, counted over the
            whole run: a run resumed by ``BackupAndRestore`` continues the
            count saved in the backup.
        steps_per_epoch : int, optional
            With an iterable ``x``: batches per epoch. Without it an epoch
            is one pass over the iterable. An iterable that can be iterated
            again (a data loader) starts a new pass when one ends; a
            generator that runs out ends training, with a warning.
        validation_steps : int, optional
            With an iterable ``validation_data``: batches per evaluation.
        distributed : bool or mpi4py communicator, default False
            Data-parallel training over MPI (see ``cdl.distributed``): run
            the script with ``mpiexec -n N``; each process trains on its
            part of every batch, and all end with the same weights, those
            one process would reach. With arrays, every process passes the
            same ``x`` (a memory-mapped file is read only for its rows);
            with iterables, each process yields its own part of every step.

        Returns
        -------
        cdl.callbacks.History

        Raises
        ------
        RuntimeError
            If another thread is training this model: a model trains in one
            thread at a time. While ``fit`` runs, ``predict`` and
            ``evaluate`` from other threads raise RuntimeError too (the
            weights change at every step); from the training thread itself
            (callbacks) they work. Calls already running in other threads
            when ``fit`` starts are waited for.

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers, optimizers
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> y = np.array([0, 1, 1, 0])
        >>> model = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
        ...                        input_shape=(2,), seed=0)
        >>> model.compile(optimizers.Adam(lr=0.05), "cross_entropy", metrics=["accuracy"])
        >>> history = model.fit(x, y, epochs=200, batch_size=4, verbose=0, loss_threshold=0.05)
        >>> history.history["loss"][-1] < 0.05, len(history.epoch) < 200
        (True, True)
        >>> model.predict_classes(x)
        array([0, 1, 1, 0])
        """
        parallel = _strategy_for(self, distributed)
        return self._run(parallel, lambda: self._fit(
            parallel, x, y, epochs=epochs, batch_size=batch_size, verbose=verbose,
            callbacks=callbacks, validation_split=validation_split,
            validation_data=validation_data, shuffle=shuffle, class_weight=class_weight,
            sample_weight=sample_weight, initial_epoch=initial_epoch, max_time=max_time,
            loss_threshold=loss_threshold, max_steps=max_steps,
            steps_per_epoch=steps_per_epoch, validation_steps=validation_steps))

    def _fit_setup(self, parallel, x, y, epochs, batch_size, verbose, validation_split,
                   validation_data, shuffle, class_weight, sample_weight, initial_epoch,
                   max_time, max_steps, steps_per_epoch, validation_steps):
        """``fit``'s arguments checked, and its training and validation batches."""
        self.require_compiled()
        shuffle = check_bool(shuffle, "shuffle")
        settings = {
            "epochs": check_number(epochs, "epochs", low=0, integer=True),
            "initial_epoch": check_number(initial_epoch, "initial_epoch", low=0, integer=True),
            "verbose": 1 if verbose == "auto" else choose(verbose, (0, 1, 2), "verbose"),
            "max_time": None if max_time is None else check_number(max_time, "max_time",
                                                                   low=0.0),
            "max_steps": None if max_steps is None else check_number(
                max_steps, "max_steps", low=1, integer=True),
        }
        for name, value in (("steps_per_epoch", steps_per_epoch),
                            ("validation_steps", validation_steps)):
            if value is not None:
                check_number(value, name, low=1, integer=True)
        validation_split = check_number(validation_split, "validation_split", low=0.0,
                                        high=1.0, high_inclusive=False)
        if adapters.is_batch_iterable(x):
            if y is not None or sample_weight is not None:
                raise ValueError("when x is an iterable of batches, it yields (x, y) or "
                                 "(x, y, sample_weight) tuples: pass neither y nor "
                                 "sample_weight")
            if batch_size is not None:
                raise ValueError("batch_size does not apply when x is an iterable of batches "
                                 "(it yields them); leave it None")
            if validation_split:
                raise ValueError("validation_split needs arrays; with an iterable of batches "
                                 "pass validation_data")
            source = adapters.IterableBatches(self, x, steps_per_epoch, class_weight, "x")
            n = None
        else:
            if steps_per_epoch is not None:
                raise ValueError("steps_per_epoch applies to an iterable of batches; with "
                                 "arrays an epoch is one pass over them")
            batch_size = 32 if batch_size is None else check_number(
                batch_size, "batch_size", low=1, integer=True)
            if not self.built and self.input_shape is None:
                self.build(adapters.sample_shape(x))
            source = adapters.ArrayBatches(self, x, y, sample_weight, class_weight, batch_size,
                                   shuffle)
            n = source.n
        val = None
        if validation_data is not None:
            val = self._validation_set(validation_data, validation_steps, batch_size)
        elif validation_split:
            val = source.split(validation_split)
            n = source.n
        if n == 0:
            raise ValueError("there are no training samples")
        if self.built or self.input_shape is not None:
            self.ensure_built()
        elif parallel.size > 1:
            raise ValueError("distributed training on an iterable of batches needs a model "
                             "with an input_shape (every process must start from rank 0's "
                             "weights before the first batch)")
        # else an iterable's first batch builds the model
        parallel.check_metrics(self.metrics)
        settings["same everywhere"] = (n, batch_size, shuffle, settings["epochs"],
                                       steps_per_epoch, self.count_params() if self.built
                                       else None, self.dtype.name)
        return source, val, settings

    def _fit(self, parallel, x, y, *, epochs, batch_size, verbose, callbacks, validation_split,
             validation_data, shuffle, class_weight, sample_weight, initial_epoch, max_time,
             loss_threshold, max_steps, steps_per_epoch, validation_steps):
        from cdl.training import callbacks as _callbacks

        source, val, settings = parallel.agree(lambda: self._fit_setup(
            parallel, x, y, epochs, batch_size, verbose, validation_split, validation_data,
            shuffle, class_weight, sample_weight, initial_epoch, max_time, max_steps,
            steps_per_epoch, validation_steps), "when fit checked its arguments")
        parallel.check_same(settings["same everywhere"], "(samples, batch_size, shuffle, "
                            "epochs, steps_per_epoch, parameters, dtype)")
        epochs, verbose = settings["epochs"], settings["verbose"]
        max_time, max_steps = settings["max_time"], settings["max_steps"]
        history = _callbacks.History()
        cbs = [history] + list(callbacks or [])
        if verbose:
            cbs.append(_callbacks.ProgbarLogger(verbose))
        if loss_threshold is not None:
            cbs.append(_callbacks.LossThreshold(loss_threshold))
        # Progress bars, logs and checkpoints come from rank 0 alone.
        cb = _callbacks.CallbackList(cbs, self, {"epochs": epochs, "steps": source.steps,
                                                 "verbose": verbose,
                                                 "batch_size": source.batch_size},
                                     rank=parallel.rank)
        batch_logs = cb.wants_batch_logs
        # Processes agree after every step whether to stop when that can
        # differ between them (a clock, a callback's decision).
        agree_each_step = parallel.size > 1 and (cb.has_batch_hooks or max_time is not None)
        plan, capacity = None, 0
        read = parallel.reader(source)
        self._regularized = self.has_regularization()
        self.stop_training = False
        self.history = history
        start = time.perf_counter()
        # BackupAndRestore may move it, in on_train_begin, into a saved epoch,
        # with the run's step count and stop_training as they were saved.
        progress = self.fit_progress = FitProgress(settings["initial_epoch"], source.n,
                                                     source.batch_size, source.shuffle)
        parallel.stage = "in on_train_begin"
        cb.on_train_begin({})
        parallel.start(self)
        parallel.check_same((progress.epoch, progress.batch),
                            "the epoch and batch training starts at")
        stopped = progress.stopped or (max_steps is not None
                                       and progress.total_steps >= max_steps)
        for epoch in range(progress.epoch, epochs):
            resumed = progress.resumes(epoch)
            if stopped and not resumed:
                # Restored from a backup made at the end of the epoch that
                # stopped training: the run is over.
                break
            if not resumed:
                for m in self.metrics:
                    m.reset()
            parallel.stage, parallel.epoch, parallel.batch = f"in epoch {epoch + 1}", epoch, None
            cb.on_epoch_begin(epoch, {})
            # Restored mid-epoch after a batch that stopped training (or
            # reached max_steps): only the epoch's end remains.
            self.stop_training = self.stop_training or stopped
            batches = () if stopped else source.epoch(progress, epoch, self.rng, parallel)
            for b, rows, window in batches:
                parallel.batch = b
                if batch_logs:
                    cb.on_train_batch_begin(b, {})
                xb, yb, wb = read(rows)
                if self.use_fused_step and xb is not None and adapters.num_rows(xb) > capacity:
                    capacity = max(adapters.num_rows(xb), source.capacity)
                    plan = self._fused_plan(capacity)
                loss, out, size = parallel.step(self, xb, yb, wb, plan, window)
                progress.loss_sum += loss * size
                progress.seen += size
                if self.metrics and out is not None and math.isfinite(loss):
                    # A diverged batch (NaN outputs) is left to the loss and
                    # TerminateOnNaN; metrics reject non-finite predictions.
                    for m in self.metrics:
                        m.update(yb, out, wb)
                progress.total_steps += 1
                progress.batch = b + 1
                if batch_logs:
                    cb.on_train_batch_end(b, {"loss": loss})
                if max_time is not None and time.perf_counter() - start > max_time:
                    self.stop_training = True
                if max_steps is not None and progress.total_steps >= max_steps:
                    self.stop_training = True
                if agree_each_step:
                    self.stop_training = parallel.any(self.stop_training)
                if self.stop_training:
                    break
            parallel.batch = None
            if source.exhausted:
                self.stop_training = True
                if not progress.seen:
                    break
            parallel.merge_metrics(self.metrics)
            logs = {"loss": progress.loss_sum / progress.seen}
            logs.update(_metric_results(self.metrics, logs["loss"]))
            if val is not None:
                cb.on_test_begin({})
                val_logs = val.evaluate(self, parallel)
                cb.on_test_end(val_logs)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            logs["lr"] = self.optimizer.lr
            cb.on_epoch_end(epoch, logs)
            if parallel.any(self.stop_training):
                break
        parallel.stage = "in on_train_end"
        cb.on_train_end({})
        return history

    def partial_fit(self, x, y, sample_weight=None, class_weight=None, batch_size=32,
                    shuffle=True):
        """One pass over (x, y), keeping the optimizer's state (momentum,
        moments, step count) from earlier calls; returns the mean loss.

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers, optimizers
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> y = np.array([0, 1, 1, 0])
        >>> model = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
        ...                        input_shape=(2,), seed=0)
        >>> model.compile(optimizers.Adam(lr=0.05), "cross_entropy", metrics=["accuracy"])
        >>> for _ in range(3):
        ...     loss = model.partial_fit(x, y, batch_size=2)   # one epoch each; Adam's state is kept
        >>> model.optimizer.iterations
        6
        """
        history = self.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, shuffle=shuffle,
                           sample_weight=sample_weight, class_weight=class_weight)
        return history.history["loss"][-1]

    def _validation_set(self, validation_data, steps=None, batch_size=256):
        """``fit``'s validation data, checked: arrays or an iterable of batches."""
        if adapters.is_batch_iterable(validation_data):
            return adapters.IterableValidation(adapters.IterableBatches(
                self, validation_data, steps, None, "validation_data"))
        if steps is not None:
            raise ValueError("validation_steps applies to validation_data given as an "
                             "iterable of batches")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (x_val, y_val), (x_val, y_val, weights) "
                             "or an iterable of such batches")
        x_val, y_val = validation_data[:2]
        w_val = validation_data[2] if len(validation_data) == 3 else None
        inputs = adapters.inputs_for(self, x_val, "x_val")
        targets = adapters.targets_for(self, y_val, len(inputs), "y_val")
        weights = adapters.weights_for(self, w_val, None, None, len(inputs))
        return adapters.ArrayValidation(inputs.data, targets.data, weights,
                                        max(batch_size or 32, 256))

    # --- evaluate and predict ---------------------------------------------------

    @_concurrency.inference_call
    @_determinism.blas_scope
    def evaluate(self, x, y, batch_size=256, sample_weight=None, distributed=False):
        """Loss and metrics on (x, y), in inference mode.

        Threads may call ``evaluate`` (and ``predict``) on one model at the
        same time; calls of ``evaluate`` take turns, because the model's
        loss and metric objects accumulate over the batches of one call.

        With ``distributed=True`` (every process of an MPI job calls it
        with the same data, see ``fit``), each process evaluates its part
        of the samples and all get the results over all of them.

        Returns
        -------
        dict
            ``{"loss": ..., <metric name>: ...}`` with the names given to
            ``compile``.

        Raises
        ------
        RuntimeError
            If another thread is training the model (see ``fit``).

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers, optimizers
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> y = np.array([0, 1, 1, 0])
        >>> model = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
        ...                        input_shape=(2,), seed=0)
        >>> model.compile(optimizers.Adam(lr=0.05), "cross_entropy", metrics=["accuracy"])
        >>> history = model.fit(x, y, epochs=100, batch_size=4, verbose=0)
        >>> result = model.evaluate(x, y)
        >>> sorted(result), result["accuracy"]
        (['accuracy', 'loss'], 1.0)
        """
        parallel = _strategy_for(self, distributed)

        def checked():
            self.require_compiled()
            adapters.refuse_batch_iterable(x, "x", "evaluate")
            self._build_for_inference(None)
            inputs = adapters.inputs_for(self, x)
            weights = adapters.weights_for(self, sample_weight, None, None, len(inputs))
            targets = adapters.targets_for(self, y, len(inputs))
            if len(inputs) == 0:
                raise ValueError("cannot evaluate on zero samples")
            check_number(batch_size, "batch_size", low=1, integer=True)
            return inputs.data, targets.data, weights

        return self._run(parallel, lambda: parallel.evaluate(
            self, *parallel.agree(checked, "when evaluate checked its arguments"),
            batch_size))

    def _build_for_inference(self, x):
        """Build the model if needed (for samples shaped like ``x``'s, when
        it has no input shape yet), in one thread only."""
        if self.built:
            self.ensure_built()   # a graph model takes back weights another model holds
            return
        with _concurrency.guard_of(self).layer_lock:
            if not self.built and self.input_shape is None and x is not None:
                self.build(adapters.sample_shape(x))
            self.ensure_built()

    def evaluation_results(self, loss_sum, n):
        """``evaluate``'s dict from the summed loss (batch loss times batch
        size) over ``n`` samples and the metrics' accumulators (what a
        strategy reports after ``evaluation_sums``)."""
        # Weight penalties count in the reported loss, as in fit (and Keras).
        results = {"loss": loss_sum / n + sum(layer.regularization_loss()
                                              for layer in self.layers)}
        results.update(_metric_results(self.metrics, results["loss"]))
        return results

    def evaluation_sums(self, x, y, sample_weight, batch_size):
        """The loss summed over the batches of ``(x, y)`` (batch loss times
        batch size) in inference mode, updating the metrics; ``x``, ``y``
        and ``sample_weight`` are arrays already checked by ``evaluate``."""
        weights = sample_weight
        n = adapters.num_rows(x)
        inputs = adapters.Inputs.checked(x, self.dtype)
        total = 0.0
        for index in adapters.batch_indices(n, batch_size, False, None):
            xb = inputs.batch(index)
            yb = adapters.take_rows(y, index, contiguous=True)
            wb = adapters.take_rows(weights, index)
            out = self.forward_checked(xb, False)
            loss = self.loss.forward(out, yb, wb)
            total += loss * adapters.num_rows(xb)
            if math.isfinite(loss):   # as in fit: diverged outputs are left to the loss
                for m in self.metrics:
                    m.update(yb, out, wb)
        return total

    @_concurrency.inference_call
    @_determinism.blas_scope
    def predict(self, x, batch_size=256, mc_samples=None):
        """Model outputs for ``x``, computed in batches in inference mode.

        With ``mc_samples=k``, Monte-Carlo dropout instead: ``k`` passes
        with the dropout layers active (everything else in inference mode),
        returning their mean and standard deviation (see
        ``cdl.tuning.predict_mc``, which also takes a seed and a transform).

        Thread-safe: any number of threads may predict with one model at
        the same time and get exactly the outputs of single-threaded calls.
        Models that the fused forward pass covers (dense networks) predict
        in parallel, each thread with its own work buffers; other models
        run their forward passes one at a time, since layers keep per-call
        state.

        Parameters
        ----------
        x : array_like of shape ``(n_samples, *input_shape)``
        batch_size : int >= 1
        mc_samples : int >= 1, optional
            Number of Monte-Carlo dropout passes.

        Returns
        -------
        ndarray of shape ``(n_samples, *output_shape)``
            Raw outputs: logits for a classifier with a linear head. With
            ``mc_samples``, a tuple ``(mean, std)`` of two such arrays. For
            a model with several outputs, a list of arrays in output order.

        Raises
        ------
        RuntimeError
            If another thread is training the model (see ``fit``).
        ValueError
            If ``mc_samples`` is given and the model has no dropout layer.

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers, optimizers
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> y = np.array([0, 1, 1, 0])
        >>> model = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
        ...                        input_shape=(2,), seed=0)
        >>> model.compile(optimizers.Adam(lr=0.05), "cross_entropy", metrics=["accuracy"])
        >>> model.predict(x).shape          # logits: one row per sample
        (4, 2)
        """
        adapters.refuse_batch_iterable(x, "x", "predict")
        if mc_samples is not None:
            from cdl.tuning import predict_mc

            return predict_mc(self, x, mc_samples=mc_samples, batch_size=batch_size)
        self._build_for_inference(x)
        batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
        inputs = adapters.inputs_for(self, x)
        n = len(inputs)
        shapes = self.output_shape if len(self.output_names) > 1 else [self.output_shape]
        if any(d is None for shape in shapes for d in shape):
            # A free (time) axis: its size is that of the data, the same in
            # every batch of one call; the outputs are made after the first.
            outs = None
            for index in adapters.batch_indices(n, batch_size, False, None):
                parts = self.forward_checked(inputs.batch(index), False)
                parts = parts if len(self.output_names) > 1 else [parts]
                if outs is None:
                    outs = [np.empty((n,) + p.shape[1:], dtype=self.dtype) for p in parts]
                for out, part in zip(outs, parts):
                    out[index] = part
            if outs is None:
                outs = [np.empty((n,) + tuple(d or 0 for d in shape), dtype=self.dtype)
                        for shape in shapes]
            return outs if len(self.output_names) > 1 else outs[0]
        if len(self.output_names) > 1:
            outs = [np.empty((n,) + tuple(shape), dtype=self.dtype)
                    for shape in self.output_shape]
            for index in adapters.batch_indices(n, batch_size, False, None):
                for out, part in zip(outs, self.forward_checked(inputs.batch(index), False)):
                    out[index] = part
            return outs
        out = np.empty((n,) + tuple(self.output_shape), dtype=self.dtype)
        plan = self._inference_plan(min(batch_size, max(n, 1))) if self.use_fused_step \
            else None
        for index in adapters.batch_indices(n, batch_size, False, None):
            if plan is not None:
                plan._plan.predict(inputs.batch(index), out[index])
            else:
                out[index] = self.forward_checked(inputs.batch(index), False)
        return out

    def predict_proba(self, x, batch_size=256):
        """Class probabilities: softmax (or, for a binary cross-entropy model,
        sigmoid) of the outputs; outputs of a final Softmax/Sigmoid layer are
        returned as they are.

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers, optimizers
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> y = np.array([0, 1, 1, 0])
        >>> model = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
        ...                        input_shape=(2,), seed=0)
        >>> model.compile(optimizers.Adam(lr=0.05), "cross_entropy", metrics=["accuracy"])
        >>> p = model.predict_proba(x)
        >>> p.shape, np.allclose(p.sum(axis=1), 1)
        ((4, 2), True)
        """
        from cdl.layers.activation import Activation

        last = self._single_output_layer("predict_proba")
        out = self.predict(x, batch_size)
        if isinstance(last, Activation) and last.activation in ("softmax", "sigmoid") or \
                getattr(last, "activation", None) in ("softmax", "sigmoid"):
            return out
        if isinstance(self.loss, _losses.BinaryCrossEntropy) or out.shape[-1] == 1:
            return 0.5 * (1.0 + np.tanh(0.5 * out))  # sigmoid without overflow
        shifted = out - out.max(axis=-1, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=-1, keepdims=True)
        return shifted

    def predict_classes(self, x, batch_size=256):
        """Predicted class labels: argmax of the outputs, or output > 0 (a
        logit) for a single-output binary classifier.

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers, optimizers
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> y = np.array([0, 1, 1, 0])
        >>> model = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
        ...                        input_shape=(2,), seed=0)
        >>> model.compile(optimizers.Adam(lr=0.05), "cross_entropy", metrics=["accuracy"])
        >>> history = model.fit(x, y, epochs=100, batch_size=4, verbose=0)
        >>> model.predict_classes(x)
        array([0, 1, 1, 0])
        """
        last = self._single_output_layer("predict_classes")
        out = self.predict(x, batch_size)
        if out.ndim == 2 and out.shape[1] == 1 or out.ndim == 1:
            threshold = 0.5 if getattr(last, "activation", None) == "sigmoid" else 0.0
            return (out.reshape(-1) > threshold).astype(np.int64)
        return out.argmax(axis=-1)

    def _single_output_layer(self, call):
        """The layer computing the model's one output (None if the output is
        an input); raises ValueError for a model with several outputs."""
        layers = self.output_layers
        if len(layers) != 1:
            raise ValueError(f"{call} needs a model with one output; this one has "
                             f"{len(layers)} ({', '.join(self.output_names)}): use predict")
        return layers[0]
