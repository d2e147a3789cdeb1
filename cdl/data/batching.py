"""Mini-batches: the one way cdl reads the rows of a batch.

``fit``, ``evaluate``, ``predict`` and :class:`BatchLoader` all read rows
here, so that the same data gives the same batches whichever of them reads
it:

* :func:`epoch_batches` cuts an epoch into batches: slices in order, or
  runs of a shuffle order (``Generator.permutation`` of the samples);
  :func:`iterate_batches` draws that order from a seed.
* :class:`RowGatherer` gathers the rows of one batch of one array as a
  C-contiguous array of one dtype: a view where that needs no copy, a
  buffer reused from batch to batch for arrays in memory, and reads from
  the file for memory-mapped arrays (:class:`MemmapRows`).
* :class:`MemmapRows` reads rows of a memory-mapped array without keeping
  its pages mapped. Indexing an ``np.memmap`` faults the file's pages into
  the process, and they stay mapped (and counted in its resident memory)
  as long as the map lives: one shuffled epoch over a large file leaves
  most of it resident. :class:`MemmapRows` reads each batch's rows from
  the file with ``os.pread`` instead, so that the process holds a few
  batches whatever the size of the file.
* :class:`BatchLoader` yields ``(x_batch, y_batch[, w_batch])`` epoch
  after epoch, through :class:`RowGatherer`; ``fit`` takes it as an
  iterable of batches.
"""
import mmap
import os
import weakref

import numpy as np

from cdl._validation import as_float_array, as_float_dtype, check_bool, check_finite, check_number
from cdl.data._common import as_array, as_generator, check_real, count_samples, default_float

__all__ = ["iterate_batches", "epoch_batches", "RowGatherer", "BatchLoader", "MemmapRows",
           "reader_for"]


#: Modes whose mapping is shared with the file: dropping its pages from the
#: process keeps their contents (changes included) in the page cache.
_SHARED_MODES = ("r", "r+", "w+")


def _root_memmap(array):
    """The ``np.memmap`` that owns the ``mmap.mmap`` under ``array``, or None."""
    node = array
    while isinstance(node, np.ndarray):
        if isinstance(node, np.memmap) and isinstance(node.base, mmap.mmap):
            return node
        node = node.base
    return None


def _address(array):
    return array.__array_interface__["data"][0]


def _row_layout(array):
    """``(row_stride, row_bytes)`` when each row of ``array`` is one
    contiguous run of bytes (its inner dimensions are C-contiguous), else None."""
    if array.ndim == 0:
        return None
    expected = array.itemsize
    for size, stride in zip(array.shape[:0:-1], array.strides[:0:-1]):
        if size != 1 and stride != expected:
            return None
        expected *= size
    return (array.strides[0], expected) if expected else None


def _mapped_file(address):
    """``(inode, file offset)`` of the file mapping that holds ``address``,
    from /proc/self/maps; None where that file cannot be read (not Linux),
    ``(None, None)`` when no mapping holds it."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                low, high = (int(v, 16) for v in fields[0].split("-"))
                if low <= address < high:
                    return int(fields[4]), int(fields[2], 16) + address - low
    except (OSError, ValueError, IndexError):
        return None
    return None, None


#: A read fault on a file map also maps the neighbouring pages already in the
#: page cache ("fault-around"), within one page table: 2 MiB of addresses
#: with 4 KiB pages. Released ranges are widened to whole such windows.
_FAULT_WINDOW = max(2 << 20, mmap.PAGESIZE)


class MemmapRows:
    """Reads rows of a memory-mapped array into new C-contiguous arrays.

    Built once from an ``np.memmap`` (or any view of one). When each row is
    one run of bytes in the file and the map is read-only (mode ``"r"``),
    :meth:`read` reads the rows with ``os.pread`` from the file, opened once
    here, merging consecutive rows into one read: the map's pages are never
    touched, so they never count in the process's resident memory.

    Writable maps are read through the mapping instead, since it may hold
    changes the file does not have yet (mode ``"r+"``/``"w+"``, until
    flushed) or never will (``"c"``, copy-on-write). Maps without a file
    name, rows that are not contiguous in the file, and a file that is no
    longer the one mapped (replaced since) are read through the mapping too.
    After a read through a shared map (modes ``"r"``, ``"r+"``, ``"w+"``),
    the pages of the rows read (of the whole map, for rows not contiguous
    in the file) are released with ``madvise(MADV_DONTNEED)``: the kernel
    keeps their contents, changes included, in the page cache.
    A ``"c"`` map's pages are never released, since that would discard the
    changes made through it.

    ``os.pread`` has no shared file position, so threads may read at once.

    Parameters
    ----------
    array : numpy.memmap
        The rows to read: axis 0 indexes them.
    name : str
        The array's name in error messages.

    Examples
    --------
    >>> np.save("rows.npy", np.arange(8.0).reshape(4, 2))
    >>> with MemmapRows(np.load("rows.npy", mmap_mode="r")) as reader:
    ...     reader.streams, reader.read(np.array([3, 0])).tolist()
    (True, [[6.0, 7.0], [0.0, 1.0]])
    """

    def __init__(self, array, name="x"):
        self.array, self.name = array, name
        self.path = None
        self._fd = None
        self._advise = None
        self._layout = _row_layout(array)
        root = _root_memmap(array)
        if root is None:
            return
        if root.mode in _SHARED_MODES and hasattr(root.base, "madvise") \
                and hasattr(mmap, "MADV_DONTNEED"):
            # np.memmap maps from the allocation granularity at or below its
            # offset: the map's address, and the file offset of its first byte.
            start = root.offset - root.offset % mmap.ALLOCATIONGRANULARITY
            self._advise = (root.base, _address(root) - (root.offset - start), start)
        if self._layout is None:
            return
        self._stride, self._row_bytes = self._layout
        self._first = root.offset + _address(array) - _address(root)
        if root.mode == "r" and root.filename is not None and hasattr(os, "pread"):
            self._open(root)

    def _open(self, root):
        try:
            fd = os.open(root.filename, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return  # moved, removed or no longer readable: the mapping still is
        try:
            info = os.fstat(fd)
            mapped = _mapped_file(_address(root))
            if mapped is not None and mapped != (info.st_ino, root.offset):
                os.close(fd)
                return  # the file was replaced since it was mapped
            self._check_size(info.st_size, root.filename)
        except BaseException:
            os.close(fd)
            raise
        self.path, self._fd = root.filename, fd
        self._closer = weakref.finalize(self, os.close, fd)

    def _check_size(self, size, path):
        n = self.array.shape[0]
        if n == 0:
            return
        last = self._first + (n - 1) * self._stride
        end = max(self._first, last) + self._row_bytes
        if size < end:
            raise ValueError(f"{self.name}: {path} holds {size} bytes, but its rows end at "
                             f"byte {end} (was the file truncated after it was opened?)")

    @property
    def streams(self):
        """True if rows are read from the file, False if through the mapping."""
        return self._fd is not None

    def close(self):
        """Close the file (the reader then reads through the mapping)."""
        if self._fd is not None:
            self._closer()
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def read(self, index, dtype=None):
        """Rows ``index`` as a new C-contiguous array of ``dtype``.

        Parameters
        ----------
        index : slice or array_like of int
            The rows, in the order wanted; an index array may repeat rows
            and hold negative indices.
        dtype : dtype, optional
            dtype of the result (values cast as ``astype`` does); default:
            the array's, in native byte order.

        Returns
        -------
        ndarray
            Of shape ``(len(rows),) + array.shape[1:]``.
        """
        dtype = self.array.dtype.newbyteorder("=") if dtype is None else np.dtype(dtype)
        rows, order = self._rows(index)
        if self._fd is None:
            return self._read_mapped(rows, order, dtype)
        found = self._read_file(rows)
        if order is not None:
            found = np.take(found, order, axis=0)
        return np.require(found.astype(dtype, copy=False), requirements="CAW")

    def _rows(self, index):
        """``(rows, order)``: the sorted distinct rows to read, and the
        positions in ``rows`` of the rows asked for (None if ``rows`` is it)."""
        n = self.array.shape[0]
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            rows = np.arange(start, stop, step, dtype=np.int64)
            if step > 0:
                return rows, None
        else:
            rows = np.asarray(index)
            if rows.ndim != 1 or (rows.dtype.kind not in "iu" and rows.size):
                raise IndexError(f"{self.name}: rows must be a slice or a 1-D array of "
                                 f"integers, got {rows.dtype} of shape {rows.shape}")
            if rows.size and (rows.min() < -n or rows.max() >= n):
                bad = rows[(rows < -n) | (rows >= n)][0]
                raise IndexError(f"{self.name}: row {bad} is out of bounds for {n} rows")
            rows = rows.astype(np.int64)
            rows = np.where(rows < 0, rows + n, rows)
        if rows.size < 2 or (np.diff(rows) > 0).all():
            return rows, None
        return np.unique(rows, return_inverse=True)

    def _read_file(self, rows):
        """The sorted distinct ``rows``, read from the file (a new array)."""
        size = self._row_bytes
        starts = self._first + rows * self._stride
        if self._stride == size and len(rows):
            # Consecutive rows are consecutive bytes: one read per run.
            firsts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)
            lengths = np.diff(firsts, append=len(rows)) * size
            runs = list(zip(starts[firsts].tolist(), lengths.tolist()))
        else:
            runs = [(start, size) for start in starts.tolist()]
        out = np.empty((len(rows),) + self.array.shape[1:], dtype=self.array.dtype)
        if not out.size:
            return out
        # Read straight into the result: no intermediate bytes to copy.
        target = memoryview(out.reshape(-1).view(np.uint8))
        fd, done = self._fd, 0
        if hasattr(os, "preadv"):
            preadv = os.preadv
            for start, length in runs:
                part = target[done:done + length]
                got = preadv(fd, [part], start)
                if got != length:
                    part[got:] = self._read_fully(start + got, length - got)
                done += length
        else:
            for start, length in runs:
                target[done:done + length] = self._read_fully(start, length)
                done += length
        return out

    def _read_fully(self, offset, length):
        """``length`` bytes of the file from ``offset`` on, over as many reads
        as it takes; a clear error if the file ends first."""
        parts, done = [], 0
        while done < length:
            part = os.pread(self._fd, length - done, offset + done)
            if not part:
                raise ValueError(f"{self.name}: {self.path} ends at byte {offset + done}, "
                                 f"before the rows asked for (bytes up to {offset + length}): "
                                 "was the file truncated after it was opened?")
            parts.append(part)
            done += len(part)
        return b"".join(parts)

    def _read_mapped(self, rows, order, dtype):
        """The rows, read through the mapping, whose pages are then released
        where that keeps their contents (shared maps)."""
        taken = self.array[rows] if order is None else self.array[rows][order]
        out = np.array(taken, dtype=dtype, order="C")
        if self._advise is not None and len(rows) and not self._advise[0].closed:
            self._release(rows)
        return out

    def _release(self, rows):
        """Drop the map's pages around ``rows`` from the process."""
        mapping, address, start = self._advise
        # Rows spread over the file (a column of a C-ordered array, Fortran
        # order) release the whole map; others, their span widened to whole
        # fault-around windows.
        low, high = 0, len(mapping)
        if self._layout is not None:
            offsets = (self._first - start + rows[[0, -1]] * self._stride).tolist()
            first, last = min(offsets), max(offsets) + self._row_bytes
            low = max(low, (address + first) // _FAULT_WINDOW * _FAULT_WINDOW - address)
            high = min(high, -(-(address + last) // _FAULT_WINDOW) * _FAULT_WINDOW - address)
        page = mmap.PAGESIZE
        low = low // page * page  # madvise takes page-aligned starts
        if high > low:
            mapping.madvise(mmap.MADV_DONTNEED, int(low), int(high - low))


def reader_for(owner, array, name):
    """The :class:`MemmapRows` of ``array`` kept as ``owner._reader``.

    Made on the first call and anew when ``owner`` holds another array than
    last time (``fit`` slices its inputs for ``validation_split``), closing
    the previous reader.

    Parameters
    ----------
    owner : object
        Whatever reads ``array`` batch by batch; the reader is kept as its
        ``_reader`` attribute.
    array : numpy.memmap
        The rows to read.
    name : str
        The array's name in error messages.

    Returns
    -------
    MemmapRows

    Examples
    --------
    >>> class Owner:
    ...     pass
    >>> owner, rows = Owner(), np.arange(6.0).reshape(3, 2)
    >>> reader = reader_for(owner, rows, "x")
    >>> reader_for(owner, rows, "x") is reader, reader.read([2, 0]).tolist()
    (True, [[4.0, 5.0], [0.0, 1.0]])
    """
    reader = getattr(owner, "_reader", None)
    if reader is None or reader.array is not array:
        if reader is not None:
            reader.close()
        reader = owner._reader = MemmapRows(array, name)
    return reader


# --- the batches of an epoch ---------------------------------------------------

def epoch_batches(n_samples, batch_size, order=None, drop_last=False, start=0):
    """Yield the batches of one epoch: the rows each batch reads.

    The one way ``fit`` and :class:`BatchLoader` cut an epoch into batches,
    so that the same order gives the same batches.

    Parameters
    ----------
    n_samples : int
        Number of samples.
    batch_size : int
        Samples per batch; the last batch is smaller when ``batch_size``
        does not divide ``n_samples`` (unless ``drop_last``).
    order : ndarray of int, shape (n_samples,), optional
        The epoch's shuffle order (a permutation of ``range(n_samples)``):
        batch ``b`` is ``order[b * batch_size:(b + 1) * batch_size]``.
        Without it the batches are slices, in order.
    drop_last : bool, default False
        Skip the last batch if it is smaller than ``batch_size``.
    start : int, default 0
        The first batch to yield (an epoch resumed part way).

    Yields
    ------
    slice or ndarray of int
        ``slice(first, stop)`` without ``order``, else a view of ``order``.

    Examples
    --------
    >>> list(epoch_batches(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    >>> [b.tolist() for b in epoch_batches(5, 2, order=np.array([3, 0, 4, 1, 2]), start=1)]
    [[4, 1], [2]]
    """
    stop_at = n_samples - n_samples % batch_size if drop_last else n_samples
    for first in range(start * batch_size, stop_at, batch_size):
        stop = min(first + batch_size, n_samples)
        yield slice(first, stop) if order is None else order[first:stop]


def iterate_batches(n_samples, batch_size, shuffle=True, seed=None, drop_last=False):
    """Yield the sample indices of each mini-batch of an epoch.

    Parameters
    ----------
    n_samples : int
        Number of samples (>= 0).
    batch_size : int
        Samples per batch (>= 1). The last batch is smaller when
        ``batch_size`` does not divide ``n_samples`` (unless ``drop_last``).
    shuffle : bool, default True
        Visit the samples in a random order: ``permutation(n_samples)`` of
        the generator, as ``fit`` draws it. When False the batches are
        ``slice`` objects in order, so ``x[batch]`` is a view, not a copy.
    seed : None, int or numpy.random.Generator, optional
        Source of the permutation when shuffling. A Generator is advanced, so
        passing the same one every epoch gives a new order each epoch.
    drop_last : bool, default False
        Skip the last batch if it is smaller than ``batch_size``.

    Yields
    ------
    slice or ndarray of int64
        ``slice(start, stop)`` when not shuffling, else an index array.

    Examples
    --------
    >>> list(iterate_batches(5, 2, shuffle=False))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    n_samples = check_number(n_samples, "n_samples", low=0, integer=True)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    shuffle = check_bool(shuffle, "shuffle")
    drop_last = check_bool(drop_last, "drop_last")
    rng = as_generator(seed) if shuffle else None
    return _shuffled_batches(n_samples, batch_size, rng, drop_last)


def _shuffled_batches(n_samples, batch_size, rng, drop_last):
    """The batches of an epoch whose order ``rng`` draws when the epoch
    starts (in order without ``rng``)."""
    order = rng.permutation(n_samples) if rng is not None else None
    yield from epoch_batches(n_samples, batch_size, order, drop_last)


def _num_batches(n_samples, batch_size, drop_last):
    return n_samples // batch_size if drop_last else -(-n_samples // batch_size)


# --- the rows of a batch -----------------------------------------------------------

class RowGatherer:
    """Gathers the rows of one array, batch by batch, as C-contiguous arrays.

    The one way cdl reads a batch's rows out of an array, for ``fit``,
    ``evaluate``, ``predict`` and :class:`BatchLoader` alike:

    * an ``np.memmap`` (or a view of one) is read through
      :class:`MemmapRows`: from the file with ``os.pread``, in increasing
      file order and then put in the order asked for, never touching the
      map's pages when it is read-only. Each batch is a new array.
    * an array in memory already of ``dtype``, C-contiguous and aligned,
      gives a view for a slice (nothing is copied);
    * anything else (a shuffled batch, a dtype to convert to, a strided
      view) is gathered into a buffer allocated on the first batch, grown
      for a larger batch and reused by the next batches: a returned array
      is overwritten by the next call.

    Values are converted as ``astype`` converts them (``casting="unsafe"``);
    nothing is checked for NaN here.

    Parameters
    ----------
    array : ndarray or numpy.memmap
        The rows to read: axis 0 indexes them.
    dtype : dtype, optional
        dtype of the rows returned; default: the array's, in native byte
        order.
    name : str, default "x"
        The array's name in error messages.

    Attributes
    ----------
    array : ndarray
        The array read.
    dtype : numpy.dtype
        The dtype of the rows returned.

    Examples
    --------
    >>> gather = RowGatherer(np.arange(12).reshape(6, 2), dtype="float32")
    >>> gather.read(np.array([4, 1])).tolist()
    [[8.0, 9.0], [2.0, 3.0]]
    >>> gather.read(slice(0, 1)).dtype
    dtype('float32')
    """

    def __init__(self, array, dtype=None, name="x"):
        count_samples(array, name)
        self.array, self.name = array, name
        native = array.dtype.newbyteorder("=")
        self.dtype = native if dtype is None else np.dtype(dtype)
        self._memmap = isinstance(array, np.memmap)
        self._reader = MemmapRows(array, name) if self._memmap else None
        self._same_dtype = array.dtype == self.dtype
        self._viewable = self._same_dtype and _rows_contiguous(array)
        self._buffer = self._stage = None

    @property
    def streams(self):
        """True if rows are read from a file, False if from memory or the map."""
        return self._reader is not None and self._reader.streams

    def __len__(self):
        """Number of rows."""
        return self.array.shape[0]

    def close(self):
        """Close the file of a memory-mapped array (rows are then read
        through the mapping)."""
        if self._reader is not None:
            self._reader.close()

    def read(self, index):
        """Rows ``index`` as a C-contiguous array of ``dtype``.

        Parameters
        ----------
        index : slice or ndarray of int
            The rows, in the order wanted (a step-1 slice or an index array
            for arrays in memory; any slice for memory maps).

        Returns
        -------
        ndarray
            Of shape ``(len(rows),) + array.shape[1:]``: a view, the reused
            buffer, or (memory maps) a new array.
        """
        if self._reader is not None:
            return self._reader.read(index, self.dtype)
        if isinstance(index, slice):
            rows = self.array[index]
            if self._viewable and index.step in (None, 1):
                return rows  # a contiguous view: no copy
            out = self._out(len(rows))
            np.copyto(out, rows, casting="unsafe")
            return out
        index = np.asarray(index)
        out = self._out(len(index))
        if self._same_dtype:
            np.take(self.array, index, axis=0, out=out)
            return out
        self._stage = _grown(self._stage, len(index), self.array)
        stage = self._stage[:len(index)]
        np.take(self.array, index, axis=0, out=stage)
        np.copyto(out, stage, casting="unsafe")
        return out

    def _out(self, n):
        """The first ``n`` rows of the reused buffer."""
        self._buffer = _grown(self._buffer, n, self.array, self.dtype)
        return self._buffer[:n]

    def __repr__(self):
        kind = "memmap" if self._memmap else "array"
        return (f"RowGatherer({kind} of shape {self.array.shape}, dtype='{self.dtype}', "
                f"name={self.name!r})")


def _rows_contiguous(array):
    """True if a slice of ``array``'s rows is C-contiguous and aligned."""
    return array.flags.c_contiguous and array.flags.aligned


def _grown(buffer, n, array, dtype=None):
    """``buffer``, or a new one of at least ``n`` rows of ``array``'s shape."""
    if buffer is None or buffer.shape[0] < n:
        return np.empty((n,) + array.shape[1:], dtype=array.dtype if dtype is None else dtype)
    return buffer


# --- BatchLoader -----------------------------------------------------------------

class BatchLoader:
    """Iterate over ``(x_batch, y_batch)`` (or ``(x_batch, y_batch, w_batch)``).

    Each epoch (each ``for`` loop over the loader) visits every sample once,
    in a new random order when ``shuffle`` is set. The rows are read as
    ``fit`` reads them, through :class:`RowGatherer`: the order of an epoch
    is the generator's ``permutation(n_samples)``, cut into batches by
    :func:`epoch_batches`, so a loader whose generator is in the state of a
    model's ``rng`` yields exactly the batches ``fit(x, y, shuffle=True)``
    trains that model on.

    Batches of arrays in memory are gathered into buffers allocated on the
    first batch and **reused by every batch**: a yielded array is
    overwritten when the next batch is produced, so copy it
    (``x_batch.copy()``) if you keep it. When not shuffling and no dtype
    conversion is needed, in-memory inputs are yielded as views of ``x`` and
    ``y`` (no copy at all). Treat yielded arrays as read-only either way.

    ``np.memmap`` inputs (``x``, ``y`` or both) are read one batch at a time
    and never loaded whole: a read-only map (``mmap_mode="r"``) is read from
    its file with ``os.pread``, without faulting the map's pages into the
    process (see :class:`MemmapRows`), each batch's rows in increasing file
    order and then placed in the shuffled order; a memmap and the same data
    in memory give identical batches for the same seed. Each memmap batch
    is a new array.

    Parameters
    ----------
    x : array_like, shape (n_samples, ...)
        Inputs. Any real dtype; read-only arrays and memmaps are fine.
    y : array_like, shape (n_samples, ...), optional
        Targets, yielded with their own dtype (encode string labels with
        :class:`LabelEncoder` first). ``None`` yields ``y_batch=None``.
    batch_size : int, default 32
    shuffle : bool, default True
    seed : None, int or numpy.random.Generator, optional
        Seeds the loader's generator once, at construction: two loaders made
        with the same int seed yield the same sequence of epochs. A
        Generator is used as is (its state advances each shuffled epoch).
    dtype : {'float32', 'float64'}, optional
        dtype of the yielded ``x_batch`` (and ``w_batch``), converted batch by
        batch. Default: float32 if ``x`` is float32, else float64.
    sample_weight : array_like, shape (n_samples,), optional
        Non-negative finite per-sample weights, converted to ``dtype`` once
        (in memory, even if given as a memmap); when given, each item is
        ``(x_batch, y_batch, w_batch)``.
    drop_last : bool, default False
        Skip the last, smaller batch.

    Examples
    --------
    >>> x = np.arange(10.0).reshape(5, 2)
    >>> loader = BatchLoader(x, np.arange(5), batch_size=2, shuffle=False)
    >>> len(loader)
    3
    >>> [yb.tolist() for _, yb in loader]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(self, x, y=None, batch_size=32, shuffle=True, seed=None, dtype=None,
                 sample_weight=None, drop_last=False):
        x = as_array(x, "x")
        n = count_samples(x, "x")
        check_real(x, "x")
        self.batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
        self.shuffle = check_bool(shuffle, "shuffle")
        self.drop_last = check_bool(drop_last, "drop_last")
        self.dtype = default_float(x) if dtype is None else as_float_dtype(dtype)
        self.seed = seed
        self._rng = as_generator(seed)
        if y is not None:
            y = as_array(y, "y")
            check_real(y, "y", " (encode labels with cdl.data.LabelEncoder)")
            if count_samples(y, "y") != n:
                raise ValueError(f"x and y have different numbers of samples: {n} and {len(y)}")
        if sample_weight is not None:
            sample_weight = as_float_array(sample_weight, self.dtype, "sample_weight")
            if sample_weight.shape != (n,):
                raise ValueError(f"sample_weight has shape {sample_weight.shape}, "
                                 f"expected ({n},) (one weight per sample)")
            check_finite(sample_weight, "sample_weight")
            if (sample_weight < 0).any():
                raise ValueError("sample_weight must be non-negative")
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.n_samples = n
        self._columns = [RowGatherer(x, self.dtype, "x")]
        if y is not None:
            self._columns.append(RowGatherer(y, y.dtype, "y"))
        if sample_weight is not None:
            self._columns.append(RowGatherer(sample_weight, self.dtype, "sample_weight"))

    def __len__(self):
        """Number of batches in one epoch."""
        return _num_batches(self.n_samples, self.batch_size, self.drop_last)

    def __iter__(self):
        rng = self._rng if self.shuffle else None
        for batch in _shuffled_batches(self.n_samples, self.batch_size, rng, self.drop_last):
            items = [gather.read(batch) for gather in self._columns]
            if self.y is None:
                items.insert(1, None)
            yield tuple(items)

    def __repr__(self):
        return (f"BatchLoader(n_samples={self.n_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, dtype='{self.dtype.name}')")
