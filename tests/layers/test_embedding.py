"""Embedding: lookup, scatter-add gradient, index checks, models, PyTorch parity."""
import numpy as np
import pytest

import cdl
from cdl import layers
from cdl._kernels import embedding as _emb
from helpers import GRADCHECK_TOL, assert_allclose, random_array


def built(input_dim=10, output_dim=3, dtype="float64", shape=(1, 2)):
    layer = layers.Embedding(input_dim, output_dim, dtype=dtype)
    layer.forward(np.zeros(shape, dtype=np.int64))
    layer.embeddings[...] = random_array(layer.embeddings.shape, dtype, seed=1)
    return layer


@pytest.mark.parametrize("shape", [(4,), (2, 5), (2, 3, 2)])
def test_forward_looks_up_rows_for_any_input_shape(shape, dtype):
    layer = built(dtype=dtype, shape=shape)
    idx = np.random.default_rng(0).integers(0, 10, shape)
    y = layer.forward(idx)
    assert y.shape == shape + (3,) and y.dtype == dtype
    assert np.array_equal(y, layer.embeddings[idx])
    assert layer.output_shape == shape[1:] + (3,)
    assert layer.compute_output_shape(shape[1:]) == shape[1:] + (3,)


def test_backward_scatter_adds_and_repeated_indices_accumulate(dtype):
    layer = built(dtype=dtype, shape=(3, 4))
    idx = np.array([[1, 1, 1, 4], [4, 0, 9, 1], [2, 2, 2, 2]])
    layer.forward(idx)
    dy = random_array((3, 4, 3), dtype, seed=2)
    layer.embeddings_grad[...] = 123.0  # overwritten, not accumulated across calls
    assert layer.backward(dy) is None
    expected = np.zeros((10, 3))
    np.add.at(expected, idx.reshape(-1), dy.reshape(-1, 3).astype(np.float64))
    assert_allclose(layer.embeddings_grad, expected, dtype=dtype)
    assert np.array_equal(layer.embeddings_grad[[3, 5, 6, 7, 8]], np.zeros((5, 3)))


def test_embedding_gradient_against_finite_differences():
    # cdl.gradcheck perturbs the input too, which has no gradient here: check
    # d sum(y * R) / d embeddings by central differences directly.
    layer = built(input_dim=6, output_dim=4, shape=(3, 5))
    idx = np.array([[0, 1, 1, 5, 2], [5, 5, 5, 3, 0], [1, 2, 3, 4, 5]])
    proj = random_array((3, 5, 4), seed=3)
    layer.forward(idx)
    layer.backward(proj)
    analytic = layer.embeddings_grad.copy()
    numeric = np.empty_like(analytic)
    eps = 1e-6
    for i in np.ndindex(analytic.shape):
        saved = layer.embeddings[i]
        layer.embeddings[i] = saved + eps
        up = np.sum(layer.forward(idx) * proj)
        layer.embeddings[i] = saved - eps
        down = np.sum(layer.forward(idx) * proj)
        layer.embeddings[i] = saved
        numeric[i] = (up - down) / (2 * eps)
    assert np.abs(analytic - numeric).max() / np.abs(numeric).max() < GRADCHECK_TOL


def test_out_of_range_and_negative_indices_are_named():
    layer = built(shape=(2, 3))
    with pytest.raises(ValueError, match=r"index 10 at position \(1, 2\).*input_dim 10"):
        layer.forward(np.array([[0, 1, 2], [3, 4, 10]]))
    with pytest.raises(ValueError, match=r"index -1 at position \(0, 1\)"):
        layer.forward(np.array([[0, -1, 2], [3, 4, 5]]))
    with pytest.raises(ValueError, match=r"index 12 at position \(0, 0\)"):
        layer.forward(np.array([[12.0, 1, 2], [3, 4, 5]]))
    with pytest.raises(ValueError, match=r"index -3 at position \(1, 0\)"):
        layer.forward(np.array([[1.0, 1, 2], [-3, 4, 5]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"index 18446744073709551615 at position \(0, 0\)"):
        layer.forward(np.array([[2**64 - 1, 1, 2], [3, 4, 5]], dtype=np.uint64))
    with pytest.raises(ValueError, match=r"index 1e\+300 at position \(0, 2\)"):
        layer.forward(np.array([[1, 1, 1e300], [3, 4, 5]]))


def test_float_inputs_must_hold_whole_numbers():
    layer = built(shape=(1, 3))
    ints = np.array([[1, 7, 9]])
    expected = layer.forward(ints)
    for dtype in (np.float16, np.float32, np.float64, np.uint8, np.int32):
        assert np.array_equal(layer.forward(ints.astype(dtype)), expected)
    assert np.array_equal(layer.forward([[1, 7, 9]]), expected)
    assert np.array_equal(layer.forward([[1.0, 7.0, 9.0]]), expected)
    with pytest.raises(ValueError, match=r"whole-number indices, got 1\.5 at position \(0, 1\)"):
        layer.forward(np.array([[1, 1.5, 2]]))
    with pytest.raises(ValueError, match=r"whole-number indices, got nan at position \(0, 2\)"):
        layer.forward(np.array([[1, 2, np.nan]]))
    with pytest.raises(ValueError, match="whole-number"):
        layer.forward(np.array([[np.inf, 2, 3]]))
    with pytest.raises(TypeError, match="integer indices"):
        layer.forward(np.array([[True, False, True]]))
    with pytest.raises(TypeError, match="integer indices"):
        layer.forward(np.array([["a", "b", "c"]]))
    with pytest.raises(ValueError, match=r"\(batch_size, 3,\)"):
        layer.forward(np.array([[1, 2]]))
    with pytest.raises(ValueError, match="batch axis"):
        layer.forward(np.int64(3))


def test_standalone_dtype_and_initializer():
    layer = layers.Embedding(1000, 8)
    y = layer.forward(np.arange(1000).reshape(10, 100))
    assert layer.dtype == np.float32 and y.dtype == np.float32
    w = layer.embeddings
    assert -0.05 <= w.min() < -0.045 and 0.045 < w.max() <= 0.05  # Keras' U(-0.05, 0.05)
    assert layers.Embedding(5, 2).forward(np.zeros((1, 1))).dtype == np.float64
    ones = layers.Embedding(5, 2, embeddings_initializer="ones")
    assert np.array_equal(ones.forward([[3]]), np.ones((1, 1, 2), np.float32))
    assert ones.get_config()["embeddings_initializer"] == "ones"
    with pytest.raises(ValueError, match="input_dim"):
        layers.Embedding(0, 2)
    with pytest.raises(TypeError, match="output_dim"):
        layers.Embedding(3, 2.5)
    with pytest.raises(RuntimeError, match="before forward"):
        layers.Embedding(3, 2).backward(np.ones((1, 2)))


def test_kernel_entry_points_check_their_arrays():
    W = np.ones((4, 2))
    with pytest.raises(ValueError, match=r"index 4 at position 1 .* 4 rows"):
        _emb.forward(np.array([0, 4]), W, np.empty((2, 2)))
    with pytest.raises(TypeError, match="int64"):
        _emb.forward(np.array([0, 1], np.int32), W, np.empty((2, 2)))
    with pytest.raises(ValueError, match=r"Y has shape \(2, 3\), expected \(2, 2\)"):
        _emb.forward(np.array([0, 1]), W, np.empty((2, 3)))
    with pytest.raises(TypeError, match="same dtype"):
        _emb.backward(np.array([0, 1]), np.ones((2, 2), np.float32), np.empty((4, 2)))
    with pytest.raises(ValueError, match="index -2"):
        _emb.backward(np.array([-2, 1]), np.ones((2, 2)), np.empty((4, 2)))
    assert _emb.first_out_of_range(np.array([0, 3, 7, 1]), 4) == 2
    assert _emb.first_out_of_range(np.array([], np.int64), 4) == -1


# --- in a model -----------------------------------------------------------------------


def embedding_model(dtype="float32", seed=0):
    return cdl.Sequential([layers.Embedding(12, 4), layers.Flatten(), layers.Dense(3)],
                          input_shape=(5,), dtype=dtype, seed=seed)


def test_embedding_as_first_layer_of_a_model_trains_and_round_trips(dtype, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 12, (40, 5))
    y = (x[:, 0] % 3).astype(np.int64)
    model = embedding_model(dtype)
    assert model.count_params() == 12 * 4 + 20 * 3 + 3
    model.compile("adam", "cross_entropy")
    out = model.forward(x, training=True)
    assert model.backward(np.ones_like(out)) is None  # no gradient for indices
    history = model.fit(x, y, epochs=15, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "emb.cdl")
    loaded = cdl.load_model(tmp_path / "emb.cdl")
    assert loaded.get_config() == model.get_config()
    assert np.array_equal(loaded.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="index 12"):
        model.predict(np.full((2, 5), 12))


def test_embedding_gradient_in_a_model_with_a_loss():
    model = embedding_model("float64")
    x = np.array([[0, 1, 1, 11, 2], [3, 3, 3, 3, 0]])
    target = random_array((2, 3), seed=4)
    model.forward(x, training=True)
    loss = cdl.losses.get("mse")
    loss.forward(model.forward(x, training=True), target)
    model.backward(loss.backward())
    analytic = model.layers[0].embeddings_grad.copy()
    table = model.layers[0].embeddings
    numeric = np.zeros_like(analytic)
    for i in np.ndindex(table.shape):
        saved = table[i]
        table[i] = saved + 1e-6
        up = loss.forward(model.forward(x), target)
        table[i] = saved - 1e-6
        down = loss.forward(model.forward(x), target)
        table[i] = saved
        numeric[i] = (up - down) / 2e-6
    assert np.abs(analytic - numeric).max() / np.abs(numeric).max() < GRADCHECK_TOL
    assert np.array_equal(analytic[[4, 5, 6, 7, 8, 9, 10]], np.zeros((7, 4)))


def test_embedding_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    layer = built(input_dim=7, output_dim=5, dtype=dtype, shape=(3, 4))
    module = torch.nn.Embedding(7, 5).to(getattr(torch, np.dtype(dtype).name))
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.embeddings.copy()))
    idx = np.array([[0, 6, 6, 2], [2, 2, 2, 2], [5, 1, 0, 6]])
    y = layer.forward(idx)
    ty = module(torch.from_numpy(idx))
    assert_allclose(y, ty.detach().numpy(), dtype=dtype)
    dy = random_array(y.shape, dtype, seed=6)
    (ty * torch.from_numpy(dy)).sum().backward()
    layer.backward(dy)
    assert_allclose(layer.embeddings_grad, module.weight.grad.numpy(), dtype=dtype)
