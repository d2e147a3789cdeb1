"""Build and runtime information for bug reports (``python -m cdl info``)."""
import os
import platform
import sys


def blas_info():
    """BLAS libraries loaded in this process, from threadpoolctl.

    Returns
    -------
    list of dict
        One per library: ``internal_api`` (openblas, mkl, ...), ``version``,
        ``num_threads``, ``filepath``.
    """
    from threadpoolctl import threadpool_info

    import os

    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS cdl calls)

    # cdl's kernels call the BLAS that scipy ships or links; numpy may load another.
    scipy_root = os.path.dirname(os.path.dirname(scipy.__file__))
    libraries = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        entry = {key: lib.get(key) for key in ("internal_api", "version", "num_threads",
                                               "threading_layer", "filepath")}
        path = entry["filepath"] or ""
        entry["used_by_cdl"] = "scipy" in os.path.relpath(path, scipy_root).split(os.sep)[0]
        libraries.append(entry)
    return libraries


def info():
    """Everything ``python -m cdl info`` prints, as a dict."""
    import numpy
    import scipy

    from cdl._kernels._build_info import BUILD
    from cdl._version import __version__

    return {
        "cdl": __version__,
        "location": os.path.dirname(os.path.abspath(__file__)),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "built with": {"cython": BUILD["cython"], "numpy": BUILD["numpy"],
                       "scipy": BUILD["scipy"], "debug build": BUILD["debug"]},
        "blas": blas_info(),
    }


def format_info(data):
    """Render ``info()`` as indented text."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"    {k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            lines.append(f"{key}:" + ("" if value else " none found"))
            for lib in value:
                lines.append(f"  - {lib.get('internal_api')} {lib.get('version')}, "
                             f"{lib.get('num_threads')} threads"
                             + (f" ({lib['threading_layer']})" if lib.get("threading_layer")
                                else "")
                             + (", used by cdl's kernels" if lib.get("used_by_cdl") else ""))
                lines.append(f"    {lib.get('filepath')}")
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
