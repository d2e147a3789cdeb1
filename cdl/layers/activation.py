"""Activation layers, all running the compiled kernels of cdl._kernels.activations."""
import math
import numbers

import numpy as np

from cdl import initializers
from cdl._kernels import activations as _act
from cdl._validation import check_number, choose
from cdl.layers.base import FusedStep, Layer

__all__ = ["Activation", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "GELU", "ELU",
           "SELU", "SiLU", "Mish", "Softplus", "Softsign", "HardSigmoid", "HardSwish",
           "ReLU6", "LogSoftmax", "PReLU"]

#: Default parameter (slope of leaky ReLU, alpha of ELU, beta of softplus)
#: per activation name.
DEFAULT_PARAMS = {"leaky_relu": 0.01, "elu": 1.0, "softplus": 1.0}


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
        "elu", "softmax", "selu", "silu" (or "swish"), "mish", "softplus",
        "softsign", "hard_sigmoid", "hard_swish", "relu6", "log_softmax"
        (softmax and log_softmax are taken over the last axis). Parameters
        take their defaults (PyTorch's): slope 0.01, alpha 1, beta 1 and
        threshold 20; use the layer classes to choose others.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.Activation("relu")(x)
    array([[0., 0., 3.]])
    >>> layers.Activation("tanh")(x).round(4)
    array([[-0.964 ,  0.    ,  0.9951]])
    """

    supports_masking = True

    def __init__(self, activation, name=None, dtype=None, _param=None):
        super().__init__(name=name, dtype=dtype)
        self.activation, self._code, default = resolve_activation(activation)
        self._param = default if _param is None else _param
        self._saved = None
        self._out_shape = None

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}

    def fused_steps(self):
        # The subclasses below run this kernel with their own code and
        # parameter; each says so with ``fused_steps = Activation.fused_steps``
        # since declarations are not inherited (see Layer.fused_steps).
        width = self.input_shape[0]
        return [FusedStep("activation", width, width, self._code, self._param)]

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
    """max(x, 0).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.ReLU()(x).round(4)
    array([[0., 0., 3.]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("relu", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class LeakyReLU(Activation):
    """x if x > 0 else negative_slope * x (PyTorch's default slope, 0.01).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.LeakyReLU()(x)
    array([[-0.02,  0.  ,  3.  ]])
    >>> layers.LeakyReLU(negative_slope=0.2)(x)
    array([[-0.4,  0. ,  3. ]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, negative_slope=0.01, name=None, dtype=None):
        self.negative_slope = check_number(negative_slope, "negative_slope")
        super().__init__("leaky_relu", name=name, dtype=dtype, _param=self.negative_slope)

    def get_config(self):
        return {**Layer.get_config(self), "negative_slope": self.negative_slope}


class Sigmoid(Activation):
    """1 / (1 + exp(-x)), computed without overflow.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.Sigmoid()(x).round(4)
    array([[0.1192, 0.5   , 0.9526]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("sigmoid", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class Tanh(Activation):
    """Hyperbolic tangent.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.Tanh()(x).round(4)
    array([[-0.964 ,  0.    ,  0.9951]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("tanh", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class Softmax(Activation):
    """exp(x) / sum(exp(x)) over the last axis, shifted by the row maximum.

    For classification, prefer a linear output with
    ``losses.CrossEntropy`` (which applies log-softmax stably itself).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> y = layers.Softmax()(x)
    >>> y.round(4)
    array([[0.0064, 0.0471, 0.9465]])
    >>> round(float(y.sum()), 6)
    1.0
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("softmax", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class GELU(Activation):
    """x * Phi(x) with Phi the standard normal CDF (the exact, erf form).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.GELU()(x).round(4)
    array([[-0.0455,  0.    ,  2.996 ]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("gelu", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class ELU(Activation):
    """x if x > 0 else alpha * (exp(x) - 1).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.ELU()(x).round(4)
    array([[-0.8647,  0.    ,  3.    ]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, alpha=1.0, name=None, dtype=None):
        self.alpha = check_number(alpha, "alpha")
        super().__init__("elu", name=name, dtype=dtype, _param=self.alpha)

    def get_config(self):
        return {**Layer.get_config(self), "alpha": self.alpha}


class SELU(Activation):
    """scale * (x if x > 0 else alpha * (exp(x) - 1)), with the self-normalising
    constants alpha = 1.6732632423543772 and scale = 1.0507009873554805 (as
    PyTorch). The derivative at 0 is the left one, scale * alpha (PyTorch's).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.SELU()(x).round(4)
    array([[-1.5202,  0.    ,  3.1521]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("selu", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class SiLU(Activation):
    """x * sigmoid(x), also called swish (``Activation("swish")``).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.SiLU()(x).round(4)
    array([[-0.2384,  0.    ,  2.8577]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("silu", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class Mish(Activation):
    """x * tanh(softplus(x)) (Misra 2019), computed without overflow.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.Mish()(x).round(4)
    array([[-0.2525,  0.    ,  2.9865]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("mish", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class Softplus(Activation):
    """log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold.

    PyTorch's definition: the linear region above the threshold keeps the
    function cheap and exact where it equals x to within rounding. Below it,
    the logarithm is computed without overflow.

    Parameters
    ----------
    beta : float > 0
    threshold : float

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.Softplus()(x).round(4)
    array([[0.1269, 0.6931, 3.0486]])
    """

    def __init__(self, beta=1.0, threshold=20.0, name=None, dtype=None):
        self.beta = check_number(beta, "beta", low=0.0, low_inclusive=False)
        self.threshold = check_number(threshold, "threshold")
        super().__init__("softplus", name=name, dtype=dtype, _param=self.beta)

    def fused_steps(self):
        # The activation code carries one parameter (beta); its threshold is 20.
        if self.threshold != _act.SOFTPLUS_THRESHOLD:
            return None
        return Activation.fused_steps(self)

    def get_config(self):
        return {**Layer.get_config(self), "beta": self.beta, "threshold": self.threshold}

    def forward(self, x, training=False):
        x = self._check_input(x)
        y = np.empty_like(x)
        _act.softplus_forward(x, y, self.beta, self.threshold)
        self._saved = x
        self._out_shape = y.shape
        return y

    def backward(self, grad):
        dy = self._check_grad(grad, self._out_shape)
        dx = np.empty_like(dy)
        _act.softplus_backward(self._saved, dy, dx, self.beta, self.threshold)
        return dx


class Softsign(Activation):
    """``x / (1 + abs(x))``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.Softsign()(x).round(4)
    array([[-0.6667,  0.    ,  0.75  ]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("softsign", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class HardSigmoid(Activation):
    """relu6(x + 3) / 6 (PyTorch's hard sigmoid; slope 1/6 on (-3, 3)).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.HardSigmoid()(x).round(4)
    array([[0.1667, 0.5   , 1.    ]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("hard_sigmoid", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class HardSwish(Activation):
    """x * relu6(x + 3) / 6 (Howard et al. 2019, as PyTorch).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.HardSwish()(x).round(4)
    array([[-0.3333,  0.    ,  3.    ]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("hard_swish", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class ReLU6(Activation):
    """min(max(x, 0), 6).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.ReLU6()(x).round(4)
    array([[0., 0., 3.]])
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("relu6", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


class LogSoftmax(Activation):
    """log(softmax(x)) over the last axis: x - max(x) - log(sum(exp(x - max(x)))),
    stable for any logits.

    For classification, prefer a linear output with ``losses.CrossEntropy``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.array([[-2.0, 0.0, 3.0]])
    >>> layers.LogSoftmax()(x).round(4)
    array([[-5.055, -3.055, -0.055]])
    >>> round(float(np.exp(layers.LogSoftmax()(x)).sum()), 6)
    1.0
    """

    fused_steps = Activation.fused_steps

    def __init__(self, name=None, dtype=None):
        super().__init__("log_softmax", name=name, dtype=dtype)

    def get_config(self):
        return Layer.get_config(self)


def _shared_axes_arg(shared_axes):
    """``shared_axes`` as None or a tuple of nonzero ints (checked, not yet resolved)."""
    if shared_axes is None:
        return None
    items = (shared_axes,) if isinstance(shared_axes, numbers.Integral) else shared_axes
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"shared_axes must be None, an int or a sequence of ints, "
                        f"got {shared_axes!r}") from None
    if any(isinstance(a, bool) or not isinstance(a, numbers.Integral) for a in items):
        raise TypeError(f"shared_axes must be None, an int or a sequence of ints, "
                        f"got {shared_axes!r}")
    items = tuple(int(a) for a in items)
    if 0 in items:
        raise ValueError("shared_axes cannot include the batch axis 0")
    return items


class PReLU(Layer):
    """Parametric ReLU: x if x > 0 else alpha * x, with learned slopes ``alpha``.

    By default there is one slope per channel (the last axis), shared over
    every other axis, as PyTorch's ``PReLU(num_parameters=channels)`` on
    channels-last data.

    Parameters
    ----------
    alpha_initializer : float, str or callable
        A number (every slope starts there; default 0.25, PyTorch's), or an
        initializer (see ``cdl.initializers.get``).
    shared_axes : int or sequence of int, optional
        Input axes along which the slopes are shared, counted as in the
        input array with the batch axis as 0 (Keras' convention; negative
        axes count from the end). None (the default) shares every axis but
        the last; ``[]`` gives each element its own slope; listing every
        axis gives a single slope.

    Attributes
    ----------
    alpha : ndarray
        The slopes: the input's per-sample shape with shared axes of size 1,
        without the leading ones (so (channels,) by default), or (1,) for a
        single slope.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> prelu = layers.PReLU()
    >>> prelu(np.array([[-2.0, 4.0], [1.0, -1.0]]))
    array([[-0.5 ,  4.  ],
           [ 1.  , -0.25]])
    >>> prelu.alpha            # one learned slope per channel (last axis)
    array([0.25, 0.25])
    """

    supports_masking = True

    def __init__(self, alpha_initializer=0.25, shared_axes=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(alpha_initializer, numbers.Real) and not isinstance(alpha_initializer,
                                                                           bool):
            self._alpha_value = check_number(alpha_initializer, "alpha_initializer")
            self.alpha_initializer = initializers.Constant(self._alpha_value)
        else:
            self._alpha_value = None
            self.alpha_initializer = initializers.get(alpha_initializer)
        self.shared_axes = _shared_axes_arg(shared_axes)
        self._cache = None

    def get_config(self):
        config = {**super().get_config(),
                  "shared_axes": None if self.shared_axes is None else list(self.shared_axes)}
        init = self.alpha_initializer
        if self._alpha_value is not None:
            config["alpha_initializer"] = self._alpha_value
        elif isinstance(init, initializers.Constant):
            config["alpha_initializer"] = init.value
        elif initializers.name_of(init) is not None:
            config["alpha_initializer"] = initializers.name_of(init)
        return config

    def _shared(self, input_shape):
        """Per-sample axes (0-based) along which the slopes are shared."""
        rank = len(input_shape)
        if self.shared_axes is None:
            return set(range(rank - 1))
        shared = set()
        for axis in self.shared_axes:
            if not -rank <= axis <= rank or axis == 0:
                raise ValueError(f"{self.name}: shared axis {axis} is out of range for "
                                 f"inputs of rank {rank + 1}")
            shared.add(axis - 1 if axis > 0 else rank + axis)
        return shared

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}: PReLU needs inputs with a channel axis")
        shared = self._shared(input_shape)
        # The kernel sees (rows, cols): the leading shared axes fold into the
        # rows; the slopes of the remaining trailing block make the columns.
        lead = 0
        while lead < len(input_shape) and lead in shared:
            lead += 1
        block = tuple(input_shape[lead:])
        self._lead = lead
        self._cols = math.prod(block)
        self._inner = tuple(a - lead for a in sorted(shared) if a >= lead)
        shape = tuple(1 if a in shared else d for a, d in enumerate(input_shape))[lead:]
        self.add_weight("alpha", shape or (1,), self.alpha_initializer)

    def _slopes(self):
        """One slope per kernel column (a view of ``alpha`` unless some inner
        axis is shared)."""
        if not self._inner:
            return self.alpha.reshape(self._cols)
        block = self.input_shape[self._lead:]
        return np.ascontiguousarray(np.broadcast_to(self.alpha, block)).reshape(self._cols)

    def forward(self, x, training=False):
        x = self._check_input(x)
        x2 = x.reshape(-1, self._cols)
        y = np.empty_like(x2)
        _act.prelu_forward(x2, self._slopes(), y)
        self._cache = (x2, x.shape)
        return y.reshape(x.shape)

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x2, shape = self._cache
        dy = self._check_grad(grad, shape).reshape(x2.shape)
        dx = np.empty_like(dy)
        if not self._inner:
            _act.prelu_backward(x2, self._slopes(), dy, dx, self.alpha_grad.reshape(self._cols))
        else:
            dslopes = np.empty(self._cols, dtype=self.dtype)
            _act.prelu_backward(x2, self._slopes(), dy, dx, dslopes)
            block = self.input_shape[self._lead:]
            self.alpha_grad[...] = dslopes.reshape(block).sum(axis=self._inner, keepdims=True)
        return dx.reshape(shape)
