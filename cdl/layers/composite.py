"""Layers made of layers: residual blocks and parallel branches; and
Concatenate, which also joins the inputs of a graph.

The blocks let ResNet- and Inception-style blocks sit inside a
``Sequential``: ``Residual([Dense(64, activation="relu"), Dense(64)])``
computes ``x + f(x)``; ``Concatenate([[Dense(32)], [Dense(16,
activation="tanh")]])`` runs each branch on the same input and joins the
outputs on the last axis. Their sublayers' weights live in the model's
flat buffer like any other.

``Concatenate(axis=-1)``, without branches, is instead a merge layer (see
``cdl.layers.merge``): called on a list of tensors of a graph
(``Concatenate()([a, b])``), it joins them along ``axis``, as Keras'
Concatenate does.
"""
import math
import numbers

import numpy as np

from cdl.layers.base import Layer

__all__ = ["Residual", "Concatenate"]


def _as_layer_list(layers, what):
    if isinstance(layers, Layer):
        layers = [layers]
    try:
        layers = list(layers)
    except TypeError:
        raise TypeError(f"{what} must be a list of layers, got {layers!r}") from None
    if not layers:
        raise ValueError(f"{what} is empty")
    for layer in layers:
        if not isinstance(layer, Layer):
            raise TypeError(f"{what} must hold Layer instances, got {layer!r}")
    return layers


def _shapes_text(shapes):
    return ", ".join(str(tuple(shape)) for shape in shapes)


def _layers_config(layers):
    return [{"class_name": type(layer).__name__, "config": layer.get_config()}
            for layer in layers]


def _layers_from_config(configs):
    from cdl.layers import get
    return [get(c["class_name"]).from_config(c["config"]) for c in configs]


class _Container(Layer):
    """Shared machinery: building, weights and FLOPs of a list of chains."""

    def _chains(self):
        raise NotImplementedError

    def _build_chain(self, chain, input_shape):
        shape = tuple(input_shape)
        for layer in chain:
            shape = layer._build(shape, self.dtype, self._rng)
        return shape

    def sublayers(self):
        return [layer for chain in self._chains() for layer in chain]

    def weight_owners(self):
        return [owner for chain in self._chains() for layer in chain
                for owner in layer.weight_owners()]

    def buffers(self):
        # Sublayers' state (e.g. BatchNorm's running statistics) is saved too.
        return {f"{layer.name}/{name}": array for chain in self._chains() for layer in chain
                for name, array in layer.buffers().items()}

    def flops_per_sample(self, input_shape):
        total = 0
        for chain in self._chains():
            shape = tuple(input_shape)
            for layer in chain:
                total += layer.flops_per_sample(shape)
                shape = layer.output_shape
        return total

    @staticmethod
    def _forward_chain(chain, x, training):
        for layer in chain:
            x = layer.forward(x, training)
        return x

    @staticmethod
    def _backward_chain(chain, grad):
        for layer in reversed(chain):
            grad = layer.backward(grad)
        return grad


class Residual(_Container):
    """y = x + f(x), with f a chain of layers whose output has the input's shape.

    Parameters
    ----------
    layers : list of Layer
        The chain f, applied in order.

    Examples
    --------
    >>> from cdl import layers
    >>> block = layers.Residual([layers.Dense(16, activation="relu"), layers.Dense(16)])
    """

    def __init__(self, layers, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.layers = _as_layer_list(layers, "Residual's layers")
        self._out_shape = None

    def _chains(self):
        return [self.layers]

    def get_config(self):
        return {**super().get_config(), "layers": _layers_config(self.layers)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(_layers_from_config(config.pop("layers")), **config)

    def build(self, input_shape):
        shape = self._build_chain(self.layers, input_shape)
        if shape != tuple(input_shape):
            raise ValueError(
                f"{self.name}: the residual branch maps samples of shape {tuple(input_shape)} "
                f"to {shape}; y = x + f(x) needs them equal")

    def flops_per_sample(self, input_shape):
        return super().flops_per_sample(input_shape) + math.prod(input_shape)  # the add

    def forward(self, x, training=False):
        x = self._check_input(x)
        y = self._forward_chain(self.layers, x, training)
        self._out_shape = y.shape
        return x + y

    def backward(self, grad):
        grad = self._check_grad(grad, self._out_shape)
        return grad + self._backward_chain(self.layers, grad)


class Concatenate(_Container):
    """Join tensors along an axis: inputs of a graph, or branches of a block.

    One class serves two uses:

    - ``Concatenate(axis=-1)``, a merge layer as Keras' Concatenate: called
      on a list of two or more tensors (``Concatenate()([a, b])``, symbolic
      tensors of ``cdl.Input`` or arrays), it joins them along ``axis``;
      they must agree on every other axis;
    - ``Concatenate(branches)``, a block for ``Sequential``: it runs each
      branch of layers on the one input and joins the outputs on the last
      axis.

    Parameters
    ----------
    branches : list of (list of Layer), optional
        The block's branches: each a chain of layers (a single layer counts
        as a chain of one), whose outputs must agree on every axis but the
        last. Omitted for the merge layer. An int here is ``axis``, as in
        Keras' ``Concatenate(1)``.
    axis : int
        The merge layer's axis, counted with the batch axis as in Keras: 1
        is the first axis of a sample, -1 (the default) the last. The batch
        axis cannot be joined on. A block joins on the last axis only.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> layers.Concatenate()([np.zeros((2, 3)), np.ones((2, 1))]).shape
    (2, 4)
    >>> a, b = cdl.Input(shape=(4, 8)), cdl.Input(shape=(6, 8))
    >>> layers.Concatenate(axis=1)([a, b]).shape
    (10, 8)

    As a block in a ``Sequential``:

    >>> block = layers.Concatenate([[layers.Dense(8, activation="relu")],
    ...                             [layers.Dense(4, activation="tanh")]])
    >>> cdl.Sequential([block], input_shape=(5,)).output_shape
    (12,)
    """

    def __init__(self, branches=None, axis=-1, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(branches, numbers.Integral) and not isinstance(branches, bool):
            if axis != -1:
                raise TypeError(f"Concatenate got its axis twice: {branches!r} and "
                                f"axis={axis!r}")
            branches, axis = None, branches
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"Concatenate's axis must be an int, got {axis!r}")
        self.axis = int(axis)
        if self.axis == 0:
            raise ValueError("Concatenate's axis 0 is the batch axis, which every input and "
                             "output of a layer keeps: join on axis 1 or later (or -1, the "
                             "last)")
        self._widths = None
        self._out_shape = None
        self._sample_axis = None
        if branches is None:
            # The merge layer: a list of inputs.
            self.takes_list = True
            self.branches = []
            return
        if self.axis != -1:
            raise ValueError(f"a Concatenate block joins its branches on the last axis; "
                             f"axis={self.axis} is for the merge layer, Concatenate(axis=...) "
                             "called on a list of tensors")
        branches = list(branches) if not isinstance(branches, Layer) else [branches]
        if not branches:
            raise ValueError("Concatenate needs at least one branch")
        self.branches = [_as_layer_list(b, f"branch {i}") for i, b in enumerate(branches)]

    def _chains(self):
        return self.branches

    def get_config(self):
        if self.takes_list:
            return {**super().get_config(), "axis": self.axis}
        return {**super().get_config(),
                "branches": [_layers_config(branch) for branch in self.branches]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        branches = config.pop("branches", None)
        if branches is not None:
            branches = [_layers_from_config(b) for b in branches]
        return cls(branches, **config)

    def _join(self, shapes, what):
        """The joined per-sample shape of ``shapes``, the widths joined and
        the per-sample axis, or ValueError naming ``what`` was joined."""
        ranks = {len(shape) for shape in shapes}
        rank = ranks.pop() if len(ranks) == 1 else None
        if rank is not None:
            axis = self.axis - 1 if self.axis > 0 else self.axis + rank
            if not 0 <= axis < rank:
                raise ValueError(
                    f"{self.name} (Concatenate): axis {self.axis} is not an axis of samples "
                    f"of shape {shapes[0]} (axes count the batch axis, as in Keras: 1 to "
                    f"{rank}, or -1 to -{rank})")
            heads = {shape[:axis] + shape[axis + 1:] for shape in shapes}
        if rank is None or len(heads) != 1:
            raise ValueError(f"{self.name}: {what} {_shapes_text(shapes)} differ on an axis "
                             f"other than axis {self.axis}, so they cannot be concatenated")
        widths = [shape[axis] for shape in shapes]
        joined = shapes[0][:axis] + (sum(widths),) + shapes[0][axis + 1:]
        return joined, widths, axis

    def build(self, input_shape):
        if self.takes_list:
            _, self._widths, self._sample_axis = self._join(
                self._merge_shapes(input_shape), "inputs of shapes")
            return
        shapes = [self._build_chain(branch, input_shape) for branch in self.branches]
        self._joined, self._widths, self._sample_axis = self._join(shapes, "branch outputs")

    def _merge_shapes(self, input_shapes):
        shapes = [tuple(shape) for shape in input_shapes]
        if len(shapes) < 2:
            raise ValueError(f"{self.name} (Concatenate) takes 2 or more inputs, "
                             f"got {len(shapes)}")
        return shapes

    def compute_output_shape(self, input_shape):
        if self.takes_list:
            return self._join(self._merge_shapes(input_shape), "inputs of shapes")[0]
        if self.built:
            return self._joined
        # Unbuilt (a block called on a symbolic tensor): follow each branch.
        shapes = []
        for branch in self.branches:
            shape = tuple(input_shape)
            for layer in branch:
                shape = tuple(layer.compute_output_shape(shape))
            shapes.append(shape)
        return self._join(shapes, "branch outputs")[0]

    def flops_per_sample(self, input_shape):
        return 0 if self.takes_list else super().flops_per_sample(input_shape)

    def forward(self, x, training=False):
        if self.takes_list:
            xs = self._check_inputs(x)
            y = np.concatenate(xs, axis=self._sample_axis + 1)
        else:
            x = self._check_input(x)
            outputs = [self._forward_chain(branch, x, training) for branch in self.branches]
            y = np.concatenate(outputs, axis=-1)
        self._out_shape = y.shape
        return y

    def backward(self, grad):
        grad = self._check_grad(grad, self._out_shape)
        splits = np.cumsum(self._widths)[:-1]
        parts = np.split(grad, splits, axis=self._sample_axis + 1)
        if self.takes_list:
            if not self._input_grad_needed:
                return [None] * len(parts)
            return [np.ascontiguousarray(part) for part in parts]
        dx = None
        for branch, part in zip(self.branches, parts):
            g = self._backward_chain(branch, np.ascontiguousarray(part))
            dx = g if dx is None else dx + g
        return dx
