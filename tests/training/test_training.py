"""compile / fit / evaluate / predict / train_step / partial_fit / summary."""
import numpy as np
import pytest

import cdl
from cdl import callbacks, layers, losses, optimizers


def blobs(n=300, seed=0, dtype=np.float32):
    """Three well separated Gaussian blobs in 4-D and their labels."""
    rng = np.random.default_rng(seed)
    centers = np.array([[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0]], dtype=float)
    y = rng.integers(0, 3, n)
    x = centers[y] + rng.normal(0, 0.7, (n, 4))
    return x.astype(dtype), y


def classifier(seed=0, dtype="float32", dropout=0.0):
    model = cdl.Sequential([
        layers.Dense(16, activation="relu"),
        layers.Dropout(dropout),
        layers.Dense(3),
    ], input_shape=(4,), dtype=dtype, seed=seed)
    model.compile(optimizers.Adam(lr=0.01), "cross_entropy", metrics=["accuracy"])
    return model


def test_fit_evaluate_predict():
    x, y = blobs()
    model = classifier()
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert isinstance(history, callbacks.History)
    assert history.epoch == list(range(15))
    assert set(history.history) == {"loss", "accuracy", "lr"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    result = model.evaluate(x, y)
    assert set(result) == {"loss", "accuracy"} and result["accuracy"] > 0.95
    out = model.predict(x, batch_size=7)
    assert out.shape == (300, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, model.forward(x))
    probs = model.predict_proba(x[:10])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(model.predict_classes(x), out.argmax(axis=1))
    assert (model.predict_classes(x) == y).mean() == pytest.approx(result["accuracy"])


def test_evaluate_matches_loss_and_metric_on_the_whole_data():
    x, y = blobs(n=101)
    model = classifier()
    result = model.evaluate(x, y, batch_size=10)  # uneven last batch
    loss = losses.CrossEntropy().forward(model.forward(x), y)
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert result["accuracy"] == pytest.approx((model.forward(x).argmax(1) == y).mean())


def test_fit_is_reproducible_with_a_seed():
    x, y = blobs()
    runs = []
    for _ in range(2):
        model = classifier(seed=3, dropout=0.3)
        model.fit(x, y, epochs=3, batch_size=16, verbose=0)
        runs.append(model.param_buffer.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_validation_split_and_validation_data():
    x, y = blobs()
    model = classifier()
    h = model.fit(x, y, epochs=2, validation_split=0.2, verbose=0)
    assert {"val_loss", "val_accuracy"} <= set(h.history)
    # The held-out part is the last 20% (before shuffling).
    expected = model.evaluate(x[240:], y[240:])
    assert h.history["val_loss"][-1] == pytest.approx(expected["loss"], rel=1e-5)
    h = model.fit(x[:200], y[:200], epochs=1, validation_data=(x[200:], y[200:]), verbose=0)
    assert h.history["val_loss"][-1] == pytest.approx(model.evaluate(x[200:], y[200:])["loss"],
                                                      rel=1e-5)
    with pytest.raises(ValueError, match="validation_data"):
        model.fit(x, y, validation_data=(x,), verbose=0)


def test_sample_weight_zero_means_ignored():
    x, y = blobs(n=64)
    weights = np.ones(64)
    weights[32:] = 0.0
    a, b = classifier(seed=1), classifier(seed=1)
    a.fit(x, y, epochs=1, batch_size=64, sample_weight=weights, shuffle=False, verbose=0)
    # Same gradient direction as training on the first half only, at half the scale.
    b.compile(optimizers.SGD(lr=0.1), "cross_entropy")
    a2 = classifier(seed=1)
    a2.compile(optimizers.SGD(lr=0.1), "cross_entropy")
    a2.fit(x, y, epochs=1, batch_size=64, sample_weight=weights, shuffle=False, verbose=0)
    b.fit(x[:32], y[:32], epochs=1, batch_size=32, shuffle=False, verbose=0)
    start = classifier(seed=1).param_buffer
    np.testing.assert_allclose(a2.param_buffer - start, 0.5 * (b.param_buffer - start),
                               rtol=1e-4, atol=1e-7)


def test_class_weight_dict_and_balanced():
    x, y = blobs(n=90)
    balanced = classifier(seed=2)
    balanced.compile(optimizers.SGD(lr=0.1), "cross_entropy")
    counts = np.bincount(y)
    manual = {c: len(y) / (3 * counts[c]) for c in range(3)}
    explicit = classifier(seed=2)
    explicit.compile(optimizers.SGD(lr=0.1), "cross_entropy")
    balanced.fit(x, y, epochs=1, batch_size=90, class_weight="balanced", verbose=0)
    explicit.fit(x, y, epochs=1, batch_size=90, class_weight=manual, verbose=0)
    np.testing.assert_allclose(balanced.param_buffer, explicit.param_buffer, rtol=1e-6)
    with pytest.raises(ValueError, match="no weight for classes"):
        explicit.fit(x, y, class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="balanced"):
        explicit.fit(x, y, class_weight="even", verbose=0)


def test_memory_mapped_inputs_are_streamed(tmp_path):
    x, y = blobs(n=200, dtype=np.float64)
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    readonly = np.memmap(path, dtype=np.float64, mode="r", shape=x.shape)
    a, b = classifier(seed=4), classifier(seed=4)
    a.fit(readonly, y, epochs=2, batch_size=32, verbose=0)
    b.fit(x, y, epochs=2, batch_size=32, verbose=0)
    np.testing.assert_allclose(a.param_buffer, b.param_buffer, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.predict(readonly), a.predict(x), rtol=1e-6)
    assert a.evaluate(readonly, y)["loss"] == pytest.approx(a.evaluate(x, y)["loss"], rel=1e-6)


def test_read_only_inputs():
    x, y = blobs(n=64)
    x.flags.writeable = False
    model = classifier()
    model.fit(x, y, epochs=1, verbose=0)
    assert model.predict(x).shape == (64, 3)


def test_partial_fit_keeps_optimizer_state():
    x, y = blobs(n=64)
    once = classifier(seed=5)
    once.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0)
    twice = classifier(seed=5)
    twice.partial_fit(x, y, batch_size=64, shuffle=False)
    twice.partial_fit(x, y, batch_size=64, shuffle=False)
    assert twice.optimizer.iterations == 2
    np.testing.assert_array_equal(once.param_buffer, twice.param_buffer)


def test_train_step_equals_explicit_calls():
    x, y = blobs(n=32, dtype=np.float64)
    a, b = classifier(seed=6, dtype="float64"), classifier(seed=6, dtype="float64")
    loss = a.train_step(x, y)
    loss_fn = losses.CrossEntropy()
    expected = loss_fn.forward(b.forward(x, training=True), y)
    b.backward(loss_fn.backward())
    b.optimizer.step(b.params, b.grads)
    assert loss == expected
    np.testing.assert_array_equal(a.param_buffer, b.param_buffer)


def test_clip_norm_in_compile_limits_the_step():
    x, y = blobs(n=32, dtype=np.float64)
    model = classifier(dtype="float64")
    model.compile(optimizers.SGD(lr=1.0), "cross_entropy", clip_norm=1e-3)
    before = model.param_buffer.copy()
    model.train_step(x, y)
    assert np.linalg.norm(model.param_buffer - before) <= 1e-3 * (1 + 1e-6)


def test_loss_threshold_and_max_steps_stop_training():
    x, y = blobs()
    model = classifier()
    h = model.fit(x, y, epochs=200, loss_threshold=0.2, verbose=0)
    assert h.history["loss"][-1] < 0.2 and len(h.epoch) < 200
    assert all(loss >= 0.2 for loss in h.history["loss"][:-1])
    model = classifier()
    model.fit(x, y, epochs=50, batch_size=30, max_steps=25, verbose=0)
    assert model.optimizer.iterations == 25


def test_max_time_stops_training():
    x, y = blobs()
    model = classifier()
    h = model.fit(x, y, epochs=10_000, batch_size=8, max_time=0.2, verbose=0)
    assert len(h.epoch) < 10_000


def test_regression_with_mse_and_metrics():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    model = cdl.Sequential([layers.Dense(1)], input_shape=(3,), dtype="float64", seed=0)
    model.compile(optimizers.SGD(lr=0.1), "mse", metrics=["mae", "r2"])
    model.fit(x, y, epochs=60, batch_size=20, verbose=0)
    result = model.evaluate(x, y)
    assert result["loss"] < 1e-6 and result["r2"] > 0.9999
    np.testing.assert_allclose(model.layers[0].kernel[:, 0], [1.0, -2.0, 0.5], atol=1e-3)


def test_binary_classifier_predict_helpers():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    model = cdl.Sequential([layers.Dense(1)], input_shape=(2,), seed=0)
    model.compile(optimizers.Adam(lr=0.05), "binary_cross_entropy", metrics=["accuracy"])
    model.fit(x, y, epochs=20, verbose=0)
    assert model.evaluate(x, y)["accuracy"] > 0.95
    proba = model.predict_proba(x)
    assert proba.shape == (200, 1) and np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(model.predict_classes(x), (proba[:, 0] > 0.5).astype(int))


def test_verbose_output(capsys):
    x, y = blobs(n=64)
    classifier().fit(x, y, epochs=2, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("Epoch 1/2") and "accuracy:" in out[0]
    classifier().fit(x, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_summary(capsys):
    model = classifier()
    model.summary()
    out = capsys.readouterr().out
    assert "Dense" in out and "(None, 16)" in out and "Total params: 131" in out
    # Dense 4->16 with relu: 2*4*16 + 16 + 16; Dropout: 16; Dense 16->3: 2*16*3 + 3.
    assert f"Forward FLOPs per sample: {2 * 4 * 16 + 32 + 16 + 2 * 16 * 3 + 3}" in out


def test_errors():
    x, y = blobs(n=20)
    model = cdl.Sequential([layers.Dense(3)], input_shape=(4,))
    with pytest.raises(RuntimeError, match="compiled"):
        model.fit(x, y)
    with pytest.raises(ValueError, match="loss"):
        model.compile("adam")
    with pytest.raises(ValueError, match="unknown optimizer"):
        model.compile("adamm", "mse")
    model.compile("sgd", "cross_entropy")
    with pytest.raises(ValueError, match="5 samples, x has 20"):
        model.fit(x, y[:5], verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        model.fit(x, y, epochs=-1)
    with pytest.raises(ValueError, match="contains NaN"):
        bad = x.copy()
        bad[3, 1] = np.nan
        model.fit(bad, y, verbose=0)
    with pytest.raises(ValueError, match="the model expects"):
        model.predict(np.ones((2, 5)))
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=1.5)
