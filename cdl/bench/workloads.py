"""One benchmark workload per (framework, task), run inside a worker process.

Every framework gets the same network, data, batch size, optimizer and
hyper-parameters: float32, a ReLU MLP with a linear head, softmax
cross-entropy on integer labels, and SGD with momentum 0.9 or Adam, all at
learning rate 1e-3 (small enough that no run diverges into NaN or
denormal numbers, which would time the CPU's slow paths instead of the
frameworks).
"""
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


# --- a small CNN (channels-last in cdl, channels-first in PyTorch) ------------

#: (input height, width, channels), filters of the two 3x3 convolutions, classes, batch.
CNN_SHAPE, CNN_FILTERS, CNN_CLASSES, CNN_BATCH = (16, 16, 3), (16, 32), 10, 64


def cnn_flops(batch=CNN_BATCH):
    """FLOPs of one training step of the small CNN (convolutions and dense layer,
    forward and backward, no input gradient for the first layer)."""
    h, w, c = CNN_SHAPE
    f1, f2 = CNN_FILTERS
    conv1 = 2 * h * w * 9 * c * f1            # "same" padding
    conv2 = 2 * (h - 2) * (w - 2) * 9 * f1 * f2  # "valid" padding
    dense = 2 * (h - 2) * (w - 2) * f2 * CNN_CLASSES
    return batch * (3 * (conv2 + dense) + 2 * conv1)


def _cnn_data(steps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((CNN_BATCH * steps,) + CNN_SHAPE).astype(np.float32)
    y = rng.integers(0, CNN_CLASSES, CNN_BATCH * steps).astype(np.int64)
    return x, y


def cdl_cnn_train(steps, min_seconds):
    import cdl
    from cdl import layers, optimizers
    model = cdl.Sequential([
        layers.Conv2D(CNN_FILTERS[0], 3, padding="same", activation="relu"),
        layers.Conv2D(CNN_FILTERS[1], 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(CNN_CLASSES),
    ], input_shape=CNN_SHAPE, seed=0)
    model.compile(optimizers.SGD(lr=LR, momentum=0.9), "cross_entropy")
    x, y = _cnn_data(steps)

    def epoch():
        model.fit(x, y, epochs=1, batch_size=CNN_BATCH, verbose=0)
    epoch()
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


def torch_cnn_train(steps, min_seconds):
    import torch
    h, w, c = CNN_SHAPE
    model = torch.nn.Sequential(
        torch.nn.Conv2d(c, CNN_FILTERS[0], 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(CNN_FILTERS[0], CNN_FILTERS[1], 3), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear((h - 2) * (w - 2) * CNN_FILTERS[1], CNN_CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = _cnn_data(steps)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)

    def epoch():
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), CNN_BATCH):
            idx = order[start:start + CNN_BATCH]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    epoch()
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]


# --- recurrent layers ----------------------------------------------------------

#: Sequence length, features, units, classes and batch of the recurrent benchmark.
RNN_STEPS, RNN_FEATURES, RNN_UNITS, RNN_CLASSES, RNN_BATCH = 32, 16, 64, 10, 64


def _rnn_data(steps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((RNN_BATCH * steps, RNN_STEPS, RNN_FEATURES)).astype(np.float32)
    y = rng.integers(0, RNN_CLASSES, RNN_BATCH * steps).astype(np.int64)
    return x, y


def cdl_rnn_train(cell, steps, min_seconds):
    import cdl
    from cdl import layers, optimizers
    recurrent = {"lstm": layers.LSTM, "gru": layers.GRU}[cell]
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
            recurrent = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
            self.rnn = recurrent(RNN_FEATURES, RNN_UNITS, batch_first=True)
            self.head = torch.nn.Linear(RNN_UNITS, RNN_CLASSES)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = _rnn_data(steps)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)

    def epoch():
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), RNN_BATCH):
            idx = order[start:start + RNN_BATCH]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    epoch()
    return [t / steps for t in _timed_epochs(epoch, min_seconds)]
