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
# 300,000): none. cdl opens parallel regions only over >= PARALLEL_MIN
# elements (hundreds of microseconds of work), so waking sleeping workers
# (a few microseconds) costs little, while spinning workers take the cores
# OpenBLAS's threads and other processes need. Measured on a loaded 2-core
# machine, an Adam update of 65,536-1,048,576 float32 parameters on 2
# threads took 0.9-2.7 ms with a spin count of 10,000, 0.16-1.9 ms with
# 1,000 and 0.09-1.7 ms with 0 (1 thread: 0.07-1.8 ms).
_SPIN_COUNT = "0"


def _start_openmp():
    user_policy = "OMP_WAIT_POLICY" in _os.environ or "GOMP_SPINCOUNT" in _os.environ
    if not user_policy:
        _os.environ["GOMP_SPINCOUNT"] = _SPIN_COUNT
    try:
        from cdl._kernels import _openmp
    finally:
        if not user_policy:
            _os.environ.pop("GOMP_SPINCOUNT", None)
    # libgomp's worker threads do not exist in a forked child, and its first
    # parallel region there waits for them forever: a child runs cdl's loops
    # on its own thread, whatever it later asks for.
    if hasattr(_os, "register_at_fork"):
        _os.register_at_fork(after_in_child=_openmp.enter_forked_child)


_start_openmp()
