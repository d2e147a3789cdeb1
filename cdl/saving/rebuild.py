"""Rebuilding a model from a checked file, and restoring state into a model.

``load_model`` makes the layers from their configs (looked up by name in
cdl's registries), builds them under an allocation budget
(``cdl.layers.base.allocation_budget``: no initialiser runs, and nothing
is allocated past what the file holds), compiles the model again and
restores its optimizer and random generator. ``load_weights`` copies a
file's weights and buffers into an existing model; ``restore_model_state``
restores everything a file holds into a compiled model, as a training
backup does.
"""
import contextlib

import numpy as np

from cdl import layers
from cdl._concurrency import guard_of
from cdl.layers import Layer, iter_layers
from cdl.layers.base import AllocationError, allocation_budget
from cdl.saving import format as spec
from cdl.saving.format import ModelFileError
from cdl.saving.header import Checker, check_header, model_config, short
from cdl.saving.models import check_model, model_class
from cdl.saving.preprocessors import check_functions, restore_preprocessors
from cdl.saving.reader import read
from cdl.saving.writer import buffer_layout, param_layout

__all__ = ["load_model", "load_weights", "restore_model_state"]


@contextlib.contextmanager
def _allocation_budget(check, numbered, file, label="layer"):
    """Build the layers of ``numbered``, (index, layer) pairs in the order
    they are built, for ``file``, whose
    values then overwrite theirs: no initialiser runs, and a weight or buffer
    past what the file holds is refused before it is allocated, so a few
    bytes of config cannot make ``build`` allocate and fill terabytes. Yields
    the budget (see ``cdl.layers.base.allocation_budget``)."""
    weights = file.arrays["params"].size
    arrays = {entry["array"] for entry in file.header.get("buffers", [])}
    buffers = sum(file.arrays[name].size for name in arrays)
    try:
        with allocation_budget(weights, buffers, "the file",
                               flat=file.arrays["params"]) as budget:
            yield budget
    except AllocationError as err:
        # Layers are built in order: the first one not built failed.
        i, layer = next(((i, layer) for i, layer in numbered if not layer.built), numbered[-1])
        check.fail(f"{label} {i} ({type(layer).__name__} {layer.name!r}): {err}")


def _count_layer_specs(check, layer_specs):
    """Refuse, before any layer is made, a config of more than ``MAX_LAYERS`` layers."""
    if spec.too_many_layers(layer_specs):
        check.fail(f"the model config describes more than {spec.MAX_LAYERS:,} layers "
                   "(cdl loads models of at most that many)")


def _build_layers(check, layer_specs, label="layer"):
    _count_layer_specs(check, layer_specs)
    built = []
    for i, entry in enumerate(layer_specs):
        class_name, config = entry["class_name"], entry["config"]
        try:
            cls = layers.get(class_name)
        except ValueError as err:
            check.fail(f"{label} {i}: {err}")
        try:
            layer = cls.from_config(dict(config))
        except Exception as err:  # noqa: BLE001 - any constructor error is a bad file
            check.fail(f"{label} {i} ({class_name}) cannot be created from its config: "
                       f"{type(err).__name__}: {short(err)}")
        if not isinstance(layer, Layer):
            check.fail(f"{label} {i} ({class_name}).from_config did not return a Layer")
        built.append(layer)
    return built


def _graph_class(check, class_name):
    """The registered graph model class a file names (not ``Sequential``)."""
    try:
        cls = model_class(class_name)
    except KeyError:
        check.fail(f"unknown model class {class_name!r}: a graph model file holds a cdl.Model "
                   "or a subclass registered with cdl.saving.models.register_model_class")
    if not (isinstance(cls, type) and issubclass(cls, model_class("Model"))) or \
            issubclass(cls, model_class("Sequential")):
        check.fail(f"model class {class_name!r} is not a graph model")
    return cls


def _rebuild_graph(check, config, file):
    """A graph model from the checked config: its layers made (classes looked
    up by name), its calls replayed (``cdl.graph.from_config``, which refuses
    a layer called on shapes it cannot take, such as a shared layer called on
    two different shapes) and the model built under the file's allocation
    budget."""
    graph = config["graph"]
    cls = _graph_class(check, config["class_name"])
    layer_list = _build_layers(check, graph["layers"], "graph layer")
    made = iter(layer_list)
    # Layers are built in the order of their first call.
    firsts = list(dict.fromkeys(node["layer"] for node in graph["nodes"]))
    in_build_order = [(i, layer_list[i]) for i in firsts]
    try:
        with _allocation_budget(check, in_build_order, file, "graph layer"):
            model = cls.from_config({"name": config["name"], "dtype": config["dtype"],
                                     "seed": config["seed"], "graph": graph},
                                    make_layer=lambda name, cfg: next(made),
                                    max_nodes=spec.MAX_LAYERS)
    except ModelFileError:
        raise
    except Exception as err:  # noqa: BLE001 - an inconsistent graph is a bad file
        check.fail(f"the model graph cannot be rebuilt: {type(err).__name__}: {short(err)}")
    if not isinstance(model, cls) or not model.built:
        check.fail(f"{cls.__name__}.from_config did not return a built {cls.__name__}")
    return model


def _check_layout(check, header, model, what="the file"):
    """The file's per-weight shapes against the model's; name the first mismatch."""
    layout = header["param_layout"]
    current = param_layout(model)
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
    mine = buffer_layout(model)
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


def load_model(path, preprocessor_functions=None):
    """Load a model saved by ``save_model`` (or ``model.save``).

    The model, a graph (``cdl.Model``, or the registered subclass that was
    saved) or a ``Sequential``, is rebuilt from its configuration without
    running any code from the file, gets its weights back, is
    compiled again if it was compiled, and has its optimizer state and
    random generator restored, so ``fit`` continues exactly as it would have
    in the original. Its text preprocessors (``model.preprocessors``) are
    restored too, checked as ``TextVectorizer.load`` checks a file; a file
    written before preprocessors existed gives an empty dict.

    Parameters
    ----------
    path : str or os.PathLike
    preprocessor_functions : dict, optional
        For a preprocessor saved with a split or standardize function
        (whose code a file never holds): ``{name: {"split": function,
        "standardize": function}}``, giving again exactly the functions
        it was saved with.

    Raises
    ------
    ModelFileError
        If the file is not a valid model file (a ``ValueError``).
    ValueError
        If a preprocessor's function is missing from
        ``preprocessor_functions`` (the message names the preprocessor and
        what to pass), or one is given that the file does not take.
    ImportError
        For a preprocessor wrapping a Hugging Face tokenizer, without the
        ``tokenizers`` package.

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
    cdl.saving.format.ModelFileError: bad.cdl: not a cdl model file ...
    """
    file = read(path)
    check = Checker(file.path)
    header = file.header
    if header.get("kind") == "weights":
        check.fail("this is a weights file (from save_weights); load it into a model "
                   "with model.load_weights")
    check_header(check, file)
    config = check.model
    functions = check_functions(check, header, preprocessor_functions)
    preprocessors = restore_preprocessors(check, header, file.arrays, functions)
    built = header["built"]
    if config["graph"] is not None:
        if not built:
            check.fail("the header says the model was not built, but a graph model is built "
                       "when it is made")
        model = _rebuild_graph(check, config, file)
    else:
        model = _rebuild_sequential(check, config, built, file)
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
                       f"{type(err).__name__}: {short(err)}")
    elif opt_section is not None:
        check.fail("the file has optimizer state but no compile config")
    if opt_section is not None:
        _restore_optimizer(check, model, opt_section, file.arrays)
    _restore_rng(check, model, header.get("rng"))
    model.param_buffer[...] = params
    for target, saved in buffer_pairs:
        target[...] = saved
    model.preprocessors = preprocessors
    return model


def _rebuild_sequential(check, config, built, file):
    layer_list = _build_layers(check, config["layers"])
    if built and (config["input_shape"] is None or not layer_list):
        check.fail("the header says the model was built, but it has no input shape or layers")
    try:
        model = model_class("Sequential")(layer_list, dtype=config["dtype"], seed=config["seed"],
                           name=config["name"])
        model.input_shape = config["input_shape"]
        if built:
            with _allocation_budget(check, list(enumerate(model.layers)), file):
                model.build()
    except ModelFileError:
        raise
    except Exception as err:  # noqa: BLE001 - an inconsistent config is a bad file
        check.fail(f"the model cannot be rebuilt from its config: {type(err).__name__}: "
                   f"{short(err)}")
    return model


def restore_model_state(check, file, model):
    """Restore into the compiled, built ``model`` the state a model file
    holds: weights, buffers, optimizer state and hyper-parameters, and the
    random generator. Everything is checked before the model changes.

    Parameters
    ----------
    check : cdl.saving.header.Checker
        The checker of ``file``.
    file : cdl.saving.reader.SavedFile
        A file read by ``cdl.saving.reader.read`` whose header passed
        ``cdl.saving.header.check_header``.
    model : cdl.Model or cdl.Sequential
        The model to restore into; its parameter groups must match the saved ones.

    Raises
    ------
    ModelFileError
        If the file is invalid or was saved from another kind of model.
    """
    header = file.header
    if header["kind"] != "model":
        check.fail("this is a weights file; a training backup is a model file")
    dtype = (check.model or model_config(check, header))["dtype"]
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
    unknown = set(state_names) - set(optimizer.state_names())
    if unknown:
        check.fail(f"unknown {class_name} state {sorted(unknown)}; it keeps "
                   f"{list(optimizer.state_names())}")
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
        groups = optimizer.check_param_groups(groups)
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
                   f"{short(err)}")
    model.rng = np.random.Generator(bit_generator)
    # A graph's later calls of a shared layer run copies that share its generator.
    runners = model._runners() if hasattr(model, "_runners") else model.layers
    for layer in iter_layers(list(model.layers) + list(runners)):
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
    check_model(model)
    file = read(path)
    check = Checker(file.path)
    header = file.header
    check_header(check, file)
    config = check.model
    if not header["built"]:
        check.fail("the file was saved from a model that was not built; it holds no weights")
    # The file is read and checked before the model is touched; from here on
    # the weights change, so predictions in other threads wait (they see the
    # old or the new weights, never a mix) and training in another thread is
    # refused, as for set_weights.
    guard = guard_of(model)
    guard.begin_weights_write(model.name, "load_weights")
    try:
        _load_weights_into(check, header, config, model, file)
    finally:
        guard.end_weights_write()


def _load_weights_into(check, header, config, model, file):
    """The part of ``load_weights`` that changes ``model``."""
    budget = None
    if model.built:
        # A graph model whose layers another model holds takes them back
        # first: the weights are written into the buffer that holds them.
        model.ensure_built()
    if not model.built and model.input_shape is None and config["input_shape"] is None \
            and config["graph"] is not None:
        raise ValueError(f"{check.path}: the file holds a graph of "
                         f"{len(config['graph']['inputs'])} inputs, which gives no input shape "
                         "to build this model for; build the model before loading its weights")
    try:
        if not model.built:
            with _allocation_budget(check, list(enumerate(model.layers)), file) as budget:
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
