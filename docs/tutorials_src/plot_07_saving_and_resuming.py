"""
Saving, loading, checkpoints and reproducibility
================================================

``model.save`` writes one file with everything needed to continue training
exactly where it stopped: the architecture, the weights, the compile
settings, the optimizer's state and the model's random generator. The file
holds JSON and raw arrays with a checksum; loading it never runs code from
it (no pickle). See :doc:`/format` for the layout.
"""

# %%
# Save and load
# -------------
import os
import tempfile

import numpy as np

import cdl
from cdl import callbacks, data, datasets, layers, optimizers

folder = tempfile.mkdtemp()
x, y = datasets.load_digits(return_X_y=True)
x_train, x_val, y_train, y_val = data.train_test_split(x / 16.0, y, stratify=y, seed=0)


def make_model(seed=0):
    model = cdl.Sequential([
        layers.Dense(64, activation="relu"),
        layers.Dropout(0.1),
        layers.Dense(10),
    ], input_shape=(64,), seed=seed)
    model.compile(optimizers.Adam(lr=1e-3), "cross_entropy", metrics=["accuracy"])
    return model


model = make_model()
model.fit(x_train, y_train, epochs=5, verbose=0)
path = os.path.join(folder, "digits.cdl")
model.save(path)
loaded = cdl.load_model(path)
print(loaded)
print("same predictions:", np.array_equal(loaded.predict(x_val), model.predict(x_val)))

# %%
# ``save_weights`` writes the weights alone; ``load_weights`` reads them into
# a model of the same architecture (built with the same code).
model.save_weights(os.path.join(folder, "weights.cdl"))
other = make_model(seed=123)
other.load_weights(os.path.join(folder, "weights.cdl"))
print("same weights:", all(np.array_equal(a, b) for a, b in zip(other.params, model.params)))

# %%
# Resuming is exact
# -----------------
# Train 10 epochs in one go; then train 5, save, load in a fresh model and
# train 5 more. Adam's moment estimates, its step count, and the state of
# the generator that shuffles the batches and draws dropout masks all travel
# with the file, so both runs end with the same weights, bit for bit.
straight = make_model()
straight.fit(x_train, y_train, epochs=10, verbose=0)

first_half = make_model()
first_half.fit(x_train, y_train, epochs=5, verbose=0)
first_half.save(path)
resumed = cdl.load_model(path)
resumed.fit(x_train, y_train, epochs=10, initial_epoch=5, verbose=0)
print("identical after resuming:",
      all(np.array_equal(a, b) for a, b in zip(resumed.params, straight.params)))

# %%
# Checkpoints during training
# ---------------------------
# ``ModelCheckpoint`` saves after each epoch, or only when the monitored
# value improves (``save_best_only=True``); each save is atomic, so a crash
# during a save leaves the previous file intact. The file name may use the
# epoch number and the logged values.
checkpoint = callbacks.ModelCheckpoint(
    os.path.join(folder, "best-{epoch:02d}-{val_loss:.3f}.cdl"),
    monitor="val_loss", save_best_only=True)
model = make_model()
model.fit(x_train, y_train, epochs=8, validation_data=(x_val, y_val), verbose=0,
          callbacks=[checkpoint])
print("best val_loss", round(checkpoint.best, 4), "saved to",
      os.path.basename(checkpoint.last_saved))
print(sorted(f for f in os.listdir(folder) if f.startswith("best-")))

# %%
# ``EarlyStopping(restore_best_weights=True)`` keeps the best weights in
# memory instead, and puts them back at the end of training.
#
# Reproducibility
# ---------------
# A model owns one random generator, seeded by ``seed=``. Weight
# initialisation, dropout masks and the shuffling in ``fit`` all draw from
# it in a fixed order, so the same code with the same seed gives the same
# model, run after run.
a, b = make_model(seed=7), make_model(seed=7)
a.fit(x_train, y_train, epochs=3, verbose=0)
b.fit(x_train, y_train, epochs=3, verbose=0)
print("same seed, same weights:", all(np.array_equal(p, q) for p, q in zip(a.params, b.params)))
c = make_model(seed=8)
print("another seed, other weights:", not np.array_equal(c.params[0], make_model(seed=7).params[0]))

# %%
# The data side has its own seeds: ``train_test_split(..., seed=0)``,
# ``BatchLoader(..., seed=0)`` and the ``make_*`` generators of
# ``cdl.datasets`` take an int or a ``numpy.random.Generator``. What is
# promised across machines, versions and thread counts is set out in
# :doc:`/reliability`.
import shutil

shutil.rmtree(folder)
