"""
Watching training with TensorBoard
==================================

``cdl.callbacks.TensorBoard`` writes what ``fit`` does to event files:
the loss, metrics and learning rate of every epoch (training and
validation), the batch loss every few steps, histograms of the weights and
gradients, and the model's summary. ``tensorboard --logdir <folder>``
shows them in a browser while training runs.

The pictures below are not screenshots of TensorBoard (the documentation is
built without a browser): this page reads the event files back with
TensorBoard's own reader, ``EventAccumulator``, and draws what it found
with matplotlib, so they show exactly the numbers TensorBoard would plot.
It needs ``pip install 'cdl[tensorboard]' tensorboard``. See
:doc:`/watching`.
"""

# %%
# Train with the callback
# -----------------------
# A small classifier of the bundled digits, a one-cycle learning rate
# changed after every batch, the batch loss written every 5 steps and
# histograms every 2 epochs.
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from tensorboard.backend.event_processing import event_accumulator

import cdl
from cdl import callbacks, data, datasets, layers, optimizers, schedules

x, y = datasets.load_digits(return_X_y=True)
x_train, x_val, y_train, y_val = data.train_test_split(x / 16.0, y, stratify=y, seed=0)
model = cdl.Sequential([
    layers.Dense(64, activation="relu", name="hidden"),
    layers.Dense(10, name="output"),
], input_shape=(64,), seed=0)
model.compile(optimizers.SGD(lr=0.05, momentum=0.9), "cross_entropy", metrics=["accuracy"])

epochs, batch_size = 12, 32
steps = epochs * -(-len(x_train) // batch_size)
log_dir = os.path.join(tempfile.mkdtemp(), "digits")
history = model.fit(
    x_train, y_train, epochs=epochs, batch_size=batch_size,
    validation_data=(x_val, y_val), verbose=0,
    callbacks=[
        callbacks.LearningRateScheduler(
            schedules.OneCycleLR(model.optimizer, max_lr=0.2, total_steps=steps), per="batch"),
        callbacks.TensorBoard(log_dir, update_freq=5, histogram_freq=2, write_graph=True),
    ])
print(sorted(os.listdir(log_dir)))

# %%
# Read the event files back
# -------------------------
# One reader per run folder, as TensorBoard has: ``train`` and
# ``validation``. The scalars are the ``History``'s numbers in float32.
runs = {}
for run in ("train", "validation"):
    runs[run] = event_accumulator.EventAccumulator(
        os.path.join(log_dir, run), size_guidance={event_accumulator.HISTOGRAMS: 0})
    runs[run].Reload()
    print(run, sorted(runs[run].Tags()["scalars"]))

losses = [e.value for e in runs["train"].Scalars("epoch_loss")]
print("same losses as History:", np.allclose(losses, history.history["loss"], rtol=1e-6))

# %%
# The scalars, as TensorBoard's "Scalars" tab plots them
# ------------------------------------------------------
fig, axes = plt.subplots(2, 2, figsize=(10, 7))
for ax, tag in zip(axes[0], ("epoch_loss", "epoch_accuracy")):
    for run, style in (("train", "-"), ("validation", "--")):
        events = runs[run].Scalars(tag)
        ax.plot([e.step for e in events], [e.value for e in events], style, marker="o",
                label=run)
    ax.set_title(tag)
    ax.set_xlabel("epoch")
    ax.legend()
for ax, tag in zip(axes[1], ("batch_loss", "batch_learning_rate")):
    events = runs["train"].Scalars(tag)
    ax.plot([e.step for e in events], [e.value for e in events])
    ax.set_title(tag)
    ax.set_xlabel("optimizer step")
fig.tight_layout()

# %%
# The histograms, as the "Distributions" tab shows them
# -----------------------------------------------------
# Each histogram is written at steps 0, 2, 4, ... (``histogram_freq=2``);
# here, the smallest, the largest and the middle of each, epoch by epoch.
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for ax, tag in zip(axes, ("hidden/kernel", "hidden/kernel/gradient")):
    events = runs["train"].Histograms(tag)
    epochs_seen = [e.step for e in events]
    lows = [e.histogram_value.min for e in events]
    highs = [e.histogram_value.max for e in events]
    means = [e.histogram_value.sum / e.histogram_value.num for e in events]
    ax.fill_between(epochs_seen, lows, highs, alpha=0.3, label="min to max")
    ax.plot(epochs_seen, means, marker="o", label="mean")
    ax.set_title(tag)
    ax.set_xlabel("epoch")
    ax.legend()
fig.tight_layout()

# %%
# The model summary, as the "Text" tab shows it
# ---------------------------------------------
summary = runs["train"].Tensors("model_summary/text_summary")[0]
print(summary.tensor_proto.string_val[0].decode())
