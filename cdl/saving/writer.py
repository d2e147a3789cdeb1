"""Writing model and weights files.

``save_model`` and ``save_weights`` build the header (``model_header``) and
the list of arrays, then write the file (``write_file``) through
``cdl.saving.atomic.atomic_write``. The layout is specified in
``cdl.saving.format``.
"""
import hashlib
import json

import numpy as np

from cdl._validation import check_bool
from cdl._version import __version__
from cdl.saving import format as spec
from cdl.saving.atomic import atomic_write
from cdl.saving.models import check_model
from cdl.saving.preprocessors import encode_preprocessors

__all__ = ["save_model", "save_weights", "model_header", "write_file", "write_arrays",
           "param_layout", "buffer_layout"]


def save_model(model, path, include_optimizer=True):
    """Save a model (a ``cdl.Model`` graph or a ``Sequential``) with
    everything needed to resume training.

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
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
    header, arrays = model_header(model, "model", include_optimizer)
    atomic_write(path, lambda f: write_file(f, header, arrays))


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
    header, arrays = model_header(model, "weights", False)
    atomic_write(path, lambda f: write_file(f, header, arrays))


def param_layout(model):
    """The header's ``param_layout``: ``{"layer", "weight", "shape"}`` for each
    weight of ``model``, in the order of ``model.params``."""
    return [{"layer": owner.name, "weight": name, "shape": list(getattr(owner, name).shape)}
            for layer in model.layers for owner, name in layer.weight_owners()]


def buffer_layout(model):
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


def model_header(model, kind, include_optimizer):
    """The header dict of ``model`` (without the array table) and the
    [(name, array)] to write; ``kind`` is ``"model"`` or ``"weights"``."""
    check_model(model)
    if model.built:
        # A graph model whose layers another model (sharing them) holds now
        # takes their current weights back, so that the file has them.
        model.ensure_built()
    if not model.built and (model.input_shape is not None
                            or any(layer.built for layer in model.layers)):
        raise ValueError("the model is only partly built; call model.build() before saving")
    if kind == "weights" and not model.built:
        raise ValueError("the model has no weights yet: build it (or run it once) first")
    arrays = [("params", model.param_buffer)]
    buffers = []
    for layer, name, array in (buffer_layout(model) if model.built else []):
        array_name = f"buffers/{layer.name}/{name}"
        if any(entry["array"] == array_name for entry in buffers):
            raise ValueError(f"two buffers would be saved as {array_name!r}; rename a layer")
        buffers.append({"layer": layer.name, "buffer": name, "array": array_name})
        arrays.append((array_name, array))
    header = {
        "format": spec.FORMAT_NAME,
        "format_version": spec.FORMAT_VERSION,
        "kind": kind,
        "cdl_version": __version__,
        "model": _model_config_to_save(model),
        "built": bool(model.built),
        "param_layout": param_layout(model) if model.built else [],
        "buffers": buffers,
        "compile": None,
        "optimizer": None,
        "rng": None,
    }
    if kind == "model":
        header["preprocessors"], preprocessor_arrays = encode_preprocessors(model)
        arrays.extend(preprocessor_arrays)
        header["compile"] = model.compile_config()
        header["rng"] = spec.jsonable(model.rng.bit_generator.state)
        if include_optimizer and model.optimizer is not None:
            section, opt_arrays = _optimizer_section(model)
            header["optimizer"] = section
            arrays.extend(opt_arrays)
    return spec.jsonable(header), arrays


def _model_config_to_save(model):
    """``model.get_config()``, and for a graph the model's class (loading
    makes the same class, looked up by this name among the registered ones),
    refused if loading would refuse its size."""
    config = model.get_config()
    graph = config.get("graph")
    if spec.too_many_layers(config["layers"] if graph is None else graph["layers"]):
        raise ValueError(f"the model has more than {spec.MAX_LAYERS:,} layers (counting those "
                         "inside other layers); cdl saves and loads models of at most that many")
    if graph is not None:
        if spec.too_many_calls(graph):
            raise ValueError(f"the model has more than {spec.MAX_LAYERS:,} inputs, or calls that "
                             f"cost more than {spec.MAX_LAYERS:,} layers (each call counting the "
                             f"layers it calls, a later call of a shared layer "
                             f"{spec.COPY_WEIGHT} times that); cdl saves and loads graphs of at "
                             "most that size")
        config = {"class_name": type(model).__name__, **config}
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
        "config": spec.jsonable(state["config"]),
        "iterations": int(state["iterations"]),
        "scalars": spec.jsonable(state["scalars"]),
        "state": names,
        "param_groups": groups,
    }
    return section, arrays


def write_file(f, header, arrays):
    """Write the complete file to the binary file object ``f``: the prefix,
    ``header`` with the array table added, the [(name, array)] ``arrays``
    (each aligned, in this order) and the digest."""
    table = []
    prepared = []
    offset = 0
    for name, array in arrays:
        dtype_name = np.dtype(array.dtype).name
        if dtype_name not in spec.DTYPES:
            raise TypeError(f"array {name!r} has dtype {array.dtype}; only "
                            f"{', '.join(spec.DTYPES)} can be saved")
        data = np.ascontiguousarray(array, dtype=spec.DTYPES[dtype_name])
        offset += spec.pad(offset)
        table.append({"name": name, "dtype": dtype_name, "shape": list(data.shape),
                      "offset": offset, "nbytes": data.nbytes})
        prepared.append((offset, data))
        offset += data.nbytes
    header = dict(header, arrays=table)
    text = json.dumps(header, separators=(",", ":"), allow_nan=True).encode("utf-8")
    text += b" " * spec.pad(spec.PREFIX.size + len(text))
    hasher = hashlib.sha256()

    def write(chunk):
        hasher.update(chunk)
        f.write(chunk)

    write(spec.PREFIX.pack(spec.MAGIC, spec.FORMAT_VERSION, len(text)))
    write(text)
    write_arrays(write, prepared)
    f.write(hasher.digest())


def write_arrays(write, prepared):
    """Write each (offset, array) of the data section, zero-padding the gaps."""
    position = 0
    for offset, data in prepared:
        if offset > position:
            write(bytes(offset - position))
        write(memoryview(data.reshape(-1)).cast("B"))
        position = offset + data.nbytes
