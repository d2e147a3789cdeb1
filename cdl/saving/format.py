"""The cdl model file format: one self-checking binary file, no pickle.

``save_model`` writes everything needed to continue training exactly where
it stopped (architecture, weights, compile settings, optimizer state and
the model's random generator); ``save_weights`` writes the weights alone.
``load_model`` and ``load_weights`` read them back (all four are in
``cdl.io``). Loading never runs code from the file: layer classes are
looked up by name through ``cdl.layers.get`` (built-ins and classes
registered with ``cdl.register_layer``), and every field is validated
before it is used.

This docstring is the specification (``docs/format.md`` renders it); the
constants below are its numbers, which the writer and the reader of
``cdl.saving`` share.

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
    The architecture. For a ``Sequential``, ``Sequential.get_config()``:
    ``name``, ``dtype``, ``seed``, ``input_shape`` (list or null) and
    ``layers`` (list of ``{"class_name", "config"}``). For a graph of
    layers (``cdl.Model``), ``Model.get_config()`` and the model's class:
    ``class_name`` (``"Model"``), ``name``, ``dtype``, ``seed`` and
    ``graph``, an object with

    ``inputs``
        One ``{"name", "shape", "dtype"}`` per input, in input order:
        ``shape`` the per-sample shape (sizes at least 1), ``dtype`` null
        or the declared dtype's name.
    ``layers``
        Each layer once, a shared one too, in the order of its first call:
        ``{"class_name", "config"}``.
    ``nodes``
        The layer calls in an order of computation: ``{"layer", "inputs",
        "list"}``, ``layer`` an index into ``layers``, ``inputs`` the
        tensors the call reads, ``list`` whether the layer takes a list of
        them (``layers.Add`` and the other merge layers). A tensor is
        ``["input", i]`` (input ``i``) or ``["node", j]`` (the output of
        call ``j``, which must come before the call that reads it).
    ``outputs``, ``output_names``
        The output tensors, in output order, and their names.

    A file without ``graph`` holds a ``Sequential`` (files written before
    graphs existed are such files).
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
    null in a weights file): ``optimizer`` and ``loss`` as ``{"class_name",
    "config"}``, ``metrics`` (a list of metric names, or for a model with
    several outputs a list of them per output name), ``clip_norm`` and
    ``clip_value``. The loss of a model with several outputs is an
    ``OutputLosses`` whose config holds ``losses`` (a loss, or null for an
    output that is not trained, per output name) and ``loss_weights`` (a
    number per output name).
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
``preprocessors`` (optional)
    The model's text preprocessors (``model.preprocessors``, a dict of
    ``cdl.text.TextVectorizer`` by name), so that one file holds the
    vocabulary with the weights; absent or ``[]`` when there are none, and
    never written in a weights file. A list, in the dict's order, of
    objects with

    ``name``
        The key in ``model.preprocessors`` (a non-empty string, each once).
    ``class_name``
        ``"TextVectorizer"``.
    ``config``
        ``TextVectorizer.get_config()`` without its ``vocabulary`` and
        ``tokenizer``, which are arrays: ``max_tokens``,
        ``output_sequence_length``, ``split``, ``lowercase``,
        ``standardize``, ``oov_token``, ``pad_token`` (and
        ``add_special_tokens`` for a wrapped tokenizer). A split or
        standardize function is recorded as ``"callable"``: its code is
        never stored, and ``load_model`` takes it again
        (``preprocessor_functions``).
    ``vocabulary_size``
        The number of tokens ``N`` (padding and OOV tokens included, at
        least 2 and at most ``cdl.text.storage.MAX_VOCABULARY``, 2**22), or
        null for a vectorizer saved before ``adapt``.
    ``token_bytes``, ``token_offsets``
        Null without a vocabulary; else the names of two arrays: a
        ``"uint8"`` array of the UTF-8 bytes of all tokens, one after
        another, and an ``"int64"`` array of shape ``[N + 1]`` whose token
        ``i`` is bytes ``offsets[i]`` to ``offsets[i + 1]`` (offsets start
        at 0, never decrease and end at the bytes' length).
    ``tokenizer_json``
        For a vectorizer wrapping a Hugging Face tokenizer (``split`` is
        ``"tokenizer"``), the name of a ``"uint8"`` array holding the
        tokenizer's own JSON form in UTF-8; null otherwise.

    The vocabulary is checked as ``TextVectorizer.load`` checks a file
    (``cdl.text.storage.check_config``): valid UTF-8, no token twice, the
    padding and OOV tokens first, at most ``max_tokens`` tokens.
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
    ``"int64"`` or ``"uint8"`` (only for the arrays of ``preprocessors``);
    ``offset`` counts bytes from the start of the data section;
    ``nbytes`` is exactly ``prod(shape) * itemsize``; arrays lie inside the
    data section and do not overlap. Names are ``"params"`` (the flat
    parameter buffer, ``model.param_buffer``), ``"buffers/<layer
    name>/<buffer name>"`` (in the model's dtype), ``"optimizer/<state
    name>"``, ``"training/<path>"`` (arrays of ``training_state``) and
    ``"preprocessors/<index>/<field>"`` (arrays of ``preprocessors``).
    Writers place arrays in table order, each at a multiple of 64 bytes,
    with zero padding, and end the data section with the last array;
    readers accept any placement, but refuse a data section with more than
    64 bytes per array, plus 64, that no array uses.

Readers reject files whose binary version they do not know, and ignore
header keys they do not know (later minor additions stay readable). Every
array must be referred to by a header field; readers older than
``training_state`` therefore refuse files whose training state holds
arrays (mid-epoch backups, or an ``EarlyStopping`` keeping best weights),
and readers older than ``preprocessors`` files with an adapted
preprocessor (whose arrays they neither know the dtype of nor use).

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
* a graph is checked before any of its layers is made: every reference
  names an input or an earlier call (so it has no cycle and nothing
  dangles), every layer is called, a layer that takes one tensor is given
  one, the outputs are distinct; it may not have more than ``MAX_LAYERS``
  inputs, nor calls that cost more than ``MAX_LAYERS`` layers: a call
  counts once per layer the called layer holds (itself included), and a
  later call of a shared layer, which makes a copy of it sharing its
  weights, ``COPY_WEIGHT`` (4) times that, so rebuilding a graph costs
  about what rebuilding as many layers does; its calls are then
  replayed as when the model was made, which refuses a layer called on
  shapes it cannot take and a shared layer called on two different
  shapes, and the model is built under the same allocation budget as a
  ``Sequential``;
* preprocessors are checked with the rest of the header (a known class, a
  valid config, a vocabulary size of at most 2**22 agreeing with the shape
  of its offsets, arrays of the right dtypes that no other field uses), and
  once the digest matches, before the model is rebuilt: offsets in range
  and in order, every token valid UTF-8, the vocabulary as
  ``TextVectorizer.load`` checks it; what this builds (the token strings)
  is proportional to the bytes the file holds for them;
* layer, optimizer, loss, metric and model classes are looked up by name
  in cdl's registries; a dotted path such as ``"os.system"`` is refused.

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
import struct

import numpy as np

__all__ = ["ModelFileError", "MAGIC", "FORMAT_VERSION", "FORMAT_NAME", "PREFIX", "DIGEST_SIZE",
           "ALIGN", "DTYPES", "MAX_NDIM", "MAX_HEADER", "MAX_DEPTH", "MAX_JSON_ITEMS",
           "MAX_DIGITS", "MAX_INT", "MAX_RNG_LIST", "BIT_GENERATORS", "TRAINING_PREFIX",
           "PREPROCESSOR_PREFIX", "short",
           "MAX_LAYERS", "COPY_WEIGHT", "too_many_layers", "too_many_calls", "jsonable", "pad"]

#: The 8 bytes every model and weights file starts with.
MAGIC = b"CDLMODEL"
#: The version of the binary format that ``save_model`` and ``save_weights`` write.
FORMAT_VERSION = 1
#: The header's ``format`` field.
FORMAT_NAME = "cdl-model"
#: The fixed prefix: magic, version, header length.
PREFIX = struct.Struct("<8sIQ")
#: Bytes of the SHA-256 digest that ends a file.
DIGEST_SIZE = 32
#: Writers align the data section and each array to this many bytes.
ALIGN = 64
#: The dtypes an array may have, by their name in the array table.
DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8"), "int64": np.dtype("<i8"),
          "uint8": np.dtype("u1")}
#: The most axes an array (or an input shape) may have.
MAX_NDIM = 32
#: The longest header readers accept, in bytes.
MAX_HEADER = 16 * 2 ** 20
#: The deepest JSON nesting of a header.
MAX_DEPTH = 64
#: Values and keys in a header (bounds what parsing builds).
MAX_JSON_ITEMS = 2 ** 19
#: Digits in a row in one header number.
MAX_DIGITS = 100
#: Axes, offsets, sizes and counts: what an int64 holds.
MAX_INT = 2 ** 63 - 1
#: The longest list in a NumPy bit generator state (MT19937's key).
MAX_RNG_LIST = 624
#: The bit generators a saved ``rng`` may name.
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
#: The start of the names of the training state's arrays.
TRAINING_PREFIX = "training/"
#: The start of the names of the preprocessors' arrays (the only ``"uint8"`` ones).
PREPROCESSOR_PREFIX = "preprocessors/"
#: The most layers (counting those inside other layers) a model file may
#: describe; ``save_model`` refuses larger models, so that every file it
#: writes loads. Ten times the deepest published networks (a few thousand
#: layers), and low enough that loading the largest header stays well within
#: a second or two and 100 MB (about 1 s and 50 MB for 50,000 weightless
#: layers on a 2-core machine): constructing a layer costs microseconds and
#: about a kilobyte, and a header could otherwise list some 90,000 of them.
MAX_LAYERS = 50_000
#: What a later call of a shared layer in a graph counts against
#: ``MAX_LAYERS``, per layer the called layer holds: such a call makes a copy
#: of the layer (sharing its weights), which costs several times making the
#: layer from its config (about 70 against 10 microseconds for a ``Dense``).
COPY_WEIGHT = 4


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


def too_many_layers(layer_specs):
    """Whether the layer configs describe more than ``MAX_LAYERS`` layers
    (nested ones too: any object with a "class_name" in a layer's config
    describes a sublayer). Stops counting at the limit.

    Examples
    --------
    >>> too_many_layers([{"class_name": "Dense", "config": {"units": 2}}])
    False
    """
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


def _nested_layers(spec, limit):
    """Layers a layer spec describes: itself and the specs inside its config
    (at most ``limit + 1`` counted)."""
    count, stack = 0, [spec]
    while stack and count <= limit:
        value = stack.pop()
        if type(value) is dict:
            if "class_name" in value:
                count += 1
            stack += [v for v in value.values() if type(v) is dict or type(v) is list]
        else:
            stack += [v for v in value if type(v) is dict or type(v) is list]
    return count


def too_many_calls(graph):
    """Whether a graph config has more than ``MAX_LAYERS`` inputs, or its
    calls cost more than ``MAX_LAYERS`` layers: a call counts the layers the
    called layer holds (itself included), a later call of a shared layer
    ``COPY_WEIGHT`` times that, since it makes a copy of the layer. Calls
    naming no valid layer count once (they are refused later). Stops
    counting at the limit.

    Examples
    --------
    >>> dense = {"class_name": "Dense", "config": {"units": 2}}
    >>> too_many_calls({"inputs": [{}], "layers": [dense],
    ...                 "nodes": [{"layer": 0, "inputs": [["input", 0]]}]})
    False
    """
    limit = MAX_LAYERS
    inputs, specs, nodes = graph.get("inputs"), graph.get("layers"), graph.get("nodes")
    if isinstance(inputs, list) and len(inputs) > limit:
        return True
    if not isinstance(nodes, list):
        return False
    if len(nodes) > limit:
        return True
    specs = specs if isinstance(specs, list) else []
    sizes = [_nested_layers(s, limit) for s in specs[:limit + 1]]
    total, called = 0, set()
    for node in nodes:
        index = node.get("layer") if isinstance(node, dict) else None
        if type(index) is int and 0 <= index < len(sizes):
            size = max(1, sizes[index])
            total += size * COPY_WEIGHT if index in called else size
            called.add(index)
        else:
            total += 1
        if total > limit:
            return True
    return False


def jsonable(value):
    """``value`` with NumPy arrays and scalars (as in bit generator states)
    turned into plain JSON values.

    Examples
    --------
    >>> import numpy as np
    >>> jsonable({"key": np.arange(3), "n": np.int64(4)})
    {'key': [0, 1, 2], 'n': 4}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def pad(n):
    """Zero bytes that bring an offset of ``n`` bytes to a multiple of ``ALIGN``.

    Examples
    --------
    >>> pad(20), pad(64)
    (44, 0)
    """
    return -n % ALIGN


def short(value, limit=300):
    """``str(value)`` cut to ``limit`` characters: messages may quote file content."""
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - e.g. RecursionError on a deeply nested value
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."
