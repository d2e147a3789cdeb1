"""Versions of the tools cdl's extensions were compiled with."""

cdef extern from *:
    const char* CDL_BUILD_CYTHON
    const char* CDL_BUILD_NUMPY
    const char* CDL_BUILD_SCIPY
    int CDL_BUILD_DEBUG
    int CDL_BUILD_OPENMP

#: Versions seen by setup.py when the extensions were built.
BUILD = {
    "cython": CDL_BUILD_CYTHON.decode(),
    "numpy": CDL_BUILD_NUMPY.decode(),
    "scipy": CDL_BUILD_SCIPY.decode(),
    "debug": bool(CDL_BUILD_DEBUG),
    # Whether setup.py found a working OpenMP and built the kernels with -fopenmp.
    "openmp": bool(CDL_BUILD_OPENMP),
}
