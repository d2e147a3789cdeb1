"""cdl: a compiled deep-learning library for the CPU.

The forward pass, backward pass and optimizer step of every built-in layer
run in Cython kernels that release the GIL and call BLAS through
``scipy.linalg.cython_blas``; this package is the Pythonic API over them.
"""
from cdl._version import __version__

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

from cdl._kernels._build_info import BUILD as _BUILD

if _BUILD["debug"]:
    from cdl._debug import abort_on_kernel_errors as _abort_on_kernel_errors
    _abort_on_kernel_errors()

from cdl import initializers, layers, losses, optimizers
from cdl.gradcheck import GradcheckError, gradcheck
from cdl._anomaly import NonFiniteError, detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from cdl._determinism import are_deterministic_algorithms_enabled, use_deterministic_algorithms
from cdl._threads import get_num_threads, set_num_threads, threads
from cdl.layers import register_layer
from cdl.layers.symbolic import Input
from cdl.model import Model, Sequential

# Loaded on first use, to keep ``import cdl`` fast: scripts that only train
# never pay for the data sets, metrics or file format code.
# cdl.sklearn, cdl.onnx, cdl.convert and cdl.distributed need optional packages: importable on
# demand, not in __all__.
_LAZY_MODULES = ("callbacks", "data", "datasets", "metrics", "regularizers", "schedules", "io",
                 "utils",
                 "bench", "explain", "tuning", "averaging", "sklearn", "onnx", "distributed",
                 "text", "convert")


def __getattr__(name):
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f"cdl.{name}")
    raise AttributeError(f"module 'cdl' has no attribute {name!r}")


def load_model(path, preprocessor_functions=None):
    """Load a model saved with ``model.save`` (see ``cdl.io.load_model``,
    which describes ``preprocessor_functions``).

    Examples
    --------
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.Dense(3)], input_shape=(2,), seed=0)
    >>> model.save("tiny.cdl")
    >>> cdl.load_model("tiny.cdl")
    <Sequential 'sequential': 1 layers, dtype float32>
    """
    from cdl.io import load_model as _load_model

    return _load_model(path, preprocessor_functions=preprocessor_functions)

__all__ = [
    "__version__", "Model", "Input", "Sequential", "gradcheck", "GradcheckError",
    "layers", "losses", "optimizers", "schedules", "initializers", "callbacks", "metrics",
    "data", "datasets", "explain", "utils", "tuning", "averaging", "text", "load_model", "register_layer", "get_num_threads",
    "set_num_threads", "threads", "use_deterministic_algorithms",
    "are_deterministic_algorithms_enabled", "detect_anomaly", "set_detect_anomaly",
    "is_anomaly_enabled", "NonFiniteError",
]
