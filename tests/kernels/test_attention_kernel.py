"""The scaled dot-product attention kernel (``cdl._kernels.attention``).

Forward and backward against a float64 NumPy reference (every kind of mask,
causal with Tq == Tk and Tq != Tk, rows with nothing to attend to, d != dv,
several heads), a finite-difference gradient check, parity with PyTorch's
``scaled_dot_product_attention``, the direct and tiled paths against each
other across the switch-over size, the same bits at 1 and 2 threads, the
memory of 4,096 tokens, and the checks of every argument.
"""
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

import cdl
from cdl._kernels import _openmp, attention

needs_openmp = pytest.mark.skipif(not _openmp.OPENMP, reason="cdl was built without OpenMP")

DTYPES = [np.float32, np.float64]
PATHS = ["direct", "tiled"]


# --- NumPy reference -------------------------------------------------------------

def allowed(B, Tq, Tk, heads=1, causal=False, mask=None, key_padding=None):
    """(B, Tq, Tk) bool: which key each query of each block may attend to."""
    ok = np.ones((B, Tq, Tk), bool)
    if causal:
        ok &= np.tril(np.ones((Tq, Tk), bool))  # top-left aligned, as PyTorch
    if mask is not None:
        m = np.asarray(mask).astype(bool)
        ok &= m if m.ndim == 2 else np.repeat(m, heads, axis=0)
    if key_padding is not None:
        ok &= np.repeat(np.asarray(key_padding).astype(bool), heads, axis=0)[:, None, :]
    return ok


def ref_forward(Q, K, V, scale, ok):
    """(O, LSE, P) in float64; rows with nothing allowed: O = 0, P = 0, LSE = -inf."""
    Q, K, V = (np.asarray(x, np.float64) for x in (Q, K, V))
    S = np.where(ok, scale * Q @ K.transpose(0, 2, 1), -np.inf)
    m = S.max(axis=-1, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    E = np.exp(S - m)
    total = E.sum(axis=-1, keepdims=True)
    P = E / np.where(total > 0, total, 1.0)
    lse = np.where(total[..., 0] > 0, m[..., 0] + np.log(np.where(total > 0, total, 1)[..., 0]),
                   -np.inf)
    return P @ V, lse, P


def ref_backward(Q, K, V, dO, scale, ok):
    """(dQ, dK, dV) in float64, by the softmax's closed-form derivative."""
    Q, K, V, dO = (np.asarray(x, np.float64) for x in (Q, K, V, dO))
    _, _, P = ref_forward(Q, K, V, scale, ok)
    dV = P.transpose(0, 2, 1) @ dO
    dP = dO @ V.transpose(0, 2, 1)
    dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))
    return scale * dS @ K, scale * dS.transpose(0, 2, 1) @ Q, dV


def inputs(rng, B, Tq, Tk, d, dv, dtype):
    return tuple(rng.standard_normal(shape).astype(dtype)
                 for shape in ((B, Tq, d), (B, Tk, d), (B, Tk, dv), (B, Tq, dv)))


def run(Q, K, V, dO, scale=None, causal=False, mask=None, key_padding=None, heads=1,
        path="auto"):
    """forward then backward; outputs pre-filled with NaN, so that an element
    the kernel does not write fails."""
    B, Tq, _ = Q.shape
    O = np.full(dO.shape, np.nan, Q.dtype)
    LSE = np.full((B, Tq), np.nan)
    attention.forward(Q, K, V, O, LSE, scale, causal, mask, key_padding, heads, path)
    dQ, dK, dV = (np.full(x.shape, np.nan, Q.dtype) for x in (Q, K, V))
    attention.backward(Q, K, V, O, dO, LSE, dQ, dK, dV, scale, causal, mask, key_padding,
                       heads, path)
    return O, LSE, dQ, dK, dV


def assert_close(actual, expected, tol):
    """max |actual - expected| <= tol * max(1, max |expected|), -inf where expected is."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    inf = np.isinf(expected)
    assert np.array_equal(np.isinf(actual), inf) and np.array_equal(actual[inf], expected[inf])
    assert not np.isnan(actual).any()
    a, e = actual[~inf], expected[~inf]
    if a.size:
        scale = max(1.0, float(np.abs(e).max()))
        assert float(np.abs(a - e).max()) <= tol * scale, float(np.abs(a - e).max())


TOL = {np.float32: 2e-5, np.float64: 1e-12}

# (batch, heads, Tq, Tk, d, dv): small blocks, the tiled path's ragged last
# tiles (Tq, Tk not multiples of the 256 x 256 tiles), and Tq != Tk either way.
SHAPES = [(2, 1, 5, 7, 4, 3), (1, 3, 9, 9, 8, 8), (2, 2, 131, 300, 6, 5),
          (1, 2, 300, 140, 5, 7)]


def _masks(kind, rng, batch, Tq, Tk):
    mask = key_padding = None
    if kind in ("mask2d", "both"):
        mask = rng.random((Tq, Tk)) > 0.3
    if kind == "mask3d":
        mask = (rng.random((batch, Tq, Tk)) > 0.3).astype(np.uint8)
    if kind in ("padding", "both"):
        key_padding = rng.random((batch, Tk)) > 0.2
        key_padding[:, 0] = True
    return mask, key_padding


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("kind", ["none", "mask2d", "mask3d", "padding", "both"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_against_numpy(shape, kind, causal, path, dtype):
    batch, heads, Tq, Tk, d, dv = shape
    rng = np.random.default_rng(zlib.crc32(repr((shape, kind, causal)).encode()))
    Q, K, V, dO = inputs(rng, batch * heads, Tq, Tk, d, dv, dtype)
    mask, key_padding = _masks(kind, rng, batch, Tq, Tk)
    scale = 0.7
    O, LSE, dQ, dK, dV = run(Q, K, V, dO, scale, causal, mask, key_padding, heads, path)
    ok = allowed(batch * heads, Tq, Tk, heads, causal, mask, key_padding)
    O_ref, lse_ref, _ = ref_forward(Q, K, V, scale, ok)
    tol = TOL[dtype]
    assert_close(O, O_ref, tol)
    assert_close(LSE, lse_ref, tol)
    for got, want in zip((dQ, dK, dV), ref_backward(Q, K, V, dO, scale, ok)):
        assert_close(got, want, tol)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_rows_with_nothing_to_attend_to_are_zero(dtype, path):
    """A fully masked row: output 0, LSE -inf, no gradient to or from it; never NaN."""
    rng = np.random.default_rng(3)
    batch, heads, Tq, Tk, d, dv = 2, 2, 6, 5, 4, 3
    Q, K, V, dO = inputs(rng, batch * heads, Tq, Tk, d, dv, dtype)
    mask = np.ones((batch, Tq, Tk), bool)
    mask[0, 2] = False        # one row of sample 0
    mask[1, :, 4] = False     # a key nobody sees
    key_padding = np.ones((batch, Tk), bool)
    key_padding[1, :] = False  # sample 1 is all padding: every row is empty
    O, LSE, dQ, dK, dV = run(Q, K, V, dO, None, False, mask, key_padding, heads, path)
    for x in (O, dQ, dK, dV):
        assert np.isfinite(x).all()
    assert (O[0:2, 2] == 0).all() and (O[2:4] == 0).all()
    assert np.isneginf(LSE[0:2, 2]).all() and np.isneginf(LSE[2:4]).all()
    assert (dQ[0:2, 2] == 0).all() and (dQ[2:4] == 0).all()
    assert (dK[2:4] == 0).all() and (dV[2:4] == 0).all()
    ok = allowed(batch * heads, Tq, Tk, heads, False, mask, key_padding)
    scale = 1 / np.sqrt(d)
    assert_close(O, ref_forward(Q, K, V, scale, ok)[0], TOL[dtype])
    for got, want in zip((dQ, dK, dV), ref_backward(Q, K, V, dO, scale, ok)):
        assert_close(got, want, TOL[dtype])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("Tq, Tk", [(4, 7), (7, 4)])
def test_causal_is_top_left_aligned(Tq, Tk, path):
    """Query i sees keys j <= i, as PyTorch's is_causal, also when Tq != Tk (with
    Tq > Tk the last queries see every key)."""
    rng = np.random.default_rng(4)
    Q, K, V, dO = inputs(rng, 1, Tq, Tk, 3, 2, np.float64)
    O, *_ = run(Q, K, V, dO, 1.0, True, path=path)
    tril = np.tril(np.ones((Tq, Tk), bool))
    O_mask, *_ = run(Q, K, V, dO, 1.0, False, mask=tril, path=path)
    assert np.array_equal(O, O_mask)
    assert np.allclose(O[0, 0], V[0, 0])  # the first query sees the first key alone


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_large_scores_stay_finite(dtype):
    """Scores of size 1e4 (far beyond exp's range) are shifted before exp."""
    rng = np.random.default_rng(5)
    Q, K, V, dO = inputs(rng, 2, 9, 300, 4, 3, dtype)
    for path in PATHS:
        O, LSE, dQ, dK, dV = run(Q, K, V, dO, 3e3, path=path)
        for x in (O, LSE, dQ, dK, dV):
            assert np.isfinite(x).all()
        ok = allowed(2, 9, 300)
        assert_close(O, ref_forward(Q, K, V, 3e3, ok)[0], TOL[dtype])


# --- gradient check ----------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["none", "both", "causal"])
def test_gradcheck(kind, path):
    """Central differences of sum(O * G) in float64 against backward."""
    rng = np.random.default_rng(6)
    batch, heads, Tq, Tk, d, dv = 1, 2, 4, 5, 3, 2
    Q, K, V, G = inputs(rng, batch * heads, Tq, Tk, d, dv, np.float64)
    mask, key_padding = _masks("both", rng, batch, Tq, Tk) if kind == "both" else (None, None)
    if mask is not None:
        mask[1] = False  # a row with nothing to attend to
    causal = kind == "causal"
    scale = 0.8

    def loss(Q, K, V):
        O = np.empty((batch * heads, Tq, dv))
        attention.forward(Q, K, V, O, None, scale, causal, mask, key_padding, heads, path)
        return float((O * G).sum())

    _, _, dQ, dK, dV = run(Q, K, V, G, scale, causal, mask, key_padding, heads, path)
    h = 1e-6
    args = [Q, K, V]
    for which, grad in enumerate((dQ, dK, dV)):
        num = np.zeros_like(grad)
        x = args[which]
        for idx in np.ndindex(x.shape):
            saved = x[idx]
            x[idx] = saved + h
            up = loss(*args)
            x[idx] = saved - h
            down = loss(*args)
            x[idx] = saved
            num[idx] = (up - down) / (2 * h)
        err = np.abs(num - grad).max() / max(1.0, np.abs(num).max())
        assert err < 1e-7, ("QKV"[which], err)


# --- PyTorch parity --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["none", "mask2d", "mask3d", "padding", "both", "empty"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("Tq, Tk", [(12, 12), (9, 300), (300, 257), (5, 8)])
def test_torch_parity(Tq, Tk, causal, kind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    batch, heads, d, dv = 2, 3, 8, 5
    Q, K, V, dO = inputs(rng, batch * heads, Tq, Tk, d, dv, np.float64)
    mask, key_padding = _masks("both" if kind == "empty" else kind, rng, batch, Tq, Tk)
    if kind == "empty":
        mask[Tq // 2] = False
    O, LSE, dQ, dK, dV = run(Q, K, V, dO, None, causal, mask, key_padding, heads)

    def split(x):
        return torch.tensor(x.reshape(batch, heads, *x.shape[1:]), requires_grad=True)

    tq, tk, tv = split(Q), split(K), split(V)
    attn_mask = None
    if mask is not None or key_padding is not None:
        # One boolean mask (True = attend, as cdl's) holding both; causal stays is_causal.
        ok = np.ones((batch, Tq, Tk), bool)
        if mask is not None:
            ok &= mask.astype(bool)
        if key_padding is not None:
            ok &= key_padding[:, None, :]
        attn_mask = torch.tensor(ok[:, None])
    if causal and attn_mask is not None:
        # PyTorch takes either a mask or is_causal: fold the triangle in.
        attn_mask = attn_mask & torch.ones(Tq, Tk, dtype=torch.bool).tril()
        out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=attn_mask)
    else:
        out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=attn_mask, is_causal=causal)
    out.backward(torch.tensor(dO.reshape(batch, heads, Tq, dv)))
    for ours, theirs in ((O, out), (dQ, tq.grad), (dK, tk.grad), (dV, tv.grad)):
        theirs = theirs.detach().numpy().reshape(ours.shape)
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


# --- the two paths ------------------------------------------------------------------

def test_path_choice():
    side = int(np.sqrt(attention.DIRECT_MAX_SCORES))
    assert attention.uses_direct_path(side, side)
    assert not attention.uses_direct_path(side + 1, side + 1)
    assert attention.uses_direct_path(1, 4096)  # one query over a long context
    assert not attention.uses_direct_path(4096, 4096)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("T", [255, 256, 257, 513])
def test_direct_and_tiled_agree(T, causal, dtype):
    """Across the switch-over length: the same results to 1e-6 (float32) and
    1e-12 (float64), relative to the largest value (or 1); "auto" takes one of them."""
    rng = np.random.default_rng(8)
    Q, K, V, dO = inputs(rng, 3, T, T, 32, 24, dtype)
    mask = rng.random((T, T)) > 0.1
    direct = run(Q, K, V, dO, None, causal, mask, path="direct")
    tiled = run(Q, K, V, dO, None, causal, mask, path="tiled")
    auto = run(Q, K, V, dO, None, causal, mask)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for a, b, c in zip(direct, tiled, auto):
        assert_close(a, b, tol)
        chosen = a if attention.uses_direct_path(T, T) else b
        assert np.array_equal(c, chosen)


def test_workspace_is_linear_in_the_sequence_length():
    T = 4096
    assert attention.workspace_elements(T, T) == attention.TILE_QUERIES * attention.TILE_KEYS
    assert attention.workspace_elements(T, T, backward=True) == \
        T + 2 * attention.TILE_QUERIES * attention.TILE_KEYS
    assert attention.workspace_elements(T, T, backward=True) < T * T / 100
    assert attention.workspace_elements(2 * T, 2 * T, backward=True) < T * T / 50
    assert attention.workspace_elements(200, 300, path="direct") == 200 * 300


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_4096_tokens_run_without_a_token_by_token_matrix(tmp_path):
    """Forward and backward of 4,096 tokens (d = 64, float32, 2 heads): the
    peak resident memory grows by far less than one (T, T) float32 matrix
    (64 MiB), measured in a process of its own."""
    code = textwrap.dedent("""
        import numpy as np
        import cdl
        from cdl._kernels import attention

        def peak():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024

        T, d, B = 4096, 64, 2
        rng = np.random.default_rng(0)
        Q, K, V, dO = (rng.standard_normal((B, T, d), dtype=np.float32) for _ in range(4))
        O, dQ, dK, dV = (np.zeros_like(Q) for _ in range(4))
        LSE = np.zeros((B, T))
        small = [x[:, :64].copy() for x in (Q, K, V, dO)]
        attention.forward(*small[:3], np.empty_like(small[0]), None)  # load the libraries
        before = peak()
        with cdl.threads(2):
            attention.forward(Q, K, V, O, LSE, None, False, None, None, 2)
            attention.backward(Q, K, V, O, dO, LSE, dQ, dK, dV, None, False, None, None, 2)
        grown = peak() - before
        assert np.isfinite(O).all() and np.isfinite(dQ).all() and np.abs(O).max() > 0
        print(grown)
    """)
    # The cdl this test imports (installed, or on PYTHONPATH), run outside the
    # source tree, whose cdl/ has no compiled extensions.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    grown = int(out.stdout.split()[-1])
    # Under 8 MiB, against 64 MiB per (T, T) matrix: each thread's tiles (two
    # 256 x 256 float32 score blocks in the backward pass, the Q, K, V tiles)
    # and, in the sanitizer build, the allocator's redzones and quarantine.
    assert grown < 4096 * 4096 * 4 / 8, grown


# --- threads ----------------------------------------------------------------------

@needs_openmp
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_same_bits_at_1_and_2_threads(dtype, path):
    rng = np.random.default_rng(9)
    batch, heads, T = 2, 3, 300
    Q, K, V, dO = inputs(rng, batch * heads, T, T, 16, 16, dtype)
    key_padding = rng.random((batch, T)) > 0.1
    results = []
    for n in (1, 2):
        with cdl.threads(n):
            results.append(run(Q, K, V, dO, None, True, None, key_padding, heads, path))
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()


# --- weights --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_weights(dtype):
    rng = np.random.default_rng(10)
    batch, heads, Tq, Tk = 2, 2, 6, 9
    Q, K, _, _ = inputs(rng, batch * heads, Tq, Tk, 4, 1, dtype)
    mask, key_padding = _masks("both", rng, batch, Tq, Tk)
    mask[3] = False
    P = np.full((batch * heads, Tq, Tk), np.nan, dtype)
    attention.weights(Q, K, P, 0.5, True, mask, key_padding, heads)
    ok = allowed(batch * heads, Tq, Tk, heads, True, mask, key_padding)
    assert_close(P, ref_forward(Q, K, K, 0.5, ok)[2], TOL[dtype])
    assert (P[:, 3] == 0).all()


# --- sizes of zero --------------------------------------------------------------

@pytest.mark.parametrize("B, Tq, Tk, d, dv", [(0, 3, 4, 2, 2), (2, 0, 4, 2, 2), (2, 3, 0, 2, 2),
                                               (2, 3, 4, 0, 2), (2, 3, 4, 2, 0)])
def test_empty_sizes(B, Tq, Tk, d, dv):
    rng = np.random.default_rng(11)
    Q, K, V, dO = inputs(rng, B, Tq, Tk, d, dv, np.float64)
    for path in PATHS:
        O, LSE, dQ, dK, dV = run(Q, K, V, dO, 1.0, False, path=path)
        ok = allowed(B, Tq, Tk)
        O_ref, lse_ref, _ = ref_forward(Q, K, V, 1.0, ok)
        assert_close(O, O_ref, 1e-12)
        assert_close(LSE, lse_ref, 1e-12)
        for got, want in zip((dQ, dK, dV), ref_backward(Q, K, V, dO, 1.0, ok)):
            assert_close(got, want, 1e-12)


# --- bad arguments ----------------------------------------------------------------

def _arrays(dtype=np.float64, B=4, Tq=3, Tk=5, d=2, dv=3):
    rng = np.random.default_rng(12)
    Q, K, V, dO = inputs(rng, B, Tq, Tk, d, dv, dtype)
    return dict(Q=Q, K=K, V=V, O=np.empty_like(dO), LSE=np.empty((B, Tq)))


@pytest.mark.parametrize("change, error, words", [
    (dict(Q=np.zeros((4, 3), np.float64)), ValueError, "Q must be 3-dimensional"),
    (dict(K=np.zeros((4, 6, 2))), ValueError, "V has shape"),
    (dict(K=np.zeros((4, 5, 3))), ValueError, "K has shape"),
    (dict(V=np.zeros((3, 5, 3))), ValueError, "V has shape"),
    (dict(O=np.zeros((4, 3, 2))), ValueError, "O has shape"),
    (dict(K=np.zeros((4, 5, 2), np.float32)), TypeError, "K must have the dtype of Q"),
    (dict(O=np.zeros((4, 3, 3), np.float32)), TypeError, "O must have the dtype of Q"),
    (dict(Q=np.zeros((4, 3, 2), np.int64)), TypeError, "Q must have dtype float32 or float64"),
    (dict(V=np.zeros((4, 3, 5)).transpose(0, 2, 1)), ValueError, "V must be C-contiguous"),
    (dict(LSE=np.zeros((4, 3), np.float32)), TypeError, "LSE must be a float64"),
    (dict(LSE=np.zeros((4, 4))), ValueError, "LSE has shape"),
    (dict(mask=np.ones((3, 5), np.float64)), ValueError, "mask must have dtype bool or uint8"),
    (dict(mask=np.ones((3, 4), bool)), ValueError, "mask has shape"),
    (dict(mask=np.ones((4, 3, 5), bool)), ValueError, "mask has shape"),  # batch is 2
    (dict(mask=np.ones((5, 3), bool).T), ValueError, "mask must be C-contiguous"),
    (dict(mask=[[1] * 5] * 3), ValueError, "mask must be a numpy.ndarray"),
    (dict(key_padding=np.ones((2, 5), np.int32)), ValueError, "key_padding must have dtype"),
    (dict(key_padding=np.ones((4, 5), bool)), ValueError, "key_padding has shape"),
    (dict(key_padding=np.ones((2, 3), bool)), ValueError, "key_padding has shape"),
    (dict(heads=3), ValueError, "not a whole number of samples of 3 heads"),
    (dict(heads=0), ValueError, "heads must be >= 1"),
    (dict(heads=2.0), TypeError, "heads must be an int"),
    (dict(scale=float("nan")), ValueError, "scale must be a finite"),
    (dict(scale="1"), ValueError, "scale must be a finite"),
    (dict(causal=1), TypeError, "causal must be True or False"),
    (dict(path="fast"), ValueError, "path must be one of"),
])
def test_forward_rejects(change, error, words):
    args = dict(_arrays(), heads=2)
    args.update(change)
    with pytest.raises(error, match=words):
        attention.forward(**args)


def test_outputs_must_not_overlap_inputs():
    args = _arrays(dv=2)
    args["O"] = args["Q"]
    with pytest.raises(ValueError, match="O and Q share memory"):
        attention.forward(**args)
    a = _arrays()
    O = np.empty_like(a["O"])
    attention.forward(**dict(a, O=O))
    grads = dict(dQ=np.empty_like(a["Q"]), dK=np.empty_like(a["K"]), dV=a["V"])
    with pytest.raises(ValueError, match="dV and V share memory"):
        attention.backward(a["Q"], a["K"], a["V"], O, O.copy(), a["LSE"], **grads)


def test_backward_rejects_bad_arguments():
    a = _arrays()
    O = attention.forward(**dict(a, O=np.empty_like(a["O"])))
    dO = np.ones_like(O)
    good = dict(Q=a["Q"], K=a["K"], V=a["V"], O=O, dO=dO, LSE=a["LSE"],
                dQ=np.empty_like(a["Q"]), dK=np.empty_like(a["K"]), dV=np.empty_like(a["V"]))
    attention.backward(**good)
    for name, bad, error, words in [
            ("dO", np.ones((4, 3, 2)), ValueError, "dO has shape"),
            ("LSE", None, TypeError, "LSE must be a float64"),
            ("dK", np.empty((4, 5, 2), np.float32), TypeError, "dK must have the dtype"),
            ("dQ", np.empty((4, 3, 2))[::-1], ValueError, "dQ must be C-contiguous"),
            ("dV", np.empty((4, 5, 4)), ValueError, "dV has shape")]:
        with pytest.raises(error, match=words):
            attention.backward(**dict(good, **{name: bad}))
    readonly = np.empty_like(a["Q"])
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="dQ is written in place"):
        attention.backward(**dict(good, dQ=readonly))


def test_blas_size_limit_is_checked():
    """Sizes past BLAS's 32-bit int are refused before any arithmetic (arrays
    with a zero-length axis are C-contiguous and hold nothing)."""
    Q = np.empty((0, 2**31, 1))
    K = V = np.empty((0, 1, 1))
    with pytest.raises(ValueError, match="attention query length is 2147483648"):
        attention.forward(Q, K, V, np.empty((0, 2**31, 1)), None)


# --- heads read and written in place ---------------------------------------------

def _heads(blocks, heads):
    """(batch * heads, T, w) blocks -> a (batch, T, heads, w) view of the
    columns of a wider (batch * T, 3 * heads * w) array, as a projection's."""
    B, T, w = blocks.shape
    batch = B // heads
    wide = np.full((batch * T, 3 * heads * w), np.nan, blocks.dtype)
    view = wide[:, heads * w:2 * heads * w].reshape(batch, T, heads, w)
    view[...] = blocks.reshape(batch, heads, T, w).transpose(0, 2, 1, 3)
    return view


def _blocks(view):
    batch, T, heads, w = view.shape
    return np.ascontiguousarray(view.transpose(0, 2, 1, 3)).reshape(batch * heads, T, w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("causal", [False, True])
def test_head_views_give_the_bits_of_blocks(dtype, path, causal):
    """Q, K, V, O and the gradients as (batch, T, heads, w) views of wider
    arrays give exactly what contiguous blocks give, and write nothing else."""
    rng = np.random.default_rng(31)
    heads, Tq, Tk = 2, 37, 45
    Q, K, V, dO = inputs(rng, 3 * heads, Tq, Tk, 4, 5, dtype)
    kpad = rng.random((3, Tk)) > 0.2
    O, LSE = np.empty_like(dO), np.empty((3 * heads, Tq))
    attention.forward(Q, K, V, O, LSE, None, causal, None, kpad, heads, path)
    grads = [np.empty_like(x) for x in (Q, K, V)]
    attention.backward(Q, K, V, O, dO, LSE, *grads, None, causal, None, kpad, heads, path)

    Qh, Kh, Vh, dOh = (_heads(x, heads) for x in (Q, K, V, dO))
    Oh, LSE2 = _heads(np.zeros_like(dO), heads), np.empty_like(LSE)
    attention.forward(Qh, Kh, Vh, Oh, LSE2, None, causal, None, kpad, heads, path)
    np.testing.assert_array_equal(_blocks(Oh), O)
    np.testing.assert_array_equal(LSE2, LSE)
    # The three gradients in one array's columns, as a self-attention's.
    batch = 3
    wide = np.full((batch * Tq, 2 * heads * 4 + heads * 5), np.nan, dtype)
    wide_k = np.full((batch * Tk, 2 * heads * 4 + heads * 5), np.nan, dtype)
    dQh = wide[:, :heads * 4].reshape(batch, Tq, heads, 4)
    dKh = wide_k[:, heads * 4:2 * heads * 4].reshape(batch, Tk, heads, 4)
    dVh = wide_k[:, 2 * heads * 4:].reshape(batch, Tk, heads, 5)
    attention.backward(Qh, Kh, Vh, Oh, dOh, LSE2, dQh, dKh, dVh, None, causal, None, kpad,
                       heads, path)
    for got, want in zip((dQh, dKh, dVh), grads):
        np.testing.assert_array_equal(_blocks(got), want)
    assert np.isnan(wide[:, heads * 4:]).all() and np.isnan(wide_k[:, :heads * 4]).all()
    P, P2 = np.empty((3 * heads, Tq, Tk), dtype), np.empty((3 * heads, Tq, Tk), dtype)
    attention.weights(Q, K, P, None, causal, None, kpad, heads)
    attention.weights(Qh, Kh, P2, None, causal, None, kpad, heads)
    np.testing.assert_array_equal(P2, P)


def test_head_views_are_checked():
    rng = np.random.default_rng(32)
    Q, K, V, dO = inputs(rng, 4, 3, 5, 2, 3, np.float64)
    Qh, Kh, Vh = (_heads(x, 2) for x in (Q, K, V))
    O = np.empty((2, 3, 2, 3))
    with pytest.raises(ValueError, match="has 2 heads, expected heads = 4"):
        attention.forward(Qh, Kh, Vh, O, None, heads=4)
    with pytest.raises(ValueError, match=r"K has shape \(2, 5, 2, 3\), expected"):
        attention.forward(Qh, np.zeros((2, 5, 2, 3)), Vh, O, None, heads=2)
    with pytest.raises(ValueError, match="last axis contiguous"):
        attention.forward(Qh, Kh, Vh, np.empty((2, 3, 6, 2)).transpose(0, 1, 3, 2)[:, :, :, :3],
                          None, heads=2)
    with pytest.raises(TypeError, match="V must have the dtype of Q"):
        attention.forward(Qh, Kh, Vh.astype(np.float32), O, None, heads=2)
    readonly = np.empty((2, 3, 2, 3))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="O is written in place"):
        attention.forward(Qh, Kh, Vh, readonly, None, heads=2)
    with pytest.raises(ValueError, match="O and Q share memory"):
        attention.forward(Qh, Kh, Vh, Qh.base.reshape(6, 12)[:, 4:10].reshape(2, 3, 2, 3),
                          None, heads=2)
