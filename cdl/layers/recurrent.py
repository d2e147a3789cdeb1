"""Recurrent layers over (batch, time steps, features) inputs: SimpleRNN,
LSTM, GRU, and the Bidirectional wrapper.

A layer takes any number of time steps per call (it is built for the
number of features only). Sequences of different lengths in one batch are
given by a padding mask (``mask_value``, a ``lengths`` array at call time,
or the mask a model carries from ``Embedding(mask_zero=True)``), with
PyTorch's ``pack_padded_sequence`` semantics: padded steps leave the state
unchanged and output zeros, so the last output is each sequence's state at
its own last real step. The initial state can be given at call time
(``initial_state``) and the final state returned (``return_state``), both
differentiated.

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
from cdl._validation import (
    as_float_array, as_real_array, check_blas_size, check_bool, check_number)
from cdl.layers import symbolic
from cdl.layers.base import Layer, merge_masks

__all__ = ["SimpleRNN", "LSTM", "GRU", "Bidirectional"]


class _Recurrent(Layer):
    """What SimpleRNN, LSTM and GRU share: arguments, weights, masking and the
    calls into the kernel. Subclasses set ``_cell`` and ``_gates``."""

    _cell = None
    _gates = 1

    supports_masking = True
    # rnn(x) or, with an initial state in a graph model, rnn([x, h0(, c0)]).
    takes_list_or_tensor = True

    def __init__(self, units, return_sequences=False, go_backwards=False, mask_value=None,
                 return_state=False, kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None,
                 trainable_initial_state=False, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.units = check_number(units, "units", low=1, integer=True)
        self.return_sequences = check_bool(return_sequences, "return_sequences")
        self.go_backwards = check_bool(go_backwards, "go_backwards")
        self.return_state = check_bool(return_state, "return_state")
        if mask_value is not None:
            mask_value = check_number(mask_value, "mask_value")
            mask_value = float(mask_value)
        self.mask_value = mask_value
        # A sequence output starts a padding mask for the layers after it.
        self.produces_mask = mask_value is not None and self.return_sequences
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
        self._out_mask = None
        self.states = None

    @property
    def _n_states(self):
        return 2 if self._cell == _rec.CELLS["LSTM"] else 1

    def get_config(self):
        config = {**super().get_config(), "units": self.units,
                  "return_sequences": self.return_sequences,
                  "go_backwards": self.go_backwards, "mask_value": self.mask_value,
                  "return_state": self.return_state,
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

    def _sequence_shape(self, input_shape):
        """The per-sample shape of the sequence input, from a shape or (when
        the layer takes ``[x, h0(, c0)]``) a list of shapes whose states are
        checked to be (units,)."""
        if isinstance(input_shape, list):
            if len(input_shape) != 1 + self._n_states:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r} takes [x] followed by "
                    f"{self._n_states} initial state(s), got {len(input_shape)} inputs")
            for shape in input_shape[1:]:
                if tuple(shape) != (self.units,):
                    raise ValueError(
                        f"the initial states of {self.name} have shape (batch, "
                        f"{self.units}), got {(None,) + tuple(shape)}")
            input_shape = input_shape[0]
        input_shape = tuple(input_shape)
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects 3-D inputs (batch, time steps, "
                f"features), got samples of shape {input_shape} "
                f"(inputs of rank {len(input_shape) + 1})")
        if input_shape[1] is None:
            raise ValueError(f"{type(self).__name__} {self.name!r} needs a known number of "
                             "features (the last axis); only the time axis may be None")
        return input_shape

    def build(self, input_shape):
        input_shape = self._sequence_shape(input_shape)
        features, width = input_shape[-1], self._gates * self.units
        check_blas_size(features, f"the input width of {self.name}",
                        "reduce the number of features")
        self._features = features
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
        input_shape = self._sequence_shape(input_shape)
        out = (input_shape[0], self.units) if self.return_sequences else (self.units,)
        if self.return_state:
            return [out] + [(self.units,)] * self._n_states
        return out

    def flops_per_sample(self, input_shape):
        steps, features = self._sequence_shape(input_shape)
        width = self._gates * self.units
        per_step = 2 * features * width + 2 * self.units * width + 2 * width + 4 * self.units
        # A free time axis (None) is counted as one step.
        return int((steps or 1) * per_step)

    def _check_sizes(self, shape):
        if len(shape) == 3:
            # One matrix product covers every time step of every sample.
            check_blas_size(shape[0] * shape[1],
                            f"the batch size times the time steps of {self.name}'s input")
            check_blas_size(shape[2], f"the input width of {self.name}",
                            "reduce the number of features")

    def _check_input(self, x):
        """Build on first use; then any number of time steps, the built
        number of features."""
        if not self.built:
            return super()._check_input(x)
        what = f"input of {self.name}"
        if isinstance(x, np.ndarray):
            as_real_array(x, what)
            self._check_sizes(x.shape)  # before the conversion copies it
        x = as_float_array(x, self.dtype, what)
        if x.ndim != 3 or x.shape[2] != self._features:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects 3-D inputs (batch, time "
                f"steps, {self._features}), got an input of shape {x.shape}")
        return x

    # --- computing ---------------------------------------------------------

    def _step_mask(self, x, lengths, input_mask):
        """uint8 (n, T): 1 for real steps, 0 for padding, or None. Padding is a
        step past the sample's ``lengths``, or False in ``input_mask`` (a
        model's padding mask), or whose features all equal ``mask_value``;
        a step is real if none of the given sources calls it padding."""
        n, steps = x.shape[:2]
        masks = []
        if lengths is not None:
            masks.append(_lengths_mask(lengths, n, steps, self.name))
        if isinstance(input_mask, list):
            input_mask = input_mask[0]
        if input_mask is not None:
            if not isinstance(input_mask, np.ndarray) or input_mask.dtype != np.bool_ or \
                    input_mask.shape != (n, steps):
                got = (f"an array of dtype {input_mask.dtype} and shape {input_mask.shape}"
                       if isinstance(input_mask, np.ndarray) else type(input_mask).__name__)
                raise ValueError(f"the padding mask of {self.name} ({type(self).__name__}) "
                                 f"must be a bool array of shape {(n, steps)} (batch, "
                                 f"steps), got {got}")
            masks.append(input_mask)
        if self.mask_value is not None:
            # Compared in the input's dtype, so that e.g. -1.1 matches float32 padding.
            value = np.asarray(self.mask_value, dtype=x.dtype)
            masks.append(np.any(x != value, axis=-1))
        mask = merge_masks(masks)
        return None if mask is None else np.ascontiguousarray(mask, dtype=np.uint8)

    def _initial_states(self, initial_state, n):
        """Fresh (h, c) arrays holding the initial state (c None but for the
        LSTM): the call's ``initial_state``, else the trainable one, else
        zeros. The kernel overwrites them with the final state."""
        lstm = self._cell == _rec.CELLS["LSTM"]
        h = np.zeros((n, self.units), dtype=self.dtype)
        c = np.zeros_like(h) if lstm else None
        if initial_state is not None:
            if isinstance(initial_state, np.ndarray) and self._n_states == 1:
                initial_state = [initial_state]
            if not isinstance(initial_state, (list, tuple)) or \
                    len(initial_state) != self._n_states:
                expected = "[h, c]" if lstm else "[h]"
                raise ValueError(f"initial_state of {self.name} ({type(self).__name__}) must "
                                 f"be a list {expected} of arrays of shape (batch, units), "
                                 f"got {_describe(initial_state)}")
            for target, value, label in zip((h, c), initial_state, ("h", "c")):
                value = as_float_array(value, self.dtype,
                                       f"initial state {label} of {self.name}")
                if value.shape != (n, self.units):
                    raise ValueError(f"initial state {label} of {self.name} has shape "
                                     f"{value.shape}, expected {(n, self.units)} (batch, "
                                     "units)")
                target[...] = value
        elif self.trainable_initial_state:
            h[...] = self.initial_h
            if lstm:
                c[...] = self.initial_c
        return h, c

    def forward(self, x, training=False, initial_state=None, lengths=None):
        """Run the layer over the batch ``x``.

        Parameters
        ----------
        x : array_like or list
            The input, of shape (batch, time steps, features); once the
            layer was called with an initial state in a graph model
            (``takes_list``), the list ``[x, h0]`` (``[x, h0, c0]`` for the
            LSTM): the input with its initial state.
        training : bool
            Unused (no dropout).
        initial_state : list of array_like of shape (batch, units), optional
            ``[h0]`` (``[h0, c0]`` for the LSTM): the state before the first
            step, instead of zeros (or the trainable initial state).
        lengths : array_like of int of shape (batch,), optional
            Each sequence's number of real time steps, from the start; the
            steps after it are padding (see the class notes).

        Returns
        -------
        ndarray or list of ndarray
            The output; with ``return_state``, the list ``[output, h]``
            (``[output, h, c]`` for the LSTM) with the final states of shape
            (batch, units).
        """
        if self.takes_list and isinstance(x, (list, tuple)):
            # The form of a graph call with an initial state (else a list is
            # the input's values, as for any layer).
            if initial_state is not None:
                raise TypeError(f"{self.name} got its initial state twice: in the list "
                                "[x, h0, ...] and as initial_state")
            if len(x) != 1 + self._n_states:
                raise ValueError(f"{self.name} ({type(self).__name__}) takes x or [x] "
                                 f"followed by {self._n_states} initial state(s), got a "
                                 f"list of {len(x)}")
            x, initial_state = x[0], list(x[1:])
        x = self._check_input(x)
        y, states = self._run(x, initial_state, self._step_mask(x, lengths, self.input_mask))
        return [y, *states] if self.return_state else y

    def _run(self, x, initial_state, mask):
        """The forward pass on a checked input and uint8 mask; returns the
        output and the final states, and keeps what ``_backprop`` needs."""
        n, steps, _ = x.shape
        units, width = self.units, self._gates * self.units
        shape = (n, steps, units) if self.return_sequences else (n, units)
        y = np.empty(shape, dtype=self.dtype)
        gates = np.empty((n, steps, width), dtype=self.dtype)
        hprev = np.empty((n, steps, units), dtype=self.dtype)
        lstm, gru = self._cell == _rec.CELLS["LSTM"], self._cell == _rec.CELLS["GRU"]
        cprev = np.empty_like(hprev) if lstm else None
        # GRU: the recurrent projection of the new gate; LSTM: tanh of the
        # cell state, kept so that the backward pass does not recompute it.
        hn = np.empty_like(hprev) if gru or lstm else None
        h, c = self._initial_states(initial_state, n)
        _rec.forward(self._cell, self._act, x, self.input_kernel, self.recurrent_kernel,
                     self.input_bias, self.recurrent_bias, mask, self.go_backwards,
                     self.return_sequences, y, gates, hprev, cprev, hn, h, c)
        self._cache = (x, mask, gates, hprev, cprev, hn, y.shape, initial_state is not None)
        self.states = (h,) if c is None else (h, c)
        self._out_mask = None
        if self.return_sequences and mask is not None:
            # The outputs are in step order: reversed in time with go_backwards.
            out_mask = mask.astype(bool)
            self._out_mask = out_mask[:, ::-1].copy() if self.go_backwards else out_mask
        return y, self.states

    def compute_mask(self, mask):
        """The padding mask of the sequence output (in its step order), or
        None for the last output alone."""
        if not self.return_sequences:
            return None
        return self._out_mask

    def backward(self, grad):
        """Back-propagate ``grad``: the output's gradient or, with
        ``return_state``, a list ``[d output, d h(, d c)]`` whose entries may
        be None (zero).

        Returns
        -------
        The input's gradient (None when not needed), or, when the forward
        call had an initial state, a list ``[dx, dh0(, dc0)]``.
        """
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        y_shape = self._cache[6]
        n = self._cache[0].shape[0]
        if self.return_state:
            if not isinstance(grad, (list, tuple)) or len(grad) != 1 + self._n_states:
                raise ValueError(f"{self.name} returns its state: its gradient is a list of "
                                 f"{1 + self._n_states} (output, then states; None for "
                                 f"zero), got {_describe(grad)}")
            dy = (np.zeros(y_shape, dtype=self.dtype) if grad[0] is None
                  else self._check_grad(grad[0], y_shape))
            dstates = [None if g is None else
                       np.ascontiguousarray(self._check_grad(g, (n, self.units)))
                       for g in grad[1:]]
        else:
            dy, dstates = self._check_grad(grad, y_shape), []
        dx, dinitial = self._backprop(dy, *dstates)
        return dx if dinitial is None else [dx, *dinitial]

    def _backprop(self, dy, dhT=None, dcT=None):
        """Backpropagation from the output's gradient ``dy`` and the final
        states' (``dhT``, ``dcT``, or None); returns the input's gradient
        and, if the call had an initial state, the list of its gradients
        (else None)."""
        x, mask, gates, hprev, cprev, hn, y_shape, has_initial = self._cache
        dy = np.ascontiguousarray(dy)
        dx = np.empty_like(x) if self._input_grad_needed else None
        dh0 = dc0 = None
        if self.trainable_initial_state or has_initial:
            dh0 = np.empty((x.shape[0], self.units), dtype=self.dtype)
            if cprev is not None:
                dc0 = np.empty_like(dh0)
        _rec.backward(self._cell, self._act, x, self.input_kernel, self.recurrent_kernel,
                      mask, self.go_backwards, self.return_sequences, gates, hprev, cprev,
                      hn, dy, self.input_kernel_grad, self.recurrent_kernel_grad,
                      self.input_bias_grad, self.recurrent_bias_grad, dx, dh0, dc0,
                      dhT, dcT)
        if self.trainable_initial_state:
            if has_initial:
                # The call's initial state replaced the trainable one.
                self.initial_h_grad[...] = 0
                if dc0 is not None:
                    self.initial_c_grad[...] = 0
            else:
                # The initial state is broadcast over the batch: sum its gradients.
                self.initial_h_grad[...] = dh0.sum(axis=0)
                if dc0 is not None:
                    self.initial_c_grad[...] = dc0.sum(axis=0)
        if not has_initial:
            return dx, None
        return dx, [dh0] if dc0 is None else [dh0, dc0]

    def __call__(self, x, training=False, initial_state=None, lengths=None):
        """``forward`` on arrays; on symbolic tensors, records the call
        ``layer([x, *initial_state])`` (or ``layer(x)``) in a graph."""
        return _call(self, x, training, initial_state, lengths)


def _call(layer, x, training, initial_state, lengths):
    """``layer(x, ...)`` for a recurrent layer or Bidirectional."""
    if symbolic.is_symbolic(x) or (initial_state is not None and
                                   symbolic.is_symbolic(list(initial_state))):
        if lengths is not None:
            raise TypeError(f"{layer.name}: lengths is given with arrays; in a graph model "
                            "the padding mask (Embedding(mask_zero=True), mask_value) marks "
                            "the padding")
        if initial_state is None:
            return symbolic.call_layer(layer, x)
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        return symbolic.call_layer(layer, [x, *initial_state])
    return layer.forward(x, training=training, initial_state=initial_state, lengths=lengths)


def _describe(value):
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return type(value).__name__


def _lengths_mask(lengths, n, steps, name):
    """The bool (n, steps) mask of sequences of ``lengths`` real steps each."""
    if isinstance(lengths, (str, bytes)) or not hasattr(lengths, "__len__"):
        raise TypeError(f"lengths of {name} must be an array of ints of shape ({n},), got "
                        f"{type(lengths).__name__}")
    try:
        lengths = np.asarray(lengths)
    except (ValueError, TypeError):
        raise TypeError(f"lengths of {name} must be an array of ints of shape ({n},), got "
                        "a ragged sequence") from None
    # An empty list makes a float array: no value to be a non-integer.
    if lengths.dtype.kind not in "iu" and not (lengths.size == 0 and lengths.dtype.kind == "f"):
        raise TypeError(f"lengths of {name} must be integers, got dtype {lengths.dtype}")
    if lengths.shape != (n,):
        raise ValueError(f"lengths of {name} has shape {lengths.shape}, expected ({n},) "
                         "(one length per sample)")
    if lengths.size and (lengths.min() < 0 or lengths.max() > steps):
        raise ValueError(f"lengths of {name} must be between 0 and the {steps} time steps, "
                         f"got values from {lengths.min()} to {lengths.max()}")
    return np.arange(steps)[None, :] < lengths.astype(np.int64)[:, None]


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
        equal ``mask_value`` is padding (see the notes). With
        ``return_sequences`` the output then carries a padding mask to the
        layers after it in a model.
    return_state : bool
        Also return the final state: ``forward`` returns ``[output, h]``
        (``[output, h, c]`` for the LSTM), each state of shape (batch,
        units), and ``backward`` takes a list of their gradients, as Keras.
        Differentiated: gradients given for the states flow back.
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
        LSTM (differentiated only when returned with ``return_state``).

    Notes
    -----
    The layer is built for a number of features: each call may have any
    number of time steps (``cdl.Input(shape=(None, features))`` in a
    model). ``forward(x, initial_state=[h0, ...], lengths=...)`` (or
    ``layer(x, initial_state=..., lengths=...)``) gives the initial state,
    instead of zeros or the trainable one, and each sequence's length; in a
    graph model ``layer(x, initial_state=[h0])`` on symbolic tensors takes
    the state from other layers, and ``backward`` then returns
    ``[dx, dh0(, dc0)]``.

    Padding, from ``lengths``, ``mask_value`` or a model's padding mask
    (``Embedding(mask_zero=True)``; a step is padding if any source says
    so), follows PyTorch's ``pack_padded_sequence``: a padded step leaves
    the state unchanged and outputs zeros, so the last output is the state
    after each sequence's own last real step, and with ``go_backwards``
    (the backward half of ``Bidirectional``) each sequence is read from its
    own last real step. Sequences of different lengths padded at the end
    give the same results as each run alone.

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

    Padding (``lengths``, ``mask_value``, a model's padding mask) is as in
    the wrapped layer: the backward half starts at each sequence's own last
    real step, as PyTorch's bidirectional layers on packed sequences.

    Parameters
    ----------
    layer : SimpleRNN, LSTM or GRU
        With ``return_state``, ``forward`` returns ``[output, h_forward,
        (c_forward,) h_backward(, c_backward)]``, as Keras, and
        ``initial_state`` is a list in the same order.
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

    supports_masking = True
    takes_list_or_tensor = True

    def __init__(self, layer, merge_mode="concat", name=None, dtype=None):
        if not isinstance(layer, _Recurrent):
            raise TypeError(f"Bidirectional wraps a SimpleRNN, LSTM or GRU, got {layer!r}")
        if merge_mode not in ("concat", "sum"):
            raise ValueError(f"merge_mode must be 'concat' or 'sum', got {merge_mode!r}")
        super().__init__(name=name or f"bidirectional_{layer.name}", dtype=dtype)
        self.layer = layer
        self.merge_mode = merge_mode
        self.return_state = layer.return_state
        # The halves return their outputs only; this layer returns their states.
        config = {**layer.get_config(), "return_state": False}
        cls = type(layer)
        self.forward_layer = cls.from_config({**config, "name": f"forward_{layer.name}"})
        self.backward_layer = cls.from_config({**config, "name": f"backward_{layer.name}",
                                               "go_backwards": not layer.go_backwards})
        self.produces_mask = self.forward_layer.produces_mask
        self._out_shape = None
        self._has_initial = False
        self._out_mask = None

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

    @property
    def _n_states(self):
        return 2 * self.forward_layer._n_states

    def _sequence_shape(self, input_shape):
        if isinstance(input_shape, list):
            if len(input_shape) != 1 + self._n_states:
                raise ValueError(f"{self.name} (Bidirectional) takes [x] followed by "
                                 f"{self._n_states} initial states, got {len(input_shape)} "
                                 "inputs")
            half = self._n_states // 2
            self.forward_layer._sequence_shape([input_shape[0]] + input_shape[1:1 + half])
            self.backward_layer._sequence_shape([input_shape[0]] + input_shape[1 + half:])
            input_shape = input_shape[0]
        return self.forward_layer._sequence_shape(input_shape)

    def build(self, input_shape):
        input_shape = self._sequence_shape(input_shape)
        for sub in (self.forward_layer, self.backward_layer):
            sub._build(input_shape, self.dtype, self._rng)

    def compute_output_shape(self, input_shape):
        input_shape = self._sequence_shape(input_shape)
        shape = self.forward_layer.compute_output_shape(input_shape)
        if self.merge_mode == "concat":
            shape = tuple(shape[:-1]) + (2 * shape[-1],)
        if self.return_state:
            return [tuple(shape)] + [(self.layer.units,)] * self._n_states
        return tuple(shape)

    def sublayers(self):
        # The template ``layer`` is never built or run, so it is not one.
        return [self.forward_layer, self.backward_layer]

    def weight_owners(self):
        return self.forward_layer.weight_owners() + self.backward_layer.weight_owners()

    def flops_per_sample(self, input_shape):
        input_shape = self._sequence_shape(input_shape)
        out = self.compute_output_shape(input_shape)
        out = out[0] if self.return_state else out
        return 2 * self.forward_layer.flops_per_sample(input_shape) + (
            math.prod(d or 1 for d in out) if self.merge_mode == "sum" else 0)

    def _check_input(self, x):
        if not self.built:
            x = super()._check_input(x)
        return self.forward_layer._check_input(x)  # the same shape rules and messages

    def forward(self, x, training=False, initial_state=None, lengths=None):
        """Run both halves over the batch ``x`` and merge their outputs.

        Parameters
        ----------
        x, training, initial_state, lengths
            As the wrapped layer's ``forward``; the initial states (and,
            in the list form ``[x, ...]``, the list) hold the forward
            half's states, then the backward half's.

        Returns
        -------
        ndarray or list of ndarray
            The merged output; with ``return_state``, the list ``[output,
            forward states..., backward states...]``.
        """
        if self.takes_list and isinstance(x, (list, tuple)):
            if initial_state is not None:
                raise TypeError(f"{self.name} got its initial state twice: in the list "
                                "[x, h0, ...] and as initial_state")
            if len(x) != 1 + self._n_states:
                raise ValueError(f"{self.name} (Bidirectional) takes x or [x] followed by "
                                 f"{self._n_states} initial states, got a list of {len(x)}")
            x, initial_state = x[0], list(x[1:])
        x = self._check_input(x)
        half = self._n_states // 2
        if initial_state is not None:
            if not isinstance(initial_state, (list, tuple)) or \
                    len(initial_state) != self._n_states:
                raise ValueError(f"initial_state of {self.name} (Bidirectional) must be a "
                                 f"list of {self._n_states} arrays (the forward half's "
                                 f"states, then the backward half's), got "
                                 f"{_describe(initial_state)}")
            fstate, bstate = list(initial_state[:half]), list(initial_state[half:])
        else:
            fstate = bstate = None
        mask = self.forward_layer._step_mask(x, lengths, self.input_mask)
        yf, sf = self.forward_layer._run(x, fstate, mask)
        yb, sb = self.backward_layer._run(x, bstate, mask)
        if self.forward_layer.return_sequences:
            yb = yb[:, ::-1]
        y = np.concatenate([yf, yb], axis=-1) if self.merge_mode == "concat" else yf + yb
        self._out_shape = y.shape
        self._has_initial = initial_state is not None
        self._out_mask = self.forward_layer._out_mask
        return [y, *sf, *sb] if self.return_state else y

    def compute_mask(self, mask):
        """The padding mask of the sequence output (time-aligned with the
        input), or None for the last outputs alone."""
        return self._out_mask if self.forward_layer.return_sequences else None

    def backward(self, grad):
        """Back-propagate ``grad`` (a list with ``return_state``, as the
        wrapped layer's ``backward``); returns the input's gradient, or
        ``[dx, initial states' gradients...]`` when the call had an initial
        state."""
        half = self._n_states // 2
        n = self._out_shape[0] if self._out_shape is not None else 0
        dstates = [None] * self._n_states
        if self.return_state:
            if not isinstance(grad, (list, tuple)) or len(grad) != 1 + self._n_states:
                raise ValueError(f"{self.name} returns its states: its gradient is a list of "
                                 f"{1 + self._n_states} (output, then states; None for "
                                 f"zero), got {_describe(grad)}")
            dstates = [None if g is None else np.ascontiguousarray(
                self._check_grad(g, (n, self.layer.units))) for g in grad[1:]]
            grad = grad[0]
            if grad is None and self._out_shape is not None:
                grad = np.zeros(self._out_shape, dtype=self.dtype)
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
        dxf, df = self.forward_layer._backprop(np.ascontiguousarray(gf), *dstates[:half])
        dxb, db = self.backward_layer._backprop(np.ascontiguousarray(gb), *dstates[half:])
        dx = None if dxf is None else dxf + dxb
        return [dx, *df, *db] if self._has_initial else dx

    def __call__(self, x, training=False, initial_state=None, lengths=None):
        """``forward`` on arrays; on symbolic tensors, records the call
        ``layer([x, *initial_state])`` (or ``layer(x)``) in a graph."""
        return _call(self, x, training, initial_state, lengths)
