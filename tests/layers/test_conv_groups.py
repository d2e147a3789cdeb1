"""Grouped, depthwise and separable convolutions, explicit (asymmetric) padding
and PyTorch's transposed-convolution padding: gradients, PyTorch parity,
configs, saving, errors."""
import json

import numpy as np
import pytest

import cdl
from cdl import layers
from cdl._kernels import conv as _conv
from cdl.layers import conv as conv_module
from helpers import GRADCHECK_TOL, random_array

TORCH_TOL = dict(rtol=1e-10, atol=1e-10)


def built(layer, input_shape, dtype=np.float64, seed=0):
    """Build ``layer`` in a model (seeded weights) and give it a random bias."""
    model = cdl.Sequential([layer], input_shape=input_shape, dtype=dtype, seed=seed)
    if getattr(layer, "use_bias", False):
        layer.bias[...] = random_array(layer.bias.shape, dtype, seed=seed + 7)
    return model


def to_torch(torch, array, axes=None, **kwargs):
    """A float64 torch copy of ``array.transpose(axes)``."""
    if axes is not None:
        array = array.transpose(axes)
    return torch.tensor(np.ascontiguousarray(array), dtype=torch.float64, **kwargs)


def torch_pads(layer, spatial):
    """(before, after) pads per spatial axis of a built Conv1D/Conv2D layer."""
    return [conv_module._axis_padding(size, k, s, d, layer.padding, axis)
            for axis, (size, k, s, d) in enumerate(zip(spatial, layer.kernel_size,
                                                       layer.strides, layer.dilation_rate))]


def flat_pads(pads):
    """F.pad's argument: the last axis first."""
    return [p for pair in reversed(pads) for p in pair]


ACTS = {None: lambda t, F: t, "relu": lambda t, F: t.relu(), "tanh": lambda t, F: t.tanh(),
        "softmax": lambda t, F: t.softmax(1), "gelu": lambda t, F: F.gelu(t)}


def run_cdl(layer, shape, n=3, seed=1):
    built(layer, shape)
    x = random_array((n,) + shape, seed=seed)
    y = layer.forward(x)
    dy = random_array(y.shape, seed=seed + 1)
    dx = layer.backward(dy)
    return x, y, dy, dx


def gradcheck_then_rerun(layer, x, dy):
    """Gradcheck ``layer`` on part of ``x``, then run x and dy through it
    again (the gradcheck's passes overwrite the layer's gradients)."""
    assert max(cdl.gradcheck(layer, x[:2]).values()) < GRADCHECK_TOL
    y = layer.forward(x)
    return y, layer.backward(dy)


def check_torch(torch, layer, x, y, dy, dx, params, forward_t, rank):
    """``forward_t(xt, *params_t)`` in channels-first torch must give y, and
    its gradients dx and each layer gradient; ``params`` maps a cdl weight
    name to (torch axes permutation or a callable cdl->torch layout)."""
    F = torch.nn.functional
    first = (0, rank + 1) + tuple(range(1, rank + 1))
    last = (0,) + tuple(range(2, rank + 2)) + (1,)
    xt = to_torch(torch, x, first, requires_grad=True)
    tensors = []
    for name, to_layout in params:
        value = getattr(layer, name)
        tensors.append(to_torch(torch, to_layout(value), requires_grad=True))
    yt = forward_t(F, xt, *tensors)
    yt.backward(to_torch(torch, dy, first))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(last), **TORCH_TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(last), **TORCH_TOL)
    for (name, to_layout), t in zip(params, tensors):
        np.testing.assert_allclose(to_layout(getattr(layer, name + "_grad")),
                                   t.grad.numpy(), **TORCH_TOL)


def kernel_to_torch(rank):
    """(k..., C/groups, F) -> (F, C/groups, k...)."""
    return lambda w: w.transpose((rank + 1, rank) + tuple(range(rank)))


def identity(w):
    return w


# --- grouped Conv1D / Conv2D ---------------------------------------------------

GROUPED_2D = [
    (dict(filters=4, kernel_size=3, groups=2), (6, 5, 4)),                     # direct
    (dict(filters=6, kernel_size=3, groups=3, strides=2, padding="same",
          activation="relu"), (7, 6, 6)),                                       # direct
    (dict(filters=8, kernel_size=(2, 3), groups=4, padding=((1, 0), (2, 1)),
          dilation_rate=(2, 1), activation="tanh"), (6, 6, 4)),                 # Cg = 1, M = 2
    (dict(filters=5, kernel_size=3, groups=5, padding=1), (5, 6, 5)),          # depthwise
    (dict(filters=4, kernel_size=3, groups=2, padding=(1, 2), strides=(1, 2),
          activation="softmax"), (5, 7, 20)),                                   # products
    (dict(filters=6, kernel_size=1, groups=2, use_bias=False), (4, 4, 18)),    # 1x1 products
    (dict(filters=4, kernel_size=2, groups=2, activation="gelu", strides=2,
          padding=((0, 1), (1, 0))), (5, 5, 20)),                               # products
]


@pytest.mark.parametrize("kwargs,shape", GROUPED_2D, ids=range(len(GROUPED_2D)))
def test_grouped_conv2d_matches_torch(kwargs, shape):
    torch = pytest.importorskip("torch")
    layer = layers.Conv2D(**kwargs)
    x, y, dy, dx = run_cdl(layer, shape)
    assert layer._direct == (shape[-1] // layer.groups <= conv_module.DIRECT_GROUP_CHANNELS)
    pads = torch_pads(layer, shape[:2])
    act = ACTS[kwargs.get("activation")]

    def forward_t(F, xt, w, b=None):
        return act(F.conv2d(F.pad(xt, flat_pads(pads)), w, b, stride=layer.strides,
                            dilation=layer.dilation_rate, groups=layer.groups), F)
    params = [("kernel", kernel_to_torch(2))] + ([("bias", identity)] if layer.use_bias
                                                 else [])
    check_torch(torch, layer, x, y, dy, dx, params, forward_t, 2)


GROUPED_1D = [
    (dict(filters=4, kernel_size=3, groups=2, padding="causal"), (7, 4)),
    (dict(filters=6, kernel_size=2, groups=3, strides=2, padding=(2, 1),
          activation="relu"), (8, 3)),
    (dict(filters=4, kernel_size=3, groups=2, dilation_rate=2, padding="same"), (9, 24)),
]


@pytest.mark.parametrize("kwargs,shape", GROUPED_1D, ids=range(len(GROUPED_1D)))
def test_grouped_conv1d_matches_torch(kwargs, shape):
    torch = pytest.importorskip("torch")
    layer = layers.Conv1D(**kwargs)
    x, y, dy, dx = run_cdl(layer, shape)
    pads = torch_pads(layer, shape[:1])
    act = ACTS[kwargs.get("activation")]

    def forward_t(F, xt, w, b):
        return act(F.conv1d(F.pad(xt, flat_pads(pads)), w, b, stride=layer.strides,
                            dilation=layer.dilation_rate, groups=layer.groups), F)
    check_torch(torch, layer, x, y, dy, dx,
                [("kernel", kernel_to_torch(1)), ("bias", identity)], forward_t, 1)


@pytest.mark.parametrize("kwargs,shape", GROUPED_2D[:5] + GROUPED_2D[6:],
                         ids=range(len(GROUPED_2D) - 1))
def test_grouped_conv2d_gradcheck(kwargs, shape):
    layer = layers.Conv2D(**kwargs)
    built(layer, shape)
    x = random_array((2,) + shape, seed=4)
    errors = cdl.gradcheck(layer, x, tol=GRADCHECK_TOL)
    assert max(errors.values()) < GRADCHECK_TOL


@pytest.mark.parametrize("kwargs,shape", GROUPED_1D, ids=range(len(GROUPED_1D)))
def test_grouped_conv1d_gradcheck(kwargs, shape):
    layer = layers.Conv1D(**kwargs)
    built(layer, shape)
    assert max(cdl.gradcheck(layer, random_array((2,) + shape, seed=4)).values()) \
        < GRADCHECK_TOL


def test_direct_and_product_paths_agree(monkeypatch):
    shape = (6, 5, 12)
    results = []
    for limit in (0, 100):
        monkeypatch.setattr(conv_module, "DIRECT_GROUP_CHANNELS", limit)
        layer = layers.Conv2D(6, 3, groups=3, padding="same", activation="tanh")
        results.append(run_cdl(layer, shape) + (layer.kernel_grad.copy(),
                                                 layer.bias_grad.copy()))
        assert layer._direct == (limit == 100)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_kernel_gives_the_bits_of_one_thread(dtype):
    def run(threads):
        with cdl.threads(threads):
            layer = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                           activation="relu")
            built(layer, (16, 16, 32), dtype=dtype)
            x = random_array((70, 16, 16, 32), dtype, seed=2)
            y = layer.forward(x)
            dx = layer.backward(random_array(y.shape, dtype, seed=3))
            return y, dx, layer.depthwise_kernel_grad.copy(), layer.bias_grad.copy()
    for a, b in zip(run(1), run(2)):
        np.testing.assert_array_equal(a, b)


def test_grouped_kernel_float32_agrees_with_float64():
    out = {}
    for dtype in (np.float32, np.float64):
        layer = layers.Conv2D(6, 3, groups=3, strides=2, padding=1)
        built(layer, (7, 7, 6), dtype=dtype)
        x = random_array((4, 7, 7, 6), dtype, seed=2)
        y = layer.forward(x)
        dx = layer.backward(random_array(y.shape, dtype, seed=3))
        out[dtype] = (y, dx, layer.kernel_grad.copy())
    for a, b in zip(out[np.float32], out[np.float64]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_groups_need_divisible_channels():
    with pytest.raises(ValueError, match=r"filters \(5\).*groups \(2\)"):
        layers.Conv2D(5, 3, groups=2)
    layer = layers.Conv2D(4, 3, groups=2)
    with pytest.raises(ValueError, match=r"3 channels.*groups \(2\)"):
        cdl.Sequential([layer], input_shape=(5, 5, 3))
    with pytest.raises(ValueError, match="groups"):
        layers.Conv1D(4, 3, groups=0)
    with pytest.raises(TypeError):
        layers.Conv1D(4, 3, groups="2")


def test_grouped_kernel_checks_its_arguments():
    x = np.zeros((1, 4, 4, 4))
    w = np.zeros((3, 3, 2, 4))
    y = np.zeros((1, 2, 2, 4))
    with pytest.raises(ValueError, match="divisible by 3"):
        _conv.grouped_forward(x, w, None, y, y, (1, 1), (1, 1), (0, 0, 0, 0), 3)
    with pytest.raises(ValueError, match="shape"):
        _conv.grouped_forward(x, w, None, y[:, :1], y[:, :1], (1, 1), (1, 1),
                              (0, 0, 0, 0), 2)
    with pytest.raises(ValueError, match="groups"):
        _conv.grouped_forward(x, w, None, y, y, (1, 1), (1, 1), (0, 0, 0, 0), 0)


# --- explicit padding ------------------------------------------------------------

@pytest.mark.parametrize("padding,pairs", [
    (2, ((2, 2), (2, 2))), ((1, 2), ((1, 1), (2, 2))), (((1, 0), (0, 3)), ((1, 0), (0, 3))),
    ([[0, 2], [1, 1]], ((0, 2), (1, 1))),
])
def test_conv2d_explicit_padding_forms(padding, pairs):
    layer = layers.Conv2D(2, 3, padding=padding)
    assert conv_module._pairs(layer.padding) == pairs


@pytest.mark.parametrize("padding,pairs", [(2, ((2, 2),)), ((3,), ((3, 3),)),
                                           ((1, 2), ((1, 2),)), ([(0, 4)], ((0, 4),))])
def test_conv1d_explicit_padding_forms(padding, pairs):
    layer = layers.Conv1D(2, 3, padding=padding)
    assert conv_module._pairs(layer.padding) == pairs


@pytest.mark.parametrize("make,shape", [
    (lambda: layers.Conv2D(3, (2, 3), padding=((2, 0), (1, 3)), strides=(2, 1),
                           activation="relu"), (5, 6, 2)),
    (lambda: layers.Conv2D(2, 3, padding=((0, 1), (2, 0)), dilation_rate=2), (6, 5, 3)),
    (lambda: layers.Conv1D(3, 3, padding=(0, 2), strides=2, activation="tanh"), (7, 2)),
], ids=["2d-strided", "2d-dilated", "1d"])
def test_asymmetric_padding_matches_torch_and_gradcheck(make, shape):
    layer = make()
    rank = len(shape) - 1
    x, y, dy, dx = run_cdl(layer, shape)
    y, dx = gradcheck_then_rerun(layer, x, dy)
    torch = pytest.importorskip("torch")
    pads = torch_pads(layer, shape[:-1])
    act = ACTS[layer.activation if layer.activation != "linear" else None]
    conv = "conv2d" if rank == 2 else "conv1d"

    def forward_t(F, xt, w, b):
        return act(getattr(F, conv)(F.pad(xt, flat_pads(pads)), w, b, stride=layer.strides,
                                    dilation=layer.dilation_rate), F)
    check_torch(torch, layer, x, y, dy, dx,
                [("kernel", kernel_to_torch(rank)), ("bias", identity)], forward_t, rank)


def test_bad_padding_is_refused():
    with pytest.raises(ValueError, match="unknown padding"):
        layers.Conv2D(2, 3, padding="full")
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(2, 3, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(2, 3, padding=-1)
    with pytest.raises(TypeError, match="padding"):
        layers.Conv2D(2, 3, padding=((1, 2, 3), (1, 1)))
    with pytest.raises(TypeError, match="padding"):
        layers.Conv2D(2, 3, padding=1.5)
    with pytest.raises(ValueError, match="causal"):
        layers.Conv2D(2, 3, padding="causal")
    for mode in ("reflect", "replicate", "circular", None):
        with pytest.raises(ValueError, match="padding_mode"):
            layers.Conv2D(2, 3, padding=1, padding_mode=mode)
    assert layers.Conv1D(2, 3, padding_mode="zeros").padding_mode == "zeros"


# --- depthwise and separable --------------------------------------------------------

def depthwise_to_torch(rank):
    """(k..., C, M) -> (C * M, 1, k...)."""
    def convert(w):
        flat = w.reshape(w.shape[:rank] + (1, -1))
        return flat.transpose((rank + 1, rank) + tuple(range(rank)))
    return convert


DEPTHWISE = [
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                    activation="relu"), (6, 5, 3)),
    (lambda: layers.DepthwiseConv2D((2, 3), strides=2, dilation_rate=(1, 2),
                                    padding=((1, 0), (0, 2))), (7, 8, 4)),
    (lambda: layers.DepthwiseConv2D(3, use_bias=False), (5, 5, 1)),
    (lambda: layers.DepthwiseConv1D(3, depth_multiplier=3, padding="causal",
                                    activation="tanh"), (8, 2)),
    (lambda: layers.DepthwiseConv1D(2, strides=2, padding=1), (7, 5)),
]


@pytest.mark.parametrize("make,shape", DEPTHWISE, ids=range(len(DEPTHWISE)))
def test_depthwise_matches_torch_and_gradcheck(make, shape):
    layer = make()
    rank = len(shape) - 1
    x, y, dy, dx = run_cdl(layer, shape)
    channels = shape[-1]
    assert layer.depthwise_kernel.shape == layer.kernel_size + (channels,
                                                                layer.depth_multiplier)
    assert y.shape[-1] == channels * layer.depth_multiplier
    errors = cdl.gradcheck(layer, x[:2])
    assert set(errors) == {"input", f"{layer.name}.depthwise_kernel"} | (
        {f"{layer.name}.bias"} if layer.use_bias else set())
    y, dx = gradcheck_then_rerun(layer, x, dy)
    torch = pytest.importorskip("torch")
    pads = torch_pads(layer, shape[:-1])
    act = ACTS[layer.activation if layer.activation != "linear" else None]
    conv = "conv2d" if rank == 2 else "conv1d"

    def forward_t(F, xt, w, b=None):
        return act(getattr(F, conv)(F.pad(xt, flat_pads(pads)), w, b, stride=layer.strides,
                                    dilation=layer.dilation_rate, groups=channels), F)
    params = [("depthwise_kernel", depthwise_to_torch(rank))]
    params += [("bias", identity)] if layer.use_bias else []
    check_torch(torch, layer, x, y, dy, dx, params, forward_t, rank)


def test_depthwise_is_conv2d_with_groups_of_one_channel():
    dw = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")
    conv = layers.Conv2D(8, 3, groups=4, padding="same")
    built(dw, (5, 5, 4))
    built(conv, (5, 5, 4))
    conv.kernel[...] = dw.depthwise_kernel.reshape(3, 3, 1, 8)
    conv.bias[...] = dw.bias
    x = random_array((2, 5, 5, 4), seed=3)
    np.testing.assert_array_equal(dw.forward(x), conv.forward(x))


SEPARABLE = [
    (lambda: layers.SeparableConv2D(5, 3, depth_multiplier=2, padding="same",
                                    activation="relu"), (6, 5, 3)),
    (lambda: layers.SeparableConv2D(2, (3, 2), strides=2, padding=((0, 1), (1, 1)),
                                    use_bias=False), (7, 6, 4)),
    (lambda: layers.SeparableConv1D(4, 3, depth_multiplier=2, dilation_rate=2,
                                    padding="causal", activation="softmax"), (9, 3)),
]


@pytest.mark.parametrize("make,shape", SEPARABLE, ids=range(len(SEPARABLE)))
def test_separable_matches_torch_and_gradcheck(make, shape):
    layer = make()
    rank = len(shape) - 1
    x, y, dy, dx = run_cdl(layer, shape)
    channels = shape[-1]
    mid = channels * layer.depth_multiplier
    assert layer.pointwise_kernel.shape == (1,) * rank + (mid, layer.pointwise_filters)
    assert f"{layer.name}.pointwise_kernel" in cdl.gradcheck(layer, x[:2])
    y, dx = gradcheck_then_rerun(layer, x, dy)
    torch = pytest.importorskip("torch")
    pads = torch_pads(layer, shape[:-1])
    act = ACTS[layer.activation if layer.activation != "linear" else None]
    conv = "conv2d" if rank == 2 else "conv1d"

    def forward_t(F, xt, dw, pw, b=None):
        u = getattr(F, conv)(F.pad(xt, flat_pads(pads)), dw, None, stride=layer.strides,
                             dilation=layer.dilation_rate, groups=channels)
        return act(getattr(F, conv)(u, pw, b), F)
    params = [("depthwise_kernel", depthwise_to_torch(rank)),
              ("pointwise_kernel", kernel_to_torch(rank))]
    params += [("bias", identity)] if layer.use_bias else []
    check_torch(torch, layer, x, y, dy, dx, params, forward_t, rank)


def test_separable_flops_and_shapes():
    layer = layers.SeparableConv2D(16, 3, depth_multiplier=2, padding="same")
    assert layer.compute_output_shape((8, 8, 4)) == (8, 8, 16)
    assert layer.flops_per_sample((8, 8, 4)) == 64 * (2 * 9 * 8 + 2 * 8 * 16 + 16)
    dw = layers.DepthwiseConv2D(3, depth_multiplier=2)
    assert dw.compute_output_shape((8, 8, 4)) == (6, 6, 8)
    assert dw.flops_per_sample((8, 8, 4)) == 36 * (2 * 9 * 8 + 8)
    assert layers.Conv2D(8, 3, groups=4).flops_per_sample((5, 5, 8)) == 9 * (2 * 9 * 2 * 8 + 8)


# --- transposed convolutions with PyTorch's padding ----------------------------------

TRANSPOSED = [
    (lambda: layers.Conv2DTranspose(3, 3, strides=2, padding=1, output_padding=1), (3, 4, 2)),
    (lambda: layers.Conv2DTranspose(2, (3, 2), strides=(2, 3), padding=(1, 0),
                                    output_padding=(0, 2), activation="tanh"), (3, 3, 3)),
    (lambda: layers.Conv2DTranspose(2, 3, strides=1, dilation_rate=2, padding=0,
                                    output_padding=1), (3, 3, 2)),     # output_padding > padding
    (lambda: layers.Conv2DTranspose(2, 4, strides=3, padding="valid", output_padding=2,
                                    activation="relu"), (2, 3, 2)),
    (lambda: layers.Conv2DTranspose(2, 5, strides=2, padding=2), (4, 3, 1)),
    (lambda: layers.Conv1DTranspose(3, 3, strides=2, padding=1, output_padding=1), (5, 2)),
    (lambda: layers.Conv1DTranspose(2, 4, strides=2, padding="same"), (4, 3)),
    (lambda: layers.Conv1DTranspose(2, 3, strides=3), (3, 2)),
]


@pytest.mark.parametrize("make,shape", TRANSPOSED, ids=range(len(TRANSPOSED)))
def test_transposed_matches_torch_and_gradcheck(make, shape):
    layer = make()
    rank = len(shape) - 1
    x, y, dy, dx = run_cdl(layer, shape)
    y, dx = gradcheck_then_rerun(layer, x, dy)
    torch = pytest.importorskip("torch")
    act = ACTS[layer.activation if layer.activation != "linear" else None]
    conv = "conv_transpose2d" if rank == 2 else "conv_transpose1d"
    if isinstance(layer.padding, str):
        # Keras's sizes: PyTorch's full output, cropped as the geometry says.
        full_pads, crop = 0, [(b, L) for b, L in zip(layer._geom[2][2 * (2 - rank)::2],
                                                    y.shape[1:-1])]
        op = 0
    else:
        full_pads, crop, op = layer.padding, None, layer.output_padding or 0
    if layer.padding == "valid" and layer.output_padding is not None:
        full_pads, crop, op = 0, None, layer.output_padding

    def forward_t(F, xt, w, b):
        if crop is None:
            yt = getattr(F, conv)(xt, w, b, stride=layer.strides, padding=full_pads,
                                  output_padding=op, dilation=layer.dilation_rate)
        else:
            yt = getattr(F, conv)(xt, w, b, stride=layer.strides,
                                  dilation=layer.dilation_rate)
            extra = [max(0, b0 + L - s) for (b0, L), s in zip(crop, yt.shape[2:])]
            yt = F.pad(yt, [p for e in reversed(extra) for p in (0, e)])
            for axis, (b0, L) in enumerate(crop):
                yt = yt.narrow(2 + axis, b0, L)
        return act(yt, F)
    # (k..., F, C) -> PyTorch's (C, F, k...)
    to_t = (lambda w: w.transpose((rank + 1, rank) + tuple(range(rank))))
    check_torch(torch, layer, x, y, dy, dx, [("kernel", to_t), ("bias", identity)],
                forward_t, rank)


@pytest.mark.parametrize("size,k,s,p,op,d,expected", [
    (4, 3, 2, 1, 1, 1, 8), (4, 3, 2, 1, 0, 1, 7), (3, 3, 1, 0, 1, 2, 8), (5, 4, 2, 1, 0, 1, 10),
])
def test_transposed_output_size_follows_torch(size, k, s, p, op, d, expected):
    layer = layers.Conv1DTranspose(1, k, strides=s, padding=p, output_padding=op,
                                   dilation_rate=d)
    assert layer.compute_output_shape((size, 2)) == (expected, 1)


def test_transposed_bad_arguments():
    with pytest.raises(ValueError, match="smaller than either"):
        layers.Conv2DTranspose(2, 3, strides=2, padding=1, output_padding=2)
    with pytest.raises(ValueError, match="smaller than either"):
        layers.Conv1DTranspose(2, 3, strides=1, padding=1, output_padding=1)
    with pytest.raises(ValueError, match="same"):
        layers.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1)
    with pytest.raises(ValueError, match="symmetric"):
        layers.Conv2DTranspose(2, 3, padding=((1, 0), (0, 0)))
    with pytest.raises(ValueError, match="padding_mode"):
        layers.Conv2DTranspose(2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="output_padding"):
        layers.Conv2DTranspose(2, 3, output_padding=-1)
    layer = layers.Conv1DTranspose(2, 3, padding=3)
    with pytest.raises(ValueError, match="would be"):
        cdl.Sequential([layer], input_shape=(2, 1))


# --- configs and saving ------------------------------------------------------------

CONFIG_CASES = [
    (lambda: layers.Conv2D(4, 3, groups=2, padding=((1, 0), (2, 1))), (5, 5, 4)),
    (lambda: layers.Conv1D(4, 3, groups=4, padding=(0, 2), activation="relu"), (6, 4)),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding=1,
                                    depthwise_regularizer="l2"), (5, 5, 2)),
    (lambda: layers.DepthwiseConv1D(2, padding="causal"), (5, 3)),
    (lambda: layers.SeparableConv2D(3, 3, depth_multiplier=2, padding="same",
                                    pointwise_initializer="he_normal"), (5, 5, 2)),
    (lambda: layers.SeparableConv1D(3, 2, strides=2), (6, 2)),
    (lambda: layers.Conv2DTranspose(2, 3, strides=2, padding=1, output_padding=(1, 0)),
     (3, 3, 2)),
    (lambda: layers.Conv1DTranspose(2, 3, strides=2, padding="same"), (3, 2)),
]


@pytest.mark.parametrize("make,shape", CONFIG_CASES, ids=range(len(CONFIG_CASES)))
def test_config_round_trip(make, shape):
    layer = make()
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(config)
    assert clone.get_config() == layer.get_config()
    assert clone.compute_output_shape(shape) == layer.compute_output_shape(shape)


def test_config_values():
    config = layers.Conv2D(4, 3, groups=2, padding=((1, 0), (2, 1))).get_config()
    assert config["groups"] == 2 and config["padding"] == [[1, 0], [2, 1]]
    assert layers.Conv1D(2, 3, padding=(0, 2)).get_config()["padding"] == [0, 2]
    assert layers.Conv1D(2, 3, padding=(2, 2)).get_config()["padding"] == 2
    config = layers.DepthwiseConv2D(3, depth_multiplier=2).get_config()
    assert config["depth_multiplier"] == 2 and "filters" not in config
    assert config["depthwise_initializer"] == "glorot_uniform"
    config = layers.SeparableConv2D(5, 3).get_config()
    assert config["filters"] == 5 and config["pointwise_initializer"] == "glorot_uniform"
    assert layers.Conv2DTranspose(2, 3).get_config()["output_padding"] is None


@pytest.mark.parametrize("make,shape", CONFIG_CASES, ids=range(len(CONFIG_CASES)))
def test_save_and_load(make, shape, tmp_path):
    model = cdl.Sequential([make(), layers.Flatten(), layers.Dense(2)], input_shape=shape,
                           seed=0)
    path = tmp_path / "model.cdl"
    cdl.io.save_model(model, path)
    loaded = cdl.io.load_model(path)
    assert loaded.get_config() == model.get_config()
    x = random_array((2,) + shape, np.float32, seed=1)
    assert np.array_equal(loaded.forward(x), model.forward(x))


def test_a_mobilenet_block_trains():
    model = cdl.Sequential([
        layers.Conv2D(8, 3, strides=2, padding=1, activation="relu"),
        layers.DepthwiseConv2D(3, padding="same", activation="relu6"),
        layers.Conv2D(16, 1, activation="relu"),
        layers.Conv2D(16, 3, groups=4, padding=1),
        layers.GlobalAvgPool2D(),
        layers.Dense(3)], input_shape=(12, 12, 3), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
