"""Bad inputs to the convolution, pooling, normalisation, reshaping, noise,
composite and recurrent layers: a clear exception, or the same result as a
clean copy."""
import numpy as np
import pytest

from cdl import layers

# name -> (factory, per-sample input shape)
LAYERS = {
    "Conv1D": (lambda: layers.Conv1D(3, 2, padding="same"), (6, 2)),
    "Conv2D": (lambda: layers.Conv2D(3, 2, strides=2, activation="relu"), (5, 5, 2)),
    "Conv2DTranspose": (lambda: layers.Conv2DTranspose(2, 3, strides=2), (3, 3, 2)),
    "MaxPool1D": (lambda: layers.MaxPool1D(2), (6, 2)),
    "AvgPool2D": (lambda: layers.AvgPool2D(2, padding="same"), (5, 5, 2)),
    "MaxPool2D": (lambda: layers.MaxPool2D(2), (4, 4, 2)),
    "GlobalAvgPool2D": (lambda: layers.GlobalAvgPool2D(), (3, 3, 2)),
    "GlobalMaxPool1D": (lambda: layers.GlobalMaxPool1D(), (5, 3)),
    "BatchNorm": (lambda: layers.BatchNorm(), (4,)),
    "LayerNorm": (lambda: layers.LayerNorm(), (4,)),
    "GroupNorm": (lambda: layers.GroupNorm(2), (3, 4)),
    "RMSNorm": (lambda: layers.RMSNorm(), (4,)),
    "Reshape": (lambda: layers.Reshape((2, -1)), (6,)),
    "Permute": (lambda: layers.Permute((2, 1)), (3, 4)),
    "PReLU": (lambda: layers.PReLU(), (4,)),
    "Mish": (lambda: layers.Mish(), (4,)),
    "LogSoftmax": (lambda: layers.LogSoftmax(), (4,)),
    "SpatialDropout1D": (lambda: layers.SpatialDropout1D(0.5), (5, 3)),
    "GaussianNoise": (lambda: layers.GaussianNoise(0.1), (4,)),
    "Residual": (lambda: layers.Residual([layers.Dense(4, activation="tanh")]), (4,)),
    "Concatenate": (lambda: layers.Concatenate([[layers.Dense(2)], [layers.ReLU()]]), (4,)),
    "SimpleRNN": (lambda: layers.SimpleRNN(3), (5, 2)),
    "LSTM": (lambda: layers.LSTM(3, return_sequences=True), (5, 2)),
    "GRU": (lambda: layers.GRU(3, go_backwards=True), (5, 2)),
    "Bidirectional": (lambda: layers.Bidirectional(layers.GRU(2)), (4, 3)),
}
PARAMS = [pytest.param(*spec, id=name) for name, spec in LAYERS.items()]


def built(factory, shape):
    layer = factory()
    layer._build(shape, "float64", np.random.default_rng(0))
    return layer


def batch(shape, seed=0):
    return np.random.default_rng(seed).standard_normal((3,) + shape)


@pytest.mark.parametrize("factory, shape", PARAMS)
def test_layouts_give_the_clean_result(factory, shape):
    layer = built(factory, shape)
    x = batch(shape)
    expected = layer.forward(x.copy())
    fortran = np.asfortranarray(x)
    reversed_rows = x[::-1][::-1]
    readonly = x.copy()
    readonly.flags.writeable = False
    strided = np.repeat(x, 2, axis=0)[::2]
    for variant in (fortran, reversed_rows, readonly, strided, x.astype(np.float32)):
        before = np.array(variant, copy=True)
        out = layer.forward(variant)
        np.testing.assert_allclose(out, expected, rtol=1e-6 if variant.dtype == np.float32
                                   else 0, atol=1e-6 if variant.dtype == np.float32 else 0)
        np.testing.assert_array_equal(variant, before)  # the caller's data is untouched


@pytest.mark.parametrize("factory, shape", PARAMS)
def test_wrong_inputs_raise_clear_errors(factory, shape):
    layer = built(factory, shape)
    with pytest.raises(TypeError, match="real numbers"):
        layer.forward(np.full((3,) + shape, "a", dtype=object))
    with pytest.raises(TypeError, match="real numbers"):
        layer.forward(batch(shape) + 1j)
    with pytest.raises(ValueError, match="shape"):
        layer.forward(np.zeros((3,) + shape + (2,)))
    with pytest.raises(ValueError, match="shape"):
        layer.forward(np.zeros(shape))  # no batch axis


@pytest.mark.parametrize("factory, shape", PARAMS)
def test_backward_is_checked(factory, shape):
    layer = built(factory, shape)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((3,) + layer.output_shape))
    layer.forward(batch(shape), training=True)
    with pytest.raises(ValueError, match="shape"):
        layer.backward(np.zeros((2,) + layer.output_shape))
    dx = layer.backward(np.ones((3,) + layer.output_shape))
    assert dx.shape == (3,) + shape and np.isfinite(dx).all()


def test_embedding_rejects_bad_indices():
    layer = layers.Embedding(5, 2)
    layer._build((3,), "float64", np.random.default_rng(0))
    with pytest.raises(ValueError, match="index 5"):
        layer.forward(np.array([[0, 1, 5]]))
    with pytest.raises(ValueError, match="-1"):
        layer.forward(np.array([[0, -1, 2]]))
    with pytest.raises((TypeError, ValueError)):
        layer.forward(np.array([[0.5, 1.0, 2.0]]))
    with pytest.raises((TypeError, ValueError)):
        layer.forward(np.array([[0, 1, np.nan]]))
