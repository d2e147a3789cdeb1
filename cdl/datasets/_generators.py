"""Seeded synthetic data sets for classification and regression.

Every generator takes ``seed`` (``None``, an ``int`` or a
``numpy.random.Generator``) and returns ``(X, y)`` with ``X`` float64 of
shape (n_samples, n_features) and ``y`` int64 class labels (float64 targets
for :func:`make_regression`). The same int seed gives the same data.
"""
import numbers

import numpy as np

from cdl._validation import check_bool, check_number
from cdl.data import as_generator

__all__ = ["make_xor", "make_moons", "make_circles", "make_spirals", "make_blobs",
           "make_regression"]


def _n_samples(n_samples, minimum=1):
    return check_number(n_samples, "n_samples", low=minimum, integer=True)


def _noise(noise, name="noise"):
    return 0.0 if noise is None else check_number(noise, name, low=0.0)


def _finish(X, y, rng, shuffle, noise):
    # Noise is drawn last, so the same seed gives the same order of samples
    # with or without noise.
    if shuffle:
        perm = rng.permutation(len(X))
        X, y = X[perm], y[perm]
    if noise:
        X += rng.normal(scale=noise, size=X.shape)
    return np.ascontiguousarray(X, dtype=np.float64), y


def _split_evenly(n, parts):
    """``n`` split into ``parts`` sizes differing by at most one (larger first)."""
    sizes = np.full(parts, n // parts, dtype=np.int64)
    sizes[: n % parts] += 1
    return sizes


def make_xor(n_samples=200, noise=0.1, *, shuffle=True, seed=None):
    """Noisy copies of the four XOR inputs: ``y = x0 XOR x1``.

    The samples are split evenly over the corners (0, 0), (0, 1), (1, 0),
    (1, 1) of the unit square, labelled 0, 1, 1, 0, and Gaussian noise of
    standard deviation ``noise`` is added to the coordinates. Not linearly
    separable; a network with one small hidden layer separates it.

    Parameters
    ----------
    n_samples : int, default 200
    noise : float or None, default 0.1
        Standard deviation of the noise (>= 0). With 0 or None, X holds only
        the four corners.
    shuffle : bool, default True
        Shuffle the samples (otherwise they cycle through the corners).
    seed : None, int or numpy.random.Generator, optional

    Returns
    -------
    X : ndarray of float64, shape (n_samples, 2)
    y : ndarray of int64, shape (n_samples,)

    Examples
    --------
    >>> from cdl import datasets
    >>> x, y = datasets.make_xor(8, noise=0.0, shuffle=False, seed=0)
    >>> x[:4], y[:4]
    (array([[0., 0.],
           [0., 1.],
           [1., 0.],
           [1., 1.]]), array([0, 1, 1, 0]))
    """
    n = _n_samples(n_samples)
    noise = _noise(noise)
    shuffle = check_bool(shuffle, "shuffle")
    rng = as_generator(seed)
    corner = np.arange(n) % 4
    X = np.stack([corner // 2, corner % 2], axis=1).astype(np.float64)
    y = (corner // 2 ^ corner % 2).astype(np.int64)
    return _finish(X, y, rng, shuffle, noise)


def make_moons(n_samples=100, noise=None, *, shuffle=True, seed=None):
    """Two interleaving half circles (scikit-learn's construction).

    Class 0 is the upper half of the unit circle centred at (0, 0); class 1
    is the lower half circle centred at (1, 0.5). ``n_samples // 2`` samples
    are in class 0, the rest in class 1.

    Parameters
    ----------
    n_samples : int, default 100
        At least 2.
    noise : float or None, default None
        Standard deviation of Gaussian noise added to X (>= 0).
    shuffle : bool, default True
    seed : None, int or numpy.random.Generator, optional

    Returns
    -------
    X : ndarray of float64, shape (n_samples, 2)
    y : ndarray of int64, shape (n_samples,)

    Examples
    --------
    >>> from cdl import datasets
    >>> x, y = datasets.make_moons(200, noise=0.1, seed=0)
    >>> x.shape, x.dtype, y.shape, y.dtype, int(y.sum())
    ((200, 2), dtype('float64'), (200,), dtype('int64'), 100)
    """
    n = _n_samples(n_samples, minimum=2)
    noise = _noise(noise)
    shuffle = check_bool(shuffle, "shuffle")
    rng = as_generator(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n_in)
    X = np.concatenate([
        np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
        np.stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1),
    ])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    return _finish(X, y, rng, shuffle, noise)


def make_circles(n_samples=100, noise=None, factor=0.8, *, shuffle=True, seed=None):
    """A circle inside a larger one (scikit-learn's construction).

    Class 0: ``n_samples // 2`` points evenly spaced on the unit circle;
    class 1: the rest, on the circle of radius ``factor``.

    Parameters
    ----------
    n_samples : int, default 100
        At least 2.
    noise : float or None, default None
        Standard deviation of Gaussian noise added to X (>= 0).
    factor : float, default 0.8
        Radius of the inner circle, in [0, 1).
    shuffle : bool, default True
    seed : None, int or numpy.random.Generator, optional

    Returns
    -------
    X : ndarray of float64, shape (n_samples, 2)
    y : ndarray of int64, shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import datasets
    >>> x, y = datasets.make_circles(100, factor=0.5, seed=0)
    >>> radius = np.hypot(x[:, 0], x[:, 1])
    >>> float(radius[y == 0].max().round(3)), float(radius[y == 1].max().round(3))
    (1.0, 0.5)
    """
    n = _n_samples(n_samples, minimum=2)
    noise = _noise(noise)
    factor = check_number(factor, "factor", low=0.0, high=1.0, high_inclusive=False)
    shuffle = check_bool(shuffle, "shuffle")
    rng = as_generator(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0.0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0.0, 2 * np.pi, n_in, endpoint=False)
    X = np.concatenate([
        np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
        factor * np.stack([np.cos(t_in), np.sin(t_in)], axis=1),
    ])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    return _finish(X, y, rng, shuffle, noise)


def make_spirals(n_samples=200, n_classes=2, noise=0.2, *, shuffle=True, seed=None):
    """Interleaved spiral arms, one per class.

    Class ``k`` has points at radius ``r`` from 0 to 1 and angle
    ``4 * (k + r) + noise * N(0, 1)`` (radians), i.e. ``(r sin a, r cos a)``:
    each arm turns through 4 radians, and the arms are rotated 4 radians
    apart. The samples are split over the classes as evenly as possible.

    Parameters
    ----------
    n_samples : int, default 200
        At least ``n_classes``.
    n_classes : int, default 2
        At least 2.
    noise : float or None, default 0.2
        Standard deviation of the angular noise, in radians (>= 0).
    shuffle : bool, default True
    seed : None, int or numpy.random.Generator, optional

    Returns
    -------
    X : ndarray of float64, shape (n_samples, 2)
    y : ndarray of int64, shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import datasets
    >>> x, y = datasets.make_spirals(300, n_classes=3, seed=0)
    >>> x.shape, np.bincount(y)
    ((300, 2), array([100, 100, 100]))
    """
    n_classes = check_number(n_classes, "n_classes", low=2, integer=True)
    n = check_number(n_samples, "n_samples", integer=True)
    if n < n_classes:
        raise ValueError(
            f"n_samples must be >= n_classes = {n_classes}, got {n}")
    noise = _noise(noise)
    shuffle = check_bool(shuffle, "shuffle")
    rng = as_generator(seed)
    parts, labels = [], []
    for k, m in enumerate(_split_evenly(n, n_classes)):
        r = np.linspace(0.0, 1.0, m)
        angle = 4.0 * (k + r)
        if noise:
            angle = angle + rng.normal(scale=noise, size=m)
        parts.append(np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1))
        labels.append(np.full(m, k, dtype=np.int64))
    return _finish(np.concatenate(parts), np.concatenate(labels), rng, shuffle, 0.0)


def make_blobs(n_samples=100, n_features=2, centers=3, cluster_std=1.0,
               center_box=(-10.0, 10.0), *, shuffle=True, seed=None,
               return_centers=False):
    """Isotropic Gaussian clusters.

    Parameters
    ----------
    n_samples : int, default 100
        Split over the clusters as evenly as possible (at least one each).
    n_features : int, default 2
        Ignored when ``centers`` is an array (its columns count).
    centers : int or array_like of shape (n_centers, n_features), default 3
        The number of clusters, whose centers are then drawn uniformly from
        ``center_box`` in each coordinate, or the centers themselves.
    cluster_std : float or sequence of float, default 1.0
        Standard deviation of each cluster (>= 0), one for all or one each.
    center_box : (float, float), default (-10.0, 10.0)
        Bounds of randomly drawn centers.
    shuffle : bool, default True
    seed : None, int or numpy.random.Generator, optional
    return_centers : bool, default False
        Also return the centers.

    Returns
    -------
    X : ndarray of float64, shape (n_samples, n_features)
    y : ndarray of int64, shape (n_samples,)
        The cluster of each sample.
    centers : ndarray of float64, shape (n_centers, n_features)
        Only if ``return_centers``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import datasets
    >>> x, y, centers = datasets.make_blobs(90, centers=3, seed=0, return_centers=True)
    >>> x.shape, np.bincount(y), centers.shape
    ((90, 2), array([30, 30, 30]), (3, 2))
    """
    n = _n_samples(n_samples)
    shuffle = check_bool(shuffle, "shuffle")
    return_centers = check_bool(return_centers, "return_centers")
    rng = as_generator(seed)
    if isinstance(centers, numbers.Integral) and not isinstance(centers, bool):
        k = check_number(centers, "centers", low=1, integer=True)
        n_features = check_number(n_features, "n_features", low=1, integer=True)
        try:
            low, high = center_box
        except (TypeError, ValueError):
            raise TypeError(f"center_box must be a pair (low, high), got {center_box!r}") \
                from None
        low = check_number(low, "center_box[0]")
        high = check_number(high, "center_box[1]")
        if not low < high:
            raise ValueError(f"center_box must have low < high, got {center_box!r}")
        center_array = rng.uniform(low, high, size=(k, n_features))
    else:
        if isinstance(centers, bool) or isinstance(centers, (str, bytes)):
            raise TypeError(f"centers must be an int or an array of centers, got {centers!r}")
        center_array = np.array(centers, dtype=np.float64)
        if center_array.ndim != 2 or center_array.shape[0] < 1 or center_array.shape[1] < 1:
            raise ValueError(
                f"centers must have shape (n_centers, n_features), got {center_array.shape}")
        if not np.isfinite(center_array).all():
            raise ValueError("centers contains NaN or infinity")
        k = center_array.shape[0]
    if n < k:
        raise ValueError(f"n_samples must be >= the number of centers = {k}, got {n}")
    if isinstance(cluster_std, numbers.Real) and not isinstance(cluster_std, bool):
        stds = np.full(k, check_number(cluster_std, "cluster_std", low=0.0))
    else:
        stds = np.asarray(
            [check_number(s, f"cluster_std[{i}]", low=0.0) for i, s in enumerate(cluster_std)])
        if stds.shape != (k,):
            raise ValueError(
                f"cluster_std has {stds.shape[0]} values, expected one per center ({k})")
    sizes = _split_evenly(n, k)
    y = np.repeat(np.arange(k, dtype=np.int64), sizes)
    X = center_array[y] + rng.normal(size=(n, center_array.shape[1])) * stds[y, None]
    X, y = _finish(X, y, rng, shuffle, 0.0)
    return (X, y, center_array) if return_centers else (X, y)


def make_regression(n_samples=100, n_features=10, n_informative=10, noise=0.0, bias=0.0,
                    coef=False, *, shuffle=True, seed=None):
    """A random linear regression problem (scikit-learn's construction).

    ``X`` is standard normal; the target is ``y = X @ w + bias + noise * N(0, 1)``
    where only ``n_informative`` weights are non-zero, drawn uniformly from
    [0, 100).

    Parameters
    ----------
    n_samples : int, default 100
    n_features : int, default 10
    n_informative : int, default 10
        Number of features with a non-zero weight (>= 0); values above
        ``n_features`` are clipped to it, as in scikit-learn.
    noise : float, default 0.0
        Standard deviation of the Gaussian noise on ``y`` (>= 0).
    bias : float, default 0.0
    coef : bool, default False
        Also return the true weights ``w``.
    shuffle : bool, default True
        Shuffle the samples and the features (else the informative features
        are the first ones).
    seed : None, int or numpy.random.Generator, optional

    Returns
    -------
    X : ndarray of float64, shape (n_samples, n_features)
    y : ndarray of float64, shape (n_samples,)
    w : ndarray of float64, shape (n_features,)
        Only if ``coef``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import datasets
    >>> x, y, coef = datasets.make_regression(50, n_features=3, coef=True, seed=0)
    >>> x.shape, y.shape, np.allclose(x @ coef, y)       # no noise: exactly linear
    ((50, 3), (50,), True)
    """
    n = _n_samples(n_samples)
    n_features = check_number(n_features, "n_features", low=1, integer=True)
    n_informative = min(check_number(n_informative, "n_informative", low=0, integer=True),
                        n_features)
    noise = _noise(noise)
    bias = check_number(bias, "bias")
    coef = check_bool(coef, "coef")
    shuffle = check_bool(shuffle, "shuffle")
    rng = as_generator(seed)
    X = rng.standard_normal((n, n_features))
    w = np.zeros(n_features)
    w[:n_informative] = 100.0 * rng.uniform(size=n_informative)
    if shuffle:
        X = X[rng.permutation(n)]
        cols = rng.permutation(n_features)
        X, w = np.ascontiguousarray(X[:, cols]), w[cols]
    y = X @ w + bias
    if noise:  # drawn last: the same seed gives the same X with or without noise
        y += rng.normal(scale=noise, size=n)
    return (X, y, w) if coef else (X, y)
