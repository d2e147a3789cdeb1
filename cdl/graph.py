"""Graphs of layers: from the symbolic tensors of ``cdl.Input`` to a plan.

``cdl.Model(inputs, outputs)`` hands its tensors to ``trace``, which
follows the recorded layer calls (``cdl.layers.symbolic.Node``) back from
the outputs, checks the graph (every input used, every output reachable
from the inputs alone, names unique) and returns the calls in an order of
computation. ``to_config``/``from_config`` write a graph as JSON-friendly
data and rebuild it by replaying the calls, checking every reference; data
given by name (dicts) or position (lists) is put in the model's order by
``structure``.
"""
from cdl.layers import get as _layer_class
from cdl.layers.base import Layer
from cdl.layers.symbolic import Input, SymbolicTensor

__all__ = ["Graph", "trace", "to_config", "from_config", "structure", "normalise_tensors"]


class Graph:
    """A checked graph of layer calls.

    Attributes
    ----------
    inputs, outputs : list of SymbolicTensor
    input_names, output_names : list of str
    nodes : list of Node
        Every layer call the outputs depend on, in an order of computation
        (each after the calls it reads from).
    layers : list of Layer
        Each layer once, in the order of its first call.

    Examples
    --------
    >>> import cdl
    >>> from cdl import graph, layers
    >>> x = cdl.Input(shape=(4,), name="x")
    >>> g = graph.trace(x, layers.Dense(2, name="out")(layers.Dense(3, name="hidden")(x)))
    >>> [node.layer.name for node in g.nodes], g.output_names, g.is_chain()
    (['hidden', 'out'], ['out'], True)
    """

    def __init__(self, inputs, outputs, input_names, output_names, nodes, layers):
        self.inputs, self.outputs = inputs, outputs
        self.input_names, self.output_names = input_names, output_names
        self.nodes, self.layers = nodes, layers

    def is_chain(self):
        """True if the graph is one input through single-input layers, each
        called once, to one output: what ``Sequential`` computes."""
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            return False
        current = self.inputs[0]
        for node in self.nodes:
            if node.layer.takes_list or node.inputs != [current] or len(node.outputs) > 1:
                return False
            current = node.output
        return current is self.outputs[0] and len(self.layers) == len(self.nodes)


def normalise_tensors(value, what):
    """``(tensors, names or None)`` of a model's ``inputs`` or ``outputs``: a
    tensor, a list or tuple of them, or a dict name -> tensor.

    Examples
    --------
    >>> import cdl
    >>> from cdl.graph import normalise_tensors
    >>> a, b = cdl.Input(shape=(2,), name="a"), cdl.Input(shape=(3,), name="b")
    >>> tensors, names = normalise_tensors({"left": a, "right": b}, "inputs")
    >>> [t.name for t in tensors], names
    (['a', 'b'], ['left', 'right'])
    """
    if isinstance(value, SymbolicTensor):
        return [value], None
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"the model's {what} are empty")
        for key, tensor in value.items():
            if not isinstance(key, str):
                raise TypeError(f"the keys of the model's {what} must be strings, got {key!r}")
            if not key:
                raise ValueError(f"the keys of the model's {what} name them: an empty string "
                                 "is not a name")
            if not isinstance(tensor, SymbolicTensor):
                raise TypeError(f"{what}[{key!r}] must be a symbolic tensor (from cdl.Input or "
                                f"a layer called on one), got {type(tensor).__name__}")
        return list(value.values()), list(value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"the model's {what} are empty")
        for i, tensor in enumerate(value):
            if not isinstance(tensor, SymbolicTensor):
                raise TypeError(f"{what}[{i}] must be a symbolic tensor (from cdl.Input or a "
                                f"layer called on one), got {type(tensor).__name__}")
        return list(value), None
    raise TypeError(f"the model's {what} must be a symbolic tensor (cdl.Input, or a layer "
                    f"called on one), a list or a dict of them; got {type(value).__name__}")


def _unique(names, what):
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two {what} are named {name!r}; names must be unique")
        seen.add(name)


def trace(inputs, outputs):
    """Check the graph from ``inputs`` to ``outputs`` and return it as a ``Graph``.

    Raises
    ------
    TypeError
        If an input or output is not a symbolic tensor.
    ValueError
        If an input is not a ``cdl.Input`` or is given twice, an output is
        given twice, an output depends on an ``Input`` that is not among
        the inputs (it is disconnected from them), an input reaches no
        output, an input has shape () (no axis per sample), or two layers
        (or two inputs) share a name.

    Examples
    --------
    >>> import cdl
    >>> from cdl import graph, layers
    >>> a, b = cdl.Input(shape=(2,), name="a"), cdl.Input(shape=(2,), name="b")
    >>> shared = layers.Dense(3, name="shared")
    >>> g = graph.trace([a, b], layers.Add(name="sum")([shared(a), shared(b)]))
    >>> [node.layer.name for node in g.nodes], [layer.name for layer in g.layers]
    (['shared', 'shared', 'sum'], ['shared', 'sum'])
    >>> try:
    ...     graph.trace([a, b], shared(a))
    ... except ValueError as error:
    ...     print(error)
    the model's outputs do not depend on input(s) 'b'; remove them or use them
    """
    inputs, input_names = normalise_tensors(inputs, "inputs")
    outputs, output_names = normalise_tensors(outputs, "outputs")
    for tensor in inputs:
        if not tensor.is_input:
            raise ValueError(f"the model's inputs must be cdl.Input tensors; {tensor.name!r} is "
                             f"the output of layer {tensor.node.layer.name!r}")
    if len({t.id for t in inputs}) != len(inputs):
        raise ValueError("an input is given twice in the model's inputs")
    if len({t.id for t in outputs}) != len(outputs):
        raise ValueError("an output is given twice in the model's outputs")
    input_names = input_names or [t.name for t in inputs]
    _unique(input_names, "inputs")
    for tensor, name in zip(inputs, input_names):
        if not tensor.shape:
            # Data arrive as (samples, features...): a sample of no axis could
            # run through forward but never through fit or predict.
            raise ValueError(f"input {name!r} has shape (): a sample needs at least one axis, "
                             "e.g. shape=(1,) for one number per sample")
    if output_names is None:
        output_names = _output_names(outputs)
    _unique(output_names, "outputs")

    known = {t.id for t in inputs}
    nodes, seen, reached = {}, set(), set()
    for output, name in zip(outputs, output_names):
        pending = [output]
        while pending:
            tensor = pending.pop()
            if tensor.id in seen:
                continue
            seen.add(tensor.id)
            if tensor.is_input:
                if tensor.id not in known:
                    raise ValueError(
                        f"output {name!r} depends on input {tensor.name!r}, which is not among "
                        f"the model's inputs ({', '.join(repr(n) for n in input_names)}): the "
                        "output is disconnected from them")
                reached.add(tensor.id)
                continue
            nodes[tensor.node.id] = tensor.node
            pending.extend(tensor.node.inputs)
    unused = [n for t, n in zip(inputs, input_names) if t.id not in reached]
    if unused:
        raise ValueError(f"the model's outputs do not depend on input(s) "
                         f"{', '.join(repr(n) for n in unused)}; remove them or use them")
    ordered = [nodes[i] for i in sorted(nodes)]
    layers, by_id = [], set()
    for node in ordered:
        if id(node.layer) not in by_id:
            by_id.add(id(node.layer))
            layers.append(node.layer)
    _unique([layer.name for layer in layers], "layers of the model")
    clash = set(input_names) & {layer.name for layer in layers}
    if clash:
        raise ValueError(f"an input and a layer are both named {sorted(clash)[0]!r}; "
                         "names must be unique")
    return Graph(inputs, outputs, input_names, output_names, ordered, layers)


def _output_names(outputs):
    """Outputs are named after the layer that computes them (or the input
    they are); a layer called twice names its later outputs ``<name>_<k>``."""
    names, count = [], {}
    for tensor in outputs:
        base = tensor.name
        count[base] = count.get(base, 0) + 1
        names.append(base if count[base] == 1 else f"{base}_{count[base]}")
    return names


def structure(data, names, what, allow_missing=False):
    """``data`` for a model with inputs or outputs ``names``, as a list in
    their order: a single value (one name), a list or tuple in order, or a
    dict keyed by the names.

    With ``allow_missing``, a dict may leave names out (their entries are
    None): outputs without a loss need no targets.

    Raises
    ------
    ValueError
        If the count differs, or a dict has an unknown key or (unless
        allowed) misses one; the message names the keys.

    Examples
    --------
    >>> from cdl.graph import structure
    >>> structure({"b": 2, "a": 1}, ["a", "b"], "x")
    [1, 2]
    >>> structure({"a": 1}, ["a", "b"], "y", allow_missing=True)
    [1, None]
    >>> try:
    ...     structure({"a": 1, "c": 3}, ["a", "b"], "x")
    ... except ValueError as error:
    ...     print(error)
    x has unknown key(s) 'c'; expected 'a', 'b'
    """
    if isinstance(data, dict):
        unknown = [k for k in data if k not in names]
        if unknown:
            raise ValueError(f"{what} has unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                             f"expected {', '.join(repr(n) for n in names)}")
        missing = [n for n in names if n not in data]
        if missing and not allow_missing:
            raise ValueError(f"{what} is missing key(s) {', '.join(repr(n) for n in missing)}")
        return [data.get(n) for n in names]
    if len(names) == 1:
        if isinstance(data, (list, tuple)) and len(data) == 1 and \
                not isinstance(data[0], (list, tuple)) and not _is_number(data[0]) and \
                (hasattr(data[0], "__len__") or hasattr(data[0], "__array__")):
            # A one-element list of arrays: the model's one input. A nested
            # Python list ([[0.0, 1.0]]) is one batch of samples.
            return [data[0]]
        return [data]
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"the model has {len(names)} {what.split()[0]} "
                         f"({', '.join(repr(n) for n in names)}): give {what} as a list in "
                         f"that order or a dict keyed by those names, not one "
                         f"{type(data).__name__}")
    if len(data) != len(names):
        raise ValueError(f"{what} has {len(data)} entries, the model has {len(names)} "
                         f"({', '.join(repr(n) for n in names)})")
    return list(data)


def _is_number(value):
    return isinstance(value, (int, float, complex)) and not isinstance(value, bool)


# --- configuration ------------------------------------------------------------


def to_config(graph):
    """The graph as JSON-friendly data: the inputs, the layers' configs, the
    calls (layer index, tensors read) and the outputs. A tensor is written
    as ``["input", i]`` or ``["node", j]`` (the output of call ``j``).

    Examples
    --------
    >>> import cdl
    >>> from cdl import graph, layers
    >>> x = cdl.Input(shape=(4,), name="x")
    >>> config = graph.to_config(graph.trace(x, layers.Dense(2, name="out")(x)))
    >>> config["nodes"], config["outputs"], config["output_names"]
    ([{'layer': 0, 'inputs': [['input', 0]], 'list': False}], [['node', 0]], ['out'])
    """
    where = {t.id: ["input", i] for i, t in enumerate(graph.inputs)}
    index_of = {id(layer): i for i, layer in enumerate(graph.layers)}
    nodes = []
    for j, node in enumerate(graph.nodes):
        nodes.append({"layer": index_of[id(node.layer)],
                      "inputs": [where[t.id] for t in node.inputs],
                      "list": bool(node.layer.takes_list)})
        for k, out in enumerate(node.outputs):
            # A layer's later outputs (a recurrent layer's states): ["node", j, k].
            where[out.id] = ["node", j] if k == 0 else ["node", j, k]
    return {
        "inputs": [{"name": name, "shape": list(t.shape),
                    "dtype": None if t.dtype is None else t.dtype.name}
                   for name, t in zip(graph.input_names, graph.inputs)],
        "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                   for layer in graph.layers],
        "nodes": nodes,
        "outputs": [where[t.id] for t in graph.outputs],
        "output_names": list(graph.output_names),
    }


def _checked_list(value, what, limit=None):
    if not isinstance(value, list):
        raise ValueError(f"the graph's {what} must be a list, got {type(value).__name__}")
    if limit is not None and len(value) > limit:
        raise ValueError(f"the graph has {len(value):,} {what}, more than the {limit:,} "
                         "allowed")
    return value


def _ref(value, tensors, nodes_done, what):
    """The tensor a reference ``["input", i]``/``["node", j]`` (or ``["node",
    j, k]``, output k of a call with several) names, refusing a malformed
    one, a dangling one, or one to a later call (a cycle)."""
    def is_index(v):
        return isinstance(v, int) and not isinstance(v, bool)
    if not (isinstance(value, list) and len(value) in (2, 3) and value[0] in ("input", "node")
            and all(is_index(v) for v in value[1:])
            and (len(value) == 2 or value[0] == "node")):
        raise ValueError(f"{what} is not a tensor reference ['input', i] or ['node', j]: "
                         f"{value!r}")
    kind, index = value[:2]
    part = value[2] if len(value) == 3 else 0
    pool = tensors["input"] if kind == "input" else tensors["node"]
    if not 0 <= index < len(pool):
        if kind == "node" and index >= nodes_done:
            raise ValueError(f"{what} refers to call {index}, which is not made before it: "
                             "the graph would have a cycle or a dangling reference")
        raise ValueError(f"{what} refers to {kind} {index}, which does not exist")
    found = pool[index]
    outs = found if isinstance(found, list) else [found]
    if not 0 <= part < len(outs):
        raise ValueError(f"{what} refers to output {part} of call {index}, which has "
                         f"{len(outs)}")
    return outs[part]


def from_config(config, max_nodes=None, make_layer=None):
    """Rebuild the tensors of a graph written by ``to_config``, replaying its
    layer calls; returns ``(inputs, outputs, layers)`` for ``cdl.Model``
    (``inputs`` and ``outputs`` as dicts keyed by their names).

    Parameters
    ----------
    config : dict
    max_nodes : int, optional
        Refuse graphs with more calls (or inputs, or layers) than this:
        a file must not describe more work than its size justifies.
    make_layer : callable, optional
        ``make_layer(class_name, config) -> Layer``; by default the
        registered layer class's ``from_config``.

    Raises
    ------
    ValueError
        For a malformed graph: missing fields, a reference to a call not
        made yet (a cycle) or to nothing, an input reached with a shape
        that differs from a shared layer's first call, a layer that takes
        a list called on one tensor.

    Examples
    --------
    >>> import cdl
    >>> from cdl import graph, layers
    >>> x = cdl.Input(shape=(4,), name="x")
    >>> config = graph.to_config(graph.trace(x, layers.Dense(2, name="out")(x)))
    >>> inputs, outputs, made = graph.from_config(config)
    >>> list(inputs), list(outputs), [layer.name for layer in made]
    (['x'], ['out'], ['out'])
    >>> config["nodes"][0]["inputs"] = [["node", 0]]       # the call reads itself
    >>> try:
    ...     graph.from_config(config)
    ... except ValueError as error:
    ...     print(error)
    input 0 of call 0 refers to call 0, which is not made before it: the graph would have a cycle or a dangling reference
    """
    if not isinstance(config, dict):
        raise ValueError("the graph must be a JSON object")
    for key in ("inputs", "layers", "nodes", "outputs"):
        if key not in config:
            raise ValueError(f"the graph has no {key!r}")
    inputs_config = _checked_list(config["inputs"], "inputs", max_nodes)
    layers_config = _checked_list(config["layers"], "layers", max_nodes)
    nodes_config = _checked_list(config["nodes"], "nodes", max_nodes)
    outputs_config = _checked_list(config["outputs"], "outputs", max_nodes)
    output_names = config.get("output_names")
    make_layer = make_layer or (lambda name, cfg: _layer_class(name).from_config(cfg))

    inputs, names = [], []
    for i, spec in enumerate(inputs_config):
        if not isinstance(spec, dict) or not isinstance(spec.get("shape"), list):
            raise ValueError(f"input {i} of the graph has no shape")
        names.append(spec.get("name"))
        inputs.append(Input(tuple(spec["shape"]), name=spec.get("name"),
                            dtype=spec.get("dtype")))
    layers = []
    for i, spec in enumerate(layers_config):
        if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str) \
                or not isinstance(spec.get("config"), dict):
            raise ValueError(f"layer {i} of the graph is not {{'class_name', 'config'}}")
        layer = make_layer(spec["class_name"], spec["config"])
        if not isinstance(layer, Layer):
            raise ValueError(f"layer {i} of the graph is not a layer")
        layers.append(layer)
    tensors = {"input": inputs, "node": []}
    called = set()
    for j, spec in enumerate(nodes_config):
        if not isinstance(spec, dict) or not isinstance(spec.get("inputs"), list) \
                or not isinstance(spec.get("layer"), int) or isinstance(spec["layer"], bool):
            raise ValueError(f"call {j} of the graph is not {{'layer', 'inputs'}}")
        if not 0 <= spec["layer"] < len(layers):
            raise ValueError(f"call {j} of the graph refers to layer {spec['layer']}, which "
                             "does not exist")
        if not spec["inputs"]:
            raise ValueError(f"call {j} of the graph reads no tensor")
        args = [_ref(r, tensors, j, f"input {k} of call {j}")
                for k, r in enumerate(spec["inputs"])]
        layer = layers[spec["layer"]]
        called.add(spec["layer"])
        arg = args if spec.get("list", layer.takes_list) else args[0]
        if not spec.get("list", layer.takes_list) and len(args) != 1:
            raise ValueError(f"call {j} of the graph gives {len(args)} tensors to "
                             f"{type(layer).__name__}, which takes one")
        tensors["node"].append(layer(arg))
    if len(called) != len(layers):
        raise ValueError("the graph lists a layer that no call uses")
    outputs = [_ref(r, tensors, len(nodes_config), f"output {k}")
               for k, r in enumerate(outputs_config)]
    if output_names is not None:
        if not isinstance(output_names, list) or len(output_names) != len(outputs) or \
                not all(isinstance(n, str) for n in output_names):
            raise ValueError("the graph's output_names do not match its outputs")
        outputs = dict(zip(output_names, outputs))
    if all(isinstance(n, str) for n in names):
        inputs = dict(zip(names, inputs))
    return inputs, outputs, layers
