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
``EarlyStopping``, ``ModelCheckpoint``'s best value). So that this state
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
    "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler", "TerminateOnNaN",
    "CSVLogger", "LambdaCallback", "LossThreshold", "BackupAndRestore",
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
        savers = [cb for cb in self.callbacks if getattr(cb, "_saves_training_state", False)]
        for cb in savers:
            cb._callbacks = self.callbacks   # whose states they save and restore
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


def _monitor_mode(mode, monitor):
    """Resolve ``mode="auto"``: maximise accuracies and scores, minimise the rest."""
    mode = choose(mode, ("auto", "min", "max"), "mode")
    if mode == "auto":
        maximise = ("acc", "accuracy", "auc", "precision", "recall", "f1", "r2")
        mode = "max" if any(monitor.endswith(m) for m in maximise) else "min"
    return mode


def _monitored(logs, monitor, who):
    if monitor not in (logs or {}):
        available = ", ".join(sorted(logs or {}))
        raise KeyError(f"{who} monitors {monitor!r}, which is not in the logs "
                       f"(available: {available}); with monitor='val_...' pass validation data")
    return float(logs[monitor])


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
        self.mode = _monitor_mode(mode, monitor)
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
        value = _monitored(logs, self.monitor, "EarlyStopping")
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

    def _training_state(self):
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch,
                "best_weights": None if self.best_weights is None else list(self.best_weights)}

    def _load_training_state(self, state):
        wait = _saved_int(state["wait"], "wait")
        stopped, best_epoch = state["stopped_epoch"], state["best_epoch"]
        for name, value in (("stopped_epoch", stopped), ("best_epoch", best_epoch)):
            if value is not None:
                _saved_int(value, name)
        best = _saved_number(state["best"], "best")
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


class ModelCheckpoint(Callback):
    """Save the model (or its weights) after every epoch or only when the
    monitored quantity improves. Each save is atomic: a crash mid-save leaves
    the previous file intact.

    A model file also holds the training state at the end of the epoch
    (see the module docstring and ``cdl.io.read_training_state``), so that
    ``cdl.load_model`` then ``fit(..., initial_epoch=state["epoch"])``
    continues exactly as the original run did.

    Parameters
    ----------
    filepath : str
        May contain ``{epoch}`` (1-based) and log keys as format fields, e.g.
        ``"ckpt-{epoch:02d}-{val_loss:.3f}.cdl"``.
    monitor : str, default "val_loss"
    save_best_only : bool, default False
    save_weights_only : bool, default False
    mode : {"auto", "min", "max"}

    Attributes
    ----------
    best : float
    last_saved : str or None
        Path of the most recent save.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> x = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> y = 3 * x
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> checkpoint = callbacks.ModelCheckpoint("model-{epoch:02d}.cdl", monitor="loss")
    >>> history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[checkpoint])
    >>> checkpoint.last_saved
    'model-03.cdl'
    """

    _saves_training_state = True
    rank_zero_only = True

    def __init__(self, filepath, monitor="val_loss", save_best_only=False,
                 save_weights_only=False, mode="auto", verbose=0):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.save_best_only = check_bool(save_best_only, "save_best_only")
        self.save_weights_only = check_bool(save_weights_only, "save_weights_only")
        self.mode = _monitor_mode(mode, monitor)
        self.verbose = verbose
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_saved = None
        self._callbacks = None

    def _training_state(self):
        return {"best": self.best}

    def _load_training_state(self, state):
        self.best = _saved_number(state["best"], "best")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:
                return
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        elif getattr(self.model, "_fit_progress", None) is None or self._callbacks is None:
            self.model.save(path)   # called outside fit: there is no training state
        else:
            from cdl.saving.checkpoint import save_checkpoint
            save_checkpoint(self.model, path,
                            _training_state(self.model, self._callbacks, epoch + 1, 0))
        self.last_saved = path
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved {path}")


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
        self.mode = _monitor_mode(mode, monitor)
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
        self.scheduler.step(_monitored(logs, self.monitor, "ReduceLROnPlateau"))
        if self.verbose and self.model.optimizer.lr < before:
            print(f"Epoch {epoch + 1}: learning rate reduced to {self.model.optimizer.lr:.3g}")

    def _training_state(self):
        return {"scheduler": self.scheduler.state_dict()}

    def _load_training_state(self, state):
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

    def _training_state(self):
        return {"schedule": self.schedule.state_dict() if self._is_scheduler else None,
                "lr_epoch": self._lr_epoch}

    def _load_training_state(self, state):
        lr_epoch = state["lr_epoch"]
        if lr_epoch is not None:
            _saved_int(lr_epoch, "lr_epoch")
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
        elif not self.per_batch and _monitored(logs, self.monitor, "LossThreshold") \
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



# --- the training state that makes a stopped fit resumable ---------------------------


def _saved_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _saved_number(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return value


def _stateful(callbacks):
    """The callbacks whose state is part of the training state, in order."""
    return [cb for cb in callbacks if hasattr(cb, "_training_state")]


def _training_state(model, callbacks, epoch, batch):
    """The training state (see ``cdl.io``) to continue at batch ``batch`` of
    ``epoch``: mid-epoch it includes the epoch's shuffle order, running loss
    and metric accumulators; at an epoch boundary (``batch`` 0) those start
    afresh. ``total_steps`` (what ``max_steps`` counts) and
    ``stop_training`` (a callback or ``max_steps`` ended the run in the
    batch or epoch just done) decide where the resumed run stops."""
    progress = model._fit_progress
    mid_epoch = batch > 0
    history = getattr(model, "history", None)
    return {
        "epoch": epoch,
        "batch": batch,
        "steps": None if progress.n is None else math.ceil(progress.n / progress.batch_size),
        "batch_size": progress.batch_size,
        "loss_sum": progress.loss_sum if mid_epoch else 0.0,
        "seen": progress.seen if mid_epoch else 0,
        "shuffle_order": progress.order if mid_epoch else None,
        "total_steps": progress.total_steps,
        "stop_training": bool(model.stop_training),
        "metrics": [{"name": m.name, "class": type(m).__name__, "state": state}
                    for m, state in zip(model.metrics, _metric_states(model))]
        if mid_epoch else [],
        "history": {"epoch": list(history.epoch) if history else [],
                    "logs": {k: list(v) for k, v in history.history.items()} if history
                    else {}},
        "callbacks": [{"class": type(cb).__name__, "state": cb._training_state()}
                      for cb in _stateful(callbacks)],
    }


def _metric_states(model):
    """The metrics' accumulators; in distributed training, those of all the
    processes merged (a collective operation: every process calls it)."""
    return model.strategy.metric_states(model.metrics)


def _check_resumable(model, callbacks, state, params):
    """Raise ValueError if ``state`` cannot continue in this ``fit`` call."""
    names = [type(cb).__name__ for cb in _stateful(callbacks)]
    saved = [entry["class"] for entry in state["callbacks"]]
    if names != saved:
        raise ValueError(f"the backup was made with the stateful callbacks {saved}, this fit "
                         f"has {names}; pass the same callbacks to resume")
    if state["batch"] == 0:
        return
    for key in ("batch_size", "steps"):
        if state[key] != params.get(key):
            raise ValueError(f"the backup was made mid-epoch with {key}={state[key]}, this "
                             f"fit has {key}={params.get(key)}")
    metrics = [(m.name, type(m).__name__) for m in model.metrics]
    if [(e["name"], e["class"]) for e in state["metrics"]] != metrics:
        raise ValueError(f"the backup's metrics {[e['name'] for e in state['metrics']]} "
                         f"differ from the model's {[name for name, _ in metrics]}")


def _restore_training_state(model, callbacks, state):
    """Put the callbacks, the History, the metrics and fit's position back as
    ``state`` (checked by ``_check_resumable``) has them."""
    for cb, entry in zip(_stateful(callbacks), state["callbacks"]):
        cb._load_training_state(entry["state"])
    history = getattr(model, "history", None)
    if history is not None:
        history.epoch = list(state["history"]["epoch"])
        history.history = {k: list(v) for k, v in state["history"]["logs"].items()}
    if state["batch"]:
        for metric, entry in zip(model.metrics, state["metrics"]):
            metric.set_state(entry["state"])
    # Absent from backups written before they were saved: such a run counts
    # max_steps afresh and continues.
    stop = state.get("stop_training", False)
    if not isinstance(stop, bool):
        raise ValueError(f"stop_training must be true or false, got {stop!r}")
    model._fit_progress.resume_at(state["epoch"], state["batch"], state["shuffle_order"],
                                  float(state["loss_sum"]), state["seen"],
                                  _saved_int(state.get("total_steps", 0), "total_steps"),
                                  stop)


class BackupAndRestore(Callback):
    """Back up the training state so that a ``fit`` interrupted by a crash,
    a kill or an exception continues exactly where it stopped when the same
    ``fit`` is run again (Keras' callback of the same name).

    On train begin, if the backup exists, the model's weights, optimizer
    state and hyper-parameters, random generator, the position in the
    epoch (its shuffle order, running loss and metric accumulators), the
    run's step count (which ``max_steps`` limits) and whether training was
    stopping (``stop_training``), the ``History`` and the other callbacks'
    states (schedules, early stopping) are restored from it and training
    continues from there; the result is bit for bit that of an
    uninterrupted run. ``max_time`` is the exception: wall-clock time
    starts afresh. On a normal end of training
    the backup is deleted. The backup is one cdl model file, written
    atomically, so a crash while it is written leaves the previous one.

    Parameters
    ----------
    backup_dir : str or path-like
        Directory for the backup (created when needed), one per training
        run; the backup is its file ``backup.cdl``.
    save_freq : "epoch" or int, default "epoch"
        Back up at the end of every epoch, or after every ``save_freq``
        batches.
    delete_checkpoint : bool, default True
        Delete the backup (and ``backup_dir`` if it is then empty) when
        ``fit`` ends normally, including by early stopping.

    Raises
    ------
    ValueError
        On train begin, if the backup was made by a different training
        setup: another architecture or optimizer, other stateful callbacks,
        or, for a mid-epoch backup, another batch size, data size,
        ``shuffle`` or metrics.
    cdl.io.ModelFileError
        On train begin, if the backup file is damaged.

    Notes
    -----
    Pass the same data and arguments to the resumed ``fit``; the epoch to
    continue with comes from the backup, not from ``initial_epoch``. The
    model must be compiled with metrics named by strings (as for
    ``Sequential.save``).

    Examples
    --------
    >>> from cdl.callbacks import BackupAndRestore
    >>> backup = BackupAndRestore("run-1-backup", save_freq=100)
    >>> model.fit(x, y, epochs=20, callbacks=[backup])   # doctest: +SKIP
    """

    _saves_training_state = True
    FILENAME = "backup.cdl"

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        self.backup_dir = os.fspath(backup_dir)
        if save_freq != "epoch":
            if isinstance(save_freq, str):
                raise ValueError(f"save_freq must be 'epoch' or a number of batches, got "
                                 f"{save_freq!r}")
            save_freq = check_number(save_freq, "save_freq", low=1, integer=True)
            self.on_train_batch_end = self._backup_batch
        self.save_freq = save_freq
        self.delete_checkpoint = check_bool(delete_checkpoint, "delete_checkpoint")
        self._callbacks = None
        self._batches_since_backup = 0

    @property
    def path(self):
        """Path of the backup file."""
        return os.path.join(self.backup_dir, self.FILENAME)

    def on_train_begin(self, logs=None):
        self._batches_since_backup = 0
        progress = getattr(self.model, "_fit_progress", None)
        if self.save_freq != "epoch" and progress is not None and progress.n is None:
            raise ValueError("BackupAndRestore(save_freq=<batches>) needs array data: an "
                             "iterable of batches cannot be rewound to the middle of an "
                             "epoch; use save_freq='epoch'")
        if os.path.lexists(self.path):
            self._restore()

    def _restore(self):
        from cdl import io
        from cdl.saving.checkpoint import restore_checkpoint

        state = io.read_training_state(self.path)
        if state is None:
            raise io.ModelFileError(f"{self.path}: has no training state; it is not a backup")
        _check_resumable(self.model, self._callbacks or [], state, self.params)
        restore_checkpoint(self.model, self.path)
        lr = self.model.optimizer.lr
        try:
            _restore_training_state(self.model, self._callbacks or [], state)
        except (KeyError, TypeError, ValueError) as err:
            raise io.ModelFileError(f"{self.path}: the training state cannot be restored: "
                                    f"{type(err).__name__}: {err}") from None
        # Schedules restored above write their own last rate; the optimizer's is the truth.
        self.model.optimizer.lr = lr

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._backup(epoch + 1, 0)

    def _backup_batch(self, batch, logs=None):
        self._batches_since_backup += 1
        if self._batches_since_backup >= self.save_freq:
            self._batches_since_backup = 0
            progress = self.model._fit_progress
            self._backup(progress.epoch, progress.batch)

    def _backup(self, epoch, batch):
        from cdl.saving.checkpoint import save_checkpoint

        # Every process gathers the state (in distributed training it merges
        # their metrics); rank 0 writes it.
        state = _training_state(self.model, self._callbacks or [], epoch, batch)
        if not _writes(self.model):
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        save_checkpoint(self.model, self.path, state)

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint or not _writes(self.model):
            return
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        try:
            os.rmdir(self.backup_dir)
        except OSError:
            pass   # not empty (other files, a save in progress): leave it

