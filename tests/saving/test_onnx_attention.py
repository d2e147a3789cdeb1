"""cdl.onnx on the attention layers and Transformer blocks: MultiHeadAttention
in its three call forms, PositionalEmbedding, TransformerEncoder and
TransformerDecoder, run in ONNX Runtime and compared with model.predict."""
import numpy as np
import pytest

import cdl
import cdl.onnx
from cdl import layers

from test_onnx_graph import TOLERANCE, assert_agrees, data, onnx, run, session

pytestmark = pytest.mark.skipif(
    onnx is None,
    reason='onnx and onnxruntime are optional extras of cdl, not installed here: '
           'pip install "cdl[onnx]"')

DTYPES = ["float32", "float64"]


def randomise(model, seed=1):
    """Every weight drawn afresh, biases included (they start at 0, which
    would hide a bias left out of the graph), LayerNorm scales away from 1."""
    rng = np.random.default_rng(seed)
    for p in model.params:
        p[...] = rng.uniform(-0.6, 0.6, p.shape)
    for layer in layers.iter_layers(model.layers):
        if isinstance(layer, layers.LayerNorm):
            layer.gamma[...] = rng.uniform(0.5, 1.5, layer.gamma.shape)
    return model


def graph_model(inputs, output, dtype):
    return randomise(cdl.Model(inputs, output, seed=0, dtype=dtype))


# --- MultiHeadAttention -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_self_attention_in_a_sequential_agrees_for_any_batch_size(dtype, causal, tmp_path):
    model = randomise(cdl.Sequential([layers.Dense(12),
                                      layers.MultiHeadAttention(3, 4, causal=causal)],
                                     input_shape=(9, 5), seed=0, dtype=dtype))
    path = tmp_path / "model.onnx"
    sess = session(model, path)
    for n in (1, 4, 17):
        x = data((n, 9, 5), dtype, seed=n)
        got = sess.run(["output"], {"input": x})[0]
        want = model.predict(x)
        assert got.shape == want.shape == (n, 9, 12) and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, **TOLERANCE[dtype])


#: (id, MultiHeadAttention keywords, per-sample input shapes: one, [query, value]
#: or [query, value, key]).
ATTENTION_CASES = [
    ("self_graph", dict(num_heads=2, key_dim=3), [(6, 8)]),
    ("query_value", dict(num_heads=2, key_dim=4), [(5, 8), (7, 6)]),
    ("query_value_key", dict(num_heads=3, key_dim=2), [(5, 8), (7, 6), (7, 4)]),
    ("causal_self", dict(num_heads=2, key_dim=4, causal=True), [(6, 8)]),
    ("causal_longer_keys", dict(num_heads=2, key_dim=3, causal=True), [(4, 8), (7, 5)]),
    ("causal_shorter_keys", dict(num_heads=2, key_dim=3, causal=True), [(7, 8), (3, 5)]),
    ("output_dim", dict(num_heads=2, key_dim=4, output_dim=3), [(5, 8), (7, 6)]),
    ("value_dim", dict(num_heads=2, key_dim=3, value_dim=5), [(5, 8), (7, 6), (7, 4)]),
    ("no_bias", dict(num_heads=4, key_dim=2, use_bias=False), [(5, 8), (7, 6)]),
    ("one_head", dict(num_heads=1, key_dim=8, value_dim=2, output_dim=5), [(6, 8)]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs, shapes", [c[1:] for c in ATTENTION_CASES],
                         ids=[c[0] for c in ATTENTION_CASES])
def test_attention_call_forms_agree_in_a_graph(kwargs, shapes, dtype, tmp_path):
    names = ["query", "value", "key"][:len(shapes)]
    inputs = [cdl.Input(shape=s, name=n) for s, n in zip(shapes, names)]
    mha = layers.MultiHeadAttention(**kwargs)
    output = mha(inputs if len(inputs) > 1 else inputs[0])
    model = graph_model(inputs, {"attended": output}, dtype)
    sess = assert_agrees(model, [data((5,) + s, dtype, seed=i) for i, s in enumerate(shapes)],
                         tmp_path / "model.onnx")
    for n in (1, 8):
        xs = [data((n,) + s, dtype, seed=10 + i) for i, s in enumerate(shapes)]
        np.testing.assert_allclose(run(sess, model, xs)[0], model.predict(
            xs if len(xs) > 1 else xs[0]), **TOLERANCE[dtype])


def test_attention_graph_is_made_of_matmul_and_softmax_at_the_opset(tmp_path):
    q, v = cdl.Input((5, 8), name="q"), cdl.Input((7, 6), name="v")
    model = graph_model([q, v], layers.MultiHeadAttention(2, 4, causal=True)([q, v]),
                        "float32")
    proto = cdl.onnx.to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("Softmax") == 1 and "MatMul" in ops
    assert [o.version for o in proto.opset_import] == [cdl.onnx.OPSET]
    # The causal mask is a constant, not an input.
    assert [i.name for i in proto.graph.input] == ["q", "v"]


def test_large_scores_keep_the_softmax_finite(tmp_path):
    # Scores of several hundred: a softmax without its maximum subtracted
    # would overflow in float32.
    model = cdl.Sequential([layers.MultiHeadAttention(2, 4, causal=True)],
                           input_shape=(6, 8), seed=0)
    for p in model.params:
        p[...] = np.random.default_rng(2).uniform(-1.5, 1.5, p.shape)
    x = data((3, 6, 8), "float32", seed=3, scale=20.0)
    got = session(model, tmp_path / "model.onnx").run(["output"], {"input": x})[0]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-5, atol=1e-4)


def test_a_shared_attention_layer_is_stored_once(tmp_path):
    a, b = cdl.Input((5, 8), name="a"), cdl.Input((5, 8), name="b")
    shared = layers.MultiHeadAttention(2, 4, name="shared")
    model = graph_model([a, b], layers.Add()([shared(a), shared(b)]), "float32")
    proto = cdl.onnx.to_onnx(model)
    kernels = [t.name for t in proto.graph.initializer
               if np.array_equal(onnx.numpy_helper.to_array(t), shared.query_kernel)]
    assert len(kernels) == 1
    assert len([node for node in proto.graph.node if kernels[0] in node.input]) == 2
    assert_agrees(model, [data((4, 5, 8), "float32", seed=0),
                          data((4, 5, 8), "float32", seed=1)], tmp_path / "model.onnx")


def test_masks_given_to_forward_are_not_part_of_the_graph(tmp_path):
    # A model's predict sees no mask, and neither does its graph: the two
    # agree, and differ from a masked forward.
    model = randomise(cdl.Sequential([layers.MultiHeadAttention(2, 4)],
                                     input_shape=(6, 8), seed=0))
    x = data((2, 6, 8), "float32", seed=0)
    got = session(model, tmp_path / "model.onnx").run(["output"], {"input": x})[0]
    np.testing.assert_allclose(got, model.predict(x), **TOLERANCE["float32"])
    masked = model.layers[0](x, key_padding_mask=np.arange(6) < np.array([[3], [6]]))
    assert not np.allclose(got[0], masked[0], rtol=1e-3, atol=1e-3)


# --- PositionalEmbedding ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("learned", [True, False], ids=["learned", "sinusoidal"])
def test_positional_embedding_agrees_below_its_max_length(learned, dtype, tmp_path):
    model = randomise(cdl.Sequential([layers.PositionalEmbedding(20, learned=learned)],
                                     input_shape=(7, 6), seed=0, dtype=dtype))
    x = data((3, 7, 6), dtype, seed=0)
    sess = session(model, tmp_path / "model.onnx")
    np.testing.assert_allclose(sess.run(["output"], {"input": x})[0], model.predict(x),
                               **TOLERANCE[dtype])
    if learned:
        # The whole table is stored once, as the layer's weight.
        tables = [t for t in cdl.onnx.to_onnx(model).graph.initializer
                  if tuple(t.dims) == (20, 6)]
        assert len(tables) == 1


# --- Transformer blocks -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_encoder_agrees(norm_first, activation, dtype, tmp_path):
    model = randomise(cdl.Sequential(
        [layers.TransformerEncoder(4, dim_feedforward=24, activation=activation,
                                   norm_first=norm_first, layer_norm_eps=1e-3)],
        input_shape=(7, 8), seed=0, dtype=dtype))
    sess = session(model, tmp_path / "model.onnx")   # float64 gelu: Erf may be missing
    for n in (1, 5):
        x = data((n, 7, 8), dtype, seed=n)
        np.testing.assert_allclose(sess.run(["output"], {"input": x})[0], model.predict(x),
                                   **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_causal_encoder_agrees_in_a_graph(norm_first, dtype, tmp_path):
    x = cdl.Input((9, 8), name="tokens")
    encoded = layers.TransformerEncoder(2, dim_feedforward=16, causal=True,
                                        norm_first=norm_first)(x)
    model = graph_model(x, {"next": layers.Dense(5)(encoded)}, dtype)
    assert_agrees(model, [data((4, 9, 8), dtype, seed=0)], tmp_path / "model.onnx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_decoder_on_an_encoded_memory_agrees(norm_first, dtype, tmp_path):
    target, memory = cdl.Input((6, 8), name="target"), cdl.Input((9, 4), name="memory")
    encoded = layers.TransformerEncoder(2, dim_feedforward=16, norm_first=norm_first)(
        layers.Dense(8)(memory))
    decoded = layers.TransformerDecoder(2, dim_feedforward=16, norm_first=norm_first)(
        [target, encoded])
    model = graph_model([target, memory], {"decoded": layers.Dense(3)(decoded)}, dtype)
    for n in (1, 6):
        xs = [data((n, 6, 8), dtype, seed=n), data((n, 9, 4), dtype, seed=100 + n)]
        assert_agrees(model, xs, tmp_path / f"model{n}.onnx")


def test_decoder_with_a_memory_of_another_width_and_full_self_attention(tmp_path):
    target, memory = cdl.Input((5, 6), name="target"), cdl.Input((8, 10), name="memory")
    decoded = layers.TransformerDecoder(3, dim_feedforward=12, causal=False,
                                        activation="gelu")([target, memory])
    model = graph_model([target, memory], decoded, "float32")
    assert_agrees(model, [data((3, 5, 6), "float32", seed=0),
                          data((3, 8, 10), "float32", seed=1)], tmp_path / "model.onnx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("learned", [True, False], ids=["learned", "sinusoidal"])
def test_text_classifier_agrees_for_any_batch_size(learned, dtype, tmp_path):
    model = cdl.Sequential([
        layers.Embedding(50, 16),
        layers.PositionalEmbedding(max_length=24, learned=learned),
        layers.TransformerEncoder(num_heads=4, dim_feedforward=32),
        layers.GlobalAvgPool1D(),
        layers.Dense(3)], input_shape=(12,), seed=0, dtype=dtype)
    randomise(model)
    sess = session(model, tmp_path / "model.onnx")
    for n in (1, 3, 32):
        ids = np.random.default_rng(n).integers(0, 50, (n, 12)).astype(dtype)
        got = sess.run(["output"], {"input": ids})[0]
        want = model.predict(ids)
        assert got.shape == want.shape == (n, 3) and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, **TOLERANCE[dtype])


def test_the_attention_layers_are_exportable():
    for cls in (layers.MultiHeadAttention, layers.PositionalEmbedding,
                layers.TransformerEncoder, layers.TransformerDecoder):
        assert cls in cdl.onnx.exportable_layers()
        assert cls.__name__ not in cdl.onnx.NOT_EXPORTABLE
