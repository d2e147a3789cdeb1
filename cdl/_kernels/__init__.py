"""cdl's compiled kernels.

Importing the package loads the OpenMP runtime under the threaded loops
(through ``_openmp``) before any kernel, for two reasons. threadpoolctl
lists only libraries already loaded, and ``cdl.set_num_threads`` must find
it. And GNU OpenMP (libgomp) reads its spin setting once, when it starts:
after a parallel region its idle workers spin for 300,000 iterations
before they sleep, and on a machine with as many threads as cores they
then hold the cores that OpenBLAS's threads need for the matrix product
that follows. Unless the user chose a policy (``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT``), ``GOMP_SPINCOUNT`` is set to ``_SPIN_COUNT`` while the
runtime starts and removed again, so child processes see the user's
environment. A libgomp another module loaded first keeps its own setting.
"""
import os as _os

# Spin iterations of an idle libgomp worker before it sleeps (default
# 300,000); the dense training-step measurements behind the value are in
# docs/design.md ("Threads").
_SPIN_COUNT = "10000"


def _start_openmp():
    user_policy = "OMP_WAIT_POLICY" in _os.environ or "GOMP_SPINCOUNT" in _os.environ
    if not user_policy:
        _os.environ["GOMP_SPINCOUNT"] = _SPIN_COUNT
    try:
        from cdl._kernels import _openmp  # noqa: F401
    finally:
        if not user_policy:
            _os.environ.pop("GOMP_SPINCOUNT", None)


_start_openmp()
