"""Setting the BLAS thread count, and many threads using one model."""
import threading

import numpy as np
import pytest

import cdl
from cdl import callbacks, layers


def test_threads_context_sets_and_restores():
    before = cdl.get_num_threads()
    with cdl.threads(1):
        assert cdl.get_num_threads() == 1
    assert cdl.get_num_threads() == before


def test_set_num_threads():
    before = cdl.get_num_threads()
    try:
        cdl.set_num_threads(1)
        assert cdl.get_num_threads() == 1
    finally:
        cdl.set_num_threads(before)
    assert cdl.get_num_threads() == before


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                        ("2", TypeError), (True, TypeError), (None, TypeError)])
def test_bad_thread_counts(bad, error):
    with pytest.raises(error, match="the number of threads n must be"):
        cdl.set_num_threads(bad)
    with pytest.raises(error, match="the number of threads n must be"):
        with cdl.threads(bad):
            pass


# --- many threads, one model -----------------------------------------------------------

N_THREADS = 8


def _dense_model():
    """A model the fused inference plan covers (each thread gets its own plan)."""
    model = cdl.Sequential([layers.Dense(48, activation="relu"), layers.Dropout(0.3),
                            layers.Dense(32, activation="tanh"), layers.Dense(5)],
                           input_shape=(12,), seed=0)
    model.compile("adam", "cross_entropy", metrics=["accuracy"])
    return model


def _layered_model():
    """A model that predicts layer by layer (convolution with its shared
    im2col buffer, normalisation, a recurrent layer)."""
    model = cdl.Sequential([layers.Reshape((6, 2)), layers.Conv1D(8, 3, activation="relu"),
                            layers.BatchNorm(), layers.LSTM(6, return_sequences=True),
                            layers.Flatten(), layers.Dense(5)], input_shape=(12,), seed=0)
    model.compile("adam", "cross_entropy", metrics=["accuracy"])
    return model


def _requests(count, seed=1):
    """Small batches of varying size, with labels."""
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((int(rng.integers(1, 40)), 12)).astype(np.float32)
          for _ in range(count)]
    return xs, [rng.integers(0, 5, len(x)) for x in xs]


def _hammer(model, xs, ys, calls, batch_size=16):
    """N_THREADS threads each make ``calls`` predict/predict_proba/evaluate
    calls; returns the mismatches against single-threaded results."""
    expected = [(model.predict(x, batch_size), model.predict_proba(x, batch_size),
                 model.evaluate(x, y, batch_size)) for x, y in zip(xs, ys)]
    problems = []
    start = threading.Barrier(N_THREADS)

    def work(seed):
        rng = np.random.default_rng(seed)
        start.wait()
        try:
            for call in range(calls):
                i = int(rng.integers(len(xs)))
                kind = call % 3
                if kind == 0:
                    same = np.array_equal(model.predict(xs[i], batch_size), expected[i][0])
                elif kind == 1:
                    same = np.array_equal(model.predict_proba(xs[i], batch_size),
                                          expected[i][1])
                else:
                    same = model.evaluate(xs[i], ys[i], batch_size) == expected[i][2]
                if not same:
                    problems.append((seed, call, i))
        except Exception as error:  # reported below, not lost in the thread
            problems.append((seed, repr(error)))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return problems


def test_concurrent_inference_matches_single_threaded_fused():
    model = _dense_model()
    xs, ys = _requests(60)
    model.fit(np.concatenate(xs), np.concatenate(ys), epochs=1, verbose=0)
    assert _hammer(model, xs, ys, calls=1000) == []
    assert model._predict_plan is not None


def test_concurrent_inference_matches_single_threaded_layer_by_layer():
    model = _layered_model()
    xs, ys = _requests(30)
    model.fit(np.concatenate(xs), np.concatenate(ys), epochs=1, verbose=0)
    assert model._predict_plan is None
    assert _hammer(model, xs, ys, calls=150, batch_size=8) == []


def test_each_thread_has_its_own_inference_plan():
    model = _dense_model()
    x = np.ones((3, 12), np.float32)
    model.predict(x)
    plans = []
    thread = threading.Thread(target=lambda: plans.append((model.predict(x),
                                                           model._predict_plan)))
    thread.start()
    thread.join()
    assert plans[0][1] is not None and plans[0][1] is not model._predict_plan
    np.testing.assert_array_equal(plans[0][0], model.predict(x))


def test_inference_plan_is_reused_for_smaller_batches():
    model = _dense_model()
    model.predict(np.ones((40, 12), np.float32), batch_size=16)
    plan = model._predict_plan
    for n in (1, 7, 16, 3):
        model.predict(np.ones((n, 12), np.float32), batch_size=16)
        assert model._predict_plan is plan


# --- training while other threads use the model ----------------------------------------------

class _Paused(callbacks.Callback):
    """Holds fit at the start of its first epoch until released."""

    def __init__(self):
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def on_epoch_begin(self, epoch, logs=None):
        self.started.set()
        assert self.release.wait(30)


def _train_in_background(model, x, y, callback):
    errors = []

    def train():
        try:
            model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[callback])
        except Exception as error:
            errors.append(error)

    thread = threading.Thread(target=train)
    thread.start()
    assert callback.started.wait(30)
    return thread, errors


@pytest.mark.parametrize("make", [_dense_model, _layered_model])
def test_other_threads_get_a_clear_error_while_a_model_trains(make):
    model = make()
    xs, ys = _requests(4)
    x, y = np.concatenate(xs), np.concatenate(ys)
    before = model.predict(x)
    paused = _Paused()
    thread, errors = _train_in_background(model, x, y, paused)
    try:
        for call in (lambda: model.predict(x), lambda: model.predict_proba(x),
                     lambda: model.evaluate(x, y)):
            with pytest.raises(RuntimeError, match="is training in another thread"):
                call()
        with pytest.raises(RuntimeError, match="is training in another thread"):
            model.fit(x, y, epochs=1, verbose=0)
        with pytest.raises(RuntimeError, match="is training in another thread"):
            model.train_step(x, y)
    finally:
        paused.release.set()
        thread.join()
    assert errors == []
    after = model.predict(x)  # works again once fit has returned
    assert not np.array_equal(before, after)


def test_the_training_thread_itself_may_predict():
    model = _dense_model()
    xs, ys = _requests(4)
    x, y = np.concatenate(xs), np.concatenate(ys)
    seen = []
    probe = callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(model.predict(x[:2]).shape))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[probe],
              validation_data=(x, y))
    assert seen == [(2, 5), (2, 5)]


class _Gate(layers.Layer):
    """The identity, whose inference forward pass waits for a signal."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.blocking = False

    def forward(self, x, training=False):
        x = self._check_input(x)
        if self.blocking and not training:
            self.entered.set()
            assert self.release.wait(30)
        return x

    def backward(self, grad):
        return grad


def test_fit_waits_for_running_predictions_and_refuses_new_ones():
    gate = _Gate()
    model = cdl.Sequential([layers.Dense(4), gate, layers.Dense(3)], input_shape=(5,), seed=0)
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    y = np.zeros((6, 3), np.float32)
    expected = model.predict(x)
    gate.blocking = True
    results, events = [], []
    predicting = threading.Thread(target=lambda: results.append(model.predict(x)))
    predicting.start()
    assert gate.entered.wait(30)
    started = callbacks.LambdaCallback(on_train_begin=lambda logs: events.append("fit began"))
    training = threading.Thread(
        target=lambda: model.fit(x, y, epochs=1, verbose=0, callbacks=[started]))
    training.start()
    training.join(0.3)
    assert events == []  # fit waits for the prediction in progress ...
    with pytest.raises(RuntimeError, match="is training in another thread"):
        model.predict(x)  # ... and turns new ones away
    gate.release.set()
    predicting.join()
    training.join()
    assert events == ["fit began"]
    np.testing.assert_array_equal(results[0], expected)
