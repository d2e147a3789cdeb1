# The thread count of cdl's OpenMP loops, for the kernels' prange(num_threads=...).
cdef int num_threads() noexcept nogil

cdef enum:
    # A loop over fewer elements than this runs on the calling thread alone
    # (prange's use_threads_if): opening a parallel region and waking the
    # workers costs more than the second core saves on small arrays, and
    # tiny networks must not pay for it (measured in docs/design.md, "Threads").
    PARALLEL_MIN = 65536
