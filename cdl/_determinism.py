"""Deterministic mode: results that do not depend on the BLAS thread count.

A seeded run repeats bit for bit at a fixed thread count, and cdl's own
loops give the same bits at any thread count: their OpenMP threads split
elementwise work, which does not change any result, and every reduction
(a sum over the batch, a norm, a loss) adds fixed-size chunks in order and
then the chunks' sums in chunk order, a split that does not depend on the
number of threads. The BLAS is what depends on it: OpenBLAS computes one
call the same way every time it runs with the same number of threads. With another number of threads it
may not: the threads split the work differently, and floating-point sums
taken in another order round differently. Measured here (OpenBLAS 0.3.30
with SkylakeX kernels, 1 thread against 2, float32 and float64):

- matrix products: ``gemm`` differs for shapes such as 1000x1000x1000,
  10x1024 with an inner dimension of 10,000, and 500x500 with 4,000, but
  not 2048x2048x2048 or 256x1024x1024. In models: a Dense layer with 784
  or 1,000 inputs (any batch from 2 samples up, forward and backward), a
  Conv2D over 87 channels (and a float64 one over 3), an LSTM or GRU over
  1,000 features; not a 64-128-10 MLP, a Conv2D over 16 channels or an
  LSTM with 32 units over 16 features.
- matrix-vector products (a one-sample Dense forward pass): ``gemv`` for
  a float32 Dense with 1,024 inputs and 784 outputs, or 100,000 inputs.
- dot products over more than 10,000 elements (NumPy's, which the
  weighted metrics use).

So ``fit``, ``predict`` and ``evaluate`` of such models give results that
differ in the last bits between thread counts, and a trained model's
weights drift apart from there.

``use_deterministic_algorithms(True)`` removes that dependence: every
model computation (``fit``, ``train_step``, ``predict``, ``evaluate``,
``forward``, ``backward``) then runs with every BLAS in the process
limited to one thread, and the previous thread counts return when the
last such computation in the process ends. Results then equal those of
the default mode at one thread, whatever ``cdl.threads``/
``cdl.set_num_threads`` say. The cost is the BLAS's parallel speed-up on
large matrix products; small models lose nothing. cdl's OpenMP loops keep
their threads in this mode, since their results do not depend on them.
"""
import functools
import threading

from cdl._validation import check_bool

__all__ = ["use_deterministic_algorithms", "are_deterministic_algorithms_enabled"]


class _Mode:
    """The process-wide setting (a class attribute reads fast per call)."""
    on = False
    libraries = ()   # threadpoolctl controllers of the BLAS libraries in the process


_scope_lock = threading.Lock()
_scope_depth = 0
_saved_counts = []


def use_deterministic_algorithms(mode):
    """Make every model computation independent of the BLAS thread count.

    In deterministic mode, ``fit``, ``train_step``, ``predict``,
    ``evaluate``, ``forward`` and ``backward`` of every model run with the
    BLAS libraries limited to one thread, so a seeded run gives the same
    bits with ``cdl.threads(1)`` and ``cdl.threads(2)`` (the same bits as
    the default mode at one thread). The setting is process-wide; while
    such a computation runs, other code in the process calling BLAS also
    gets one thread. Layers called directly (``layer.forward``) are not
    covered: run them inside ``cdl.threads(1)``. Changing the thread count
    during a computation (from a callback) is not undone before its end.

    Parameters
    ----------
    mode : bool

    Raises
    ------
    TypeError
        If ``mode`` is not a bool.

    Examples
    --------
    >>> import cdl
    >>> cdl.use_deterministic_algorithms(True)
    >>> cdl.are_deterministic_algorithms_enabled()
    True
    >>> cdl.use_deterministic_algorithms(False)
    """
    mode = check_bool(mode, "mode")
    if mode:
        from threadpoolctl import ThreadpoolController

        # Found anew on every switch-on: BLAS libraries loaded since count too.
        _Mode.libraries = tuple(lib for lib in ThreadpoolController().lib_controllers
                                if lib.user_api == "blas")
    _Mode.on = mode


def are_deterministic_algorithms_enabled():
    """Whether deterministic mode is on (see ``use_deterministic_algorithms``).

    Returns
    -------
    bool

    Examples
    --------
    >>> import cdl
    >>> cdl.use_deterministic_algorithms(True)
    >>> cdl.are_deterministic_algorithms_enabled()
    True
    >>> cdl.use_deterministic_algorithms(False)
    >>> cdl.are_deterministic_algorithms_enabled()
    False
    """
    return _Mode.on


def _enter_single_threaded():
    global _scope_depth, _saved_counts
    with _scope_lock:
        if _scope_depth == 0:
            # The first computation to start sets one thread, the last to end
            # restores the counts: computations may overlap in threads.
            _saved_counts = [(lib, lib.get_num_threads()) for lib in _Mode.libraries]
            for lib, count in _saved_counts:
                if count != 1:
                    lib.set_num_threads(1)
        _scope_depth += 1


def _exit_single_threaded():
    global _scope_depth
    with _scope_lock:
        _scope_depth -= 1
        if _scope_depth == 0:
            for lib, count in _saved_counts:
                if count is not None and count != 1:
                    lib.set_num_threads(count)


def blas_scope(method):
    """Decorate a model method so that in deterministic mode its BLAS calls run
    single-threaded; outside it the method runs as it is."""
    @functools.wraps(method)
    def scoped(self, *args, **kwargs):
        if not _Mode.on:
            return method(self, *args, **kwargs)
        _enter_single_threaded()
        try:
            return method(self, *args, **kwargs)
        finally:
            _exit_single_threaded()
    return scoped
