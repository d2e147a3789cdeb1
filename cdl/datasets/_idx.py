"""Reading IDX files, the format of MNIST and its look-alikes.

An IDX file is a 4-byte magic number -- two zero bytes, a type code and the
number of dimensions -- then each dimension as a big-endian unsigned 32-bit
integer, then the values in C order, big-endian. Type codes: 0x08 unsigned
byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
"""
import gzip
import math
import os
import struct
import zlib

import numpy as np

from cdl._validation import choose
from cdl.datasets._download import REGISTRY, fetch

__all__ = ["read_idx", "load_mnist"]

_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: zlib cannot expand data by more than about 1032:1, so a gzip file claiming
#: more than this many bytes per compressed byte is corrupt or truncated.
_MAX_GZIP_RATIO = 1100

_GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path):
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _read_header(f, path):
    """Return (type code, dtype, dims, header length) from an open IDX stream."""
    magic = f.read(4)
    if len(magic) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(magic)} bytes)")
    zero0, zero1, code, ndim = magic
    if zero0 or zero1:
        raise ValueError(
            f"{path}: not an IDX file (magic number {magic.hex()} should start with "
            "two zero bytes)")
    if code not in _TYPES:
        known = ", ".join(f"0x{c:02X}" for c in _TYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X} (expected one of {known})")
    if ndim == 0:
        raise ValueError(f"{path}: the IDX header declares 0 dimensions")
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {4 * ndim} bytes "
            f"after the magic number, found {len(raw_dims)}")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    return code, _TYPES[code], dims, 4 + 4 * ndim


def _size_error(path, dims, dtype, expected, actual):
    what = "truncated" if actual < expected else "longer than its header says"
    return ValueError(
        f"{path}: file is {what}: the header declares shape {dims} of "
        f"{dtype.itemsize}-byte values ({expected} bytes of data) but the file holds "
        f"{actual} bytes of data")


def _read(path, mmap_mode=None):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such IDX file: {path}")
    if _is_gzip(path):
        if mmap_mode is not None:
            raise ValueError(f"{path}: a gzip-compressed file cannot be memory-mapped; "
                             "decompress it first or use mmap_mode=None")
        try:
            with gzip.open(path, "rb") as f:
                return _read_stream(f, path, max_bytes=_MAX_GZIP_RATIO * os.path.getsize(path))
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({err})") from None
    with open(path, "rb") as f:
        code, dtype, dims, header = _read_header(f, path)
        expected = math.prod(dims) * dtype.itemsize
        actual = os.path.getsize(path) - header
        if actual != expected:
            raise _size_error(path, dims, dtype, expected, actual)
        if mmap_mode is None:
            return code, _read_values(f, path, dtype, dims)
    mmap_mode = choose(mmap_mode, ("r", "r+", "c"), "mmap_mode")
    if expected == 0:  # np.memmap cannot map zero bytes
        return code, np.zeros(dims, dtype=dtype)
    return code, np.memmap(path, dtype=dtype, mode=mmap_mode, offset=header, shape=dims)


def _read_stream(f, path, max_bytes):
    code, dtype, dims, _ = _read_header(f, path)
    expected = math.prod(dims) * dtype.itemsize
    if expected > max_bytes:
        raise ValueError(
            f"{path}: the header declares shape {dims} ({expected} bytes of data), more "
            "than this compressed file can hold; it is corrupt or truncated")
    return code, _read_values(f, path, dtype, dims)


def _read_values(f, path, dtype, dims):
    count = math.prod(dims)
    values = np.empty(count, dtype=dtype)
    view = memoryview(values.view(np.uint8))
    filled = 0
    while filled < len(view):
        got = f.readinto(view[filled:])
        if not got:
            break
        filled += got
    if filled < len(view):
        raise _size_error(path, dims, dtype, len(view), filled)
    extra = len(f.read(1 << 16))
    if extra:
        raise _size_error(path, dims, dtype, len(view), len(view) + extra)
    values = values.reshape(dims)
    if dtype.itemsize > 1:
        values = values.astype(dtype.newbyteorder("="))
    else:
        values = values.view(dtype.newbyteorder("="))
    return values


def read_idx(path, mmap_mode=None):
    """Read one IDX file (gzip-compressed or not) into an array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Compression is recognised from the content (the gzip magic
        bytes), not the file name.
    mmap_mode : {None, 'r', 'r+', 'c'}, optional
        Memory-map an uncompressed file instead of reading it (see
        ``numpy.memmap``); the result then keeps the file's big-endian dtype
        for multi-byte types, and can be fed to ``cdl.data.BatchLoader``
        without loading it whole.

    Returns
    -------
    ndarray
        Of the header's shape and type (uint8, int8, int16, int32, float32 or
        float64), in native byte order unless memory-mapped.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    ValueError
        Naming the file, if the magic number or type code is invalid, the
        header is cut short, or the data is shorter or longer than the
        header's dimensions say (or the gzip stream is corrupt).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import datasets
    >>> header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    >>> with open("tiny-idx2-ubyte", "wb") as f:          # a 2 x 3 uint8 array in IDX format
    ...     _ = f.write(header + bytes(range(6)))
    >>> datasets.read_idx("tiny-idx2-ubyte")
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    return _read(path, mmap_mode)[1]


_KINDS = {"train": "train", "test": "t10k"}


_IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def load_idx_split(name, kind, data_home, download, mirror):
    """``(images, labels)`` of split ``kind`` ("train" or "test") of the IDX
    data set ``name`` (MNIST-shaped: 28x28 unsigned bytes, labels 0..9),
    fetched through the cache and checked against its registered counts."""
    images_file, labels_file = _IDX_FILES[kind]
    images_path = fetch(name, images_file, data_home, download, mirror)
    labels_path = fetch(name, labels_file, data_home, download, mirror)
    count = REGISTRY[name]["counts"][kind]
    code, images = _read(images_path)
    if code != 0x08 or images.shape != (count, 28, 28):
        raise ValueError(f"{images_path}: expected {count} unsigned-byte images of 28x28, got "
                         f"{images.dtype} data of shape {images.shape}")
    code, labels = _read(labels_path)
    if code != 0x08 or labels.shape != (count,):
        raise ValueError(f"{labels_path}: expected {count} unsigned-byte labels, got "
                         f"{labels.dtype} data of shape {labels.shape}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must be 0..9, found {int(labels.max())}")
    return images, labels.astype(np.int64)


def load_idx_dataset(name, data_home, download, mirror):
    """``(train, test)``, each ``load_idx_split``'s pair, of data set ``name``."""
    train = load_idx_split(name, "train", data_home, download, mirror)
    test = load_idx_split(name, "test", data_home, download, mirror)
    return train, test


def _find(folder, prefix, what):
    tried = []
    for stem in (f"{prefix}-{what}-idx", f"{prefix}-{what}.idx"):
        for ext in ("", ".gz"):
            name = f"{stem}{3 if what == 'images' else 1}-ubyte{ext}"
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                return candidate
            tried.append(name)
    raise FileNotFoundError(
        f"no MNIST {what} file in {folder}; looked for {', '.join(tried)}")


def load_mnist(path=None, kind=None, *, data_home=None, download=True, mirror=None):
    """Load MNIST: downloaded on first use, or from IDX files you already have.

    ``load_mnist()`` returns ``(x_train, y_train), (x_test, y_test)`` as
    Keras' ``mnist.load_data()``: the four IDX files of the standard release
    (11 MB) are fetched once, checked against pinned SHA-256 hashes and kept
    in a cache folder, then read from there with no network access.

    ``load_mnist(path)`` reads a folder you already have instead, holding the
    standard files ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``
    (for ``kind="train"``) or ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte`` (for ``kind="test"``), each optionally
    gzip-compressed with a ``.gz`` suffix (the ``train-images.idx3-ubyte``
    spelling is accepted too), of any size: MNIST, Fashion-MNIST, KMNIST...
    Nothing is downloaded then.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A folder of IDX files to read; None downloads (or reuses the cache).
    kind : {'train', 'test'}, optional
        With ``path``: the part to read (default 'train'). Without: return
        only that part, ``(x, y)``, instead of both.
    data_home : str or os.PathLike, optional
        The cache folder, without ``path``: default the environment variable
        ``CDL_DATA``, else ``~/.cache/cdl``. Each data set has a sub-folder
        (``<data_home>/mnist/``).
    download : bool, default True
        Download missing files, or files whose hash is wrong (damaged or
        tampered with); False raises ``FileNotFoundError`` instead.
    mirror : str, optional
        Base URL of a mirror, serving ``<mirror>/mnist/<file name>``: default
        the environment variable ``CDL_DATASETS_URL``, else the official
        address (Google's copy of the MNIST files).

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        Without ``path`` and ``kind``: images as uint8 arrays of shape
        (n, 28, 28) (60,000 and 10,000 of them), labels as int64 arrays of
        shape (n,). Divide the images by 255 for values in [0, 1].
    images, labels
        With ``path`` or ``kind``: one part, of the header's dimensions.

    Raises
    ------
    FileNotFoundError
        If ``path`` or a file in it is missing (naming the names tried); or,
        with ``download=False``, if a file is not in the cache.
    ValueError
        Naming the file, if it is not a valid IDX file, is not an unsigned
        byte array of the right number of dimensions (3 for images, 1 for
        labels), if the images and labels counts differ, or if a downloaded
        file's hash is not the pinned one.
    ImportError
        If a download is needed and ``pooch`` is not installed
        (``pip install 'cdl[datasets]'``).
    ConnectionError
        If a download fails (no network, server down), naming the URL, where
        to put the file by hand and how to set a mirror.

    Notes
    -----
    Data: Y. LeCun, C. Cortes and C. J. C. Burges, The MNIST database of
    handwritten digits; the files are fetched from
    https://storage.googleapis.com/cvdf-datasets/mnist/. See the "Data
    sets" page of the documentation for sources, sizes and hashes.

    Examples
    --------
    >>> from cdl import datasets
    >>> (x_train, y_train), (x_test, y_test) = datasets.load_mnist()  # doctest: +SKIP
    >>> x_train.shape, x_train.dtype, y_train.dtype                  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'), dtype('int64'))
    >>> datasets.load_mnist("no-such-folder")             # a folder: nothing is downloaded
    Traceback (most recent call last):
        ...
    FileNotFoundError: MNIST folder not found (or not a folder): no-such-folder
    """
    if path is None:

        if kind is None:
            return load_idx_dataset("mnist", data_home, download, mirror)
        kind = choose(kind, tuple(_KINDS), "kind")
        return load_idx_split("mnist", kind, data_home, download, mirror)
    if data_home is not None or mirror is not None or download is not True:
        raise ValueError("data_home, download and mirror apply to the downloaded MNIST; "
                         "with a path, the files are read from that folder only")
    if kind is None:
        kind = "train"
    kind = choose(kind, tuple(_KINDS), "kind")
    folder = os.fspath(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"MNIST folder not found (or not a folder): {folder}")
    prefix = _KINDS[kind]
    images_path = _find(folder, prefix, "images")
    labels_path = _find(folder, prefix, "labels")
    code, images = _read(images_path)
    if code != 0x08 or images.ndim != 3:
        raise ValueError(
            f"{images_path}: expected unsigned-byte images of 3 dimensions (magic number "
            f"0x00000803), got {images.dtype} data of shape {images.shape}")
    code, labels = _read(labels_path)
    if code != 0x08 or labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected unsigned-byte labels of 1 dimension (magic number "
            f"0x00000801), got {labels.dtype} data of shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels")
    return images, labels.astype(np.int64)
