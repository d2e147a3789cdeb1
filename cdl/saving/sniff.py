"""Recognising other formats from a file's first bytes.

A file that is not a cdl model file is named for what it is (a pickle, a
ZIP, tar or HDF5 file, compressed data, NumPy, safetensors or JSON), so
that the error says what was handed to cdl; nothing is ever unpickled,
extracted or decompressed to find out.
"""
import re
import struct

from cdl.saving import format as spec

__all__ = ["foreign_format", "SNIFF"]

#: Bytes at the start of a file that ``foreign_format`` looks at.
SNIFF = 512

_NEVER = "; cdl reads only files written by cdl's save_model/save_weights"
_ARCHIVE = "cdl never extracts archives" + _NEVER
_COMPRESSED = "cdl never decompresses files" + _NEVER
_FOREIGN_MAGICS = (
    (b"PK\x03\x04", "is a ZIP archive, not a cdl model file (PyTorch .pt, Keras .keras and "
                    "NumPy .npz files are ZIP archives; " + _ARCHIVE + ")"),
    (b"PK\x05\x06", "is a ZIP archive (an empty one), not a cdl model file (" + _ARCHIVE + ")"),
    (b"PK\x07\x08", "is a ZIP archive, not a cdl model file (" + _ARCHIVE + ")"),
    (b"\x1f\x8b", "is gzip-compressed data, not a cdl model file (" + _COMPRESSED + ")"),
    (b"BZh", "is bzip2-compressed data, not a cdl model file (" + _COMPRESSED + ")"),
    (b"\xfd7zXZ\x00", "is xz-compressed data, not a cdl model file (" + _COMPRESSED + ")"),
    (b"\x28\xb5\x2f\xfd", "is zstd-compressed data, not a cdl model file (" + _COMPRESSED + ")"),
    (b"7z\xbc\xaf\x27\x1c", "is a 7-Zip archive, not a cdl model file (" + _ARCHIVE + ")"),
    (b"\x89HDF\r\n\x1a\n", "is an HDF5 file (such as a Keras .h5 model), not a cdl model "
                           "file" + _NEVER),
    (b"\x93NUMPY", "is a NumPy .npy file, not a cdl model file" + _NEVER),
)
_PICKLE = ("is a Python pickle; cdl never unpickles (unpickling can run any code the file "
           "names). Open it only if you trust it, with the library that wrote it")
_OLD_PICKLE_START = re.compile(rb"[(\]}]|c[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n")


def foreign_format(head, last_byte):
    """What a file is if it is a known non-cdl format, or None.

    Parameters
    ----------
    head : bytes
        The file's first bytes (up to ``SNIFF`` of them).
    last_byte : bytes
        The file's last byte (empty for an empty file): a pickle of
        protocol 0 or 1 ends with ``b"."``.

    Returns
    -------
    str or None
        A message fragment such as ``"is a Python pickle; ..."``.

    Examples
    --------
    >>> import pickle
    >>> data = pickle.dumps([1, 2])
    >>> foreign_format(data[:SNIFF], data[-1:])[:20]
    'is a Python pickle; '
    >>> foreign_format(b"CDLMODEL", b"") is None
    True
    """
    for magic, what in _FOREIGN_MAGICS:
        if head.startswith(magic):
            return what
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return _PICKLE + f" (pickle protocol {head[1]})"
    if last_byte == b"." and _OLD_PICKLE_START.match(head):
        return _PICKLE + " (pickle protocol 0 or 1)"
    if head[257:262] == b"ustar":
        return "is a tar archive, not a cdl model file (" + _ARCHIVE + ")"
    if len(head) > 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 1:
        return "is a safetensors file, not a cdl model file" + _NEVER
    if head.lstrip()[:1] in (b"{", b"["):
        return ("is a JSON text file, not a cdl model file (a cdl file starts with the "
                f"bytes {spec.MAGIC!r})")
    return None
