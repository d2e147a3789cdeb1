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

Every kernel is compiled and linked with OpenMP (``-fopenmp``) when the
compiler can build and run a small OpenMP program (``openmp_flags``), so
that Cython's ``prange`` loops run on several threads; otherwise, or with
``CDL_OPENMP=0``, the kernels are built serial (``prange`` then runs as a
plain loop) and ``python -m cdl info`` says so.

Kernel modules whose ``def`` entry points branch on the array dtype are
written as Tempita templates (``cdl/_kernels/<name>.pyx.tp``, rendered to
``<name>.pyx`` before cythonize; see ``render_kernel_templates``).
"""
import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap

import Cython
import numpy
import scipy
from Cython.Build import cythonize
from Cython.Tempita import Template
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

# The C types of the fused type ``floating`` that every kernel is compiled for.
FLOATING = ("float", "double")


def branch(c_type, test):
    """The line that opens the ``c_type`` arm of a dtype dispatch: ``if test:``
    for float, ``else:`` for double (``test`` is true for float32 arrays)."""
    return "if %s:" % test if c_type == "float" else "else:"


def render_kernel_templates():
    """Render each ``cdl/_kernels/*.pyx.tp`` into the ``.pyx`` beside it.

    A ``def`` entry point checks its arrays with the GIL held, takes raw
    pointers and then calls the ``cdef`` kernel specialised for float or
    double. Cython could generate that branch itself from fused-type
    memoryview arguments, but acquiring the memoryviews makes a call of a
    small Dense layer ~70% slower (docs/design.md), so the branch is
    written once in a template, as
    ``{{for T in FLOATING}} {{branch(T, "is_float32(X)")}} ... <{{T}}*>px ...
    {{endfor}}``, and rendered to the same C as writing both arms by hand.
    A file is rewritten only when its text changes, so that cythonize's
    timestamp check still skips unchanged modules. A source distribution
    carries the rendered ``.pyx`` files and no templates.
    """
    namespace = {"FLOATING": FLOATING, "branch": branch}
    for template_path in sorted(glob.glob(os.path.join("cdl", "_kernels", "*.pyx.tp"))):
        with open(template_path, encoding="utf-8") as f:
            template = Template(f.read(), name=template_path)
        pyx_path = template_path[:-len(".tp")]
        text = ("# Rendered from %s by setup.py: edit the template, not this file.\n"
                % os.path.basename(template_path)) + template.substitute(namespace)
        if os.path.exists(pyx_path):
            with open(pyx_path, encoding="utf-8") as f:
                if f.read() == text:
                    continue
        with open(pyx_path, "w", encoding="utf-8") as f:
            f.write(text)


render_kernel_templates()

# Every Cython module under cdl/_kernels is an extension of its own.
KERNELS = sorted(os.path.splitext(os.path.basename(path))[0]
                 for path in glob.glob(os.path.join("cdl", "_kernels", "*.pyx")))
# CDL_ONLY=conv,pooling builds just those modules (for working on one kernel
# while others are mid-edit); a release build leaves it unset.
if os.environ.get("CDL_ONLY"):
    KERNELS = [k for k in KERNELS if k in os.environ["CDL_ONLY"].split(",")]


# A program that needs the OpenMP header, compiler flag, runtime library and a
# working parallel region: compiling alone is not enough (clang on macOS
# accepts -fopenmp but may have no libomp to link or load).
OPENMP_TEST_PROGRAM = textwrap.dedent("""\
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int threads = 0;
        #pragma omp parallel reduction(+:threads)
        threads += 1;
        printf("%d %d\\n", omp_get_max_threads(), threads >= 1);
        return 0;
    }
    """)


def openmp_flags():
    """The compile and link flags that turn on OpenMP, or ``None`` without it.

    Builds and runs ``OPENMP_TEST_PROGRAM`` with the compiler and flags that
    setuptools will use for the extensions (``CC``, ``CFLAGS``, ``LDFLAGS``,
    so a sanitizer build is checked as it will be built). ``CDL_OPENMP=0``
    skips the check and builds serial.
    """
    if os.environ.get("CDL_OPENMP", "1") in ("0", "false", "False"):
        return None
    # setuptools' copy of distutils (import setuptools first so that it is the one found).
    from distutils.ccompiler import new_compiler
    from distutils.errors import CCompilerError, DistutilsExecError
    from distutils.sysconfig import customize_compiler

    flag = ["/openmp"] if sys.platform == "win32" else ["-fopenmp"]
    compiler = new_compiler()
    customize_compiler(compiler)
    work = tempfile.mkdtemp(prefix="cdl-openmp-check-")
    try:
        source = os.path.join(work, "check_openmp.c")
        with open(source, "w") as f:
            f.write(OPENMP_TEST_PROGRAM)
        program = os.path.join(work, "check_openmp")
        objects = compiler.compile([source], output_dir=work, extra_postargs=flag)
        # distutils passes LDFLAGS to shared-library links only: add them here
        # (a sanitizer build's program needs the sanitizer runtime linked).
        compiler.link_executable(objects, program,
                                 extra_postargs=flag + shlex.split(os.environ.get("LDFLAGS", "")))
        # A second try: a sanitizer runtime occasionally fails to start (exit 66 seen once).
        for attempt in (1, 2):
            try:
                output = subprocess.run([program + (compiler.exe_extension or "")],
                                        capture_output=True, text=True, timeout=60,
                                        check=True).stdout
                break
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise
        if output.split()[1:2] != ["1"]:
            raise ValueError(output)
    except (CCompilerError, DistutilsExecError, OSError, ValueError,
            subprocess.SubprocessError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        print("cdl: the compiler cannot build OpenMP code (%s); building the kernels serial"
              % reason, file=sys.stderr)
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return flag


OPENMP = openmp_flags()


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
            ("CDL_BUILD_OPENMP", "1" if OPENMP else "0"),
        ]
    # -fno-math-errno lets sqrt/exp vectorise; cdl never reads errno. A debug
    # build also undoes Python's -DNDEBUG so that C assert()s are checked.
    compile_args = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-fno-math-errno"]
    # Every kernel is compiled and linked with OpenMP; the linker (--as-needed)
    # records the runtime only in modules that call it. cdl._threads imports
    # cdl._kernels._openmp, which does, so threadpoolctl (which lists only
    # loaded libraries) always sees the pool cdl.set_num_threads sizes.
    return Extension(
        "cdl._kernels." + name,
        sources=["cdl/_kernels/%s.pyx" % name],
        include_dirs=[numpy.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args + (OPENMP or []),
        # MSVC's /openmp is a compiler flag only; gcc and clang link the runtime with -fopenmp.
        extra_link_args=(OPENMP or []) if sys.platform != "win32" else [],
    )


setup(
    ext_modules=cythonize(
        [kernel_extension(name) for name in KERNELS],
        compiler_directives=CYTHON_DIRECTIVES,
        # Rebuild when the debug switch flips: directives change the C code.
        force=DEBUG,
    ),
)
