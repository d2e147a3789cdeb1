"""cdl.onnx's dynamic axes: a symbolic or fixed batch axis, and a sequence
axis of any length (dynamic_sequence, PyTorch's dynamic_axes), checked in
ONNX Runtime with batches and lengths other than the export's."""
import numpy as np
import pytest

import cdl
import cdl.onnx
from cdl import layers

from test_onnx_attention import randomise
from test_onnx_graph import TOLERANCE, data, onnx, onnxruntime

pytestmark = pytest.mark.skipif(
    onnx is None,
    reason='onnx and onnxruntime are optional extras of cdl, not installed here: '
           'pip install "cdl[onnx]"')


def load(model, path, **options):
    cdl.onnx.export(model, path, **options)
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def dims(value_info):
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
            for d in value_info.type.tensor_type.shape.dim]


def rebuilt(model, steps, input_shape=None):
    """The same layers and weights, built for sequences of ``steps``: what
    model.predict computes at that length (cdl models have fixed lengths)."""
    config_layers = [type(l).from_config(l.get_config()) for l in model.layers]
    shape = input_shape or (steps,) + tuple(model.input_shape[1:])
    other = cdl.Sequential(config_layers, input_shape=shape, seed=0, dtype=model.dtype)
    other.build()
    for a, b in zip(other.params, model.params):
        if a.shape == b.shape:
            a[...] = b
        else:                     # a table of positions: the rows the length reads
            a[...] = b[:a.shape[0]]
    return other


def test_the_default_batch_is_dynamic_and_the_rest_fixed():
    model = cdl.Sequential([layers.LSTM(3, return_sequences=True)], input_shape=(5, 2), seed=0)
    proto = cdl.onnx.to_onnx(model)
    assert dims(proto.graph.input[0]) == ["batch", 5, 2]
    assert dims(proto.graph.output[0]) == ["batch", 5, 3]


def test_a_fixed_batch(tmp_path):
    model = randomise(cdl.Sequential([layers.Dense(3)], input_shape=(4,), seed=0))
    proto = cdl.onnx.to_onnx(model, dynamic_batch=False, batch_size=6)
    assert dims(proto.graph.input[0]) == [6, 4] and dims(proto.graph.output[0]) == [6, 3]
    sess = load(model, tmp_path / "m.onnx", dynamic_batch=False, batch_size=6)
    x = data((6, 4), "float32", seed=0)
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], model.predict(x),
                               **TOLERANCE["float32"])


SEQUENCE_MODELS = {
    "lstm": lambda: [layers.LSTM(4, return_sequences=True, go_backwards=True,
                                 trainable_initial_state=True), layers.Dense(2)],
    "gru_masked": lambda: [layers.GRU(4, mask_value=0.0)],
    "bidirectional": lambda: [layers.Bidirectional(layers.SimpleRNN(3, return_sequences=True)),
                              layers.GlobalMaxPool1D()],
    "attention": lambda: [layers.Dense(8), layers.MultiHeadAttention(2, 4),
                          layers.LayerNorm(), layers.GlobalAvgPool1D()],
    "causal_encoder": lambda: [layers.Dense(8), layers.PositionalEmbedding(12),
                               layers.TransformerEncoder(2, 16, causal=True)],
    "sinusoids_conv": lambda: [layers.Dense(6), layers.PositionalEmbedding(12, learned=False),
                               layers.Conv1D(4, 3, padding="same"), layers.MaxPool1D(2),
                               layers.GroupNorm(2)],
}


@pytest.mark.parametrize("make", list(SEQUENCE_MODELS.values()), ids=list(SEQUENCE_MODELS))
def test_sequences_of_any_length_and_batch(make, tmp_path):
    model = randomise(cdl.Sequential(make(), input_shape=(6, 3), seed=0))
    sess = load(model, tmp_path / "m.onnx", dynamic_sequence=True)
    proto = cdl.onnx.to_onnx(model, dynamic_sequence=True)
    assert dims(proto.graph.input[0]) == ["batch", "input_time", 3]
    for n, steps in ((1, 6), (3, 4), (5, 10), (2, 2)):
        x = data((n, steps, 3), "float32", seed=steps)
        want = rebuilt(model, steps).predict(x)
        got = sess.run(None, {"input": x})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, **TOLERANCE["float32"])


def test_token_ids_with_a_padding_mask_of_any_length(tmp_path):
    model = randomise(cdl.Sequential(
        [layers.Embedding(20, 8, mask_zero=True), layers.PositionalEmbedding(16),
         layers.TransformerEncoder(2, 16), layers.GlobalAvgPool1D()],
        input_shape=(6,), seed=0))
    sess = load(model, tmp_path / "m.onnx",
                dynamic_axes={"input": {0: "batch", 1: "tokens"}, "output": {0: "batch"}})
    rng = np.random.default_rng(0)
    for n, steps in ((2, 6), (4, 9), (3, 3)):
        ids = rng.integers(1, 20, (n, steps)).astype("float32")
        ids[0, steps // 2:] = 0
        want = rebuilt(model, steps).predict(ids)
        np.testing.assert_allclose(sess.run(None, {"input": ids})[0], want,
                                   **TOLERANCE["float32"])


def decoder_model(source_steps, target_steps):
    source = cdl.Input(shape=(source_steps, 3), name="source")
    target = cdl.Input(shape=(target_steps, 4), name="target")
    memory = layers.Dense(8)(source)
    h = layers.TransformerDecoder(2, 16, causal=True)([layers.Dense(8)(target), memory])
    return randomise(cdl.Model([source, target], {"out": layers.Dense(2)(h)}, seed=0))


def test_graph_models_name_each_inputs_time_axis(tmp_path):
    model = decoder_model(7, 5)
    proto = cdl.onnx.to_onnx(model, dynamic_sequence=True)
    assert [dims(i) for i in proto.graph.input] == [["batch", "source_time", 3],
                                                    ["batch", "target_time", 4]]
    assert dims(proto.graph.output[0]) == ["batch", None, 2]
    sess = load(model, tmp_path / "m.onnx", dynamic_sequence=True)
    for n, source_steps, target_steps in ((3, 9, 2), (1, 7, 5), (2, 3, 8)):
        # The same weights (their shapes do not depend on the lengths).
        other = decoder_model(source_steps, target_steps)
        xs = [data((n, source_steps, 3), "float32", seed=1),
              data((n, target_steps, 4), "float32", seed=2)]
        got = sess.run(None, dict(zip(model.input_names, xs)))[0]
        np.testing.assert_allclose(got, other.predict(xs), **TOLERANCE["float32"])


@pytest.mark.parametrize("make, why", [
    (lambda: [layers.Flatten(), layers.Dense(2)], "length times the features"),
    (lambda: [layers.Reshape((3, 6))], "target shape"),
    (lambda: [layers.Permute((2, 1))], "moves the sequence axis"),
    (lambda: [layers.Conv1D(2, 3, strides=2, padding="same")], "same"),
], ids=["flatten", "reshape", "permute", "strided_same_conv"])
def test_layers_that_need_the_length_are_refused_with_a_dynamic_sequence(make, why):
    model = cdl.Sequential(make(), input_shape=(6, 3), seed=0)
    with pytest.raises(ValueError, match=f"dynamic sequence axis.*{why}"):
        cdl.onnx.to_onnx(model, dynamic_sequence=True)
    cdl.onnx.to_onnx(model)      # fine at a fixed length


@pytest.mark.parametrize("axes, error, match", [
    ({"input": {2: "features"}}, ValueError, "only axis 0"),
    ({"nothing": [0]}, ValueError, "no input or output"),
    ({"input": "batch"}, TypeError, "dict"),
    ({"input": {0: 3}}, TypeError, "string"),
], ids=["feature_axis", "unknown_name", "not_a_dict", "not_a_name"])
def test_bad_dynamic_axes_are_refused(axes, error, match):
    model = cdl.Sequential([layers.Dense(2)], input_shape=(6, 3), seed=0)
    with pytest.raises(error, match=match):
        cdl.onnx.to_onnx(model, dynamic_axes=axes)


@pytest.mark.parametrize("kwargs, error", [
    (dict(dynamic_batch="yes"), TypeError), (dict(dynamic_sequence=1), TypeError),
    (dict(batch_size=0), ValueError), (dict(batch_size=2.0), ValueError),
])
def test_bad_options_are_refused(kwargs, error):
    model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
    with pytest.raises(error):
        cdl.onnx.to_onnx(model, **kwargs)
