"""Splitting arrays into train and test parts, like scikit-learn's
``train_test_split``, optionally keeping the class proportions."""
import math
import numbers

import numpy as np

from cdl._validation import check_bool
from cdl.data._common import as_array, as_generator, count_samples, list_values

__all__ = ["train_test_split"]


def _split_sizes(n, test_size):
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a float in (0, 1) or an int, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
        if not 1 <= n_test <= n - 1:
            raise ValueError(
                f"test_size={n_test} must be between 1 and n_samples - 1 = {n - 1}")
    else:
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size must be in (0, 1) as a fraction, got {test_size}")
        n_test = math.ceil(test_size * n)
        if n_test >= n:
            raise ValueError(
                f"test_size={test_size} leaves no training samples out of {n}")
    return n - n_test, n_test


def _stratified_test_counts(counts, n_test, rng):
    """Split ``n_test`` over classes proportionally (largest remainder)."""
    exact = counts * (n_test / counts.sum())
    take = np.floor(exact).astype(np.int64)
    short = n_test - take.sum()
    if short:
        remainder = exact - take
        # Largest remainders first; ties broken at random.
        tie_break = rng.permutation(len(counts))
        ranked = tie_break[np.argsort(-remainder[tie_break], kind="stable")]
        take[ranked[:short]] += 1
    return take


def train_test_split(*arrays, test_size=0.25, shuffle=True, stratify=None, seed=None):
    """Split arrays into random train and test parts, like scikit-learn's.

    Parameters
    ----------
    *arrays : array_like
        One or more arrays with the same number of samples (first axis).
    test_size : float or int, default 0.25
        A fraction in (0, 1) of the samples (rounded up) or a number of
        samples; both parts must keep at least one sample.
    shuffle : bool, default True
        Shuffle before splitting; when False the last ``n_test`` samples are
        the test part.
    stratify : array_like, shape (n_samples,), optional
        Class labels: each class is split in the proportion of the whole
        (up to rounding), so both parts keep the class proportions. Each
        class needs at least 2 members, and each part at least as many
        samples as there are classes. Requires ``shuffle=True``.
    seed : None, int or numpy.random.Generator, optional

    Returns
    -------
    list of ndarray
        ``[a_train, a_test, b_train, b_test, ...]`` for ``arrays = (a, b, ...)``.

    Examples
    --------
    >>> x_train, x_test, y_train, y_test = train_test_split(
    ...     np.zeros((8, 2)), np.arange(8), test_size=0.25, seed=0)
    >>> x_train.shape, x_test.shape
    ((6, 2), (2, 2))
    """
    if not arrays:
        raise ValueError("train_test_split needs at least one array")
    arrays = [as_array(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    lengths = [count_samples(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    if len(set(lengths)) > 1:
        raise ValueError(f"the arrays have different numbers of samples: {lengths}")
    n = lengths[0]
    if n < 2:
        raise ValueError(f"cannot split {n} sample(s) into train and test parts")
    n_train, n_test = _split_sizes(n, test_size)
    shuffle = check_bool(shuffle, "shuffle")
    rng = as_generator(seed)

    if stratify is not None:
        if not shuffle:
            raise ValueError("stratify requires shuffle=True")
        labels = as_array(stratify, "stratify")
        if labels.shape != (n,):
            raise ValueError(f"stratify has shape {labels.shape}, expected ({n},)")
        try:
            classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
        except TypeError as err:  # object arrays of mixed types
            raise TypeError(f"stratify holds labels that cannot be sorted: {err}") from None
        single = classes[counts < 2]
        if single.size:
            raise ValueError(
                "stratify: each class needs at least 2 members, but "
                f"{list_values(single)} {'has' if single.size == 1 else 'have'} only one")
        if n_test < len(classes) or n_train < len(classes):
            raise ValueError(
                f"stratify: with {len(classes)} classes both parts need at least "
                f"{len(classes)} samples; got {n_train} train and {n_test} test")
        test_counts = _stratified_test_counts(counts, n_test, rng)
        train_idx, test_idx = [], []
        for k in range(len(classes)):
            members = rng.permutation(np.flatnonzero(codes == k))
            test_idx.append(members[:test_counts[k]])
            train_idx.append(members[test_counts[k]:])
        train = rng.permutation(np.concatenate(train_idx))
        test = rng.permutation(np.concatenate(test_idx))
    elif shuffle:
        perm = rng.permutation(n)
        test, train = perm[:n_test], perm[n_test:]
    else:
        train, test = slice(0, n_train), slice(n_train, n)

    out = []
    for a in arrays:
        if isinstance(train, slice):
            out += [a[train], a[test]]
        else:
            out += [np.take(a, train, axis=0), np.take(a, test, axis=0)]
    return out

