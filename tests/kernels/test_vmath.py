"""The vectorised float32 transcendental functions (cdl/_kernels/_vmath.h).

Checked against libm in float64 (numpy, scipy.special) rounded to float32
over a strided sweep of every float32 bit pattern (about 1e7 values, both
signs, denormals included), against mpmath's correctly rounded values on a
random sample, and exactly on the edges: NaN, +-inf, +-0, denormals and the
overflow and underflow thresholds. The float64 kernels call libm itself.
"""
import numpy as np
import pytest
import scipy.special

from cdl._kernels import vmath

# Largest error allowed, in float32 units in the last place (the bound
# stated in _vmath.h).
BOUNDS = {"exp": 2, "expm1": 2, "log": 2, "log1p": 2,
          "tanh": 3, "sigmoid": 3, "erf": 3, "softplus": 3}

REFERENCE = {
    "exp": np.exp,
    "expm1": np.expm1,
    "log": np.log,
    "log1p": np.log1p,
    "tanh": np.tanh,
    "sigmoid": scipy.special.expit,
    "erf": scipy.special.erf,
    "softplus": lambda x: np.logaddexp(0.0, x),
}

FLT_MAX = np.finfo(np.float32).max
FLT_MIN = np.finfo(np.float32).tiny            # smallest normal
DENORM_MIN = np.float32(2.0 ** -149)


def _ordered(a):
    """float32 values as integers that count ulps (-0 and +0 both map to 0)."""
    i = np.asarray(a, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(i < 0, -(i & 0x7FFFFFFF), i)


def ulp_distance(a, b):
    return np.abs(_ordered(a) - _ordered(b))


def reference(name, x):
    with np.errstate(all="ignore"):
        return REFERENCE[name](np.asarray(x, dtype=np.float64)).astype(np.float32)


def check_against(name, x, ref, bound):
    with np.errstate(all="ignore"):
        y = getattr(vmath, name)(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref),
                                  err_msg=f"{name}: NaN where the reference is not, or not NaN")
    keep = ~np.isnan(ref)
    d = ulp_distance(y[keep], ref[keep])
    worst = int(np.argmax(d)) if d.size else 0
    assert d.size == 0 or d[worst] <= bound, (
        f"{name}({x[keep][worst]!r}) = {y[keep][worst]!r}, reference {ref[keep][worst]!r}: "
        f"{d[worst]} ulp > {bound}")


@pytest.fixture(scope="module")
def sweep():
    """Every 401st float32 bit pattern (both signs), finite or not."""
    bits = np.arange(0, 2 ** 32, 401, dtype=np.uint64).astype(np.uint32)
    return bits.view(np.float32)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_strided_sweep_of_every_float32(name, sweep):
    check_against(name, sweep, reference(name, sweep), BOUNDS[name])


EDGES = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0, 0.5, -0.5, 2.0,
     FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN, DENORM_MIN, -DENORM_MIN,
     np.float32(2.0 ** -130), -np.float32(2.0 ** -130), np.float32(1.1754942e-38),
     # exp's overflow threshold (88.72284 overflows), its denormal range and
     # the underflow to 0, and the saturation of tanh, erf, sigmoid.
     88.72283, 88.72284, 88.7, 89.0, 100.0, -87.33654, -87.5, -100.0, -103.0,
     -103.97, -103.973, -104.0, -150.0, 9.0, -9.0, 9.1, 3.9, 4.0, -4.0, 10.0, 16.0,
     16.5, 17.0, -17.0, -20.0, -30.0, 0.625, -0.625, 0.62499994, 1e-4, -1e-4,
     1e-20, -1e-20, 1e-30, 0.99999994, 1.0000001, -0.99999994, -1.0000001,
     np.float32(0.70710677), np.float32(0.7071068), np.float32(1.4142135),
     np.float32(1.4142137)],
    dtype=np.float32)


def _all_edges():
    """The edge values, their neighbours one ulp either side, and NaNs with
    other payloads."""
    bits = EDGES.view(np.uint32)
    finite = np.isfinite(EDGES)
    around = np.concatenate([bits, bits[finite] + 1, bits[finite & (EDGES != 0)] - 1])
    nans = np.array([0x7FC00001, 0xFFC00000, 0x7F800001, 0x7FFFFFFF], dtype=np.uint32)
    return np.concatenate([around.astype(np.uint32), nans]).view(np.float32)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_edges(name):
    x = _all_edges()
    check_against(name, x, reference(name, x), BOUNDS[name])


def test_edges_exact_in_kind():
    f = np.float32
    with np.errstate(all="ignore"):
        # exp: overflow to inf from 88.72284, gradual underflow, then +0.
        assert vmath.exp(np.array([88.72283], f))[0] < np.inf
        assert vmath.exp(np.array([88.72284, 89.0, 1e30, np.inf], f)).tolist() == [np.inf] * 4
        tail = vmath.exp(np.array([-88.0, -100.0, -103.0], f))
        assert np.all((tail > 0) & (tail < FLT_MIN))           # denormal, not flushed
        assert vmath.exp(np.array([-104.0, -1e30, -np.inf], f)).tolist() == [0.0] * 3
        assert vmath.exp(np.array([DENORM_MIN, -DENORM_MIN, 0.0, -0.0], f)).tolist() == [1.0] * 4
        # log: 0 -> -inf, negative -> NaN, inf -> inf, denormals finite.
        y = vmath.log(np.array([0.0, -0.0, -1.0, -np.inf, np.inf, DENORM_MIN], f))
        assert y[:2].tolist() == [-np.inf, -np.inf]
        assert np.isnan(y[2]) and np.isnan(y[3]) and y[4] == np.inf
        assert y[5] == np.float32(np.log(2.0 ** -149))
        # log1p: -1 -> -inf, below -1 -> NaN, keeps tiny values and -0.
        y = vmath.log1p(np.array([-1.0, -2.0, 1e-30, -0.0, np.inf], f))
        assert y[0] == -np.inf and np.isnan(y[1]) and y[2] == f(1e-30) and y[4] == np.inf
        assert np.signbit(y[3])
        # tanh and erf reach +-1 exactly and keep the sign of zero.
        for name, big in (("tanh", 9.1), ("erf", 4.0)):
            fn = getattr(vmath, name)
            assert fn(np.array([big, 1e30, np.inf], f)).tolist() == [1.0] * 3
            assert fn(np.array([-big, -1e30, -np.inf], f)).tolist() == [-1.0] * 3
            z = fn(np.array([0.0, -0.0], f))
            assert z.tolist() == [0.0, 0.0] and not np.signbit(z[0]) and np.signbit(z[1])
        z = vmath.expm1(np.array([-0.0, 0.0, -np.inf, np.inf, -30.0], f))
        assert np.signbit(z[0]) and not np.signbit(z[1])
        assert z[2:].tolist() == [-1.0, np.inf, -1.0]
        # sigmoid and softplus at the ends.
        assert vmath.sigmoid(np.array([-np.inf, np.inf, 0.0, -0.0], f)).tolist() == [
            0.0, 1.0, 0.5, 0.5]
        assert vmath.softplus(np.array([-np.inf, np.inf, 100.0], f)).tolist() == [
            0.0, np.inf, 100.0]


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_nan_in_nan_out(name):
    x = np.array([0x7FC00000, 0xFFC00000, 0x7FC12345, 0x7F800001],
                 dtype=np.uint32).view(np.float32)
    with np.errstate(all="ignore"):
        assert np.isnan(getattr(vmath, name)(x)).all()


def test_bounded_and_monotone(sweep):
    # sigmoid is built as a chain of monotone steps (see _vmath.h); exp,
    # expm1, log and tanh are monotone too (checked exhaustively on every
    # float32 of [-104, 89] when they were written). erf and softplus may
    # step back by an ulp and are only checked for their range.
    x = sweep[~np.isnan(sweep)]
    # Dense where the formulas change: sigmoid at -87, tanh at 0.625, erf at 1 and 4.
    x = np.sort(np.concatenate([x, np.linspace(-12, 12, 2_000_001, dtype=np.float32),
                                np.linspace(-88, -86, 200_001, dtype=np.float32)]))
    with np.errstate(all="ignore"):
        for name in ("exp", "expm1", "log", "sigmoid", "tanh"):
            y = getattr(vmath, name)(x)
            y = y[~np.isnan(y)]
            assert not np.any(np.diff(y) < 0), f"{name} is not monotone"
        for name, lo, hi in (("sigmoid", 0.0, 1.0), ("tanh", -1.0, 1.0), ("erf", -1.0, 1.0)):
            y = getattr(vmath, name)(x)
            assert y.min() >= lo and y.max() <= hi, name


def test_random_sample_against_mpmath():
    mpmath = pytest.importorskip("mpmath", reason="mpmath gives the correctly rounded reference")
    rng = np.random.default_rng(18)
    x = np.concatenate([rng.uniform(-30, 30, 300), rng.standard_normal(300) * 2,
                        rng.uniform(0, 100, 100)]).astype(np.float32)
    fns = {
        "exp": mpmath.exp, "expm1": mpmath.expm1, "tanh": mpmath.tanh, "erf": mpmath.erf,
        "sigmoid": lambda v: 1 / (1 + mpmath.exp(-v)),
        "softplus": lambda v: mpmath.log(1 + mpmath.exp(v)),
        "log": lambda v: mpmath.log(v) if v > 0 else mpmath.mpf("nan"),
        "log1p": lambda v: mpmath.log(1 + v) if v > -1 else mpmath.mpf("nan"),
    }
    with mpmath.workdps(40):
        for name, fn in fns.items():
            # exp of the larger samples exceeds float32: the reference is inf there.
            with np.errstate(over="ignore"):
                ref = np.array([float(fn(mpmath.mpf(float(v)))) for v in x]).astype(np.float32)
            check_against(name, x, ref, BOUNDS[name])


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_float64_is_libm(name):
    x = np.random.default_rng(3).standard_normal(10_000) * 5
    if name in ("log", "log1p"):
        x = np.abs(x)
    y = getattr(vmath, name)(x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, REFERENCE[name](x), rtol=1e-15, atol=0)


def test_in_place_and_bad_input():
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    expected = vmath.tanh(x)
    assert vmath.tanh(x, x) is x
    np.testing.assert_array_equal(x, expected)
    with pytest.raises((TypeError, ValueError)):
        vmath.exp(np.arange(4))
    with pytest.raises((TypeError, ValueError)):
        vmath.exp(np.zeros(3, np.float32), np.zeros(3, np.float64))
    with pytest.raises((TypeError, ValueError)):
        vmath.exp(np.zeros(3, np.float32), np.zeros(4, np.float32))


def test_exp_neg_on_the_non_positive_floats(sweep):
    """exp for x <= 0 (the activations' exp): <= 2 ulp down to the underflow,
    denormals included, -inf -> 0, NaN -> NaN."""
    x = sweep[(sweep <= 0) | np.isnan(sweep)]
    x = np.concatenate([x, np.float32([0.0, -0.0, -np.inf, -87.33654, -103.97, -103.973,
                                       -104.0, -150.0, -1e-30])])
    check_against("exp_neg", x, reference("exp", x), 2)
    with np.errstate(all="ignore"):
        assert vmath.exp_neg(np.float32([-np.inf, -1e30, -104.0])).tolist() == [0.0] * 3
        tail = vmath.exp_neg(np.float32([-88.0, -100.0, -103.0]))
    assert np.all((tail > 0) & (tail < FLT_MIN))


def test_phi_bounds(sweep):
    """The GELU gate Phi(x): <= 12 ulp from -1.4 up (the small piece cancels
    a little on (-1.4, 0)), <= 64 ulp (2^-18 relative) in the negative tail
    down to -4 sqrt 2, within 35% further down (values below 8e-9, where
    float32's 1 + erf is 0), decreasing, and exact 0 and 1 at the ends."""
    def ref(x):
        return (0.5 * scipy.special.erfc(-np.asarray(x, np.float64) / np.sqrt(2.0))).astype(
            np.float32)
    dense = np.linspace(-1.4, 8.0, 2_000_001, dtype=np.float32)
    x = np.concatenate([dense, sweep[(sweep >= -1.4) & (sweep <= 1e30)]])
    check_against("phi", x, ref(x), 12)
    tail = np.linspace(-4 * np.sqrt(2.0), -1.4, 1_000_001, dtype=np.float32)
    tail = tail[tail >= np.float32(-4 * np.sqrt(2.0))]
    check_against("phi", tail, ref(tail), 64)
    far = np.linspace(-14.0, -4 * np.sqrt(2.0), 100_001, dtype=np.float32)
    y, r = vmath.phi(far).astype(np.float64), ref(far).astype(np.float64)
    keep = r > 1e-37
    assert np.all(np.abs(y[keep] / r[keep] - 1) <= 0.35)
    assert not np.any(np.diff(y) < 0)
    with np.errstate(all="ignore"):
        y = vmath.phi(np.float32([-20.0, -1e30, -np.inf, np.inf, 1e30, 0.0, np.nan]))
    assert y[:6].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 0.5] and np.isnan(y[6])
    x64 = np.random.default_rng(4).standard_normal(1000) * 4
    # float64 is libm's erfc of the same rounded argument (scipy's erfc differs by ulps).
    np.testing.assert_allclose(vmath.phi(x64), 0.5 * scipy.special.erfc(-x64 * 0.7071067811865476),
                               rtol=1e-14, atol=0)
