"""cdl: a compiled deep-learning library for the CPU.

The forward pass, backward pass and optimizer step of every built-in layer
run in Cython kernels that release the GIL and call BLAS through
``scipy.linalg.cython_blas``; this package is the Pythonic API over them.
"""
__version__ = "0.1.0"

try:
    from cdl._kernels import _blas as _compiled_check  # noqa: F401
except ImportError as _err:  # pragma: no cover - depends on how cdl was installed
    import os as _os
    raise ImportError(
        "cdl's compiled extensions could not be imported "
        f"({_err}). If you are running from the source tree at "
        f"{_os.path.dirname(_os.path.dirname(__file__))}, either run from another "
        "directory after `pip install .`, or build in place with "
        "`pip install -e .`.") from None

from cdl import callbacks, data, datasets, initializers, layers, losses, metrics, optimizers, schedules
from cdl.gradcheck import GradcheckError, gradcheck
from cdl.model import Sequential
from cdl.io import load_model, register_layer

__all__ = [
    "__version__", "Sequential", "gradcheck", "GradcheckError",
    "layers", "losses", "optimizers", "schedules", "initializers", "callbacks", "metrics",
    "data", "datasets", "load_model", "register_layer",
]
