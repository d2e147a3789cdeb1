"""cdl.onnx: exported graphs run in ONNX Runtime and agree with model.predict."""
import os
import sys

import numpy as np
import pytest

import cdl
import cdl.onnx
from cdl import layers

try:
    import onnx
    import onnxruntime
except ImportError:
    onnx = onnxruntime = None

needs_onnx = pytest.mark.skipif(
    onnx is None or onnxruntime is None,
    reason='onnx and onnxruntime are optional extras of cdl, not installed here: '
           'pip install "cdl[onnx]"')

#: The agreement asked of every exported layer, in float32.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def run_exported(model, x, path):
    cdl.onnx.export(model, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


def assert_agrees(model, x, path):
    got = run_exported(model, x, path)
    expected = model.predict(x)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, **TOLERANCE)


def randomise_norm_statistics(model, seed=1):
    """Running statistics away from 0 and 1, so that export must use them."""
    rng = np.random.default_rng(seed)
    for layer in layers.iter_layers(model.layers):
        if isinstance(layer, layers.BatchNorm):
            layer.running_mean[...] = rng.standard_normal(layer.running_mean.shape)
            layer.running_var[...] = rng.uniform(0.5, 2.0, layer.running_var.shape)
        for name in ("gamma", "beta"):
            if isinstance(getattr(layer, name, None), np.ndarray):
                weight = getattr(layer, name)
                weight[...] = rng.uniform(0.5, 1.5, weight.shape)


def inputs(shape, seed=0, scale=2.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


ACTIVATIONS = sorted(cdl._kernels.activations.CODES)

#: (id, layers, per-sample input shape): one case per exportable layer and option.
CASES = [
    ("dense", [layers.Dense(5)], (4,)),
    ("dense_no_bias", [layers.Dense(5, use_bias=False)], (4,)),
    ("dense_3d_input", [layers.Dense(5, activation="relu")], (3, 4)),
    ("leaky_relu_layer", [layers.LeakyReLU(0.2)], (6,)),
    ("elu_layer", [layers.ELU(alpha=0.5)], (6,)),
    ("softplus_layer", [layers.Softplus(beta=2.0, threshold=3.0)], (6,)),
    ("activation_layers", [layers.ReLU(), layers.Dense(6), layers.Sigmoid(), layers.Dense(6),
                           layers.Tanh(), layers.GELU(), layers.SELU(), layers.SiLU(),
                           layers.Mish(), layers.Softsign(), layers.HardSigmoid(),
                           layers.HardSwish(), layers.ReLU6(), layers.Softmax(),
                           layers.LogSoftmax()], (6,)),
    ("prelu_per_channel", [layers.PReLU(alpha_initializer="uniform")], (5, 5, 3)),
    ("prelu_shared", [layers.PReLU(alpha_initializer="uniform", shared_axes=[1])], (5, 5, 3)),
    ("conv1d_valid", [layers.Conv1D(4, 3, activation="tanh")], (10, 3)),
    ("conv1d_same_strided", [layers.Conv1D(4, 4, strides=2, padding="same")], (11, 3)),
    ("conv1d_causal_dilated", [layers.Conv1D(4, 3, padding="causal", dilation_rate=2)],
     (10, 3)),
    ("conv2d_valid", [layers.Conv2D(4, 3, activation="relu")], (7, 7, 3)),
    ("conv2d_same_strided", [layers.Conv2D(4, (3, 2), strides=(2, 1), padding="same")],
     (7, 8, 3)),
    ("conv2d_explicit_padding_dilated", [layers.Conv2D(4, 3, padding=(1, 2),
                                                       dilation_rate=2, use_bias=False)],
     (8, 8, 3)),
    ("conv2d_softmax", [layers.Conv2D(4, 1, activation="softmax")], (5, 5, 3)),
    ("conv2d_transpose_valid", [layers.Conv2DTranspose(4, 3, strides=2)], (5, 5, 3)),
    ("conv2d_transpose_same", [layers.Conv2DTranspose(4, 3, strides=2, padding="same",
                                                      activation="gelu")], (5, 5, 3)),
    ("conv2d_transpose_small_kernel", [layers.Conv2DTranspose(4, 1, strides=2)], (4, 4, 3)),
    ("max_pool1d", [layers.MaxPool1D(2)], (9, 3)),
    ("max_pool1d_same", [layers.MaxPool1D(3, strides=2, padding="same")], (10, 3)),
    ("avg_pool1d_same", [layers.AvgPool1D(3, strides=2, padding="same")], (10, 3)),
    ("max_pool2d", [layers.MaxPool2D(2)], (7, 7, 3)),
    ("max_pool2d_same", [layers.MaxPool2D(3, strides=2, padding="same")], (7, 8, 3)),
    ("avg_pool2d", [layers.AvgPool2D((2, 3))], (7, 7, 3)),
    ("avg_pool2d_same", [layers.AvgPool2D(3, strides=2, padding="same")], (7, 8, 3)),
    ("global_max_pool1d", [layers.GlobalMaxPool1D()], (9, 3)),
    ("global_avg_pool1d_keepdims", [layers.GlobalAvgPool1D(keepdims=True)], (9, 3)),
    ("global_max_pool2d_keepdims", [layers.GlobalMaxPool2D(keepdims=True)], (6, 5, 3)),
    ("global_avg_pool2d", [layers.GlobalAvgPool2D()], (6, 5, 3)),
    ("batch_norm_dense", [layers.Dense(6), layers.BatchNorm()], (4,)),
    ("batch_norm_1d", [layers.BatchNorm(center=False)], (9, 3)),
    ("batch_norm_2d", [layers.BatchNorm(scale=False)], (5, 5, 3)),
    ("layer_norm", [layers.LayerNorm(eps=1e-3)], (5, 6)),
    ("rms_norm", [layers.RMSNorm()], (5, 6)),
    ("group_norm", [layers.GroupNorm(2)], (5, 5, 4)),
    ("dropout_and_noise", [layers.Dropout(0.5), layers.SpatialDropout2D(0.3),
                           layers.GaussianNoise(1.0)], (5, 5, 3)),
    ("spatial_dropout1d", [layers.SpatialDropout1D(0.3)], (9, 3)),
    ("flatten", [layers.Flatten(), layers.Dense(3)], (4, 4, 2)),
    ("reshape", [layers.Reshape((-1, 4)), layers.Dense(2)], (4, 4, 2)),
    ("permute", [layers.Permute((3, 1, 2))], (4, 5, 2)),
    ("residual", [layers.Residual([layers.Conv2D(3, 3, padding="same", activation="relu"),
                                   layers.BatchNorm()])], (5, 5, 3)),
    ("concatenate", [layers.Concatenate([[layers.Dense(2)],
                                         [layers.Dense(3, activation="tanh"),
                                          layers.LayerNorm()]])], (4,)),
]


@needs_onnx
@pytest.mark.parametrize("name, stack, input_shape", CASES, ids=[c[0] for c in CASES])
def test_layer_agrees_with_onnx_runtime(name, stack, input_shape, tmp_path):
    model = cdl.Sequential(stack, input_shape=input_shape, seed=0)
    randomise_norm_statistics(model)
    assert_agrees(model, inputs((7,) + input_shape), tmp_path / "model.onnx")


@needs_onnx
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_fused_activation_agrees_with_onnx_runtime(activation, tmp_path):
    model = cdl.Sequential([layers.Dense(6, activation=activation)], input_shape=(4,), seed=0)
    # Scale 8 reaches softplus's linear region and saturates the others.
    assert_agrees(model, inputs((9, 4), scale=8.0), tmp_path / "model.onnx")


@needs_onnx
def test_embedding_agrees_with_onnx_runtime(tmp_path):
    model = cdl.Sequential([layers.Embedding(10, 4), layers.Flatten(), layers.Dense(2)],
                           input_shape=(3,), seed=0)
    x = np.random.default_rng(0).integers(0, 10, (6, 3)).astype(np.float32)
    assert_agrees(model, x, tmp_path / "model.onnx")


@needs_onnx
def test_trained_cnn_agrees_for_any_batch_size(tmp_path):
    x, y = cdl.datasets.load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
    model = cdl.Sequential([
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.BatchNorm(),
        layers.MaxPool2D(2),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.GlobalAvgPool2D(),
        layers.Dropout(0.2),
        layers.Dense(10),
    ], input_shape=(8, 8, 1), seed=0)
    model.compile("adam", "cross_entropy")
    model.fit(x[:500], y[:500], epochs=2, batch_size=50, verbose=0)
    path = tmp_path / "cnn.onnx"
    cdl.onnx.export(model, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7, 64):
        got = session.run(None, {"input": x[:n]})[0]
        np.testing.assert_allclose(got, model.predict(x[:n]), **TOLERANCE)


@needs_onnx
def test_trained_mlp_agrees(tmp_path):
    x, y = cdl.datasets.load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    model = cdl.Sequential([layers.Dense(32, activation="relu"), layers.Dropout(0.1),
                            layers.Dense(10, activation="softmax")], input_shape=(64,), seed=0)
    model.compile("adam", "mse")
    model.fit(x, np.eye(10, dtype=np.float32)[y], epochs=2, verbose=0)
    assert_agrees(model, x[:100], tmp_path / "mlp.onnx")


@needs_onnx
def test_float64_model_exports_double_tensors(tmp_path):
    model = cdl.Sequential([layers.Dense(4, activation="tanh"), layers.Dense(2)],
                           input_shape=(3,), dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    got = run_exported(model, x, tmp_path / "model.onnx")
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-12, atol=1e-12)


@needs_onnx
def test_float64_leaky_relu_keeps_its_slope_in_double(tmp_path):
    # ONNX attributes are float32: 0.2 as LeakyRelu's alpha is off by 1e-9.
    stack = [layers.Dense(6, activation="leaky_relu"), layers.LeakyReLU(0.2)]
    model = cdl.Sequential(stack, input_shape=(4,), dtype="float64", seed=0)
    x = 4 * np.random.default_rng(0).standard_normal((9, 4))
    np.testing.assert_allclose(run_exported(model, x, tmp_path / "model.onnx"),
                               model.predict(x), rtol=1e-12, atol=1e-12)
    single = cdl.Sequential([layers.LeakyReLU(0.2)], input_shape=(4,), seed=0)
    halves = cdl.Sequential([layers.LeakyReLU(0.5)], input_shape=(4,), dtype="float64")
    assert [n.op_type for n in cdl.onnx.to_onnx(single).graph.node][0] == "LeakyRelu"
    assert [n.op_type for n in cdl.onnx.to_onnx(halves).graph.node][0] == "LeakyRelu"


@needs_onnx
def test_exported_file_passes_the_checker_and_names_its_producer(tmp_path):
    model = cdl.Sequential([layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(1)],
                           input_shape=(5, 5, 1), seed=0, name="tiny")
    path = cdl.onnx.export(model, tmp_path / "tiny.onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.producer_name == "cdl" and proto.graph.name == "tiny"
    assert [o.version for o in proto.opset_import] == [cdl.onnx.OPSET]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [5, 5, 1]


@needs_onnx
def test_unbuilt_model_is_built_from_its_input_shape(tmp_path):
    model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
    model.built = False
    cdl.onnx.export(model, tmp_path / "model.onnx")
    with pytest.raises(ValueError, match="input shape"):
        cdl.onnx.to_onnx(cdl.Sequential([layers.Dense(2)]))


class Doubling(layers.Layer):
    """A user layer: 2 x."""

    def forward(self, x, training=False):
        return 2 * self._check_input(x)

    def backward(self, grad):
        return 2 * grad


@needs_onnx
@pytest.mark.parametrize("layer, input_shape", [
    (Doubling(name="doubling"), (3,)),
    (layers.Residual([layers.Dense(2), Doubling(name="doubling")]), (4, 2)),
], ids=["user_layer", "user_layer_inside_residual"])
def test_unsupported_layers_raise_naming_the_layer(layer, input_shape, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"earlier file")
    model = cdl.Sequential([layers.Dense(2), layer] if input_shape == (3,) else [layer],
                           input_shape=input_shape, seed=0)
    with pytest.raises(ValueError, match="cannot export layer") as err:
        cdl.onnx.export(model, path)
    assert "Doubling" in str(err.value)
    # The export failed before writing: the earlier file is intact, no temporary left.
    assert path.read_bytes() == b"earlier file"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_import_error_names_the_extra(monkeypatch, tmp_path):
    # None in sys.modules makes an import fail, as if onnx were absent.
    for name in [name for name in sys.modules if name.split(".")[0] == "onnx"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "onnx", None)
    model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
    with pytest.raises(ImportError, match=r'pip install "cdl\[onnx\]"'):
        cdl.onnx.export(model, tmp_path / "model.onnx")
    assert not os.listdir(tmp_path)
