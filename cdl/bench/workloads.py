"""One benchmark workload per (framework, task), run inside a worker process.

Every framework gets the same network, data, batch size, optimizer and
hyper-parameters: float32, ReLU activations, a linear head, softmax
cross-entropy on integer labels, and SGD with momentum 0.9 or Adam, all at
learning rate 1e-3 (small enough that no run diverges into NaN or
denormal numbers, which would time the CPU's slow paths instead of the
frameworks).

The frameworks: cdl, PyTorch (eager, autograd, ``torch.optim``), JAX
(``jax.jit`` over the whole training step, optax for the update, the data
resident on the device and each batch gathered inside the step), plain
NumPy (the MLP only) and ONNX Runtime (prediction only, running the graph
that ``cdl.onnx`` exports from the cdl model). Each timed span ends when
the last result is ready (JAX dispatches asynchronously: the span blocks
on it), and every warm-up (JAX's compilation, cdl's plan, first-touch of
the buffers) runs before the span starts.
"""
import functools
import os
import tempfile
import time

import numpy as np

LR = 1e-3


def make_data(sizes, n_samples, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], n_samples).astype(np.int64)
    return x, y


def train_flops(sizes, batch):
    """Multiply-add FLOPs of one training step (forward, backward with the
    input gradients of all but the first layer, weight gradients)."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(2 * batch * a * b for a, b in layers)
    backward = sum(2 * batch * a * b for a, b in layers) + sum(
        2 * batch * a * b for a, b in layers[1:])
    return forward + backward


def _timed_epochs(run_epoch, min_seconds):
    """Run ``run_epoch`` repeatedly for at least ``min_seconds``; seconds per epoch, each."""
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(times) < 3:
        t0 = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - t0)
    return times


# --- cdl ------------------------------------------------------------------------

def cdl_model(sizes, optimizer):
    import cdl
    from cdl import layers, optimizers
    model = cdl.Sequential(
        [layers.Dense(s, activation="relu") for s in sizes[1:-1]] + [layers.Dense(sizes[-1])],
        input_shape=(sizes[0],), seed=0)
    opt = optimizers.SGD(lr=LR, momentum=0.9) if optimizer == "sgd" else optimizers.Adam(lr=LR)
    model.compile(opt, "cross_entropy")
    return model


def cdl_train(sizes, batch, optimizer, steps, min_seconds):
    model = cdl_model(sizes, optimizer)
    x, y = make_data(sizes, batch * steps)

    def epoch():
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
    epoch()  # warm up: builds the plan, touches every buffer
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


def cdl_predict(sizes, n, min_seconds):
    model = cdl_model(sizes, "sgd")
    x, _ = make_data(sizes, n)
    model.predict(x)
    return _timed_epochs(lambda: model.predict(x), min_seconds)


# --- PyTorch ------------------------------------------------------------------

def torch_model(sizes, optimizer):
    import torch
    modules = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        modules += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    modules.append(torch.nn.Linear(sizes[-2], sizes[-1]))
    model = torch.nn.Sequential(*modules)
    opt = (torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=LR))
    return model, opt


def torch_train(sizes, batch, optimizer, steps, min_seconds):
    import torch
    model, opt = torch_model(sizes, optimizer)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = make_data(sizes, batch * steps)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)

    def epoch():
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    epoch()
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


def torch_predict(sizes, n, min_seconds):
    import torch
    model, _ = torch_model(sizes, "sgd")
    x = torch.from_numpy(make_data(sizes, n)[0])

    def run():
        with torch.no_grad():
            model(x)
    run()
    return _timed_epochs(run, min_seconds)


# --- plain NumPy --------------------------------------------------------------

class NumpyMLP:
    """The same network and update rules written directly in NumPy."""

    def __init__(self, sizes, optimizer, seed=0):
        rng = np.random.default_rng(seed)
        self.params = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            limit = np.sqrt(6.0 / (a + b))
            self.params += [rng.uniform(-limit, limit, (a, b)).astype(np.float32),
                            np.zeros(b, np.float32)]
        self.optimizer = optimizer
        self.state = [np.zeros_like(p) for p in self.params]
        self.state2 = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def forward(self, x):
        acts = [x]
        for i in range(0, len(self.params), 2):
            z = acts[-1] @ self.params[i] + self.params[i + 1]
            if i + 2 < len(self.params):
                np.maximum(z, 0, out=z)
            acts.append(z)
        return acts

    def train_step(self, x, y):
        acts = self.forward(x)
        logits = acts[-1]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        grad = p / len(y)
        grads = [None] * len(self.params)
        for i in range(len(self.params) - 2, -1, -2):
            grads[i] = acts[i // 2].T @ grad
            grads[i + 1] = grad.sum(axis=0)
            if i > 0:
                grad = grad @ self.params[i].T
                grad *= acts[i // 2] > 0
        self.t += 1
        for p_, g, m, v in zip(self.params, grads, self.state, self.state2):
            if self.optimizer == "sgd":
                m *= 0.9
                m += g
                p_ -= LR * m
            else:
                m += 0.1 * (g - m)
                v *= 0.999
                v += 0.001 * g * g
                denom = np.sqrt(v) / np.sqrt(1 - 0.999 ** self.t) + 1e-8
                p_ -= (LR / (1 - 0.9 ** self.t)) * m / denom


def numpy_train(sizes, batch, optimizer, steps, min_seconds):
    model = NumpyMLP(sizes, optimizer)
    x, y = make_data(sizes, batch * steps)
    rng = np.random.default_rng(0)

    def epoch():
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            model.train_step(x[idx], y[idx])
    epoch()
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


def numpy_predict(sizes, n, min_seconds):
    model = NumpyMLP(sizes, "sgd")
    x = make_data(sizes, n)[0]
    model.forward(x)
    return _timed_epochs(lambda: model.forward(x), min_seconds)


# --- JAX ----------------------------------------------------------------------

def _jax():
    """jax, jax.numpy and optax (the worker has set the XLA thread flags before)."""
    import jax
    import jax.numpy as jnp
    import optax
    return jax, jnp, optax


def _jax_optimizer(optax, optimizer):
    # optax.sgd's trace is torch's momentum buffer (v = 0.9 v + g, p -= lr v);
    # optax.adam adds eps outside the square root, as torch.optim.Adam does.
    return optax.sgd(LR, momentum=0.9) if optimizer == "sgd" else optax.adam(LR)


def _glorot(rng, fan_in, fan_out, shape=None):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape or (fan_in, fan_out)).astype(np.float32)


def _jax_epochs(loss_fn, params, optimizer, x, y, batch, steps, min_seconds):
    """Time epochs of ``steps`` jitted training steps; seconds per step, each.

    The data live on the device; each step receives the batch's row indices
    and gathers the rows inside the compiled step, as the other frameworks
    gather a shuffled batch. Parameters and optimizer state are donated, so
    that XLA updates them in place as the other frameworks do.
    """
    jax, jnp, optax = _jax()
    opt = _jax_optimizer(optax, optimizer)
    xd, yd = jnp.asarray(x), jnp.asarray(y.astype(np.int32))

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, xs, ys, idx):
        grads = jax.grad(loss_fn)(params, xs[idx], ys[idx])
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    state = [jax.tree_util.tree_map(jnp.asarray, params), None]
    state[1] = opt.init(state[0])
    rng = np.random.default_rng(0)

    def epoch():
        order = rng.permutation(len(x)).astype(np.int32)
        p, s = state
        for start in range(0, len(x), batch):
            p, s = step(p, s, xd, yd, order[start:start + batch])
        jax.block_until_ready((p, s))  # inside the timed span: the work is done
        state[:] = [p, s]
    epoch()  # compiles the step
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


def _jax_mlp_apply(jax, params, x):
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i + 1 < len(params):
            x = jax.nn.relu(x)
    return x


def _jax_mlp_params(sizes):
    rng = np.random.default_rng(0)
    return [(_glorot(rng, a, b), np.zeros(b, np.float32)) for a, b in zip(sizes[:-1], sizes[1:])]


def _jax_cross_entropy(optax, logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def jax_train(sizes, batch, optimizer, steps, min_seconds):
    jax, _, optax = _jax()

    def loss(params, xb, yb):
        return _jax_cross_entropy(optax, _jax_mlp_apply(jax, params, xb), yb)
    x, y = make_data(sizes, batch * steps)
    return _jax_epochs(loss, _jax_mlp_params(sizes), optimizer, x, y, batch, steps,
                       min_seconds)


def jax_predict(sizes, n, min_seconds):
    jax, jnp, _ = _jax()
    params = jax.tree_util.tree_map(jnp.asarray, _jax_mlp_params(sizes))
    forward = jax.jit(lambda p, x: _jax_mlp_apply(jax, p, x))
    x = make_data(sizes, n)[0]

    def run():
        # From a host array to a host array, as the other frameworks' predict.
        np.asarray(forward(params, x))
    run()
    return _timed_epochs(run, min_seconds)


# --- ONNX Runtime, running cdl's own export -------------------------------------

def onnxruntime_predict(sizes, n, min_seconds, threads=2):
    import onnxruntime as ort
    from cdl import onnx as cdl_onnx
    model = cdl_model(sizes, "sgd")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as folder:
        path = cdl_onnx.export(model, os.path.join(folder, "model.onnx"))
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x = make_data(sizes, n)[0]
    session.run(None, {"input": x})
    return _timed_epochs(lambda: session.run(None, {"input": x}), min_seconds)


# --- end to end: digits -------------------------------------------------------

def digits_split():
    from cdl import data, datasets
    x, y = datasets.load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.25,
                                                             stratify=y, seed=0)
    scaler = data.StandardScaler().fit(x_train)
    return (scaler.transform(x_train).astype(np.float32), y_train,
            scaler.transform(x_test).astype(np.float32), y_test)


DIGITS_SIZES = (64, 128, 128, 10)
DIGITS_EPOCHS, DIGITS_BATCH, DIGITS_LR = 30, 32, 1e-3


def cdl_fit_digits():
    import cdl
    from cdl import layers, optimizers
    x_train, y_train, x_test, y_test = digits_split()
    model = cdl.Sequential([layers.Dense(128, activation="relu"),
                            layers.Dense(128, activation="relu"), layers.Dense(10)],
                           input_shape=(64,), seed=0)
    model.compile(optimizers.Adam(lr=DIGITS_LR), "cross_entropy")
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=DIGITS_EPOCHS, batch_size=DIGITS_BATCH, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = float((model.predict_classes(x_test) == y_test).mean())
    return seconds, accuracy


def torch_fit_digits():
    import torch
    x_train, y_train, x_test, y_test = digits_split()
    torch.manual_seed(0)
    model, opt = torch_model(DIGITS_SIZES, "adam")
    for group in opt.param_groups:
        group["lr"] = DIGITS_LR
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    start = time.perf_counter()
    for _ in range(DIGITS_EPOCHS):
        order = torch.randperm(len(x))
        for s in range(0, len(x), DIGITS_BATCH):
            idx = order[s:s + DIGITS_BATCH]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    return seconds, float((predicted == y_test).mean())


def sklearn_fit_digits():
    from sklearn.neural_network import MLPClassifier
    x_train, y_train, x_test, y_test = digits_split()
    model = MLPClassifier(hidden_layer_sizes=(128, 128), solver="adam",
                          learning_rate_init=DIGITS_LR, batch_size=DIGITS_BATCH,
                          max_iter=DIGITS_EPOCHS, alpha=0.0, tol=0.0,
                          n_iter_no_change=DIGITS_EPOCHS + 1, random_state=0)
    import warnings
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge": the epoch count is fixed
        model.fit(x_train, y_train)
    seconds = time.perf_counter() - start
    return seconds, float(model.score(x_test, y_test))


# --- the BLAS roofline --------------------------------------------------------

def sgemm_gflops(n=2048, min_seconds=1.0):
    """GFLOP/s of the sgemm cdl calls (scipy's BLAS), on n x n matrices."""
    from cdl._kernels import _blas
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    c = np.empty((n, n), np.float32)
    _blas.gemm(a, b, c)
    times = _timed_epochs(lambda: _blas.gemm(a, b, c), min_seconds)
    # The best run: the roofline is what the library can reach, not a typical run.
    return 2 * n ** 3 / float(np.min(times)) / 1e9


def triad_gbps(n, threads, min_seconds=0.3):
    """Memory bandwidth in GB/s: ``np.add(a, b, out=c)`` on n float32 per
    array (12 bytes an element), split into ``threads`` contiguous parts run
    by as many Python threads (NumPy releases the GIL in ufunc loops), so
    that the reference gets the cores the kernels it is compared with get."""
    a = np.ones(n, np.float32)
    b = np.ones(n, np.float32)
    c = np.zeros(n, np.float32)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    parts = [(a[i:j], b[i:j], c[i:j]) for i, j in zip(bounds[:-1], bounds[1:])]

    def add(part):
        np.add(part[0], part[1], out=part[2])

    if threads == 1:
        def run():
            add(parts[0])
    else:
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(threads)

        def run():
            list(pool.map(add, parts))
    run()
    times = _timed_epochs(run, min_seconds)
    return 12 * n / float(np.median(times)) / 1e9


# --- convolutional networks (channels-last in cdl and JAX, channels-first in PyTorch)

#: name -> input (height, width, channels), filters of the two 3x3 "same"
#: convolutions, each followed by ReLU and 2x2 max-pooling, then a dense
#: layer to 10 classes; batch 64, Adam.
CNN_CASES = {
    # MNIST-shaped: the small CNN of the data-parallel benchmark.
    "cnn-28x28x1": {"shape": (28, 28, 1), "filters": (16, 32), "batch": 64},
    # CIFAR-shaped, with channel counts at which the convolutions' products
    # are large enough (K = 27 and 288, N = 32 and 64, M = 65,536 and 16,384
    # rows per batch) for the machine's gemm rate to be reachable: the
    # compute-bound case the roofline column is about.
    "cnn-32x32x3": {"shape": (32, 32, 3), "filters": (32, 64), "batch": 64},
}
CNN_CLASSES = 10


def cnn_flops(case):
    """FLOPs of one training step of a CNN of ``CNN_CASES``: its
    convolutions and dense layer, forward and backward (no input gradient
    for the first layer). Pooling and activations are not counted."""
    h, w, c = case["shape"]
    f1, f2 = case["filters"]
    conv1 = 2 * h * w * 9 * c * f1
    conv2 = 2 * (h // 2) * (w // 2) * 9 * f1 * f2
    dense = 2 * (h // 4) * (w // 4) * f2 * CNN_CLASSES
    return case["batch"] * (2 * conv1 + 3 * (conv2 + dense))


def _cnn_data(case, steps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((case["batch"] * steps,) + tuple(case["shape"])).astype(np.float32)
    y = rng.integers(0, CNN_CLASSES, case["batch"] * steps).astype(np.int64)
    return x, y


def cdl_cnn_train(case, steps, min_seconds):
    import cdl
    from cdl import layers, optimizers
    f1, f2 = case["filters"]
    model = cdl.Sequential([
        layers.Conv2D(f1, 3, padding="same", activation="relu"),
        layers.MaxPool2D(2),
        layers.Conv2D(f2, 3, padding="same", activation="relu"),
        layers.MaxPool2D(2),
        layers.Flatten(),
        layers.Dense(CNN_CLASSES),
    ], input_shape=tuple(case["shape"]), seed=0)
    model.compile(optimizers.Adam(lr=LR), "cross_entropy")
    x, y = _cnn_data(case, steps)

    def epoch():
        model.fit(x, y, epochs=1, batch_size=case["batch"], verbose=0)
    epoch()
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


def _torch_batches(model, opt, x, y, batch):
    """One epoch runner of shuffled batches for a PyTorch model and optimizer."""
    import torch
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)

    def epoch():
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    return epoch


def torch_cnn_train(case, steps, min_seconds):
    import torch
    h, w, c = case["shape"]
    f1, f2 = case["filters"]
    model = torch.nn.Sequential(
        torch.nn.Conv2d(c, f1, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(f1, f2, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear((h // 4) * (w // 4) * f2, CNN_CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = _cnn_data(case, steps)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    epoch = _torch_batches(model, opt, x, torch.from_numpy(y), case["batch"])
    epoch()
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


def _jax_conv(jax, x, w, b, groups=1):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     feature_group_count=groups)
    return jax.nn.relu(y + b)


def _jax_pool(jax, x):
    return jax.lax.reduce_window(x, -np.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def jax_cnn_train(case, steps, min_seconds):
    jax, _, optax = _jax()
    h, w, c = case["shape"]
    f1, f2 = case["filters"]
    rng = np.random.default_rng(0)
    flat = (h // 4) * (w // 4) * f2
    params = [(_glorot(rng, 9 * c, 9 * f1, (3, 3, c, f1)), np.zeros(f1, np.float32)),
              (_glorot(rng, 9 * f1, 9 * f2, (3, 3, f1, f2)), np.zeros(f2, np.float32)),
              (_glorot(rng, flat, CNN_CLASSES), np.zeros(CNN_CLASSES, np.float32))]

    def loss(params, xb, yb):
        (w1, b1), (w2, b2), (w3, b3) = params
        z = _jax_pool(jax, _jax_conv(jax, xb, w1, b1))
        z = _jax_pool(jax, _jax_conv(jax, z, w2, b2))
        return _jax_cross_entropy(optax, z.reshape(z.shape[0], -1) @ w3 + b3, yb)
    x, y = _cnn_data(case, steps)
    return _jax_epochs(loss, params, "adam", x, y, case["batch"], steps, min_seconds)


# --- one convolution layer, forward and backward ----------------------------------

#: name -> input (height, width, channels), filters and groups (default 1)
#: of a 3x3 "same" convolution with ReLU, batch 64: the second convolution
#: of each CNN, and a depthwise convolution of a MobileNet-like block.
CONV_CASES = {
    "conv 14x14x16->32": {"shape": (14, 14, 16), "filters": 32, "batch": 64},
    "conv 16x16x32->64": {"shape": (16, 16, 32), "filters": 64, "batch": 64},
    "depthwise 28x28x64": {"shape": (28, 28, 64), "filters": 64, "batch": 64, "groups": 64},
}


def conv_flops(case):
    """FLOPs of the forward and backward pass (input and weight gradients)
    of a convolution of ``CONV_CASES``: three products of the same size."""
    h, w, c = case["shape"]
    return 3 * 2 * case["batch"] * h * w * 9 * (c // case.get("groups", 1)) * case["filters"]


def _conv_data(case):
    rng = np.random.default_rng(0)
    h, w, c = case["shape"]
    x = rng.standard_normal((case["batch"], h, w, c)).astype(np.float32)
    dy = rng.standard_normal((case["batch"], h, w, case["filters"])).astype(np.float32)
    return x, dy


def cdl_conv(case, min_seconds):
    from cdl import layers
    layer = layers.Conv2D(case["filters"], 3, padding="same", activation="relu",
                          groups=case.get("groups", 1))
    x, dy = _conv_data(case)

    def run():
        layer.forward(x, training=True)
        layer.backward(dy)
    run()  # builds the layer
    return _timed_epochs(run, min_seconds)


def torch_conv(case, min_seconds):
    import torch
    conv = torch.nn.Conv2d(case["shape"][2], case["filters"], 3, padding=1,
                           groups=case.get("groups", 1))
    x, dy = _conv_data(case)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_()
    dy = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
    inputs = [x, conv.weight, conv.bias]

    def run():
        # Fresh gradients each call, as cdl's layer overwrites its own.
        torch.autograd.grad(torch.relu(conv(x)), inputs, dy)
    run()
    return _timed_epochs(run, min_seconds)


def jax_conv(case, min_seconds):
    jax, jnp, _ = _jax()
    groups = case.get("groups", 1)
    c, f = case["shape"][2] // groups, case["filters"]
    rng = np.random.default_rng(0)
    w = jnp.asarray(_glorot(rng, 9 * c, 9 * f, (3, 3, c, f)))
    b = jnp.zeros(f, jnp.float32)
    x, dy = (jnp.asarray(a) for a in _conv_data(case))

    @jax.jit
    def forward_backward(x, w, b, dy):
        _, pullback = jax.vjp(lambda x, w, b: _jax_conv(jax, x, w, b, groups), x, w, b)
        return pullback(dy)

    def run():
        jax.block_until_ready(forward_backward(x, w, b, dy))
    run()
    return _timed_epochs(run, min_seconds)


# --- recurrent layers ----------------------------------------------------------

#: Sequence length, features, units, classes and batch of the recurrent benchmark.
RNN_STEPS, RNN_FEATURES, RNN_UNITS, RNN_CLASSES, RNN_BATCH = 32, 16, 64, 10, 64
RNN_CELLS = ("lstm", "gru", "simplernn")


def _rnn_data(steps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((RNN_BATCH * steps, RNN_STEPS, RNN_FEATURES)).astype(np.float32)
    y = rng.integers(0, RNN_CLASSES, RNN_BATCH * steps).astype(np.int64)
    return x, y


def cdl_rnn_train(cell, steps, min_seconds):
    import cdl
    from cdl import layers, optimizers
    recurrent = {"lstm": layers.LSTM, "gru": layers.GRU, "simplernn": layers.SimpleRNN}[cell]
    model = cdl.Sequential([recurrent(RNN_UNITS), layers.Dense(RNN_CLASSES)],
                           input_shape=(RNN_STEPS, RNN_FEATURES), seed=0)
    model.compile(optimizers.Adam(lr=LR), "cross_entropy")
    x, y = _rnn_data(steps)

    def epoch():
        model.fit(x, y, epochs=1, batch_size=RNN_BATCH, verbose=0)
    epoch()
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


def torch_rnn_train(cell, steps, min_seconds):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            recurrent = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU,
                         "simplernn": torch.nn.RNN}[cell]
            self.rnn = recurrent(RNN_FEATURES, RNN_UNITS, batch_first=True)
            self.head = torch.nn.Linear(RNN_UNITS, RNN_CLASSES)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = _rnn_data(steps)
    epoch = _torch_batches(model, opt, torch.from_numpy(x), torch.from_numpy(y), RNN_BATCH)
    epoch()
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


def jax_rnn_train(cell, steps, min_seconds):
    """The recurrent network in JAX: the input projection of all steps as one
    product, then ``lax.scan`` over the steps (PyTorch's gate equations)."""
    jax, jnp, optax = _jax()
    gates = {"lstm": 4, "gru": 3, "simplernn": 1}[cell]
    rng = np.random.default_rng(0)
    bound = 1 / np.sqrt(RNN_UNITS)

    def uniform(*shape):
        return rng.uniform(-bound, bound, shape).astype(np.float32)
    params = {"wx": uniform(RNN_FEATURES, gates * RNN_UNITS),
              "wh": uniform(RNN_UNITS, gates * RNN_UNITS),
              "bx": uniform(gates * RNN_UNITS), "bh": uniform(gates * RNN_UNITS),
              "head": _glorot(rng, RNN_UNITS, RNN_CLASSES),
              "head_b": np.zeros(RNN_CLASSES, np.float32)}
    sigmoid, tanh = jax.nn.sigmoid, jnp.tanh

    def step(p, carry, xp):
        if cell == "lstm":
            h, c = carry
            i, f, g, o = jnp.split(xp + h @ p["wh"] + p["bh"], 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * tanh(g)
            h = sigmoid(o) * tanh(c)
            return (h, c), None
        if cell == "gru":
            xr, xz, xn = jnp.split(xp, 3, axis=-1)
            hr, hz, hn = jnp.split(carry @ p["wh"] + p["bh"], 3, axis=-1)
            r, z = sigmoid(xr + hr), sigmoid(xz + hz)
            n = tanh(xn + r * hn)
            return (1 - z) * n + z * carry, None
        return tanh(xp + carry @ p["wh"] + p["bh"]), None

    def loss(p, xb, yb):
        xp = jnp.swapaxes(xb @ p["wx"] + p["bx"], 0, 1)  # (steps, batch, gates * units)
        h0 = jnp.zeros((xb.shape[0], RNN_UNITS), xb.dtype)
        carry, _ = jax.lax.scan(functools.partial(step, p),
                                (h0, h0) if cell == "lstm" else h0, xp)
        h = carry[0] if cell == "lstm" else carry
        return _jax_cross_entropy(optax, h @ p["head"] + p["head_b"], yb)
    x, y = _rnn_data(steps)
    return _jax_epochs(loss, params, "adam", x, y, RNN_BATCH, steps, min_seconds)


# --- elementwise kernels on arrays larger than the caches ----------------------

#: Elements of each array: 2**24 float32 (64 MiB), twice the largest L3 of
#: common desktop and server CPUs, so that every pass streams from memory.
ELEMENTWISE_SIZE = 1 << 24
#: Row length of the softmax (over the last axis).
SOFTMAX_COLUMNS = 1024
#: Kernel -> bytes moved per element (float32): a forward pass reads x and
#: writes y; a backward pass reads dy and x (or y) and writes dx; Adam reads
#: p, g, m, v and writes p, m, v. The same count serves every framework.
ELEMENTWISE_BYTES = {
    **{f"{act} {way}": 8 if way == "forward" else 12
       for act in ("relu", "sigmoid", "tanh", "gelu", "softmax")
       for way in ("forward", "backward")},
    "adam update": 28,
}
#: The memory-bandwidth reference's name in the results.
BANDWIDTH_REFERENCE = "numpy add (bandwidth)"


def _elementwise_arrays(n):
    rng = np.random.default_rng(0)
    shape = (n // SOFTMAX_COLUMNS, SOFTMAX_COLUMNS)
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    return x, np.zeros_like(x), dy, np.zeros_like(x)


def _time_kernels(kernels, min_seconds):
    times = {}
    for name, run in kernels.items():
        run()  # first touch of the output pages, lazy state
        times[name] = _timed_epochs(run, min_seconds)
    return times


def cdl_elementwise(n, min_seconds, threads=2):
    """Seconds per call of cdl's activation kernels (forward and backward, into
    preallocated arrays), of one Adam step, and of the bandwidth reference."""
    from cdl import optimizers
    from cdl._kernels import activations as act
    x, y, dy, dx = _elementwise_arrays(n)
    kernels = {}
    for name in ("relu", "sigmoid", "tanh", "gelu", "softmax"):
        code = act.CODES[name]
        kernels[f"{name} forward"] = functools.partial(act.forward, code, x, y, None)
        kernels[f"{name} backward"] = functools.partial(act.backward, code, x, y, dy, dx, None)
    times = {}
    for name, run in kernels.items():
        if name.endswith("backward"):
            act.forward(act.CODES[name.split()[0]], x, y, None)  # y = f(x) again
        times.update(_time_kernels({name: run}, min_seconds))
    p, g = x.reshape(-1), (dy * 1e-3).reshape(-1)
    adam = optimizers.Adam(lr=LR)
    times.update(_time_kernels({"adam update": lambda: adam.step([p], [g])}, min_seconds))
    seconds = 12 * n / (triad_gbps(n, threads, min_seconds) * 1e9)
    times[BANDWIDTH_REFERENCE] = [seconds] * 3
    return times


def torch_elementwise(n, min_seconds, threads=2):
    """The same kernels in PyTorch: the ATen operators autograd calls, with
    their ``out=`` forms so that no call allocates, and the fused Adam."""
    import torch
    x, y, dy, dx = (torch.from_numpy(a) for a in _elementwise_arrays(n))
    aten = torch.ops.aten
    forward = {"relu": lambda: torch.clamp_min(x, 0, out=y),
               "sigmoid": lambda: torch.sigmoid(x, out=y),
               "tanh": lambda: torch.tanh(x, out=y),
               "gelu": lambda: aten.gelu.out(x, out=y),
               "softmax": lambda: aten._softmax.out(x, -1, False, out=y)}
    backward = {"relu": lambda: aten.threshold_backward.grad_input(dy, x, 0, grad_input=dx),
                "sigmoid": lambda: aten.sigmoid_backward.grad_input(dy, y, grad_input=dx),
                "tanh": lambda: aten.tanh_backward.grad_input(dy, y, grad_input=dx),
                "gelu": lambda: aten.gelu_backward.grad_input(dy, x, grad_input=dx),
                "softmax": lambda: aten._softmax_backward_data.out(dy, y, -1, torch.float32,
                                                                  grad_input=dx)}
    times = {}
    for name in forward:
        times.update(_time_kernels({f"{name} forward": forward[name]}, min_seconds))
        forward[name]()
        times.update(_time_kernels({f"{name} backward": backward[name]}, min_seconds))
    p = x.reshape(-1)
    p.grad = (dy * 1e-3).reshape(-1)
    try:
        adam = torch.optim.Adam([p], lr=LR, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older PyTorch without fused CPU Adam
        adam = torch.optim.Adam([p], lr=LR)
    with torch.no_grad():
        times.update(_time_kernels({"adam update": adam.step}, min_seconds))
    return times


# --- Transformer encoder and attention ------------------------------------------

#: One encoder layer's training step: ``batch`` sequences of ``tokens`` tokens
#: of ``d_model`` features, post-norm, ReLU, float32, Adam, an MSE loss on
#: the layer's output. Dropout is 0.0 in both frameworks, so that both time
#: the same arithmetic (no random masks) and the step is deterministic.
ENCODER_CASE = {"batch": 32, "tokens": 64, "d_model": 64, "heads": 4, "dim_feedforward": 128}
#: Attention forward and backward: batch 1, 4 heads of d = 64, these lengths.
ATTENTION_TOKENS = (1024, 4096)
ATTENTION_HEADS, ATTENTION_DIM = 4, 64


def encoder_flops(case):
    """FLOPs of one encoder training step's products: forward (four
    projections, two feed-forward products, scores and weighted values),
    backward (weight gradients of every product, input gradients of all
    but the query, key and value projections, whose input is the data, and
    the attention's four products). Softmax, normalisation and the
    optimizer are not counted."""
    b, t, d, f = case["batch"], case["tokens"], case["d_model"], case["dim_feedforward"]
    linear_weights = 2 * b * t * (4 * d * d + 2 * d * f)
    linear_inputs = 2 * b * t * (d * d + 2 * d * f)
    # H heads of d_model / H features each: as many products as one head of d_model.
    return 2 * linear_weights + linear_inputs + attention_flops(b, 1, t, d)


def attention_flops(batch, heads, tokens, dim):
    """FLOPs of attention's forward (Q K^T and P V) and backward (dV, dP, dQ,
    dK) products, without the scores a tiled backward recomputes."""
    return 6 * 2 * batch * heads * tokens * tokens * dim


def _encoder_data(case, steps):
    rng = np.random.default_rng(0)
    shape = (case["batch"] * steps, case["tokens"], case["d_model"])
    return (rng.standard_normal(shape, dtype=np.float32),
            rng.standard_normal(shape, dtype=np.float32))


def cdl_encoder_train(case, steps, min_seconds):
    import cdl
    from cdl import layers, optimizers
    model = cdl.Sequential([layers.TransformerEncoder(
        case["heads"], dim_feedforward=case["dim_feedforward"], dropout=0.0)],
        input_shape=(case["tokens"], case["d_model"]), seed=0)
    model.compile(optimizers.Adam(lr=LR), "mse")
    x, y = _encoder_data(case, steps)

    def epoch():
        model.fit(x, y, epochs=1, batch_size=case["batch"], verbose=0)
    epoch()
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


def torch_encoder_train(case, steps, min_seconds):
    import torch
    layer = torch.nn.TransformerEncoderLayer(case["d_model"], case["heads"],
                                             case["dim_feedforward"], dropout=0.0,
                                             batch_first=True)
    opt = torch.optim.Adam(layer.parameters(), lr=LR)
    loss_fn = torch.nn.MSELoss()
    x, y = (torch.from_numpy(a) for a in _encoder_data(case, steps))
    generator = torch.Generator().manual_seed(0)
    batch = case["batch"]

    def epoch():
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            loss_fn(layer(x[idx]), y[idx]).backward()
            opt.step()
    epoch()
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


def _proc_status_kib(field):
    """A field of /proc/self/status in KiB (``VmHWM``, ``VmRSS``), or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _trim_heap():
    """Return the C heap's free pages to the system (glibc only; else nothing)."""
    import ctypes
    import ctypes.util
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def resident_mib():
    """The process's resident memory now (``VmRSS``), in MiB, or None off Linux."""
    kib = _proc_status_kib("VmRSS")
    return None if kib is None else kib / 1024


def call_with_peak(run):
    """Call ``run()``; return its result and how far it raised the process's
    peak resident memory above its resident memory before the call, in MiB
    (None off Linux).

    The process's lifetime peak (``ru_maxrss``, ``VmHWM``) is mostly the
    interpreter, the framework and earlier tasks; on Linux ``ru_maxrss``
    even starts, after ``fork``, at the parent's resident size. So the
    peak is reset first (writing 5 to ``/proc/self/clear_refs``, Linux 4.0
    and later) and the growth read from ``VmHWM`` after the call. Where the
    reset is refused, the growth over the peak so far is reported, a lower
    bound. Memory that earlier tasks freed but the C allocator kept would be
    reused without raising the resident size, hiding the call's
    allocations: it is given back to the system first (glibc's
    ``malloc_trim``, where there is one).
    """
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _proc_status_kib("VmRSS")
    except OSError:
        before = _proc_status_kib("VmHWM")
    value = run()
    after = _proc_status_kib("VmHWM")
    if before is None or after is None:
        return value, None
    return value, max(after - before, 0) / 1024


def peak_growth_mib(run):
    """``call_with_peak(run)``'s growth of the peak alone, in MiB (None off Linux)."""
    return call_with_peak(run)[1]


def _attention_inputs(tokens, heads, dim):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((heads, tokens, dim), dtype=np.float32) for _ in range(4)]


def _cdl_attention_step(tokens, heads, dim):
    """One forward and backward pass of cdl's attention kernel, batch 1;
    outputs and gradients allocated inside the step, as a layer's are."""
    from cdl._kernels import attention
    Q, K, V, dO = _attention_inputs(tokens, heads, dim)

    def step():
        O = np.empty_like(Q)
        LSE = np.empty((heads, tokens))
        attention.forward(Q, K, V, O, LSE, None, False, None, None, heads)
        dQ, dK, dV = np.empty_like(Q), np.empty_like(K), np.empty_like(V)
        attention.backward(Q, K, V, O, dO, LSE, dQ, dK, dV, None, False, None, None, heads)
    return step


def _torch_attention_step(tokens, heads, dim):
    """The same pass through ``torch.nn.functional.scaled_dot_product_attention``
    and autograd (fresh gradients each step)."""
    import torch
    import torch.nn.functional as F
    q, k, v, do = (torch.from_numpy(a).unsqueeze(0)
                   for a in _attention_inputs(tokens, heads, dim))
    for t in (q, k, v):
        t.requires_grad_(True)

    def step():
        torch.autograd.grad(F.scaled_dot_product_attention(q, k, v), (q, k, v), do)
    return step


def _attention_fwd_bwd(make, tokens, heads, dim, min_seconds):
    """Seconds per forward and backward pass, and the peak memory growth
    (MiB) of the first pass at this size, after a small pass has loaded the
    libraries."""
    make(min(tokens, 64), heads, dim)()
    step = make(tokens, heads, dim)
    peak = peak_growth_mib(step)
    return _timed_epochs(step, min_seconds), peak


def cdl_attention(tokens, heads, dim, min_seconds):
    return _attention_fwd_bwd(_cdl_attention_step, tokens, heads, dim, min_seconds)


def torch_attention(tokens, heads, dim, min_seconds):
    return _attention_fwd_bwd(_torch_attention_step, tokens, heads, dim, min_seconds)
