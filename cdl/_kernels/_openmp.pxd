# The thread count of cdl's OpenMP loops, for the kernels' prange(num_threads=...).
cdef int num_threads() noexcept nogil
