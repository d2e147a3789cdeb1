"""Reading a model file with bounded work, verified before anything is used.

``read`` reads a file in order of cost: the path's kind (a regular file)
and its size; the prefix, recognising other formats from the first bytes
(``cdl.saving.sniff``); a header of bounded size whose JSON is counted
before it is parsed (``scan_json``, ``parse_header``), checked whole
(``cdl.saving.header``) against the size of the data section; only then
the data section, streamed into the arrays it declares while hashed. It
returns a ``SavedFile`` once the digest of the whole file matches. The
limits are those of the format's specification, ``cdl.saving.format``.
"""
import contextlib
import errno
import hashlib
import json
import math
import os
import re
import stat

import numpy as np

from cdl.saving import format as spec
from cdl.saving import sniff
from cdl.saving.format import ModelFileError
from cdl.saving.header import Checker, check_header, short, size_text
from cdl.saving.jsonscan import SCAN_CHUNK, scan_json

__all__ = ["read", "SavedFile", "scan_json", "parse_header", "CHUNK", "SCAN_CHUNK",
           "HASH_ON_ERROR"]

#: Bytes of the data section read and hashed at a time.
CHUNK = 2 ** 20
#: Data sections of at most this many bytes are hashed when their header
#: fails its checks, to tell corruption from a bad header.
HASH_ON_ERROR = 64 * 2 ** 20


class SavedFile:
    """A parsed, checksum-verified file: its header and its arrays (as copies)."""

    def __init__(self, header, arrays, path):
        self.header = header
        self.arrays = arrays
        self.path = path


_KINDS = ((stat.S_ISSOCK, "a unix socket"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
# What opening a path can fail with because of what the path is, rather than
# because it is missing or not permitted (those stay OSErrors).
_NOT_A_FILE_ERRNOS = {getattr(errno, name) for name in ("ELOOP", "EISDIR", "ENXIO", "ENODEV",
                                                        "EOPNOTSUPP", "ENOTSUP")
                      if hasattr(errno, name)}


def _refuse_kind(path, mode):
    """Refuse a directory, socket, FIFO or device, from its ``st_mode``."""
    if stat.S_ISDIR(mode):
        raise ModelFileError(f"{path}: is a directory, not a cdl model file (a cdl model is "
                             "one file, not a directory such as a TensorFlow SavedModel)")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "a special file")
        raise ModelFileError(f"{path}: is not a regular file but {kind}; cdl reads model "
                             "files only")


def _refuse_os_error(path, err):
    """Raise ``err`` as a ModelFileError (chained) if it says what the path is."""
    if err.errno == getattr(errno, "ELOOP", None):
        raise ModelFileError(f"{path}: is a symbolic link loop (too many levels of "
                             "symbolic links), not a cdl model file") from err
    if err.errno in _NOT_A_FILE_ERRNOS:
        raise ModelFileError(f"{path}: cannot be read as a regular file "
                             f"({os.strerror(err.errno)}); cdl reads model files only") from err
    raise err


@contextlib.contextmanager
def _open_regular_file(path):
    """Open ``path`` for reading, refusing anything but a regular file.

    The path is looked at first (``os.stat``), so that a socket, FIFO or
    device is refused without being opened; the open is non-blocking and
    its result checked again, in case the path changed in between. A
    symbolic link loop is a ModelFileError with the OSError as its cause; a
    missing or unreadable file raises the OSError itself.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        _refuse_os_error(path, err)
    _refuse_kind(path, mode)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        _refuse_os_error(path, err)
    try:
        _refuse_kind(path, os.fstat(fd).st_mode)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def _check_start(path, head, size, last_byte):
    """Refuse, from the first bytes alone, what is not a readable cdl file;
    return (version, header length)."""
    if size == 0:
        raise ModelFileError(f"{path}: the file is empty")
    minimum = spec.PREFIX.size + spec.DIGEST_SIZE
    if head[:len(spec.MAGIC)] != spec.MAGIC[:len(head)]:
        what = sniff.foreign_format(head, last_byte)
        if what is not None:
            raise ModelFileError(f"{path}: {what}")
        raise ModelFileError(f"{path}: not a cdl model file (wrong magic bytes; a cdl file "
                             f"starts with {spec.MAGIC!r})")
    if size < minimum:
        raise ModelFileError(f"{path}: the file is truncated ({size} bytes; the "
                             f"smallest valid file has {minimum})")
    if len(head) < min(size, sniff.SNIFF):
        raise ModelFileError(f"{path}: the file changed while it was read")
    _, version, header_len = spec.PREFIX.unpack(head[:spec.PREFIX.size])
    if version != spec.FORMAT_VERSION:
        raise ModelFileError(f"{path}: unsupported format version {version} (this "
                             f"version of cdl reads version {spec.FORMAT_VERSION})")
    if header_len > size - minimum:  # checked before anything is allocated
        raise ModelFileError(f"{path}: the file is truncated or corrupted (its header "
                             f"claims {header_len} bytes, the file has {size})")
    if header_len > spec.MAX_HEADER:
        raise ModelFileError(f"{path}: the header has {header_len} bytes; cdl reads headers "
                             f"of at most {spec.MAX_HEADER} bytes")
    return version, header_len


def _read_into(path, f, view, hasher):
    """Fill the writable memoryview ``view`` from ``f`` in chunks, hashing each."""
    for start in range(0, len(view), CHUNK):
        part = view[start:start + CHUNK]
        while len(part):
            count = f.readinto(part)
            if not count:
                raise ModelFileError(f"{path}: the file changed while it was read")
            hasher.update(part[:count])
            part = part[count:]


def _digest_matches(f, hasher, data_len):
    """Whether the data section (``f`` at its start, at most HASH_ON_ERROR
    bytes) and the digest after it agree with what ``hasher`` has seen: a
    header that fails its checks in a file that does not match its digest
    is reported as corruption. Reads in chunks and keeps nothing."""
    buffer = bytearray(min(CHUNK, data_len + spec.DIGEST_SIZE))
    left = data_len
    while left:
        count = f.readinto(memoryview(buffer)[:min(left, len(buffer))])
        if not count:
            return False
        hasher.update(memoryview(buffer)[:count])
        left -= count
    return f.read(spec.DIGEST_SIZE) == hasher.digest()


def read(path):
    """Read, verify and parse a file; raise ModelFileError for anything wrong.

    What loading costs is bounded by what the file holds, checked in this
    order: the path's kind (a regular file) and the file's size; its first
    bytes; the header (at most ``MAX_HEADER`` bytes, parsed with bounded
    work), checked in full against the size of the data section that the
    file's size leaves; only then the data section, read in chunks straight
    into the arrays the header declares (which must fill it, up to
    alignment padding) while the digest is computed. Nothing read is
    returned before the digest of the whole file is verified.
    """
    path = os.fspath(path)
    with _open_regular_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(min(size, sniff.SNIFF))
        last_byte = b""
        if size > len(head):
            f.seek(size - 1)
            last_byte = f.read(1)
        elif head:
            last_byte = head[-1:]
        version, header_len = _check_start(path, head, size, last_byte)
        hasher = hashlib.sha256(head[:spec.PREFIX.size])
        raw = bytearray(header_len)
        known = head[spec.PREFIX.size:spec.PREFIX.size + header_len]
        raw[:len(known)] = known
        hasher.update(known)
        f.seek(spec.PREFIX.size + len(known))
        _read_into(path, f, memoryview(raw)[len(known):], hasher)
        data_len = size - spec.PREFIX.size - header_len - spec.DIGEST_SIZE
        check = Checker(path)
        try:
            header = parse_header(path, raw)
            check.expect(header, dict, "the header")
            if header.get("format") != spec.FORMAT_NAME:
                check.fail(f"header field 'format' is {short(repr(header.get('format')))}, "
                           f"expected {spec.FORMAT_NAME!r}")
            declared = header.get("format_version")
            if type(declared) is not int or declared != version:
                check.fail(f"header format_version {short(repr(declared))} disagrees with "
                           f"the binary version {version}")
            table = _array_table(check, header, data_len)
            # The whole header, checked against the arrays' declared shapes
            # (stand-ins that hold no memory) before the data section is read.
            check_header(Checker(path, values=False),
                          SavedFile(header, {name: np.broadcast_to(np.zeros((), dtype), shape)
                                         for name, dtype, shape, _, _ in table}, path))
        except ModelFileError as err:
            if data_len <= HASH_ON_ERROR and not _digest_matches(f, hasher, data_len):
                raise ModelFileError(f"{path}: checksum mismatch: the file is corrupted "
                                     f"(its header is invalid: {err})") from err
            raise
        arrays = _read_arrays(check, f, hasher, table, data_len)
        digest = f.read(spec.DIGEST_SIZE + 1)
    if len(digest) != spec.DIGEST_SIZE:
        raise ModelFileError(f"{path}: the file changed while it was read")
    if hasher.digest() != digest:
        raise ModelFileError(f"{path}: checksum mismatch: the file is corrupted or truncated")
    return SavedFile(header, arrays, path)


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicate_keys(pairs):
    """json's object_pairs_hook when looking for a repeated key: refuses it,
    and builds nothing (the header is parsed again only to name the key)."""
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        seen = set()
        for key in keys:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)


def parse_header(path, raw):
    """The header's JSON object: ASCII, no repeated keys, at most MAX_DEPTH
    levels, MAX_JSON_ITEMS values and keys and MAX_DIGITS digits per number (of
    ``cdl.saving.format``).

    These are checked on the raw bytes first (``scan_json``: NumPy, no
    Python work per value), so that what ``json.loads`` builds and the time
    it takes are bounded before it runs. ``raw`` (a bytearray) is cleared once decoded, so that the
    header's bytes are not held twice.
    """
    def fail(message):
        raise ModelFileError(f"{path}: {message}")

    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            fail(f"the header is not valid UTF-8 ({err.reason} at byte "
                 f"{spec.PREFIX.size + err.start} of the file)")
        first = re.search(rb"[\x80-\xff]", raw).start()
        fail(f"the header holds a non-ASCII character (at byte {spec.PREFIX.size + first} of the "
             "file); cdl writes headers as ASCII JSON, other characters as \\u escapes")
    items, members, depth, digits, paired = scan_json(raw)
    if items > spec.MAX_JSON_ITEMS:
        fail(f"the header holds more than {spec.MAX_JSON_ITEMS} JSON values and keys (cdl reads "
             "headers of at most that many)")
    if depth > spec.MAX_DEPTH:
        fail(f"the header nests JSON more than {spec.MAX_DEPTH} levels deep")
    if digits > spec.MAX_DIGITS:
        fail(f"the header holds a number of more than {spec.MAX_DIGITS} digits")
    if not paired:
        fail("the header is not valid JSON (its brackets do not pair up)")
    text = raw.decode("ascii")
    raw.clear()
    kept = [0]   # members the objects kept: fewer than the colons if a key repeats

    def count_members(obj):
        kept[0] += len(obj)
        return obj

    try:
        header = json.loads(text, object_hook=count_members)
    except RecursionError:
        fail(f"the header nests JSON more than {spec.MAX_DEPTH} levels deep")
    except ValueError as err:
        fail(f"the header is not valid JSON ({err})")
    if kept[0] != members:
        try:
            json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
        except _DuplicateKey as err:
            fail(f"the header repeats the key {short(repr(err.args[0]))} in one JSON object "
                 "(readers could disagree on its value)")
        fail("the header repeats a key in one JSON object")
    return header


def _array_table(check, header, data_len):
    """Validate the array table against the size of the data section, with
    exact integer arithmetic and before any array exists; return a list of
    (name, dtype, shape, offset, nbytes) in table order."""
    table = check.key(header, "arrays", list, "the header")
    spans = []
    entries = {}
    for i, entry in enumerate(table):
        where = f"array table entry {i}"
        check.expect(entry, dict, where)
        name = check.key(entry, "name", str, where)
        where = f"array {short(repr(name))}"
        if name in entries:
            check.fail(f"the array table lists {short(repr(name))} twice")
        dtype_name = check.key(entry, "dtype", str, where)
        if dtype_name not in spec.DTYPES:
            check.fail(f"{where} has dtype {short(repr(dtype_name))}; allowed are "
                       f"{', '.join(spec.DTYPES)}")
        dtype = spec.DTYPES[dtype_name]
        shape = check.shape(check.key(entry, "shape", list, where), f"{where}.shape")
        offset = check.int(check.key(entry, "offset", int, where), f"{where}.offset")
        nbytes = check.int(check.key(entry, "nbytes", int, where), f"{where}.nbytes")
        expected = math.prod(shape) * dtype.itemsize
        if nbytes != expected:
            check.fail(f"{where} has nbytes {size_text(nbytes)}, but its shape of {dtype_name} "
                       f"needs {size_text(expected)}")
        if offset + nbytes > data_len:
            check.fail(f"{where} (bytes {size_text(offset)} to {size_text(offset + nbytes)}) lies "
                       f"outside the data section ({data_len} bytes): the file is truncated "
                       "or its header is wrong")
        # NumPy's limit, which matters for an array without elements (the
        # others lie in the data section): the product of the non-zero axes
        # must fit in a byte count.
        if math.prod(d for d in shape if d) * dtype.itemsize > spec.MAX_INT:
            check.fail(f"{where} has shape {short([size_text(d) for d in shape])}, more "
                       "elements than any array can hold")
        if nbytes:
            spans.append((offset, offset + nbytes, name))
        entries[name] = (name, dtype, shape, offset, nbytes)
    spans.sort()
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:
            check.fail(f"arrays {first!r} and {second!r} overlap")
    # Every byte of the data section is read and hashed: bytes no array
    # explains (a file grown or padded with a hole) are refused unread.
    unused = data_len - sum(end - start for start, end, _ in spans)
    slack = spec.ALIGN * (len(entries) + 1)
    if unused > slack:
        check.fail(f"the data section has {size_text(unused)} bytes outside its arrays (at most "
                   f"{slack} for {len(entries)} arrays): the file is larger than its header "
                   "says")
    return list(entries.values())


def _read_arrays(check, f, hasher, table, data_len):
    """Read the data section (``f`` is at its start) in offset order, each
    array straight into a new array of its own and every byte hashed; return
    {name: array in native byte order}, in table order."""
    arrays = {}
    position = 0
    for name, dtype, shape, offset, nbytes in sorted(table, key=lambda entry: entry[3]):
        if not nbytes:
            continue
        if offset > position:   # padding: at most the slack array_table allows
            _read_into(check.path, f, memoryview(bytearray(offset - position)), hasher)
        try:
            array = np.empty(shape, dtype=dtype)
        except (MemoryError, ValueError, OverflowError) as err:
            raise ModelFileError(f"{check.path}: array {name!r} ({size_text(nbytes)} bytes) "
                                 f"cannot be allocated: {type(err).__name__}") from err
        _read_into(check.path, f, memoryview(array.reshape(-1)).cast("B"), hasher)
        arrays[name] = array.astype(dtype.newbyteorder("="), copy=False)
        position = offset + nbytes
    if data_len > position:
        _read_into(check.path, f, memoryview(bytearray(data_len - position)), hasher)
    return {name: arrays[name] if name in arrays else np.zeros(shape, dtype.newbyteorder("="))
            for name, dtype, shape, _, _ in table}
