"""Initialisers: statistics, fans, orthogonality, seeding, lookup by name."""
import numpy as np
import pytest

from cdl import initializers as init

SHAPE = (400, 300)
FAN_IN, FAN_OUT = 400, 300


def draw(initializer, shape=SHAPE, dtype=np.float64, seed=0):
    return init.get(initializer)(shape, dtype, np.random.default_rng(seed))


@pytest.mark.parametrize("name, expected_std", [
    ("glorot_uniform", np.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("glorot_normal", np.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("he_uniform", np.sqrt(2 / FAN_IN)),
    ("he_normal", np.sqrt(2 / FAN_IN)),
    ("lecun_uniform", np.sqrt(1 / FAN_IN)),
    ("lecun_normal", np.sqrt(1 / FAN_IN)),
])
def test_variance_scaling(name, expected_std):
    w = draw(name)
    assert w.shape == SHAPE
    assert abs(w.mean()) < 0.02 * expected_std * 10
    assert abs(w.std() / expected_std - 1) < 0.02
    if name.endswith("uniform"):
        limit = np.sqrt(3) * expected_std
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit


def test_constants_and_plain_distributions():
    assert np.all(draw("zeros", (3, 2)) == 0)
    assert np.all(draw("ones", (3,)) == 1)
    assert np.all(draw(init.Constant(0.25), (2, 2)) == 0.25)
    w = draw(init.RandomNormal(mean=1.0, stddev=0.5))
    assert abs(w.mean() - 1.0) < 0.01 and abs(w.std() - 0.5) < 0.01
    u = draw(init.RandomUniform(-2.0, 3.0))
    assert u.min() >= -2.0 and u.max() < 3.0 and abs(u.mean() - 0.5) < 0.05


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (3, 4, 5)])
def test_orthogonal(shape):
    w = draw(init.Orthogonal(gain=2.0), shape).reshape(-1, shape[-1])
    small = min(w.shape)
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-10)


def test_fans_of_conv_kernels():
    assert init.compute_fans((3, 3, 16, 32)) == (9 * 16, 9 * 32)
    assert init.compute_fans((10, 5)) == (10, 5)
    assert init.compute_fans((7,)) == (7, 7)


def test_seeded_and_dtype():
    a = draw("he_normal", (5, 5), np.float32, seed=1)
    b = draw("he_normal", (5, 5), np.float32, seed=1)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, draw("he_normal", (5, 5), np.float32, seed=2))
    np.testing.assert_allclose(a, draw("he_normal", (5, 5), np.float64, seed=1), rtol=1e-6)


def test_lookup():
    assert isinstance(init.get("xavier_uniform"), init.GlorotUniform)
    assert isinstance(init.get("kaiming_normal"), init.HeNormal)
    assert isinstance(init.get(init.Orthogonal), init.Orthogonal)
    custom = lambda shape, dtype, rng: np.full(shape, 3.0, dtype)  # noqa: E731
    assert init.get(custom) is custom
    with pytest.raises(ValueError, match="unknown initializer 'glorot'.*glorot_uniform"):
        init.get("glorot")
    with pytest.raises(TypeError):
        init.get(42)
    with pytest.raises(ValueError, match="rank >= 2"):
        draw("orthogonal", (5,))
