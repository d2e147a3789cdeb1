"""Callbacks: code that runs at fixed points of ``model.fit``.

The hooks and names are Keras': ``on_train_begin/end(logs)``,
``on_epoch_begin/end(epoch, logs)``, ``on_train_batch_begin/end(batch,
logs)`` and ``on_test_begin/end(logs)``. ``logs`` is a dict: after a batch
it holds that batch's ``"loss"``; after an epoch the epoch's mean
``"loss"``, each compiled metric by its name, the same prefixed with
``"val_"`` when there is validation data, and ``"lr"``. A callback stops
training by setting ``self.model.stop_training = True``; ``fit`` checks it
after every batch.

Resuming exactly
----------------
``BackupAndRestore`` and ``ModelCheckpoint`` save, with the model (weights,
optimizer state, random generator), the *training state*: where ``fit``
stands (epoch, batch, the epoch's shuffle order, running loss and metric
accumulators), the ``History`` so far, and the state of every callback
that has one (``LearningRateScheduler``'s schedule, ``ReduceLROnPlateau``,
``EarlyStopping``, ``ModelCheckpoint``'s best value): a callback is
stateful when it has ``get_state()`` and ``set_state(state)`` methods,
the first returning JSON values and arrays (see
``cdl.training.checkpoint``, which gathers and restores the state). So that this state
includes what the other callbacks did in the same hook, these two run
after all the others in ``on_train_begin``, ``on_epoch_end`` and
``on_train_batch_end``, whatever their place in the list.
"""
import csv
import math
import os
import sys
import time

import numpy as np

from cdl._validation import check_bool, check_number, choose
from cdl.training import schedules as _schedules

__all__ = [
    "Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping",
    "ReduceLROnPlateau", "LearningRateScheduler", "TerminateOnNaN", "CSVLogger",
    "LambdaCallback", "LossThreshold", "TensorBoard",
]

_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end")


class Callback:
    """Base class: override the hooks you need; ``self.model`` is the model
    being trained and ``self.params`` holds ``epochs``, ``steps`` (batches
    per epoch), ``verbose`` and ``batch_size``.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> class PrintLoss(callbacks.Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         print(f"epoch {epoch}: loss {logs['loss']:.4f}")
    >>> history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[PrintLoss()])
    epoch 0: loss 1.7987
    epoch 1: loss 1.0335
    epoch 2: loss 0.5731
    """

    #: Run only in the process of rank 0 in distributed training (callbacks
    #: that print or write files); the other processes skip its hooks.
    rank_zero_only = False
    #: Saves the training state (``ModelCheckpoint``, ``BackupAndRestore``):
    #: ``CallbackList`` gives it the list of callbacks (``set_callbacks``),
    #: whose states it saves and restores, and runs it after the others.
    saves_training_state = False

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        """Called by ``fit`` with the model being trained."""
        self.model = model

    def set_params(self, params):
        """Called by ``fit`` with ``epochs``, ``steps``, ``verbose`` and ``batch_size``."""
        self.params = params

    def on_train_begin(self, logs=None):
        """Called once before the first epoch."""

    def on_train_end(self, logs=None):
        """Called once after the last epoch (or when training stops)."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of epoch ``epoch`` (0-based)."""

    def on_epoch_end(self, epoch, logs=None):
        """Called after each epoch with its loss, metrics, validation results and lr."""

    def on_train_batch_begin(self, batch, logs=None):
        """Called before each training batch (index within the epoch)."""

    def on_train_batch_end(self, batch, logs=None):
        """Called after each training batch with that batch's ``loss``."""

    def on_test_begin(self, logs=None):
        """Called before an evaluation pass."""

    def on_test_end(self, logs=None):
        """Called after an evaluation pass."""


def _overrides(callback, hook):
    """True if ``callback`` has its own ``hook`` (in its class or set on the instance)."""
    return hook in vars(callback) or getattr(type(callback), hook) is not getattr(Callback, hook)


class CallbackList:
    """Calls each hook on every callback, in order, except that callbacks
    saving the training state (``BackupAndRestore``, ``ModelCheckpoint``)
    come last in ``on_train_begin``, ``on_epoch_end`` and
    ``on_train_batch_end``: what they save then includes what the others
    did in that hook (a schedule's step), and what they restore is not
    overwritten (a scheduler that another callback creates on train begin).

    Batch hooks are called only on callbacks that override them, so that
    callbacks which work per epoch add no per-batch cost. In a process of
    rank other than 0 (distributed training), callbacks marked
    ``rank_zero_only`` are not called, but their training state is still
    restored and saved with the others'.

    Examples
    --------
    >>> from cdl import callbacks
    >>> class Printer(callbacks.Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         print("epoch", epoch, logs)
    >>> hooks = callbacks.CallbackList([Printer()], model=None, params={"epochs": 1})
    >>> hooks.wants_batch_logs    # no callback overrides a batch hook
    False
    >>> hooks.on_epoch_end(0, {"loss": 0.5})
    epoch 0 {'loss': 0.5}
    """

    def __init__(self, callbacks, model, params, rank=0):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {cb!r}")
            cb.set_model(model)
            cb.set_params(params)
        savers = [cb for cb in self.callbacks if cb.saves_training_state]
        for cb in savers:
            cb.set_callbacks(self.callbacks)   # whose states they save and restore
        self._active = [cb for cb in self.callbacks if rank == 0 or not cb.rank_zero_only]
        self._savers_last = [cb for cb in self._active if cb not in savers] + \
            [cb for cb in savers if cb in self._active]
        self._batch_begin = [cb for cb in self._active if _overrides(cb, _BATCH_HOOKS[0])]
        self._batch_end = [cb for cb in self._savers_last if _overrides(cb, _BATCH_HOOKS[1])]

    @property
    def wants_batch_logs(self):
        """True if any callback called here listens to batch hooks."""
        return bool(self._batch_begin or self._batch_end)

    @property
    def has_batch_hooks(self):
        """True if any callback, called here or not (``rank_zero_only``),
        listens to batch hooks: the same in every process."""
        return any(_overrides(cb, hook) for cb in self.callbacks for hook in _BATCH_HOOKS)

    def on_train_begin(self, logs=None):
        """Call ``on_train_begin`` on every callback (savers last)."""
        for cb in self._savers_last:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        """Call ``on_train_end`` on every callback."""
        for cb in self._active:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        """Call ``on_epoch_begin`` on every callback."""
        for cb in self._active:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        """Call ``on_epoch_end`` on every callback (savers last)."""
        for cb in self._savers_last:
            cb.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        """Call ``on_train_batch_begin`` on the callbacks that override it."""
        for cb in self._batch_begin:
            cb.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        """Call ``on_train_batch_end`` on the callbacks that override it (savers last)."""
        for cb in self._batch_end:
            cb.on_train_batch_end(batch, logs)

    def on_test_begin(self, logs=None):
        """Call ``on_test_begin`` on every callback."""
        for cb in self._active:
            cb.on_test_begin(logs)

    def on_test_end(self, logs=None):
        """Call ``on_test_end`` on every callback."""
        for cb in self._active:
            cb.on_test_end(logs)


class History(Callback):
    """Records every epoch's logs; ``fit`` returns it.

    Attributes
    ----------
    history : dict of str to list of float
        One list per key of the epoch logs (``"loss"``, ``"val_loss"``, ...).
    epoch : list of int

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)
    >>> history.epoch, sorted(history.history)
    ([0, 1, 2], ['loss', 'lr', 'val_loss'])
    >>> len(history.history["loss"])
    3
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def plot(self, path, keys=None):
        """Plot the loss and metric curves (train and validation) to a PNG.

        Parameters
        ----------
        path : str or path-like
        keys : list of str, optional
            Which training keys to plot (default: every key except ``lr``
            and the ``val_`` ones, which are drawn beside their training
            curve).

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        """
        from cdl._plotting import pyplot

        plt = pyplot("History.plot")
        keys = keys or [k for k in self.history if k != "lr" and not k.startswith("val_")]
        if not keys:
            raise ValueError("there is nothing to plot: the history is empty")
        fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
        epochs = [e + 1 for e in self.epoch]
        for ax, key in zip(axes[0], keys):
            ax.plot(epochs, self.history[key], label=f"train {key}")
            if "val_" + key in self.history:
                ax.plot(epochs, self.history["val_" + key], label=f"validation {key}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
            ax.legend()
        fig.tight_layout()
        fig.savefig(os.fspath(path), dpi=100)
        plt.close(fig)
        return path


def _format_logs(logs, skip=("lr",)):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()
                      if k not in skip and isinstance(v, (int, float)))


def _writes(model):
    """False in the processes of rank other than 0 of a distributed ``fit``,
    which leave printing and writing files to rank 0."""
    strategy = getattr(model, "strategy", None)
    return strategy is None or strategy.writes


class ProgbarLogger(Callback):
    """Prints progress: a live bar with loss, metrics and ETA on a terminal,
    and one line per epoch otherwise (or with ``verbose=2``).

    Parameters
    ----------
    verbose : {1, 2}
        1: live bar when the stream is a terminal; 2: one line per epoch.
    stream : file-like, default sys.stdout

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> import sys
    >>> history = model.fit(x, y, epochs=2, batch_size=16, verbose=0,
    ...                     callbacks=[callbacks.ProgbarLogger(verbose=2, stream=sys.stdout)])
    Epoch 1/2 - ... - loss: 1.7987
    Epoch 2/2 - ... - loss: 1.0335
    """

    rank_zero_only = True

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose = choose(verbose, (1, 2), "verbose")
        self.stream = stream
        self._live = False

    def on_train_begin(self, logs=None):
        stream = self.stream or sys.stdout
        self._out = stream
        self._live = self.verbose == 1 and hasattr(stream, "isatty") and stream.isatty()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._last_draw = 0.0
        self._loss_sum = 0.0
        self._seen = 0
        if self._live:
            self._out.write(f"Epoch {epoch + 1}/{self.params.get('epochs')}\n")

    def on_train_batch_end(self, batch, logs=None):
        if not self._live:
            return
        self._loss_sum += logs.get("loss", float("nan"))
        self._seen = batch + 1
        now = time.perf_counter()
        steps = self.params.get("steps") or 0
        if now - self._last_draw < 0.1 and self._seen < steps:
            return  # redraw at most ten times a second
        self._last_draw = now
        elapsed = now - self._epoch_start
        eta = elapsed / self._seen * (steps - self._seen) if steps else 0.0
        width = 30
        done = int(width * self._seen / steps) if steps else width
        bar = "=" * max(done - 1, 0) + (">" if done < width else "=") + "." * (width - done)
        self._out.write(f"\r{self._seen}/{steps} [{bar}] - ETA: {eta:4.0f}s - "
                        f"loss: {self._loss_sum / self._seen:.4f}")
        self._out.flush()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._epoch_start
        text = _format_logs(logs or {})
        if self._live:
            self._out.write(f"\r{self._seen}/{self.params.get('steps')} - {elapsed:.1f}s - "
                            f"{text}\033[K\n")
        else:
            self._out.write(f"Epoch {epoch + 1}/{self.params.get('epochs')} - "
                            f"{elapsed:.1f}s - {text}\n")
        self._out.flush()


def monitor_mode(mode, monitor):
    """Resolve ``mode="auto"``: maximise accuracies and scores, minimise the rest."""
    mode = choose(mode, ("auto", "min", "max"), "mode")
    if mode == "auto":
        maximise = ("acc", "accuracy", "auc", "precision", "recall", "f1", "r2")
        mode = "max" if any(monitor.endswith(m) for m in maximise) else "min"
    return mode


def monitored(logs, monitor, who):
    """The value of ``monitor`` in ``logs`` as a float; KeyError naming
    ``who`` (a callback) and the keys there are if it is missing."""
    if monitor not in (logs or {}):
        available = ", ".join(sorted(logs or {}))
        raise KeyError(f"{who} monitors {monitor!r}, which is not in the logs "
                       f"(available: {available}); with monitor='val_...' pass validation data")
    return float(logs[monitor])


def saved_int(value, name):
    """``value`` of a saved training state, checked to be an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def saved_number(value, name):
    """``value`` of a saved training state, checked to be a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return value


class EarlyStopping(Callback):
    """Stop training when a monitored quantity stops improving.

    Parameters
    ----------
    monitor : str, default "val_loss"
    min_delta : float, default 0
        Smallest change that counts as an improvement.
    patience : int, default 0
        Epochs without improvement before stopping.
    mode : {"auto", "min", "max"}
    baseline : float, optional
        Training stops if the monitored value does not beat it within
        ``patience`` epochs.
    restore_best_weights : bool, default False
        At the end of training (whether stopped early or because the epochs
        ran out), restore the weights of the best epoch.
    start_from_epoch : int, default 0
        Epochs to wait before monitoring starts.

    Attributes
    ----------
    stopped_epoch : int or None
    best : float
    best_epoch : int or None

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> stop = callbacks.EarlyStopping(monitor="loss", min_delta=1e-3, patience=2)
    >>> history = model.fit(x, y, epochs=500, batch_size=16, verbose=0, callbacks=[stop])
    >>> len(history.epoch) < 500
    True
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(check_number(min_delta, "min_delta"))
        self.patience = check_number(patience, "patience", low=0, integer=True)
        self.mode = monitor_mode(mode, monitor)
        self.baseline = None if baseline is None else check_number(baseline, "baseline")
        self.restore_best_weights = check_bool(restore_best_weights, "restore_best_weights")
        self.start_from_epoch = check_number(start_from_epoch, "start_from_epoch", low=0,
                                             integer=True)

    def _improved(self, value, reference):
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = None
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        value = monitored(logs, self.monitor, "EarlyStopping")
        if self.restore_best_weights and self.best_weights is None:
            # Until something improves, the first monitored weights are the best.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._improved(value, self.best):
            self.best = value
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # Only a value that also beats the baseline restarts the wait; an
            # improvement short of the baseline still counts towards patience
            # (Keras would never stop while such improvements continue).
            if self.baseline is None or self._improved(value, self.baseline):
                self.wait = 0
                return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def get_state(self):
        """What a saved training state keeps of this callback."""
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch,
                "best_weights": None if self.best_weights is None else list(self.best_weights)}

    def set_state(self, state):
        """Continue from what ``get_state`` returned."""
        wait = saved_int(state["wait"], "wait")
        stopped, best_epoch = state["stopped_epoch"], state["best_epoch"]
        for name, value in (("stopped_epoch", stopped), ("best_epoch", best_epoch)):
            if value is not None:
                saved_int(value, name)
        best = saved_number(state["best"], "best")
        weights = state["best_weights"]
        if weights is not None:
            shapes = [p.shape for p in self.model.params]
            if not isinstance(weights, list) or [getattr(w, "shape", None) for w in weights] \
                    != shapes:
                raise ValueError("best_weights do not match the model's weights")
            weights = [np.asarray(w, dtype=self.model.dtype) for w in weights]
        self.wait, self.stopped_epoch, self.best, self.best_epoch = wait, stopped, best, \
            best_epoch
        self.best_weights = weights


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when a monitored quantity has
    not improved for ``patience`` epochs (Keras' arguments, driving
    ``cdl.schedules.ReduceLROnPlateau`` with an absolute ``min_delta``).

    Parameters
    ----------
    monitor : str, default "val_loss"
    factor : float in (0, 1), default 0.1
    patience : int, default 10
    mode : {"auto", "min", "max"}
    min_delta : float, default 1e-4
    cooldown : int, default 0
    min_lr : float, default 0

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> reduce = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
    ...                                      min_delta=1.0)   # every epoch counts as a plateau
    >>> history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[reduce])
    >>> history.history["lr"]
    [0.1, 0.1, 0.05]
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, verbose=0):
        super().__init__()
        self.monitor = monitor
        self.mode = monitor_mode(mode, monitor)
        self._kwargs = dict(mode=self.mode, factor=factor, patience=patience,
                            threshold=min_delta, threshold_mode="abs", cooldown=cooldown,
                            min_lr=min_lr)
        # Validate now rather than at the start of training.
        _schedules.ReduceLROnPlateau(_LrHolder(), **self._kwargs)
        self.verbose = verbose
        self.scheduler = None

    def on_train_begin(self, logs=None):
        self.scheduler = _schedules.ReduceLROnPlateau(self.model.optimizer, **self._kwargs)

    def on_epoch_end(self, epoch, logs=None):
        before = self.model.optimizer.lr
        self.scheduler.step(monitored(logs, self.monitor, "ReduceLROnPlateau"))
        if self.verbose and self.model.optimizer.lr < before:
            print(f"Epoch {epoch + 1}: learning rate reduced to {self.model.optimizer.lr:.3g}")

    def get_state(self):
        """What a saved training state keeps of this callback."""
        return {"scheduler": self.scheduler.state_dict()}

    def set_state(self, state):
        """Continue from what ``get_state`` returned."""
        self.scheduler.load_state_dict(state["scheduler"])


class _LrHolder:
    lr = 1.0


class LearningRateScheduler(Callback):
    """Drive the learning rate from a schedule.

    Parameters
    ----------
    schedule : cdl.schedules scheduler or callable
        A scheduler built on the model's optimizer (its ``step()`` is called
        after every epoch, or every batch with ``per="batch"``), or a
        function ``(epoch, lr) -> new lr`` called at the start of each epoch
        (Keras' form).
    per : {"epoch", "batch"}

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> halve = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / 2 ** epoch)
    >>> history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[halve])
    >>> history.history["lr"]
    [0.1, 0.05, 0.025]
    """

    def __init__(self, schedule, per="epoch", verbose=0):
        super().__init__()
        if not (callable(schedule) or hasattr(schedule, "step")):
            raise TypeError("schedule must be a cdl.schedules scheduler or a function")
        self.schedule = schedule
        self.per = choose(per, ("epoch", "batch"), "per")
        self.verbose = verbose
        self._is_scheduler = isinstance(schedule, _schedules.LRScheduler)
        self._lr_epoch = None   # the epoch whose rate the function last set
        if self._is_scheduler and self.per == "batch":
            # Only then does this callback need the (per-batch) hook.
            self.on_train_batch_end = self._step_batch

    def on_train_begin(self, logs=None):
        self._lr_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if not self._is_scheduler:
            if epoch == self._lr_epoch:
                # Resumed in the middle of this epoch: the restored rate is
                # already its rate (applying lr -> f(epoch, lr) twice would not be).
                return
            lr = self.schedule(epoch, self.model.optimizer.lr)
            self.model.optimizer.lr = check_number(lr, "the scheduled learning rate", low=0.0)
            self._lr_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        # The logs keep the rate used during this epoch; the step sets the next one.
        if self._is_scheduler and self.per == "epoch":
            self.schedule.step()

    def _step_batch(self, batch, logs=None):
        self.schedule.step()

    def get_state(self):
        """What a saved training state keeps of this callback."""
        return {"schedule": self.schedule.state_dict() if self._is_scheduler else None,
                "lr_epoch": self._lr_epoch}

    def set_state(self, state):
        """Continue from what ``get_state`` returned."""
        lr_epoch = state["lr_epoch"]
        if lr_epoch is not None:
            saved_int(lr_epoch, "lr_epoch")
        if self._is_scheduler:
            self.schedule.load_state_dict(state["schedule"])
        self._lr_epoch = lr_epoch


class TerminateOnNaN(Callback):
    """Stop training in the batch whose loss is NaN or infinite.

    The epoch's logs then show the non-finite loss; the metrics report the
    batches before it (batches with a non-finite loss are not given to
    them), or NaN if there were none.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> model.compile(cdl.optimizers.SGD(lr=1e30), "mse")      # diverges at once
    >>> history = model.fit(x, y, epochs=5, batch_size=16, verbose=0,
    ...                     callbacks=[callbacks.TerminateOnNaN()])
    Batch 2: invalid loss nan, terminating training
    >>> len(history.epoch)
    1
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.model.stop_training = True


class LossThreshold(Callback):
    """Stop when the monitored loss falls below ``threshold``: the rule
    "train until the loss is small enough or the iteration limit is reached".

    Parameters
    ----------
    threshold : float
    monitor : str, default "loss"
        A key of the logs, e.g. "loss" or "val_loss".
    per_batch : bool, default False
        Check after every batch (the batch's loss) instead of every epoch.

    Attributes
    ----------
    stopped_epoch : int or None

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> history = model.fit(x, y, epochs=1000, batch_size=16, verbose=0,
    ...                     callbacks=[callbacks.LossThreshold(0.01)])
    >>> history.history["loss"][-1] < 0.01, len(history.epoch) < 1000
    (True, True)
    """

    def __init__(self, threshold, monitor="loss", per_batch=False):
        super().__init__()
        self.threshold = check_number(threshold, "threshold")
        self.monitor = monitor
        self.per_batch = check_bool(per_batch, "per_batch")
        self.stopped_epoch = None
        if self.per_batch:
            self.on_train_batch_end = self._check_batch

    def _check_batch(self, batch, logs=None):
        if logs and logs.get(self.monitor, math.inf) < self.threshold:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and self.per_batch and self.stopped_epoch is None:
            self.stopped_epoch = epoch
        elif not self.per_batch and monitored(logs, self.monitor, "LossThreshold") \
                < self.threshold:
            self.stopped_epoch = epoch
            self.model.stop_training = True


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file.

    Parameters
    ----------
    filename : str or path-like
    separator : str, default ","
    append : bool, default False
        Append to an existing file instead of overwriting it.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> history = model.fit(x, y, epochs=2, batch_size=16, verbose=0,
    ...                     callbacks=[callbacks.CSVLogger("log.csv")])
    >>> print(open("log.csv").read().splitlines()[0])
    epoch,loss,lr
    """

    rank_zero_only = True

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = check_bool(append, "append")
        self._file = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) \
            and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer = None
        self._write_header = not exists

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writer is None:
            self._keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self._keys,
                                          delimiter=self.separator)
            if self._write_header:
                self._writer.writeheader()
        row = {"epoch": epoch}
        row.update({k: logs.get(k, "NA") for k in self._keys})
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class LambdaCallback(Callback):
    """A callback from plain functions, e.g.
    ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(logs["loss"]))``.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> losses = []
    >>> record = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: losses.append(logs["loss"]))
    >>> history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[record])
    >>> len(losses)
    3
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_batch_begin=None,
                 on_train_batch_end=None, on_train_begin=None, on_train_end=None):
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end)
        for name, fn in hooks.items():
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name} must be callable")
                setattr(self, name, fn)


def _summary_writer_class():
    """tensorboardX's ``SummaryWriter``, or an ImportError saying how to get it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as error:
        raise ImportError("callbacks.TensorBoard writes its event files with the tensorboardX "
                          "package, which is not installed: pip install 'cdl[tensorboard]' "
                          "(or pip install tensorboardX)") from error
    return SummaryWriter


class TensorBoard(Callback):
    """Write what training does to event files that TensorBoard shows
    (``tensorboard --logdir <log_dir>``), in Keras' layout: run folders
    ``log_dir/train`` and ``log_dir/validation``, the scalars of each epoch
    tagged ``epoch_<key>`` at step ``epoch`` (``epoch_loss``,
    ``epoch_accuracy``, ..., with the validation results, ``val_`` removed,
    in the validation run) and the learning rate as ``epoch_learning_rate``.

    The files are written by ``tensorboardX`` (the optional extra:
    ``pip install 'cdl[tensorboard]'``), imported when the callback is made.
    Only the process of rank 0 writes under ``distributed=True``.

    Parameters
    ----------
    log_dir : str or path-like
        The folder of the run (created when needed). A later ``fit`` with
        the same folder adds new event files beside the earlier ones.
    update_freq : "epoch" or int, default "epoch"
        ``"epoch"``: scalars once per epoch. An integer ``n``: also the
        batch loss and learning rate every ``n`` optimizer steps, tagged
        ``batch_loss`` and ``batch_learning_rate`` at step ``k``, the number
        of optimizer steps of the run so far (1 after the first batch).
    histogram_freq : int, default 0
        Every ``histogram_freq`` epochs (epochs 0, ``histogram_freq``, ...),
        histograms of every weight, tagged ``<layer>/<weight>``, and of its
        gradient in the last batch of the epoch, ``<layer>/<weight>/gradient``
        (in the train run, at step ``epoch``). 0: none.
    write_graph : bool, default False
        Write the model's ``summary()`` (its layers, output shapes,
        parameter counts and, for a graph ``Model``, which layer feeds
        which) as the text ``model_summary`` of the train run, at step 0.
        This is cdl's graph: cdl runs compiled kernels, not a traced
        computation, so there is no operation graph for TensorBoard's
        "Graphs" tab.

    Raises
    ------
    ImportError
        If tensorboardX is not installed.

    Notes
    -----
    A run resumed by ``BackupAndRestore`` continues the step numbers of the
    interrupted one: the epochs are numbered from the restored epoch and
    the batch steps from the restored optimizer step count. The batches
    run again after the last backup are written again, so TensorBoard may
    show two points at those steps. tensorboardX writes the events from a
    thread; they reach the files within a second, and the files are closed
    at the end of training (or, if ``fit`` raised, when Python exits).

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> board = callbacks.TensorBoard("logs", update_freq=2, histogram_freq=1)
    >>> history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25,
    ...                     verbose=0, callbacks=[board])
    >>> import os
    >>> sorted(os.listdir("logs"))
    ['train', 'validation']
    """

    rank_zero_only = True
    _files_made = 0   # makes event file names unique within a process

    def __init__(self, log_dir="logs", update_freq="epoch", histogram_freq=0,
                 write_graph=False):
        super().__init__()
        if isinstance(log_dir, (bytes, bool)) or log_dir is None:
            raise TypeError(f"log_dir must be a path, got {log_dir!r}")
        self.log_dir = os.fspath(log_dir)
        if isinstance(update_freq, str):
            choose(update_freq, ("epoch",), "update_freq")
        else:
            update_freq = check_number(update_freq, "update_freq", low=1, integer=True)
        self.update_freq = update_freq
        self.histogram_freq = check_number(histogram_freq, "histogram_freq", low=0,
                                           integer=True)
        self.write_graph = check_bool(write_graph, "write_graph")
        self._writer_class = _summary_writer_class()
        self._writers = {}
        self._batch_lr = None
        if update_freq != "epoch":
            # Only then does this callback need the per-batch hooks (which
            # cost a call per batch, and a vote per step when distributed).
            self.on_train_batch_begin = self._batch_begin
            self.on_train_batch_end = self._batch_end

    def _writer(self, run):
        """The writer of run folder ``run`` ("train" or "validation"), made on first use."""
        writer = self._writers.get(run)
        if writer is None:
            # tensorboardX names a file by the second and host; the suffix
            # keeps two writers of one second (a quick resume) apart.
            TensorBoard._files_made += 1
            suffix = f".{os.getpid()}.{TensorBoard._files_made}"
            # tensorboardX writes from a thread and flushes to disk every
            # flush_secs (2 minutes by default): within a second, so that
            # TensorBoard follows the run and a killed process loses at most
            # the last second (at a normal exit, tensorboardX closes its files).
            writer = self._writers[run] = self._writer_class(
                os.path.join(self.log_dir, run), filename_suffix=suffix, flush_secs=1)
        return writer

    def _close(self):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def on_train_begin(self, logs=None):
        self._close()   # a writer left open by a fit that raised
        writer = self._writer("train")
        if self.write_graph:
            lines = []
            self.model.summary(print_fn=lines.append)
            # Indented: TensorBoard renders text as Markdown, and this keeps
            # the table's columns (a code block, in a fixed-width font).
            writer.add_text("model_summary", "\n".join("    " + line for line in lines), 0)

    def _batch_begin(self, batch, logs=None):
        # The rate this batch uses: a per-batch schedule may change it
        # before this callback's on_train_batch_end.
        self._batch_lr = self.model.optimizer.lr

    def _batch_end(self, batch, logs=None):
        step = self.model.fit_progress.total_steps
        if step % self.update_freq:
            return
        writer = self._writer("train")
        loss = (logs or {}).get("loss")
        if _is_number(loss):
            writer.add_scalar("batch_loss", float(loss), step)
        if self._batch_lr is not None:
            writer.add_scalar("batch_learning_rate", float(self._batch_lr), step)

    def on_epoch_end(self, epoch, logs=None):
        train, validation = {}, {}
        for key, value in (logs or {}).items():
            if not _is_number(value):
                continue
            if key.startswith("val_"):
                validation[key[4:]] = value
            else:
                train["learning_rate" if key == "lr" else key] = value
        for run, values in (("train", train), ("validation", validation)):
            if values:
                writer = self._writer(run)
                for key, value in values.items():
                    writer.add_scalar("epoch_" + key, float(value), epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._write_histograms(epoch)
        for writer in self._writers.values():
            writer.flush()

    def _write_histograms(self, epoch):
        writer = self._writer("train")
        used = set()
        for layer, name in _weight_owners(self.model):
            tag = f"{layer.name}/{name}"
            # Sublayers of two composite layers may share a name.
            tag = next(f"{tag}_{k}" if k else tag for k in range(len(used) + 1)
                       if (f"{tag}_{k}" if k else tag) not in used)
            used.add(tag)
            for suffix, values in (("", getattr(layer, name)),
                                   ("/gradient", getattr(layer, name + "_grad"))):
                values = np.asarray(values).ravel()
                values = values[np.isfinite(values)]   # a histogram needs finite values
                if values.size:
                    writer.add_histogram(tag + suffix, values, epoch)

    def on_train_end(self, logs=None):
        self._close()


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _weight_owners(model):
    """``(layer, weight name)`` of every weight of ``model``, in its order."""
    return [owner for layer in model.layers for owner in layer.weight_owners()]
