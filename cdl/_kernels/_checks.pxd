# Argument checks shared by every ``def`` entry point into the kernels.
# They run with the GIL, before any ``nogil`` block, and raise TypeError or
# ValueError naming the argument that is wrong.
cimport numpy as cnp

cdef int check_float_array(object a, str name, int ndim, bint writable) except -1
cdef int check_int64_array(object a, str name, int ndim, bint writable) except -1
cdef int check_array_layout(cnp.ndarray arr, str name, int ndim, bint writable) except -1
cdef int check_same_dtype(object a, object b, str name_a, str name_b) except -1
cdef int check_same_shape(object a, object b, str name_a, str name_b) except -1


cdef inline void* data_ptr(object a) noexcept:
    """Address of the first element of a checked ndarray."""
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline void* optional_ptr(object a) noexcept:
    """``data_ptr(a)``, or NULL for None (an optional array argument)."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline bint is_float32(object a) noexcept:
    """True for a float32 ndarray, False for float64 (checked before)."""
    return cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_FLOAT32
