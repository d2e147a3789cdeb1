"""Reshape and Permute: NumPy references, gradients, the layer harness, and bad
arguments."""
import numpy as np
import pytest

import cdl
from cdl import layers, optimizers
from helpers import GRADCHECK_TOL, check_layer, random_array


@pytest.mark.parametrize("target,input_shape,expected", [
    ((3, 4), (12,), (3, 4)),
    ((-1, 2), (3, 4), (6, 2)),
    ((2, -1, 3), (4, 3), (2, 2, 3)),
    ((-1,), (2, 3, 2), (12,)),
    ((12,), (2, 3, 2), (12,)),
    ((1, 6, 1), (6,), (1, 6, 1)),
])
def test_reshape_matches_numpy(target, input_shape, expected, dtype):
    layer = layers.Reshape(target)
    x = random_array((3,) + input_shape, dtype, seed=0)
    y = layer.forward(x)
    assert layer.compute_output_shape(input_shape) == expected
    assert y.shape == (3,) + expected and y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x.reshape((3,) + expected))
    grad = random_array(y.shape, dtype, seed=1)
    dx = layer.backward(grad)
    assert dx.shape == x.shape and dx.flags.c_contiguous
    np.testing.assert_array_equal(dx, grad.reshape(x.shape))


def test_reshape_takes_any_input_layout():
    # A transposed, integer input becomes a C-contiguous float copy first.
    x = np.arange(24).reshape(4, 6).T
    y = layers.Reshape((2, 2), dtype="float64").forward(x)
    assert y.dtype == np.float64 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, np.ascontiguousarray(x).reshape(6, 2, 2))


@pytest.mark.parametrize("dims,input_shape", [
    ((2, 1), (3, 4)),
    ((1, 2), (3, 4)),
    ((3, 1, 2), (2, 3, 4)),
    ((2, 3, 1), (2, 3, 4)),
    ((1,), (5,)),
])
def test_permute_matches_numpy(dims, input_shape, dtype):
    layer = layers.Permute(dims)
    x = random_array((2,) + input_shape, dtype, seed=2)
    y = layer.forward(x)
    expected = np.transpose(x, (0,) + dims)
    assert layer.compute_output_shape(input_shape) == expected.shape[1:]
    assert y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_array_equal(y, expected)
    grad = random_array(y.shape, dtype, seed=3)
    dx = layer.backward(grad)
    assert dx.shape == x.shape and dx.dtype == dtype and dx.flags.c_contiguous
    # Backward inverts: permuting the gradient back gives the forward's layout.
    np.testing.assert_array_equal(np.transpose(dx, (0,) + dims), grad)


@pytest.mark.parametrize("make,shape", [
    (lambda: layers.Reshape((-1, 2)), (2, 3, 4)),
    (lambda: layers.Reshape((2, 6)), (2, 3, 4)),
    (lambda: layers.Permute((3, 1, 2)), (2, 2, 3, 4)),
    (lambda: layers.Permute((2, 1)), (2, 5, 3)),
], ids=["Reshape-infer", "Reshape", "Permute-3d", "Permute"])
def test_gradcheck(make, shape):  # shape includes the batch axis
    errors = cdl.gradcheck(make(), random_array(shape, seed=4))
    assert max(errors.values()) < GRADCHECK_TOL


@pytest.mark.parametrize("case", [
    (lambda: layers.Reshape((3, 4)), (12,), (3, 4)),
    (lambda: layers.Reshape((-1, 3)), (2, 3, 2), (4, 3)),
    (lambda: layers.Permute((2, 1)), (3, 4), (4, 3)),
    (lambda: layers.Permute((3, 1, 2)), (2, 3, 4), (4, 2, 3)),
], ids=["Reshape", "Reshape-infer", "Permute", "Permute-3d"])
def test_layer_contract(case, dtype):
    make_layer, input_shape, output_shape = case
    check_layer(make_layer, input_shape, output_shape, 0, dtype)


def test_config_and_flops():
    reshape = layers.Reshape([2, -1], name="r")
    assert reshape.get_config() == {"name": "r", "target_shape": (2, -1)}  # -1 kept
    assert layers.Reshape(6).target_shape == (6,)
    permute = layers.Permute([2, 1], name="p")
    assert permute.get_config() == {"name": "p", "dims": (2, 1)}
    assert reshape.flops_per_sample((4, 3)) == 0 == permute.flops_per_sample((4, 3))


def test_permute_then_dense_trains_and_saves(tmp_path):
    # Sequences (steps=4, features=3) classified by their mean over steps:
    # Permute to (features, steps), a Dense over steps, then flattened.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4, 3)).astype(np.float32)
    y = (x.mean(axis=1) @ np.array([1.0, -1.0, 0.5]) > 0).astype(np.int64)
    model = cdl.Sequential([layers.Permute((2, 1)), layers.Dense(2), layers.Reshape((-1,)),
                            layers.Dense(2)], input_shape=(4, 3), seed=0)
    model.compile(optimizers.Adam(lr=0.05), "cross_entropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert model.evaluate(x, y)["accuracy"] > 0.9
    cdl.io.save_model(model, tmp_path / "permute.cdl")
    loaded = cdl.io.load_model(tmp_path / "permute.cdl")
    assert loaded.layers[0].dims == (2, 1) and loaded.layers[2].target_shape == (-1,)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("target,error", [
    ((0, 2), ValueError),
    ((-1, -1), ValueError),
    ((2, -2), ValueError),
    ((2.0, 3), TypeError),
    ("ab", TypeError),
    (None, TypeError),
])
def test_reshape_bad_target_shape(target, error):
    with pytest.raises(error, match="target_shape"):
        layers.Reshape(target)


def test_reshape_incompatible_sizes():
    with pytest.raises(ValueError, match=r"\(2, 3\) \(size 6\) to \(4,\) \(size 4\)"):
        cdl.Sequential([layers.Reshape((4,))], input_shape=(2, 3))
    with pytest.raises(ValueError, match=r"\(7,\) \(size 7\) to \(-1, 2\)"):
        layers.Reshape((-1, 2)).forward(np.ones((1, 7)))
    with pytest.raises(ValueError, match="size 6"):
        layers.Reshape((4,)).compute_output_shape((2, 3))


@pytest.mark.parametrize("dims", [(1, 1), (0, 1), (1, 3), (), (2.0, 1), "21"])
def test_permute_bad_dims(dims):
    with pytest.raises((TypeError, ValueError), match="dims"):
        layers.Permute(dims)


def test_permute_rank_mismatch_and_wrong_gradients():
    with pytest.raises(ValueError, match=r"dims \(2, 1\) permute 2 axes.*\(2, 3, 4\)"):
        layers.Permute((2, 1)).forward(np.ones((1, 2, 3, 4)))
    layer = layers.Permute((2, 1))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 3, 2)))
    layer.forward(np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match=r"\(1, 2, 3\).*expected \(1, 3, 2\)"):
        layer.backward(np.ones((1, 2, 3)))
    reshape = layers.Reshape((6,))
    with pytest.raises(RuntimeError, match="before forward"):
        reshape.backward(np.ones((1, 6)))
    reshape.forward(np.ones((2, 2, 3)))
    with pytest.raises(ValueError, match=r"expected \(2, 6\)"):
        reshape.backward(np.ones((2, 5)))
