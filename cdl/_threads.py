"""How many threads the BLAS under cdl's kernels uses.

cdl's own kernels are single-threaded loops; the matrix products go to the
BLAS that SciPy ships, whose thread pool these functions size (through
threadpoolctl, which finds the BLAS libraries loaded in the process and
calls each one's own thread-setting function). They act on every BLAS
loaded in the process, NumPy's included.

The thread count can change the last bits of results: OpenBLAS splits
some matrix products among its threads in a way that changes the order of
the sums (see ``cdl.use_deterministic_algorithms``, which removes that
dependence). A given thread count always gives the same bits.
"""
import contextlib

from cdl._validation import check_number

__all__ = ["get_num_threads", "set_num_threads", "threads"]


def _check(n):
    """The thread count ``n`` as an int >= 1: a non-number (a string, a bool)
    or a fraction raises TypeError, a count below 1 ValueError."""
    return check_number(n, "the number of threads n", low=1, integer=True)


def get_num_threads():
    """Threads of the BLAS that cdl's kernels call.

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
    from cdl._info import blas_info

    libraries = blas_info()
    used = [lib for lib in libraries if lib["used_by_cdl"]] or libraries
    return int(used[0]["num_threads"]) if used else 1


def set_num_threads(n):
    """Use ``n`` BLAS threads from now on (1 is often fastest for tiny layers).

    Parameters
    ----------
    n : int >= 1

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

    threadpool_limits(limits=_check(n), user_api="blas")


@contextlib.contextmanager
def threads(n):
    """Use ``n`` BLAS threads inside a ``with`` block, then restore the previous count.

    Examples
    --------
    >>> import cdl
    >>> with cdl.threads(1):
    ...     pass  # small models often train fastest on one thread
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=_check(n), user_api="blas"):
        yield
