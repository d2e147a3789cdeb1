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


def openmp_info():
    """The OpenMP runtime under cdl's threaded loops.

    Returns
    -------
    dict
        ``built with openmp`` (whether the kernels were compiled with it),
        ``threads of cdl's loops`` (what ``cdl.set_num_threads`` set, in
        every Python thread), and ``libraries``: the OpenMP runtimes loaded
        in the process, from threadpoolctl, each with ``internal_api``,
        ``version``, ``num_threads`` (its own count for the calling thread)
        and ``filepath``.
    """
    from threadpoolctl import threadpool_info

    from cdl._kernels import _openmp

    # _OPENMP (yyyymm) of the specifications, as their version numbers.
    spec = {200505: "2.5", 200805: "3.0", 201107: "3.1", 201307: "4.0", 201511: "4.5",
            201811: "5.0", 202011: "5.1", 202111: "5.2", 202411: "6.0"}
    version = _openmp.OPENMP_VERSION
    libraries = [{key: lib.get(key) for key in ("prefix", "internal_api", "version",
                                                "num_threads", "filepath")}
                 for lib in threadpool_info() if lib.get("user_api") == "openmp"]
    return {
        "built with openmp": (f"yes (OpenMP {spec.get(version, version)})"
                              if _openmp.OPENMP else "no: the kernels run serial"),
        "threads of cdl's loops": int(_openmp.get_num_threads()),
        "libraries": libraries,
    }


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
                       "scipy": BUILD["scipy"], "debug build": BUILD["debug"],
                       "openmp": BUILD.get("openmp", False)},
        "blas": blas_info(),
        "openmp": openmp_info(),
        "simd": __import__("cdl._kernels.vmath", fromlist=["simd_path"]).simd_path(),
    }


def format_info(data):
    """Render ``info()`` as indented text."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            for k, v in value.items():
                if isinstance(v, list):
                    lines.append(f"    {k}:" + ("" if v else " none loaded"))
                    for lib in v:
                        lines.append(f"      - {lib.get('prefix')}"
                                     + (f" {lib['version']}" if lib.get("version") else "")
                                     + f", {lib.get('num_threads')} threads in this thread")
                        lines.append(f"        {lib.get('filepath')}")
                else:
                    lines.append(f"    {k}: {v}")
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
