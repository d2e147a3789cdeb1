"""Transformer blocks: TransformerEncoder and TransformerDecoder, PyTorch's
``TransformerEncoderLayer`` and ``TransformerDecoderLayer`` with
``batch_first=True``.

Each block is a layer made of cdl's layers (``MultiHeadAttention``,
``Dense``, ``Dropout``, ``LayerNorm``), built with the model's dtype and
generator, so that its weights live in the model's flat buffer; it lists
them through ``sublayers()`` and ``weight_owners()`` as
``cdl.layers.composite``'s blocks do, and its own code is the residual
wiring around them.
"""
import math

import numpy as np

from cdl._validation import check_bool, check_number, choose
from cdl.layers import symbolic
from cdl.layers.attention import MultiHeadAttention
from cdl.layers.base import Layer
from cdl.layers.core import Dropout
from cdl.layers.dense import Dense
from cdl.layers.normalization import LayerNorm

__all__ = ["TransformerEncoder", "TransformerDecoder"]

_ACTIVATIONS = ("relu", "gelu")


class _TransformerBlock(Layer):
    """What the encoder and the decoder share: hyper-parameters, the
    feed-forward part, and the lists of sublayers and weights."""

    #: Attribute names of the sublayers that hold weights, in ``params`` order.
    _weighted = ()
    #: Names of the sublayers, in the order ``sublayers()`` lists them.
    _all = ()

    def __init__(self, num_heads, dim_feedforward, dropout, activation, norm_first,
                 layer_norm_eps, causal, name, dtype, rope=False):
        super().__init__(name=name, dtype=dtype)
        self.rope = check_bool(rope, "rope")
        self.num_heads = check_number(num_heads, "num_heads", low=1, integer=True)
        self.dim_feedforward = check_number(dim_feedforward, "dim_feedforward", low=1,
                                            integer=True)
        self.dropout = check_number(dropout, "dropout", low=0.0, high=1.0,
                                    high_inclusive=False)
        if not isinstance(activation, str):
            raise TypeError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.activation = choose(activation.lower(), _ACTIVATIONS, "activation")
        self.norm_first = check_bool(norm_first, "norm_first")
        self.layer_norm_eps = check_number(layer_norm_eps, "layer_norm_eps", low=0.0,
                                           low_inclusive=False)
        self.causal = check_bool(causal, "causal")
        self._out_shape = None
        prefix = self.name
        # The head width and the second dense layer's width are the input's
        # width divided by the heads and the input's width: set in build.
        self.dense1 = Dense(self.dim_feedforward, activation=self.activation,
                            name=f"{prefix}_dense1")
        self.dropout_ff = Dropout(self.dropout, name=f"{prefix}_dropout")
        self.dense2 = Dense(1, name=f"{prefix}_dense2")

    def _attention(self, suffix, causal, rope=False):
        # The head width is a placeholder until build (an even one for rope).
        return MultiHeadAttention(self.num_heads, 2 if rope else 1, dropout=self.dropout,
                                  causal=causal, rope=rope, name=f"{self.name}_{suffix}")

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "dim_feedforward": self.dim_feedforward, "dropout": self.dropout,
                "activation": self.activation, "norm_first": self.norm_first,
                "layer_norm_eps": self.layer_norm_eps, "causal": self.causal,
                "rope": self.rope}

    # --- the sublayers ---------------------------------------------------------

    def sublayers(self):
        return [getattr(self, name) for name in self._all]

    def weight_owners(self):
        return [owner for name in self._weighted
                for owner in getattr(self, name).weight_owners()]

    def buffers(self):
        return {f"{layer.name}/{name}": array for layer in self.sublayers()
                for name, array in layer.buffers().items()}

    def _model_width(self, shape, what):
        if len(shape) != 2:
            raise ValueError(f"{self.name} ({type(self).__name__}): the {what} must be a "
                             "sequence of vectors, (batch, time, features), got samples of "
                             f"shape {tuple(shape)}")
        d_model = shape[-1]
        if d_model % self.num_heads:
            raise ValueError(f"{self.name} ({type(self).__name__}): the {what}'s width "
                             f"(d_model = {d_model}) must be divisible by num_heads = "
                             f"{self.num_heads}")
        if self.rope and (d_model // self.num_heads) % 2:
            raise ValueError(f"{self.name} ({type(self).__name__}): rope=True needs an even "
                             f"head width, d_model / num_heads = {d_model} / "
                             f"{self.num_heads} = {d_model // self.num_heads}")
        return d_model

    def _build_feedforward(self, shape):
        self.dense2.units = shape[-1]
        inner = self.dense1._build(shape, self.dtype, self._rng)
        self.dropout_ff._build(inner, self.dtype, self._rng)
        self.dense2._build(inner, self.dtype, self._rng)

    def _build_sub(self, names, shape):
        for name in names:
            getattr(self, name)._build(shape, self.dtype, self._rng)

    # --- computing -------------------------------------------------------------

    def __call__(self, x, training=False, **masks):
        """``forward(x, training, **masks)`` on arrays; on symbolic tensors,
        records the call in a graph (masks cannot be recorded)."""
        if symbolic.is_symbolic(x):
            if masks:
                raise TypeError(f"{self.name}: {', '.join(sorted(masks))} cannot be given "
                                "to a call on symbolic tensors; a graph's Transformer block "
                                "takes no masks (causal is set at construction)")
            return symbolic.call_layer(self, x)
        return self.forward(x, training=training, **masks)

    def _feedforward(self, x, training):
        f = self.dense1.forward(x, training)
        f = self.dropout_ff.forward(f, training)
        return self.dense2.forward(f, training)

    def _feedforward_backward(self, grad):
        g = self.dense2.backward(grad)
        g = self.dropout_ff.backward(g)
        return self.dense1.backward(g)

    def _residual(self, x, training, norm, inner):
        """``x + inner(x)`` (pre-norm: ``x + inner(norm(x))``), or
        ``norm(x + inner(x))`` (post-norm); ``inner`` ends with its dropout."""
        if self.norm_first:
            return x + inner(norm.forward(x, training))
        return norm.forward(x + inner(x), training)

    def _residual_backward(self, grad, norm, inner_backward):
        """The gradient of ``_residual`` with respect to ``x``, given
        ``inner_backward`` (the gradient of ``inner`` with respect to its input)."""
        if self.norm_first:
            return grad + norm.backward(inner_backward(grad))
        g = norm.backward(grad)
        return g + inner_backward(g)

    def flops_per_sample(self, input_shape):
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        target = tuple(shapes[0])
        inner = self.dense1.compute_output_shape(target)
        total = (self.dense1.flops_per_sample(target) + self.dense2.flops_per_sample(inner))
        norms = [name for name in self._weighted if name.startswith("norm")]
        total += sum(getattr(self, name).flops_per_sample(target) for name in norms)
        return int(total + len(norms) * math.prod(target))   # the residual adds


class TransformerEncoder(_TransformerBlock):
    """A Transformer encoder block: self-attention and a feed-forward network,
    each with a residual connection and layer normalisation, equal to
    PyTorch's ``nn.TransformerEncoderLayer(d_model, num_heads,
    dim_feedforward, dropout, activation, layer_norm_eps, batch_first=True,
    norm_first)``.

    With ``x`` of shape ``(batch, T, d_model)``::

        post-norm (default):  h = norm1(x + drop(attention(x)))
                              y = norm2(h + drop(dense2(drop(act(dense1(h))))))
        pre-norm (norm_first): h = x + drop(attention(norm1(x)))
                              y = h + drop(dense2(drop(act(dense1(norm2(h))))))

    ``d_model`` is the input's last axis, which ``num_heads`` must divide
    (each head has ``d_model / num_heads`` features); the attention drops
    its weights with ``dropout`` too, as PyTorch's does.

    Parameters
    ----------
    num_heads : int
    dim_feedforward : int
        Width of the feed-forward network's hidden layer.
    dropout : float in [0, 1)
        Of the attention weights, of the attention's output, of the
        feed-forward network's hidden layer and of its output, in training.
    activation : {"relu", "gelu"}
        Of the feed-forward network's hidden layer (GELU exact, with erf,
        as PyTorch's default).
    norm_first : bool
        Pre-norm (layer normalisation before each part) instead of post-norm.
    layer_norm_eps : float > 0
    causal : bool
        Causal self-attention (a language model's): position t attends to
        positions <= t. ``forward``'s ``causal`` overrides it for a call.
    rope : bool
        Rotary position embedding in the self-attention (see
        ``MultiHeadAttention``'s ``rope``); ``d_model / num_heads`` must be
        even. Not in PyTorch's block.

    Attributes
    ----------
    self_attention : MultiHeadAttention
    dense1, dense2 : Dense
    norm1, norm2 : LayerNorm
    dropout1, dropout_ff, dropout2 : Dropout
        The sublayers, named ``<name>_self_attention``, ``<name>_dense1``
        and so on. ``params`` holds, in order: the attention's eight
        (query kernel and bias, key kernel and bias, value kernel and bias,
        output kernel and bias), dense1's kernel ``(d_model,
        dim_feedforward)`` and bias, dense2's kernel ``(dim_feedforward,
        d_model)`` and bias, norm1's gamma and beta, norm2's gamma and beta.

    Notes
    -----
    ``forward`` takes the attention's keywords, ``attention_mask`` (bool,
    True where a query may attend to a key), ``key_padding_mask`` (bool,
    True for a real token) and ``causal`` (see ``MultiHeadAttention``).

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([
    ...     layers.Embedding(100, 32),
    ...     layers.PositionalEmbedding(max_length=16),
    ...     layers.TransformerEncoder(num_heads=4, dim_feedforward=64, dropout=0.1),
    ...     layers.GlobalAvgPool1D(),
    ...     layers.Dense(2)], input_shape=(16,), seed=0)
    >>> model.forward(np.zeros((3, 16))).shape
    (3, 2)
    >>> len(model.layers[2].params)      # 8 attention, 4 feed-forward, 4 normalisation
    16
    """

    supports_masking = True
    _weighted = ("self_attention", "dense1", "dense2", "norm1", "norm2")
    _all = ("self_attention", "dropout1", "norm1", "dense1", "dropout_ff", "dense2",
            "dropout2", "norm2")

    def __init__(self, num_heads, dim_feedforward=2048, dropout=0.1, activation="relu",
                 norm_first=False, layer_norm_eps=1e-5, causal=False, name=None, dtype=None,
                 rope=False):
        super().__init__(num_heads, dim_feedforward, dropout, activation, norm_first,
                         layer_norm_eps, causal, name, dtype, rope)
        prefix = self.name
        self.self_attention = self._attention("self_attention", self.causal, self.rope)
        self.dropout1 = Dropout(self.dropout, name=f"{prefix}_dropout1")
        self.dropout2 = Dropout(self.dropout, name=f"{prefix}_dropout2")
        self.norm1 = LayerNorm(self.layer_norm_eps, name=f"{prefix}_norm1")
        self.norm2 = LayerNorm(self.layer_norm_eps, name=f"{prefix}_norm2")

    def build(self, input_shape):
        shape = tuple(input_shape)
        d_model = self._model_width(shape, "input")
        self.self_attention._set_head_size(d_model // self.num_heads,
                                           d_model // self.num_heads)
        self._build_sub(("self_attention", "dropout1", "norm1"), shape)
        self._build_feedforward(shape)
        self._build_sub(("dropout2", "norm2"), shape)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        self._model_width(shape, "input")
        return shape

    def flops_per_sample(self, input_shape):
        return super().flops_per_sample(input_shape) + \
            self.self_attention.flops_per_sample(tuple(input_shape))

    def forward(self, x, training=False, *, attention_mask=None, key_padding_mask=None,
                causal=None):
        """The block's output, ``(batch, T, d_model)``; the keywords go to its
        self-attention (see ``MultiHeadAttention.forward``). Without a
        ``key_padding_mask``, the padding mask a model carries to the block
        (``input_mask``) masks the attention's keys."""
        training = check_bool(training, "training")
        x = self._check_input(x)
        if key_padding_mask is None:
            key_padding_mask = self.input_mask

        def attend(h):
            a = self.self_attention.forward(h, training, attention_mask=attention_mask,
                                            key_padding_mask=key_padding_mask,
                                            causal=causal)
            return self.dropout1.forward(a, training)

        def feedforward(h):
            return self.dropout2.forward(self._feedforward(h, training), training)

        h = self._residual(x, training, self.norm1, attend)
        y = self._residual(h, training, self.norm2, feedforward)
        self._out_shape = y.shape
        return y

    def backward(self, grad):
        grad = self._check_grad(grad, self._out_shape)
        need = self._input_grad_needed

        def attend_backward(g):
            return self.self_attention.backward(self.dropout1.backward(g))

        def feedforward_backward(g):
            return self._feedforward_backward(self.dropout2.backward(g))

        g = self._residual_backward(grad, self.norm2, feedforward_backward)
        if need or self.norm_first:
            # Pre-norm, norm1's weights need the attention's input gradient.
            dx = self._residual_backward(g, self.norm1, attend_backward)
            return dx if need else None
        # Post-norm, the attention reads the block's input, whose gradient
        # nobody needs here: only its weights' gradients are computed.
        g = self.norm1.backward(g)
        self.self_attention._input_grad_needed = False
        try:
            attend_backward(g)
        finally:
            self.self_attention._input_grad_needed = True
        return None


class TransformerDecoder(_TransformerBlock):
    """A Transformer decoder block: causal self-attention on the target,
    attention to the encoder's output (the memory) and a feed-forward
    network, each with a residual connection and layer normalisation, equal
    to PyTorch's ``nn.TransformerDecoderLayer(d_model, num_heads,
    dim_feedforward, dropout, activation, layer_norm_eps, batch_first=True,
    norm_first)`` called with a causal ``tgt_mask`` (``tgt_is_causal=True``).

    Called on ``[target, memory]`` (``(batch, T, d_model)`` and ``(batch,
    S, d_memory)``) in a graph of ``cdl.Input``, or on two arrays::

        post-norm (default):  h = norm1(x + drop(self_attention(x)))
                              h = norm2(h + drop(cross_attention([h, memory])))
                              y = norm3(h + drop(feedforward(h)))
        pre-norm (norm_first): h = x + drop(self_attention(norm1(x)))
                              h = h + drop(cross_attention([norm2(h), memory]))
                              y = h + drop(feedforward(norm3(h)))

    with ``feedforward(h) = dense2(drop(act(dense1(h))))``. Its gradient is
    ``[d target, d memory]``.

    Parameters
    ----------
    num_heads, dim_feedforward, dropout, activation, norm_first, layer_norm_eps
        As for ``TransformerEncoder``; ``num_heads`` must divide d_model.
    causal : bool
        Causal self-attention on the target (the default, for decoding one
        position at a time); ``forward``'s ``causal`` overrides it.
    rope : bool
        Rotary position embedding in the self-attention on the target (see
        ``MultiHeadAttention``'s ``rope``); the cross-attention, whose
        queries and keys come from different sequences, is not rotated.
        ``d_model / num_heads`` must be even. Not in PyTorch's block.

    Attributes
    ----------
    self_attention, cross_attention : MultiHeadAttention
    dense1, dense2 : Dense
    norm1, norm2, norm3 : LayerNorm
    dropout1, dropout2, dropout3, dropout_ff : Dropout
        The sublayers, named ``<name>_self_attention`` and so on.
        ``params`` holds, in order: the self-attention's eight, the
        cross-attention's eight (its key and value kernels ``(d_memory,
        d_model)``), dense1's kernel and bias, dense2's kernel and bias,
        then gamma and beta of norm1, norm2 and norm3.

    Notes
    -----
    ``forward`` takes ``attention_mask``, ``key_padding_mask`` and ``causal``
    for the self-attention on the target, and ``memory_mask`` (bool,
    ``(batch, T, S)`` or ``(T, S)``, True where a target position may attend
    to a memory position) and ``memory_key_padding_mask`` (bool ``(batch,
    S)``, True for a real memory position) for the cross-attention.

    Examples
    --------
    >>> import cdl
    >>> from cdl import layers
    >>> target, memory = cdl.Input((10, 16), name="target"), cdl.Input((12, 16), name="memory")
    >>> encoded = layers.TransformerEncoder(4, dim_feedforward=32)(memory)
    >>> decoded = layers.TransformerDecoder(4, dim_feedforward=32)([target, encoded])
    >>> model = cdl.Model([target, memory], layers.Dense(5)(decoded), seed=0)
    >>> model.output_shape
    (10, 5)
    """

    supports_masking = True
    takes_list = True
    _weighted = ("self_attention", "cross_attention", "dense1", "dense2", "norm1", "norm2",
                 "norm3")
    _all = ("self_attention", "dropout1", "norm1", "cross_attention", "dropout2", "norm2",
            "dense1", "dropout_ff", "dense2", "dropout3", "norm3")

    def __init__(self, num_heads, dim_feedforward=2048, dropout=0.1, activation="relu",
                 norm_first=False, layer_norm_eps=1e-5, causal=True, name=None, dtype=None,
                 rope=False):
        super().__init__(num_heads, dim_feedforward, dropout, activation, norm_first,
                         layer_norm_eps, causal, name, dtype, rope)
        prefix = self.name
        self.self_attention = self._attention("self_attention", self.causal, self.rope)
        self.cross_attention = self._attention("cross_attention", False)
        for i in (1, 2, 3):
            setattr(self, f"dropout{i}", Dropout(self.dropout, name=f"{prefix}_dropout{i}"))
            setattr(self, f"norm{i}", LayerNorm(self.layer_norm_eps, name=f"{prefix}_norm{i}"))

    def _shapes(self, input_shape):
        try:
            shapes = [tuple(s) for s in input_shape]
        except TypeError:
            shapes = None
        if shapes is None or len(shapes) != 2:
            raise ValueError(f"{self.name} (TransformerDecoder) takes [target, memory], got "
                             f"inputs of shape {input_shape}")
        d_model = self._model_width(shapes[0], "target")
        if len(shapes[1]) != 2:
            raise ValueError(f"{self.name} (TransformerDecoder): the memory must be a "
                             "sequence of vectors, (batch, time, features), got samples "
                             f"of shape {shapes[1]}")
        return shapes, d_model

    def build(self, input_shape):
        (target, memory), d_model = self._shapes(input_shape)
        head = d_model // self.num_heads
        self.self_attention._set_head_size(head, head)
        self.cross_attention._set_head_size(head, head)
        self._build_sub(("self_attention", "dropout1", "norm1"), target)
        self.cross_attention._build([target, memory], self.dtype, self._rng)
        self._build_sub(("dropout2", "norm2"), target)
        self._build_feedforward(target)
        self._build_sub(("dropout3", "norm3"), target)

    def compute_output_shape(self, input_shape):
        return self._shapes(input_shape)[0][0]

    def flops_per_sample(self, input_shape):
        (target, memory), _ = self._shapes(input_shape)
        return super().flops_per_sample([target]) + \
            self.self_attention.flops_per_sample(target) + \
            self.cross_attention.flops_per_sample([target, memory])

    def forward(self, x, training=False, *, attention_mask=None, key_padding_mask=None,
                causal=None, memory_mask=None, memory_key_padding_mask=None):
        """The block's output for ``x = [target, memory]``, ``(batch, T,
        d_model)``; see the class's notes for the keywords. The padding
        masks a model carries to the target and the memory (``input_mask``)
        serve as ``key_padding_mask`` and ``memory_key_padding_mask`` when
        those are not given."""
        training = check_bool(training, "training")
        target, memory = self._check_inputs(x)
        if self.input_mask is not None:
            if key_padding_mask is None:
                key_padding_mask = self.input_mask[0]
            if memory_key_padding_mask is None:
                memory_key_padding_mask = self.input_mask[1]

        def attend(h):
            a = self.self_attention.forward(h, training, attention_mask=attention_mask,
                                            key_padding_mask=key_padding_mask,
                                            causal=causal)
            return self.dropout1.forward(a, training)

        def cross(h):
            a = self.cross_attention.forward([h, memory], training, attention_mask=memory_mask,
                                             key_padding_mask=memory_key_padding_mask)
            return self.dropout2.forward(a, training)

        def feedforward(h):
            return self.dropout3.forward(self._feedforward(h, training), training)

        h = self._residual(target, training, self.norm1, attend)
        h = self._residual(h, training, self.norm2, cross)
        y = self._residual(h, training, self.norm3, feedforward)
        self._out_shape = y.shape
        return y

    def compute_mask(self, mask):
        """The target's padding mask: the output has the target's time steps."""
        return mask[0] if isinstance(mask, list) else mask

    def backward(self, grad):
        grad = self._check_grad(grad, self._out_shape)
        need = self._input_grad_needed
        memory_grads = []

        def attend_backward(g):
            return self.self_attention.backward(self.dropout1.backward(g))

        def cross_backward(g):
            dh, dmemory = self.cross_attention.backward(self.dropout2.backward(g))
            memory_grads.append(dmemory)
            return dh

        def feedforward_backward(g):
            return self._feedforward_backward(self.dropout3.backward(g))

        g = self._residual_backward(grad, self.norm3, feedforward_backward)
        g = self._residual_backward(g, self.norm2, cross_backward)
        if need or self.norm_first:
            # Pre-norm, norm1's weights need the attention's input gradient.
            dx = self._residual_backward(g, self.norm1, attend_backward)
            return [dx, memory_grads[0]] if need else [None, None]
        # Post-norm, the self-attention reads the target, whose gradient
        # nobody needs here: only its weights' gradients are computed.
        g = self.norm1.backward(g)
        self.self_attention._input_grad_needed = False
        try:
            attend_backward(g)
        finally:
            self.self_attention._input_grad_needed = True
        return [None, None]
