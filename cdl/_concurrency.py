"""Which threads may use one model at the same time.

A model's inference calls (``predict``, ``predict_proba``, ``evaluate``)
may run in any number of threads at once. Training (``fit``,
``partial_fit``, ``train_step``) changes the weights at every step, so it
runs in one thread at a time, and while it runs, other threads' training
and inference calls raise ``RuntimeError`` instead of reading weights that
are half updated or layer state that the training step needs for its
backward pass. The training thread itself may still predict and evaluate
(callbacks and validation do).

Replacing the weights (``set_weights``, ``load_weights``) is a short
write: it waits until the inference calls running in other threads finish,
and inference calls that start meanwhile wait until it is done, so every
prediction sees either the old or the new weights, never a mix. Like
training, it raises ``RuntimeError`` while another thread trains.

Two kinds of shared state make concurrent inference unsafe, and each gets
its own remedy here:

- the fused inference plan owns work buffers, so every thread gets its own
  plan (``ModelGuard.local``);
- layers keep per-call state in ``forward`` (caches for backward, the
  convolutions' im2col buffer, user layers' anything), so forward passes
  that go through the layers one by one take ``ModelGuard.layer_lock`` and
  run one at a time.
"""
import functools
import threading
from threading import get_ident

__all__ = ["ModelGuard", "guard_of", "training_call", "inference_call", "weights_write"]

_CREATION_LOCK = threading.Lock()


class ModelGuard:
    """The thread coordination state of one model.

    Attributes
    ----------
    local : threading.local
        Per-thread storage (each thread's inference plan).
    layer_lock : threading.RLock
        Held by every forward pass through the layers.
    evaluate_lock : threading.RLock
        Held by ``evaluate``, whose loss and metric objects accumulate
        state over the batches of one call.
    """

    def __init__(self):
        self.local = threading.local()
        self.layer_lock = threading.RLock()
        self.evaluate_lock = threading.RLock()
        # A plain lock, taken directly on the fast paths (a Condition's own
        # ``with`` costs microseconds); the Condition only serves waiting.
        self._lock = threading.Lock()
        self._readers_done = threading.Condition(self._lock)
        self._trainer = None    # ident of the thread that is training
        self._depth = 0         # nested training calls of that thread
        self._readers = {}      # thread ident -> inference calls in progress
        self._writer = None     # ident of the thread replacing the weights
        self._write_depth = 0   # nested weight writes of that thread

    def begin_training(self, name):
        """Enter a training call; raise RuntimeError if another thread trains.

        Waits until the inference calls already running in other threads
        finish; new ones are refused from now on.
        """
        me = get_ident()
        with self._lock:
            if self._trainer == me:
                self._depth += 1
                return
            if self._trainer is not None:
                raise RuntimeError(_busy_message(name, "training"))
            self._trainer, self._depth = me, 1
            while any(ident != me for ident in self._readers) or \
                    self._writer not in (None, me):
                self._readers_done.wait()

    def end_training(self):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._trainer = None

    def begin_inference(self, name, what):
        """Enter an inference call; raise RuntimeError if another thread trains."""
        me = get_ident()
        readers = self._readers
        with self._lock:
            if self._trainer is not None and self._trainer != me:
                raise RuntimeError(_busy_message(name, what))
            if self._writer is not None and self._writer != me:
                # Weights being replaced: wait for the new set (a short copy).
                while self._writer is not None:
                    self._readers_done.wait()
                if self._trainer is not None and self._trainer != me:
                    raise RuntimeError(_busy_message(name, what))
            readers[me] = readers.get(me, 0) + 1

    def end_inference(self):
        me = get_ident()
        readers = self._readers
        with self._lock:
            left = readers[me] - 1
            if left:
                readers[me] = left
            else:
                del readers[me]
                if self._trainer is not None or self._writer is not None:
                    self._readers_done.notify_all()

    def begin_weights_write(self, name, what):
        """Enter a call that replaces the weights (``what``): raise
        RuntimeError if another thread trains; otherwise wait for other
        writes and for the inference calls running in other threads, which
        are held back from now on until ``end_weights_write``."""
        me = get_ident()
        with self._lock:
            if self._writer == me:
                self._write_depth += 1
                return
            while True:
                if self._trainer is not None and self._trainer != me:
                    raise RuntimeError(_busy_message(name, what))
                if self._writer is None:
                    break
                self._readers_done.wait()
            self._writer, self._write_depth = me, 1
            while any(ident != me for ident in self._readers):
                self._readers_done.wait()

    def end_weights_write(self):
        with self._lock:
            self._write_depth -= 1
            if self._write_depth == 0:
                self._writer = None
                self._readers_done.notify_all()


def _busy_message(name, what):
    return (f"model {name!r} is training in another thread; {what} cannot run until that "
            "fit/train_step returns (a model trains in one thread at a time, and its "
            "weights change at every step)")


def guard_of(model):
    """The model's ``ModelGuard``, created on first use."""
    guard = model.__dict__.get("_guard")
    if guard is None:
        with _CREATION_LOCK:
            guard = model.__dict__.setdefault("_guard", ModelGuard())
    return guard


def training_call(method):
    """Decorate a model method that trains: one thread at a time (see the module)."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        guard = guard_of(self)
        guard.begin_training(self.name)
        try:
            return method(self, *args, **kwargs)
        finally:
            guard.end_training()
    return guarded


def weights_write(method):
    """Decorate a model method that replaces the weights: it runs while no
    other thread predicts, evaluates or trains (see the module)."""
    what = method.__name__

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        guard = guard_of(self)
        guard.begin_weights_write(self.name, what)
        try:
            return method(self, *args, **kwargs)
        finally:
            guard.end_weights_write()
    return guarded


def inference_call(method):
    """Decorate a model method that only reads the weights: any number of
    threads at once, none while another thread trains (see the module)."""
    what = method.__name__

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        guard = self.__dict__.get("_guard") or guard_of(self)
        guard.begin_inference(self.name, what)
        try:
            return method(self, *args, **kwargs)
        finally:
            guard.end_inference()
    return guarded
