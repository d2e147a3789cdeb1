"""cdl.onnx on graph models (cdl.Model): several named inputs and outputs,
shared layers, skip connections and the merge layers, run in ONNX Runtime
and compared with model.predict."""
import os

import numpy as np
import pytest

import cdl
import cdl.onnx
from cdl import layers

from test_onnx import CASES, randomise_norm_statistics

try:
    import onnx
    import onnxruntime
    from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as OrtNotImplemented
except ImportError:
    onnx = onnxruntime = OrtNotImplemented = None

pytestmark = pytest.mark.skipif(
    onnx is None or onnxruntime is None,
    reason='onnx and onnxruntime are optional extras of cdl, not installed here: '
           'pip install "cdl[onnx]"')

#: The agreement asked of exported graphs, per dtype.
TOLERANCE = {"float32": {"rtol": 1e-5, "atol": 1e-5},
             "float64": {"rtol": 1e-10, "atol": 1e-10}}


def session(model, path):
    cdl.onnx.export(model, path)
    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except OrtNotImplemented as err:
        if model.dtype == np.float64:
            pytest.skip(f"ONNX Runtime has no float64 kernel for an op of this graph: {err}")
        raise


def run(sess, model, xs):
    """ONNX Runtime's outputs for the inputs ``xs`` (a list in input order),
    fed by the model's input names; a list in output order."""
    feeds = {name: x for name, x in zip(model.input_names, xs)}
    return sess.run(list(model.output_names), feeds)


def expected(model, xs):
    out = model.predict(xs if len(xs) > 1 else xs[0])
    return out if isinstance(out, list) else [out]


def assert_agrees(model, xs, path):
    """Export ``model``, run it in ONNX Runtime on ``xs`` and compare every
    output with ``model.predict`` (shape, dtype and values)."""
    sess = session(model, path)
    assert [i.name for i in sess.get_inputs()] == model.input_names
    assert [o.name for o in sess.get_outputs()] == model.output_names
    got, want = run(sess, model, xs), expected(model, xs)
    for name, g, w in zip(model.output_names, got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        np.testing.assert_allclose(g, w, err_msg=f"output {name!r}",
                                   **TOLERANCE[model.dtype.name])
    return sess


def data(shape, dtype, seed, scale=2.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def fresh(layer):
    """A new, unbuilt layer of the same configuration (the cases of
    test_onnx are objects shared with its Sequential models)."""
    return type(layer).from_config(layer.get_config())


def two_heads(dtype):
    """The two-input, two-output model of the functional API's example: a
    Dense shared by both branches, a concatenation, a sum of two layers and
    two heads."""
    a = cdl.Input(shape=(20,), name="a")
    b = cdl.Input(shape=(8,), name="b")
    shared = layers.Dense(16, activation="relu", name="shared")
    h = layers.Concatenate()([shared(layers.Dense(8)(a)), shared(b)])
    h = layers.Add()([layers.Dense(32)(h), layers.Dense(32, activation="tanh")(h)])
    cls = layers.Dense(3, name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    return cdl.Model(inputs=[a, b], outputs=[cls, reg], seed=0, dtype=dtype)


# --- the functional API's example ----------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_inputs_two_outputs_and_a_shared_layer_agree_for_any_batch_size(dtype, tmp_path):
    model = two_heads(dtype)
    sess = session(model, tmp_path / "model.onnx")
    for n in (1, 7, 64):
        xs = [data((n, 20), dtype, seed=n), data((n, 8), dtype, seed=n + 1)]
        for got, want in zip(run(sess, model, xs), model.predict({"a": xs[0], "b": xs[1]})):
            assert got.dtype == want.dtype == np.dtype(dtype)
            np.testing.assert_allclose(got, want, **TOLERANCE[dtype])


def test_graph_inputs_and_outputs_are_named_and_shaped_as_the_model(tmp_path):
    model = two_heads("float32")
    proto = onnx.load(str(cdl.onnx.export(model, tmp_path / "model.onnx")))
    onnx.checker.check_model(proto, full_check=True)

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [(i.name, dims(i)) for i in proto.graph.input] == [("a", ["batch", 20]),
                                                             ("b", ["batch", 8])]
    assert [(o.name, dims(o)) for o in proto.graph.output] == [("cls", ["batch", 3]),
                                                              ("reg", ["batch", 1])]
    assert proto.graph.name == model.name and proto.producer_name == "cdl"


def test_a_shared_layer_is_stored_once_and_read_by_every_call(tmp_path):
    model = two_heads("float32")
    proto = cdl.onnx.to_onnx(model)
    # No constant besides the weights in this graph: the initializers hold
    # exactly the model's parameters, each once.
    assert sum(int(np.prod(t.dims)) for t in proto.graph.initializer) == model.count_params()
    shared = model.layers[[layer.name for layer in model.layers].index("shared")]
    kernels = [t.name for t in proto.graph.initializer
               if np.array_equal(onnx.numpy_helper.to_array(t), shared.kernel)]
    assert len(kernels) == 1
    readers = [node for node in proto.graph.node if kernels[0] in node.input]
    assert len(readers) == 2


# --- every layer that exports, in a graph ----------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, stack, input_shape", CASES, ids=[c[0] for c in CASES])
def test_every_exportable_layer_agrees_in_a_graph(name, stack, input_shape, dtype, tmp_path):
    x = cdl.Input(shape=input_shape, name="features")
    h = x
    for layer in stack:
        h = fresh(layer)(h)
    model = cdl.Model(x, {"prediction": h}, seed=0, dtype=dtype)
    randomise_norm_statistics(model)
    assert_agrees(model, [data((7,) + input_shape, dtype, seed=0)], tmp_path / "model.onnx")


def test_a_chain_model_computes_what_the_same_sequential_exports(tmp_path):
    x = cdl.Input(shape=(4,), name="features")
    hidden = layers.Dense(6, activation="relu", name="hidden")
    logits = layers.Dense(3, name="logits")
    model = cdl.Model(x, logits(hidden(x)), seed=0)
    sequential = cdl.Sequential([fresh(hidden), fresh(logits)], input_shape=(4,), seed=0)
    sequential.set_weights(model.get_weights())
    sess = assert_agrees(model, [data((5, 4), "float32", seed=3)], tmp_path / "graph.onnx")
    cdl.onnx.export(sequential, tmp_path / "sequential.onnx")
    reference = onnxruntime.InferenceSession(str(tmp_path / "sequential.onnx"),
                                             providers=["CPUExecutionProvider"])
    x5 = data((5, 4), "float32", seed=3)
    np.testing.assert_array_equal(sess.run(["logits"], {"features": x5})[0],
                                  reference.run(["output"], {"input": x5})[0])


# --- merge layers ------------------------------------------------------------------------

#: (id, make the merge layer, per-sample shapes of its inputs)
MERGE_CASES = [
    ("add", lambda: layers.Add(), [(5,), (5,), (5,)]),
    ("add_images", lambda: layers.Add(), [(4, 3, 2), (4, 3, 2)]),
    ("subtract", lambda: layers.Subtract(), [(5,), (5,)]),
    ("multiply", lambda: layers.Multiply(), [(5,), (5,), (5,)]),
    ("average", lambda: layers.Average(), [(4, 3), (4, 3), (4, 3)]),
    ("maximum", lambda: layers.Maximum(), [(5,), (5,), (5,)]),
    ("minimum", lambda: layers.Minimum(), [(4, 3), (4, 3)]),
    ("concatenate", lambda: layers.Concatenate(), [(3,), (5,), (2,)]),
    ("concatenate_axis1", lambda: layers.Concatenate(axis=1), [(2, 3), (4, 3)]),
    ("concatenate_axis_minus2", lambda: layers.Concatenate(axis=-2), [(2, 3, 2), (2, 1, 2)]),
    ("concatenate_positional_axis", lambda: layers.Concatenate(2), [(2, 3), (2, 4)]),
    ("dot", lambda: layers.Dot(axes=1), [(6,), (6,)]),
    ("dot_normalize", lambda: layers.Dot(axes=1, normalize=True), [(6,), (6,)]),
    ("dot_attention", lambda: layers.Dot(axes=2), [(5, 4), (7, 4)]),
    ("dot_pair_of_axes", lambda: layers.Dot(axes=(1, 2)), [(4, 3), (5, 4)]),
    ("dot_negative_axes", lambda: layers.Dot(axes=(-1, -2)), [(3, 4), (4, 2)]),
    ("dot_normalize_3d", lambda: layers.Dot(axes=(2, 1), normalize=True), [(3, 4), (4, 2)]),
    ("dot_three_axes_left", lambda: layers.Dot(axes=(2, 1)), [(2, 3, 4), (3, 2)]),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, make, shapes", MERGE_CASES, ids=[c[0] for c in MERGE_CASES])
def test_merge_layer_agrees(name, make, shapes, dtype, tmp_path):
    inputs = [cdl.Input(shape=s, name=f"in{i}") for i, s in enumerate(shapes)]
    merged = make()(inputs)
    model = cdl.Model(inputs, merged, seed=0, dtype=dtype)
    xs = [data((9,) + s, dtype, seed=i) for i, s in enumerate(shapes)]
    if name in ("maximum", "minimum"):
        xs[1][:, :2] = xs[0][:, :2]   # ties
    assert_agrees(model, xs, tmp_path / "model.onnx")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, make, shapes", MERGE_CASES, ids=[c[0] for c in MERGE_CASES])
def test_merge_layer_agrees_between_layers(name, make, shapes, dtype, tmp_path):
    # The merge reads layer outputs and feeds a layer: not only graph inputs.
    x = cdl.Input(shape=(3,), name="x")
    branches = [layers.Reshape(s)(layers.Dense(int(np.prod(s)))(x)) for s in shapes]
    y = layers.Dense(2, name="y")(layers.Flatten()(make()(branches)))
    model = cdl.Model(x, y, seed=0, dtype=dtype)
    assert_agrees(model, [data((6, 3), dtype, seed=5)], tmp_path / "model.onnx")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normalized_dot_of_zero_vectors_agrees(dtype, tmp_path):
    # A norm below the epsilon divides by the epsilon: zeros, not NaN.
    a, b = cdl.Input(shape=(4,), name="a"), cdl.Input(shape=(4,), name="b")
    model = cdl.Model([a, b], layers.Dot(axes=1, normalize=True)([a, b]), dtype=dtype)
    xa, xb = data((4, 4), dtype, seed=0), data((4, 4), dtype, seed=1)
    xa[0] = 0.0
    xb[1] = 0.0
    xa[2] = 1e-9
    sess = assert_agrees(model, [xa, xb], tmp_path / "model.onnx")
    assert np.isfinite(run(sess, model, [xa, xb])[0]).all()


# --- graphs: diamonds, skips, shared blocks ------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_diamonds_and_skip_connections_agree(dtype, tmp_path):
    x = cdl.Input(shape=(6,), name="x")
    h1 = layers.Dense(8, name="h1")(x)
    h2 = layers.Dense(8, activation="relu", name="h2")(h1)
    h3 = layers.Dense(8, activation="sigmoid", name="h3")(h2)
    skip = layers.Add(name="skip")([h1, h3])                  # across two layers
    left = layers.Dense(4, activation="tanh", name="left")(skip)
    right = layers.Dense(4, name="right")(skip)
    diamond = layers.Multiply(name="diamond")([left, right])  # two paths from one tensor
    mixed = layers.Average(name="mixed")([diamond, layers.Dense(4)(x), left])
    out = layers.Subtract(name="out")([mixed, layers.Maximum()([left, right])])
    aux = layers.Dot(axes=1, name="aux")([h2, layers.Dense(8)(h1)])
    model = cdl.Model(x, [out, aux, h2], seed=0, dtype=dtype)
    assert model.output_names == ["out", "aux", "h2"]
    assert_agrees(model, [data((11, 6), dtype, seed=2)], tmp_path / "model.onnx")


def test_cnn_graph_with_a_shared_convolution_and_a_residual_agrees(tmp_path):
    left = cdl.Input(shape=(8, 8, 3), name="left")
    right = cdl.Input(shape=(8, 8, 3), name="right")
    conv = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")
    norm = layers.BatchNorm(name="norm")
    features = []
    for image in (left, right):
        h = norm(conv(image))
        h = layers.Add()([h, layers.Conv2D(4, 1)(h)])
        h = layers.MaxPool2D(2)(h)
        features.append(layers.GlobalAvgPool2D()(h))
    joined = layers.Concatenate()(features)
    same = layers.Dense(1, activation="sigmoid", name="same")(layers.Dropout(0.3)(joined))
    similarity = layers.Dot(axes=1, normalize=True, name="similarity")(features)
    model = cdl.Model({"left": left, "right": right}, [same, similarity], seed=0)
    randomise_norm_statistics(model)
    assert_agrees(model, [data((5, 8, 8, 3), "float32", seed=0),
                          data((5, 8, 8, 3), "float32", seed=1)], tmp_path / "model.onnx")
    proto = cdl.onnx.to_onnx(model)
    conv_kernels = {node.input[1] for node in proto.graph.node if node.op_type == "Conv"}
    assert len(conv_kernels) == 3   # the shared convolution once, the two 1x1 ones


def test_a_shared_block_reuses_every_initializer_of_its_first_call(tmp_path):
    def block():
        return layers.Residual([layers.Dense(5, activation="gelu"), layers.LayerNorm(),
                                layers.Dense(5)], name="block")

    x = cdl.Input(shape=(5,), name="x")
    once = cdl.Model(x, block()(x), seed=0)
    x, y = cdl.Input(shape=(5,), name="x"), cdl.Input(shape=(5,), name="y")
    shared = block()
    twice = cdl.Model([x, y], layers.Add()([shared(x), shared(y)]), seed=0)
    # Constants too (the GELU's 0.5, 1 and sqrt 2): a later call adds none.
    assert len(cdl.onnx.to_onnx(twice).graph.initializer) == \
        len(cdl.onnx.to_onnx(once).graph.initializer)
    assert_agrees(twice, [data((4, 5), "float32", seed=0), data((4, 5), "float32", seed=1)],
                  tmp_path / "model.onnx")


def test_a_model_after_training_steps_agrees(tmp_path):
    # Weights and BatchNorm statistics moved by training steps, made with the
    # explicit forward and backward passes.
    a, b = cdl.Input(shape=(6,), name="a"), cdl.Input(shape=(4,), name="b")
    shared = layers.Dense(6, activation="elu", name="shared")
    h = layers.Concatenate()([layers.BatchNorm()(shared(a)), shared(layers.Dense(6)(b))])
    cls = layers.Dense(3, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(layers.Dropout(0.2)(h))
    model = cdl.Model([a, b], [cls, reg], seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        xs = [rng.standard_normal((16, 6)), rng.standard_normal((16, 4))]
        out_cls, out_reg = model.forward(xs, training=True)
        model.backward([out_cls - 1.0 / 3.0, out_reg])
        model.param_buffer -= 0.1 * model.grad_buffer
    xs = [data((7, 6), "float32", seed=1), data((7, 4), "float32", seed=2)]
    assert_agrees(model, xs, tmp_path / "model.onnx")


def test_layers_shared_with_another_model_export_their_current_weights(tmp_path):
    # An encoder used alone and inside a classifier: training the classifier
    # moves the encoder's weights, which the encoder's export must hold.
    x = cdl.Input(shape=(5,), name="x")
    code = layers.Dense(3, activation="tanh", name="code")(layers.Dense(4, name="hidden")(x))
    encoder = cdl.Model(x, code, seed=0)
    classifier = cdl.Model(x, layers.Dense(2, name="cls")(code), seed=1)
    before = encoder.get_weights()
    rng = np.random.default_rng(0)
    for _ in range(3):
        out = classifier.forward(rng.standard_normal((8, 5)), training=True)
        classifier.backward(out - 1.0)
        classifier.param_buffer -= 0.1 * classifier.grad_buffer
    proto = cdl.onnx.to_onnx(encoder)
    kernels = [onnx.numpy_helper.to_array(t) for t in proto.graph.initializer]
    assert not any(np.array_equal(k, before[0]) for k in kernels)
    assert_agrees(encoder, [data((4, 5), "float32", seed=1)], tmp_path / "encoder.onnx")


# --- inputs and names --------------------------------------------------------------------

def test_inputs_keep_the_dtype_they_declare(tmp_path):
    tokens = cdl.Input(shape=(5,), name="tokens", dtype="int64")
    extra = cdl.Input(shape=(2,), name="extra", dtype="float64")
    embedded = layers.Flatten()(layers.Embedding(20, 3)(tokens))
    out = layers.Dense(2, name="out")(layers.Concatenate()([embedded, extra]))
    model = cdl.Model([tokens, extra], out, seed=0)
    sess = session(model, tmp_path / "model.onnx")
    assert [i.type for i in sess.get_inputs()] == ["tensor(int64)", "tensor(double)"]
    assert sess.get_outputs()[0].type == "tensor(float)"
    ids = np.random.default_rng(0).integers(0, 20, (6, 5))
    extra_values = np.random.default_rng(1).standard_normal((6, 2))
    got = run(sess, model, [ids, extra_values])[0]
    np.testing.assert_allclose(got, model.predict([ids, extra_values]), **TOLERANCE["float32"])


def test_an_output_may_be_an_input_or_an_identity_of_one(tmp_path):
    x = cdl.Input(shape=(3,), name="x")
    model = cdl.Model(x, [x, layers.Dropout(0.5, name="dropped")(x),
                          layers.Dense(2, name="dense")(x)], seed=0)
    assert_agrees(model, [data((4, 3), "float32", seed=0)], tmp_path / "model.onnx")


def test_names_the_exporter_generates_never_take_the_models_names(tmp_path):
    # Generated names are hint_<count>: a model may use such names itself.
    x = cdl.Input(shape=(3,), name="kernel_1")
    outputs = {"Gemm_2": layers.Dense(2)(x), "bias_2": layers.Dense(2, activation="relu")(x),
               "relu_5": layers.Dense(2, use_bias=False)(x)}
    model = cdl.Model(x, outputs, seed=0)
    assert_agrees(model, [data((4, 3), "float32", seed=0)], tmp_path / "model.onnx")


def test_an_output_named_like_an_input_is_refused_before_writing(tmp_path):
    x = cdl.Input(shape=(3,), name="x")
    model = cdl.Model({"x": x}, {"x": layers.Dense(2)(x)}, seed=0)
    with pytest.raises(ValueError, match="output 'x' has the name of an input"):
        cdl.onnx.export(model, tmp_path / "model.onnx")
    assert not os.listdir(tmp_path)


class _Halving(layers.Layer):
    """A user layer: x / 2."""

    def forward(self, x, training=False):
        return self._check_input(x) / 2

    def backward(self, grad):
        return grad / 2


@pytest.mark.parametrize("make, name", [
    (lambda: _Halving(name="rnn"), "_Halving"),
    (lambda: layers.Residual([_Halving(name="rnn")]), "_Halving"),
], ids=["user_layer", "user_layer_in_a_block"])
def test_an_unsupported_layer_in_a_graph_is_named_and_nothing_is_written(make, name, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"earlier file")
    x = cdl.Input(shape=(4, 2), name="x")
    h = layers.Dense(3)(x)
    model = cdl.Model(x, layers.Add()([layers.Dense(3)(layers.GlobalMaxPool1D()(make()(h))),
                                       layers.Dense(3)(layers.GlobalAvgPool1D()(h))]), seed=0)
    with pytest.raises(ValueError, match=f"cannot export layer 'rnn' \\({name}\\)"):
        cdl.onnx.export(model, path)
    assert path.read_bytes() == b"earlier file"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_to_onnx_refuses_what_is_not_a_model():
    with pytest.raises(TypeError, match="exports a cdl.Model or cdl.Sequential"):
        cdl.onnx.to_onnx(layers.Dense(2))
