"""Debug builds (``CDL_DEBUG=1``): errors inside compiled kernels stop the process.

The arithmetic kernels are ``cdef ... noexcept nogil`` functions, which
cannot pass an exception to their caller. When a check that the debug
build turns on (bounds, wraparound, initialised memoryviews) fails inside
one, Cython takes the GIL, hands the exception to ``sys.unraisablehook``
(by default a traceback on stderr after "Exception ignored in:
'cdl._kernels....'"), and the kernel returns early with its outputs half
written, so the program carries on with garbage. In a debug build such an
error is the bug being hunted: the hook installed here lets the previous
hook report it and then aborts the process. Under a test runner that
installed its own hook first (pytest turns these errors into
``PytestUnraisableExceptionWarning``) it only reports, so that the runner
can name the failing test: run pytest with ``-W
error::pytest.PytestUnraisableExceptionWarning``, as ``.ci/debug-kernels``
does, to make the test fail.
"""
import os
import sys

_KERNELS = "cdl._kernels."


def abort_on_kernel_errors():
    """Make an exception that a compiled kernel could not raise abort the process."""
    previous = sys.unraisablehook

    def report_and_abort(unraisable):
        previous(unraisable)
        # Cython names the function the exception was lost in, as a string.
        if previous is sys.__unraisablehook__ and str(unraisable.object).startswith(_KERNELS):
            sys.stderr.write("cdl debug build: the error above happened inside a compiled "
                             "kernel, whose outputs are now invalid; aborting\n")
            sys.stderr.flush()
            os.abort()

    sys.unraisablehook = report_and_abort
