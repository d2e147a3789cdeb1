"""Tests of cdl.datasets: the bundled digits, the generators and the IDX reader."""
import gzip
import hashlib
import struct
from importlib import resources

import numpy as np
import numpy.testing as npt
import pytest

from cdl.datasets import (
    Bunch, load_digits, load_mnist, load_shakespeare, make_blobs, make_circles, make_moons,
    make_regression, make_spirals, make_xor, read_idx)

# --- load_digits -------------------------------------------------------------

DIGIT_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_load_digits_matches_the_published_data_set():
    digits = load_digits()
    assert isinstance(digits, Bunch)
    assert digits.data.shape == (1797, 64) and digits.data.dtype == np.float64
    assert digits.target.shape == (1797,) and digits.target.dtype == np.int64
    assert digits.images.shape == (1797, 8, 8)
    npt.assert_array_equal(digits.images.reshape(1797, 64), digits.data)
    npt.assert_array_equal(np.bincount(digits.target), DIGIT_COUNTS)
    assert digits.data.min() == 0 and digits.data.max() == 16
    npt.assert_array_equal(digits.data, np.round(digits.data))
    assert len(digits.feature_names) == 64 and digits.feature_names[9] == "pixel_1_1"
    npt.assert_array_equal(digits.target_names, np.arange(10))
    assert "10.24432/C50P49" in digits.DESCR and "Alpaydin" in digits.DESCR
    assert digits["data"] is digits.data
    # The first sample is a 0 (the well-known first image of the set).
    assert digits.target[0] == 0
    npt.assert_array_equal(digits.images[0, 0], [0, 0, 5, 13, 9, 1, 0, 0])


def test_load_digits_return_X_y():
    X, y = load_digits(return_X_y=True)
    assert X.shape == (1797, 64) and y.shape == (1797,)
    npt.assert_array_equal(X, load_digits().data)
    with pytest.raises(TypeError, match="return_X_y"):
        load_digits(return_X_y="yes")


def test_bundled_file_and_its_notice_ship_together():
    folder = resources.files("cdl.datasets").joinpath("data")
    readme = folder.joinpath("README.txt").read_text(encoding="utf-8")
    digest = hashlib.sha256(folder.joinpath("digits.csv.gz").read_bytes()).hexdigest()
    assert digest in readme  # the README describes exactly this file
    for needle in ("10.24432/C50P49", "CC BY 4.0", "Alpaydin", "BSD 3-Clause"):
        assert needle in readme
    assert "10.24432/C50P49" in load_digits.__doc__


def test_bundled_shakespeare_and_its_notice_ship_together():
    folder = resources.files("cdl.datasets").joinpath("data")
    readme = folder.joinpath("README.txt").read_text(encoding="utf-8")
    digest = hashlib.sha256(folder.joinpath("shakespeare.txt").read_bytes()).hexdigest()
    assert digest in readme
    assert "public domain" in readme and "karpathy/char-rnn" in readme
    text = load_shakespeare()
    assert len(text) == 100_020 and text.count("\n") == 3927 and text.isascii()
    assert text.startswith("First Citizen:\n") and text.endswith("words?\n")


def test_bunch_attribute_access():
    b = Bunch(a=1)
    b.c = 2
    assert b["c"] == 2 and b.a == 1
    with pytest.raises(AttributeError):
        b.missing


# --- generators ----------------------------------------------------------------

GENERATORS = [make_xor, make_moons, make_circles, make_spirals, make_blobs]


@pytest.mark.parametrize("make", GENERATORS, ids=lambda f: f.__name__)
def test_generators_shape_dtype_and_seeding(make):
    X, y = make(n_samples=60, seed=0)
    assert X.shape == (60, 2) and X.dtype == np.float64 and X.flags.c_contiguous
    assert y.shape == (60,) and y.dtype == np.int64
    X2, y2 = make(n_samples=60, seed=0)
    npt.assert_array_equal(X, X2)
    npt.assert_array_equal(y, y2)
    X3, _ = make(n_samples=60, seed=1)
    assert not np.array_equal(X, X3)
    rng = np.random.default_rng(0)
    Xa, _ = make(n_samples=60, seed=rng)
    Xb, _ = make(n_samples=60, seed=rng)
    assert not np.array_equal(Xa, Xb)  # the generator advanced
    with pytest.raises(TypeError, match="seed"):
        make(seed="0")
    with pytest.raises((TypeError, ValueError), match="n_samples"):
        make(n_samples=0)
    with pytest.raises(TypeError, match="n_samples"):
        make(n_samples=10.5)


def test_make_xor_geometry():
    X, y = make_xor(n_samples=8, noise=0, shuffle=False)
    npt.assert_array_equal(X[:4], [[0, 0], [0, 1], [1, 0], [1, 1]])
    npt.assert_array_equal(y, [0, 1, 1, 0] * 2)
    X, y = make_xor(n_samples=400, noise=0.1, seed=0)
    corner = np.round(X).clip(0, 1).astype(int)
    assert (y == (corner[:, 0] ^ corner[:, 1])).mean() > 0.99
    npt.assert_array_equal(np.bincount(y), [200, 200])
    with pytest.raises(ValueError, match="noise"):
        make_xor(noise=-0.1)


def test_make_moons_geometry():
    X, y = make_moons(n_samples=101, shuffle=False)
    npt.assert_array_equal(np.bincount(y), [50, 51])
    npt.assert_allclose(np.hypot(*X[y == 0].T), 1.0)
    npt.assert_allclose(np.hypot(X[y == 1, 0] - 1.0, X[y == 1, 1] - 0.5), 1.0)
    assert (X[y == 0, 1] >= -1e-12).all() and (X[y == 1, 1] <= 0.5 + 1e-12).all()
    Xn, _ = make_moons(n_samples=101, noise=0.05, shuffle=False, seed=0)
    assert 0 < np.abs(Xn - X).max() < 0.5
    with pytest.raises(ValueError, match="n_samples"):
        make_moons(n_samples=1)


def test_make_circles_geometry():
    X, y = make_circles(n_samples=100, factor=0.3, seed=0)
    npt.assert_array_equal(np.bincount(y), [50, 50])
    radius = np.hypot(X[:, 0], X[:, 1])
    npt.assert_allclose(radius[y == 0], 1.0)
    npt.assert_allclose(radius[y == 1], 0.3)
    for factor in (1.0, -0.1):
        with pytest.raises(ValueError, match="factor"):
            make_circles(factor=factor)


def test_make_spirals_geometry():
    X, y = make_spirals(n_samples=100, n_classes=3, noise=0.0, shuffle=False)
    npt.assert_array_equal(np.bincount(y), [34, 33, 33])
    radius = np.hypot(X[:, 0], X[:, 1])
    assert radius.max() <= 1.0 + 1e-12
    npt.assert_allclose(radius[:34], np.linspace(0, 1, 34))
    # Class k's arm ends at angle 4 (k + 1) (measured from the y axis).
    end = X[33]
    npt.assert_allclose(end, [np.sin(4.0), np.cos(4.0)])
    with pytest.raises(ValueError, match="n_classes"):
        make_spirals(n_classes=1)
    with pytest.raises(ValueError, match="n_samples"):
        make_spirals(n_samples=2, n_classes=3)


def test_make_blobs_centers_and_spread():
    centers = np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
    X, y, c = make_blobs(n_samples=2001, centers=centers, cluster_std=[0.5, 2.0],
                         seed=0, return_centers=True)
    assert X.shape == (2001, 3)
    npt.assert_array_equal(c, centers)
    npt.assert_array_equal(np.bincount(y), [1001, 1000])
    for k, std in enumerate((0.5, 2.0)):
        npt.assert_allclose(X[y == k].mean(axis=0), centers[k], atol=0.2)
        npt.assert_allclose(X[y == k].std(axis=0), std, rtol=0.1)
    X, y, c = make_blobs(n_samples=30, n_features=4, centers=5, center_box=(0, 1),
                         seed=0, return_centers=True)
    assert X.shape == (30, 4) and c.shape == (5, 4)
    assert ((c >= 0) & (c <= 1)).all()
    npt.assert_array_equal(np.bincount(y), [6] * 5)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"centers": 0}, ValueError, "centers"),
    ({"centers": np.zeros(3)}, ValueError, "centers"),
    ({"centers": "abc"}, TypeError, "centers"),
    ({"cluster_std": -1.0}, ValueError, "cluster_std"),
    ({"cluster_std": [1.0, 2.0]}, ValueError, "one per center"),
    ({"center_box": (1, 0)}, ValueError, "center_box"),
    ({"n_samples": 2}, ValueError, "number of centers"),
    ({"n_features": 0}, ValueError, "n_features"),
])
def test_make_blobs_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_blobs(**kwargs)


def test_make_regression():
    X, y, w = make_regression(n_samples=50, n_features=6, n_informative=3, bias=2.0,
                              coef=True, seed=0)
    assert X.shape == (50, 6) and y.shape == (50,) and y.dtype == np.float64
    assert (w != 0).sum() == 3 and ((w >= 0) & (w < 100)).all()
    npt.assert_allclose(y, X @ w + 2.0)
    Xn, yn = make_regression(n_samples=50, n_features=6, n_informative=3, bias=2.0,
                             noise=1.0, seed=0)
    npt.assert_array_equal(Xn, X)
    assert 0.3 < np.std(yn - y) < 2.0
    _, _, w = make_regression(n_features=4, n_informative=10, coef=True, seed=0)
    assert (w != 0).sum() == 4  # clipped to n_features
    X1, _ = make_regression(seed=3)
    X2, _ = make_regression(seed=3)
    npt.assert_array_equal(X1, X2)
    assert make_regression(seed=0)[0].shape == (100, 10)
    with pytest.raises(ValueError, match="n_informative"):
        make_regression(n_informative=-1)
    with pytest.raises(ValueError, match="noise"):
        make_regression(noise=-1)
    with pytest.raises(TypeError, match="coef"):
        make_regression(coef=1)


# --- IDX files -----------------------------------------------------------------

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
         np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array, code=None):
    """The bytes of an IDX file holding ``array`` (big-endian, as the format says)."""
    array = np.asarray(array)
    code = CODES[array.dtype.type] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, payload, compress=False):
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", list(CODES), ids=lambda d: np.dtype(d).name)
def test_read_idx_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.uniform(-100, 100, size=(3, 4, 5)) if np.dtype(dtype).kind != "u"
             else rng.integers(0, 256, size=(3, 4, 5))).astype(dtype)
    path = write(tmp_path / "a.idx", idx_bytes(array), compress)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    assert got.shape == (3, 4, 5) and got.flags.writeable
    npt.assert_array_equal(got, array)
    assert read_idx(str(path)).shape == (3, 4, 5)


def test_read_idx_header_is_big_endian(tmp_path):
    payload = bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 1, 2) + b"\x01\x02\xff\xfe"
    got = read_idx(write(tmp_path / "a", payload))
    npt.assert_array_equal(got, [[0x0102, -2]])
    big = np.zeros(300, np.uint8)
    npt.assert_array_equal(read_idx(write(tmp_path / "b", idx_bytes(big))), big)


def test_read_idx_memory_map(tmp_path):
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    path = write(tmp_path / "a.idx", idx_bytes(array))
    mm = read_idx(path, mmap_mode="r")
    assert isinstance(mm, np.memmap) and mm.shape == (2, 3, 4)
    npt.assert_array_equal(mm, array)
    gz = write(tmp_path / "a.idx.gz", idx_bytes(array), compress=True)
    with pytest.raises(ValueError, match="cannot be memory-mapped"):
        read_idx(gz, mmap_mode="r")
    with pytest.raises(ValueError, match="mmap_mode"):
        read_idx(path, mmap_mode="w")


def test_read_idx_empty_array(tmp_path):
    array = np.zeros((0, 28, 28), np.uint8)
    for compress in (False, True):
        path = write(tmp_path / f"e{compress}", idx_bytes(array), compress)
        assert read_idx(path).shape == (0, 28, 28)
    assert read_idx(tmp_path / "eFalse", mmap_mode="r").shape == (0, 28, 28)


GOOD = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize("payload, match", [
    (b"\x00\x00", "too short for an IDX header"),
    (b"\x01\x00\x08\x02" + GOOD[4:], "not an IDX file"),
    (b"\x00\x00\x07\x02" + GOOD[4:], "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (GOOD[:9], "truncated IDX header"),
    (GOOD[:-1], "truncated.*11 bytes"),
    (GOOD + b"\x00", "longer than its header says"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 2 ** 31), "truncated"),
])
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_rejects_corrupt_files(tmp_path, payload, match, compress):
    path = write(tmp_path / "bad-file", payload, compress)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert "bad-file" in str(info.value)


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    packed = gzip.compress(GOOD)
    path = write(tmp_path / "cut.gz", packed[:-12])
    with pytest.raises(ValueError, match="cut.gz.*(corrupt|truncated)"):
        read_idx(path)
    # A gzip header promising far more data than the compressed size allows.
    huge = bytes([0, 0, 8, 3]) + struct.pack(">III", 60000, 2800, 2800)
    with pytest.raises(ValueError, match="more than this compressed file can hold"):
        read_idx(write(tmp_path / "huge.gz", huge, compress=True))
    with pytest.raises(FileNotFoundError, match="no such IDX file"):
        read_idx(tmp_path / "missing")


# --- load_mnist ------------------------------------------------------------------

def write_mnist(folder, prefix, n=5, compress=False, sep="-", n_labels=None):
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n_labels or n, dtype=np.uint8)
    ext = ".gz" if compress else ""
    write(folder / f"{prefix}-images{sep}idx3-ubyte{ext}", idx_bytes(images), compress)
    write(folder / f"{prefix}-labels{sep}idx1-ubyte{ext}", idx_bytes(labels), compress)
    return images, labels


def test_load_mnist_train_and_test(tmp_path):
    train_images, train_labels = write_mnist(tmp_path, "train", n=6)
    test_images, test_labels = write_mnist(tmp_path, "t10k", n=4, compress=True)
    images, labels = load_mnist(tmp_path)
    assert images.dtype == np.uint8 and images.shape == (6, 28, 28)
    assert labels.dtype == np.int64
    npt.assert_array_equal(images, train_images)
    npt.assert_array_equal(labels, train_labels)
    images, labels = load_mnist(str(tmp_path), kind="test")
    assert images.shape == (4, 28, 28)
    npt.assert_array_equal(images, test_images)
    npt.assert_array_equal(labels, test_labels)


def test_load_mnist_dotted_names_and_other_sizes(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 7, 9), dtype=np.uint8)
    write(tmp_path / "train-images.idx3-ubyte", idx_bytes(images))
    write(tmp_path / "train-labels.idx1-ubyte", idx_bytes(np.array([1, 2, 3], np.uint8)))
    got, labels = load_mnist(tmp_path)
    assert got.shape == (3, 7, 9)
    npt.assert_array_equal(labels, [1, 2, 3])


def test_load_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST folder not found"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="kind"):
        load_mnist(tmp_path, kind="validation")

    write_mnist(tmp_path, "train", n=5, n_labels=4)
    with pytest.raises(ValueError, match="holds 5 images but .*train-labels.* holds 4"):
        load_mnist(tmp_path)

    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros((5, 1), np.uint8)))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte: expected unsigned-byte"):
        load_mnist(tmp_path)

    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros((5, 28, 28), np.float32)))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: expected unsigned-byte"):
        load_mnist(tmp_path)

    write(tmp_path / "train-images-idx3-ubyte", GOOD[:-3])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: file is truncated"):
        load_mnist(tmp_path)
