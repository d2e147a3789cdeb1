"""Feeding data to a model: mini-batches, splits, scaling and label encoding.

* :func:`iterate_batches` yields the sample indices of each mini-batch (a
  ``slice`` when not shuffling, so that contiguous input is never copied).
* :class:`BatchLoader` yields ``(x_batch, y_batch[, w_batch])`` gathered into
  buffers that are allocated once and reused for every batch. It reads
  ``np.memmap`` inputs batch by batch, never the whole file at once.
* :func:`train_test_split` splits arrays like scikit-learn's, optionally
  keeping the class proportions (``stratify``).
* :class:`StandardScaler` and :class:`MinMaxScaler` follow scikit-learn's
  fitted attributes; both have ``partial_fit`` so that data too large for
  memory can be fitted chunk by chunk (``fit`` does this on its own).
* :func:`one_hot` and :class:`LabelEncoder` turn labels into class indices
  and indicator rows.
* :func:`csv_to_npy` and :func:`concatenate_npy` write ``.npy`` files, in
  bounded memory, for data larger than memory: ``fit`` reads a file opened
  with ``np.load(path, mmap_mode="r")`` batch by batch.

Random choices take ``seed``: ``None`` (fresh entropy), an ``int`` or a
``numpy.random.Generator`` (used as is, so its state advances). The same
integer seed always gives the same result.
"""
import collections
import csv
import itertools
import math
import numbers
import os
import struct
import tempfile

import numpy as np

from cdl._validation import (
    as_float_array, as_float_dtype, check_bool, check_finite, check_number)

__all__ = [
    "iterate_batches", "BatchLoader", "train_test_split", "NotFittedError",
    "StandardScaler", "MinMaxScaler", "one_hot", "LabelEncoder", "csv_to_npy",
    "concatenate_npy",
]

#: Number of array elements that ``fit`` of a scaler converts to float64 at a
#: time (about 32 MB): larger inputs, memory maps in particular, are fitted
#: chunk by chunk through ``partial_fit``.
FIT_CHUNK_ELEMENTS = 1 << 22


# --- shared checks -----------------------------------------------------------

def as_generator(seed, name="seed"):
    """Return a ``numpy.random.Generator`` for ``seed`` (None, int or Generator).

    A Generator is returned as is (not copied), so drawing from the result
    advances it.
    """
    if seed is None or isinstance(seed, (np.random.Generator, np.random.SeedSequence)):
        return np.random.default_rng(seed)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"{name} must be None, an int or a numpy.random.Generator, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed}")
    return np.random.default_rng(int(seed))


def _as_array(x, name):
    """``x`` as an ndarray (memmaps and other ndarrays are not converted or copied)."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} could not be turned into an array: {err}") from None


def _check_real(arr, name, hint=""):
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers, got an array of dtype {arr.dtype}{hint}")


def _n_samples(arr, name):
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the samples), "
                         f"got a 0-d array")
    return arr.shape[0]


def _default_float(arr):
    """float32 for float32 input (any byte order), float64 for anything else."""
    return np.dtype(np.float32) if arr.dtype.kind == "f" and arr.dtype.itemsize == 4 \
        else np.dtype(np.float64)


# --- mini-batches ------------------------------------------------------------

def iterate_batches(n_samples, batch_size, shuffle=True, seed=None, drop_last=False):
    """Yield the sample indices of each mini-batch of an epoch.

    Parameters
    ----------
    n_samples : int
        Number of samples (>= 0).
    batch_size : int
        Samples per batch (>= 1). The last batch is smaller when
        ``batch_size`` does not divide ``n_samples`` (unless ``drop_last``).
    shuffle : bool, default True
        Visit the samples in a random order. When False the batches are
        ``slice`` objects in order, so ``x[batch]`` is a view, not a copy.
    seed : None, int or numpy.random.Generator, optional
        Source of the permutation when shuffling. A Generator is advanced, so
        passing the same one every epoch gives a new order each epoch.
    drop_last : bool, default False
        Skip the last batch if it is smaller than ``batch_size``.

    Yields
    ------
    slice or ndarray of int64
        ``slice(start, stop)`` when not shuffling, else an index array.

    Examples
    --------
    >>> list(iterate_batches(5, 2, shuffle=False))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    n_samples = check_number(n_samples, "n_samples", low=0, integer=True)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    shuffle = check_bool(shuffle, "shuffle")
    drop_last = check_bool(drop_last, "drop_last")
    rng = as_generator(seed) if shuffle else None
    return _batches(n_samples, batch_size, rng, drop_last)


def _batches(n_samples, batch_size, rng, drop_last):
    order = rng.permutation(n_samples) if rng is not None else None
    stop_at = n_samples - n_samples % batch_size if drop_last else n_samples
    for start in range(0, stop_at, batch_size):
        stop = min(start + batch_size, n_samples)
        yield slice(start, stop) if order is None else order[start:stop]


def _num_batches(n_samples, batch_size, drop_last):
    return n_samples // batch_size if drop_last else -(-n_samples // batch_size)


class _Gather:
    """Gathers the rows of one array into a reused buffer of ``out_dtype``."""

    def __init__(self, arr, out_dtype, rows):
        self.arr = arr
        self.is_memmap = isinstance(arr, np.memmap)
        self.same_dtype = arr.dtype == out_dtype
        shape = (rows,) + arr.shape[1:]
        self.out = np.empty(shape, dtype=out_dtype)
        # A staging buffer in the source dtype: np.take(out=) needs the exact
        # dtype, and a memmap is read in sorted order then permuted.
        need_stage = self.is_memmap or not self.same_dtype
        self.stage = np.empty(shape, dtype=arr.dtype) if need_stage else None

    def __call__(self, batch, order):
        if isinstance(batch, slice):
            m = batch.stop - batch.start
            if self.same_dtype and not self.is_memmap:
                return self.arr[batch]  # a view: nothing is copied
            out = self.out[:m]
            np.copyto(out, self.arr[batch], casting="unsafe")
            return out
        m = len(batch)
        out = self.out[:m]
        # mode="clip" (indices are valid anyway) keeps np.take from buffering.
        if self.is_memmap:
            # Read the rows in file order, then put them in the shuffled order.
            stage = self.stage[:m]
            np.take(self.arr, batch[order], axis=0, out=stage, mode="clip")
            out[order] = stage
        elif self.same_dtype:
            np.take(self.arr, batch, axis=0, out=out, mode="clip")
        else:
            stage = self.stage[:m]
            np.take(self.arr, batch, axis=0, out=stage, mode="clip")
            np.copyto(out, stage, casting="unsafe")
        return out


class BatchLoader:
    """Iterate over ``(x_batch, y_batch)`` (or ``(x_batch, y_batch, w_batch)``).

    Each epoch (each ``for`` loop over the loader) visits every sample once,
    in a new random order when ``shuffle`` is set. Batches are gathered into
    buffers allocated once, at construction, and **reused by every batch**:
    a yielded array is overwritten when the next batch is produced, so copy
    it (``x_batch.copy()``) if you keep it. When not shuffling and no dtype
    conversion is needed, in-memory inputs are yielded as views of ``x`` and
    ``y`` (no copy at all). Treat yielded arrays as read-only either way.

    ``np.memmap`` inputs (``x``, ``y`` or both) are read one batch at a time
    and never loaded whole: each batch's rows are read in increasing file
    order (the batch's indices are sorted first, for locality) and then
    placed in the shuffled order, so a memmap and the same data in memory
    give identical batches for the same seed. Memmap batches are always
    copied into the buffers, so they are ordinary in-memory arrays.

    Parameters
    ----------
    x : array_like, shape (n_samples, ...)
        Inputs. Any real dtype; read-only arrays and memmaps are fine.
    y : array_like, shape (n_samples, ...), optional
        Targets, yielded with their own dtype (encode string labels with
        :class:`LabelEncoder` first). ``None`` yields ``y_batch=None``.
    batch_size : int, default 32
    shuffle : bool, default True
    seed : None, int or numpy.random.Generator, optional
        Seeds the loader's generator once, at construction: two loaders made
        with the same int seed yield the same sequence of epochs.
    dtype : {'float32', 'float64'}, optional
        dtype of the yielded ``x_batch`` (and ``w_batch``), converted batch by
        batch. Default: float32 if ``x`` is float32, else float64.
    sample_weight : array_like, shape (n_samples,), optional
        Non-negative finite per-sample weights, converted to ``dtype`` once
        (in memory, even if given as a memmap); when given, each item is
        ``(x_batch, y_batch, w_batch)``.
    drop_last : bool, default False
        Skip the last, smaller batch.

    Examples
    --------
    >>> x = np.arange(10.0).reshape(5, 2)
    >>> loader = BatchLoader(x, np.arange(5), batch_size=2, shuffle=False)
    >>> len(loader)
    3
    >>> [yb.tolist() for _, yb in loader]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(self, x, y=None, batch_size=32, shuffle=True, seed=None, dtype=None,
                 sample_weight=None, drop_last=False):
        x = _as_array(x, "x")
        n = _n_samples(x, "x")
        _check_real(x, "x")
        self.batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
        self.shuffle = check_bool(shuffle, "shuffle")
        self.drop_last = check_bool(drop_last, "drop_last")
        self.dtype = _default_float(x) if dtype is None else as_float_dtype(dtype)
        self.seed = seed
        self._rng = as_generator(seed)
        if y is not None:
            y = _as_array(y, "y")
            _check_real(y, "y", " (encode labels with cdl.data.LabelEncoder)")
            if _n_samples(y, "y") != n:
                raise ValueError(f"x and y have different numbers of samples: {n} and {len(y)}")
        if sample_weight is not None:
            sample_weight = as_float_array(sample_weight, self.dtype, "sample_weight")
            if sample_weight.shape != (n,):
                raise ValueError(f"sample_weight has shape {sample_weight.shape}, "
                                 f"expected ({n},) (one weight per sample)")
            check_finite(sample_weight, "sample_weight")
            if (sample_weight < 0).any():
                raise ValueError("sample_weight must be non-negative")
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.n_samples = n
        rows = min(self.batch_size, n)
        self._columns = [_Gather(x, self.dtype, rows)]
        if y is not None:
            self._columns.append(_Gather(y, y.dtype, rows))
        if sample_weight is not None:
            self._columns.append(_Gather(sample_weight, self.dtype, rows))
        self._sort = any(c.is_memmap for c in self._columns)

    def __len__(self):
        """Number of batches in one epoch."""
        return _num_batches(self.n_samples, self.batch_size, self.drop_last)

    def __iter__(self):
        rng = self._rng if self.shuffle else None
        for batch in _batches(self.n_samples, self.batch_size, rng, self.drop_last):
            order = np.argsort(batch, kind="stable") \
                if self._sort and not isinstance(batch, slice) else None
            items = [gather(batch, order) for gather in self._columns]
            if self.y is None:
                items.insert(1, None)
            yield tuple(items)

    def __repr__(self):
        return (f"BatchLoader(n_samples={self.n_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, dtype='{self.dtype.name}')")


# --- splitting ---------------------------------------------------------------

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
    arrays = [_as_array(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    lengths = [_n_samples(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
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
        labels = _as_array(stratify, "stratify")
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
                f"{_list_values(single)} {'has' if single.size == 1 else 'have'} only one")
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


def _list_values(values, limit=10):
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:limit])
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return f"[{shown}{more}]"


# --- scalers -----------------------------------------------------------------

class NotFittedError(ValueError, AttributeError):
    """Raised when a scaler or encoder is used before ``fit``.

    Examples
    --------
    >>> from cdl import data
    >>> try:
    ...     data.StandardScaler().transform([[1.0]])
    ... except data.NotFittedError as error:
    ...     print(error)
    this StandardScaler is not fitted yet; call fit or partial_fit before transform
    """


class _Scaler:
    """Shared machinery: input checks, chunked fit, transform dtype, state."""

    _state_keys = ()

    def __init__(self):
        self.n_samples_seen_ = 0
        self.n_features_in_ = None

    # Subclasses implement _reset(), _update(chunk64), _finish(), _apply(x),
    # _unapply(x) and the state keys.

    def _check_fitted(self, method):
        if not self.n_samples_seen_:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit or "
                f"partial_fit before {method}")

    def _check_2d(self, x, name="x"):
        x = _as_array(x, name)
        _check_real(x, name)
        if x.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D (n_samples, n_features), got shape {x.shape}")
        if self.n_features_in_ is not None and x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} has {x.shape[1]} features, but this {type(self).__name__} "
                f"was fitted with {self.n_features_in_}")
        return x

    def fit(self, x):
        """Fit to ``x`` of shape (n_samples, n_features), replacing any earlier fit.

        Inputs larger than ``FIT_CHUNK_ELEMENTS`` elements (memory maps in
        particular) are read and converted chunk by chunk through
        :meth:`partial_fit`, so they are never loaded whole.
        """
        self._reset()
        x = self._check_2d(x)
        rows = max(1, FIT_CHUNK_ELEMENTS // max(1, x.shape[1]))
        if x.shape[0] == 0:
            raise ValueError("x has no samples to fit")
        for start in range(0, x.shape[0], rows):
            self.partial_fit(x[start:start + rows])
        return self

    def partial_fit(self, x):
        """Update the fit with one more batch ``x`` (n_samples, n_features).

        Fitting batches one after another gives the same result as ``fit``
        on their concatenation (up to rounding).
        """
        x = self._check_2d(x)
        if x.shape[0] == 0:
            return self
        chunk = np.asarray(x, dtype=np.float64)
        check_finite(chunk, "x")
        if self.n_features_in_ is None:
            self.n_features_in_ = x.shape[1]
        self._update(chunk)
        self._finish()
        return self

    def fit_transform(self, x):
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def _prepare(self, x, out, method):
        self._check_fitted(method)
        x = self._check_2d(x)
        x = as_float_array(x, _default_float(x), "x")
        check_finite(x, "x")
        if out is None:
            out = np.empty_like(x)
        else:
            if not isinstance(out, np.ndarray) or out.shape != x.shape \
                    or out.dtype not in (np.float32, np.float64):
                raise ValueError(
                    f"out must be a float32 or float64 ndarray of shape {x.shape}")
            if not out.flags.writeable:
                raise ValueError("out is read-only")
        return x, out

    def transform(self, x, out=None):
        """Scale ``x`` (n_samples, n_features).

        float32 input gives float32 output; any other real dtype gives
        float64. Pass ``out`` (may be ``x`` itself) to write in place.
        """
        x, out = self._prepare(x, out, "transform")
        self._apply(x, out)
        return out

    def inverse_transform(self, x, out=None):
        """Undo :meth:`transform`."""
        x, out = self._prepare(x, out, "inverse_transform")
        self._unapply(x, out)
        return out

    def state_dict(self):
        """The fitted state as a dict of plain NumPy arrays and ints."""
        self._check_fitted("state_dict")
        state = {"n_samples_seen_": int(self.n_samples_seen_)}
        for key in self._state_keys:
            state[key] = np.array(getattr(self, key), dtype=np.float64)
        return state

    def load_state_dict(self, state_dict):
        """Restore a state from :meth:`state_dict` (further ``partial_fit`` continues it)."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        expected = {"n_samples_seen_", *self._state_keys}
        missing = expected - set(state_dict)
        unknown = set(state_dict) - expected
        if missing or unknown:
            raise ValueError(
                f"state_dict does not fit {type(self).__name__}: "
                f"missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
        n_seen = check_number(state_dict["n_samples_seen_"], "n_samples_seen_", low=1,
                              integer=True)
        arrays = {}
        for key in self._state_keys:
            arr = as_float_array(state_dict[key], np.float64, key).copy()
            if arr.ndim != 1:
                raise ValueError(f"{key} must be 1-D, got shape {arr.shape}")
            check_finite(arr, key)
            arrays[key] = arr
        sizes = {arr.shape[0] for arr in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(
                "state_dict arrays have different lengths: "
                + ", ".join(f"{k} {v.shape[0]}" for k, v in arrays.items()))
        self._check_state(arrays)
        self._reset()
        self.n_samples_seen_ = n_seen
        self.n_features_in_ = sizes.pop()
        for key, arr in arrays.items():
            setattr(self, key, arr)
        self._after_load()
        self._finish()

    def _check_state(self, arrays):
        pass

    def _after_load(self):
        pass

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _constant_features(var, mean, n):
    """Features whose variance is rounding noise (scikit-learn's test)."""
    eps = np.finfo(np.float64).eps
    return var <= n * eps * var + (n * mean * eps) ** 2


class StandardScaler(_Scaler):
    """Standardise features: ``z = (x - mean_) / scale_``.

    Parameters
    ----------
    with_mean : bool, default True
        Subtract the mean.
    with_std : bool, default True
        Divide by the (population, ddof=0) standard deviation.

    Attributes
    ----------
    mean_ : ndarray of float64, shape (n_features,)
    var_ : ndarray of float64, shape (n_features,)
        Population variance of each feature.
    scale_ : ndarray of float64, shape (n_features,), or None
        ``sqrt(var_)``, with 1 for constant features (so they map to 0
        instead of dividing by zero); ``None`` when ``with_std=False``.
    n_samples_seen_ : int
    n_features_in_ : int

    Notes
    -----
    ``partial_fit`` merges each batch's mean and sum of squared deviations
    into the running ones with the pairwise update of Chan, Golub and
    LeVeque (Welford's update generalised to batches), which is stable in
    float64 however many batches are merged.

    Examples
    --------
    >>> scaler = StandardScaler().fit([[0.0, 1.0], [2.0, 1.0]])
    >>> scaler.mean_.tolist(), scaler.scale_.tolist()
    ([1.0, 1.0], [1.0, 1.0])
    >>> scaler.transform([[2.0, 5.0]]).tolist()
    [[1.0, 4.0]]
    """

    _state_keys = ("mean_", "var_")

    def __init__(self, with_mean=True, with_std=True):
        super().__init__()
        self.with_mean = check_bool(with_mean, "with_mean")
        self.with_std = check_bool(with_std, "with_std")
        self._reset()

    def get_config(self):
        """Constructor arguments as a dict."""
        return {"with_mean": self.with_mean, "with_std": self.with_std}

    def _reset(self):
        self.n_samples_seen_ = 0
        self.n_features_in_ = None
        self.mean_ = self.var_ = self.scale_ = None
        self._m2 = None

    def _update(self, chunk):
        nb = chunk.shape[0]
        mean_b = chunk.mean(axis=0)
        m2_b = ((chunk - mean_b) ** 2).sum(axis=0)
        na = self.n_samples_seen_
        if na == 0:
            self.mean_, self._m2 = mean_b, m2_b
        else:
            n = na + nb
            delta = mean_b - self.mean_
            self.mean_ = self.mean_ + delta * (nb / n)
            self._m2 = self._m2 + m2_b + delta ** 2 * (na * nb / n)
        self.n_samples_seen_ = na + nb

    def _check_state(self, arrays):
        if (arrays["var_"] < 0).any():
            raise ValueError("var_ must be >= 0")

    def _after_load(self):
        self._m2 = self.var_ * self.n_samples_seen_

    def _finish(self):
        n = self.n_samples_seen_
        self.var_ = self._m2 / n
        if self.with_std:
            scale = np.sqrt(self.var_)
            scale[_constant_features(self.var_, self.mean_, n)] = 1.0
            self.scale_ = scale
        else:
            self.scale_ = None

    def _apply(self, x, out):
        if self.with_mean:
            np.subtract(x, self.mean_.astype(x.dtype), out=out)
        else:
            np.copyto(out, x)
        if self.with_std:
            np.divide(out, self.scale_.astype(x.dtype), out=out)

    def _unapply(self, x, out):
        if self.with_std:
            np.multiply(x, self.scale_.astype(x.dtype), out=out)
        else:
            np.copyto(out, x)
        if self.with_mean:
            np.add(out, self.mean_.astype(x.dtype), out=out)


class MinMaxScaler(_Scaler):
    """Scale each feature to ``feature_range``: ``x * scale_ + min_``.

    Parameters
    ----------
    feature_range : (float, float), default (0, 1)
        Target ``(low, high)`` with ``low < high``.
    clip : bool, default False
        Clip transformed values to ``feature_range`` (for data outside the
        fitted range).

    Attributes
    ----------
    data_min_, data_max_ : ndarray of float64, shape (n_features,)
        Per-feature minimum and maximum seen in fitting.
    data_range_ : ndarray of float64, shape (n_features,)
        ``data_max_ - data_min_``.
    scale_ : ndarray of float64, shape (n_features,)
        ``(high - low) / data_range_``; a constant feature (zero range) gets
        ``high - low`` (its range counts as 1), so it maps to ``low``.
    min_ : ndarray of float64, shape (n_features,)
        ``low - data_min_ * scale_``.
    n_samples_seen_ : int
    n_features_in_ : int

    Examples
    --------
    >>> scaler = MinMaxScaler().fit([[0.0], [4.0]])
    >>> scaler.transform([[1.0], [2.0]]).ravel().tolist()
    [0.25, 0.5]
    """

    _state_keys = ("data_min_", "data_max_")

    def __init__(self, feature_range=(0, 1), clip=False):
        super().__init__()
        try:
            low, high = feature_range
        except (TypeError, ValueError):
            raise TypeError(
                f"feature_range must be a pair (low, high), got {feature_range!r}") from None
        low = check_number(low, "feature_range[0]")
        high = check_number(high, "feature_range[1]")
        if not low < high:
            raise ValueError(
                f"feature_range must have low < high, got {tuple(feature_range)!r}")
        self.feature_range = (low, high)
        self.clip = check_bool(clip, "clip")
        self._reset()

    def get_config(self):
        """Constructor arguments as a dict."""
        return {"feature_range": self.feature_range, "clip": self.clip}

    def _reset(self):
        self.n_samples_seen_ = 0
        self.n_features_in_ = None
        self.data_min_ = self.data_max_ = self.data_range_ = None
        self.scale_ = self.min_ = None

    def _update(self, chunk):
        low, high = chunk.min(axis=0), chunk.max(axis=0)
        if self.n_samples_seen_:
            low = np.minimum(low, self.data_min_)
            high = np.maximum(high, self.data_max_)
        self.data_min_, self.data_max_ = low, high
        self.n_samples_seen_ += chunk.shape[0]

    def _check_state(self, arrays):
        if (arrays["data_min_"] > arrays["data_max_"]).any():
            raise ValueError("data_min_ is larger than data_max_ for some features")

    def _finish(self):
        low, high = self.feature_range
        self.data_range_ = self.data_max_ - self.data_min_
        safe_range = np.where(self.data_range_ == 0.0, 1.0, self.data_range_)
        self.scale_ = (high - low) / safe_range
        self.min_ = low - self.data_min_ * self.scale_

    def _apply(self, x, out):
        np.multiply(x, self.scale_.astype(x.dtype), out=out)
        np.add(out, self.min_.astype(x.dtype), out=out)
        if self.clip:
            np.clip(out, *self.feature_range, out=out)

    def _unapply(self, x, out):
        np.subtract(x, self.min_.astype(x.dtype), out=out)
        np.divide(out, self.scale_.astype(x.dtype), out=out)


# --- labels ------------------------------------------------------------------

def one_hot(labels, num_classes=None, dtype="float32"):
    """Indicator rows for integer class labels.

    Parameters
    ----------
    labels : array_like of int, any shape
        Class indices in ``[0, num_classes)``. Floats are accepted if they
        are whole numbers.
    num_classes : int, optional
        Default: ``labels.max() + 1``.
    dtype : {'float32', 'float64'}, default 'float32'

    Returns
    -------
    ndarray, shape ``labels.shape + (num_classes,)``

    Examples
    --------
    >>> one_hot([0, 2], num_classes=3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    dtype = as_float_dtype(dtype)
    labels = _as_array(labels, "labels")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            raise ValueError("labels must be whole numbers (class indices)")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "biu":
        raise TypeError(
            f"labels must be integer class indices, got dtype {labels.dtype} "
            "(encode other labels with cdl.data.LabelEncoder)")
    labels = labels.astype(np.int64, copy=False)
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {labels.min()}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    else:
        num_classes = check_number(num_classes, "num_classes", low=1, integer=True)
        if labels.size and labels.max() >= num_classes:
            raise ValueError(
                f"labels must be < num_classes={num_classes}, got {labels.max()}")
    out = np.zeros(labels.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, labels[..., None], 1, axis=-1)
    return out


class LabelEncoder:
    """Map arbitrary labels to ``0`` to ``n_classes - 1`` (in sorted label order).

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
        The sorted distinct labels; label ``classes_[i]`` is encoded as ``i``.

    Examples
    --------
    >>> enc = LabelEncoder().fit(["cat", "dog", "cat"])
    >>> enc.classes_.tolist(), enc.transform(["dog", "cat"]).tolist()
    (['cat', 'dog'], [1, 0])
    """

    def __init__(self):
        self.classes_ = None

    @staticmethod
    def _check_labels(y, name="y"):
        y = _as_array(y, name)
        if y.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
        if y.dtype.kind == "f" and np.isnan(y).any():
            raise ValueError(f"{name} contains NaN")
        if y.dtype.kind not in "biufUSO":
            raise TypeError(f"{name} must hold numbers or strings, got dtype {y.dtype}")
        return y

    def _check_fitted(self, method):
        if self.classes_ is None:
            raise NotFittedError(
                f"this LabelEncoder is not fitted yet; call fit before {method}")

    def fit(self, y):
        """Learn the distinct labels of ``y`` (1-D)."""
        y = self._check_labels(y)
        try:
            self.classes_ = np.unique(y)
        except TypeError as err:  # object arrays of mixed types
            raise TypeError(f"y holds labels that cannot be sorted: {err}") from None
        return self

    def transform(self, y):
        """Encode ``y`` as int64 indices into ``classes_``.

        Raises ``ValueError`` naming any label not seen in ``fit``.
        """
        self._check_fitted("transform")
        y = self._check_labels(y)
        if y.size == 0:
            return np.zeros(0, dtype=np.int64)
        codes = None
        same_kind = (self.classes_.dtype.kind in "biuf") == (y.dtype.kind in "biuf")
        if same_kind and "O" not in (y.dtype.kind, self.classes_.dtype.kind):
            try:
                codes = np.searchsorted(self.classes_, y)
                clipped = np.minimum(codes, len(self.classes_) - 1)
                codes = np.where(self.classes_[clipped] == y, clipped, -1)
            except TypeError:  # e.g. bytes against str
                codes = None
        if codes is None:  # compare one by one
            index = {c: i for i, c in enumerate(self.classes_.tolist())}
            codes = np.array([index.get(v, -1) for v in y.tolist()], dtype=np.int64)
        if (codes < 0).any():
            unseen = list(dict.fromkeys(y[codes < 0].tolist()))
            try:
                unseen.sort()
            except TypeError:
                pass
            raise ValueError(f"y contains labels not seen in fit: {_list_values(unseen)}")
        return codes.astype(np.int64)

    def fit_transform(self, y):
        """``fit(y)`` then ``transform(y)``."""
        return self.fit(y).transform(y)

    def inverse_transform(self, codes):
        """Labels for int codes in ``[0, n_classes)``."""
        self._check_fitted("inverse_transform")
        codes = _as_array(codes, "codes")
        if codes.dtype.kind not in "iu" and not (codes.size == 0):
            raise TypeError(f"codes must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64, copy=False)
        if codes.size and (codes.min() < 0 or codes.max() >= len(self.classes_)):
            bad = codes[(codes < 0) | (codes >= len(self.classes_))]
            raise ValueError(
                f"codes must be in [0, {len(self.classes_)}), got {_list_values(np.unique(bad))}")
        return self.classes_[codes]

    def state_dict(self):
        """``{"classes_": ndarray}``."""
        self._check_fitted("state_dict")
        return {"classes_": self.classes_.copy()}

    def load_state_dict(self, state_dict):
        """Restore ``classes_`` from :meth:`state_dict`."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"classes_"}:
            raise ValueError("state_dict must be a dict with the single key 'classes_'")
        classes = self._check_labels(state_dict["classes_"], "classes_")
        if classes.size and not (classes[1:] > classes[:-1]).all():
            raise ValueError("classes_ must be sorted and distinct")
        self.classes_ = classes.copy()

    def get_config(self):
        """Constructor arguments as a dict (none)."""
        return {}

    def __repr__(self):
        return "LabelEncoder()"


# --- files larger than memory --------------------------------------------------

#: Bytes that :func:`concatenate_npy` copies at a time.
_COPY_CHUNK_BYTES = 1 << 24

#: Values per chunk that :func:`csv_to_npy` parses at a time by default.
_CSV_CHUNK_VALUES = 1 << 20


def _npy_header(dtype, shape, length=None):
    """A version 1.0 ``.npy`` header, padded with spaces to ``length`` bytes
    (default: the next multiple of 64, as NumPy pads)."""
    fields = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                   "fortran_order": False, "shape": tuple(shape)})
    magic = np.lib.format.magic(1, 0)
    minimum = len(magic) + 2 + len(fields) + 1
    length = -(-minimum // 64) * 64 if length is None else length
    text = fields + " " * (length - minimum) + "\n"
    return magic + struct.pack("<H", len(text)) + text.encode("latin1")


def _split_fields(line, delimiter):
    """The cells of one CSV line (quotes removed), as ``np.loadtxt`` reads them."""
    if delimiter is None:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter), [])


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return "_" not in cell  # float() takes 1_000, np.loadtxt does not


def _csv_target_columns(target_columns, names, n_columns, path):
    """(indices of the target columns, whether y is 1-D) from ``target_columns``."""
    if target_columns is None:
        return [], False
    single = isinstance(target_columns, (numbers.Integral, str))
    columns = [target_columns] if single else list(target_columns)
    indices = []
    for column in columns:
        if isinstance(column, str):
            if names is None:
                raise ValueError(f"target column {column!r} is a name, but {path} has "
                                 "no header line")
            if column not in names:
                raise ValueError(f"{path} has no column {column!r}; its columns are "
                                 f"{_list_values(names)}")
            index = names.index(column)
        elif isinstance(column, numbers.Integral) and not isinstance(column, bool):
            if not -n_columns <= column < n_columns:
                raise ValueError(f"target column {column} is out of range: {path} has "
                                 f"{n_columns} columns")
            index = int(column) % n_columns
        else:
            raise TypeError("target_columns must be an int, a column name, a list of them "
                            f"or None, got {column!r}")
        if index in indices:
            raise ValueError(f"target column {column!r} is given twice")
        indices.append(index)
    if len(indices) == n_columns:
        raise ValueError(f"every column of {path} is a target: no input columns are left")
    return indices, single and bool(indices)


def _explain_bad_rows(path, numbered, delimiter, n_columns, error):
    """Raise a ValueError naming the first line of ``numbered`` that
    ``np.loadtxt`` could not read (wrong number of fields, not a number)."""
    for line_number, line in numbered:
        cells = _split_fields(line, delimiter)
        if len(cells) != n_columns:
            raise ValueError(f"{path}, line {line_number}: {len(cells)} fields, expected "
                             f"{n_columns}")
        for column, cell in enumerate(cells, 1):
            if not _is_number(cell):
                what = "an empty cell" if not cell.strip() else f"{cell!r} is not a number"
                raise ValueError(f"{path}, line {line_number}, column {column}: {what}")
    first, last = numbered[0][0], numbered[-1][0]
    raise ValueError(f"{path}, lines {first} to {last}: {error}")


def _parse_csv_chunk(path, numbered, delimiter, n_columns):
    """The float64 values of the lines ``numbered`` ((line number, text) pairs)."""
    try:
        values = np.loadtxt([line for _, line in numbered], dtype=np.float64,
                            delimiter=delimiter, comments=None, quotechar='"', ndmin=2)
    except ValueError as error:
        values, problem = None, error
    if values is None or values.shape[1] != n_columns:
        _explain_bad_rows(path, numbered, delimiter, n_columns,
                          problem if values is None else "wrong number of fields")
    _check_finite_cells(path, values, numbered, range(n_columns))
    return values


def _check_finite_cells(path, values, numbered, columns, parsed=None):
    """Raise naming the line and column of the first NaN or infinity of
    ``values``, or of the first value of ``parsed`` that became one when
    converted to ``values``' dtype."""
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        if parsed is None:
            shown, cause = values[row, column], ("cdl refuses NaN and infinity in training "
                                                 "data: fill in or drop missing values first")
        else:
            shown, cause = parsed[row, column], f"too large for {values.dtype.name}"
        raise ValueError(f"{path}, line {numbered[row][0]}, column {columns[column] + 1}: "
                         f"{shown} ({cause})")


def _check_integer_targets(path, values, dtype, numbered, columns):
    """Raise unless every target value fits the integer ``dtype`` exactly."""
    info = np.iinfo(dtype)
    bad = (values != np.round(values)) | (values < info.min) | (values > info.max)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"{path}, line {numbered[row][0]}, column {columns[column] + 1}: "
                         f"target {values[row, column]} is not a {dtype.name}")


def _whole(values):
    """True if every value is a whole number that float64 holds exactly."""
    return bool((np.abs(values) < 2 ** 53).all()) and np.array_equal(values, np.round(values))


def _read_csv_lines(text):
    """(line number, line) for each line of ``text`` that is not blank."""
    for line_number, line in enumerate(text, 1):
        if line.strip():
            yield line_number, line


def _csv_chunks(lines, chunk_rows):
    chunk = []
    for item in lines:
        chunk.append(item)
        if len(chunk) == chunk_rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


#: What ``csv_to_npy`` parses and writes, for the helpers of its one pass.
_CsvSpec = collections.namedtuple("_CsvSpec", "path delimiter n_columns x_columns y_columns "
                                               "dtype target_dtype chunk_rows")


def csv_to_npy(path, out_dir, target_columns=-1, *, delimiter=",", header="infer",
               dtype="float32", target_dtype=None, chunk_rows=None):
    """Convert a CSV file of numbers, possibly larger than memory, to ``.npy`` files.

    Writes the input columns to ``out_dir/x.npy`` and the target columns to
    ``out_dir/y.npy``, reading and parsing ``chunk_rows`` lines at a time,
    so that memory use does not grow with the file. Each file is written to
    a temporary file in ``out_dir`` and renamed into place once complete: a
    conversion that fails leaves no partial file behind (and an earlier
    ``x.npy`` or ``y.npy`` as it was). Open the results with
    ``np.load(path, mmap_mode="r")`` to train on them (as returned here).

    Parameters
    ----------
    path : str or path-like
        The CSV file (UTF-8). Blank lines are skipped; quoted cells are read.
    out_dir : str or path-like
        Directory for ``x.npy`` and ``y.npy``, created if missing.
    target_columns : int, str, list of them, or None, default -1
        The target column(s), by position (negative counts from the end) or
        by header name: an int or a name gives ``y`` of shape ``(n,)``, a
        list gives ``(n, len(list))`` in the list's order. ``None`` or an
        empty list writes ``x.npy`` only (an existing ``y.npy`` is left as
        is). The other columns, in file order, are ``x``.
    delimiter : str or None, default ","
        The cell separator (``"\\t"``, ``";"``...); ``None`` splits on runs
        of whitespace.
    header : {"infer", True, False}, default "infer"
        Whether the first line holds column names. ``"infer"``: it does if
        any of its cells is not a number.
    dtype : {'float32', 'float64'}, default 'float32'
        dtype of ``x``.
    target_dtype : dtype, optional
        dtype of ``y`` (a float or integer dtype). Default: int64 if every
        target value is a whole number (such as ``3`` or ``3.0``) smaller
        than 2**53 in magnitude, as class labels are; else ``dtype``.
    chunk_rows : int, optional
        Lines parsed at a time. Default: about a million values' worth, at
        most 65536 lines.

    Returns
    -------
    x : numpy.memmap, shape (n_samples, n_inputs)
        ``x.npy``, opened read-only with ``mmap_mode="r"``.
    y : numpy.memmap or None
        ``y.npy`` likewise, or None without target columns.

    Raises
    ------
    ValueError
        Naming the file and line: a cell that is not a number (empty cells
        included), NaN or infinity (cdl refuses them in training data: fill
        in missing values first), a line with another number of fields than
        the first, a target that is not a whole number for an integer
        ``target_dtype``; and a file without data lines, a target column out
        of range or not in the header, or no input column left.
    TypeError
        For an invalid ``dtype``, ``target_dtype`` or ``target_columns``.

    Examples
    --------
    >>> import os
    >>> with open("data.csv", "w") as f:
    ...     _ = f.write("height,weight,label\\n1.5,60,0\\n1.8,85,1\\n1.6,70,0\\n")
    >>> x, y = csv_to_npy("data.csv", "data", target_columns="label")
    >>> x.shape, x.dtype, y.tolist()
    ((3, 2), dtype('float32'), [0, 1, 0])
    >>> sorted(os.listdir("data"))
    ['x.npy', 'y.npy']
    """
    from cdl.io import _atomic_write

    path = os.fspath(path)
    dtype = as_float_dtype(dtype)
    target_dtype = None if target_dtype is None else _target_dtype(target_dtype)
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1
                                  or delimiter in '"\n\r'):
        raise ValueError(f"delimiter must be one character (not a quote or a line break) "
                         f"or None, got {delimiter!r}")
    if isinstance(header, str):
        if header != "infer":
            raise ValueError(f"header must be 'infer', True or False, got {header!r}")
    else:
        # Not ``header in (True, False)``: 1 would pass that test and then
        # read as "no header" (the header is tested with ``is True`` below).
        header = check_bool(header, "header")
    if chunk_rows is not None:
        chunk_rows = check_number(chunk_rows, "chunk_rows", low=1, integer=True)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    x_path, y_path = os.path.join(out_dir, "x.npy"), os.path.join(out_dir, "y.npy")

    with open(path, encoding="utf-8-sig") as text, \
            tempfile.TemporaryFile(dir=out_dir) as y_values:
        lines = _read_csv_lines(text)
        first = next(lines, None)
        if first is None:
            raise ValueError(f"{path} is empty")
        cells = _split_fields(first[1], delimiter)
        has_header = header is True or (
            header == "infer" and not all(_is_number(c) for c in cells))
        names = [c.strip() for c in cells] if has_header else None
        y_columns, single = _csv_target_columns(target_columns, names, len(cells), path)
        x_columns = [c for c in range(len(cells)) if c not in y_columns]
        if not has_header:
            lines = itertools.chain([first], lines)
        rows = chunk_rows or min(65536, max(1, _CSV_CHUNK_VALUES // len(cells)))

        spec = _CsvSpec(path, delimiter, len(cells), x_columns, y_columns, dtype,
                        target_dtype, rows)

        def write_x(f):
            # The header is rewritten with the number of rows at the end:
            # padded to the length it has for the largest possible count.
            length = len(_npy_header(dtype, (10 ** 19 - 1, len(x_columns))))
            f.write(_npy_header(dtype, (0, len(x_columns)), length))
            n, whole = _write_csv_values(spec, lines, f, y_values)
            f.seek(0)
            f.write(_npy_header(dtype, (n, len(x_columns)), length))
            f.seek(0, os.SEEK_END)
            if y_columns:
                # Written before x.npy is renamed into place, so that a
                # failure here leaves both files as they were.
                y_dtype = target_dtype or (np.dtype(np.int64) if whole else dtype)
                shape = (n,) if single else (n, len(y_columns))
                y_values.seek(0)
                _atomic_write(y_path, lambda g: _write_converted(g, y_values, shape, y_dtype))

        _atomic_write(x_path, write_x)
    x = np.load(x_path, mmap_mode="r")
    return x, (np.load(y_path, mmap_mode="r") if y_columns else None)


def _write_csv_values(spec, lines, x_file, y_file):
    """Parse ``lines`` chunk by chunk, writing the inputs to ``x_file`` (in
    ``spec.dtype``) and the targets to ``y_file`` (raw float64); return the
    number of rows and whether every target is a whole number."""
    n, whole = 0, True
    for numbered in _csv_chunks(lines, spec.chunk_rows):
        values = _parse_csv_chunk(spec.path, numbered, spec.delimiter, spec.n_columns)
        with np.errstate(over="ignore"):  # values too large for float32 are reported
            inputs = np.ascontiguousarray(values[:, spec.x_columns], dtype=spec.dtype)
        _check_finite_cells(spec.path, inputs, numbered, spec.x_columns,
                            values[:, spec.x_columns])
        x_file.write(inputs.data)
        if spec.y_columns:
            targets = np.ascontiguousarray(values[:, spec.y_columns])
            _check_targets(spec, targets, numbered)
            whole = whole and _whole(targets)
            y_file.write(targets.data)
        n += len(numbered)
    if n == 0:
        raise ValueError(f"{spec.path} has a header line but no data lines")
    return n, whole


def _check_targets(spec, targets, numbered):
    """Raise unless the targets convert exactly to an integer ``target_dtype``,
    or to a finite float one (the float dtype ``y`` may get)."""
    if spec.target_dtype is not None and spec.target_dtype.kind in "iu":
        _check_integer_targets(spec.path, targets, spec.target_dtype, numbered, spec.y_columns)
        return
    with np.errstate(over="ignore"):
        converted = targets.astype(spec.target_dtype or spec.dtype)
    _check_finite_cells(spec.path, converted, numbered, spec.y_columns, targets)


def _target_dtype(target_dtype):
    try:
        resolved = np.dtype(target_dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.kind not in "iuf":
        raise TypeError(f"target_dtype must be a float or integer dtype, got {target_dtype!r}")
    return resolved


def _write_converted(f, source, shape, dtype):
    """Write a ``.npy`` of ``shape`` and ``dtype`` from the raw float64 values
    of the file ``source``, converted a chunk at a time."""
    f.write(_npy_header(dtype, shape))
    remaining = math.prod(shape)
    per_chunk = _COPY_CHUNK_BYTES // 8
    while remaining:
        count = min(per_chunk, remaining)
        chunk = np.frombuffer(source.read(count * 8), dtype=np.float64)
        f.write(chunk.astype(dtype).data)
        remaining -= count


def _npy_sources(sources, out_path):
    """The shard paths: a directory's ``*.npy`` files in name order (but
    ``out_path``), or the given paths."""
    if isinstance(sources, (str, os.PathLike)) and os.path.isdir(sources):
        directory = os.fspath(sources)
        paths = [os.path.join(directory, name) for name in sorted(os.listdir(directory))
                 if name.endswith(".npy") and os.path.isfile(os.path.join(directory, name))]
        paths = [p for p in paths if not (os.path.exists(out_path)
                                          and os.path.samefile(p, out_path))]
        if not paths:
            raise ValueError(f"{directory} holds no .npy files")
        return paths
    if isinstance(sources, (str, os.PathLike)):
        raise ValueError(f"{os.fspath(sources)} is not a directory (pass a directory or a "
                         "list of .npy paths)")
    paths = [os.fspath(p) for p in sources]
    if not paths:
        raise ValueError("sources is empty: there is nothing to concatenate")
    return paths


def _open_shard(path):
    try:
        shard = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is not a .npy file of numbers that can be memory-mapped: "
                         f"{error}") from None
    if not isinstance(shard, np.ndarray) or shard.ndim == 0:
        raise ValueError(f"{path} holds a scalar, not an array of rows")
    return shard


def concatenate_npy(sources, out_path):
    """Concatenate ``.npy`` files along axis 0 into one, in bounded memory.

    For shards written separately (by several workers, or chunk by chunk)
    that should be trained on as one memory-mapped array. The shards are
    read a chunk of rows at a time from their files, never loaded whole,
    and the result is written to a temporary file renamed into place once
    complete, so that a failure leaves no partial file behind.

    Parameters
    ----------
    sources : str, path-like or list of them
        A directory, whose ``*.npy`` files are taken in sorted name order
        (so number them with leading zeros: ``part-0002.npy`` before
        ``part-0010.npy``) leaving out ``out_path`` itself; or a list of
        ``.npy`` paths, taken in that order.
    out_path : str or path-like
        The file to write.

    Returns
    -------
    numpy.memmap
        The result, opened read-only with ``mmap_mode="r"``.

    Raises
    ------
    ValueError
        Naming the offending file: a shard whose dtype or shape after axis
        0 differs from the first shard's, a file that is not a ``.npy``
        array (or holds Python objects), a 0-d array; or no shards at all.

    Examples
    --------
    >>> import os
    >>> import numpy as np
    >>> os.makedirs("parts")
    >>> np.save("parts/part-00.npy", np.zeros((2, 3), dtype=np.float32))
    >>> np.save("parts/part-01.npy", np.ones((1, 3), dtype=np.float32))
    >>> x = concatenate_npy("parts", "x.npy")
    >>> x.shape, x[:, 0].tolist()
    ((3, 3), [0.0, 0.0, 1.0])
    """
    from cdl._streaming import MemmapRows
    from cdl.io import _atomic_write

    out_path = os.fspath(out_path)
    paths = _npy_sources(sources, out_path)
    shards = [_open_shard(p) for p in paths]
    first = shards[0]
    for path, shard in zip(paths[1:], shards[1:]):
        if shard.dtype != first.dtype:
            raise ValueError(f"{path} holds {shard.dtype}, but {paths[0]} holds {first.dtype}: "
                             "every shard must have the same dtype")
        if shard.shape[1:] != first.shape[1:]:
            raise ValueError(f"{path} has rows of shape {shard.shape[1:]}, but {paths[0]} has "
                             f"{first.shape[1:]}: every shard must have the same shape "
                             "after axis 0")
    shape = (sum(s.shape[0] for s in shards),) + first.shape[1:]
    row_bytes = first.itemsize * math.prod(first.shape[1:])

    def write(f):
        f.write(_npy_header(first.dtype, shape))
        if not row_bytes:
            return
        rows = max(1, _COPY_CHUNK_BYTES // row_bytes)
        for path, shard in zip(paths, shards):
            with MemmapRows(shard, path) as reader:
                for start in range(0, shard.shape[0], rows):
                    f.write(reader.read(slice(start, start + rows), shard.dtype).data)

    _atomic_write(out_path, write)
    return np.load(out_path, mmap_mode="r")
