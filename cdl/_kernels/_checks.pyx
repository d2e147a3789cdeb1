"""Argument checks for the compiled kernels' Python entry points."""
import numpy as np
cimport numpy as cnp

cnp.import_array()


cdef int check_float_array(object a, str name, int ndim, bint writable) except -1:
    """Check that ``a`` is a float32/float64, C-contiguous, aligned ndarray.

    ``ndim`` < 0 accepts any rank. ``writable`` also requires a writeable
    array, for outputs.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int typenum = cnp.PyArray_TYPE(arr)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    return check_array_layout(arr, name, ndim, writable)


cdef int check_int64_array(object a, str name, int ndim, bint writable) except -1:
    """Check that ``a`` is an int64 (labels, indices), C-contiguous, aligned
    ndarray; ``ndim`` and ``writable`` as in ``check_float_array``."""
    if not isinstance(a, np.ndarray) or cnp.PyArray_TYPE(<cnp.ndarray>a) != cnp.NPY_INT64:
        raise TypeError(f"{name} must be an int64 ndarray, got "
                        f"{getattr(a, 'dtype', type(a).__name__)}")
    return check_array_layout(<cnp.ndarray>a, name, ndim, writable)


cdef int check_array_layout(cnp.ndarray arr, str name, int ndim, bint writable) except -1:
    """The rank, contiguity, alignment and writeability the kernels rely on:
    they walk the data as one aligned run of elements."""
    cdef object a = arr
    if ndim >= 0 and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {a.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name} must be C-contiguous")
    if not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name} must be aligned in memory")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} is written in place and must be writeable")
    return 0


cdef int check_same_dtype(object a, object b, str name_a, str name_b) except -1:
    if cnp.PyArray_TYPE(<cnp.ndarray>a) != cnp.PyArray_TYPE(<cnp.ndarray>b):
        raise TypeError(
            f"{name_a} and {name_b} must have the same dtype, "
            f"got {a.dtype} and {b.dtype}")
    return 0


cdef int check_same_shape(object a, object b, str name_a, str name_b) except -1:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, "
            f"got {a.shape} and {b.shape}")
    return 0
