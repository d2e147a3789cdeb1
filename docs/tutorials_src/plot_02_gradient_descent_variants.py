"""
Gradient descent and its variants
=================================

Batch gradient descent, stochastic (mini-batch) gradient descent,
momentum, AdaGrad, RMSprop and Adam train the same network on the same data
from the same initial weights; the figure compares their loss curves.
cdl's optimizers follow PyTorch's update rules and defaults exactly.
"""

# %%
# The problem
# -----------
# Two interleaved spirals, 400 points in the plane: no straight line
# separates the classes, so the network must learn a curved boundary.
import time

import matplotlib.pyplot as plt
import numpy as np

import cdl
from cdl import data, datasets, layers, optimizers

x, y = datasets.make_spirals(n_samples=400, noise=0.2, seed=0)
x = data.StandardScaler().fit_transform(x)   # mean 0, variance 1 per feature
print(x.shape, y.shape, np.bincount(y))

# %%
# The update rules
# ----------------
# With gradient :math:`g_t` of the loss at step :math:`t` and learning rate
# :math:`\eta` (all operations elementwise):
#
# ==============  ==============================================================================
# GD, SGD         :math:`w \leftarrow w - \eta g_t`
# Momentum        :math:`v \leftarrow \mu v + g_t`, :math:`w \leftarrow w - \eta v`
# AdaGrad         :math:`s \leftarrow s + g_t^2`, :math:`w \leftarrow w - \eta g_t / (\sqrt{s} + \epsilon)`
# RMSprop         :math:`s \leftarrow \alpha s + (1 - \alpha) g_t^2`, :math:`w \leftarrow w - \eta g_t / (\sqrt{s} + \epsilon)`
# Adam            :math:`m \leftarrow \beta_1 m + (1 - \beta_1) g_t`, :math:`v \leftarrow \beta_2 v + (1 - \beta_2) g_t^2`,
#                 :math:`w \leftarrow w - \eta \hat m / (\sqrt{\hat v} + \epsilon)` with
#                 :math:`\hat m = m / (1 - \beta_1^t)`, :math:`\hat v = v / (1 - \beta_2^t)`
# ==============  ==============================================================================
#
# GD and SGD differ only in the data behind each gradient: batch gradient
# descent uses the whole training set for every step (``batch_size=len(x)``),
# SGD a small random batch, so it takes many cheaper, noisier steps per
# epoch. Each optimizer gets a learning rate that suits it.
CONFIGS = {
    "GD (full batch)": (lambda: optimizers.SGD(lr=0.5), len(x)),
    "SGD": (lambda: optimizers.SGD(lr=0.1), 32),
    "Momentum": (lambda: optimizers.SGD(lr=0.05, momentum=0.9), 32),
    "AdaGrad": (lambda: optimizers.Adagrad(lr=0.05), 32),
    "RMSprop": (lambda: optimizers.RMSprop(lr=0.003), 32),
    "Adam": (lambda: optimizers.Adam(lr=0.005), 32),
}

# %%
# Training
# --------
# A 2-32-32-2 tanh network, rebuilt with the same seed for every optimizer
# so that all start from the same weights; 60 epochs each.


def make_model():
    return cdl.Sequential([
        layers.Dense(32, activation="tanh"),
        layers.Dense(32, activation="tanh"),
        layers.Dense(2),
    ], input_shape=(2,), seed=0)


curves = {}
print(f"{'optimizer':<16}{'steps':>7}{'final loss':>12}{'accuracy':>10}{'seconds':>9}")
for name, (make_optimizer, batch_size) in CONFIGS.items():
    model = make_model()
    model.compile(make_optimizer(), "cross_entropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x, y, epochs=60, batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - start
    curves[name] = history.history["loss"]
    result = model.evaluate(x, y)
    steps = 60 * -(-len(x) // batch_size)
    print(f"{name:<16}{steps:>7}{result['loss']:>12.4f}{result['accuracy']:>10.3f}"
          f"{seconds:>9.2f}")

# %%
# The loss curves
# ---------------
fig, ax = plt.subplots(figsize=(7, 4.5))
for name, curve in curves.items():
    ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
ax.set_xlabel("epoch")
ax.set_ylabel("training cross-entropy")
ax.set_yscale("log")
ax.set_title("Two spirals, 2-32-32-2 tanh network")
ax.legend()
fig.tight_layout()

# %%
# Full-batch gradient descent makes one exact step per epoch, 60 in all,
# where the mini-batch methods make 13 noisy ones per epoch, 780 in all:
# per epoch, plain SGD gets further, and every variant further still.
# Momentum
# accumulates a velocity along directions where successive gradients agree;
# AdaGrad divides each weight's step by the root of its summed squared
# gradients, so its steps only shrink; RMSprop replaces that sum by a
# moving average; Adam adds momentum to RMSprop and corrects both averages
# for their start at zero. ``python examples/optimizers.py`` in the
# repository runs the same comparison with Nesterov momentum, AdamW, NAdam,
# RAdam and Adamax as well.
