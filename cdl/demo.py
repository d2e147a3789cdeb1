"""``python -m cdl demo``: train, evaluate, save and reload a digit classifier.

Trains an MLP on the bundled 8x8 handwritten digits (1,797 samples) with a
progress bar, prints the test accuracy and the time taken, saves the model
and its training curves into a folder, and reloads the saved model to show
that its predictions are unchanged.
"""
import os
import time

import numpy as np


def run(out_dir="cdl-demo", epochs=30, seed=0, verbose=1, print_fn=print):
    """Run the demo; return a dict of what it measured and wrote.

    Parameters
    ----------
    out_dir : str
        Folder for ``digits.cdl`` and ``curves.png`` (created if needed).
    epochs : int
    seed : int
    verbose : int
        Passed to ``fit`` (1: progress bar).
    """
    import cdl
    from cdl import _plotting, data, datasets, layers, optimizers

    x, y = datasets.load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = data.train_test_split(
        x, y, test_size=0.25, stratify=y, seed=seed)
    scaler = data.StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

    model = cdl.Sequential([
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.1),
        layers.Dense(128, activation="relu"),
        layers.Dense(10),
    ], input_shape=(64,), seed=seed, name="digits")
    model.compile(optimizers.Adam(lr=1e-3), "cross_entropy", metrics=["accuracy"])
    print_fn(f"Training a 64-128-128-10 MLP on {len(x_train)} digits "
             f"({len(x_test)} held out for testing)")
    start = time.perf_counter()
    # The held-out set is only watched (for the curves), never used to choose.
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=verbose,
                        validation_data=(x_test, y_test))
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(x_test, y_test)["accuracy"]
    print_fn(f"test accuracy: {accuracy:.4f}   training time: {seconds:.2f} s "
             f"({len(history.epoch)} epochs)")

    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "digits.cdl")
    model.save(model_path)
    print_fn(f"model saved to {model_path}")
    curves_path = os.path.join(out_dir, "curves.png")
    try:
        history.plot(curves_path)
    except ImportError:
        # Without matplotlib, the same panels are drawn by cdl's own renderer
        # (NumPy and zlib): the demo then works right after `pip install .`,
        # whose install stays NumPy, SciPy and threadpoolctl, instead of
        # adding matplotlib and its half a dozen dependencies (tens of MB) to
        # it or to an extra for the sake of one picture. matplotlib, when it
        # is installed, still draws it, with real fonts and antialiasing.
        _plotting.curves_png(history, curves_path)
    print_fn(f"training curves saved to {curves_path}")

    reloaded = cdl.load_model(model_path)
    same = np.array_equal(reloaded.predict(x_test), model.predict(x_test))
    reloaded_accuracy = reloaded.evaluate(x_test, y_test)["accuracy"]
    print_fn(f"reloaded from {model_path}: test accuracy {reloaded_accuracy:.4f}, "
             f"predictions {'identical' if same else 'DIFFERENT'}")
    return {"accuracy": accuracy, "reloaded_accuracy": reloaded_accuracy, "seconds": seconds,
            "identical": same, "model_path": model_path, "curves_path": curves_path,
            "epochs": len(history.epoch)}
