"""cdl.tuning: the learning-rate range test and Monte-Carlo dropout."""
import numpy as np
import pytest

import cdl
from cdl import layers, optimizers, tuning


def data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int64)
    return x, y


def classifier(extra=(), optimizer=None, seed=0):
    model = cdl.Sequential([layers.Dense(16, activation="relu"), *extra, layers.Dense(2)],
                           input_shape=(4,), seed=seed)
    model.compile(optimizer or optimizers.Adam(lr=1e-3), "cross_entropy")
    return model


# --- find_lr ------------------------------------------------------------------------------


def test_find_lr_records_an_exponential_sweep():
    x, y = data()
    result = tuning.find_lr(classifier(), x, y, start_lr=1e-6, end_lr=1.0, num_steps=40,
                            diverge_threshold=1e9)
    assert len(result.lrs) == len(result.losses) == len(result.smoothed_losses) == 40
    np.testing.assert_allclose(result.lrs, np.geomspace(1e-6, 1.0, 40), rtol=1e-12)
    assert result.smoothed_losses[0] == result.losses[0]
    assert 1e-6 <= result.suggested_lr <= result.min_loss_lr <= 1.0
    # The loss falls somewhere in the sweep: the suggestion is where it falls fastest.
    assert result.smoothed_losses.min() < result.losses[0]


def test_find_lr_restores_the_model_optimizer_and_generator():
    x, y = data()
    model = classifier(extra=[layers.BatchNorm(), layers.Dropout(0.2)])
    model.fit(x, y, epochs=2, verbose=0)  # optimizer state and BatchNorm statistics exist
    weights = model.param_buffer.copy()
    grads = model.grad_buffer.copy()
    stats = [model.layers[1].running_mean.copy(), model.layers[1].running_var.copy()]
    optimizer = model.optimizer
    state = optimizer.state_dict()
    generator = model.rng.bit_generator.state
    tuning.find_lr(model, x, y, num_steps=30)
    assert model.optimizer is optimizer
    np.testing.assert_array_equal(model.param_buffer, weights)
    np.testing.assert_array_equal(model.grad_buffer, grads)
    np.testing.assert_array_equal(model.layers[1].running_mean, stats[0])
    np.testing.assert_array_equal(model.layers[1].running_var, stats[1])
    after = optimizer.state_dict()
    assert after["iterations"] == state["iterations"] and after["config"] == state["config"]
    for name, array in state["state"].items():
        np.testing.assert_array_equal(after["state"][name], array)
    assert model.rng.bit_generator.state == generator
    # Training afterwards is exactly what it would have been without the test.
    twin = classifier(extra=[layers.BatchNorm(), layers.Dropout(0.2)])
    twin.fit(x, y, epochs=2, verbose=0)
    model.fit(x, y, epochs=1, verbose=0)
    twin.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.param_buffer, twin.param_buffer)


def test_find_lr_is_deterministic():
    x, y = data()
    first = tuning.find_lr(classifier(), x, y, num_steps=25)
    second = tuning.find_lr(classifier(), x, y, num_steps=25)
    np.testing.assert_array_equal(first.losses, second.losses)


def test_find_lr_stops_when_the_loss_diverges():
    x, y = data()
    result = tuning.find_lr(classifier(optimizer=optimizers.SGD(lr=0.1)), x, y,
                            start_lr=1e-3, end_lr=1e6, num_steps=100)
    assert len(result.lrs) < 100
    assert result.suggested_lr < result.lrs[-1]


def test_find_lr_uses_a_fresh_optimizer_of_the_same_kind(monkeypatch):
    x, y = data()
    model = classifier(optimizer=optimizers.SGD(lr=0.5, momentum=0.9))
    seen = []
    original_step = cdl.Sequential.train_step

    def spy(self, *args, **kwargs):
        seen.append((type(self.optimizer), self.optimizer.momentum, self.optimizer.lr))
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(cdl.Sequential, "train_step", spy)
    result = tuning.find_lr(model, x, y, num_steps=5)
    assert [s[:2] for s in seen] == [(optimizers.SGD, 0.9)] * 5
    np.testing.assert_allclose([s[2] for s in seen], result.lrs)
    assert model.optimizer.lr == 0.5 and model.optimizer.iterations == 0


def test_find_lr_handles_fewer_samples_than_a_batch_and_sample_weights():
    x, y = data(10)
    result = tuning.find_lr(classifier(), x, y, batch_size=32, num_steps=20,
                            sample_weight=np.ones(10))
    assert len(result.losses) >= 2


def test_find_lr_plot(tmp_path):
    pytest.importorskip("matplotlib")
    x, y = data()
    result = tuning.find_lr(classifier(), x, y, num_steps=30)
    path = result.plot(tmp_path / "lr.png")
    assert path.stat().st_size > 5_000
    assert "suggested_lr" in repr(result)


def test_find_lr_checks_its_arguments():
    x, y = data()
    with pytest.raises(RuntimeError, match="compiled"):
        tuning.find_lr(cdl.Sequential([layers.Dense(2)], input_shape=(4,)), x, y)
    with pytest.raises(ValueError, match="end_lr"):
        tuning.find_lr(classifier(), x, y, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="num_steps"):
        tuning.find_lr(classifier(), x, y, num_steps=1)
    with pytest.raises(ValueError, match="samples"):
        tuning.find_lr(classifier(), x, y[:10])


# --- predict_mc --------------------------------------------------------------------------------


def test_predict_mc_spreads_with_dropout():
    model = classifier(extra=[layers.Dropout(0.5)])
    x, _ = data(20)
    mean, std = tuning.predict_mc(model, x, mc_samples=30, seed=0)
    assert mean.shape == std.shape == (20, 2)
    assert mean.dtype == std.dtype == np.float32
    assert (std > 0).all()


def test_predict_mc_matches_the_samples_it_draws():
    model = classifier(extra=[layers.Dropout(0.3)])
    x, _ = data(5)
    mean, std = tuning.predict_mc(model, x, mc_samples=7, seed=3)
    # The same passes by hand: dropout masks from a generator seeded alike.
    generator = np.random.default_rng(3)
    model.layers[1]._rng, saved = generator, model.layers[1]._rng
    try:
        samples = np.stack([model.layers[2].forward(model.layers[1].forward(
            model.layers[0].forward(x), training=True)) for _ in range(7)])
    finally:
        model.layers[1]._rng = saved
    np.testing.assert_allclose(mean, samples.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, samples.std(axis=0), rtol=1e-4, atol=1e-6)


def test_predict_mc_keeps_everything_else_in_inference_mode():
    # Without dropping anything, the passes are model.predict: BatchNorm uses its
    # running statistics and GaussianNoise adds nothing.
    x, y = data()
    model = classifier(extra=[layers.BatchNorm(), layers.GaussianNoise(1.0),
                              layers.Dropout(0.0)])
    model.fit(x, y, epochs=2, verbose=0)
    mean, std = tuning.predict_mc(model, x[:10], mc_samples=5)
    np.testing.assert_allclose(mean, model.predict(x[:10]), rtol=1e-6, atol=1e-6)
    assert (std == 0).all()


def test_predict_mc_mean_is_unbiased_for_a_linear_head():
    # Inverted dropout keeps the expectation: E[W (mask * h)] = W h.
    model = cdl.Sequential([layers.Dense(8, activation="relu"), layers.Dropout(0.5),
                            layers.Dense(2)], input_shape=(4,), dtype="float64", seed=0)
    x, _ = data(3)
    mean, std = tuning.predict_mc(model, x, mc_samples=20_000, seed=0)
    np.testing.assert_allclose(mean, model.predict(x), atol=5 * std.max() / np.sqrt(20_000))


def test_predict_mc_reaches_dropout_inside_blocks():
    model = cdl.Sequential([layers.Residual([layers.Dense(4, activation="relu"),
                                             layers.SpatialDropout1D(0.5)])],
                           input_shape=(3, 4), seed=0)
    x = np.ones((2, 3, 4), dtype=np.float32)
    _, std = tuning.predict_mc(model, x, mc_samples=10, seed=0)
    assert std.max() > 0
    assert "forward" not in vars(model.layers[0].layers[1])  # the override is gone


def test_predict_mc_seed_leaves_the_model_generator_alone():
    model = classifier(extra=[layers.Dropout(0.5)])
    x, _ = data(4)
    state = model.rng.bit_generator.state
    first = tuning.predict_mc(model, x, mc_samples=5, seed=1)
    assert model.rng.bit_generator.state == state
    second = tuning.predict_mc(model, x, mc_samples=5, seed=1)
    np.testing.assert_array_equal(first[0], second[0])
    tuning.predict_mc(model, x, mc_samples=5)  # no seed: the model's generator draws
    assert model.rng.bit_generator.state != state


def test_predict_mc_transforms_each_pass():
    model = classifier(extra=[layers.Dropout(0.5)])
    x, _ = data(6)
    mean, _ = tuning.predict_mc(model, x, mc_samples=8, seed=0, transform="softmax")
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, rtol=1e-6)
    doubled, _ = tuning.predict_mc(model, x, mc_samples=8, seed=0, transform=lambda o: 2 * o)
    raw, _ = tuning.predict_mc(model, x, mc_samples=8, seed=0)
    np.testing.assert_allclose(doubled, 2 * raw, rtol=1e-6)


def test_predict_mc_restores_layers_after_an_error():
    model = classifier(extra=[layers.Dropout(0.5)])
    x, _ = data(4)

    def failing(outputs):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        tuning.predict_mc(model, x, transform=failing, seed=0)
    assert "forward" not in vars(model.layers[1])
    assert model.layers[1]._rng is model.rng
    np.testing.assert_array_equal(model.predict(x), model.predict(x))  # dropout is off


def test_predict_mc_checks_its_arguments():
    x, _ = data(4)
    with pytest.raises(ValueError, match="no dropout layer"):
        tuning.predict_mc(classifier(), x)
    model = classifier(extra=[layers.Dropout(0.5)])
    with pytest.raises(ValueError, match="mc_samples"):
        tuning.predict_mc(model, x, mc_samples=0)
    with pytest.raises(ValueError, match="transform"):
        tuning.predict_mc(model, x, transform="tanh")
    with pytest.raises(ValueError, match="expects"):
        tuning.predict_mc(model, np.ones((2, 3)))


def test_model_methods_delegate_to_tuning():
    x, y = data()
    model = classifier(extra=[layers.Dropout(0.3)])
    twin = classifier(extra=[layers.Dropout(0.3)])
    # Same generator state: model.predict(mc_samples=) draws the masks predict_mc would.
    mean, std = model.predict(x[:16], mc_samples=4)
    twin_mean, twin_std = tuning.predict_mc(twin, x[:16], mc_samples=4)
    np.testing.assert_array_equal(mean, twin_mean)
    np.testing.assert_array_equal(std, twin_std)
    result = model.find_lr(x, y, num_steps=15)
    expected = tuning.find_lr(twin, x, y, num_steps=15)
    np.testing.assert_array_equal(result.losses, expected.losses)
    assert result.suggested_lr == expected.suggested_lr


# --- graph models ---------------------------------------------------------------------------


def graph_data(n=96, seed=1):
    rng = np.random.default_rng(seed)
    xa, xb = rng.standard_normal((n, 4)), rng.standard_normal((n, 3))
    y_cls = (xa[:, 0] - xb[:, 1] > 0).astype(np.int64)
    y_reg = (xa[:, 1] + xb[:, 0])[:, None]
    return {"a": xa, "b": xb}, {"cls": y_cls, "reg": y_reg}


def graph_model(seed=0, compiled=True, shared_dropout=False):
    """Two inputs, two outputs, a shared Dense layer, BatchNorm and dropout
    (a Dropout called on both branches with ``shared_dropout``)."""
    a = cdl.Input(shape=(4,), name="a")
    b = cdl.Input(shape=(3,), name="b")
    shared = layers.Dense(6, activation="tanh", name="shared")
    drop = layers.Dropout(0.4, name="drop")
    ha, hb = shared(a), shared(layers.Dense(4, name="lift")(b))
    if shared_dropout:
        ha, hb = drop(ha), drop(hb)
    h = layers.Concatenate(name="join")([ha, hb])
    h = layers.BatchNorm(name="norm")(h)
    if not shared_dropout:
        h = drop(h)
    model = cdl.Model([a, b], [layers.Dense(2, name="cls")(h), layers.Dense(1, name="reg")(h)],
                      seed=seed, dtype="float64")
    if compiled:
        model.compile(optimizers.Adam(lr=1e-3), loss={"cls": "cross_entropy", "reg": "mse"},
                      loss_weights={"reg": 0.3}, metrics={"cls": ["accuracy"]})
    return model


def _state(model):
    return (model.param_buffer.copy(), model.grad_buffer.copy(),
            [array.copy() for layer in model.layers for array in layer.buffers().values()],
            model.rng.bit_generator.state, model.optimizer.state_dict())


def test_find_lr_trains_a_graph_model_on_dicts_and_restores_it_exactly():
    x, y = graph_data()
    weights = {"cls": np.linspace(0.5, 1.5, 96), "reg": None}
    model, twin = graph_model(), graph_model()
    for m in (model, twin):
        m.fit(x, y, epochs=1, batch_size=16, verbose=0)  # optimizer state, BatchNorm statistics
    params, grads, buffers, generator, state = _state(model)
    optimizer = model.optimizer
    result = model.find_lr(x, y, num_steps=40, batch_size=16, sample_weight=weights)
    assert len(result.losses) >= 10 and np.isfinite(result.losses[:10]).all()
    assert 1e-7 <= result.suggested_lr <= 10.0
    assert model.optimizer is optimizer
    np.testing.assert_array_equal(model.param_buffer, params)
    np.testing.assert_array_equal(model.grad_buffer, grads)
    for array, saved in zip([a for layer in model.layers for a in layer.buffers().values()],
                            buffers):
        np.testing.assert_array_equal(array, saved)
    assert model.rng.bit_generator.state == generator
    after = optimizer.state_dict()
    assert after["iterations"] == state["iterations"]
    for name, array in state["state"].items():
        np.testing.assert_array_equal(after["state"][name], array)
    # Training afterwards is exactly what it would have been without the test.
    first = model.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    second = twin.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    np.testing.assert_array_equal(model.param_buffer, twin.param_buffer)
    assert first == second


def test_find_lr_takes_a_graph_model_data_as_lists_or_dicts_alike():
    x, y = graph_data()
    by_name = tuning.find_lr(graph_model(), x, y, num_steps=20)
    in_order = tuning.find_lr(graph_model(), [x["a"], x["b"]], [y["cls"], y["reg"]],
                              num_steps=20)
    np.testing.assert_array_equal(by_name.losses, in_order.losses)
    # Each step is a train_step on the next batch of one shuffled order (drawn
    # from the model's generator) at the step's rate, with a fresh optimizer.
    model = graph_model()
    order = model.rng.permutation(96)
    steps = []
    for i, lr in enumerate(by_name.lrs[:3]):
        model.optimizer.lr = lr
        rows = order[32 * i:32 * (i + 1)]
        steps.append(model.train_step({k: v[rows] for k, v in x.items()},
                                      [y["cls"][rows], y["reg"][rows]]))
    np.testing.assert_array_equal(by_name.losses[:3], steps)


def test_find_lr_refuses_bad_graph_data_clearly():
    x, y = graph_data()
    model = graph_model()
    with pytest.raises(ValueError, match="missing key.*'b'"):
        tuning.find_lr(model, {"a": x["a"]}, y)
    with pytest.raises(ValueError, match="unknown key.*'c'"):
        tuning.find_lr(model, {**x, "c": x["a"]}, y)
    with pytest.raises(ValueError, match="different numbers of samples"):
        tuning.find_lr(model, {"a": x["a"], "b": x["b"][:50]}, y)
    with pytest.raises(ValueError, match="no targets for output 'cls'"):
        tuning.find_lr(model, x, {"reg": y["reg"]})
    with pytest.raises(ValueError, match="NaN"):
        tuning.find_lr(model, {"a": np.full((96, 4), np.nan), "b": x["b"]}, y)
    with pytest.raises(ValueError, match="samples"):
        tuning.find_lr(model, x, {"cls": y["cls"][:10], "reg": y["reg"]})
    with pytest.raises(ValueError, match="unknown key.*'box'"):
        tuning.find_lr(model, x, y, sample_weight={"box": np.ones(96)})
    with pytest.raises(ValueError, match="sample_weight could not be turned into an array"):
        tuning.find_lr(model, x, y, sample_weight=[[[1.0], [1.0, 2.0]], None])   # ragged
    assert model.optimizer.iterations == 0


def test_find_lr_of_a_chain_graph_is_that_of_the_sequential():
    x, y = data()
    inputs = cdl.Input(shape=(4,))
    chain = cdl.Model(inputs, layers.Dense(2)(layers.Dense(16, activation="relu")(inputs)),
                      seed=0)
    chain.compile(optimizers.Adam(lr=1e-3), "cross_entropy")
    assert chain.chain is not None
    expected = tuning.find_lr(classifier(), x, y, num_steps=30)
    result = tuning.find_lr(chain, x, y, num_steps=30)
    np.testing.assert_array_equal(result.losses, expected.losses)


def test_predict_mc_of_a_graph_model_gives_a_mean_and_spread_per_output():
    x, _ = graph_data(10)
    model = graph_model()
    means, stds = tuning.predict_mc(model, x, mc_samples=6, seed=2,
                                    transform={"cls": "softmax"})
    assert [m.shape for m in means] == [(10, 2), (10, 1)] == [s.shape for s in stds]
    np.testing.assert_allclose(means[0].sum(axis=1), 1.0, rtol=1e-12)
    assert all((s > 0).any() for s in stds)
    # As a list in output order, and through model.predict with lists.
    again = tuning.predict_mc(model, [x["a"], x["b"]], mc_samples=6, seed=2,
                              transform=["softmax", None])
    for got, want in zip(again[0] + again[1], means + stds):
        np.testing.assert_array_equal(got, want)
    twin = graph_model()
    mean, std = twin.predict(x, mc_samples=6)
    expected = tuning.predict_mc(graph_model(), x, mc_samples=6)
    for got, want in zip(mean + std, expected[0] + expected[1]):
        np.testing.assert_array_equal(got, want)


def test_predict_mc_draws_masks_for_every_call_of_a_shared_dropout():
    a = cdl.Input(shape=(3,), name="a")
    b = cdl.Input(shape=(3,), name="b")
    drop = layers.Dropout(0.5, name="drop")
    model = cdl.Model([a, b], {"first": drop(a), "second": drop(b)}, seed=0, dtype="float64")
    x = {"a": np.ones((40, 3)), "b": np.full((40, 3), 3.0)}
    with tuning.training_mode_only(model, layers.Dropout) as chosen:
        assert len(chosen) == 2     # the layer and the copy that runs its second call
    (first, second), _ = tuning.predict_mc(model, x, mc_samples=1, seed=7)
    # One pass: each call drew its own mask, kept values doubled.
    assert set(np.unique(first)) == {0.0, 2.0} and set(np.unique(second)) == {0.0, 6.0}
    assert not np.array_equal(first / 2, second / 6)
    _, (spread_first, spread_second) = tuning.predict_mc(model, x, mc_samples=10, seed=0)
    assert (spread_first > 0).mean() > 0.9 and (spread_second > 0).mean() > 0.9
    # Restored afterwards: inference mode, the model's generator.
    assert all("forward" not in vars(runner) for runner in model._runners())
    assert all(runner._rng is model.rng for runner in model._runners())
    np.testing.assert_array_equal(model.predict(x)[1], x["b"])


def test_predict_mc_checks_graph_arguments():
    x, _ = graph_data(4)
    model = graph_model()
    with pytest.raises(ValueError, match="unknown output name.*'box'"):
        tuning.predict_mc(model, x, transform={"box": "softmax"})
    with pytest.raises(ValueError, match="transform has 1 entries, the model has 2 outputs"):
        tuning.predict_mc(model, x, transform=["softmax"])
    with pytest.raises(ValueError, match="transform must be"):
        tuning.predict_mc(model, x, transform={"cls": "tanh"})
    with pytest.raises(ValueError, match="missing key.*'a'"):
        tuning.predict_mc(model, {"b": x["b"]})
    with pytest.raises(ValueError, match="samples of shape"):
        tuning.predict_mc(model, {"a": x["a"], "b": x["a"]})
    with pytest.raises(TypeError, match="iterable of batches"):
        tuning.predict_mc(model, iter([x]))


def test_predict_mc_keeps_attention_dropout_on_and_ignores_attention_without_it():
    x = np.random.default_rng(0).normal(size=(3, 5, 8))

    def model(rate):
        return cdl.Sequential([layers.MultiHeadAttention(2, 4, dropout=rate),
                               layers.GlobalAvgPool1D(), layers.Dense(2)],
                              input_shape=(5, 8), seed=0, dtype="float64")

    mean, std = model(0.3).predict(x, mc_samples=5)
    assert std.shape == (3, 2) and std.max() > 0
    with pytest.raises(ValueError, match="no dropout layer"):
        model(0.0).predict(x, mc_samples=3)
