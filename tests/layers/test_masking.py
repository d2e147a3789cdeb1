"""Padding masks carried through models: ``Embedding(mask_zero=True)``.

A padded batch gives exactly the outputs and weight gradients of its
sequences run one at a time without padding (Sequential and graph models,
shared layers included); finite-difference checks of the masked model and
of the masked global poolings; PyTorch parity of an encoder with
``src_key_padding_mask``; where a mask passes and where it stops; masks
after saving and loading.
"""
import numpy as np
import pytest

import cdl
from cdl import layers
from helpers import GRADCHECK_TOL, assert_allclose

VOCAB, D, HEADS, FF, T = 12, 8, 2, 16, 6
SEQUENCES = [[3, 4, 5], [7, 1, 2, 9, 4, 6], [11], [2, 8, 8, 10]]


def padded(sequences, length=T):
    x = np.zeros((len(sequences), length))
    for i, s in enumerate(sequences):
        x[i, :len(s)] = s
    return x


def randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    for p in model.params:
        p[...] = 0.3 * rng.standard_normal(p.shape)


def copy_weights(source, target):
    for mine, theirs in zip(target.params, source.params):
        mine[...] = theirs


def classifier(length, pool=layers.GlobalAvgPool1D):
    return cdl.Sequential([
        layers.Embedding(VOCAB, D, mask_zero=True),
        layers.PositionalEmbedding(T),
        layers.TransformerEncoder(HEADS, FF, dropout=0.0),
        pool(),
        layers.Dense(3)], input_shape=(length,), seed=0, dtype="float64")


def weight_gradients(model, x, r):
    model.forward(x)
    model.backward(r)
    return [g.copy() for g in model.grads]


@pytest.mark.parametrize("pool", [layers.GlobalAvgPool1D, layers.GlobalMaxPool1D])
def test_a_padded_batch_computes_what_its_sequences_compute_alone(pool):
    model = classifier(T, pool)
    randomise(model)
    x = padded(SEQUENCES)
    r = np.random.default_rng(1).standard_normal((len(SEQUENCES), 3))
    y = model.forward(x)
    grads = weight_gradients(model, x, r)
    total = [np.zeros_like(g) for g in grads]
    for i, s in enumerate(SEQUENCES):
        alone = classifier(len(s), pool)
        alone.build((len(s),))
        copy_weights(model, alone)
        assert_allclose(alone.forward(np.array([s], float))[0], y[i], atol=1e-12)
        for t, g in zip(total, weight_gradients(alone, np.array([s], float), r[i:i + 1])):
            t += g
    for index, (mine, theirs) in enumerate(zip(grads, total)):
        assert_allclose(mine, theirs, atol=1e-12, err_msg=f"weight {index}")
    assert np.all(grads[0][0] == 0)   # the padding row gets no gradient


def test_finite_differences_of_the_masked_model():
    model = classifier(T)
    randomise(model)
    errors = cdl.gradcheck(model, padded(SEQUENCES), raise_on_error=False)
    assert len(errors) > 10
    assert_small(errors)


def assert_small(errors):
    for key, error in errors.items():
        # The key bias adds one constant to a query's scores: its gradient
        # is zero, and its estimate rounding noise (as in test_attention).
        if not key.startswith("input") and not key.endswith("key_bias"):
            assert error < GRADCHECK_TOL, (key, error)


def graph(length):
    """Two sequences through a shared embedding and a shared encoder (each
    call with its own mask), merged after pooling, and a merge of two
    branches of one sequence (equal masks pass on)."""
    a, b = cdl.Input((length,), name="a"), cdl.Input((length,), name="b")
    embed = layers.Embedding(VOCAB, D, mask_zero=True, name="embed")
    encoder = layers.TransformerEncoder(HEADS, FF, dropout=0.0, name="encoder")
    ea = embed(a)
    ea = layers.Add(name="add")([layers.Dense(D, name="left")(ea),
                                 layers.Dense(D, name="right")(ea)])
    pa = layers.GlobalAvgPool1D(name="pool_a")(encoder(ea))
    pb = layers.GlobalMaxPool1D(name="pool_b")(encoder(embed(b)))
    out = layers.Dense(2, name="out")(layers.Concatenate(name="cat")([pa, pb]))
    return cdl.Model([a, b], out, seed=0, dtype="float64")


def test_a_graph_with_shared_layers_carries_each_calls_mask():
    model = graph(T)
    randomise(model, seed=3)
    first = SEQUENCES
    second = [[5, 6], [1], [9, 9, 9, 2, 3], [4, 10, 11]]
    x = [padded(first), padded(second)]
    r = np.random.default_rng(2).standard_normal((len(first), 2))
    y = model.forward(x)
    grads = weight_gradients(model, x, r)
    total = [np.zeros_like(g) for g in grads]
    for i, (s, u) in enumerate(zip(first, second)):
        # The shared layers take one length: the shorter sequence of the
        # pair is padded to the longer's, which its mask keeps out.
        length = max(len(s), len(u))
        alone = graph(length)
        copy_weights(model, alone)
        xi = [padded([s], length), padded([u], length)]
        assert_allclose(alone.forward(xi)[0], y[i], atol=1e-12)
        for t, g in zip(total, weight_gradients(alone, xi, r[i:i + 1])):
            t += g
    for mine, theirs in zip(grads, total):
        assert_allclose(mine, theirs, atol=1e-12)
    assert_small(cdl.gradcheck(model, x, raise_on_error=False))


def test_the_encoder_matches_torch_with_a_key_padding_mask(torch64):
    torch = torch64
    from test_transformer import attention_grads, copy_attention, copy_rest, rest_grads
    model = cdl.Sequential([layers.Embedding(VOCAB, D, mask_zero=True),
                            layers.TransformerEncoder(HEADS, FF, dropout=0.0)],
                           input_shape=(T,), seed=0, dtype="float64")
    randomise(model, seed=5)
    embed, enc = model.layers
    for i in (1, 2):   # copy_rest sets the norms' own values
        getattr(enc, f"norm{i}").gamma[...] = 1
    theirs = torch.nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True,
                                              dtype=torch.float64)
    copy_attention(torch, enc.self_attention, theirs.self_attn)
    copy_rest(torch, enc, theirs, 2)
    x = padded(SEQUENCES)
    y = model.forward(x)
    dy = np.random.default_rng(6).standard_normal(y.shape)
    model.backward(dy)
    tx = torch.tensor(embed.embeddings[x.astype(int)], requires_grad=True)
    ty = theirs(tx, src_key_padding_mask=torch.tensor(x == 0))
    ty.backward(torch.tensor(dy))
    assert_allclose(y, ty.detach().numpy())
    expected = attention_grads(theirs.self_attn) + rest_grads(theirs, 2)
    for mine, their in zip(enc.grads, expected):
        assert_allclose(mine, their, atol=1e-12)
    table = np.zeros_like(embed.embeddings)
    np.add.at(table, x.astype(int), tx.grad.numpy())
    assert_allclose(embed.embeddings_grad, table, atol=1e-12)


@pytest.mark.parametrize("cls", [layers.GlobalAvgPool1D, layers.GlobalMaxPool1D])
@pytest.mark.parametrize("keepdims", [False, True])
def test_masked_global_pooling_gradcheck(cls, keepdims):
    x = np.random.default_rng(0).standard_normal((3, 5, 4))
    mask = np.ones((3, 5), bool)
    mask[0, 3:] = False
    mask[2, 1:] = False
    pool = cls(keepdims=keepdims, dtype="float64")
    pool.input_mask = mask
    errors = cdl.gradcheck(pool, x, raise_on_error=False)
    assert max(errors.values()) < GRADCHECK_TOL, errors
    y = pool(x).reshape(3, 4)
    reduce = np.mean if cls is layers.GlobalAvgPool1D else np.max
    for i in range(3):
        assert_allclose(y[i], reduce(x[i][mask[i]], axis=0))


@pytest.mark.parametrize("cls", [layers.GlobalAvgPool1D, layers.GlobalMaxPool1D])
def test_a_row_of_padding_only_pools_to_zero_without_gradient(cls):
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    pool = cls(dtype="float64")
    pool.input_mask = np.array([[True, False, True, False], [False] * 4])
    y = pool.forward(x)
    assert np.all(y[1] == 0) and np.all(np.isfinite(y))
    dx = pool.backward(np.ones_like(y))
    assert np.all(dx[1] == 0) and np.all(dx[0][[1, 3]] == 0)


@pytest.mark.parametrize("mask", [np.ones((2, 3), bool), np.ones((2, 4)), [[True] * 4] * 2])
def test_a_pooling_mask_that_does_not_fit_is_refused(mask):
    pool = layers.GlobalAvgPool1D()
    pool.input_mask = mask
    with pytest.raises(ValueError, match="padding mask of"):
        pool.forward(np.ones((2, 4, 3), np.float32))


class Probe(layers.Layer):
    """The identity, recording the mask it was given."""

    supports_masking = True

    def forward(self, x, training=False):
        self.seen = self.input_mask
        return self._check_input(x)

    def backward(self, grad):
        return grad


def test_a_mask_passes_layers_that_keep_the_time_axis_and_stops_at_others():
    probes = [Probe(), Probe(), Probe()]
    model = cdl.Sequential([layers.Embedding(VOCAB, D, mask_zero=True), probes[0],
                            layers.Dense(D, activation="relu"), layers.Dropout(0.5),
                            layers.LayerNorm(), probes[1], layers.Flatten(), probes[2]],
                           input_shape=(T,), seed=0)
    x = padded(SEQUENCES)
    model.forward(x, training=True)
    np.testing.assert_array_equal(probes[0].seen, x != 0)
    np.testing.assert_array_equal(probes[1].seen, x != 0)
    assert probes[2].seen is None
    assert all(p.input_mask is None for p in probes)   # reset after the call
    # Without mask_zero, no layer sees a mask.
    plain = cdl.Sequential([layers.Embedding(VOCAB, D), Probe()], input_shape=(T,), seed=0)
    plain.forward(x)
    assert plain.layers[1].seen is None


def test_merged_masks_pass_when_equal_and_are_anded_otherwise():
    from cdl.layers.base import merge_masks
    a = np.array([[True, True, False]])
    b = np.array([[True, False, False]])
    assert merge_masks([None, None]) is None
    assert merge_masks([a, None, a.copy()]) is a
    np.testing.assert_array_equal(merge_masks([a, b]), a & b)
    x, y = cdl.Input((3,), name="x"), cdl.Input((3,), name="y")
    ex = layers.Embedding(VOCAB, D, mask_zero=True)(x)
    ey = layers.Embedding(VOCAB, D, mask_zero=True)(y)
    probe = Probe()
    model = cdl.Model([x, y], probe(layers.Add()([ex, ey])), seed=0)
    model.forward([np.array([[1, 2, 0]]), np.array([[1, 0, 0]])])
    np.testing.assert_array_equal(probe.seen, [[True, False, False]])


def test_masks_survive_saving_and_loading(tmp_path):
    model = classifier(T)
    model.compile("adam", "mse")
    x = padded(SEQUENCES)
    model.fit(x, np.zeros((len(SEQUENCES), 3)), epochs=1, verbose=0)
    assert model.layers[0].get_config()["mask_zero"] is True
    assert "mask_zero" not in layers.Embedding(3, 2).get_config()
    model.save(tmp_path / "m.cdl")
    loaded = cdl.load_model(tmp_path / "m.cdl")
    assert loaded.layers[0].mask_zero
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    # The loaded model masks: the padding row's vector changes nothing.
    before = loaded.forward(x)
    loaded.layers[0].embeddings[0] += 1
    assert_allclose(loaded.forward(x), before, atol=1e-12)


def test_the_decoder_masks_the_target_and_the_memory_from_their_embeddings():
    t_in, m_in = cdl.Input((T,), name="target"), cdl.Input((T - 1,), name="memory")
    target = layers.Embedding(VOCAB, D, mask_zero=True, name="t_embed")(t_in)
    memory = layers.Embedding(VOCAB, D, mask_zero=True, name="m_embed")(m_in)
    decoder = layers.TransformerDecoder(HEADS, FF, dropout=0.0, causal=False, name="dec")
    pooled = layers.GlobalAvgPool1D(name="pool")(decoder([target, memory]))
    model = cdl.Model([t_in, m_in], pooled, seed=0, dtype="float64")
    randomise(model, seed=7)
    x = [padded(SEQUENCES), padded([[1, 2], [3], [4, 5, 6, 7, 8], [9]], T - 1)]
    y = model.forward(x)
    t_embed, m_embed = model.get_layer("t_embed"), model.get_layer("m_embed")
    h = decoder.forward([t_embed.embeddings[x[0].astype(int)],
                         m_embed.embeddings[x[1].astype(int)]],
                        key_padding_mask=x[0] != 0, memory_key_padding_mask=x[1] != 0)
    pool = layers.GlobalAvgPool1D(dtype="float64")
    pool.input_mask = x[0] != 0
    assert_allclose(y, pool.forward(h), atol=1e-12)
    assert_small(cdl.gradcheck(model, x, raise_on_error=False))


def test_a_key_padding_mask_given_as_a_keyword_wins_over_the_carried_one():
    enc = layers.TransformerEncoder(HEADS, FF, dropout=0.0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 4, D))
    given = np.array([[True, True, False, False], [True] * 4])
    expected = enc.forward(x, key_padding_mask=given)
    enc.input_mask = np.ones((2, 4), bool)
    assert_allclose(enc.forward(x, key_padding_mask=given), expected, atol=0)
    assert_allclose(enc.forward(x), enc.forward(x, key_padding_mask=np.ones((2, 4), bool)),
                    atol=0)
