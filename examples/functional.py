"""A graph of layers with two inputs and two outputs, on the bundled digits.

Each 8x8 digit is given as two inputs, its upper and its lower half (32
pixels each). One Dense encoder, called on both halves, shares its weights
between them; the two codes are concatenated and go through a hidden layer
with a skip connection (``Add``) to two heads: the digit's class
(cross-entropy, accuracy) and the image's mean ink (mean squared error on the
standardised value). The script trains both heads at once with a loss weight
per output, prints the test scores, and checks that predictions from lists
and from dicts agree and that the saved and reloaded model predicts the same.

Run: python examples/functional.py
"""
import os
import tempfile
import time

import numpy as np

import cdl
from cdl import data, datasets, layers, optimizers

start = time.perf_counter()
x, digit = datasets.load_digits(return_X_y=True)
images = x.reshape(-1, 8, 8) / 16.0
upper, lower = images[:, :4].reshape(-1, 32), images[:, 4:].reshape(-1, 32)
ink = images.mean(axis=(1, 2))
(upper_train, upper_test, lower_train, lower_test, digit_train, digit_test,
 ink_train, ink_test) = data.train_test_split(upper, lower, digit, ink, test_size=0.25,
                                              stratify=digit, seed=0)
ink_mean, ink_std = ink_train.mean(), ink_train.std()

# The graph: inputs, a shared encoder, merges, two heads.
upper_in = cdl.Input(shape=(32,), name="upper")
lower_in = cdl.Input(shape=(32,), name="lower")
encoder = layers.Dense(32, activation="relu", name="encoder")      # called twice: shared
codes = layers.Concatenate(name="codes")([encoder(upper_in), encoder(lower_in)])
features = layers.Add(name="skip")([codes, layers.Dense(64, activation="relu")(codes)])
digit_out = layers.Dense(10, name="digit")(features)
ink_out = layers.Dense(1, name="ink")(features)
model = cdl.Model(inputs=[upper_in, lower_in], outputs=[digit_out, ink_out], seed=0,
                  name="halves")
model.summary()

model.compile(optimizers.Adam(lr=3e-3),
              loss={"digit": "cross_entropy", "ink": "mse"},
              loss_weights={"digit": 1.0, "ink": 0.5},
              metrics={"digit": ["accuracy"], "ink": ["mae"]})
history = model.fit({"upper": upper_train, "lower": lower_train},
                    {"digit": digit_train, "ink": ((ink_train - ink_mean) / ink_std)[:, None]},
                    epochs=30, batch_size=32, verbose=0)
print("history:", ", ".join(history.history))

test_inputs = {"upper": upper_test, "lower": lower_test}
digit_logits, ink_z = model.predict(test_inputs)          # one array per output
accuracy = np.mean(digit_logits.argmax(axis=1) == digit_test)
ink_error = np.mean(np.abs(ink_z[:, 0] * ink_std + ink_mean - ink_test))
print(f"test accuracy: {accuracy:.4f}")
print(f"ink mean absolute error: {ink_error:.4f} (test ink spread {ink_test.std():.4f})")

by_position = model.predict([upper_test, lower_test])     # a list in input order
print("lists and dicts agree:",
      all(np.array_equal(a, b) for a, b in zip(by_position, [digit_logits, ink_z])))
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "halves.cdl")
    model.save(path)
    loaded = cdl.load_model(path)
    print("same predictions after loading:",
          all(np.array_equal(a, b) for a, b in zip(loaded.predict(test_inputs),
                                                    [digit_logits, ink_z])))
print(f"done in {time.perf_counter() - start:.1f} s")
