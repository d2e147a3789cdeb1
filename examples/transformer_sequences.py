"""A Transformer encoder reads handwritten digits as sequences of 8 rows.

Each 8x8 digit becomes 8 "tokens", one per row of 8 pixels: a dense layer
projects every row to 32 features, a learned positional embedding adds the
row's number (attention alone cannot tell the rows' order), one encoder
block lets every row attend to every other, and the average over the rows
feeds a dense classifier. It reaches about 97% on the held-out quarter of
the digits; ``--lstm`` trains an LSTM on the same rows for comparison.
Afterwards it prints, for one test digit, the row each head attends to most
from each row (``return_attention_scores``).

Run: python examples/transformer_sequences.py [--epochs 20] [--lstm]
"""
import argparse
import time

import numpy as np

import cdl
from cdl import data, datasets, layers, optimizers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lstm", action="store_true", help="also train an LSTM")
    args = parser.parse_args()

    X, y = datasets.load_digits(return_X_y=True)
    X = (X / 16).reshape(-1, 8, 8).astype(np.float32)   # (samples, rows = time, pixels)
    x_train, x_test, y_train, y_test = data.train_test_split(X, y, test_size=0.25, seed=0)

    model = cdl.Sequential([
        layers.Dense(32),
        layers.PositionalEmbedding(max_length=8),
        layers.TransformerEncoder(num_heads=4, dim_feedforward=64, dropout=0.0,
                                  norm_first=True),
        layers.GlobalAvgPool1D(),
        layers.Dense(10),
    ], input_shape=(8, 8), seed=0, name="digit_rows")
    model.compile(optimizers.Adam(lr=3e-3), "cross_entropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(x_test, y_test)["accuracy"]
    print(f"Transformer: test accuracy: {accuracy:.4f} ({model.count_params()} weights, "
          f"{seconds:.1f} s)")

    if args.lstm:
        lstm = cdl.Sequential([layers.LSTM(32), layers.Dense(10)], input_shape=(8, 8), seed=0)
        lstm.compile(optimizers.Adam(lr=1e-2), "cross_entropy", metrics=["accuracy"])
        start = time.perf_counter()
        lstm.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)
        seconds = time.perf_counter() - start
        print(f"LSTM: test accuracy: {lstm.evaluate(x_test, y_test)['accuracy']:.4f} "
              f"({lstm.count_params()} weights, {seconds:.1f} s)")

    # The softmax weights of the next forward pass: (batch, heads, query row, key row).
    attention = model.layers[2].self_attention
    attention.return_attention_scores = True
    model(x_test[:1])
    scores = attention.last_attention_scores[0]
    print(f"test digit {y_test[0]}: the key row each head attends to most, "
          "for query rows 0..7")
    for h, matrix in enumerate(scores):
        print(f"  head {h}: {matrix.argmax(axis=1).tolist()}  (weights of row 0: "
              f"{np.array2string(matrix[0], precision=2, suppress_small=True)})")
    print("each row of weights sums to 1:", np.allclose(scores.sum(axis=-1), 1.0))


if __name__ == "__main__":
    main()
