"""Bit-identical results: the same seed, and (in deterministic mode) any thread count."""
import numpy as np
import pytest

import cdl
from cdl import layers, optimizers


@pytest.fixture(autouse=True)
def _default_mode():
    cdl.use_deterministic_algorithms(False)
    yield
    cdl.use_deterministic_algorithms(False)


def _mlp(dtype):
    return cdl.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.3),
                           layers.Dense(16, activation="gelu"), layers.Dropout(0.1),
                           layers.Dense(3)], input_shape=(6,), dtype=dtype, seed=7)


def _cnn(dtype):
    return cdl.Sequential([layers.Reshape((6, 6, 1)),
                           layers.Conv2D(4, 3, padding="same", activation="relu"),
                           layers.SpatialDropout2D(0.2), layers.MaxPool2D(2),
                           layers.BatchNorm(), layers.Flatten(), layers.Dropout(0.2),
                           layers.Dense(3)], input_shape=(36,), dtype=dtype, seed=7)


def _rnn(dtype):
    return cdl.Sequential([layers.Reshape((6, 6)), layers.LSTM(8, return_sequences=True),
                           layers.Dropout(0.2), layers.GRU(5), layers.GaussianNoise(0.1),
                           layers.Dense(3)], input_shape=(36,), dtype=dtype, seed=7)


ARCHS = {"mlp-fused": (_mlp, True), "mlp-layers": (_mlp, False), "cnn": (_cnn, False),
         "rnn": (_rnn, False)}


def _train(arch, dtype):
    make, fused = ARCHS[arch]
    model = make(dtype)
    model.use_fused_step = fused
    model.compile(optimizers.Adam(lr=0.01), "cross_entropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    width = model.input_shape[0]
    x = rng.standard_normal((90, width))
    y = rng.integers(0, 3, 90)
    history = model.fit(x, y, epochs=3, batch_size=16, shuffle=True, validation_split=0.2,
                        verbose=0)
    return model, history, model.predict(x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_same_seed_same_bits(arch, dtype):
    first, h1, p1 = _train(arch, dtype)
    second, h2, p2 = _train(arch, dtype)
    assert first.param_buffer.tobytes() == second.param_buffer.tobytes()
    assert h1.history == h2.history
    assert p1.tobytes() == p2.tobytes()
    assert first.rng.bit_generator.state == second.rng.bit_generator.state


# --- the BLAS thread count ---------------------------------------------------------------
#
# OpenBLAS splits a product among its threads in a way that changes the
# order of the floating-point sums for some shapes (inner dimension 784 or
# 1000 here, a one-sample 1024 -> 784 matrix-vector product, ...), so the
# last bits of a result depend on the thread count. These are such shapes.

def _dense_784(dtype):
    return cdl.Sequential([layers.Dense(1024, activation="relu"), layers.Dense(10)],
                          input_shape=(784,), dtype=dtype, seed=0)


def _dense_1024(dtype):
    return cdl.Sequential([layers.Dense(784, activation="tanh"), layers.Dense(10)],
                          input_shape=(1024,), dtype=dtype, seed=0)


def _conv_87(dtype):
    return cdl.Sequential([layers.Conv2D(16, 3, activation="relu"), layers.Flatten(),
                           layers.Dense(5)], input_shape=(8, 8, 87), dtype=dtype, seed=0)


def _lstm_1000(dtype):
    return cdl.Sequential([layers.LSTM(64), layers.Dense(5)], input_shape=(8, 1000),
                          dtype=dtype, seed=0)


def _gru_1000(dtype):
    return cdl.Sequential([layers.GRU(64), layers.Dense(5)], input_shape=(8, 1000),
                          dtype=dtype, seed=0)


SENSITIVE = {"dense-784": (_dense_784, 32), "dense-1024-one-sample": (_dense_1024, 1),
             "conv": (_conv_87, 16), "lstm": (_lstm_1000, 8), "gru": (_gru_1000, 8)}


def _run(name, dtype, threads):
    """Weights after two Adam steps, a one-sample and a whole-batch prediction."""
    make, batch = SENSITIVE[name]
    model = make(dtype)
    model.compile(optimizers.Adam(lr=1e-3), "cross_entropy")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch,) + model.input_shape).astype(dtype)
    y = rng.integers(0, 5, batch)
    with cdl.threads(threads):
        model.fit(x, y, epochs=2, batch_size=batch, verbose=0)
        return [model.param_buffer.copy(), model.predict(x[:1]), model.predict(x)]


def _same(a, b):
    return all(u.tobytes() == v.tobytes() for u, v in zip(a, b))


def _blas_threads():
    """Threads of the BLAS that cdl's kernels call."""
    from cdl._info import blas_info

    libraries = blas_info()
    used = [lib for lib in libraries if lib["used_by_cdl"]] or libraries
    return int(used[0]["num_threads"]) if used else 1


def _blas_threads_available():
    with cdl.threads(2):
        return _blas_threads() == 2


needs_two_threads = pytest.mark.skipif(not _blas_threads_available(),
                                       reason="the BLAS runs one thread only here")


@needs_two_threads
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(SENSITIVE))
def test_deterministic_mode_is_independent_of_the_thread_count(name, dtype):
    default_one = _run(name, dtype, 1)
    cdl.use_deterministic_algorithms(True)
    one = _run(name, dtype, 1)
    two = _run(name, dtype, 2)
    assert _same(one, two)
    assert _same(one, default_one)  # deterministic mode computes as one thread does


@needs_two_threads
def test_default_mode_depends_on_the_thread_count_for_some_shapes():
    """What the deterministic mode is for (documents the BLAS's behaviour)."""
    differ = [(name, dtype) for name in ("dense-784", "conv") for dtype in ("float32", "float64")
              if not _same(_run(name, dtype, 1), _run(name, dtype, 2))]
    if not differ:
        pytest.skip("this BLAS gives the same bits on 1 and 2 threads for these shapes")
    assert differ


def test_deterministic_mode_runs_the_blas_single_threaded_and_restores_it():
    model = _mlp("float64")
    model.compile("sgd", "mse")
    seen = []
    # The BLAS pool's count: cdl.get_num_threads() reports cdl's own loops,
    # whose results do not depend on their thread count.
    probe = cdl.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seen.append(_blas_threads()))
    x, y = np.ones((4, 6)), np.zeros((4, 3))
    cdl.use_deterministic_algorithms(True)
    with cdl.threads(2):
        before = _blas_threads()
        model.fit(x, y, epochs=2, verbose=0, callbacks=[probe])
        assert _blas_threads() == before
    assert seen == [1, 1]
    cdl.use_deterministic_algorithms(False)
    with cdl.threads(2):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[probe])
    assert seen[-1] == 2 or not _blas_threads_available()


def test_switch():
    assert not cdl.are_deterministic_algorithms_enabled()
    cdl.use_deterministic_algorithms(True)
    assert cdl.are_deterministic_algorithms_enabled()
    cdl.use_deterministic_algorithms(False)
    assert not cdl.are_deterministic_algorithms_enabled()
    with pytest.raises(TypeError, match="True or False"):
        cdl.use_deterministic_algorithms("yes")
