"""Training on memory-mapped data: the row reader of cdl.data.batching, fit on
memmaps, the .npy converters of cdl.data, and the peak memory of an epoch."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cdl
import cdl.data as data
from cdl import layers, optimizers
from cdl.data.batching import MemmapRows, reader_for

from helpers import mapped_rss_kb

LINUX_PROC = os.path.exists("/proc/self/smaps")


def save_npy(path, array, version=(1, 0)):
    """Write ``array`` as a .npy file of the given format version."""
    with open(path, "wb") as f:
        np.lib.format.write_array(f, array, version=version)
    return np.load(path, mmap_mode="r")


def sample_data(shape, dtype, seed=0):
    """Values of ``dtype`` that tell rows apart."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 100, shape).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


INDEXES = [
    slice(0, 10), slice(7, None), slice(None), slice(3, 3), slice(2, 40, 3),
    slice(30, 2, -4), np.array([5, 1, 1, 9, 0, -1, 5]), np.array([], dtype=np.int64),
    np.array([3, 4, 5, 6, 20, 21]), np.array([47, 12, 33, 12], dtype=np.uint32),
]


# --- the reader ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["?", "i1", "u2", "<i4", ">i4", "<i8", "f2", "<f4", ">f4",
                                   "<f8", ">f8"])
@pytest.mark.parametrize("shape", [(50,), (50, 3), (50, 2, 3, 4)], ids=str)
def test_reader_matches_numpy_indexing(tmp_path, dtype, shape):
    x = save_npy(tmp_path / "x.npy", sample_data(shape, dtype))
    reader = MemmapRows(x)
    assert reader.streams
    for index in INDEXES:
        expected = np.asarray(x[index])
        got = reader.read(index)
        assert got.dtype == np.dtype(dtype).newbyteorder("=")
        assert got.flags.c_contiguous and got.flags.aligned and got.flags.writeable
        np.testing.assert_array_equal(got, expected)
        as_float = reader.read(index, np.float32)
        assert as_float.dtype == np.float32
        np.testing.assert_array_equal(as_float, expected.astype(np.float32))


@pytest.mark.parametrize("view", ["x[5:]", "x[::3]", "x[::-1]", "x[10:40][::2]", "x[:0]",
                                  "x[3:][::-2]"])
def test_reader_of_views(tmp_path, view):
    x = save_npy(tmp_path / "x.npy", sample_data((60, 4, 2), ">f8"))
    array = eval(view, {"x": x})
    assert_reads_like_numpy(array, np.float64)


def assert_reads_like_numpy(array, dtype=None):
    """A streaming reader of ``array`` gives NumPy's rows for every index of
    INDEXES, and refuses those NumPy refuses."""
    reader = MemmapRows(array)
    assert reader.streams
    for index in INDEXES:
        try:
            expected = np.asarray(array[index])
        except IndexError:
            with pytest.raises(IndexError, match="out of bounds"):
                reader.read(index)
            continue
        got = reader.read(index) if dtype is None else reader.read(index, dtype)
        np.testing.assert_array_equal(got, expected)


def test_reader_of_rows_not_contiguous_in_the_file_reads_the_mapping(tmp_path):
    x = save_npy(tmp_path / "x.npy", sample_data((50, 6), "f4"))
    fortran = np.load(save_fortran(tmp_path), mmap_mode="r")
    for array, streams in ((x[:, 1:4], True), (x[:, ::2], False), (fortran, False)):
        reader = MemmapRows(array)
        assert reader.streams == streams
        for index in INDEXES:
            np.testing.assert_array_equal(reader.read(index), np.asarray(array[index]))


def save_fortran(tmp_path):
    path = tmp_path / "fortran.npy"
    np.save(path, np.asfortranarray(sample_data((50, 6), "f8", seed=3)))
    return path


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_reader_of_npy_format_versions(tmp_path, version):
    data_ = sample_data((30, 5), "f4")
    x = save_npy(tmp_path / "x.npy", data_, version)
    assert x.offset in (64, 128)
    reader = MemmapRows(x)
    assert reader.streams
    np.testing.assert_array_equal(reader.read(np.arange(30)[::-1]), data_[::-1])


@pytest.mark.parametrize("offset", [1, 7, 4099, 65536 + 13])
def test_reader_of_memmap_with_an_offset(tmp_path, offset):
    values = sample_data((25, 3), "<i2")
    path = tmp_path / "raw.bin"
    path.write_bytes(b"\xff" * offset + values.tobytes() + b"\xee" * 5)
    x = np.memmap(path, dtype="<i2", mode="r", offset=offset, shape=(25, 3))
    for array in (x, x[4:], x[::2]):
        assert_reads_like_numpy(array)


def test_reader_names_rows_out_of_bounds(tmp_path):
    reader = MemmapRows(save_npy(tmp_path / "x.npy", np.zeros((5, 2))), "x_val")
    with pytest.raises(IndexError, match="x_val: row 5 is out of bounds for 5 rows"):
        reader.read(np.array([0, 5]))
    with pytest.raises(IndexError, match="x_val: row -6"):
        reader.read([-6])
    with pytest.raises(IndexError, match="1-D array of integers"):
        reader.read(np.array([[0]]))
    with pytest.raises(IndexError, match="1-D array of integers"):
        reader.read(np.array([0.5]))


@pytest.mark.parametrize("mode", ["r+", "c", "w+"])
def test_writable_maps_are_read_through_the_mapping(tmp_path, mode):
    values = sample_data((50, 3), "f8")
    path = tmp_path / "x.dat"
    values.tofile(path)
    x = np.memmap(path, dtype="f8", mode=mode, shape=(50, 3))
    if mode == "w+":
        x[:] = values
    x[7] = -1.0  # not in the file yet (r+, w+) or ever (c)
    expected = np.array(x)
    reader = MemmapRows(x)
    assert not reader.streams
    for index in INDEXES + INDEXES:  # twice: released pages come back the same
        np.testing.assert_array_equal(reader.read(index), expected[index])
    np.testing.assert_array_equal(x, expected)  # the changes are kept
    if mode != "c":
        x.flush()
        np.testing.assert_array_equal(np.fromfile(path).reshape(50, 3), expected)
    else:
        np.testing.assert_array_equal(np.fromfile(path).reshape(50, 3)[7], values[7])


@pytest.mark.skipif(not LINUX_PROC, reason="needs /proc/self/smaps (Linux)")
def test_pages_of_the_map_are_not_kept(tmp_path):
    """Read-only maps are read from the file, shared writable ones released
    after each read; copy-on-write ones keep their pages (and changes)."""
    values = sample_data((4096, 64), "f4")  # 1 MiB
    np.save(tmp_path / "x.npy", values)
    order = np.random.default_rng(0).permutation(4096)
    for mode, view in [("r", "x"), ("r+", "x"), ("r", "x[:, ::2]"), ("r+", "x[::-3]"),
                       ("c", "x")]:
        x = np.load(tmp_path / "x.npy", mmap_mode=mode)
        array = eval(view, {"x": x})
        reader = MemmapRows(array)
        for start in range(0, len(array), 256):
            reader.read(order[order < len(array)][start:start + 256])
        for start in range(0, len(array), 300):
            reader.read(slice(start, start + 300))
        resident = mapped_rss_kb(x)
        if mode == "c":
            assert resident > 512, resident
        else:
            assert resident <= 8, f"{view}, mode {mode!r}: {resident} kB of the map stay resident"
        del reader, array, x


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "x.npy"
    x = save_npy(path, sample_data((100, 16), "f8"))
    reader = MemmapRows(x, "x")
    head = reader.read(slice(0, 10))
    os.truncate(path, x.offset + 50 * 16 * 8 + 3)  # 50 rows and 3 bytes are left
    np.testing.assert_array_equal(reader.read(slice(0, 10)), head)
    with pytest.raises(ValueError, match=r"x: .*x\.npy ends at byte .*truncated"):
        reader.read(np.array([3, 60]))
    with pytest.raises(ValueError, match=r"x\.npy holds \d+ bytes, but its rows end"):
        MemmapRows(x)
    reader.close()


@pytest.mark.skipif(not LINUX_PROC, reason="needs /proc/self/maps (Linux)")
def test_a_file_replaced_after_mapping_is_read_through_the_mapping(tmp_path):
    path = tmp_path / "x.npy"
    old = sample_data((20, 3), "f4")
    x = save_npy(path, old)
    np.save(tmp_path / "new.npy", old + 1)
    os.replace(tmp_path / "new.npy", path)
    reader = MemmapRows(x)
    assert not reader.streams
    np.testing.assert_array_equal(reader.read(np.array([4, 2])), old[[4, 2]])


def test_reader_without_a_file_name_or_a_map(tmp_path):
    values = sample_data((20, 3), "f4")
    values.tofile(tmp_path / "x.dat")
    fd = os.open(tmp_path / "x.dat", os.O_RDONLY)
    with open(fd, "rb") as f:  # named by its descriptor: the memmap has no file name
        x = np.memmap(f, dtype="f4", mode="r", shape=(20, 3))
    assert x.filename is None
    reader = MemmapRows(x)
    assert not reader.streams
    np.testing.assert_array_equal(reader.read(slice(2, 5)), values[2:5])
    plain = MemmapRows(values)  # an ordinary array: indexed as it is
    np.testing.assert_array_equal(plain.read([3, 1]), values[[3, 1]])


def test_close_and_reader_for(tmp_path):
    x = save_npy(tmp_path / "x.npy", sample_data((10, 2), "f8"))

    class Owner:
        pass

    owner = Owner()
    first = reader_for(owner, x, "x")
    assert reader_for(owner, x, "x") is first
    part = x[:5]
    second = reader_for(owner, part, "x")
    assert second is not first and second.array is part and not first.streams
    with MemmapRows(x) as reader:
        assert reader.streams
    assert not reader.streams
    np.testing.assert_array_equal(reader.read([1]), x[[1]])  # through the mapping


# --- fit on memory-mapped data ---------------------------------------------------

def regression_data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    y = x @ rng.normal(size=(6, 2)) + 0.1 * rng.normal(size=(n, 2))
    return x, y


def regressor(dtype, seed=0):
    model = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
                           input_shape=(6,), dtype=dtype, seed=seed)
    model.compile(optimizers.Adam(lr=0.01), "mse")
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("validation_split", [0.0, 0.25])
def test_fit_on_memmaps_equals_fit_in_memory(tmp_path, dtype, shuffle, validation_split):
    x, y = regression_data()
    x, y = x.astype(dtype), y.astype(dtype)
    x_mm = save_npy(tmp_path / "x.npy", x)
    y_mm = save_npy(tmp_path / "y.npy", y)
    streamed, in_memory = regressor(dtype), regressor(dtype)
    kwargs = dict(epochs=3, batch_size=32, shuffle=shuffle, verbose=0,
                  validation_split=validation_split)
    h1 = streamed.fit(x_mm, y_mm, **kwargs)
    h2 = in_memory.fit(x, y, **kwargs)
    assert np.array_equal(streamed.param_buffer, in_memory.param_buffer)
    assert h1.history == h2.history
    np.testing.assert_array_equal(streamed.predict(x_mm), in_memory.predict(x))


def test_fit_on_big_endian_memmaps_and_memmapped_labels(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4))
    labels = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    x_mm = save_npy(tmp_path / "x.npy", x.astype(">f8"))
    y_mm = save_npy(tmp_path / "y.npy", labels.astype(">i4"))

    def model():
        m = cdl.Sequential([layers.Dense(3)], input_shape=(4,), seed=2)
        m.compile(optimizers.SGD(lr=0.1), "cross_entropy", metrics=["accuracy"])
        return m

    a, b = model(), model()
    a.fit(x_mm, y_mm, epochs=2, batch_size=16, verbose=0, validation_split=0.2)
    b.fit(x.astype(np.float32), labels, epochs=2, batch_size=16, verbose=0,
          validation_split=0.2)
    assert np.array_equal(a.param_buffer, b.param_buffer)


def test_fit_on_a_memmap_holding_nan_names_x(tmp_path):
    x, y = regression_data(n=40)
    x[33, 2] = np.nan
    x_mm = save_npy(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match="x contains NaN"):
        regressor("float64").fit(x_mm, y, epochs=1, batch_size=8, verbose=0)


# --- csv_to_npy ----------------------------------------------------------------

def write_csv(path, rows, header=None, delimiter=",", fmt="%.17g"):
    with open(path, "w") as f:
        if header:
            f.write(delimiter.join(header) + "\n")
        for row in rows:
            f.write(delimiter.join(fmt % v for v in row) + "\n")
    return path


@pytest.mark.parametrize("chunk_rows", [None, 1, 7, 50, 1000])
def test_csv_round_trip(tmp_path, chunk_rows):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 4))
    labels = rng.integers(0, 5, 50)
    table = np.column_stack([features[:, :2], labels, features[:, 2:]])
    path = write_csv(tmp_path / "d.csv", table, header=["a", "b", "label", "c", "d"])
    x, y = data.csv_to_npy(path, tmp_path / "out", target_columns=2, dtype="float64",
                           chunk_rows=chunk_rows)
    assert isinstance(x, np.memmap) and x.mode == "r"
    np.testing.assert_array_equal(x, features)
    assert y.dtype == np.int64 and y.shape == (50,)
    np.testing.assert_array_equal(y, labels)
    x32, y_named = data.csv_to_npy(path, tmp_path / "out32", target_columns="label",
                                   chunk_rows=chunk_rows)
    np.testing.assert_array_equal(x32, features.astype(np.float32))
    np.testing.assert_array_equal(y_named, labels)


def test_csv_header_inference_delimiters_and_blank_lines(tmp_path):
    values = np.array([[1.5, 2, 3], [4, 5.25, 6], [7, 8, 9.5]])
    for delimiter in (";", "\t", " "):
        path = write_csv(tmp_path / "d.csv", values, delimiter=delimiter)
        x, y = data.csv_to_npy(path, tmp_path / "o", delimiter=delimiter, dtype="float64")
        np.testing.assert_array_equal(x, values[:, :2])
        np.testing.assert_array_equal(y, values[:, 2])
        assert y.dtype == np.float64
    (tmp_path / "w.csv").write_text("\ufeff  1  2   3\n\n\n4 5 6  \n")  # a BOM, blank lines
    x, y = data.csv_to_npy(tmp_path / "w.csv", tmp_path / "o", delimiter=None)
    np.testing.assert_array_equal(x, [[1, 2], [4, 5]])
    assert y.dtype == np.int64 and y.tolist() == [3, 6]
    (tmp_path / "q.csv").write_text('"x1","x2","y"\n"1","2","3.0"\n')
    x, y = data.csv_to_npy(tmp_path / "q.csv", tmp_path / "o", target_columns="y")
    assert x.tolist() == [[1, 2]] and y.dtype == np.int64 and y.tolist() == [3]
    # header=False keeps the first line as data; True drops it even if numeric.
    (tmp_path / "n.csv").write_text("1,2\n3,4\n")
    assert data.csv_to_npy(tmp_path / "n.csv", tmp_path / "o", header=False)[0].shape == (2, 1)
    assert data.csv_to_npy(tmp_path / "n.csv", tmp_path / "o", header=True)[0].shape == (1, 1)


def test_csv_targets_options(tmp_path):
    path = write_csv(tmp_path / "d.csv", [[1, 0.5, 2, 3], [4, 1.5, 5, 6]],
                     header=["a", "t1", "b", "t2"])
    x, y = data.csv_to_npy(path, tmp_path / "o", target_columns=["t2", 1])
    assert x.tolist() == [[1, 2], [4, 5]]
    assert y.shape == (2, 2) and y.dtype == np.float32 and y.tolist() == [[3, 0.5], [6, 1.5]]
    x, y = data.csv_to_npy(path, tmp_path / "o", target_columns=[0], target_dtype="int32")
    assert y.shape == (2, 1) and y.dtype == np.int32 and y.tolist() == [[1], [4]]
    x, y = data.csv_to_npy(path, tmp_path / "o", target_columns=-2, target_dtype="float64")
    assert y.dtype == np.float64 and y.tolist() == [2, 5]
    os.remove(tmp_path / "o" / "y.npy")
    x, y = data.csv_to_npy(path, tmp_path / "o", target_columns=None)
    assert y is None and x.shape == (2, 4) and sorted(os.listdir(tmp_path / "o")) == ["x.npy"]
    (tmp_path / "big.csv").write_text("1,9007199254740993\n2,3\n")
    _, y = data.csv_to_npy(tmp_path / "big.csv", tmp_path / "o", dtype="float64")
    assert y.dtype == np.float64  # past 2**53: not exact in float64, so not labels


@pytest.mark.parametrize("text, kwargs, message", [
    ("", {}, r"d\.csv is empty"),
    ("\n \n", {}, r"d\.csv is empty"),
    ("a,b,c\n", {}, "header line but no data lines"),
    ("1,2,3\n4,5\n", {}, r"d\.csv, line 2: 2 fields, expected 3"),
    ("1,2,3\n\n4,5,6,7\n", {}, r"line 3: 4 fields, expected 3"),
    ("1,2,3\n4,x,6\n", {}, r"line 2, column 2: 'x' is not a number"),
    ("a,b\n1,2\n3,\n", {}, r"line 3, column 2: an empty cell"),
    ("1,nan,3\n", {}, r"line 1, column 2: nan \(cdl refuses NaN"),
    ("1,2,3\n1,2,-inf\n", {}, r"line 2, column 3: -inf"),
    ("1,1e39,3\n", {}, r"line 1, column 2: 1e\+39 \(too large for float32\)"),
    ("1,2,3\n", {"target_columns": 3}, "target column 3 is out of range: .* has 3 columns"),
    ("1,2,3\n", {"target_columns": -4}, "target column -4 is out of range"),
    ("1,2,3\n", {"target_columns": "y"}, "'y' is a name, but .* has no header line"),
    ("a,b\n1,2\n", {"target_columns": "y"}, r"has no column 'y'; its columns are \['a', 'b'\]"),
    ("1,2\n", {"target_columns": [0, 1]}, "every column .* is a target"),
    ("1,2\n", {"target_columns": [1, -1]}, "target column -1 is given twice"),
    ("1,2\n3,4.5\n", {"target_dtype": "int64"}, r"line 2, column 2: target 4.5 is not a int64"),
    ("1,-2\n", {"target_dtype": "uint8"}, "target -2.0 is not a uint8"),
    ("1,2\n", {"delimiter": ",,"}, "delimiter must be one character"),
    ("1,2\n", {"header": "yes"}, "header must be"),
])
def test_csv_errors_name_the_file_and_line(tmp_path, text, kwargs, message):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        data.csv_to_npy(tmp_path / "d.csv", tmp_path / "out", **kwargs)
    out = tmp_path / "out"
    assert not out.exists() or os.listdir(out) == []


@pytest.mark.parametrize("kwargs", [{"dtype": "int32"}, {"target_dtype": "U3"},
                                    {"target_columns": 1.5}])
def test_csv_type_errors(tmp_path, kwargs):
    (tmp_path / "d.csv").write_text("1,2\n")
    with pytest.raises(TypeError):
        data.csv_to_npy(tmp_path / "d.csv", tmp_path / "out", **kwargs)


def test_failed_conversion_leaves_earlier_files_and_no_partial_ones(tmp_path, monkeypatch):
    rows = np.arange(300.0).reshape(100, 3)
    out = tmp_path / "out"
    x_before, y_before = (np.array(a) for a in
                          data.csv_to_npy(write_csv(tmp_path / "d.csv", rows), out))
    bad = write_csv(tmp_path / "bad.csv", rows[::-1])
    with open(bad, "a") as f:
        f.write("1,2,oops\n")  # fails after many chunks were written
    with pytest.raises(ValueError, match="line 101, column 3: 'oops'"):
        data.csv_to_npy(bad, out, chunk_rows=8)
    assert sorted(os.listdir(out)) == ["x.npy", "y.npy"]
    np.testing.assert_array_equal(np.load(out / "x.npy"), x_before)
    np.testing.assert_array_equal(np.load(out / "y.npy"), y_before)

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(data.convert, "_write_converted", fail)  # y.npy fails, after x is parsed
    with pytest.raises(OSError, match="disk full"):
        data.csv_to_npy(write_csv(tmp_path / "e.csv", rows[::-1]), out, chunk_rows=8)
    assert sorted(os.listdir(out)) == ["x.npy", "y.npy"]
    np.testing.assert_array_equal(np.load(out / "x.npy"), x_before)
    np.testing.assert_array_equal(np.load(out / "y.npy"), y_before)


def test_converted_files_train_like_the_arrays(tmp_path):
    x, y = regression_data(n=120)
    table = np.column_stack([x, y])
    path = write_csv(tmp_path / "d.csv", table)
    x_mm, y_mm = data.csv_to_npy(path, tmp_path / "out", target_columns=[6, 7],
                                 dtype="float64", chunk_rows=16)
    a, b = regressor("float64"), regressor("float64")
    a.fit(x_mm, y_mm, epochs=2, batch_size=16, verbose=0)
    b.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.array_equal(a.param_buffer, b.param_buffer)


# --- concatenate_npy -------------------------------------------------------------

def test_concatenate_a_directory_in_name_order(tmp_path, monkeypatch):
    monkeypatch.setattr(data.convert, "_COPY_CHUNK_BYTES", 100)  # many chunks per shard
    parts = [sample_data((n, 3, 2), ">f8", seed=n) for n in (5, 0, 17, 1)]
    (tmp_path / "parts").mkdir()
    for i, part in enumerate(parts):
        np.save(tmp_path / "parts" / f"part-{i:02d}.npy", part)
    (tmp_path / "parts" / "notes.txt").write_text("not a shard")
    out = tmp_path / "parts" / "all.npy"  # inside the directory: left out of the inputs
    for _ in range(2):
        merged = data.concatenate_npy(tmp_path / "parts", out)
        assert isinstance(merged, np.memmap) and merged.dtype == np.dtype(">f8")
        np.testing.assert_array_equal(merged, np.concatenate(parts))


def test_concatenate_a_list_keeps_its_order_and_layouts(tmp_path):
    a = sample_data((4, 3), "i2")
    b = np.asfortranarray(sample_data((6, 3), "i2", seed=1))
    c = sample_data((0, 3), "i2")
    paths = []
    for name, part in (("b", b), ("a", a), ("c", c)):
        np.save(tmp_path / f"{name}.npy", part)
        paths.append(str(tmp_path / f"{name}.npy"))
    merged = data.concatenate_npy(paths, tmp_path / "m.npy")
    np.testing.assert_array_equal(merged, np.concatenate([b, a, c]))
    np.save(tmp_path / "v.npy", np.arange(7))
    np.testing.assert_array_equal(data.concatenate_npy([tmp_path / "v.npy"] * 2,
                                                       tmp_path / "v2.npy"),
                                  np.tile(np.arange(7), 2))


@pytest.mark.parametrize("second, message", [
    (np.zeros((2, 3), dtype=np.float32), r"b\.npy holds float32, but .*a\.npy holds float64"),
    (np.zeros((2, 3), dtype=">f8"), r"b\.npy holds >f8"),
    (np.zeros((2, 4)), r"b\.npy has rows of shape \(4,\), but .*a\.npy has \(3,\)"),
    (np.zeros((2, 3, 1)), r"b\.npy has rows of shape \(3, 1\)"),
    (np.float64(3.0), r"b\.npy holds a scalar"),
    (np.array([{"a": 1}], dtype=object), r"b\.npy is not a \.npy file of numbers"),
])
def test_concatenate_refuses_mismatched_shards(tmp_path, second, message):
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    np.save(tmp_path / "b.npy", second, allow_pickle=True)
    with pytest.raises(ValueError, match=message):
        data.concatenate_npy([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "m.npy")
    assert not (tmp_path / "m.npy").exists()


def test_concatenate_errors_and_atomicity(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="nothing to concatenate"):
        data.concatenate_npy([], tmp_path / "m.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .npy files"):
        data.concatenate_npy(tmp_path / "empty", tmp_path / "m.npy")
    with pytest.raises(ValueError, match="is not a directory"):
        data.concatenate_npy(tmp_path / "missing", tmp_path / "m.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"bad\.npy is not a \.npy file"):
        data.concatenate_npy([tmp_path / "bad.npy"], tmp_path / "m.npy")
    np.save(tmp_path / "a.npy", np.arange(1000.0))
    np.save(tmp_path / "m.npy", np.arange(3.0))
    monkeypatch.setattr(data.convert, "_COPY_CHUNK_BYTES", 800)
    reads = []
    original = MemmapRows.read

    def failing_read(self, index, dtype=None):
        reads.append(index)
        if len(reads) == 3:
            raise OSError("read error")
        return original(self, index, dtype)

    monkeypatch.setattr(MemmapRows, "read", failing_read)
    with pytest.raises(OSError, match="read error"):
        data.concatenate_npy([tmp_path / "a.npy"], tmp_path / "m.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), np.arange(3.0))
    assert sorted(os.listdir(tmp_path)) == ["a.npy", "bad.npy", "empty", "m.npy"]


# --- peak memory ---------------------------------------------------------------

PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

    import cdl
    from cdl import layers, optimizers
    x = np.load(sys.argv[1], mmap_mode="r")
    y = np.load(sys.argv[2], mmap_mode="r")
    model = cdl.Sequential([layers.Dense(32, activation="relu"), layers.Dense(1)],
                           input_shape=(x.shape[1],), seed=0)
    model.compile(optimizers.SGD(lr=0.01), "mse")
    loss_before = model.evaluate(x[:4096], y[:4096])["loss"]
    # Warm up (buffers, BLAS) on a few batches, so that the baseline has them.
    model.fit(x[:2048], y[:2048], epochs=1, batch_size=1024, verbose=0)
    weights = model.param_buffer.copy()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak (VmHWM) to the current RSS
    except OSError:
        pass
    base = status("VmRSS:")
    model.fit(x, y, epochs=1, batch_size=1024, shuffle=True, verbose=0)
    peak = status("VmHWM:")
    print(json.dumps({"base": base, "peak": peak, "rss_file": status("RssFile:"),
                      "loss_before": loss_before,
                      "loss_after": model.evaluate(x[:4096], y[:4096])["loss"],
                      "changed": bool((model.param_buffer != weights).any())}))
""")


def write_big_npy(path, n, d, seed=0):
    """A float32 .npy of shape (n, d) written chunk by chunk (never mapped
    here), and linear targets of it."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d).astype(np.float32) / np.sqrt(d)
    targets = []
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (n, d)})
        for start in range(0, n, 16384):
            chunk = rng.standard_normal((min(16384, n - start), d), dtype=np.float32)
            f.write(chunk.tobytes())
            targets.append(chunk @ w)
    return np.concatenate(targets)[:, None]


@pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                    reason="measures peak RSS through /proc/self/status (Linux)")
def test_training_on_a_200mb_memmap_keeps_peak_memory_small(tmp_path):
    n, d = 409_600, 128  # 200 MiB of float32
    x_path, y_path = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(y_path, write_big_npy(x_path, n, d))
    size = os.path.getsize(x_path)
    # Run outside the source tree, whose cdl/ has no compiled kernels in CI.
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(x_path), str(y_path)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    growth = figures["peak"] - figures["base"]
    report = (f"file {size / 2**20:.0f} MiB, RSS after setup {figures['base'] / 2**20:.1f} MiB, "
              f"peak {figures['peak'] / 2**20:.1f} MiB (+{growth / 2**20:.1f} MiB), "
              f"RssFile at the end {figures['rss_file'] / 2**20:.1f} MiB")
    print(report)  # shown by pytest -s
    assert growth < 0.25 * size, report
    assert figures["changed"], "fit left the weights as they were"
    assert figures["loss_after"] < figures["loss_before"], figures
