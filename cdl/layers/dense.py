"""Dense (fully connected) layer."""
import math

import numpy as np

from cdl import initializers, regularizers
from cdl._kernels import activations as _act
from cdl._kernels import dense as _dense
from cdl._validation import check_blas_size, check_bool, check_number
from cdl.layers.activation import resolve_activation
from cdl.layers.base import FusedStep, Layer

__all__ = ["Dense"]


class Dense(Layer):
    """y = activation(x @ kernel + bias), over the last axis of ``x``.

    Parameters
    ----------
    units : int
        Number of outputs.
    activation : str or None
        Fused into the layer's kernel: any name of
        ``cdl._kernels.activations.CODES`` ("relu", "leaky_relu" (slope
        0.01), "elu" (alpha 1), "selu", "gelu", "silu", "mish", "sigmoid",
        "tanh", "softmax", ...) or None (linear).
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
        Defaults: glorot uniform kernel, zero bias.
    kernel_regularizer, bias_regularizer : str or Regularizer, optional
        Penalties on the weights (``cdl.regularizers``), added to the loss.
    activity_regularizer : str or Regularizer, optional
        Penalty on the layer's output, averaged over the batch, added to the
        training loss.

    Attributes
    ----------
    kernel : ndarray of shape (input_dim, units)
    bias : ndarray of shape (units,), if ``use_bias``

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> dense = layers.Dense(4, activation="relu")
    >>> y = dense(np.ones((2, 3), dtype=np.float32))   # built on first use: kernel (3, 4)
    >>> y.shape, y.dtype, dense.kernel.shape, dense.bias.shape
    ((2, 4), dtype('float32'), (3, 4), (4,))
    """

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.units = check_number(units, "units", low=1, integer=True)
        self.activation, self._code, self._param = resolve_activation(activation)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self._needs_z = _act.needs_input(self._code)
        self._cache = None

    def fused_steps(self):
        bias = self.use_bias
        return [FusedStep("dense", self.input_shape[0], self.units, self._code, self._param,
                          self.kernel, self.bias if bias else None,
                          self.kernel_grad, self.bias_grad if bias else None)]

    def get_config(self):
        config = {**super().get_config(), "units": self.units,
                  "activation": None if self.activation == "linear" else self.activation,
                  "use_bias": self.use_bias}
        for key in ("kernel_initializer", "bias_initializer"):
            name = initializers.name_of(getattr(self, key))
            if name is not None:
                config[key] = name
        for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            if getattr(self, key) is not None:
                config[key] = regularizers.config_of(getattr(self, key))
        return config

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}: Dense needs inputs with a feature axis")
        # Before the kernel is allocated: it has one row per input feature.
        check_blas_size(input_shape[-1], f"the input width of {self.name}",
                        "reduce the number of features")
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer,
                        self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, self.bias_regularizer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def _check_sizes(self, shape):
        if len(shape) >= 2:
            # Leading axes are flattened into the rows of one matrix product.
            check_blas_size(math.prod(shape[:-1]), f"the number of input rows of {self.name}")
            check_blas_size(shape[-1], f"the input width of {self.name}",
                            "reduce the number of features")

    def flops_per_sample(self, input_shape):
        rows = math.prod(input_shape[:-1])
        flops = 2 * input_shape[-1] * self.units + (self.units if self.use_bias else 0)
        if self.activation != "linear":
            flops += self.units
        return int(rows * flops)

    def forward(self, x, training=False):
        x = self._check_input(x)
        x2 = x.reshape(-1, x.shape[-1])
        y = np.empty((x2.shape[0], self.units), dtype=self.dtype)
        z = np.empty_like(y) if self._needs_z else y
        _dense.forward(x2, self.kernel, self.bias if self.use_bias else None,
                       z, y, self._code, self._param)
        self._cache = (x2, z, y, x.shape)
        if self.activity_regularizer is not None:
            self.activity_penalty = (self.activity_regularizer.penalty(y) / max(len(y), 1)
                                     if training else 0.0)
        return y.reshape(x.shape[:-1] + (self.units,))

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x2, z, y, x_shape = self._cache
        dy = self._check_grad(grad, x_shape[:-1] + (self.units,)).reshape(y.shape)
        if self.activity_regularizer is not None and self.activity_penalty:
            dy = dy.copy()  # the caller's gradient is not ours to change
            scaled = np.zeros_like(dy)
            self.activity_regularizer.add_gradient(y, scaled)
            dy += scaled / max(len(y), 1)
        dx = np.empty_like(x2) if self._input_grad_needed else None
        dz = np.empty_like(dy) if self._code != _act.CODES["linear"] else dy
        _dense.backward(x2, self.kernel, z, y, dy, dz, self.kernel_grad,
                        self.bias_grad if self.use_bias else None, dx,
                        self._code, self._param)
        return None if dx is None else dx.reshape(x_shape)
