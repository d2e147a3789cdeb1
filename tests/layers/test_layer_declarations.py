"""Every public layer describes itself: its sublayers, its fused training
step (or that it has none), its ONNX export (or why it has none) and its
fuzz entry (or which entry covers it). Adding a layer without deciding
each of these fails here, naming the layer and what to add.
"""
import importlib
import pathlib

import numpy as np
import pytest

import cdl
import cdl.onnx
from cdl import _fused, layers, losses, metrics, optimizers, tuning
from cdl._kernels import activations as _act
from cdl.layers.activation import resolve_activation

import fuzz_entry_points as fuzz

PUBLIC_LAYERS = {name: getattr(layers, name) for name in layers.__all__
                 if isinstance(getattr(layers, name), type)
                 and issubclass(getattr(layers, name), layers.Layer)
                 and getattr(layers, name) is not layers.Layer}

#: Public layers the compiled fused training step does not run, and why. A
#: layer listed here trains layer by layer; one that declares ``fused_steps``
#: in its own class is run by the fused step (when its model qualifies).
NO_FUSED_STEP = {
    "PReLU": "its slopes are weights, and the fused step knows weights only for Dense",
    "Residual": "a block of layers: the fused step runs a plain chain",
    "Concatenate": "a block of layers, or a merge of several inputs: the fused step runs a "
                   "plain chain of one input",
    "Add": "a merge of several inputs: the fused step runs a plain chain of one input",
    "Subtract": "a merge of several inputs: the fused step runs a plain chain of one input",
    "Multiply": "a merge of several inputs: the fused step runs a plain chain of one input",
    "Average": "a merge of several inputs: the fused step runs a plain chain of one input",
    "Maximum": "a merge of several inputs: the fused step runs a plain chain of one input",
    "Minimum": "a merge of several inputs: the fused step runs a plain chain of one input",
    "Dot": "a merge of several inputs: the fused step runs a plain chain of one input",
    "BatchNorm": "its running statistics are updated outside any fused kernel",
    "LayerNorm": "no fused kernel normalises",
    "GroupNorm": "no fused kernel normalises",
    "RMSNorm": "no fused kernel normalises",
    "Embedding": "its input is indices, not features",
    "MaxPool1D": "works on sequences, not 1-D samples",
    "AvgPool1D": "works on sequences, not 1-D samples",
    "MaxPool2D": "works on images, not 1-D samples",
    "AvgPool2D": "works on images, not 1-D samples",
    "GlobalMaxPool1D": "works on sequences, not 1-D samples",
    "GlobalAvgPool1D": "works on sequences, not 1-D samples",
    "GlobalMaxPool2D": "works on images, not 1-D samples",
    "GlobalAvgPool2D": "works on images, not 1-D samples",
    "AdaptiveMaxPool1D": "works on sequences, not 1-D samples",
    "AdaptiveAvgPool1D": "works on sequences, not 1-D samples",
    "AdaptiveMaxPool2D": "works on images, not 1-D samples",
    "AdaptiveAvgPool2D": "works on images, not 1-D samples",
    "ZeroPadding1D": "works on sequences, not 1-D samples",
    "ZeroPadding2D": "works on images, not 1-D samples",
    "Cropping1D": "works on sequences, not 1-D samples",
    "Cropping2D": "works on images, not 1-D samples",
    "UpSampling1D": "works on sequences, not 1-D samples",
    "UpSampling2D": "works on images, not 1-D samples",
    "Reshape": "its output has more than one axis",
    "Permute": "works on samples of two axes or more",
    "SpatialDropout1D": "works on sequences, not 1-D samples",
    "SpatialDropout2D": "works on images, not 1-D samples",
    "GaussianNoise": "no fused kernel draws Gaussian noise",
    "Conv1D": "works on sequences, not 1-D samples",
    "Conv2D": "works on images, not 1-D samples",
    "Conv2DTranspose": "works on images, not 1-D samples",
    "Conv1DTranspose": "works on sequences, not 1-D samples",
    "DepthwiseConv1D": "works on sequences, not 1-D samples",
    "DepthwiseConv2D": "works on images, not 1-D samples",
    "SeparableConv1D": "works on sequences, not 1-D samples",
    "SeparableConv2D": "works on images, not 1-D samples",
    "SimpleRNN": "works on sequences, not 1-D samples",
    "LSTM": "works on sequences, not 1-D samples",
    "GRU": "works on sequences, not 1-D samples",
    "Bidirectional": "works on sequences, not 1-D samples",
    "MultiHeadAttention": "works on sequences, not 1-D samples",
    "PositionalEmbedding": "works on sequences, not 1-D samples",
    "TransformerEncoder": "a block of layers on sequences: the fused step runs a plain chain "
                          "on 1-D samples",
    "TransformerDecoder": "a block of layers on two sequences: the fused step runs a plain "
                          "chain of one input on 1-D samples",
}

#: A built example of every layer that declares a fused step, on (5,) samples.
FUSED_EXAMPLES = {
    "Dense": lambda: layers.Dense(4, activation="elu"),
    "Activation": lambda: layers.Activation("gelu"),
    "Dropout": lambda: layers.Dropout(0.25),
    "Flatten": lambda: layers.Flatten(),
    "LeakyReLU": lambda: layers.LeakyReLU(0.2),
    "ELU": lambda: layers.ELU(0.5),
    "Softplus": lambda: layers.Softplus(beta=1.5),
}


def _declares_fused_step(cls):
    return "fused_steps" in vars(cls)


def _example(name):
    make = FUSED_EXAMPLES.get(name, PUBLIC_LAYERS[name])
    return make()


# --- sublayers --------------------------------------------------------------------------

#: Layers made of layers, whose children are tested below.
BLOCKS = ("Residual", "Concatenate", "Bidirectional", "TransformerEncoder",
          "TransformerDecoder")


def test_a_plain_layer_holds_no_sublayers():
    for name, cls in PUBLIC_LAYERS.items():
        if name in BLOCKS:
            continue
        method = getattr(cls, "sublayers")
        assert method is layers.Layer.sublayers, (
            f"{name} overrides sublayers(): add a test of its children here")


def test_blocks_list_the_layers_they_run_and_iter_layers_walks_them_once():
    inner = layers.Dense(3, name="inner")
    rnn = layers.GRU(2)
    block = layers.Residual([inner, layers.Concatenate([[layers.Dense(2, name="left")],
                                                        [layers.ReLU(name="right")]],
                                                       name="cat")], name="block")
    bi = layers.Bidirectional(rnn, name="bi")
    assert [layer.name for layer in block.sublayers()] == ["inner", "cat"]
    assert bi.sublayers() == [bi.forward_layer, bi.backward_layer]
    assert rnn not in bi.sublayers()   # the template is never run
    names = [layer.name for layer in layers.iter_layers([block, bi, block])]
    assert names == ["block", "inner", "cat", "left", "right", "bi", f"forward_{rnn.name}",
                     f"backward_{rnn.name}"]
    assert [layer.name for layer in layers.iter_layers(inner)] == ["inner"]


def test_transformer_blocks_list_every_layer_they_run():
    enc = layers.TransformerEncoder(2, 8, name="enc")
    dec = layers.TransformerDecoder(2, 8, name="dec")
    assert [layer.name for layer in enc.sublayers()] == [
        "enc_self_attention", "enc_dropout1", "enc_norm1", "enc_dense1", "enc_dropout",
        "enc_dense2", "enc_dropout2", "enc_norm2"]
    assert [layer.name for layer in dec.sublayers()] == [
        "dec_self_attention", "dec_dropout1", "dec_norm1", "dec_cross_attention",
        "dec_dropout2", "dec_norm2", "dec_dense1", "dec_dropout", "dec_dense2",
        "dec_dropout3", "dec_norm3"]
    for block in (enc, dec):
        # Every sublayer is an attribute the block runs, and none holds layers.
        assert {id(layer) for layer in block.sublayers()} == {
            id(value) for value in vars(block).values() if isinstance(value, layers.Layer)}
        assert all(layer.sublayers() == [] for layer in block.sublayers())


def test_predict_mc_reaches_dropout_inside_a_block():
    model = cdl.Sequential([layers.Dense(8), layers.Residual([layers.Dropout(0.5)])],
                           input_shape=(3,), seed=0)
    _, std = tuning.predict_mc(model, np.ones((2, 3)), mc_samples=8, seed=0)
    assert (std > 0).any()


# --- the fused training step ------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PUBLIC_LAYERS))
def test_every_public_layer_declares_its_fused_step_or_why_it_has_none(name):
    cls = PUBLIC_LAYERS[name]
    if name in NO_FUSED_STEP:
        assert not _declares_fused_step(cls), (
            f"{name} declares fused_steps: remove it from NO_FUSED_STEP")
        return
    assert _declares_fused_step(cls), (
        f"{name} neither declares fused_steps in its class nor is listed in NO_FUSED_STEP "
        f"with a reason: a layer the fused step could run would silently train layer by "
        f"layer (an activation declares it with 'fused_steps = Activation.fused_steps')")


@pytest.mark.parametrize("name", sorted(set(PUBLIC_LAYERS) - set(NO_FUSED_STEP)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_declared_fused_step_trains_bit_for_bit_as_the_layer(name, dtype):
    def run(fused):
        model = cdl.Sequential([layers.Dense(6), _example(name), layers.Dense(3)],
                               input_shape=(5,), dtype=dtype, seed=2)
        model.compile(optimizers.Adam(lr=0.01), "mse")
        model.use_fused_step = fused
        rng = np.random.default_rng(0)
        history = model.fit(rng.standard_normal((40, 5)), rng.standard_normal((40, 3)),
                            epochs=2, batch_size=16, verbose=0)
        return model, history.history

    fused, h1 = run(True)
    plain, h2 = run(False)
    assert fused._plan is not None, f"{name} declares a fused step, yet the model is not fused"
    assert np.array_equal(fused.param_buffer, plain.param_buffer)
    assert h1 == h2


@pytest.mark.parametrize("cls", [cls for cls in PUBLIC_LAYERS.values()
                                 if issubclass(cls, layers.Activation)],
                         ids=lambda cls: cls.__name__)
def test_an_activation_layer_runs_the_kernel_of_its_name(cls):
    layer = cls("relu") if cls is layers.Activation else cls()
    layer(np.ones((2, 4)))
    step, = layer.fused_steps()
    code, default = resolve_activation(layer.activation)[1:]
    assert (step.kind, step.width_in, step.width_out) == ("activation", 4, 4)
    assert step.code == code == _act.CODES[layer.activation]
    assert step.param == default


@pytest.mark.parametrize("name", [*_act.CODES])
def test_dense_and_activation_run_the_kernel_of_every_activation_name(name):
    dense, act = layers.Dense(2, activation=name), layers.Activation(name)
    dense(np.ones((1, 3)))
    act(np.ones((1, 3)))
    assert dense.fused_steps()[0].code == act.fused_steps()[0].code == _act.CODES[name]


def test_a_subclass_inherits_no_fused_step():
    class Doubled(layers.ReLU):
        def forward(self, x, training=False):
            return 2 * super().forward(x, training)

    model = cdl.Sequential([layers.Dense(4), Doubled(), layers.Dense(2)], input_shape=(3,))
    model.compile("sgd", "mse")
    assert _fused.build_plan(model, 8) is None

    class Same(layers.ReLU):
        fused_steps = layers.ReLU.fused_steps

    model = cdl.Sequential([layers.Dense(4), Same(), layers.Dense(2)], input_shape=(3,))
    model.compile("sgd", "mse")
    assert _fused.build_plan(model, 8) is not None


# --- ONNX export ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PUBLIC_LAYERS))
def test_every_public_layer_exports_to_onnx_or_is_listed_as_not_exportable(name):
    exportable = PUBLIC_LAYERS[name] in cdl.onnx.exportable_layers()
    listed = name in cdl.onnx.NOT_EXPORTABLE
    assert exportable != listed, (
        f"{name}: give cdl.onnx a converter, or list it in cdl.onnx.NOT_EXPORTABLE with "
        "the reason" if not exportable else
        f"{name} has an ONNX converter: remove it from cdl.onnx.NOT_EXPORTABLE")


def test_the_not_exportable_list_names_only_public_layers():
    assert set(cdl.onnx.NOT_EXPORTABLE) <= set(PUBLIC_LAYERS)
    assert all(isinstance(reason, str) and reason for reason in cdl.onnx.NOT_EXPORTABLE.values())


# --- the fuzz registry ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PUBLIC_LAYERS))
def test_every_public_layer_has_a_fuzz_entry(name):
    covered = f"layers.{name}" in fuzz.ENTRIES or name in fuzz.LAYERS_FUZZED_AS
    assert covered, (f"{name} has no entry in tests/fuzz_entry_points.py: add it to "
                     "LAYER_SPECS (or to LAYERS_FUZZED_AS, naming the entry that covers it)")


def test_the_layers_fuzzed_through_another_entry_are_covered_there():
    for name, (entry, activation) in fuzz.LAYERS_FUZZED_AS.items():
        assert name in PUBLIC_LAYERS and f"layers.{name}" not in fuzz.ENTRIES
        assert entry in fuzz.ENTRIES
        # An activation class with its defaults is Activation(<its name>).
        layer = PUBLIC_LAYERS[name]()
        assert layer.activation == activation and activation in fuzz.ACTIVATIONS
        assert _declares_fused_step(PUBLIC_LAYERS[name]) and entry == "layers.Activation"


def test_the_fuzzed_activations_are_every_kernel():
    canonical = {resolve_activation(name)[0] for name in _act.CODES}
    assert canonical - {"swish"} <= set(fuzz.ACTIVATIONS)


def _public_subclasses(module, base):
    return [name for name in module.__all__
            if isinstance(getattr(module, name), type) and issubclass(getattr(module, name), base)
            and getattr(module, name) is not base]


def test_every_public_loss_and_optimizer_has_a_fuzz_entry():
    for name in _public_subclasses(losses, losses.Loss):
        assert any(spec == name or spec.startswith(f"{name}_") for spec in fuzz.LOSS_SPECS), (
            f"losses.{name} has no entry in LOSS_SPECS")
    for name in _public_subclasses(optimizers, optimizers.Optimizer):
        assert f"optimizers.{name}.step" in fuzz.ENTRIES, f"optimizers.{name} has no entry"
    for name in ("clip_grad_norm", "clip_grad_value"):
        assert f"optimizers.{name}" in fuzz.ENTRIES


def test_every_public_metric_has_a_fuzz_entry():
    for name in metrics.__all__:
        obj = getattr(metrics, name)
        if name in fuzz.METRICS_NOT_FUZZED or name == "get":
            continue
        assert f"metrics.{name}" in fuzz.ENTRIES, (
            f"metrics.{name} has no fuzz entry (or a reason in METRICS_NOT_FUZZED)")
        assert callable(obj)


# --- the layer modules ------------------------------------------------------------------

def test_every_layer_module_is_exported():
    """A layer added in a new module of cdl/layers appears in cdl.layers."""
    folder = pathlib.Path(layers.__file__).parent
    for path in sorted(folder.glob("*.py")):
        if path.stem in ("__init__", "base"):
            continue
        module = importlib.import_module(f"cdl.layers.{path.stem}")
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, layers.Layer):
                assert getattr(layers, name, None) is obj and name in layers.__all__, (
                    f"cdl.layers.{path.stem}.{name} is not exported by cdl.layers: add "
                    f"{path.stem!r} to the modules listed in cdl/layers/__init__.py")
                assert layers.get(name) is obj
