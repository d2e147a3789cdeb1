"""What several test modules share: dtype-keyed tolerances and small array
factories, the layer contract, NumPy references of the activations, the
model file's framing, and a resumable training run.

Every test directory imports it as ``helpers`` (``pythonpath`` in
pyproject.toml puts ``tests/`` on the import path).
"""
import hashlib
import json
import os
import pathlib
import signal
import struct
import sys

import numpy as np
import numpy.testing as npt
from scipy.special import expit
from scipy.special import log_softmax as sp_log_softmax

import cdl
from cdl import callbacks, layers, optimizers, schedules

#: The repository's root folder (the one holding ``docs/`` and ``examples/``).
ROOT = pathlib.Path(__file__).resolve().parent.parent

#: The folder of this module: child processes that import it put it on their path.
TESTS = ROOT / "tests"

DTYPES = [np.float32, np.float64]

#: One tolerance table for every comparison against a reference.
TOLERANCES = {
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
}

#: Largest accepted relative error of a float64 finite-difference gradient check.
GRADCHECK_TOL = 1e-6


def assert_allclose(actual, desired, dtype=None, **overrides):
    """assert_allclose with the tolerance of ``dtype`` (default: actual's dtype)."""
    dtype = np.dtype(dtype if dtype is not None else np.asarray(actual).dtype)
    npt.assert_allclose(actual, desired, **{**TOLERANCES[dtype], **overrides})


def random_array(shape, dtype=np.float64, seed=0, low=None, high=None):
    """Standard normal (or uniform in [low, high)) draws of the given dtype."""
    rng = np.random.default_rng(seed)
    if low is not None:
        return rng.uniform(low, high, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


# --- the layer contract ---------------------------------------------------------------

def check_layer(make_layer, input_shape, output_shape, n_params, dtype):
    """Build ``make_layer()`` in a model of ``dtype`` and check the layer contract."""
    layer = make_layer()
    model = cdl.Sequential([layer], input_shape=input_shape, dtype=dtype, seed=0)
    assert layer.built and layer.output_shape == output_shape
    assert layer.compute_output_shape(input_shape) == output_shape
    assert layer.count_params() == n_params == model.count_params()

    x = random_array((3,) + input_shape, dtype, seed=1)
    for training in (False, True):
        y = model.forward(x, training=training)
        assert y.shape == (3,) + output_shape and y.dtype == dtype
        dx = model.backward(np.ones_like(y))
        assert dx.shape == x.shape and dx.dtype == dtype
        assert all(g.dtype == dtype for g in model.grads)

    # One gradient-descent step on sum(y) changes every weight that has a gradient.
    before = model.param_buffer.copy()
    model.param_buffer -= 0.1 * model.grad_buffer
    assert np.array_equal(model.param_buffer != before, model.grad_buffer != 0)

    # get_config round-trip: same class, same config, same output for the same weights.
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    twin = cdl.Sequential([clone], input_shape=input_shape, dtype=dtype, seed=0)
    twin.param_buffer[...] = model.param_buffer
    assert_allclose(twin.forward(x), model.forward(x), dtype=dtype)


# --- NumPy / SciPy references of the activations (float64) --------------------------

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def ref_forward(name, x, beta=1.0, threshold=20.0):
    """Activation ``name`` of ``x`` in float64, computed stably.

    Parameters
    ----------
    name : str
        A key of ``activations.CODES``.
    x : array_like
    beta, threshold : float
        Softplus' parameters (ignored otherwise).

    Returns
    -------
    ndarray of float64
    """
    x = np.asarray(x, np.float64)
    if name == "selu":
        return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))
    if name in ("silu", "swish"):
        return x * expit(x)
    if name == "mish":
        return x * np.tanh(np.logaddexp(0.0, x))
    if name == "softplus":
        return np.where(beta * x > threshold, x, np.logaddexp(0.0, beta * x) / beta)
    if name == "softsign":
        return x / (1 + np.abs(x))
    if name == "hard_sigmoid":
        return np.clip(x + 3, 0, 6) / 6
    if name == "hard_swish":
        return x * np.clip(x + 3, 0, 6) / 6
    if name == "relu6":
        return np.clip(x, 0, 6)
    if name == "log_softmax":
        return sp_log_softmax(x, axis=-1)
    raise KeyError(name)


def ref_backward(name, x, dy, beta=1.0, threshold=20.0):
    """Gradient with respect to ``x`` of activation ``name`` given ``dy``.

    Conventions at the kinks are PyTorch's: selu'(0) = scale * alpha,
    hard_sigmoid' = 1/6 on the open interval (-3, 3), hard_swish' = 0 up to
    -3 and 1 from 3 on, relu6' = 0 at 0 and 6.

    Returns
    -------
    ndarray of float64
    """
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    if name == "selu":
        return dy * SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))
    if name in ("silu", "swish"):
        s = expit(x)
        return dy * s * (1 + x * expit(-x))
    if name == "mish":
        t = np.tanh(np.logaddexp(0.0, x))
        return dy * (t + x * (1 - t * t) * expit(x))
    if name == "softplus":
        return np.where(beta * x > threshold, dy, dy * expit(beta * x))
    if name == "softsign":
        return dy / (1 + np.abs(x)) ** 2
    if name == "hard_sigmoid":
        return np.where((x > -3) & (x < 3), dy / 6, 0.0)
    if name == "hard_swish":
        return np.where(x <= -3, 0.0, np.where(x < 3, dy * (x / 3 + 0.5), dy))
    if name == "relu6":
        return np.where((x > 0) & (x < 6), dy, 0.0)
    if name == "log_softmax":
        return dy - np.exp(sp_log_softmax(x, axis=-1)) * dy.sum(axis=-1, keepdims=True)
    raise KeyError(name)


# --- the model file's framing ---------------------------------------------------------

def split(raw):
    """(version, header dict, data section) of a valid file's bytes."""
    _, version, length = struct.unpack("<8sIQ", raw[:20])
    return version, json.loads(raw[20:20 + length]), raw[20 + length:-32]


def forge(path, header, data_section, version=1, magic=b"CDLMODEL", header_bytes=None):
    """Write a file with a correct checksum around the given parts."""
    text = header_bytes if header_bytes is not None else json.dumps(header).encode()
    body = struct.pack("<8sIQ", magic, version, len(text)) + text + data_section
    path.write_bytes(body + hashlib.sha256(body).digest())


# --- a resumable training run ---------------------------------------------------------

EPOCHS = 4
BATCH = 16
SAMPLES = 90            # 6 batches per epoch, the last one short


def dataset():
    """The run's rows and labels (90 samples, 6 features, 3 classes)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((SAMPLES, 6))
    y = rng.integers(0, 3, SAMPLES)
    return x, y


def make_model(config):
    """A model with dropout, compiled as ``config`` says (a dict of plain values)."""
    model = cdl.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.3),
                            layers.Dense(3)], input_shape=(6,), dtype=config["dtype"], seed=3)
    optimizer = {"sgd": lambda: optimizers.SGD(lr=0.05, momentum=0.9, nesterov=True),
                 "adam": lambda: optimizers.Adam(lr=0.01)}[config["optimizer"]]()
    model.compile(optimizer, "cross_entropy", metrics=["accuracy", "f1"])
    return model


def schedule_callbacks(model, config):
    """The learning-rate callbacks of ``config["schedule"]``, built on ``model``."""
    kind = config.get("schedule")
    if kind is None:
        return []
    if kind == "step_per_epoch":
        return [callbacks.LearningRateScheduler(
            schedules.StepLR(model.optimizer, step_size=1, gamma=0.7))]
    if kind == "onecycle_per_batch":
        return [callbacks.LearningRateScheduler(
            schedules.OneCycleLR(model.optimizer, max_lr=0.05, total_steps=EPOCHS * 6 + 1),
            per="batch")]
    if kind == "function":   # depends on the current rate: must not run twice per epoch
        return [callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.8)]
    raise ValueError(kind)


def train(config, extra_callbacks=(), epochs=EPOCHS, **fit_kwargs):
    """A fresh model trained as ``config`` says; returns (model, history)."""
    x, y = dataset()
    model = make_model(config)
    cbs = schedule_callbacks(model, config) + list(extra_callbacks)
    history = model.fit(x, y, epochs=epochs, batch_size=config.get("batch_size", BATCH),
                        verbose=0, callbacks=cbs, shuffle=config.get("shuffle", True),
                        **fit_kwargs)
    return model, history


class Interrupted(Exception):
    """What ``StopBefore`` raises to stop ``fit`` as a crash would."""


class StopBefore(callbacks.Callback):
    """Interrupt ``fit`` (an exception, sys.exit or SIGKILL) before batch ``k``
    (counted over the whole run), as a crash would."""

    def __init__(self, k, how="raise"):
        super().__init__()
        self.k, self.how, self.done = k, how, 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.done == self.k:
            if self.how == "raise":
                raise Interrupted
            if self.how == "exit":
                sys.exit(0)
            os.kill(os.getpid(), signal.SIGKILL)
        self.done += 1


def same_run(reference, resumed):
    """Assert that two (model, history) pairs are the same run, bit for bit."""
    (model_a, history_a), (model_b, history_b) = reference, resumed
    assert model_a.param_buffer.dtype == model_b.param_buffer.dtype
    assert np.array_equal(model_a.param_buffer, model_b.param_buffer)
    assert history_a.history == history_b.history
    assert history_a.epoch == history_b.epoch


def mapped_rss_kb(array):
    """Resident kB of the mapping that holds ``array``'s data (Linux)."""
    address = array.__array_interface__["data"][0]
    with open("/proc/self/smaps") as smaps:
        inside = False
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                low, high = (int(v, 16) for v in head.split("-"))
                inside = low <= address < high
            elif inside and head == "Rss:":
                return int(line.split()[1])
    raise AssertionError("no mapping holds the array")
