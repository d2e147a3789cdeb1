"""Layers made of layers: residual blocks and parallel branches.

They let ResNet- and Inception-style blocks sit inside a ``Sequential``:
``Residual([Dense(64, activation="relu"), Dense(64)])`` computes
``x + f(x)``; ``Concatenate([[Dense(32)], [Dense(16, activation="tanh")]])``
runs each branch on the same input and joins the outputs on the last axis.
Their sublayers' weights live in the model's flat buffer like any other.
"""
import math

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
    """Run several branches on the same input and join their outputs on the
    last axis.

    Parameters
    ----------
    branches : list of (list of Layer)
        Each branch is a chain of layers; a single layer counts as a chain
        of one. The outputs must agree on every axis but the last.

    Examples
    --------
    >>> from cdl import layers
    >>> block = layers.Concatenate([[layers.Dense(8, activation="relu")],
    ...                             [layers.Dense(4, activation="tanh")]])
    """

    def __init__(self, branches, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        branches = list(branches) if not isinstance(branches, Layer) else [branches]
        if not branches:
            raise ValueError("Concatenate needs at least one branch")
        self.branches = [_as_layer_list(b, f"branch {i}") for i, b in enumerate(branches)]
        self._widths = None
        self._out_shape = None

    def _chains(self):
        return self.branches

    def get_config(self):
        return {**super().get_config(),
                "branches": [_layers_config(branch) for branch in self.branches]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        branches = [_layers_from_config(b) for b in config.pop("branches")]
        return cls(branches, **config)

    def build(self, input_shape):
        shapes = [self._build_chain(branch, input_shape) for branch in self.branches]
        heads = {shape[:-1] for shape in shapes}
        if len(heads) != 1 or any(len(shape) == 0 for shape in shapes):
            raise ValueError(f"{self.name}: branch outputs {shapes} differ on an axis other "
                             "than the last, so they cannot be concatenated")
        self._widths = [shape[-1] for shape in shapes]
        self._joined = shapes[0][:-1] + (sum(self._widths),)

    def compute_output_shape(self, input_shape):
        return self._joined

    def forward(self, x, training=False):
        x = self._check_input(x)
        outputs = [self._forward_chain(branch, x, training) for branch in self.branches]
        y = np.concatenate(outputs, axis=-1)
        self._out_shape = y.shape
        return y

    def backward(self, grad):
        grad = self._check_grad(grad, self._out_shape)
        splits = np.cumsum(self._widths)[:-1]
        dx = None
        for branch, part in zip(self.branches, np.split(grad, splits, axis=-1)):
            g = self._backward_chain(branch, np.ascontiguousarray(part))
            dx = g if dx is None else dx + g
        return dx
