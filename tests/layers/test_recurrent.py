"""SimpleRNN, LSTM, GRU and Bidirectional: gradients, PyTorch parity, masking,
training, saving."""
import re
import subprocess
import sys

import numpy as np
import pytest

import cdl
from cdl import layers
from helpers import ROOT, assert_allclose, check_layer, random_array

CELLS = [layers.SimpleRNN, layers.LSTM, layers.GRU]
GATES = {layers.SimpleRNN: 1, layers.LSTM: 4, layers.GRU: 3}
IDS = [cls.__name__ for cls in CELLS]
EXAMPLES = ROOT / "examples"


def _built(cls, x, **kwargs):
    layer = cls(3, dtype="float64", **kwargs)
    layer.forward(x)
    # Non-zero biases, so that gradchecks exercise them.
    rng = np.random.default_rng(5)
    layer.input_bias[...] = rng.normal(0, 0.3, layer.input_bias.shape)
    layer.recurrent_bias[...] = rng.normal(0, 0.3, layer.recurrent_bias.shape)
    # And a non-zero trainable initial state, when there is one.
    for name in ("initial_h", "initial_c"):
        if hasattr(layer, name):
            getattr(layer, name)[...] = rng.normal(0, 0.5, layer.units)
    return layer


def _state_names(cls):
    return ("initial_h", "initial_c") if cls is layers.LSTM else ("initial_h",)


# --- gradients ---------------------------------------------------------------

@pytest.mark.parametrize("cls", CELLS, ids=IDS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_gradcheck(cls, return_sequences, go_backwards):
    x = random_array((2, 5, 4), seed=1)
    layer = _built(cls, x, return_sequences=return_sequences, go_backwards=go_backwards)
    errors = cdl.gradcheck(layer, x)
    assert set(errors) == {"input"} | {f"{layer.name}.{w}" for w in
                                       ("input_kernel", "recurrent_kernel",
                                        "input_bias", "recurrent_bias")}


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "linear"])
def test_simple_rnn_activations_gradcheck(activation):
    x = random_array((2, 4, 3), seed=2)
    cdl.gradcheck(_built(layers.SimpleRNN, x, activation=activation, return_sequences=True), x)


def _check_masked_gradients(layer, x):
    """Every weight passes gradcheck; the input gradient is checked by central
    differences at real steps only (moving a padding value unmasks its step,
    so the output is not differentiable there) and is zero at padding."""
    errors = cdl.gradcheck(layer, x, raise_on_error=False)
    assert all(v < 1e-6 for k, v in errors.items() if k != "input"), errors
    y = layer.forward(x)
    r = random_array(y.shape, seed=99)
    dx = layer.backward(r)
    padding = np.all(x == layer.mask_value, axis=-1)
    assert np.all(dx[padding] == 0)
    numeric = np.zeros_like(x)
    eps = 1e-6
    for index in zip(*np.nonzero(~padding)):
        for f in range(x.shape[-1]):
            saved = x[index + (f,)]
            x[index + (f,)] = saved + eps
            up = np.sum(layer.forward(x) * r)
            x[index + (f,)] = saved - eps
            down = np.sum(layer.forward(x) * r)
            x[index + (f,)] = saved
            numeric[index + (f,)] = (up - down) / (2 * eps)
    assert np.abs(dx - numeric).max() < 1e-6 * np.abs(numeric).max()


@pytest.mark.parametrize("cls", CELLS, ids=IDS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_gradcheck_with_masking(cls, return_sequences, go_backwards):
    x = random_array((3, 6, 2), seed=3)
    x[0, 4:] = 0.0   # padded at the end
    x[1, 2:3] = 0.0  # a padding step in the middle
    layer = _built(cls, x, return_sequences=return_sequences, mask_value=0.0,
                   go_backwards=go_backwards)
    _check_masked_gradients(layer, x)


@pytest.mark.parametrize("cls", CELLS, ids=IDS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_gradcheck_trainable_initial_state(cls, return_sequences, go_backwards):
    x = random_array((2, 5, 4), seed=1)
    layer = _built(cls, x, return_sequences=return_sequences, go_backwards=go_backwards,
                   trainable_initial_state=True)
    errors = cdl.gradcheck(layer, x)
    assert set(errors) == {"input"} | {f"{layer.name}.{w}" for w in
                                       ("input_kernel", "recurrent_kernel",
                                        "input_bias", "recurrent_bias")
                                       + _state_names(cls)}


@pytest.mark.parametrize("cls", CELLS, ids=IDS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_gradcheck_trainable_initial_state_with_masking(cls, return_sequences, go_backwards):
    x = random_array((3, 6, 2), seed=3)
    x[0, 4:] = 0.0
    x[1, 2:3] = 0.0
    x[2, :2] = 0.0  # padding before the first real step: the initial state carries
    layer = _built(cls, x, return_sequences=return_sequences, mask_value=0.0,
                   go_backwards=go_backwards, trainable_initial_state=True)
    _check_masked_gradients(layer, x)
    errors = cdl.gradcheck(layer, x, raise_on_error=False)
    assert {f"{layer.name}.{w}" for w in _state_names(cls)} <= set(errors)


def test_initial_state_gradient_overwrites_and_sums_over_the_batch():
    x = random_array((4, 3, 2), seed=12)
    layer = _built(layers.LSTM, x, trainable_initial_state=True)
    y = layer.forward(x)
    r = random_array(y.shape, seed=13)
    layer.backward(r)
    first = layer.initial_h_grad.copy(), layer.initial_c_grad.copy()
    layer.backward(r)  # overwritten, not accumulated
    assert_allclose(layer.initial_h_grad, first[0])
    assert_allclose(layer.initial_c_grad, first[1])
    # Each sample alone: the batch gradient is the sum of theirs.
    total = np.zeros_like(first[0])
    for i in range(4):
        layer.forward(x[i:i + 1])
        layer.backward(r[i:i + 1])
        total += layer.initial_h_grad
    assert_allclose(total, first[0])


@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_gradcheck_trainable_initial_state(return_sequences):
    x = random_array((2, 4, 3), seed=4)
    layer = layers.Bidirectional(
        layers.LSTM(3, return_sequences=return_sequences, trainable_initial_state=True),
        dtype="float64")
    layer.forward(x)
    for sub in (layer.forward_layer, layer.backward_layer):
        assert sub.trainable_initial_state
        sub.initial_h[...] = random_array((3,), seed=41)
        sub.initial_c[...] = random_array((3,), seed=42)
    errors = cdl.gradcheck(layer, x)
    assert len(errors) == 1 + 12


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_gradcheck(merge_mode, return_sequences):
    x = random_array((2, 4, 3), seed=4)
    layer = layers.Bidirectional(layers.GRU(3, return_sequences=return_sequences),
                                 merge_mode=merge_mode, dtype="float64")
    errors = cdl.gradcheck(layer, x)
    assert len(errors) == 1 + 8


# --- PyTorch parity ----------------------------------------------------------

def _torch_module(torch, cls, layer, features):
    if cls is layers.SimpleRNN:
        module = torch.nn.RNN(features, layer.units, nonlinearity=layer.activation,
                              batch_first=True)
    else:
        module = getattr(torch.nn, cls.__name__)(features, layer.units, batch_first=True)
    module = module.double()
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(layer.input_kernel.T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(layer.recurrent_kernel.T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(layer.input_bias.copy()))
        module.bias_hh_l0.copy_(torch.from_numpy(layer.recurrent_bias.copy()))
    return module


@pytest.mark.parametrize("cls", CELLS, ids=IDS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_matches_pytorch(cls, return_sequences, go_backwards):
    torch = pytest.importorskip("torch")
    x = random_array((3, 7, 4), seed=6)
    layer = _built(cls, x, return_sequences=return_sequences, go_backwards=go_backwards)
    y = layer.forward(x)
    r = random_array(y.shape, seed=7)
    dx = layer.backward(r)

    module = _torch_module(torch, cls, layer, 4)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out, _ = module(xt.flip(1) if go_backwards else xt)
    yt = out if return_sequences else out[:, -1]
    (yt * torch.from_numpy(r)).sum().backward()

    assert_allclose(y, yt.detach().numpy())
    assert_allclose(dx, xt.grad.numpy())
    assert_allclose(layer.input_kernel_grad, module.weight_ih_l0.grad.numpy().T)
    assert_allclose(layer.recurrent_kernel_grad, module.weight_hh_l0.grad.numpy().T)
    assert_allclose(layer.input_bias_grad, module.bias_ih_l0.grad.numpy())
    assert_allclose(layer.recurrent_bias_grad, module.bias_hh_l0.grad.numpy())


@pytest.mark.parametrize("cls", CELLS, ids=IDS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_trainable_initial_state_matches_pytorch(cls, return_sequences, go_backwards):
    torch = pytest.importorskip("torch")
    n = 3
    x = random_array((n, 7, 4), seed=6)
    layer = _built(cls, x, return_sequences=return_sequences, go_backwards=go_backwards,
                   trainable_initial_state=True)
    y = layer.forward(x)
    r = random_array(y.shape, seed=7)
    dx = layer.backward(r)

    module = _torch_module(torch, cls, layer, 4)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    states = [torch.from_numpy(np.broadcast_to(getattr(layer, name), (1, n, layer.units))
                               .copy()).requires_grad_(True) for name in _state_names(cls)]
    out, _ = module(xt.flip(1) if go_backwards else xt,
                    tuple(states) if cls is layers.LSTM else states[0])
    yt = out if return_sequences else out[:, -1]
    (yt * torch.from_numpy(r)).sum().backward()

    assert_allclose(y, yt.detach().numpy())
    assert_allclose(dx, xt.grad.numpy())
    assert_allclose(layer.input_kernel_grad, module.weight_ih_l0.grad.numpy().T)
    assert_allclose(layer.recurrent_kernel_grad, module.weight_hh_l0.grad.numpy().T)
    assert_allclose(layer.input_bias_grad, module.bias_ih_l0.grad.numpy())
    assert_allclose(layer.recurrent_bias_grad, module.bias_hh_l0.grad.numpy())
    for name, state in zip(_state_names(cls), states):
        assert_allclose(getattr(layer, name + "_grad"), state.grad.numpy().sum(axis=(0, 1)))


def test_float32_matches_pytorch():
    torch = pytest.importorskip("torch")
    x64 = random_array((2, 5, 3), seed=8)
    layer64 = _built(layers.LSTM, x64, return_sequences=True)
    layer = layers.LSTM(3, return_sequences=True, dtype="float32")
    layer.forward(x64.astype(np.float32))
    for name in layer.weight_names:
        getattr(layer, name)[...] = getattr(layer64, name)
    y = layer.forward(x64.astype(np.float32))
    assert y.dtype == np.float32
    out, _ = _torch_module(torch, layers.LSTM, layer64, 3)(torch.from_numpy(x64))
    assert_allclose(y, out.detach().numpy(), dtype=np.float32)


# --- masking -----------------------------------------------------------------

@pytest.mark.parametrize("cls", CELLS, ids=IDS)
def test_masked_batch_equals_each_sequence_alone(cls, dtype):
    lengths = [5, 2, 4]
    steps = max(lengths)
    seqs = [random_array((t, 3), dtype, seed=10 + i) for i, t in enumerate(lengths)]
    x = np.zeros((len(seqs), steps, 3), dtype=dtype)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
    for return_sequences in (False, True):
        masked = cls(4, return_sequences=return_sequences, mask_value=0.0, dtype=dtype)
        y = masked.forward(x)
        gy = random_array(y.shape, dtype, seed=20)
        dx = masked.backward(gy)
        for i, s in enumerate(seqs):
            t = len(s)
            alone = cls(4, return_sequences=return_sequences, dtype=dtype)
            alone.forward(s[None])
            for name in masked.weight_names:
                getattr(alone, name)[...] = getattr(masked, name)
            ya = alone.forward(s[None])
            if return_sequences:
                assert_allclose(y[i, :t], ya[0])
                assert np.all(y[i, t:] == 0)
                dxa = alone.backward(np.ascontiguousarray(gy[i:i + 1, :t]))
            else:
                assert_allclose(y[i], ya[0])
                dxa = alone.backward(gy[i:i + 1])
            assert_allclose(dx[i, :t], dxa[0])
            assert np.all(dx[i, t:] == 0)


def test_masking_with_go_backwards_reads_real_steps_only():
    x = random_array((1, 3, 2), seed=30)
    padded = np.concatenate([x, np.zeros((1, 2, 2))], axis=1)
    plain = layers.LSTM(3, go_backwards=True, dtype="float64")
    y = plain.forward(x)
    masked = layers.LSTM(3, go_backwards=True, mask_value=0.0, dtype="float64")
    masked.forward(padded)
    for name in plain.weight_names:
        getattr(masked, name)[...] = getattr(plain, name)
    assert_allclose(masked.forward(padded), y)


def test_mask_value_is_compared_in_the_input_dtype():
    x = random_array((1, 4, 2), np.float32, seed=31)
    x[0, 2:] = -1.1
    layer = layers.GRU(3, return_sequences=True, mask_value=-1.1, dtype="float32")
    y = layer.forward(x)
    assert np.all(y[0, 2:] == 0) and np.all(y[0, :2] != 0)


def test_final_states_are_exposed():
    x = random_array((2, 5, 3), seed=32)
    layer = layers.LSTM(4, return_sequences=True, dtype="float64")
    y = layer.forward(x)
    h, c = layer.states
    assert_allclose(h, y[:, -1])
    assert c.shape == (2, 4)


# --- the layer contract, training, saving -----------------------------------

CONTRACT_CASES = [
    (lambda: layers.SimpleRNN(4), (5, 3), (4,), 3 * 4 + 4 * 4 + 2 * 4),
    (lambda: layers.LSTM(4, return_sequences=True), (5, 3), (5, 4), 4 * (3 * 4 + 4 * 4 + 8)),
    (lambda: layers.GRU(4, go_backwards=True, mask_value=0.0), (5, 3), (4,),
     3 * (3 * 4 + 4 * 4 + 8)),
    (lambda: layers.Bidirectional(layers.LSTM(2, return_sequences=True)), (5, 3), (5, 4),
     2 * 4 * (3 * 2 + 2 * 2 + 4)),
    (lambda: layers.Bidirectional(layers.GRU(2), merge_mode="sum"), (5, 3), (2,),
     2 * 3 * (3 * 2 + 2 * 2 + 4)),
]


@pytest.mark.parametrize("case", CONTRACT_CASES,
                         ids=["rnn", "lstm_seq", "gru_masked", "bidir_lstm", "bidir_sum"])
def test_layer_contract(case, dtype):
    check_layer(*case, dtype=dtype)


def test_weight_shapes_and_order():
    layer = layers.GRU(5)
    layer.forward(np.ones((2, 3, 7), dtype=np.float32))
    assert layer.weight_names == ["input_kernel", "recurrent_kernel", "input_bias",
                                  "recurrent_bias"]
    assert [p.shape for p in layer.params] == [(7, 15), (5, 15), (15,), (15,)]
    assert layer.get_config()["trainable_initial_state"] is False
    assert not hasattr(layer, "initial_h")


@pytest.mark.parametrize("cls", CELLS, ids=IDS)
def test_trainable_initial_state_weights_come_last(cls):
    layer = cls(5, trainable_initial_state=True)
    y = layer.forward(np.ones((2, 3, 7), dtype=np.float32))
    g = GATES[cls]
    names = ["input_kernel", "recurrent_kernel", "input_bias", "recurrent_bias"]
    assert layer.weight_names == names + list(_state_names(cls))
    assert [p.shape for p in layer.params] == [(7, 5 * g), (5, 5 * g), (5 * g,), (5 * g,)] + [
        (5,)] * len(_state_names(cls))
    for name in _state_names(cls):
        assert np.all(getattr(layer, name) == 0)
    assert layer.get_config()["trainable_initial_state"] is True
    # Zeros at first: the same outputs as the default layer with the same weights.
    plain = cls(5, dtype="float32")
    plain.forward(np.ones((2, 3, 7), dtype=np.float32))
    for name in plain.weight_names:
        getattr(plain, name)[...] = getattr(layer, name)
    assert_allclose(plain.forward(np.ones((2, 3, 7), dtype=np.float32)), y,
                    dtype=np.float32)


def test_trainable_initial_state_changes_the_output():
    x = random_array((2, 4, 3), seed=14)
    layer = _built(layers.GRU, x, trainable_initial_state=True)
    y = layer.forward(x)
    layer.initial_h[...] += 0.5
    assert not np.allclose(layer.forward(x), y)


def test_lstm_model_trains_with_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8, 2)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.int64)  # the sign of the first step's feature
    model = cdl.Sequential([layers.LSTM(8), layers.Dense(2)], input_shape=(8, 2), seed=0)
    model.compile(cdl.optimizers.Adam(lr=1e-2), "cross_entropy", metrics=["accuracy"])
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    result = model.evaluate(x, y)
    assert result["loss"] < 0.5 * before and result["accuracy"] > 0.85


def test_save_load_round_trip(tmp_path):
    model = cdl.Sequential([
        layers.Bidirectional(layers.LSTM(3, return_sequences=True, mask_value=0.0)),
        layers.SimpleRNN(5, activation="relu", return_sequences=True),
        layers.GRU(4, go_backwards=True),
        layers.Dense(2),
    ], input_shape=(6, 3), seed=0)
    model.compile("adam", "mse")
    x = random_array((4, 6, 3), np.float32, seed=40)
    model.fit(x, np.ones((4, 2), np.float32), epochs=1, verbose=0)
    path = tmp_path / "rnn.cdl"
    model.save(path)
    loaded = cdl.load_model(path)
    assert_allclose(loaded.forward(x), model.forward(x))
    assert loaded.get_config() == model.get_config()
    bidir = loaded.layers[0]
    assert bidir.backward_layer.go_backwards and not bidir.forward_layer.go_backwards


def test_save_load_round_trip_with_trainable_initial_state(tmp_path):
    model = cdl.Sequential([
        layers.Bidirectional(layers.LSTM(3, return_sequences=True,
                                         trainable_initial_state=True)),
        layers.SimpleRNN(5, return_sequences=True, trainable_initial_state=True),
        layers.GRU(4, trainable_initial_state=True),
        layers.Dense(2),
    ], input_shape=(6, 3), seed=0)
    model.compile("adam", "mse")
    x = random_array((4, 6, 3), np.float32, seed=40)
    model.fit(x, np.ones((4, 2), np.float32), epochs=2, verbose=0)
    gru = model.layers[2]
    assert np.any(gru.initial_h != 0)  # trained
    path = tmp_path / "rnn_state.cdl"
    model.save(path)
    loaded = cdl.load_model(path)
    assert loaded.get_config() == model.get_config()
    assert_allclose(loaded.forward(x), model.forward(x))
    pairs = [(model.layers[0].forward_layer, loaded.layers[0].forward_layer),
             (model.layers[0].backward_layer, loaded.layers[0].backward_layer),
             (model.layers[1], loaded.layers[1]), (model.layers[2], loaded.layers[2])]
    for old, new in pairs:
        assert new.trainable_initial_state
        assert new.weight_names == old.weight_names
        for name in ("initial_h", "initial_c"):
            if hasattr(old, name):
                assert np.array_equal(getattr(new, name), getattr(old, name))


# --- bad inputs --------------------------------------------------------------

@pytest.mark.parametrize("cls", CELLS, ids=IDS)
def test_bad_input_shapes_raise(cls):
    with pytest.raises(ValueError, match=r"3-D inputs .*shape \(4,\)"):
        cls(2).forward(np.ones((3, 4)))
    layer = cls(2)
    layer.forward(np.ones((3, 5, 4)))
    with pytest.raises(ValueError, match=r"3-D inputs .*shape \(3, 4\)"):
        layer.forward(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"\(batch, time steps, 4\), got an input of shape "
                                         r"\(3, 5, 3\)"):
        layer.forward(np.ones((3, 5, 3)))
    with pytest.raises(ValueError, match="gradient"):
        layer.backward(np.ones((3, 5, 2)))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="units"):
        layers.LSTM(0)
    with pytest.raises(ValueError, match="activation"):
        layers.SimpleRNN(2, activation="softmax")
    with pytest.raises(ValueError, match="merge_mode"):
        layers.Bidirectional(layers.GRU(2), merge_mode="mul")
    with pytest.raises(TypeError, match="Bidirectional"):
        layers.Bidirectional(layers.Dense(2))


def test_kernel_rejects_bad_arrays():
    from cdl._kernels import recurrent as _rec
    x = np.ones((2, 3, 4))
    w, u, b = np.ones((4, 8)), np.ones((2, 8)), np.ones(8)
    h, y = np.zeros((2, 2)), np.empty((2, 2))
    gates, hprev, cprev = np.empty((2, 3, 8)), np.empty((2, 3, 2)), np.empty((2, 3, 2))
    lstm = _rec.CELLS["LSTM"]
    with pytest.raises(ValueError, match=r"W has shape \(5, 8\), expected \(4, 8\)"):
        _rec.forward(lstm, 0, x, np.ones((5, 8)), u, b, b, None, False, False, y, gates,
                     hprev, cprev, None, h, h.copy())
    with pytest.raises(TypeError, match="same dtype"):
        _rec.forward(lstm, 0, x, w.astype(np.float32), u, b, b, None, False, False, y,
                     gates, hprev, cprev, None, h, h.copy())
    with pytest.raises(TypeError, match="uint8"):
        _rec.forward(lstm, 0, x, w, u, b, b, np.ones((2, 3)), False, False, y, gates,
                     hprev, cprev, None, h, h.copy())


# --- the example -------------------------------------------------------------

def test_sequence_example_learns_the_early_token():
    result = subprocess.run([sys.executable, str(EXAMPLES / "sequence.py")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", result.stdout).group(1))
    assert accuracy > 0.9
