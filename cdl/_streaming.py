"""Rows of a memory-mapped array, read without keeping its pages mapped.

Indexing an ``np.memmap`` faults the file's pages into the process, and they
stay mapped (and counted in its resident memory) as long as the map lives:
one shuffled epoch over a large file leaves most of it resident.
:class:`MemmapRows` reads each batch's rows from the file with ``os.pread``
instead, so that the process holds a few batches whatever the size of the
file.
"""
import mmap
import os
import weakref

import numpy as np

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
        pread, fd = os.pread, self._fd
        data = bytearray().join([pread(fd, length, start) for start, length in runs])
        if len(data) != len(rows) * size:
            data = bytearray().join([self._read_fully(start, length) for start, length in runs])
        return np.frombuffer(data, dtype=self.array.dtype).reshape(
            (len(rows),) + self.array.shape[1:])

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
    """The :class:`MemmapRows` of ``array`` kept as ``owner._reader``, made
    anew when ``owner`` holds another array than last time (``fit`` slices
    its inputs for ``validation_split``)."""
    reader = getattr(owner, "_reader", None)
    if reader is None or reader.array is not array:
        if reader is not None:
            reader.close()
        reader = owner._reader = MemmapRows(array, name)
    return reader
