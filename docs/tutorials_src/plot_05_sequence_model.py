"""
A sequence model: remembering an early token
============================================

Recurrent layers read a sequence one step at a time and carry a state from
step to step. Here each sequence is 15 steps of noise, except that at step
1 one of four symbols appears; the label is that symbol. To classify the
sequence at its end, a model has to remember what it saw 13 steps earlier.
"""

# %%
# The data
# --------
# Inputs have shape ``(batch, steps, features)``; the symbol is a one-hot
# bump of height 2 in the first four of six noisy features.
import matplotlib.pyplot as plt
import numpy as np

import cdl
from cdl import data, layers, optimizers

STEPS, FEATURES, SYMBOLS = 15, 6, 4


def make_sequences(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, SYMBOLS, n)
    x = rng.normal(0, 0.5, (n, STEPS, FEATURES))
    x[np.arange(n), 1, labels] += 2.0
    return x.astype(np.float32), labels


x, y = make_sequences(1600, seed=0)
x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.25, seed=0)
print(x_train.shape, y_train.shape)

fig, ax = plt.subplots(figsize=(6.5, 2.2))
ax.imshow(x_train[0].T, aspect="auto", cmap="coolwarm", vmin=-2.5, vmax=2.5)
ax.set_xlabel("time step")
ax.set_ylabel("feature")
ax.set_title(f"one training sequence (label {y_train[0]})")
fig.tight_layout()

# %%
# Without memory
# --------------
# A dense network that sees only the last step has nothing to go on: it
# stays near chance, 25%.
last_step = cdl.Sequential([layers.Dense(32, activation="relu"), layers.Dense(SYMBOLS)],
                           input_shape=(FEATURES,), seed=0)
last_step.compile(optimizers.Adam(lr=1e-2), "cross_entropy", metrics=["accuracy"])
last_step.fit(x_train[:, -1], y_train, epochs=10, batch_size=64, verbose=0)
print("last step only:", last_step.evaluate(x_test[:, -1], y_test))

# %%
# An LSTM
# -------
# ``LSTM(24)`` returns its final hidden state, ``(batch, 24)``, which a
# dense layer maps to the four logits. Gradient clipping (``clip_norm``)
# keeps backpropagation through time stable. cdl's recurrent layers use
# PyTorch's equations and gate order.
model = cdl.Sequential([
    layers.LSTM(24),
    layers.Dense(SYMBOLS),
], input_shape=(STEPS, FEATURES), seed=0, name="early_token")
model.compile(optimizers.Adam(lr=1e-2), "cross_entropy", metrics=["accuracy"],
              clip_norm=5.0)
history = model.fit(x_train, y_train, epochs=12, batch_size=64, verbose=0,
                    validation_data=(x_test, y_test))
print("LSTM:", model.evaluate(x_test, y_test))

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(history.epoch, history.history["accuracy"], label="training")
ax.plot(history.epoch, history.history["val_accuracy"], label="test")
ax.axhline(1 / SYMBOLS, color="gray", linestyle=":", label="chance")
ax.set_xlabel("epoch")
ax.set_ylabel("accuracy")
ax.legend()
fig.tight_layout()

# %%
# One output per step
# -------------------
# With ``return_sequences=True`` a recurrent layer returns its state at every
# step, ``(batch, steps, units)``, for models that label each step or stack
# several recurrent layers. ``GRU`` and ``SimpleRNN`` take the same
# arguments, and ``Bidirectional`` runs a layer over the sequence in both
# directions.
stacked = cdl.Sequential([
    layers.GRU(16, return_sequences=True),
    layers.Bidirectional(layers.GRU(8)),
    layers.Dense(SYMBOLS),
], input_shape=(STEPS, FEATURES), seed=0)
print(stacked.layers[0].compute_output_shape((STEPS, FEATURES)),
      stacked.forward(x_test[:3]).shape)
