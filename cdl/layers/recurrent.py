"""Recurrent layers over (batch, time steps, features) inputs: SimpleRNN,
LSTM, GRU, and the Bidirectional wrapper.

The cells follow PyTorch's equations and gate order, so weights map one to
one (see ``LSTM``). Each layer runs the compiled kernels of
``cdl._kernels.recurrent``: the input projection of every time step as one
matrix product, the recurrence step by step (one product per step), and
backpropagation through time in compiled code.
"""
import math

import numpy as np

from cdl import initializers, regularizers
from cdl._kernels import recurrent as _rec
from cdl._validation import as_float_array, check_blas_size, check_bool, check_number
from cdl.layers.base import Layer

__all__ = ["SimpleRNN", "LSTM", "GRU", "Bidirectional"]


class _Recurrent(Layer):
    """What SimpleRNN, LSTM and GRU share: arguments, weights, masking and the
    calls into the kernel. Subclasses set ``_cell`` and ``_gates``."""

    _cell = None
    _gates = 1

    def __init__(self, units, return_sequences=False, go_backwards=False, mask_value=None,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None,
                 trainable_initial_state=False, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.units = check_number(units, "units", low=1, integer=True)
        self.return_sequences = check_bool(return_sequences, "return_sequences")
        self.go_backwards = check_bool(go_backwards, "go_backwards")
        if mask_value is not None:
            mask_value = check_number(mask_value, "mask_value")
            mask_value = float(mask_value)
        self.mask_value = mask_value
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.trainable_initial_state = check_bool(trainable_initial_state,
                                                  "trainable_initial_state")
        self._act = 0
        self._cache = None
        self.states = None

    def get_config(self):
        config = {**super().get_config(), "units": self.units,
                  "return_sequences": self.return_sequences,
                  "go_backwards": self.go_backwards, "mask_value": self.mask_value,
                  "trainable_initial_state": self.trainable_initial_state}
        for key in ("kernel_initializer", "recurrent_initializer", "bias_initializer"):
            name = initializers.name_of(getattr(self, key))
            if name is not None:
                config[key] = name
        for key in ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer"):
            if getattr(self, key) is not None:
                config[key] = regularizers.config_of(getattr(self, key))
        return config

    # --- shapes and weights ------------------------------------------------

    def _check_rank(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects 3-D inputs (batch, time steps, "
                f"features), got samples of shape {tuple(input_shape)} "
                f"(inputs of rank {len(input_shape) + 1})")

    def build(self, input_shape):
        self._check_rank(input_shape)
        features, width = input_shape[-1], self._gates * self.units
        check_blas_size(features, f"the input width of {self.name}",
                        "reduce the number of features")
        self.add_weight("input_kernel", (features, width), self.kernel_initializer,
                        self.kernel_regularizer)
        self.add_weight("recurrent_kernel", (self.units, width), self._recurrent_blocks,
                        self.recurrent_regularizer)
        self.add_weight("input_bias", (width,), self.bias_initializer, self.bias_regularizer)
        self.add_weight("recurrent_bias", (width,), self.bias_initializer,
                        self.bias_regularizer)
        if self.trainable_initial_state:
            # After the four weights above, so that their order is the same
            # with or without a trainable initial state.
            self.add_weight("initial_h", (self.units,), "zeros")
            if self._cell == _rec.CELLS["LSTM"]:
                self.add_weight("initial_c", (self.units,), "zeros")

    def _recurrent_blocks(self, shape, dtype, rng):
        """The recurrent kernel's initialiser: each gate's block is initialised
        on its own (an orthogonal (units, units) matrix per gate, as Keras
        does). Called by ``add_weight`` only, so never when loading a model."""
        blocks = [self.recurrent_initializer((self.units, self.units), dtype, rng)
                  for _ in range(self._gates)]
        return np.concatenate(blocks, axis=1).astype(dtype)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        if self.return_sequences:
            return (input_shape[0], self.units)
        return (self.units,)

    def flops_per_sample(self, input_shape):
        steps, features = input_shape
        width = self._gates * self.units
        per_step = 2 * features * width + 2 * self.units * width + 2 * width + 4 * self.units
        return int(steps * per_step)

    def _check_sizes(self, shape):
        if len(shape) == 3:
            # One matrix product covers every time step of every sample.
            check_blas_size(shape[0] * shape[1],
                            f"the batch size times the time steps of {self.name}'s input")
            check_blas_size(shape[2], f"the input width of {self.name}",
                            "reduce the number of features")

    def _check_input(self, x):
        if self.built:
            if isinstance(x, np.ndarray):
                self._check_sizes(x.shape)  # before the conversion copies it
            x = as_float_array(x, self.dtype, f"input of {self.name}")
            if x.ndim != 3:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r} expects 3-D inputs (batch, time "
                    f"steps, features), got an input of shape {x.shape}")
        return super()._check_input(x)

    # --- computing ---------------------------------------------------------

    def _mask(self, x):
        """uint8 (n, T): 1 for real steps, 0 for padding (every feature == mask_value)."""
        if self.mask_value is None:
            return None
        # Compared in the input's dtype, so that e.g. -1.1 matches float32 padding.
        value = np.asarray(self.mask_value, dtype=x.dtype)
        return np.ascontiguousarray(np.any(x != value, axis=-1), dtype=np.uint8)

    def forward(self, x, training=False):
        x = self._check_input(x)
        n, steps, _ = x.shape
        units, width = self.units, self._gates * self.units
        mask = self._mask(x)
        shape = (n, steps, units) if self.return_sequences else (n, units)
        y = np.empty(shape, dtype=self.dtype)
        gates = np.empty((n, steps, width), dtype=self.dtype)
        hprev = np.empty((n, steps, units), dtype=self.dtype)
        lstm, gru = self._cell == _rec.CELLS["LSTM"], self._cell == _rec.CELLS["GRU"]
        cprev = np.empty_like(hprev) if lstm else None
        # GRU: the recurrent projection of the new gate; LSTM: tanh of the
        # cell state, kept so that the backward pass does not recompute it.
        hn = np.empty_like(hprev) if gru or lstm else None
        h = np.zeros((n, units), dtype=self.dtype)
        c = np.zeros_like(h) if lstm else None
        if self.trainable_initial_state:
            # Copies (the kernel overwrites h and c with the final state).
            h[...] = self.initial_h
            if lstm:
                c[...] = self.initial_c
        _rec.forward(self._cell, self._act, x, self.input_kernel, self.recurrent_kernel,
                     self.input_bias, self.recurrent_bias, mask, self.go_backwards,
                     self.return_sequences, y, gates, hprev, cprev, hn, h, c)
        self._cache = (x, mask, gates, hprev, cprev, hn, y.shape)
        self.states = (h,) if c is None else (h, c)
        return y

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x, mask, gates, hprev, cprev, hn, y_shape = self._cache
        dy = np.ascontiguousarray(self._check_grad(grad, y_shape))
        dx = np.empty_like(x) if self._input_grad_needed else None
        dh0 = dc0 = None
        if self.trainable_initial_state:
            dh0 = np.empty((x.shape[0], self.units), dtype=self.dtype)
            if cprev is not None:
                dc0 = np.empty_like(dh0)
        _rec.backward(self._cell, self._act, x, self.input_kernel, self.recurrent_kernel,
                      mask, self.go_backwards, self.return_sequences, gates, hprev, cprev,
                      hn, dy, self.input_kernel_grad, self.recurrent_kernel_grad,
                      self.input_bias_grad, self.recurrent_bias_grad, dx, dh0, dc0)
        if dh0 is not None:
            # The initial state is broadcast over the batch: sum its gradients.
            self.initial_h_grad[...] = dh0.sum(axis=0)
            if dc0 is not None:
                self.initial_c_grad[...] = dc0.sum(axis=0)
        return dx


_RNN_DOC_COMMON = """
    Parameters
    ----------
    units : int
        Size of the state (and of the output).{extra}
    return_sequences : bool
        False: output the last state, shape (batch, units). True: output the
        state after every step, shape (batch, time steps, units), in the
        order the steps are taken (reversed in time with ``go_backwards``,
        as in Keras).
    go_backwards : bool
        Read the sequence from its last time step to its first.
    mask_value : float, optional
        Masking, as Keras' ``Masking`` layer: a time step whose features all
        equal ``mask_value`` is padding. The state is carried through it
        unchanged (so the last state is the one after the last real step)
        and, with ``return_sequences``, its output is zeros. Sequences of
        different lengths padded at the end with ``mask_value`` then give
        the same results as each sequence run alone.
    kernel_initializer, recurrent_initializer, bias_initializer : str or callable
        Defaults: glorot uniform input kernel, an orthogonal block per gate
        for the recurrent kernel, zero biases.
    kernel_regularizer, recurrent_regularizer, bias_regularizer : optional
        Penalties on the weights (``cdl.regularizers``); the bias one
        applies to both biases.
    trainable_initial_state : bool
        False (default): the initial state is zeros. True: learn it, as the
        weight ``initial_h`` of shape (units,){c_arg}, initialised
        to zeros and shared by (broadcast over) every sample of the batch.

    Attributes
    ----------
    input_kernel : ndarray of shape (features, {g}*units)
    recurrent_kernel : ndarray of shape (units, {g}*units)
    input_bias, recurrent_bias : ndarray of shape ({g}*units,)
        The gates' blocks of ``units`` columns are in PyTorch's order:
        {order}. PyTorch stores the kernels transposed:
        ``weight_ih = input_kernel.T``, ``weight_hh = recurrent_kernel.T``,
        ``bias_ih = input_bias``, ``bias_hh = recurrent_bias``.
    initial_h{c_attr} : ndarray of shape (units,)
        Only with ``trainable_initial_state``, after the four weights above.
        The PyTorch equivalent passes ``{torch_state}`` to the module, with
        ``h0 = initial_h`` broadcast to shape (1, batch, units){c_torch}.
        Their gradients are the batch sums of the initial states' ones.

    states : tuple of ndarray of shape (batch, units)
        After ``forward``: the final state ``(h,)``, or ``(h, c)`` for the
        LSTM (not differentiated through; there is no ``return_state``).

    Notes
    -----
    The initial state is zeros unless ``trainable_initial_state``. Inputs
    have a fixed number of time steps (the one the layer was built for).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> rnn = layers.{name}(4, return_sequences=True)
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    >>> rnn(x).shape    # (batch, time steps, units)
    (2, 5, 4)
    >>> rnn.input_kernel.shape    # (features, {g}*units)
    (3, {kernel_cols})
    >>> [state.shape for state in rnn.states]    # {states_comment}
    {states_repr}
"""


def _rnn_doc(name, g, **fields):
    """The common part of a recurrent layer's docstring, with its example."""
    states = "(h, c)" if name == "LSTM" else "(h,)"
    return _RNN_DOC_COMMON.format(
        name=name, g=g, kernel_cols=4 * g, states_comment=f"the final {states}",
        states_repr=repr([(2, 4)] * (2 if name == "LSTM" else 1)), **fields)


_NO_C = dict(c_arg="", c_attr="", torch_state="h0", c_torch="")


class SimpleRNN(_Recurrent):
    __doc__ = """Fully recurrent layer: h_t = activation(x_t W + b_i + h_{t-1} U + b_h).
""" + _rnn_doc(
        "SimpleRNN", extra="""
    activation : {"tanh", "relu", "sigmoid", "linear"}""",
        g=1, order="one block", **_NO_C)

    _cell = _rec.CELLS["SimpleRNN"]
    _gates = 1

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, **kwargs)
        if activation is None:
            activation = "linear"
        if activation not in _rec.ACTIVATIONS:
            raise ValueError(f"SimpleRNN activation must be one of "
                             f"{', '.join(map(repr, _rec.ACTIVATIONS))}, got {activation!r}")
        self.activation = activation
        self._act = _rec.ACTIVATIONS[activation]

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class LSTM(_Recurrent):
    __doc__ = """Long short-term memory layer, with PyTorch's equations::

        i = sigmoid(x W_i + b_ii + h U_i + b_hi)     (input gate)
        f = sigmoid(x W_f + b_if + h U_f + b_hf)     (forget gate)
        g = tanh(x W_g + b_ig + h U_g + b_hg)        (cell candidate)
        o = sigmoid(x W_o + b_io + h U_o + b_ho)     (output gate)
        c' = f * c + i * g;   h' = o * tanh(c')
""" + _rnn_doc("LSTM", extra="", g=4, order="input, forget, cell, output",
        c_arg="\n        (and ``initial_c`` for the cell state)", c_attr=", initial_c",
        torch_state="(h0, c0)", c_torch="\n        (``c0`` likewise from ``initial_c``)")

    _cell = _rec.CELLS["LSTM"]
    _gates = 4


class GRU(_Recurrent):
    __doc__ = """Gated recurrent unit, with PyTorch's equations (the reset gate
    multiplies the recurrent projection including its bias)::

        r = sigmoid(x W_r + b_ir + h U_r + b_hr)     (reset gate)
        z = sigmoid(x W_z + b_iz + h U_z + b_hz)     (update gate)
        n = tanh(x W_n + b_in + r * (h U_n + b_hn))  (new state)
        h' = (1 - z) * n + z * h
""" + _rnn_doc("GRU", extra="", g=3, order="reset, update, new", **_NO_C)

    _cell = _rec.CELLS["GRU"]
    _gates = 3


class Bidirectional(Layer):
    """Run a recurrent layer over the sequence in both directions and merge.

    Holds two layers built from ``layer.get_config()``: a forward copy and a
    backward copy with ``go_backwards`` flipped (named ``forward_<name>``
    and ``backward_<name>``); ``layer`` itself only serves as the template.
    With ``return_sequences`` the backward copy's outputs are reversed in
    time again before merging, so both halves line up with the input's time
    steps (as in Keras).

    Parameters
    ----------
    layer : SimpleRNN, LSTM or GRU
    merge_mode : {"concat", "sum"}
        Concatenate the two outputs on the last axis (forward first), or
        add them.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> bi = layers.Bidirectional(layers.LSTM(8))
    >>> bi(np.zeros((2, 6, 3), dtype=np.float32)).shape    # forward and backward states joined
    (2, 16)
    """

    def __init__(self, layer, merge_mode="concat", name=None, dtype=None):
        if not isinstance(layer, _Recurrent):
            raise TypeError(f"Bidirectional wraps a SimpleRNN, LSTM or GRU, got {layer!r}")
        if merge_mode not in ("concat", "sum"):
            raise ValueError(f"merge_mode must be 'concat' or 'sum', got {merge_mode!r}")
        super().__init__(name=name or f"bidirectional_{layer.name}", dtype=dtype)
        self.layer = layer
        self.merge_mode = merge_mode
        config = layer.get_config()
        cls = type(layer)
        self.forward_layer = cls.from_config({**config, "name": f"forward_{layer.name}"})
        self.backward_layer = cls.from_config({**config, "name": f"backward_{layer.name}",
                                               "go_backwards": not layer.go_backwards})
        self._out_shape = None

    def get_config(self):
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": {"class_name": type(self.layer).__name__,
                          "config": self.layer.get_config()}}

    @classmethod
    def from_config(cls, config):
        from cdl.layers import get
        config = dict(config)
        spec = config.pop("layer")
        return cls(get(spec["class_name"]).from_config(spec["config"]), **config)

    def build(self, input_shape):
        for sub in (self.forward_layer, self.backward_layer):
            sub._build(input_shape, self.dtype, self._rng)

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        if self.merge_mode == "concat":
            return tuple(shape[:-1]) + (2 * shape[-1],)
        return tuple(shape)

    def sublayers(self):
        # The template ``layer`` is never built or run, so it is not one.
        return [self.forward_layer, self.backward_layer]

    def weight_owners(self):
        return self.forward_layer.weight_owners() + self.backward_layer.weight_owners()

    def flops_per_sample(self, input_shape):
        out = math.prod(self.compute_output_shape(input_shape))
        return 2 * self.forward_layer.flops_per_sample(input_shape) + (
            out if self.merge_mode == "sum" else 0)

    def _check_input(self, x):
        if self.built:
            self.forward_layer._check_input(x)  # the same shape rules and messages
        return super()._check_input(x)

    def forward(self, x, training=False):
        x = self._check_input(x)
        yf = self.forward_layer.forward(x, training)
        yb = self.backward_layer.forward(x, training)
        if self.forward_layer.return_sequences:
            yb = yb[:, ::-1]
        y = np.concatenate([yf, yb], axis=-1) if self.merge_mode == "concat" else yf + yb
        self._out_shape = y.shape
        return y

    def backward(self, grad):
        grad = self._check_grad(grad, self._out_shape)
        if self.merge_mode == "concat":
            units = self.forward_layer.units
            gf, gb = grad[..., :units], grad[..., units:]
        else:
            gf, gb = grad, grad
        if self.forward_layer.return_sequences:
            gb = gb[:, ::-1]
        needed = self._input_grad_needed
        self.forward_layer._input_grad_needed = needed
        self.backward_layer._input_grad_needed = needed
        dxf = self.forward_layer.backward(np.ascontiguousarray(gf))
        dxb = self.backward_layer.backward(np.ascontiguousarray(gb))
        return None if dxf is None else dxf + dxb
