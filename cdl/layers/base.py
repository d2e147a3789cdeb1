"""The Layer base class: configuration, weights, and the forward/backward contract."""
import contextlib
import itertools
import math
import operator
import threading
from typing import NamedTuple

import numpy as np

from cdl import initializers
from cdl.layers import symbolic
from cdl._validation import (
    FLOAT_DTYPES, as_float_array, as_float_dtype, as_real_array, check_feature_shape)

_layer_ids = itertools.count()
# How many times a layer has been renamed (``Layer.name`` assigned after the
# first time), read through rename_count.
_renames = [0]
_renames_lock = threading.Lock()


def rename_count():
    """How many times any layer has been renamed in this process.

    A model keeps an index of its layers' names so that ``add`` checks a
    new name in constant time; the index is stale only if this count moved
    since it was made.
    """
    with _renames_lock:
        return _renames[0]


_budget = threading.local()   # the allocation_budget active in this thread, if any


class AllocationError(ValueError):
    """A layer asked for more weights or buffers than the active
    ``allocation_budget`` allows; raised before anything is allocated."""


class _Budget:
    """The state of one ``allocation_budget``: what is left, and the
    initialisers skipped so far (see ``initialise``)."""

    def __init__(self, weights, buffers, source, flat):
        self.limits = {"weights": weights, "buffers": buffers}
        self.used = {"weights": 0, "buffers": 0}
        self.source = source
        self.flat = flat
        self.pending = []       # (layer, name, shape, initializer or fill value, is weight)
        self.unfilled = set()   # (id(layer), weight name) of the zero weights made here

    def take(self, kind, layer, name, shape):
        """Count ``shape``'s elements against ``kind``; raise AllocationError
        if they do not fit."""
        used = self.used[kind] + math.prod(shape)
        if used > self.limits[kind]:
            what = "weight" if kind == "weights" else "buffer"
            raise AllocationError(
                f"{what} {layer.name}.{name} of shape {shape} brings the {kind} to "
                f"{used:,} values, more {kind} than the {self.limits[kind]:,} values "
                f"{self.source} holds for {kind}")
        self.used[kind] = used

    def initialise(self):
        """Give every weight and buffer made under the budget the value a
        normal build would have given it, running the skipped initialisers in
        the order they were skipped (the layers' generators are drawn from as
        by that build). For a build whose arrays were then not overwritten,
        such as a load that failed after building the caller's model."""
        pending, self.pending = self.pending, []
        self.unfilled.clear()
        for layer, name, shape, how, is_weight in pending:
            if is_weight:
                getattr(layer, name)[...] = _initial_value(layer, name, shape, how)
            else:
                getattr(layer, name)[...] = how


def active_allocation_budget():
    """The ``allocation_budget`` active in this thread, or None.

    ``Sequential`` asks it when packing weights: weights made under a budget
    hold no values yet, so they need not be copied.
    """
    return getattr(_budget, "active", None)


@contextlib.contextmanager
def allocation_budget(weights, buffers=0, source="the budget", flat=None):
    """Build layers without initialising them, within a bound on their state.

    While the context is active in this thread, ``Layer.add_weight`` and
    ``Layer.add_buffer`` run no initialiser: they make zero-filled arrays
    (whose memory the operating system provides when first written) for
    values that the caller is about to overwrite, such as those of a model
    file. Before allocating, each counts its elements against the budget and
    raises ``AllocationError`` if the weights (or buffers) made under the
    context would exceed ``weights`` (or ``buffers``) elements in total. A
    build therefore costs no more than the data that will fill it, whatever
    sizes a configuration asks for. Contexts do not nest.

    Parameters
    ----------
    weights, buffers : int
        Elements allowed for weights and for buffers.
    source : str
        What holds the values, for messages ("the file").
    flat : ndarray, optional
        The values of every weight to be made, in order, in one flat
        array: a ``Sequential`` whose weights are all made under the budget
        takes it as its parameter buffer if it has the model's dtype and
        size, rather than allocating one and copying the values into it.

    Yields
    ------
    An object whose ``initialise()`` gives the arrays made so far the
    values a normal build would have given them.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> from cdl.layers.base import AllocationError, allocation_budget
    >>> with allocation_budget(weights=10, source="the file"):
    ...     layers.Dense(2)._build((4,), "float64", np.random.default_rng(0))
    (2,)
    >>> try:
    ...     with allocation_budget(weights=10, source="the file"):
    ...         layers.Dense(3, name="d")._build((4,), "float64", np.random.default_rng(0))
    ... except AllocationError as error:
    ...     print(error)
    weight d.kernel of shape (4, 3) brings the weights to 12 values, more weights than the 10 values the file holds for weights
    """
    if active_allocation_budget() is not None:
        raise RuntimeError("allocation_budget contexts do not nest")
    budget = _Budget(int(weights), int(buffers), source, flat)
    _budget.active = budget
    try:
        yield budget
    finally:
        _budget.active = None


class FusedStep(NamedTuple):
    """One step of the compiled fused training step, as a layer describes it
    in ``Layer.fused_steps``.

    Attributes
    ----------
    kind : {"dense", "activation", "dropout"}
        The kernel: ``y = act(x @ weight + bias)``, ``y = act(x)``, or
        inverted dropout.
    width_in, width_out : int
        Features per sample in and out.
    code : int
        The activation's kernel code (``cdl._kernels.activations.CODES``);
        0 for dropout.
    param : float
        The activation's parameter (slope, alpha, beta), or dropout's rate.
    weight, bias, weight_grad, bias_grad : ndarray or None
        A dense step's arrays (the layer's own, which the step reads and
        writes in place); None elsewhere, and bias and its gradient are
        None without a bias.
    """

    kind: str
    width_in: int
    width_out: int
    code: int = 0
    param: float = 0.0
    weight: object = None
    bias: object = None
    weight_grad: object = None
    bias_grad: object = None


def iter_layers(layers):
    """Every layer of ``layers`` and, depth first, every layer they hold.

    Parameters
    ----------
    layers : Layer or iterable of Layer
        A layer, or a list of layers such as ``model.layers``.

    Yields
    ------
    Layer
        Each layer before its ``sublayers()`` (recursively), in their
        order; a layer reached twice is yielded once.

    Examples
    --------
    >>> from cdl import layers
    >>> from cdl.layers import iter_layers
    >>> stack = [layers.Residual([layers.Dense(4, name="inner")], name="block"),
    ...          layers.Dense(1, name="out")]
    >>> [layer.name for layer in iter_layers(stack)]
    ['block', 'inner', 'out']
    """
    pending = [layers] if isinstance(layers, Layer) else list(layers)
    pending.reverse()
    seen = set()
    while pending:
        layer = pending.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        # Reversed onto the stack, so the first child is visited next.
        pending.extend(reversed(layer.sublayers()))


def _check_state_shape(layer, name, shape):
    """``shape`` as a tuple of non-negative ints, checked before any allocation."""
    try:
        shape = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(f"the shape of {layer.name}.{name} must be a tuple of ints, "
                        f"got {shape!r}") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"the shape of {layer.name}.{name} has a negative size: {shape}")
    return shape


def _as_input_shape(layer, input_shape):
    """``input_shape`` as a tuple of ints, or for a layer that ``takes_list``
    a list of such tuples."""
    try:
        if layer.takes_list:
            if isinstance(input_shape, tuple) and all(isinstance(d, int) for d in input_shape):
                raise TypeError
            return [tuple(_axis(d) for d in shape) for shape in input_shape]
        return tuple(_axis(d) for d in input_shape)
    except TypeError:
        what = "a list of per-sample shapes" if layer.takes_list else "a per-sample shape"
        raise TypeError(f"layer {layer.name!r} is built for {what}, got {input_shape!r}") \
            from None


def _axis(d):
    """A per-sample axis size: an int, or None for a free axis (time steps
    of any number)."""
    return None if d is None else int(d)


def _initial_value(layer, name, shape, initializer):
    value = np.ascontiguousarray(initializer(shape, layer.dtype, layer._rng), dtype=layer.dtype)
    if value.shape != shape:
        raise ValueError(
            f"initializer for {layer.name}.{name} returned shape {value.shape}, "
            f"expected {shape}")
    return value


def merge_masks(masks):
    """One padding mask for several inputs: the first that is not None when
    the others are None or equal to it, else the logical AND of those that
    are not None (None if all are None)."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    first = present[0]
    if all(m is first or np.array_equal(m, first) for m in present[1:]):
        return first
    out = first.copy()
    for m in present[1:]:
        np.logical_and(out, m, out=out)
    return out


class Layer:
    """Base class of every layer, built-in or written by a user.

    A layer is configured in ``__init__``, creates its weights in
    ``build(input_shape)`` with ``add_weight``, and implements
    ``forward(x, training=False) -> y`` and ``backward(dy) -> dx``. Shapes
    given to ``build`` and ``compute_output_shape`` are per sample (without
    the batch axis).

    Parameters
    ----------
    name : str, optional
        Unique within a model; defaults to the class name and a counter.
    dtype : {"float32", "float64"}, optional
        Set by the model that holds the layer; for a standalone layer it
        defaults to the dtype of the first input (float32 for non-floats).

    Notes
    -----
    To write a layer in Python, subclass ``Layer``:

    - in ``build``, create weights with ``self.add_weight("w", shape)``. The
      array is stored as ``self.w`` and its gradient as ``self.w_grad``.
      A model moves both into its flat parameter and gradient buffers, so
      always reach them through these attributes, never through a copy of
      the reference taken before the model was built. Other state kept
      across batches (running statistics) is made with ``add_buffer``.
      Allocate no such state in any other way: loading a model builds it
      under an ``allocation_budget``, which only these two methods respect;
    - in ``forward``, call ``x = self._check_input(x)`` first, keep what the
      backward pass needs, and return the output;
    - in ``backward``, *overwrite* every ``<name>_grad`` (``[...] =``) with
      the gradient of the loss for this batch and return the gradient with
      respect to the input.

    ``cdl.gradcheck(layer, x)`` then checks the gradients numerically.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> class Scale(cdl.layers.Layer):
    ...     # y = x * w, with one learned factor per feature
    ...     def build(self, input_shape):
    ...         self.add_weight("w", (input_shape[-1],), "ones")
    ...     def forward(self, x, training=False):
    ...         x = self._check_input(x)
    ...         self._x = x
    ...         return x * self.w
    ...     def backward(self, grad):
    ...         self.w_grad[...] = (grad * self._x).sum(axis=0)
    ...         return grad * self.w
    >>> errors = cdl.gradcheck(Scale(name="scale"), np.random.default_rng(0).normal(size=(4, 3)))
    >>> sorted(errors)
    ['input', 'scale.w']
    >>> max(errors.values()) < 1e-6
    True
    """

    #: False for layers whose input is not differentiable (Embedding's
    #: indices): their ``backward`` returns None, so they must come first.
    has_input_gradient = True
    #: Set to False by a model, for the duration of one backward pass, on its
    #: first layer when nothing needs the input gradient (a training step);
    #: layers that can skip computing it then return None.
    _input_grad_needed = True
    #: True for layers that take a list of inputs (the merge layers, such as
    #: ``Add``): their ``build`` and ``compute_output_shape`` receive a list
    #: of per-sample shapes, ``forward`` a list of arrays, and ``backward``
    #: returns a list of gradients, one per input, in order.
    takes_list = False
    #: True for layers that take either one input or a list (attention:
    #: ``mha(x)`` or ``mha([query, value])``): their first call, on arrays or
    #: on symbolic tensors, sets ``takes_list`` for good.
    takes_list_or_tensor = False
    #: True for layers that keep the time axis of ``(batch, T, ...)``
    #: inputs (Dense, Dropout, activations, LayerNorm, attention): a
    #: padding mask passes through them (see ``compute_mask``). Other
    #: layers drop it.
    supports_masking = False
    #: True for layers that start a padding mask from their input
    #: (``Embedding(mask_zero=True)``): a model asks their ``compute_mask``
    #: even when no mask came with the input.
    produces_mask = False
    #: The padding mask of the input of the current call, bool ``(batch,
    #: T)`` with True for a real time step, or None; set by a model just
    #: before ``forward`` and reset to None after it. Layers that read it
    #: (attention, global pooling) keep what their backward pass needs.
    input_mask = None

    def __init__(self, name=None, dtype=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        self.name = name or f"{type(self).__name__.lower()}_{next(_layer_ids)}"
        self.dtype = None if dtype is None else as_float_dtype(dtype)
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._param_names = []
        self._buffer_names = []       # made by add_buffer, listed by buffers()
        self._regularizers = {}       # weight name -> Regularizer
        self.activity_penalty = 0.0   # set by forward in training, for activity regularizers
        self._rng = None

    @property
    def name(self):
        """The layer's name, unique within a model."""
        return self._name

    @name.setter
    def name(self, value):
        if "_name" in vars(self):
            # A model holding the layer indexes its layers by name.
            with _renames_lock:
                _renames[0] += 1
        self._name = value

    # --- configuration -----------------------------------------------------

    def get_config(self):
        """Constructor arguments as a JSON-friendly dict (subclasses extend it)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        """Create a layer (unbuilt) from ``get_config()``'s output."""
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"

    # --- building ----------------------------------------------------------

    def build(self, input_shape):
        """Create the layer's weights for samples of shape ``input_shape``.

        Layers without weights need not override this.
        """

    def compute_output_shape(self, input_shape):
        """Per-sample output shape for a per-sample ``input_shape`` (default: same)."""
        return tuple(input_shape)

    def _build(self, input_shape, dtype=None, rng=None):
        """Build once, for a model (which passes its dtype and generator) or alone."""
        if dtype is not None:
            dtype = as_float_dtype(dtype)
            if self.dtype is not None and self.dtype != dtype and self.built:
                raise ValueError(
                    f"layer {self.name!r} was built as {self.dtype} and cannot "
                    f"join a {dtype} model")
            self.dtype = dtype
        if self.dtype is None:
            self.dtype = np.dtype(np.float32)
        if rng is not None:
            self._rng = rng
        if self._rng is None:
            self._rng = np.random.default_rng()
        input_shape = _as_input_shape(self, input_shape)
        if self.built:
            if input_shape != self.input_shape:
                raise ValueError(
                    f"layer {self.name!r} was built for inputs of shape "
                    f"{self.input_shape}, cannot take {input_shape}")
            return self.output_shape
        shapes = input_shape if self.takes_list else [input_shape]
        if any(d is not None and d < 1 for shape in shapes for d in shape):
            # Weights, statistics and kernels all assume non-empty samples.
            raise ValueError(
                f"cannot build layer {self.name!r} for samples of shape {input_shape}: "
                "every axis of a sample needs at least one element")
        try:
            self.build(input_shape)
            output_shape = self.compute_output_shape(input_shape)
        except TypeError:
            if not any(d is None for shape in shapes for d in shape):
                raise
            # Arithmetic on a free axis (None): the layer needs its size.
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) needs every axis "
                             f"of its input known, got samples of shape {input_shape} "
                             "(None: a free axis)") from None
        self.input_shape = input_shape
        self.output_shape = (list(map(tuple, output_shape)) if isinstance(output_shape, list)
                             else tuple(output_shape))
        self.built = True
        return self.output_shape

    def add_weight(self, name, shape, initializer="zeros", regularizer=None):
        """Create a weight and its gradient; store them as ``name`` and ``name_grad``.

        Parameters
        ----------
        name : str
            Attribute name, a Python identifier unique within the layer.
        shape : tuple of int
        initializer : str or callable
            See ``cdl.initializers.get``. Not called under an
            ``allocation_budget``, which makes a zero-filled weight (to be
            overwritten, as by a model file) after checking its size.
        regularizer : str or cdl.regularizers.Regularizer, optional
            Penalty on this weight, added to the loss during training.

        Returns
        -------
        ndarray of the given shape and the layer's dtype
        """
        if not name.isidentifier() or name in self._param_names:
            raise ValueError(f"weight name {name!r} is not a new identifier")
        shape = _check_state_shape(self, name, shape)
        init = initializers.get(initializer)
        budget = active_allocation_budget()
        if budget is not None:
            budget.take("weights", self, name, shape)
            value = np.zeros(shape, dtype=self.dtype)
            budget.pending.append((self, name, shape, init, True))
            budget.unfilled.add((id(self), name))
        else:
            value = _initial_value(self, name, shape, init)
        setattr(self, name, value)
        # np.zeros, not zeros_like (which writes the zeros): the pages stay
        # untouched until a backward pass, or the model's buffer replaces them.
        setattr(self, name + "_grad", np.zeros(shape, dtype=self.dtype))
        self._param_names.append(name)
        if regularizer is not None:
            from cdl import regularizers
            self._regularizers[name] = regularizers.get(regularizer)
        return value

    def add_buffer(self, name, shape, fill=0.0):
        """Create non-trainable state (see ``buffers``), stored as ``name``.

        Every array a layer keeps across batches other than its weights (such
        as running statistics) is made here in ``build``, so that a model
        loaded from a file allocates only what the file holds.

        Parameters
        ----------
        name : str
            Attribute name, a Python identifier unique within the layer.
        shape : tuple of int
        fill : float
            The initial value of every element. Under an
            ``allocation_budget`` the buffer is zero-filled instead (to be
            overwritten), after its size is checked.

        Returns
        -------
        ndarray of the given shape and the layer's dtype
        """
        if not name.isidentifier() or name in self._buffer_names:
            raise ValueError(f"buffer name {name!r} is not a new identifier")
        shape = _check_state_shape(self, name, shape)
        budget = active_allocation_budget()
        if budget is not None:
            budget.take("buffers", self, name, shape)
            value = np.zeros(shape, dtype=self.dtype)
            budget.pending.append((self, name, shape, fill, False))
        else:
            value = np.full(shape, fill, dtype=self.dtype)
        setattr(self, name, value)
        self._buffer_names.append(name)
        return value

    def _rebind(self, name, value_view, grad_view, copy=True):
        """Move weight ``name`` (and its gradient) into the given buffer views
        (zero-filled; ``copy=False`` leaves them so, for a weight and gradient
        known to be zero)."""
        if copy:
            value_view[...] = getattr(self, name)
            grad_view[...] = getattr(self, name + "_grad")
        setattr(self, name, value_view)
        setattr(self, name + "_grad", grad_view)

    # --- weights -----------------------------------------------------------

    @property
    def weight_names(self):
        """Names of the layer's weights, in order (weight before bias)."""
        return list(self._param_names)

    def weight_owners(self):
        """``(layer, weight name)`` for every weight, in order; layers that hold
        other layers (``Residual``, ``Concatenate``) list their sublayers' too."""
        return [(self, name) for name in self._param_names]

    @property
    def params(self):
        """The layer's weights, in order (arrays; views into the model's buffer)."""
        return [getattr(layer, n) for layer, n in self.weight_owners()]

    @property
    def grads(self):
        """Gradients aligned with ``params``, filled by ``backward``."""
        return [getattr(layer, n + "_grad") for layer, n in self.weight_owners()]

    def regularization_loss(self):
        """The penalties of this layer's regularized weights (sublayers' too)."""
        return sum(owner._regularizers[name].penalty(getattr(owner, name))
                   for owner, name in self.weight_owners() if name in owner._regularizers)

    def add_regularization_gradients(self):
        """Add the penalties' gradients to the weights' gradients, in place."""
        for owner, name in self.weight_owners():
            if name in owner._regularizers:
                owner._regularizers[name].add_gradient(getattr(owner, name),
                                                       getattr(owner, name + "_grad"))

    def buffers(self):
        """Non-trainable state saved with the model, as ``{name: array}``.

        Arrays that ``forward`` updates but no optimizer may touch (such as
        BatchNorm's running statistics) are not weights: a layer keeps them
        as plain attributes, created in ``build``, and lists them here in a
        fixed order once built. ``cdl.io`` saves them with the model and
        restores them in place (``array[...] = saved``), so return the
        layer's own arrays, not copies. A layer holding other layers returns
        theirs too, under names unique within it (such as
        ``"<sublayer name>/<buffer name>"``). The default: the buffers made
        with ``add_buffer``, in the order they were made.
        """
        return {name: getattr(self, name) for name in self._buffer_names}

    def sublayers(self):
        """The layers this layer holds and runs, in a stable order.

        A plain layer holds none and returns ``[]``. A layer made of layers
        (``Residual``, ``Concatenate``, ``Bidirectional``, or one written by
        a user) returns its direct children, the layers its ``forward``
        calls, in the order it runs them (branch by branch); their own
        sublayers are not included. Anything that must reach every layer
        of a model, such as switching dropout on for ``predict_mc`` or
        re-pointing random generators after loading, walks this tree with
        ``iter_layers``, so a composite layer that does not list a child
        here hides it from them.

        Returns
        -------
        list of Layer

        Examples
        --------
        >>> from cdl import layers
        >>> block = layers.Residual([layers.Dense(4, name="a"), layers.Dense(4, name="b")])
        >>> [layer.name for layer in block.sublayers()]
        ['a', 'b']
        >>> layers.Dense(4).sublayers()
        []
        """
        return []

    def fused_steps(self):
        """How the compiled fused training step runs this layer, or None if
        it cannot.

        The fused step trains a model of layers on 1-D samples in one
        compiled call per batch, skipping the layers' ``forward`` and
        ``backward``; a model runs it only when every layer describes
        itself here (and its loss is one the step knows). Called on a
        built layer with 1-D ``input_shape``.

        A declaration is not inherited: a subclass that overrides
        ``forward`` computes something else than its parent's kernel, so
        the fused step takes a layer's steps only from a class that assigns
        ``fused_steps`` in its own body. A subclass that computes exactly
        what its parent does says so with ``fused_steps = Parent.fused_steps``.

        Returns
        -------
        list of FusedStep, or None
            None (the default): no fused kernel, so the model trains layer
            by layer. ``[]``: the layer is the identity in training on 1-D
            samples (``Flatten``, ``Dropout(0.0)``). Otherwise the layer's
            steps, in order, computing exactly what ``forward`` and
            ``backward`` compute.

        Examples
        --------
        >>> import numpy as np
        >>> from cdl import layers
        >>> dense = layers.Dense(2, activation="tanh")
        >>> _ = dense(np.ones((1, 3)))
        >>> step, = dense.fused_steps()
        >>> step.kind, step.width_in, step.width_out
        ('dense', 3, 2)
        >>> print(layers.PReLU().fused_steps())
        None
        """
        return None

    def count_params(self):
        """Number of scalar weights."""
        return sum(p.size for p in self.params)

    def flops_per_sample(self, input_shape):
        """Floating-point operations of a forward pass per sample (for
        ``summary``). The default counts one per output element; layers that
        only reshape return 0 and layers with products count multiply-adds."""
        return int(math.prod(self.compute_output_shape(input_shape)))

    # --- computing ---------------------------------------------------------

    def _check_sizes(self, shape):
        """Raise ValueError if an input of ``shape`` is too large for the
        layer's kernels (BLAS's 32-bit sizes). Called before the input is
        converted, so that a broadcast view is never copied just to be
        refused. Layers that call BLAS override it."""

    def _check_input(self, x):
        """Build on first use, then return ``x`` as a C-contiguous array of the
        layer's dtype with the per-sample shape the layer was built for."""
        if isinstance(x, np.ndarray):
            # Before any conversion: a broadcast view can be far larger than
            # the memory it takes, and a wrong one is refused without a copy.
            as_real_array(x, f"input of {self.name}")
            self._check_sizes(x.shape)
            if self.built:
                check_feature_shape(x, self.input_shape, f"input of {self.name}")
        if not self.built:
            if self.dtype is None and isinstance(x, np.ndarray):
                native = x.dtype.newbyteorder("=")  # the kernels read raw memory
                if native in FLOAT_DTYPES:
                    self.dtype = native
            x = as_float_array(x, self.dtype or np.float32, f"input of {self.name}")
            if x.ndim < 1:
                raise ValueError(f"input of {self.name} must have a batch axis, got a scalar")
            self._build(x.shape[1:])
            return x
        x = as_float_array(x, self.dtype, f"input of {self.name}")
        check_feature_shape(x, self.input_shape, f"input of {self.name}")
        return x

    def _check_grad(self, dy, expected_shape):
        """Return the upstream gradient as an array of the layer's dtype and the
        shape of the last forward output."""
        if expected_shape is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        if isinstance(dy, np.ndarray):  # refused before a conversion could copy it
            as_real_array(dy, f"gradient for {self.name}")
        else:
            dy = as_float_array(dy, self.dtype, f"gradient for {self.name}")
        if dy.shape != expected_shape:
            raise ValueError(
                f"gradient for {self.name} has shape {dy.shape}, expected "
                f"{expected_shape} (the shape of the last forward output)")
        return as_float_array(dy, self.dtype, f"gradient for {self.name}")

    def forward(self, x, training=False):
        """Compute the layer's output for the batch ``x``.

        Parameters
        ----------
        x : array_like of shape ``(batch_size, *input_shape)``
        training : bool
            True during training (dropout and similar layers behave
            differently).

        Returns
        -------
        ndarray of shape ``(batch_size, *output_shape)``
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def compute_mask(self, mask):
        """The padding mask of the output of the last ``forward``, given the
        mask of its input (``mask``: None or a bool ``(batch, T)`` array;
        for a layer that ``takes_list``, a list with one such entry per
        input).

        A model calls it right after ``forward``. By default the input's
        mask passes through a layer that ``supports_masking`` and is
        dropped (None) by any other; of several inputs' masks, the first
        passes when the others are None or equal to it, else their
        logical AND.
        """
        if not self.supports_masking:
            return None
        if isinstance(mask, list):
            return merge_masks(mask)
        return mask

    def backward(self, grad):
        """Back-propagate ``grad`` (d loss / d output of the last ``forward``).

        Overwrites the gradients in ``grads`` and returns d loss / d input.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def _check_inputs(self, xs):
        """For a layer that ``takes_list``: build on first use, then return
        ``xs`` as a list of C-contiguous arrays of the layer's dtype, each
        with the per-sample shape the layer was built for."""
        if not isinstance(xs, (list, tuple)) or not xs:
            raise TypeError(f"{self.name} ({type(self).__name__}) takes a non-empty list of "
                            f"arrays, got {type(xs).__name__}")
        names = [f"input {i} of {self.name}" for i in range(len(xs))]
        if self.built and len(xs) != len(self.input_shape):
            raise ValueError(f"{self.name} was built for {len(self.input_shape)} inputs, "
                             f"got {len(xs)}")
        if self.dtype is None:
            first = xs[0]
            native = first.dtype.newbyteorder("=") if isinstance(first, np.ndarray) else None
            self.dtype = native if native in FLOAT_DTYPES else np.dtype(np.float32)
        arrays = []
        for x, name in zip(xs, names):
            if isinstance(x, np.ndarray):
                as_real_array(x, name)
                self._check_sizes(x.shape)
            x = as_float_array(x, self.dtype, name)
            if x.ndim < 1:
                raise ValueError(f"{name} must have a batch axis, got a scalar")
            arrays.append(x)
        if len({x.shape[0] for x in arrays}) != 1:
            raise ValueError(f"the inputs of {self.name} have different batch sizes: "
                             f"{[x.shape[0] for x in arrays]}")
        if not self.built:
            self._build([x.shape[1:] for x in arrays])
        for x, shape, name in zip(arrays, self.input_shape, names):
            check_feature_shape(x, shape, name)
        return arrays

    def __call__(self, x, training=False):
        """``forward(x, training)`` on arrays; on the symbolic tensors of
        ``cdl.Input`` (or a list of them), records the call in a graph of
        layers and returns the symbolic output (see ``cdl.Model``)."""
        if symbolic.is_symbolic(x):
            return symbolic.call_layer(self, x)
        return self.forward(x, training=training)
