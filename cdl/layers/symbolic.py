"""Symbolic tensors: what calling layers on ``cdl.Input`` records.

``cdl.Input(shape)`` makes a symbolic tensor: no values, a per-sample shape.
Calling a layer on symbolic tensors (``Dense(8)(a)``, ``Add()([a, b])``)
computes nothing: it records a ``Node`` (the layer, the tensors it was
called on) and returns a new symbolic tensor of the output's shape. A
``cdl.Model(inputs, outputs)`` then follows the nodes back from its outputs
to its inputs and runs them in the order they were recorded. Because a node
can only be called on tensors that exist already, the recorded graph never
has a cycle. A layer called twice is one layer, with one set of weights,
and two nodes.
"""
import itertools
import threading
import weakref

import numpy as np

__all__ = ["SymbolicTensor", "Node", "Input", "is_symbolic", "call_layer"]

# Creation order of nodes and tensors: a node's inputs always have smaller
# numbers than the node, so sorting by it is a valid order of computation.
_counter = itertools.count()
_counter_lock = threading.Lock()
# The input shape each layer was first called on symbolically: a shared
# layer has one set of weights, so every call must fit the first.
_first_call_shapes = weakref.WeakKeyDictionary()
_input_names = itertools.count(1)

_INPUT_DTYPES = {np.dtype(t) for t in ("float32", "float64", "int32", "int64", "uint8", "bool")}


def _next_id():
    with _counter_lock:
        return next(_counter)


class SymbolicTensor:
    """A tensor of a graph of layers: a per-sample shape, no values.

    Made by ``cdl.Input`` and by calling a layer on symbolic tensors.

    Attributes
    ----------
    shape : tuple of int
        The shape of one sample (the batch axis is implied).
    dtype : numpy.dtype or None
        The dtype an ``Input`` was declared with (None: the model's); the
        model converts every input to its own float dtype.
    name : str
        An ``Input``'s name, or the name of the layer whose output this is.
    node : Node or None
        The layer call that computes it; None for an ``Input``.

    Examples
    --------
    >>> import cdl
    >>> from cdl import layers
    >>> x = cdl.Input(shape=(20,), name="features")
    >>> h = layers.Dense(8, name="hidden")(x)
    >>> h
    <SymbolicTensor 'hidden' shape=(None, 8)>
    >>> h.node.layer.name, [t.name for t in h.node.inputs]
    ('hidden', ['features'])
    """

    __slots__ = ("shape", "dtype", "name", "node", "id")

    def __init__(self, shape, name, node=None, dtype=None):
        self.shape = tuple(shape)
        self.name = name
        self.node = node
        self.dtype = dtype
        self.id = _next_id()

    @property
    def is_input(self):
        """True for a tensor made by ``cdl.Input``."""
        return self.node is None

    def __repr__(self):
        return f"<SymbolicTensor {self.name!r} shape={(None,) + self.shape}>"

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic: it has no values. Build a cdl.Model from it "
                        "and call model.predict or model.forward")

    def __bool__(self):
        raise TypeError(f"{self!r} is symbolic: it has no truth value")


class Node:
    """One call of a layer in a graph: the layer, the tensors it was called
    on (in order) and the tensor(s) it returned.

    A layer whose ``compute_output_shape`` returns a list of shapes (a
    recurrent layer with ``return_state``) has several outputs: its call
    returns a list of tensors, its ``forward`` a list of arrays and its
    ``backward`` takes a list of their gradients (None for an output that
    gets none).

    Attributes
    ----------
    layer : cdl.layers.Layer
    inputs : list of SymbolicTensor
    output : SymbolicTensor
        The (first) output.
    outputs : list of SymbolicTensor
        Every output, ``[output]`` for most layers.
    id : int
        Creation order: every input of a node was made before it.
    """

    __slots__ = ("layer", "inputs", "output", "outputs", "id")

    def __init__(self, layer, inputs):
        self.layer = layer
        self.inputs = list(inputs)
        self.output = None
        self.outputs = []
        self.id = _next_id()

    def __repr__(self):
        names = ", ".join(repr(t.name) for t in self.inputs)
        return f"<Node {self.layer.name}({names})>"


def Input(shape, name=None, dtype=None):
    """A symbolic input of a graph of layers (``cdl.Model``).

    Parameters
    ----------
    shape : tuple of int or None
        The shape of one sample, without the batch axis: ``(20,)`` for
        20 features, ``(28, 28, 1)`` for a grey image. None marks a free
        axis, whose size may change from call to call: ``(None, 8)`` for
        sequences of any number of steps of 8 features (the layers after
        it must take any size there, as the recurrent layers, ``Embedding``
        and ``Dense`` do; others refuse it when called).
    name : str, optional
        The key of this input when data is given as a dict. Defaults to
        ``input_<n>``.
    dtype : str or numpy dtype, optional
        The kind of data the input receives (a float dtype, or an integer
        one for the indices of an ``Embedding``); the model converts every
        input to its own float dtype, so this is documentation and a check
        of the declaration, as in Keras.

    Returns
    -------
    SymbolicTensor

    Examples
    --------
    >>> import cdl
    >>> cdl.Input(shape=(28, 28, 1), name="image")
    <SymbolicTensor 'image' shape=(None, 28, 28, 1)>
    """
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"Input's shape must be a tuple of ints, got {shape!r}")
    checked = []
    for d in shape:
        if d is None:
            checked.append(None)   # a free axis (time steps of any number)
            continue
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"Input's shape must be a tuple of ints (or None for a free "
                            f"axis), got {tuple(shape)!r} (the batch axis is implied)")
        if d < 1:
            raise ValueError(f"Input's shape must have sizes >= 1, got {tuple(shape)!r}")
        checked.append(int(d))
    if name is None:
        name = f"input_{next(_input_names)}"
    elif not isinstance(name, str) or not name:
        raise TypeError(f"Input's name must be a non-empty string, got {name!r}")
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"Input's dtype must be a NumPy dtype, got {dtype!r}") from None
        if dtype not in _INPUT_DTYPES:
            raise ValueError(f"Input's dtype must be one of "
                             f"{sorted(str(t) for t in _INPUT_DTYPES)}, got {dtype}")
    return SymbolicTensor(tuple(checked), name, None, dtype)


def is_symbolic(x):
    """True for a ``SymbolicTensor`` or a list or tuple holding one."""
    if isinstance(x, SymbolicTensor):
        return True
    return isinstance(x, (list, tuple)) and any(isinstance(t, SymbolicTensor) for t in x)


def call_layer(layer, x):
    """Record the call ``layer(x)`` on symbolic tensors and return its
    symbolic output (what ``Layer.__call__`` does with symbolic tensors).

    Raises
    ------
    TypeError
        If a list mixes symbolic tensors and arrays, or the layer takes one
        tensor and got a list (or the other way round).
    ValueError
        If the layer cannot take inputs of these shapes (named with the
        layer and the shapes), or a shared layer is called on a shape that
        differs from its first call's.
    """
    many = isinstance(x, (list, tuple))
    tensors = list(x) if many else [x]
    if not all(isinstance(t, SymbolicTensor) for t in tensors):
        raise TypeError(f"{layer.name} ({type(layer).__name__}) was called on a list mixing "
                        "symbolic tensors and other values; call it on symbolic tensors only")
    if layer.takes_list_or_tensor and not layer.built and layer not in _first_call_shapes:
        # Such a layer (attention: mha(x) or mha([query, value])) takes the
        # form of its first call for good.
        layer.takes_list = many
    if layer.takes_list and not many:
        raise TypeError(f"{layer.name} ({type(layer).__name__}) takes a list of tensors, "
                        f"such as {type(layer).__name__}()([a, b]); got one tensor")
    if many and not layer.takes_list:
        if len(tensors) != 1:
            raise TypeError(f"{layer.name} ({type(layer).__name__}) takes one tensor, got a "
                            f"list of {len(tensors)}; merge them first (layers.Concatenate, "
                            "layers.Add, ...)")
        many = False
    shape = [t.shape for t in tensors] if many else tensors[0].shape
    first = _first_call_shapes.get(layer)
    if first is not None and first != shape:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is shared: it was "
                         f"first called on inputs of shape {_show(first)} and cannot take "
                         f"{_show(shape)} (one set of weights fits one input shape)")
    if layer.built and first is None and _normalise(layer.input_shape) != shape:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) was built for inputs "
                         f"of shape {_show(_normalise(layer.input_shape))}, cannot take "
                         f"{_show(shape)}")
    if not layer.has_input_gradient and not all(t.is_input for t in tensors):
        raise ValueError(f"{layer.name} ({type(layer).__name__}) has no input gradient, so it "
                         "must be called on a cdl.Input directly, not on "
                         f"{', '.join(repr(t.name) for t in tensors)}")
    if layer.built:
        out_shape = tuple(layer.output_shape)
    else:
        try:
            out_shape = layer.compute_output_shape(list(shape) if many else shape)
            if isinstance(out_shape, list):
                out_shape = [tuple(_axis(d) for d in s) for s in out_shape]
            else:
                out_shape = tuple(_axis(d) for d in out_shape)
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError,
                AttributeError) as err:
            raise ValueError(f"cannot call layer {layer.name!r} ({type(layer).__name__}) on "
                             f"inputs of shape {_show(shape)}: {err}") from err
        if any(d is not None and d < 1 for s in _shapes(out_shape) for d in s):
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) maps inputs of "
                             f"shape {_show(shape)} to {_show(out_shape)}, which is empty")
    _first_call_shapes[layer] = shape
    node = Node(layer, tensors)
    if isinstance(out_shape, list):
        # Several outputs (a recurrent layer's output and final states).
        node.outputs = [SymbolicTensor(s, layer.name if k == 0 else f"{layer.name}_state_{k}",
                                       node) for k, s in enumerate(out_shape)]
        node.output = node.outputs[0]
        return list(node.outputs)
    node.output = SymbolicTensor(out_shape, layer.name, node)
    node.outputs = [node.output]
    return node.output


def _axis(d):
    return None if d is None else int(d)


def _shapes(shape):
    """A layer's output shape, or each of its several output shapes, as a list."""
    return shape if isinstance(shape, list) else [shape]


def _normalise(shape):
    return [tuple(s) for s in shape] if isinstance(shape, list) else tuple(shape)


def _show(shape):
    """A shape with its batch axis, for messages: (None, 20) or [(None, 8), (None, 4)]."""
    if isinstance(shape, list):
        return "[" + ", ".join(str((None,) + tuple(s)) for s in shape) + "]"
    return str((None,) + tuple(shape))
