"""Export a ``cdl.Model`` or ``cdl.Sequential`` to ONNX, for ONNX Runtime
and other engines.

``export(model, path)`` writes the inference graph of a model (opset
``OPSET``) and ``to_onnx(model)`` returns it as an ``onnx.ModelProto``.
The batch axis is dynamic by default (``dynamic_batch=False`` fixes it to
``batch_size``), ``dynamic_sequence=True`` or PyTorch's ``dynamic_axes``
make the sequence axis (axis 1) of sequence inputs dynamic too, and
weights are stored in the model's dtype.

- A ``Sequential`` gives a graph of one input, ``"input"`` of shape
  ``(batch, *input_shape)``, and one output, ``"output"``.
- A graph model (``cdl.Model``) gives one ONNX input per model input and
  one output per model output, named by ``model.input_names`` and
  ``model.output_names``, in that order. An input has the dtype its
  ``cdl.Input`` declares (integer indices for an ``Embedding``, say), else
  the model's, and is cast to the model's dtype first, as the model does.
  Every layer call becomes nodes in the model's order of computation; the
  calls of a shared layer read one set of initializers. An output may not
  be named like an input (ONNX names every value once): ``ValueError``.

cdl's convolutions and pooling are channels-last while ONNX's are
channels-first: the exporter wraps them in Transpose nodes (which ONNX
Runtime's optimiser merges across consecutive layers).

Exported layers: Dense; every activation (by name in Dense/Conv and as a
layer, PReLU included); Conv1D, Conv2D (with groups and explicit,
asymmetric padding), DepthwiseConv1D/2D (ONNX Conv groups), SeparableConv1D/2D
(a depthwise then a 1x1 Conv), Conv1DTranspose, Conv2DTranspose
(output_padding); Max/AvgPool1D/2D,
GlobalMax/AvgPool1D/2D; BatchNorm (its running statistics), LayerNorm,
RMSNorm, GroupNorm; Dropout, SpatialDropout1D/2D and GaussianNoise (the
identity at inference); Flatten, Reshape, Permute; Embedding; Residual and
Concatenate blocks made of these; the merge layers Add, Subtract, Multiply,
Average, Maximum, Minimum (folded left to right, as cdl computes them),
Concatenate(axis) and Dot(axes, normalize) (a batched MatMul, as cdl
computes it); MultiHeadAttention in its three call forms, PositionalEmbedding
(learned or sinusoidal), TransformerEncoder and TransformerDecoder;
SimpleRNN, LSTM and GRU (ONNX's RNN, LSTM and GRU ops, their gate blocks
reordered from PyTorch's to ONNX's, GRU with ``linear_before_reset=1``)
and Bidirectional (one op per direction, then the merge); window pools
with explicit, asymmetric padding, dilation and ``ceil_mode`` (extra end
padding that the pools leave out, as PyTorch's rule does), adaptive pools
(one reduction per bin, PyTorch's bin edges), ZeroPadding (Pad), Cropping
(Slice) and UpSampling (nearest: Tile; bilinear: Resize with PyTorch's
coordinates). User layers raise ``ValueError``; so do an AvgPool's
``divisor_override`` and a ``ceil_mode`` average counting padding whose
last window ``ceil_mode`` adds (ONNX's AveragePool cannot divide as
PyTorch's does there).

Attention becomes MatMul and Softmax nodes, its heads split and joined by
Reshape and Transpose; a causal attention (``causal=True`` at construction)
adds a constant mask to its scores. Masks given to ``forward`` as keywords
(``attention_mask``, ``key_padding_mask``, ``causal`` for one call) are not
part of a model, so the graph computes attention without them, as
``model.predict`` does. The padding mask of an ``Embedding(mask_zero=True)``
is: the graph computes ``ids != 0`` and carries it through the layers that
carry it in cdl (merges AND their inputs' masks) to attention (padded keys
get no weight; a query with no key left outputs the output bias, as in
cdl), the Transformer blocks (target and memory masks) and global 1-D
pooling (real steps only). A Transformer block's LayerNorms are ONNX
LayerNormalization nodes and its dropout the identity.

A recurrent layer's padding (``mask_value``, and the padding mask a model
carries to it) becomes its op's ``sequence_lens``, which is exact when
every sample's padding comes after its real steps; ONNX's ops cannot skip
steps between real ones, so a sample padded elsewhere gets NaN outputs
rather than a different answer. A learned initial state is an initializer
broadcast over the batch, an initial state from the graph (``rnn(x,
initial_state=[h0])``) the op's ``initial_h``; with ``return_state`` the
final states are outputs too. ``go_backwards`` is the op's reverse
direction, its sequence put back in the order the steps are taken, as cdl
returns it. A free time axis (``cdl.Input(shape=(None, features))``) is a
dynamic axis of the graph.

ONNX attributes are float32: in a float64 model, a leaky ReLU slope that
float32 does not hold exactly is stored as a double constant instead.
ONNX Runtime has no float64 kernels for some ops (Conv, AveragePool, Erf,
Elu, Softplus, RNN, LSTM, GRU, ...): such float64 graphs are valid ONNX,
which that engine does not run.

onnx is an optional dependency: ``pip install "cdl[onnx]"``.

Examples
--------
>>> import os, tempfile
>>> import cdl
>>> from cdl import layers
>>> model = cdl.Sequential([layers.Dense(4, activation="relu"), layers.Dense(2)],
...                        input_shape=(3,), seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
>>> cdl.onnx.export(model, path) == path
True

A graph of two inputs and two outputs, whose inputs and outputs keep
their names:

>>> image, meta = cdl.Input(shape=(8,), name="image"), cdl.Input(shape=(3,), name="meta")
>>> h = layers.Concatenate()([layers.Dense(4, activation="relu")(image), meta])
>>> model = cdl.Model([image, meta], [layers.Dense(2, name="cls")(h),
...                                   layers.Dense(1, name="box")(h)], seed=0)
>>> proto = cdl.onnx.to_onnx(model)
>>> [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
(['image', 'meta'], ['cls', 'box'])
"""
import contextlib
import math
import os

import numpy as np

from cdl._version import __version__
from cdl.layers import activation as _activation
from cdl.layers import attention as _attention
from cdl.layers.base import Layer as _Layer
from cdl.layers import composite as _composite
from cdl.layers import conv as _conv
from cdl.layers import core as _core
from cdl.layers import dense as _dense
from cdl.layers import embedding as _embedding
from cdl.layers import merge as _merge
from cdl.layers import noise as _noise
from cdl.layers import normalization as _norm
from cdl.layers import pooling as _pooling
from cdl.layers import recurrent as _recurrent
from cdl.layers import reshaping as _reshaping
from cdl.layers import transformer as _transformer

__all__ = ["export", "to_onnx", "OPSET", "exportable_layers", "NOT_EXPORTABLE"]

#: The ONNX opset of exported graphs (LayerNormalization needs 17).
OPSET = 17
#: The IR version written: the one that introduced opset 17, so that ONNX
#: Runtime 1.13 and later read the files.
IR_VERSION = 8

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SOFTPLUS_THRESHOLD = 20.0


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError('cdl.onnx needs the onnx package, an optional dependency of cdl: '
                          'pip install "cdl[onnx]"') from None
    return onnx


class _Graph:
    """Nodes and initializers of the graph being built, with unique names.

    ``reserved`` names (a graph model's input and output names) are never
    generated. Inside ``layer_scope(layer)``, the initializers of a layer
    converted before are reused: a shared layer's calls read one set.
    """

    def __init__(self, onnx, dtype, reserved=()):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        self.nodes = []
        self.initializers = []
        self._count = 0
        self._reserved = set(reserved)
        self._layer_consts = {}   # id(layer) -> [(initializer name, array)], first call
        self._recording = None
        self._replay = None
        self._replay_index = 0
        # The padding mask of the input of the layer being converted (a bool
        # (batch, T) value, a list of them or None), as cdl's input_mask;
        # and the mask a layer that starts one made (Embedding(mask_zero)).
        self.input_mask = None
        self.produced_mask = None
        # True while converting a call whose input has a dynamic sequence
        # axis (axis 1): converters then read lengths at run time, or refuse.
        self.dynamic_time = False

    def name(self, hint):
        while True:
            self._count += 1
            name = f"{hint}_{self._count}"
            if name not in self._reserved:
                return name

    @contextlib.contextmanager
    def layer_scope(self, layer):
        """Convert one call of ``layer``: its first call records the
        initializers it makes; a later call gets the same ones back, in the
        same order (a converter makes them in an order fixed by the layer
        and its input shape, which every call of a shared layer shares)."""
        known = self._layer_consts.get(id(layer))
        if known is None:
            self._recording = self._layer_consts[id(layer)] = []
        else:
            self._replay, self._replay_index = known, 0
        try:
            yield
        finally:
            self._recording = self._replay = None

    def const(self, array, hint, dtype=None):
        """An initializer holding ``array`` (in the model's dtype by default)."""
        array = np.ascontiguousarray(array, dtype=self.dtype if dtype is None else dtype)
        if self._replay is not None:
            index = self._replay_index
            self._replay_index += 1
            if index < len(self._replay):
                name, first = self._replay[index]
                # Checked, not assumed: a differing value gets its own initializer.
                if first.dtype == array.dtype and first.shape == array.shape and \
                        np.array_equal(first, array, equal_nan=True):
                    return name
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        if self._recording is not None:
            self._recording.append((name, array))
        return name

    def scalar(self, value, hint):
        return self.const(np.asarray(value), hint)

    def node(self, op, inputs, hint=None, **attributes):
        """Add one node; return the name of its (single) output."""
        output = self.name(hint or op.lower())
        self.nodes.append(self.onnx.helper.make_node(
            op, list(inputs), [output], name=self.name(f"{op}"), **attributes))
        return output


def _fixed_length_only(g, layer, why):
    """Refuse ``layer`` on an input of dynamic length, saying ``why``."""
    if g.dynamic_time:
        raise ValueError(f"cdl.onnx cannot export layer {layer.name!r} "
                         f"({type(layer).__name__}) on an input with a dynamic sequence axis: "
                         f"{why}; export it with a fixed length (dynamic_sequence=False)")


def _length_dependent_padding(g, layer, strides):
    # TensorFlow's "same" padding depends on the length when a stride is > 1,
    # and so does PyTorch's ceil_mode.
    if isinstance(layer.padding, str) and layer.padding == "same" and \
            any(s > 1 for s in strides):
        _fixed_length_only(g, layer, '"same" padding with strides > 1 depends on the length')
    if getattr(layer, "ceil_mode", False):
        _fixed_length_only(g, layer, "ceil_mode's output length depends on the length")


# --- activations ---------------------------------------------------------------------


def _activation_nodes(g, x, name, param, threshold=_SOFTPLUS_THRESHOLD):
    """Nodes computing cdl's activation ``name`` (parameter ``param``) of ``x``."""
    if name == "linear":
        return x
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softsign": "Softsign"}
    if name in simple:
        return g.node(simple[name], [x])
    if name == "leaky_relu":
        if g.dtype == np.float64 and float(np.float32(param)) != float(param):
            # ONNX attributes are float32: a double slope keeps float64 exact.
            return g.node("PRelu", [x, g.scalar(param, "slope")])
        return g.node("LeakyRelu", [x], alpha=float(param))
    if name == "elu":
        return g.node("Elu", [x], alpha=float(param))
    if name == "selu":
        return g.node("Selu", [x], alpha=_SELU_ALPHA, gamma=_SELU_SCALE)
    if name == "gelu":
        # The exact form x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); ONNX's Gelu needs opset 20.
        erf = g.node("Erf", [g.node("Div", [x, g.scalar(math.sqrt(2.0), "sqrt2")])])
        half_x = g.node("Mul", [x, g.scalar(0.5, "half")])
        return g.node("Mul", [half_x, g.node("Add", [erf, g.scalar(1.0, "one")])])
    if name in ("silu", "swish"):
        return g.node("Mul", [x, g.node("Sigmoid", [x])])
    if name == "mish":
        return g.node("Mul", [x, g.node("Tanh", [g.node("Softplus", [x])])])
    if name == "softplus":
        beta = float(param)
        scaled = x if beta == 1.0 else g.node("Mul", [x, g.scalar(beta, "beta")])
        soft = g.node("Softplus", [scaled])
        if beta != 1.0:
            soft = g.node("Div", [soft, g.scalar(beta, "beta")])
        # PyTorch's rule, which cdl follows: the identity where beta x > threshold.
        linear = g.node("Greater", [scaled, g.scalar(threshold, "threshold")])
        return g.node("Where", [linear, x, soft])
    if name == "hard_sigmoid":
        return g.node("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
    if name == "hard_swish":
        return g.node("HardSwish", [x])
    if name == "relu6":
        return g.node("Clip", [x, g.scalar(0.0, "zero"), g.scalar(6.0, "six")])
    if name == "softmax":
        return g.node("Softmax", [x], axis=-1)
    if name == "log_softmax":
        return g.node("LogSoftmax", [x], axis=-1)
    raise ValueError(f"activation {name!r} has no ONNX export")


def _export_activation_layer(g, layer, x, shape):
    threshold = getattr(layer, "threshold", _SOFTPLUS_THRESHOLD)
    return _activation_nodes(g, x, layer.activation, layer._param, threshold)


def _export_prelu(g, layer, x, shape):
    return g.node("PRelu", [x, g.const(layer.alpha, "prelu_slope")])


# --- layers with weights ----------------------------------------------------------------


def _export_dense(g, layer, x, shape):
    kernel = g.const(layer.kernel, "kernel")
    if len(shape) == 1 and layer.use_bias:
        y = g.node("Gemm", [x, kernel, g.const(layer.bias, "bias")])
    else:
        y = g.node("MatMul", [x, kernel])
        if layer.use_bias:
            y = g.node("Add", [y, g.const(layer.bias, "bias")])
    return _activation_nodes(g, y, layer.activation, layer._param)


def _channels_first(g, x, rank):
    """``(N, *spatial, C)`` -> (N, C, *spatial) for samples of ``rank`` axes."""
    return g.node("Transpose", [x], perm=[0, rank] + list(range(1, rank)))


def _channels_last(g, x, rank):
    """(N, C, *spatial) -> ``(N, *spatial, C)``."""
    return g.node("Transpose", [x], perm=[0] + list(range(2, rank + 1)) + [1])


def _conv_geometry(layer):
    """The layer's strides, dilations and ONNX pads (begins, then ends) over
    its own spatial axes (cdl keeps every convolution in a 2-D form)."""
    strides, dilation, pads, out = layer._geom
    axes = range(2 - layer._rank, 2)
    return ([int(strides[a]) for a in axes], [int(dilation[a]) for a in axes],
            [int(pads[2 * a]) for a in axes], [int(pads[2 * a + 1]) for a in axes], out)


def _onnx_kernel(kernel, rank):
    """``(*kernel_size, a, b)`` -> ``(b, a, *kernel_size)``, ONNX's layout."""
    return kernel.transpose([rank + 1, rank] + list(range(rank)))


def _export_conv(g, layer, x, shape):
    """A Conv node, channels first. Grouped and depthwise convolutions are
    its ``group`` (a depthwise kernel ``(*k, C, M)`` is ``(*k, 1, C * M)``
    in memory, as the layer reads it); a separable one is the depthwise Conv
    then a 1x1 Conv. ONNX's pads are (begins, ends), so asymmetric padding
    carries over."""
    rank = layer._rank
    _length_dependent_padding(g, layer, layer.strides)
    strides, dilation, begins, ends, _ = _conv_geometry(layer)
    depthwise = hasattr(layer, "depthwise_kernel")
    separable = hasattr(layer, "pointwise_kernel")
    if depthwise:
        kernel = layer.depthwise_kernel.reshape(tuple(layer.kernel_size) + (1, -1))
    else:
        kernel = layer.kernel
    weight = _onnx_kernel(kernel, rank)
    inputs = [_channels_first(g, x, len(shape)), g.const(weight, "conv_kernel")]
    if layer.use_bias and not separable:
        inputs.append(g.const(layer.bias, "conv_bias"))
    y = g.node("Conv", inputs, kernel_shape=list(weight.shape[2:]), strides=strides,
               dilations=dilation, pads=begins + ends, group=int(getattr(layer, "groups", 1)))
    if separable:
        pointwise = [y, g.const(_onnx_kernel(layer.pointwise_kernel, rank), "pointwise_kernel")]
        if layer.use_bias:
            pointwise.append(g.const(layer.bias, "conv_bias"))
        y = g.node("Conv", pointwise, kernel_shape=[1] * rank)
    y = _channels_last(g, y, len(shape))
    return _activation_nodes(g, y, layer.activation, layer._param)


def _export_conv_transpose(g, layer, x, shape):
    _fixed_length_only(g, layer, "its output size is computed for the export's input size")
    rank = layer._rank
    strides, dilation, begins, ends, out = _conv_geometry(layer)
    # The padding after the image is negative where output_padding exceeds
    # padding; ONNX takes pads >= 0, the rest going to its output_padding.
    begins, ends = [max(p, 0) for p in begins], [max(p, 0) for p in ends]
    output_padding = []
    for axis in range(rank):
        span = (layer.kernel_size[axis] - 1) * dilation[axis] + 1
        onnx_size = strides[axis] * (shape[axis] - 1) + span - begins[axis] - ends[axis]
        output_padding.append(int(out[axis] - onnx_size))
    weight = _onnx_kernel(layer.kernel, rank)          # (*k, F, C) -> (C, F, *k)
    inputs = [_channels_first(g, x, len(shape)), g.const(weight, "deconv_kernel")]
    if layer.use_bias:
        inputs.append(g.const(layer.bias, "deconv_bias"))
    y = g.node("ConvTranspose", inputs, kernel_shape=list(layer.kernel_size),
               strides=strides, dilations=dilation, pads=begins + ends,
               output_padding=output_padding)
    y = _channels_last(g, y, len(shape))
    return _activation_nodes(g, y, layer.activation, layer._param)


def _export_batch_norm(g, layer, x, shape):
    channels = shape[-1]
    scale = layer.gamma if layer.scale else np.ones(channels)
    shift = layer.beta if layer.center else np.zeros(channels)
    if not getattr(layer, "track_running_stats", True):
        # No running statistics: the batch's, over every axis but the
        # channels (biased variance), at inference as in training.
        axes = list(range(len(shape)))
        mean = g.node("ReduceMean", [x], axes=axes, keepdims=1)
        centered = g.node("Sub", [x, mean])
        var = g.node("ReduceMean", [g.node("Mul", [centered, centered])], axes=axes,
                     keepdims=1)
        root = g.node("Sqrt", [g.node("Add", [var, g.scalar(layer.eps, "eps")])])
        return g.node("Add", [g.node("Mul", [g.node("Div", [centered, root]),
                                             g.const(scale, "bn_scale")]),
                              g.const(shift, "bn_shift")])
    inputs = [g.const(scale, "bn_scale"), g.const(shift, "bn_shift"),
              g.const(layer.running_mean, "bn_mean"), g.const(layer.running_var, "bn_var")]
    if len(shape) == 1:
        return g.node("BatchNormalization", [x] + inputs, epsilon=float(layer.eps))
    y = g.node("BatchNormalization", [_channels_first(g, x, len(shape))] + inputs,
               epsilon=float(layer.eps))
    return _channels_last(g, y, len(shape))


def _affine(layer):
    """Whether a LayerNorm, RMSNorm or GroupNorm has its scale (and shift)."""
    return getattr(layer, "affine", True)


def _export_layer_norm(g, layer, x, shape):
    # Over the trailing axes the layer normalises (the last one by default).
    trailing = layer._trailing(shape) if hasattr(layer, "_trailing") else 1
    param_shape = tuple(shape[len(shape) - trailing:])
    scale = layer.gamma if _affine(layer) else np.ones(param_shape)
    has_shift = layer._has_shift() if hasattr(layer, "_has_shift") else True
    shift = layer.beta if has_shift else np.zeros(param_shape)
    return g.node("LayerNormalization",
                  [x, g.const(scale, "ln_scale"), g.const(shift, "ln_shift")],
                  axis=-trailing, epsilon=float(layer.eps))


def _norm_eps(g, layer):
    """The layer's epsilon in the graph's dtype (RMSNorm's None: its machine epsilon)."""
    return layer._eps(g.dtype) if hasattr(layer, "_eps") else layer.eps


def _export_rms_norm(g, layer, x, shape):
    mean_square = g.node("ReduceMean", [g.node("Mul", [x, x])], axes=[-1], keepdims=1)
    root = g.node("Sqrt", [g.node("Add", [mean_square, g.scalar(_norm_eps(g, layer), "eps")])])
    y = g.node("Div", [x, root])
    if _affine(layer):
        y = g.node("Mul", [y, g.const(layer.gamma, "rms_scale")])
    return y


def _export_group_norm(g, layer, x, shape):
    channels = shape[-1]
    grouped = g.node("Reshape", [x, g.const([0, -1, layer.groups, channels // layer.groups],
                                            "group_shape", np.int64)])
    mean = g.node("ReduceMean", [grouped], axes=[1, 3], keepdims=1)
    centered = g.node("Sub", [grouped, mean])
    var = g.node("ReduceMean", [g.node("Mul", [centered, centered])], axes=[1, 3], keepdims=1)
    root = g.node("Sqrt", [g.node("Add", [var, g.scalar(_norm_eps(g, layer), "eps")])])
    normed = g.node("Reshape", [g.node("Div", [centered, root]), g.node("Shape", [x])])
    if not _affine(layer):
        return normed
    return g.node("Add", [g.node("Mul", [normed, g.const(layer.gamma, "gn_scale")]),
                          g.const(layer.beta, "gn_shift")])


def _export_embedding(g, layer, x, shape):
    indices = g.node("Cast", [x], to=g.onnx.TensorProto.INT64)
    if layer.mask_zero:
        # The padding mask the layer starts, carried on to later layers.
        g.produced_mask = g.node("Not", [g.node("Equal", [
            indices, g.const(np.array(0, np.int64), "zero", np.int64)])], hint="mask")
    return g.node("Gather", [g.const(layer.embeddings, "embeddings"), indices], axis=0)


# --- layers without weights -------------------------------------------------------------


def _pool_pads(layer, shape):
    """Per spatial axis of ``shape`` (channels last), the (before, after)
    padding of a window pool, as cdl computes it. With ``ceil_mode``, the
    windows past the input that PyTorch's rule keeps are made by extra
    padding at the end, which ONNX's MaxPool and AveragePool (without
    count_include_pad) leave out of every window; an average that counts
    padding would count it, so that case is refused."""
    rank = layer._rank
    pads = []
    for axis, size in enumerate(shape[:-1]):
        k = 2 - rank + axis
        padding = layer.padding if layer._pads is None else layer._pads[k]
        args = (size, layer._pool[k], layer._strides[k], layer._dilation[k], padding)
        out, (before, after) = _pooling.pool_axis(*args, layer.ceil_mode)
        floor_out = _pooling.pool_axis(*args, False)[0]
        if layer.ceil_mode and out != floor_out:
            if not layer._max and layer._include_pad:
                raise ValueError(
                    f"cdl.onnx cannot export layer {layer.name!r} ({type(layer).__name__} "
                    f"with ceil_mode=True and count_include_pad on input shape "
                    f"{tuple(shape)}): ONNX's AveragePool would count the windows' part "
                    "past the padding, which PyTorch's does not")
            span = (layer._pool[k] - 1) * layer._dilation[k] + 1
            after += (out - 1) * layer._strides[k] + span - (size + before + after)
        pads.append((before, after))
    return pads


def _export_window_pool(g, layer, x, shape):
    rank = layer._rank
    pool, strides = layer._pool[2 - rank:], layer._strides[2 - rank:]
    if layer.ceil_mode:
        _fixed_length_only(g, layer, "whether ceil_mode adds a window depends on the length")
    _length_dependent_padding(g, layer, strides)
    pads = _pool_pads(layer, shape)
    attributes = dict(kernel_shape=list(pool), strides=list(strides),
                      pads=[p[0] for p in pads] + [p[1] for p in pads])
    if layer._max:
        dilation = layer._dilation[2 - rank:]
        if any(d != 1 for d in dilation):
            attributes["dilations"] = list(dilation)
        y = g.node("MaxPool", [_channels_first(g, x, len(shape))], **attributes)
    else:
        if layer.divisor_override is not None:
            raise ValueError(f"cdl.onnx cannot export layer {layer.name!r} "
                             f"({type(layer).__name__} with divisor_override): ONNX's "
                             "AveragePool has no divisor override")
        # Padded positions count in the averages only with count_include_pad
        # (by default: explicit padding, not Keras' "same").
        y = g.node("AveragePool", [_channels_first(g, x, len(shape))],
                   count_include_pad=int(layer._include_pad), **attributes)
    return _channels_last(g, y, len(shape))


def _export_global_pool(g, layer, x, shape):
    if g.input_mask is not None:
        return _masked_global_pool(g, layer, x, g.input_mask)
    # Reduced over the spatial axes where they are: no transposes needed.
    op = "ReduceMax" if layer._max else "ReduceMean"
    return g.node(op, [x], axes=list(range(1, len(shape))), keepdims=int(layer.keepdims))


def _masked_global_pool(g, layer, x, mask):
    """A global 1-D pooling over the real steps of ``mask`` (bool (batch,
    T)), as cdl's: the mean as a product with per-step weights 1 / (number
    of real steps), the maximum over real steps; a sequence of padding only
    gives 0."""
    real = g.node("Cast", [mask], to=g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype))
    if layer._max:
        steps = g.node("Unsqueeze", [mask, g.const([-1], "last_axis", np.int64)])
        filled = g.node("Where", [steps, x, g.scalar(-np.inf, "minus_inf")])
        y = g.node("ReduceMax", [filled], axes=[1], keepdims=1)              # (batch, 1, C)
        some = g.node("Unsqueeze", [g.node("Greater", [
            g.node("ReduceMax", [real], axes=[1], keepdims=1), g.scalar(0.0, "zero")]),
            g.const([-1], "last_axis", np.int64)])                            # (batch, 1, 1)
        y = g.node("Where", [some, y, g.scalar(0.0, "zero")])
    else:
        counts = g.node("ReduceSum", [real, g.const([1], "time_axis", np.int64)], keepdims=1)
        weights = g.node("Div", [real, g.node("Max", [counts, g.scalar(1.0, "one")])])
        weights = g.node("Unsqueeze", [weights, g.const([1], "row_axis", np.int64)])
        y = g.node("MatMul", [weights, x])                                    # (batch, 1, C)
    if layer.keepdims:
        return y
    return g.node("Squeeze", [y, g.const([1], "time_axis", np.int64)])


def _adaptive_bins(size, out):
    """PyTorch's adaptive pooling bins of an axis: [floor(i size / out),
    ceil((i + 1) size / out)) for each output i."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _export_adaptive_pool(g, layer, x, shape):
    """One Slice and reduction per bin and axis, concatenated: a bin's mean
    (maximum) over a rectangle is the mean (maximum) over its rows of the
    means (maxima) over its columns, every row of a bin having one width."""
    _fixed_length_only(g, layer, "its bins are computed for the export's length")
    rank = layer._rank
    op = "ReduceMax" if layer._max else "ReduceMean"
    y = x
    for axis, (size, out) in enumerate(zip(shape[:rank], layer._sizes[2 - rank:])):
        out = size if out is None else int(out)
        if out == size:
            continue          # one step per bin: the axis as it is
        parts = [g.node(op, [g.node("Slice", [y, g.const([start], "start", np.int64),
                                              g.const([end], "end", np.int64),
                                              g.const([axis + 1], "axis", np.int64)])],
                        axes=[axis + 1], keepdims=1)
                 for start, end in _adaptive_bins(size, out)]
        y = parts[0] if len(parts) == 1 else g.node("Concat", parts, axis=axis + 1)
    return y if y != x else g.node("Identity", [x])


def _export_zero_padding(g, layer, x, shape):
    begins = [0] + [int(b) for b, _ in layer._pads] + [0]
    ends = [0] + [int(a) for _, a in layer._pads] + [0]
    return g.node("Pad", [x, g.const(begins + ends, "pads", np.int64)])


def _export_cropping(g, layer, x, shape):
    # Ends counted from the end, so that a dynamic length keeps its crop.
    crops = layer._crops
    starts = [int(b) for b, _ in crops]
    ends = [-int(a) if a else np.iinfo(np.int64).max for _, a in crops]
    return g.node("Slice", [x, g.const(starts, "crop_starts", np.int64),
                            g.const(ends, "crop_ends", np.int64),
                            g.const(list(range(1, len(crops) + 1)), "crop_axes", np.int64)])


def _export_upsampling(g, layer, x, shape):
    """Nearest: every step repeated (Unsqueeze, Tile, Reshape, exact).
    Bilinear: ONNX's Resize, channels first, with PyTorch's source
    coordinates (align_corners, or half-pixel ones clamped at the edges)."""
    rank = layer._rank
    sizes = [layer.size] if rank == 1 else list(layer.size)
    if getattr(layer, "interpolation", "nearest") == "bilinear":
        mode = "align_corners" if layer.align_corners else "pytorch_half_pixel"
        scales = g.const([1.0, 1.0] + [float(f) for f in sizes], "scales", np.float32)
        y = g.node("Resize", [_channels_first(g, x, len(shape)), "", scales], mode="linear",
                   coordinate_transformation_mode=mode)
        return _channels_last(g, y, len(shape))
    # (N, s1, s2, C) -> (N, s1, 1, s2, 1, C) -> tiled -> (N, s1 f1, s2 f2, C).
    axes = [2 + 2 * a for a in range(rank)]
    y = g.node("Unsqueeze", [x, g.const(axes, "repeat_axes", np.int64)])
    repeats = [1] * (2 * rank + 2)
    for a, f in zip(axes, sizes):
        repeats[a] = f
    y = g.node("Tile", [y, g.const(repeats, "repeats", np.int64)])
    target = [0, -1] + [int(s * f) for s, f in zip(shape[1:rank], sizes[1:])] + [shape[-1]]
    return g.node("Reshape", [y, g.const(target, "upsampled_shape", np.int64)])


def _export_identity(g, layer, x, shape):
    return x


def _export_flatten(g, layer, x, shape):
    _fixed_length_only(g, layer, "its output's size is the length times the features")
    return g.node("Flatten", [x], axis=1)


def _export_reshape(g, layer, x, shape):
    _fixed_length_only(g, layer, "its target shape fixes the length")
    return g.node("Reshape", [x, g.const([-1, *layer.output_shape], "shape", np.int64)])


def _export_permute(g, layer, x, shape):
    if layer.dims[0] != 1:
        _fixed_length_only(g, layer, "it moves the sequence axis")
    return g.node("Transpose", [x], perm=[0] + list(layer.dims))


def _chain(g, chain, x, shape):
    for layer in chain:
        x = _layer_nodes(g, layer, x, shape)
        shape = layer.output_shape
    return x


def _export_residual(g, layer, x, shape):
    return g.node("Add", [x, _chain(g, layer.layers, x, shape)])


def _export_concatenate(g, layer, x, shape):
    if isinstance(x, list):
        # The merge form, Concatenate(axis)([a, b, ...]): the axis counts the
        # batch axis, as ONNX's does.
        return g.node("Concat", x, axis=int(layer.axis))
    outputs = [_chain(g, branch, x, shape) for branch in layer.branches]
    return outputs[0] if len(outputs) == 1 else g.node("Concat", outputs, axis=-1)


# --- merge layers (a list of inputs of one shape) ---------------------------------------


def _fold(g, op, xs):
    """``op`` applied left to right, as cdl's merge layers apply it."""
    y = xs[0]
    for x in xs[1:]:
        y = g.node(op, [y, x])
    return y


def _export_add(g, layer, xs, shapes):
    return _fold(g, "Add", xs)


def _export_subtract(g, layer, xs, shapes):
    return g.node("Sub", xs)


def _export_multiply(g, layer, xs, shapes):
    return _fold(g, "Mul", xs)


def _export_average(g, layer, xs, shapes):
    # The sum divided by the count, as cdl computes it (ONNX's Mean may not).
    return g.node("Div", [_fold(g, "Add", xs), g.scalar(len(xs), "count")])


def _export_maximum(g, layer, xs, shapes):
    return _fold(g, "Max", xs)


def _export_minimum(g, layer, xs, shapes):
    return _fold(g, "Min", xs)


def _l2_normalized(g, x, axis, epsilon):
    """``x / max(||x||, epsilon)`` along ``axis`` (of the batched tensor)."""
    norm = g.node("ReduceL2", [x], axes=[axis], keepdims=1)
    return g.node("Div", [x, g.node("Max", [norm, g.scalar(epsilon, "epsilon")])])


def _export_dot(g, layer, xs, shapes):
    _fixed_length_only(g, layer, "its products are reshaped to the export's lengths")
    (x, y), (sx, sy) = xs, shapes
    ax, ay = layer._resolve_axes(shapes)   # per-sample axes: ax + 1 in the batched tensor
    if layer.normalize:
        epsilon = _merge.NORMALIZE_EPSILON
        x, y = _l2_normalized(g, x, ax + 1, epsilon), _l2_normalized(g, y, ay + 1, epsilon)
    # As cdl computes it: x as (batch, rows, d), y as (batch, d, columns), one
    # batched matrix product, the result reshaped to the output's sample shape.
    d = sx[ax]
    rows = math.prod(sx) // d
    columns = math.prod(sy) // d
    x_axes = [i for i in range(len(sx) + 1) if i != ax + 1] + [ax + 1]
    y_axes = [0, ay + 1] + [i for i in range(1, len(sy) + 1) if i != ay + 1]
    if x_axes != sorted(x_axes):
        x = g.node("Transpose", [x], perm=x_axes)
    if y_axes != sorted(y_axes):
        y = g.node("Transpose", [y], perm=y_axes)
    x3 = g.node("Reshape", [x, g.const([-1, rows, d], "dot_rows", np.int64)])
    y3 = g.node("Reshape", [y, g.const([-1, d, columns], "dot_columns", np.int64)])
    z = g.node("MatMul", [x3, y3])
    return g.node("Reshape", [z, g.const([-1, *layer.output_shape], "shape", np.int64)])


# --- attention and Transformer blocks ------------------------------------------------------


def _heads(g, x, length, heads, width, perm):
    """``(batch, length, heads * width)`` -> one block per (sample, head):
    ``(batch, heads, length, width)`` (``perm`` [0, 2, 1, 3]) or its
    transpose ``(batch, heads, width, length)`` (``perm`` [0, 2, 3, 1])."""
    # 0: the batch and length of x, whatever they are at run time.
    split = g.node("Reshape", [x, g.const([0, 0, heads, width], "head_shape", np.int64)])
    return g.node("Transpose", [split], perm=perm)


def _projection(g, layer, kind, x):
    y = g.node("MatMul", [x, g.const(getattr(layer, f"{kind}_kernel"), f"{kind}_kernel")])
    if layer.use_bias:
        y = g.node("Add", [y, g.const(getattr(layer, f"{kind}_bias"), f"{kind}_bias")])
    return y


def _rope_nodes(g, layer, x, length, source):
    """Rotary position embedding of ``x``, ``(batch, heads, length, key_dim)``,
    as the layer turns it ("rotate half"): with halves x1 and x2, ``[x1 cos -
    x2 sin, x2 cos + x1 sin]``. The cosine and sine tables are constants of
    the exported length; on a dynamic sequence axis they are computed from
    the length of ``source`` (the sequence ``x`` comes from) at run time, in
    float64 as the layer computes them, then cast to the model's dtype."""
    half = layer.key_dim // 2
    if g.dynamic_time:
        inverse_frequency = np.power(layer.rope_base,
                                     -np.arange(0, layer.key_dim, 2, dtype=np.float64)
                                     / layer.key_dim)
        steps = g.node("Range", [g.const(np.array(0, np.int64), "zero", np.int64),
                                 _time_size(g, source),
                                 g.const(np.array(1, np.int64), "one", np.int64)])
        positions = g.node("Unsqueeze", [g.node("Cast", [steps], to=g.onnx.TensorProto.DOUBLE),
                                         g.const([1], "column_axis", np.int64)])
        angle = g.node("Mul", [positions, g.const(inverse_frequency, "rope_frequency",
                                                  np.float64)])      # (T, key_dim / 2)
        to = g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype)
        cos = g.node("Cast", [g.node("Cos", [angle])], to=to)
        sin = g.node("Cast", [g.node("Sin", [angle])], to=to)
    else:
        cos, sin = _attention.rope_tables(length, layer.key_dim, layer.rope_base, g.dtype)
        cos, sin = g.const(cos, "rope_cos"), g.const(sin, "rope_sin")
    axis = g.const([3], "rope_axis", np.int64)
    x1 = g.node("Slice", [x, g.const([0], "rope_start", np.int64),
                          g.const([half], "rope_half", np.int64), axis])
    x2 = g.node("Slice", [x, g.const([half], "rope_half", np.int64),
                          g.const([layer.key_dim], "rope_end", np.int64), axis])
    first = g.node("Sub", [g.node("Mul", [x1, cos]), g.node("Mul", [x2, sin])])
    second = g.node("Add", [g.node("Mul", [x2, cos]), g.node("Mul", [x1, sin])])
    return g.node("Concat", [first, second], axis=-1)


_FROM_INPUT_MASK = object()


def _export_attention(g, layer, x, shape, key_mask=_FROM_INPUT_MASK):
    """Scaled dot-product attention with MatMul and Softmax, heads split by
    Reshape and Transpose. Causal attention adds a constant (Tq, Tk) mask of
    0 and -inf (top-left aligned, as cdl's): it leaves the first key to every
    query, so no row is empty. Masks given to ``forward`` are not part of
    the graph (nor of a graph model). Rotary position embedding (``rope``)
    turns the queries and keys with Slice, Mul, Sub, Add and Concat (see
    ``_rope_nodes``).

    ``key_mask`` is the keys' padding mask (bool (batch, Tk) or None), by
    default the one the model carries to the keys' input. With one, the
    masked scores are replaced by the dtype's lowest number before the
    Softmax and their weights by 0 after it: a query left with no key gets
    weights of 0, so an output of the output bias, as cdl computes it
    (never NaN)."""
    xs, shapes = (x, shape) if isinstance(x, list) else ([x], [shape])
    sources = _attention.PROJECTION_SOURCES[len(xs)]
    if key_mask is _FROM_INPUT_MASK:
        key_mask = g.input_mask[sources["key"]] if isinstance(g.input_mask, list) \
            else g.input_mask
    h, kd, vd = layer.num_heads, layer.key_dim, layer.value_dim
    tq, tk = shapes[0][0], shapes[sources["key"]][0]
    projected = {kind: _projection(g, layer, kind, xs[sources[kind]])
                 for kind in _attention.PROJECTIONS}
    q = _heads(g, projected["query"], tq, h, kd, [0, 2, 1, 3])
    if layer.rope:
        q = _rope_nodes(g, layer, q, tq, xs[0])
        k = _rope_nodes(g, layer, _heads(g, projected["key"], tk, h, kd, [0, 2, 1, 3]), tk,
                        xs[sources["key"]])
        k_t = g.node("Transpose", [k], perm=[0, 1, 3, 2])
    else:
        k_t = _heads(g, projected["key"], tk, h, kd, [0, 2, 3, 1])
    v = _heads(g, projected["value"], tk, h, vd, [0, 2, 1, 3])
    scores = g.node("Mul", [g.node("MatMul", [q, k_t]),
                            g.scalar(1.0 / math.sqrt(kd), "attention_scale")])
    if key_mask is not None or (layer.causal and g.dynamic_time):
        allowed = None
        if key_mask is not None:
            allowed = g.node("Unsqueeze", [key_mask, g.const([1, 2], "head_query_axes",
                                                             np.int64)])   # (batch, 1, 1, Tk)
        if layer.causal:
            causal = _causal_allowed(g, xs[0], xs[sources["key"]]) if g.dynamic_time else \
                g.const(np.tril(np.ones((tq, tk), dtype=bool)), "causal_allowed", np.bool_)
            allowed = causal if allowed is None else g.node("And", [allowed, causal])
        scores = g.node("Where", [allowed, scores, g.scalar(np.finfo(g.dtype).min, "lowest")])
        weights = g.node("Where", [allowed, g.node("Softmax", [scores], axis=-1),
                                   g.scalar(0.0, "zero")])
    else:
        if layer.causal:
            allowed = np.tril(np.ones((tq, tk), dtype=bool))
            scores = g.node("Add", [scores, g.const(np.where(allowed, 0.0, -np.inf),
                                                    "causal_mask")])
        weights = g.node("Softmax", [scores], axis=-1)
    heads = g.node("Transpose", [g.node("MatMul", [weights, v])], perm=[0, 2, 1, 3])
    joined = g.node("Reshape", [heads, g.const([0, 0, h * vd], "joined_shape", np.int64)])
    y = g.node("MatMul", [joined, g.const(layer.output_kernel, "output_kernel")])
    if layer.use_bias:
        y = g.node("Add", [y, g.const(layer.output_bias, "output_bias")])
    return y


def _causal_allowed(g, query, key):
    """bool (Tq, Tk), True where key index <= query index (cdl's top-left
    aligned causal mask), for lengths read at run time."""
    def indices(x):
        return g.node("Range", [g.const(np.array(0, np.int64), "zero", np.int64),
                                _time_size(g, x), g.const(np.array(1, np.int64), "one",
                                                          np.int64)])
    rows = g.node("Unsqueeze", [indices(query), g.const([1], "column_axis", np.int64)])
    return g.node("LessOrEqual", [indices(key), rows])


def _export_positional_embedding(g, layer, x, shape):
    steps = shape[0]
    if g.dynamic_time:
        # The first rows of the whole table, as many as the input has steps.
        table = layer.embeddings if layer.learned else \
            _attention.sinusoid_table(layer.max_length, shape[-1], g.dtype)
        end = g.node("Slice", [g.node("Shape", [x]), g.const([1], "start", np.int64),
                               g.const([2], "end", np.int64)])
        rows = g.node("Slice", [g.const(table, "position_embeddings"),
                                g.const([0], "slice_start", np.int64), end,
                                g.const([0], "slice_axis", np.int64)])
        return g.node("Add", [x, rows])
    if layer.learned:
        # The whole table is the initializer (the layer's weight); the graph
        # takes its first rows, the input's length.
        table = g.node("Slice", [g.const(layer.embeddings, "position_embeddings"),
                                 g.const([0], "slice_start", np.int64),
                                 g.const([steps], "slice_end", np.int64),
                                 g.const([0], "slice_axis", np.int64)])
    else:
        # The sinusoids the layer computes, for the input's length, in its dtype.
        table = g.const(_attention.sinusoid_table(steps, shape[-1], g.dtype),
                        "position_sinusoids")
    return g.node("Add", [x, table])


def _residual_nodes(g, block, x, shape, norm, inner):
    """The block's residual wiring of ``inner`` around ``x`` with ``norm``:
    ``x + inner(norm(x))`` pre-norm, ``norm(x + inner(x))`` post-norm
    (dropout is the identity at inference)."""
    if block.norm_first:
        return g.node("Add", [x, inner(_export_layer_norm(g, norm, x, shape))])
    return _export_layer_norm(g, norm, g.node("Add", [x, inner(x)]), shape)


def _feedforward_nodes(g, block, x, shape):
    inner = _export_dense(g, block.dense1, x, shape)
    return _export_dense(g, block.dense2, inner, block.dense1.compute_output_shape(shape))


def _export_transformer_encoder(g, layer, x, shape):
    mask = g.input_mask
    h = _residual_nodes(g, layer, x, shape, layer.norm1,
                        lambda a: _export_attention(g, layer.self_attention, a, shape, mask))
    return _residual_nodes(g, layer, h, shape, layer.norm2,
                           lambda a: _feedforward_nodes(g, layer, a, shape))


def _export_transformer_decoder(g, layer, xs, shapes):
    (target, memory), (shape, memory_shape) = xs, shapes
    target_mask, memory_mask = g.input_mask if g.input_mask is not None else (None, None)
    h = _residual_nodes(g, layer, target, shape, layer.norm1,
                        lambda a: _export_attention(g, layer.self_attention, a, shape,
                                                    target_mask))
    h = _residual_nodes(g, layer, h, shape, layer.norm2,
                        lambda a: _export_attention(g, layer.cross_attention, [a, memory],
                                                    [shape, memory_shape], memory_mask))
    return _residual_nodes(g, layer, h, shape, layer.norm3,
                           lambda a: _feedforward_nodes(g, layer, a, shape))


# --- recurrent layers ----------------------------------------------------------------------

#: ONNX's op and gate order for each recurrent layer, as the order of cdl's
#: (PyTorch's) gate blocks: LSTM i,f,g,o -> ONNX i,o,f,c; GRU r,z,n -> z,r,h.
_RECURRENT_OPS = {"SimpleRNN": ("RNN", [0]), "LSTM": ("LSTM", [0, 3, 1, 2]),
                  "GRU": ("GRU", [1, 0, 2])}
_RNN_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}


def _gate_blocks(array, order, units, axis):
    """``array`` with its gate blocks of ``units`` along ``axis`` reordered."""
    return np.concatenate([np.take(array, range(b * units, (b + 1) * units), axis=axis)
                           for b in order], axis=axis)


def _batch_size(g, x):
    """A 1-element int64 tensor: the batch size of ``x``, read at run time."""
    return g.node("Slice", [g.node("Shape", [x]), g.const([0], "start", np.int64),
                            g.const([1], "end", np.int64)])


def _reverse_time(g, x, axis):
    """``x`` reversed along ``axis`` (of any length)."""
    return g.node("Slice", [x, g.const([-1], "reverse_start", np.int64),
                            g.const([np.iinfo(np.int64).min], "reverse_end", np.int64),
                            g.const([axis], "reverse_axis", np.int64),
                            g.const([-1], "reverse_step", np.int64)])


def _step_mask(g, layer, x, mask_value):
    """bool (batch, T), True for a real step, or None: the padding mask
    the model carries to the layer (when the layer reads one) and, with
    ``mask_value``, the steps whose features are not all ``mask_value``; a
    step is padding if either says so."""
    mask = g.input_mask if layer.supports_masking else None
    real = mask[0] if isinstance(mask, list) else mask
    if mask_value is not None:
        value = g.scalar(mask_value, "mask_value")
        some = g.node("Cast", [g.node("Not", [g.node("Equal", [x, value])])],
                      to=g.onnx.TensorProto.INT32)
        some = g.node("Cast", [g.node("ReduceMax", [some], axes=[-1], keepdims=0)],
                      to=g.onnx.TensorProto.BOOL)
        real = some if real is None else g.node("And", [real, some])
    return real


def _recurrent_lengths(g, real):
    """``(sequence_lens, trailing)`` from the real steps ``real`` (bool
    (batch, T)): the number of real steps of every sample (int32, as ONNX's
    ops take it), and whether every sample's padding is all after its real
    steps (bool ``(batch,)``), the only padding ONNX's recurrent ops can
    express."""
    real = g.node("Cast", [real], to=g.onnx.TensorProto.INT32)
    lengths = g.node("ReduceSum", [real, g.const([1], "time_axis", np.int64)], keepdims=0)
    # Steps counted from 1: the last real one's number is the length when
    # the real steps come first.
    one = g.const(np.array(1, np.int32), "one", np.int32)
    numbers = g.node("Range", [one, g.node("Add", [g.node("Cast", [_time_size(g, real)],
                                                          to=g.onnx.TensorProto.INT32), one]),
                               one])
    last = g.node("ReduceMax", [g.node("Mul", [real, numbers])], axes=[1], keepdims=0)
    return lengths, g.node("Equal", [lengths, last])


def _time_size(g, x):
    """A scalar int64 tensor: the length of axis 1 of ``x``, read at run time."""
    return g.node("Squeeze", [g.node("Slice", [g.node("Shape", [x]),
                                               g.const([1], "start", np.int64),
                                               g.const([2], "end", np.int64)]),
                              g.const([0], "squeeze_axis", np.int64)])


def _recurrent_nodes(g, layer, x, real, given_states):
    """One recurrent layer's op on ``x`` (batch, T, features) with the real
    steps ``real`` (or None) and initial states ``given_states`` (values of
    shape (batch, units), or None); returns the output and the final states
    (h, or h and c), as cdl's layer computes them."""
    kind = type(layer).__name__
    op, order = _RECURRENT_OPS[kind]
    units = layer.units
    lstm = kind == "LSTM"
    weight = _gate_blocks(layer.input_kernel.T, order, units, 0)[None]
    recurrent = _gate_blocks(layer.recurrent_kernel.T, order, units, 0)[None]
    bias = np.concatenate([_gate_blocks(layer.input_bias, order, units, 0),
                           _gate_blocks(layer.recurrent_bias, order, units, 0)])[None]
    inputs = [g.node("Transpose", [x], perm=[1, 0, 2]), g.const(weight, f"{kind}_W"),
              g.const(recurrent, f"{kind}_R"), g.const(bias, f"{kind}_B")]
    lengths = trailing = None
    if real is not None:
        lengths, trailing = _recurrent_lengths(g, real)
    inputs.append(lengths or "")
    names = ("initial_h", "initial_c") if lstm else ("initial_h",)
    initial = None            # the initial states, (batch, units) each
    if given_states is not None:
        initial = list(given_states)
    elif layer.trainable_initial_state:
        # The learned state, broadcast over the batch.
        state_shape = g.node("Concat", [_batch_size(g, x), g.const([units], "units", np.int64)],
                             axis=0)
        initial = [g.node("Expand", [g.const(getattr(layer, name), f"{kind}_{name}"),
                                     state_shape]) for name in names]
    if initial is not None:
        inputs += [g.node("Unsqueeze", [state, g.const([0], "direction_axis", np.int64)])
                   for state in initial]
    while inputs[-1] == "":
        inputs.pop()
    attributes = dict(hidden_size=units,
                      direction="reverse" if layer.go_backwards else "forward")
    if kind == "GRU":
        attributes["linear_before_reset"] = 1
    if kind == "SimpleRNN":
        if layer.activation == "linear":
            attributes.update(activations=["Affine"], activation_alpha=[1.0],
                              activation_beta=[0.0])
        else:
            attributes["activations"] = [_RNN_ACTIVATIONS[layer.activation]]
    outputs = [g.name(f"{kind}_Y"), g.name(f"{kind}_Y_h")] + ([g.name("LSTM_Y_c")] if lstm
                                                              else [])
    g.nodes.append(g.onnx.helper.make_node(op, inputs, outputs, name=g.name(op),
                                           **attributes))
    states = [g.node("Squeeze", [name, g.const([0], "direction_axis", np.int64)])
              for name in outputs[1:]]
    if layer.return_sequences:
        y = g.node("Squeeze", [outputs[0], g.const([1], "direction_axis", np.int64)])
        if layer.go_backwards:
            y = _reverse_time(g, y, 0)
        y = g.node("Transpose", [y], perm=[1, 0, 2])                       # (batch, T, units)
    else:
        y = states[0]
    if lengths is not None:
        # A sample of padding only: cdl carries the initial state through
        # it; the op's result there is not relied on.
        last_axis = g.const([-1], "last_axis", np.int64)
        empty = g.node("Unsqueeze", [g.node("Equal", [lengths, g.const(
            np.array(0, np.int32), "zero", np.int32)]), last_axis])          # (batch, 1)
        if initial is None:
            initial = [g.node("Expand", [g.scalar(0.0, "zero"), g.node("Shape", [states[0]])])
                       ] * len(states)
        states = [g.node("Where", [empty, start, state])
                  for start, state in zip(initial, states)]
        if not layer.return_sequences:
            y = states[0]
        # A sample padded between real steps: NaN, not a different answer.
        ok = g.node("Unsqueeze", [trailing, last_axis])
        nan = g.scalar(np.nan, "nan")
        states = [g.node("Where", [ok, state, nan]) for state in states]
        if layer.return_sequences:
            y = g.node("Where", [g.node("Unsqueeze", [ok, last_axis]), y, nan])
        else:
            y = states[0]
    return y, states


def _recurrent_call(x, shape, count):
    """``(x, shape, initial states or None)`` of a call on ``x`` or on the
    list ``[x, *count initial states]``."""
    if isinstance(x, list):
        if len(x) != 1 + count:
            raise ValueError(f"a recurrent call takes [x] and {count} initial states, "
                             f"got {len(x)} inputs")
        return x[0], shape[0], x[1:]
    return x, shape, None


def _step_order_mask(g, real, backwards):
    """The output's padding mask: ``real`` in the order the steps are taken."""
    return _reverse_time(g, real, 1) if backwards else real


def _export_recurrent(g, layer, x, shape):
    """ONNX's RNN, LSTM or GRU op (time-major, hence the transposes), its
    weights' gate blocks put in ONNX's order. ``go_backwards`` is the op's
    reverse direction, whose outputs are put back in the order the steps are
    taken, as cdl gives them. Padding (``mask_value``, a model's padding
    mask) becomes the op's ``sequence_lens``: exact when every sample's
    padding follows its real steps; a sample whose padding is elsewhere gets
    NaN outputs (the ops run every step up to the length), never a silently
    different answer. Initial states given in a graph model, or learned,
    are the op's initial_h (and initial_c); with ``return_state`` the final
    states are outputs too."""
    count = 2 if isinstance(layer, _recurrent.LSTM) else 1
    x, shape, given = _recurrent_call(x, shape, count)
    real = _step_mask(g, layer, x, layer.mask_value)
    y, states = _recurrent_nodes(g, layer, x, real, given)
    if real is not None and layer.return_sequences:
        g.produced_mask = _step_order_mask(g, real, layer.go_backwards)
    return [y, *states] if getattr(layer, "return_state", False) else y


def _export_bidirectional(g, layer, x, shape):
    """Each direction's layer on its own; the backward one's sequence is put
    back in the input's time order before the merge, as cdl does."""
    forward, backward = layer.forward_layer, layer.backward_layer
    half = 2 if isinstance(forward, _recurrent.LSTM) else 1
    x, shape, given = _recurrent_call(x, shape, 2 * half)
    real = _step_mask(g, layer, x, forward.mask_value)
    yf, sf = _recurrent_nodes(g, forward, x, real, None if given is None else given[:half])
    yb, sb = _recurrent_nodes(g, backward, x, real, None if given is None else given[half:])
    if forward.return_sequences:
        yb = _reverse_time(g, yb, 1)
        if real is not None:
            g.produced_mask = _step_order_mask(g, real, forward.go_backwards)
    if layer.merge_mode == "concat":
        y = g.node("Concat", [yf, yb], axis=-1)
    elif layer.merge_mode == "sum":
        y = g.node("Add", [yf, yb])
    elif layer.merge_mode == "mul":
        y = g.node("Mul", [yf, yb])
    elif layer.merge_mode == "ave":
        y = g.node("Div", [g.node("Add", [yf, yb]), g.scalar(2.0, "two")])
    else:
        raise ValueError(f"cdl.onnx cannot export layer {layer.name!r} (Bidirectional): "
                         f"merge_mode {layer.merge_mode!r} has no ONNX export")
    return [y, *sf, *sb] if getattr(layer, "return_state", False) else y


_CONVERTERS = {
    _dense.Dense: _export_dense,
    _attention.MultiHeadAttention: _export_attention,
    _attention.PositionalEmbedding: _export_positional_embedding,
    _transformer.TransformerEncoder: _export_transformer_encoder,
    _transformer.TransformerDecoder: _export_transformer_decoder,
    _activation.PReLU: _export_prelu,
    _conv.Conv1D: _export_conv,
    _conv.Conv2D: _export_conv,
    _conv.Conv2DTranspose: _export_conv_transpose,
    _conv.Conv1DTranspose: _export_conv_transpose,
    _conv.DepthwiseConv1D: _export_conv,
    _conv.DepthwiseConv2D: _export_conv,
    _conv.SeparableConv1D: _export_conv,
    _conv.SeparableConv2D: _export_conv,
    _norm.BatchNorm: _export_batch_norm,
    _norm.LayerNorm: _export_layer_norm,
    _norm.RMSNorm: _export_rms_norm,
    _norm.GroupNorm: _export_group_norm,
    _embedding.Embedding: _export_embedding,
    _core.Dropout: _export_identity,
    _noise.SpatialDropout1D: _export_identity,
    _noise.SpatialDropout2D: _export_identity,
    _noise.GaussianNoise: _export_identity,
    _core.Flatten: _export_flatten,
    _reshaping.Reshape: _export_reshape,
    _reshaping.Permute: _export_permute,
    _reshaping.ZeroPadding1D: _export_zero_padding,
    _reshaping.ZeroPadding2D: _export_zero_padding,
    _reshaping.Cropping1D: _export_cropping,
    _reshaping.Cropping2D: _export_cropping,
    _reshaping.UpSampling1D: _export_upsampling,
    _reshaping.UpSampling2D: _export_upsampling,
    _composite.Residual: _export_residual,
    _composite.Concatenate: _export_concatenate,
    _merge.Add: _export_add,
    _merge.Subtract: _export_subtract,
    _merge.Multiply: _export_multiply,
    _merge.Average: _export_average,
    _merge.Maximum: _export_maximum,
    _merge.Minimum: _export_minimum,
    _merge.Dot: _export_dot,
    _recurrent.SimpleRNN: _export_recurrent,
    _recurrent.LSTM: _export_recurrent,
    _recurrent.GRU: _export_recurrent,
    _recurrent.Bidirectional: _export_bidirectional,
}
for _name in _activation.__all__:
    _cls = getattr(_activation, _name)
    if issubclass(_cls, _activation.Activation):
        _CONVERTERS[_cls] = _export_activation_layer
for _name in _pooling.__all__:   # Global*: a reduction over whole axes; others: windows
    _cls = getattr(_pooling, _name)
    if _name.startswith("Adaptive"):
        _CONVERTERS[_cls] = _export_adaptive_pool
    elif _name.endswith(("Pool1D", "Pool2D")):
        _CONVERTERS[_cls] = _export_global_pool if _name.startswith("Global") \
            else _export_window_pool
del _name, _cls

#: The public layers that ``export`` refuses, by class name, with the reason.
#: Every other layer of ``cdl.layers`` has a converter (a test checks both).
NOT_EXPORTABLE = {
}


def exportable_layers():
    """The layer classes ``export`` converts (exact classes: a subclass may
    compute something else, so it is refused).

    Returns
    -------
    set of type

    Examples
    --------
    >>> import cdl.onnx
    >>> from cdl import layers
    >>> layers.Dense in cdl.onnx.exportable_layers()
    True
    >>> layers.LSTM in cdl.onnx.exportable_layers()
    True
    """
    return set(_CONVERTERS)


def _layer_nodes(g, layer, x, shape, mask=None):
    """The nodes of one call of ``layer`` on ``x``, whose padding mask (see
    ``Layer.input_mask``) is ``mask``; returns the output's name."""
    # Exact classes only: a subclass may compute something else.
    converter = _CONVERTERS.get(type(layer))
    if converter is None:
        exportable = ", ".join(sorted({cls.__name__ for cls in _CONVERTERS}))
        raise ValueError(f"cdl.onnx cannot export layer {layer.name!r} "
                         f"({type(layer).__name__}); exportable layers are: {exportable}")
    g.input_mask, g.produced_mask = mask, None
    try:
        if isinstance(x, list):   # a layer that takes a list: one shape per input
            return converter(g, layer, x, [tuple(s) for s in shape])
        return converter(g, layer, x, tuple(shape))
    finally:
        g.input_mask = None


_RECURRENT_LAYERS = (_recurrent.SimpleRNN, _recurrent.LSTM, _recurrent.GRU,
                     _recurrent.Bidirectional)

#: Layers whose output has the time steps of their first input, so carries
#: its padding mask (their ``compute_mask``).
_FIRST_INPUT_MASK = (_attention.MultiHeadAttention, _transformer.TransformerDecoder)


def _output_mask(g, layer, mask):
    """The padding mask of the output of the call just converted, from its
    input's ``mask``, as the layer's ``compute_mask`` gives it."""
    if layer.produces_mask or isinstance(layer, _embedding.Embedding):
        return g.produced_mask   # None without mask_zero
    if isinstance(layer, _RECURRENT_LAYERS):
        # The real steps in the output's step order, with return_sequences,
        # when the layer reads masks.
        return g.produced_mask if layer.supports_masking else None
    if mask is None:
        return None
    if isinstance(layer, _FIRST_INPUT_MASK):
        return mask[0] if isinstance(mask, list) else mask
    if type(layer).compute_mask is not _Layer.compute_mask:
        raise ValueError(f"cdl.onnx cannot export layer {layer.name!r} "
                         f"({type(layer).__name__}) on a padding mask: how its output's "
                         "mask follows from its input's has no export")
    if not layer.supports_masking:
        return None
    if not isinstance(mask, list):
        return mask
    # merge_masks: the logical AND of the masks present (one of equal masks
    # is their AND).
    present = [m for m in mask if m is not None]
    merged = present[0]
    for m in present[1:]:
        merged = g.node("And", [merged, m], hint="mask")
    return merged


def to_onnx(model, graph_name=None, *, dynamic_batch=True, dynamic_sequence=False,
            dynamic_axes=None, batch_size=1):
    """The ONNX graph of ``model``'s inference pass.

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
        A graph model, or a Sequential that is built or has an
        ``input_shape`` (it is built then).
    graph_name : str, optional
        Defaults to the model's name.
    dynamic_batch : bool
        True (default): the batch axis of every input and output is
        symbolic (``"batch"``), so the graph takes any batch size (every
        exported layer supports it). False: it is ``batch_size``.
    dynamic_sequence : bool
        True: axis 1 of every sequence input (samples of rank 2 or more,
        or token ids read by ``Embedding`` layers only) is symbolic
        (``"<input name>_time"``), so the graph takes sequences of any
        length; axis 1 of the outputs is then left unnamed. A layer whose
        result depends on the export's length (``Flatten``, ``Reshape``,
        ``Dot``, ``Conv2DTranspose``, a ``Permute`` moving the sequence
        axis, ``"same"`` padding with strides > 1) raises ``ValueError``.
        Default False: every axis but the batch has the model's size.
    dynamic_axes : dict, optional
        PyTorch's form, ``{name: {axis: symbolic name}}`` or ``{name: [axis,
        ...]}`` for input and output names, which then decides alone for
        the inputs: the axes listed are dynamic, the others fixed (the batch
        to ``batch_size``). Only axes 0 (the batch) and 1 (the sequence) can
        be dynamic. An output not listed gets a dynamic batch axis when an
        input has one.
    batch_size : int
        The batch size of a batch axis that is not dynamic.

    Returns
    -------
    onnx.ModelProto
        Opset ``OPSET``. A ``cdl.Model`` gives one graph input per model
        input, named by ``model.input_names`` (of shape ``(batch,
        *shape)``, and of the dtype its ``cdl.Input`` declares, else the
        model's; the graph casts it to the model's dtype as the model
        does), and one output per model output, named by
        ``model.output_names``, of the model's dtype. A ``Sequential``
        gives input ``"input"`` and output ``"output"``, both of the
        model's dtype.

    Raises
    ------
    ValueError
        If a layer cannot be exported (the message names it), a
        Sequential has no input shape, an output is named like an input
        (ONNX names every value once), or ``dynamic_axes`` names an
        unknown value or an axis other than 0 and 1.
    TypeError
        If ``model`` is not a cdl model.
    ImportError
        If onnx is not installed.

    Examples
    --------
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.Dense(2, activation="tanh")], input_shape=(3,))
    >>> [node.op_type for node in cdl.onnx.to_onnx(model).graph.node]
    ['Gemm', 'Tanh', 'Identity']

    A graph model keeps its inputs' and outputs' names:

    >>> a, b = cdl.Input(shape=(3,), name="a"), cdl.Input(shape=(3,), name="b")
    >>> total = layers.Add(name="total")([a, layers.Dense(3)(b)])
    >>> proto = cdl.onnx.to_onnx(cdl.Model([a, b], total, seed=0))
    >>> [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
    (['a', 'b'], ['total'])

    A sequence model that takes any batch size and any length:

    >>> model = cdl.Sequential([layers.GRU(4, return_sequences=True)], input_shape=(10, 3))
    >>> dims = cdl.onnx.to_onnx(model, dynamic_sequence=True).graph.input[0].type.tensor_type
    >>> [d.dim_param or d.dim_value for d in dims.shape.dim]
    ['batch', 'input_time', 3]
    """
    onnx = _import_onnx()
    from cdl.model import Model, Sequential

    dynamic_batch = _check_flag(dynamic_batch, "dynamic_batch")
    dynamic_sequence = _check_flag(dynamic_sequence, "dynamic_sequence")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or \
            batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    options = (dynamic_batch, dynamic_sequence, dynamic_axes, int(batch_size))
    if isinstance(model, Sequential):
        g, inputs, outputs = _sequential_graph(onnx, model, options)
    elif isinstance(model, Model):
        g, inputs, outputs = _model_graph(onnx, model, options)
    else:
        raise TypeError(f"cdl.onnx exports a cdl.Model or cdl.Sequential, got "
                        f"{type(model).__name__}")
    graph = onnx.helper.make_graph(g.nodes, graph_name or model.name, inputs, outputs,
                                   initializer=g.initializers)
    proto = onnx.helper.make_model(
        graph, producer_name="cdl", producer_version=__version__,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    proto.ir_version = IR_VERSION
    return proto


def _check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _input_axes(names, shapes, sequences, outputs, options):
    """``{input name: {axis: symbolic name}}`` and ``{output name: {axis:
    symbolic name}}`` (outputs listed in ``dynamic_axes`` only), from the
    export's options; ``sequences`` says which inputs are sequences."""
    dynamic_batch, dynamic_sequence, dynamic_axes, _ = options
    axes, out_axes = _chosen_axes(names, shapes, sequences, outputs, dynamic_batch,
                                  dynamic_sequence, dynamic_axes)
    for name, shape in zip(names, shapes):
        # A free axis (None, a model taking sequences of any length) is
        # dynamic whatever the options say.
        if len(shape) >= 1 and shape[0] is None:
            axes[name].setdefault(1, f"{name}_time")
    return axes, out_axes


def _chosen_axes(names, shapes, sequences, outputs, dynamic_batch, dynamic_sequence,
                 dynamic_axes):
    if dynamic_axes is None:
        axes = {}
        for name, sequence in zip(names, sequences):
            axes[name] = {0: "batch"} if dynamic_batch else {}
            if dynamic_sequence and sequence:
                axes[name][1] = f"{name}_time"
        return axes, {}
    if not isinstance(dynamic_axes, dict):
        raise TypeError(f"dynamic_axes must be a dict {{name: {{axis: symbolic name}}}}, "
                        f"got {dynamic_axes!r}")
    ranks = dict(zip(names, (len(s) for s in shapes)))
    known = list(names) + list(outputs)
    axes, out_axes = {name: {} for name in names}, {}
    for name, listed in dynamic_axes.items():
        if name not in known:
            raise ValueError(f"dynamic_axes names {name!r}, which is no input or output of "
                             f"the model (inputs {list(names)}, outputs {list(outputs)})")
        if isinstance(listed, (list, tuple)):
            listed = {axis: None for axis in listed}
        if not isinstance(listed, dict):
            raise TypeError(f"dynamic_axes[{name!r}] must be a dict {{axis: symbolic name}} "
                            f"or a list of axes, got {listed!r}")
        chosen = {}
        for axis, param in listed.items():
            if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or \
                    axis not in (0, 1):
                raise ValueError(f"dynamic_axes[{name!r}] makes axis {axis!r} dynamic: only "
                                 "axis 0 (the batch) and axis 1 (a sequence's length) can be; "
                                 "the other axes of cdl layers have fixed sizes")
            if param is not None and not isinstance(param, str):
                raise TypeError(f"dynamic_axes[{name!r}][{axis}] must be a string (the axis' "
                                f"symbolic name), got {param!r}")
            if axis == 1 and name in ranks and ranks[name] < 1:
                raise ValueError(f"input {name!r} has no axis 1 to make dynamic")
            chosen[int(axis)] = param or (f"{name}_{'batch' if axis == 0 else 'time'}")
        (axes if name in ranks else out_axes)[name] = chosen
    return axes, out_axes


def _value_dims(shape, axes, batch_size):
    """The dims of an input of per-sample ``shape``: the symbolic name where
    ``axes`` makes the axis dynamic, else its size (the batch's:
    ``batch_size``)."""
    dims = [axes.get(0, batch_size)] + list(shape)
    if 1 in axes and len(dims) > 1:
        dims[1] = axes[1]
    return dims


def _keeps_time(layer):
    """False for a layer whose output has no sequence axis left (a global
    pooling, a recurrent layer returning its last state)."""
    if isinstance(layer, (_pooling.GlobalAvgPool1D, _pooling.GlobalMaxPool1D,
                          _pooling.GlobalAvgPool2D, _pooling.GlobalMaxPool2D)):
        return False
    if isinstance(layer, _recurrent.Bidirectional):
        layer = layer.forward_layer
    if isinstance(layer, (_recurrent.SimpleRNN, _recurrent.LSTM, _recurrent.GRU)):
        return layer.return_sequences
    return True


def _output_info(onnx, name, shape, elem_type, explicit, batch, dynamic):
    """An output's value info: its axes named in ``explicit`` if listed
    there, else a batch axis ``batch`` (a name or a size) and, on an output
    with a dynamic sequence axis, an unknown axis 1."""
    if explicit is not None:
        dims = [explicit.get(0, batch if isinstance(batch, int) else None)] + list(shape)
        if 1 in explicit and len(dims) > 1:
            dims[1] = explicit[1]
    else:
        dims = [batch] + list(shape)
        if dynamic and len(dims) > 1:
            dims[1] = None
    return onnx.helper.make_tensor_value_info(name, elem_type, dims)


def _sequential_graph(onnx, model, options):
    """Nodes, input and output of a Sequential: ``"input"`` to ``"output"``."""
    if not model.built:
        if model.input_shape is None:
            raise ValueError("the model has no input shape: build it (or give input_shape) "
                             "before exporting")
        model.build()
    batch_size = options[3]
    first = model.layers[0] if model.layers else None
    sequence = len(model.input_shape) >= 2 or isinstance(first, _embedding.Embedding)
    axes, out_axes = _input_axes(["input"], [model.input_shape], [sequence], ["output"],
                                 options)
    g = _Graph(onnx, model.dtype)
    x, shape, mask, dynamic = "input", model.input_shape, None, 1 in axes["input"]
    for layer in model.layers:
        # As model.forward: no mask until a layer starts one.
        g.dynamic_time = dynamic
        x = _layer_nodes(g, layer, x, shape, mask)
        mask = _output_mask(g, layer, mask)
        dynamic = dynamic and _keeps_time(layer)
        shape = layer.output_shape
    g.dynamic_time = False
    g.nodes.append(onnx.helper.make_node("Identity", [x], ["output"], name="output"))
    elem_type = onnx.helper.np_dtype_to_tensor_dtype(model.dtype)
    inputs = [onnx.helper.make_tensor_value_info(
        "input", elem_type, _value_dims(model.input_shape, axes["input"], batch_size))]
    outputs = [_output_info(onnx, "output", model.output_shape, elem_type,
                            out_axes.get("output"), axes["input"].get(0, batch_size),
                            dynamic)]
    return g, inputs, outputs


def _model_graph(onnx, model, options):
    """Nodes, inputs and outputs of a graph model: every layer call in the
    model's order of computation, a shared layer's calls reading one set of
    initializers."""
    input_names, output_names = list(model.input_names), list(model.output_names)
    batch_size = options[3]
    # A sequence: samples of rank 2 or more, or ids read by Embedding layers only.
    readers = {t.id: [] for t in model.inputs}
    for node in model.graph.nodes:
        for t in node.inputs:
            if t.id in readers:
                readers[t.id].append(node.layer)
    sequences = [len(t.shape) >= 2 or (bool(readers[t.id]) and all(
        isinstance(layer, _embedding.Embedding) for layer in readers[t.id]))
        for t in model.inputs]
    axes, out_axes = _input_axes(input_names, [t.shape for t in model.inputs], sequences,
                                 output_names, options)
    elem_type = onnx.helper.np_dtype_to_tensor_dtype(model.dtype)
    g = _Graph(onnx, model.dtype, reserved=input_names + output_names)
    values, masks, dynamic, inputs = {}, {}, {}, []
    for name, tensor in zip(input_names, model.inputs):
        declared = model.dtype if tensor.dtype is None else np.dtype(tensor.dtype)
        inputs.append(onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(declared),
            _value_dims(tensor.shape, axes[name], batch_size)))
        dynamic[tensor.id] = 1 in axes[name]
        # The model turns every input into its own dtype before the first layer.
        if declared == model.dtype:
            values[tensor.id] = name
        else:
            values[tensor.id] = g.node("Cast", [name], to=elem_type)
    for node in model.graph.nodes:
        layer = node.layer
        args = [values[t.id] for t in node.inputs]
        shapes = [t.shape for t in node.inputs]
        # The input's padding mask, as model.forward hands it on.
        mask = [masks.get(t.id) for t in node.inputs]
        if not layer.takes_list or all(m is None for m in mask):
            mask = mask[0] if not layer.takes_list else None
        g.dynamic_time = any(dynamic[t.id] for t in node.inputs)
        with g.layer_scope(layer):
            if layer.takes_list:
                result = _layer_nodes(g, layer, args, shapes, mask)
            else:
                result = _layer_nodes(g, layer, args[0], shapes[0], mask)
        # A call of several outputs (a recurrent layer's output and final
        # states) gives a list; the padding mask goes with the first.
        outs = getattr(node, "outputs", None) or [node.output]
        results = result if len(outs) > 1 else [result]
        for k, (tensor, value) in enumerate(zip(outs, results)):
            values[tensor.id] = value
            dynamic[tensor.id] = k == 0 and g.dynamic_time and _keeps_time(layer)
        masks[node.output.id] = _output_mask(g, layer, mask)
    g.dynamic_time = False
    batches = [axes[name][0] for name in input_names if 0 in axes[name]]
    batch = batches[0] if batches else batch_size
    outputs = []
    for name, tensor in zip(output_names, model.outputs):
        value = values[tensor.id]
        if value != name:
            if name in input_names:
                raise ValueError(
                    f"output {name!r} has the name of an input, and an ONNX graph names each "
                    "value once: give the output another name (its key in a dict of outputs, "
                    "or the name of the layer that computes it)")
            g.nodes.append(onnx.helper.make_node("Identity", [value], [name], name=name))
        outputs.append(_output_info(onnx, name, tensor.shape, elem_type, out_axes.get(name),
                                    batch, dynamic[tensor.id]))
    return g, inputs, outputs


def export(model, path, graph_name=None, *, dynamic_batch=True, dynamic_sequence=False,
           dynamic_axes=None, batch_size=1):
    """Write ``model``'s inference graph to the ONNX file ``path``.

    The graph is checked with ``onnx.checker`` first, and the file is
    written atomically: to a temporary file in the same directory, then
    renamed over ``path``, so a failed export leaves no partial file.

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
        See ``to_onnx`` for the inputs and outputs of the graph.
    path : str or os.PathLike
    graph_name : str, optional
    dynamic_batch, dynamic_sequence, dynamic_axes, batch_size
        Which axes are dynamic; see ``to_onnx``. By default the batch axis
        is and the others have the model's sizes.

    Returns
    -------
    path, as given

    Raises
    ------
    ValueError
        If a layer cannot be exported, an output is named like an input,
        or the dynamic axes asked for cannot be (see ``to_onnx``).
    TypeError
        If ``model`` is not a cdl model.
    ImportError
        If onnx is not installed.

    Examples
    --------
    >>> import os, tempfile
    >>> import cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(2,), seed=0)
    >>> path = cdl.onnx.export(model, os.path.join(tempfile.mkdtemp(), "m.onnx"))
    >>> os.path.getsize(path) > 0
    True
    """
    onnx = _import_onnx()
    proto = to_onnx(model, graph_name, dynamic_batch=dynamic_batch,
                    dynamic_sequence=dynamic_sequence, dynamic_axes=dynamic_axes,
                    batch_size=batch_size)
    onnx.checker.check_model(proto, full_check=True)
    _write_atomically(os.fspath(path), proto.SerializeToString())
    return path


def _write_atomically(path, data):
    """Write ``data`` to ``path`` as cdl writes its model files: a temporary
    file in the same directory, fsynced, renamed over the target."""
    from cdl.saving.atomic import atomic_write

    atomic_write(path, lambda f: f.write(data))
