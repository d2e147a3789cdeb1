"""Preprocessing: feature scalers fitted chunk by chunk, one-hot rows and
label encoding.

:class:`StandardScaler` and :class:`MinMaxScaler` follow scikit-learn's
fitted attributes; both have ``partial_fit`` so that data too large for
memory can be fitted chunk by chunk (``fit`` does this on its own).
:func:`one_hot` and :class:`LabelEncoder` turn labels into class indices
and indicator rows.
"""
import numpy as np

from cdl._validation import as_float_array, as_float_dtype, check_bool, check_finite, check_number
from cdl.data._common import as_array, check_real, default_float, list_values

__all__ = ["NotFittedError", "StandardScaler", "MinMaxScaler", "one_hot", "LabelEncoder"]

#: Number of array elements that ``fit`` of a scaler converts to float64 at a
#: time (about 32 MB): larger inputs, memory maps in particular, are fitted
#: chunk by chunk through ``partial_fit``.
FIT_CHUNK_ELEMENTS = 1 << 22

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
        x = as_array(x, name)
        check_real(x, name)
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
        x = as_float_array(x, default_float(x), "x")
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
    labels = as_array(labels, "labels")
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
        y = as_array(y, name)
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
            raise ValueError(f"y contains labels not seen in fit: {list_values(unseen)}")
        return codes.astype(np.int64)

    def fit_transform(self, y):
        """``fit(y)`` then ``transform(y)``."""
        return self.fit(y).transform(y)

    def inverse_transform(self, codes):
        """Labels for int codes in ``[0, n_classes)``."""
        self._check_fitted("inverse_transform")
        codes = as_array(codes, "codes")
        if codes.dtype.kind not in "iu" and not (codes.size == 0):
            raise TypeError(f"codes must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64, copy=False)
        if codes.size and (codes.min() < 0 or codes.max() >= len(self.classes_)):
            bad = codes[(codes < 0) | (codes >= len(self.classes_))]
            raise ValueError(
                f"codes must be in [0, {len(self.classes_)}), got {list_values(np.unique(bad))}")
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

