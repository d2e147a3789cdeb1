"""Build script for cdl's compiled kernels.

All Cython directives live in ``CYTHON_DIRECTIVES`` below. Set the
environment variable ``CDL_DEBUG=1`` at build time to turn bounds and
wraparound checking back on and compile with ``-O0 -g`` and C assertions
(slower, for hunting memory errors), and ``CDL_ONLY=name,...`` to build
only some of the kernel modules. Cython checks indexing of memoryviews
and Python objects only, never of raw pointers, which is how the kernels
reach array data; ``.ci/debug-kernels`` therefore adds the address and
undefined-behaviour sanitizers (through ``CFLAGS``/``LDFLAGS``) and runs
the kernel tests against such a build.
"""
import glob
import os

import Cython
import numpy
import scipy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("CDL_DEBUG", "0") not in ("", "0", "false", "False")

CYTHON_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "nonecheck": False,
    "cdivision": True,
    "embedsignature": True,
}

# Every Cython module under cdl/_kernels is an extension of its own.
KERNELS = sorted(os.path.splitext(os.path.basename(path))[0]
                 for path in glob.glob(os.path.join("cdl", "_kernels", "*.pyx")))
# CDL_ONLY=conv,pooling builds just those modules (for working on one kernel
# while others are mid-edit); a release build leaves it unset.
if os.environ.get("CDL_ONLY"):
    KERNELS = [k for k in KERNELS if k in os.environ["CDL_ONLY"].split(",")]


def _c_string(value):
    return '"%s"' % value


def kernel_extension(name):
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]
    if name == "_build_info":
        # Versions seen at build time, reported by `python -m cdl info`.
        macros += [
            ("CDL_BUILD_CYTHON", _c_string(Cython.__version__)),
            ("CDL_BUILD_NUMPY", _c_string(numpy.__version__)),
            ("CDL_BUILD_SCIPY", _c_string(scipy.__version__)),
            ("CDL_BUILD_DEBUG", "1" if DEBUG else "0"),
        ]
    # -fno-math-errno lets sqrt/exp vectorise; cdl never reads errno. A debug
    # build also undoes Python's -DNDEBUG so that C assert()s are checked.
    compile_args = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-fno-math-errno"]
    return Extension(
        "cdl._kernels." + name,
        sources=["cdl/_kernels/%s.pyx" % name],
        include_dirs=[numpy.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args,
    )


setup(
    ext_modules=cythonize(
        [kernel_extension(name) for name in KERNELS],
        compiler_directives=CYTHON_DIRECTIVES,
        # Rebuild when the debug switch flips: directives change the C code.
        force=DEBUG,
    ),
)
