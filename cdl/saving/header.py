"""Checking a model file's header, field by field, before any field is used.

``check_header`` checks the type of every field of a parsed header (and,
through ``cdl.saving.training_state``, of its training state), and that
every array of the file is referred to; ``Checker`` reports each failure
as a ``ModelFileError`` naming the file and the field. The fields are
those of the format's specification, ``cdl.saving.format``.
"""
import math

from cdl.saving import format as spec
from cdl.saving.format import ModelFileError, short
from cdl.saving.preprocessors import check_preprocessors
from cdl.saving.training_state import check_training_state

__all__ = ["Checker", "check_header", "model_config", "size_text", "short"]


class Checker:
    """Field validation with messages naming the file and the field.

    With ``values=False`` the arrays are stand-ins of the declared dtypes and
    shapes (the data section is not read yet): checks of array contents are
    left to the pass made once they are read.
    """

    def __init__(self, path, values=True):
        self.path = path
        self.values = values
        #: ``model_config`` of the header ``check_header`` checked last.
        self.model = None

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
            self.fail(f"{where} must be at least {low}, got {size_text(value)}")
        if high is not None and value > high:
            self.fail(f"{where} must be at most {high}, got {size_text(value)}")
        return value

    def number(self, value, where, finite=True):
        self.expect(value, (int, float), where)
        if finite and not math.isfinite(value):
            self.fail(f"{where} must be a finite number, got {value}")
        return value

    def shape(self, value, where, low=0, free=False):
        """A shape; with ``free``, an axis may be null (a free time axis)."""
        self.expect(value, list, where)
        if len(value) > spec.MAX_NDIM:
            self.fail(f"{where} has {len(value)} axes (at most {spec.MAX_NDIM})")
        return tuple(None if free and d is None else self.int(d, f"{where}[{i}]", low, spec.MAX_INT)
                     for i, d in enumerate(value))

    def class_name(self, value, where):
        """A class name for a registry lookup: an identifier, never a path."""
        self.expect(value, str, where)
        if "." in value or "/" in value or ":" in value:
            self.fail(f"{where} is {value!r}, a dotted path; cdl looks classes up by name in "
                      "its own registries and never imports modules named in a file")
        if not value.isidentifier() or (value.startswith("__") and value.endswith("__")):
            self.fail(f"{where} is {value!r}, which is not a class name")
        return value


def size_text(n):
    """A size for a message: in full, or its order of magnitude if absurdly large
    (found without converting it to decimal, which Python refuses past 4,300 digits)."""
    if abs(n) < 10 ** 15:
        return str(n)
    sign = "-" if n < 0 else ""
    digits = int((abs(n).bit_length() - 1) * 0.30102999566398120)
    return f"about {sign}10**{digits + (abs(n) >= 10 ** (digits + 1))}"


def check_header(check, file):
    """Check the type of every header field, for both loaders; return the
    decoded training state (or None). Arrays nothing refers to are refused."""
    header = file.header
    kind = check.key(header, "kind", str, "the header")
    if kind not in ("model", "weights"):
        check.fail(f"header field 'kind' is {kind!r}, expected 'model' or 'weights'")
    if "cdl_version" in header:
        check.expect(header["cdl_version"], str, "the header.cdl_version")
    check.key(header, "built", bool, "the header")
    check.model = model_config(check, header)
    used = {"params"}
    used |= _check_param_layout(check, header, file.arrays)
    used |= _check_buffer_entries(check, header, file.arrays)
    _check_compile_config(check, header.get("compile"))
    used |= _check_optimizer_section(check, header.get("optimizer"), file.arrays)
    _check_rng(check, header.get("rng"))
    used |= check_preprocessors(check, header, file.arrays)
    training = None
    if header.get("training_state") is not None:
        training, training_used = check_training_state(check, header["training_state"],
                                                        file.arrays)
        used |= training_used
    extra = set(file.arrays) - used
    if extra:
        check.fail(f"the file has arrays nothing refers to: {sorted(extra)}")
    return training


def model_config(check, header):
    """The header's model config, checked: a dict of its ``dtype``, ``seed``,
    ``input_shape`` (a tuple or None), ``name``, ``layers`` (the layer
    specs, each with a class name and a config dict), ``graph`` (the
    checked graph of a graph model, or None for a ``Sequential``) and
    ``class_name`` (the model class: ``"Sequential"`` or the graph's)."""
    config = check.key(header, "model", dict, "the header")
    where = "model config"
    dtype = check.key(config, "dtype", str, where)
    if dtype not in ("float32", "float64"):
        check.fail(f"model config dtype must be 'float32' or 'float64', got {dtype!r}")
    seed = config.get("seed")
    if seed is not None:
        check.int(seed, "model config seed")
    graph = config.get("graph")
    default = "model" if graph is not None else "sequential"
    name = check.expect(config.get("name", default), str, "model config name")
    if graph is None:
        class_name = "Sequential"
        if "class_name" in config and config["class_name"] != class_name:
            check.class_name(config["class_name"], "model config class_name")
            check.fail(f"model config class_name is {short(config['class_name'])!r}, but the "
                       "model has no graph; only a Sequential is saved as a list of layers")
        input_shape = config.get("input_shape")
        if input_shape is not None:
            input_shape = check.shape(input_shape, "model config input_shape", low=1,
                                      free=True)
        layer_specs = _layer_specs(check, check.key(config, "layers", list, where), "layer")
    else:
        class_name = check.class_name(config.get("class_name", "Model"),
                                      "model config class_name")
        if class_name == "Sequential":
            check.fail("model config class_name is 'Sequential', but the model is saved as a "
                       "graph; a Sequential is saved as a list of layers")
        if "layers" in config or "input_shape" in config:
            check.fail("model config has both a graph and a list of layers")
        check.expect(graph, dict, "model config graph")
        _check_graph(check, graph)
        layer_specs = graph["layers"]
        shapes = [tuple(entry["shape"]) for entry in graph["inputs"]]
        input_shape = shapes[0] if len(shapes) == 1 else None
    return {"dtype": dtype, "seed": seed, "input_shape": input_shape, "name": name,
            "layers": layer_specs, "graph": graph, "class_name": class_name}


def _layer_specs(check, layer_specs, label):
    for i, spec in enumerate(layer_specs):
        if type(spec) is dict and type(spec.get("config")) is dict:
            name = spec.get("class_name")
            if type(name) is str and name.isidentifier() and not name.startswith("__"):
                continue   # valid: tested without building messages
        check.expect(spec, dict, f"{label} {i}")
        check.class_name(check.key(spec, "class_name", str, f"{label} {i}"),
                         f"{label} {i} class_name")
        check.key(spec, "config", dict, f"{label} {i}")
    return layer_specs


#: The dtypes a graph's input may be declared with (``cdl.Input``).
INPUT_DTYPES = ("float32", "float64", "int32", "int64", "uint8", "bool")


def _check_graph(check, graph):
    """A graph config's fields and references, before any layer is made:
    every tensor an input or an earlier call (no cycle, nothing dangling),
    every layer called, outputs distinct and named, and no more inputs or
    (weighted) calls than ``MAX_LAYERS``."""
    where = "model graph"
    inputs = check.key(graph, "inputs", list, where)
    specs = check.key(graph, "layers", list, where)
    nodes = check.key(graph, "nodes", list, where)
    outputs = check.key(graph, "outputs", list, where)
    if spec.too_many_calls(graph):
        check.fail(f"the model graph has more than {spec.MAX_LAYERS:,} inputs, or calls that "
                   f"cost more than {spec.MAX_LAYERS:,} layers (each call counting the layers "
                   f"it calls, a later call of a shared layer {spec.COPY_WEIGHT} times that); "
                   "cdl loads graphs of at most that size")
    if not inputs:
        check.fail("the model graph has no inputs")
    names = set()
    for i, entry in enumerate(inputs):
        at = f"graph input {i}"
        check.expect(entry, dict, at)
        name = check.key(entry, "name", str, at)
        if not name:
            check.fail(f"{at} has an empty name")
        if name in names:
            check.fail(f"two graph inputs are named {short(name)!r}")
        names.add(name)
        if not check.shape(check.key(entry, "shape", list, at), f"{at}.shape", low=1,
                           free=True):
            check.fail(f"{at}.shape is []: a sample has at least one axis")
        dtype = entry.get("dtype")
        if dtype is not None and dtype not in INPUT_DTYPES:
            check.expect(dtype, str, f"{at}.dtype")
            check.fail(f"{at}.dtype is {short(dtype)!r}; an input is declared as one of "
                       f"{', '.join(INPUT_DTYPES)}")
    _layer_specs(check, specs, "graph layer")
    n_inputs, n_specs = len(inputs), len(specs)
    called = set()
    for j, node in enumerate(nodes):
        # The common, valid case is tested first without building messages:
        # a graph of 50,000 calls is checked several times per load.
        if type(node) is dict:
            layer, reads = node.get("layer"), node.get("inputs")
            takes_list = node.get("list", False)
            if type(layer) is int and 0 <= layer < n_specs and type(reads) is list and reads \
                    and (takes_list is True or (takes_list is False and len(reads) == 1)) \
                    and all(type(ref) is list and len(ref) == 2 and type(ref[1]) is int
                            and ref[1] >= 0 and (ref[1] < j if ref[0] == "node" else
                                                 ref[0] == "input" and ref[1] < n_inputs)
                            for ref in reads):
                called.add(layer)
                continue
        _check_node(check, node, j, n_inputs, n_specs)
        # Valid after all (a reference to a later output of a call).
        called.add(node["layer"])
    if len(called) != len(specs):
        unused = min(set(range(len(specs))) - called)
        check.fail(f"graph layer {unused} is called by no call of the graph")
    if not outputs:
        check.fail("the model graph has no outputs")
    seen = set()
    for k, ref in enumerate(outputs):
        _check_ref(check, ref, len(inputs), len(nodes), f"graph output {k}")
        if tuple(ref) in seen:
            check.fail(f"graph output {k} is {ref!r}, which is already an output")
        seen.add(tuple(ref))
    output_names = graph.get("output_names")
    if output_names is not None:
        check.expect(output_names, list, "graph output_names")
        if len(output_names) != len(outputs):
            check.fail(f"the graph has {len(outputs)} outputs but {len(output_names)} "
                       "output_names")
        for k, name in enumerate(output_names):
            check.expect(name, str, f"graph output_names[{k}]")
        if len(set(output_names)) != len(output_names):
            check.fail("two graph outputs have the same name")


def _check_node(check, node, j, n_inputs, n_specs):
    """Find and report what is wrong with graph call ``j``."""
    at = f"graph call {j}"
    check.expect(node, dict, at)
    layer = check.int(check.key(node, "layer", int, at), f"{at}.layer")
    if layer >= n_specs:
        check.fail(f"{at} calls layer {size_text(layer)}, but the graph has "
                   f"{n_specs} layers (a dangling reference)")
    reads = check.key(node, "inputs", list, at)
    if not reads:
        check.fail(f"{at} reads no tensor")
    takes_list = check.expect(node.get("list", False), bool, f"{at}.list")
    if not takes_list and len(reads) != 1:
        check.fail(f"{at} gives {len(reads)} tensors to a layer that takes one "
                   "(\"list\": false)")
    for k, ref in enumerate(reads):
        _check_ref(check, ref, n_inputs, j, f"input {k} of {at}")


def _check_ref(check, ref, n_inputs, n_before, where):
    """A tensor reference: ``["input", i]`` with ``i < n_inputs`` or
    ``["node", j]`` with ``j < n_before`` (a call made before), or ``["node",
    j, k]``, output ``k`` of a call with several (a recurrent layer's
    returned state; the graph checks ``k`` against the layer)."""
    if not (type(ref) is list and (len(ref) == 2 and ref[0] in ("input", "node") or
                                   len(ref) == 3 and ref[0] == "node")):
        check.fail(f"{where} is {short(ref)}, not a tensor reference ['input', i] or "
                   "['node', j]")
    kind, index = ref[:2]
    check.int(index, f"{where} index")
    if len(ref) == 3:
        check.int(ref[2], f"{where} output")
    if kind == "input" and index >= n_inputs:
        check.fail(f"{where} refers to input {size_text(index)}, but the graph has "
                   f"{n_inputs} inputs (a dangling reference)")
    if kind == "node" and index >= n_before:
        check.fail(f"{where} refers to call {size_text(index)}, which is not made before "
                   "it: the graph would have a cycle or a dangling reference")


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
        check.fail(f"param_layout lists {size_text(total)} values, the 'params' array holds "
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
    """The compile settings' types: the optimizer and loss named by class
    name (a model with several outputs has an ``OutputLosses`` holding a
    loss, or null, and a weight per output), the metrics named (a list, or
    a list per output name), the clipping numbers."""
    if config is None:
        return
    where = "the compile config"
    check.expect(config, dict, where)
    for part in ("optimizer", "loss"):
        section = check.key(config, part, dict, where)
        check.class_name(check.key(section, "class_name", str, f"{where}.{part}"),
                         f"{where}.{part}.class_name")
        check.expect(section.get("config", {}), dict, f"{where}.{part}.config")
    loss = config["loss"]
    if loss["class_name"] == "OutputLosses":
        at = f"{where}.loss.config"
        per_output = check.key(loss, "config", dict, f"{where}.loss")
        for name, item in check.key(per_output, "losses", dict, at).items():
            if item is None:
                continue
            check.expect(item, dict, f"{at}.losses.{short(name)}")
            check.class_name(check.key(item, "class_name", str, f"{at}.losses.{short(name)}"),
                             f"{at}.losses.{short(name)}.class_name")
            check.expect(item.get("config", {}), dict, f"{at}.losses.{short(name)}.config")
        for name, weight in check.key(per_output, "loss_weights", dict, at).items():
            check.number(weight, f"{at}.loss_weights.{short(name)}")
    metrics = config.get("metrics")
    if isinstance(metrics, dict):
        for output, names in metrics.items():
            at = f"{where}.metrics.{short(output)}"
            for i, name in enumerate(check.expect(names, list, at)):
                check.expect(name, str, f"{at}[{i}]")
    elif metrics is not None:
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
              high=spec.MAX_INT)
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
                check.fail(f"{at}.params lists parameter {size_text(i)} "
                           + ("twice" if other == g else
                              f"again (optimizer.param_groups[{other}] lists it too)"))
            group_of[i] = g
        for key in ("lr_mult", "weight_decay_mult"):
            if key in group:
                check.number(group[key], f"{at}.{key}")
    return used


def _check_rng(check, state):
    """A bit generator state as NumPy lays it out: a known generator, and
    integers, lists of at most MAX_RNG_LIST integers, or objects of those.
    A list is checked in one pass of type tests (paths are built only for a
    value that fails), so a long one costs no more than its bytes."""
    if state is None:
        return
    check.expect(state, dict, "rng")
    name = state.get("bit_generator")
    if name not in spec.BIT_GENERATORS:
        check.fail(f"rng.bit_generator is {short(repr(name))}; expected one of "
                   f"{', '.join(spec.BIT_GENERATORS)}")
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
    if len(value) > spec.MAX_RNG_LIST:
        check.fail(f"{where} has {len(value)} values; NumPy's bit generators keep at most "
                   f"{spec.MAX_RNG_LIST}")
    if not all(type(v) is int for v in value):
        i = next(i for i, v in enumerate(value) if type(v) is not int)
        check.expect(value[i], int, f"{where}[{i}]")

