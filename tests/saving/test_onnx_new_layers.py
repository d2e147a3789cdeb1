"""cdl.onnx on the layer options PyTorch and Keras users reach for:
normalisation over several axes or without affine parameters, batch
statistics without running ones, run in ONNX Runtime and compared with
model.predict. Options a version of cdl lacks are skipped."""
import inspect

import numpy as np
import pytest

import cdl
import cdl.onnx
from cdl import layers

from test_onnx_graph import TOLERANCE, data, onnx, session

pytestmark = pytest.mark.skipif(
    onnx is None,
    reason='onnx and onnxruntime are optional extras of cdl, not installed here: '
           'pip install "cdl[onnx]"')


def has_option(cls, name):
    return name in inspect.signature(cls.__init__).parameters


def randomise(model, seed=1):
    rng = np.random.default_rng(seed)
    for p in model.params:
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    for layer in layers.iter_layers(model.layers):
        for name in ("gamma", "running_var"):
            if getattr(layer, name, None) is not None:
                getattr(layer, name)[...] = rng.uniform(0.5, 1.5, getattr(layer, name).shape)
        if getattr(layer, "running_mean", None) is not None:
            layer.running_mean[...] = rng.uniform(-0.5, 0.5, layer.running_mean.shape)
    return model


def assert_agrees(model, x, path):
    sess = session(model, path)
    got = sess.run(["output"], {"input": x})[0]
    want = model.predict(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, **TOLERANCE[model.dtype.name])


NORM_CASES = [
    ("layer_norm_two_axes", layers.LayerNorm, dict(axis=(-2, -1)), (4, 3, 5)),
    ("layer_norm_three_axes", layers.LayerNorm, dict(axis=(1, 2, 3)), (4, 3, 5)),
    ("layer_norm_no_affine", layers.LayerNorm, dict(elementwise_affine=False), (4, 6)),
    ("layer_norm_no_bias", layers.LayerNorm, dict(bias=False, axis=(-2, -1)), (4, 6)),
    ("group_norm_no_affine", layers.GroupNorm, dict(groups=3, affine=False), (4, 6)),
    ("rms_norm_no_affine", layers.RMSNorm, dict(affine=False), (4, 6)),
    ("rms_norm_machine_eps", layers.RMSNorm, dict(eps=None), (4, 6)),
    ("batch_norm_batch_statistics", layers.BatchNorm, dict(track_running_stats=False),
     (4, 6)),
    ("batch_norm_cumulative", layers.BatchNorm, dict(momentum=None), (4, 6)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cls, kwargs, shape", [c[1:] for c in NORM_CASES],
                         ids=[c[0] for c in NORM_CASES])
def test_normalisation_options(cls, kwargs, shape, dtype, tmp_path):
    for name in kwargs:
        if name != "groups" and not has_option(cls, name):
            pytest.skip(f"{cls.__name__} has no {name} in this version")
    try:
        cls(**kwargs)
    except TypeError as err:   # an option whose value (None) this version refuses
        pytest.skip(f"{cls.__name__}({kwargs}) is refused in this version: {err}")
    model = randomise(cdl.Sequential([layers.Dense(shape[-1]), cls(**kwargs)],
                                     input_shape=shape, seed=0, dtype=dtype))
    for n in (2, 5):
        assert_agrees(model, data((n,) + shape, dtype, seed=n), tmp_path / "m.onnx")


def layer_or_skip(name):
    if not hasattr(layers, name):
        pytest.skip(f"no layers.{name} in this version")
    return getattr(layers, name)


#: (id, [(layer name, keywords)], per-sample input shape).
NEW_LAYER_CASES = [
    ("conv2d_groups", [("Conv2D", dict(filters=6, kernel_size=3, groups=3, padding="same",
                                       activation="relu"))], (6, 5, 6)),
    ("conv1d_groups_asymmetric", [("Conv1D", dict(filters=4, kernel_size=3, groups=2,
                                                  padding=(0, 2), strides=2))], (9, 4)),
    ("conv2d_asymmetric", [("Conv2D", dict(filters=4, kernel_size=(2, 3),
                                           padding=((2, 0), (1, 3)),
                                           dilation_rate=(1, 2)))], (6, 6, 3)),
    ("depthwise1d", [("DepthwiseConv1D", dict(kernel_size=3, depth_multiplier=2,
                                              padding="same"))], (8, 3)),
    ("depthwise2d", [("DepthwiseConv2D", dict(kernel_size=(3, 2), depth_multiplier=3,
                                              strides=2, activation="tanh"))], (7, 6, 2)),
    ("separable1d", [("SeparableConv1D", dict(filters=5, kernel_size=3,
                                              padding="causal"))], (8, 3)),
    ("separable2d", [("SeparableConv2D", dict(filters=4, kernel_size=3, depth_multiplier=2,
                                              padding="same", activation="relu"))],
     (6, 5, 3)),
    ("conv1d_transpose", [("Conv1DTranspose", dict(filters=3, kernel_size=3, strides=2,
                                                   padding=1, output_padding=1))], (5, 2)),
    ("conv2d_transpose_output_padding", [("Conv2DTranspose", dict(
        filters=3, kernel_size=3, strides=2, padding=1, output_padding=1))], (4, 5, 2)),
    ("max_pool_int_padding", [("MaxPool2D", dict(pool_size=3, strides=2, padding=1))],
     (7, 6, 2)),
    ("avg_pool_count_pad", [("AvgPool1D", dict(pool_size=3, strides=2, padding=1,
                                               count_include_pad=True))], (7, 2)),
    ("adaptive_avg1d", [("AdaptiveAvgPool1D", dict(output_size=3))], (7, 2)),
    ("adaptive_max1d", [("AdaptiveMaxPool1D", dict(output_size=4))], (10, 2)),
    ("adaptive_avg2d", [("AdaptiveAvgPool2D", dict(output_size=(2, 3)))], (5, 7, 2)),
    ("adaptive_max2d", [("AdaptiveMaxPool2D", dict(output_size=(3, 2)))], (7, 5, 2)),
    ("zero_padding1d", [("ZeroPadding1D", dict(padding=(1, 2)))], (4, 2)),
    ("zero_padding2d", [("ZeroPadding2D", dict(padding=((1, 0), (2, 1))))], (3, 4, 2)),
    ("cropping1d", [("Cropping1D", dict(cropping=(1, 0)))], (5, 2)),
    ("cropping2d", [("Cropping2D", dict(cropping=((0, 1), (1, 1))))], (4, 5, 2)),
    ("upsampling1d", [("UpSampling1D", dict(size=3))], (4, 2)),
    ("upsampling2d_nearest", [("UpSampling2D", dict(size=(2, 3)))], (3, 4, 2)),
    ("upsampling2d_bilinear", [("UpSampling2D", dict(size=(2, 3),
                                                     interpolation="bilinear"))], (3, 4, 2)),
    ("upsampling2d_bilinear_corners", [("UpSampling2D", dict(
        size=2, interpolation="bilinear", align_corners=True))], (3, 4, 2)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("stack, shape", [c[1:] for c in NEW_LAYER_CASES],
                         ids=[c[0] for c in NEW_LAYER_CASES])
def test_new_layers_agree(stack, shape, dtype, tmp_path):
    built = []
    for name, kwargs in stack:
        cls = layer_or_skip(name)
        try:
            built.append(cls(**kwargs))
        except (TypeError, ValueError) as err:   # an option this version lacks
            pytest.skip(f"{name}({kwargs}) is refused in this version: {err}")
    model = randomise(cdl.Sequential(built, input_shape=shape, seed=0, dtype=dtype))
    assert_agrees(model, data((5,) + shape, dtype, seed=3), tmp_path / "m.onnx")


def test_every_new_layer_is_exportable():
    for name, *_ in [case[1][0] for case in NEW_LAYER_CASES]:
        if hasattr(layers, name):
            assert getattr(layers, name) in cdl.onnx.exportable_layers()
            assert name not in cdl.onnx.NOT_EXPORTABLE


CEIL_CASES = [
    ("max1d", "MaxPool1D", dict(pool_size=3, strides=2, ceil_mode=True), (8, 2)),
    ("max2d_padding", "MaxPool2D", dict(pool_size=3, strides=2, padding=1, ceil_mode=True),
     (6, 7, 2)),
    ("avg1d", "AvgPool1D", dict(pool_size=3, strides=2, ceil_mode=True), (8, 2)),
    ("avg2d_padding", "AvgPool2D", dict(pool_size=3, strides=2, padding=1, ceil_mode=True,
                                        count_include_pad=False), (6, 5, 2)),
]


@pytest.mark.parametrize("name, kwargs, shape", [c[1:] for c in CEIL_CASES],
                         ids=[c[0] for c in CEIL_CASES])
def test_ceil_mode_pools_agree(name, kwargs, shape, tmp_path):
    cls = layer_or_skip(name)
    if not has_option(cls, "ceil_mode"):
        pytest.skip(f"{name} has no ceil_mode in this version")
    model = cdl.Sequential([cls(**kwargs)], input_shape=shape, seed=0)
    assert model.output_shape[0] > (shape[0] - kwargs["pool_size"]
                                    + 2 * kwargs.get("padding", 0)) // kwargs["strides"] + 1
    assert_agrees(model, data((3,) + shape, "float32", seed=4), tmp_path / "m.onnx")


def test_ceil_mode_averages_that_count_padding_are_refused():
    cls = layer_or_skip("AvgPool1D")
    if not has_option(cls, "ceil_mode"):
        pytest.skip("AvgPool1D has no ceil_mode in this version")
    model = cdl.Sequential([cls(3, 2, padding=1, ceil_mode=True, count_include_pad=True)],
                           input_shape=(8, 2), seed=0)
    with pytest.raises(ValueError, match="ceil_mode=True and count_include_pad"):
        cdl.onnx.to_onnx(model)
