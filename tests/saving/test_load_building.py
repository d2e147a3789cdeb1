"""Building a model from a file costs what the file holds, no more.

Loading builds the layers under ``cdl.layers.base.allocation_budget``: no
initialiser runs (the file overwrites every weight and buffer), each weight
and buffer is counted against the values the file holds before it is
allocated, and the number of layers is bounded before any is made. Adding a
layer to a ``Sequential`` costs the same however many it holds.
"""
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc

import numpy as np
import pytest

import cdl
from cdl import initializers, io, layers, optimizers
from cdl.io import ModelFileError
from cdl.layers import base
from cdl.saving import format as spec
from cdl.saving import writer

HUGE = 10 ** 8            # elements a forged config asks for
MEMORY_LIMIT = 20 * 2 ** 20
TIME_LIMIT = 2.0


def write(path, model_config, params=np.zeros(0, np.float32), param_layout=(),
          buffers=()):
    """A model file with a correct checksum around the given parts (a forged
    one when they disagree). ``buffers`` is [(layer name, buffer name, array)]."""
    header = {"format": spec.FORMAT_NAME, "format_version": spec.FORMAT_VERSION, "kind": "model",
              "model": model_config, "built": True, "param_layout": list(param_layout),
              "buffers": [], "compile": None, "optimizer": None, "rng": None}
    arrays = [("params", params)]
    for layer, name, array in buffers:
        header["buffers"].append({"layer": layer, "buffer": name,
                                  "array": f"buffers/{layer}/{name}"})
        arrays.append((f"buffers/{layer}/{name}", array))
    with open(path, "wb") as f:
        writer.write_file(f, header, arrays)
    return path


def config_of(layer_list, input_shape):
    config = cdl.Sequential(layer_list, seed=0).get_config()
    config["input_shape"] = list(input_shape)
    return config


def load_measured(path):
    """(result or the ModelFileError raised, seconds, peak traced bytes)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = io.load_model(path)
    except ModelFileError as err:
        result = err
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, seconds, peak


@pytest.fixture
def initialiser_calls(monkeypatch):
    """Every call of a cdl initialiser, recorded as its class name."""
    calls = []
    original = initializers.Initializer.__call__

    def counting(self, shape, dtype, rng):
        calls.append(type(self).__name__)
        return original(self, shape, dtype, rng)

    monkeypatch.setattr(initializers.Initializer, "__call__", counting)
    return calls


# --- forged recurrent and normalisation layers ----------------------------------------


@pytest.mark.parametrize("cls, gates", [(layers.LSTM, 4), (layers.GRU, 3)])
def test_a_huge_recurrent_layer_is_refused_before_its_orthogonal_initialiser(
        tmp_path, initialiser_calls, cls, gates):
    # The file holds exactly the input kernel: the recurrent kernel, whose
    # orthogonal initialiser costs units cubed, is what exceeds it.
    units = 3000
    path = write(tmp_path / "rnn.cdl", config_of([cls(units, name="rnn")], (5, 1)),
                 params=np.zeros(gates * units, np.float32),
                 param_layout=[{"layer": "rnn", "weight": "input_kernel",
                                "shape": [1, gates * units]}])
    result, seconds, peak = load_measured(path)
    assert isinstance(result, ModelFileError)
    assert (f"layer 0 ({cls.__name__} 'rnn'): weight rnn.recurrent_kernel of shape "
            f"(3000, {gates * units}) brings the weights to ") in str(result)
    assert f"more weights than the {gates * units:,} values the file holds" in str(result)
    assert initialiser_calls == []
    assert seconds < TIME_LIMIT and peak < MEMORY_LIMIT


def test_batchnorm_statistics_count_against_the_buffers_the_file_holds(tmp_path):
    bn = layers.BatchNorm(center=False, scale=False, name="bn")
    path = write(tmp_path / "bn.cdl", config_of([bn], (HUGE,)))
    result, seconds, peak = load_measured(path)
    assert isinstance(result, ModelFileError)
    assert ("layer 0 (BatchNorm 'bn'): buffer bn.running_mean of shape (100000000,) brings "
            "the buffers to 100,000,000 values, more buffers than the 0 values the file "
            "holds") in str(result)
    assert seconds < TIME_LIMIT and peak < MEMORY_LIMIT


def test_the_failing_layer_is_named_by_its_position(tmp_path):
    model_layers = [layers.Dense(2, name="a"), layers.ReLU(name="b"),
                    layers.Dense(HUGE, name="c")]
    path = write(tmp_path / "f.cdl", config_of(model_layers, (3,)),
                 params=np.zeros(8, np.float32),
                 param_layout=[{"layer": "a", "weight": "kernel", "shape": [3, 2]},
                               {"layer": "a", "weight": "bias", "shape": [2]}])
    with pytest.raises(ModelFileError, match=r"f\.cdl: layer 2 \(Dense 'c'\): weight "
                                             r"c\.kernel of shape \(2, 100000000\)"):
        io.load_model(path)


# --- every layer class ------------------------------------------------------------------


def huge_layers():
    """For every built-in layer class: a layer asking for HUGE elements of
    state wherever its config or input shape lets it, and that input shape."""
    h = HUGE
    rnn = dict(units=h, trainable_initial_state=True)
    return {
        "Dense": (layers.Dense(h), (h,)),
        "Activation": (layers.Activation("relu"), (h,)),
        "ReLU": (layers.ReLU(), (h,)),
        "LeakyReLU": (layers.LeakyReLU(), (h,)),
        "Sigmoid": (layers.Sigmoid(), (h,)),
        "Tanh": (layers.Tanh(), (h,)),
        "Softmax": (layers.Softmax(), (h,)),
        "GELU": (layers.GELU(), (h,)),
        "ELU": (layers.ELU(), (h,)),
        "SELU": (layers.SELU(), (h,)),
        "SiLU": (layers.SiLU(), (h,)),
        "Mish": (layers.Mish(), (h,)),
        "Softplus": (layers.Softplus(), (h,)),
        "Softsign": (layers.Softsign(), (h,)),
        "HardSigmoid": (layers.HardSigmoid(), (h,)),
        "HardSwish": (layers.HardSwish(), (h,)),
        "ReLU6": (layers.ReLU6(), (h,)),
        "LogSoftmax": (layers.LogSoftmax(), (h,)),
        "PReLU": (layers.PReLU(), (h,)),
        "Dropout": (layers.Dropout(0.5), (h,)),
        "Flatten": (layers.Flatten(), (h,)),
        "Residual": (layers.Residual([layers.Dense(h), layers.BatchNorm()]), (h,)),
        "Concatenate": (layers.Concatenate([[layers.Dense(h)], [layers.BatchNorm()]]), (h,)),
        "BatchNorm": (layers.BatchNorm(center=False, scale=False), (h,)),
        "LayerNorm": (layers.LayerNorm(), (h,)),
        "GroupNorm": (layers.GroupNorm(1), (h,)),
        "RMSNorm": (layers.RMSNorm(), (h,)),
        "Embedding": (layers.Embedding(h, h), (1,)),
        "MaxPool1D": (layers.MaxPool1D(), (2, h)),
        "AvgPool1D": (layers.AvgPool1D(), (2, h)),
        "MaxPool2D": (layers.MaxPool2D(), (2, 2, h)),
        "AvgPool2D": (layers.AvgPool2D(), (2, 2, h)),
        "GlobalMaxPool1D": (layers.GlobalMaxPool1D(), (2, h)),
        "GlobalAvgPool1D": (layers.GlobalAvgPool1D(), (2, h)),
        "GlobalMaxPool2D": (layers.GlobalMaxPool2D(), (2, 2, h)),
        "GlobalAvgPool2D": (layers.GlobalAvgPool2D(), (2, 2, h)),
        "AdaptiveMaxPool1D": (layers.AdaptiveMaxPool1D(h), (2, h)),
        "AdaptiveAvgPool1D": (layers.AdaptiveAvgPool1D(h), (2, h)),
        "AdaptiveMaxPool2D": (layers.AdaptiveMaxPool2D(h), (2, 2, h)),
        "AdaptiveAvgPool2D": (layers.AdaptiveAvgPool2D((None, h)), (h, 2, h)),
        "ZeroPadding1D": (layers.ZeroPadding1D(h), (2, h)),
        "ZeroPadding2D": (layers.ZeroPadding2D(h), (2, 2, h)),
        "Cropping1D": (layers.Cropping1D(1), (h, h)),
        "Cropping2D": (layers.Cropping2D(1), (h, h, h)),
        "UpSampling1D": (layers.UpSampling1D(h), (2, h)),
        "UpSampling2D": (layers.UpSampling2D(h, interpolation="bilinear"), (2, 2, h)),
        "Reshape": (layers.Reshape((h, 1)), (h,)),
        "Permute": (layers.Permute((2, 1)), (h, 1)),
        "SpatialDropout1D": (layers.SpatialDropout1D(0.5), (2, h)),
        "SpatialDropout2D": (layers.SpatialDropout2D(0.5), (2, 2, h)),
        "GaussianNoise": (layers.GaussianNoise(0.1), (h,)),
        "Conv1D": (layers.Conv1D(h, 1), (1, h)),
        "Conv2D": (layers.Conv2D(h, 1), (1, 1, h)),
        "Conv2DTranspose": (layers.Conv2DTranspose(h, 1), (1, 1, h)),
        "Conv1DTranspose": (layers.Conv1DTranspose(h, 1), (1, h)),
        "DepthwiseConv1D": (layers.DepthwiseConv1D(1), (1, h)),
        "DepthwiseConv2D": (layers.DepthwiseConv2D(1, depth_multiplier=h), (1, 1, 1)),
        "SeparableConv1D": (layers.SeparableConv1D(h, 1), (1, 1)),
        "SeparableConv2D": (layers.SeparableConv2D(1, 1, depth_multiplier=h), (1, 1, 1)),
        "SimpleRNN": (layers.SimpleRNN(**rnn), (1, h)),
        "LSTM": (layers.LSTM(**rnn), (1, h)),
        "GRU": (layers.GRU(**rnn), (1, h)),
        "Bidirectional": (layers.Bidirectional(layers.LSTM(**rnn)), (1, h)),
        # Merge layers, called in a graph on a list of inputs.
        "Add": (layers.Add(), [(h,), (h,)]),
        "Subtract": (layers.Subtract(), [(h,), (h,)]),
        "Multiply": (layers.Multiply(), [(h,), (h,)]),
        "Average": (layers.Average(), [(h,), (h,)]),
        "Maximum": (layers.Maximum(), [(h,), (h,)]),
        "Minimum": (layers.Minimum(), [(h,), (h,)]),
        "Dot": (layers.Dot(axes=1), [(h,), (h,)]),
        # Attention: heads, tables and feed-forward widths from the config.
        "MultiHeadAttention": (layers.MultiHeadAttention(1, h), (1, 1)),
        "PositionalEmbedding": (layers.PositionalEmbedding(h), (1, 1)),
        "TransformerEncoder": (layers.TransformerEncoder(1, dim_feedforward=h), (1, 1)),
        "TransformerDecoder": (layers.TransformerDecoder(1, dim_feedforward=h),
                               [(1, 1), (1, 1)]),
    }


def graph_config_of(layer, input_shapes):
    """The model config of a graph calling ``layer`` once on inputs of
    ``input_shapes`` (the file then says what the graph holds)."""
    inputs = [cdl.Input(shape, name=f"in{i}") for i, shape in enumerate(input_shapes)]
    config = {"class_name": "Model", "name": "model", "dtype": "float32", "seed": 0,
              "graph": {"inputs": [{"name": t.name, "shape": list(t.shape), "dtype": None}
                                   for t in inputs],
                        "layers": [{"class_name": type(layer).__name__,
                                    "config": layer.get_config()}],
                        "nodes": [{"layer": 0, "inputs": [["input", i] for i in
                                                          range(len(inputs))], "list": True}],
                        "outputs": [["node", 0]], "output_names": [layer.name]}}
    return config


def test_the_huge_layer_table_covers_every_layer_class():
    assert set(huge_layers()) == set(layers._BY_NAME)


@pytest.mark.parametrize("class_name", sorted(huge_layers()))
def test_no_layer_class_allocates_what_the_file_does_not_hold(tmp_path, class_name,
                                                              initialiser_calls):
    layer, input_shape = huge_layers()[class_name]
    config = graph_config_of(layer, input_shape) if layer.takes_list else \
        config_of([layer], input_shape)
    path = write(tmp_path / "huge.cdl", config)
    result, seconds, peak = load_measured(path)
    if isinstance(result, ModelFileError):
        assert "layer 0 (" in str(result) and "the file holds" in str(result)
    else:   # a layer without state is rightly built
        assert result.count_params() == 0 and not layer.buffers()
    assert initialiser_calls == []
    assert seconds < TIME_LIMIT, f"{class_name}: {seconds:.2f} s"
    assert peak < MEMORY_LIMIT, f"{class_name}: {peak / 2 ** 20:.0f} MiB"


@cdl.register_layer
class StatsOutsideTheBudget(layers.Layer):
    """Keeps per-channel state made with NumPy directly (not ``add_buffer``)."""

    def build(self, input_shape):
        self.stats = np.empty(input_shape[-1])   # np.empty: traced, yet never touched

    def forward(self, x, training=False):
        return self._check_input(x)


def test_the_memory_check_notices_state_made_outside_the_budget(tmp_path):
    path = write(tmp_path / "outside.cdl",
                 config_of([StatsOutsideTheBudget()], (HUGE,)))
    _, _, peak = load_measured(path)
    assert peak > MEMORY_LIMIT


# --- the number of layers -----------------------------------------------------------------


def test_more_layers_than_the_limit_are_refused_before_any_is_made(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "MAX_LAYERS", 10)
    made = []
    original = layers.Flatten.__init__

    def counting(self, *args, **kwargs):
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(layers.Flatten, "__init__", counting)
    flat = [{"class_name": "Flatten", "config": {}}]
    config = config_of([layers.Flatten()], (2,))
    made.clear()
    config["layers"] = flat * 10
    assert len(io.load_model(write(tmp_path / "ten.cdl", config)).layers) == 10
    made.clear()
    config["layers"] = flat * 11
    with pytest.raises(ModelFileError, match="describes more than 10 layers"):
        io.load_model(write(tmp_path / "eleven.cdl", config))
    assert made == []
    # Layers inside other layers count too.
    config["layers"] = [{"class_name": "Residual", "config": {"layers": flat * 10}}]
    with pytest.raises(ModelFileError, match="describes more than 10 layers"):
        io.load_model(write(tmp_path / "nested.cdl", config))
    assert made == []


def test_models_with_more_layers_than_load_accepts_are_not_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "MAX_LAYERS", 10)
    path = tmp_path / "m.cdl"
    cdl.Sequential([layers.Flatten() for _ in range(10)], input_shape=(2,)).save(path)
    assert len(io.load_model(path).layers) == 10
    nested = cdl.Sequential([layers.Residual([layers.Flatten() for _ in range(10)])],
                            input_shape=(2,))
    with pytest.raises(ValueError, match="more than 10 layers .counting those inside other"):
        nested.save(tmp_path / "nested.cdl")
    assert not (tmp_path / "nested.cdl").exists()


def test_many_weightless_layers_load_in_linear_time(tmp_path):
    config = config_of([layers.Flatten()], (2,))
    config["layers"] = [{"class_name": "Flatten", "config": {"name": f"f{i}"}}
                        for i in range(16_000)]
    start = time.perf_counter()
    model = io.load_model(write(tmp_path / "flat.cdl", config))
    assert len(model.layers) == 16_000
    assert time.perf_counter() - start < 5.0   # quadratic adding took ~20 s


class NameCounting(layers.Layer):
    """Counts how often its name is read."""

    reads = 0

    @property
    def name(self):
        NameCounting.reads += 1
        return self._name

    @name.setter
    def name(self, value):
        layers.Layer.name.fset(self, value)


def test_adding_a_layer_does_not_look_at_the_earlier_ones():
    model = cdl.Sequential()
    NameCounting.reads = 0
    for i in range(2000):
        model.add(NameCounting(name=f"n{i}"))
    # A few reads per add, not one per earlier layer (two million).
    assert NameCounting.reads < 10 * 2000


def test_adding_a_layer_sees_renamed_layers():
    a, b = layers.Dense(2, name="a"), layers.Dense(2, name="b")
    model = cdl.Sequential([a, b])
    with pytest.raises(ValueError, match="a layer named 'a' is already in this model"):
        model.add(layers.Dense(2, name="a"))
    b.name = "c"
    with pytest.raises(ValueError, match="a layer named 'c' is already in this model"):
        model.add(layers.Dense(2, name="c"))
    model.add(layers.Dense(2, name="b"))   # free again
    with pytest.raises(ValueError, match="layer 'a' is already in this model"):
        model.add(a)
    a.name = "z"
    with pytest.raises(ValueError, match="layer 'z' is already in this model"):
        model.add(a)
    assert [layer.name for layer in model.layers] == ["z", "c", "b"]


# --- valid files ------------------------------------------------------------------------


def every_kind(seed=0):
    return cdl.Sequential([
        layers.Conv1D(4, 2, activation="relu"), layers.BatchNorm(),
        layers.Bidirectional(layers.LSTM(3, return_sequences=True, trainable_initial_state=True)),
        layers.GRU(3, return_sequences=True), layers.SimpleRNN(2, return_sequences=True),
        layers.Residual([layers.Dense(2), layers.BatchNorm()]),
        layers.Concatenate([[layers.Dense(2)], [layers.LayerNorm(), layers.PReLU()]]),
        layers.GroupNorm(2), layers.RMSNorm(), layers.Flatten(), layers.Dropout(0.1),
        layers.Dense(3)], input_shape=(6, 2), seed=seed)


def test_a_saved_model_loads_bit_identically_and_trains_on_identically(
        tmp_path, initialiser_calls):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 6, 2)), rng.integers(0, 3, 16)
    model = every_kind()
    model.compile(optimizers.Adam(lr=0.01), "cross_entropy")
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    path = tmp_path / "m.cdl"
    model.save(path)
    initialiser_calls.clear()
    loaded = io.load_model(path)
    assert initialiser_calls == []
    assert np.array_equal(loaded.param_buffer, model.param_buffer)
    assert not loaded.grad_buffer.any()
    for mine, theirs in zip(writer.buffer_layout(loaded), writer.buffer_layout(model)):
        assert mine[1] == theirs[1] and np.array_equal(mine[2], theirs[2])
    for name, state in model.optimizer.state_dict()["state"].items():
        assert np.array_equal(loaded.optimizer.state_dict()["state"][name], state)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.array_equal(loaded.param_buffer, model.param_buffer)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_loaded_model_holds_its_weights_once(tmp_path):
    # 32 MB of weights: the file's array becomes the parameter buffer, and no
    # gradient page is written, so loading grows the process by about that.
    path = tmp_path / "big.cdl"
    cdl.Sequential([layers.Dense(4000)], input_shape=(2000,), seed=0).save(
        path, include_optimizer=False)
    nbytes = (2000 + 1) * 4000 * 4
    code = textwrap.dedent("""
        import re, sys
        import numpy as np
        import cdl
        from cdl.saving import reader
        def status(field):
            text = open("/proc/self/status").read()
            return int(re.search(field + r":\\s+(\\d+)", text).group(1)) * 1024
        before = status("VmRSS")
        model = cdl.load_model(sys.argv[1])
        grown = status("VmHWM") - before
        saved = reader.read(sys.argv[1]).arrays["params"]
        print(grown, int(np.array_equal(model.param_buffer, saved)), int(model.grad_buffer.any()))
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(cdl.__file__)))
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    grown, equal, grads = map(int, result.stdout.split())
    assert equal == 1 and grads == 0
    assert grown < 1.4 * nbytes, f"loading {nbytes / 2**20:.0f} MiB of weights took " \
                                 f"{grown / 2**20:.0f} MiB"


def test_building_normally_still_initialises_as_before(initialiser_calls):
    first, second = every_kind(seed=3), every_kind(seed=3)
    assert initialiser_calls.count("Orthogonal") == 2 * (2 * 4 + 3 + 1)   # one per gate
    assert np.array_equal(first.param_buffer, second.param_buffer)
    assert first.layers[1].running_var.tolist() == [1.0] * 4
    assert first.layers[1].buffers().keys() == {"running_mean", "running_var"}
    # The LSTM's recurrent kernel: one orthogonal block per gate, drawn after
    # the input kernel from the model's generator.
    rng = np.random.default_rng(7)
    lstm = layers.LSTM(3)
    lstm._build((4, 2), "float64", np.random.default_rng(7))
    initializers.get("glorot_uniform")((2, 12), np.float64, rng)
    blocks = [initializers.Orthogonal()((3, 3), np.float64, rng) for _ in range(4)]
    assert np.array_equal(lstm.recurrent_kernel, np.concatenate(blocks, axis=1))


def test_a_failed_load_weights_leaves_the_weights_a_build_would_have_given(
        tmp_path, initialiser_calls):
    path = tmp_path / "w.cdl"
    saved = cdl.Sequential([layers.Dense(4), layers.BatchNorm(), layers.Dense(2)],
                           input_shape=(3,), seed=0)
    saved.save_weights(path)

    def other():
        # Fewer weights and buffers than the file holds, in other shapes.
        return cdl.Sequential([layers.Dense(3), layers.BatchNorm(), layers.Dense(2)], seed=9)

    model, reference = other(), other()
    reference.build((3,))
    with pytest.raises(ValueError, match=r"weight 0 has shape \[3, 4\]"):
        model.load_weights(path)
    assert np.array_equal(model.param_buffer, reference.param_buffer)
    assert model.layers[1].running_var.tolist() == [1.0] * 3
    # A successful load_weights into an unbuilt model runs no initialiser.
    fresh = cdl.Sequential([layers.Dense(4), layers.BatchNorm(), layers.Dense(2)], seed=1)
    initialiser_calls.clear()
    fresh.load_weights(path)
    assert initialiser_calls == []
    assert np.array_equal(fresh.param_buffer, saved.param_buffer)


# --- the budget itself -----------------------------------------------------------------


def test_allocation_budget_counts_weights_and_buffers_and_does_not_nest(initialiser_calls):
    with base.allocation_budget(weights=8 + 2, buffers=2 * 4, source="the file") as budget:
        dense = layers.Dense(2, kernel_initializer="ones")
        dense._build((4,), "float64", np.random.default_rng(0))
        bn = layers.BatchNorm(center=False, scale=False)
        bn._build((4,), "float64", np.random.default_rng(0))
        with pytest.raises(RuntimeError, match="do not nest"):
            with base.allocation_budget(1):
                pass
        with pytest.raises(base.AllocationError, match="more buffers than the 8 values"):
            layers.BatchNorm(center=False, scale=False)._build(
                (1,), "float64", np.random.default_rng(0))
    assert initialiser_calls == []
    assert not dense.kernel.any() and not bn.running_var.any()   # zero, to be overwritten
    budget.initialise()
    assert dense.kernel.tolist() == [[1.0, 1.0]] * 4 and bn.running_var.tolist() == [1.0] * 4
    assert base.active_allocation_budget() is None
    assert issubclass(base.AllocationError, ValueError)


def test_add_buffer_makes_state_listed_by_buffers():
    class Counter(layers.Layer):
        def build(self, input_shape):
            self.add_buffer("seen", (input_shape[-1],), 2.0)

    counter = Counter()
    counter._build((3,), "float32", np.random.default_rng(0))
    assert counter.buffers()["seen"] is counter.seen
    assert counter.seen.dtype == np.float32 and counter.seen.tolist() == [2.0] * 3
    with pytest.raises(ValueError, match="not a new identifier"):
        counter.add_buffer("seen", (1,))
    with pytest.raises(ValueError, match="negative size"):
        counter.add_buffer("other", (-1,))
