"""One batching path: BatchLoader reads rows as fit does (cdl.data.batching).

A memory-mapped array is read from its file, never through the map, so a
loader over a large file holds a few batches; and a loader whose generator
is in the state of a model's ``rng`` yields exactly the batches that
``fit(x, y, shuffle=True)`` trains that model on.
"""
import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cdl
from cdl import layers, optimizers
from cdl.data import BatchLoader, iterate_batches
from cdl.data.batching import RowGatherer, epoch_batches

from helpers import mapped_rss_kb


def save_npy(path, array):
    np.save(path, array)
    return np.load(path, mmap_mode="r")


# --- RowGatherer ---------------------------------------------------------------------

@pytest.mark.parametrize("source", ["memory", "memmap", "big-endian memmap", "strided",
                                    "fortran"])
@pytest.mark.parametrize("dtype", [None, "float32", "float64"])
def test_row_gatherer_reads_what_numpy_indexing_gives(tmp_path, source, dtype):
    values = np.random.default_rng(0).normal(size=(40, 3, 2))
    if source == "memory":
        array = values
    elif source == "memmap":
        array = save_npy(tmp_path / "x.npy", values)
    elif source == "big-endian memmap":
        array = save_npy(tmp_path / "x.npy", values.astype(">f4"))
    elif source == "strided":
        array = values[::2]
    else:
        array = np.asfortranarray(values)
    gather = RowGatherer(array, dtype)
    expected_dtype = array.dtype.newbyteorder("=") if dtype is None else np.dtype(dtype)
    assert gather.dtype == expected_dtype and len(gather) == len(array)
    assert gather.streams == source.endswith("memmap")
    for index in [slice(0, 7), slice(5, 20), slice(3, 3), np.array([9, 1, 1, 0, -1]),
                  np.array([], dtype=np.int64), np.arange(len(array))[::-1]]:
        rows = gather.read(index)
        assert rows.dtype == expected_dtype and rows.flags.c_contiguous
        np.testing.assert_array_equal(rows, np.asarray(array)[index].astype(expected_dtype))


def test_row_gatherer_views_contiguous_slices_and_reuses_one_buffer():
    values = np.arange(24.0).reshape(12, 2)
    gather = RowGatherer(values)
    view = gather.read(slice(2, 6))
    assert np.shares_memory(view, values)
    first = gather.read(np.array([5, 0, 3]))
    second = gather.read(np.array([1, 2]))
    assert np.shares_memory(first, second)  # the same buffer, overwritten
    converted = RowGatherer(values, "float32").read(slice(0, 4))
    assert not np.shares_memory(converted, values)


# --- BatchLoader reads memmaps from the file -----------------------------------------------

@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc/self/smaps")
@pytest.mark.parametrize("shuffle", [True, False])
def test_batch_loader_leaves_the_pages_of_a_read_only_map_alone(tmp_path, shuffle):
    values = np.random.default_rng(0).normal(size=(4096, 64)).astype(np.float32)  # 1 MiB
    x = save_npy(tmp_path / "x.npy", values)
    y = save_npy(tmp_path / "y.npy", np.arange(4096))
    loader = BatchLoader(x, y, batch_size=256, shuffle=shuffle, seed=0)
    seen = np.zeros(4096, dtype=np.int64)
    for epoch in range(2):
        for xb, yb in loader:
            np.add.at(seen, yb, 1)
            np.testing.assert_array_equal(xb, values[yb])
    assert (seen == 2).all()
    assert mapped_rss_kb(x) <= 8, f"{mapped_rss_kb(x)} kB of x's map are resident"
    assert mapped_rss_kb(y) <= 8, f"{mapped_rss_kb(y)} kB of y's map are resident"


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from cdl.data import BatchLoader, iterate_batches

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets the peak (VmHWM) to the current RSS
        except OSError:
            pass
        return status("VmRSS:")

    x = np.load(sys.argv[1], mmap_mode="r")
    labels = np.arange(len(x)) % 7
    loader = BatchLoader(x, labels, batch_size=256, shuffle=True, seed=0)
    for xb, yb in loader:  # warm up: buffers and a first pass over the batch sizes
        break
    base = reset_peak()
    rows = 0
    for xb, yb in loader:
        rows += len(xb)
    figures = {"base": base, "peak": status("VmHWM:"), "rows": rows}
    # Indexing the map itself, as a check that the measure sees its pages.
    base = reset_peak()
    for batch in iterate_batches(len(x), 256, seed=0):
        np.take(x, batch, axis=0)
    figures.update(map_base=base, map_peak=status("VmHWM:"))
    print(json.dumps(figures))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                    reason="measures peak RSS through /proc/self/status (Linux)")
def test_batch_loader_over_a_big_sparse_memmap_keeps_peak_memory_small(tmp_path):
    n, d = 16_384, 4096  # 256 MiB of float32: a sparse file, all zeros, no disk used
    path = tmp_path / "x.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (n, d)})
        f.truncate(f.tell() + n * d * 4)
    size = os.path.getsize(path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cdl.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    growth = figures["peak"] - figures["base"]
    map_growth = figures["map_peak"] - figures["map_base"]
    report = (f"file {size / 2**20:.0f} MiB: BatchLoader peak +{growth / 2**20:.1f} MiB, "
              f"indexing the map +{map_growth / 2**20:.1f} MiB")
    print(report)  # shown by pytest -s
    assert figures["rows"] == n
    batch_bytes = 256 * d * 4
    # A few batches (the one read, its shuffled copy, the one yielded before it),
    # whatever the size of the file.
    assert growth < 8 * batch_bytes, report
    assert map_growth > 0.5 * size, f"the measure does not see the map's pages: {report}"


# --- BatchLoader batches as fit does -------------------------------------------------------

def regressor(dtype, seed=0):
    model = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
                           input_shape=(6,), dtype=dtype, seed=seed)
    model.compile(optimizers.Adam(lr=0.01), "mse")
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("memmapped", [True, False])
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_on_a_batch_loader_equals_fit_on_the_arrays(tmp_path, dtype, memmapped, shuffle):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = x @ rng.normal(size=(6, 2)) + 0.1 * rng.normal(size=(300, 2))
    if memmapped:
        x, y = save_npy(tmp_path / "x.npy", x), save_npy(tmp_path / "y.npy", y)
    on_arrays, on_loader = regressor(dtype), regressor(dtype)
    # The loader draws each epoch's order from a generator in the state the
    # model's own is in when fit starts, as fit draws it.
    loader = BatchLoader(x, y, batch_size=32, shuffle=shuffle, seed=copy.deepcopy(on_loader.rng),
                         dtype=dtype)
    h1 = on_arrays.fit(x, y, epochs=3, batch_size=32, shuffle=shuffle, verbose=0)
    h2 = on_loader.fit(loader, epochs=3, verbose=0)
    assert np.array_equal(on_arrays.param_buffer, on_loader.param_buffer)
    assert h1.history == h2.history


def test_batch_loader_yields_the_rows_of_iterate_batches(tmp_path):
    values = np.random.default_rng(1).normal(size=(103, 4))
    weights = np.linspace(0.5, 1.5, 103)
    x = save_npy(tmp_path / "x.npy", values.astype(">f8"))
    loader = BatchLoader(x, np.arange(103), batch_size=10, seed=7, sample_weight=weights,
                         drop_last=True)
    order = np.random.default_rng(7)
    for epoch in range(2):
        batches = list(iterate_batches(103, 10, seed=order, drop_last=True))
        items = list((xb.copy(), yb.copy(), wb.copy()) for xb, yb, wb in loader)
        assert len(items) == len(batches) == len(loader) == 10
        for batch, (xb, yb, wb) in zip(batches, items):
            np.testing.assert_array_equal(yb, batch)
            np.testing.assert_array_equal(xb, values[batch])
            np.testing.assert_array_equal(wb, weights[batch])


def test_epoch_batches_resume_part_way():
    order = np.random.default_rng(0).permutation(23)
    whole = list(epoch_batches(23, 5, order))
    assert [len(b) for b in whole] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(whole), order)
    for start in range(6):
        rest = list(epoch_batches(23, 5, order, start=start))
        assert len(rest) == len(whole[start:])
        assert all(np.array_equal(a, b) for a, b in zip(rest, whole[start:]))
    assert list(epoch_batches(23, 5, drop_last=True))[-1] == slice(15, 20)


@pytest.mark.parametrize("memmapped", [True, False])
def test_batch_loader_yields_y_in_its_own_dtype(tmp_path, memmapped):
    labels = (np.arange(20) % 4).astype(">i4")
    y = save_npy(tmp_path / "y.npy", labels) if memmapped else labels
    loader = BatchLoader(np.zeros((20, 2), np.float32), y, batch_size=8, seed=0)
    for shuffle in (True, False):
        loader.shuffle = shuffle
        for _, yb in loader:
            assert yb.dtype == np.dtype(">i4")
            assert set(yb.tolist()) <= {0, 1, 2, 3}
