"""ONNX export of grouped convolutions, explicit asymmetric padding and
PyTorch's transposed-convolution padding, checked in ONNX Runtime."""
import numpy as np
import pytest

import cdl
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

CASES = [
    ("conv2d_groups", [layers.Conv2D(6, 3, groups=3, padding="same", activation="relu")],
     (6, 5, 6)),
    ("conv2d_groups_wide", [layers.Conv2D(4, 3, groups=2, strides=2)], (7, 7, 20)),
    ("conv2d_asymmetric_pads", [layers.Conv2D(4, (2, 3), padding=((2, 0), (1, 3)),
                                              dilation_rate=(1, 2))], (6, 6, 3)),
    ("conv1d_groups_pads", [layers.Conv1D(4, 3, groups=4, padding=(0, 2), strides=2)],
     (9, 4)),
    ("conv2d_transpose_int_padding", [layers.Conv2DTranspose(3, 3, strides=2, padding=1,
                                                             output_padding=1)], (4, 5, 2)),
    ("conv2d_transpose_valid_output_padding",
     [layers.Conv2DTranspose(3, 4, strides=3, output_padding=(2, 1))], (3, 3, 2)),
]


@needs_onnx
@pytest.mark.parametrize("name, stack, input_shape", CASES, ids=[c[0] for c in CASES])
def test_layer_agrees_with_onnx_runtime(name, stack, input_shape, tmp_path):
    model = cdl.Sequential(stack, input_shape=input_shape, seed=0)
    x = (2 * np.random.default_rng(0).standard_normal((5,) + input_shape)).astype(np.float32)
    path = tmp_path / "model.onnx"
    cdl.onnx.export(model, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x})[0]
    expected = model.predict(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
                                  "SeparableConv2D", "Conv1DTranspose"])
def test_new_layers_have_a_converter(name):
    assert getattr(layers, name) in cdl.onnx.exportable_layers()
    assert name not in cdl.onnx.NOT_EXPORTABLE
