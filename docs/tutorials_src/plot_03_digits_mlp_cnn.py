"""
Classifying handwritten digits: an MLP and a CNN
================================================

The UCI handwritten digits ship with cdl: 1,797 images of 8x8 pixels with
values 0 to 16, labelled 0 to 9. A multi-layer perceptron reads each image
as a vector of 64 numbers; a convolutional network reads it as an 8x8
image with one channel and learns local filters.
"""

# %%
# The data
# --------
import matplotlib.pyplot as plt
import numpy as np

import cdl
from cdl import callbacks, data, datasets, layers, metrics, optimizers

digits = datasets.load_digits()
x, y = digits.data, digits.target
print(x.shape, x.dtype, y.shape, y.dtype)

x_train, x_test, y_train, y_test = data.train_test_split(
    x, y, test_size=0.25, stratify=y, seed=0)   # same class proportions in both parts

fig, axes = plt.subplots(1, 8, figsize=(8, 1.4))
for ax, image, label in zip(axes, x_train[:8], y_train[:8]):
    ax.imshow(image.reshape(8, 8), cmap="gray_r")
    ax.set_title(str(label))
    ax.axis("off")

# %%
# A multi-layer perceptron
# ------------------------
# Standardised inputs (each pixel scaled to mean 0 and variance 1 on the
# training set, and the test set transformed with the same statistics),
# two hidden ReLU layers and a linear output of 10 logits. The loss,
# ``"cross_entropy"``, takes the logits and the integer labels and applies
# the softmax itself, stably. Early stopping watches the loss on 10% of the
# training data held out for validation and restores the best weights.
scaler = data.StandardScaler().fit(x_train)

mlp = cdl.Sequential([
    layers.Dense(128, activation="relu"),
    layers.Dropout(0.1),
    layers.Dense(64, activation="relu"),
    layers.Dense(10),
], input_shape=(64,), seed=0, name="mlp")
mlp.compile(optimizers.Adam(lr=1e-3), "cross_entropy", metrics=["accuracy"])
history = mlp.fit(scaler.transform(x_train), y_train, epochs=40, batch_size=32,
                  validation_split=0.1, verbose=0,
                  callbacks=[callbacks.EarlyStopping(patience=5, restore_best_weights=True)])
print(f"trained {len(history.epoch)} epochs")
print(mlp.evaluate(scaler.transform(x_test), y_test))

# %%
# ``fit`` returns a ``History``: one list per logged value, one entry per
# epoch. (``history.plot("curves.png")`` saves the same kind of figure.)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(history.epoch, history.history["loss"], label="training loss")
ax.plot(history.epoch, history.history["val_loss"], label="validation loss")
ax.set_xlabel("epoch")
ax.set_ylabel("cross-entropy")
ax.legend()
fig.tight_layout()

# %%
# A convolutional network
# -----------------------
# Layers see channels-last images, ``(batch, height, width, channels)``.
# Two 3x3 convolutions with "same" padding keep the 8x8 size, max pooling
# halves it, a third convolution and a global average over positions
# produce one 32-vector per image, and a dense layer the 10 logits. Pixels
# are scaled to [0, 1].
images_train = (x_train / 16.0).reshape(-1, 8, 8, 1)
images_test = (x_test / 16.0).reshape(-1, 8, 8, 1)

cnn = cdl.Sequential([
    layers.Conv2D(16, 3, padding="same", activation="relu"),
    layers.Conv2D(16, 3, padding="same", activation="relu"),
    layers.MaxPool2D(2),                                      # 8x8 -> 4x4
    layers.Conv2D(32, 3, padding="same", activation="relu"),
    layers.GlobalAvgPool2D(),
    layers.Dense(10),
], input_shape=(8, 8, 1), seed=0, name="cnn")
cnn.summary()
cnn.compile(optimizers.Adam(lr=3e-3), "cross_entropy", metrics=["accuracy"])
cnn.fit(images_train, y_train, epochs=15, batch_size=32, verbose=0)
print(cnn.evaluate(images_test, y_test))

# %%
# Looking at the errors
# ---------------------
# ``predict_classes`` returns the most likely label of each image. The
# confusion matrix counts, for each true class (row), the predicted classes
# (columns).
predicted = cnn.predict_classes(images_test)
print(metrics.confusion_matrix(y_test, predicted))
print("macro F1:", round(metrics.f1_score(y_test, predicted, average="macro"), 4))

wrong = np.flatnonzero(predicted != y_test)[:8]
if len(wrong):
    fig, axes = plt.subplots(1, len(wrong), figsize=(len(wrong), 1.6), squeeze=False)
    for ax, i in zip(axes[0], wrong):
        ax.imshow(x_test[i].reshape(8, 8), cmap="gray_r")
        ax.set_title(f"{y_test[i]} as {predicted[i]}", fontsize=9)
        ax.axis("off")
