"""
A neural network, step by step
==============================

A network of an input layer, a hidden layer and an output layer, with
weights and biases; forward propagation; a loss; backpropagation; and
gradient descent, repeated until the loss is small enough or an iteration
limit is reached. This tutorial builds each piece with cdl's explicit calls
on the classic example, a 2-3-1 network that learns XOR, checks each one
against the formula written out in NumPy, and then trains the same network
with one call to ``fit``.
"""

# %%
# The data and the network
# ------------------------
# XOR of two bits: four samples, two inputs each, one target each. cdl
# works on batches: the rows of ``X`` are samples, its columns features.
import numpy as np

import cdl
from cdl import layers, losses, optimizers

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
y = np.array([[0], [1], [1], [0]], dtype=np.float32)

# %%
# The network has 2 inputs, 3 hidden units and 1 output, with the sigmoid
# activation :math:`\sigma(z) = 1 / (1 + e^{-z})` after each layer. A
# ``Dense`` layer computes :math:`a = \sigma(x W + b)`: its weight ``W`` has
# one row per input and one column per unit, its bias ``b`` one entry per
# unit. ``seed`` makes the random initial weights reproducible.
model = cdl.Sequential([
    layers.Dense(3, activation="sigmoid"),   # hidden layer: W1 (2, 3), b1 (3,)
    layers.Dense(1, activation="sigmoid"),   # output layer: W2 (3, 1), b2 (1,)
], input_shape=(2,), seed=0)
model.summary()

# %%
# ``model.params`` lists every weight and bias, in layer order;
# ``model.grads`` holds their gradients, aligned with it.
W1, b1, W2, b2 = model.params
for name, p in zip(["W1", "b1", "W2", "b2"], model.params):
    print(name, p.shape, p.dtype)

# %%
# Forward propagation
# -------------------
# Each layer feeds the next: :math:`h = \sigma(X W_1 + b_1)`, then
# :math:`\hat y = \sigma(h W_2 + b_2)`. ``model.forward`` computes the same,
# in compiled code.


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


h = sigmoid(X @ W1 + b1)
out_by_hand = sigmoid(h @ W2 + b2)
out = model.forward(X, training=True)
print(out.ravel())
print("same as by hand:", np.allclose(out, out_by_hand, atol=1e-6))

# %%
# The loss
# --------
# The mean squared error over the batch,
# :math:`L = \frac{1}{n} \sum_i (\hat y_i - y_i)^2`, measures how far the
# outputs are from the targets. (For classification, cross-entropy is the
# usual choice: ``losses.CrossEntropy`` or ``losses.BinaryCrossEntropy``.)
loss_fn = losses.MSE()
loss = loss_fn.forward(out, y)
print(f"loss {loss:.6f}, by hand {np.mean((out_by_hand - y) ** 2):.6f}")

# %%
# Backpropagation
# ---------------
# The chain rule, applied from the loss back to each weight. With
# :math:`\delta_2 = \partial L / \partial z_2` at the output and
# :math:`\delta_1` at the hidden layer:
#
# .. math::
#
#    \delta_2 = \tfrac{2}{n} (\hat y - y) \odot \hat y (1 - \hat y), \quad
#    \frac{\partial L}{\partial W_2} = h^T \delta_2, \quad
#    \frac{\partial L}{\partial b_2} = \textstyle\sum_i \delta_2,
#
#    \delta_1 = \delta_2 W_2^T \odot h (1 - h), \quad
#    \frac{\partial L}{\partial W_1} = X^T \delta_1, \quad
#    \frac{\partial L}{\partial b_1} = \textstyle\sum_i \delta_1.
#
# ``loss_fn.backward()`` returns :math:`\partial L / \partial \hat y`, and
# ``model.backward`` carries it back through the layers, writing every
# gradient into ``model.grads``.
model.backward(loss_fn.backward())

delta2 = 2 / len(X) * (out_by_hand - y) * out_by_hand * (1 - out_by_hand)
delta1 = delta2 @ W2.T * h * (1 - h)
by_hand = [X.T @ delta1, delta1.sum(axis=0), h.T @ delta2, delta2.sum(axis=0)]
for name, g, g_hand in zip(["dW1", "db1", "dW2", "db2"], model.grads, by_hand):
    print(name, "matches:", np.allclose(g, g_hand, atol=1e-6))

# %%
# Gradient descent
# ----------------
# One step moves every parameter against its gradient:
# :math:`w \leftarrow w - \eta \, \partial L / \partial w`, with learning
# rate :math:`\eta`. ``optimizers.SGD`` without momentum is exactly this
# rule; applied to the gradient of the whole data set, it is batch
# gradient descent. It updates the arrays in place.
optimizer = optimizers.SGD(lr=2.0)
expected = [p - 2.0 * g for p, g in zip(model.params, model.grads)]
optimizer.step(model.params, model.grads)
print("update as the formula:", all(np.allclose(p, e) for p, e in zip(model.params, expected)))

# %%
# Training: repeat until the loss is small enough
# -----------------------------------------------
# The four steps again and again, until the loss drops below 0.01 or
# 20,000 iterations have run.
losses_seen = []
for iteration in range(1, 20_001):
    out = model.forward(X, training=True)        # forward propagation
    loss = loss_fn.forward(out, y)               # the loss
    model.backward(loss_fn.backward())           # backpropagation
    optimizer.step(model.params, model.grads)    # gradient descent
    losses_seen.append(loss)
    if loss < 0.01:
        break
print(f"stopped after {iteration} iterations at loss {loss:.4f}")
print(model.forward(X).round(3).ravel(), "targets", y.ravel())

# %%
# The loss falls slowly at first, while the outputs all sit near 0.5, then
# quickly once the hidden units have split the inputs.
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(losses_seen)
ax.set_xlabel("iteration")
ax.set_ylabel("mean squared error")
ax.set_yscale("log")
ax.set_title("XOR, 2-3-1 network, gradient descent (lr 2)")
fig.tight_layout()

# %%
# The same with ``fit``
# ---------------------
# ``compile`` chooses the optimizer and the loss; ``fit`` runs the loop. One
# epoch is one pass over the data; with ``batch_size=4`` (the whole data
# set) and ``shuffle=False`` it is one step of batch gradient descent, so
# ``epochs`` is the iteration limit and ``loss_threshold`` the stopping rule.
# A new model with the same seed starts from the same weights.
model = cdl.Sequential([
    layers.Dense(3, activation="sigmoid"),
    layers.Dense(1, activation="sigmoid"),
], input_shape=(2,), seed=0)
model.compile(optimizers.SGD(lr=2.0), "mse")
history = model.fit(X, y, epochs=20_000, batch_size=4, shuffle=False, verbose=0,
                    loss_threshold=0.01)
print(f"stopped after {len(history.history['loss'])} epochs "
      f"at loss {history.history['loss'][-1]:.4f}")
print(model.predict(X).round(3).ravel())

# %%
# ``fit`` took one step more than the loop, which started after the single
# demonstration step: from the same initial weights, it followed the same
# path. Each epoch's reported loss is the loss before that epoch's update,
# and after the first epoch the curve is the loop's:
fit_curve = history.history["loss"]
print("same curve:", np.allclose(fit_curve[1:], losses_seen, rtol=1e-4))
