# The thread count of cdl's OpenMP loops, for the kernels' prange(num_threads=...).
cdef int num_threads() noexcept nogil

cdef enum:
    # A loop over fewer elements than this runs on the calling thread alone
    # (prange's use_threads_if): opening a parallel region and waking the
    # workers costs more than the second core saves on small arrays, and
    # tiny networks must not pay for it. Memory-bound updates gained nothing
    # from a second thread on the 2-core machine this was measured on (one
    # core saturates its memory bandwidth), so the bar is high: 1 MB of
    # float32, past the L2 cache.
    PARALLEL_MIN = 262144
