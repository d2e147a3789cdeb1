"""Which pixels make a digit a digit: saliency and integrated gradients.

Trains a small MLP on the bundled 8x8 handwritten digits, then explains
its prediction for one test digit with ``cdl.explain``: the saliency map
(|d logit / d pixel|) and integrated gradients from a blank image, whose
attributions add up to the change of the logit (checked and printed). If
matplotlib is installed it draws the digit and both maps to a PNG
(``--png PATH``, default saliency_digits.png).

Run: python examples/saliency_digits.py [--index 0] [--png saliency_digits.png]
"""
import argparse

import numpy as np

import cdl
from cdl import data, datasets, explain, layers, optimizers


def train(x_train, y_train):
    model = cdl.Sequential([
        layers.Dense(64, activation="tanh"),
        layers.Dense(10),
    ], input_shape=(64,), seed=0, name="digits_mlp")
    model.compile(optimizers.Adam(lr=3e-3), "cross_entropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
    return model


def plot(path, image, saliency_map, attributions, label, predicted):
    """Draw the digit and its two maps; return False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    axes[0].imshow(image, cmap="gray_r")
    axes[0].set_title(f"digit (label {label}, predicted {predicted})")
    shown = axes[1].imshow(saliency_map, cmap="hot")
    axes[1].set_title("saliency |d logit / d pixel|")
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    # A diverging map centred on 0: red pixels raise the logit, blue ones lower it.
    bound = float(np.abs(attributions).max()) or 1.0
    shown = axes[2].imshow(attributions, cmap="bwr", vmin=-bound, vmax=bound)
    axes[2].set_title("integrated gradients")
    fig.colorbar(shown, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, default=0, help="which test digit to explain")
    parser.add_argument("--png", default="saliency_digits.png")
    args = parser.parse_args()

    x, y = datasets.load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)  # pixel values 0..16 -> [0, 1]
    x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.25,
                                                             stratify=y, seed=0)
    model = train(x_train, y_train)
    print(f"test accuracy: {model.evaluate(x_test, y_test)['accuracy']:.4f}")

    digit = x_test[args.index:args.index + 1]
    predicted = int(model.predict_classes(digit)[0])
    saliency_map = explain.saliency(model, digit, target=predicted)[0]
    attributions = explain.integrated_gradients(model, digit, target=predicted, steps=128)
    check = explain.completeness(model, digit, attributions, target=predicted)
    print(f"digit {args.index}: label {y_test[args.index]}, predicted {predicted}")
    print(f"integrated gradients sum to {check.attribution_sum[0]:.5f}; "
          f"logit(digit) - logit(blank) = {check.output_difference[0]:.5f} "
          f"(relative error {check.relative_error[0]:.1e})")
    top = np.argsort(saliency_map)[::-1][:5]
    print("most salient pixels (row, column):",
          ", ".join(f"({p // 8}, {p % 8})" for p in top))
    if plot(args.png, digit.reshape(8, 8), saliency_map.reshape(8, 8),
            attributions.reshape(8, 8), y_test[args.index], predicted):
        print(f"saved {args.png}")
    else:
        print("matplotlib is not installed: no plot")


if __name__ == "__main__":
    main()
