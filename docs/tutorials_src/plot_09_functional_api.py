"""
Two inputs, two outputs: graphs of layers
=========================================

A ``Sequential`` model is a stack: one input, each layer feeding the next,
one output. ``cdl.Model`` takes any graph of layers instead, as Keras'
functional API does: call layers on the symbolic tensors of ``cdl.Input``
to record how data flows, then make a model from its inputs and outputs.
This tutorial reads each handwritten digit as two inputs, its upper and its
lower half, encodes both halves with one shared layer, and trains two heads
at once: the digit's class (a classification) and how much ink it holds (a
regression).
"""

# %%
# The data
# --------
# The bundled digits are 8x8 images with values 0 to 16. The first four rows
# make the upper half, the last four the lower half: 32 pixels each. The
# regression target is the mean ink of the image (its mean pixel value),
# standardised with the training set's mean and spread, so that its squared
# error is of the order of the cross-entropy of the class.
import matplotlib.pyplot as plt
import numpy as np

import cdl
from cdl import data, datasets, layers, optimizers

x, digit = datasets.load_digits(return_X_y=True)
images = x.reshape(-1, 8, 8) / 16.0
upper = images[:, :4].reshape(-1, 32)
lower = images[:, 4:].reshape(-1, 32)
ink = images.mean(axis=(1, 2))

(upper_train, upper_test, lower_train, lower_test, digit_train, digit_test,
 ink_train, ink_test) = data.train_test_split(upper, lower, digit, ink, test_size=0.25,
                                              stratify=digit, seed=0)
ink_mean, ink_std = ink_train.mean(), ink_train.std()
ink_train_z = ((ink_train - ink_mean) / ink_std)[:, None]   # one column: shape (n, 1)
ink_test_z = ((ink_test - ink_mean) / ink_std)[:, None]
print(upper_train.shape, lower_train.shape, digit_train.shape, ink_train_z.shape)

fig, axes = plt.subplots(2, 6, figsize=(7, 2.6))
for i in range(6):
    axes[0, i].imshow(upper_train[i].reshape(4, 8), cmap="gray_r", vmin=0, vmax=1)
    axes[1, i].imshow(lower_train[i].reshape(4, 8), cmap="gray_r", vmin=0, vmax=1)
    axes[0, i].set_title(f"{digit_train[i]}, ink {ink_train[i]:.2f}", fontsize=9)
    axes[0, i].axis("off")
    axes[1, i].axis("off")
fig.tight_layout()

# %%
# A graph of layers
# -----------------
# ``cdl.Input(shape, name)`` stands for one input: the shape of one sample
# (the batch axis is implied) and the name that data given as a dict uses.
# Calling a layer on symbolic tensors computes nothing; it records the call
# and returns a new symbolic tensor whose shape is known at once, so a layer
# that cannot take its inputs says so here, naming the layer and the shapes.
#
# The ``encoder`` is one layer called twice: both halves go through the same
# weights (a siamese encoder), which then learn from both. ``Concatenate``
# joins the two codes; ``Add`` sums a hidden layer's output with its input,
# a skip connection. Layers that take several inputs are called on a list.
# The two heads read the same hidden features; the names of the layers that
# compute the outputs name the outputs.
upper_in = cdl.Input(shape=(32,), name="upper")
lower_in = cdl.Input(shape=(32,), name="lower")

encoder = layers.Dense(32, activation="relu", name="encoder")
codes = layers.Concatenate(name="codes")([encoder(upper_in), encoder(lower_in)])
hidden = layers.Dense(64, activation="relu", name="hidden")(codes)
features = layers.Add(name="skip")([codes, hidden])
digit_out = layers.Dense(10, name="digit")(features)   # logits of the 10 classes
ink_out = layers.Dense(1, name="ink")(features)        # the standardised ink
print(codes)

model = cdl.Model(inputs=[upper_in, lower_in], outputs=[digit_out, ink_out], seed=0,
                  name="halves")
print(model.input_names, model.output_names)

# %%
# ``summary()`` lists every input and every layer call, in an order of
# computation, with the calls each one reads from. The second call of the
# shared encoder is ``encoder[1]``; its parameters are counted once, on the
# first call, since they are the same weights.
model.summary()

# %%
# ``model.layers`` holds each layer once, so ``model.params`` holds the
# encoder's kernel and bias once too. Its gradient is the sum over both
# calls: ``backward`` takes one gradient per output (``None`` for an output
# that gets none) and returns one per input.
print([layer.name for layer in model.layers])
print("parameters:", model.count_params())
batch = {"upper": upper_train[:4], "lower": lower_train[:4]}
digit_logits, ink_value = model.forward(batch)
grad_upper, grad_lower = model.backward([np.ones_like(digit_logits), None])
print(digit_logits.shape, ink_value.shape, grad_upper.shape, grad_lower.shape)

# %%
# A loss, a weight and metrics per output
# ---------------------------------------
# ``compile`` takes the losses as a dict keyed by output name (or a list in
# output order); an output without a loss would not be trained. The loss
# that training minimises is the weighted sum of the outputs' losses; the
# metrics, also per output, are reported under ``<output>_<metric>``.
# ``fit`` takes the inputs and the targets as dicts keyed by the names (or
# as lists in the model's order).
model.compile(optimizers.Adam(lr=3e-3),
              loss={"digit": "cross_entropy", "ink": "mse"},
              loss_weights={"digit": 1.0, "ink": 0.5},
              metrics={"digit": ["accuracy"], "ink": ["mae"]})
history = model.fit({"upper": upper_train, "lower": lower_train},
                    {"digit": digit_train, "ink": ink_train_z},
                    epochs=30, batch_size=32, validation_split=0.1, verbose=0)
print(list(history.history))

# %%
# The curves of the two outputs' losses, each on training and on validation
# data; the total ``loss`` is ``digit_loss + 0.5 * ink_loss``.
fig, ax = plt.subplots(figsize=(6, 3.5))
for key, style in (("digit_loss", "C0"), ("ink_loss", "C1")):
    ax.plot(history.epoch, history.history[key], style, label=key)
    ax.plot(history.epoch, history.history["val_" + key], style + "--", label="val_" + key)
ax.set_yscale("log")
ax.set_xlabel("epoch")
ax.legend()
fig.tight_layout()

# %%
# Evaluating and predicting
# -------------------------
# ``evaluate`` reports every value of the History on the test data.
# ``predict`` returns one array per output, in output order; the ink goes
# back to its units with the training set's mean and spread.
test_inputs = {"upper": upper_test, "lower": lower_test}
scores = model.evaluate(test_inputs, {"digit": digit_test, "ink": ink_test_z})
print({key: round(value, 4) for key, value in scores.items()})

digit_logits, ink_z = model.predict(test_inputs)
ink_predicted = ink_z[:, 0] * ink_std + ink_mean
print(f"test accuracy {np.mean(digit_logits.argmax(axis=1) == digit_test):.3f}, "
      f"ink off by {np.mean(np.abs(ink_predicted - ink_test)):.4f} on average "
      f"(ink ranges over {ink_test.min():.2f}..{ink_test.max():.2f})")

fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(ink_test, ink_predicted, s=6)
ax.plot([ink_test.min(), ink_test.max()], [ink_test.min(), ink_test.max()], "k", lw=0.8)
ax.set_xlabel("true ink")
ax.set_ylabel("predicted ink")
fig.tight_layout()

# %%
# Data by name or by position
# ---------------------------
# Lists follow ``input_names`` and ``output_names``; dicts may come in any
# order. A dict with a missing or unknown key is refused with the names.
same = model.predict([upper_test, lower_test])
print("list and dict give the same:",
      all(np.array_equal(a, b) for a, b in zip(same, model.predict(test_inputs))))
try:
    model.predict({"upper": upper_test, "bottom": lower_test})
except ValueError as error:
    print("ValueError:", error)

# %%
# Saving and loading
# ------------------
# ``save`` writes the graph (the inputs, the layers, the calls between them
# and the outputs) as JSON next to the weights, the optimizer's state and the
# random generator; ``cdl.load_model`` replays the calls, without running any
# code from the file, and returns a ``Model`` that predicts, and trains on,
# exactly as the original.
import os
import tempfile

folder = tempfile.mkdtemp()
path = os.path.join(folder, "halves.cdl")
model.save(path)
loaded = cdl.load_model(path)
print(loaded)
print("same predictions after loading:",
      all(np.array_equal(a, b) for a, b in zip(loaded.predict(test_inputs),
                                                model.predict(test_inputs))))

# %%
# Drawing the graph
# -----------------
# ``cdl.utils.plot_model(model, "halves.png")`` draws the graph when pydot
# and Graphviz are installed, and otherwise writes it as text next to the
# requested file; ``cdl.utils.model_to_text`` returns that text: one line
# per input and per layer call, with the calls it reads from.
print(cdl.utils.model_to_text(model))

# %%
# Where the graph API differs from Keras' (models are not layers, a layer
# has one output, and more) is set out in :doc:`/differences`.
import shutil

shutil.rmtree(folder)
