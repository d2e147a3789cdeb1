"""One harness for every built-in layer: shapes, dtypes, parameters, a training
step, config round-trip, and float32 agreeing with float64."""
import numpy as np
import pytest

import cdl
from cdl import layers
from helpers import assert_allclose, check_layer, random_array

LAYER_CASES = [
    # (factory, per-sample input shape, expected output shape, parameter count)
    (lambda: layers.Dense(3), (4,), (3,), 4 * 3 + 3),
    (lambda: layers.Dense(3, activation="relu", use_bias=False), (4,), (3,), 12),
    (lambda: layers.Dense(2, activation="gelu"), (5, 4), (5, 2), 4 * 2 + 2),
    (lambda: layers.ReLU(), (4,), (4,), 0),
    (lambda: layers.LeakyReLU(0.2), (4,), (4,), 0),
    (lambda: layers.Sigmoid(), (4,), (4,), 0),
    (lambda: layers.Tanh(), (4,), (4,), 0),
    (lambda: layers.Softmax(), (4,), (4,), 0),
    (lambda: layers.GELU(), (4,), (4,), 0),
    (lambda: layers.ELU(0.5), (4,), (4,), 0),
    (lambda: layers.Activation("tanh"), (4,), (4,), 0),
    (lambda: layers.Dropout(0.25), (4,), (4,), 0),
    (lambda: layers.Flatten(), (2, 3, 2), (12,), 0),
]
IDS = ["Dense", "Dense-relu-nobias", "Dense-3d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
       "Softmax", "GELU", "ELU", "Activation", "Dropout", "Flatten"]


@pytest.mark.parametrize("case", LAYER_CASES, ids=IDS)
def test_layer_contract(case, dtype):
    check_layer(*case, dtype=dtype)


@pytest.mark.parametrize("case", LAYER_CASES, ids=IDS)
def test_float32_agrees_with_float64(case):
    make_layer, input_shape, _, _ = case
    results = {}
    for dtype in (np.float32, np.float64):
        model = cdl.Sequential([make_layer()], input_shape=input_shape, dtype=dtype, seed=0)
        x = random_array((4,) + input_shape, dtype, seed=2)
        y = model.forward(x)
        dx = model.backward(np.ones_like(y))
        results[dtype] = (y, dx, [g.copy() for g in model.grads])
    (y32, dx32, g32), (y64, dx64, g64) = results[np.float32], results[np.float64]
    assert_allclose(y32, y64, dtype=np.float32)
    assert_allclose(dx32, dx64, dtype=np.float32)
    for a, b in zip(g32, g64):
        assert_allclose(a, b, dtype=np.float32)


def test_standalone_layer_builds_from_its_first_input():
    layer = layers.Dense(2)
    y = layer.forward(np.ones((3, 5)))
    assert layer.dtype == np.float64 and y.dtype == np.float64
    assert layer.kernel.shape == (5, 2) and layer.input_shape == (5,)
    assert layers.Dense(2).forward(np.ones((1, 5), dtype=np.int64)).dtype == np.float32


def test_dropout_is_identity_at_inference_and_scaled_in_training():
    model = cdl.Sequential([layers.Dropout(0.4)], input_shape=(1000,), seed=0)
    x = np.ones((20, 1000), dtype=np.float32)
    assert np.array_equal(model.forward(x), x)
    y = model.forward(x, training=True)
    kept = y != 0
    assert np.allclose(y[kept], 1 / 0.6)
    assert abs(kept.mean() - 0.6) < 0.01
    dx = model.backward(np.full_like(y, 2.0))
    assert np.array_equal(dx != 0, kept) and np.allclose(dx[kept], 2 / 0.6)


def test_dropout_masks_are_seeded():
    def run(seed):
        model = cdl.Sequential([layers.Dropout(0.5)], input_shape=(50,), seed=seed)
        return model.forward(np.ones((4, 50)), training=True)
    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_dense_activation_matches_separate_activation_layer(dtype):
    fused = cdl.Sequential([layers.Dense(4, activation="elu")], input_shape=(3,),
                           dtype=dtype, seed=5)
    split = cdl.Sequential([layers.Dense(4), layers.ELU()], input_shape=(3,), dtype=dtype, seed=5)
    x = random_array((6, 3), dtype, seed=6)
    assert_allclose(fused.forward(x), split.forward(x), dtype=dtype)
    g = random_array((6, 4), dtype, seed=7)
    assert_allclose(fused.backward(g), split.backward(g), dtype=dtype)
    for a, b in zip(fused.grads, split.grads):
        assert_allclose(a, b, dtype=dtype)


def test_dense_default_initialisation():
    layer = layers.Dense(300)
    cdl.Sequential([layer], input_shape=(200,), seed=0)
    limit = np.sqrt(6 / (200 + 300))
    assert np.abs(layer.kernel).max() <= limit
    assert np.abs(layer.kernel).max() > 0.95 * limit
    assert np.all(layer.bias == 0)
