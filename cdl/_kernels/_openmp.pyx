"""The OpenMP runtime under cdl's threaded loops.

cdl's kernels run their large loops with Cython's ``prange`` and pass
``num_threads=num_threads()`` to every parallel region, instead of relying
on ``omp_set_num_threads``: that call sets the count of the calling thread
only (OpenMP keeps it per thread), so a model trained in another Python
thread would not see it. The count here is process-wide, like OpenBLAS's.

Built without OpenMP, ``prange`` runs serially, ``OPENMP`` is False and
the count is 1.
"""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CDL_OPENMP_VERSION _OPENMP
    #else
    #define CDL_OPENMP_VERSION 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    int CDL_OPENMP_VERSION
    int omp_get_max_threads() noexcept nogil

#: Whether the kernels were compiled with OpenMP.
OPENMP = CDL_OPENMP_VERSION != 0
#: The OpenMP specification the compiler implements, as ``_OPENMP`` (yyyymm), or 0.
OPENMP_VERSION = CDL_OPENMP_VERSION

# OpenMP's default (OMP_NUM_THREADS, else the cores this process may run on),
# read once, at the first import of a kernel.
cdef int _num_threads = omp_get_max_threads()


cdef int num_threads() noexcept nogil:
    return _num_threads


def get_num_threads():
    """Threads of cdl's OpenMP loops (1 in a serial build)."""
    return _num_threads


# True in a process forked from one that had imported the kernels.
cdef bint _forked_child = False


def enter_forked_child():
    """Run cdl's loops on one thread from now on (called after ``os.fork``
    in the child): GNU OpenMP's worker threads do not exist in a forked
    child, and its first parallel region there would wait for them forever."""
    global _num_threads, _forked_child
    _num_threads = 1
    _forked_child = True


def set_num_threads(int n):
    """Run cdl's OpenMP loops on ``n`` threads (``n >= 1``; ignored in a serial build).

    Only cdl's count: ``cdl.set_num_threads`` also sets the OpenMP runtime's
    own count (of the calling thread) through threadpoolctl. In a process
    forked from one that had imported cdl's kernels the loops stay on one
    thread, with a ``RuntimeWarning`` when more are asked for.
    """
    global _num_threads
    if n < 1:
        raise ValueError("the number of threads must be >= 1, got %d" % n)
    if not OPENMP:
        return
    if _forked_child:
        if n > 1:
            import warnings
            warnings.warn(
                "cdl's OpenMP loops stay on one thread in a process forked from one that "
                "had loaded them (GNU OpenMP's worker threads do not survive fork); start "
                "worker processes with the 'spawn' or 'forkserver' method for more",
                RuntimeWarning, stacklevel=2)
        return
    _num_threads = n
