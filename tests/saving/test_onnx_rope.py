"""cdl.onnx on attention with rotary position embedding (rope=True): the
rotation exported with Slice, Mul, Sub, Add and Concat and constant tables,
run in ONNX Runtime and compared with model.predict, in every call form and
inside the Transformer blocks."""
import numpy as np
import pytest

import cdl
import cdl.onnx
from cdl import layers

from test_onnx_attention import DTYPES, graph_model, randomise
from test_onnx_graph import TOLERANCE, assert_agrees, data, onnx, session

pytestmark = pytest.mark.skipif(
    onnx is None,
    reason='onnx and onnxruntime are optional extras of cdl, not installed here: '
           'pip install "cdl[onnx]"')

CASES = [
    ("self", dict(num_heads=2, key_dim=4), [(6, 8)]),
    ("causal_self", dict(num_heads=2, key_dim=6, causal=True, rope_base=100.0), [(6, 8)]),
    ("query_value", dict(num_heads=2, key_dim=4, value_dim=3), [(5, 8), (7, 6)]),
    ("query_value_key", dict(num_heads=3, key_dim=2, use_bias=False),
     [(5, 8), (7, 6), (7, 4)]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs, shapes", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rope_attention_agrees_in_a_graph(kwargs, shapes, dtype, tmp_path):
    names = ["query", "value", "key"][:len(shapes)]
    inputs = [cdl.Input(shape=s, name=n) for s, n in zip(shapes, names)]
    mha = layers.MultiHeadAttention(rope=True, **kwargs)
    model = graph_model(inputs, mha(inputs if len(inputs) > 1 else inputs[0]), dtype)
    assert_agrees(model, [data((4,) + s, dtype, seed=i) for i, s in enumerate(shapes)],
                  tmp_path / "model.onnx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_transformer_blocks_agree(dtype, tmp_path):
    target, memory = cdl.Input((5, 8), name="target"), cdl.Input((6, 8), name="memory")
    encoded = layers.TransformerEncoder(2, dim_feedforward=12, rope=True)(memory)
    decoded = layers.TransformerDecoder(2, dim_feedforward=12, rope=True,
                                        norm_first=True)([target, encoded])
    model = graph_model([target, memory], decoded, dtype)
    assert_agrees(model, [data((3, 5, 8), dtype, seed=0), data((3, 6, 8), dtype, seed=1)],
                  tmp_path / "model.onnx")


def test_rope_graph_uses_plain_ops_and_constant_tables(tmp_path):
    model = randomise(cdl.Sequential([layers.MultiHeadAttention(2, 4, rope=True)],
                                     input_shape=(6, 8), seed=0))
    proto = cdl.onnx.to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    ops = {node.op_type for node in proto.graph.node}
    assert {"Slice", "Concat", "Mul", "Sub", "Add", "Softmax"} <= ops
    assert [i.name for i in proto.graph.input] == ["input"]
    x = data((2, 6, 8), "float32", seed=5)
    got = session(model, tmp_path / "model.onnx").run(["output"], {"input": x})[0]
    np.testing.assert_allclose(got, model.predict(x), **TOLERANCE["float32"])
    plain = randomise(cdl.Sequential([layers.MultiHeadAttention(2, 4)],
                                     input_shape=(6, 8), seed=0))
    assert not np.allclose(plain.predict(x), got, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_on_a_dynamic_sequence_axis_computes_its_tables_at_run_time(dtype, tmp_path):
    from test_onnx_dynamic import load, rebuilt

    model = randomise(cdl.Sequential([
        layers.MultiHeadAttention(2, 4, rope=True, rope_base=50.0),
        layers.TransformerEncoder(2, 12, rope=True, causal=True)],
        input_shape=(6, 8), seed=0, dtype=dtype))
    sess = load(model, tmp_path / "m.onnx", dynamic_sequence=True)
    for steps in (1, 6, 11):
        x = data((3, steps, 8), dtype, seed=steps)
        np.testing.assert_allclose(sess.run(None, {"input": x})[0],
                                   rebuilt(model, steps).predict(x), **TOLERANCE[dtype])


def test_rope_with_a_padding_mask_agrees(tmp_path):
    model = randomise(cdl.Sequential([
        layers.Embedding(12, 8, mask_zero=True),
        layers.TransformerEncoder(2, 12, rope=True)], input_shape=(6,), seed=0))
    tokens = np.array([[3, 4, 5, 0, 0, 0], [1, 2, 3, 4, 5, 6]], dtype=np.float32)
    got = session(model, tmp_path / "m.onnx").run(["output"], {"input": tokens})[0]
    np.testing.assert_allclose(got, model.predict(tokens), **TOLERANCE["float32"])
