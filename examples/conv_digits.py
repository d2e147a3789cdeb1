"""A small CNN on the bundled 8x8 handwritten digits, as 8x8x1 images.

Run: python examples/conv_digits.py
"""
import time

import cdl
from cdl import data, datasets, layers, optimizers

x, y = datasets.load_digits(return_X_y=True)
x = (x / 16.0).reshape(-1, 8, 8, 1)  # pixel values 0..16 -> [0, 1], channels last
x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.25, stratify=y,
                                                         seed=0)

model = cdl.Sequential([
    layers.Conv2D(32, 3, padding="same", activation="relu"),
    layers.Conv2D(32, 3, padding="same", activation="relu"),
    layers.MaxPool2D(2),                       # 8x8 -> 4x4
    layers.Conv2D(64, 3, padding="same", activation="relu"),
    layers.GlobalAvgPool2D(),
    layers.Dropout(0.2),
    layers.Dense(10),
], input_shape=(8, 8, 1), seed=0, name="conv_digits")
model.compile(optimizers.Adam(lr=2e-3), "cross_entropy", metrics=["accuracy"])
model.summary()

start = time.perf_counter()
model.fit(x_train, y_train, epochs=40, batch_size=32, verbose=2)
seconds = time.perf_counter() - start
accuracy = model.evaluate(x_test, y_test)["accuracy"]
print(f"test accuracy: {accuracy:.4f} after {seconds:.1f} s of training")
