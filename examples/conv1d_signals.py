"""A 1-D CNN that tells generated signals apart: sine, square or sawtooth
waves of random frequency and phase, in noise.

Run: python examples/conv1d_signals.py
"""
import numpy as np

import cdl
from cdl import data, layers, optimizers

LENGTH, CLASSES = 64, ("sine", "square", "sawtooth")


def make_signals(n, seed=0):
    """``n`` noisy waves of length LENGTH with their class labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    freq = rng.uniform(1.5, 5.0, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    t = np.linspace(0, 1, LENGTH)[None, :]
    angle = 2 * np.pi * freq * t + phase
    waves = np.stack([np.sin(angle), np.sign(np.sin(angle)),
                      2 * ((angle / (2 * np.pi)) % 1.0) - 1])
    x = waves[labels, np.arange(n)] + rng.normal(0, 0.6, (n, LENGTH))
    return x[:, :, None].astype(np.float32), labels  # (n, length, 1 channel)


x, y = make_signals(3000)
x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.2, seed=0)

model = cdl.Sequential([
    layers.Conv1D(16, 5, padding="same", activation="relu"),
    layers.MaxPool1D(2),
    layers.Conv1D(32, 5, padding="same", activation="relu"),
    layers.GlobalMaxPool1D(),
    layers.Dense(len(CLASSES)),
], input_shape=(LENGTH, 1), seed=0, name="signals")
model.compile(optimizers.Adam(lr=3e-3), "cross_entropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=15, batch_size=64, verbose=2)
accuracy = model.evaluate(x_test, y_test)["accuracy"]
print(f"test accuracy: {accuracy:.4f} on {len(CLASSES)} signal shapes")
