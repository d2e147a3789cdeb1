"""Activation layers, all running the compiled kernels of cdl._kernels.activations."""
import numpy as np

from cdl._kernels import activations as _act
from cdl._validation import check_number, choose
from cdl.layers.base import Layer

__all__ = ["Activation", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "GELU", "ELU"]

#: Default parameter (slope of leaky ReLU, alpha of ELU) per activation name.
DEFAULT_PARAMS = {"leaky_relu": 0.01, "elu": 1.0}


def resolve_activation(activation):
    """Return (name, kernel code, default parameter) for an activation name or None."""
    name = "linear" if activation is None else activation
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name or None, got {activation!r}")
    choose(name, tuple(_act.CODES), "activation")
    return name, _act.CODES[name], DEFAULT_PARAMS.get(name, 0.0)


class Activation(Layer):
    """Apply an activation function by name: ``Activation("relu")``.

    Parameters
    ----------
    activation : str
        One of "linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu",
        "elu", "softmax" (softmax is taken over the last axis).
    """

    def __init__(self, activation, name=None, dtype=None, _param=None):
        super().__init__(name=name, dtype=dtype)
        self.activation, self._code, default = resolve_activation(activation)
        self._param = default if _param is None else _param
        self._saved = None
        self._out_shape = None

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}

    def forward(self, x, training=False):
        x = self._check_input(x)
        y = np.empty_like(x)
        _act.forward(self._code, x, y, self._param)
        # Keep the input or the output, whichever the derivative is written in.
        self._saved = x if _act.needs_input(self._code) else y
        self._out_shape = y.shape
        return y

    def backward(self, grad):
        dy = self._check_grad(grad, self._out_shape)
        dx = np.empty_like(dy)
        _act.backward(self._code, self._saved, self._saved, dy, dx, self._param)
        return dx


class ReLU(Activation):
    """max(x, 0)."""

    def __init__(self, name=None, dtype=None):
        super().__init__("relu", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class LeakyReLU(Activation):
    """x if x > 0 else negative_slope * x (PyTorch's default slope, 0.01)."""

    def __init__(self, negative_slope=0.01, name=None, dtype=None):
        self.negative_slope = check_number(negative_slope, "negative_slope")
        super().__init__("leaky_relu", name=name, dtype=dtype, _param=self.negative_slope)

    def get_config(self):
        return {**Layer.get_config(self), "negative_slope": self.negative_slope}


class Sigmoid(Activation):
    """1 / (1 + exp(-x)), computed without overflow."""

    def __init__(self, name=None, dtype=None):
        super().__init__("sigmoid", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class Tanh(Activation):
    """Hyperbolic tangent."""

    def __init__(self, name=None, dtype=None):
        super().__init__("tanh", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class Softmax(Activation):
    """exp(x) / sum(exp(x)) over the last axis, shifted by the row maximum.

    For classification, prefer a linear output with
    ``losses.CrossEntropy`` (which applies log-softmax stably itself).
    """

    def __init__(self, name=None, dtype=None):
        super().__init__("softmax", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class GELU(Activation):
    """x * Phi(x) with Phi the standard normal CDF (the exact, erf form)."""

    def __init__(self, name=None, dtype=None):
        super().__init__("gelu", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class ELU(Activation):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    def __init__(self, alpha=1.0, name=None, dtype=None):
        self.alpha = check_number(alpha, "alpha")
        super().__init__("elu", name=name, dtype=dtype, _param=self.alpha)

    def get_config(self):
        return {**Layer.get_config(self), "alpha": self.alpha}
