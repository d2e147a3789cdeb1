"""MultiHeadAttention and PositionalEmbedding.

Finite-difference gradient checks of every call form, mask and the
dropout path; parity with ``torch.nn.MultiheadAttention`` (outputs, every
gradient, attention weights) to 1e-10 in float64; rows with nothing to
attend to; bad masks and shapes; dtypes; the call forms in models; and the
positional tables.
"""
import numpy as np
import pytest

import cdl
from cdl import layers
from cdl.layers.attention import sinusoid_table
from helpers import GRADCHECK_TOL, assert_allclose, check_layer, random_array

B, TQ, TK, E = 2, 5, 7, 8


def data(*shapes, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    return arrays if len(arrays) > 1 else arrays[0]


def inputs_of(form, seed=0):
    """The arrays of a call form: 'self', 'query_value' or 'query_value_key'."""
    q, v, k = data((B, TQ, E), (B, TK, 6), (B, TK, 4), seed=seed)
    return {"self": q, "query_value": [q, v], "query_value_key": [q, v, k]}[form]


def masks_of(kind, tq, tk, seed=0):
    """Keyword masks of a kind; every query keeps at least one key."""
    rng = np.random.default_rng(seed)
    if kind == "none":
        return {}
    if kind == "causal":
        return {"causal": True}
    if kind == "mask_2d":
        m = rng.random((tq, tk)) < 0.6
        m[:, 0] = True
        return {"attention_mask": m}
    if kind == "mask_3d":
        m = rng.random((B, tq, tk)) < 0.6
        m[:, :, -1] = True
        return {"attention_mask": m}
    if kind == "padding":
        m = np.ones((B, tk), bool)
        m[0, -2:] = False
        m[1, 3:] = False
        return {"key_padding_mask": m}
    if kind == "all":
        m = rng.random((B, tq, tk)) < 0.7
        m[:, :, 0] = True
        pad = np.ones((B, tk), bool)
        pad[1, -1] = False
        return {"attention_mask": m, "key_padding_mask": pad, "causal": True}
    raise KeyError(kind)


class Masked(layers.Layer):
    """A layer that calls ``inner`` with fixed keywords, so that gradcheck
    (which calls ``forward(x, training)``) sees the masks."""

    def __init__(self, inner, **keywords):
        super().__init__(name="masked", dtype="float64")
        self.inner, self.keywords = inner, keywords
        self.takes_list = isinstance(inner, layers.TransformerDecoder)

    def sublayers(self):
        return [self.inner]

    def weight_owners(self):
        return self.inner.weight_owners()

    def forward(self, x, training=False):
        if not self.inner.built:
            self.inner.forward(x, training, **self.keywords)   # fixes its form
        self.takes_list = self.inner.takes_list
        self._rng = self.inner._rng    # what gradcheck replays for dropout
        return self.inner.forward(x, training, **self.keywords)

    def backward(self, grad):
        return self.inner.backward(grad)


def gradcheck_attention(layer, x, training=False, **keywords):
    """gradcheck of ``layer`` with ``keywords``; every key bias's gradient is
    checked to be zero instead: adding a vector to every key of a softmax
    row adds one number to all its scores, which the softmax ignores, so
    the finite differences are rounding noise."""
    wrapped = Masked(layer, **keywords)
    wrapped.forward(x, training)
    errors = cdl.gradcheck(wrapped, x, training=training, raise_on_error=False)
    for key, error in errors.items():
        if key.endswith("key_bias"):
            continue
        assert error < GRADCHECK_TOL, (key, error, errors)
    for owner, name in layer.weight_owners():
        if name == "key_bias":
            assert np.abs(getattr(owner, name + "_grad")).max() < 1e-12
    return errors


# --- gradients -------------------------------------------------------------------

@pytest.mark.parametrize("form", ["self", "query_value", "query_value_key"])
@pytest.mark.parametrize("kind", ["none", "causal", "mask_2d", "mask_3d", "padding", "all"])
def test_gradcheck_of_every_call_form_and_mask(form, kind):
    x = inputs_of(form)
    tk = TQ if form == "self" else TK
    mha = layers.MultiHeadAttention(2, 3, value_dim=4, output_dim=5, name="mha",
                                    dtype="float64")
    errors = gradcheck_attention(mha, x, **masks_of(kind, TQ, tk))
    assert {"mha.query_kernel", "mha.output_bias"} <= set(errors)


def test_gradcheck_without_biases_and_of_one_head():
    mha = layers.MultiHeadAttention(1, 4, use_bias=False, name="mha", dtype="float64")
    errors = gradcheck_attention(mha, inputs_of("self"))
    assert not any("bias" in key for key in errors)


def test_gradcheck_of_the_dropout_path():
    # Training with dropout takes the NumPy path; gradcheck replays one mask.
    mha = layers.MultiHeadAttention(2, 4, dropout=0.3, name="mha", dtype="float64")
    mha._rng = np.random.default_rng(3)
    gradcheck_attention(mha, inputs_of("query_value"), training=True,
                        **masks_of("all", TQ, TK))


def test_cdl_gradcheck_takes_the_list_form_of_an_unbuilt_layer():
    mha = layers.MultiHeadAttention(2, 3, name="mha", dtype="float64")
    errors = cdl.gradcheck(mha, inputs_of("query_value"), raise_on_error=False)
    assert {"input_0", "input_1"} <= set(errors)
    assert mha.takes_list


# --- PyTorch parity -----------------------------------------------------------------

def torch_twin(torch, mha, widths):
    """nn.MultiheadAttention with ``mha``'s weights (E_q = E_k = E_v = E:
    packed in_proj_weight; otherwise separate q, k, v projection weights)."""
    e = mha.num_heads * mha.key_dim
    same = len(set(widths)) == 1
    t = torch.nn.MultiheadAttention(e, mha.num_heads, bias=mha.use_bias, batch_first=True,
                                    kdim=widths[2], vdim=widths[1], dtype=torch.float64)
    with torch.no_grad():
        kernels = [mha.query_kernel, mha.key_kernel, mha.value_kernel]
        if same:
            t.in_proj_weight.copy_(torch.tensor(np.concatenate([k.T for k in kernels])))
        else:
            for name, kernel in zip(("q", "k", "v"), kernels):
                getattr(t, f"{name}_proj_weight").copy_(torch.tensor(kernel.T))
        t.out_proj.weight.copy_(torch.tensor(mha.output_kernel.T))
        if mha.use_bias:
            t.in_proj_bias.copy_(torch.tensor(np.concatenate(
                [mha.query_bias, mha.key_bias, mha.value_bias])))
            t.out_proj.bias.copy_(torch.tensor(mha.output_bias))
    return t


def torch_grads(t, widths):
    """The twin's gradients in cdl's order and layout."""
    e = t.embed_dim
    if t._qkv_same_embed_dim:
        w = t.in_proj_weight.grad.numpy()
        kernels = [w[:e].T, w[e:2 * e].T, w[2 * e:].T]
    else:
        kernels = [getattr(t, f"{n}_proj_weight").grad.numpy().T for n in ("q", "k", "v")]
    grads = []
    for i, kernel in enumerate(kernels):
        grads.append(kernel)
        if t.in_proj_bias is not None:
            grads.append(t.in_proj_bias.grad.numpy()[i * e:(i + 1) * e])
    grads.append(t.out_proj.weight.grad.numpy().T)
    if t.out_proj.bias is not None:
        grads.append(t.out_proj.bias.grad.numpy())
    return grads


def torch_masks(torch, keywords, heads, tq, tk):
    """cdl's masks in PyTorch's conventions: bool attn_mask True = NOT
    allowed, (batch * heads, Tq, Tk) when per sample; key_padding_mask True
    = padding."""
    allowed = np.ones((tq, tk), bool)
    if keywords.get("causal"):
        allowed = np.tril(allowed)
    mask = keywords.get("attention_mask")
    if mask is not None:
        allowed = allowed & mask
    out = {}
    if mask is not None or keywords.get("causal"):
        if allowed.ndim == 3:
            allowed = np.repeat(allowed, heads, axis=0)
        out["attn_mask"] = torch.tensor(~allowed)
    if keywords.get("key_padding_mask") is not None:
        out["key_padding_mask"] = torch.tensor(~keywords["key_padding_mask"])
    return out


@pytest.mark.parametrize("form", ["self", "query_value", "query_value_key"])
@pytest.mark.parametrize("kind", ["none", "causal", "mask_2d", "mask_3d", "padding", "all"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_matches_torch_multihead_attention(torch64, form, kind, use_bias):
    torch = torch64
    heads = 2
    x = inputs_of(form, seed=1)
    xs = x if isinstance(x, list) else [x]
    if form == "self":
        widths = [E, E, E]
    else:
        widths = [xs[0].shape[-1], xs[1].shape[-1], xs[-1].shape[-1]]
    tk = xs[-1].shape[1]
    mha = layers.MultiHeadAttention(heads, E // heads, use_bias=use_bias,
                                    return_attention_scores=True, dtype="float64")
    mha._build([a.shape[1:] for a in xs] if form != "self" else x.shape[1:], "float64",
               np.random.default_rng(0))
    if use_bias:   # PyTorch starts its biases at 0; these check their gradients' layout
        for name in ("query_bias", "key_bias", "value_bias", "output_bias"):
            getattr(mha, name)[...] = np.random.default_rng(len(name)).standard_normal(
                getattr(mha, name).shape)
    keywords = masks_of(kind, TQ, tk, seed=2)
    y = mha.forward(x, **keywords)
    dy = data(y.shape, seed=3)
    dx = mha.backward(dy)
    dxs = dx if isinstance(dx, list) else [dx]

    t = torch_twin(torch, mha, widths)
    tx = [torch.tensor(a, requires_grad=True) for a in xs]
    query, value, key = (tx * 3) if form == "self" else (tx[0], tx[1], tx[-1])
    ty, weights = t(query, key, value, need_weights=True, average_attn_weights=False,
                    **torch_masks(torch, keywords, heads, TQ, tk))
    ty.backward(torch.tensor(dy))
    assert_allclose(y, ty.detach().numpy())
    assert_allclose(mha.last_attention_scores, weights.detach().numpy())
    if form == "self":
        assert_allclose(dxs[0], tx[0].grad.numpy())
    else:
        for mine, theirs in zip(dxs, tx):
            assert_allclose(mine, theirs.grad.numpy())
    for mine, theirs in zip(mha.grads, torch_grads(t, widths)):
        assert mine.shape == theirs.shape
        assert_allclose(mine, theirs, atol=1e-12)


def test_key_dim_other_than_the_width_over_the_heads():
    # No PyTorch twin (its head width is E / heads); against NumPy instead.
    mha = layers.MultiHeadAttention(3, 5, value_dim=2, output_dim=4, dtype="float64")
    q, v = inputs_of("query_value")
    y = mha([q, v])
    proj = {k: x @ getattr(mha, f"{k}_kernel") + getattr(mha, f"{k}_bias")
            for k, x in (("query", q), ("key", v), ("value", v))}
    heads = []
    for h in range(3):
        qh, kh = proj["query"][..., 5 * h:5 * h + 5], proj["key"][..., 5 * h:5 * h + 5]
        s = qh @ kh.transpose(0, 2, 1) / np.sqrt(5)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        heads.append(p @ proj["value"][..., 2 * h:2 * h + 2])
    expected = np.concatenate(heads, -1) @ mha.output_kernel + mha.output_bias
    assert_allclose(y, expected)


# --- rows with nothing to attend to --------------------------------------------------

@pytest.mark.parametrize("training", [False, True])
def test_a_row_with_nothing_to_attend_to_outputs_the_output_bias(training):
    mha = layers.MultiHeadAttention(2, 4, dropout=0.5 if training else 0.0,
                                    return_attention_scores=True, dtype="float64")
    mha._rng = np.random.default_rng(0)
    x = inputs_of("self")
    mask = np.ones((B, TQ, TQ), bool)
    mask[0, 2] = False                 # query 2 of sample 0 may see nothing
    pad = np.ones((B, TQ), bool)
    pad[1] = False                     # sample 1 is all padding
    mha(x)                             # builds; the bias made non-zero below
    mha.output_bias[...] = np.arange(E)
    y = mha.forward(x, training, attention_mask=mask, key_padding_mask=pad)
    assert np.isfinite(y).all()
    assert_allclose(y[0, 2], mha.output_bias)
    assert_allclose(y[1], np.broadcast_to(mha.output_bias, (TQ, E)))
    assert (mha.last_attention_scores[0, :, 2] == 0).all()
    assert (mha.last_attention_scores[1] == 0).all()
    dx = mha.backward(np.ones_like(y))
    assert np.isfinite(dx).all() and all(np.isfinite(g).all() for g in mha.grads)
    # Sample 1 attends to nothing: its input reaches the output through no path.
    assert (dx[1] == 0).all()


# --- checks ---------------------------------------------------------------------------

def test_masks_of_the_wrong_shape_or_dtype_are_refused_naming_them():
    mha = layers.MultiHeadAttention(2, 4, name="att")
    x = inputs_of("self").astype(np.float32)
    mha(x)
    bad = [({"attention_mask": np.ones((TQ, TQ + 1), bool)}, "attention_mask .*shape"),
           ({"attention_mask": np.ones((B + 1, TQ, TQ), bool)}, "attention_mask .*shape"),
           ({"attention_mask": np.ones((TQ,), bool)}, "attention_mask .*shape"),
           ({"attention_mask": np.ones((TQ, TQ), np.int64)}, "attention_mask .*bool.*int64"),
           ({"attention_mask": np.ones((TQ, TQ))}, "attention_mask .*bool.*float64"),
           ({"attention_mask": [[1, 0]]}, "attention_mask"),
           ({"key_padding_mask": np.ones((B, TQ + 1), bool)}, "key_padding_mask .*shape"),
           ({"key_padding_mask": np.ones((TQ, TQ), bool)}, "key_padding_mask .*shape"),
           ({"key_padding_mask": np.ones((B, TQ), np.uint8)}, "key_padding_mask .*bool"),
           ({"key_padding_mask": [[True], [True, False]]}, "key_padding_mask")]
    for keywords, message in bad:
        with pytest.raises(ValueError, match=message):
            mha(x, **keywords)
    with pytest.raises(TypeError, match="causal"):
        mha(x, causal=1)
    # A list of bools, or a Fortran-ordered mask, is a bool mask.
    mask = np.tril(np.ones((TQ, TQ), bool))
    expected = mha(x, attention_mask=mask)
    np.testing.assert_array_equal(mha(x, attention_mask=mask.tolist()), expected)
    np.testing.assert_array_equal(mha(x, attention_mask=np.asfortranarray(mask)), expected)
    np.testing.assert_array_equal(mha(x, causal=True), expected)


def test_bad_shapes_and_hyper_parameters_are_refused():
    with pytest.raises(ValueError, match="sequence of vectors"):
        layers.MultiHeadAttention(2, 4)(np.ones((2, 8)))
    with pytest.raises(ValueError, match="takes one .* or \\[query, value, key\\]"):
        layers.MultiHeadAttention(2, 4)([np.ones((2, 3, 4))] * 4)
    with pytest.raises(ValueError, match="value and the key must have one length"):
        layers.MultiHeadAttention(2, 4)([np.ones((2, 3, 4)), np.ones((2, 5, 4)),
                                         np.ones((2, 6, 4))])
    with pytest.raises(ValueError, match="different batch sizes"):
        layers.MultiHeadAttention(2, 4)([np.ones((2, 3, 4)), np.ones((3, 5, 4))])
    built = layers.MultiHeadAttention(2, 4)
    built(np.ones((2, 3, 4)))
    with pytest.raises(TypeError, match="built for one input"):
        built([np.ones((2, 3, 4)), np.ones((2, 3, 4))])
    with pytest.raises(ValueError, match=r"expected \(batch_size, 3, 4\)"):
        built(np.ones((2, 4, 4)))
    listed = layers.MultiHeadAttention(2, 4)
    listed([np.ones((2, 3, 4)), np.ones((2, 5, 4))])
    with pytest.raises(TypeError, match="list"):
        listed(np.ones((2, 3, 4)))
    for kwargs, error in [({"num_heads": 0}, ValueError), ({"key_dim": 2.5}, TypeError),
                          ({"dropout": 1.0}, ValueError), ({"causal": "yes"}, TypeError),
                          ({"value_dim": 0}, ValueError), ({"output_dim": -1}, ValueError),
                          ({"use_bias": 1}, TypeError)]:
        with pytest.raises(error):
            layers.MultiHeadAttention(**{"num_heads": 2, "key_dim": 4, **kwargs})
    with pytest.raises(RuntimeError, match="before forward"):
        layers.MultiHeadAttention(2, 4).backward(np.ones((1, 2, 3)))


def test_masks_cannot_be_given_to_a_symbolic_call():
    x = cdl.Input((5, 8))
    with pytest.raises(TypeError, match="attention_mask cannot be given"):
        layers.MultiHeadAttention(2, 4)(x, attention_mask=np.ones((5, 5), bool))
    with pytest.raises(ValueError, match="sequence of vectors"):
        layers.MultiHeadAttention(2, 4)(cdl.Input((8,)))


@pytest.mark.parametrize("form", ["self", "query_value", "query_value_key"])
def test_float32_is_kept_and_agrees_with_float64(form):
    x64 = inputs_of(form)
    x32 = [a.astype(np.float32) for a in x64] if isinstance(x64, list) else \
        x64.astype(np.float32)
    m64 = layers.MultiHeadAttention(2, 4, dtype="float64")
    m32 = layers.MultiHeadAttention(2, 4)
    y64 = m64(x64, causal=True)
    y32 = m32(x32, causal=True)
    assert m32.dtype == np.float32 and y32.dtype == np.float32
    for p32, p64 in zip(m32.params, m64.params):
        p32[...] = p64
    y32 = m32(x32, causal=True)
    dy = np.ones_like(y64)
    dx64, dx32 = m64.backward(dy), m32.backward(dy.astype(np.float32))
    assert_allclose(y32, y64, dtype=np.float32)
    for a, b in zip(dx32 if isinstance(dx32, list) else [dx32],
                    dx64 if isinstance(dx64, list) else [dx64]):
        assert a.dtype == np.float32
        assert_allclose(a, b, dtype=np.float32)
    for g32, g64 in zip(m32.grads, m64.grads):
        assert g32.dtype == np.float32
        assert_allclose(g32, g64, dtype=np.float32, atol=1e-4)


def test_the_layer_contract_in_a_sequential(dtype):
    check_layer(lambda: layers.MultiHeadAttention(2, 3, output_dim=6), (5, 4), (5, 6),
                3 * (4 * 6 + 6) + 6 * 6 + 6, dtype)


def test_attention_scores_are_kept_when_asked():
    x = inputs_of("self")
    plain = layers.MultiHeadAttention(2, 4, dtype="float64")
    plain(x)
    assert plain.last_attention_scores is None
    mha = layers.MultiHeadAttention(2, 4, return_attention_scores=True, dtype="float64")
    mha.forward(x, causal=True)
    scores = mha.last_attention_scores
    assert scores.shape == (B, 2, TQ, TQ)
    assert_allclose(scores.sum(-1), np.ones((B, 2, TQ)))
    assert (np.triu(np.ones((TQ, TQ)), 1)[None, None] * scores == 0).all()


def test_dropout_drops_weights_in_training_only_and_follows_the_seed():
    def run(seed, training):
        model = cdl.Sequential([layers.MultiHeadAttention(2, 4, dropout=0.5)],
                               input_shape=(TQ, E), seed=seed)
        return model.forward(inputs_of("self"), training=training)

    assert not np.array_equal(run(0, False), run(1, False))   # other weights
    assert np.array_equal(run(0, True), run(0, True))
    assert not np.allclose(run(0, True), run(0, False))
    # Inference with dropout set is the kernel's path, as without dropout.
    model = cdl.Sequential([layers.MultiHeadAttention(2, 4, dropout=0.5)],
                           input_shape=(TQ, E), seed=0)
    twin = cdl.Sequential([layers.MultiHeadAttention(2, 4)], input_shape=(TQ, E), seed=0)
    np.testing.assert_array_equal(model.forward(inputs_of("self")),
                                  twin.forward(inputs_of("self")))


# --- in models --------------------------------------------------------------------------

def test_every_call_form_in_a_graph_model_matches_the_layer_alone():
    q, v, k = cdl.Input((TQ, E)), cdl.Input((TK, 6)), cdl.Input((TK, 4))
    self_att = layers.MultiHeadAttention(2, 4, causal=True, name="self")
    cross2 = layers.MultiHeadAttention(2, 4, name="cross2")
    cross3 = layers.MultiHeadAttention(2, 4, name="cross3")
    h = self_att(q)
    out = layers.Add()([cross2([h, v]), cross3([h, v, k])])
    model = cdl.Model([q, v, k], out, seed=0, dtype="float64")
    assert not self_att.takes_list and cross2.takes_list and cross3.takes_list
    xs = inputs_of("query_value_key")
    expected = self_att.forward(xs[0], causal=True)
    expected = cross2.forward([expected, xs[1]]) + cross3.forward([expected, xs[1], xs[2]])
    np.testing.assert_allclose(model.forward(xs), expected, rtol=1e-12)
    errors = cdl.gradcheck(model, xs, raise_on_error=False)
    assert all(e < GRADCHECK_TOL for key, e in errors.items() if "key_bias" not in key)


def test_a_shared_attention_layer_sums_its_gradients():
    a, b = cdl.Input((TQ, E), name="a"), cdl.Input((TQ, E), name="b")
    mha = layers.MultiHeadAttention(2, 4, name="shared")
    model = cdl.Model([a, b], layers.Add()([mha(a), mha(b)]), seed=0, dtype="float64")
    errors = cdl.gradcheck(model, [inputs_of("self"), inputs_of("self", seed=5)],
                           raise_on_error=False)
    assert all(e < GRADCHECK_TOL for key, e in errors.items() if "key_bias" not in key)


@pytest.mark.parametrize("learned", [True, False])
def test_saved_and_loaded_models_compute_the_same(tmp_path, learned):
    a, b = cdl.Input((TQ, E), name="a"), cdl.Input((TK, 6), name="b")
    h = layers.PositionalEmbedding(10, learned=learned)(a)
    h = layers.MultiHeadAttention(2, 4, dropout=0.1, causal=True, value_dim=3,
                                  output_dim=5)(h)
    out = layers.MultiHeadAttention(1, 2, use_bias=False, name="cross")([h, b])
    model = cdl.Model([a, b], out, seed=0)
    seq = cdl.Sequential([layers.PositionalEmbedding(TQ, learned=learned),
                          layers.MultiHeadAttention(2, 4, dropout=0.2)],
                         input_shape=(TQ, E), seed=0)
    xs = [x.astype(np.float32) for x in inputs_of("query_value")]
    for m, x in ((model, xs), (seq, xs[0])):
        m.save(tmp_path / "m.cdl")
        loaded = cdl.load_model(tmp_path / "m.cdl")
        np.testing.assert_array_equal(loaded.forward(x), m.forward(x))
        assert [type(layer).__name__ for layer in loaded.layers] == \
            [type(layer).__name__ for layer in m.layers]
        for mine, theirs in zip(loaded.layers, m.layers):
            assert mine.get_config() == theirs.get_config()


# --- PositionalEmbedding -----------------------------------------------------------------

def test_the_sinusoids_are_the_papers():
    table = sinusoid_table(20, 7)
    for p in (0, 3, 19):
        for i in range(7):
            angle = p / 10000 ** (2 * (i // 2) / 7)
            assert table[p, i] == pytest.approx(np.sin(angle) if i % 2 == 0 else np.cos(angle),
                                                abs=1e-15)


@pytest.mark.parametrize("learned", [True, False])
def test_positional_embedding_adds_its_table(learned, dtype):
    layer = layers.PositionalEmbedding(9, learned=learned, name="pos")
    x = random_array((3, 4, 6), dtype)
    y = layer(x)
    assert y.dtype == dtype
    table = layer.embeddings[:4] if learned else sinusoid_table(4, 6)
    assert_allclose(y, x + table.astype(dtype), dtype=dtype)
    assert layer.count_params() == (9 * 6 if learned else 0)
    dy = random_array(y.shape, dtype, seed=1)
    np.testing.assert_array_equal(layer.backward(dy), dy)
    if learned:
        assert_allclose(layer.embeddings_grad[:4], dy.sum(0), dtype=dtype)
        assert (layer.embeddings_grad[4:] == 0).all()


@pytest.mark.parametrize("learned", [True, False])
def test_gradcheck_of_positional_embedding(learned):
    errors = cdl.gradcheck(layers.PositionalEmbedding(6, learned=learned, name="pos"),
                           random_array((2, 4, 3)))
    assert set(errors) == ({"input", "pos.embeddings"} if learned else {"input"})


def test_the_learned_table_starts_glorot_uniform():
    model = cdl.Sequential([layers.PositionalEmbedding(400)], input_shape=(5, 100), seed=0)
    table = model.layers[0].embeddings
    limit = np.sqrt(6 / (400 + 100))
    assert np.abs(table).max() <= limit and np.abs(table).max() > 0.95 * limit


def test_sequences_longer_than_max_length_are_refused():
    with pytest.raises(ValueError, match="max_length=4 time steps, got sequences of 5"):
        layers.PositionalEmbedding(4)(np.ones((1, 5, 2)))
    with pytest.raises(ValueError, match="max_length=4"):
        layers.PositionalEmbedding(4, learned=False)(cdl.Input((5, 2)))
    with pytest.raises(ValueError, match="sequences of vectors"):
        layers.PositionalEmbedding(4)(np.ones((1, 4)))
    with pytest.raises(ValueError):
        layers.PositionalEmbedding(0)
    with pytest.raises(TypeError):
        layers.PositionalEmbedding(4, learned="no")
