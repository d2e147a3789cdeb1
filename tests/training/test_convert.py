"""cdl.convert: PyTorch nn.Sequential models to cdl and back, outputs and
gradients equal, training continuing, and refusals naming the module."""
import copy
import subprocess
import sys

import numpy as np
import pytest

import cdl
from cdl import layers

torch = pytest.importorskip("torch", reason="cdl.convert's tests compare with PyTorch")
nn = torch.nn

from cdl.convert import from_torch, recurrent_output, to_torch  # noqa: E402

TOL = {np.float32: 1e-5, np.float64: 1e-10}


def _seeded(make):
    torch.manual_seed(0)
    return make()


def _randomise(net):
    """Non-trivial running statistics and affine parameters (PyTorch starts
    them at 0 and 1, which would hide a mixed-up copy)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.track_running_stats:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm,
                              nn.RMSNorm, nn.PReLU)):
                for p in m.parameters():
                    p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return net


def _inputs(input_shape, dtype, ints=None, batch=3):
    rng = np.random.default_rng(0)
    if ints is not None:
        return rng.integers(0, ints, size=(batch,) + input_shape).astype(np.int64)
    return rng.standard_normal((batch,) + input_shape).astype(dtype)


def _channels_last(x, spatial):
    return np.moveaxis(x, 1, -1) if spatial and x.ndim >= 3 else x


def _check(net, input_shape, dtype=np.float32, spatial=False, ints=None, training=False,
           grads=True):
    """from_torch(net): outputs and (one backward) gradients equal PyTorch's;
    to_torch of the result gives PyTorch's outputs back."""
    net = _randomise(net).to(torch.float64 if dtype == np.float64 else torch.float32)
    net.train(training)
    model = from_torch(net, input_shape, dtype=None if any(True for _ in net.parameters())
                       else dtype)
    assert model.dtype == np.dtype(dtype)
    x = _inputs(input_shape, dtype, ints)
    xt = torch.from_numpy(x)
    if ints is None:
        xt.requires_grad_(True)
    y_torch = net(xt)
    y = model.forward(_channels_last(x, spatial), training=training)
    expected = _channels_last(y_torch.detach().numpy(), spatial)
    tol = TOL[dtype]
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
    if grads:
        r = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
        rt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(r, -1, 1)) if spatial
                              and r.ndim >= 3 else r)
        (y_torch * rt).sum().backward()
        dx = model.backward(r)
        if ints is None:
            # PyTorch's float64 Hardsigmoid backward multiplies by 1/6 rounded
            # to float32 (3e-8 relative), which cdl's does not.
            grad_tol = 1e-7 if any(isinstance(m, nn.Hardsigmoid) for m in net.modules()) \
                else tol * 10
            np.testing.assert_allclose(dx, _channels_last(xt.grad.numpy(), spatial),
                                       rtol=grad_tol, atol=grad_tol)
        # The gradients, converted as the weights are: a copy of the
        # module holding its gradients in place of its weights.
        grad_net = copy.deepcopy(net)
        with torch.no_grad():
            for p, q in zip(net.parameters(), grad_net.parameters()):
                q.copy_(p.grad)
        grad_model = from_torch(grad_net, input_shape, dtype=dtype)
        assert len(model.grads) == len(grad_model.params)
        for got, want in zip(model.grads, grad_model.params):
            np.testing.assert_allclose(got, want, rtol=tol * 10, atol=tol * 10)
    # And back: to_torch gives PyTorch's outputs (in eval mode: batch norms'
    # running statistics have moved in training).
    back = to_torch(model).train(False)
    net.train(False)
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.from_numpy(x)).numpy(),
                                   net(torch.from_numpy(x)).numpy(), rtol=tol, atol=tol)
    return model


# --- every module alone ---------------------------------------------------------------------

FLAT_MODULES = {
    "linear": lambda: nn.Linear(6, 4),
    "linear_no_bias": lambda: nn.Linear(6, 4, bias=False),
    "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh, "gelu": nn.GELU, "elu": lambda: nn.ELU(0.7), "selu": nn.SELU,
    "silu": nn.SiLU, "mish": nn.Mish, "softplus": lambda: nn.Softplus(2.0, 5.0),
    "softsign": nn.Softsign, "hardsigmoid": nn.Hardsigmoid, "hardswish": nn.Hardswish,
    "relu6": nn.ReLU6, "hardtanh06": lambda: nn.Hardtanh(0.0, 6.0),
    "softmax": lambda: nn.Softmax(dim=-1), "softmax1": lambda: nn.Softmax(dim=1),
    "log_softmax": lambda: nn.LogSoftmax(dim=-1),
    "prelu1": nn.PReLU, "prelu6": lambda: nn.PReLU(6),
    "dropout": lambda: nn.Dropout(0.3), "identity": nn.Identity,
    "batchnorm1d": lambda: nn.BatchNorm1d(6),
    "batchnorm1d_cumulative": lambda: nn.BatchNorm1d(6, momentum=None, eps=1e-3),
    "batchnorm1d_no_affine": lambda: nn.BatchNorm1d(6, affine=False),
    "layernorm": lambda: nn.LayerNorm(6, eps=1e-4),
    "layernorm_no_bias": lambda: nn.LayerNorm(6, bias=False),
    "layernorm_no_affine": lambda: nn.LayerNorm(6, elementwise_affine=False),
    "groupnorm": lambda: nn.GroupNorm(3, 6), "rmsnorm": lambda: nn.RMSNorm(6),
    "rmsnorm_eps": lambda: nn.RMSNorm(6, eps=1e-3, elementwise_affine=False),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(FLAT_MODULES))
def test_flat_module_alone(name, dtype):
    net = _seeded(lambda: nn.Sequential(FLAT_MODULES[name]()))
    _check(net, (6,), dtype)


SPATIAL_MODULES = {
    "conv1d": ((3, 10), lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1, dilation=1)),
    "conv1d_dilated": ((3, 10), lambda: nn.Conv1d(3, 4, 3, dilation=2, bias=False)),
    "conv1d_same": ((3, 10), lambda: nn.Conv1d(3, 4, 3, padding="same")),
    "conv2d": ((3, 7, 8), lambda: nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0))),
    "conv2d_valid": ((3, 7, 8), lambda: nn.Conv2d(3, 4, 3, padding="valid", dilation=2)),
    "conv_transpose2d": ((3, 4, 5), lambda: nn.ConvTranspose2d(3, 2, 3, stride=2)),
    "conv_transpose2d_small": ((3, 4, 5), lambda: nn.ConvTranspose2d(3, 2, 2, stride=3,
                                                                     output_padding=1)),
    "maxpool1d": ((3, 11), lambda: nn.MaxPool1d(3, 2, padding=1, ceil_mode=True)),
    "avgpool1d": ((3, 11), lambda: nn.AvgPool1d(3, 2, padding=1, count_include_pad=False)),
    "maxpool2d": ((2, 7, 9), lambda: nn.MaxPool2d(2)),
    "maxpool2d_options": ((2, 7, 9), lambda: nn.MaxPool2d(3, 2, padding=1, dilation=1,
                                                          ceil_mode=True)),
    "avgpool2d": ((2, 7, 9), lambda: nn.AvgPool2d(3, 2, padding=1)),
    "avgpool2d_divisor": ((2, 7, 9), lambda: nn.AvgPool2d(2, divisor_override=3)),
    "adaptive_avg1d": ((3, 10), lambda: nn.AdaptiveAvgPool1d(4)),
    "adaptive_max1d": ((3, 10), lambda: nn.AdaptiveMaxPool1d(3)),
    "adaptive_avg2d": ((3, 7, 9), lambda: nn.AdaptiveAvgPool2d((3, 4))),
    "adaptive_max2d": ((3, 7, 9), lambda: nn.AdaptiveMaxPool2d(2)),
    "batchnorm2d": ((3, 4, 5), lambda: nn.BatchNorm2d(3)),
    "batchnorm1d_3d": ((3, 6), lambda: nn.BatchNorm1d(3)),
    "groupnorm2d": ((4, 3, 3), lambda: nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4))),
    "dropout2d": ((3, 4, 5), lambda: nn.Sequential(nn.Conv2d(3, 3, 1), nn.Dropout2d(0.5))),
    "dropout1d": ((3, 6), lambda: nn.Sequential(nn.Conv1d(3, 3, 1), nn.Dropout1d(0.5))),
    "upsample_nearest": ((2, 3, 4), lambda: nn.Upsample(scale_factor=2)),
    "upsample_bilinear": ((2, 3, 4), lambda: nn.Upsample(scale_factor=(2, 3),
                                                          mode="bilinear")),
    "upsample_aligned": ((2, 3, 4), lambda: nn.UpsamplingBilinear2d(scale_factor=2)),
    "zeropad2d": ((2, 3, 4), lambda: nn.ZeroPad2d((1, 2, 0, 3))),
    "zeropad1d": ((2, 5), lambda: nn.ZeroPad1d((2, 1))),
    "conv_softmax_channels": ((3, 4, 5), lambda: nn.Sequential(nn.Conv2d(3, 4, 1),
                                                               nn.Softmax(dim=1))),
    "conv_prelu": ((3, 4, 5), lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.PReLU(4))),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(SPATIAL_MODULES))
def test_spatial_module_alone(name, dtype):
    shape, make = SPATIAL_MODULES[name]
    net = _seeded(lambda: nn.Sequential(make()))
    _check(net, shape, dtype, spatial=True)


RECURRENT = {
    "lstm": lambda: nn.LSTM(5, 4, batch_first=True),
    "gru": lambda: nn.GRU(5, 4, batch_first=True),
    "rnn_relu": lambda: nn.RNN(5, 4, nonlinearity="relu", batch_first=True),
    "lstm_stacked": lambda: nn.LSTM(5, 4, num_layers=2, batch_first=True),
    "gru_bidirectional": lambda: nn.GRU(5, 3, batch_first=True, bidirectional=True),
    "lstm_bi_stacked": lambda: nn.LSTM(5, 3, num_layers=2, dropout=0.2, batch_first=True,
                                       bidirectional=True),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sequences", [True, False])
@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_recurrent_alone(name, sequences, dtype):
    net = _seeded(lambda: nn.Sequential(recurrent_output(RECURRENT[name](), sequences)))
    model = _check(net, (6, 5), dtype)
    assert model.layers[-1].output_shape[0] == (6 if sequences else model.output_shape[0])


def test_bare_recurrent_module_is_its_output_sequence():
    net = _seeded(lambda: nn.Sequential(nn.GRU(5, 4, batch_first=True)))
    x = _inputs((6, 5), np.float32)
    model = from_torch(net, (6, 5))
    np.testing.assert_allclose(model.forward(x), net(torch.from_numpy(x))[0].detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_embedding_alone():
    net = _seeded(lambda: nn.Sequential(nn.Embedding(11, 4)))
    _check(net, (7,), ints=11)


# --- realistic stacks -----------------------------------------------------------------------

def _mlp():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2),
                         nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Tanh()),
                         nn.Linear(16, 3))


def _lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(16 * 2 * 2, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10),
        nn.LogSoftmax(dim=1))


def _text_classifier():
    return nn.Sequential(nn.Embedding(50, 8),
                         recurrent_output(nn.LSTM(8, 12, batch_first=True)),
                         nn.Linear(12, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp(dtype):
    _check(_seeded(_mlp), (8,), dtype)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lenet_with_batchnorm_and_flatten(dtype, training):
    net = _seeded(_lenet)
    if training:       # batch statistics in both; no dropout to compare
        net[10].p = 0.0
    model = _check(net, (1, 16, 16), dtype, spatial=True, training=training)
    assert model.input_shape == (16, 16, 1)


def test_flatten_then_batchnorm_is_permuted():
    net = _seeded(lambda: nn.Sequential(nn.Conv2d(2, 3, 1), nn.Flatten(), nn.ReLU(),
                                         nn.BatchNorm1d(3 * 4 * 5), nn.Linear(60, 2)))
    _check(net, (2, 4, 5), spatial=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_text_classifier(dtype):
    net = _seeded(_text_classifier)
    _check(net, (9,), dtype, ints=50)


def test_conv1d_into_recurrent_stack():
    # Channels-first (C, L) in PyTorch; the LSTM after Conv1d needs (L, C),
    # which is cdl's layout already: a permute in PyTorch, none in cdl.
    net = _seeded(lambda: nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                                        nn.Linear(4 * 8, 2)))
    _check(net, (3, 10), spatial=True)


def test_training_continues():
    net = _seeded(_mlp)
    model = from_torch(net, (8,))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    model.compile(cdl.optimizers.Adam(lr=1e-2), "cross_entropy")
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    # And back to PyTorch with the trained weights.
    back = to_torch(model).train(False)
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.from_numpy(x)).numpy(), model.predict(x),
                                   rtol=1e-5, atol=1e-5)


def test_sgd_step_matches_torch():
    net = _seeded(lambda: nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)))
    model = from_torch(net, (4,))
    x = _inputs((4,), np.float32, batch=5)
    target = np.random.default_rng(3).standard_normal((5, 2)).astype(np.float32)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = ((net(torch.from_numpy(x)) - torch.from_numpy(target)) ** 2).mean()
    loss.backward()
    opt.step()
    model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    model.fit(x, target, epochs=1, batch_size=5, shuffle=False, verbose=0)
    np.testing.assert_allclose(model.predict(x), net(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


# --- round trips from cdl -------------------------------------------------------------------

def test_round_trip_from_cdl_is_exact():
    model = cdl.Sequential([
        layers.Conv2D(4, 3, padding=1, activation="relu"), layers.BatchNorm(),
        layers.MaxPool2D(2), layers.Flatten(), layers.Dense(8, activation="gelu"),
        layers.LayerNorm(), layers.Dense(3), layers.Softmax()],
        input_shape=(6, 6, 2), seed=0, dtype="float64")
    model.layers[1].running_mean[...] = np.arange(4) * 0.1
    net = to_torch(model)
    again = from_torch(net, (2, 6, 6))
    for a, b in zip(model.params, again.params):
        np.testing.assert_array_equal(a, b)
    x = _inputs((6, 6, 2), np.float64)
    np.testing.assert_array_equal(model.predict(x), again.predict(x))


@pytest.mark.parametrize("make", sorted(FLAT_MODULES) + ["lenet", "text", "mlp"])
def test_round_trip_to_torch_from_torch(make):
    factories = {"lenet": (_lenet, (1, 16, 16)), "text": (_text_classifier, (9,)),
                 "mlp": (_mlp, (8,))}
    factory, shape = factories.get(make, (lambda: nn.Sequential(FLAT_MODULES[make]()), (6,)))
    net = _randomise(_seeded(factory))
    back = to_torch(from_torch(net, shape))
    ours = dict(net.state_dict())
    theirs = dict(back.state_dict())
    assert len(ours) == len(theirs)
    for (ka, a), (kb, b) in zip(sorted(ours.items()), sorted(theirs.items())):
        assert a.shape == b.shape, (ka, kb)
        assert torch.equal(a, b), (ka, kb)


# --- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("module, shape, words", [
    (nn.Sequential(nn.Linear(4, 4), nn.Bilinear(4, 4, 2)), (4,), ["'1'", "Bilinear"]),
    (nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.GELU(approximate="tanh"))), (4,),
     ["'0.1'", "GELU", "approximate"]),
    (nn.Sequential(nn.Conv2d(2, 4, 3, groups=2)), (2, 5, 5), ["'0'", "Conv2d", "groups"]),
    (nn.Sequential(nn.Conv2d(2, 4, 3, padding_mode="reflect")), (2, 5, 5), ["padding_mode"]),
    (nn.Sequential(nn.LSTM(4, 3)), (5, 4), ["LSTM", "batch_first"]),
    (nn.Sequential(nn.LSTM(4, 3, batch_first=True, proj_size=2)), (5, 4), ["proj_size"]),
    (nn.Sequential(nn.GRU(4, 3, batch_first=True, bias=False)), (5, 4), ["bias=False"]),
    (nn.Sequential(nn.Embedding(5, 3, max_norm=1.0)), (4,), ["Embedding", "max_norm"]),
    (nn.Sequential(nn.Softmax(dim=0)), (4,), ["Softmax", "dim=0"]),
    (nn.Sequential(nn.Hardtanh()), (4,), ["Hardtanh", "min_val"]),
    (nn.Sequential(nn.Upsample(size=(4, 4))), (2, 2, 2), ["Upsample", "size"]),
    (nn.Sequential(nn.Upsample(scale_factor=2, mode="bicubic")), (2, 2, 2), ["bicubic"]),
    (nn.Sequential(nn.MaxPool2d(2, return_indices=True)), (2, 4, 4), ["return_indices"]),
    (nn.Sequential(nn.Conv2d(2, 3, 3), nn.Linear(3, 2)), (2, 5, 5), ["'1'", "Linear"]),
    (nn.Sequential(nn.Conv2d(2, 3, 1), nn.Flatten(), nn.LayerNorm(75)), (2, 5, 5),
     ["'2'", "LayerNorm", "Flatten"]),
    (nn.Sequential(nn.Flatten(0)), (4,), ["Flatten", "start_dim"]),
    (nn.Sequential(nn.RMSNorm((2, 3))), (2, 3), ["RMSNorm", "normalized_shape"]),
    (nn.Sequential(nn.ConvTranspose2d(2, 2, 3, padding=1)), (2, 4, 4), ["padding"]),
    (nn.Sequential(nn.AlphaDropout(0.1)), (4,), ["AlphaDropout"]),
])
def test_refusals_name_the_module(module, shape, words):
    with pytest.raises(ValueError) as info:
        from_torch(module, shape)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_bad_arguments():
    with pytest.raises(TypeError, match="nn.Sequential"):
        from_torch(nn.Linear(2, 2), (2,))
    with pytest.raises(ValueError, match="input_shape"):
        from_torch(nn.Sequential(nn.Linear(2, 2)), "2")
    with pytest.raises(TypeError, match="cdl.Sequential"):
        to_torch(nn.Sequential())
    with pytest.raises(TypeError, match="LSTM"):
        recurrent_output(nn.Linear(2, 2))


@pytest.mark.parametrize("layer, words", [
    (layers.Conv1D(2, 3, padding="causal"), ["causal"]),
    (layers.Embedding(5, 2, mask_zero=True), ["mask_zero"]),
    (layers.Bidirectional(layers.GRU(3), merge_mode="sum"), ["merge_mode"]),
    (layers.LSTM(3, go_backwards=True), ["go_backwards"]),
    (layers.GaussianNoise(0.1), ["GaussianNoise"]),
])
def test_to_torch_refusals(layer, words):
    shape = (5,) if isinstance(layer, layers.Embedding) else (6, 4)
    model = cdl.Sequential([layer], input_shape=shape, seed=0)
    with pytest.raises(ValueError) as info:
        to_torch(model)
    assert layer.name in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_imports_without_torch(tmp_path):
    # cdl and cdl.convert import with torch unavailable; the functions then
    # raise an ImportError naming torch. Run outside the source tree, so the
    # installed cdl is the one imported.
    code = ("import sys; sys.modules['torch'] = None\n"
            "import cdl, cdl.convert\n"
            "try:\n    cdl.convert.from_torch(None, (2,))\n"
            "except ImportError as e:\n    assert 'torch' in str(e); print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.stdout.strip() == "ok", out.stderr


def test_embedding_padding_idx_is_copied():
    net = _seeded(lambda: nn.Sequential(nn.Embedding(11, 4, padding_idx=0)))
    model = from_torch(net, (7,))
    x = _inputs((7,), np.float32, ints=11)
    np.testing.assert_array_equal(model.predict(x), net(torch.from_numpy(x)).detach().numpy())


def test_free_time_axis():
    net = _seeded(lambda: nn.Sequential(recurrent_output(nn.GRU(5, 4, batch_first=True)),
                                        nn.Linear(4, 2)))
    model = from_torch(net, (None, 5))
    for steps in (3, 8):
        x = _inputs((steps, 5), np.float32)
        np.testing.assert_allclose(model.predict(x),
                                   net(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_to_torch_strided_same_padding():
    # Even padding at both ends: explicit padding in PyTorch; uneven: refused.
    x = _inputs((7, 7, 2), np.float64)
    model = cdl.Sequential([layers.Conv2D(3, 3, strides=2, padding="same")],
                           input_shape=(7, 7, 2), seed=0, dtype="float64")
    net = to_torch(model)
    with torch.no_grad():
        y = net(torch.from_numpy(np.moveaxis(x, -1, 1).copy())).numpy()
    np.testing.assert_allclose(np.moveaxis(y, 1, -1), model.predict(x), rtol=1e-10,
                               atol=1e-10)
    uneven = cdl.Sequential([layers.Conv2D(3, 3, strides=2, padding="same")],
                            input_shape=(8, 8, 2), seed=0)
    with pytest.raises(ValueError, match="padding='same'"):
        to_torch(uneven)


def test_to_torch_fused_activations_and_leaky_slopes():
    model = cdl.Sequential([layers.Dense(5, activation="elu"), layers.LeakyReLU(0.3),
                            layers.Softplus(beta=2.0, threshold=4.0), layers.Dense(2)],
                           input_shape=(3,), seed=0, dtype="float64")
    net = to_torch(model)
    assert [type(m).__name__ for m in net] == ["Linear", "ELU", "LeakyReLU", "Softplus",
                                               "Linear"]
    x = _inputs((3,), np.float64)
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(), model.predict(x),
                                   rtol=1e-10, atol=1e-10)


def test_channel_modules_on_sequences_are_refused():
    # After a recurrent layer, (N, T, H): PyTorch's BatchNorm1d, GroupNorm and
    # PReLU(H) take axis 1 (time) as the channels, cdl's layers the last axis.
    for module in (nn.BatchNorm1d(4), nn.GroupNorm(2, 4), nn.PReLU(4)):
        net = nn.Sequential(recurrent_output(nn.GRU(3, 4, batch_first=True), True), module)
        with pytest.raises(ValueError, match=rf"'1' \({type(module).__name__}\).*axis 1"):
            from_torch(net, (4, 3))
    for layer in (layers.BatchNorm(), layers.GroupNorm(2), layers.PReLU()):
        model = cdl.Sequential([layers.GRU(4, return_sequences=True), layer],
                               input_shape=(5, 3), seed=0)
        with pytest.raises(ValueError, match="axis 1"):
            to_torch(model)
