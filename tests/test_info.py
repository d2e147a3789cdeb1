"""`python -m cdl info` reports what a bug report needs."""
import subprocess
import sys

import cdl
from cdl._info import blas_info, info


def test_info_command_prints_versions_and_blas():
    result = subprocess.run([sys.executable, "-m", "cdl", "info"], capture_output=True,
                            text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"cdl: {cdl.__version__}" in out
    for word in ("built with:", "cython:", "numpy:", "scipy:", "blas:", "threads",
                 "used by cdl's kernels"):
        assert word in out


def test_info_dict():
    data = info()
    assert data["built with"]["cython"].startswith("3.")
    libraries = blas_info()
    assert libraries and any(lib["used_by_cdl"] for lib in libraries)
    assert all(isinstance(lib["num_threads"], int) for lib in libraries)


def test_unknown_command_fails():
    result = subprocess.run([sys.executable, "-m", "cdl", "nonsense"], capture_output=True,
                            text=True, timeout=60, cwd="/")
    assert result.returncode != 0 and "invalid choice" in result.stderr
