"""cdl.onnx on the recurrent layers: SimpleRNN, LSTM and GRU as ONNX's RNN,
LSTM and GRU ops, and Bidirectional, run in ONNX Runtime and compared with
model.predict, with and without masking and learned initial states."""
import numpy as np
import pytest

import cdl
import cdl.onnx
from cdl import layers

from test_onnx_graph import TOLERANCE, assert_agrees, data, onnx, onnxruntime, session

pytestmark = pytest.mark.skipif(
    onnx is None,
    reason='onnx and onnxruntime are optional extras of cdl, not installed here: '
           'pip install "cdl[onnx]"')


def randomise(model, seed=1):
    """Every weight drawn afresh: biases and learned initial states start at
    0, which would hide one left out of the graph."""
    rng = np.random.default_rng(seed)
    for p in model.params:
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    return model


def sequential(layer, input_shape=(7, 3), dtype="float32"):
    return randomise(cdl.Sequential([layer], input_shape=input_shape, seed=0, dtype=dtype))


def assert_sequential_agrees(model, x, path):
    sess = session(model, path)
    got = sess.run(["output"], {"input": x})[0]
    want = model.predict(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, **TOLERANCE[model.dtype.name])
    return sess


CELLS = {"SimpleRNN": layers.SimpleRNN, "LSTM": layers.LSTM, "GRU": layers.GRU}
OPTIONS = [
    ("last", {}),
    ("sequences", dict(return_sequences=True)),
    ("backwards", dict(go_backwards=True)),
    ("backwards_sequences", dict(go_backwards=True, return_sequences=True)),
    ("initial_state", dict(trainable_initial_state=True)),
    ("initial_state_sequences", dict(trainable_initial_state=True, return_sequences=True,
                                     go_backwards=True)),
]


@pytest.mark.parametrize("kwargs", [o[1] for o in OPTIONS], ids=[o[0] for o in OPTIONS])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_recurrent_layers_agree(cell, kwargs, tmp_path):
    model = sequential(CELLS[cell](5, **kwargs))
    for n in (1, 4):
        assert_sequential_agrees(model, data((n, 7, 3), "float32", seed=n), tmp_path / "m.onnx")


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "linear"])
def test_simple_rnn_activations_agree(activation, tmp_path):
    model = sequential(layers.SimpleRNN(4, activation=activation, return_sequences=True))
    assert_sequential_agrees(model, data((3, 7, 3), "float32", seed=0, scale=0.5),
                             tmp_path / "m.onnx")


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_recurrent_layers_agree_in_float64_where_onnx_runtime_runs_them(cell, tmp_path):
    model = sequential(CELLS[cell](4, return_sequences=True), dtype="float64")
    try:
        assert_sequential_agrees(model, data((3, 7, 3), "float64", seed=0), tmp_path / "m.onnx")
    except onnxruntime.capi.onnxruntime_pybind11_state.RuntimeException as err:
        if "double" not in str(err):
            raise
        pytest.skip(f"ONNX Runtime has no float64 kernel for {cell}: {err}")


def test_the_ops_are_onnx_recurrent_ops_with_gates_in_onnx_order():
    x = cdl.Input(shape=(6, 3), name="x")
    outs = [layers.SimpleRNN(2)(x), layers.LSTM(2)(x), layers.GRU(2)(x)]
    proto = cdl.onnx.to_onnx(cdl.Model(x, outs, seed=0))
    ops = {n.op_type: n for n in proto.graph.node}
    assert {"RNN", "LSTM", "GRU"} <= set(ops)
    gru = {a.name: a for a in ops["GRU"].attribute}
    assert gru["linear_before_reset"].i == 1


def padded(n, steps, features, lengths, value, seed):
    """Random sequences, sample i real for its first ``lengths[i]`` steps and
    ``value`` after them."""
    x = data((n, steps, features), "float32", seed=seed)
    for i, length in enumerate(lengths):
        x[i, length:] = value
    return x


@pytest.mark.parametrize("kwargs", [o[1] for o in OPTIONS], ids=[o[0] for o in OPTIONS])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_masking_with_trailing_padding_agrees(cell, kwargs, tmp_path):
    model = sequential(CELLS[cell](5, mask_value=0.0, **kwargs))
    x = padded(5, 7, 3, [7, 4, 1, 6, 0], 0.0, seed=3)
    assert_sequential_agrees(model, x, tmp_path / "m.onnx")


def test_masking_that_is_not_trailing_gives_nan_for_that_sample_only(tmp_path):
    model = sequential(layers.LSTM(4, mask_value=-1.0, return_sequences=True))
    x = padded(3, 7, 3, [7, 5, 3], -1.0, seed=4)
    x[0, 2] = -1.0            # a padded step between real ones
    sess = session(model, tmp_path / "m.onnx")
    got = sess.run(["output"], {"input": x})[0]
    assert np.isnan(got[0]).all()
    np.testing.assert_allclose(got[1:], model.predict(x)[1:], **TOLERANCE["float32"])


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
@pytest.mark.parametrize("kwargs", [{}, dict(return_sequences=True),
                                    dict(return_sequences=True, go_backwards=True,
                                         trainable_initial_state=True),
                                    dict(mask_value=0.0, return_sequences=True)],
                         ids=["last", "sequences", "backwards_initial_state", "masked"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_bidirectional_agrees(cell, kwargs, merge_mode, tmp_path):
    model = sequential(layers.Bidirectional(CELLS[cell](4, **kwargs), merge_mode=merge_mode))
    x = padded(4, 7, 3, [7, 5, 2, 7], 0.0, seed=5)
    assert_sequential_agrees(model, x, tmp_path / "m.onnx")


def test_recurrent_layers_in_a_graph_model_with_a_shared_layer(tmp_path):
    a, b = cdl.Input(shape=(6, 3), name="a"), cdl.Input(shape=(6, 3), name="b")
    shared = layers.GRU(4, return_sequences=True)
    ha, hb = shared(a), shared(b)
    summary = layers.LSTM(3)(layers.Add()([ha, hb]))
    other = layers.Bidirectional(layers.SimpleRNN(2))(layers.Dense(5)(ha))
    model = randomise(cdl.Model([a, b], {"summary": summary, "other": other}, seed=0))
    assert_agrees(model, [data((3, 6, 3), "float32", seed=s) for s in (1, 2)],
                  tmp_path / "m.onnx")
    proto = cdl.onnx.to_onnx(model)
    assert sum(node.op_type == "GRU" for node in proto.graph.node) == 2
    # The shared layer's two calls read one set of weights.
    assert len({init.name for init in proto.graph.initializer}) == \
        len(proto.graph.initializer)
    gru_weights = [tuple(n.input[1:4]) for n in proto.graph.node if n.op_type == "GRU"]
    assert gru_weights[0] == gru_weights[1]


def test_the_recurrent_layers_are_exportable():
    for cls in (layers.SimpleRNN, layers.LSTM, layers.GRU, layers.Bidirectional):
        assert cls in cdl.onnx.exportable_layers()
        assert cls.__name__ not in cdl.onnx.NOT_EXPORTABLE


# --- initial and final states, and a model's padding masks, in graph models ---------------

HAS_STATES = "return_state" in layers.LSTM(1).get_config()
needs_states = pytest.mark.skipif(not HAS_STATES, reason="recurrent layers without "
                                  "return_state and initial_state in this version")


def ids(n, steps, lengths, seed, vocabulary=20):
    """Token ids, sample i real for its first ``lengths[i]`` steps, then 0."""
    x = np.random.default_rng(seed).integers(1, vocabulary, (n, steps))
    for i, length in enumerate(lengths):
        x[i, length:] = 0
    return x.astype("float32")


@needs_states
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("backwards", [False, True], ids=["forward", "backwards"])
def test_return_state_and_initial_state_from_the_graph(cell, backwards, tmp_path):
    source = cdl.Input(shape=(6, 3), name="source")
    target = cdl.Input(shape=(5, 2), name="target")
    encoded = CELLS[cell](4, return_state=True, go_backwards=backwards)(source)
    decoded = CELLS[cell](4, return_sequences=True, return_state=True)(
        target, initial_state=encoded[1:])
    outputs = {"sequence": decoded[0], "h": decoded[1]}
    if cell == "LSTM":
        outputs["c"] = decoded[2]
    model = randomise(cdl.Model([source, target], outputs, seed=0))
    assert_agrees(model, [data((3, 6, 3), "float32", seed=1), data((3, 5, 2), "float32",
                                                                    seed=2)],
                  tmp_path / "m.onnx")


@needs_states
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_bidirectional_returns_both_halves_states(cell, tmp_path):
    x = cdl.Input(shape=(6, 3), name="x")
    outs = layers.Bidirectional(CELLS[cell](3, return_sequences=True, return_state=True))(x)
    model = randomise(cdl.Model(x, {f"out{k}": t for k, t in enumerate(outs)}, seed=0))
    assert_agrees(model, [data((4, 6, 3), "float32", seed=3)], tmp_path / "m.onnx")


@needs_states
@pytest.mark.parametrize("wrap", [False, True], ids=["layer", "bidirectional"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_models_padding_mask_reaches_recurrent_layers_and_goes_on(cell, wrap, tmp_path):
    tokens = cdl.Input(shape=(7,), name="tokens")
    h = layers.Embedding(20, 5, mask_zero=True)(tokens)
    rnn = CELLS[cell](4, return_sequences=True)
    h = (layers.Bidirectional(rnn) if wrap else rnn)(h)
    # The sequence output carries the mask to the next layer and the pooling.
    last = CELLS[cell](3, go_backwards=True, return_sequences=True)(h)
    pooled = layers.GlobalAvgPool1D()(last)
    model = randomise(cdl.Model(tokens, {"pooled": pooled,
                                         "last": CELLS[cell](2)(h)}, seed=0))
    assert_agrees(model, [ids(6, 7, [7, 5, 3, 1, 0, 6], seed=4)], tmp_path / "m.onnx")


@needs_states
def test_a_models_mask_with_padding_between_tokens_gives_nan_for_that_sample(tmp_path):
    model = randomise(cdl.Sequential([layers.Embedding(20, 5, mask_zero=True),
                                      layers.GRU(4)], input_shape=(6,), seed=0))
    x = ids(3, 6, [6, 4, 2], seed=5)
    x[0, 2] = 0
    sess = session(model, tmp_path / "m.onnx")
    got = sess.run(["output"], {"input": x})[0]
    assert np.isnan(got[0]).all()
    np.testing.assert_allclose(got[1:], model.predict(x)[1:], **TOLERANCE["float32"])


@needs_states
def test_a_free_time_axis_is_dynamic(tmp_path):
    x = cdl.Input(shape=(None, 3), name="x")
    y = layers.Dense(2)(layers.LSTM(4, return_sequences=True)(layers.GRU(5,
                                                                        return_sequences=True)(x)))
    model = randomise(cdl.Model(x, {"y": y}, seed=0))
    proto = cdl.onnx.to_onnx(model)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "x_time", 3]
    sess = session(model, tmp_path / "m.onnx")
    for n, steps in ((2, 3), (4, 11), (1, 1)):
        xs = data((n, steps, 3), "float32", seed=steps)
        np.testing.assert_allclose(sess.run(["y"], {"x": xs})[0], model.predict(xs),
                                   **TOLERANCE["float32"])
