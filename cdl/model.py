"""Models: ``Model``, a graph of layers, and ``Sequential``, a stack of them.

Both keep every weight in one flat parameter buffer (and every gradient in
another), train through ``cdl.training.TrainingMixin`` and save through
``cdl.saving``. ``Sequential`` is the ``Model`` whose graph is a chain, with
the layer-after-layer loops (and the fused training step) of a chain.
"""
import copy

import numpy as np

from cdl import _anomaly, _concurrency, _determinism
from cdl import graph as _graph
from cdl._validation import (
    as_float_array, as_float_dtype, as_real_array, check_bool, check_feature_shape, check_finite,
    check_shape_tuple)
from cdl.layers import base as _base
from cdl.layers import iter_layers
from cdl.layers.base import Layer
from cdl.saving.models import register_model_class
from cdl.saving.rebuild import load_weights
from cdl.saving.writer import save_model, save_weights
from cdl.training import TrainingMixin


@register_model_class
class Model(TrainingMixin):
    """A graph of layers from one or more inputs to one or more outputs
    (Keras' functional API).

    Call layers on the symbolic tensors of ``cdl.Input`` to record the
    graph, then make the model from its inputs and outputs. A layer called
    more than once is one layer: its weights are shared by every call and
    their gradients summed over the calls. Layers that take several inputs
    (``layers.Add``, ``layers.Concatenate``, ...) are called on a list.

    Parameters
    ----------
    inputs : SymbolicTensor, list or dict of them
        The ``cdl.Input`` tensors. With a dict, its keys name the inputs;
        otherwise each input's name does.
    outputs : SymbolicTensor, list or dict of them
        Tensors computed from the inputs. With a dict, its keys name the
        outputs; otherwise the layer that computes each output does.
    seed : int, optional
        Seeds the generator used for weight initialisation and dropout.
    dtype : {"float32", "float64"}
        Dtype of every weight, activation and gradient in the model.
    name : str, optional

    Attributes
    ----------
    input_names, output_names : list of str
        The keys of data given as dicts, in the order of lists.
    layers : list of Layer
        Each layer once, in the order of its first call.
    params, grads : list of ndarray
        Every layer's weights (in ``layers`` order, weight before bias) and
        their gradients, views into one flat buffer each
        (``param_buffer``, ``grad_buffer``).
    preprocessors : dict of str to cdl.text.TextVectorizer
        Text preprocessors kept with the model (empty at first):
        ``model.save`` writes them into the model file, with their
        vocabularies, and ``cdl.load_model`` restores them.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> a = cdl.Input(shape=(4,), name="a")
    >>> b = cdl.Input(shape=(3,), name="b")
    >>> h = layers.Concatenate()([layers.Dense(8, activation="relu")(a), b])
    >>> cls = layers.Dense(2, name="cls")(h)
    >>> reg = layers.Dense(1, name="reg")(h)
    >>> model = cdl.Model(inputs=[a, b], outputs=[cls, reg], seed=0)
    >>> out_cls, out_reg = model.forward({"a": np.ones((5, 4)), "b": np.ones((5, 3))})
    >>> out_cls.shape, out_reg.shape
    ((5, 2), (5, 1))
    """

    def __init__(self, inputs, outputs, seed=None, dtype="float32", name=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        self._init_common(name or "model", dtype, seed)
        graph = _graph.trace(inputs, outputs)
        self._graph = graph
        self._layers = list(graph.layers)
        self.input_names = list(graph.input_names)
        self.output_names = list(graph.output_names)
        shapes = [t.shape for t in graph.inputs]
        self.input_shape = shapes[0] if len(shapes) == 1 else shapes
        self.build()

    def _init_common(self, name, dtype, seed):
        self.name = name
        self.dtype = as_float_dtype(dtype)
        if seed is not None:
            # What a model file can hold: a bool, a float or a list would be
            # saved and then refused on loading.
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
                raise TypeError(f"seed must be an int >= 0 or None, got {seed!r}")
            if seed < 0:
                raise ValueError(f"seed must be an int >= 0 or None, got {seed}")
            seed = int(seed)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.preprocessors = {}
        self.output_shape = None
        self.built = False
        self.param_buffer = np.zeros(0, dtype=self.dtype)
        self.grad_buffer = np.zeros(0, dtype=self.dtype)
        self.params = []
        self.grads = []
        self._steps = []
        self._out_shapes = None

    # --- structure ---------------------------------------------------------

    @property
    def layers(self):
        """The layers, each once, in the order of their first call (a copy
        of the list)."""
        return list(self._layers)

    @property
    def chain(self):
        """The layers as one chain (one input, one output, each layer called
        once on the previous one's output), or None for any other graph.
        The fused training step serves chains of dense layers."""
        return list(self._layers) if self._graph.is_chain() else None

    @property
    def output_layers(self):
        """The layer that computes each output, in output order (None for an
        output that is an input)."""
        return [None if t.is_input else t.node.layer for t in self._graph.outputs]

    @property
    def graph(self):
        """The checked graph (``cdl.graph.Graph``): the inputs, the layer
        calls in order of computation, the outputs and their names."""
        return self._graph

    @property
    def inputs(self):
        """The model's input tensors (``cdl.Input``), in order."""
        return list(self._graph.inputs)

    @property
    def outputs(self):
        """The model's output tensors, in order."""
        return list(self._graph.outputs)

    def build(self, input_shape=None):
        """Build every layer (for the shapes of its first call) with the
        model's dtype and generator, in the order of the calls, and pack the
        weights into one flat buffer. A model is built when it is made."""
        if input_shape is not None and self.built and \
                _shape_list(input_shape) != _shape_list(self.input_shape):
            raise ValueError(f"model was built for inputs of shape {self.input_shape}, not "
                             f"{input_shape}")
        if self.built:
            return
        for node in self._graph.nodes:
            layer = node.layer
            if layer.built:
                if layer.dtype != self.dtype:
                    raise ValueError(f"layer {layer.name!r} was built as {layer.dtype} and "
                                     f"cannot join a {self.dtype} model")
                continue
            shapes = [t.shape for t in node.inputs]
            layer._build(shapes if layer.takes_list else shapes[0], self.dtype, self.rng)
        shapes = [tuple(t.shape) for t in self._graph.outputs]
        self.output_shape = shapes[0] if len(shapes) == 1 else shapes
        self._take_weights()
        self.built = True

    def _take_weights(self):
        """Move the layers' weights (their current values) into this model's
        flat buffers, and mark the layers as this model's.

        Layers shared by several models (an encoder used alone and inside an
        autoencoder) have one set of weights, which lives in the buffers of
        one model at a time: a model whose layers were taken over by another
        takes them back, values and all, before it next computes, trains or
        saves (``ensure_built``), so every model sees the weights the other
        trained and its ``params`` are never stale."""
        self._pack()
        self._steps = self._call_plan()
        token = self._owner_token = object()
        for layer in self._layers:
            layer._weights_owner = token

    def ensure_built(self):
        """Build the model if needed, and take back the weights of layers
        that another model holds now (see ``_take_weights``)."""
        if not self.built:
            self.build()
        elif any(getattr(layer, "_weights_owner", None) is not self._owner_token
                 for layer in self._layers):
            self._take_weights()

    def _call_plan(self):
        """``(node, runner)`` for every call: a layer's first call runs the
        layer itself; each later call runs a copy of it that shares its
        weights, buffers and generator but keeps its own per-call state (what
        ``backward`` needs of that call's ``forward``) and its own gradients,
        which ``backward`` adds to the layer's."""
        steps, first = [], set()
        for node in self._graph.nodes:
            layer = node.layer
            if id(layer) in first:
                steps.append((node, _call_copy(layer)))
            else:
                first.add(id(layer))
                steps.append((node, layer))
        return steps

    # --- computing ---------------------------------------------------------

    def check_input(self, x):
        """The inputs ``x`` (one array, a list in input order, or a dict keyed
        by input names) as checked arrays of the model's dtype: one array for
        a model with one input, else a list in input order."""
        self.ensure_built()
        values = _graph.structure(x, self.input_names, "x")
        checked = []
        for value, name, tensor in zip(values, self.input_names, self._graph.inputs):
            what = "x" if len(self.input_names) == 1 else f"input {name!r}"
            if value is None:
                raise ValueError(f"{what} is None")
            if isinstance(value, np.ndarray) and value.ndim:
                from cdl._validation import check_blas_size
                check_blas_size(value.shape[0], f"the batch size of {what} (one forward pass)")
            value = as_float_array(value, self.dtype, what)
            if value.ndim < 2 and len(tensor.shape) >= 1 and value.shape != tensor.shape:
                raise ValueError(f"{what} has shape {value.shape}; expected (batch_size, "
                                 f"{', '.join(map(str, tensor.shape))}): for a single sample "
                                 "use x[None]")
            check_feature_shape(value, tensor.shape, what)
            check_finite(value, what)
            checked.append(value)
        if len({v.shape[0] for v in checked}) > 1:
            raise ValueError("the inputs have different numbers of samples: " + ", ".join(
                f"{n!r}: {v.shape[0]}" for n, v in zip(self.input_names, checked)))
        return checked[0] if len(checked) == 1 else checked

    @_determinism.blas_scope
    def forward(self, x, training=False):
        """Run the graph on the inputs ``x`` and return the outputs.

        Parameters
        ----------
        x : array_like, list or dict
            One array per input (batch axis first): a single array for a
            model with one input, a list in input order, or a dict keyed by
            ``input_names``.
        training : bool
            Training-mode behaviour (dropout active).

        Returns
        -------
        ndarray, or list of ndarray in output order
        """
        training = check_bool(training, "training")
        return self.forward_checked(self.check_input(x), training)

    def forward_checked(self, x, training):
        """Forward pass of inputs already checked by ``check_input``.

        One pass at a time per model: layers keep per-call state.
        """
        self.ensure_built()
        xs = x if isinstance(x, list) else [x]
        values = {t.id: v for t, v in zip(self._graph.inputs, xs)}
        check = _anomaly.checking(self)
        with _concurrency.guard_of(self).layer_lock:
            shapes = []
            masks = None   # tensor id -> padding mask, once a layer makes one
            for index, (node, runner) in enumerate(self._steps):
                args = [values[t.id] for t in node.inputs]
                if masks is None:
                    y = runner.forward(args if runner.takes_list else args[0], training)
                    if runner.produces_mask:
                        masks = {node.output.id: runner.compute_mask(None)}
                else:
                    mask = [masks.get(t.id) for t in node.inputs]
                    if not runner.takes_list:
                        mask = mask[0]
                    elif all(m is None for m in mask):
                        mask = None
                    y, masks[node.output.id] = _masked_forward(
                        runner, args if runner.takes_list else args[0], mask, training)
                if len(node.outputs) > 1:
                    # A layer with several outputs returns a list of arrays.
                    if check:
                        for part in y:
                            _anomaly.check_forward(runner, index, part)
                    for tensor, part in zip(node.outputs, y):
                        values[tensor.id] = part
                    shapes.append([part.shape for part in y])
                    continue
                if check:
                    _anomaly.check_forward(runner, index, y)
                values[node.output.id] = y
                shapes.append(y.shape)
            outs = [values[t.id] for t in self._graph.outputs]
            self._out_shapes = [o.shape for o in outs]
            self._call_shapes = shapes
        return outs[0] if len(outs) == 1 else outs

    @_determinism.blas_scope
    def backward(self, grad):
        """Back-propagate the gradients of the loss with respect to the
        outputs of the last ``forward``.

        Parameters
        ----------
        grad : array_like, list or dict
            One gradient per output (the shape of that output), a list in
            output order or a dict keyed by ``output_names``; None for an
            output that gets no gradient.

        Returns
        -------
        ndarray or None, or a list of them in input order
            The gradients with respect to the inputs (None for an input
            that only feeds layers without input gradient, such as
            ``Embedding``). ``grads`` is overwritten; a shared layer's
            gradients are summed over its calls.
        """
        if self._out_shapes is None:
            raise RuntimeError("backward called before forward")
        values = _graph.structure(grad, self.output_names, "grad", allow_missing=True)
        checked = []
        for value, name, shape in zip(values, self.output_names, self._out_shapes):
            what = "grad" if len(self.output_names) == 1 else f"grad of output {name!r}"
            if value is None:
                checked.append(None)
                continue
            value = as_float_array(value, self.dtype, what)
            if value.shape != shape:
                raise ValueError(f"{what} has shape {value.shape}, expected {shape} (the shape "
                                 "of the last forward output)")
            checked.append(value)
        if all(v is None for v in checked):
            raise ValueError("every output's gradient is None")
        return self.backward_checked(checked[0] if len(checked) == 1 else checked, True)

    def backward_checked(self, grad, input_grad):
        """Backward pass of gradients already known to fit the last outputs
        (one array, or a list in output order with None where an output gets
        no gradient); with ``input_grad=False`` the layers called on the
        model's inputs may skip (and return None for) their input gradient."""
        grads = grad if isinstance(grad, list) else [grad]
        pending = {}
        for tensor, g in zip(self._graph.outputs, grads):
            if g is not None:
                _accumulate(pending, tensor.id, g)
        input_ids = {t.id for t in self._graph.inputs}
        check = _anomaly.checking(self)
        ran = set()
        for index in range(len(self._steps) - 1, -1, -1):
            node, runner = self._steps[index]
            if len(node.outputs) > 1:
                # One gradient per output, None for one that gets none.
                g = [pending.pop(t.id, None) for t in node.outputs]
                if all(part is None for part in g):
                    if not runner.activity_penalty:
                        continue
                    g = [np.zeros(s, dtype=self.dtype) for s in self._call_shapes[index]]
            else:
                g = pending.pop(node.output.id, None)
            if g is None:
                if not runner.activity_penalty:
                    continue   # nothing downstream of this call is trained
                # Its activity penalty is in the loss: its gradient flows back.
                g = np.zeros(self._call_shapes[index], dtype=self.dtype)
            skip = not input_grad and all(t.id in input_ids for t in node.inputs)
            if skip:
                runner._input_grad_needed = False
            try:
                dx = runner.backward(g)
            finally:
                if skip:
                    runner._input_grad_needed = True
            ran.add(id(runner))
            if check:
                _anomaly.check_backward(runner, index, dx)
            parts = dx if runner.takes_list else [dx]
            for tensor, part in zip(node.inputs, parts):
                if part is not None:
                    _accumulate(pending, tensor.id, part)
        self._gather_gradients(ran)
        outs = [pending.get(t.id) for t in self._graph.inputs]
        return outs[0] if len(outs) == 1 else outs

    def _gather_gradients(self, ran):
        """Give each layer the gradient of the whole pass: zero for a layer
        that no gradient reached (``backward`` overwrites, so its arrays hold
        an earlier batch's), plus the gradients of its later calls."""
        for layer in self._layers:
            if id(layer) not in ran:
                for owner, name in layer.weight_owners():
                    getattr(owner, name + "_grad")[...] = 0
        for node, runner in self._steps:
            if runner is node.layer or id(runner) not in ran:
                continue
            for (owner, name), (copy_owner, copy_name) in zip(
                    node.layer.weight_owners(), runner.weight_owners()):
                getattr(owner, name + "_grad")[...] += getattr(copy_owner, copy_name + "_grad")

    def _runners(self):
        """Every object that runs a call: the layers and the copies of shared ones."""
        return [runner for _, runner in self._steps] or list(self._layers)

    def get_config(self):
        """Architecture as a JSON-friendly dict: the inputs, the layers, the
        calls between them and the outputs (see ``cdl.graph.to_config``).

        Examples
        --------
        >>> import cdl
        >>> from cdl import layers
        >>> x = cdl.Input(shape=(2,), name="x")
        >>> model = cdl.Model(x, layers.Dense(3, name="out")(x), seed=0)
        >>> config = model.get_config()
        >>> config["graph"]["inputs"], config["graph"]["nodes"]
        ([{'name': 'x', 'shape': [2], 'dtype': None}], [{'layer': 0, 'inputs': [['input', 0]], 'list': False}])
        """
        return {"name": self.name, "dtype": self.dtype.name, "seed": self.seed,
                "graph": _graph.to_config(self._graph)}

    @classmethod
    def from_config(cls, config, make_layer=None, max_nodes=None):
        """A model from ``get_config()``'s output, its graph rebuilt by
        replaying the layer calls (see ``cdl.graph.from_config``)."""
        inputs, outputs, _ = _graph.from_config(config["graph"], max_nodes=max_nodes,
                                                make_layer=make_layer)
        return cls(inputs, outputs, seed=config.get("seed"), dtype=config.get("dtype", "float32"),
                   name=config.get("name"))

    def __repr__(self):
        return (f"<Model {self.name!r}: {len(self.input_names)} inputs, "
                f"{len(self.output_names)} outputs, {len(self._layers)} layers, "
                f"dtype {self.dtype}>")

    def __call__(self, x, training=False):
        """``forward(x, training)``. A model is not a layer: calling it on
        symbolic tensors (to nest it in another graph) is refused."""
        from cdl.layers.symbolic import is_symbolic

        if is_symbolic(x) or isinstance(x, dict) and any(is_symbolic(v) for v in x.values()):
            raise TypeError("a Model cannot be called on symbolic tensors: nesting models in a "
                            "graph is not supported; call its layers on the tensors instead "
                            "(they keep their weights)")
        return self.forward(x, training=training)


    def _pack(self):
        """Move every weight into one flat buffer and every gradient into another."""
        owners = [owner for layer in self._layers for owner in layer.weight_owners()]
        total = sum(getattr(layer, name).size for layer, name in owners)
        # Weights made zero under an allocation_budget (loading) are not
        # copied: the buffers are zero too, and untouched gradient pages of a
        # loaded model then take no memory until training. If the budget
        # holds all their values (a model file's), that array becomes the
        # parameter buffer, so the values are not held twice.
        budget = _base.active_allocation_budget()
        unfilled = budget.unfilled if budget is not None else ()
        flat = budget.flat if budget is not None else None
        if (isinstance(flat, np.ndarray) and flat.shape == (total,) and flat.dtype == self.dtype
                and flat.flags.c_contiguous and flat.flags.writeable
                and all((id(layer), name) in unfilled for layer, name in owners)):
            self.param_buffer = flat
        else:
            self.param_buffer = np.zeros(total, dtype=self.dtype)
        self.grad_buffer = np.zeros(total, dtype=self.dtype)
        offset = 0
        for layer, name in owners:
            value = getattr(layer, name)
            if value.dtype != self.dtype:
                raise TypeError(
                    f"weight {layer.name}.{name} has dtype {value.dtype}, the model {self.dtype}")
            end = offset + value.size
            layer._rebind(name, self.param_buffer[offset:end].reshape(value.shape),
                          self.grad_buffer[offset:end].reshape(value.shape),
                          copy=(id(layer), name) not in unfilled)
            offset = end
        self.params = [getattr(layer, name) for layer, name in owners]
        self.grads = [getattr(layer, name + "_grad") for layer, name in owners]

    def get_layer(self, name=None, index=None):
        """The layer called ``name``, or the one at ``index`` of ``layers``.

        Raises
        ------
        ValueError
            If no layer has that name or index, or neither or both are given.

        Examples
        --------
        >>> import cdl
        >>> from cdl import layers
        >>> model = cdl.Sequential([layers.Dense(3, name="hidden"), layers.Dense(1)],
        ...                        input_shape=(2,))
        >>> model.get_layer("hidden").units, model.get_layer(index=1).units
        (3, 1)
        """
        if (name is None) == (index is None):
            raise ValueError("get_layer takes a name or an index, one of them")
        found = self._layers
        if index is not None:
            from cdl._validation import check_number
            index = check_number(index, "index", integer=True)
            if not -len(found) <= index < len(found):
                raise ValueError(f"index {index} is out of range for {len(found)} layers")
            return found[index]
        for layer in found:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer is named {name!r}; the layers are "
                         f"{', '.join(repr(layer.name) for layer in found)}")

    def regularization_loss(self):
        """Sum of every weight penalty and of the activity penalties of the last
        training forward pass (see ``cdl.regularizers``)."""
        return sum(layer.regularization_loss() for layer in self._layers) + sum(
            runner.activity_penalty for runner in self._runners())

    def has_regularization(self):
        """True if any layer has a weight or activity penalty."""
        return any(owner._regularizers for layer in self._layers
                   for owner, _ in layer.weight_owners()) or any(
            getattr(layer, "activity_regularizer", None) is not None for layer in self._layers)

    def add_regularization_gradients(self):
        """Add every weight penalty's gradient to the gradients in ``grads``."""
        for layer in self._layers:
            layer.add_regularization_gradients()

    def count_params(self):
        """Total number of scalar weights.

        Examples
        --------
        >>> import cdl
        >>> from cdl import layers
        >>> cdl.Sequential([layers.Dense(3), layers.Dense(1)], input_shape=(2,)).count_params()   # (2*3 + 3) + (3*1 + 1)
        13
        """
        self.ensure_built()
        return int(self.param_buffer.size)

    # --- weights --------------------------------------------------------------

    def get_weights(self):
        """Copies of every weight, in the order of ``params``.

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers, optimizers
        >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> y = np.array([0, 1, 1, 0])
        >>> model = cdl.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)],
        ...                        input_shape=(2,), seed=0)
        >>> model.compile(optimizers.Adam(lr=0.05), "cross_entropy", metrics=["accuracy"])
        >>> saved = model.get_weights()              # copies
        >>> history = model.fit(x, y, epochs=5, verbose=0)
        >>> model.set_weights(saved)                 # back to the initial weights
        >>> all(np.array_equal(a, b) for a, b in zip(model.params, saved))
        True
        """
        self.ensure_built()
        return [p.copy() for p in self.params]

    @_concurrency.weights_write
    def set_weights(self, weights):
        """Copy ``weights`` (as returned by ``get_weights``) into the model.

        Every array is checked before any weight changes, so a refused
        call leaves the model as it was. Booleans, integers and floats are
        converted to the model's dtype; NaN and infinity are copied as they
        are (as ``load_weights`` copies them from a file).

        Thread-safe: predictions running in other threads finish with the
        old weights first, and those starting meanwhile wait for the new
        ones, so each sees one whole set.

        Raises
        ------
        TypeError
            If an array holds complex numbers, strings or objects.
        ValueError
            If the number of arrays or a shape differs from ``params``, or
            a finite value is too large for the model's dtype.
        RuntimeError
            If another thread is training the model (see ``fit``).
        """
        self.ensure_built()
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(f"expected {len(self.params)} arrays, got {len(weights)}")
        converted = []
        for i, (p, w) in enumerate(zip(self.params, weights)):
            w = as_real_array(w, f"weight {i}")
            if w.shape != p.shape:
                raise ValueError(f"weight {i} has shape {w.shape}, expected {p.shape}")
            with np.errstate(over="ignore"):
                value = w.astype(self.dtype)
            if w.dtype.kind == "f" and np.isinf(value).any() and \
                    np.isfinite(w[np.isinf(value)]).any():
                raise ValueError(f"weight {i} has values too large for {self.dtype}")
            converted.append(value)
        for p, value in zip(self.params, converted):
            p[...] = value

    def find_lr(self, x, y, **kwargs):
        """Learning-rate range test: a short run with an exponentially rising
        rate, recording the loss, after which the model is restored exactly.

        See ``cdl.tuning.find_lr`` for the parameters (``start_lr``,
        ``end_lr``, ``num_steps``, ``batch_size``, ...).

        Returns
        -------
        cdl.tuning.LRFinderResult
            ``lrs``, ``losses``, ``suggested_lr`` and ``plot(path)``.

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(256, 4))
        >>> y = (x[:, 0] > 0).astype(int)
        >>> model = cdl.Sequential([layers.Dense(8, activation="relu"), layers.Dense(2)],
        ...                        input_shape=(4,), seed=0)
        >>> model.compile("sgd", "cross_entropy")
        >>> result = model.find_lr(x, y, num_steps=30)
        >>> 1e-7 <= result.suggested_lr <= 10.0
        True
        """
        from cdl.tuning import find_lr

        return find_lr(self, x, y, **kwargs)

    # --- reporting ------------------------------------------------------------

    def summary(self, print_fn=print):
        """Print the graph: every input and layer call with its output shape,
        its parameters (a shared layer's on its first call) and the tensors
        it reads, then the totals. A layer's ``k``-th later call is written
        ``name[k]``.

        Examples
        --------
        >>> import cdl
        >>> from cdl import layers
        >>> a = cdl.Input(shape=(4,), name="a")
        >>> shared = layers.Dense(3, name="shared")
        >>> out = layers.Add(name="sum")([shared(a), shared(layers.Dense(4, name="pre")(a))])
        >>> cdl.Model(a, out, name="siamese").summary()
        Model "siamese" (float32)
        ---------------------------------------------------------
        Layer (type)    Output shape  Params  Connected to       
        ---------------------------------------------------------
        a (Input)       (None, 4)     0                          
        shared (Dense)  (None, 3)     15      a                  
        pre (Dense)     (None, 4)     20      a                  
        shared[1]       (None, 3)     0       pre                
        sum (Add)       (None, 3)     0       shared, shared[1]  
        ---------------------------------------------------------
        Total params: 35 (140 B)
        Inputs: a; outputs: sum
        """
        rows = [(f"{name} (Input)", str((None,) + t.shape), 0, "")
                for name, t in zip(self.input_names, self._graph.inputs)]
        for node, label, sources in graph_rows(self):
            first = not label.endswith("]")
            rows.append((f"{label} ({type(node.layer).__name__})" if first else label,
                         str((None,) + node.output.shape),
                         node.layer.count_params() if first else 0, ", ".join(sources)))
        headers = ("Layer (type)", "Output shape", "Params", "Connected to")
        widths = [max(len(str(r[i])) for r in rows + [headers]) + 2 for i in range(4)]
        line = "-" * sum(widths)
        print_fn(f'Model "{self.name}" ({self.dtype.name})')
        print_fn(line)
        print_fn("".join(h.ljust(w) for h, w in zip(headers, widths)))
        print_fn(line)
        for r in rows:
            print_fn("".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                              f"{r[2]:,}".ljust(widths[2]), r[3].ljust(widths[3])]))
        print_fn(line)
        print_fn(f"Total params: {self.count_params():,} "
                 f"({_bytes(self.count_params() * self.dtype.itemsize)})")
        print_fn(f"Inputs: {', '.join(self.input_names)}; outputs: "
                 f"{', '.join(self.output_names)}")

    # --- saving ------------------------------------------------------------

    def save(self, path, include_optimizer=True):
        """Save the architecture, weights, compile settings, optimizer state
        and random generator to ``path`` (see ``cdl.io``); reload with
        ``cdl.load_model``.

        Examples
        --------
        >>> import cdl
        >>> from cdl import layers
        >>> model = cdl.Sequential([layers.Dense(3)], input_shape=(2,), seed=0)
        >>> model.compile("adam", "mse")
        >>> model.save("model.cdl")
        >>> restored = cdl.load_model("model.cdl")
        >>> restored.compile_config()["loss"]
        {'class_name': 'MSE', 'config': {'reduction': 'mean'}}
        """
        if self.built:
            self.ensure_built()   # a graph model takes back weights another model holds
        save_model(self, path, include_optimizer=include_optimizer)

    def save_weights(self, path):
        """Save only the weights to ``path`` (see ``cdl.io.save_weights``)."""
        if self.built:
            self.ensure_built()
        save_weights(self, path)

    def load_weights(self, path):
        """Load weights saved by ``save_weights`` or ``save`` into this model
        (see ``cdl.io.load_weights``).

        Thread-safe as ``set_weights``: a prediction in another thread sees
        either the old or the loaded weights, entirely. Raises RuntimeError
        if another thread is training the model.
        """
        load_weights(self, path)



@register_model_class
class Sequential(Model):
    """A linear stack of layers: the ``Model`` whose graph is a chain.

    Parameters
    ----------
    layers : list of Layer, optional
    input_shape : tuple of int, optional
        Shape of one sample (without the batch axis). If given, the model
        is built at once; otherwise on the first ``forward``.
    dtype : {"float32", "float64"}
        Dtype of every weight, activation and gradient in the model.
    seed : int, optional
        Seeds the generator used for weight initialisation and dropout.
    name : str, optional

    Attributes
    ----------
    params : list of ndarray
        Every layer's weights, in layer order, weight before bias; views
        into one flat, contiguous buffer (``param_buffer``).
    grads : list of ndarray
        Gradients aligned with ``params``, views into ``grad_buffer``;
        ``backward`` overwrites them.

    Examples
    --------
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.Dense(3, activation="sigmoid"),
    ...                         layers.Dense(1)], input_shape=(2,), seed=0)
    >>> model.forward([[0.0, 1.0]]).shape
    (1, 1)
    """

    def __init__(self, layers=None, input_shape=None, dtype="float32", seed=None,
                 name="sequential"):
        self._init_common(name, dtype, seed)
        self.input_shape = None if input_shape is None else check_shape_tuple(
            input_shape, allow_none=True)
        self._layers = []
        # What add checks, so that adding a layer costs the same however many
        # there are: the layers' ids, and their names (rebuilt when a layer
        # anywhere was renamed since, see _names_in_use).
        self._layer_ids = set()
        self._names = set()
        self._names_at = _base.rename_count()
        self._out_shape = None
        for layer in layers or ():
            self.add(layer)
        if self.input_shape is not None and self._layers:
            self.build()

    # --- structure ---------------------------------------------------------

    @property
    def chain(self):
        """The layers, in order: a Sequential is always one chain."""
        return list(self._layers)

    #: A Sequential is a chain of layers, not a graph of symbolic tensors.
    graph = None

    @property
    def output_layers(self):
        """The last layer, which computes the one output."""
        return self._layers[-1:]

    @property
    def input_names(self):
        """``["input"]``: a Sequential has one input."""
        return ["input"]

    @property
    def output_names(self):
        """The name of the last layer, which names the one output."""
        return [self._layers[-1].name] if self._layers else ["output"]

    @property
    def inputs(self):
        raise AttributeError("a Sequential has no symbolic inputs; build a cdl.Model from "
                             "cdl.Input tensors for a graph of layers")

    outputs = inputs

    def _runners(self):
        return list(self._layers)

    def ensure_built(self):
        """Build the model (for its ``input_shape``) if it is not built yet."""
        if not self.built:
            self.build()

    def add(self, layer):
        """Append a layer; the model is (re)built before its next use.

        Examples
        --------
        >>> import cdl
        >>> from cdl import layers
        >>> model = cdl.Sequential(input_shape=(4,))
        >>> model.add(layers.Dense(8, activation="relu"))
        >>> model.add(layers.Dense(1))
        >>> model.forward([[1.0, 2.0, 3.0, 4.0]]).shape
        (1, 1)
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential takes Layer instances, got {layer!r}")
        if id(layer) in self._layer_ids:
            raise ValueError(f"layer {layer.name!r} is already in this model")
        names = self._names_in_use()
        if layer.name in names:
            raise ValueError(f"a layer named {layer.name!r} is already in this model")
        if layer.dtype is not None and layer.dtype != self.dtype:
            raise ValueError(
                f"layer {layer.name!r} has dtype {layer.dtype}, the model {self.dtype}")
        self._layers.append(layer)
        self._layer_ids.add(id(layer))
        names.add(layer.name)
        self.built = False

    def _names_in_use(self):
        """The set of the layers' names, rebuilt if any layer was renamed since
        it was last built (renaming is rare: this keeps ``add`` O(1))."""
        renames = _base.rename_count()
        if renames != self._names_at:
            self._names = {layer.name for layer in self._layers}
            self._names_at = renames
        return self._names

    def build(self, input_shape=None):
        """Build every layer for samples of ``input_shape`` and pack the
        weights into one flat buffer (and the gradients into another)."""
        if input_shape is not None:
            input_shape = check_shape_tuple(input_shape, allow_none=True)
            if self.built and input_shape != self.input_shape:
                raise ValueError(
                    f"model was built for inputs of shape {self.input_shape}, "
                    f"not {input_shape}")
            self.input_shape = input_shape
        if self.input_shape is None:
            raise ValueError("the model needs an input_shape to be built")
        if not self._layers:
            raise ValueError("the model has no layers")
        for layer in self._layers[1:]:
            if not layer.has_input_gradient:
                raise ValueError(
                    f"{layer.name} ({type(layer).__name__}) has no input gradient, so it can "
                    "only be the first layer of a model")
        shape = self.input_shape
        for layer in self._layers:
            shape = layer._build(shape, self.dtype, self.rng)
            if isinstance(shape, list):
                raise ValueError(
                    f"{layer.name} ({type(layer).__name__}) has several outputs (such as "
                    "return_state=True), which a Sequential model cannot chain; use a "
                    "graph model (cdl.Model)")
        self.output_shape = shape
        self._pack()
        self.built = True

    def get_config(self):
        """Architecture as a JSON-friendly dict.

        Examples
        --------
        >>> import cdl
        >>> from cdl import layers
        >>> config = cdl.Sequential([layers.Dense(3, name="hidden")], input_shape=(2,), seed=0).get_config()
        >>> config["input_shape"], config["layers"][0]["class_name"], config["layers"][0]["config"]["units"]
        ([2], 'Dense', 3)
        """
        return {
            "name": self.name,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                       for layer in self._layers],
        }

    @classmethod
    def from_config(cls, config, make_layer=None, max_nodes=None):
        """A Sequential from ``get_config()``'s output (unbuilt layers; built
        now if the config has an input shape)."""
        from cdl.layers import get
        make_layer = make_layer or (lambda name, cfg: get(name).from_config(cfg))
        layers = [make_layer(spec["class_name"], spec["config"]) for spec in config["layers"]]
        return cls(layers, input_shape=config.get("input_shape"),
                   dtype=config.get("dtype", "float32"), seed=config.get("seed"),
                   name=config.get("name", "sequential"))

    # --- computing ---------------------------------------------------------

    def check_input(self, x):
        """The input batch ``x`` as a checked array of the model's dtype: a
        batch of finite samples of the model's input shape (the model is
        built for ``x``'s sample shape if it has no input shape yet)."""
        if isinstance(x, np.ndarray) and x.ndim:
            # Before any conversion copies it: a broadcast view can be far
            # larger than its memory. predict() splits large inputs itself.
            from cdl._validation import check_blas_size
            check_blas_size(x.shape[0], "the batch size of x (one forward pass)")
        if not self.built and self.input_shape is None:
            x = as_float_array(x, self.dtype, "x")
            if x.ndim < 2:
                raise ValueError(
                    f"x has shape {x.shape}; expected (batch_size, features...): "
                    "for a single sample use x[None]")
            self.build(x.shape[1:])
        else:
            self.ensure_built()
            x = as_float_array(x, self.dtype, "x")
        check_feature_shape(x, self.input_shape, "x")
        check_finite(x, "x")
        return x

    @_determinism.blas_scope
    def forward(self, x, training=False):
        """Run the batch ``x`` through every layer and return the output.

        Parameters
        ----------
        x : array_like of shape ``(batch_size, *input_shape)``
        training : bool
            Training-mode behaviour (dropout active).

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers
        >>> model = cdl.Sequential([layers.Dense(3, activation="sigmoid")], input_shape=(2,), seed=0)
        >>> out = model.forward(np.ones((4, 2)))
        >>> out.shape, out.dtype
        ((4, 3), dtype('float32'))
        """
        training = check_bool(training, "training")
        return self.forward_checked(self.check_input(x), training)

    def forward_checked(self, x, training):
        """Forward pass of an input already checked by ``check_input``.

        One pass at a time per model: layers keep per-call state.
        """
        check = _anomaly.checking(self)
        mask = None   # the padding mask of x (see Layer.compute_mask)
        with _concurrency.guard_of(self).layer_lock:
            for index, layer in enumerate(self._layers):
                if mask is None:
                    x = layer.forward(x, training)
                    if layer.produces_mask:
                        mask = layer.compute_mask(None)
                else:
                    x, mask = _masked_forward(layer, x, mask, training)
                if check:
                    _anomaly.check_forward(layer, index, x)
            self._out_shape = x.shape
        return x

    @_determinism.blas_scope
    def backward(self, grad):
        """Back-propagate d loss / d output of the last ``forward``.

        Overwrites ``grads`` and returns d loss / d input.

        Examples
        --------
        >>> import numpy as np
        >>> import cdl
        >>> from cdl import layers, losses
        >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(2,), seed=0, dtype="float64")
        >>> x, target = np.array([[1.0, 2.0]]), np.array([[0.0]])
        >>> loss_fn = losses.MSE()
        >>> loss = loss_fn.forward(model.forward(x, training=True), target)
        >>> dx = model.backward(loss_fn.backward())        # fills model.grads
        >>> kernel_grad, bias_grad = model.grads
        >>> np.allclose(kernel_grad, x.T * bias_grad)     # dL/dW = x^T dL/dz
        True
        """
        if self._out_shape is None:
            raise RuntimeError("backward called before forward")
        grad = as_float_array(grad, self.dtype, "grad")
        if grad.shape != self._out_shape:
            raise ValueError(
                f"grad has shape {grad.shape}, expected {self._out_shape} "
                "(the shape of the last forward output)")
        return self.backward_checked(grad, True)

    def backward_checked(self, grad, input_grad):
        """Backward pass of a gradient already known to fit the last output;
        with ``input_grad=False`` the first layer may skip (and return None
        for) the gradient with respect to the model's input."""
        first = self._layers[0]
        first._input_grad_needed = input_grad
        check = _anomaly.checking(self)
        try:
            for index in range(len(self._layers) - 1, -1, -1):
                layer = self._layers[index]
                grad = layer.backward(grad)
                if check:
                    _anomaly.check_backward(layer, index, grad)
        finally:
            first._input_grad_needed = True
        return grad

    __call__ = forward

    def __repr__(self):
        return f"<Sequential {self.name!r}: {len(self._layers)} layers, dtype {self.dtype}>"

    # --- reporting ------------------------------------------------------------

    def summary(self, print_fn=print):
        """Print each layer's output shape, parameter count, FLOPs per sample
        and activation memory per sample, and the totals.

        Examples
        --------
        >>> import cdl
        >>> from cdl import layers
        >>> cdl.Sequential([layers.Dense(8, activation="relu", name="hidden"),
        ...                 layers.Dense(2, name="output")], input_shape=(4,), name="tiny").summary()
        Model "tiny" (float32, input (None, 4))
        ------------------------------------------------------------------------
        Layer (type)    Output shape  Params  FLOPs/sample  Activations/sample  
        ------------------------------------------------------------------------
        hidden (Dense)  (None, 8)     40      80            32 B                
        output (Dense)  (None, 2)     18      34            8 B                 
        ------------------------------------------------------------------------
        Total params: 58 (232 B)
        Forward FLOPs per sample: 114
        Activation memory per sample: 40 B
        """
        self.ensure_built()
        rows = []
        shape = self.input_shape
        for layer in self._layers:
            out_shape = layer.output_shape
            # A free axis (None, time steps of any number) counts as one step.
            flops = layer.flops_per_sample(tuple(1 if d is None else d for d in shape))
            memory = int(np.prod([d or 1 for d in out_shape])) * self.dtype.itemsize
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None,) + out_shape),
                         layer.count_params(), flops, memory))
            shape = out_shape
        headers = ("Layer (type)", "Output shape", "Params", "FLOPs/sample", "Activations/sample")
        widths = [max(len(str(r[i])) for r in rows + [headers]) + 2 for i in range(5)]
        line = "-" * sum(widths)
        print_fn(f'Model "{self.name}" ({self.dtype.name}, input {(None,) + self.input_shape})')
        print_fn(line)
        print_fn("".join(h.ljust(w) for h, w in zip(headers, widths)))
        print_fn(line)
        for r in rows:
            print_fn("".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                              f"{r[2]:,}".ljust(widths[2]), f"{r[3]:,}".ljust(widths[3]),
                              _bytes(r[4]).ljust(widths[4])]))
        print_fn(line)
        print_fn(f"Total params: {self.count_params():,} "
                 f"({_bytes(self.count_params() * self.dtype.itemsize)})")
        print_fn(f"Forward FLOPs per sample: {sum(r[3] for r in rows):,}")
        print_fn(f"Activation memory per sample: {_bytes(sum(r[4] for r in rows))}")


def graph_rows(model):
    """``(node, label, source labels)`` for each layer call of a graph model,
    in order: a layer's first call is labelled with its name, its ``k``-th
    later call ``name[k]``; a source is an input's name or a call's label.
    For ``summary`` and ``cdl.utils.plot_model``."""
    labels = {t.id: name for name, t in zip(model.input_names, model.inputs)}
    calls, rows = {}, []
    for node, _ in model._steps:
        k = calls.get(id(node.layer), 0)
        calls[id(node.layer)] = k + 1
        label = node.layer.name if k == 0 else f"{node.layer.name}[{k}]"
        rows.append((node, label, [labels[t.id] for t in node.inputs]))
        for k, tensor in enumerate(node.outputs):
            labels[tensor.id] = label if k == 0 else f"{label}:{k}"
    return rows


def _shape_list(shape):
    return [tuple(s) for s in shape] if isinstance(shape, list) else tuple(shape)


def _accumulate(pending, key, value):
    """Add a gradient for the tensor ``key``: the first is kept as it is, later
    ones summed into a new array (a layer may return a buffer it reuses)."""
    if key in pending:
        pending[key] = pending[key] + value
    else:
        pending[key] = value


def _masked_forward(layer, x, mask, training):
    """``layer.forward`` with ``mask`` (the padding mask of its input, or a
    list of them for a layer that takes a list) as its ``input_mask``;
    returns the output and its mask."""
    layer.input_mask = mask
    try:
        y = layer.forward(x, training)
    finally:
        layer.input_mask = None
    return y, layer.compute_mask(mask)


def _call_copy(layer):
    """A copy of ``layer`` (and of the layers it holds) that shares its
    weights, buffers and random generator but nothing else: its gradients
    and per-call state are its own."""
    memo = {}
    for sub in iter_layers(layer):
        for owner, name in sub.weight_owners():
            value = getattr(owner, name)
            memo[id(value)] = value
        for value in sub.buffers().values():
            memo[id(value)] = value
        if sub._rng is not None:
            memo[id(sub._rng)] = sub._rng
        for regularizer in sub._regularizers.values():
            memo[id(regularizer)] = regularizer
    return copy.deepcopy(layer, memo)


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
