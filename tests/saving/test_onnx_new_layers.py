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
