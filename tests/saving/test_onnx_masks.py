"""cdl.onnx on models carrying the padding mask of Embedding(mask_zero=True):
the mask is computed in the graph and reaches attention (its keys), the
Transformer blocks and global 1-D pooling, as in model.predict, which the
graphs are compared with in ONNX Runtime on padded batches."""
import numpy as np
import pytest

import cdl
import cdl.onnx
from cdl import layers

from test_onnx_attention import randomise
from test_onnx_graph import TOLERANCE, assert_agrees, onnx, session

pytestmark = pytest.mark.skipif(
    onnx is None,
    reason='onnx and onnxruntime are optional extras of cdl, not installed here: '
           'pip install "cdl[onnx]"')

DTYPES = ["float32", "float64"]
VOCABULARY = 30


def tokens(n, steps, seed, dtype="float32"):
    """Token ids padded with 0: trailing padding of every length, a row of
    padding only, and padding between real tokens."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCABULARY, (n, steps))
    for i in range(n):
        ids[i, steps - (i % (steps + 1)):] = 0
    if n > 2:
        ids[2, 1] = 0             # padding between real tokens
    return ids.astype(dtype)


def assert_sequential_agrees(model, ids, path):
    sess = session(model, path)
    got = sess.run(["output"], {"input": ids})[0]
    want = model.predict(ids)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, **TOLERANCE[model.dtype.name])


def embedded(*rest, dtype="float32", steps=6):
    return randomise(cdl.Sequential(
        [layers.Embedding(VOCABULARY, 8, mask_zero=True), *rest],
        input_shape=(steps,), seed=0, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_ignores_padded_keys(causal, dtype, tmp_path):
    model = embedded(layers.Dense(8), layers.MultiHeadAttention(2, 4, causal=causal),
                     layers.LayerNorm(), dtype=dtype)
    assert_sequential_agrees(model, tokens(8, 6, seed=1, dtype=dtype), tmp_path / "m.onnx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool", [layers.GlobalAvgPool1D, layers.GlobalMaxPool1D])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_reads_real_steps_only(pool, keepdims, dtype, tmp_path):
    model = embedded(layers.Dense(5, activation="tanh"), pool(keepdims=keepdims),
                     layers.Dense(3), dtype=dtype)
    assert_sequential_agrees(model, tokens(8, 6, seed=2, dtype=dtype), tmp_path / "m.onnx")


@pytest.mark.parametrize("norm_first", [False, True])
def test_a_transformer_encoder_classifier(norm_first, tmp_path):
    model = embedded(layers.PositionalEmbedding(6),
                     layers.TransformerEncoder(2, 16, norm_first=norm_first),
                     layers.TransformerEncoder(2, 16, norm_first=norm_first, causal=True),
                     layers.GlobalAvgPool1D(), layers.Dense(3))
    assert_sequential_agrees(model, tokens(8, 6, seed=3), tmp_path / "m.onnx")


def test_a_transformer_decoder_reads_the_target_and_memory_masks(tmp_path):
    source = cdl.Input(shape=(7,), name="source", dtype="int64")
    target = cdl.Input(shape=(5,), name="target", dtype="int64")
    memory = layers.TransformerEncoder(2, 16)(
        layers.Embedding(VOCABULARY, 8, mask_zero=True)(source))
    h = layers.TransformerDecoder(2, 16, causal=True)(
        [layers.Embedding(VOCABULARY, 8, mask_zero=True)(target), memory])
    model = randomise(cdl.Model([source, target], {"logits": layers.Dense(4)(h)}, seed=0))
    assert_agrees(model, [tokens(6, 7, seed=4).astype(np.int64),
                          tokens(6, 5, seed=5).astype(np.int64)], tmp_path / "m.onnx")


def test_cross_attention_masks_the_keys_input_and_merges_carry_the_and(tmp_path):
    a, b = cdl.Input(shape=(6,), name="a"), cdl.Input(shape=(6,), name="b")
    c = cdl.Input(shape=(6, 3), name="c")
    ea = layers.Embedding(VOCABULARY, 8, mask_zero=True)(a)
    eb = layers.Embedding(VOCABULARY, 8, mask_zero=True)(b)
    merged = layers.Add()([ea, eb])                  # the AND of both masks
    # The keys are masked, the query (no mask) is not: the output has no mask
    # until it is added to ea's.
    crossed = layers.MultiHeadAttention(2, 4)([layers.Dense(8)(c), merged])
    pooled = layers.GlobalAvgPool1D()(layers.Add()([crossed, ea]))
    model = randomise(cdl.Model([a, b, c], layers.Dense(2, name="out")(pooled), seed=0))
    x = np.random.default_rng(0).standard_normal((7, 6, 3)).astype("float32")
    assert_agrees(model, [tokens(7, 6, seed=6), tokens(7, 6, seed=7)[::-1].copy(), x],
                  tmp_path / "m.onnx")


def test_without_padding_the_masked_graph_agrees_with_an_unmasked_model(tmp_path):
    model = embedded(layers.MultiHeadAttention(2, 4), layers.GlobalMaxPool1D())
    ids = np.random.default_rng(0).integers(1, VOCABULARY, (4, 6)).astype("float32")
    assert_sequential_agrees(model, ids, tmp_path / "m.onnx")


def test_the_graph_computes_the_mask_once_from_the_ids():
    model = embedded(layers.MultiHeadAttention(2, 4), layers.GlobalAvgPool1D())
    ops = [node.op_type for node in cdl.onnx.to_onnx(model).graph.node]
    assert ops.count("Equal") == 1 and "Not" in ops
