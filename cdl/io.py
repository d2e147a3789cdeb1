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
    20      H     header: UTF-8 JSON object (may end in ASCII spaces, which
                  writers use to align the data section to 64 bytes; the
                  tokens NaN, Infinity and -Infinity may appear as values)
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
``arrays``
    The array table: a list of ``{"name", "dtype", "shape", "offset",
    "nbytes"}``. ``dtype`` is one of ``"float32"``, ``"float64"``,
    ``"int64"``; ``offset`` counts bytes from the start of the data section;
    ``nbytes`` is exactly ``prod(shape) * itemsize``; arrays lie inside the
    data section and do not overlap. Names are ``"params"`` (the flat
    parameter buffer, ``model.param_buffer``), ``"buffers/<layer
    name>/<buffer name>"`` (in the model's dtype) and ``"optimizer/<state
    name>"``. Writers place arrays in table order, each at a multiple of 64
    bytes, with zero padding; readers must not rely on this.

Readers reject files whose binary version they do not know, and ignore
header keys they do not know (later minor additions stay readable).

Files are written atomically: to a temporary file in the target's
directory, flushed and fsynced, then renamed over the target with
``os.replace`` (the directory is fsynced too where the platform allows).
"""
import hashlib
import json
import math
import os
import stat
import struct
import tempfile

import numpy as np

from cdl import layers as _layers
from cdl.layers import register_layer
from cdl.model import Sequential

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "register_layer",
           "ModelFileError", "MAGIC", "FORMAT_VERSION"]

MAGIC = b"CDLMODEL"
FORMAT_VERSION = 1
FORMAT_NAME = "cdl-model"
_PREFIX = struct.Struct("<8sIQ")   # magic, version, header length
_DIGEST_SIZE = 32
_ALIGN = 64
_DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8"), "int64": np.dtype("<i8")}
_MAX_NDIM = 32
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class ModelFileError(ValueError):
    """A model or weights file is not valid: wrong type, corrupted, truncated
    or inconsistent with itself."""


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
    """
    header, arrays = _model_header(model, "model", include_optimizer)
    _atomic_write(path, lambda f: _write_file(f, header, arrays))


def save_weights(model, path):
    """Save only the model's weights (its flat parameter buffer) and the
    layers' buffers (such as BatchNorm's running statistics)."""
    header, arrays = _model_header(model, "weights", False)
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
        "model": model.get_config(),
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


def _atomic_write(path, write_contents):
    """Write a file through a temporary file in the same directory and os.replace."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = _umask_mode()
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path)[:64] + ".", suffix=".tmp",
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


# --- reading and validating -----------------------------------------------------


class _File:
    """A parsed, checksum-verified file: its header and its arrays (as copies)."""

    def __init__(self, header, arrays, path):
        self.header = header
        self.arrays = arrays
        self.path = path


def _read(path):
    """Read, verify and parse a file; raise ModelFileError for anything wrong."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        minimum = _PREFIX.size + _DIGEST_SIZE
        if size == 0:
            raise ModelFileError(f"{path}: the file is empty")
        prefix = f.read(_PREFIX.size)
        head = prefix[:len(MAGIC)]
        if head != MAGIC[:len(head)]:
            raise ModelFileError(f"{path}: not a cdl model file (wrong magic bytes)")
        if size < minimum:
            raise ModelFileError(f"{path}: the file is truncated ({size} bytes; the "
                                 f"smallest valid file has {minimum})")
        _, version, header_len = _PREFIX.unpack(prefix)
        if version != FORMAT_VERSION:
            raise ModelFileError(f"{path}: unsupported format version {version} (this "
                                 f"version of cdl reads version {FORMAT_VERSION})")
        if header_len > size - minimum:  # checked before anything is allocated
            raise ModelFileError(f"{path}: the file is truncated or corrupted (its header "
                                 f"claims {header_len} bytes, the file has {size})")
        data = prefix + f.read()
    if len(data) != size:
        raise ModelFileError(f"{path}: the file changed while it was read")
    body = memoryview(data)[:-_DIGEST_SIZE]
    if hashlib.sha256(body).digest() != data[-_DIGEST_SIZE:]:
        raise ModelFileError(f"{path}: checksum mismatch: the file is corrupted or truncated")
    header_end = _PREFIX.size + header_len
    try:
        header = json.loads(data[_PREFIX.size:header_end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ModelFileError(f"{path}: the header is not valid JSON ({err})") from None
    check = _Checker(path)
    check.expect(header, dict, "the header")
    if header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: header field 'format' is {header.get('format')!r}, "
                             f"expected {FORMAT_NAME!r}")
    if header.get("format_version") != version:
        raise ModelFileError(f"{path}: header format_version {header.get('format_version')!r}"
                             f" disagrees with the binary version {version}")
    arrays = _read_arrays(check, header, data, header_end, size - _DIGEST_SIZE)
    return _File(header, arrays, path)


class _Checker:
    """Field validation with messages naming the file and the field."""

    def __init__(self, path):
        self.path = path

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

    def int(self, value, where, low=0):
        self.expect(value, int, where)
        if value < low:
            self.fail(f"{where} must be at least {low}, got {value}")
        return value

    def shape(self, value, where, low=0):
        self.expect(value, list, where)
        if len(value) > _MAX_NDIM:
            self.fail(f"{where} has {len(value)} axes (at most {_MAX_NDIM})")
        return tuple(self.int(d, f"{where}[{i}]", low) for i, d in enumerate(value))


def _read_arrays(check, header, data, data_start, data_end):
    """Validate the array table and return {name: array copy in native byte order}."""
    table = check.key(header, "arrays", list, "the header")
    data_len = data_end - data_start
    spans = []
    entries = {}
    for i, entry in enumerate(table):
        where = f"array table entry {i}"
        check.expect(entry, dict, where)
        name = check.key(entry, "name", str, where)
        where = f"array {name!r}"
        if name in entries:
            check.fail(f"the array table lists {name!r} twice")
        dtype_name = check.key(entry, "dtype", str, where)
        if dtype_name not in _DTYPES:
            check.fail(f"{where} has dtype {dtype_name!r}; allowed are {', '.join(_DTYPES)}")
        dtype = _DTYPES[dtype_name]
        shape = check.shape(check.key(entry, "shape", list, where), f"{where}.shape")
        offset = check.int(check.key(entry, "offset", int, where), f"{where}.offset")
        nbytes = check.int(check.key(entry, "nbytes", int, where), f"{where}.nbytes")
        expected = math.prod(shape) * dtype.itemsize
        if nbytes != expected:
            check.fail(f"{where} has nbytes {nbytes}, but shape {list(shape)} of "
                       f"{dtype_name} needs {expected}")
        if offset + nbytes > data_len:
            check.fail(f"{where} (bytes {offset} to {offset + nbytes}) lies outside the "
                       f"data section ({data_len} bytes)")
        if nbytes:
            spans.append((offset, offset + nbytes, name))
        entries[name] = (dtype, shape, offset)
    spans.sort()
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:
            check.fail(f"arrays {first!r} and {second!r} overlap")
    arrays = {}
    for name, (dtype, shape, offset) in entries.items():
        count = math.prod(shape)
        native = dtype.newbyteorder("=")
        if count == 0:
            arrays[name] = np.zeros(shape, dtype=native)
            continue
        raw = np.frombuffer(data, dtype=dtype, count=count, offset=data_start + offset)
        arrays[name] = raw.astype(native, copy=True).reshape(shape)
    return arrays


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
    return {"dtype": dtype, "seed": seed, "input_shape": input_shape, "name": name,
            "layers": layer_specs}


def _build_layers(check, layer_specs):
    built = []
    for i, spec in enumerate(layer_specs):
        where = f"layer {i}"
        check.expect(spec, dict, where)
        class_name = check.key(spec, "class_name", str, where)
        config = check.key(spec, "config", dict, where)
        try:
            cls = _layers.get(class_name)
        except ValueError as err:
            check.fail(f"layer {i}: {err}")
        try:
            layer = cls.from_config(dict(config))
        except Exception as err:  # noqa: BLE001 - any constructor error is a bad file
            check.fail(f"layer {i} ({class_name}) cannot be created from its config "
                       f"{config!r}: {type(err).__name__}: {err}")
        if not isinstance(layer, _layers.Layer):
            check.fail(f"layer {i} ({class_name}).from_config did not return a Layer")
        built.append(layer)
    return built


def _check_layout(check, header, model, what="the file"):
    """The file's per-weight shapes against the model's; name the first mismatch."""
    layout = check.key(header, "param_layout", list, "the header")
    current = _param_layout(model)
    for i, entry in enumerate(layout):
        check.expect(entry, dict, f"param_layout[{i}]")
        shape = check.shape(check.key(entry, "shape", list, f"param_layout[{i}]"),
                            f"param_layout[{i}].shape")
        label = f"{entry.get('layer')!s}.{entry.get('weight')!s}"
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
    written. Returns ([(target array, saved array)], names of the arrays used)."""
    saved = []
    for i, entry in enumerate(check.expect(header.get("buffers", []), list, "buffers")):
        where = f"buffers[{i}]"
        check.expect(entry, dict, where)
        key = (check.key(entry, "layer", str, where), check.key(entry, "buffer", str, where))
        array_name = check.key(entry, "array", str, where)
        if array_name not in arrays:
            check.fail(f"buffer {key[0]}.{key[1]} refers to a missing array {array_name!r}")
        saved.append((key, array_name))
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
    pairs, used = [], set()
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
        used.add(array_name)
    return pairs, used


def _params_array(check, file, size):
    params = file.arrays.get("params")
    if params is None:
        check.fail("the file has no 'params' array")
    if params.ndim != 1:
        check.fail(f"the 'params' array must be flat, got shape {list(params.shape)}")
    if params.dtype.kind != "f":
        check.fail(f"the 'params' array has dtype {params.dtype}, expected a float dtype")
    if params.size != size:
        check.fail(f"the file holds {params.size} parameters, the architecture has {size}")
    return params


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
    """
    file = _read(path)
    check = _Checker(file.path)
    header = file.header
    kind = header.get("kind")
    if kind == "weights":
        check.fail("this is a weights file (from save_weights); load it into a model "
                   "with model.load_weights")
    if kind != "model":
        check.fail(f"header field 'kind' is {kind!r}, expected 'model'")
    config = _model_config(check, header)
    built = check.key(header, "built", bool, "the header")
    layer_list = _build_layers(check, config["layers"])
    if built and (config["input_shape"] is None or not layer_list):
        check.fail("the header says the model was built, but it has no input shape or layers")
    known = {"params"}
    try:
        model = Sequential(layer_list, dtype=config["dtype"], seed=config["seed"],
                           name=config["name"])
        model.input_shape = config["input_shape"]
        if built:
            model.build()
    except Exception as err:  # noqa: BLE001 - an inconsistent config is a bad file
        check.fail(f"the model cannot be rebuilt from its config: {type(err).__name__}: {err}")
    if built:
        try:
            _check_layout(check, header, model)
        except ValueError as err:
            raise ModelFileError(str(err)) from None
    params = _params_array(check, file, model.param_buffer.size)
    if params.dtype != model.dtype:
        check.fail(f"the 'params' array is {params.dtype}, the model {model.dtype}")
    try:
        buffer_pairs, used = _buffer_values(check, header, model, file.arrays, by_name=True)
    except ModelFileError:
        raise
    except ValueError as err:
        raise ModelFileError(str(err)) from None
    known |= used

    compile_config = header.get("compile")
    opt_section = header.get("optimizer")
    if compile_config is not None:
        check.expect(compile_config, dict, "the compile config")
        try:
            model.compile_from_config(compile_config)
        except Exception as err:  # noqa: BLE001 - a bad config is a bad file
            check.fail(f"the model cannot be compiled from its saved compile config: "
                       f"{type(err).__name__}: {err}")
    elif opt_section is not None:
        check.fail("the file has optimizer state but no compile config")
    if opt_section is not None:
        known |= _restore_optimizer(check, model, opt_section, file.arrays)
    extra = set(file.arrays) - known
    if extra:
        check.fail(f"the file has arrays nothing refers to: {sorted(extra)}")
    _restore_rng(check, model, header.get("rng"))
    model.param_buffer[...] = params
    for target, saved in buffer_pairs:
        target[...] = saved
    return model


def _restore_optimizer(check, model, section, arrays):
    """Load the optimizer state into the freshly compiled model; return array names used."""
    optimizer = model.optimizer
    where = "optimizer"
    check.expect(section, dict, where)
    class_name = check.key(section, "class_name", str, where)
    if class_name != type(optimizer).__name__:
        check.fail(f"the optimizer state is for {class_name}, the compile config makes "
                   f"{type(optimizer).__name__}")
    iterations = check.int(check.key(section, "iterations", int, where), "optimizer.iterations")
    scalars = check.key(section, "scalars", dict, where)
    for key, value in scalars.items():
        check.expect(value, (int, float), f"optimizer.scalars.{key}")
    state_names = check.key(section, "state", dict, where)
    unknown = set(state_names) - set(optimizer._state_names)
    if unknown:
        check.fail(f"unknown {class_name} state {sorted(unknown)}; it keeps "
                   f"{list(optimizer._state_names)}")
    used = set()
    state = {}
    size = model.param_buffer.size
    for name, array_name in state_names.items():
        if array_name is None:
            state[name] = None
            continue
        check.expect(array_name, str, f"optimizer.state.{name}")
        if array_name not in arrays:
            check.fail(f"optimizer state {name!r} refers to a missing array {array_name!r}")
        array = arrays[array_name]
        if array.dtype != model.dtype or array.shape != (size,):
            check.fail(f"optimizer state {name!r} is {array.dtype} of shape "
                       f"{list(array.shape)}; the model needs {model.dtype} of shape [{size}]")
        state[name] = array
        used.add(array_name)
    groups = []
    for g, group in enumerate(check.expect(section.get("param_groups", []), list,
                                         "optimizer.param_groups")):
        check.expect(group, dict, f"optimizer.param_groups[{g}]")
        indices = check.key(group, "params", list, f"optimizer.param_groups[{g}]")
        for i in indices:
            check.int(i, f"optimizer.param_groups[{g}].params index")
            if i >= len(model.params):
                check.fail(f"optimizer.param_groups[{g}] refers to parameter {i}; the model "
                           f"has {len(model.params)}")
        groups.append({"params": [model.params[i] for i in indices],
                       "lr_mult": group.get("lr_mult", 1.0),
                       "weight_decay_mult": group.get("weight_decay_mult", 1.0)})
    try:
        optimizer.param_groups = optimizer._check_groups(groups)
        optimizer.load_state_dict({"class": class_name, "config": optimizer.get_config(),
                                   "iterations": iterations, "scalars": scalars,
                                   "state": state})
    except (TypeError, ValueError) as err:
        check.fail(f"the optimizer state cannot be restored: {err}")
    return used


def _restore_rng(check, model, state):
    if state is None:
        return
    check.expect(state, dict, "rng")
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        check.fail(f"rng.bit_generator is {name!r}; expected one of {', '.join(_BIT_GENERATORS)}")
    old = model.rng
    try:
        if type(old.bit_generator).__name__ == name:
            old.bit_generator.state = state
            return
        bit_generator = getattr(np.random, name)()
        bit_generator.state = state
    except Exception as err:  # noqa: BLE001 - numpy rejects a bad state in many ways
        check.fail(f"the random generator state is invalid: {type(err).__name__}: {err}")
    model.rng = np.random.Generator(bit_generator)
    for layer in model.layers:
        if getattr(layer, "_rng", None) is old:
            layer._rng = model.rng


def load_weights(model, path):
    """Copy the weights saved by ``save_weights`` (or ``save_model``) into ``model``,
    and the layers' buffers (such as BatchNorm's running statistics).

    The model's weights must have the same shapes, in the same order, as
    the saved ones (layer names may differ). An unbuilt model is built for
    the saved input shape first. Weights saved in another float dtype are
    converted to the model's.

    Raises
    ------
    ModelFileError
        If the file is not valid.
    ValueError
        If the architecture does not match (the message names the first
        differing weight).
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"expected a cdl.Sequential model, got {type(model).__name__}")
    file = _read(path)
    check = _Checker(file.path)
    header = file.header
    if header.get("kind") not in ("model", "weights"):
        check.fail(f"header field 'kind' is {header.get('kind')!r}, expected 'weights'")
    config = _model_config(check, header)
    if not check.key(header, "built", bool, "the header"):
        check.fail("the file was saved from a model that was not built; it holds no weights")
    if not model.built:
        if model.input_shape is None and config["input_shape"] is not None:
            model.build(config["input_shape"])
        else:
            model.build()
    _check_layout(check, header, model)
    params = _params_array(check, file, model.param_buffer.size)
    buffer_pairs, _ = _buffer_values(check, header, model, file.arrays, by_name=False)
    model.param_buffer[...] = params.astype(model.dtype, copy=False)
    for target, saved in buffer_pairs:
        target[...] = saved
