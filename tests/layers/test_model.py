"""Sequential: building, the flat buffers, dtypes, seeding, explicit training steps."""
import numpy as np
import pytest

import cdl
from cdl import layers, losses
from helpers import assert_allclose, random_array


def mlp(dtype="float32", seed=0, **kwargs):
    return cdl.Sequential([
        layers.Dense(8, activation="relu"),
        layers.Dropout(0.1),
        layers.Dense(3),
    ], input_shape=(4,), dtype=dtype, seed=seed, **kwargs)


def test_params_are_views_into_one_flat_buffer(dtype):
    model = mlp(dtype)
    shapes = [p.shape for p in model.params]
    assert shapes == [(4, 8), (8,), (8, 3), (3,)]  # layer order, weight before bias
    assert model.param_buffer.size == model.count_params() == 4 * 8 + 8 + 8 * 3 + 3
    for p, g in zip(model.params, model.grads):
        assert np.shares_memory(p, model.param_buffer)
        assert np.shares_memory(g, model.grad_buffer)
        assert p.dtype == g.dtype == dtype
    # The layer attributes are the same views.
    assert model.params[0] is model.layers[0].kernel
    model.param_buffer[:] = 1.5
    assert np.all(model.layers[2].bias == 1.5)


def test_backward_fills_grads_matching_numpy(dtype):
    model = cdl.Sequential([layers.Dense(5, activation="tanh"), layers.Dense(2)],
                           input_shape=(3,), dtype=dtype, seed=1)
    x = random_array((7, 3), dtype, seed=2)
    y = random_array((7, 2), dtype, seed=3)
    W1, b1, W2, b2 = [p.astype(np.float64) for p in model.params]
    h = np.tanh(x @ W1 + b1)
    out = h @ W2 + b2
    d_out = 2 * (out - y) / out.size
    d_h = d_out @ W2.T * (1 - h ** 2)
    expected = [x.T @ d_h, d_h.sum(0), h.T @ d_out, d_out.sum(0)]

    loss_fn = losses.MSE()
    loss = loss_fn.forward(model.forward(x), y)
    assert isinstance(loss, float)
    assert_allclose(loss, np.mean((out - y) ** 2), dtype=dtype)
    dx = model.backward(loss_fn.backward())
    assert_allclose(dx, d_h @ W1.T, dtype=dtype)
    for grad, want in zip(model.grads, expected):
        assert_allclose(grad, want, dtype=dtype)


def test_backward_overwrites_rather_than_accumulates():
    model = mlp("float64")
    x = random_array((5, 4), seed=4)
    model.forward(x)
    model.backward(np.ones((5, 3)))
    first = model.grad_buffer.copy()
    model.forward(x)
    model.backward(np.ones((5, 3)))
    assert np.array_equal(model.grad_buffer, first)


def test_no_float64_in_a_float32_model():
    model = mlp("float32")
    x = random_array((6, 4), np.float64, seed=5)
    out = model.forward(x, training=True)
    loss_fn = losses.CrossEntropy()
    loss_fn.forward(out, np.array([0, 1, 2, 0, 1, 2]))
    grad = loss_fn.backward()
    dx = model.backward(grad)
    arrays = [out, grad, dx, model.param_buffer, model.grad_buffer, *model.params, *model.grads]
    assert all(a.dtype == np.float32 for a in arrays)


def test_same_seed_same_model_and_float32_float64_start_alike():
    a, b, c = mlp(seed=7), mlp(seed=7), mlp(seed=8)
    assert np.array_equal(a.param_buffer, b.param_buffer)
    assert not np.array_equal(a.param_buffer, c.param_buffer)
    d = mlp("float64", seed=7)
    assert_allclose(a.param_buffer, d.param_buffer, dtype=np.float32)


def test_lazy_build_on_first_forward_and_add_after_build():
    model = cdl.Sequential(seed=0)
    model.add(layers.Dense(4, activation="relu"))
    assert not model.built
    model.forward(np.ones((2, 3)))
    assert model.built and model.input_shape == (3,) and model.output_shape == (4,)
    kernel = model.layers[0].kernel.copy()
    model.add(layers.Dense(2))
    out = model.forward(np.ones((2, 3)))
    assert out.shape == (2, 2)
    assert np.array_equal(model.layers[0].kernel, kernel)  # weights kept on re-pack
    assert len(model.params) == 4 and np.shares_memory(model.params[0], model.param_buffer)


def test_rejects_inputs_of_another_shape_after_build():
    model = mlp()
    with pytest.raises(ValueError, match=r"expected \(batch_size, 4,\)"):
        model.forward(np.ones((2, 5)))
    with pytest.raises(ValueError, match="built for inputs of shape"):
        model.build((5,))


class Scale(layers.Layer):
    """A user layer in NumPy: y = x * s, one weight per feature."""

    def build(self, input_shape):
        self.add_weight("s", input_shape, "ones")

    def forward(self, x, training=False):
        self._x = self._check_input(x)
        return self._x * self.s

    def backward(self, grad):
        self.s_grad[...] = (grad * self._x).sum(axis=0)
        return grad * self.s


def test_user_layer_mixes_with_built_in_layers(dtype):
    model = cdl.Sequential([layers.Dense(3), Scale(), layers.Dense(2)],
                           input_shape=(4,), dtype=dtype, seed=0)
    scale = model.layers[1]
    assert np.shares_memory(scale.s, model.param_buffer)
    assert [p.shape for p in model.params] == [(4, 3), (3,), (3,), (3, 2), (2,)]
    model.forward(random_array((5, 4), dtype, seed=1))
    model.backward(np.ones((5, 2), dtype=dtype))
    assert np.shares_memory(scale.s_grad, model.grad_buffer) and np.any(scale.s_grad != 0)
    errors = cdl.gradcheck(cdl.Sequential([layers.Dense(3), Scale(), layers.Dense(2)],
                                          input_shape=(4,), dtype="float64", seed=0),
                           random_array((5, 4), seed=1))
    assert max(errors.values()) < 1e-6


def test_explicit_training_loop_reduces_the_loss():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = cdl.Sequential([layers.Dense(16, activation="relu"), layers.Dense(2)],
                           input_shape=(4,), seed=0)
    loss_fn = losses.CrossEntropy()
    first = loss_fn.forward(model.forward(x), labels)
    for _ in range(200):
        loss = loss_fn.forward(model.forward(x, training=True), labels)
        model.backward(loss_fn.backward())
        model.param_buffer -= 0.5 * model.grad_buffer
    assert loss < 0.3 * first
    accuracy = (model.forward(x).argmax(axis=1) == labels).mean()
    assert accuracy > 0.95


def test_get_config_describes_the_architecture():
    config = mlp(seed=3).get_config()
    assert config["dtype"] == "float32" and config["input_shape"] == [4]
    assert [l["class_name"] for l in config["layers"]] == ["Dense", "Dropout", "Dense"]
    assert config["layers"][0]["config"]["activation"] == "relu"
    rebuilt = cdl.Sequential(
        [layers.get(l["class_name"]).from_config(l["config"]) for l in config["layers"]],
        input_shape=config["input_shape"], dtype=config["dtype"], seed=config["seed"])
    assert np.array_equal(rebuilt.param_buffer, mlp(seed=3).param_buffer)
