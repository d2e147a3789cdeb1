"""Built-in layers and the Layer base class for writing your own."""
from cdl.layers.activation import (
    ELU, GELU, Activation, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh)
from cdl.layers.base import Layer
from cdl.layers.core import Dropout, Flatten
from cdl.layers.dense import Dense

__all__ = [
    "Layer", "Dense", "Activation", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
    "Softmax", "GELU", "ELU", "Dropout", "Flatten", "get",
]

_BY_NAME = {cls.__name__: cls for cls in (
    Dense, Activation, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, GELU, ELU, Dropout, Flatten)}


def get(class_name):
    """Return the built-in layer class called ``class_name`` (for configs)."""
    if class_name not in _BY_NAME:
        raise ValueError(f"unknown layer class {class_name!r}")
    return _BY_NAME[class_name]
