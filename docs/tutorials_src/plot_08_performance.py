"""
Performance: threads, float32, the fused step
=============================================

Where a training step spends its time, and the three settings that change
it: the number of BLAS threads, the dtype, and whether the model fits the
fused compiled step. The timings below were measured on the machine that
built these pages; run the script to see yours.
"""

# %%
# Timing a training step
# ----------------------
# ``train_step(x, y)`` runs one forward pass, loss, backward pass and
# optimizer update on one batch: the unit of work of ``fit``.
import time

import numpy as np

import cdl
from cdl import layers, optimizers

rng = np.random.default_rng(0)


def mlp(width, dtype="float32", depth=2):
    hidden = [layers.Dense(width, activation="relu") for _ in range(depth)]
    model = cdl.Sequential([*hidden, layers.Dense(10)], input_shape=(784,), dtype=dtype,
                           seed=0)
    model.compile(optimizers.Adam(lr=1e-3), "cross_entropy")
    return model


def step_time(model, batch_size=128, repeats=10):
    """Seconds per ``train_step`` on a random batch (the best of ``repeats``:
    the least disturbed by other programs)."""
    x = rng.normal(size=(batch_size, 784)).astype(model.dtype)
    y = rng.integers(0, 10, batch_size)
    model.train_step(x, y)                      # first call builds buffers
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.train_step(x, y)
        times.append(time.perf_counter() - start)
    return min(times)


# %%
# Threads
# -------
# The matrix products go to the BLAS that SciPy ships, with its own thread
# pool; cdl's own large loops (normalisation, optimizer updates, losses, on
# arrays of 262,144 elements or more) run on OpenMP threads.
# ``cdl.set_num_threads(n)`` sizes both pools for the rest of the process
# and ``with cdl.threads(n):`` for one block. Small
# layers gain nothing from more threads (the work per product is too small
# to split); wide ones can, when the cores are free: on a busy machine an
# extra thread waits for a core and slows every product down.
# ``python -m cdl info`` names the BLAS, the OpenMP runtime and their thread
# counts.
print("threads now:", cdl.get_num_threads())
for width in (64, 512):
    model = mlp(width)
    for n in (1, 2):
        with cdl.threads(n):
            print(f"width {width:>4}, {n} thread(s): {step_time(model) * 1e3:7.3f} ms per step")

# %%
# float32 and float64
# -------------------
# Models are float32 unless built with ``dtype="float64"``; every weight,
# activation and gradient then has that dtype, and inputs are converted to
# it. float32 halves the memory and, in BLAS, roughly doubles the
# arithmetic per second; float64 is for gradient checks and numerical
# studies. The same seed gives the same initial weights up to rounding.
# (This comparison and the next run on one thread, which other programs on
# the machine disturb least.)
for dtype in ("float32", "float64"):
    model = mlp(256, dtype=dtype)
    with cdl.threads(1):
        seconds = step_time(model)
    print(f"{dtype}: {seconds * 1e3:7.3f} ms per step, "
          f"{model.param_buffer.nbytes / 2**20:.1f} MiB of weights")
print("initial weights agree to float32 rounding:",
      np.allclose(mlp(256).params[0], mlp(256, "float64").params[0], atol=1e-7))

# %%
# The fused training step
# -----------------------
# When every layer is a ``Dense``, an activation layer, a ``Dropout`` or a
# ``Flatten`` of one-dimensional samples, and the loss is cross-entropy with
# integer labels (no label smoothing or class weights), MSE, MAE, Huber or
# binary cross-entropy, ``fit`` and ``train_step`` run the whole step,
# forward, loss and backward, in one compiled call without the GIL and
# without allocating; ``predict`` uses a fused forward pass in the same way.
# Any other model (convolutions, recurrent or normalisation layers, your own
# layers, activity regularizers) trains layer by layer. Both paths call the
# same kernels in the same order and give the same numbers bit for bit;
# ``model.use_fused_step = False`` forces the layer-by-layer path.
# The gain is largest where Python overhead dominates: small layers.
x = rng.normal(size=(2048, 784)).astype(np.float32)
y = rng.integers(0, 10, 2048)


def fit_step_time(model, batch_size=32):
    """Seconds per step of one epoch of ``fit`` (the best of three epochs)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)
        times.append((time.perf_counter() - start) / (len(x) // batch_size))
    return min(times)


for width in (32, 256):
    fused, layerwise = mlp(width), mlp(width)
    layerwise.use_fused_step = False
    with cdl.threads(1):
        t_fused, t_layers = fit_step_time(fused), fit_step_time(layerwise)
    print(f"width {width:>3}: fused {t_fused * 1e3:6.3f} ms, layer by layer "
          f"{t_layers * 1e3:6.3f} ms per step")
print("same weights after the same training:",
      all(np.array_equal(a, b) for a, b in zip(fused.params, layerwise.params)))

# %%
# Other habits that matter
# ------------------------
# - Pass float32 C-contiguous arrays when you can: other inputs are
#   converted once per ``fit`` call, not per batch, but the conversion
#   still costs a copy.
# - Larger batches amortise the per-step overhead; the fused step has
#   little left to amortise.
# - ``model.summary()`` reports the FLOPs and activation memory per sample
#   of each layer.
#
# The benchmark table
# -------------------
# ``python -m cdl bench`` measures cdl against PyTorch and plain NumPy in
# fresh processes; the latest published figures, from the README:
#
# .. include:: ../../README.md
#    :parser: myst_parser.sphinx_
#    :start-after: ## Benchmarks
#    :end-before: ### Data-parallel scaling
