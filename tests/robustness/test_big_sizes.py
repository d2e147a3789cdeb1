"""Inputs larger than BLAS's 32-bit sizes, through the public entry points.

BLAS counts rows, columns and strides in 32-bit ints, so a dimension past
2**31 - 1 must be split or refused with a ValueError, never truncated. The
inputs here are views with zero strides over a few bytes
(``np.lib.stride_tricks.as_strided``) or a sparse memory-mapped file, so
nothing allocates or reads more than a few MiB: every call must refuse the
input before it converts, copies or scans it. ``test_blas.py`` checks the
BLAS wrapper itself with an 8 GiB sparse file; this module checks that the
layers, models and clipping never get that far with a size they cannot use.
"""
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import cdl
from cdl import layers, optimizers

LIMIT = 2**31 - 1
TOO_BIG = 2**31
#: Most any one check may allocate (tracemalloc sees NumPy's allocations).
MAX_ALLOCATED = 16 * 2**20
MESSAGE = r"larger than BLAS's 32-bit integer limit \(2147483647\)"


def huge(shape, dtype=np.float32):
    """A read-only array of ``shape`` (zeros) with zero strides over one element."""
    return as_strided(np.zeros(1, dtype=dtype), shape=shape, strides=(0,) * len(shape),
                      writeable=False)


def built(layer, sample_shape, dtype="float32"):
    layer._build(sample_shape, dtype, np.random.default_rng(0))
    return layer


def dense_model():
    model = cdl.Sequential([layers.Dense(3, activation="relu"), layers.Dense(2)],
                           input_shape=(4,), seed=0)
    model.compile(optimizers.SGD(lr=0.1), "mse")
    return model


def unbuilt_model():
    model = cdl.Sequential([layers.Dense(2)], seed=0)
    model.compile(optimizers.SGD(lr=0.1), "mse")
    return model


# name -> (call, exception, message pattern)
CHECKS = {
    "Dense.forward rows": (
        lambda: built(layers.Dense(3), (4,)).forward(huge((TOO_BIG, 4))), ValueError,
        "number of input rows .*" + MESSAGE),
    "Dense.forward rows over leading axes": (
        lambda: built(layers.Dense(3), (2**15, 4)).forward(huge((2**16, 2**15, 4))),
        ValueError, "number of input rows of .* is 2147483648, " + MESSAGE),
    "Dense.forward of an unbuilt layer": (
        lambda: layers.Dense(3).forward(huge((TOO_BIG, 4))), ValueError, MESSAGE),
    "Dense.forward width, before the weights are allocated": (
        lambda: layers.Dense(3).forward(huge((2, TOO_BIG))), ValueError,
        "input width .*" + MESSAGE),
    "Dense.backward": (
        lambda: _dense_backward(huge((TOO_BIG, 3))), ValueError,
        r"has shape \(2147483648, 3\), expected \(2, 3\)"),
    "LSTM.forward batch times steps": (
        lambda: built(layers.LSTM(2), (2**11 + 1, 1)).forward(huge((2**20, 2**11 + 1, 1))),
        ValueError, "batch size times the time steps .*" + MESSAGE),
    "GRU.forward width, before the weights are allocated": (
        lambda: layers.GRU(2).forward(huge((1, 2, TOO_BIG))), ValueError,
        "input width .*" + MESSAGE),
    "Sequential.forward": (
        lambda: dense_model().forward(huge((TOO_BIG, 4))), ValueError,
        "batch size of x .*" + MESSAGE),
    "Sequential.train_step": (
        lambda: dense_model().train_step(huge((TOO_BIG, 4)), huge((TOO_BIG, 2))), ValueError,
        "batch size of x .*" + MESSAGE),
    "Sequential.predict, samples of another width": (
        lambda: dense_model().predict(huge((2, TOO_BIG))), ValueError,
        r"samples of shape \(2147483648,\), the model expects \(4,\)"),
    "Sequential.evaluate, samples of another width": (
        lambda: dense_model().evaluate(huge((2, TOO_BIG)), np.zeros((2, 2))), ValueError,
        r"samples of shape \(2147483648,\)"),
    "Sequential.fit of an unbuilt model, width": (
        lambda: unbuilt_model().fit(huge((2, TOO_BIG)), np.zeros((2, 2)), verbose=0),
        ValueError, "input width .*" + MESSAGE),
    "Sequential.predict of an unbuilt model, width": (
        lambda: unbuilt_model().predict(huge((2, TOO_BIG))), ValueError,
        "input width .*" + MESSAGE),
}


def _dense_backward(grad):
    layer = built(layers.Dense(3), (4,))
    layer.forward(np.zeros((2, 4), dtype=np.float32))
    return layer.backward(grad)


def run_check(name):
    """Run one check; return the peak of NumPy's allocations during it, in bytes."""
    call, exc, match = CHECKS[name]
    tracemalloc.start()
    try:
        with pytest.raises(exc, match=match):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", list(CHECKS))
def test_too_large_a_size_is_refused_without_allocating(name):
    peak = run_check(name)
    assert peak < MAX_ALLOCATED, f"{name} allocated {peak / 2**20:.0f} MiB"


@pytest.fixture(scope="module")
def sparse_column(tmp_path_factory):
    """A writeable, C-contiguous float32 memmap of shape (2**31, 1): 8 GiB of
    sparse file, which none of the checks reads."""
    path = tmp_path_factory.mktemp("big") / "column.f32"
    try:
        big = np.memmap(path, dtype=np.float32, mode="w+", shape=(TOO_BIG, 1))
    except (OSError, ValueError) as err:  # no sparse files, or a 32-bit platform
        pytest.skip(f"cannot map an 8 GiB sparse file: {err}")
    yield big
    del big
    os.remove(path)


def test_a_memory_mapped_batch_is_refused_without_reading_it(sparse_column):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="number of input rows .*" + MESSAGE):
            built(layers.Dense(2), (1,)).forward(sparse_column)
        with pytest.raises(ValueError, match="batch size of x .*" + MESSAGE):
            model = cdl.Sequential([layers.Dense(2)], input_shape=(1,), seed=0)
            model.forward(sparse_column)  # would scan 8 GiB for NaN before refusing
        assert tracemalloc.get_traced_memory()[1] < MAX_ALLOCATED
    finally:
        tracemalloc.stop()


def test_clipping_splits_a_gradient_longer_than_blas_takes(sparse_column):
    from cdl.optimizers.clip import _flat_views
    flat = sparse_column.reshape(-1)
    pieces = _flat_views(flat)  # views: nothing is read
    assert [p.size for p in pieces] == [LIMIT, 1]
    assert all(np.shares_memory(p, flat) for p in pieces)


def test_all_checks_stay_small_in_a_fresh_interpreter():
    """The peak resident memory of a fresh interpreter that runs every check
    stays far below 1 GiB (nothing was copied, allocated or read)."""
    # The child's own peak is VmHWM: on Linux its ru_maxrss also holds the peak
    # of the test process that started it (kept across the vfork and exec), so
    # it would grow with the tests that ran before this one.
    code = (
        "import resource, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import test_big_sizes as t\n"
        "for name in t.CHECKS:\n"
        "    t.run_check(name)\n"
        "try:\n"
        "    with open('/proc/self/status') as f:\n"
        "        print(next(int(l.split()[1]) for l in f if l.startswith('VmHWM:')))\n"
        "except OSError:\n"
        "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    here = os.path.dirname(os.path.abspath(__file__))
    # Run from the tests folder: from the source tree, `import cdl` would find
    # the uncompiled package instead of the installed one.
    proc = subprocess.run([sys.executable, "-c", code, here], cwd=here, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    peak_mib = int(proc.stdout.split()[-1]) / 1024  # both are in KiB on Linux
    assert peak_mib < 512, f"peak resident memory {peak_mib:.0f} MiB"
