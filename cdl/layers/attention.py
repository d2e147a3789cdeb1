"""Attention: MultiHeadAttention, and PositionalEmbedding, which tells it
where each token stands.

``MultiHeadAttention`` projects its inputs with cdl's dense kernel
(``cdl._kernels.dense``) and computes every (sample, head) block of scaled
dot-product attention with the compiled kernel (``cdl._kernels.attention``):
a fused, numerically stable softmax that never forms a (T, T) score matrix
for long sequences, and whose backward pass recomputes the softmax from the
saved log-sum-exp. Dropout of the attention weights, which the kernel does
not do, takes a NumPy path that materialises the weights (see the class).
"""
import math

import numpy as np

from cdl import _sharding, initializers
from cdl._kernels import attention as _attention
from cdl._kernels import dense as _dense
from cdl._kernels import dropout as _dropout
from cdl._validation import check_blas_size, check_bool, check_number
from cdl.layers import symbolic
from cdl.layers.base import Layer

__all__ = ["MultiHeadAttention", "PositionalEmbedding"]

#: Which input each projection reads, by call form: one tensor (self-attention),
#: [query, value] (the key is the value) or [query, value, key].
PROJECTION_SOURCES = {1: {"query": 0, "key": 0, "value": 0},
                      2: {"query": 0, "key": 1, "value": 1},
                      3: {"query": 0, "key": 2, "value": 1}}
PROJECTIONS = ("query", "key", "value")


def rope_tables(length, width, base=10000.0, dtype=np.float64):
    """The cosines and sines of rotary position embedding, ``(length, width // 2)`` each.

    Row p, column i: ``cos(p * base^(-2i / width))`` and ``sin(...)``, the
    angle by which position p turns the pair of features (i, i + width / 2)
    (the "rotate half" pairing of GPT-NeoX and Hugging Face's Llama).
    Computed in float64 and rounded to ``dtype`` once.

    Examples
    --------
    >>> cos, sin = rope_tables(3, 4)
    >>> cos.round(4)
    array([[ 1.    ,  1.    ],
           [ 0.5403,  1.    ],
           [-0.4161,  0.9998]])
    """
    inverse_frequency = np.power(float(base), -np.arange(0, width, 2, dtype=np.float64) / width)
    angle = np.arange(length, dtype=np.float64)[:, None] * inverse_frequency[None, :]
    return (np.ascontiguousarray(np.cos(angle), dtype=dtype),
            np.ascontiguousarray(np.sin(angle), dtype=dtype))


def rotate(blocks, cos, sin, inverse=False):
    """Rotate ``blocks`` in place by position ("rotate half").

    ``blocks`` is ``(..., width)``, ``cos`` and ``sin`` broadcast to its
    first half: ``(T, width // 2)`` tables for ``(n, T, width)`` blocks, or
    the tables with an axis added, ``(T, 1, width // 2)``, for a ``(batch,
    T, heads, width)`` view of the heads.

    With ``x1, x2`` the first and second halves of each vector::

        x1' = x1 cos - x2 sin,   x2' = x2 cos + x1 sin

    ``inverse`` turns the other way (sin -> -sin): the rotation's transpose,
    which is the backward pass (the rotation is orthogonal).

    Examples
    --------
    >>> blocks = np.array([[[1.0, 0.0], [1.0, 0.0]]])    # positions 0 and 1
    >>> rotate(blocks, *rope_tables(2, 2)).round(4)       # turned by 0 and 1 radian
    array([[[1.    , 0.    ],
            [0.5403, 0.8415]]])
    >>> rotate(blocks, *rope_tables(2, 2), inverse=True).round(4)
    array([[[1., 0.],
            [1., 0.]]])
    """
    half = blocks.shape[-1] // 2
    x1, x2 = blocks[..., :half], blocks[..., half:]
    first = x1.copy()
    x1 *= cos
    if inverse:
        x1 += x2 * sin
        x2 *= cos
        x2 -= first * sin
    else:
        x1 -= x2 * sin
        x2 *= cos
        x2 += first * sin
    return blocks


def _is_shape_list(input_shape):
    """True for a list of per-sample shapes, False for one shape."""
    return isinstance(input_shape, (list, tuple)) and bool(input_shape) and \
        all(isinstance(s, (list, tuple)) for s in input_shape)


def _rank_check(layer, shapes, names):
    for shape, name in zip(shapes, names):
        if len(shape) != 2:
            raise ValueError(
                f"{layer.name} ({type(layer).__name__}): the {name} must be a sequence of "
                f"vectors, (batch, time, features), got samples of shape {tuple(shape)}")


def check_mask(mask, name, shapes, owner):
    """``mask`` as a C-contiguous bool array of one of ``shapes``, or None.

    Only bool masks are taken: an integer or float mask could mean either
    convention (PyTorch adds a float ``attn_mask`` to the scores, and its
    bool one is True where attention is *not* allowed), so rather than
    guess, it is refused with a ValueError naming it.
    """
    if mask is None:
        return None
    if symbolic.is_symbolic(mask):
        raise TypeError(f"{name} of {owner} must be an array; masks are given to forward "
                        "on arrays, not recorded in a graph")
    if not isinstance(mask, np.ndarray):
        try:
            mask = np.asarray(mask)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{name} of {owner} could not be turned into an array: "
                             f"{err}") from None
    if mask.dtype != np.bool_:
        raise ValueError(f"{name} of {owner} must be a bool array (True where attention is "
                         f"allowed), got dtype {mask.dtype}; for a 0/1 array pass "
                         f"`{name}=mask != 0`")
    if mask.shape not in shapes:
        raise ValueError(f"{name} of {owner} has shape {mask.shape}, expected "
                         + " or ".join(str(s) for s in shapes))
    return np.ascontiguousarray(mask)


def heads_view(a, batch, length, heads, width):
    """A (batch * length, heads * width) array, or a view of columns of a
    wider one, as a (batch, length, heads, width) view of the same memory.

    This is the layout the attention kernel reads and writes in place: head
    h of sample n is ``view[n, :, h]``, rows ``width`` elements long and
    the row stride the projection's. Nothing is copied, so writing into the
    view (a rotation of the queries and keys, say) writes the projection.
    """
    view = a.reshape(batch, length, heads, width)   # splits axes only: a view
    if a.size and not np.may_share_memory(view, a):
        raise AssertionError("a reshaped view of a projection was copied")
    return view


class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention, as Keras' ``MultiHeadAttention``
    and PyTorch's ``nn.MultiheadAttention(batch_first=True)``.

    For each head h, with queries from ``query`` and keys and values from
    ``key`` and ``value``::

        Q_h = query @ Wq_h + bq_h,  K_h = key @ Wk_h + bk_h,  V_h = value @ Wv_h + bv_h
        head_h = softmax(Q_h K_h^T / sqrt(key_dim) + masking) V_h
        output = concat(head_1, ..., head_H) @ Wo + bo

    Called on one tensor it is self-attention (query = key = value): the
    form a ``Sequential`` uses. ``mha([query, value])`` takes keys and values
    from ``value``; ``mha([query, value, key])`` from two tensors. The form
    of the first call (or build) is the layer's for good. Inputs are
    sequences of vectors ``(batch, time, features)``; the output has the
    query's length and ``output_dim`` features (the query's by default).

    Parameters
    ----------
    num_heads : int
    key_dim : int
        Width of each head's queries and keys. ``key_dim = E / num_heads``
        with ``E`` the input width gives PyTorch's ``MultiheadAttention(E,
        num_heads)``.
    value_dim : int, optional
        Width of each head's values; ``key_dim`` by default.
    dropout : float in [0, 1)
        Dropout of the attention weights in training. The compiled kernel
        never forms the weights, so with dropout a training pass computes
        them in full (``(batch, heads, Tq, Tk)`` values, twice: weights and
        mask) and does the products with NumPy; inference and dropout 0 run
        the kernel. The mask is drawn from the model's seeded generator.
    use_bias : bool
        Biases on the four projections.
    output_dim : int, optional
        Width of the output; the query's by default.
    causal : bool
        Query i attends only to keys j <= i (top-left aligned when Tq != Tk,
        as PyTorch's ``is_causal``); ``forward``'s ``causal`` overrides it.
    return_attention_scores : bool
        Keep the softmax weights of the last forward pass in
        ``last_attention_scores``, ``(batch, num_heads, Tq, Tk)`` (before
        dropout). This costs the (Tq, Tk) matrices the kernel otherwise
        avoids; the output is the same array either way.
    rope : bool
        Rotary position embedding (RoFormer, Su et al. 2021): after the
        projections are split into heads, every head's query at position p
        and key at position p (0 to T - 1 of the query's and of the key's
        sequence) are rotated by angles ``p * rope_base^(-2i / key_dim)``,
        so that their product depends on the positions' difference only. The
        "rotate half" pairing of GPT-NeoX and Hugging Face's Llama: feature
        i turns with feature ``i + key_dim / 2`` (``key_dim`` must be
        even). Meta's original Llama and torchtune pair neighbours (2i,
        2i + 1) instead: the same thing up to a permutation of the query and
        key kernels' columns. The values are not rotated. The cosine and
        sine tables are cached per (length, dtype); they are not weights.
    rope_base : float > 0
        The base of the rotary angles' frequencies (10000, as RoFormer).
    kernel_initializer, bias_initializer : str or callable
        Defaults: glorot uniform kernels, zero biases (as Keras).

    Attributes
    ----------
    query_kernel : ndarray of shape (E_q, num_heads * key_dim)
    query_bias : ndarray of shape (num_heads * key_dim,), if ``use_bias``
    key_kernel : ndarray of shape (E_k, num_heads * key_dim)
    key_bias : ndarray of shape (num_heads * key_dim,), if ``use_bias``
    value_kernel : ndarray of shape (E_v, num_heads * value_dim)
    value_bias : ndarray of shape (num_heads * value_dim,), if ``use_bias``
    output_kernel : ndarray of shape (num_heads * value_dim, output_dim or E_q)
    output_bias : ndarray of shape (output_dim or E_q,), if ``use_bias``
        In this order in ``params``. Head h owns columns ``h * key_dim`` to
        ``(h + 1) * key_dim - 1`` of the query and key kernels (and likewise
        of the value kernel); PyTorch's ``in_proj_weight`` holds the query,
        key and value kernels transposed, one under the other, and
        ``out_proj`` the output kernel transposed.
    last_attention_scores : ndarray or None
        See ``return_attention_scores``.

    Notes
    -----
    ``forward`` (and calling the layer on arrays) takes, besides
    ``training``, the keywords:

    - ``attention_mask``: bool, ``(batch, Tq, Tk)`` or ``(Tq, Tk)``, True
      where the query may attend to the key (Keras' convention; PyTorch's
      bool ``attn_mask`` is the opposite, True where it may not);
    - ``key_padding_mask``: bool ``(batch, Tk)``, True for a real token,
      False for padding (PyTorch's ``key_padding_mask`` is again the
      opposite);
    - ``causal``: True or False, for this call.

    Masks are combined: a key counts only where every one allows it. A
    query row left with no key to attend to (every key masked) gets an
    attention output of 0, so the layer outputs the output bias there, and
    no gradient flows through it: never NaN. (PyTorch gives 0 in training
    and NaN at inference for such rows.) Masks given as keywords are not
    recorded in graphs of ``cdl.Input``; but in a ``Sequential`` or graph
    model, the padding mask of ``Embedding(mask_zero=True)`` reaches the
    attention through the layers that keep the time axis and serves as the
    keys' ``key_padding_mask`` (the output carries the query's mask on).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    >>> mha = layers.MultiHeadAttention(num_heads=2, key_dim=4)
    >>> mha(x).shape                                     # self-attention
    (2, 5, 8)
    >>> cross = layers.MultiHeadAttention(2, 4, output_dim=3)
    >>> memory = np.ones((2, 7, 6), dtype=np.float32)
    >>> cross([x, memory]).shape                         # keys and values from memory
    (2, 5, 3)
    >>> mask = np.tril(np.ones((5, 5), dtype=bool))      # True = may attend
    >>> np.allclose(mha(x, attention_mask=mask), mha(x, causal=True))
    True
    """

    supports_masking = True
    takes_list_or_tensor = True

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                 output_dim=None, causal=False, return_attention_scores=False,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", name=None,
                 dtype=None, rope=False, rope_base=10000.0):
        super().__init__(name=name, dtype=dtype)
        self.num_heads = check_number(num_heads, "num_heads", low=1, integer=True)
        self.key_dim = check_number(key_dim, "key_dim", low=1, integer=True)
        self.value_dim = self.key_dim if value_dim is None else check_number(
            value_dim, "value_dim", low=1, integer=True)
        self._value_dim_given = value_dim is not None
        self.dropout = check_number(dropout, "dropout", low=0.0, high=1.0,
                                    high_inclusive=False)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.output_dim = None if output_dim is None else check_number(
            output_dim, "output_dim", low=1, integer=True)
        self.causal = check_bool(causal, "causal")
        self.return_attention_scores = check_bool(return_attention_scores,
                                                  "return_attention_scores")
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.rope = check_bool(rope, "rope")
        self.rope_base = float(check_number(rope_base, "rope_base", low=0.0,
                                            low_inclusive=False))
        if self.rope:
            self._check_rope_width(self.key_dim)
        self._rope_tables = {}
        self.last_attention_scores = None
        self._cache = None

    def _check_rope_width(self, key_dim):
        if key_dim % 2:
            raise ValueError(f"{self.name} (MultiHeadAttention): rope=True rotates pairs of "
                             f"features, so key_dim must be even, got {key_dim}")

    def _rope(self, length):
        """The (cos, sin) tables of ``length`` positions in the layer's dtype, cached."""
        key = (length, np.dtype(self.dtype).str)
        tables = self._rope_tables.get(key)
        if tables is None:
            if len(self._rope_tables) >= 32:   # many lengths: keep the cache small
                self._rope_tables.clear()
            tables = rope_tables(length, self.key_dim, self.rope_base, self.dtype)
            self._rope_tables[key] = tables
        return tables

    def _rope_heads(self, length):
        """The tables shaped (length, 1, key_dim / 2), to broadcast over the
        heads of a (batch, length, heads, key_dim) view."""
        cos, sin = self._rope(length)
        return cos[:, None], sin[:, None]

    def get_config(self):
        config = {**super().get_config(), "num_heads": self.num_heads,
                  "key_dim": self.key_dim,
                  "value_dim": self.value_dim if self._value_dim_given else None,
                  "dropout": self.dropout, "use_bias": self.use_bias,
                  "output_dim": self.output_dim, "causal": self.causal,
                  "return_attention_scores": self.return_attention_scores,
                  "rope": self.rope, "rope_base": self.rope_base}
        for key in ("kernel_initializer", "bias_initializer"):
            name = initializers.name_of(getattr(self, key))
            if name is not None:
                config[key] = name
        return config

    def _set_head_size(self, key_dim, value_dim):
        """Set the head widths before the layer is built (a Transformer block
        knows them only from its input)."""
        if self.built:
            raise RuntimeError(f"{self.name} is built: its head size is fixed")
        key_dim = check_number(key_dim, "key_dim", low=1, integer=True)
        if self.rope:
            self._check_rope_width(key_dim)
        self.key_dim = key_dim
        self.value_dim = check_number(value_dim, "value_dim", low=1, integer=True)
        self._rope_tables = {}

    # --- shapes ----------------------------------------------------------------

    def _shapes(self, input_shape):
        """The per-sample shapes as a list, one per input, checked."""
        if self.takes_list if self.built else _is_shape_list(input_shape):
            shapes = [tuple(s) for s in input_shape]
            if len(shapes) not in (2, 3):
                raise ValueError(f"{self.name} (MultiHeadAttention) takes [query, value] or "
                                 f"[query, value, key], got {len(shapes)} inputs")
            names = ("query", "value", "key")[:len(shapes)]
        else:
            shapes, names = [tuple(input_shape)], ("input",)
        _rank_check(self, shapes, names)
        if len(shapes) == 3 and shapes[1][0] != shapes[2][0]:
            raise ValueError(f"{self.name} (MultiHeadAttention): the value and the key must "
                             f"have one length, got {shapes[1][0]} and {shapes[2][0]} "
                             "time steps")
        return shapes

    def _build(self, input_shape, dtype=None, rng=None):
        if not self.built:
            # Built for a list of shapes (a graph's call on a list) or one shape.
            self.takes_list = _is_shape_list(input_shape)
        return super()._build(input_shape, dtype, rng)

    def build(self, input_shape):
        shapes = self._shapes(input_shape)
        sources = PROJECTION_SOURCES[len(shapes)]
        heads = self.num_heads
        widths = {"query": heads * self.key_dim, "key": heads * self.key_dim,
                  "value": heads * self.value_dim}
        for kind in PROJECTIONS:
            features = shapes[sources[kind]][-1]
            check_blas_size(features, f"the {kind} width of {self.name}",
                            "reduce the number of features")
            check_blas_size(widths[kind], f"the {kind} projection width of {self.name}",
                            "use fewer heads or narrower ones")
            self.add_weight(f"{kind}_kernel", (features, widths[kind]),
                            self.kernel_initializer)
            if self.use_bias:
                self.add_weight(f"{kind}_bias", (widths[kind],), self.bias_initializer)
        out = self.output_dim or shapes[0][-1]
        self.add_weight("output_kernel", (widths["value"], out), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("output_bias", (out,), self.bias_initializer)

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        return (shapes[0][0], self.output_dim or shapes[0][-1])

    def _check_sizes(self, shape):
        if len(shape) == 3:
            check_blas_size(shape[0] * shape[1],
                            f"the batch size times the time steps of {self.name}'s input")
            check_blas_size(shape[2], f"the input width of {self.name}",
                            "reduce the number of features")

    def flops_per_sample(self, input_shape):
        shapes = self._shapes(input_shape)
        sources = PROJECTION_SOURCES[len(shapes)]
        tq, tk = shapes[0][0], shapes[sources["key"]][0]
        h, kd, vd = self.num_heads, self.key_dim, self.value_dim
        out = self.output_dim or shapes[0][-1]
        projections = sum(2 * shapes[sources[kind]][0] * shapes[sources[kind]][1] * h * d
                          for kind, d in (("query", kd), ("key", kd), ("value", vd)))
        scores = 2 * h * tq * tk * (kd + vd) + h * tq * tk   # products and the softmax
        rotations = 3 * (tq + tk) * h * kd if self.rope else 0   # 2 products, 1 sum each
        return int(projections + scores + rotations + 2 * tq * h * vd * out)

    # --- computing -------------------------------------------------------------

    def __call__(self, x, training=False, **masks):
        """``forward(x, training, **masks)`` on arrays; on symbolic tensors,
        records the call in a graph (masks cannot be recorded)."""
        if symbolic.is_symbolic(x):
            if masks:
                raise TypeError(f"{self.name}: {', '.join(sorted(masks))} cannot be given "
                                "to a call on symbolic tensors; a graph's attention takes "
                                "no masks (set causal=True at construction for causal "
                                "attention)")
            return symbolic.call_layer(self, x)
        return self.forward(x, training=training, **masks)

    def _inputs(self, x):
        """The inputs as a list of checked arrays (building on first use)."""
        listed = isinstance(x, (list, tuple)) and bool(x) and \
            all(isinstance(a, np.ndarray) for a in x)
        if not self.built:
            if listed and not (len(x) in (2, 3) and all(a.ndim == 3 for a in x)):
                raise ValueError(
                    f"{self.name} (MultiHeadAttention) takes one (batch, time, features) "
                    "array, [query, value] or [query, value, key]; got a list of "
                    f"{len(x)} arrays of shapes {[a.shape for a in x]}")
            self.takes_list = listed
        if self.takes_list:
            return self._check_inputs(x)
        if listed:
            raise TypeError(f"{self.name} (MultiHeadAttention) was built for one input "
                            "(self-attention), got a list of arrays")
        return [self._check_input(x)]

    def forward(self, x, training=False, *, attention_mask=None, key_padding_mask=None,
                causal=None):
        """Attend; see the class's notes for the masks.

        Parameters
        ----------
        x : array_like or list of array_like
            One ``(batch, T, E)`` array (self-attention), ``[query, value]``
            or ``[query, value, key]``.
        training : bool
            Dropout of the attention weights (if ``dropout > 0``).
        attention_mask : bool array_like of shape (batch, Tq, Tk) or (Tq, Tk), optional
            True where a query may attend to a key.
        key_padding_mask : bool array_like of shape (batch, Tk), optional
            True for a real key, False for padding. By default, the padding
            mask a model carries to the keys' input (``input_mask``, from
            ``Embedding(mask_zero=True)``), if any.
        causal : bool, optional
            Causal attention for this call (the constructor's setting by default).

        Returns
        -------
        ndarray of shape (batch, Tq, output_dim or E_q)
        """
        training = check_bool(training, "training")
        xs = self._inputs(x)
        causal = self.causal if causal is None else check_bool(causal, "causal")
        sources = PROJECTION_SOURCES[len(xs)]
        batch, tq = xs[0].shape[:2]
        tk = xs[sources["key"]].shape[1]
        owner = f"{self.name} (MultiHeadAttention)"
        mask = check_mask(attention_mask, "attention_mask", ((tq, tk), (batch, tq, tk)), owner)
        if key_padding_mask is None and self.input_mask is not None:
            # The padding mask a model carried to the keys' input.
            key_padding_mask = self.input_mask[sources["key"]] \
                if isinstance(self.input_mask, list) else self.input_mask
        kpad = check_mask(key_padding_mask, "key_padding_mask", ((batch, tk),), owner)
        h, kd, vd = self.num_heads, self.key_dim, self.value_dim

        # Projections: one product per input, through the kernels of every
        # projection that reads it side by side (self-attention: one product).
        groups, projected = [], {}
        for i, x_i in enumerate(xs):
            kinds = [kind for kind in PROJECTIONS if sources[kind] == i]
            x2 = x_i.reshape(-1, x_i.shape[-1])
            kernel = self._joined([getattr(self, f"{k}_kernel") for k in kinds], axis=1)
            bias = self._joined([getattr(self, f"{k}_bias") for k in kinds]) \
                if self.use_bias else None
            y = np.empty((x2.shape[0], kernel.shape[1]), dtype=self.dtype)
            _dense.forward(x2, kernel, bias, y, y)
            start = 0
            for kind in kinds:
                width = h * (vd if kind == "value" else kd)
                projected[kind] = y[:, start:start + width]
                start += width
            groups.append((kinds, x2, kernel))
        # Each head's queries, keys and values are read where the projection
        # wrote them: (batch, T, heads, width) views, no copies.
        qh = heads_view(projected["query"], batch, tq, h, kd)
        kh = heads_view(projected["key"], batch, tk, h, kd)
        vh = heads_view(projected["value"], batch, tk, h, vd)
        if self.rope:
            # Rotated in place, in the projection (which nothing else reads):
            # every later step, backward included, reads the rotated ones.
            rotate(qh, *self._rope_heads(tq))
            rotate(kh, *self._rope_heads(tk))

        # The heads' outputs go straight into the output projection's input.
        oc = np.empty((batch * tq, h * vd), dtype=self.dtype)
        oh = heads_view(oc, batch, tq, h, vd)
        drop = training and self.dropout > 0.0
        scores = lse = keep = None
        if drop or self.return_attention_scores:
            scores = np.empty((batch * h, tq, tk), dtype=self.dtype)
            _attention.weights(qh, kh, scores, None, causal, mask, kpad, h)
        if drop:
            # The kernel has no dropout: the weights are dropped here and
            # multiplied with NumPy (the backward pass too).
            keep = _sharding.per_sample(self._rng, (batch, h, tq, tk), self.dtype)
            keep = keep.reshape(batch * h, tq, tk)
            dropped = np.empty_like(scores)
            _dropout.forward(scores, keep, keep, dropped, self.dropout)
            np.matmul(dropped.reshape(batch, h, tq, tk), vh.transpose(0, 2, 1, 3),
                      out=oh.transpose(0, 2, 1, 3))
        else:
            lse = np.empty((batch * h, tq))
            _attention.forward(qh, kh, vh, oh, lse, None, causal, mask, kpad, h)
        self.last_attention_scores = None
        if self.return_attention_scores:
            # A copy where the backward pass reads the weights: the caller may
            # write into what it is given.
            shown = scores.reshape(batch, h, tq, tk)
            self.last_attention_scores = shown.copy() if drop else shown

        out = self.output_kernel.shape[1]
        y = np.empty((batch * tq, out), dtype=self.dtype)
        _dense.forward(oc, self.output_kernel, self.output_bias if self.use_bias else None,
                       y, y)
        self._cache = {"groups": groups, "shapes": [a.shape for a in xs], "qh": qh,
                       "kh": kh, "vh": vh, "oh": oh, "lse": lse, "oc": oc,
                       "mask": mask, "kpad": kpad, "causal": causal,
                       "scores": scores if drop else None, "keep": keep,
                       "out_shape": (batch, tq, out)}
        return y.reshape(batch, tq, out)

    def compute_mask(self, mask):
        """The query's padding mask: the output has the query's time steps."""
        return mask[0] if isinstance(mask, list) else mask

    @staticmethod
    def _joined(arrays, axis=0):
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=axis)

    def backward(self, grad):
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        c = self._cache
        batch, tq, out = c["out_shape"]
        dy = self._check_grad(grad, c["out_shape"]).reshape(batch * tq, out)
        h, kd, vd = self.num_heads, self.key_dim, self.value_dim
        doc = np.empty_like(c["oc"])
        _dense.backward(c["oc"], self.output_kernel, None, None, dy, dy, self.output_kernel_grad,
                        self.output_bias_grad if self.use_bias else None, doc)
        doh = heads_view(doc, batch, tq, h, vd)
        qh, kh, vh = c["qh"], c["kh"], c["vh"]
        tk = kh.shape[1]
        # The gradients of the projections, one array per input (the columns
        # of its projections side by side), which the kernel writes per head.
        dprojs, grads = [], {}
        for kinds, x2, kernel in c["groups"]:
            dproj = np.empty((x2.shape[0], kernel.shape[1]), dtype=self.dtype)
            start = 0
            for kind in kinds:
                width, length = (vd, tk) if kind == "value" else \
                    (kd, tq if kind == "query" else tk)
                grads[kind] = heads_view(dproj[:, start:start + h * width], batch, length,
                                         h, width)
                start += h * width
            dprojs.append(dproj)
        if c["keep"] is None:
            _attention.backward(qh, kh, vh, c["oh"], doh, c["lse"], grads["query"],
                                grads["key"], grads["value"], None, c["causal"], c["mask"],
                                c["kpad"], h)
        else:
            self._dropout_backward(doh, c, grads)
        if self.rope:
            # The gradients of the unrotated queries and keys: the inverse rotation.
            rotate(grads["query"], *self._rope_heads(tq), inverse=True)
            rotate(grads["key"], *self._rope_heads(tk), inverse=True)

        need = self._input_grad_needed
        dxs = []
        for (kinds, x2, kernel), dproj in zip(c["groups"], dprojs):
            dx = np.empty_like(x2) if need else None
            if len(kinds) == 1:
                kind = kinds[0]
                _dense.backward(x2, kernel, None, None, dproj, dproj,
                                getattr(self, f"{kind}_kernel_grad"),
                                getattr(self, f"{kind}_bias_grad") if self.use_bias else None,
                                dx)
            else:
                dkernel = np.empty_like(kernel)
                dbias = np.empty(kernel.shape[1], dtype=self.dtype) if self.use_bias else None
                _dense.backward(x2, kernel, None, None, dproj, dproj, dkernel, dbias, dx)
                start = 0
                for kind in kinds:
                    width = h * (vd if kind == "value" else kd)
                    getattr(self, f"{kind}_kernel_grad")[...] = dkernel[:, start:start + width]
                    if self.use_bias:
                        getattr(self, f"{kind}_bias_grad")[...] = dbias[start:start + width]
                    start += width
            dxs.append(dx)
        if not need:
            return [None] * len(dxs) if self.takes_list else None
        dxs = [dx.reshape(shape) for dx, shape in zip(dxs, c["shapes"])]
        return dxs if self.takes_list else dxs[0]

    def _dropout_backward(self, doh, c, grads):
        """Gradients of the heads through the dropped weights, with NumPy,
        written into the (batch, T, heads, width) views ``grads``."""
        batch, tq, h, _ = doh.shape
        tk = c["kh"].shape[1]
        scores = c["scores"].reshape(batch, h, tq, tk)
        keep = c["keep"].reshape(batch, h, tq, tk)
        # (batch, heads, T, width) views of the same memory.
        qb, kb, vb, dob = (a.transpose(0, 2, 1, 3) for a in (c["qh"], c["kh"], c["vh"], doh))
        dropped = scores * keep
        np.matmul(dropped.transpose(0, 1, 3, 2), dob, out=grads["value"].transpose(0, 2, 1, 3))
        dp = np.matmul(dob, vb.transpose(0, 1, 3, 2))
        dp *= keep
        # The softmax's derivative; rows with nothing to attend to are 0
        # in ``scores``, so their gradient is 0 too.
        ds = scores * (dp - (dp * scores).sum(axis=-1, keepdims=True))
        ds *= 1.0 / math.sqrt(self.key_dim)
        np.matmul(ds, kb, out=grads["query"].transpose(0, 2, 1, 3))
        np.matmul(ds.transpose(0, 1, 3, 2), qb, out=grads["key"].transpose(0, 2, 1, 3))


def sinusoid_table(length, width, dtype=np.float64):
    """The fixed position encoding of "Attention is all you need".

    Row p, columns 2i and 2i + 1: ``sin(p / 10000^(2i / width))`` and
    ``cos(p / 10000^(2i / width))`` (an odd last column is a sine).

    Examples
    --------
    >>> sinusoid_table(3, 4).round(4)
    array([[ 0.    ,  1.    ,  0.    ,  1.    ],
           [ 0.8415,  0.5403,  0.01  ,  1.    ],
           [ 0.9093, -0.4161,  0.02  ,  0.9998]])
    """
    position = np.arange(length, dtype=np.float64)[:, None]
    pair = np.arange(width) // 2
    angle = position / np.power(10000.0, 2.0 * pair / width)
    table = np.where(np.arange(width) % 2 == 0, np.sin(angle), np.cos(angle))
    return np.ascontiguousarray(table, dtype=dtype)


class PositionalEmbedding(Layer):
    """Add a position's vector to each time step: (batch, T, d) -> (batch, T, d).

    Attention treats its keys as a set; adding where each token stands is
    what lets it read order. Step t of every sequence gets row t of a table
    of ``max_length`` rows, learned (a weight, as Keras' ``PositionEmbedding``)
    or the fixed sinusoids of "Attention is all you need" (no weights).

    Parameters
    ----------
    max_length : int
        The longest sequence the layer takes; a longer one is refused.
    learned : bool
        A learned table (weight ``embeddings``), or the sinusoids:
        ``sin(t / 10000^(2i / d))`` in column 2i and ``cos(...)`` in column
        2i + 1.
    initializer : str or callable
        The learned table's initialiser; glorot uniform by default, as
        Keras' ``PositionEmbedding``.

    Attributes
    ----------
    embeddings : ndarray of shape (max_length, d), if ``learned``
        Rows T to ``max_length - 1`` serve longer sequences only: for
        inputs of T steps their gradient is 0.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import layers
    >>> fixed = layers.PositionalEmbedding(max_length=50, learned=False)
    >>> fixed(np.zeros((1, 3, 4))).round(4)      # zeros + the table's first rows
    array([[[ 0.    ,  1.    ,  0.    ,  1.    ],
            [ 0.8415,  0.5403,  0.01  ,  1.    ],
            [ 0.9093, -0.4161,  0.02  ,  0.9998]]])
    >>> layers.PositionalEmbedding(50)(np.zeros((2, 10, 8))).shape
    (2, 10, 8)
    """

    supports_masking = True

    def __init__(self, max_length, learned=True, initializer="glorot_uniform", name=None,
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.max_length = check_number(max_length, "max_length", low=1, integer=True)
        self.learned = check_bool(learned, "learned")
        self.initializer = initializers.get(initializer)
        self._table = None
        self._out_shape = None

    def get_config(self):
        config = {**super().get_config(), "max_length": self.max_length,
                  "learned": self.learned}
        name = initializers.name_of(self.initializer)
        if name is not None:
            config["initializer"] = name
        return config

    def _check_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"{self.name} (PositionalEmbedding) takes sequences of vectors, "
                             f"(batch, time, features), got samples of shape "
                             f"{tuple(input_shape)}")
        if input_shape[0] > self.max_length:
            raise ValueError(f"{self.name} (PositionalEmbedding) has positions for "
                             f"max_length={self.max_length} time steps, got sequences of "
                             f"{input_shape[0]}: make max_length larger or the sequences "
                             "shorter")

    def build(self, input_shape):
        self._check_shape(input_shape)
        if self.learned:
            self.add_weight("embeddings", (self.max_length, input_shape[-1]), self.initializer)

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        return tuple(input_shape)

    def flops_per_sample(self, input_shape):
        return int(math.prod(input_shape))

    def forward(self, x, training=False):
        x = self._check_input(x)
        steps = x.shape[1]
        if self.learned:
            table = self.embeddings[:steps]
        else:
            if self._table is None:
                # Made on first use, for the built length only: a model file
                # cannot make build compute a table it does not hold.
                self._table = sinusoid_table(steps, x.shape[2], self.dtype)
            table = self._table
        self._out_shape = x.shape
        return x + table

    def backward(self, grad):
        dy = self._check_grad(grad, self._out_shape)
        if self.learned:
            steps = dy.shape[1]
            self.embeddings_grad[steps:] = 0
            self.embeddings_grad[:steps] = dy.sum(axis=0)
        return dy
