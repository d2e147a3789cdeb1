"""Gradient descent and its variants, side by side.

Trains the same small network (2-32-32-2, tanh) on the same generated
two-spirals data with each optimizer, from the same initial weights, and
prints the loss curves as a table. If matplotlib is installed, it also
plots them to a PNG (``--png PATH``, default optimizers.png).

Run: python examples/optimizers.py [--epochs 60] [--png optimizers.png]
"""
import argparse

import numpy as np

import cdl
from cdl import layers, losses, optimizers


def two_spirals(n_per_class=200, noise=0.15, seed=0):
    """Points on two interleaved spirals, labelled 0 and 1, standardised."""
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(0.05, 1.0, n_per_class)) * 3 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    x = np.concatenate([arm, -arm]) + rng.normal(0, noise * 3, (2 * n_per_class, 2))
    y = np.repeat([0, 1], n_per_class)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype(np.float32), y


# name -> (optimizer factory, batch size); None means the whole data set (batch GD).
OPTIMIZERS = {
    "GD (full batch)": (lambda: optimizers.SGD(lr=0.5), None),
    "SGD": (lambda: optimizers.SGD(lr=0.1), 32),
    "Momentum": (lambda: optimizers.SGD(lr=0.05, momentum=0.9), 32),
    "Nesterov": (lambda: optimizers.SGD(lr=0.05, momentum=0.9, nesterov=True), 32),
    "AdaGrad": (lambda: optimizers.Adagrad(lr=0.05), 32),
    "RMSprop": (lambda: optimizers.RMSprop(lr=0.003), 32),
    "Adam": (lambda: optimizers.Adam(lr=0.005), 32),
    "AdamW": (lambda: optimizers.AdamW(lr=0.005, weight_decay=1e-2), 32),
    "NAdam": (lambda: optimizers.NAdam(lr=0.005), 32),
    "RAdam": (lambda: optimizers.RAdam(lr=0.005), 32),
    "Adamax": (lambda: optimizers.Adamax(lr=0.01), 32),
}


def train(make_optimizer, batch_size, x, y, epochs, seed=0):
    """Train a fresh 2-32-32-2 network; return the full-data loss after each epoch."""
    model = cdl.Sequential([
        layers.Dense(32, activation="tanh"),
        layers.Dense(32, activation="tanh"),
        layers.Dense(2),
    ], input_shape=(2,), seed=seed)
    opt = make_optimizer()
    loss_fn = losses.CrossEntropy()
    rng = np.random.default_rng(seed)
    batch_size = batch_size or len(x)
    curve = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            loss_fn.forward(model.forward(x[idx], training=True), y[idx])
            model.backward(loss_fn.backward())
            opt.step(model.params, model.grads)
        curve.append(loss_fn.forward(model.forward(x), y))
    accuracy = float((model.forward(x).argmax(axis=1) == y).mean())
    return curve, accuracy


def plot(curves, path):
    """Save the loss curves to ``path``; return False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (name, curve) in enumerate(curves.items()):
        # Ten colours in the default cycle: dash the rest so every curve is distinct.
        ax.plot(range(1, len(curve) + 1), curve, label=name, linestyle="-" if i < 10 else "--")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy on the training set")
    ax.set_yscale("log")
    ax.set_title("Gradient descent variants on two spirals (2-32-32-2)")
    ax.legend(ncol=2, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--png", default="optimizers.png")
    args = parser.parse_args()

    x, y = two_spirals()
    curves, accuracies = {}, {}
    for name, (make_optimizer, batch_size) in OPTIMIZERS.items():
        curves[name], accuracies[name] = train(make_optimizer, batch_size, x, y, args.epochs)

    marks = sorted({0, args.epochs // 4, args.epochs // 2, args.epochs - 1})
    print(f"{'optimizer':<16}" + "".join(f"{'epoch ' + str(m + 1):>11}" for m in marks)
          + f"{'accuracy':>10}")
    for name, curve in curves.items():
        print(f"{name:<16}" + "".join(f"{curve[m]:>11.4f}" for m in marks)
              + f"{accuracies[name]:>10.3f}")
    if plot(curves, args.png):
        print(f"loss curves saved to {args.png}")
    else:
        print("matplotlib is not installed: no plot")


if __name__ == "__main__":
    main()
