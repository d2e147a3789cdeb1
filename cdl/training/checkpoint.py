"""The training state: everything a stopped ``fit`` needs to continue exactly.

A resumable run saves, with the model's weights, optimizer state and
random generator (which the model file holds), the *training state*: where
``fit`` stands (``FitProgress``: the epoch, the batch, the epoch's shuffle
order, the running loss, the step count and whether training was
stopping), the metrics' accumulators (``Metric.get_state``), the
``History`` so far, and the state of every stateful callback (those with
``get_state``/``set_state`` methods: ``LearningRateScheduler``'s schedule,
``ReduceLROnPlateau``, ``EarlyStopping``, ``ModelCheckpoint``'s best
value). ``training_state`` gathers it as a dict of JSON values and
arrays, ``check_resumable`` tells whether a saved one fits a ``fit``
call, and ``restore_training_state`` puts it back. The model file
stores it in its ``training_state`` section (``cdl.saving.checkpoint``);
``ModelCheckpoint`` and ``BackupAndRestore`` write and read such files.
"""
import math
import os

from cdl._validation import check_bool, check_number
from cdl.saving.checkpoint import read_training_state, restore_checkpoint, save_checkpoint
from cdl.saving.format import ModelFileError
from cdl.training.callbacks import Callback, monitor_mode, monitored, saved_int, saved_number

__all__ = ["stateful_callbacks", "training_state", "check_resumable", "restore_training_state",
           "ModelCheckpoint", "BackupAndRestore"]


def stateful_callbacks(callbacks):
    """The callbacks whose state is part of the training state (those with a
    ``get_state`` method), in order.

    Examples
    --------
    >>> from cdl import callbacks
    >>> from cdl.training.checkpoint import stateful_callbacks
    >>> early = callbacks.EarlyStopping(monitor="loss")
    >>> stateful_callbacks([callbacks.TerminateOnNaN(), early]) == [early]
    True
    """
    return [cb for cb in callbacks if callable(getattr(cb, "get_state", None))]


def training_state(model, callbacks, epoch, batch):
    """The training state to continue at batch ``batch`` of ``epoch``.

    Mid-epoch it includes the epoch's shuffle order, running loss and
    metric accumulators; at an epoch boundary (``batch`` 0) those start
    afresh. ``total_steps`` (what ``max_steps`` counts) and
    ``stop_training`` (a callback or ``max_steps`` ended the run in the
    batch or epoch just done) decide where the resumed run stops. In
    distributed training every process calls it (the metrics are merged
    over the processes by ``model.strategy``).

    Parameters
    ----------
    model : cdl.Sequential
        The model that ``fit`` is training (it has a ``fit_progress``).
    callbacks : list of cdl.callbacks.Callback
        The callbacks of that ``fit``.
    epoch, batch : int

    Returns
    -------
    dict
        The fields listed in the format's specification
        (``cdl.saving.format``); arrays may appear in it.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> from cdl.training.checkpoint import training_state
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(2,), seed=0)
    >>> model.compile("sgd", "mse")
    >>> history = model.fit(np.ones((8, 2)), np.ones((8, 1)), batch_size=4, verbose=0)
    >>> state = training_state(model, [], epoch=1, batch=0)
    >>> state["epoch"], state["steps"], state["total_steps"], state["history"]["epoch"]
    (1, 2, 2, [0])
    """
    progress = model.fit_progress
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
                    for m, state in zip(model.metrics,
                                        model.strategy.metric_states(model.metrics))]
        if mid_epoch else [],
        "history": {"epoch": list(history.epoch) if history else [],
                    "logs": {k: list(v) for k, v in history.history.items()} if history
                    else {}},
        "callbacks": [{"class": type(cb).__name__, "state": cb.get_state()}
                      for cb in stateful_callbacks(callbacks)],
    }


def check_resumable(model, callbacks, state, params):
    """Raise ValueError if the training ``state`` cannot continue in the
    ``fit`` call of ``model`` with ``callbacks`` and ``params`` (the
    callbacks' ``params``: ``batch_size``, ``steps``...).

    Examples
    --------
    >>> import cdl
    >>> from cdl import callbacks, layers
    >>> from cdl.training.checkpoint import check_resumable
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(2,), seed=0)
    >>> state = {"callbacks": [{"class": "EarlyStopping", "state": {}}], "batch": 0}
    >>> check_resumable(model, [], state, {})
    Traceback (most recent call last):
    ...
    ValueError: the backup was made with the stateful callbacks ['EarlyStopping'], this fit has []; pass the same callbacks to resume
    """
    names = [type(cb).__name__ for cb in stateful_callbacks(callbacks)]
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


def restore_training_state(model, callbacks, state):
    """Put the callbacks, the History, the metrics and ``fit``'s position
    back as ``state`` (checked by ``check_resumable``) has them; called
    from ``on_train_begin``, so that ``fit`` starts where the saved run
    stopped.

    Raises
    ------
    ValueError, KeyError, TypeError
        If a field of ``state`` does not fit.

    Examples
    --------
    >>> from cdl.training.checkpoint import restore_training_state
    >>> restore_training_state(model, callbacks, state)     # doctest: +SKIP
    """
    for cb, entry in zip(stateful_callbacks(callbacks), state["callbacks"]):
        cb.set_state(entry["state"])
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
    model.fit_progress.resume_at(state["epoch"], state["batch"], state["shuffle_order"],
                                 float(state["loss_sum"]), state["seen"],
                                 saved_int(state.get("total_steps", 0), "total_steps"), stop)


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

    saves_training_state = True
    rank_zero_only = True

    def __init__(self, filepath, monitor="val_loss", save_best_only=False,
                 save_weights_only=False, mode="auto", verbose=0):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.save_best_only = check_bool(save_best_only, "save_best_only")
        self.save_weights_only = check_bool(save_weights_only, "save_weights_only")
        self.mode = monitor_mode(mode, monitor)
        self.verbose = verbose
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_saved = None
        self._callbacks = None

    def get_state(self):
        """What a saved training state keeps of this callback."""
        return {"best": self.best}

    def set_state(self, state):
        """Continue from what ``get_state`` returned."""
        self.best = saved_number(state["best"], "best")

    def set_callbacks(self, callbacks):
        """Called by ``CallbackList`` with the callbacks of ``fit``, whose
        states the saved training state holds."""
        self._callbacks = callbacks

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = monitored(logs, self.monitor, "ModelCheckpoint")
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:
                return
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        elif getattr(self.model, "fit_progress", None) is None or self._callbacks is None:
            self.model.save(path)   # called outside fit: there is no training state
        else:
            save_checkpoint(self.model, path,
                            training_state(self.model, self._callbacks, epoch + 1, 0))
        self.last_saved = path
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved {path}")


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

    saves_training_state = True
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

    def set_callbacks(self, callbacks):
        """Called by ``CallbackList`` with the callbacks of ``fit``, whose
        states the backup holds."""
        self._callbacks = callbacks

    @property
    def path(self):
        """Path of the backup file."""
        return os.path.join(self.backup_dir, self.FILENAME)

    def on_train_begin(self, logs=None):
        self._batches_since_backup = 0
        progress = getattr(self.model, "fit_progress", None)
        if self.save_freq != "epoch" and progress is not None and progress.n is None:
            raise ValueError("BackupAndRestore(save_freq=<batches>) needs array data: an "
                             "iterable of batches cannot be rewound to the middle of an "
                             "epoch; use save_freq='epoch'")
        if os.path.lexists(self.path):
            self._restore()

    def _restore(self):
        state = read_training_state(self.path)
        if state is None:
            raise ModelFileError(f"{self.path}: has no training state; it is not a backup")
        check_resumable(self.model, self._callbacks or [], state, self.params)
        restore_checkpoint(self.model, self.path)
        lr = self.model.optimizer.lr
        try:
            restore_training_state(self.model, self._callbacks or [], state)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFileError(f"{self.path}: the training state cannot be restored: "
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
            progress = self.model.fit_progress
            self._backup(progress.epoch, progress.batch)

    def _backup(self, epoch, batch):
        # Every process gathers the state (in distributed training it merges
        # their metrics); rank 0 writes it.
        state = training_state(self.model, self._callbacks or [], epoch, batch)
        if not self.model.strategy.writes:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        save_checkpoint(self.model, self.path, state)

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint or not self.model.strategy.writes:
            return
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        try:
            os.rmdir(self.backup_dir)
        except OSError:
            pass   # not empty (other files, a save in progress): leave it
