"""Utilities around models: drawing a model's graph (``plot_model``).

``plot_model`` draws a model as Keras' ``keras.utils.plot_model`` does:
one box per input and per layer call, an arrow from each tensor to the
calls that read it. Drawing needs two optional packages, pydot (``pip
install pydot``, or ``pip install "cdl[plot]"``) and Graphviz's ``dot``
program (https://graphviz.org/download/, e.g. ``apt install graphviz``).
Without them ``plot_model`` writes the same graph as text, one line per
call, next to the requested file (``model.png`` -> ``model.txt``) and warns
what to install; ``model_to_text`` returns that text.

The text rendering has one line per input and per layer call, in an order
of computation::

    a (Input) : (None, 20)
    dense (Dense) <- a : (None, 8)
    shared (Dense) <- dense : (None, 16)
    shared[1] (Dense) <- b : (None, 16)

A layer called more than once (a shared layer) is labelled with its name
on its first call and ``name[k]`` on its ``k``-th later call, as in
``model.summary()``.
"""
import os
import shutil
import warnings

from cdl._validation import check_bool, check_number, choose

__all__ = ["plot_model", "model_to_dot", "model_to_text"]

_RANKDIRS = ("TB", "LR", "BT", "RL")
# Formats written through Graphviz, by file extension.
_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "gif", "dot")
_INSTALL = ("install pydot (`pip install pydot`, or `pip install \"cdl[plot]\"`) and "
            "Graphviz's dot program (https://graphviz.org/download/, e.g. "
            "`apt install graphviz` or `brew install graphviz`)")


class _Call:
    """One box of the drawing: an input or a layer call."""

    __slots__ = ("label", "class_name", "sources", "input_shapes", "output_shape",
                 "output_names")

    def __init__(self, label, class_name, sources, input_shapes, output_shape):
        self.label = label
        self.class_name = class_name
        self.sources = sources              # indices of earlier boxes, in call order
        self.input_shapes = input_shapes
        self.output_shape = output_shape
        self.output_names = []              # the model outputs this box computes


def _calls(model):
    """The boxes of ``model``: its inputs, then its layer calls in an order of
    computation, each with the boxes it reads; model outputs marked."""
    from cdl.model import Model, Sequential, graph_rows

    if not isinstance(model, Model):
        raise TypeError(f"plot_model takes a cdl.Model or cdl.Sequential, got "
                        f"{type(model).__name__}")
    if isinstance(model, Sequential):
        if not model.built and model.input_shape is None:
            raise ValueError("the Sequential model is not built, so its shapes are unknown: "
                             "give it an input_shape or run it on data first")
        model.ensure_built()
        calls = [_Call("input", "Input", [], [], tuple(model.input_shape))]
        shape = tuple(model.input_shape)
        for layer in model.layers:
            calls.append(_Call(layer.name, type(layer).__name__, [len(calls) - 1], [shape],
                               tuple(layer.output_shape)))
            shape = tuple(layer.output_shape)
        calls[-1].output_names.append(model.output_names[0])
        return calls
    where, calls = {}, []
    for name, tensor in zip(model.input_names, model.inputs):
        where[tensor.id] = len(calls)
        calls.append(_Call(name, "Input", [], [], tuple(tensor.shape)))
    for node, label, _ in graph_rows(model):
        sources = [where[t.id] for t in node.inputs]
        for tensor in node.outputs:
            where[tensor.id] = len(calls)
        calls.append(_Call(label, type(node.layer).__name__, sources,
                           [tuple(t.shape) for t in node.inputs], tuple(node.output.shape)))
    for name, tensor in zip(model.output_names, model.outputs):
        calls[where[tensor.id]].output_names.append(name)
    return calls


def _shape(shape):
    return str((None,) + tuple(shape))


def _shapes(shapes):
    return _shape(shapes[0]) if len(shapes) == 1 else "[" + ", ".join(map(_shape, shapes)) + "]"


def model_to_text(model, show_shapes=True):
    """The model's graph as text: one line per input and per layer call.

    Each line reads ``label (Class) <- sources : output shape``: the call's
    label (a layer's name, ``name[k]`` for the ``k``-th later call of a
    shared layer), its class, the labels of the tensors it reads (in the
    order it reads them) and the shape of its output. The first line names
    the model, the last its outputs (``key <- label`` where an output's
    name differs from the call that computes it).

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
        A built model (a Sequential needs its input shape).
    show_shapes : bool
        Write each output shape (with the batch axis as None).

    Returns
    -------
    str

    Raises
    ------
    TypeError
        If ``model`` is not a cdl model.
    ValueError
        For a Sequential without an input shape.

    Examples
    --------
    >>> import cdl
    >>> from cdl import layers
    >>> a = cdl.Input(shape=(4,), name="a")
    >>> shared = layers.Dense(3, name="shared")
    >>> out = layers.Add(name="sum")([shared(a), shared(layers.Dense(4, name="pre")(a))])
    >>> print(cdl.utils.model_to_text(cdl.Model(a, out, name="siamese")))
    Model "siamese"
    a (Input) : (None, 4)
    shared (Dense) <- a : (None, 3)
    pre (Dense) <- a : (None, 4)
    shared[1] (Dense) <- pre : (None, 3)
    sum (Add) <- shared, shared[1] : (None, 3)
    Outputs: sum
    """
    show_shapes = check_bool(show_shapes, "show_shapes")
    calls = _calls(model)
    lines = [f'Model "{model.name}"']
    for call in calls:
        line = f"{call.label} ({call.class_name})"
        if call.sources:
            line += " <- " + ", ".join(calls[i].label for i in call.sources)
        if show_shapes:
            line += " : " + _shape(call.output_shape)
        lines.append(line)
    outputs = {}
    for call in calls:
        for name in call.output_names:
            outputs[name] = name if name == call.label else f"{name} <- {call.label}"
    lines.append("Outputs: " + ", ".join(outputs[name] for name in model.output_names))
    return "\n".join(lines)


def _dot_text(text):
    """``text`` for a Graphviz label: backslashes are Graphviz escapes, so a
    name holding one is written doubled (pydot escapes the quotes)."""
    return text.replace("\\", "\\\\")


def _import_pydot():
    try:
        import pydot
    except ImportError:
        return None
    return pydot


def model_to_dot(model, show_shapes=True, show_layer_names=True, rankdir="TB", dpi=96):
    """The model's graph as a ``pydot.Dot`` (Keras' ``model_to_dot``).

    One box per input and per layer call, an arrow from each tensor to
    the calls that read it; the boxes of the model's outputs have a double
    border. Writing it as an image needs Graphviz (``plot_model`` does).

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
    show_shapes : bool
        Write each call's input and output shapes in its box.
    show_layer_names : bool
        Write each call's label (the layer's name, ``name[k]`` for a shared
        layer's later calls) before its class; otherwise the class alone.
    rankdir : {"TB", "LR", "BT", "RL"}
        Direction of the drawing: top to bottom, left to right, ...
    dpi : int
        Resolution of raster images.

    Returns
    -------
    pydot.Dot

    Raises
    ------
    ImportError
        If pydot is not installed.

    Examples
    --------
    >>> import cdl
    >>> from cdl import layers
    >>> x = cdl.Input(shape=(4,), name="x")
    >>> model = cdl.Model(x, layers.Dense(2, name="out")(layers.Dense(8, name="hidden")(x)))
    >>> dot = cdl.utils.model_to_dot(model, rankdir="LR")
    >>> for node in dot.get_nodes():
    ...     if node.get_name() != "node":     # not the default node style
    ...         print(node.get_name(), node.get_label())
    n0 x (Input)\\n(None, 4)
    n1 hidden (Dense)\\nin: (None, 4)\\nout: (None, 8)
    n2 out (Dense)\\nin: (None, 8)\\nout: (None, 2)
    >>> [(edge.get_source(), edge.get_destination()) for edge in dot.get_edges()]
    [('n0', 'n1'), ('n1', 'n2')]
    """
    show_shapes = check_bool(show_shapes, "show_shapes")
    show_layer_names = check_bool(show_layer_names, "show_layer_names")
    rankdir = choose(rankdir, _RANKDIRS, "rankdir")
    dpi = check_number(dpi, "dpi", low=1, integer=True)
    pydot = _import_pydot()
    if pydot is None:
        raise ImportError(f"model_to_dot needs pydot: {_INSTALL}", name="pydot")
    calls = _calls(model)
    dot = pydot.Dot(graph_type="digraph", rankdir=rankdir, dpi=dpi)
    dot.set_node_defaults(shape="box", fontname="Helvetica")
    for i, call in enumerate(calls):
        lines = [f"{call.label} ({call.class_name})" if show_layer_names else call.class_name]
        if show_shapes:
            if call.sources:
                lines.append("in: " + _shapes(call.input_shapes))
                lines.append("out: " + _shape(call.output_shape))
            else:
                lines.append(_shape(call.output_shape))
        lines += [f"output {name!r}" for name in call.output_names if name != call.label]
        attributes = {"label": "\\n".join(_dot_text(line) for line in lines)}
        if call.output_names:
            attributes["peripheries"] = 2
        dot.add_node(pydot.Node(f"n{i}", **attributes))
    for i, call in enumerate(calls):
        for source in call.sources:
            dot.add_edge(pydot.Edge(f"n{source}", f"n{i}"))
    return dot


def plot_model(model, to_file="model.png", show_shapes=True, show_layer_names=True,
               rankdir="TB", dpi=96):
    """Draw the model's graph to a file (Keras' ``keras.utils.plot_model``).

    With pydot and Graphviz installed, writes a drawing in the format of
    ``to_file``'s extension (PNG, SVG, PDF, JPEG, GIF, or DOT source; PNG
    without an extension). Without them, writes the text rendering of
    ``model_to_text`` to ``to_file`` with the extension ``.txt`` instead
    (``model.png`` -> ``model.txt``) and warns what to install. A
    ``to_file`` ending in ``.txt`` always gets the text rendering.

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
        A built model (a Sequential needs its input shape).
    to_file : str or path-like
    show_shapes : bool
        Show each call's input and output shapes.
    show_layer_names : bool
        Show each call's label (layer name, ``name[k]`` for the ``k``-th
        later call of a shared layer) before its class. The text rendering
        always names the calls, since its edges are written with the names.
    rankdir : {"TB", "LR", "BT", "RL"}
        Direction of the drawing: top to bottom (default), left to right, ...
    dpi : int
        Resolution of raster images.

    Returns
    -------
    str
        The path of the file written: ``to_file``, or its ``.txt``
        counterpart when the graph could not be drawn. In a notebook,
        ``IPython.display.Image(path)`` shows a drawing.

    Warns
    -----
    UserWarning
        When pydot or Graphviz's ``dot`` is missing and the text rendering
        is written instead.

    Raises
    ------
    ValueError
        For an extension Graphviz is not asked to write, an unknown
        ``rankdir`` or a Sequential without an input shape.
    RuntimeError
        If Graphviz fails to write the drawing.

    Examples
    --------
    >>> import cdl
    >>> from cdl import layers
    >>> a = cdl.Input(shape=(20,), name="a")
    >>> b = cdl.Input(shape=(8,), name="b")
    >>> h = layers.Concatenate(name="join")([layers.Dense(8, name="da")(a), b])
    >>> model = cdl.Model([a, b], layers.Dense(3, name="cls")(h))
    >>> path = cdl.utils.plot_model(model, "model.txt")
    >>> print(open(path).read())
    Model "model"
    a (Input) : (None, 20)
    b (Input) : (None, 8)
    da (Dense) <- a : (None, 8)
    join (Concatenate) <- da, b : (None, 16)
    cls (Dense) <- join : (None, 3)
    Outputs: cls
    <BLANKLINE>
    """
    try:
        path = os.fspath(to_file)
    except TypeError:
        path = None
    if not isinstance(path, str):
        raise TypeError(f"to_file must be a path (str or os.PathLike), got {to_file!r}")
    stem, extension = os.path.splitext(path)
    extension = extension[1:].lower()
    if extension != "txt" and extension not in _FORMATS + ("",):
        raise ValueError(f"plot_model writes {', '.join('.' + f for f in _FORMATS)} or .txt "
                         f"files, not .{extension} ({path})")
    show_shapes = check_bool(show_shapes, "show_shapes")
    show_layer_names = check_bool(show_layer_names, "show_layer_names")
    rankdir = choose(rankdir, _RANKDIRS, "rankdir")
    dpi = check_number(dpi, "dpi", low=1, integer=True)
    _calls(model)  # refuse a model that cannot be drawn before warning about anything
    if extension != "txt":
        missing = []
        if _import_pydot() is None:
            missing.append("pydot is not installed")
        if shutil.which("dot") is None:
            missing.append("Graphviz's dot program is not on the PATH")
        if not missing:
            dot = model_to_dot(model, show_shapes, show_layer_names, rankdir, dpi)
            try:
                dot.write(path, format=extension or "png")
            except Exception as err:  # pydot raises bare exceptions with dot's message
                raise RuntimeError(f"Graphviz could not write {path}: {err}") from err
            return path
        text_path = stem + ".txt"
        warnings.warn(f"plot_model cannot draw {path}: {' and '.join(missing)}. It wrote the "
                      f"graph as text to {text_path} instead; to draw it, {_INSTALL}.",
                      UserWarning, stacklevel=2)
        path = text_path
    text = model_to_text(model, show_shapes)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return path
