"""Embedding: integer indices to learned vectors."""

import numpy as np

from cdl import initializers
from cdl._kernels import embedding as _emb
from cdl._validation import FLOAT_DTYPES, check_bool, check_feature_shape, check_number
from cdl.layers.base import Layer

__all__ = ["Embedding"]


class Embedding(Layer):
    """Look up a learned vector for each integer index: (N, ...) -> (N, ..., output_dim).

    Inputs hold indices in [0, input_dim), as integers or as floats with
    whole values (a ``Sequential`` model hands its layers floats of its
    dtype; float32 holds every integer up to 2**24 exactly). The backward
    pass adds the upstream gradient of each position into the row of
    ``embeddings_grad`` its index names (repeated indices accumulate) and
    returns None: indices have no gradient, so an Embedding can only be the
    first layer of a model.

    Parameters
    ----------
    input_dim : int
        Size of the vocabulary (number of rows of the table).
    output_dim : int
        Size of each vector.
    embeddings_initializer : str or callable
        Default "uniform": U(-0.05, 0.05), as Keras.
    mask_zero : bool
        Index 0 is padding: the output carries the padding mask ``indices
        != 0``, which a model hands on to the layers after this one
        (attention ignores padded keys, ``GlobalAvgPool1D`` averages real
        tokens only; see ``Layer.compute_mask``). Index 0 still has a row,
        so the vocabulary's real tokens start at 1, as in Keras.

    Attributes
    ----------
    embeddings : ndarray of shape (input_dim, output_dim)

    Raises
    ------
    ValueError
        From ``forward``, naming the index and its position, for an index
        outside [0, input_dim) or a float that is not a whole number.
    TypeError
        From ``forward`` for inputs that are not real numbers (or booleans).

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.Embedding(10, 4), layers.Flatten(), layers.Dense(1)],
    ...                        input_shape=(3,), seed=0)
    >>> model.forward(np.array([[1, 5, 9], [0, 0, 2]])).shape   # two sequences of 3 indices
    (2, 1)
    >>> model.layers[0].embeddings.shape
    (10, 4)
    """

    has_input_gradient = False

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 mask_zero=False, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.input_dim = check_number(input_dim, "input_dim", low=1, integer=True)
        self.output_dim = check_number(output_dim, "output_dim", low=1, integer=True)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.mask_zero = check_bool(mask_zero, "mask_zero")
        self.produces_mask = self.mask_zero
        self._cache = None
        self._mask = None

    def get_config(self):
        config = {**super().get_config(), "input_dim": self.input_dim,
                  "output_dim": self.output_dim}
        if self.mask_zero:
            config["mask_zero"] = True
        name = initializers.name_of(self.embeddings_initializer)
        if name is not None:
            config["embeddings_initializer"] = name
        return config

    def build(self, input_shape):
        self.add_weight("embeddings", (self.input_dim, self.output_dim),
                        self.embeddings_initializer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def flops_per_sample(self, input_shape):
        return 0  # a copy, no arithmetic

    def _check_indices(self, x):
        """Return the indices as a flat int64 array (and their shape), building
        the layer on first use; raise naming the first bad index."""
        where = f"input of {self.name}"
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except ValueError as err:  # ragged nested lists
                raise ValueError(f"{where} could not be turned into an array: {err}") from None
        if x.dtype.kind not in "iuf":
            raise TypeError(f"{where} must hold integer indices, got an array of dtype "
                            f"{x.dtype}")
        if x.ndim < 1:
            raise ValueError(f"{where} must have a batch axis, got a scalar")
        if not self.built:
            if self.dtype is None and x.dtype.newbyteorder("=") in FLOAT_DTYPES:
                self.dtype = x.dtype.newbyteorder("=")
            self._build(x.shape[1:])
        else:
            check_feature_shape(x, self.input_shape, where)
        if x.dtype.kind == "f":
            # Checked before the cast, which is undefined for NaN and huge values.
            bad = ~(np.isfinite(x) & (x == np.floor(x)))
            if bad.any():
                pos = np.unravel_index(np.argmax(bad), x.shape)
                raise ValueError(f"{where} must hold whole-number indices, got {float(x[pos])} "
                                 f"at position {tuple(int(p) for p in pos)}")
            bad = (x < 0) | (x >= self.input_dim)
            if bad.any():
                self._out_of_range(x, int(np.argmax(bad)))
        elif x.dtype.kind == "u" and x.size and x.max() > np.iinfo(np.int64).max:
            self._out_of_range(x, int(np.argmax(x > np.iinfo(np.int64).max)))
        flat = np.ascontiguousarray(x, dtype=np.int64).reshape(-1)
        if not flat.flags.aligned:  # the kernels read int64s directly
            flat = flat.copy()
        bad = _emb.first_out_of_range(flat, self.input_dim)
        if bad >= 0:
            self._out_of_range(x, bad)
        return flat, x.shape

    def _out_of_range(self, x, flat_position):
        pos = np.unravel_index(flat_position, x.shape)
        value = x[pos]
        if x.dtype.kind in "iu" or abs(float(value)) < 2.0 ** 53:
            value = int(value)  # a float here is whole: checked before
        else:
            value = float(value)
        raise ValueError(f"index {value} at position {tuple(int(p) for p in pos)} of the "
                         f"input of {self.name} is out of range for input_dim "
                         f"{self.input_dim} (valid indices: 0 to {self.input_dim - 1})")

    def forward(self, x, training=False):
        indices, shape = self._check_indices(x)
        y = np.empty((indices.size, self.output_dim), dtype=self.dtype)
        _emb.forward(indices, self.embeddings, y)
        self._cache = (indices, shape)
        if self.mask_zero:
            self._mask = (indices != 0).reshape(shape)
        return y.reshape(shape + (self.output_dim,))

    def compute_mask(self, mask):
        """``indices != 0`` of the last ``forward`` with ``mask_zero``, else None."""
        return self._mask if self.mask_zero else None

    def backward(self, grad):
        """Scatter-add ``grad`` into ``embeddings_grad``; return None (indices
        have no gradient)."""
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        indices, shape = self._cache
        dy = self._check_grad(grad, shape + (self.output_dim,))
        _emb.backward(indices, dy.reshape(indices.size, self.output_dim), self.embeddings_grad)
        return None
