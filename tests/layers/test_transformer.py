"""TransformerEncoder and TransformerDecoder.

Finite-difference gradient checks and parity with PyTorch's
``TransformerEncoderLayer``/``TransformerDecoderLayer`` (outputs and every
gradient, masks, pre- and post-norm, ReLU and GELU) to 1e-10 in float64;
the blocks as composites (sublayers, weight order, the model's flat
buffer); bad inputs; training in a Sequential and in a graph; saving.
"""
import numpy as np
import pytest

import cdl
from cdl import layers, optimizers
from helpers import GRADCHECK_TOL, assert_allclose

from test_attention import Masked

B, T, S, D, HEADS, FF = 2, 5, 6, 8, 2, 12


def data(*shapes, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    return arrays if len(arrays) > 1 else arrays[0]


def padding(length, seed=0):
    m = np.ones((B, length), bool)
    m[1, -2:] = False
    return m


def check_gradients(block, x, **keywords):
    wrapped = Masked(block, **keywords)
    wrapped.forward(x)
    errors = cdl.gradcheck(wrapped, x, raise_on_error=False)
    for key, error in errors.items():
        if not key.endswith("key_bias"):   # zero: see test_attention.gradcheck_attention
            assert error < GRADCHECK_TOL, (key, error)
    return errors


# --- gradients -------------------------------------------------------------------

@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("masked", [False, True])
def test_gradcheck_of_the_encoder(norm_first, activation, masked):
    enc = layers.TransformerEncoder(HEADS, FF, dropout=0.0, activation=activation,
                                    norm_first=norm_first, name="enc", dtype="float64")
    keywords = {"key_padding_mask": padding(T), "causal": True} if masked else {}
    errors = check_gradients(enc, data((B, T, D)), **keywords)
    assert len(errors) == 1 + 16


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_gradcheck_of_the_decoder(norm_first, activation):
    dec = layers.TransformerDecoder(HEADS, FF, dropout=0.0, activation=activation,
                                    norm_first=norm_first, name="dec", dtype="float64")
    errors = check_gradients(dec, data((B, T, D), (B, S, 4)),
                             memory_key_padding_mask=padding(S), key_padding_mask=padding(T))
    assert len(errors) == 2 + 26


def test_gradcheck_of_the_dropout_path_of_a_block():
    enc = layers.TransformerEncoder(HEADS, FF, dropout=0.3, name="enc", dtype="float64")
    enc._rng = np.random.default_rng(0)
    wrapped = Masked(enc)
    x = data((B, T, D))
    wrapped.forward(x, True)
    errors = cdl.gradcheck(wrapped, x, training=True, raise_on_error=False)
    assert all(e < GRADCHECK_TOL for key, e in errors.items() if "key_bias" not in key)


# --- PyTorch parity -----------------------------------------------------------------

def copy_attention(torch, mine, theirs):
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.tensor(np.concatenate(
            [mine.query_kernel.T, mine.key_kernel.T, mine.value_kernel.T])))
        theirs.in_proj_bias.copy_(torch.tensor(np.concatenate(
            [mine.query_bias, mine.key_bias, mine.value_bias])))
        theirs.out_proj.weight.copy_(torch.tensor(mine.output_kernel.T))
        theirs.out_proj.bias.copy_(torch.tensor(mine.output_bias))


def attention_grads(theirs):
    w, b = theirs.in_proj_weight.grad.numpy(), theirs.in_proj_bias.grad.numpy()
    d = theirs.embed_dim
    out = []
    for i in range(3):
        out += [w[i * d:(i + 1) * d].T, b[i * d:(i + 1) * d]]
    return out + [theirs.out_proj.weight.grad.numpy().T, theirs.out_proj.bias.grad.numpy()]


def copy_rest(torch, block, theirs, norms):
    with torch.no_grad():
        theirs.linear1.weight.copy_(torch.tensor(block.dense1.kernel.T))
        theirs.linear1.bias.copy_(torch.tensor(block.dense1.bias))
        theirs.linear2.weight.copy_(torch.tensor(block.dense2.kernel.T))
        theirs.linear2.bias.copy_(torch.tensor(block.dense2.bias))
        for i in range(1, norms + 1):
            # Not PyTorch's ones and zeros, so that a swapped norm shows.
            mine = getattr(block, f"norm{i}")
            mine.gamma[...] = 1 + 0.1 * data(mine.gamma.shape, seed=10 + i)
            mine.beta[...] = 0.1 * data(mine.beta.shape, seed=20 + i)
            getattr(theirs, f"norm{i}").weight.copy_(torch.tensor(mine.gamma))
            getattr(theirs, f"norm{i}").bias.copy_(torch.tensor(mine.beta))


def rest_grads(theirs, norms):
    grads = [theirs.linear1.weight.grad.numpy().T, theirs.linear1.bias.grad.numpy(),
             theirs.linear2.weight.grad.numpy().T, theirs.linear2.bias.grad.numpy()]
    for i in range(1, norms + 1):
        norm = getattr(theirs, f"norm{i}")
        grads += [norm.weight.grad.numpy(), norm.bias.grad.numpy()]
    return grads


def randomise_biases(block):
    for owner, name in block.weight_owners():
        if name.endswith("bias"):
            getattr(owner, name)[...] = 0.1 * data(getattr(owner, name).shape,
                                                   seed=len(owner.name) + len(name))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("masks", ["none", "padding", "causal", "mask"])
def test_the_encoder_matches_torch(torch64, norm_first, activation, masks):
    torch = torch64
    enc = layers.TransformerEncoder(HEADS, FF, dropout=0.0, activation=activation,
                                    norm_first=norm_first, dtype="float64")
    x = data((B, T, D), seed=1)
    enc(x)
    randomise_biases(enc)
    theirs = torch.nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0,
                                              activation=activation, batch_first=True,
                                              norm_first=norm_first, dtype=torch.float64)
    copy_attention(torch, enc.self_attention, theirs.self_attn)
    copy_rest(torch, enc, theirs, 2)
    keywords, torch_keywords = {}, {}
    if masks == "padding":
        keywords["key_padding_mask"] = padding(T)
        torch_keywords["src_key_padding_mask"] = torch.tensor(~padding(T))
    elif masks == "causal":
        keywords["causal"] = True
        torch_keywords["src_mask"] = torch.nn.Transformer.generate_square_subsequent_mask(
            T, dtype=torch.float64)
        torch_keywords["is_causal"] = True
    elif masks == "mask":
        allowed = np.random.default_rng(4).random((T, T)) < 0.6
        allowed[:, 0] = True
        keywords["attention_mask"] = allowed
        torch_keywords["src_mask"] = torch.tensor(~allowed)
    y = enc.forward(x, **keywords)
    dy = data(y.shape, seed=2)
    dx = enc.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx, **torch_keywords)
    ty.backward(torch.tensor(dy))
    assert_allclose(y, ty.detach().numpy())
    assert_allclose(dx, tx.grad.numpy())
    expected = attention_grads(theirs.self_attn) + rest_grads(theirs, 2)
    assert len(enc.grads) == len(expected) == 16
    for mine, their in zip(enc.grads, expected):
        assert mine.shape == their.shape
        assert_allclose(mine, their, atol=1e-12)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("masked", [False, True])
def test_the_decoder_matches_torch(torch64, norm_first, activation, masked):
    torch = torch64
    dec = layers.TransformerDecoder(HEADS, FF, dropout=0.0, activation=activation,
                                    norm_first=norm_first, dtype="float64")
    target, memory = data((B, T, D), (B, S, D), seed=1)
    dec([target, memory])
    randomise_biases(dec)
    theirs = torch.nn.TransformerDecoderLayer(D, HEADS, FF, dropout=0.0,
                                              activation=activation, batch_first=True,
                                              norm_first=norm_first, dtype=torch.float64)
    copy_attention(torch, dec.self_attention, theirs.self_attn)
    copy_attention(torch, dec.cross_attention, theirs.multihead_attn)
    copy_rest(torch, dec, theirs, 3)
    keywords = {}
    torch_keywords = {"tgt_mask": torch.tensor(~np.tril(np.ones((T, T), bool))),
                      "tgt_is_causal": True}
    if masked:
        allowed = np.random.default_rng(5).random((T, S)) < 0.6
        allowed[:, 1] = True
        keywords = {"key_padding_mask": padding(T), "memory_mask": allowed,
                    "memory_key_padding_mask": padding(S)}
        torch_keywords.update(tgt_key_padding_mask=torch.tensor(~padding(T)),
                              memory_mask=torch.tensor(~allowed),
                              memory_key_padding_mask=torch.tensor(~padding(S)))
    y = dec.forward([target, memory], **keywords)
    dy = data(y.shape, seed=2)
    dtarget, dmemory = dec.backward(dy)
    tt = torch.tensor(target, requires_grad=True)
    tm = torch.tensor(memory, requires_grad=True)
    ty = theirs(tt, tm, **torch_keywords)
    ty.backward(torch.tensor(dy))
    assert_allclose(y, ty.detach().numpy())
    assert_allclose(dtarget, tt.grad.numpy())
    assert_allclose(dmemory, tm.grad.numpy())
    expected = (attention_grads(theirs.self_attn) + attention_grads(theirs.multihead_attn)
                + rest_grads(theirs, 3))
    assert len(dec.grads) == len(expected) == 26
    for mine, their in zip(dec.grads, expected):
        assert mine.shape == their.shape
        assert_allclose(mine, their, atol=1e-12)


# --- the blocks as layers made of layers --------------------------------------------

def test_the_encoder_lists_its_sublayers_and_weights_in_order():
    enc = layers.TransformerEncoder(HEADS, FF, name="enc")
    assert [layer.name for layer in enc.sublayers()] == [
        "enc_self_attention", "enc_dropout1", "enc_norm1", "enc_dense1", "enc_dropout",
        "enc_dense2", "enc_dropout2", "enc_norm2"]
    model = cdl.Sequential([enc], input_shape=(T, D), seed=0)
    names = [f"{owner.name}.{name}" for owner, name in enc.weight_owners()]
    assert names == [f"enc_self_attention.{k}_{w}" for k in ("query", "key", "value", "output")
                     for w in ("kernel", "bias")] + [
        "enc_dense1.kernel", "enc_dense1.bias", "enc_dense2.kernel", "enc_dense2.bias",
        "enc_norm1.gamma", "enc_norm1.beta", "enc_norm2.gamma", "enc_norm2.beta"]
    shapes = [p.shape for p in enc.params]
    assert shapes[8:] == [(D, FF), (FF,), (FF, D), (D,), (D,), (D,), (D,), (D,)]
    assert shapes[0] == shapes[2] == shapes[4] == shapes[6] == (D, D)
    # Every weight is a view of the model's flat buffer, in this order.
    assert model.count_params() == sum(p.size for p in enc.params)
    offset = 0
    for p in model.params:
        assert np.shares_memory(p, model.param_buffer)
        assert p.__array_interface__["data"][0] == \
            model.param_buffer.__array_interface__["data"][0] + offset * p.itemsize
        offset += p.size
    assert [layer.name for layer in layers.iter_layers(enc)][1:] == \
        [layer.name for layer in enc.sublayers()]


def test_the_decoder_lists_its_weights_in_order():
    dec = layers.TransformerDecoder(HEADS, FF, name="dec")
    dec([data((1, T, D)), data((1, S, 4))])
    owners = [owner.name for owner, _ in dec.weight_owners()]
    assert owners == ["dec_self_attention"] * 8 + ["dec_cross_attention"] * 8 + [
        "dec_dense1"] * 2 + ["dec_dense2"] * 2 + ["dec_norm1", "dec_norm1", "dec_norm2",
                                                  "dec_norm2", "dec_norm3", "dec_norm3"]
    assert dec.cross_attention.key_kernel.shape == (4, D)
    assert dec.self_attention.causal and not dec.cross_attention.causal


@pytest.mark.parametrize("cls", [layers.TransformerEncoder, layers.TransformerDecoder])
def test_a_block_rebuilt_from_its_config_computes_the_same(cls, dtype):
    # (The shared layer contract's sum(y) objective is degenerate here: the
    # sum of a layer normalisation's outputs does not depend on its input.)
    block = cls(HEADS, FF, dropout=0.25, activation="gelu", norm_first=True,
                layer_norm_eps=1e-6, causal=cls is layers.TransformerEncoder, dtype=dtype)
    x = data((B, T, D), dtype=dtype) if cls is layers.TransformerEncoder else \
        data((B, T, D), (B, S, 4), dtype=dtype)
    y = block(x)
    twin = cls.from_config(block.get_config())
    assert twin.get_config() == block.get_config()
    twin.dtype = np.dtype(dtype)
    twin.forward(x)
    for mine, theirs in zip(twin.params, block.params):
        mine[...] = theirs
    np.testing.assert_array_equal(twin.forward(x), y)
    n = 4 * (D * D + D) + (D * FF + FF) + (FF * D + D) + 4 * D
    if cls is layers.TransformerDecoder:
        n += 2 * (D * D + D) + 2 * (4 * D + D) + 2 * D
    assert block.count_params() == n and block.output_shape == (T, D)


def test_dropout_follows_the_models_seed_and_predict_mc_reaches_it():
    def model(seed):
        return cdl.Sequential([layers.TransformerEncoder(HEADS, FF, dropout=0.5)],
                              input_shape=(T, D), seed=seed)

    x = data((B, T, D))
    a, b = model(0), model(0)
    np.testing.assert_array_equal(a.forward(x, training=True), b.forward(x, training=True))
    assert not np.allclose(a.forward(x, training=True), a.forward(x))
    from cdl import tuning
    _, std = tuning.predict_mc(a, x, mc_samples=4, seed=0)
    assert (std > 0).any()


def test_float32_is_kept():
    enc = layers.TransformerEncoder(HEADS, FF)
    y = enc(data((B, T, D), dtype=np.float32))
    assert y.dtype == np.float32 and all(p.dtype == np.float32 for p in enc.params)
    dec = layers.TransformerDecoder(HEADS, FF)
    y = dec([data((B, T, D), dtype=np.float32), data((B, S, D), dtype=np.float32)])
    assert y.dtype == np.float32
    dt, dm = dec.backward(np.ones_like(y))
    assert dt.dtype == dm.dtype == np.float32


# --- checks ---------------------------------------------------------------------------

def test_bad_inputs_and_hyper_parameters_are_refused():
    with pytest.raises(ValueError, match=r"d_model = 10\) must be divisible by num_heads = 4"):
        layers.TransformerEncoder(4, FF)(np.ones((1, 3, 10)))
    with pytest.raises(ValueError, match="must be divisible"):
        layers.TransformerEncoder(4, FF)(cdl.Input((3, 10)))
    with pytest.raises(ValueError, match="target's width .* divisible"):
        layers.TransformerDecoder(3, FF)([np.ones((1, 3, 4)), np.ones((1, 3, 4))])
    with pytest.raises(ValueError, match="sequence of vectors"):
        layers.TransformerEncoder(2, FF)(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"takes \[target, memory\]"):
        layers.TransformerDecoder(2, FF)([np.ones((1, 3, 4))] * 3)
    with pytest.raises(TypeError, match="list"):
        layers.TransformerDecoder(2, FF)(np.ones((1, 3, 4)))
    enc = layers.TransformerEncoder(2, FF, name="enc")
    enc(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="attention_mask .*shape"):
        enc(np.ones((2, 3, 4)), attention_mask=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="key_padding_mask .*bool"):
        enc(np.ones((2, 3, 4)), key_padding_mask=np.ones((2, 3)))
    dec = layers.TransformerDecoder(2, FF)
    dec([np.ones((2, 3, 4)), np.ones((2, 5, 4))])
    with pytest.raises(ValueError, match="attention_mask .*shape .*expected \\(3, 5\\)"):
        dec([np.ones((2, 3, 4)), np.ones((2, 5, 4))], memory_mask=np.ones((3, 3), bool))
    for kwargs, error in [({"activation": "tanh"}, ValueError), ({"activation": None}, TypeError),
                          ({"dropout": -0.1}, ValueError), ({"norm_first": 1}, TypeError),
                          ({"layer_norm_eps": 0.0}, ValueError),
                          ({"dim_feedforward": 0}, ValueError), ({"num_heads": 1.5}, TypeError)]:
        with pytest.raises(error):
            layers.TransformerEncoder(**{"num_heads": 2, **kwargs})
    with pytest.raises(TypeError, match="cannot be given"):
        layers.TransformerEncoder(2)(cdl.Input((3, 4)), causal=True)


def test_rows_with_nothing_to_attend_to_stay_finite():
    enc = layers.TransformerEncoder(2, FF, dtype="float64")
    pad = np.zeros((B, T), bool)
    pad[0, :2] = True
    y = enc.forward(data((B, T, D)), key_padding_mask=pad)
    assert np.isfinite(y).all()
    assert np.isfinite(enc.backward(np.ones_like(y))).all()


# --- training and saving -----------------------------------------------------------------

def test_a_sequential_encoder_classifier_learns():
    # Does token 1 occur more often than token 2 in the sequence?
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(512, 12))
    y = ((x == 1).sum(1) > (x == 2).sum(1)).astype(np.int64)
    model = cdl.Sequential([
        layers.Embedding(6, 16),
        layers.PositionalEmbedding(12),
        layers.TransformerEncoder(4, 32, dropout=0.0),
        layers.GlobalAvgPool1D(),
        layers.Dense(2)], input_shape=(12,), seed=0)
    model.compile(optimizers.Adam(lr=3e-3), "cross_entropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0).history
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert history["accuracy"][-1] > 0.8


def test_a_graph_with_a_decoder_learns():
    # Target step t is to read memory step t: cross-attention must find it.
    rng = np.random.default_rng(1)
    memory = rng.standard_normal((256, 6, 8)).astype(np.float32)
    target = rng.standard_normal((256, 6, 8)).astype(np.float32)
    answer = memory[:, :, :1].copy()
    t_in = cdl.Input((6, 8), name="target")
    m_in = cdl.Input((6, 8), name="memory")
    h = layers.PositionalEmbedding(6, learned=False)(t_in)
    m = layers.PositionalEmbedding(6, learned=False)(m_in)
    h = layers.TransformerDecoder(2, 32, dropout=0.0, causal=False, norm_first=True)([h, m])
    model = cdl.Model([t_in, m_in], layers.Dense(1)(h), seed=0)
    model.compile(optimizers.Adam(lr=1e-2), "mse")
    history = model.fit({"target": target, "memory": memory}, answer, epochs=20,
                        batch_size=32, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]


def test_saved_and_loaded_blocks_compute_the_same(tmp_path):
    seq = cdl.Sequential([layers.PositionalEmbedding(T, learned=False),
                          layers.TransformerEncoder(HEADS, FF, norm_first=True,
                                                    activation="gelu", causal=True)],
                         input_shape=(T, D), seed=0)
    t_in, m_in = cdl.Input((T, D), name="target"), cdl.Input((S, 4), name="memory")
    enc = layers.TransformerEncoder(HEADS, 16, name="enc")(layers.Dense(D)(m_in))
    out = layers.TransformerDecoder(HEADS, FF, dropout=0.2, name="dec")([t_in, enc])
    graph = cdl.Model([t_in, m_in], out, seed=0)
    target, memory = data((B, T, D), (B, S, 4), dtype=np.float32)
    for model, x in ((seq, target), (graph, [target, memory])):
        model.compile("adam", "mse")
        model.fit(x, np.zeros((B, T, D), np.float32), epochs=1, verbose=0)
        model.save(tmp_path / "m.cdl")
        loaded = cdl.load_model(tmp_path / "m.cdl")
        np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
        np.testing.assert_array_equal(loaded.param_buffer, model.param_buffer)
        for mine, theirs in zip(loaded.layers, model.layers):
            assert mine.get_config() == theirs.get_config()
        # Training goes on from the same state.
        loaded.fit(x, np.zeros((B, T, D), np.float32), epochs=1, verbose=0)
        model.fit(x, np.zeros((B, T, D), np.float32), epochs=1, verbose=0)
        np.testing.assert_array_equal(loaded.param_buffer, model.param_buffer)
