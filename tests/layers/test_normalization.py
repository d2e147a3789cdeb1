"""BatchNorm, LayerNorm, GroupNorm and RMSNorm: gradients, PyTorch parity,
running statistics, and saving them with the model (layer buffers)."""
import numpy as np
import pytest

import cdl
from cdl import layers
from cdl._kernels import norm as _norm
from cdl.io import ModelFileError
from helpers import (GRADCHECK_TOL, assert_allclose, check_layer, forge, random_array,
                     split)

# --- the layer contract ----------------------------------------------------------------

CASES = [
    # (factory, per-sample input shape, output shape, parameter count)
    # momentum 0 keeps the running statistics fixed, so check_layer's fresh twin
    # agrees at inference; with scale the gamma gradient of a training batch is
    # sum(xhat) = 0 up to rounding, which check_layer's "every weight with a
    # gradient moves" cannot see, so the harness runs without gamma.
    (lambda: layers.BatchNorm(momentum=0.0, scale=False), (4,), (4,), 4),
    (lambda: layers.BatchNorm(momentum=0.0, scale=False), (2, 3), (2, 3), 3),
    (lambda: layers.LayerNorm(), (5,), (5,), 10),
    (lambda: layers.LayerNorm(), (2, 4), (2, 4), 8),
    (lambda: layers.RMSNorm(), (2, 5), (2, 5), 5),
    (lambda: layers.GroupNorm(2), (3, 4), (3, 4), 8),
    (lambda: layers.GroupNorm(3, eps=1e-3), (2, 2, 6), (2, 2, 6), 12),
]
IDS = ["BatchNorm", "BatchNorm-3d", "LayerNorm", "LayerNorm-3d", "RMSNorm", "GroupNorm",
       "GroupNorm-4d"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer_contract(case, dtype):
    check_layer(*case, dtype=dtype)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("training", [False, True])
def test_float32_agrees_with_float64(case, training):
    make_layer, input_shape, _, _ = case
    results = {}
    for dtype in (np.float32, np.float64):
        model = cdl.Sequential([make_layer()], input_shape=input_shape, dtype=dtype, seed=0)
        x = random_array((4,) + input_shape, dtype, seed=2)
        y = model.forward(x, training=training)
        dx = model.backward(random_array(y.shape, dtype, seed=3))
        results[dtype] = (y, dx, [g.copy() for g in model.grads])
    (y32, dx32, g32), (y64, dx64, g64) = results[np.float32], results[np.float64]
    assert_allclose(y32, y64, dtype=np.float32)
    assert_allclose(dx32, dx64, dtype=np.float32)
    for a, b in zip(g32, g64):
        assert_allclose(a, b, dtype=np.float32)


# --- gradients -----------------------------------------------------------------------


def randomise(layer, x, seed=7):
    """Build ``layer`` as float64 on ``x`` and give it non-trivial weights (and
    running statistics)."""
    layer.dtype = np.dtype(np.float64)
    layer.forward(x)
    rng = np.random.default_rng(seed)
    for p in layer.params:
        p[...] = rng.uniform(0.5, 1.5, p.shape) * rng.choice([-1, 1], p.shape)
    if isinstance(layer, layers.BatchNorm):
        layer.running_mean[...] = rng.standard_normal(layer.running_mean.shape)
        layer.running_var[...] = rng.uniform(0.5, 2.0, layer.running_var.shape)
    return layer


GRAD_CASES = {
    "batchnorm": (lambda: layers.BatchNorm(), (6, 4)),
    "batchnorm-spatial": (lambda: layers.BatchNorm(), (3, 4, 3)),
    "batchnorm-4d": (lambda: layers.BatchNorm(), (2, 2, 3, 2)),
    "batchnorm-no-center": (lambda: layers.BatchNorm(center=False), (5, 3)),
    "batchnorm-no-scale": (lambda: layers.BatchNorm(scale=False), (5, 3)),
    "batchnorm-bare": (lambda: layers.BatchNorm(center=False, scale=False), (5, 3)),
    "layernorm": (lambda: layers.LayerNorm(), (4, 5)),
    "layernorm-3d": (lambda: layers.LayerNorm(eps=1e-3), (3, 2, 4)),
    "rmsnorm": (lambda: layers.RMSNorm(), (4, 5)),
    "rmsnorm-3d": (lambda: layers.RMSNorm(eps=1e-3), (3, 2, 4)),
    "groupnorm": (lambda: layers.GroupNorm(2), (3, 6)),
    "groupnorm-spatial": (lambda: layers.GroupNorm(3), (2, 4, 6)),
    "groupnorm-4d": (lambda: layers.GroupNorm(2), (2, 2, 3, 4)),
    "instancenorm": (lambda: layers.GroupNorm(3), (2, 4, 3)),
}


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
@pytest.mark.parametrize("training", [False, True])
def test_gradcheck(case, training):
    make, shape = GRAD_CASES[case]
    x = random_array(shape, seed=11)
    layer = randomise(make(), x)
    errors = cdl.gradcheck(layer, x, training=training, tol=GRADCHECK_TOL)
    assert set(errors) == {"input"} | {f"{layer.name}.{n}" for n in layer.weight_names}


def test_gradcheck_of_a_model_with_batchnorm_and_a_loss():
    # No bias before BatchNorm: in training its gradient is exactly 0, which
    # a relative finite-difference check cannot confirm.
    model = cdl.Sequential([layers.Dense(5, use_bias=False), layers.BatchNorm(), layers.Tanh(),
                            layers.LayerNorm(), layers.Dense(2)],
                           input_shape=(3,), dtype="float64", seed=0)
    x = random_array((6, 3), seed=4)
    y = random_array((6, 2), seed=5)
    cdl.gradcheck(model, x, y, loss="mse", training=True, tol=GRADCHECK_TOL)
    cdl.gradcheck(model, x, y, loss="mse", training=False, tol=GRADCHECK_TOL)


# --- BatchNorm: statistics and modes ---------------------------------------------------


def test_batchnorm_training_uses_batch_statistics_and_updates_running_ones(dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((10, 3, 4)) * [1, 2, 3, 4] + [5, -1, 0, 2]).astype(dtype)
    layer = layers.BatchNorm(momentum=0.25, eps=1e-3, dtype=dtype)
    layer.forward(x[:2])  # build; inference does not touch the running statistics
    assert np.array_equal(layer.running_mean, np.zeros(4))
    assert np.array_equal(layer.running_var, np.ones(4))
    layer.gamma[...] = [1, 2, 3, 4]
    layer.beta[...] = [0, 1, 0, -1]
    flat = x.reshape(-1, 4).astype(np.float64)
    mean, var = flat.mean(0), flat.var(0)
    y = layer.forward(x, training=True)
    expected = (x - mean) / np.sqrt(var + 1e-3) * layer.gamma + layer.beta
    assert_allclose(y, expected, dtype=dtype)
    assert_allclose(layer.running_mean, 0.25 * mean, dtype=dtype)
    assert_allclose(layer.running_var, 0.75 + 0.25 * flat.var(0, ddof=1), dtype=dtype)

    # Inference: the running statistics, unchanged by the call.
    rm, rv = layer.running_mean.copy(), layer.running_var.copy()
    y = layer.forward(x)
    expected = (x - rm) / np.sqrt(rv.astype(np.float64) + 1e-3) * layer.gamma + layer.beta
    assert_allclose(y, expected, dtype=dtype)
    assert np.array_equal(layer.running_mean, rm) and np.array_equal(layer.running_var, rv)

    # Back to training: the batch statistics again, and one more update.
    y = layer.forward(x, training=True)
    assert_allclose(y.reshape(-1, 4).mean(0), layer.beta, dtype=dtype, atol=1e-4)
    assert_allclose(layer.running_mean, 0.75 * rm + 0.25 * mean, dtype=dtype)


def test_batchnorm_momentum_one_keeps_the_last_batch_and_zero_keeps_the_start():
    x = random_array((8, 3), seed=1)
    last = layers.BatchNorm(momentum=1.0)
    frozen = layers.BatchNorm(momentum=0.0)
    for layer in (last, frozen):
        layer.forward(x + 1, training=True)
        layer.forward(x, training=True)
    assert_allclose(last.running_mean, x.mean(0))
    assert_allclose(last.running_var, x.var(0, ddof=1))
    assert np.array_equal(frozen.running_mean, np.zeros(3))
    assert np.array_equal(frozen.running_var, np.ones(3))


def test_batchnorm_backward_follows_the_mode_of_the_last_forward():
    x = random_array((6, 3), seed=1)
    layer = layers.BatchNorm()
    layer.forward(x, training=False)
    dy = random_array((6, 3), seed=2)
    dx = layer.backward(dy)
    assert_allclose(dx, dy / np.sqrt(1 + 1e-5))  # gamma 1, running var 1
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    assert_allclose(dx.sum(0), np.zeros(3), atol=1e-12)  # the mean's gradient


def test_batchnorm_single_value_per_channel_in_training_is_refused():
    layer = layers.BatchNorm()
    with pytest.raises(ValueError, match=r"more than one value per channel.*\(1, 3\)"):
        layer.forward(np.ones((1, 3)), training=True)
    assert layer.forward(np.ones((1, 3))).shape == (1, 3)  # fine at inference
    spatial = layers.BatchNorm()
    assert spatial.forward(random_array((1, 4, 3)), training=True).shape == (1, 4, 3)
    model = cdl.Sequential([layers.Dense(2), layers.BatchNorm()], input_shape=(3,))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="more than one value per channel"):
        model.train_step(np.ones((1, 3)), np.ones((1, 2)))
    with pytest.raises(ValueError, match="more than one value per channel"):
        _norm.batchnorm_forward(np.ones((1, 2)), None, None, np.zeros(2), np.ones(2),
                                np.empty(2), np.empty(2), np.empty((1, 2)), True)


def test_empty_batches_pass_through():
    for layer in (layers.BatchNorm(), layers.LayerNorm(), layers.RMSNorm(),
                  layers.GroupNorm(2)):
        layer.forward(np.ones((2, 4)))
        y = layer.forward(np.ones((0, 4)))
        assert y.shape == (0, 4)
        assert layer.backward(np.ones((0, 4))).shape == (0, 4)
        assert np.array_equal(layer.grads[0], np.zeros(4))


def test_constructor_and_input_errors():
    with pytest.raises(ValueError, match="momentum"):
        layers.BatchNorm(momentum=1.5)
    for make in (lambda e: layers.BatchNorm(eps=e), layers.LayerNorm, layers.RMSNorm,
                 lambda e: layers.GroupNorm(2, eps=e)):
        with pytest.raises(ValueError, match="eps"):
            make(0.0)
    with pytest.raises(ValueError, match="groups"):
        layers.GroupNorm(0)
    with pytest.raises(ValueError, match=r"groups \(4\) must divide.*\(3, 6\)"):
        layers.GroupNorm(4).forward(np.ones((2, 3, 6)))
    layer = layers.LayerNorm()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 3)))
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(2, 4\)"):
        layer.backward(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        layer.forward(np.ones((2, 4)))


def test_kernel_entry_points_check_their_arrays():
    x = np.ones((4, 3))
    with pytest.raises(TypeError, match="float64"):
        _norm.batchnorm_forward(x, None, None, np.zeros(3), np.ones(3),
                                np.empty(3, np.float32), np.empty(3), np.empty_like(x), False)
    with pytest.raises(ValueError, match=r"gamma has shape \(2,\), expected \(3,\)"):
        _norm.batchnorm_forward(x, np.ones(2), None, np.zeros(3), np.ones(3),
                                np.empty(3), np.empty(3), np.empty_like(x), False)
    with pytest.raises(TypeError, match="same dtype"):
        _norm.batchnorm_backward(x, np.ones((4, 3), np.float32), np.zeros(3), np.ones(3),
                                 None, None, None, None, True)
    with pytest.raises(ValueError, match="groups must divide"):
        _norm.group_norm_forward(np.ones((2, 1, 3)), np.ones(3), None, np.empty((2, 2)),
                                 np.empty((2, 2)), np.empty((2, 1, 3)), 2)
    with pytest.raises(ValueError, match=r"mean has shape \(2, 1\), expected \(2, 3\)"):
        _norm.group_norm_forward(np.ones((2, 1, 3)), np.ones(3), None, np.empty((2, 1)),
                                 np.empty((2, 3)), np.empty((2, 1, 3)), 3)


# --- PyTorch parity ----------------------------------------------------------------------


def _torch_layer(torch, module, params, dtype):
    """Give a torch module the cdl layer's weights (gamma/beta -> weight/bias)."""
    module = module.to(getattr(torch, np.dtype(dtype).name))
    with torch.no_grad():
        for name, value in zip(("weight", "bias"), params):
            getattr(module, name).copy_(torch.from_numpy(np.array(value)))
    return module


def _compare(torch, layer, module, x, dtype, training, channels_first):
    """Forward and backward of a cdl layer and a torch module on the same input;
    ``channels_first`` moves the last axis to axis 1 for torch."""
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = module(tx.movedim(-1, 1) if channels_first else tx)
    ty = ty.movedim(1, -1) if channels_first else ty
    y = layer.forward(x, training=training)
    assert_allclose(y, ty.detach().numpy(), dtype=dtype)
    dy = random_array(y.shape, dtype, seed=5)
    (ty * torch.from_numpy(dy)).sum().backward()
    assert_allclose(layer.backward(dy), tx.grad.numpy(), dtype=dtype)
    torch_params = [p for p in (module.weight, getattr(module, "bias", None)) if p is not None]
    assert len(torch_params) == len(layer.grads)
    for grad, p in zip(layer.grads, torch_params):
        assert_allclose(grad, p.grad.numpy(), dtype=dtype)
    module.zero_grad()


def test_batchnorm_matches_torch_over_several_steps(dtype):
    torch = pytest.importorskip("torch")
    layer = layers.BatchNorm(momentum=0.3, eps=1e-4, dtype=dtype)
    layer.forward(np.zeros((2, 5, 3), dtype))
    rng = np.random.default_rng(0)
    layer.gamma[...] = rng.uniform(0.5, 2, 3)
    layer.beta[...] = rng.standard_normal(3)
    module = _torch_layer(torch, torch.nn.BatchNorm1d(3, eps=1e-4, momentum=0.3),
                          layer.params, dtype)
    for step in range(4):  # channels-last (N, L, C) against BatchNorm1d's (N, C, L)
        x = (random_array((6, 5, 3), dtype, seed=step) * 2 + step).astype(dtype)
        module.train()
        _compare(torch, layer, module, x, dtype, True, True)
        assert_allclose(layer.running_mean, module.running_mean.numpy(), dtype=dtype)
        assert_allclose(layer.running_var, module.running_var.numpy(), dtype=dtype)
    module.eval()
    _compare(torch, layer, module, random_array((4, 5, 3), dtype, seed=9), dtype, False, True)


def test_batchnorm_matches_torch_batchnorm2d_and_1d_on_matrices(dtype):
    torch = pytest.importorskip("torch")
    layer = layers.BatchNorm(dtype=dtype)
    module = _torch_layer(torch, torch.nn.BatchNorm2d(4), [], dtype)
    x = random_array((3, 5, 2, 4), dtype, seed=1)  # NHWC against NCHW
    _compare(torch, layer, module, x, dtype, True, True)
    assert_allclose(layer.running_var, module.running_var.numpy(), dtype=dtype)
    flat = layers.BatchNorm(dtype=dtype)
    module = _torch_layer(torch, torch.nn.BatchNorm1d(4), [], dtype)
    _compare(torch, flat, module, random_array((7, 4), dtype, seed=2), dtype, True, False)
    assert_allclose(flat.running_var, module.running_var.numpy(), dtype=dtype)


def _with_random_affine(layer, x, seed=3):
    layer.forward(x)
    rng = np.random.default_rng(seed)
    for p in layer.params:
        p[...] = rng.uniform(-2, 2, p.shape)
    return layer


def test_layernorm_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    x = random_array((3, 4, 6), dtype, seed=1) * 3 + 1
    layer = _with_random_affine(layers.LayerNorm(eps=1e-4, dtype=dtype), x)
    module = _torch_layer(torch, torch.nn.LayerNorm(6, eps=1e-4), layer.params, dtype)
    _compare(torch, layer, module, x.astype(dtype), dtype, True, False)


def test_rmsnorm_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    x = random_array((3, 4, 6), dtype, seed=1) * 3 + 1
    layer = _with_random_affine(layers.RMSNorm(dtype=dtype), x)
    module = _torch_layer(torch, torch.nn.RMSNorm(6), layer.params, dtype)
    _compare(torch, layer, module, x.astype(dtype), dtype, True, False)


@pytest.mark.parametrize("groups,shape", [(3, (2, 5, 6)), (1, (2, 3, 4, 4)), (3, (3, 9)),
                                          (2, (2, 2, 3, 4))])
def test_groupnorm_matches_torch_on_the_channels_first_transpose(dtype, groups, shape):
    torch = pytest.importorskip("torch")
    x = (random_array(shape, dtype, seed=1) * 2 - 1).astype(dtype)
    layer = _with_random_affine(layers.GroupNorm(groups, eps=1e-4, dtype=dtype), x)
    module = _torch_layer(torch, torch.nn.GroupNorm(groups, shape[-1], eps=1e-4),
                          layer.params, dtype)
    _compare(torch, layer, module, x, dtype, True, True)


# --- buffers: saving running statistics with the model ------------------------------------


def bn_model(dtype="float32", seed=0, **kwargs):
    return cdl.Sequential([layers.Dense(6), layers.BatchNorm(momentum=0.2), layers.ReLU(),
                           layers.Dense(2)], dtype=dtype, seed=seed, **kwargs)


def trained_bn_model(dtype="float32"):
    model = bn_model(dtype, input_shape=(4,))
    model.compile("adam", "mse")
    x, y = random_array((64, 4), seed=1), random_array((64, 2), seed=2)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return model, x, y


def test_buffers_are_not_weights_and_list_the_running_statistics():
    model, _, _ = trained_bn_model()
    bn = model.layers[1]
    assert bn.weight_names == ["gamma", "beta"]
    assert list(bn.buffers()) == ["running_mean", "running_var"]
    assert bn.buffers()["running_mean"] is bn.running_mean
    assert not any(np.shares_memory(bn.running_mean, p) for p in model.params)
    assert not np.array_equal(bn.running_mean, np.zeros(6))  # updated by fit
    assert layers.BatchNorm().buffers() == {}  # unbuilt
    assert model.layers[0].buffers() == {}


def test_model_with_batchnorm_round_trips_with_its_running_statistics(dtype, tmp_path):
    model, x, y = trained_bn_model(dtype)
    path = tmp_path / "bn.cdl"
    model.save(path)
    loaded = cdl.load_model(path)
    for a, b in zip(loaded.layers[1].buffers().values(), model.layers[1].buffers().values()):
        assert a.dtype == np.dtype(dtype) and np.array_equal(a, b)
    assert np.array_equal(loaded.predict(x), model.predict(x))
    # Training continues identically, running statistics included.
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    assert np.array_equal(loaded.param_buffer, model.param_buffer)
    assert np.array_equal(loaded.layers[1].running_var, model.layers[1].running_var)


def test_file_records_buffers_in_header_and_array_table(tmp_path):

    model, _, _ = trained_bn_model()
    model.save(tmp_path / "bn.cdl")
    _, header, _ = split((tmp_path / "bn.cdl").read_bytes())
    name = model.layers[1].name
    assert header["buffers"] == [
        {"layer": name, "buffer": b, "array": f"buffers/{name}/{b}"}
        for b in ("running_mean", "running_var")]
    table = {e["name"]: e for e in header["arrays"]}
    assert table[f"buffers/{name}/running_var"]["shape"] == [6]
    # An unbuilt model has no buffers yet, and round-trips.
    bn_model().save(tmp_path / "unbuilt.cdl")
    _, header, _ = split((tmp_path / "unbuilt.cdl").read_bytes())
    assert header["buffers"] == []
    assert not cdl.load_model(tmp_path / "unbuilt.cdl").built


def test_weights_files_carry_buffers_and_load_by_position(tmp_path):
    model, x, _ = trained_bn_model()
    path = tmp_path / "w.cdl"
    model.save_weights(path)
    other = bn_model(seed=5)  # other layer names, unbuilt
    other.load_weights(path)
    assert np.array_equal(other.layers[1].running_mean, model.layers[1].running_mean)
    assert np.array_equal(other.predict(x), model.predict(x))
    wide = bn_model("float64", seed=1, input_shape=(4,))
    wide.load_weights(path)  # converted to the model's dtype
    assert_allclose(wide.layers[1].running_var, model.layers[1].running_var.astype(np.float64))
    plain = cdl.Sequential([layers.Dense(6), layers.LayerNorm(), layers.ReLU(), layers.Dense(2)],
                           input_shape=(4,))
    with pytest.raises(ValueError, match="has 2 buffers, the model 0"):
        plain.load_weights(path)  # same weight shapes, but no place for the statistics


def test_tampered_buffers_are_rejected(tmp_path):

    model, _, _ = trained_bn_model()
    path = tmp_path / "bn.cdl"
    model.save(path)
    _, header, section = split(path.read_bytes())

    def load_forged(mutate, match):
        h = json_copy(header)
        mutate(h)
        forge(path, h, section)
        with pytest.raises(ModelFileError, match=match):
            cdl.load_model(path)

    name = model.layers[1].name
    # A buffer entry removed leaves its array unreferenced: named either way.
    load_forged(lambda h: h["buffers"].pop(), r"(missing|nothing refers to): \[.*running_var'\]")
    load_forged(lambda h: h.pop("buffers"), "missing|nothing refers to")
    load_forged(lambda h: h["buffers"][0].update(array="buffers/nowhere"), "missing array")
    load_forged(lambda h: h["buffers"][1].update(layer="other"), "unknown")

    def reshape(h):
        entry = next(e for e in h["arrays"] if e["name"] == f"buffers/{name}/running_mean")
        entry["shape"], entry["nbytes"] = [3], 12
    # The model's statistics need more values than the file's now hold: refused
    # while building, before they are allocated.
    load_forged(reshape, r"running_var of shape \(6,\) brings the buffers to 12 values, "
                         r"more buffers than the 9 values the file holds")


def json_copy(value):
    import json
    return json.loads(json.dumps(value))


def test_user_layer_buffers_are_saved(tmp_path, monkeypatch):
    from cdl import layers as layer_module

    class Counter(layers.Layer):
        """Counts the samples it has seen in training (a buffer)."""

        def build(self, input_shape):
            self.seen = np.zeros(1)

        def buffers(self):
            return {} if not self.built else {"seen": self.seen}

        def forward(self, x, training=False):
            x = self._check_input(x)
            if training:
                self.seen += x.shape[0]
            return x

        def backward(self, grad):
            return grad

    monkeypatch.setattr(layer_module, "_REGISTERED", {})
    cdl.register_layer(Counter)
    model = cdl.Sequential([layers.Dense(2), Counter()], input_shape=(3,), dtype="float64")
    model.forward(np.ones((5, 3)), training=True)
    model.save(tmp_path / "c.cdl")
    assert cdl.load_model(tmp_path / "c.cdl").layers[1].seen[0] == 5
