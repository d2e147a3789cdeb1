"""Rotary position embedding in MultiHeadAttention (``rope=True``) and the
Transformer blocks.

Finite-difference gradient checks of every call form with masks and
dropout; parity of outputs and every gradient with a plain-torch autograd
reference of the "rotate half" convention (GPT-NeoX / Hugging Face Llama)
to 1e-10 in float64; the relative-position property; the tables; saving;
models (a causal character language model); refused settings.
"""
import math

import numpy as np
import pytest

import cdl
from cdl import layers
from cdl.layers.attention import rope_tables, rotate
from helpers import GRADCHECK_TOL, assert_allclose

B, TQ, TK, E = 2, 5, 7, 8
FORMS = ["self", "query_value", "query_value_key"]


def data(*shapes, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    return arrays if len(arrays) > 1 else arrays[0]


def inputs_of(form, seed=0):
    q, v, k = data((B, TQ, E), (B, TK, 6), (B, TK, 4), seed=seed)
    return {"self": q, "query_value": [q, v], "query_value_key": [q, v, k]}[form]


def masks_of(kind, tq, tk, seed=0):
    """Keyword masks of a kind; every query keeps at least one key."""
    rng = np.random.default_rng(seed)
    if kind == "none":
        return {}
    if kind == "causal":
        return {"causal": True}
    if kind == "mask":
        m = rng.random((B, tq, tk)) < 0.6
        m[:, :, 0] = True
        return {"attention_mask": m}
    if kind == "padding":
        m = np.ones((B, tk), bool)
        m[0, -2:] = False
        m[1, 3:] = False
        return {"key_padding_mask": m}
    if kind == "all":
        m = rng.random((tq, tk)) < 0.7
        m[:, 0] = True
        pad = np.ones((B, tk), bool)
        pad[1, -1] = False
        return {"attention_mask": m, "key_padding_mask": pad, "causal": True}
    raise KeyError(kind)


class Masked(layers.Layer):
    """Calls ``inner`` with fixed keywords, so that gradcheck sees the masks."""

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


def gradcheck(layer, x, training=False, **keywords):
    """Every parameter and input: with rope the key bias turns with the
    position, so unlike plain attention its gradient is not 0. The key bias
    of a decoder's cross-attention (not rotated) has gradient 0, whose finite
    differences are rounding noise: it is checked to be 0 instead."""
    wrapped = Masked(layer, **keywords)
    wrapped.forward(x, training)
    errors = cdl.gradcheck(wrapped, x, training=training, raise_on_error=False)
    unrotated = "cross_attention.key_bias"
    assert errors and all(e < GRADCHECK_TOL for key, e in errors.items()
                          if not key.endswith(unrotated)), errors
    for owner, name in layer.weight_owners():
        if owner.name.endswith("cross_attention") and name == "key_bias":
            assert np.abs(owner.key_bias_grad).max() < 1e-12
    return errors


# --- the tables and the rotation -----------------------------------------------------------

def test_the_tables_are_roformers_angles():
    cos, sin = rope_tables(6, 8, base=100.0)
    angle = np.arange(6)[:, None] * 100.0 ** (-np.arange(0, 8, 2) / 8)[None, :]
    np.testing.assert_array_equal(cos, np.cos(angle))
    np.testing.assert_array_equal(sin, np.sin(angle))
    assert rope_tables(3, 4, dtype=np.float32)[0].dtype == np.float32


def test_the_rotation_keeps_norms_and_its_inverse_undoes_it():
    x = data((3, 6, 8), seed=4)
    tables = rope_tables(6, 8)
    y = rotate(x.copy(), *tables)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1))
    np.testing.assert_allclose(rotate(y.copy(), *tables, inverse=True), x, atol=1e-14)
    np.testing.assert_array_equal(y[:, 0], x[:, 0])    # position 0 is not turned


def test_scores_depend_on_the_positions_difference_only():
    # The same query and key vectors at positions (p, p') and (p + s, p' + s).
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal(8), rng.standard_normal(8)
    cos, sin = rope_tables(12, 8)

    def at(vector, position):
        blocks = np.zeros((1, 12, 8))
        blocks[0, position] = vector
        return rotate(blocks, cos, sin)[0, position]

    for p, p2, shift in ((3, 1, 4), (0, 5, 6), (7, 7, 2)):
        assert math.isclose(at(q, p) @ at(k, p2), at(q, p + shift) @ at(k, p2 + shift),
                            rel_tol=1e-12)


def test_tables_are_cached_per_length_and_dtype_and_are_not_weights():
    plain = layers.MultiHeadAttention(2, 4, name="plain", dtype="float64")
    mha = layers.MultiHeadAttention(2, 4, rope=True, name="rope", dtype="float64")
    x = data((B, TQ, E))
    plain(x)
    mha(x)
    assert [p.shape for p in mha.params] == [p.shape for p in plain.params]
    assert [name for _, name in mha.weight_owners()] == \
        [name for _, name in plain.weight_owners()]
    assert mha.buffers() == {}
    first = mha._rope(TQ)
    mha(x)
    assert mha._rope(TQ) is first
    assert mha._rope(TQ + 1) is not first


# --- gradients ----------------------------------------------------------------------------

@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", ["none", "causal", "mask", "padding", "all"])
def test_gradcheck_of_every_call_form_and_mask(form, kind):
    tk = TQ if form == "self" else TK
    mha = layers.MultiHeadAttention(2, 4, value_dim=3, output_dim=5, rope=True, name="mha",
                                    dtype="float64")
    errors = gradcheck(mha, inputs_of(form), **masks_of(kind, TQ, tk))
    assert {"mha.query_kernel", "mha.key_bias", "mha.output_bias"} <= set(errors)


def test_gradcheck_of_the_dropout_path_and_without_biases():
    mha = layers.MultiHeadAttention(2, 4, dropout=0.3, rope=True, rope_base=50.0,
                                    name="mha", dtype="float64")
    mha._rng = np.random.default_rng(3)
    gradcheck(mha, inputs_of("query_value"), training=True, **masks_of("all", TQ, TK))
    bare = layers.MultiHeadAttention(1, 6, use_bias=False, rope=True, name="bare",
                                     dtype="float64")
    gradcheck(bare, inputs_of("self"), causal=True)


@pytest.mark.parametrize("block", ["encoder", "decoder"])
def test_gradcheck_of_the_transformer_blocks_with_rope(block):
    if block == "encoder":
        layer = layers.TransformerEncoder(2, dim_feedforward=6, dropout=0.0, rope=True,
                                          name="block", dtype="float64")
        x = inputs_of("self")
    else:
        layer = layers.TransformerDecoder(2, dim_feedforward=6, dropout=0.0, rope=True,
                                          norm_first=True, name="block", dtype="float64")
        x = [inputs_of("self"), data((B, TK, 6), seed=7)]
    gradcheck(layer, x, **({"key_padding_mask": masks_of("padding", TQ, TQ)[
        "key_padding_mask"][:, :TQ]} if block == "encoder" else {}))
    assert layer.self_attention.rope
    if block == "decoder":
        assert not layer.cross_attention.rope


# --- PyTorch parity -------------------------------------------------------------------------

def torch_rope_attention(torch, mha, xs, form, keywords):
    """The attention in plain torch ops, rotary embedding as GPT-NeoX / Hugging
    Face Llama write it (``q * cos + rotate_half(q) * sin``, tables of the
    angles repeated twice). Returns the output, the inputs and the weights
    (leaves with gradients)."""
    names = [name for _, name in mha.weight_owners()]
    w = {name: torch.tensor(getattr(mha, name), requires_grad=True) for name in names}
    tx = [torch.tensor(a, requires_grad=True) for a in xs]
    query = tx[0]
    value = tx[0] if form == "self" else tx[1]
    key = tx[0] if form == "self" else tx[-1]
    h, kd, vd = mha.num_heads, mha.key_dim, mha.value_dim

    def project(x, kind, width):
        y = x @ w[f"{kind}_kernel"]
        if mha.use_bias:
            y = y + w[f"{kind}_bias"]
        return y.reshape(x.shape[0], x.shape[1], h, width).transpose(1, 2)

    def rotate_half(x):
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    def apply_rope(x):
        inv_freq = 1.0 / (mha.rope_base ** (torch.arange(0, kd, 2, dtype=torch.float64) / kd))
        freqs = torch.outer(torch.arange(x.shape[2], dtype=torch.float64), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return x * emb.cos() + rotate_half(x) * emb.sin()

    q = apply_rope(project(query, "query", kd))
    k = apply_rope(project(key, "key", kd))
    v = project(value, "value", vd)
    tq, tk = q.shape[2], k.shape[2]
    allowed = torch.ones((xs[0].shape[0], 1, tq, tk), dtype=torch.bool)
    if "attention_mask" in keywords:
        m = torch.tensor(keywords["attention_mask"])
        allowed = allowed & (m[:, None] if m.ndim == 3 else m)
    if "key_padding_mask" in keywords:
        allowed = allowed & torch.tensor(keywords["key_padding_mask"])[:, None, None, :]
    if keywords.get("causal", mha.causal):
        allowed = allowed & torch.ones((tq, tk), dtype=torch.bool).tril()
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(kd)
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    heads = (weights @ v).transpose(1, 2).reshape(xs[0].shape[0], tq, h * vd)
    y = heads @ w["output_kernel"]
    if mha.use_bias:
        y = y + w["output_bias"]
    return y, weights, tx, [w[name] for name in names]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", ["none", "causal", "mask", "padding", "all"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_matches_a_torch_rotate_half_reference(torch64, form, kind, use_bias):
    torch = torch64
    x = inputs_of(form, seed=1)
    xs = x if isinstance(x, list) else [x]
    tk = xs[-1].shape[1]
    mha = layers.MultiHeadAttention(2, 6, value_dim=3, output_dim=5, use_bias=use_bias,
                                    rope=True, rope_base=500.0, return_attention_scores=True,
                                    dtype="float64")
    mha._build([a.shape[1:] for a in xs] if form != "self" else x.shape[1:], "float64",
               np.random.default_rng(0))
    if use_bias:
        for name in ("query_bias", "key_bias", "value_bias", "output_bias"):
            getattr(mha, name)[...] = np.random.default_rng(len(name)).standard_normal(
                getattr(mha, name).shape)
    keywords = masks_of(kind, TQ, tk, seed=2)
    y = mha.forward(x, **keywords)
    dy = data(y.shape, seed=3)
    dx = mha.backward(dy)
    dxs = dx if isinstance(dx, list) else [dx]

    ty, weights, tx, tw = torch_rope_attention(torch, mha, xs, form, keywords)
    ty.backward(torch.tensor(dy))
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(mha.last_attention_scores, weights.detach().numpy(), **tol)
    for mine, theirs in zip(dxs, tx):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), **tol)
    assert len(mha.grads) == len(tw)
    for mine, theirs in zip(mha.grads, tw):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), **tol)


def test_rope_changes_the_output_and_position_zero_alone_is_not_turned():
    def pair(x):
        plain = layers.MultiHeadAttention(2, 4, dtype="float64")
        rope = layers.MultiHeadAttention(2, 4, rope=True, dtype="float64")
        plain(x)
        rope(x)
        for a, b in zip(plain.params, rope.params):
            b[...] = a
        return plain(x), rope(x)

    one = data((B, 1, E))
    np.testing.assert_array_equal(*pair(one))          # one step: position 0
    plain, rope = pair(data((B, TQ, E)))
    np.testing.assert_array_equal(plain.shape, rope.shape)
    assert not np.allclose(plain, rope)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_agrees_with_float64(dtype):
    x = inputs_of("query_value")
    ref = layers.MultiHeadAttention(2, 4, rope=True, dtype="float64")
    ref(x)
    mha = layers.MultiHeadAttention(2, 4, rope=True, dtype=dtype)
    mha([a.astype(dtype) for a in x])
    for a, b in zip(ref.params, mha.params):
        b[...] = a
    y = mha([a.astype(dtype) for a in x], causal=True)
    assert y.dtype == dtype
    assert_allclose(y, ref(x, causal=True), dtype=dtype)
    assert mha._rope(TQ)[0].dtype == dtype


# --- settings, saving, models -------------------------------------------------------------------

def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="key_dim must be even, got 3"):
        layers.MultiHeadAttention(2, 3, rope=True)
    with pytest.raises(ValueError, match="rope_base"):
        layers.MultiHeadAttention(2, 4, rope=True, rope_base=0.0)
    with pytest.raises((TypeError, ValueError), match="rope"):
        layers.MultiHeadAttention(2, 4, rope="yes")
    with pytest.raises((TypeError, ValueError), match="rope_base"):
        layers.MultiHeadAttention(2, 4, rope=True, rope_base="big")
    # An odd key_dim is fine without rope.
    layers.MultiHeadAttention(2, 3)
    block = layers.TransformerEncoder(2, dim_feedforward=4, rope=True)
    with pytest.raises(ValueError, match="even head width"):
        cdl.Sequential([block], input_shape=(TQ, 6))
    with pytest.raises((TypeError, ValueError), match="rope"):
        layers.TransformerDecoder(2, rope=1.5)


def test_config_round_trip():
    mha = layers.MultiHeadAttention(2, 4, rope=True, rope_base=123.0)
    config = mha.get_config()
    assert config["rope"] is True and config["rope_base"] == 123.0
    clone = layers.MultiHeadAttention.from_config(config)
    assert clone.get_config() == config and clone.rope and clone.rope_base == 123.0
    assert layers.MultiHeadAttention(2, 4).get_config()["rope"] is False
    for cls in (layers.TransformerEncoder, layers.TransformerDecoder):
        block = cls(2, dim_feedforward=8, rope=True)
        twin = cls.from_config(block.get_config())
        assert twin.rope and twin.self_attention.rope


def test_saved_and_loaded_models_compute_the_same(tmp_path):
    a, b = cdl.Input((TQ, E), name="a"), cdl.Input((TK, 6), name="b")
    h = layers.MultiHeadAttention(2, 4, causal=True, rope=True, rope_base=300.0)(a)
    h = layers.TransformerEncoder(2, dim_feedforward=8, rope=True)(h)
    out = layers.MultiHeadAttention(1, 2, rope=True, name="cross")([h, b])
    model = cdl.Model([a, b], out, seed=0)
    seq = cdl.Sequential([layers.MultiHeadAttention(2, 4, rope=True),
                          layers.TransformerEncoder(2, 8, rope=True, causal=True)],
                         input_shape=(TQ, E), seed=0)
    xs = [x.astype(np.float32) for x in inputs_of("query_value")]
    for m, x in ((model, xs), (seq, xs[0])):
        m.save(tmp_path / "m.cdl")
        loaded = cdl.load_model(tmp_path / "m.cdl")
        np.testing.assert_array_equal(loaded.forward(x), m.forward(x))
        for mine, theirs in zip(loaded.layers, m.layers):
            assert mine.get_config() == theirs.get_config()


def test_a_causal_character_language_model_with_rope_learns():
    # Next-character prediction of a periodic text: no position table, the
    # order reaches the model through the rotation alone.
    text = "abcdeabcdeabcde" * 20
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text])
    steps = 10
    starts = np.arange(0, len(ids) - steps - 1, 3)
    x = np.stack([ids[s:s + steps] for s in starts]).astype(np.float64)
    y = np.stack([ids[s + 1:s + steps + 1] for s in starts])
    model = cdl.Sequential([
        layers.Embedding(len(vocab), 16),
        layers.MultiHeadAttention(2, 8, causal=True, rope=True),
        layers.Dense(len(vocab))], input_shape=(steps,), seed=0)
    model.compile(optimizer=cdl.optimizers.Adam(0.02),
                  loss=cdl.losses.CrossEntropy())
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    # Causal: changing the last character changes no earlier prediction.
    changed = x[:3].copy()
    changed[:, -1] = (changed[:, -1] + 1) % len(vocab)
    before, after = model.forward(x[:3]), model.forward(changed)
    np.testing.assert_array_equal(before[:, :-1], after[:, :-1])
    assert not np.allclose(before[:, -1], after[:, -1])


def test_flops_count_the_rotations():
    plain = layers.MultiHeadAttention(2, 4)
    rope = layers.MultiHeadAttention(2, 4, rope=True)
    shapes = [(TQ, E), (TK, 6)]
    assert rope.flops_per_sample(shapes) - plain.flops_per_sample(shapes) == \
        3 * (TQ + TK) * 2 * 4


def test_a_free_time_axis_takes_tables_for_every_length():
    free = cdl.Sequential([layers.MultiHeadAttention(2, 4, rope=True, causal=True),
                           layers.TransformerEncoder(2, 8, rope=True)],
                          input_shape=(None, E), seed=0, dtype="float64")
    for steps in (3, 7):
        fixed = cdl.Sequential([layers.MultiHeadAttention(2, 4, rope=True, causal=True),
                                layers.TransformerEncoder(2, 8, rope=True)],
                               input_shape=(steps, E), seed=1, dtype="float64")
        fixed.param_buffer[...] = free.param_buffer
        x = data((B, steps, E), seed=steps)
        np.testing.assert_array_equal(free.forward(x), fixed.forward(x))
    assert sorted(length for length, _ in free.layers[0]._rope_tables) == [3, 7]
