"""
Regression with standardised inputs
===================================

Gradient descent takes one learning rate for every weight, so features on
very different scales make a badly conditioned problem: a rate small enough
for the large features is too small for the small ones. Rescaling the
inputs fixes that. This tutorial predicts a house price from four features
measured in different units, without preprocessing, with min-max
normalisation (``MinMaxScaler``, to [0, 1]) and with standardisation
(``StandardScaler``, to mean 0 and variance 1).
"""

# %%
# The data
# --------
# Area in square metres (40 to 250), rooms (1 to 6), age in years (0 to
# 100) and distance to the centre in kilometres (0.5 to 30). The price, in
# thousands, depends on them nonlinearly, plus noise.
import matplotlib.pyplot as plt
import numpy as np

import cdl
from cdl import data, layers, metrics, optimizers

rng = np.random.default_rng(0)
n = 1500
area = rng.uniform(40, 250, n)
rooms = np.clip(np.round(area / 40 + rng.normal(0, 0.7, n)), 1, 6)
age = rng.uniform(0, 100, n)
distance = rng.uniform(0.5, 30, n)
x = np.column_stack([area, rooms, age, distance])
price = (3.0 * area + 15 * rooms - 0.8 * age + 400 / (1 + distance / 5)
         + rng.normal(0, 20, n))
y = price.reshape(-1, 1)

x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.2, seed=0)
print("feature means:", x_train.mean(axis=0).round(1))
print("feature standard deviations:", x_train.std(axis=0).round(1))

# %%
# Scalers are fitted on the training set only, then applied unchanged to
# the test set, so that no information about the test set leaks into
# training. The target is standardised too (a network's output starts near
# 0 with unit scale); ``inverse_transform`` maps predictions back to
# thousands.
standard = data.StandardScaler().fit(x_train)
minmax = data.MinMaxScaler().fit(x_train)
y_scaler = data.StandardScaler().fit(y_train)
print("standardised training features: mean",
      standard.transform(x_train).mean(axis=0).round(6) + 0.0,   # + 0.0: no "-0."
      "std", standard.transform(x_train).std(axis=0).round(6))

# %%
# Training
# --------
# The same 4-32-1 network and the same plain gradient descent settings
# (SGD with momentum, learning rate 0.01) for each version of the inputs.
# On raw inputs, the area (about 150) and the age (about 50) push the
# hidden units' pre-activations into the hundreds: the tanh units saturate,
# their gradients vanish, and training stalls far from a good fit.


def train(x_tr):
    model = cdl.Sequential([
        layers.Dense(32, activation="tanh"),
        layers.Dense(1),
    ], input_shape=(4,), seed=0)
    model.compile(optimizers.SGD(lr=0.01, momentum=0.9), "mse")
    history = model.fit(x_tr, y_scaler.transform(y_train), epochs=80, batch_size=32,
                        verbose=0)
    return model, history.history["loss"]


versions = {
    "raw": lambda a: a,
    "min-max [0, 1]": minmax.transform,
    "standardised": standard.transform,
}
curves = {}
for name, transform in versions.items():
    model, curves[name] = train(transform(x_train))
    prediction = y_scaler.inverse_transform(model.predict(transform(x_test)))
    rmse = metrics.root_mean_squared_error(y_test, prediction)
    r2 = metrics.r2_score(y_test, prediction)
    print(f"{name:<16} test RMSE {rmse:7.2f}   R2 {r2:.4f}")

# %%
# The curves
# ----------
# Min-max scaling makes training work; standardisation, which also centres
# each feature at 0, gets there faster.
fig, ax = plt.subplots(figsize=(6.5, 4))
for name, curve in curves.items():
    ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
ax.set_xlabel("epoch")
ax.set_ylabel("training MSE (standardised target)")
ax.set_yscale("log")
ax.legend()
fig.tight_layout()

# %%
# Scaling data too large for memory
# ---------------------------------
# Both scalers also learn from a stream of batches with ``partial_fit``;
# the statistics are the same as from the whole array at once.
streamed = data.StandardScaler()
for batch in np.array_split(x_train, 10):
    streamed.partial_fit(batch)
print("same mean:", np.allclose(streamed.mean_, standard.mean_),
      " same scale:", np.allclose(streamed.scale_, standard.scale_))
