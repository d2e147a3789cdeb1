"""Evaluation metrics: plain functions and streaming metric objects.

The functions (``accuracy``, ``precision``, ``r2_score``, ...) take whole
arrays and return a Python float (or, for ``average=None`` and
``confusion_matrix``, an array). They follow scikit-learn's definitions;
where they differ, the docstring says so.

The metric objects (``Accuracy``, ``Precision``, ``R2``, ...) are for
evaluation over batches: ``update(y_true, y_pred, sample_weight=None)``
once per batch, then ``result()``. They accumulate sufficient statistics
(weighted counts, a confusion matrix, per-output sums), so the result over
the batches equals the function on the concatenated data, up to float
rounding. They read ``y_pred`` as what a model outputs: scores (logits) of
shape (n, classes) for a classifier, a single logit column (or shape (n,))
for a binary classifier, values for a regressor.

``get(identifier, loss=None)`` turns a name, a metric object or a callable
into a metric object; ``Sequential.compile(metrics=[...])`` goes through it.

Inputs are checked: lengths must match, NaN or infinity raises
``ValueError``, class labels must be non-negative whole numbers, and
sample weights must be finite and non-negative.
"""
import math
import numbers
import re

import numpy as np

from cdl._validation import (
    as_float_array, as_real_array, check_bool, check_finite, check_number, choose)

__all__ = [
    # functions
    "accuracy", "binary_accuracy", "top_k_accuracy", "confusion_matrix",
    "precision", "recall", "f1_score",
    "mean_squared_error", "mean_absolute_error", "root_mean_squared_error", "r2_score",
    # streaming metrics
    "Metric", "Mean", "MeanMetricWrapper", "Accuracy", "BinaryAccuracy", "TopKAccuracy",
    "Precision", "Recall", "F1Score", "MSE", "MAE", "RMSE", "R2",
    "get",
]

AVERAGES = ("macro", "micro", "weighted", None)

# Labels are cast to int64; larger floats are refused before the cast.
_MAX_LABEL = 2 ** 53


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------

def _as_array(x, name):
    """``x`` as an ndarray of real numbers (any numeric dtype), or raise."""
    arr = as_real_array(x, name)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array with one entry per sample, got a scalar")
    return arr


def _as_float(x, name):
    """``x`` as a finite float64 array with at least one dimension."""
    arr = as_float_array(_as_array(x, name), np.float64, name)
    check_finite(arr, name)
    return arr


def _check_lengths(n_true, n_pred):
    if n_true != n_pred:
        raise ValueError(f"y_true has {n_true} samples but y_pred has {n_pred}")


def _check_not_empty(n):
    if n == 0:
        raise ValueError("y_true and y_pred are empty; need at least one sample")


def _label_vector(arr, name):
    """Whole-number class labels of shape (n,) or (n, 1) as int64 (n,)."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} has shape {arr.shape}; expected class labels of shape (n,) "
            "or (n, 1), or scores / one-hot rows of shape (n, classes)")
    if arr.dtype.kind == "f":
        check_finite(arr, name)
        if not np.array_equal(arr, np.round(arr)):
            bad = np.flatnonzero(arr != np.round(arr))[0]
            raise ValueError(
                f"{name} must hold whole class labels, got {arr[bad]} at position {bad}"
                "; pass scores or probabilities with shape (n, classes)")
    if arr.dtype.kind in "iuf" and arr.size:
        bad = np.flatnonzero(arr < 0)
        if bad.size:
            raise ValueError(
                f"{name} contains the negative label {arr[bad[0]]} at position {bad[0]}; "
                "class labels must be 0, 1, 2, ...")
        bad = np.flatnonzero(arr >= _MAX_LABEL)
        if bad.size:
            raise ValueError(f"{name} contains the label {arr[bad[0]]} at position "
                             f"{bad[0]}, which is too large")
    return np.asarray(arr, dtype=np.int64)


def _class_labels(x, name):
    """Labels (int64, shape (n,)) and the number of columns of a 2-D input
    with more than one column (scores, one-hot or probabilities, read by
    argmax), else None."""
    arr = _as_array(x, name)
    if arr.ndim == 2 and arr.shape[1] > 1:
        scores = as_float_array(arr, np.float64, name)
        check_finite(scores, name)
        return np.argmax(scores, axis=1).astype(np.int64), arr.shape[1]
    return _label_vector(arr, name), None


def _is_single_column(arr):
    return arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1)


def _score_labels(y_pred, name="y_pred"):
    """How the metric objects read model outputs: (n, classes) scores give
    their argmax; a single column (or shape (n,)) holds binary logits,
    class 1 where the logit is > 0. Returns (labels, classes, binary)."""
    scores = _as_float(y_pred, name)
    if _is_single_column(scores):
        return (scores.reshape(-1) > 0).astype(np.int64), 2, True
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(
            f"{name} has shape {scores.shape}; expected scores of shape (n, classes) "
            "or a single logit column (n, 1) / (n,)")
    return np.argmax(scores, axis=1).astype(np.int64), scores.shape[1], False


def _per_position(y_true, y_pred):
    """Inputs with a score vector per position -- y_pred of shape
    (n, d1, ..., classes), e.g. a language model's (batch, T, vocab) -- as
    one row per position: y_true (labels of shape (n, d1, ...) or one-hot
    rows of y_pred's shape) and y_pred flattened to (n * d1 * ..., ...).
    Returns (y_true, y_pred, n, positions per sample), or None when y_pred
    has fewer than three axes or fewer than two classes."""
    p = _as_array(y_pred, "y_pred")  # names ragged lists and strings
    if p.ndim < 3 or p.shape[-1] < 2:
        return None  # a single score per position is not a class choice
    p = _as_float(p, "y_pred")
    t = _as_array(y_true, "y_true")
    lead, classes = p.shape[:-1], p.shape[-1]
    _check_lengths(t.shape[0], p.shape[0])
    if t.shape == lead + (1,) and t.shape != p.shape:
        t = t.reshape(lead)
    if t.shape == lead:
        t = t.reshape(-1)
    elif t.shape == p.shape:
        t = t.reshape(-1, classes)
    else:
        raise ValueError(
            f"y_true has shape {t.shape} but y_pred has shape {p.shape}; expected class "
            f"labels of shape {lead} or one-hot rows of shape {p.shape}")
    positions = int(np.prod(lead[1:], dtype=np.int64))
    return t, p.reshape(-1, classes), p.shape[0], positions


def _position_weights(sample_weight, n, positions):
    """Per-sample weights repeated over each sample's positions, or None."""
    w = _sample_weight(sample_weight, n)
    return None if w is None else np.repeat(w, positions)


def _check_range(labels, classes, name, why=""):
    if labels.size:
        bad = np.flatnonzero(labels >= classes)
        if bad.size:
            raise ValueError(
                f"{name} contains the label {labels[bad[0]]} at position {bad[0]}, "
                f"out of range for {classes} classes{why}")


def _resolve_classes(t, t_cols, p, p_cols, num_classes):
    """Number of classes K for labels ``t``/``p`` (from 2-D inputs of
    ``t_cols``/``p_cols`` columns, or None); checks every label is < K."""
    if t_cols is not None and p_cols is not None and t_cols != p_cols:
        raise ValueError(f"y_true has {t_cols} columns but y_pred has {p_cols}")
    cols = t_cols if t_cols is not None else p_cols
    if num_classes is not None:
        num_classes = check_number(num_classes, "num_classes", low=1, integer=True)
        if cols is not None and cols != num_classes:
            raise ValueError(f"the inputs have {cols} class columns but num_classes={num_classes}")
        classes = num_classes
    elif cols is not None:
        classes = cols
    else:
        classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    _check_range(t, classes, "y_true")
    _check_range(p, classes, "y_pred")
    return classes


def _sample_weight(sample_weight, n):
    """Validated weights as float64 of shape (n,), or None."""
    if sample_weight is None:
        return None
    w = as_float_array(_as_array(sample_weight, "sample_weight"), np.float64, "sample_weight")
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n,):
        raise ValueError(f"sample_weight has shape {w.shape}, expected ({n},) to match y_true")
    check_finite(w, "sample_weight")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative")
    return w


def _rows(a):
    """``a`` as 2-D (n, rest); unlike reshape(n, -1) this works for n = 0."""
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:], dtype=np.int64)))


def _weighted_mean(values, w):
    """Mean of ``values`` over axis 0, weighted by ``w`` (or unweighted)."""
    if w is None:
        return values.mean(axis=0)
    total = w.sum()
    if total == 0:
        raise ValueError("sample_weight sums to zero; nothing to average")
    return np.tensordot(w, values, axes=(0, 0)) / total


def _check_binary_targets(t, name="y_true", why=""):
    """0/1 targets (bool, int or float) as float64."""
    arr = as_float_array(t, np.float64, name)
    check_finite(arr, name)
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        bad = np.flatnonzero((arr.reshape(-1) != 0) & (arr.reshape(-1) != 1))[0]
        raise ValueError(
            f"{name} must hold 0/1 targets{why}, got {arr.reshape(-1)[bad]}")
    return arr


def _check_threshold(threshold, from_logits):
    from_logits = check_bool(from_logits, "from_logits")
    if from_logits:
        return check_number(threshold, "threshold", low=0.0, high=1.0,
                            low_inclusive=False, high_inclusive=False)
    return check_number(threshold, "threshold")


def _binary_correct(y_true, y_pred, threshold, from_logits):
    """Per-element correctness (n, m) float64 of thresholded predictions."""
    p = _as_float(y_pred, "y_pred")
    t = _as_array(y_true, "y_true")
    if t.shape != p.shape:
        if t.shape[0] == p.shape[0] and _is_single_column(t) and _is_single_column(p):
            t = t.reshape(p.shape)
        else:
            _check_lengths(t.shape[0], p.shape[0])
            raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    t = _check_binary_targets(t)
    p = _rows(p)
    t = _rows(t)
    if from_logits:
        # sigmoid(z) > t  <=>  z > log(t / (1 - t)), computed without rounding sigmoid.
        cut = math.log(threshold) - math.log1p(-threshold)
    else:
        cut = threshold
    return ((p > cut) == (t == 1)).astype(np.float64)


def _regression_inputs(y_true, y_pred, sample_weight):
    """(t, p, w): float64 arrays of shape (n, outputs) and weights (n,) or None."""
    t = _as_float(y_true, "y_true")
    p = _as_float(y_pred, "y_pred")
    _check_lengths(t.shape[0], p.shape[0])
    n = t.shape[0]
    if t.shape != p.shape and not (
            _is_single_column(t) and _is_single_column(p)):
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    w = _sample_weight(sample_weight, n)
    # Outputs are the trailing elements; (n,) is one output.
    return _rows(t), _rows(p), w


def _r2_from_sums(num, den):
    """Per-output R^2 from sum w (y - p)^2 and sum w (y - mean)^2, as
    scikit-learn with force_finite=True, averaged uniformly."""
    scores = np.ones_like(num)
    valid = (den != 0) & (num != 0)
    scores[valid] = 1.0 - num[valid] / den[valid]
    scores[(num != 0) & (den == 0)] = 0.0
    return float(scores.mean())


# ---------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------

def accuracy(y_true, y_pred, sample_weight=None):
    """Fraction of samples whose predicted class is the true class.

    Parameters
    ----------
    y_true : array-like
        Integer class labels of shape (n,) or (n, 1), or one-hot rows /
        class probabilities of shape (n, classes) (read by argmax).
    y_pred : array-like
        Scores of shape (n, classes) (read by argmax, so logits and
        probabilities both work) or predicted labels of shape (n,) or (n, 1).
        For a single column of binary scores use ``binary_accuracy``.
        Scores of shape (n, d1, ..., classes) (a sequence model's
        (batch, T, vocab)) are read per position, against labels of shape
        (n, d1, ...) or one-hot rows of their shape.
    sample_weight : array-like of shape (n,), optional
        Per sample; with scores per position, it weighs each of the
        sample's positions.

    Returns
    -------
    float
        The (weighted) mean of ``argmax == label``, as scikit-learn's
        ``accuracy_score`` for labels. Unlike scikit-learn, 2-D ``y_true``
        is read as one-hot rows, not as a multilabel indicator. Per
        position, the mean runs over all positions (Keras' rule).

    Examples
    --------
    >>> from cdl import metrics
    >>> metrics.accuracy([0, 1, 2, 1], [0, 2, 2, 1])                 # labels
    0.75
    >>> metrics.accuracy([0, 1], [[0.9, 0.1], [0.8, 0.2]])          # scores: argmax per row
    0.5
    """
    rows = _per_position(y_true, y_pred)
    if rows is not None:
        y_true, y_pred, n, positions = rows
        _check_not_empty(n * positions)
        sample_weight = _position_weights(sample_weight, n, positions)
    t, t_cols = _class_labels(y_true, "y_true")
    p, p_cols = _class_labels(y_pred, "y_pred")
    _check_lengths(t.shape[0], p.shape[0])
    _check_not_empty(t.shape[0])
    _resolve_classes(t, t_cols, p, p_cols, None)
    w = _sample_weight(sample_weight, t.shape[0])
    return float(_weighted_mean((t == p).astype(np.float64), w))


def binary_accuracy(y_true, y_pred, threshold=0.5, from_logits=False, sample_weight=None):
    """Fraction of binary predictions that match 0/1 targets.

    A prediction counts as 1 where ``y_pred > threshold``; with
    ``from_logits=True`` where ``sigmoid(y_pred) > threshold``, computed as
    ``y_pred > log(threshold / (1 - threshold))`` (so threshold 0.5 means
    logit > 0). Multi-column inputs (multi-label) are scored element-wise
    and averaged over all elements, as Keras' ``binary_accuracy`` (not the
    exact-row-match "subset accuracy" of scikit-learn's ``accuracy_score``).

    Parameters
    ----------
    y_true : array-like of 0/1 of shape (n,) or (n, m)
    y_pred : array-like of the shape of ``y_true``
        Probabilities, or logits with ``from_logits=True``. (n,) and (n, 1)
        are interchangeable.
    threshold : float
        In (0, 1) when ``from_logits`` is true.
    from_logits : bool
    sample_weight : array-like of shape (n,), optional
        Weight of each sample (row).

    Returns
    -------
    float

    Examples
    --------
    >>> from cdl import metrics
    >>> metrics.binary_accuracy([1, 0, 1, 0], [0.9, 0.4, 0.3, 0.1])    # probabilities, threshold 0.5
    0.75
    >>> metrics.binary_accuracy([1, 0], [2.0, -1.0], from_logits=True)
    1.0
    """
    threshold = _check_threshold(threshold, from_logits)
    correct = _binary_correct(y_true, y_pred, threshold, from_logits)
    _check_not_empty(correct.shape[0])
    w = _sample_weight(sample_weight, correct.shape[0])
    return float(_weighted_mean(correct, w).mean())


def _top_k_correct(t, scores, k):
    """Tie rule: correct iff fewer than k classes score strictly higher
    than the true class."""
    true_score = scores[np.arange(scores.shape[0]), t]
    higher = (scores > true_score[:, None]).sum(axis=1)
    return (higher < k).astype(np.float64)


def _top_k_inputs(y_true, y_pred, k):
    k = check_number(k, "k", low=1, integer=True)
    scores = _as_float(y_pred, "y_pred")
    if scores.ndim != 2:
        raise ValueError(f"y_pred has shape {scores.shape}; top-k accuracy needs "
                         "scores of shape (n, classes)")
    t, t_cols = _class_labels(y_true, "y_true")
    _check_lengths(t.shape[0], scores.shape[0])
    _resolve_classes(t, t_cols, t, scores.shape[1], None)
    return t, scores, k


def top_k_accuracy(y_true, y_pred, k=5, sample_weight=None):
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Ties: a sample counts as correct when fewer than ``k`` classes have a
    score strictly greater than the true class's score, so classes tied
    with the k-th largest score all count as within the top k (as
    TensorFlow's ``in_top_k``). scikit-learn's ``top_k_accuracy_score``
    instead breaks ties by class index (higher index first), so the two
    can differ only when scores tie across the k-th place.

    Parameters
    ----------
    y_true : array-like
        Labels of shape (n,) or (n, 1), or one-hot rows of shape (n, classes).
    y_pred : array-like of shape (n, classes)
        Scores (logits or probabilities); or (n, d1, ..., classes), read
        per position as in ``accuracy``.
    k : int >= 1
        With k >= classes every sample is correct.
    sample_weight : array-like of shape (n,), optional

    Returns
    -------
    float

    Examples
    --------
    >>> from cdl import metrics
    >>> scores = [[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]
    >>> metrics.top_k_accuracy([1, 0], scores, k=2)    # 1 is in the top 2 of row 0; 0 is not in row 1's
    0.5
    """
    rows = _per_position(y_true, y_pred)
    if rows is not None:
        y_true, y_pred, n, positions = rows
        _check_not_empty(n * positions)
        sample_weight = _position_weights(sample_weight, n, positions)
    t, scores, k = _top_k_inputs(y_true, y_pred, k)
    _check_not_empty(t.shape[0])
    w = _sample_weight(sample_weight, t.shape[0])
    return float(_weighted_mean(_top_k_correct(t, scores, k), w))


def _confusion(t, p, classes, w):
    flat = t * classes + p
    if w is None:
        return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)
    return np.bincount(flat, weights=w, minlength=classes * classes).reshape(classes, classes)


def _classification_inputs(y_true, y_pred, num_classes, sample_weight):
    t, t_cols = _class_labels(y_true, "y_true")
    p, p_cols = _class_labels(y_pred, "y_pred")
    _check_lengths(t.shape[0], p.shape[0])
    _check_not_empty(t.shape[0])
    classes = _resolve_classes(t, t_cols, p, p_cols, num_classes)
    w = _sample_weight(sample_weight, t.shape[0])
    return t, p, classes, w


def confusion_matrix(y_true, y_pred, num_classes=None, sample_weight=None):
    """Confusion matrix: entry [i, j] counts samples of true class i
    predicted as class j (rows true, columns predicted, as scikit-learn).

    Parameters
    ----------
    y_true, y_pred : array-like
        Labels of shape (n,) or (n, 1), or rows of scores / one-hot /
        probabilities of shape (n, classes) (read by argmax).
    num_classes : int, optional
        The classes are 0 .. num_classes - 1. By default the number of
        columns of a 2-D input, else the largest label + 1. Every class in
        that range has a row and a column, even if it never occurs (unlike
        scikit-learn, whose default is the sorted labels present).
    sample_weight : array-like of shape (n,), optional

    Returns
    -------
    ndarray of shape (num_classes, num_classes)
        int64 counts, or float64 sums of weights when ``sample_weight`` is
        given with a float dtype.

    Examples
    --------
    >>> from cdl import metrics
    >>> metrics.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1])
    array([[1, 0, 0],
           [0, 0, 1],
           [0, 1, 1]])
    """
    t, p, classes, w = _classification_inputs(y_true, y_pred, num_classes, sample_weight)
    # Checked above, so converting it again cannot fail.
    int_weights = sample_weight is not None and np.asarray(sample_weight).dtype.kind in "biu"
    cm = _confusion(t, p, classes, w)
    if int_weights:
        cm = np.rint(cm).astype(np.int64)
    return cm


def _prf(cm, present, which, average):
    """Precision, recall or F1 from a confusion matrix.

    ``present`` marks classes that occur in y_true or y_pred; the others
    are left out of the averages (scikit-learn averages over the labels
    present) and are 0 in the per-class array.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    pred = cm.sum(axis=0)
    true = cm.sum(axis=1)
    if which == "precision":
        num, den = tp, pred
    elif which == "recall":
        num, den = tp, true
    else:
        num, den = 2.0 * tp, pred + true
    if average == "micro":
        num, den = num[present].sum(), den[present].sum()
        return float(num / den) if den > 0 else 0.0
    # zero_division=0: a class with nothing predicted (precision), nothing
    # true (recall) or neither (F1) scores 0.
    per_class = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    per_class[~present] = 0.0
    if average is None:
        return per_class
    if not present.any():
        return 0.0
    if average == "macro":
        return float(per_class[present].mean())
    support = true[present]
    total = support.sum()
    return float((per_class[present] * support).sum() / total) if total > 0 else 0.0


def _prf_function(which, y_true, y_pred, average, num_classes, sample_weight):
    choose(average, AVERAGES, "average")
    t, p, classes, w = _classification_inputs(y_true, y_pred, num_classes, sample_weight)
    present = np.zeros(classes, dtype=bool)
    present[t] = True
    present[p] = True
    return _prf(_confusion(t, p, classes, w), present, which, average)


_PRF_DOC = """{title}

    Per class c: {formula}, or 0 where the denominator is 0 (scikit-learn's
    ``zero_division=0``, without the warning).

    Parameters
    ----------
    y_true, y_pred : array-like
        Labels of shape (n,) or (n, 1), or rows of scores / one-hot /
        probabilities of shape (n, classes) (read by argmax).
    average : {{"macro", "micro", "weighted", None}}
        "macro": unweighted mean over classes; "weighted": mean weighted by
        each class's (weighted) number of true samples; "micro": from the
        counts summed over classes (equal to the accuracy for single-label
        data); None: the per-class array. As in scikit-learn, the averages
        run over the classes present in y_true or y_pred; a class present
        in neither is left out (and is 0 in the per-class array).
        Binary data is treated as two classes; for scikit-learn's
        ``average="binary"`` (class 1 only) take ``average=None`` and index 1.
    num_classes : int, optional
        Classes are 0 .. num_classes - 1; see ``confusion_matrix``.
    sample_weight : array-like of shape (n,), optional

    Returns
    -------
    float, or ndarray of shape (num_classes,) when ``average`` is None

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import metrics
    >>> y_true, y_pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 0]
    >>> round(metrics.{fn}(y_true, y_pred), 4)    # macro average
    {macro}
    >>> np.round(metrics.{fn}(y_true, y_pred, average=None), 4)
    {per_class}
    """


def precision(y_true, y_pred, average="macro", num_classes=None, sample_weight=None):
    return _prf_function("precision", y_true, y_pred, average, num_classes, sample_weight)


def recall(y_true, y_pred, average="macro", num_classes=None, sample_weight=None):
    return _prf_function("recall", y_true, y_pred, average, num_classes, sample_weight)


def f1_score(y_true, y_pred, average="macro", num_classes=None, sample_weight=None):
    return _prf_function("f1", y_true, y_pred, average, num_classes, sample_weight)


precision.__doc__ = _PRF_DOC.format(
    title="Precision: of the samples predicted as class c, the fraction truly c.",
    formula="TP / (TP + FP)", fn="precision",
    macro="0.3889", per_class="array([0.5   , 0.6667, 0.    ])")
recall.__doc__ = _PRF_DOC.format(
    title="Recall: of the samples of true class c, the fraction predicted as c.",
    formula="TP / (TP + FN)", fn="recall",
    macro="0.5", per_class="array([0.5, 1. , 0. ])")
f1_score.__doc__ = _PRF_DOC.format(
    title="F1 score: the harmonic mean of precision and recall.",
    formula="2 TP / (2 TP + FP + FN)", fn="f1_score",
    macro="0.4333", per_class="array([0.5, 0.8, 0. ])")

_REGRESSION_DOC = """
    Parameters
    ----------
    y_true, y_pred : array-like of the same shape
        (n,) for one output, (n, outputs) for several; (n,) and (n, 1) are
        interchangeable, and further dimensions count as outputs.
    sample_weight : array-like of shape (n,), optional

    Returns
    -------
    float
        With several outputs, the uniform average of the per-output
        values (scikit-learn's ``multioutput="uniform_average"``).

    Examples
    --------
    >>> from cdl import metrics
    >>> round(metrics.{fn}([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0]), 4)
    {result}
    """


def mean_squared_error(y_true, y_pred, sample_weight=None):
    t, p, w = _regression_inputs(y_true, y_pred, sample_weight)
    _check_not_empty(t.shape[0])
    return float(_weighted_mean((t - p) ** 2, w).mean())


def mean_absolute_error(y_true, y_pred, sample_weight=None):
    t, p, w = _regression_inputs(y_true, y_pred, sample_weight)
    _check_not_empty(t.shape[0])
    return float(_weighted_mean(np.abs(t - p), w).mean())


def root_mean_squared_error(y_true, y_pred, sample_weight=None):
    t, p, w = _regression_inputs(y_true, y_pred, sample_weight)
    _check_not_empty(t.shape[0])
    return float(np.sqrt(_weighted_mean((t - p) ** 2, w)).mean())


def r2_score(y_true, y_pred, sample_weight=None):
    t, p, w = _regression_inputs(y_true, y_pred, sample_weight)
    n = t.shape[0]
    _check_not_empty(n)
    mean = _weighted_mean(t, w)
    if n < 2:
        return float("nan")
    ww = np.ones(n) if w is None else w
    num = ww @ (t - p) ** 2
    den = ww @ (t - mean) ** 2
    # An exactly constant target has zero variance, whatever the rounding
    # of its mean (scikit-learn can get a tiny non-zero value here).
    keep = t if w is None else t[w > 0]
    if keep.shape[0]:
        den[keep.min(axis=0) == keep.max(axis=0)] = 0.0
    return _r2_from_sums(num, den)


mean_squared_error.__doc__ = ("Mean squared error: mean of (y_true - y_pred) ** 2.\n"
                              + _REGRESSION_DOC.format(fn="mean_squared_error", result="0.375"))
mean_absolute_error.__doc__ = ("Mean absolute error: mean of ``abs(y_true - y_pred)``.\n"
                               + _REGRESSION_DOC.format(fn="mean_absolute_error", result="0.5"))
root_mean_squared_error.__doc__ = (
    "Root mean squared error: sqrt of the mean squared error, per output\n"
    "    (so with several outputs, the mean of the per-output RMSEs, as\n"
    "    scikit-learn, not the square root of the overall MSE).\n"
    + _REGRESSION_DOC.format(fn="root_mean_squared_error", result="0.6124"))
r2_score.__doc__ = (
    "Coefficient of determination R^2 = 1 - sum w (y - p)^2 / sum w (y - mean(y))^2.\n\n"
    "    As scikit-learn (``force_finite=True``): an output whose target is constant\n"
    "    scores 1.0 if predicted exactly, else 0.0; fewer than two samples give NaN\n"
    "    (R^2 is not defined there). Can be negative for predictions worse than the\n"
    "    mean.\n" + _REGRESSION_DOC.format(fn="r2_score", result="0.9486"))


# ---------------------------------------------------------------------------
# Streaming metric objects
# ---------------------------------------------------------------------------

class Metric:
    """Base class of streaming metrics.

    ``update(y_true, y_pred, sample_weight=None)`` adds a batch,
    ``result()`` returns the metric over everything added since the last
    ``reset()``. ``name`` is the key under which a model reports it.

    Examples
    --------
    >>> from cdl import metrics
    >>> acc = metrics.Accuracy()
    >>> acc.update([0, 1], [[2.0, 0.0], [1.0, 0.0]])      # model outputs: one row per sample
    >>> acc.update([1], [[0.0, 3.0]])
    >>> acc.result()                                      # over everything since the last reset
    0.6666666666666666
    >>> acc.reset()
    """

    name = "metric"

    def __init__(self, name=None):
        if name is not None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"name must be a non-empty string, got {name!r}")
            self.name = name
        self.reset()

    def update(self, y_true, y_pred, sample_weight=None):
        """Add a batch of targets and model outputs."""
        raise NotImplementedError

    def result(self):
        """The metric over all batches added since the last ``reset``."""
        raise NotImplementedError

    def reset(self):
        """Forget all batches."""
        raise NotImplementedError

    def merge_state(self, other):
        """Add everything ``other`` has accumulated to this metric, as if its
        batches had been given to this one's ``update``.

        ``other`` must be a metric of the same class and configuration.
        Data-parallel training (``cdl.distributed``) combines the metrics
        of its processes with it; a custom metric supports distributed
        training by overriding it.

        Raises
        ------
        TypeError
            If ``other`` is not of this metric's class.
        NotImplementedError
            If the metric cannot be merged.
        """
        raise NotImplementedError(f"{type(self).__name__} {self.name!r} does not implement "
                                  "merge_state, so it cannot be combined across processes")

    def get_state(self):
        """What the metric has accumulated since the last ``reset``, as a
        dict that ``set_state`` takes back: the training state of a
        checkpoint saves it, and data-parallel training sends it between
        processes.

        The base class returns every attribute named with a leading
        underscore (the public ones are the configuration), arrays copied
        and nested metrics as their own states. A custom metric whose
        accumulators are other objects (lists, dicts) overrides both
        ``get_state`` and ``set_state``, returning a dict of numbers,
        None, NumPy arrays and such dicts.

        Raises
        ------
        TypeError
            If an accumulator is neither a number, None, an array nor a
            metric (override ``get_state`` and ``set_state`` then).

        Examples
        --------
        >>> from cdl import metrics
        >>> acc = metrics.Accuracy()
        >>> acc.update([0, 1], [[2.0, 0.0], [1.0, 0.0]])
        >>> state = acc.get_state()
        >>> other = metrics.Accuracy()
        >>> other.set_state(state)
        >>> other.result()
        0.5
        """
        state = {}
        for key, value in vars(self).items():
            if not key.startswith("_"):
                continue
            if isinstance(value, Metric):
                value = value.get_state()
            elif isinstance(value, np.ndarray):
                value = value.copy()
            elif not (value is None or isinstance(value, (bool, int, float))):
                raise TypeError(
                    f"metric {self.name!r} ({type(self).__name__}) keeps {key} as a "
                    f"{type(value).__name__}, which get_state cannot save: give the class "
                    "get_state and set_state methods that save and restore its accumulators")
            state[key] = value
        return state

    def set_state(self, state):
        """Make the metric hold what ``get_state`` returned (of a metric of
        the same class and configuration).

        Raises
        ------
        ValueError
            If ``state`` does not fit this metric.
        """
        current = {k: v for k, v in vars(self).items() if k.startswith("_")}
        if not isinstance(state, dict) or set(state) != set(current):
            raise ValueError(f"the saved state of metric {self.name!r} does not fit it")
        for key, value in state.items():
            if isinstance(current[key], Metric):
                current[key].set_state(value)
            elif value is None or isinstance(value, (bool, int, float, np.ndarray)):
                setattr(self, key, value.copy() if isinstance(value, np.ndarray) else value)
            else:
                raise ValueError(f"metric {self.name!r}: {key} cannot be {value!r}")

    def _check_mergeable(self, other):
        if type(other) is not type(self):
            raise TypeError(f"cannot merge a {type(other).__name__} into a "
                            f"{type(self).__name__}")

    def _need_samples(self, seen):
        if not seen:
            raise RuntimeError(
                f"{type(self).__name__} {self.name!r}: result() called before "
                "update() was given any samples")

    def get_config(self):
        """Constructor arguments as a dict."""
        return {"name": self.name}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Mean(Metric):
    """Weighted running mean of values; a model uses it to average the loss.

    Unlike the other metrics, ``update`` takes the values themselves:
    ``update(values, sample_weight=None)``, where ``values`` is a number or
    an array and ``sample_weight`` is None (weight 1 each), a number (the
    weight of every value, e.g. the batch size for a batch-mean loss) or an
    array broadcastable to ``values``. NaN and infinite values are not
    refused: they propagate to the result (a diverged loss shows as NaN).

    Examples
    --------
    >>> from cdl import metrics
    >>> mean = metrics.Mean()
    >>> mean.update(0.5, sample_weight=32)     # a batch mean over 32 samples
    >>> mean.update(0.2, sample_weight=8)
    >>> round(mean.result(), 4)                # (0.5 * 32 + 0.2 * 8) / 40
    0.44
    """

    name = "mean"

    def reset(self):
        self._total = 0.0
        self._weight = 0.0
        self._count = 0

    def update(self, values, sample_weight=None):
        v = as_float_array(values, np.float64, "values")
        if sample_weight is None:
            w = np.ones_like(v)
        else:
            w = as_float_array(sample_weight, np.float64, "sample_weight")
            check_finite(w, "sample_weight")
            if (w < 0).any():
                raise ValueError("sample_weight must be non-negative")
            try:
                w = np.broadcast_to(w, v.shape)
            except ValueError:
                raise ValueError(f"sample_weight of shape {w.shape} does not match "
                                 f"values of shape {v.shape}") from None
        self._total += float((w * v).sum())
        self._weight += float(w.sum())
        self._count += v.size

    def merge_state(self, other):
        self._check_mergeable(other)
        self._total += other._total
        self._weight += other._weight
        self._count += other._count

    def result(self):
        self._need_samples(self._count)
        if self._weight == 0:
            raise ValueError(f"{self.name}: the weights sum to zero; nothing to average")
        return self._total / self._weight


class MeanMetricWrapper(Metric):
    """A callable ``fn(y_true, y_pred) -> float`` as a streaming metric.

    ``result()`` is the mean of the per-batch values weighted by batch
    size (or by the batch's sum of ``sample_weight``, which ``fn`` does not
    see). That equals ``fn`` on all the data only for per-sample means
    such as accuracy or MSE, not for e.g. RMSE, R^2 or F1.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import metrics
    >>> def max_error(y_true, y_pred):
    ...     return float(np.max(np.abs(np.asarray(y_true) - np.asarray(y_pred))))
    >>> metric = metrics.MeanMetricWrapper(max_error)
    >>> metric.update([[1.0], [2.0]], [[1.5], [2.0]])
    >>> metric.update([[0.0], [0.0]], [[0.0], [1.5]])
    >>> metric.result(), metric.name                   # mean of the batch values
    (1.0, 'max_error')
    """

    def __init__(self, fn, name=None):
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        self.fn = fn
        if name is None:
            name = getattr(fn, "__name__", None) or type(fn).__name__
        self._mean = Mean()
        super().__init__(name)

    def reset(self):
        self._mean.reset()

    def update(self, y_true, y_pred, sample_weight=None):
        n = np.shape(y_pred)[0] if np.ndim(y_pred) else 1
        w = _sample_weight(sample_weight, n)
        if n == 0:
            return
        value = self.fn(y_true, y_pred)
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(())[()]
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
            raise TypeError(f"metric function {self.name!r} must return a number, "
                            f"got {value!r}")
        self._mean.update(float(value), n if w is None else w.sum())

    def result(self):
        self._need_samples(self._mean._count)
        return self._mean.result()

    def merge_state(self, other):
        self._check_mergeable(other)
        self._mean.merge_state(other._mean)

    def get_config(self):
        return {"fn": self.fn, "name": self.name}


class _WeightedFraction(Metric):
    """Accumulates sum(w * correct) and sum(w) over batches."""

    def reset(self):
        self._correct = 0.0
        self._weight = 0.0
        self._count = 0

    def _add(self, correct, sample_weight):
        """``correct``: (n,) or (n, m) float array of per-element scores."""
        n = correct.shape[0]
        w = _sample_weight(sample_weight, n)
        per_row = _rows(correct)
        m = per_row.shape[1]
        if w is None:
            self._correct += float(per_row.sum())
            self._weight += float(n * m)
        else:
            self._correct += float(w @ per_row.sum(axis=1))
            self._weight += float(w.sum() * m)
        self._count += n

    def merge_state(self, other):
        self._check_mergeable(other)
        self._correct += other._correct
        self._weight += other._weight
        self._count += other._count

    def result(self):
        self._need_samples(self._count)
        if self._weight == 0:
            raise ValueError(f"{self.name}: sample_weight sums to zero; nothing to average")
        return self._correct / self._weight


class Accuracy(_WeightedFraction):
    """Streaming classification accuracy of model outputs.

    ``y_pred`` of shape (n, classes) is read by argmax (logits or
    probabilities). ``y_pred`` with a single column, or of shape (n,), is a
    binary classifier's logit: class 1 where it is > 0 (probability > 0.5),
    and ``y_true`` must then hold 0/1. (The ``accuracy`` function instead
    reads a 1-D ``y_pred`` as predicted labels.)

    ``y_true``: labels of shape (n,) or (n, 1), or one-hot / probability
    rows of shape (n, classes).

    ``y_pred`` of shape (n, d1, ..., classes) (a sequence model's
    (batch, T, vocab)) is read per position, against labels of shape
    (n, d1, ...): each position counts, weighted by its sample's weight.

    Examples
    --------
    >>> from cdl import metrics
    >>> acc = metrics.Accuracy()
    >>> acc.update([0, 1, 1], [[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
    >>> round(acc.result(), 4)
    0.6667
    """

    name = "accuracy"

    def update(self, y_true, y_pred, sample_weight=None):
        rows = _per_position(y_true, y_pred)
        if rows is not None:
            # Scores per position: each sample contributes all its positions,
            # weighted by its sample weight.
            t, scores, n, positions = rows
            correct = self._correct_rows(t, scores)
            self._add(correct.reshape(n, positions), sample_weight)
            return
        self._add(self._correct_rows(y_true, y_pred), sample_weight)

    def _correct_rows(self, y_true, y_pred):
        p, classes, binary = _score_labels(y_pred)
        t, t_cols = _class_labels(y_true, "y_true")
        _check_lengths(t.shape[0], p.shape[0])
        if binary:
            if t_cols is not None:
                raise ValueError(
                    f"y_pred has a single score column (binary logits) but y_true has "
                    f"{t_cols} columns")
            _check_range(t, 2, "y_true", " (y_pred has a single score column, read as "
                         "binary logits; for predicted class labels use "
                         "cdl.metrics.accuracy)")
        else:
            _resolve_classes(t, t_cols, p, classes, None)
        return (t == p).astype(np.float64)


class BinaryAccuracy(_WeightedFraction):
    """Streaming ``binary_accuracy``: element-wise accuracy of 0/1 targets,
    for binary and multi-label classifiers.

    Parameters
    ----------
    threshold : float
        Predicted 1 where ``sigmoid(y_pred) > threshold`` (``from_logits``)
        or ``y_pred > threshold``.
    from_logits : bool, default True
        Models output logits, so this defaults to True here (the
        ``binary_accuracy`` function defaults to False, for probabilities).
    name : str, optional

    Examples
    --------
    >>> from cdl import metrics
    >>> acc = metrics.BinaryAccuracy()                 # from logits by default: threshold at 0
    >>> acc.update([[1], [0], [1]], [[2.0], [0.5], [-1.0]])
    >>> round(acc.result(), 4)
    0.3333
    """

    name = "binary_accuracy"

    def __init__(self, threshold=0.5, from_logits=True, name=None):
        self.from_logits = check_bool(from_logits, "from_logits")
        self.threshold = _check_threshold(threshold, self.from_logits)
        super().__init__(name)

    def update(self, y_true, y_pred, sample_weight=None):
        self._add(_binary_correct(y_true, y_pred, self.threshold, self.from_logits),
                  sample_weight)

    def get_config(self):
        return {"threshold": self.threshold, "from_logits": self.from_logits,
                "name": self.name}


class TopKAccuracy(_WeightedFraction):
    """Streaming ``top_k_accuracy`` (same tie rule: ties with the k-th
    largest score count as within the top k).

    Parameters
    ----------
    k : int >= 1
    name : str, optional

    Examples
    --------
    >>> from cdl import metrics
    >>> top2 = metrics.TopKAccuracy(k=2)
    >>> top2.update([2, 0], [[0.1, 0.5, 0.4], [0.2, 0.3, 0.5]])
    >>> top2.result()
    0.5
    """

    name = "top_k_accuracy"

    def __init__(self, k=5, name=None):
        self.k = check_number(k, "k", low=1, integer=True)
        super().__init__(name)

    def update(self, y_true, y_pred, sample_weight=None):
        rows = _per_position(y_true, y_pred)
        if rows is not None:
            t, scores, n, positions = rows
            t, scores, k = _top_k_inputs(t, scores, self.k)
            self._add(_top_k_correct(t, scores, k).reshape(n, positions), sample_weight)
            return
        t, scores, k = _top_k_inputs(y_true, y_pred, self.k)
        self._add(_top_k_correct(t, scores, k), sample_weight)

    def get_config(self):
        return {"k": self.k, "name": self.name}


class _ConfusionMetric(Metric):
    """Accumulates a (weighted) confusion matrix across batches."""

    _which = None

    def __init__(self, average="macro", num_classes=None, name=None):
        self.average = choose(average, AVERAGES, "average")
        if num_classes is not None:
            num_classes = check_number(num_classes, "num_classes", low=1, integer=True)
        self.num_classes = num_classes
        super().__init__(name)

    def reset(self):
        self._cm = None
        self._present = None
        self._count = 0

    @property
    def confusion_matrix(self):
        """The accumulated confusion matrix (float64, rows true), or None."""
        return None if self._cm is None else self._cm.copy()

    def update(self, y_true, y_pred, sample_weight=None):
        p, classes, binary = _score_labels(y_pred)
        t, t_cols = _class_labels(y_true, "y_true")
        _check_lengths(t.shape[0], p.shape[0])
        if binary and t_cols is not None and t_cols != 2:
            raise ValueError(f"y_pred has a single score column (binary logits) but "
                             f"y_true has {t_cols} columns")
        if self.num_classes is not None and classes != self.num_classes:
            what = "a single logit column (2 classes)" if binary else f"{classes} score columns"
            raise ValueError(f"y_pred has {what} but num_classes={self.num_classes}")
        if self._cm is not None and classes != self._cm.shape[0]:
            raise ValueError(f"y_pred has {classes} classes but earlier batches had "
                             f"{self._cm.shape[0]}")
        _resolve_classes(t, t_cols, p, classes, None)
        w = _sample_weight(sample_weight, t.shape[0])
        if self._cm is None:
            self._cm = np.zeros((classes, classes))
            self._present = np.zeros(classes, dtype=bool)
        self._cm += _confusion(t, p, classes, np.ones(t.shape[0]) if w is None else w)
        self._present[t] = True
        self._present[p] = True
        self._count += t.shape[0]

    def result(self):
        self._need_samples(self._count)
        return _prf(self._cm, self._present, self._which, self.average)

    def merge_state(self, other):
        self._check_mergeable(other)
        if other._cm is None:
            return
        if self._cm is None:
            self._cm, self._present = other._cm.copy(), other._present.copy()
        elif other._cm.shape != self._cm.shape:
            raise ValueError(f"cannot merge a confusion matrix of {other._cm.shape[0]} classes "
                             f"into one of {self._cm.shape[0]}")
        else:
            self._cm += other._cm
            self._present |= other._present
        self._count += other._count

    def get_config(self):
        return {"average": self.average, "num_classes": self.num_classes, "name": self.name}


_CONFUSION_DOC = """Streaming ``{fn}`` of model outputs, from a confusion matrix
    accumulated over batches (so the result equals ``{fn}`` on all the data).

    ``y_pred`` of shape (n, classes) is read by argmax; a single column, or
    shape (n,), is a binary classifier's logit (class 1 where > 0), giving
    two classes. ``y_true``: labels, or one-hot rows of shape (n, classes).

    Parameters
    ----------
    average : {{"macro", "micro", "weighted", None}}
        As for ``{fn}``; None makes ``result()`` return the per-class array.
    num_classes : int, optional
        If given, ``y_pred`` must have that many score columns.
    name : str, optional

    Examples
    --------
    >>> from cdl import metrics
    >>> metric = metrics.{cls}()
    >>> metric.update([0, 0, 1], [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    >>> metric.update([1, 2], [[0.3, 0.6, 0.1], [0.6, 0.3, 0.1]])
    >>> round(metric.result(), 4)    # as {fn}([0, 0, 1, 1, 2], [0, 1, 1, 1, 0])
    {result}
    """


class Precision(_ConfusionMetric):
    __doc__ = _CONFUSION_DOC.format(fn="precision", cls="Precision", result="0.3889")
    name = "precision"
    _which = "precision"


class Recall(_ConfusionMetric):
    __doc__ = _CONFUSION_DOC.format(fn="recall", cls="Recall", result="0.5")
    name = "recall"
    _which = "recall"


class F1Score(_ConfusionMetric):
    __doc__ = _CONFUSION_DOC.format(fn="f1_score", cls="F1Score", result="0.4333")
    name = "f1"
    _which = "f1"


class _RegressionMetric(Metric):
    """Accumulates per-output weighted sums over batches."""

    def reset(self):
        self._outputs = None
        self._weight = 0.0
        self._count = 0
        self._sse = self._sae = None

    def _inputs(self, y_true, y_pred, sample_weight):
        t, p, w = _regression_inputs(y_true, y_pred, sample_weight)
        if self._outputs is not None and t.shape[0] and t.shape[1] != self._outputs:
            raise ValueError(f"y_pred has {t.shape[1]} outputs per sample but earlier "
                             f"batches had {self._outputs}")
        if self._outputs is None and t.shape[0]:
            self._outputs = t.shape[1]
            self._sse = np.zeros(self._outputs)
            self._sae = np.zeros(self._outputs)
        return t, p, w

    def update(self, y_true, y_pred, sample_weight=None):
        t, p, w = self._inputs(y_true, y_pred, sample_weight)
        n = t.shape[0]
        if n == 0:
            return
        ww = np.ones(n) if w is None else w
        self._sse += ww @ (t - p) ** 2
        self._sae += ww @ np.abs(t - p)
        self._weight += float(ww.sum())
        self._count += n

    def merge_state(self, other):
        self._check_mergeable(other)
        if other._outputs is None:
            return
        if self._outputs is None:
            self._outputs = other._outputs
            self._sse, self._sae = np.zeros(self._outputs), np.zeros(self._outputs)
        elif other._outputs != self._outputs:
            raise ValueError(f"cannot merge a metric of {other._outputs} outputs into one "
                             f"of {self._outputs}")
        self._sse += other._sse
        self._sae += other._sae
        self._weight += other._weight
        self._count += other._count

    def _per_output(self, sums):
        self._need_samples(self._count)
        if self._weight == 0:
            raise ValueError(f"{self.name}: sample_weight sums to zero; nothing to average")
        return sums / self._weight


class MSE(_RegressionMetric):
    """Streaming ``mean_squared_error``.

    Examples
    --------
    >>> from cdl import metrics
    >>> mse = metrics.MSE()
    >>> mse.update([[1.0], [2.0]], [[1.5], [2.0]])
    >>> mse.update([[0.0]], [[1.0]])
    >>> round(mse.result(), 4)         # (0.25 + 0 + 1) / 3
    0.4167
    """

    name = "mse"

    def result(self):
        return float(self._per_output(self._sse).mean())


class MAE(_RegressionMetric):
    """Streaming ``mean_absolute_error``.

    Examples
    --------
    >>> from cdl import metrics
    >>> mae = metrics.MAE()
    >>> mae.update([[1.0], [2.0], [0.0]], [[1.5], [2.0], [1.0]])
    >>> mae.result()
    0.5
    """

    name = "mae"

    def result(self):
        return float(self._per_output(self._sae).mean())


class RMSE(_RegressionMetric):
    """Streaming ``root_mean_squared_error`` (per-output RMSE, averaged).

    Examples
    --------
    >>> from cdl import metrics
    >>> rmse = metrics.RMSE()
    >>> rmse.update([[0.0], [0.0]], [[3.0], [4.0]])
    >>> round(rmse.result(), 4)        # sqrt((9 + 16) / 2)
    3.5355
    """

    name = "rmse"

    def result(self):
        return float(np.sqrt(self._per_output(self._sse)).mean())


class R2(_RegressionMetric):
    """Streaming ``r2_score``.

    The target's weighted mean and sum of squared deviations are merged
    batch by batch with Chan et al.'s parallel update, which is
    numerically stable (no ``sum(y^2) - n mean^2`` cancellation).

    Examples
    --------
    >>> from cdl import metrics
    >>> r2 = metrics.R2()
    >>> r2.update([[1.0], [2.0], [3.0]], [[1.1], [1.9], [3.2]])
    >>> round(r2.result(), 4)
    0.97
    """

    name = "r2"

    def reset(self):
        super().reset()
        self._mean = self._m2 = self._min = self._max = None

    def update(self, y_true, y_pred, sample_weight=None):
        t, p, w = self._inputs(y_true, y_pred, sample_weight)
        n = t.shape[0]
        if n == 0:
            return
        ww = np.ones(n) if w is None else w
        wb = float(ww.sum())
        if self._mean is None:
            m = self._outputs
            self._mean, self._m2 = np.zeros(m), np.zeros(m)
            self._min, self._max = np.full(m, np.inf), np.full(m, -np.inf)
        if wb > 0:
            mean_b = (ww @ t) / wb
            m2_b = ww @ (t - mean_b) ** 2
            wa = self._weight
            total = wa + wb
            delta = mean_b - self._mean
            self._mean = self._mean + delta * (wb / total)
            self._m2 = self._m2 + m2_b + delta ** 2 * (wa * wb / total)
            kept = t[ww > 0]
            self._min = np.minimum(self._min, kept.min(axis=0))
            self._max = np.maximum(self._max, kept.max(axis=0))
        self._sse += ww @ (t - p) ** 2
        self._weight += wb
        self._count += n

    def merge_state(self, other):
        wa, wb = self._weight, other._weight
        merged_stats = other._mean is not None and wb > 0
        if merged_stats and (self._mean is None or wa == 0):
            mean, m2 = other._mean.copy(), other._m2.copy()
            low, high = other._min.copy(), other._max.copy()
        elif merged_stats:
            # Chan et al.'s parallel update, as ``update`` merges a batch.
            total = wa + wb
            delta = other._mean - self._mean
            mean = self._mean + delta * (wb / total)
            m2 = self._m2 + other._m2 + delta ** 2 * (wa * wb / total)
            low, high = np.minimum(self._min, other._min), np.maximum(self._max, other._max)
        else:
            mean, m2, low, high = self._mean, self._m2, self._min, self._max
        super().merge_state(other)
        if mean is None and self._outputs is not None:
            m = self._outputs
            mean, m2 = np.zeros(m), np.zeros(m)
            low, high = np.full(m, np.inf), np.full(m, -np.inf)
        self._mean, self._m2, self._min, self._max = mean, m2, low, high

    def result(self):
        self._per_output(self._sse)  # the checks
        if self._count < 2:
            return float("nan")
        den = self._m2.copy()
        den[self._min == self._max] = 0.0
        return _r2_from_sums(self._sse, den)


# ---------------------------------------------------------------------------
# get
# ---------------------------------------------------------------------------

def _accuracy_for(loss):
    from cdl import losses
    if isinstance(loss, str):
        loss = losses.get(loss)
    return isinstance(loss, losses.BinaryCrossEntropy)


_BY_NAME = {
    "accuracy": None, "acc": None,  # resolved by the loss
    "binary_accuracy": BinaryAccuracy,
    "top_k_accuracy": TopKAccuracy,
    "precision": Precision,
    "recall": Recall,
    "f1": F1Score, "f1_score": F1Score,
    "mse": MSE, "mean_squared_error": MSE,
    "mae": MAE, "mean_absolute_error": MAE,
    "rmse": RMSE, "root_mean_squared_error": RMSE,
    "r2": R2, "r2_score": R2,
}

# cdl's own functions passed to get() become the exact streaming metric
# (and read y_pred as model scores), not a batch average.
_EXACT = {
    accuracy: Accuracy, top_k_accuracy: TopKAccuracy,
    precision: Precision, recall: Recall, f1_score: F1Score,
    mean_squared_error: MSE, mean_absolute_error: MAE,
    root_mean_squared_error: RMSE, r2_score: R2,
}

_TOP_K = re.compile(r"top_?([1-9][0-9]*)(?:_accuracy)?")


def get(identifier, loss=None):
    """Return a metric object from a name, a Metric or a callable.

    Parameters
    ----------
    identifier : str, Metric, Metric subclass or callable
        Names: "accuracy"/"acc", "binary_accuracy", "top_k_accuracy" (k=5),
        "top5" (or "top<k>", "top_<k>_accuracy"), "precision", "recall",
        "f1", "mse", "mae", "rmse", "r2" (plus the long function names such
        as "mean_squared_error"). Precision, recall and F1 are macro
        averages. The returned metric's ``name`` is the string given.
        A Metric instance is returned as is. A callable
        ``fn(y_true, y_pred) -> float`` is wrapped in ``MeanMetricWrapper``
        (a batch-size-weighted mean of per-batch values), except cdl's own
        metric functions, which map to their exact streaming class.
    loss : Loss or str, optional
        Resolves "accuracy": with ``cdl.losses.BinaryCrossEntropy`` it is
        ``BinaryAccuracy(from_logits=True)`` (element-wise, so multi-label
        outputs work), otherwise ``Accuracy``.

    Returns
    -------
    Metric

    Examples
    --------
    >>> from cdl import metrics
    >>> metrics.get("accuracy")
    Accuracy(name='accuracy')
    >>> metrics.get("top3").k
    3
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            if _accuracy_for(loss):
                return BinaryAccuracy(from_logits=True, name=identifier)
            return Accuracy(name=identifier)
        if identifier in _BY_NAME:
            return _BY_NAME[identifier](name=identifier)
        match = _TOP_K.fullmatch(identifier)
        if match:
            return TopKAccuracy(k=int(match.group(1)), name=identifier)
        known = ", ".join(sorted(_BY_NAME) + ["top<k>"])
        raise ValueError(f"unknown metric {identifier!r}; expected one of {known}")
    if callable(identifier):
        try:
            exact = _EXACT.get(identifier)
        except TypeError:  # unhashable callable
            exact = None
        if exact is not None:
            return exact(name=identifier.__name__)
        return MeanMetricWrapper(identifier)
    raise TypeError(f"a metric must be a name, a Metric or a callable, got {identifier!r}")
