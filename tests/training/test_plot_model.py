"""cdl.utils: the text rendering of a model's graph (always), its drawing with
pydot and Graphviz (when both are installed), and what plot_model does
without them."""
import importlib.util
import shutil
import warnings

import pytest

import cdl
from cdl import layers, utils

HAS_PYDOT = importlib.util.find_spec("pydot") is not None
HAS_DOT = shutil.which("dot") is not None
needs_graphviz = pytest.mark.skipif(
    not (HAS_PYDOT and HAS_DOT),
    reason="needs pydot (pip install 'cdl[plot]') and Graphviz's dot program")


def two_headed():
    """The issue's model: two inputs, a shared layer, merges, two outputs
    (one named by its dict key, not by its layer)."""
    a = cdl.Input(shape=(20,), name="a")
    b = cdl.Input(shape=(8,), name="b")
    shared = layers.Dense(16, activation="relu", name="shared")
    h = layers.Concatenate(name="join")([shared(layers.Dense(8, name="pre")(a)), shared(b)])
    h = layers.Add(name="sum")([layers.Dense(32, name="left")(h),
                                layers.Dense(32, name="right")(h)])
    cls = layers.Dense(3, name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    return cdl.Model(inputs=[a, b], outputs={"c": cls, "reg": reg}, seed=0, name="heads")


TWO_HEADED = """\
Model "heads"
a (Input) : (None, 20)
b (Input) : (None, 8)
pre (Dense) <- a : (None, 8)
shared (Dense) <- pre : (None, 16)
shared[1] (Dense) <- b : (None, 16)
join (Concatenate) <- shared, shared[1] : (None, 32)
left (Dense) <- join : (None, 32)
right (Dense) <- join : (None, 32)
sum (Add) <- left, right : (None, 32)
cls (Dense) <- sum : (None, 3)
reg (Dense) <- sum : (None, 1)
Outputs: c <- cls, reg"""


def stack():
    return cdl.Sequential([layers.Dense(4, name="hidden"), layers.Dense(2, name="out")],
                          input_shape=(3,), name="stack")


# --- the text rendering ---------------------------------------------------------------------


def test_text_rendering_of_a_graph():
    assert utils.model_to_text(two_headed()) == TWO_HEADED


def test_text_rendering_without_shapes():
    text = utils.model_to_text(two_headed(), show_shapes=False)
    assert text.splitlines()[6] == "join (Concatenate) <- shared, shared[1]"
    assert "(None" not in text


def test_text_rendering_of_a_sequential():
    assert utils.model_to_text(stack()) == "\n".join([
        'Model "stack"', "input (Input) : (None, 3)", "hidden (Dense) <- input : (None, 4)",
        "out (Dense) <- hidden : (None, 2)", "Outputs: out"])


def test_text_rendering_of_a_layer_read_twice_and_an_intermediate_output():
    x = cdl.Input(shape=(3,), name="x")
    h = layers.Dense(3, name="h")(x)
    twice = layers.Multiply(name="square")([h, h])
    model = cdl.Model(x, [h, layers.Dense(1, name="y")(twice)])
    assert utils.model_to_text(model).splitlines()[3:] == [
        "square (Multiply) <- h, h : (None, 3)", "y (Dense) <- square : (None, 1)",
        "Outputs: h, y"]


def test_an_unbuilt_sequential_builds_or_is_refused():
    lazy = cdl.Sequential([layers.Dense(2, name="d")], input_shape=(5,))
    lazy.built = False   # as a model whose input shape was given but not used yet
    assert "d (Dense) <- input : (None, 2)" in utils.model_to_text(lazy)
    with pytest.raises(ValueError, match="input_shape"):
        utils.model_to_text(cdl.Sequential([layers.Dense(2)]))


# --- plot_model without pydot or Graphviz -----------------------------------------------------


@pytest.mark.parametrize("missing", ["pydot", "dot"])
def test_plot_model_writes_text_and_warns_without_pydot_or_graphviz(
        missing, tmp_path, monkeypatch):
    if missing == "pydot":
        monkeypatch.setattr(utils, "_import_pydot", lambda: None)
        expected = "pydot is not installed"
    else:
        monkeypatch.setattr(utils.shutil, "which", lambda name: None)
        expected = "Graphviz's dot program is not on the PATH"
    with pytest.warns(UserWarning, match="pip install pydot") as record:
        path = utils.plot_model(two_headed(), tmp_path / "model.png")
    message = str(record[0].message)
    assert expected in message and "model.txt" in message
    assert path == str(tmp_path / "model.txt")
    assert not (tmp_path / "model.png").exists()
    assert (tmp_path / "model.txt").read_text() == TWO_HEADED + "\n"


def test_plot_model_to_a_text_file_never_warns(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = utils.plot_model(stack(), str(tmp_path / "graph.txt"), show_shapes=False)
    assert path == str(tmp_path / "graph.txt")
    assert (tmp_path / "graph.txt").read_text().splitlines()[2] == "hidden (Dense) <- input"


def test_model_to_dot_without_pydot_says_what_to_install(monkeypatch):
    monkeypatch.setattr(utils, "_import_pydot", lambda: None)
    with pytest.raises(ImportError, match="pip install pydot") as info:
        utils.model_to_dot(stack())
    assert info.value.name == "pydot"


@pytest.mark.parametrize("kwargs, error, match", [
    ({"to_file": "model.bmp"}, ValueError, r"\.bmp"),
    ({"rankdir": "UP"}, ValueError, "rankdir"),
    ({"dpi": 0}, ValueError, "dpi"),
    ({"show_shapes": "yes"}, TypeError, "show_shapes"),
    ({"to_file": 3}, TypeError, "to_file"),
])
def test_plot_model_refuses_bad_arguments(kwargs, error, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # refused before any fallback warning
        with pytest.raises(error, match=match):
            utils.plot_model(stack(), **kwargs)
    assert not list(tmp_path.iterdir())


def test_plot_model_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(TypeError, match="cdl.Model"):
        utils.plot_model(layers.Dense(3), tmp_path / "model.txt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="input_shape"):
            utils.plot_model(cdl.Sequential([layers.Dense(2)]), tmp_path / "model.png")


def test_utils_is_reached_from_cdl():
    assert cdl.utils.plot_model is utils.plot_model


# --- drawing with pydot and Graphviz ------------------------------------------------------


@needs_graphviz
def test_model_to_dot_draws_every_call_and_edge():
    dot = utils.model_to_dot(two_headed(), rankdir="LR", dpi=72)
    nodes = {n.get_name(): n for n in dot.get_nodes() if n.get_name() not in ("node", "edge")}
    labels = [nodes[f"n{i}"].get_label().strip('"').split("\\n")[0] for i in range(len(nodes))]
    assert labels == ["a (Input)", "b (Input)", "pre (Dense)", "shared (Dense)",
                      "shared[1] (Dense)", "join (Concatenate)", "left (Dense)",
                      "right (Dense)", "sum (Add)", "cls (Dense)", "reg (Dense)"]
    edges = sorted((e.get_source(), e.get_destination()) for e in dot.get_edges())
    assert edges == sorted([("n0", "n2"), ("n2", "n3"), ("n1", "n4"), ("n3", "n5"),
                            ("n4", "n5"), ("n5", "n6"), ("n5", "n7"), ("n6", "n8"),
                            ("n7", "n8"), ("n8", "n9"), ("n8", "n10")])
    # The outputs have a double border; one named otherwise than its layer says so.
    assert [name for name, n in nodes.items() if n.get("peripheries")] == ["n9", "n10"]
    assert "output 'c'" in nodes["n9"].get_label()
    assert "in: [(None, 16), (None, 16)]" in nodes["n5"].get_label()
    assert dot.get("rankdir") == "LR" and str(dot.get("dpi")) == "72"
    plain = utils.model_to_dot(two_headed(), show_shapes=False, show_layer_names=False)
    assert {n.get_label().strip('"').split("\\n")[0] for n in plain.get_nodes()
            if n.get_label()} == {"Input", "Dense", "Concatenate", "Add"}


@needs_graphviz
def test_names_with_backslashes_and_quotes_are_drawn_as_written(tmp_path):
    x = cdl.Input(shape=(2,), name='in"put')
    model = cdl.Model(x, layers.Dense(1, name="a\\b")(x))
    path = utils.plot_model(model, tmp_path / "odd.svg")
    svg = open(path).read()
    assert "a\\b (Dense)" in svg and "in&quot;put (Input)" in svg


@needs_graphviz
@pytest.mark.parametrize("extension, magic", [
    ("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml"), ("", b"\x89PNG")])
def test_plot_model_writes_the_format_of_the_extension(extension, magic, tmp_path):
    target = tmp_path / (f"model.{extension}" if extension else "model")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = utils.plot_model(two_headed(), target)
    assert path == str(target)
    assert target.read_bytes().startswith(magic)
    if extension == "svg":
        assert "shared[1] (Dense)" in target.read_text()


@needs_graphviz
def test_plot_model_draws_a_sequential(tmp_path):
    path = utils.plot_model(stack(), tmp_path / "stack.svg", show_shapes=False)
    svg = open(path).read()
    assert "hidden (Dense)" in svg and "(None" not in svg
