"""How many threads cdl uses: one knob for the BLAS pool and the OpenMP pool.

Two thread pools run cdl's work. The matrix products go to the BLAS that
SciPy ships (OpenBLAS), with its own threads; cdl's other large loops
(normalisation, optimizer updates, bias sums, dropout, clipping, losses)
run on OpenMP threads through Cython's ``prange``, when the kernels were
built with OpenMP (``python -m cdl info`` says whether). ``set_num_threads``
and ``threads`` size both pools:

- the BLAS libraries and OpenMP runtimes in the process, through
  threadpoolctl (``user_api=None``), which calls each library's own
  thread-setting function; this acts on every BLAS loaded in the process,
  NumPy's included;
- the count that cdl's kernels pass to each parallel region
  (``cdl._kernels._openmp``). OpenMP keeps its thread count per calling
  thread, so ``omp_set_num_threads`` alone would not reach a model that
  trains in another Python thread; cdl's count is process-wide, like
  OpenBLAS's.

The initial OpenMP count is OpenMP's default: ``OMP_NUM_THREADS``, else the
cores this process may run on.

Results: the thread count can change the last bits of BLAS results
(OpenBLAS splits some products among its threads in a way that changes
the order of the sums; see ``cdl.use_deterministic_algorithms``). cdl's own
threaded loops do not: every reduction sums fixed-size chunks in order and
then the chunk results in order, whatever the number of threads.

The OpenMP runtime is loaded with the kernels package, with a shorter
spin-wait than libgomp's default (see ``cdl._kernels``).
"""
import contextlib

from cdl._validation import check_number

__all__ = ["get_num_threads", "set_num_threads", "threads"]


def _load_openmp():
    """The module holding the thread count of cdl's OpenMP loops."""
    from cdl._kernels import _openmp

    return _openmp


def _check(n):
    """The thread count ``n`` as an int >= 1: a non-number (a string, a bool)
    or a fraction raises TypeError, a count below 1 ValueError."""
    return check_number(n, "the number of threads n", low=1, integer=True)


def _blas_threads():
    from cdl._info import blas_info

    libraries = blas_info()
    used = [lib for lib in libraries if lib["used_by_cdl"]] or libraries
    return int(used[0]["num_threads"]) if used else 1


def get_num_threads():
    """Threads cdl's kernels use.

    The count of cdl's OpenMP loops when the kernels were built with OpenMP,
    otherwise the thread count of the BLAS that cdl calls. ``set_num_threads``
    sets both to the same number; ``python -m cdl info`` shows each.

    Returns
    -------
    int

    Examples
    --------
    >>> import cdl
    >>> with cdl.threads(1):
    ...     cdl.get_num_threads()
    1
    """
    openmp = _load_openmp()
    if openmp.OPENMP:
        return int(openmp.get_num_threads())
    return _blas_threads()


def set_num_threads(n):
    """Use ``n`` threads from now on, in the BLAS and in cdl's OpenMP loops.

    Sizes every BLAS and OpenMP thread pool in the process (through
    threadpoolctl; OpenMP's own setting only for the calling thread) and the
    process-wide count of cdl's parallel loops, which applies in every
    Python thread. One thread is often fastest for tiny layers.

    Parameters
    ----------
    n : int >= 1

    Raises
    ------
    TypeError
        If ``n`` is not an integer.
    ValueError
        If ``n < 1``.

    Warns
    -----
    RuntimeWarning
        In a process forked from one that had loaded cdl's kernels, when
        ``n > 1``: cdl's loops stay on one thread there, since GNU OpenMP's
        worker threads do not survive fork.

    Examples
    --------
    >>> import cdl
    >>> before = cdl.get_num_threads()
    >>> cdl.set_num_threads(1)
    >>> cdl.get_num_threads()
    1
    >>> cdl.set_num_threads(before)
    """
    from threadpoolctl import threadpool_limits

    n = _check(n)
    openmp = _load_openmp()
    threadpool_limits(limits=n, user_api=None)
    _release_blas_control()
    openmp.set_num_threads(n)


def _release_blas_control():
    """Let other Python threads set the BLAS thread count again.

    threadpoolctl (>= 3.6) lets a single Python thread at a time set the
    count of a BLAS with a process-wide pool (OpenBLAS on pthreads): the
    first thread that sets it, until it leaves its ``threadpool_limits``
    block; other threads' calls are silently ignored. A plain call, as in
    ``set_num_threads``, never leaves a block, so without this the first
    thread that called it would own the BLAS count for good, and a
    ``set_num_threads`` or ``threads`` in a training thread would change the
    OpenMP count but not the BLAS one.
    """
    import threadpoolctl

    controller = getattr(threadpoolctl, "OpenBLASController", None)
    clear = getattr(controller, "clear_controlling_thread", None)
    if clear is None:  # an older threadpoolctl: any thread may set the count
        return
    blocks = getattr(threadpoolctl, "CONTROLLING_THREAD_OWNERSHIP", None)
    if blocks is not None and blocks.count > 0:
        return  # inside a ``threads`` block, which gives the control up at its end
    clear()  # a no-op unless this thread holds the control


@contextlib.contextmanager
def threads(n):
    """Use ``n`` threads (BLAS and cdl's OpenMP loops) inside a ``with`` block,
    then restore the previous counts.

    Parameters
    ----------
    n : int >= 1

    Examples
    --------
    >>> import cdl
    >>> with cdl.threads(1):
    ...     pass  # small models often train fastest on one thread
    """
    from threadpoolctl import threadpool_limits

    n = _check(n)
    openmp = _load_openmp()
    before = openmp.get_num_threads()
    with threadpool_limits(limits=n, user_api=None):
        openmp.set_num_threads(n)
        try:
            yield
        finally:
            openmp.set_num_threads(before)
