"""Saving and loading graph models (``cdl.Model``).

A graph model's file holds its graph (inputs, layers, calls, outputs) as
JSON; ``load_model`` rebuilds the same class from it without running code
from the file, and the loaded model predicts identically and trains on bit
for bit. Files whose graph is malformed (cycles, dangling references, a
shared layer called on two shapes, unknown classes) or larger than the file
justifies are refused with a ``ModelFileError`` naming the problem, before
anything is allocated. ``BackupAndRestore`` and ``ModelCheckpoint`` resume
graph models exactly.
"""
import json
import time
import tracemalloc

import numpy as np
import pytest

import cdl
from cdl import callbacks, initializers, io, layers, optimizers
from cdl.io import ModelFileError
from cdl.saving import format as spec
from cdl.saving import models as model_registry
from cdl.saving import reader, writer

TIME_LIMIT, MEMORY_LIMIT = 2.0, 20 * 2 ** 20


# --- models and data ----------------------------------------------------------------


def two_inputs(seed=0, dtype="float64", outputs=1):
    """Two inputs, a layer shared by both branches, merges, dropout (the
    generator) and batch normalisation (buffers); one or two outputs."""
    a = cdl.Input(shape=(6,), name="a")
    b = cdl.Input(shape=(4,), name="b")
    shared = layers.Dense(5, activation="tanh", name="shared")
    h = layers.Add(name="sum")([shared(layers.Dense(5, name="pre_a")(a)),
                                shared(layers.Dense(5, name="pre_b")(b))])
    h = layers.Concatenate(name="join")([h, b])
    h = layers.Dropout(0.2, name="drop")(h)
    h = layers.BatchNorm(name="bn")(h)
    if outputs == 1:
        out = layers.Dense(3, name="cls")(h)
    else:
        out = [layers.Dense(3, name="cls")(h), layers.Dense(1, name="reg")(h)]
    return cdl.Model(inputs=[a, b], outputs=out, seed=seed, dtype=dtype, name="two_inputs")


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = {"a": rng.standard_normal((n, 6)), "b": rng.standard_normal((n, 4))}
    return x, rng.integers(0, 3, n), rng.standard_normal((n, 1))


def compiled(seed=0, dtype="float64", outputs=1):
    model = two_inputs(seed, dtype, outputs)
    if outputs == 1:
        model.compile(optimizers.Adam(lr=0.01), "cross_entropy", metrics=["accuracy"])
    else:
        model.compile(optimizers.Adam(lr=0.01), loss={"cls": "cross_entropy", "reg": "mse"},
                      loss_weights={"cls": 1.0, "reg": 0.5}, metrics={"cls": ["accuracy"]})
    return model


def targets(outputs, y_cls, y_reg):
    return y_cls if outputs == 1 else {"cls": y_cls, "reg": y_reg}


def split(raw):
    length = int.from_bytes(raw[12:20], "little")
    return json.loads(raw[20:20 + length]), raw[20 + length:-32]


def rewrite(path, mutate):
    """The file at ``path`` with its header changed by ``mutate`` (arrays kept,
    digest recomputed): a forged file that only its content can refute."""
    file = reader.read(path)
    header = json.loads(json.dumps(file.header))
    mutate(header)
    arrays = [(entry["name"], file.arrays[entry["name"]]) for entry in header.pop("arrays")]
    with open(path, "wb") as f:
        writer.write_file(f, header, arrays)
    return path


@pytest.fixture
def initialiser_calls(monkeypatch):
    calls = []
    original = initializers.Initializer.__call__

    def counting(self, shape, dtype, rng):
        calls.append(type(self).__name__)
        return original(self, shape, dtype, rng)

    monkeypatch.setattr(initializers.Initializer, "__call__", counting)
    return calls


# --- round trips --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_graph_loads_as_the_same_class_and_predicts_identically(dtype, tmp_path,
                                                                  initialiser_calls):
    x, y, _ = data()
    model = compiled(dtype=dtype)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.cdl")
    initialiser_calls.clear()
    loaded = cdl.load_model(tmp_path / "m.cdl")
    assert initialiser_calls == []
    assert type(loaded) is cdl.Model
    assert loaded.get_config() == model.get_config()
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert loaded.input_names == ["a", "b"] and loaded.output_names == ["cls"]
    assert loaded.chain is None and loaded.dtype == np.dtype(dtype)
    assert np.array_equal(loaded.param_buffer, model.param_buffer)
    for mine, theirs in zip(writer.buffer_layout(loaded), writer.buffer_layout(model)):
        assert mine[1] == theirs[1] and np.array_equal(mine[2], theirs[2])
    assert loaded.compile_config() == model.compile_config()
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert np.array_equal(loaded.predict([x["a"], x["b"]]), model.predict(x))
    # The file's header holds the graph as the model describes it.
    header, _ = split((tmp_path / "m.cdl").read_bytes())
    assert header["model"] == {"class_name": "Model", **model.get_config()}


def test_training_continues_bit_identically_after_loading(tmp_path):
    """A graph with two inputs and a shared layer: saved after two epochs,
    loaded and trained two more, it ends where four uninterrupted epochs do
    (weights, optimizer moments, generator, history)."""
    x, y, _ = data()
    straight = compiled()
    straight.fit(x, y, epochs=4, batch_size=8, verbose=0)
    first = compiled()
    first.fit(x, y, epochs=2, batch_size=8, verbose=0)
    first.save(tmp_path / "m.cdl")
    loaded = cdl.load_model(tmp_path / "m.cdl")
    loaded.fit(x, y, epochs=2, batch_size=8, verbose=0)
    first.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for other in (first, loaded):
        assert np.array_equal(other.param_buffer, straight.param_buffer)
        for name, state in straight.optimizer.state_dict()["state"].items():
            assert np.array_equal(other.optimizer.state_dict()["state"][name], state)
        assert other.rng.bit_generator.state == straight.rng.bit_generator.state


def test_two_outputs_keep_their_losses_weights_and_metrics_and_train_on_identically(tmp_path):
    x, y_cls, y_reg = data()
    y = targets(2, y_cls, y_reg)
    model = compiled(outputs=2)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.cdl")
    loaded = cdl.load_model(tmp_path / "m.cdl")
    assert loaded.output_names == ["cls", "reg"]
    assert loaded.compile_config() == model.compile_config()
    assert loaded.compile_config()["loss"]["config"]["loss_weights"] == {"cls": 1.0, "reg": 0.5}
    for mine, theirs in zip(loaded.predict(x), model.predict(x)):
        assert np.array_equal(mine, theirs)
    ours = model.fit(x, y, epochs=2, batch_size=8, verbose=0).history
    theirs = loaded.fit(x, y, epochs=2, batch_size=8, verbose=0).history
    assert set(ours) >= {"loss", "cls_loss", "reg_loss", "cls_accuracy"}
    assert ours == theirs
    assert np.array_equal(loaded.param_buffer, model.param_buffer)
    assert loaded.evaluate(x, y) == model.evaluate(x, y)


def test_an_untrained_output_and_a_model_saved_without_optimizer(tmp_path):
    x, y_cls, _ = data()
    model = two_inputs(outputs=2)
    model.compile("sgd", loss={"cls": "cross_entropy"})     # "reg" is not trained through
    model.fit(x, {"cls": y_cls}, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.cdl", include_optimizer=False)
    loaded = cdl.load_model(tmp_path / "m.cdl")
    assert loaded.compile_config() == model.compile_config()
    assert loaded.compile_config()["loss"]["config"]["losses"]["reg"] is None
    model.fit(x, {"cls": y_cls}, epochs=1, batch_size=8, verbose=0)
    loaded.fit(x, {"cls": y_cls}, epochs=1, batch_size=8, verbose=0)
    assert np.array_equal(loaded.param_buffer, model.param_buffer)   # SGD keeps no state


def test_an_uncompiled_graph_round_trips(tmp_path):
    model = two_inputs(outputs=2, dtype="float32")
    model.save(tmp_path / "m.cdl")
    loaded = cdl.load_model(tmp_path / "m.cdl")
    assert loaded.optimizer is None and loaded.compile_config() is None
    x, _, _ = data()
    for mine, theirs in zip(loaded.predict(x), model.predict(x)):
        assert np.array_equal(mine, theirs)


def test_inputs_with_declared_dtypes_and_an_output_that_is_an_earlier_call(tmp_path):
    ids = cdl.Input(shape=(3,), name="ids", dtype="int64")
    vec = layers.Embedding(10, 4, name="embed")(ids)
    flat = layers.Flatten(name="flat")(vec)
    out = layers.Dense(2, name="out")(flat)
    model = cdl.Model(ids, {"logits": out, "features": flat}, seed=1)
    model.save(tmp_path / "m.cdl")
    loaded = cdl.load_model(tmp_path / "m.cdl")
    assert loaded.inputs[0].dtype == np.dtype("int64")
    assert loaded.output_names == ["logits", "features"]
    x = np.array([[1, 2, 3], [9, 0, 4]])
    for mine, theirs in zip(loaded.predict(x), model.predict(x)):
        assert np.array_equal(mine, theirs)


def test_weights_round_trip_between_graphs(tmp_path):
    x, _, _ = data()
    model = two_inputs(seed=0)
    model.save_weights(tmp_path / "w.cdl")
    other = two_inputs(seed=7)
    assert not np.array_equal(other.param_buffer, model.param_buffer)
    other.load_weights(tmp_path / "w.cdl")
    assert np.array_equal(other.param_buffer, model.param_buffer)
    assert np.array_equal(other.predict(x), model.predict(x))
    io.load_weights(other, tmp_path / "w.cdl")          # the same through cdl.io
    with pytest.raises(ModelFileError, match="weights file"):
        cdl.load_model(tmp_path / "w.cdl")
    # Another graph: the first weight that differs is named.
    a = cdl.Input(shape=(6,), name="a")
    narrow = cdl.Model(a, layers.Dense(2, name="d")(a), seed=0, dtype="float64")
    with pytest.raises(ValueError, match=r"weight 0 has shape \[6, 5\] in the file "
                                         r"\(pre_a.kernel\) but \[6, 2\] in the model"):
        narrow.load_weights(tmp_path / "w.cdl")
    unbuilt = cdl.Sequential([layers.Dense(5)], dtype="float64")
    with pytest.raises(ValueError, match="a graph of 2 inputs, which gives no input shape"):
        unbuilt.load_weights(tmp_path / "w.cdl")
    assert not unbuilt.built
    # One input gives the input shape: a chain's weights load into a Sequential.
    chain = cdl.Model(a, layers.Dense(1, name="e")(layers.Dense(3, name="d")(a)), seed=0)
    chain.save_weights(tmp_path / "chain.cdl")
    stack = cdl.Sequential([layers.Dense(3), layers.Dense(1)], seed=4)
    stack.load_weights(tmp_path / "chain.cdl")
    assert stack.input_shape == (6,)
    assert np.array_equal(stack.param_buffer, chain.param_buffer)


def test_weights_of_layers_another_model_trained_are_saved(tmp_path):
    """Two models sharing an encoder: saving one saves the weights the other
    trained last (the saved model takes them back first)."""
    x = cdl.Input(shape=(4,), name="x")
    encoder = layers.Dense(3, name="encoder")
    alone = cdl.Model(x, encoder(x), seed=0, dtype="float64")
    whole = cdl.Model(x, layers.Dense(2, name="head")(encoder(x)), seed=1, dtype="float64")
    whole.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    whole.fit(rng.standard_normal((16, 4)), rng.standard_normal((16, 2)), epochs=1, verbose=0)
    io.save_model(alone, tmp_path / "alone.cdl")
    trained = whole.get_weights()[:2]
    loaded = cdl.load_model(tmp_path / "alone.cdl")
    assert all(np.array_equal(p, q) for p, q in zip(loaded.params, trained))


class TwoTowers(cdl.Model):
    """A subclass of Model, as users write to add methods."""

    def tower_names(self):
        return self.input_names


def test_a_registered_subclass_loads_as_itself_and_an_unregistered_one_is_named(
        tmp_path, monkeypatch):
    a = cdl.Input(shape=(2,), name="a")
    model = TwoTowers(a, layers.Dense(1, name="d")(a), seed=0)
    model.save(tmp_path / "m.cdl")
    with pytest.raises(ModelFileError, match="unknown model class 'TwoTowers'.*"
                                             "register_model_class"):
        cdl.load_model(tmp_path / "m.cdl")
    monkeypatch.setitem(model_registry._CLASSES, "TwoTowers", TwoTowers)
    loaded = cdl.load_model(tmp_path / "m.cdl")
    assert type(loaded) is TwoTowers and loaded.tower_names() == ["a"]


# --- Sequential files are as before ---------------------------------------------------


def test_sequential_files_are_unchanged_and_files_written_before_graphs_load(tmp_path):
    model = cdl.Sequential([layers.Dense(3, name="d")], input_shape=(2,), seed=0)
    model.save(tmp_path / "s.cdl")
    header, _ = split((tmp_path / "s.cdl").read_bytes())
    assert header["model"] == model.get_config()
    assert set(header["model"]) == {"name", "dtype", "seed", "input_shape", "layers"}
    # The header exactly as the writer of format version 1 wrote it.
    old = {"format": "cdl-model", "format_version": 1, "kind": "model", "cdl_version": "0.1.0",
           "model": {"name": "old", "dtype": "float32", "seed": 3, "input_shape": [2],
                     "layers": [{"class_name": "Dense", "config": {"name": "d", "units": 3}}]},
           "built": True, "param_layout": [{"layer": "d", "weight": "kernel", "shape": [2, 3]},
                                           {"layer": "d", "weight": "bias", "shape": [3]}],
           "buffers": [], "compile": None, "optimizer": None, "rng": None}
    with open(tmp_path / "old.cdl", "wb") as f:
        writer.write_file(f, old, [("params", np.arange(9, dtype=np.float32))])
    loaded = cdl.load_model(tmp_path / "old.cdl")
    assert type(loaded) is cdl.Sequential and loaded.name == "old"
    assert loaded.params[0].tolist() == [[0, 1, 2], [3, 4, 5]]


# --- backups and checkpoints ----------------------------------------------------------


class Stop(Exception):
    pass


def stop_at(step):
    seen = [0]

    def on_batch(batch, logs):
        seen[0] += 1
        if seen[0] == step:
            raise Stop

    return callbacks.LambdaCallback(on_train_batch_begin=on_batch)


@pytest.mark.parametrize("outputs", [1, 2])
def test_a_stopped_run_of_a_graph_resumes_bit_identically_from_its_backup(outputs, tmp_path):
    x, y_cls, y_reg = data()
    y = targets(outputs, y_cls, y_reg)
    reference = compiled(outputs=outputs)
    expected = reference.fit(x, y, epochs=3, batch_size=8, verbose=0).history
    for step in (3, 6, 13):       # mid-epoch, at an epoch's start, in the last epoch
        backup = tmp_path / f"backup-{outputs}-{step}"
        with pytest.raises(Stop):
            compiled(outputs=outputs).fit(
                x, y, epochs=3, batch_size=8, verbose=0,
                callbacks=[callbacks.BackupAndRestore(backup, save_freq=1), stop_at(step)])
        # Another seed: only the backup's weights, moments and generator can
        # make it end where the reference does.
        resumed, steps = compiled(seed=9, outputs=outputs), []
        history = resumed.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[
            callbacks.BackupAndRestore(backup),
            callbacks.LambdaCallback(on_train_batch_begin=lambda b, logs: steps.append(b))
        ]).history
        assert len(steps) == 15 - (step - 1)
        assert np.array_equal(resumed.param_buffer, reference.param_buffer), step
        assert history == expected, step
        assert resumed.rng.bit_generator.state == reference.rng.bit_generator.state


def test_a_graph_checkpoint_loads_and_continues_with_its_training_state(tmp_path):
    x, y_cls, y_reg = data()
    y = targets(2, y_cls, y_reg)
    reference = compiled(outputs=2)
    reference.fit(x, y, epochs=3, batch_size=8, verbose=0)
    model = compiled(outputs=2)
    path = str(tmp_path / "ckpt-{epoch}.cdl")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(path)])
    state = io.read_training_state(tmp_path / "ckpt-2.cdl")
    loaded = cdl.load_model(tmp_path / "ckpt-2.cdl")
    assert state["epoch"] == 2
    loaded.fit(x, y, epochs=3, initial_epoch=state["epoch"], batch_size=8, verbose=0)
    assert np.array_equal(loaded.param_buffer, reference.param_buffer)


# --- forged graphs ----------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    """A valid graph file to forge from (two inputs, a shared layer, merges)."""
    model = compiled()
    x, y, _ = data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "graph.cdl"
    model.save(path)
    return path


def _graph(h):
    return h["model"]["graph"]


def _node(h, layer_name):
    """The first call of the layer named ``layer_name``."""
    graph = _graph(h)
    index = next(i for i, s in enumerate(graph["layers"]) if s["config"]["name"] == layer_name)
    return next(n for n in graph["nodes"] if n["layer"] == index)


def _index(h, layer_name):
    return next(i for i, s in enumerate(_graph(h)["layers"])
                if s["config"]["name"] == layer_name)


# (name, mutation, expected message); load_weights refuses the same (the graph
# is checked with the header) unless the entry ends with False: problems only
# replaying the calls finds, which load_weights (using the caller's layers)
# never does.
FORGERIES = [
    ("a call reading itself", lambda h: _graph(h)["nodes"][2].update(inputs=[["node", 2]]),
     "input 0 of graph call 2 refers to call 2, which is not made before it: the graph "
     "would have a cycle"),
    ("a call reading a later one", lambda h: _graph(h)["nodes"][0].update(
        inputs=[["node", 4]]), "refers to call 4, which is not made before it"),
    ("a dangling input", lambda h: _graph(h)["nodes"][0].update(inputs=[["input", 2]]),
     "refers to input 2, but the graph has 2 inputs .a dangling reference"),
    ("a dangling layer", lambda h: _graph(h)["nodes"][0].update(layer=99),
     "graph call 0 calls layer 99, but the graph has 8 layers .a dangling reference"),
    ("a dangling output", lambda h: _graph(h).update(outputs=[["node", 99]]),
     "graph output 0 refers to call 99"),
    ("a negative reference", lambda h: _graph(h)["nodes"][1].update(inputs=[["node", -1]]),
     "index must be at least 0"),
    ("a malformed reference", lambda h: _graph(h)["nodes"][1].update(inputs=[["layer", 0]]),
     r"is \['layer', 0\], not a tensor reference"),
    ("a call reading nothing", lambda h: _graph(h)["nodes"][1].update(inputs=[]),
     "graph call 1 reads no tensor"),
    ("two tensors for one", lambda h: _node(h, "pre_a").update(
        inputs=[["input", 0], ["input", 1]]), r"gives 2 tensors to a layer that takes one"),
    ("a layer no call uses", lambda h: _graph(h)["layers"].append(
        {"class_name": "Dense", "config": {"name": "unused", "units": 2}}),
     "graph layer 8 is called by no call of the graph"),
    ("an output given twice", lambda h: _graph(h).update(
        outputs=[["node", 7], ["node", 7]], output_names=["x", "y"]),
     "graph output 1 is .* already an output"),
    ("output names that do not match", lambda h: _graph(h).update(output_names=["x", "y"]),
     "the graph has 1 outputs but 2 output_names"),
    ("two inputs of one name", lambda h: _graph(h)["inputs"][1].update(name="a"),
     "two graph inputs are named 'a'"),
    ("an input of no shape", lambda h: _graph(h)["inputs"][0].pop("shape"),
     "graph input 0 has no 'shape' field"),
    ("an input of size 0", lambda h: _graph(h)["inputs"][0].update(shape=[0]),
     r"shape\[0\] must be at least 1"),
    ("an input of no axis", lambda h: _graph(h)["inputs"][0].update(shape=[]),
     r"graph input 0.shape is \[\]: a sample has at least one axis"),
    ("an input of an object dtype", lambda h: _graph(h)["inputs"][0].update(dtype="object"),
     "graph input 0.dtype is 'object'"),
    ("no inputs", lambda h: _graph(h).update(inputs=[]), "the model graph has no inputs"),
    ("nodes not a list", lambda h: _graph(h).update(nodes={}), "nodes must be list"),
    ("a list flag of a string", lambda h: _graph(h)["nodes"][0].update(list="yes"),
     r"graph call 0.list must be bool"),
    ("a layer path", lambda h: _graph(h)["layers"][0].update(class_name="os.system"),
     "graph layer 0 class_name is 'os.system', a dotted path"),
    ("a model class path", lambda h: h["model"].update(class_name="subprocess.Popen"),
     "model config class_name is 'subprocess.Popen', a dotted path"),
    ("a graph said to be a Sequential", lambda h: h["model"].update(class_name="Sequential"),
     "class_name is 'Sequential', but the model is saved as a graph"),
    ("a graph and a layer list", lambda h: h["model"].update(layers=[]),
     "both a graph and a list of layers"),
    ("a list of layers said to be a Model", lambda h: h["model"].update(
        layers=[], input_shape=None, graph=None),
     "class_name is 'Model', but the model has no graph"),
    ("a loss path", lambda h: h["compile"]["loss"].update(class_name="os.system"),
     "loss.class_name is 'os.system', a dotted path"),
    # Found when the calls are replayed: load_weights uses the caller's layers.
    ("a shared layer called on two shapes", lambda h: _graph(h)["layers"][
        _index(h, "pre_b")]["config"].update(units=4),
     "layer 'shared' .Dense. is shared: it was first called on inputs of shape "
     r"\(None, 5\) and cannot take \(None, 4\)", False),
    ("an unknown layer class", lambda h: _graph(h)["layers"][0].update(
        class_name="MyAttention"), "graph layer 0: unknown layer class 'MyAttention'", False),
    ("an unknown model class", lambda h: h["model"].update(class_name="MyModel"),
     "unknown model class 'MyModel'", False),
    ("a merge given one tensor", lambda h: _node(h, "sum").update(
        inputs=[["node", 1]], list=False),
     "graph cannot be rebuilt: TypeError: sum .Add. takes a list of tensors", False),
    ("a merge of different shapes", lambda h: _node(h, "sum").update(
        inputs=[["node", 1], ["input", 1]]),
     r"cannot call layer 'sum' \(Add\) on inputs of shape \[\(None, 5\), \(None, 4\)\]",
     False),
    ("inputs reaching no output", lambda h: _graph(h)["inputs"].append(
        {"name": "c", "shape": [2], "dtype": None}),
     "do not depend on input.*'c'", False),
    ("a layer larger than the file", lambda h: _graph(h)["layers"][_index(h, "cls")][
        "config"].update(units=10 ** 8),
     r"graph layer \d \(Dense 'cls'\): weight cls.kernel of shape \(9, 100000000\) brings "
     "the weights to .* more weights than the .* values the file holds", False),
    ("an input larger than the file", lambda h: _graph(h)["inputs"][0].update(
        shape=[10 ** 9]),
     r"graph layer \d \(Dense 'pre_a'\): weight pre_a.kernel of shape \(1000000000, 5\)",
     False),
]


@pytest.mark.parametrize("case", FORGERIES, ids=[case[0] for case in FORGERIES])
def test_forged_graphs_are_refused_naming_the_problem(case, saved, initialiser_calls):
    name, mutate, match, *weights_too = case
    rewrite(saved, mutate)
    initialiser_calls.clear()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ModelFileError, match=match):
            cdl.load_model(saved)
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert initialiser_calls == []
    assert seconds < TIME_LIMIT and peak < MEMORY_LIMIT, (seconds, peak)
    if weights_too != [False]:
        with pytest.raises(ModelFileError, match=match):
            two_inputs().load_weights(saved)


def _chain(n_calls, layer_specs, layer_of=lambda j: 0):
    """A graph config: one input of shape (2,) through ``n_calls`` calls in a
    row, call ``j`` of layer ``layer_of(j)``."""
    return {"class_name": "Model", "name": "m", "dtype": "float32", "seed": 0,
            "graph": {"inputs": [{"name": "x", "shape": [2], "dtype": None}],
                      "layers": layer_specs,
                      "nodes": [{"layer": layer_of(j),
                                 "inputs": [["input", 0] if j == 0 else ["node", j - 1]],
                                 "list": False} for j in range(n_calls)],
                      "outputs": [["node", n_calls - 1]], "output_names": ["out"]}}


def _write(path, model_config):
    header = {"format": spec.FORMAT_NAME, "format_version": spec.FORMAT_VERSION,
              "kind": "model", "model": model_config, "built": True, "param_layout": [],
              "buffers": [], "compile": None, "optimizer": None, "rng": None}
    with open(path, "wb") as f:
        writer.write_file(f, header, [("params", np.zeros(0, np.float32))])
    return path


def test_the_calls_a_graph_makes_are_bounded_before_any_layer_is_made(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "MAX_LAYERS", 40)
    made = []
    original = layers.Flatten.__init__

    def counting(self, *args, **kwargs):
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(layers.Flatten, "__init__", counting)
    flat = {"class_name": "Flatten", "config": {"name": "f"}}
    # One layer: its first call counts 1, each later call COPY_WEIGHT (it makes a copy).
    fits = 1 + (40 - 1) // spec.COPY_WEIGHT
    model = cdl.load_model(_write(tmp_path / "fits.cdl", _chain(fits, [flat])))
    assert len(model.layers) == 1 and len(model._steps) == fits
    made.clear()
    with pytest.raises(ModelFileError, match="calls that cost more than 40 layers"):
        cdl.load_model(_write(tmp_path / "over.cdl", _chain(fits + 1, [flat])))
    assert made == []
    # Distinct layers count once per call.
    distinct = [{"class_name": "Flatten", "config": {"name": f"f{i}"}} for i in range(40)]
    cdl.load_model(_write(tmp_path / "forty.cdl", _chain(40, distinct, lambda j: j)))
    made.clear()
    with pytest.raises(ModelFileError, match="calls that cost more than 40 layers"):
        cdl.load_model(_write(tmp_path / "41.cdl", _chain(
            41, distinct + [{"class_name": "Flatten", "config": {"name": "g"}}], lambda j: j)))
    assert made == []
    # A call of a layer holding others counts each of them: ten calls of a
    # block of four are 4 + 9 * 4 * COPY_WEIGHT, past the bound.
    block = {"class_name": "Residual", "config": {"name": "r", "layers": [flat] * 3}}
    with pytest.raises(ModelFileError, match="calls that cost more than 40 layers"):
        cdl.load_model(_write(tmp_path / "block.cdl", _chain(10, [block])))
    assert made == []
    # More inputs than the bound.
    config = _chain(1, [flat])
    config["graph"]["inputs"] *= 41
    with pytest.raises(ModelFileError, match="more than 40 inputs"):
        cdl.load_model(_write(tmp_path / "inputs.cdl", config))


def test_graphs_larger_than_loading_accepts_are_not_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "MAX_LAYERS", 10)
    x = cdl.Input(shape=(2,), name="x")
    shared, h = layers.Flatten(name="f"), x
    for _ in range(4):          # 1 + 3 * COPY_WEIGHT > 10
        h = shared(h)
    model = cdl.Model(x, h)
    with pytest.raises(ValueError, match="calls that cost more than 10 layers"):
        model.save(tmp_path / "m.cdl")
    assert not (tmp_path / "m.cdl").exists()
    nested = layers.Residual([layers.Flatten() for _ in range(10)])
    with pytest.raises(ValueError, match="more than 10 layers .counting those inside"):
        cdl.Model(x, nested(x)).save(tmp_path / "m.cdl")
    h = x
    for i in range(3):
        h = layers.Flatten(name=f"g{i}")(h)
    cdl.Model(x, h).save(tmp_path / "m.cdl")
    assert len(cdl.load_model(tmp_path / "m.cdl").layers) == 3
