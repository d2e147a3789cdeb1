"""Saving and loading models: one self-checking binary file, no pickle.

``save_model`` writes everything needed to continue training exactly where
it stopped (architecture, weights, compile settings, optimizer state and
the model's random generator); ``save_weights`` writes the weights alone.
``load_model`` and ``load_weights`` read them back. Loading never runs code
from the file: layer classes are looked up by name through
``cdl.layers.get`` (built-ins and classes registered with
``cdl.register_layer``), and every field is validated before it is used.

File format, version 1
======================

All integers are little-endian. A file is, in order::

    offset  size  content
    0       8     magic bytes b"CDLMODEL"
    8       4     uint32 format version (1)
    12      8     uint64 header length H
    20      H     header: ASCII JSON object, other characters written as \\u
                  escapes (may end in spaces, which writers use to align
                  the data section to 64 bytes; the tokens NaN, Infinity
                  and -Infinity may appear as values)
    20 + H  D     data section: raw little-endian arrays
    end-32  32    SHA-256 digest of every byte before it

The header object holds:

``format``
    ``"cdl-model"``.
``format_version``
    1, the same as the binary field.
``kind``
    ``"model"`` (from ``save_model``) or ``"weights"`` (from ``save_weights``).
``cdl_version``
    Version of cdl that wrote the file (informational).
``model``
    ``Sequential.get_config()``: ``name``, ``dtype``, ``seed``,
    ``input_shape`` (list or null) and ``layers`` (list of
    ``{"class_name", "config"}``).
``built``
    Whether the model was built (had weights) when saved.
``param_layout``
    One entry per weight, in the order of ``model.params``:
    ``{"layer", "weight", "shape"}``.
``buffers``
    One entry per layer buffer (non-trainable state such as BatchNorm's
    running statistics, see ``Layer.buffers``), in layer order:
    ``{"layer", "buffer", "array"}``, ``array`` naming its entry in the
    array table. Empty for an unbuilt model; files without the field have
    no buffers.
``compile``
    ``model.compile_config()``, or null if the model was not compiled (always
    null in a weights file).
``optimizer``
    Null if there is no optimizer state (not compiled, a weights file, or
    ``include_optimizer=False``); else ``{"class_name", "config",
    "iterations", "scalars", "state", "param_groups"}`` where ``scalars`` maps
    names to numbers, ``state`` maps each state name of the optimizer to the
    name of an array in the table, or null for state the optimizer does not
    keep (e.g. momentum of SGD without momentum), and ``param_groups`` lists
    ``{"params": [indices into model.params], "lr_mult",
    "weight_decay_mult"}``.
``rng``
    ``model.rng.bit_generator.state`` (arrays in it written as lists), or
    null in a weights file.
``training_state`` (optional)
    Where a ``fit`` stood when ``cdl.callbacks.ModelCheckpoint`` or
    ``cdl.callbacks.BackupAndRestore`` saved the model, so that training
    continues exactly (see ``read_training_state``); absent otherwise. An
    object with ``epoch`` (the epoch to continue with, 0-based), ``batch``
    (batches of that epoch already done), ``steps`` (batches per epoch),
    ``batch_size``, ``loss_sum`` (sum of batch loss times batch size over
    the batches done; may be NaN after a diverged batch), ``seen`` (samples
    done), ``shuffle_order`` (null, or the epoch's permutation of the sample
    indices), ``metrics`` (one ``{"name", "class", "state"}`` per compiled
    metric, ``state`` holding its accumulators; empty at an epoch boundary),
    ``history`` (``{"epoch": [...], "logs": {key: [...]}}``, the ``History``
    so far), ``callbacks`` (one ``{"class", "state"}`` per callback with
    a state, such as a ``LearningRateScheduler``'s schedule), ``total_steps``
    (the steps taken in the whole run, which ``fit``'s ``max_steps``
    counts) and ``stop_training`` (whether a callback or ``max_steps`` had
    ended the run); a file without the last two resumes counting
    ``max_steps`` afresh. An array
    anywhere inside it is written as ``{"$array": "training/<path>"}``
    (plus ``"dtype": "bool"`` for a boolean array stored as int64), naming
    an entry of the array table.
``arrays``
    The array table: a list of ``{"name", "dtype", "shape", "offset",
    "nbytes"}``. ``dtype`` is one of ``"float32"``, ``"float64"``,
    ``"int64"``; ``offset`` counts bytes from the start of the data section;
    ``nbytes`` is exactly ``prod(shape) * itemsize``; arrays lie inside the
    data section and do not overlap. Names are ``"params"`` (the flat
    parameter buffer, ``model.param_buffer``), ``"buffers/<layer
    name>/<buffer name>"`` (in the model's dtype), ``"optimizer/<state
    name>"`` and ``"training/<path>"`` (arrays of ``training_state``).
    Writers place arrays in table order, each at a multiple of 64 bytes,
    with zero padding, and end the data section with the last array;
    readers accept any placement, but refuse a data section with more than
    64 bytes per array, plus 64, that no array uses.

Readers reject files whose binary version they do not know, and ignore
header keys they do not know (later minor additions stay readable). Every
array must be referred to by a header field; readers older than
``training_state`` therefore refuse files whose training state holds
arrays (mid-epoch backups, or an ``EarlyStopping`` keeping best weights).

What readers refuse
-------------------
Anything that is not such a file raises ``ModelFileError`` before it is
used, and nothing in a file is ever executed, imported, unpickled,
decompressed or extracted:

* other formats are recognised from their first bytes and named: Python
  pickles (also legacy PyTorch files), ZIP archives (PyTorch ``.pt``,
  Keras ``.keras``, NumPy ``.npz``), tar, gzip, bzip2, xz, zstd and 7-Zip
  data, HDF5 (Keras ``.h5``), NumPy ``.npy``, safetensors and JSON text;
  directories, FIFOs and devices are refused without being read;
* a path that is not a regular file (a directory, FIFO, socket, device or
  a symbolic link loop) is refused before it is opened or read;
* the header may be at most 16 MiB of ASCII, hold at most 524,288 JSON
  values and keys, nest at most 64 levels deep, hold no number of more
  than 100 digits and must not repeat a key within an object (two parsers
  could otherwise read two different headers from one file); these are
  counted on its bytes before it is parsed;
* the whole header is checked before the data section is read: every
  shape, offset and size with exact integer arithmetic (axes and counts
  at most 2**63 - 1) against the size of the data section that the file's
  size leaves, which must hold the arrays and no more than their padding;
  bit generator states hold integers and lists of at most 624 of them;
  optimizer parameter groups may not list a parameter twice;
* the data section is then read in chunks straight into the declared
  arrays while the digest is computed, and nothing is used before the
  digest matches; a header that fails its checks in a file (with a data
  section of at most 64 MiB) whose digest does not match is reported as a
  checksum mismatch;
* a model's architecture may not create more weights or buffers than the
  file holds (checked before each is allocated, with no initialiser run),
  nor describe more than ``MAX_LAYERS`` (50,000) layers, counted in the
  config before any layer is made (``save_model`` refuses such models);
* layer, optimizer, loss and metric classes are looked up by name in
  cdl's registries; a dotted path such as ``"os.system"`` is refused.

Files are written atomically: to a temporary file ``.<name>.<pid>.<random>.tmp``
in the target's directory (``<name>``: the first 64 characters of the
target's file name, ``<random>``: 8 characters), flushed and fsynced, then
renamed over the target with ``os.replace`` (the directory is fsynced too
where the platform allows). A process killed mid-save leaves the target as
it was and its temporary file behind; the next save to the same target
removes such leftovers: regular files in that directory whose name is
exactly this pattern for this target (or ``.<name>.<random>.tmp``, the
pattern before the pid was added) and whose writer is gone, that is, whose
pid is not a running process on this machine (POSIX only), or which have
not been modified for an hour (a reused pid, or a writer on another
machine). A writer that looks gone but is not (one on another machine, or
in another PID namespace, saving to the same directory at the same time)
then fails to rename its file and leaves the target as it was.
"""
import contextlib
import errno
import hashlib
import json
import math
import os
import re
import stat
import struct
import tempfile
import time

import numpy as np

from cdl import _concurrency
from cdl import layers as _layers
from cdl._validation import check_bool
from cdl.layers import register_layer
from cdl.model import Sequential

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "read_training_state",
           "register_layer", "ModelFileError", "MAGIC", "FORMAT_VERSION", "MAX_LAYERS"]

#: The 8 bytes every model and weights file starts with.
MAGIC = b"CDLMODEL"
#: The version of the binary format that ``save_model`` and ``save_weights`` write.
FORMAT_VERSION = 1
FORMAT_NAME = "cdl-model"
_PREFIX = struct.Struct("<8sIQ")   # magic, version, header length
_DIGEST_SIZE = 32
_ALIGN = 64
_DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8"), "int64": np.dtype("<i8")}
_MAX_NDIM = 32
_MAX_HEADER = 16 * 2 ** 20
_MAX_DEPTH = 64
_MAX_JSON_ITEMS = 2 ** 19          # values and keys in a header (bounds what parsing builds)
_MAX_DIGITS = 100                  # digits in a row in one header number
_MAX_INT = 2 ** 63 - 1             # axes, offsets, sizes and counts: what an int64 holds
_MAX_RNG_LIST = 624                # longest list in a NumPy bit generator state (MT19937's key)
_CHUNK = 2 ** 20                   # bytes read and hashed at a time
_HASH_ON_ERROR = 64 * 2 ** 20      # data sections hashed to tell corruption from a bad header
_SCAN_CHUNK = 2 ** 18              # header bytes scanned at a time before parsing
_SNIFF = 512                       # bytes read to recognise other formats
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
_TRAINING_PREFIX = "training/"
_STALE_AFTER = 3600.0              # seconds without a write before any temp file is stale


class ModelFileError(ValueError):
    """A model or weights file is not valid: wrong type, corrupted, truncated
    or inconsistent with itself.

    Examples
    --------
    >>> import cdl
    >>> from cdl import io
    >>> with open("empty.cdl", "wb") as f:
    ...     pass
    >>> try:
    ...     cdl.load_model("empty.cdl")
    ... except io.ModelFileError as error:
    ...     print(type(error).__name__, isinstance(error, ValueError))
    ModelFileError True
    """


# --- writing ---------------------------------------------------------------------


def save_model(model, path, include_optimizer=True):
    """Save a ``Sequential`` model with everything needed to resume training.

    Parameters
    ----------
    model : cdl.Sequential
    path : str or os.PathLike
        Written atomically: a reader never sees a half-written file, and if
        saving fails an existing file at ``path`` is left as it was.
    include_optimizer : bool
        Also save the optimizer's state (moments, step count), so that
        ``fit`` continues exactly as it would have. Without it the loaded
        model is compiled with a fresh optimizer.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import io, layers
    >>> model = cdl.Sequential([layers.Dense(4, activation="relu"), layers.Dense(1)],
    ...                        input_shape=(3,), seed=0)
    >>> model.compile("sgd", "mse")
    >>> io.save_model(model, "net.cdl")               # the same as model.save("net.cdl")
    >>> loaded = io.load_model("net.cdl")
    >>> x = np.ones((2, 3), dtype=np.float32)
    >>> np.array_equal(loaded.predict(x), model.predict(x))
    True
    """
    include_optimizer = check_bool(include_optimizer, "include_optimizer")
    header, arrays = _model_header(model, "model", include_optimizer)
    _atomic_write(path, lambda f: _write_file(f, header, arrays))


def save_weights(model, path):
    """Save only the model's weights (its flat parameter buffer) and the
    layers' buffers (such as BatchNorm's running statistics).

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import io, layers
    >>> def make(seed):
    ...     return cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=seed)
    >>> a, b = make(0), make(1)
    >>> io.save_weights(a, "weights.cdl")             # the same as a.save_weights(...)
    >>> io.load_weights(b, "weights.cdl")
    >>> all(np.array_equal(p, q) for p, q in zip(a.params, b.params))
    True
    """
    header, arrays = _model_header(model, "weights", False)
    _atomic_write(path, lambda f: _write_file(f, header, arrays))


def _save_checkpoint(model, path, training_state):
    """``save_model`` plus the ``training_state`` header section: a dict of
    JSON values in which ndarrays may appear anywhere (written to the array
    table). Used by the callbacks that make training resumable."""
    header, arrays = _model_header(model, "model", True)
    header["training_state"], training_arrays = _encode_training_state(training_state)
    arrays.extend(training_arrays)
    _atomic_write(path, lambda f: _write_file(f, header, arrays))


def _jsonable(value):
    """Numpy arrays and scalars (as in bit generator states) as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _encode_training_state(state):
    """(JSON tree, [(name, array)]): every ndarray of ``state`` moved to the
    array table as ``training/<path>`` and replaced by a reference to it."""
    arrays = []
    names = set()

    def encode(value, path):
        if isinstance(value, dict):
            return {str(k): encode(v, path + (str(k),)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(v, path + (str(i),)) for i, v in enumerate(value)]
        if isinstance(value, np.ndarray):
            name = _TRAINING_PREFIX + "/".join(path)
            while name in names:
                name += "_"
            names.add(name)
            ref = {"$array": name}
            if value.dtype == np.bool_:
                value = value.astype(np.int64)
                ref["dtype"] = "bool"
            arrays.append((name, value))
            return ref
        return _jsonable(value)

    return encode(state, ()), arrays


def _param_layout(model):
    return [{"layer": owner.name, "weight": name, "shape": list(getattr(owner, name).shape)}
            for layer in model.layers for owner, name in layer.weight_owners()]


def _buffer_layout(model):
    """[(layer, buffer name, array)] of every layer buffer, in layer order."""
    entries = []
    for layer in model.layers:
        for name, array in layer.buffers().items():
            if not (isinstance(name, str) and name):
                raise ValueError(f"layer {layer.name!r} has a buffer named {name!r}; buffer "
                                 "names must be non-empty strings")
            if not isinstance(array, np.ndarray):
                raise TypeError(f"buffer {layer.name}.{name} must be an ndarray, got "
                                f"{type(array).__name__}")
            entries.append((layer, name, array))
    return entries


def _model_header(model, kind, include_optimizer):
    """The header dict (without the array table) and the arrays to write."""
    import cdl

    if not isinstance(model, Sequential):
        raise TypeError(f"expected a cdl.Sequential model, got {type(model).__name__}")
    if not model.built and (model.input_shape is not None
                            or any(layer.built for layer in model.layers)):
        raise ValueError("the model is only partly built; call model.build() before saving")
    if kind == "weights" and not model.built:
        raise ValueError("the model has no weights yet: build it (or run it once) first")
    arrays = [("params", model.param_buffer)]
    buffers = []
    for layer, name, array in (_buffer_layout(model) if model.built else []):
        array_name = f"buffers/{layer.name}/{name}"
        if any(entry["array"] == array_name for entry in buffers):
            raise ValueError(f"two buffers would be saved as {array_name!r}; rename a layer")
        buffers.append({"layer": layer.name, "buffer": name, "array": array_name})
        arrays.append((array_name, array))
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "cdl_version": cdl.__version__,
        "model": _model_config_to_save(model),
        "built": bool(model.built),
        "param_layout": _param_layout(model) if model.built else [],
        "buffers": buffers,
        "compile": None,
        "optimizer": None,
        "rng": None,
    }
    if kind == "model":
        header["compile"] = model.compile_config()
        header["rng"] = _jsonable(model.rng.bit_generator.state)
        if include_optimizer and model.optimizer is not None:
            section, opt_arrays = _optimizer_section(model)
            header["optimizer"] = section
            arrays.extend(opt_arrays)
    return _jsonable(header), arrays


def _model_config_to_save(model):
    config = model.get_config()
    if _too_many_layers(config["layers"]):
        raise ValueError(f"the model has more than {MAX_LAYERS:,} layers (counting those "
                         "inside other layers); cdl saves and loads models of at most that many")
    return config


def _optimizer_section(model):
    optimizer = model.optimizer
    state = optimizer.state_dict()
    groups = []
    for g, group in enumerate(optimizer.param_groups):
        indices = []
        for q in group["params"]:
            found = [i for i, p in enumerate(model.params)
                     if p is q or (p.shape == q.shape and p.ctypes.data == q.ctypes.data)]
            if not found:
                raise ValueError(f"parameter group {g} of the optimizer holds an array that "
                                 "is not a parameter of this model; it cannot be saved")
            indices.append(found[0])
        groups.append({"params": indices, "lr_mult": group["lr_mult"],
                       "weight_decay_mult": group["weight_decay_mult"]})
    arrays = []
    names = {}
    for name, array in state["state"].items():
        if array is None:
            names[name] = None
        else:
            names[name] = "optimizer/" + name
            arrays.append((names[name], array))
    section = {
        "class_name": state["class"],
        "config": _jsonable(state["config"]),
        "iterations": int(state["iterations"]),
        "scalars": _jsonable(state["scalars"]),
        "state": names,
        "param_groups": groups,
    }
    return section, arrays


def _pad(n):
    return -n % _ALIGN


def _write_file(f, header, arrays):
    """Write the complete file to the binary file object ``f``."""
    table = []
    prepared = []
    offset = 0
    for name, array in arrays:
        dtype_name = np.dtype(array.dtype).name
        if dtype_name not in _DTYPES:
            raise TypeError(f"array {name!r} has dtype {array.dtype}; only "
                            f"{', '.join(_DTYPES)} can be saved")
        data = np.ascontiguousarray(array, dtype=_DTYPES[dtype_name])
        offset += _pad(offset)
        table.append({"name": name, "dtype": dtype_name, "shape": list(data.shape),
                      "offset": offset, "nbytes": data.nbytes})
        prepared.append((offset, data))
        offset += data.nbytes
    header = dict(header, arrays=table)
    text = json.dumps(header, separators=(",", ":"), allow_nan=True).encode("utf-8")
    text += b" " * _pad(_PREFIX.size + len(text))
    hasher = hashlib.sha256()

    def write(chunk):
        hasher.update(chunk)
        f.write(chunk)

    write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(text)))
    write(text)
    _write_arrays(write, prepared)
    f.write(hasher.digest())


def _write_arrays(write, prepared):
    """Write each (offset, array) of the data section, zero-padding the gaps."""
    position = 0
    for offset, data in prepared:
        if offset > position:
            write(bytes(offset - position))
        write(memoryview(data.reshape(-1)).cast("B"))
        position = offset + data.nbytes


def _umask_mode():
    """Permissions of a newly created file under the current umask (best effort)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def _temp_prefix(path):
    """Start of the names of ``path``'s temporary files: ``.<name>.``."""
    return "." + os.path.basename(path)[:64] + "."


def _atomic_write(path, write_contents):
    """Write a file through a temporary file in the same directory and os.replace,
    then remove temporary files that killed saves to the same path left behind."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = _umask_mode()
    # The pid in the name tells a later save whether the writer is still alive.
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{os.getpid()}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            write_contents(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)
    _remove_stale_temp_files(path)


def _fsync_directory(directory):
    """Make the rename durable where the platform allows it."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stale_temp_pattern(path):
    """Names of ``path``'s temporary files: ``.<name>.<pid>.<random>.tmp``, or
    ``.<name>.<random>.tmp`` as written before the pid was added (group 1 is
    the pid, or None). ``<random>`` is the 8 characters ``tempfile`` draws."""
    return re.compile(re.escape(_temp_prefix(path)) + r"(?:([1-9][0-9]{0,9})\.)?"
                      r"[a-z0-9_]{8}\.tmp")


def _process_alive(pid):
    """Whether ``pid`` is a running process on this machine (POSIX); True when unsure."""
    if os.name != "posix" or pid == os.getpid():
        return True   # os.kill would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True   # e.g. PermissionError: it exists but belongs to another user
    return True


def _remove_stale_temp_files(path, now=None):
    """Remove the temporary files of ``path`` whose writer is gone (see the
    module docstring for the rule). Errors are ignored: this is housekeeping."""
    pattern = _stale_temp_pattern(path)
    directory = os.path.dirname(os.path.abspath(path))
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                continue
            pid = match.group(1)
            idle = now - info.st_mtime
            if idle >= _STALE_AFTER or (pid is not None and not _process_alive(int(pid))):
                os.unlink(entry.path)
        except OSError:
            pass


# --- recognising other formats ------------------------------------------------------


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


def _foreign_format(head, last_byte):
    """What the file is if it is a known non-cdl format (a message fragment), or None."""
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
                f"bytes {MAGIC!r})")
    return None


# --- reading and validating -----------------------------------------------------


class _File:
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
    minimum = _PREFIX.size + _DIGEST_SIZE
    if head[:len(MAGIC)] != MAGIC[:len(head)]:
        what = _foreign_format(head, last_byte)
        if what is not None:
            raise ModelFileError(f"{path}: {what}")
        raise ModelFileError(f"{path}: not a cdl model file (wrong magic bytes; a cdl file "
                             f"starts with {MAGIC!r})")
    if size < minimum:
        raise ModelFileError(f"{path}: the file is truncated ({size} bytes; the "
                             f"smallest valid file has {minimum})")
    if len(head) < min(size, _SNIFF):
        raise ModelFileError(f"{path}: the file changed while it was read")
    _, version, header_len = _PREFIX.unpack(head[:_PREFIX.size])
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{path}: unsupported format version {version} (this "
                             f"version of cdl reads version {FORMAT_VERSION})")
    if header_len > size - minimum:  # checked before anything is allocated
        raise ModelFileError(f"{path}: the file is truncated or corrupted (its header "
                             f"claims {header_len} bytes, the file has {size})")
    if header_len > _MAX_HEADER:
        raise ModelFileError(f"{path}: the header has {header_len} bytes; cdl reads headers "
                             f"of at most {_MAX_HEADER} bytes")
    return version, header_len


def _read_into(path, f, view, hasher):
    """Fill the writable memoryview ``view`` from ``f`` in chunks, hashing each."""
    for start in range(0, len(view), _CHUNK):
        part = view[start:start + _CHUNK]
        while len(part):
            count = f.readinto(part)
            if not count:
                raise ModelFileError(f"{path}: the file changed while it was read")
            hasher.update(part[:count])
            part = part[count:]


def _digest_matches(f, hasher, data_len):
    """Whether the data section (``f`` at its start, at most _HASH_ON_ERROR
    bytes) and the digest after it agree with what ``hasher`` has seen: a
    header that fails its checks in a file that does not match its digest
    is reported as corruption. Reads in chunks and keeps nothing."""
    buffer = bytearray(min(_CHUNK, data_len + _DIGEST_SIZE))
    left = data_len
    while left:
        count = f.readinto(memoryview(buffer)[:min(left, len(buffer))])
        if not count:
            return False
        hasher.update(memoryview(buffer)[:count])
        left -= count
    return f.read(_DIGEST_SIZE) == hasher.digest()


def _read(path):
    """Read, verify and parse a file; raise ModelFileError for anything wrong.

    What loading costs is bounded by what the file holds, checked in this
    order: the path's kind (a regular file) and the file's size; its first
    bytes; the header (at most ``_MAX_HEADER`` bytes, parsed with bounded
    work), checked in full against the size of the data section that the
    file's size leaves; only then the data section, read in chunks straight
    into the arrays the header declares (which must fill it, up to
    alignment padding) while the digest is computed. Nothing read is
    returned before the digest of the whole file is verified.
    """
    path = os.fspath(path)
    with _open_regular_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(min(size, _SNIFF))
        last_byte = b""
        if size > len(head):
            f.seek(size - 1)
            last_byte = f.read(1)
        elif head:
            last_byte = head[-1:]
        version, header_len = _check_start(path, head, size, last_byte)
        hasher = hashlib.sha256(head[:_PREFIX.size])
        raw = bytearray(header_len)
        known = head[_PREFIX.size:_PREFIX.size + header_len]
        raw[:len(known)] = known
        hasher.update(known)
        f.seek(_PREFIX.size + len(known))
        _read_into(path, f, memoryview(raw)[len(known):], hasher)
        data_len = size - _PREFIX.size - header_len - _DIGEST_SIZE
        check = _Checker(path)
        try:
            header = _parse_header(path, raw)
            check.expect(header, dict, "the header")
            if header.get("format") != FORMAT_NAME:
                check.fail(f"header field 'format' is {_short(repr(header.get('format')))}, "
                           f"expected {FORMAT_NAME!r}")
            declared = header.get("format_version")
            if type(declared) is not int or declared != version:
                check.fail(f"header format_version {_short(repr(declared))} disagrees with "
                           f"the binary version {version}")
            table = _array_table(check, header, data_len)
            # The whole header, checked against the arrays' declared shapes
            # (stand-ins that hold no memory) before the data section is read.
            _check_header(_Checker(path, values=False),
                          _File(header, {name: np.broadcast_to(np.zeros((), dtype), shape)
                                         for name, dtype, shape, _, _ in table}, path))
        except ModelFileError as err:
            if data_len <= _HASH_ON_ERROR and not _digest_matches(f, hasher, data_len):
                raise ModelFileError(f"{path}: checksum mismatch: the file is corrupted "
                                     f"(its header is invalid: {err})") from err
            raise
        arrays = _read_arrays(check, f, hasher, table, data_len)
        digest = f.read(_DIGEST_SIZE + 1)
    if len(digest) != _DIGEST_SIZE:
        raise ModelFileError(f"{path}: the file changed while it was read")
    if hasher.digest() != digest:
        raise ModelFileError(f"{path}: checksum mismatch: the file is corrupted or truncated")
    return _File(header, arrays, path)


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


def _scan_json(raw):
    """Count, in the JSON text ``raw``, what lies outside its strings: the
    values and keys (commas, colons and opening brackets), the object members
    (colons), the deepest nesting, the longest run of digits, and whether the
    brackets pair up. NumPy over fixed-size chunks, carrying the state across
    them (inside a string or not, the run of backslashes and of digits, the
    depth), so that the work is linear and the memory a few chunks whatever
    the text. A quote ends or starts a string unless an odd run of
    backslashes precedes it. Returns (items, members, depth, digits, paired)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    inside = False
    backslashes = digits = depth = deepest = longest = items = members = 0
    paired = True
    for start in range(0, data.size, _SCAN_CHUNK):
        a = data[start:start + _SCAN_CHUNK]
        index = np.arange(a.size)
        # The last byte at or before each position that is not a backslash.
        last = np.maximum.accumulate(np.where(a == ord("\\"), -1, index))
        quotes = np.flatnonzero(a == ord('"'))
        before = np.maximum(quotes - 1, 0)
        run = np.where(quotes == 0, backslashes,
                       np.where(last[before] < 0, quotes + backslashes, quotes - 1 - last[before]))
        toggles = np.zeros(a.size, dtype=np.int8)
        toggles[quotes[run % 2 == 0]] = 1
        in_string = (np.cumsum(toggles, dtype=np.int32) % 2).astype(bool) ^ inside
        outside = a[~in_string]
        inside = bool(in_string[-1])
        backslashes = int(a.size if last[-1] < 0 else a.size - 1 - last[-1]) + (
            backslashes if last[-1] < 0 else 0)
        opening = (outside == ord("[")) | (outside == ord("{"))
        closing = (outside == ord("]")) | (outside == ord("}"))
        colons = int(np.count_nonzero(outside == ord(":")))
        members += colons
        items += colons + int(np.count_nonzero(outside == ord(","))) + int(opening.sum())
        steps = opening[opening | closing].astype(np.int32) * 2 - 1
        if steps.size:
            levels = depth + np.cumsum(steps)
            deepest = max(deepest, int(levels.max()))
            paired = paired and int(levels.min()) >= 0
            depth = int(levels[-1])
        is_digit = (outside >= ord("0")) & (outside <= ord("9"))
        if is_digit.size:
            spot = np.arange(is_digit.size)
            last_other = np.maximum.accumulate(np.where(is_digit, -1, spot))
            runs = spot - last_other + np.where(last_other < 0, digits, 0)
            longest = max(longest, int(runs[is_digit].max(initial=0)))
            digits = int(runs[-1]) if is_digit[-1] else 0
        if items > _MAX_JSON_ITEMS or deepest > _MAX_DEPTH or longest > _MAX_DIGITS:
            break   # refused whatever follows
    return items, members, deepest, longest, paired and depth == 0


def _parse_header(path, raw):
    """The header's JSON object: ASCII, no repeated keys, at most _MAX_DEPTH
    levels, _MAX_JSON_ITEMS values and keys and _MAX_DIGITS digits per number.

    These are checked on the raw bytes first (``_scan_json``: NumPy, no
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
                 f"{_PREFIX.size + err.start} of the file)")
        first = re.search(rb"[\x80-\xff]", raw).start()
        fail(f"the header holds a non-ASCII character (at byte {_PREFIX.size + first} of the "
             "file); cdl writes headers as ASCII JSON, other characters as \\u escapes")
    items, members, depth, digits, paired = _scan_json(raw)
    if items > _MAX_JSON_ITEMS:
        fail(f"the header holds more than {_MAX_JSON_ITEMS} JSON values and keys (cdl reads "
             "headers of at most that many)")
    if depth > _MAX_DEPTH:
        fail(f"the header nests JSON more than {_MAX_DEPTH} levels deep")
    if digits > _MAX_DIGITS:
        fail(f"the header holds a number of more than {_MAX_DIGITS} digits")
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
        fail(f"the header nests JSON more than {_MAX_DEPTH} levels deep")
    except ValueError as err:
        fail(f"the header is not valid JSON ({err})")
    if kept[0] != members:
        try:
            json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
        except _DuplicateKey as err:
            fail(f"the header repeats the key {_short(repr(err.args[0]))} in one JSON object "
                 "(readers could disagree on its value)")
        fail("the header repeats a key in one JSON object")
    return header


class _Checker:
    """Field validation with messages naming the file and the field.

    With ``values=False`` the arrays are stand-ins of the declared dtypes and
    shapes (the data section is not read yet): checks of array contents are
    left to the pass made once they are read.
    """

    def __init__(self, path, values=True):
        self.path = path
        self.values = values

    def fail(self, message):
        raise ModelFileError(f"{self.path}: {message}")

    def expect(self, value, types, where):
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in (
                types if isinstance(types, tuple) else (types,))):
            names = types if isinstance(types, tuple) else (types,)
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in names)
            self.fail(f"{where} must be {expected}, got {type(value).__name__}")
        return value

    def key(self, mapping, key, types, where):
        if key not in mapping:
            self.fail(f"{where} has no {key!r} field")
        return self.expect(mapping[key], types, f"{where}.{key}")

    def int(self, value, where, low=0, high=None):
        self.expect(value, int, where)
        if value < low:
            self.fail(f"{where} must be at least {low}, got {_count(value)}")
        if high is not None and value > high:
            self.fail(f"{where} must be at most {high}, got {_count(value)}")
        return value

    def number(self, value, where, finite=True):
        self.expect(value, (int, float), where)
        if finite and not math.isfinite(value):
            self.fail(f"{where} must be a finite number, got {value}")
        return value

    def shape(self, value, where, low=0):
        self.expect(value, list, where)
        if len(value) > _MAX_NDIM:
            self.fail(f"{where} has {len(value)} axes (at most {_MAX_NDIM})")
        return tuple(self.int(d, f"{where}[{i}]", low, _MAX_INT) for i, d in enumerate(value))

    def class_name(self, value, where):
        """A class name for a registry lookup: an identifier, never a path."""
        self.expect(value, str, where)
        if "." in value or "/" in value or ":" in value:
            self.fail(f"{where} is {value!r}, a dotted path; cdl looks classes up by name in "
                      "its own registries and never imports modules named in a file")
        if not value.isidentifier() or (value.startswith("__") and value.endswith("__")):
            self.fail(f"{where} is {value!r}, which is not a class name")
        return value


def _count(n):
    """A size for a message: in full, or its order of magnitude if absurdly large
    (found without converting it to decimal, which Python refuses past 4,300 digits)."""
    if abs(n) < 10 ** 15:
        return str(n)
    sign = "-" if n < 0 else ""
    digits = int((abs(n).bit_length() - 1) * 0.30102999566398120)
    return f"about {sign}10**{digits + (abs(n) >= 10 ** (digits + 1))}"


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
        where = f"array {_short(repr(name))}"
        if name in entries:
            check.fail(f"the array table lists {_short(repr(name))} twice")
        dtype_name = check.key(entry, "dtype", str, where)
        if dtype_name not in _DTYPES:
            check.fail(f"{where} has dtype {_short(repr(dtype_name))}; allowed are "
                       f"{', '.join(_DTYPES)}")
        dtype = _DTYPES[dtype_name]
        shape = check.shape(check.key(entry, "shape", list, where), f"{where}.shape")
        offset = check.int(check.key(entry, "offset", int, where), f"{where}.offset")
        nbytes = check.int(check.key(entry, "nbytes", int, where), f"{where}.nbytes")
        expected = math.prod(shape) * dtype.itemsize
        if nbytes != expected:
            check.fail(f"{where} has nbytes {_count(nbytes)}, but its shape of {dtype_name} "
                       f"needs {_count(expected)}")
        if offset + nbytes > data_len:
            check.fail(f"{where} (bytes {_count(offset)} to {_count(offset + nbytes)}) lies "
                       f"outside the data section ({data_len} bytes): the file is truncated "
                       "or its header is wrong")
        # NumPy's limit, which matters for an array without elements (the
        # others lie in the data section): the product of the non-zero axes
        # must fit in a byte count.
        if math.prod(d for d in shape if d) * dtype.itemsize > _MAX_INT:
            check.fail(f"{where} has shape {_short([_count(d) for d in shape])}, more "
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
    slack = _ALIGN * (len(entries) + 1)
    if unused > slack:
        check.fail(f"the data section has {_count(unused)} bytes outside its arrays (at most "
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
        if offset > position:   # padding: at most the slack _array_table allows
            _read_into(check.path, f, memoryview(bytearray(offset - position)), hasher)
        try:
            array = np.empty(shape, dtype=dtype)
        except (MemoryError, ValueError, OverflowError) as err:
            raise ModelFileError(f"{check.path}: array {name!r} ({_count(nbytes)} bytes) "
                                 f"cannot be allocated: {type(err).__name__}") from err
        _read_into(check.path, f, memoryview(array.reshape(-1)).cast("B"), hasher)
        arrays[name] = array.astype(dtype.newbyteorder("="), copy=False)
        position = offset + nbytes
    if data_len > position:
        _read_into(check.path, f, memoryview(bytearray(data_len - position)), hasher)
    return {name: arrays[name] if name in arrays else np.zeros(shape, dtype.newbyteorder("="))
            for name, dtype, shape, _, _ in table}


# --- the header's structure, checked before any field is used ------------------------


def _check_header(check, file):
    """Check the type of every header field, for both loaders; return the
    decoded training state (or None). Arrays nothing refers to are refused."""
    header = file.header
    kind = check.key(header, "kind", str, "the header")
    if kind not in ("model", "weights"):
        check.fail(f"header field 'kind' is {kind!r}, expected 'model' or 'weights'")
    if "cdl_version" in header:
        check.expect(header["cdl_version"], str, "the header.cdl_version")
    check.key(header, "built", bool, "the header")
    _model_config(check, header)
    used = {"params"}
    used |= _check_param_layout(check, header, file.arrays)
    used |= _check_buffer_entries(check, header, file.arrays)
    _check_compile_config(check, header.get("compile"))
    used |= _check_optimizer_section(check, header.get("optimizer"), file.arrays)
    _check_rng(check, header.get("rng"))
    training = None
    if header.get("training_state") is not None:
        training, training_used = _check_training_state(check, header["training_state"],
                                                        file.arrays)
        used |= training_used
    extra = set(file.arrays) - used
    if extra:
        check.fail(f"the file has arrays nothing refers to: {sorted(extra)}")
    return training


def _model_config(check, header):
    config = check.key(header, "model", dict, "the header")
    where = "model config"
    dtype = check.key(config, "dtype", str, where)
    if dtype not in ("float32", "float64"):
        check.fail(f"model config dtype must be 'float32' or 'float64', got {dtype!r}")
    seed = config.get("seed")
    if seed is not None:
        check.int(seed, "model config seed")
    input_shape = config.get("input_shape")
    if input_shape is not None:
        input_shape = check.shape(input_shape, "model config input_shape", low=1)
    name = check.expect(config.get("name", "sequential"), str, "model config name")
    layer_specs = check.key(config, "layers", list, where)
    for i, spec in enumerate(layer_specs):
        check.expect(spec, dict, f"layer {i}")
        check.class_name(check.key(spec, "class_name", str, f"layer {i}"),
                         f"layer {i} class_name")
        check.key(spec, "config", dict, f"layer {i}")
    return {"dtype": dtype, "seed": seed, "input_shape": input_shape, "name": name,
            "layers": layer_specs}


def _check_param_layout(check, header, arrays):
    """param_layout's entries, and its total against the 'params' array."""
    layout = check.key(header, "param_layout", list, "the header")
    total = 0
    for i, entry in enumerate(layout):
        where = f"param_layout[{i}]"
        check.expect(entry, dict, where)
        check.key(entry, "layer", str, where)
        check.key(entry, "weight", str, where)
        total += math.prod(check.shape(check.key(entry, "shape", list, where),
                                       f"{where}.shape"))
    params = arrays.get("params")
    if params is None:
        check.fail("the file has no 'params' array")
    if params.ndim != 1:
        check.fail(f"the 'params' array must be flat, got shape {list(params.shape)}")
    if params.dtype.kind != "f":
        check.fail(f"the 'params' array has dtype {params.dtype}, expected a float dtype")
    if header["built"] and total != params.size:
        check.fail(f"param_layout lists {_count(total)} values, the 'params' array holds "
                   f"{params.size}")
    return set()


def _check_buffer_entries(check, header, arrays):
    used = set()
    for i, entry in enumerate(check.expect(header.get("buffers", []), list, "buffers")):
        where = f"buffers[{i}]"
        check.expect(entry, dict, where)
        layer = check.key(entry, "layer", str, where)
        buffer = check.key(entry, "buffer", str, where)
        array_name = check.key(entry, "array", str, where)
        if array_name not in arrays:
            check.fail(f"buffer {layer}.{buffer} refers to a missing array {array_name!r}")
        used.add(array_name)
    return used


def _check_compile_config(check, config):
    if config is None:
        return
    where = "the compile config"
    check.expect(config, dict, where)
    for part in ("optimizer", "loss"):
        section = check.key(config, part, dict, where)
        check.class_name(check.key(section, "class_name", str, f"{where}.{part}"),
                         f"{where}.{part}.class_name")
        check.expect(section.get("config", {}), dict, f"{where}.{part}.config")
    metrics = config.get("metrics")
    if metrics is not None:
        for i, name in enumerate(check.expect(metrics, list, f"{where}.metrics")):
            check.expect(name, str, f"{where}.metrics[{i}]")
    for key in ("clip_norm", "clip_value"):
        if config.get(key) is not None:
            check.number(config[key], f"{where}.{key}")


def _check_optimizer_section(check, section, arrays):
    """The optimizer section's structure; return the arrays it refers to."""
    if section is None:
        return set()
    where = "optimizer"
    check.expect(section, dict, where)
    check.class_name(check.key(section, "class_name", str, where), "optimizer.class_name")
    check.key(section, "config", dict, where)
    check.int(check.key(section, "iterations", int, where), "optimizer.iterations",
              high=_MAX_INT)
    for key, value in check.key(section, "scalars", dict, where).items():
        check.number(value, f"optimizer.scalars.{key}")
    used = set()
    for name, array_name in check.key(section, "state", dict, where).items():
        if array_name is None:
            continue
        check.expect(array_name, str, f"optimizer.state.{name}")
        if array_name not in arrays:
            check.fail(f"optimizer state {name!r} refers to a missing array {array_name!r}")
        used.add(array_name)
    group_of = {}   # parameter index -> the group listing it
    for g, group in enumerate(check.expect(section.get("param_groups", []), list,
                                           "optimizer.param_groups")):
        at = f"optimizer.param_groups[{g}]"
        check.expect(group, dict, at)
        for i in check.key(group, "params", list, at):
            if type(i) is not int or i < 0:
                check.int(i, f"{at}.params index")
            if i in group_of:   # a parameter listed twice would be updated twice a step
                other = group_of[i]
                check.fail(f"{at}.params lists parameter {_count(i)} "
                           + ("twice" if other == g else
                              f"again (optimizer.param_groups[{other}] lists it too)"))
            group_of[i] = g
        for key in ("lr_mult", "weight_decay_mult"):
            if key in group:
                check.number(group[key], f"{at}.{key}")
    return used


def _check_rng(check, state):
    """A bit generator state as NumPy lays it out: a known generator, and
    integers, lists of at most _MAX_RNG_LIST integers, or objects of those.
    A list is checked in one pass of type tests (paths are built only for a
    value that fails), so a long one costs no more than its bytes."""
    if state is None:
        return
    check.expect(state, dict, "rng")
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        check.fail(f"rng.bit_generator is {_short(repr(name))}; expected one of "
                   f"{', '.join(_BIT_GENERATORS)}")
    for key, value in state.items():
        if key == "bit_generator":
            continue
        if type(value) is dict:
            for inner, item in value.items():
                _check_rng_value(check, item, f"rng.{key}.{inner}")
        else:
            _check_rng_value(check, value, f"rng.{key}")


def _check_rng_value(check, value, where):
    if type(value) is not list:
        check.expect(value, int, where)
        return
    if len(value) > _MAX_RNG_LIST:
        check.fail(f"{where} has {len(value)} values; NumPy's bit generators keep at most "
                   f"{_MAX_RNG_LIST}")
    if not all(type(v) is int for v in value):
        i = next(i for i, v in enumerate(value) if type(v) is not int)
        check.expect(value[i], int, f"{where}[{i}]")


def _check_training_state(check, state, arrays):
    """The training_state section: its fields' types, with its array
    references replaced by the arrays. Returns (state, array names used)."""
    where = "training_state"
    check.expect(state, dict, where)
    used = set()
    state = _decode_arrays(check, state, arrays, used, where)
    for key, low in (("epoch", 0), ("batch", 0), ("steps", 1), ("batch_size", 1),
                     ("seen", 0)):
        check.int(check.key(state, key, int, where), f"{where}.{key}", low)
    if state["batch"] > state["steps"]:
        check.fail(f"{where}.batch is {state['batch']}, past the epoch's {state['steps']} "
                   "batches")
    check.number(check.key(state, "loss_sum", (int, float), where), f"{where}.loss_sum",
                 finite=False)
    order = check.key(state, "shuffle_order", (np.ndarray, type(None)), where)
    if order is not None and check.values and not _is_permutation(order):
        check.fail(f"{where}.shuffle_order is not a permutation of the sample indices")
    for i, entry in enumerate(check.key(state, "metrics", list, where)):
        at = f"{where}.metrics[{i}]"
        check.expect(entry, dict, at)
        check.key(entry, "name", str, at)
        check.key(entry, "class", str, at)
        check.key(entry, "state", dict, at)
    history = check.key(state, "history", dict, where)
    epochs = check.key(history, "epoch", list, f"{where}.history")
    if not all(type(epoch) is int and epoch >= 0 for epoch in epochs):
        for i, epoch in enumerate(epochs):
            check.int(epoch, f"{where}.history.epoch[{i}]")
    for key, values in check.key(history, "logs", dict, f"{where}.history").items():
        check.expect(values, list, f"{where}.history.logs.{key}")
    for i, entry in enumerate(check.key(state, "callbacks", list, where)):
        at = f"{where}.callbacks[{i}]"
        check.expect(entry, dict, at)
        check.key(entry, "class", str, at)
        check.key(entry, "state", dict, at)
    return state, used


def _is_permutation(order):
    if order.dtype != np.int64 or order.ndim != 1:
        return False
    seen = np.zeros(order.size, dtype=bool)
    if order.size and (order.min() < 0 or order.max() >= order.size):
        return False
    seen[order] = True
    return bool(seen.all())


def _decode_arrays(check, value, arrays, used, where):
    """``value`` with every ``{"$array": name}`` replaced by that array (a copy).
    Only containers are visited (a list of numbers is returned as it is), so
    the cost is one type test per value."""
    if isinstance(value, list):
        if all(type(v) not in (dict, list) for v in value):
            return value
        return [_decode_arrays(check, v, arrays, used, f"{where}[{i}]")
                if type(v) in (dict, list) else v for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if "$array" not in value:
        return {k: _decode_arrays(check, v, arrays, used, f"{where}.{k}")
                if type(v) in (dict, list) else v for k, v in value.items()}
    name = check.expect(value["$array"], str, f"{where}.$array")
    if set(value) - {"$array", "dtype"} or value.get("dtype", "bool") != "bool":
        check.fail(f"{where} is an array reference with unknown fields {value!r}")
    if not name.startswith(_TRAINING_PREFIX) or name not in arrays:
        check.fail(f"{where} refers to {name!r}, which is not a training array of the file")
    if name in used:
        check.fail(f"{where} refers to the array {name!r}, which another field uses too")
    used.add(name)
    array = arrays[name]
    if value.get("dtype") == "bool":
        if array.dtype != np.int64 or (check.values and array.size and (
                array.min() < 0 or array.max() > 1)):
            check.fail(f"{where}: array {name!r} should hold 0/1 for a boolean array")
        array = array.astype(bool) if check.values \
            else np.broadcast_to(np.zeros((), dtype=bool), array.shape)
    return array


# --- loading --------------------------------------------------------------------------


def _all_layers(model):
    """Every layer of ``model``, including those held by other layers."""
    found, stack, seen = [], list(model.layers), set()
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, _layers.Layer) and id(item) not in seen:
            seen.add(id(item))
            found.append(item)
            stack.extend(v for v in vars(item).values()
                         if isinstance(v, (_layers.Layer, list, tuple)))
    return found


@contextlib.contextmanager
def _allocation_budget(check, model, file):
    """Build ``model``'s layers for ``file`` (whose values then overwrite
    theirs): no initialiser runs, and a weight or buffer past what the file
    holds is refused before it is allocated, so a few bytes of config cannot
    make ``build`` allocate and fill terabytes. Yields the budget (see
    ``cdl.layers.base.allocation_budget``)."""
    weights = file.arrays["params"].size
    arrays = {entry["array"] for entry in file.header.get("buffers", [])}
    buffers = sum(file.arrays[name].size for name in arrays)
    try:
        with _layers.base.allocation_budget(weights, buffers, "the file",
                                            flat=file.arrays["params"]) as budget:
            yield budget
    except _layers.base.AllocationError as err:
        # Layers are built in order: the first one not built failed.
        found = model.layers
        i = next((i for i, layer in enumerate(found) if not layer.built), len(found) - 1)
        check.fail(f"layer {i} ({type(found[i]).__name__} {found[i].name!r}): {err}")


#: The most layers (counting those inside other layers) a model file may
#: describe; ``save_model`` refuses larger models, so that every file it
#: writes loads. Ten times the deepest published networks (a few thousand
#: layers), and low enough that loading the largest header stays well within
#: a second or two and 100 MB (about 1 s and 50 MB for 50,000 weightless
#: layers on a 2-core machine): constructing a layer costs microseconds and
#: about a kilobyte, and a header could otherwise list some 90,000 of them.
MAX_LAYERS = 50_000


def _too_many_layers(layer_specs):
    """Whether the layer configs describe more than ``MAX_LAYERS`` layers
    (nested ones too: any object with a "class_name" in a layer's config
    describes a sublayer). Stops counting at the limit."""
    count, stack = 0, list(layer_specs)
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "class_name" in value:
                count += 1
                if count > MAX_LAYERS:
                    return True
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _count_layer_specs(check, layer_specs):
    """Refuse, before any layer is made, a config of more than ``MAX_LAYERS`` layers."""
    if _too_many_layers(layer_specs):
        check.fail(f"the model config describes more than {MAX_LAYERS:,} layers "
                   "(cdl loads models of at most that many)")


def _build_layers(check, layer_specs):
    _count_layer_specs(check, layer_specs)
    built = []
    for i, spec in enumerate(layer_specs):
        class_name, config = spec["class_name"], spec["config"]
        try:
            cls = _layers.get(class_name)
        except ValueError as err:
            check.fail(f"layer {i}: {err}")
        try:
            layer = cls.from_config(dict(config))
        except Exception as err:  # noqa: BLE001 - any constructor error is a bad file
            check.fail(f"layer {i} ({class_name}) cannot be created from its config: "
                       f"{type(err).__name__}: {_short(err)}")
        if not isinstance(layer, _layers.Layer):
            check.fail(f"layer {i} ({class_name}).from_config did not return a Layer")
        built.append(layer)
    return built


def _short(value, limit=300):
    """``str(value)`` cut to ``limit`` characters: messages may quote file content."""
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - e.g. RecursionError on a deeply nested value
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _check_layout(check, header, model, what="the file"):
    """The file's per-weight shapes against the model's; name the first mismatch."""
    layout = header["param_layout"]
    current = _param_layout(model)
    for i, entry in enumerate(layout):
        shape = tuple(entry["shape"])
        label = f"{entry['layer']}.{entry['weight']}"
        if i >= len(current):
            raise ValueError(f"{check.path}: {what} has {len(layout)} weights, the model "
                             f"{len(current)} (weight {i}, {label}, has no counterpart)")
        mine = current[i]
        if shape != tuple(mine["shape"]):
            raise ValueError(
                f"{check.path}: weight {i} has shape {list(shape)} in {what} ({label}) but "
                f"{mine['shape']} in the model ({mine['layer']}.{mine['weight']})")
    if len(current) > len(layout):
        mine = current[len(layout)]
        raise ValueError(f"{check.path}: {what} has {len(layout)} weights, the model "
                         f"{len(current)} (from {mine['layer']}.{mine['weight']} on)")


def _buffer_values(check, header, model, arrays, by_name):
    """Pair each buffer of ``model`` with the file's: by layer and buffer name
    (``load_model``, whose layers carry the saved names; dtypes must agree) or
    by position (``load_weights``: layer names may differ, as for weights;
    float dtypes are converted). Everything is checked before anything is
    written. Returns [(target array, saved array)]."""
    saved = [((entry["layer"], entry["buffer"]), entry["array"])
             for entry in header.get("buffers", [])]
    mine = _buffer_layout(model)
    if by_name:
        index = dict(saved)
        if len(index) != len(saved):
            check.fail("the header lists a buffer twice")
        missing = [f"{layer.name}.{name}" for layer, name, _ in mine
                   if (layer.name, name) not in index]
        extra = sorted(set(index) - {(layer.name, name) for layer, name, _ in mine})
        if missing or extra:
            check.fail(f"the file's buffers do not match the model's: missing {missing}, "
                       f"unknown {['.'.join(k) for k in extra]}")
        matched = [(index[(layer.name, name)], layer, name, target)
                   for layer, name, target in mine]
    else:
        if len(saved) != len(mine):
            raise ValueError(f"{check.path}: the file has {len(saved)} buffers, the model "
                             f"{len(mine)} ({[f'{layer.name}.{n}' for layer, n, _ in mine]})")
        matched = [(array_name, layer, name, target)
                   for (_, array_name), (layer, name, target) in zip(saved, mine)]
    pairs = []
    for array_name, layer, name, target in matched:
        value = arrays[array_name]
        if value.shape != target.shape:
            raise ValueError(f"{check.path}: buffer {array_name!r} has shape "
                             f"{list(value.shape)} in the file but {list(target.shape)} "
                             f"in the model ({layer.name}.{name})")
        if value.dtype != target.dtype and (by_name or value.dtype.kind != target.dtype.kind):
            check.fail(f"buffer {array_name!r} is {value.dtype}, the model's "
                       f"{layer.name}.{name} {target.dtype}")
        pairs.append((target, value))
    return pairs


def _params_array(check, file, size):
    params = file.arrays["params"]
    if params.size != size:
        check.fail(f"the file holds {params.size} parameters, the architecture has {size}")
    return params


def _as_file_error(function, *args, **kwargs):
    """Call ``function``; a plain ValueError about the file becomes a ModelFileError."""
    try:
        return function(*args, **kwargs)
    except ModelFileError:
        raise
    except ValueError as err:
        raise ModelFileError(str(err)) from err


def load_model(path):
    """Load a model saved by ``save_model`` (or ``Sequential.save``).

    The model is rebuilt from its configuration, gets its weights back, is
    compiled again if it was compiled, and has its optimizer state and
    random generator restored, so ``fit`` continues exactly as it would have
    in the original.

    Raises
    ------
    ModelFileError
        If the file is not a valid model file (a ``ValueError``).

    Examples
    --------
    >>> import cdl
    >>> from cdl import io, layers
    >>> cdl.Sequential([layers.Dense(2, name="out")], input_shape=(3,), seed=0).save("net.cdl")
    >>> io.load_model("net.cdl").layers
    [<Dense name='out'>]
    >>> with open("bad.cdl", "wb") as f:
    ...     _ = f.write(b"not a model")
    >>> io.load_model("bad.cdl")
    Traceback (most recent call last):
        ...
    cdl.io.ModelFileError: bad.cdl: not a cdl model file ...
    """
    file = _read(path)
    check = _Checker(file.path)
    header = file.header
    if header.get("kind") == "weights":
        check.fail("this is a weights file (from save_weights); load it into a model "
                   "with model.load_weights")
    _check_header(check, file)
    config = _model_config(check, header)
    built = header["built"]
    layer_list = _build_layers(check, config["layers"])
    if built and (config["input_shape"] is None or not layer_list):
        check.fail("the header says the model was built, but it has no input shape or layers")
    try:
        model = Sequential(layer_list, dtype=config["dtype"], seed=config["seed"],
                           name=config["name"])
        model.input_shape = config["input_shape"]
        if built:
            with _allocation_budget(check, model, file):
                model.build()
    except ModelFileError:
        raise
    except Exception as err:  # noqa: BLE001 - an inconsistent config is a bad file
        check.fail(f"the model cannot be rebuilt from its config: {type(err).__name__}: "
                   f"{_short(err)}")
    if built:
        _as_file_error(_check_layout, check, header, model)
    params = _params_array(check, file, model.param_buffer.size)
    if params.dtype != model.dtype:
        check.fail(f"the 'params' array is {params.dtype}, the model {model.dtype}")
    buffer_pairs = _as_file_error(_buffer_values, check, header, model, file.arrays,
                                  by_name=True)
    compile_config = header.get("compile")
    opt_section = header.get("optimizer")
    if compile_config is not None:
        try:
            model.compile_from_config(compile_config)
        except Exception as err:  # noqa: BLE001 - a bad config is a bad file
            check.fail(f"the model cannot be compiled from its saved compile config: "
                       f"{type(err).__name__}: {_short(err)}")
    elif opt_section is not None:
        check.fail("the file has optimizer state but no compile config")
    if opt_section is not None:
        _restore_optimizer(check, model, opt_section, file.arrays)
    _restore_rng(check, model, header.get("rng"))
    model.param_buffer[...] = params
    for target, saved in buffer_pairs:
        target[...] = saved
    return model


def read_training_state(path):
    """The training state saved with a model by ``ModelCheckpoint`` or
    ``BackupAndRestore``: where ``fit`` stood, the history so far and the
    callbacks' states.

    Parameters
    ----------
    path : str or os.PathLike
        A model file.

    Returns
    -------
    dict or None
        The ``training_state`` header section (see the module docstring),
        with its arrays as ndarrays; None if the file has none. ``epoch``
        is the epoch to continue with: pass it to ``fit`` as
        ``initial_epoch`` after ``load_model``.

    Raises
    ------
    ModelFileError
        If the file is not valid.

    Examples
    --------
    >>> state = cdl.io.read_training_state("ckpt-05.cdl")        # doctest: +SKIP
    >>> model = cdl.load_model("ckpt-05.cdl")                    # doctest: +SKIP
    >>> model.fit(x, y, epochs=10, initial_epoch=state["epoch"])  # doctest: +SKIP
    """
    file = _read(path)
    return _check_header(_Checker(file.path), file)


def _restore_checkpoint(model, path):
    """Restore into the compiled, built ``model`` a file of ``_save_checkpoint``:
    weights, buffers, optimizer state and hyper-parameters, and the random
    generator. Everything is checked before the model changes. Returns the
    file's training state (or None).

    Raises
    ------
    ModelFileError
        If the file is invalid or was saved from another kind of model.
    """
    file = _read(path)
    check = _Checker(file.path)
    header = file.header
    training = _check_header(check, file)
    if header["kind"] != "model":
        check.fail("this is a weights file; a training backup is a model file")
    dtype = _model_config(check, header)["dtype"]
    if dtype != model.dtype.name:
        check.fail(f"the file holds a {dtype} model, this model is {model.dtype}")
    if not header["built"]:
        check.fail("the file was saved from a model that was not built")
    _as_file_error(_check_layout, check, header, model)
    params = _params_array(check, file, model.param_buffer.size)
    buffer_pairs = _as_file_error(_buffer_values, check, header, model, file.arrays,
                                  by_name=False)
    rng_state = header.get("rng")
    _restore_rng(check, _RngProbe(), rng_state)   # validates without touching the model
    if header.get("optimizer") is not None:
        _restore_optimizer(check, model, header["optimizer"], file.arrays, into=True)
    _restore_rng(check, model, rng_state)
    model.param_buffer[...] = params
    for target, saved in buffer_pairs:
        target[...] = saved
    return training


class _RngProbe:
    """Stands in for a model to check that a saved generator state loads."""

    def __init__(self):
        self.rng = np.random.Generator(np.random.PCG64(0))
        self.layers = []


def _saved_optimizer_config(check, section, optimizer):
    """The saved hyper-parameters (lr changed by a schedule, ...), each of the
    same kind as the optimizer's own (a file may not set other attributes)."""
    current = optimizer.get_config()
    saved = section["config"]
    if set(saved) != set(current):
        check.fail(f"optimizer.config has the keys {sorted(saved)}; a "
                   f"{type(optimizer).__name__} has {sorted(current)}")
    config = {}
    for key, value in saved.items():
        mine = current[key]
        where = f"optimizer.config.{key}"
        if isinstance(mine, bool) or isinstance(value, bool):
            check.expect(value, bool, where)
        elif isinstance(mine, (list, tuple)):
            check.expect(value, list, where)
            if len(value) != len(mine):
                check.fail(f"{where} has {len(value)} values, expected {len(mine)}")
            value = type(mine)(check.number(v, f"{where}[{i}]") for i, v in enumerate(value))
        elif isinstance(mine, (int, float)):
            check.number(value, where)
        elif mine is None or isinstance(mine, str):
            check.expect(value, (type(None), str, int, float), where)
        else:
            check.fail(f"{where} cannot be restored")
        config[key] = value
    return config


def _restore_optimizer(check, model, section, arrays, into=False):
    """Load the optimizer state into the model's optimizer: a freshly compiled
    one (``load_model``), or, with ``into``, the optimizer a user is about to
    train with, whose parameter groups must then match the saved ones."""
    optimizer = model.optimizer
    if optimizer is None:
        check.fail("the file has optimizer state, but the model is not compiled")
    class_name = section["class_name"]
    if class_name != type(optimizer).__name__:
        check.fail(f"the optimizer state is for {class_name}, the model's optimizer is "
                   f"{type(optimizer).__name__}")
    scalars = section["scalars"]
    state_names = section["state"]
    unknown = set(state_names) - set(optimizer._state_names)
    if unknown:
        check.fail(f"unknown {class_name} state {sorted(unknown)}; it keeps "
                   f"{list(optimizer._state_names)}")
    state = {}
    size = model.param_buffer.size
    for name, array_name in state_names.items():
        if array_name is None:
            state[name] = None
            continue
        array = arrays[array_name]
        if array.dtype != model.dtype or array.shape != (size,):
            check.fail(f"optimizer state {name!r} is {array.dtype} of shape "
                       f"{list(array.shape)}; the model needs {model.dtype} of shape [{size}]")
        state[name] = array
    groups = []
    for g, group in enumerate(section.get("param_groups", [])):
        indices = group["params"]
        for i in indices:
            if i >= len(model.params):
                check.fail(f"optimizer.param_groups[{g}] refers to parameter {i}; the model "
                           f"has {len(model.params)}")
        groups.append({"params": [model.params[i] for i in indices],
                       "lr_mult": group.get("lr_mult", 1.0),
                       "weight_decay_mult": group.get("weight_decay_mult", 1.0)})
    config = _saved_optimizer_config(check, section, optimizer) if into \
        else optimizer.get_config()
    try:
        groups = optimizer._check_groups(groups)
        if into and not _same_groups(groups, optimizer.param_groups):
            check.fail("the saved parameter groups differ from the optimizer's")
        optimizer.load_state_dict({"class": class_name, "config": config,
                                   "iterations": section["iterations"], "scalars": scalars,
                                   "state": state})
        if not into:
            optimizer.param_groups = groups
    except (TypeError, ValueError) as err:
        if isinstance(err, ModelFileError):
            raise
        check.fail(f"the optimizer state cannot be restored: {err}")


def _same_groups(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x["lr_mult"] != y["lr_mult"] or x["weight_decay_mult"] != y["weight_decay_mult"] \
                or len(x["params"]) != len(y["params"]) \
                or any(p is not q for p, q in zip(x["params"], y["params"])):
            return False
    return True


def _restore_rng(check, model, state):
    if state is None:
        return
    name = state["bit_generator"]
    old = model.rng
    try:
        if type(old.bit_generator).__name__ == name:
            old.bit_generator.state = state
            return
        bit_generator = getattr(np.random, name)()
        bit_generator.state = state
    except Exception as err:  # noqa: BLE001 - numpy rejects a bad state in many ways
        check.fail(f"the random generator state is invalid: {type(err).__name__}: "
                   f"{_short(err)}")
    model.rng = np.random.Generator(bit_generator)
    for layer in _all_layers(model):
        if getattr(layer, "_rng", None) is old:
            layer._rng = model.rng


def load_weights(model, path):
    """Copy the weights saved by ``save_weights`` (or ``save_model``) into ``model``,
    and the layers' buffers (such as BatchNorm's running statistics).

    The model's weights must have the same shapes, in the same order, as
    the saved ones (layer names may differ). An unbuilt model is built for
    the saved input shape first. Weights saved in another float dtype are
    converted to the model's. The whole file is validated, also the parts
    that only ``load_model`` uses, but layer classes are not looked up:
    the model's own layers are used.

    The file is read and checked before the model changes; the change
    itself is one weight write, as ``set_weights``: predictions running in
    other threads see the old or the loaded weights, never a mix, and a
    model training in another thread raises ``RuntimeError``.

    Raises
    ------
    ModelFileError
        If the file is not valid.
    ValueError
        If the architecture does not match (the message names the first
        differing weight).

    Examples
    --------
    >>> import cdl
    >>> from cdl import io, layers
    >>> cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0).save_weights("w.cdl")
    >>> other = cdl.Sequential([layers.Dense(5)], input_shape=(3,))
    >>> io.load_weights(other, "w.cdl")               # a different architecture is refused
    Traceback (most recent call last):
        ...
    ValueError: w.cdl: weight 0 has shape [3, 2] in the file ...
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"expected a cdl.Sequential model, got {type(model).__name__}")
    file = _read(path)
    check = _Checker(file.path)
    header = file.header
    _check_header(check, file)
    config = _model_config(check, header)
    if not header["built"]:
        check.fail("the file was saved from a model that was not built; it holds no weights")
    # The file is read and checked before the model is touched; from here on
    # the weights change, so predictions in other threads wait (they see the
    # old or the new weights, never a mix) and training in another thread is
    # refused, as for set_weights.
    guard = _concurrency.guard_of(model)
    guard.begin_weights_write(model.name, "load_weights")
    try:
        _load_weights_into(check, header, config, model, file)
    finally:
        guard.end_weights_write()


def _load_weights_into(check, header, config, model, file):
    """The part of ``load_weights`` that changes ``model``."""
    budget = None
    try:
        if not model.built:
            with _allocation_budget(check, model, file) as budget:
                if model.input_shape is None and config["input_shape"] is not None:
                    model.build(config["input_shape"])
                else:
                    model.build()
        _check_layout(check, header, model)
        params = _params_array(check, file, model.param_buffer.size)
        buffer_pairs = _buffer_values(check, header, model, file.arrays, by_name=False)
    except BaseException:
        if budget is not None:
            # The caller keeps the model: give it the weights build() would have.
            budget.initialise()
        raise
    model.param_buffer[...] = params.astype(model.dtype, copy=False)
    for target, saved in buffer_pairs:
        target[...] = saved
