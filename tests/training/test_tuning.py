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
