"""The Layer base class: configuration, weights, and the forward/backward contract."""
import itertools
import math

import numpy as np

from cdl import initializers
from cdl._validation import (
    FLOAT_DTYPES, as_float_array, as_float_dtype, as_real_array, check_feature_shape)

_layer_ids = itertools.count()


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
      the reference taken before the model was built;
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

    def __init__(self, name=None, dtype=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        self.name = name or f"{type(self).__name__.lower()}_{next(_layer_ids)}"
        self.dtype = None if dtype is None else as_float_dtype(dtype)
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._param_names = []
        self._regularizers = {}       # weight name -> Regularizer
        self.activity_penalty = 0.0   # set by forward in training, for activity regularizers
        self._rng = None

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
        input_shape = tuple(int(d) for d in input_shape)
        if self.built:
            if input_shape != self.input_shape:
                raise ValueError(
                    f"layer {self.name!r} was built for inputs of shape "
                    f"{self.input_shape}, cannot take {input_shape}")
            return self.output_shape
        if any(d < 1 for d in input_shape):
            # Weights, statistics and kernels all assume non-empty samples.
            raise ValueError(
                f"cannot build layer {self.name!r} for samples of shape {input_shape}: "
                "every axis of a sample needs at least one element")
        self.build(input_shape)
        self.input_shape = input_shape
        self.output_shape = tuple(self.compute_output_shape(input_shape))
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
            See ``cdl.initializers.get``.
        regularizer : str or cdl.regularizers.Regularizer, optional
            Penalty on this weight, added to the loss during training.

        Returns
        -------
        ndarray of the given shape and the layer's dtype
        """
        if not name.isidentifier() or name in self._param_names:
            raise ValueError(f"weight name {name!r} is not a new identifier")
        init = initializers.get(initializer)
        value = np.ascontiguousarray(init(tuple(shape), self.dtype, self._rng), dtype=self.dtype)
        if value.shape != tuple(shape):
            raise ValueError(
                f"initializer for {self.name}.{name} returned shape {value.shape}, "
                f"expected {tuple(shape)}")
        setattr(self, name, value)
        setattr(self, name + "_grad", np.zeros_like(value))
        self._param_names.append(name)
        if regularizer is not None:
            from cdl import regularizers
            self._regularizers[name] = regularizers.get(regularizer)
        return value

    def _rebind(self, name, value_view, grad_view):
        """Move weight ``name`` (and its gradient) into the given buffer views."""
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
        ``"<sublayer name>/<buffer name>"``). The default: none.
        """
        return {}

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

    def backward(self, grad):
        """Back-propagate ``grad`` (d loss / d output of the last ``forward``).

        Overwrites the gradients in ``grads`` and returns d loss / d input.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def __call__(self, x, training=False):
        return self.forward(x, training=training)
