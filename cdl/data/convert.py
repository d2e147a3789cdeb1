"""Writing ``.npy`` files, in bounded memory, for data larger than memory:
:func:`csv_to_npy` converts a CSV file of numbers, :func:`concatenate_npy`
joins shards along their first axis. ``fit`` and
:class:`cdl.data.BatchLoader` read a file opened with
``np.load(path, mmap_mode="r")`` batch by batch.
"""
import collections
import csv
import itertools
import math
import numbers
import os
import struct
import tempfile

import numpy as np

from cdl._validation import as_float_dtype, check_bool, check_number
from cdl.data._common import list_values
from cdl.data.batching import MemmapRows
from cdl.saving.atomic import atomic_write

__all__ = ["csv_to_npy", "concatenate_npy"]


#: Bytes that :func:`concatenate_npy` copies at a time.
_COPY_CHUNK_BYTES = 1 << 24

#: Values per chunk that :func:`csv_to_npy` parses at a time by default.
_CSV_CHUNK_VALUES = 1 << 20


def _npy_header(dtype, shape, length=None):
    """A version 1.0 ``.npy`` header, padded with spaces to ``length`` bytes
    (default: the next multiple of 64, as NumPy pads)."""
    fields = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                   "fortran_order": False, "shape": tuple(shape)})
    magic = np.lib.format.magic(1, 0)
    minimum = len(magic) + 2 + len(fields) + 1
    length = -(-minimum // 64) * 64 if length is None else length
    text = fields + " " * (length - minimum) + "\n"
    return magic + struct.pack("<H", len(text)) + text.encode("latin1")


def _split_fields(line, delimiter):
    """The cells of one CSV line (quotes removed), as ``np.loadtxt`` reads them."""
    if delimiter is None:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter), [])


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return "_" not in cell  # float() takes 1_000, np.loadtxt does not


def _csv_target_columns(target_columns, names, n_columns, path):
    """(indices of the target columns, whether y is 1-D) from ``target_columns``."""
    if target_columns is None:
        return [], False
    single = isinstance(target_columns, (numbers.Integral, str))
    columns = [target_columns] if single else list(target_columns)
    indices = []
    for column in columns:
        if isinstance(column, str):
            if names is None:
                raise ValueError(f"target column {column!r} is a name, but {path} has "
                                 "no header line")
            if column not in names:
                raise ValueError(f"{path} has no column {column!r}; its columns are "
                                 f"{list_values(names)}")
            index = names.index(column)
        elif isinstance(column, numbers.Integral) and not isinstance(column, bool):
            if not -n_columns <= column < n_columns:
                raise ValueError(f"target column {column} is out of range: {path} has "
                                 f"{n_columns} columns")
            index = int(column) % n_columns
        else:
            raise TypeError("target_columns must be an int, a column name, a list of them "
                            f"or None, got {column!r}")
        if index in indices:
            raise ValueError(f"target column {column!r} is given twice")
        indices.append(index)
    if len(indices) == n_columns:
        raise ValueError(f"every column of {path} is a target: no input columns are left")
    return indices, single and bool(indices)


def _explain_bad_rows(path, numbered, delimiter, n_columns, error):
    """Raise a ValueError naming the first line of ``numbered`` that
    ``np.loadtxt`` could not read (wrong number of fields, not a number)."""
    for line_number, line in numbered:
        cells = _split_fields(line, delimiter)
        if len(cells) != n_columns:
            raise ValueError(f"{path}, line {line_number}: {len(cells)} fields, expected "
                             f"{n_columns}")
        for column, cell in enumerate(cells, 1):
            if not _is_number(cell):
                what = "an empty cell" if not cell.strip() else f"{cell!r} is not a number"
                raise ValueError(f"{path}, line {line_number}, column {column}: {what}")
    first, last = numbered[0][0], numbered[-1][0]
    raise ValueError(f"{path}, lines {first} to {last}: {error}")


def _parse_csv_chunk(path, numbered, delimiter, n_columns):
    """The float64 values of the lines ``numbered`` ((line number, text) pairs)."""
    try:
        values = np.loadtxt([line for _, line in numbered], dtype=np.float64,
                            delimiter=delimiter, comments=None, quotechar='"', ndmin=2)
    except ValueError as error:
        values, problem = None, error
    if values is None or values.shape[1] != n_columns:
        _explain_bad_rows(path, numbered, delimiter, n_columns,
                          problem if values is None else "wrong number of fields")
    _check_finite_cells(path, values, numbered, range(n_columns))
    return values


def _check_finite_cells(path, values, numbered, columns, parsed=None):
    """Raise naming the line and column of the first NaN or infinity of
    ``values``, or of the first value of ``parsed`` that became one when
    converted to ``values``' dtype."""
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        if parsed is None:
            shown, cause = values[row, column], ("cdl refuses NaN and infinity in training "
                                                 "data: fill in or drop missing values first")
        else:
            shown, cause = parsed[row, column], f"too large for {values.dtype.name}"
        raise ValueError(f"{path}, line {numbered[row][0]}, column {columns[column] + 1}: "
                         f"{shown} ({cause})")


def _check_integer_targets(path, values, dtype, numbered, columns):
    """Raise unless every target value fits the integer ``dtype`` exactly."""
    info = np.iinfo(dtype)
    bad = (values != np.round(values)) | (values < info.min) | (values > info.max)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"{path}, line {numbered[row][0]}, column {columns[column] + 1}: "
                         f"target {values[row, column]} is not a {dtype.name}")


def _whole(values):
    """True if every value is a whole number that float64 holds exactly."""
    return bool((np.abs(values) < 2 ** 53).all()) and np.array_equal(values, np.round(values))


def _read_csv_lines(text):
    """(line number, line) for each line of ``text`` that is not blank."""
    for line_number, line in enumerate(text, 1):
        if line.strip():
            yield line_number, line


def _csv_chunks(lines, chunk_rows):
    chunk = []
    for item in lines:
        chunk.append(item)
        if len(chunk) == chunk_rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


#: What ``csv_to_npy`` parses and writes, for the helpers of its one pass.
_CsvSpec = collections.namedtuple("_CsvSpec", "path delimiter n_columns x_columns y_columns "
                                               "dtype target_dtype chunk_rows")


def csv_to_npy(path, out_dir, target_columns=-1, *, delimiter=",", header="infer",
               dtype="float32", target_dtype=None, chunk_rows=None):
    """Convert a CSV file of numbers, possibly larger than memory, to ``.npy`` files.

    Writes the input columns to ``out_dir/x.npy`` and the target columns to
    ``out_dir/y.npy``, reading and parsing ``chunk_rows`` lines at a time,
    so that memory use does not grow with the file. Each file is written to
    a temporary file in ``out_dir`` and renamed into place once complete: a
    conversion that fails leaves no partial file behind (and an earlier
    ``x.npy`` or ``y.npy`` as it was). Open the results with
    ``np.load(path, mmap_mode="r")`` to train on them (as returned here).

    Parameters
    ----------
    path : str or path-like
        The CSV file (UTF-8). Blank lines are skipped; quoted cells are read.
    out_dir : str or path-like
        Directory for ``x.npy`` and ``y.npy``, created if missing.
    target_columns : int, str, list of them, or None, default -1
        The target column(s), by position (negative counts from the end) or
        by header name: an int or a name gives ``y`` of shape ``(n,)``, a
        list gives ``(n, len(list))`` in the list's order. ``None`` or an
        empty list writes ``x.npy`` only (an existing ``y.npy`` is left as
        is). The other columns, in file order, are ``x``.
    delimiter : str or None, default ","
        The cell separator (``"\\t"``, ``";"``...); ``None`` splits on runs
        of whitespace.
    header : {"infer", True, False}, default "infer"
        Whether the first line holds column names. ``"infer"``: it does if
        any of its cells is not a number.
    dtype : {'float32', 'float64'}, default 'float32'
        dtype of ``x``.
    target_dtype : dtype, optional
        dtype of ``y`` (a float or integer dtype). Default: int64 if every
        target value is a whole number (such as ``3`` or ``3.0``) smaller
        than 2**53 in magnitude, as class labels are; else ``dtype``.
    chunk_rows : int, optional
        Lines parsed at a time. Default: about a million values' worth, at
        most 65536 lines.

    Returns
    -------
    x : numpy.memmap, shape (n_samples, n_inputs)
        ``x.npy``, opened read-only with ``mmap_mode="r"``.
    y : numpy.memmap or None
        ``y.npy`` likewise, or None without target columns.

    Raises
    ------
    ValueError
        Naming the file and line: a cell that is not a number (empty cells
        included), NaN or infinity (cdl refuses them in training data: fill
        in missing values first), a line with another number of fields than
        the first, a target that is not a whole number for an integer
        ``target_dtype``; and a file without data lines, a target column out
        of range or not in the header, or no input column left.
    TypeError
        For an invalid ``dtype``, ``target_dtype`` or ``target_columns``.

    Examples
    --------
    >>> import os
    >>> with open("data.csv", "w") as f:
    ...     _ = f.write("height,weight,label\\n1.5,60,0\\n1.8,85,1\\n1.6,70,0\\n")
    >>> x, y = csv_to_npy("data.csv", "data", target_columns="label")
    >>> x.shape, x.dtype, y.tolist()
    ((3, 2), dtype('float32'), [0, 1, 0])
    >>> sorted(os.listdir("data"))
    ['x.npy', 'y.npy']
    """
    path = os.fspath(path)
    dtype = as_float_dtype(dtype)
    target_dtype = None if target_dtype is None else _target_dtype(target_dtype)
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1
                                  or delimiter in '"\n\r'):
        raise ValueError(f"delimiter must be one character (not a quote or a line break) "
                         f"or None, got {delimiter!r}")
    if isinstance(header, str):
        if header != "infer":
            raise ValueError(f"header must be 'infer', True or False, got {header!r}")
    else:
        # Not ``header in (True, False)``: 1 would pass that test and then
        # read as "no header" (the header is tested with ``is True`` below).
        header = check_bool(header, "header")
    if chunk_rows is not None:
        chunk_rows = check_number(chunk_rows, "chunk_rows", low=1, integer=True)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    x_path, y_path = os.path.join(out_dir, "x.npy"), os.path.join(out_dir, "y.npy")

    with open(path, encoding="utf-8-sig") as text, \
            tempfile.TemporaryFile(dir=out_dir) as y_values:
        lines = _read_csv_lines(text)
        first = next(lines, None)
        if first is None:
            raise ValueError(f"{path} is empty")
        cells = _split_fields(first[1], delimiter)
        has_header = header is True or (
            header == "infer" and not all(_is_number(c) for c in cells))
        names = [c.strip() for c in cells] if has_header else None
        y_columns, single = _csv_target_columns(target_columns, names, len(cells), path)
        x_columns = [c for c in range(len(cells)) if c not in y_columns]
        if not has_header:
            lines = itertools.chain([first], lines)
        rows = chunk_rows or min(65536, max(1, _CSV_CHUNK_VALUES // len(cells)))

        spec = _CsvSpec(path, delimiter, len(cells), x_columns, y_columns, dtype,
                        target_dtype, rows)

        def write_x(f):
            # The header is rewritten with the number of rows at the end:
            # padded to the length it has for the largest possible count.
            length = len(_npy_header(dtype, (10 ** 19 - 1, len(x_columns))))
            f.write(_npy_header(dtype, (0, len(x_columns)), length))
            n, whole = _write_csv_values(spec, lines, f, y_values)
            f.seek(0)
            f.write(_npy_header(dtype, (n, len(x_columns)), length))
            f.seek(0, os.SEEK_END)
            if y_columns:
                # Written before x.npy is renamed into place, so that a
                # failure here leaves both files as they were.
                y_dtype = target_dtype or (np.dtype(np.int64) if whole else dtype)
                shape = (n,) if single else (n, len(y_columns))
                y_values.seek(0)
                atomic_write(y_path, lambda g: _write_converted(g, y_values, shape, y_dtype))

        atomic_write(x_path, write_x)
    x = np.load(x_path, mmap_mode="r")
    return x, (np.load(y_path, mmap_mode="r") if y_columns else None)


def _write_csv_values(spec, lines, x_file, y_file):
    """Parse ``lines`` chunk by chunk, writing the inputs to ``x_file`` (in
    ``spec.dtype``) and the targets to ``y_file`` (raw float64); return the
    number of rows and whether every target is a whole number."""
    n, whole = 0, True
    for numbered in _csv_chunks(lines, spec.chunk_rows):
        values = _parse_csv_chunk(spec.path, numbered, spec.delimiter, spec.n_columns)
        with np.errstate(over="ignore"):  # values too large for float32 are reported
            inputs = np.ascontiguousarray(values[:, spec.x_columns], dtype=spec.dtype)
        _check_finite_cells(spec.path, inputs, numbered, spec.x_columns,
                            values[:, spec.x_columns])
        x_file.write(inputs.data)
        if spec.y_columns:
            targets = np.ascontiguousarray(values[:, spec.y_columns])
            _check_targets(spec, targets, numbered)
            whole = whole and _whole(targets)
            y_file.write(targets.data)
        n += len(numbered)
    if n == 0:
        raise ValueError(f"{spec.path} has a header line but no data lines")
    return n, whole


def _check_targets(spec, targets, numbered):
    """Raise unless the targets convert exactly to an integer ``target_dtype``,
    or to a finite float one (the float dtype ``y`` may get)."""
    if spec.target_dtype is not None and spec.target_dtype.kind in "iu":
        _check_integer_targets(spec.path, targets, spec.target_dtype, numbered, spec.y_columns)
        return
    with np.errstate(over="ignore"):
        converted = targets.astype(spec.target_dtype or spec.dtype)
    _check_finite_cells(spec.path, converted, numbered, spec.y_columns, targets)


def _target_dtype(target_dtype):
    try:
        resolved = np.dtype(target_dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.kind not in "iuf":
        raise TypeError(f"target_dtype must be a float or integer dtype, got {target_dtype!r}")
    return resolved


def _write_converted(f, source, shape, dtype):
    """Write a ``.npy`` of ``shape`` and ``dtype`` from the raw float64 values
    of the file ``source``, converted a chunk at a time."""
    f.write(_npy_header(dtype, shape))
    remaining = math.prod(shape)
    per_chunk = _COPY_CHUNK_BYTES // 8
    while remaining:
        count = min(per_chunk, remaining)
        chunk = np.frombuffer(source.read(count * 8), dtype=np.float64)
        f.write(chunk.astype(dtype).data)
        remaining -= count


def _npy_sources(sources, out_path):
    """The shard paths: a directory's ``*.npy`` files in name order (but
    ``out_path``), or the given paths."""
    if isinstance(sources, (str, os.PathLike)) and os.path.isdir(sources):
        directory = os.fspath(sources)
        paths = [os.path.join(directory, name) for name in sorted(os.listdir(directory))
                 if name.endswith(".npy") and os.path.isfile(os.path.join(directory, name))]
        paths = [p for p in paths if not (os.path.exists(out_path)
                                          and os.path.samefile(p, out_path))]
        if not paths:
            raise ValueError(f"{directory} holds no .npy files")
        return paths
    if isinstance(sources, (str, os.PathLike)):
        raise ValueError(f"{os.fspath(sources)} is not a directory (pass a directory or a "
                         "list of .npy paths)")
    paths = [os.fspath(p) for p in sources]
    if not paths:
        raise ValueError("sources is empty: there is nothing to concatenate")
    return paths


def _open_shard(path):
    try:
        shard = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is not a .npy file of numbers that can be memory-mapped: "
                         f"{error}") from None
    if not isinstance(shard, np.ndarray) or shard.ndim == 0:
        raise ValueError(f"{path} holds a scalar, not an array of rows")
    return shard


def concatenate_npy(sources, out_path):
    """Concatenate ``.npy`` files along axis 0 into one, in bounded memory.

    For shards written separately (by several workers, or chunk by chunk)
    that should be trained on as one memory-mapped array. The shards are
    read a chunk of rows at a time from their files, never loaded whole,
    and the result is written to a temporary file renamed into place once
    complete, so that a failure leaves no partial file behind.

    Parameters
    ----------
    sources : str, path-like or list of them
        A directory, whose ``*.npy`` files are taken in sorted name order
        (so number them with leading zeros: ``part-0002.npy`` before
        ``part-0010.npy``) leaving out ``out_path`` itself; or a list of
        ``.npy`` paths, taken in that order.
    out_path : str or path-like
        The file to write.

    Returns
    -------
    numpy.memmap
        The result, opened read-only with ``mmap_mode="r"``.

    Raises
    ------
    ValueError
        Naming the offending file: a shard whose dtype or shape after axis
        0 differs from the first shard's, a file that is not a ``.npy``
        array (or holds Python objects), a 0-d array; or no shards at all.

    Examples
    --------
    >>> import os
    >>> import numpy as np
    >>> os.makedirs("parts")
    >>> np.save("parts/part-00.npy", np.zeros((2, 3), dtype=np.float32))
    >>> np.save("parts/part-01.npy", np.ones((1, 3), dtype=np.float32))
    >>> x = concatenate_npy("parts", "x.npy")
    >>> x.shape, x[:, 0].tolist()
    ((3, 3), [0.0, 0.0, 1.0])
    """
    out_path = os.fspath(out_path)
    paths = _npy_sources(sources, out_path)
    shards = [_open_shard(p) for p in paths]
    first = shards[0]
    for path, shard in zip(paths[1:], shards[1:]):
        if shard.dtype != first.dtype:
            raise ValueError(f"{path} holds {shard.dtype}, but {paths[0]} holds {first.dtype}: "
                             "every shard must have the same dtype")
        if shard.shape[1:] != first.shape[1:]:
            raise ValueError(f"{path} has rows of shape {shard.shape[1:]}, but {paths[0]} has "
                             f"{first.shape[1:]}: every shard must have the same shape "
                             "after axis 0")
    shape = (sum(s.shape[0] for s in shards),) + first.shape[1:]
    row_bytes = first.itemsize * math.prod(first.shape[1:])

    def write(f):
        f.write(_npy_header(first.dtype, shape))
        if not row_bytes:
            return
        rows = max(1, _COPY_CHUNK_BYTES // row_bytes)
        for path, shard in zip(paths, shards):
            with MemmapRows(shard, path) as reader:
                for start in range(0, shard.shape[0], rows):
                    f.write(reader.read(slice(start, start + rows), shard.dtype).data)

    atomic_write(out_path, write)
    return np.load(out_path, mmap_mode="r")

