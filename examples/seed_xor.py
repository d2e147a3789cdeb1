"""XOR with a 2-3-1 network, trained by plain gradient descent.

The four steps of every training iteration are written out:
forward propagation, the loss, backpropagation, and the gradient-descent
update w <- w - lr * dL/dw (``optimizers.SGD`` without momentum, over the
whole data set: batch gradient descent). Training stops when the mean squared error
falls below 0.01 or after 20,000 iterations.

Run: python examples/seed_xor.py
"""
import numpy as np

import cdl
from cdl import layers, losses, optimizers

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
y = np.array([[0], [1], [1], [0]], dtype=np.float32)

# 2 inputs -> 3 sigmoid hidden units -> 1 sigmoid output.
model = cdl.Sequential([
    layers.Dense(3, activation="sigmoid"),
    layers.Dense(1, activation="sigmoid"),
], input_shape=(2,), seed=0)
loss_fn = losses.MSE()
optimizer = optimizers.SGD(lr=2.0)

loss_threshold = 0.01
max_iterations = 20_000

for iteration in range(1, max_iterations + 1):
    out = model.forward(X, training=True)    # forward propagation
    loss = loss_fn.forward(out, y)           # mean squared error
    grad = loss_fn.backward()                # d loss / d out
    model.backward(grad)                     # backpropagation: fills model.grads
    optimizer.step(model.params, model.grads)  # w <- w - lr * dL/dw, in place
    if loss < loss_threshold:
        break

predictions = model.forward(X)
print(f"stopped after {iteration} iterations, loss {loss_fn.forward(predictions, y):.5f}")
for inputs, target, prediction in zip(X, y, predictions):
    print(f"{inputs.astype(int)} -> {prediction[0]:.3f} (target {target[0]:.0f})")
# A mean squared error below 0.01 is a root-mean-square error below 0.1;
# the worst single prediction can be a little further off than that.
print(f"largest error: {np.abs(predictions - y).max():.3f}")
