"""Graph models (``cdl.Input``, ``cdl.Model``): building and its errors, forward
and backward over lists and dicts, shared layers, float64 finite-difference
gradient checks of several graphs, and training with a loss, weight, metrics
and sample weights per output."""
import numpy as np
import pytest

import cdl
from cdl import layers, losses, optimizers
from helpers import GRADCHECK_TOL, random_array

N = 6   # samples per batch in the gradient checks


def _data(shapes, n=N, seed=0):
    """A dict of standard normal batches, one per input name."""
    return {name: random_array((n,) + shape, seed=seed + i)
            for i, (name, shape) in enumerate(shapes.items())}


def _labels(n, classes, seed):
    return np.random.default_rng(seed).integers(0, classes, n)


# --- graphs used throughout -----------------------------------------------------


def two_heads(dtype="float64", seed=0):
    """Two inputs, a layer shared by both, two outputs: a 3-class head and a
    regression head behind a hidden layer of its own."""
    a = cdl.Input(shape=(5,), name="a")
    b = cdl.Input(shape=(3,), name="b")
    shared = layers.Dense(4, activation="tanh", name="shared")
    h = layers.Concatenate(name="cat")([shared(layers.Dense(3, name="pre")(a)), shared(b)])
    trunk = layers.Dense(6, activation="tanh", name="trunk")(h)
    cls = layers.Dense(3, name="cls")(trunk)
    reg = layers.Dense(2, name="reg")(layers.Dense(4, activation="tanh", name="reg_hidden")(trunk))
    return cdl.Model(inputs=[a, b], outputs=[cls, reg], seed=seed, dtype=dtype)


def two_heads_data(n=40, seed=0):
    x = _data({"a": (5,), "b": (3,)}, n, seed)
    y = {"cls": _labels(n, 3, seed + 10), "reg": random_array((n, 2), seed=seed + 11)}
    return x, y


def siamese():
    a, b = cdl.Input(shape=(5,), name="a"), cdl.Input(shape=(5,), name="b")
    encoder = layers.Dense(4, activation="tanh", name="encoder")
    diff = layers.Subtract(name="diff")([encoder(a), encoder(b)])
    return cdl.Model([a, b], layers.Dense(3, name="out")(diff), seed=1, dtype="float64")


def diamond():
    x = cdl.Input(shape=(6,), name="x")
    h = layers.Dense(5, activation="tanh", name="stem")(x)
    left = layers.Dense(4, activation="sigmoid", name="left")(h)
    right = layers.Dense(4, activation="tanh", name="right")(h)
    joined = layers.Add(name="join")([left, right])
    return cdl.Model(x, layers.Dense(2, name="out")(joined), seed=2, dtype="float64")


def skip_connection():
    """A skip from the first hidden layer over three more to an Add."""
    x = cdl.Input(shape=(4,), name="x")
    first = layers.Dense(6, activation="tanh", name="d1")(x)
    h = first
    for i in range(2, 5):
        h = layers.Dense(6, activation="tanh", name=f"d{i}")(h)
    skip = layers.Add(name="skip")([first, h])
    return cdl.Model(x, layers.Dense(3, name="out")(skip), seed=3, dtype="float64")


def merged(merge):
    """Two inputs through a dense layer each, joined by ``merge``."""
    a, b = cdl.Input(shape=(4,), name="a"), cdl.Input(shape=(4,), name="b")
    left = layers.Dense(5, activation="tanh", name="left")(a)
    right = layers.Dense(5, activation="sigmoid", name="right")(b)
    joined = merge([left, right])
    return cdl.Model([a, b], layers.Dense(2, name="out")(joined), seed=4, dtype="float64")


MERGES = [
    pytest.param(lambda: layers.Add(), id="Add"),
    pytest.param(lambda: layers.Subtract(), id="Subtract"),
    pytest.param(lambda: layers.Multiply(), id="Multiply"),
    pytest.param(lambda: layers.Average(), id="Average"),
    pytest.param(lambda: layers.Maximum(), id="Maximum"),
    pytest.param(lambda: layers.Minimum(), id="Minimum"),
    pytest.param(lambda: layers.Concatenate(), id="Concatenate"),
    pytest.param(lambda: layers.Dot(axes=1), id="Dot"),
    pytest.param(lambda: layers.Dot(axes=1, normalize=True), id="Dot-normalize"),
]


def _layer_keys(model):
    return {f"{owner.name}.{name}" for layer in model.layers
            for owner, name in layer.weight_owners()}


def _check(model, x, *args, **kwargs):
    errors = cdl.gradcheck(model, x, *args, **kwargs)
    assert set(errors) >= _layer_keys(model)
    assert max(errors.values()) < GRADCHECK_TOL, errors
    return errors


# --- building and its errors ------------------------------------------------------


def test_layer_on_incompatible_shapes_names_layer_and_shapes():
    a, b = cdl.Input(shape=(4,), name="a"), cdl.Input(shape=(5,), name="b")
    with pytest.raises(ValueError, match=r"plus.*\(None, 4\).*\(None, 5\)"):
        layers.Add(name="plus")([a, b])
    with pytest.raises(ValueError, match=r"dot.*\(None, 4\).*\(None, 5\)"):
        layers.Dot(axes=1, name="dot")([a, b])
    u, v = cdl.Input(shape=(2, 3)), cdl.Input(shape=(4, 5))
    with pytest.raises(ValueError, match=r"cat.*\(None, 2, 3\).*\(None, 4, 5\)"):
        layers.Concatenate(axis=1, name="cat")([u, v])
    with pytest.raises(ValueError, match=r"conv.*Conv2D.*\(None, 4\)"):
        layers.Conv2D(2, 3, name="conv")(a)


def test_shared_layer_called_on_another_shape_is_refused():
    shared = layers.Dense(3, name="shared")
    shared(cdl.Input(shape=(4,)))
    with pytest.raises(ValueError, match=r"'shared'.*shared.*\(None, 4\).*\(None, 5\)"):
        shared(cdl.Input(shape=(5,)))


def test_layer_with_a_list_or_a_list_layer_with_one_tensor():
    a, b = cdl.Input(shape=(4,)), cdl.Input(shape=(4,))
    with pytest.raises(TypeError, match="takes one tensor"):
        layers.Dense(2, name="d")([a, b])
    with pytest.raises(TypeError, match="takes a list"):
        layers.Add()(a)
    with pytest.raises(TypeError, match="mixing"):
        layers.Add()([a, np.ones((1, 4))])


def test_output_that_does_not_depend_on_an_input_is_refused():
    a, b = cdl.Input(shape=(4,), name="a"), cdl.Input(shape=(3,), name="b")
    with pytest.raises(ValueError, match="'b'"):
        cdl.Model([a, b], layers.Dense(2)(a))


def test_disconnected_output_is_refused_with_names():
    a, c = cdl.Input(shape=(4,), name="a"), cdl.Input(shape=(4,), name="c")
    good = layers.Dense(2, name="good")(a)
    stray = layers.Dense(2, name="stray")(c)
    with pytest.raises(ValueError, match=r"'stray'.*'c'.*disconnected"):
        cdl.Model(a, [good, stray])
    # Also when the stray input joins a branch of a connected output.
    joined = layers.Add(name="joined")([layers.Dense(3)(a), layers.Dense(3)(c)])
    with pytest.raises(ValueError, match=r"'joined'.*'c'"):
        cdl.Model(a, joined)


def test_duplicate_names_are_refused():
    x = cdl.Input(shape=(4,), name="x")
    h = layers.Dense(3, name="same")(x)
    with pytest.raises(ValueError, match="'same'"):
        cdl.Model(x, layers.Dense(2, name="same")(h))
    with pytest.raises(ValueError, match="'x'"):
        cdl.Model(x, layers.Dense(2, name="x")(x))
    x2 = cdl.Input(shape=(4,), name="x")
    with pytest.raises(ValueError, match="'x'"):
        cdl.Model([x, x2], layers.Add()([x, x2]))
    with pytest.raises(ValueError, match="twice"):
        cdl.Model([x, x], h)
    with pytest.raises(ValueError, match="twice"):
        cdl.Model(x, [h, h])


def test_inputs_must_be_input_tensors():
    x = cdl.Input(shape=(4,), name="x")
    h = layers.Dense(3, name="hidden")(x)
    out = layers.Dense(2)(h)
    with pytest.raises(ValueError, match=r"cdl\.Input.*'hidden'"):
        cdl.Model(h, out)
    with pytest.raises(TypeError, match="symbolic"):
        cdl.Model(np.ones((2, 4)), out)
    with pytest.raises(TypeError, match=r"outputs\[1\]"):
        cdl.Model(x, [out, "out"])
    with pytest.raises(ValueError, match="empty"):
        cdl.Model(x, [])


def test_symbolic_tensors_have_no_values():
    x = cdl.Input(shape=(4,))
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(x)
    with pytest.raises(TypeError, match="symbolic"):
        bool(x)


def test_data_with_missing_or_unknown_keys_or_wrong_counts_names_them():
    model = two_heads()
    model.compile("sgd", loss={"cls": "cross_entropy", "reg": "mse"})
    x, y = two_heads_data(8)
    for call in (model.forward, model.predict):
        with pytest.raises(ValueError, match="missing.*'b'"):
            call({"a": x["a"]})
        with pytest.raises(ValueError, match="unknown.*'c'"):
            call({**x, "c": x["a"]})
        with pytest.raises(ValueError, match="2 entries.*3|3 entries.*2"):
            call([x["a"], x["b"], x["b"]])
        with pytest.raises(ValueError, match="'a', 'b'"):
            call(x["a"])
    with pytest.raises(ValueError, match="'b'.*8.*7|different numbers"):
        model.forward({"a": x["a"], "b": x["b"][:7]})
    with pytest.raises(ValueError, match="'reg'"):
        model.fit(x, {"cls": y["cls"]}, verbose=0)
    with pytest.raises(ValueError, match="unknown.*'box'"):
        model.fit(x, {**y, "box": y["reg"]}, verbose=0)
    with pytest.raises(ValueError, match="'reg'"):
        model.evaluate(x, {"cls": y["cls"]})
    with pytest.raises(ValueError, match="missing.*'a'"):
        model.train_step({"b": x["b"]}, y)
    with pytest.raises(ValueError, match="unknown.*'box'"):
        model.fit(x, y, sample_weight={"box": np.ones(8)}, verbose=0)
    with pytest.raises(ValueError, match="unknown.*'box'"):
        model.compile("sgd", loss={"cls": "cross_entropy", "box": "mse"})
    out = model.forward(x)
    with pytest.raises(ValueError, match="unknown.*'box'"):
        model.backward({"box": out[1]})
    with pytest.raises(ValueError, match="3 entries"):
        model.backward([out[0], out[1], out[1]])
    with pytest.raises(ValueError, match="'reg'.*shape"):
        model.backward({"cls": out[0], "reg": out[0]})


# --- forward and backward ------------------------------------------------------------


def test_forward_takes_lists_and_dicts_in_any_key_order():
    model = two_heads()
    x, _ = two_heads_data(7)
    by_list = model.forward([x["a"], x["b"]])
    by_dict = model.forward({"b": x["b"], "a": x["a"]})
    assert isinstance(by_list, list) and len(by_list) == 2
    assert [o.shape for o in by_list] == [(7, 3), (7, 2)]
    for u, v in zip(by_list, by_dict):
        assert np.array_equal(u, v)
    assert model.input_names == ["a", "b"] and model.output_names == ["cls", "reg"]
    assert model.input_shape == [(5,), (3,)] and model.output_shape == [(3,), (2,)]


def test_single_input_output_graph_takes_arrays_and_returns_one():
    model = diamond()
    x = random_array((4, 6), seed=1)
    y = model.forward(x)
    assert isinstance(y, np.ndarray) and y.shape == (4, 2)
    assert np.array_equal(model.forward({"x": x}), y)
    assert np.array_equal(model.forward([x]), y)
    dx = model.backward(np.ones_like(y))
    assert isinstance(dx, np.ndarray) and dx.shape == x.shape


def test_backward_with_none_for_an_output():
    model = two_heads()
    x, _ = two_heads_data(5)
    cls, reg = model.forward(x, training=True)
    g = random_array(cls.shape, seed=3)
    # A first pass that reaches every layer, so that stale gradients would show.
    model.backward([g, random_array(reg.shape, seed=4)])
    da, db = model.backward([g, None])
    grads_none = [gr.copy() for gr in model.grads]
    by_name = dict(zip([f"{o.name}.{n}" for layer in model.layers
                        for o, n in layer.weight_owners()], grads_none))
    for name in ("reg.kernel", "reg.bias", "reg_hidden.kernel", "reg_hidden.bias"):
        assert not by_name[name].any(), name
    assert by_name["trunk.kernel"].any() and by_name["shared.kernel"].any()
    # The same as a zero gradient for that output.
    da0, db0 = model.backward({"cls": g, "reg": np.zeros_like(reg)})
    assert np.array_equal(da, da0) and np.array_equal(db, db0)
    for u, v in zip(grads_none, model.grads):
        assert np.array_equal(u, v)
    # A dict may leave the output out.
    da1, _ = model.backward({"cls": g})
    assert np.array_equal(da, da1)
    with pytest.raises(ValueError, match="None"):
        model.backward([None, None])


def test_backward_before_forward_is_refused():
    with pytest.raises(RuntimeError, match="before forward"):
        diamond().backward(np.ones((2, 2)))


def test_shared_layer_gradients_accumulate_over_its_calls():
    a, b = cdl.Input(shape=(4,), name="a"), cdl.Input(shape=(4,), name="b")
    shared = layers.Dense(3, name="shared")
    model = cdl.Model([a, b], [shared(a), shared(b)], seed=0, dtype="float64")
    assert model.output_names == ["shared", "shared_2"]
    xa, xb = random_array((5, 4), seed=1), random_array((5, 4), seed=2)
    ya, yb = model.forward([xa, xb])
    kernel, bias = model.params
    np.testing.assert_allclose(ya, xa @ kernel + bias, rtol=1e-13)
    np.testing.assert_allclose(yb, xb @ kernel + bias, rtol=1e-13)
    ga, gb = random_array((5, 3), seed=3), random_array((5, 3), seed=4)
    da, db = model.backward([ga, gb])
    kernel_grad, bias_grad = model.grads
    np.testing.assert_allclose(kernel_grad, xa.T @ ga + xb.T @ gb, rtol=1e-12)
    np.testing.assert_allclose(bias_grad, ga.sum(0) + gb.sum(0), rtol=1e-12)
    np.testing.assert_allclose(da, ga @ kernel.T, rtol=1e-12)
    np.testing.assert_allclose(db, gb @ kernel.T, rtol=1e-12)
    # backward overwrites: a second pass gives the same sums, not twice them.
    model.backward([ga, gb])
    np.testing.assert_allclose(model.grads[0], xa.T @ ga + xb.T @ gb, rtol=1e-12)
    # A gradient for one call only.
    model.backward([None, gb])
    np.testing.assert_allclose(model.grads[0], xb.T @ gb, rtol=1e-12)


def test_params_hold_a_shared_layer_once_in_the_order_of_first_calls():
    first, second, third = (layers.Dense(3, name=n) for n in ("first", "second", "third"))
    x = cdl.Input(shape=(3,), name="x")
    h = third(x)            # called first, made last
    h = first(h)
    h = third(h)            # shared: its second call
    out = second(h)
    model = cdl.Model(x, out, seed=0)
    assert model.layers == [third, first, second]
    expected = [third.kernel, third.bias, first.kernel, first.bias, second.kernel, second.bias]
    assert len(model.params) == len(model.grads) == 6
    for p, w in zip(model.params, expected):
        assert p is w and np.shares_memory(p, model.param_buffer)
    for g, layer in zip(model.grads, [third, third, first, first, second, second]):
        assert np.shares_memory(g, model.grad_buffer)
    assert model.count_params() == 3 * 12 == model.param_buffer.size
    assert model.chain is None      # a layer called twice is no chain


def test_sequential_is_a_model_and_unchanged():
    model = cdl.Sequential([layers.Dense(3, name="h"), layers.Dense(2, name="o")],
                           input_shape=(4,), seed=0)
    assert isinstance(model, cdl.Model)
    assert model.chain == model.layers
    assert model.input_names == ["input"] and model.output_names == ["o"]
    assert model.input_shape == (4,) and model.output_shape == (2,)
    y = model.forward(np.ones((2, 4)))
    assert isinstance(y, np.ndarray) and y.shape == (2, 2)


def test_only_chains_are_chains():
    x = cdl.Input(shape=(4,), name="x")
    h1 = layers.Dense(3, name="h1")
    chain = cdl.Model(x, layers.Dense(2, name="o")(h1(x)))
    assert chain.chain == chain.layers
    assert diamond().chain is None and skip_connection().chain is None
    assert two_heads().chain is None


def _chain_pair(dtype, seed=0):
    x = cdl.Input(shape=(6,), name="x")
    h = layers.Dense(16, activation="relu", name="h1")(x)
    h = layers.Dropout(0.25, name="drop")(h)
    h = layers.Dense(8, activation="tanh", name="h2")(h)
    graph = cdl.Model(x, layers.Dense(3, name="out")(h), seed=seed, dtype=dtype)
    stack = cdl.Sequential([layers.Dense(16, activation="relu", name="h1"),
                            layers.Dropout(0.25, name="drop"),
                            layers.Dense(8, activation="tanh", name="h2"),
                            layers.Dense(3, name="out")],
                           input_shape=(6,), seed=seed, dtype=dtype)
    return graph, stack


def test_chain_graph_takes_the_fused_step_and_trains_as_the_sequential(dtype):
    graph, stack = _chain_pair(dtype)
    for p, q in zip(graph.params, stack.params):
        assert np.array_equal(p, q)        # the same draws, in the same order
    x = random_array((50, 6), dtype, seed=1)
    y = _labels(50, 3, 2)
    histories = []
    for model in (graph, stack):
        model.compile(optimizers.Adam(lr=0.01), "cross_entropy", metrics=["accuracy"])
        histories.append(model.fit(x, y, epochs=3, batch_size=16, verbose=0).history)
        assert model._plan is not None
    assert histories[0] == histories[1]
    for p, q in zip(graph.params, stack.params):
        assert np.array_equal(p, q)
    assert np.array_equal(graph.predict(x), stack.predict(x))


def test_graph_that_is_no_chain_trains_layer_by_layer():
    model = diamond()
    model.compile("sgd", "mse")
    model.fit(random_array((20, 6)), random_array((20, 2), seed=1), epochs=1, verbose=0)
    assert model._plan is None


# --- gradient checks ---------------------------------------------------------------------


def test_gradcheck_of_a_siamese_graph():
    model = siamese()
    x = _data({"a": (5,), "b": (5,)})
    errors = _check(model, x)
    assert set(errors) == {"input:a", "input:b", "encoder.kernel", "encoder.bias",
                           "out.kernel", "out.bias"}
    _check(model, [x["a"], x["b"]], _labels(N, 3, 5), loss="cross_entropy")


def test_gradcheck_of_a_diamond():
    model = diamond()
    x = random_array((N, 6), seed=1)
    errors = _check(model, x, random_array((N, 2), seed=2), loss="mse")
    assert "input:x" in errors and "input" not in errors
    _check(model, {"x": x})


def test_gradcheck_of_a_skip_connection_over_several_layers():
    model = skip_connection()
    _check(model, random_array((N, 4), seed=1), _labels(N, 3, 2), loss="cross_entropy")


@pytest.mark.parametrize("make_merge", MERGES)
def test_gradcheck_of_merge_layers_inside_a_graph(make_merge):
    model = merged(make_merge())
    x = _data({"a": (4,), "b": (4,)}, seed=7)
    errors = _check(model, x)
    assert {"input:a", "input:b"} <= set(errors)


def test_gradcheck_of_merges_of_three_inputs_and_a_merge_of_merges():
    a, b, c = (cdl.Input(shape=(3,), name=n) for n in "abc")
    da, db, dc = (layers.Dense(3, activation="tanh", name=f"d{n}")(t)
                  for n, t in zip("abc", (a, b, c)))
    prod = layers.Multiply(name="prod")([da, db, dc])
    top = layers.Maximum(name="top")([da, db, dc])
    mean = layers.Average(name="mean")([prod, top, a])
    both = layers.Concatenate(name="both")([mean, prod, c])
    model = cdl.Model([a, b, c], layers.Dense(2, name="out")(both), seed=5, dtype="float64")
    _check(model, _data({"a": (3,), "b": (3,), "c": (3,)}, seed=3))


def test_gradcheck_of_two_outputs_with_one_untrained():
    model = two_heads()
    model.compile("sgd", loss={"cls": "cross_entropy"})
    x, y = two_heads_data(N)
    # A pass that reaches every layer first: the untrained head's gradients
    # must be zeroed, not left from it.
    model.forward(x)
    model.backward([np.ones((N, 3)), np.ones((N, 2))])
    errors = _check(model, x, {"cls": y["cls"]}, loss=model.loss)
    for name in ("reg_hidden.kernel", "reg_hidden.bias", "reg.kernel", "reg.bias"):
        assert errors[name] == 0.0
    grads = dict(zip([f"{o.name}.{n}" for layer in model.layers
                      for o, n in layer.weight_owners()], model.grads))
    for name in ("reg_hidden.kernel", "reg_hidden.bias", "reg.kernel", "reg.bias"):
        assert not grads[name].any()
    assert grads["trunk.kernel"].any() and grads["pre.kernel"].any()
    # The same through gradcheck's own per-output losses (a list, None untrained).
    _check(model, x, [y["cls"], None], loss=["cross_entropy", None])


def test_gradcheck_of_two_outputs_with_losses_weights_and_sample_weights():
    model = two_heads()
    x, y = two_heads_data(N)
    w_cls, w_reg = random_array(N, seed=20, low=0.0, high=2.0), random_array(N, seed=21,
                                                                              low=0, high=1)
    _check(model, x, y, loss={"cls": "cross_entropy", "reg": "huber"})
    _check(model, x, y, loss={"cls": "cross_entropy", "reg": "mse"},
           sample_weight={"cls": w_cls, "reg": w_reg})
    _check(model, x, y, loss=["cross_entropy", "mse"], sample_weight=[w_cls, None])
    _check(model, x, y, loss={"cls": "cross_entropy", "reg": "mse"}, sample_weight=w_cls)
    model.compile("sgd", loss={"cls": "cross_entropy", "reg": "mse"},
                  loss_weights={"cls": 0.3, "reg": 2.5})
    _check(model, x, y, loss=model.loss)


def test_loss_weights_scale_the_summed_loss_and_its_gradients():
    model = two_heads()
    model.compile("sgd", loss={"cls": "cross_entropy", "reg": "mse"},
                  loss_weights={"cls": 0.3, "reg": 2.5})
    x, y = two_heads_data(N)
    cls, reg = model.forward(x, training=True)
    ce, mse = losses.CrossEntropy(), losses.MSE()
    total = model.loss.forward([cls, reg], [y["cls"], y["reg"]])
    expected = 0.3 * ce.forward(cls, y["cls"]) + 2.5 * mse.forward(reg, y["reg"])
    assert total == pytest.approx(expected, rel=1e-14)
    g_cls, g_reg = model.loss.backward()
    np.testing.assert_allclose(g_cls, 0.3 * ce.backward(), rtol=1e-14)
    np.testing.assert_allclose(g_reg, 2.5 * mse.backward(), rtol=1e-14)
    dx_weighted = model.backward([g_cls, g_reg])
    grads_weighted = [g.copy() for g in model.grads]
    model.backward([0.3 * ce.backward(), 2.5 * mse.backward()])
    for u, v in zip(grads_weighted, model.grads):
        np.testing.assert_allclose(u, v, rtol=1e-13, atol=1e-15)
    assert len(dx_weighted) == 2


def test_gradcheck_of_a_graph_with_dropout_in_training_mode():
    x = cdl.Input(shape=(5,), name="x")
    h = layers.Dense(8, activation="tanh", name="h")(x)
    dropped = layers.Dropout(0.4, name="drop")(h)
    shared_drop = layers.Dropout(0.3, name="drop2")
    both = layers.Add(name="sum")([shared_drop(dropped), shared_drop(h)])
    model = cdl.Model(x, layers.Dense(2, name="out")(both), seed=6, dtype="float64")
    xb = random_array((N, 5), seed=1)
    _check(model, xb, training=True)
    # Training mode drops something; without it, nothing.
    assert not np.array_equal(model.forward(xb, training=True), model.forward(xb))


def test_gradcheck_of_a_batchnorm_shared_by_two_calls():
    a, b = cdl.Input(shape=(4,), name="a"), cdl.Input(shape=(4,), name="b")
    norm = layers.BatchNorm(name="norm")
    left = norm(layers.Dense(5, activation="tanh", name="left")(a))
    # (A bias right before batch normalisation in training mode has no effect
    # and a zero gradient, which finite differences only see as noise.)
    right = norm(layers.Dense(5, activation="sigmoid", name="right")(b))
    model = cdl.Model([a, b], layers.Dense(2, name="out")(layers.Multiply()([left, right])),
                      seed=7, dtype="float64")
    x = _data({"a": (4,), "b": (4,)}, seed=2)
    errors = _check(model, x, training=True)
    assert {"norm.gamma", "norm.beta"} <= set(errors)
    _check(model, x, training=False)
    # Training mode normalises each call's batch by its own statistics.
    out = model.forward(x, training=True)
    assert out.shape == (N, 2)


def test_gradcheck_of_an_embedding_input_has_no_input_gradient():
    tokens = cdl.Input(shape=(3,), name="tokens", dtype="int64")
    dense = cdl.Input(shape=(2,), name="dense")
    emb = layers.Flatten()(layers.Embedding(7, 2, name="emb")(tokens))
    out = layers.Dense(2, name="out")(layers.Concatenate()([emb, dense]))
    model = cdl.Model([tokens, dense], out, seed=8, dtype="float64")
    x = {"tokens": np.random.default_rng(0).integers(0, 7, (N, 3)),
         "dense": random_array((N, 2), seed=1)}
    errors = _check(model, x)
    assert "input:tokens" not in errors and "input:dense" in errors


class _WrongScale(layers.Layer):
    """Doubles its input but passes the gradient through unscaled."""

    def forward(self, x, training=False):
        return 2.0 * self._check_input(x)

    def backward(self, grad):
        return grad


def test_gradcheck_catches_a_wrong_gradient_inside_a_graph():
    a, b = cdl.Input(shape=(3,), name="a"), cdl.Input(shape=(3,), name="b")
    out = layers.Add()([_WrongScale(name="wrong")(a), layers.Dense(3, name="d")(b)])
    model = cdl.Model([a, b], out, seed=0, dtype="float64")
    x = _data({"a": (3,), "b": (3,)})
    with pytest.raises(cdl.GradcheckError, match="input:a"):
        cdl.gradcheck(model, x)
    errors = cdl.gradcheck(model, x, raise_on_error=False)
    assert errors["input:a"] > 0.1 and errors["input:b"] < GRADCHECK_TOL


def test_gradcheck_of_a_graph_refuses_bad_arguments():
    with pytest.raises(TypeError, match="float64"):
        cdl.gradcheck(two_heads(dtype="float32"), two_heads_data(3)[0])
    model = two_heads()
    x, y = two_heads_data(3)
    with pytest.raises(ValueError, match="target"):
        cdl.gradcheck(model, x, loss={"cls": "cross_entropy"})
    with pytest.raises(ValueError, match="missing.*'b'"):
        cdl.gradcheck(model, {"a": x["a"]})
    with pytest.raises(ValueError, match="unknown.*'box'"):
        cdl.gradcheck(model, x, y, loss={"box": "mse"})
    with pytest.raises(ValueError, match="'reg'"):
        cdl.gradcheck(model, x, {"cls": y["cls"]}, loss={"cls": "cross_entropy", "reg": "mse"})
    with pytest.raises(ValueError, match="shape"):
        cdl.gradcheck(model, {"a": x["a"], "b": x["a"]})


def test_gradcheck_of_a_sequential_still_reports_input():
    model = cdl.Sequential([layers.Dense(3, activation="tanh", name="h")], input_shape=(4,),
                           seed=0, dtype="float64")
    errors = cdl.gradcheck(model, random_array((3, 4)))
    assert set(errors) == {"input", "h.kernel", "h.bias"}


# --- training ---------------------------------------------------------------------


def _compiled(optimizer=None, **kwargs):
    model = two_heads()
    model.compile(optimizer or optimizers.Adam(lr=0.01),
                  loss={"cls": "cross_entropy", "reg": "mse"}, **kwargs)
    return model


def test_fit_evaluate_predict_take_dicts_and_lists_alike():
    x, y = two_heads_data()
    by_dict, by_list = _compiled(metrics={"cls": ["accuracy"]}), \
        _compiled(metrics={"cls": ["accuracy"]})
    h1 = by_dict.fit(x, y, epochs=2, batch_size=8, verbose=0)
    h2 = by_list.fit([x["a"], x["b"]], [y["cls"], y["reg"]], epochs=2, batch_size=8, verbose=0)
    assert h1.history == h2.history
    for p, q in zip(by_dict.params, by_list.params):
        assert np.array_equal(p, q)
    assert by_dict.evaluate(x, y) == by_list.evaluate([x["a"], x["b"]], [y["cls"], y["reg"]])
    p1, p2 = by_dict.predict(x), by_list.predict([x["a"], x["b"]], batch_size=7)
    assert isinstance(p1, list) and len(p1) == 2
    for u, v, w in zip(p1, p2, by_dict.forward(x)):
        np.testing.assert_array_equal(u, v)
        np.testing.assert_array_equal(u, w)
    before = [p.copy() for p in by_dict.params]
    loss = by_dict.train_step(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(p, q) for p, q in zip(before, by_dict.params))


def test_history_keys_are_as_keras_writes_them():
    x, y = two_heads_data()
    model = _compiled(metrics={"cls": ["accuracy"]})
    history = model.fit(x, y, epochs=2, batch_size=10, verbose=0,
                        validation_data=(x, y)).history
    assert set(history) == {"loss", "cls_loss", "reg_loss", "cls_accuracy", "val_loss",
                            "val_cls_loss", "val_reg_loss", "val_cls_accuracy", "lr"}
    assert all(len(v) == 2 for v in history.values())
    result = model.evaluate(x, y)
    assert set(result) == {"loss", "cls_loss", "reg_loss", "cls_accuracy"}
    assert result["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-12)


def test_evaluate_sums_the_weighted_losses_and_reports_each_unweighted():
    x, y = two_heads_data()
    model = _compiled(loss_weights={"cls": 0.5, "reg": 3.0}, metrics={"cls": ["accuracy"]})
    result = model.evaluate(x, y, batch_size=16)
    cls, reg = model.predict(x)
    ce = losses.CrossEntropy().forward(cls, y["cls"])
    mse = losses.MSE().forward(reg, y["reg"])
    assert result["cls_loss"] == pytest.approx(ce, rel=1e-12)
    assert result["reg_loss"] == pytest.approx(mse, rel=1e-12)
    assert result["loss"] == pytest.approx(0.5 * ce + 3.0 * mse, rel=1e-12)
    assert result["cls_accuracy"] == pytest.approx(np.mean(cls.argmax(1) == y["cls"]))


def test_sample_weights_per_output():
    x, y = two_heads_data()
    model = _compiled()
    w = random_array(40, seed=30, low=0.0, high=2.0)
    result = model.evaluate(x, y, sample_weight={"cls": w})
    cls, reg = model.predict(x)
    ce = losses.CrossEntropy().forward(cls, y["cls"], w)
    mse = losses.MSE().forward(reg, y["reg"])
    assert result["cls_loss"] == pytest.approx(ce, rel=1e-12)
    assert result["reg_loss"] == pytest.approx(mse, rel=1e-12)
    # A list per output, and one array for both.
    result = model.evaluate(x, y, sample_weight=[None, w])
    assert result["reg_loss"] == pytest.approx(losses.MSE().forward(reg, y["reg"], w), rel=1e-12)
    result = model.evaluate(x, y, sample_weight=w)
    assert result["loss"] == pytest.approx(
        ce + losses.MSE().forward(reg, y["reg"], w), rel=1e-12)


def test_train_step_with_loss_and_sample_weights_is_one_gradient_step():
    x, y = two_heads_data(12)
    w = random_array(12, seed=31, low=0.0, high=2.0)
    model = _compiled(optimizers.SGD(lr=0.1), loss_weights={"cls": 0.7, "reg": 1.5})
    reference = _compiled(optimizers.SGD(lr=0.1))
    reference.set_weights(model.get_weights())
    cls, reg = reference.forward(x, training=True)
    ce, mse = losses.CrossEntropy(), losses.MSE()
    expected_loss = 0.7 * ce.forward(cls, y["cls"], w) + 1.5 * mse.forward(reg, y["reg"])
    reference.backward([0.7 * ce.backward(), 1.5 * mse.backward()])
    expected = [p - 0.1 * g for p, g in zip(reference.params, reference.grads)]
    loss = model.train_step(x, y, sample_weight={"cls": w})
    assert loss == pytest.approx(expected_loss, rel=1e-13)
    for p, e in zip(model.params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-13, atol=1e-15)


def test_untrained_output_needs_no_targets_and_is_not_trained_through():
    x, y = two_heads_data()
    model = two_heads()
    model.compile(optimizers.Adam(lr=0.01), loss={"cls": "cross_entropy"},
                  metrics={"cls": ["accuracy"]})
    dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    before = {layer.name: layer.kernel.copy() for layer in dense}
    history = model.fit(x, {"cls": y["cls"]}, epochs=2, batch_size=8, verbose=0).history
    assert set(history) == {"loss", "cls_loss", "cls_accuracy", "lr"}
    for layer in dense:
        changed = not np.array_equal(before[layer.name], layer.kernel)
        assert changed == (layer.name not in ("reg", "reg_hidden")), layer.name
    # Targets for the untrained output are not needed but are accepted as a list entry.
    model.evaluate(x, [y["cls"], None])
    assert len(model.predict(x)) == 2


def test_one_loss_object_for_every_output():
    x, y = two_heads_data(10)
    y = {"cls": random_array((10, 3), seed=3), "reg": y["reg"]}
    model = two_heads()
    model.compile("sgd", loss=losses.MSE())
    reference = two_heads()
    reference.compile("sgd", loss="mse")
    assert model.train_step(x, y) == reference.train_step(x, y)
    for p, q in zip(model.params, reference.params):
        assert np.array_equal(p, q)


def _batches(x, y, size, weights=None):
    n = len(y["cls"])
    for start in range(0, n, size):
        rows = slice(start, start + size)
        xb = {k: v[rows] for k, v in x.items()}
        yb = {k: v[rows] for k, v in y.items()}
        if weights is None:
            yield xb, yb
        else:
            yield xb, yb, {k: v[rows] for k, v in weights.items()}


def test_fit_on_batches_of_dicts_matches_fit_on_arrays():
    x, y = two_heads_data()
    w = {"reg": random_array(40, seed=32, low=0.0, high=1.0)}
    on_arrays, on_batches = _compiled(), _compiled()
    h1 = on_arrays.fit(x, y, epochs=1, batch_size=8, shuffle=False, sample_weight=w,
                       verbose=0)
    h2 = on_batches.fit(_batches(x, y, 8, w), epochs=1, verbose=0)
    assert h1.history["loss"] == pytest.approx(h2.history["loss"], rel=1e-13)
    assert h1.history["reg_loss"] == pytest.approx(h2.history["reg_loss"], rel=1e-13)
    for p, q in zip(on_arrays.params, on_batches.params):
        np.testing.assert_array_equal(p, q)
    # Validation batches of dicts too.
    history = on_batches.fit(_batches(x, y, 8), epochs=1, verbose=0,
                             validation_data=_batches(x, y, 16)).history
    assert "val_cls_loss" in history


def test_validation_split_holds_out_the_last_samples():
    x, y = two_heads_data()
    model = _compiled(metrics={"cls": ["accuracy"]})
    history = model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0,
                        shuffle=False).history
    assert {"val_loss", "val_cls_loss", "val_reg_loss", "val_cls_accuracy"} <= set(history)
    held = model.evaluate({k: v[30:] for k, v in x.items()}, {k: v[30:] for k, v in y.items()})
    for key, value in held.items():
        assert history["val_" + key][-1] == pytest.approx(value, rel=1e-12)


def test_single_output_graph_takes_dict_data_by_name():
    model = diamond()
    model.compile(optimizers.SGD(lr=0.05), "mse")
    x, y = random_array((20, 6), seed=1), random_array((20, 2), seed=2)
    twin = diamond()
    twin.compile(optimizers.SGD(lr=0.05), "mse")
    h1 = model.fit({"x": x}, {"out": y}, epochs=2, batch_size=5, verbose=0, shuffle=False)
    h2 = twin.fit(x, y, epochs=2, batch_size=5, verbose=0, shuffle=False)
    assert h1.history == h2.history
    assert model.evaluate({"x": x}, {"out": y}) == twin.evaluate(x, y)
    with pytest.raises(ValueError, match="unknown.*'y'"):
        model.evaluate({"y": x}, y)


@pytest.mark.parametrize("kind", ["graph", "sequential"])
def test_one_output_with_a_loss_weight(kind):
    def make():
        if kind == "graph":
            return diamond()
        return cdl.Sequential([layers.Dense(5, activation="tanh", name="h"),
                               layers.Dense(2, name="out")], input_shape=(6,), seed=2,
                              dtype="float64")

    x, y = random_array((12, 6), seed=1), random_array((12, 2), seed=2)
    weighted, plain = make(), make()
    weighted.compile(optimizers.SGD(lr=0.1), "mse", loss_weights={"out": 2.0},
                     metrics={"out": ["mae"]})
    plain.compile(optimizers.SGD(lr=0.2), "mse", metrics=["mae"])
    assert weighted.train_step(x, y) == pytest.approx(2 * plain.train_step(x, y), rel=1e-14)
    for p, q in zip(weighted.params, plain.params):
        np.testing.assert_allclose(p, q, rtol=1e-14, atol=1e-16)
    result, expected = weighted.evaluate(x, y), plain.evaluate(x, y)
    assert result["loss"] == pytest.approx(2 * expected["loss"], rel=1e-14)
    assert result["out_loss"] == pytest.approx(expected["loss"], rel=1e-14)
    assert result["out_mae"] == pytest.approx(expected["mae"], rel=1e-14)
    history = weighted.fit({"x": x} if kind == "graph" else x, {"out": y}, epochs=1,
                           batch_size=4, verbose=0).history
    assert set(history) == {"loss", "out_loss", "out_mae", "lr"}
    errors = cdl.gradcheck(weighted, x, y, loss=weighted.loss)
    assert max(errors.values()) < GRADCHECK_TOL
