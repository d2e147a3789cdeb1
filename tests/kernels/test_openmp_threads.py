"""cdl's OpenMP loops: one thread knob for both pools, and the same bits at any thread count.

Each threaded kernel runs on inputs large enough to open a parallel region
(at least ``PARALLEL_MIN`` = 262,144 elements, several chunks) with 1 and 2 threads; the
outputs must be identical to the bit. Reductions (bias gradients, batch
statistics) split their work into chunks fixed by the input size, so the
thread count cannot change the order of their sums.
"""
import subprocess
import sys
import threading

import numpy as np
import pytest

import cdl
from cdl._kernels import _openmp, dense, norm, optim
from cdl._kernels.activations import CODES

ACT_RELU = CODES["relu"]

needs_openmp = pytest.mark.skipif(not _openmp.OPENMP, reason="cdl was built without OpenMP")

DTYPES = [np.float32, np.float64]


def _at_thread_counts(run, counts=(1, 2)):
    """``run()``'s outputs (a tuple of arrays) with each thread count."""
    results = []
    for n in counts:
        with cdl.threads(n):
            results.append([np.array(a, copy=True) for a in run()])
    return results


def _assert_same_bits(results):
    first = results[0]
    for other in results[1:]:
        for a, b in zip(first, other):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()


# --- the knob ----------------------------------------------------------------------------

def test_knob_sizes_blas_and_openmp():
    from threadpoolctl import threadpool_info

    before = cdl.get_num_threads()
    with cdl.threads(1):
        assert cdl.get_num_threads() == 1
        if _openmp.OPENMP:
            assert _openmp.get_num_threads() == 1
        pools = {lib["user_api"]: lib["num_threads"] for lib in threadpool_info()}
        assert pools.get("blas") == 1
        if _openmp.OPENMP:
            # libgomp is loaded by the kernels package, so threadpoolctl sees it.
            assert pools.get("openmp") == 1
    assert cdl.get_num_threads() == before


@needs_openmp
def test_knob_reaches_other_python_threads():
    """OpenMP's own count is per calling thread; cdl's loops must still use the
    count set from another thread."""
    seen = []
    with cdl.threads(1):
        t = threading.Thread(target=lambda: seen.append(_openmp.get_num_threads()))
        t.start()
        t.join()
    assert seen == [1]
    with cdl.threads(2):
        t = threading.Thread(target=lambda: seen.append(_openmp.get_num_threads()))
        t.start()
        t.join()
    assert seen == [1, 2]


def test_info_reports_openmp():
    from cdl._info import info

    data = info()
    assert data["built with"]["openmp"] == bool(_openmp.OPENMP)
    assert data["openmp"]["threads of cdl's loops"] == _openmp.get_num_threads()
    if _openmp.OPENMP:
        assert data["openmp"]["built with openmp"].startswith("yes")
        assert any("gomp" in (lib["filepath"] or "") or "omp" in (lib["prefix"] or "")
                   for lib in data["openmp"]["libraries"])


@needs_openmp
def test_spin_count_is_left_to_the_user_and_not_inherited(tmp_path):
    code = ("import os, cdl; print(os.environ.get('GOMP_SPINCOUNT'), "
            "os.environ.get('OMP_WAIT_POLICY'))")
    # Run outside the source tree, whose cdl/ has no compiled extensions.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True, cwd=tmp_path).stdout.split()
    assert out == ["None", "None"]
    env = dict(__import__("os").environ, OMP_WAIT_POLICY="active")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True, env=env, cwd=tmp_path).stdout.split()
    assert out == ["None", "active"]


# --- the same bits at 1 and 2 threads -----------------------------------------------------

@needs_openmp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", ["sgd", "momentum", "adam", "adamw", "amsgrad", "rmsprop",
                                  "adagrad", "adamax", "nadam", "radam"])
def test_optimizer_updates(rule, dtype):
    n = 300_001  # many chunks and a ragged last one
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)

    def run():
        p = p0.copy()
        s = [np.full(n, 0.1, dtype) for _ in range(3)]
        for step in range(3):
            if rule == "sgd":
                optim.sgd(p, g, None, 0.1, 0.01, 0.0, 0.0, False, step == 0)
            elif rule == "momentum":
                optim.sgd(p, g, s[0], 0.1, 0.01, 0.9, 0.0, True, step == 0)
            elif rule in ("adam", "adamw", "amsgrad"):
                optim.adam(p, g, s[0], s[1], s[2] if rule == "amsgrad" else None, 1e-3,
                           0.9, 0.9, 0.999, 1e-8, 0.01 if rule == "adam" else 0.0,
                           0.999 if rule == "adamw" else 1.0)
            elif rule == "rmsprop":
                optim.rmsprop(p, g, s[0], s[1], s[2], 1e-3, 0.99, 1e-8, 0.01, 0.9)
            elif rule == "adagrad":
                optim.adagrad(p, g, s[0], 1e-2, 0.01, 1e-10)
            elif rule == "adamax":
                optim.adamax(p, g, s[0], s[1], 1e-3, 0.9, 0.999, 1e-8, 0.01)
            elif rule == "nadam":
                optim.nadam(p, g, s[0], s[1], 1e-3, 1e-3, 0.5, 0.9, 0.999, 1e-8, 0.0, 0.999)
            else:
                optim.radam(p, g, s[0], s[1], 1e-3, 0.5, 0.7, 1.2, True, 0.9, 0.999, 1e-8,
                            0.01, 1.0)
        return [p] + s

    results = _at_thread_counts(run)
    _assert_same_bits(results)
    assert not np.array_equal(results[0][0], p0)


@needs_openmp
def test_updates_flush_subnormals_on_every_thread():
    """Each worker thread sets flush-to-zero itself (MXCSR is per thread)."""
    n = 300_000
    p = np.zeros(n, np.float32)
    g = np.full(n, 1e-30, np.float32)
    with cdl.threads(2):
        optim.sgd(p, g, None, 1e-10, 0.0, 0.0, 0.0, False, True)
    # 1e-10 * 1e-30 is subnormal in float32: flushed to zero everywhere.
    assert not np.any(p), np.flatnonzero(p)[:5]


@needs_openmp
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_bias_add_and_bias_gradient(dtype):
    n, d_in, d_out = 300, 64, 1000
    rng = np.random.default_rng(2)
    X = rng.standard_normal((n, d_in)).astype(dtype)
    W = rng.standard_normal((d_in, d_out)).astype(dtype)
    b = rng.standard_normal(d_out).astype(dtype)
    dY = rng.standard_normal((n, d_out)).astype(dtype)

    def run():
        Z = np.empty((n, d_out), dtype)
        Y = np.empty((n, d_out), dtype)
        dense.forward(X, W, b, Z, Y, ACT_RELU)
        dZ = np.empty_like(Z)
        dW = np.empty_like(W)
        db = np.empty_like(b)
        dX = np.empty_like(X)
        dense.backward(X, W, Z, Y, dY, dZ, dW, db, dX, ACT_RELU)
        return Y, db

    results = _at_thread_counts(run)
    # dW and dX come from BLAS, whose bits may depend on its threads; Y's
    # bias add and db are cdl's loops.
    _assert_same_bits([[r[1]] for r in results])
    # db is each column summed in row order, exactly as a serial loop.
    Z = X @ W + b
    grad = dY * (Z > 0)
    serial = np.zeros(d_out, dtype)
    for i in range(n):
        serial += grad[i]
    np.testing.assert_array_equal(results[1][1], serial)


@needs_openmp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, c", [(20000, 16), (1000, 300), (300, 1000)])
def test_batchnorm(m, c, dtype):
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((m, c)) * 3 + 1).astype(dtype)
    dY = rng.standard_normal((m, c)).astype(dtype)
    gamma = rng.standard_normal(c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)

    def run():
        rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
        mean, invstd = np.empty(c), np.empty(c)
        Y = np.empty_like(X)
        norm.batchnorm_forward(X, gamma, beta, rm, rv, mean, invstd, Y, True)
        dX, dgamma, dbeta = np.empty_like(X), np.empty(c, dtype), np.empty(c, dtype)
        norm.batchnorm_backward(X, dY, mean, invstd, gamma, dX, dgamma, dbeta, True)
        return Y, rm, rv, mean, invstd, dX, dgamma, dbeta

    results = _at_thread_counts(run)
    _assert_same_bits(results)
    Y, mean = results[0][0], results[0][3]
    np.testing.assert_allclose(mean, X.astype(np.float64).mean(0), rtol=1e-10, atol=1e-10)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    ref = (X - X.mean(0)) / np.sqrt(X.var(0) + 1e-5) * gamma + beta
    np.testing.assert_allclose(Y, ref, rtol=tol, atol=tol)


@needs_openmp
def test_fit_gives_the_same_weights_at_1_and_2_threads():
    """A whole training run through the fused plan (Dense, dropout, loss, Adam)
    with BLAS at one thread: only cdl's own loops change their thread count."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(4)
    x = rng.standard_normal((1024, 600)).astype(np.float32)
    y = rng.integers(0, 10, 1024)

    def run():
        model = cdl.Sequential([cdl.layers.Dense(512, activation="relu"),
                                cdl.layers.Dropout(0.2), cdl.layers.Dense(10)],
                               input_shape=(600,), seed=0)
        model.compile("adam", "cross_entropy")
        with threadpool_limits(1, user_api="blas"):
            model.fit(x, y, epochs=2, batch_size=512, verbose=0)
        return model.get_weights()

    _assert_same_bits(_at_thread_counts(run))


def _blas_threads():
    from threadpoolctl import threadpool_info

    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})


@needs_openmp
def test_fit_in_another_python_thread_gives_the_same_weights_at_1_and_2_threads():
    """Training in a worker thread obeys the counts set in the main thread.

    OpenMP keeps its own count per thread, but cdl's loops take the
    process-wide one. The BLAS limit is set in the main thread before the
    worker starts: threadpoolctl lets one Python thread at a time set the
    count of OpenBLAS's process-wide pool (the one inside a
    ``threadpool_limits`` block, here the main thread in ``cdl.threads``)
    and silently ignores the others, so a limit set inside the worker
    would leave the BLAS at n threads and change the BLAS bits.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(4)
    x = rng.standard_normal((1024, 600)).astype(np.float32)
    y = rng.integers(0, 10, 1024)

    def run():
        out = {}

        def train():
            model = cdl.Sequential([cdl.layers.Dense(512, activation="relu"),
                                    cdl.layers.Dropout(0.2), cdl.layers.Dense(10)],
                                   input_shape=(600,), seed=0)
            model.compile("adam", "cross_entropy")
            out["blas"] = _blas_threads()
            model.fit(x, y, epochs=2, batch_size=512, verbose=0)
            out["weights"] = model.get_weights()

        with threadpool_limits(1, user_api="blas"):
            worker = threading.Thread(target=train)
            worker.start()
            worker.join()
        assert out["blas"] == [1]
        return out["weights"]

    _assert_same_bits(_at_thread_counts(run))


@needs_openmp
def test_set_num_threads_in_another_python_thread_reaches_the_blas():
    """A plain ``set_num_threads`` gives threadpoolctl's control of the BLAS
    back, so a later call from another Python thread still sizes both pools."""
    before = cdl.get_num_threads()
    seen = []

    def worker(n):
        cdl.set_num_threads(n)
        seen.append((_blas_threads(), _openmp.get_num_threads()))

    try:
        cdl.set_num_threads(2)
        for n in (1, 2):
            t = threading.Thread(target=worker, args=(n,))
            t.start()
            t.join()
        assert seen == [([1], 1), ([2], 2)]
        cdl.set_num_threads(1)
        assert _blas_threads() == [1]
    finally:
        cdl.set_num_threads(before)


@needs_openmp
def test_forked_child_runs_the_threaded_kernels(tmp_path):
    """GNU OpenMP's thread pool does not survive fork: a child process runs
    cdl's loops on one thread instead of waiting for workers it does not
    have, even when it asks for more (with a warning that says why)."""
    code = """if True:
        import os
        import warnings
        import numpy as np
        import cdl
        from cdl._kernels import optim
        p, g = np.zeros(1_000_000, np.float32), np.ones(1_000_000, np.float32)
        with cdl.threads(2):
            optim.sgd(p, g, None, 0.1, 0.0, 0.0, 0.0, False, True)
        pid = os.fork()
        if pid == 0:
            optim.sgd(p, g, None, 0.1, 0.0, 0.0, 0.0, False, True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                cdl.set_num_threads(2)
            optim.sgd(p, g, None, 0.1, 0.0, 0.0, 0.0, False, True)
            warned = [w for w in caught if issubclass(w.category, RuntimeWarning)
                      and "spawn" in str(w.message)]
            os._exit(0 if p[0] == np.float32(-0.3) and len(warned) == 1 else 3)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)   # outside the source tree
    assert out.returncode == 0 and out.stdout.strip() == "0", out


@needs_openmp
@pytest.mark.parametrize("cell, units, batch", [("SimpleRNN", 128, 512), ("LSTM", 64, 256),
                                                ("GRU", 96, 256)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_recurrent_steps(cell, units, batch, dtype):
    """Steps wide enough to share their samples among the threads (batch x
    gate width >= 65,536), with padding steps, both directions of time and
    the bias-gradient column sums: the same bits at 1 and 2 threads."""
    from threadpoolctl import threadpool_limits

    from cdl._kernels import recurrent as rec

    rng = np.random.default_rng(5)
    steps, features = 6, 8
    gates = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}[cell] * units
    x = rng.standard_normal((batch, steps, features)).astype(dtype)
    w = (rng.standard_normal((features, gates)) * 0.3).astype(dtype)
    u = (rng.standard_normal((units, gates)) * 0.3).astype(dtype)
    bi, bh = (rng.standard_normal(gates) * 0.1).astype(dtype), np.zeros(gates, dtype)
    mask = (rng.random((batch, steps)) > 0.2).astype(np.uint8)
    dy = rng.standard_normal((batch, steps, units)).astype(dtype)
    code = rec.CELLS[cell]

    def run(backwards):
        lstm = cell == "LSTM"
        saved = [np.empty((batch, steps, units), dtype) for _ in range(3)]
        hprev, cprev, hn = saved[0], saved[1] if lstm else None, saved[2]
        if cell == "SimpleRNN":
            hn = None
        g = np.empty((batch, steps, gates), dtype)
        y = np.empty((batch, steps, units), dtype)
        h = np.zeros((batch, units), dtype)
        c = np.zeros_like(h) if lstm else None
        rec.forward(code, 0, x, w, u, bi, bh, mask, backwards, True, y, g, hprev, cprev, hn,
                    h, c)
        grads = [np.empty_like(a) for a in (w, u, bi, bh)] + [np.empty_like(x)]
        dh0 = np.empty((batch, units), dtype)
        rec.backward(code, 0, x, w, u, mask, backwards, True, g, hprev, cprev, hn, dy,
                     *grads, dh0)
        return [y, h, g, dh0] + grads

    for backwards in (False, True):
        results = []
        for n in (1, 2):
            # BLAS on one thread: only cdl's own loops change their thread count.
            with cdl.threads(n), threadpool_limits(1, user_api="blas"):
                results.append([np.array(a, copy=True) for a in run(backwards)])
        _assert_same_bits(results)


@needs_openmp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, s, c, groups, rms", [(600, 1, 512, 1, False),  # layer norm
                                                  (600, 1, 512, 1, True),   # RMS norm
                                                  (16, 512, 40, 4, False)])  # group norm
def test_group_and_layer_norm(n, s, c, groups, rms, dtype):
    """Samples split among the threads, the parameter gradients' channels too
    (each summed in sample order): the bits of the serial loop."""
    rng = np.random.default_rng(6)
    X = (rng.standard_normal((n, s, c)) * 2 + 0.5).astype(dtype)
    dY = rng.standard_normal((n, s, c)).astype(dtype)
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)

    def run():
        mean, invstd = np.empty((n, groups)), np.empty((n, groups))
        Y = np.empty_like(X)
        norm.group_norm_forward(X, gamma, beta, mean, invstd, Y, groups, 1e-5, rms)
        dX, dgamma, dbeta = np.empty_like(X), np.empty(c, dtype), np.empty(c, dtype)
        norm.group_norm_backward(X, dY, mean, invstd, gamma, dX, dgamma, dbeta, groups, rms)
        return Y, mean, invstd, dX, dgamma, dbeta

    results = _at_thread_counts(run)
    _assert_same_bits(results)
    # dbeta sums each channel over samples and positions in order.
    serial = np.zeros(c, np.float64)
    for row in dY.reshape(-1, c).astype(np.float64):
        serial += row
    np.testing.assert_array_equal(results[1][5], serial.astype(dtype))


@needs_openmp
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout(dtype):
    from cdl._kernels import dropout

    rng = np.random.default_rng(7)
    X = rng.standard_normal(600_001).astype(dtype)
    U = rng.random(X.size).astype(dtype)

    def run():
        mask, Y, dX = np.empty_like(X), np.empty_like(X), np.empty_like(X)
        dropout.forward(X, U, mask, Y, 0.3)
        dropout.backward(mask, X, dX)
        return mask, Y, dX

    results = _at_thread_counts(run)
    _assert_same_bits(results)
    keep = U >= dtype(0.3)
    np.testing.assert_array_equal(results[1][1] != 0, keep & (X != 0))


@needs_openmp
@pytest.mark.parametrize("dtype", DTYPES)
def test_clipping(dtype):
    from cdl._kernels import clip

    rng = np.random.default_rng(8)
    g0 = rng.standard_normal(600_001).astype(dtype)

    def run():
        norms = np.array([clip.norm(g0, p) for p in (1.0, 2.0, 3.0, np.inf)])
        g = g0.copy()
        clip.clamp(g, 0.5)
        return norms, g

    results = _at_thread_counts(run)
    _assert_same_bits(results)
    norms = results[1][0]
    np.testing.assert_allclose(norms, [np.linalg.norm(g0.astype(np.float64), p)
                                       for p in (1, 2, 3, np.inf)], rtol=1e-5)
    nan = g0.copy()
    nan[450_000] = np.nan
    with cdl.threads(2):
        assert np.isnan(clip.norm(nan, np.inf)) and np.isnan(clip.norm(nan, 1.0))


@needs_openmp
@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding(dtype):
    """Repeated indices add into the same rows: the columns are split, each row
    added in order, so the bits are the serial scatter-add's."""
    from cdl._kernels import embedding

    rng = np.random.default_rng(9)
    v, d, n = 500, 200, 3000
    W = rng.standard_normal((v, d)).astype(dtype)
    indices = rng.integers(0, v, n)
    dY = rng.standard_normal((n, d)).astype(dtype)

    def run():
        Y, dW = np.empty((n, d), dtype), np.empty((v, d), dtype)
        embedding.forward(indices, W, Y)
        embedding.backward(indices, dY, dW)
        return Y, dW

    results = _at_thread_counts(run)
    _assert_same_bits(results)
    serial = np.zeros((v, d), dtype)
    for i, k in enumerate(indices):
        serial[k] += dY[i]
    np.testing.assert_array_equal(results[1][1], serial)


@needs_openmp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_losses(weighted, dtype):
    """The losses' sums run in row chunks fixed by the shape, the gradients
    split rows: the same bits at 1 and 2 threads."""
    from cdl._kernels import losses

    rng = np.random.default_rng(10)
    n, c = 1000, 300
    Z = (rng.standard_normal((n, c)) * 3).astype(dtype)
    T = rng.standard_normal((n, c)).astype(dtype)
    Tp = rng.random((n, c)).astype(dtype)
    Tp /= Tp.sum(1, keepdims=True)
    labels = rng.integers(0, c, n)
    W = rng.random(n).astype(dtype) if weighted else None
    CW = rng.random(c).astype(dtype) if weighted else None

    def run():
        out = []
        for kind in (losses.KINDS["mse"], losses.KINDS["mae"], losses.KINDS["huber"]):
            dP = np.empty_like(Z)
            out += [np.array([losses.regression_loss(kind, Z, T, 1.0, W)]),
                    losses.regression_grad(kind, Z, T, dP, 1.0, W).copy()]
        P, dZ = np.empty_like(Z), np.empty_like(Z)
        out += [np.array([losses.cross_entropy_labels(Z, labels, P, W)]), P.copy(),
                losses.cross_entropy_labels_grad(P, labels, dZ, W).copy()]
        out += [np.array([losses.cross_entropy_soft(Z, Tp, P, W, CW)]), P.copy(),
                losses.cross_entropy_soft_grad(P, Tp, dZ, W, CW).copy()]
        out += [np.array([losses.cross_entropy_labels_weighted(Z, labels, P, CW, 0.1, W)]),
                losses.cross_entropy_labels_weighted_grad(P, labels, dZ, CW, 0.1, W).copy()]
        out += [np.array([losses.binary_cross_entropy(Z, Tp, W)]),
                losses.binary_cross_entropy_grad(Z, Tp, dZ, W).copy()]
        return out

    results = _at_thread_counts(run)
    _assert_same_bits(results)
    w = np.ones(n) if W is None else W.astype(np.float64)
    d = Z.astype(np.float64) - T
    np.testing.assert_allclose(results[1][0][0], (w[:, None] * d * d).mean(), rtol=1e-12)


@needs_openmp
def test_recurrent_blocks_restore_the_blas_thread_count():
    """The blocks of samples hold the BLAS to one thread while they call it
    from several threads, and give the count back afterwards."""
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(6)
    model = cdl.Sequential([cdl.layers.LSTM(64)], input_shape=(8, 4), seed=0)
    x = rng.standard_normal((256, 8, 4)).astype(np.float32)
    with cdl.threads(2):
        model.forward(x, training=True)
        model.backward(np.ones((256, 64), np.float32))
        counts = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert counts and all(c == 2 for c in counts)
