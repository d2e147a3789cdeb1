"""cdl.metrics: functions against hand-computed values (and scikit-learn when
installed), streaming objects against the functions on the whole data,
edge cases, bad inputs and ``get``."""
import math

import numpy as np
import pytest

from cdl import losses, metrics

# A small 3-class example, worked out by hand below.
#   y_true = [0, 0, 1, 1, 1, 2]
#   y_pred = [0, 1, 1, 1, 0, 1]        (class 2 is never predicted)
#   confusion matrix (rows true, columns predicted):
#       [[1, 1, 0],
#        [1, 2, 0],
#        [0, 1, 0]]
#   TP = [1, 2, 0], predicted = [2, 4, 0], true = [2, 3, 1]
#   precision = [1/2, 2/4, 0 (0/0)], recall = [1/2, 2/3, 0], F1 = 2TP/(pred+true) = [1/2, 4/7, 0]
Y_TRUE = np.array([0, 0, 1, 1, 1, 2])
Y_PRED = np.array([0, 1, 1, 1, 0, 1])
CM = np.array([[1, 1, 0], [1, 2, 0], [0, 1, 0]])


def scores_for(labels, classes, seed=0):
    """Random logits whose argmax is ``labels``."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((len(labels), classes))
    s[np.arange(len(labels)), labels] = s.max(axis=1) + 1.0
    return s


def one_hot(labels, classes):
    return np.eye(classes)[labels]


# ---------------------------------------------------------------------------
# Accuracy-type functions, by hand
# ---------------------------------------------------------------------------

def test_accuracy_by_hand():
    y_true = [0, 1, 2, 2]
    scores = [[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.0, 0.1, 0.9], [0.2, 0.5, 0.3]]
    # argmax = [0, 2, 2, 1]; correct = [1, 0, 1, 0]
    assert metrics.accuracy(y_true, scores) == 0.5
    assert metrics.accuracy(np.array(y_true)[:, None], scores) == 0.5   # (n, 1) labels
    assert metrics.accuracy(one_hot(y_true, 3), scores) == 0.5         # one-hot targets
    assert metrics.accuracy(y_true, [0, 2, 2, 1]) == 0.5                # predicted labels
    assert metrics.accuracy(y_true, np.array([0., 2., 2., 1.])) == 0.5  # float labels
    # weights [1, 2, 3, 4]: (1 + 3) / 10
    assert metrics.accuracy(y_true, scores, sample_weight=[1, 2, 3, 4]) == pytest.approx(0.4)
    assert isinstance(metrics.accuracy(y_true, scores), float)


def test_binary_accuracy_by_hand():
    y_true = [0, 1, 1, 0]
    probs = [0.2, 0.7, 0.4, 0.5]      # predicted [0, 1, 0, 0]: 0.5 is not > 0.5
    assert metrics.binary_accuracy(y_true, probs) == 0.75
    logits = [-1.0, 2.0, -0.5, 0.0]   # same predictions at logit > 0
    assert metrics.binary_accuracy(y_true, logits, from_logits=True) == 0.75
    # (n,) targets against (n, 1) predictions
    assert metrics.binary_accuracy(y_true, np.array(logits)[:, None], from_logits=True) == 0.75
    # threshold 0.8 on probabilities: predicted [0, 0, 0, 0]
    assert metrics.binary_accuracy(y_true, probs, threshold=0.8) == 0.5
    # from_logits threshold 0.8 means logit > log(4) = 1.386: predicted [0, 1, 0, 0]
    assert metrics.binary_accuracy(y_true, logits, threshold=0.8, from_logits=True) == 0.75
    # weights [1, 1, 2, 0]: correct [1, 1, 0, 1] -> 2 / 4
    assert metrics.binary_accuracy(y_true, probs, sample_weight=[1, 1, 2, 0]) == 0.5
    # Multi-label: element-wise, averaged over all elements (3 of 4 right).
    assert metrics.binary_accuracy([[1, 0], [0, 1]], [[0.9, 0.1], [0.8, 0.6]]) == 0.75
    # A row weight applies to each of the row's elements: rows score 1 and 0.5.
    assert metrics.binary_accuracy([[1, 0], [0, 1]], [[0.9, 0.1], [0.8, 0.6]],
                                   sample_weight=[3, 1]) == pytest.approx(3.5 / 4)


def test_binary_accuracy_from_logits_matches_sigmoid():
    rng = np.random.default_rng(1)
    z = rng.standard_normal(200) * 3
    y = rng.integers(0, 2, 200)
    for t in (0.1, 0.3, 0.5, 0.9):
        expected = np.mean((1 / (1 + np.exp(-z)) > t) == y)
        assert metrics.binary_accuracy(y, z, threshold=t, from_logits=True) == expected


def test_top_k_accuracy_by_hand():
    y_true = [0, 1, 2, 3]
    scores = np.array([[0.4, 0.3, 0.2, 0.1],    # true class ranked 1st
                       [0.4, 0.3, 0.2, 0.1],    # 2nd
                       [0.4, 0.3, 0.2, 0.1],    # 3rd
                       [0.4, 0.3, 0.2, 0.1]])   # 4th
    assert metrics.top_k_accuracy(y_true, scores, k=1) == 0.25
    assert metrics.top_k_accuracy(y_true, scores, k=2) == 0.5
    assert metrics.top_k_accuracy(y_true, scores, k=3) == 0.75
    assert metrics.top_k_accuracy(y_true, scores, k=4) == 1.0
    assert metrics.top_k_accuracy(y_true, scores, k=10) == 1.0   # k >= classes
    assert metrics.top_k_accuracy(one_hot(y_true, 4), scores, k=2) == 0.5
    assert metrics.top_k_accuracy(y_true, scores, k=2, sample_weight=[1, 1, 1, 5]) == 0.25
    # top-1 is accuracy
    rng = np.random.default_rng(2)
    s = rng.standard_normal((50, 6))
    y = rng.integers(0, 6, 50)
    assert metrics.top_k_accuracy(y, s, k=1) == metrics.accuracy(y, s)


def test_top_k_accuracy_ties_count_as_inside():
    # Class 0 and 1 tie for the top score: with k=1 both count as correct
    # (fewer than 1 class scores strictly higher).
    scores = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]
    assert metrics.top_k_accuracy([0, 1], scores, k=1) == 1.0
    # Three-way tie for 2nd place: all of them are within the top 2.
    scores = [[0.9, 0.1, 0.1, 0.1]] * 3
    assert metrics.top_k_accuracy([1, 2, 3], scores, k=2) == 1.0


def test_confusion_matrix_by_hand():
    cm = metrics.confusion_matrix(Y_TRUE, Y_PRED)
    np.testing.assert_array_equal(cm, CM)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(metrics.confusion_matrix(Y_TRUE, scores_for(Y_PRED, 3)), CM)
    # A class that never occurs still gets a row and a column.
    cm4 = metrics.confusion_matrix(Y_TRUE, Y_PRED, num_classes=4)
    np.testing.assert_array_equal(cm4[:3, :3], CM)
    assert cm4[3].sum() == cm4[:, 3].sum() == 0
    # Weights: float sums; integer weights keep an integer matrix.
    w = [1, 2, 1, 1, 1, 0.5]
    np.testing.assert_allclose(metrics.confusion_matrix(Y_TRUE, Y_PRED, sample_weight=w),
                               [[1, 2, 0], [1, 2, 0], [0, 0.5, 0]])
    cm_int = metrics.confusion_matrix(Y_TRUE, Y_PRED, sample_weight=[1, 2, 1, 1, 1, 3])
    assert cm_int.dtype == np.int64
    np.testing.assert_array_equal(cm_int, [[1, 2, 0], [1, 2, 0], [0, 3, 0]])


# ---------------------------------------------------------------------------
# Precision / recall / F1, by hand
# ---------------------------------------------------------------------------

PRF_BY_HAND = {
    "precision": {None: [1 / 2, 1 / 2, 0.0], "macro": 1 / 3, "micro": 1 / 2,
                  "weighted": (2 * 0.5 + 3 * 0.5 + 1 * 0) / 6},
    "recall": {None: [1 / 2, 2 / 3, 0.0], "macro": 7 / 18, "micro": 1 / 2,
               "weighted": 1 / 2},
    "f1_score": {None: [1 / 2, 4 / 7, 0.0], "macro": 5 / 14, "micro": 1 / 2,
                 "weighted": 19 / 42},
}


@pytest.mark.parametrize("fn", ["precision", "recall", "f1_score"])
@pytest.mark.parametrize("average", [None, "macro", "micro", "weighted"])
def test_prf_by_hand(fn, average):
    expected = PRF_BY_HAND[fn][average]
    got = getattr(metrics, fn)(Y_TRUE, Y_PRED, average=average)
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    if average is None:
        assert isinstance(got, np.ndarray) and got.shape == (3,)
    else:
        assert isinstance(got, float)
    # Same from scores and one-hot targets.
    got2 = getattr(metrics, fn)(one_hot(Y_TRUE, 3), scores_for(Y_PRED, 3), average=average)
    np.testing.assert_allclose(got2, expected, rtol=1e-14)


def test_prf_weighted_by_hand():
    # Weights [1, 1, 1, 1, 1, 0] drop the only class-2 sample. Confusion
    # [[1, 1], [1, 2]] on classes 0, 1 (class 2 still "present", as its
    # sample is in y_true): precision [1/2, 2/3, 0], macro = (1/2 + 2/3) / 3.
    w = [1, 1, 1, 1, 1, 0]
    np.testing.assert_allclose(metrics.precision(Y_TRUE, Y_PRED, average=None, sample_weight=w),
                               [1 / 2, 2 / 3, 0])
    assert metrics.precision(Y_TRUE, Y_PRED, sample_weight=w) == pytest.approx(7 / 18)


def test_prf_absent_class_left_out_of_average():
    # num_classes=4: class 3 occurs in neither input, so it is 0 in the
    # per-class array and left out of the macro average (as scikit-learn).
    per_class = metrics.precision(Y_TRUE, Y_PRED, average=None, num_classes=4)
    np.testing.assert_allclose(per_class, [1 / 2, 1 / 2, 0, 0])
    assert metrics.precision(Y_TRUE, Y_PRED, num_classes=4) == pytest.approx(1 / 3)
    assert metrics.f1_score(Y_TRUE, scores_for(Y_PRED, 4)) == pytest.approx(5 / 14)


def test_micro_average_is_accuracy():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 40)
    s = rng.standard_normal((40, 4))
    w = rng.uniform(0, 1, 40)
    acc = metrics.accuracy(y, s, sample_weight=w)
    for fn in (metrics.precision, metrics.recall, metrics.f1_score):
        assert fn(y, s, average="micro", sample_weight=w) == pytest.approx(acc, rel=1e-13)


# ---------------------------------------------------------------------------
# Regression functions, by hand
# ---------------------------------------------------------------------------

def test_regression_by_hand_single_output():
    y_true = [1.0, 2.0, 3.0, 4.0]
    y_pred = [1.0, 2.0, 2.0, 5.0]   # errors [0, 0, 1, -1]
    assert metrics.mean_squared_error(y_true, y_pred) == 0.5
    assert metrics.mean_absolute_error(y_true, y_pred) == 0.5
    assert metrics.root_mean_squared_error(y_true, y_pred) == pytest.approx(math.sqrt(0.5))
    # mean 2.5, total sum of squares 5, residual 2
    assert metrics.r2_score(y_true, y_pred) == pytest.approx(1 - 2 / 5)
    # (n,) against (n, 1)
    assert metrics.mean_squared_error(np.array(y_true)[:, None], y_pred) == 0.5
    # weights [1, 1, 2, 0]: squared errors weigh in as (2 * 1) / 4; weighted
    # mean 9/4, total 1.25^2 + 0.25^2 + 2 * 0.75^2 = 2.75, residual 2
    w = [1, 1, 2, 0]
    assert metrics.mean_squared_error(y_true, y_pred, sample_weight=w) == 0.5
    assert metrics.mean_absolute_error(y_true, y_pred, sample_weight=w) == 0.5
    assert metrics.r2_score(y_true, y_pred, sample_weight=w) == pytest.approx(1 - 2 / 2.75)


def test_regression_by_hand_multi_output():
    y_true = [[1, 0], [2, 0], [3, 1]]
    y_pred = [[1, 2], [2, 0], [4, 1]]
    # output 0: errors [0, 0, -1] -> MSE 1/3; output 1: errors [-2, 0, 0] -> MSE 4/3
    assert metrics.mean_squared_error(y_true, y_pred) == pytest.approx(5 / 6)
    assert metrics.mean_absolute_error(y_true, y_pred) == pytest.approx((1 / 3 + 2 / 3) / 2)
    # RMSE per output, then averaged: (sqrt(1/3) + sqrt(4/3)) / 2, not sqrt(5/6)
    assert metrics.root_mean_squared_error(y_true, y_pred) == pytest.approx(math.sqrt(3) / 2)
    # R2 output 0: 1 - 1/2 = 0.5; output 1: mean 1/3, total 2/3, residual 4 -> -5
    assert metrics.r2_score(y_true, y_pred) == pytest.approx((0.5 - 5) / 2)


def test_r2_constant_target_and_single_sample():
    assert metrics.r2_score([3.0, 3.0, 3.0], [3.0, 3.0, 3.0]) == 1.0
    assert metrics.r2_score([3.0, 3.0, 3.0], [3.0, 2.0, 3.0]) == 0.0
    # 0.1 has no exact float mean: the constant target is still detected.
    assert metrics.r2_score([0.1] * 3, [0.1, 0.2, 0.1]) == 0.0
    assert math.isnan(metrics.r2_score([1.0], [2.0]))
    # other metrics are defined on one sample
    assert metrics.mean_squared_error([1.0], [3.0]) == 4.0
    assert metrics.root_mean_squared_error([1.0], [3.0]) == 2.0


def test_regression_perfect_and_worse_than_mean():
    y = np.array([1.0, 2.0, 4.0])
    assert metrics.mean_squared_error(y, y) == 0.0
    assert metrics.r2_score(y, y) == 1.0
    assert metrics.r2_score(y, np.full(3, y.mean())) == pytest.approx(0.0, abs=1e-15)
    assert metrics.r2_score(y, -y) < 0


# ---------------------------------------------------------------------------
# Classification edge cases
# ---------------------------------------------------------------------------

def test_perfect_and_worst_predictions():
    y = np.array([0, 1, 2, 1])
    perfect = scores_for(y, 3)
    worst = scores_for((y + 1) % 3, 3)
    for fn in (metrics.accuracy, metrics.precision, metrics.recall, metrics.f1_score):
        assert fn(y, perfect) == 1.0
        assert fn(y, worst) == 0.0
    assert metrics.binary_accuracy([0, 1], [-3.0, 3.0], from_logits=True) == 1.0
    assert metrics.binary_accuracy([0, 1], [3.0, -3.0], from_logits=True) == 0.0


def test_all_one_class():
    y = np.zeros(5, dtype=int)
    assert metrics.accuracy(y, np.zeros(5, dtype=int)) == 1.0
    np.testing.assert_array_equal(metrics.confusion_matrix(y, y), [[5]])
    assert metrics.precision(y, y) == metrics.recall(y, y) == metrics.f1_score(y, y) == 1.0
    # everything predicted as class 1 though all are class 0
    p = np.ones(5, dtype=int)
    np.testing.assert_array_equal(metrics.confusion_matrix(y, p), [[0, 5], [0, 0]])
    np.testing.assert_array_equal(metrics.precision(y, p, average=None), [0.0, 0.0])
    np.testing.assert_array_equal(metrics.recall(y, p, average=None), [0.0, 0.0])
    assert metrics.f1_score(y, p) == 0.0


def test_single_sample():
    assert metrics.accuracy([2], [[0.1, 0.2, 0.7]]) == 1.0
    assert metrics.top_k_accuracy([0], [[0.1, 0.2, 0.7]], k=2) == 0.0
    assert metrics.precision([1], [1]) == 1.0
    np.testing.assert_array_equal(metrics.recall([1], [0], average=None), [0.0, 0.0])


# ---------------------------------------------------------------------------
# Against scikit-learn (skipped when it is not installed)
# ---------------------------------------------------------------------------

def test_against_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    for trial in range(40):
        n, classes = int(rng.integers(2, 30)), int(rng.integers(3, 6))
        y = rng.integers(0, classes, n)
        s = rng.standard_normal((n, classes))
        p = s.argmax(axis=1)
        w = rng.uniform(0, 2, n) if trial % 2 else None
        assert metrics.accuracy(y, s, sample_weight=w) == pytest.approx(
            skm.accuracy_score(y, p, sample_weight=w))
        np.testing.assert_allclose(
            metrics.confusion_matrix(y, s, sample_weight=w),
            skm.confusion_matrix(y, p, labels=range(classes), sample_weight=w))
        # continuous scores: no ties, so the tie rules agree
        k = int(rng.integers(1, classes))
        assert metrics.top_k_accuracy(y, s, k=k, sample_weight=w) == pytest.approx(
            skm.top_k_accuracy_score(y, s, k=k, labels=range(classes), sample_weight=w))
        for ours, theirs in ((metrics.precision, skm.precision_score),
                             (metrics.recall, skm.recall_score),
                             (metrics.f1_score, skm.f1_score)):
            for average in ("macro", "micro", "weighted"):
                assert ours(y, s, average=average, sample_weight=w) == pytest.approx(
                    theirs(y, p, average=average, sample_weight=w, zero_division=0))
            np.testing.assert_allclose(
                ours(y, s, average=None, sample_weight=w),
                theirs(y, p, average=None, labels=range(classes), sample_weight=w,
                       zero_division=0))
        shape = (n,) if trial % 3 == 0 else (n, int(rng.integers(1, 4)))
        yt, yp = rng.standard_normal(shape), rng.standard_normal(shape)
        for ours, name in ((metrics.mean_squared_error, "mean_squared_error"),
                           (metrics.mean_absolute_error, "mean_absolute_error"),
                           (metrics.root_mean_squared_error, "root_mean_squared_error"),
                           (metrics.r2_score, "r2_score")):
            theirs = getattr(skm, name, None)
            if theirs is None:  # root_mean_squared_error is new in scikit-learn 1.4
                continue
            assert ours(yt, yp, sample_weight=w) == pytest.approx(
                theirs(yt, yp, sample_weight=w))


# ---------------------------------------------------------------------------
# Streaming == whole data
# ---------------------------------------------------------------------------

SPLITS = [0, 1, 8, 8, 20, 37, 50]   # uneven, including an empty batch


def stream(metric, y_true, y_pred, w=None):
    metric.reset()
    for a, b in zip(SPLITS[:-1], SPLITS[1:]):
        metric.update(y_true[a:b], y_pred[a:b], None if w is None else w[a:b])
    return metric.result()


def classification_data(seed, classes=4):
    rng = np.random.default_rng(seed)
    n = SPLITS[-1]
    return (rng.integers(0, classes, n), rng.standard_normal((n, classes)),
            rng.uniform(0, 3, n))


@pytest.mark.parametrize("weighted", [False, True])
def test_streaming_accuracy_metrics(weighted):
    y, s, w = classification_data(5)
    w = w if weighted else None
    assert stream(metrics.Accuracy(), y, s, w) == pytest.approx(
        metrics.accuracy(y, s, sample_weight=w), rel=1e-13)
    assert stream(metrics.Accuracy(), one_hot(y, 4), s, w) == pytest.approx(
        metrics.accuracy(y, s, sample_weight=w), rel=1e-13)
    for k in (1, 2, 3):
        assert stream(metrics.TopKAccuracy(k=k), y, s, w) == pytest.approx(
            metrics.top_k_accuracy(y, s, k=k, sample_weight=w), rel=1e-13)
    # binary: one logit column
    yb = (y % 2)[:, None]
    z = s[:, :1]
    expected = metrics.binary_accuracy(yb, z, from_logits=True, sample_weight=w)
    assert stream(metrics.BinaryAccuracy(), yb, z, w) == pytest.approx(expected, rel=1e-13)
    assert stream(metrics.Accuracy(), yb, z, w) == pytest.approx(expected, rel=1e-13)
    assert stream(metrics.Accuracy(), yb[:, 0], z[:, 0], w) == pytest.approx(expected, rel=1e-13)
    # multi-label
    ym = (s > 0.3).astype(int)
    assert stream(metrics.BinaryAccuracy(threshold=0.6), ym, s, w) == pytest.approx(
        metrics.binary_accuracy(ym, s, threshold=0.6, from_logits=True, sample_weight=w),
        rel=1e-13)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("average", [None, "macro", "micro", "weighted"])
def test_streaming_prf(weighted, average):
    y, s, w = classification_data(6)
    w = w if weighted else None
    for cls, fn in ((metrics.Precision, metrics.precision), (metrics.Recall, metrics.recall),
                    (metrics.F1Score, metrics.f1_score)):
        np.testing.assert_allclose(
            stream(cls(average=average), y, s, w),
            fn(y, s, average=average, sample_weight=w), rtol=1e-13)
        # binary logits: class 1 where the logit is > 0
        yb, z = y % 2, s[:, 0]
        np.testing.assert_allclose(
            stream(cls(average=average), yb, z, w),
            fn(yb, (z > 0).astype(int), average=average, sample_weight=w), rtol=1e-13)


def test_streaming_prf_confusion_matrix_and_absent_class():
    y, s, w = classification_data(7, classes=5)
    y = np.where(y == 4, 0, y)
    s[:, 4] = -10.0           # class 4 neither true nor predicted
    m = metrics.F1Score(average=None, num_classes=5)
    stream(m, y, s, w)
    np.testing.assert_allclose(m.confusion_matrix,
                               metrics.confusion_matrix(y, s, sample_weight=w))
    assert m.result()[4] == 0.0
    macro = metrics.F1Score()
    assert stream(macro, y, s, w) == pytest.approx(metrics.f1_score(y, s, sample_weight=w))
    assert stream(macro, y, s, w) == pytest.approx(m.result()[:4].mean())


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("outputs", [None, 1, 3])
def test_streaming_regression(weighted, outputs):
    rng = np.random.default_rng(8)
    shape = (SPLITS[-1],) if outputs is None else (SPLITS[-1], outputs)
    # A large offset makes a naive sum-of-squares variance lose digits.
    y = 1e4 + rng.standard_normal(shape)
    p = y + 0.5 * rng.standard_normal(shape)
    w = rng.uniform(0, 3, SPLITS[-1]) if weighted else None
    for cls, fn in ((metrics.MSE, metrics.mean_squared_error),
                    (metrics.MAE, metrics.mean_absolute_error),
                    (metrics.RMSE, metrics.root_mean_squared_error),
                    (metrics.R2, metrics.r2_score)):
        assert stream(cls(), y, p, w) == pytest.approx(fn(y, p, sample_weight=w), rel=1e-11)


def test_streaming_r2_edge_cases():
    m = metrics.R2()
    m.update([3.0], [3.0])
    assert math.isnan(m.result())          # one sample
    m.update([3.0, 3.0], [3.0, 3.0])
    assert m.result() == 1.0               # constant target, predicted exactly
    m.update([3.0], [2.0])
    assert m.result() == 0.0               # constant target, missed
    m.reset()
    m.update([0.1, 0.1], [0.1, 0.2])
    m.update([0.1], [0.1], sample_weight=[0.3])
    assert m.result() == metrics.r2_score([0.1] * 3, [0.1, 0.2, 0.1], [1, 1, 0.3]) == 0.0


def test_streaming_zero_weight_batch():
    y, s, w = classification_data(9)
    w[8:20] = 0.0
    for cls, fn in ((metrics.Accuracy, metrics.accuracy), (metrics.Precision, metrics.precision)):
        assert stream(cls(), y, s, w) == pytest.approx(fn(y, s, sample_weight=w), rel=1e-13)
    yr = s[:, 0]
    assert stream(metrics.R2(), yr, s[:, 1], w) == pytest.approx(
        metrics.r2_score(yr, s[:, 1], sample_weight=w), rel=1e-12)


def test_mean():
    m = metrics.Mean(name="loss")
    m.update(2.0, sample_weight=3)       # a batch-mean loss weighted by batch size
    m.update(4.0, sample_weight=1)
    assert m.result() == 2.5
    m.update([1.0, 1.0])
    assert m.result() == pytest.approx(12 / 6)
    m.update(np.array([[1.0], [5.0]]), sample_weight=np.array([[1.0], [0.0]]))
    assert m.result() == pytest.approx(13 / 7)
    m.reset()
    with pytest.raises(RuntimeError, match="before update"):
        m.result()
    m.update(float("nan"))
    assert math.isnan(m.result())        # a diverged loss shows as NaN
    m.reset()
    m.update(1.0, sample_weight=0)
    with pytest.raises(ValueError, match="sum to zero"):
        m.result()
    with pytest.raises(ValueError, match="non-negative"):
        m.update(1.0, sample_weight=-1)
    with pytest.raises(ValueError, match="does not match"):
        m.update([1.0, 2.0], sample_weight=[1.0, 2.0, 3.0])


def test_reset_and_result_before_update():
    y, s, _ = classification_data(10)
    cases = [
        (metrics.Accuracy(), y, s),
        (metrics.BinaryAccuracy(), y % 2, s[:, 0]),
        (metrics.TopKAccuracy(k=2), y, s),
        (metrics.Precision(), y, s),
        (metrics.MSE(), s[:, 1], s[:, 0]),
        (metrics.R2(), s[:, 1], s[:, 0]),
        (metrics.MeanMetricWrapper(metrics.accuracy), y, s),
    ]
    for m, yy, ss in cases:
        with pytest.raises(RuntimeError, match="before update"):
            m.result()
        m.update(yy[:0], ss[:0])             # an empty batch adds nothing
        with pytest.raises(RuntimeError, match="before update"):
            m.result()
        m.update(yy[:10], ss[:10])
        first = m.result()
        m.update(yy[10:], ss[10:])
        m.reset()
        m.update(yy[:10], ss[:10])
        assert m.result() == first


def test_streaming_zero_weights_raise_like_the_functions():
    m = metrics.Accuracy()
    m.update([0, 1], [[1.0, 0.0], [0.0, 1.0]], sample_weight=[0, 0])
    with pytest.raises(ValueError, match="sums to zero"):
        m.result()
    with pytest.raises(ValueError, match="sums to zero"):
        metrics.accuracy([0, 1], [0, 1], sample_weight=[0, 0])
    m = metrics.MSE()
    m.update([1.0], [2.0], sample_weight=[0])
    with pytest.raises(ValueError, match="sums to zero"):
        m.result()


# ---------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("call, error, match", [
    (lambda: metrics.accuracy([0, 1, 2], [0, 1]), ValueError, "3 samples but y_pred has 2"),
    (lambda: metrics.accuracy([0, np.nan], [0, 1]), ValueError, "y_true contains NaN"),
    (lambda: metrics.accuracy([0, 1], [[0.1, np.nan], [0.2, 0.3]]), ValueError,
     "y_pred contains NaN"),
    (lambda: metrics.accuracy([0, -1], [0, 1]), ValueError, "negative label -1 at position 1"),
    (lambda: metrics.accuracy([0, 1.5], [0, 1]), ValueError, "whole class labels"),
    (lambda: metrics.accuracy([0, 3], [[1, 0], [0, 1]]), ValueError, "out of range for 2"),
    (lambda: metrics.accuracy([[1, 0, 0]], [[1, 0]]), ValueError, "3 columns but y_pred has 2"),
    (lambda: metrics.accuracy(["a", "b"], [0, 1]), TypeError, "real numbers"),
    (lambda: metrics.accuracy(1, 1), ValueError, "scalar"),
    (lambda: metrics.accuracy([], []), ValueError, "empty"),
    (lambda: metrics.accuracy([0, 1], [0, 1], sample_weight=[1]), ValueError,
     r"sample_weight has shape \(1,\), expected \(2,\)"),
    (lambda: metrics.accuracy([0, 1], [0, 1], sample_weight=[1, -1]), ValueError,
     "non-negative"),
    (lambda: metrics.accuracy([0, 1], [0, 1], sample_weight=[1, np.nan]), ValueError,
     "sample_weight contains NaN"),
    (lambda: metrics.precision([0, 1], [0, 1], average="mean"), ValueError,
     "unknown average 'mean'; expected one of 'macro', 'micro', 'weighted', None"),
    (lambda: metrics.recall([0, 3], [0, 1], num_classes=3), ValueError, "out of range for 3"),
    (lambda: metrics.f1_score([0, 1], [[1, 0], [0, 1]], num_classes=3), ValueError,
     "num_classes=3"),
    (lambda: metrics.confusion_matrix([0, 1], [0, 1], num_classes=0), ValueError,
     "num_classes must be >= 1"),
    (lambda: metrics.top_k_accuracy([0, 1], [0.3, 0.4]), ValueError, r"\(n, classes\)"),
    (lambda: metrics.top_k_accuracy([0], [[0.3, 0.4]], k=0), ValueError, "k must be >= 1"),
    (lambda: metrics.top_k_accuracy([0], [[0.3, 0.4]], k=1.5), TypeError, "integer"),
    (lambda: metrics.binary_accuracy([0, 2], [0.1, 0.9]), ValueError, "0/1"),
    (lambda: metrics.binary_accuracy([0, 1], [0.1, 0.9], threshold=1.0, from_logits=True),
     ValueError, "threshold must be < 1"),
    (lambda: metrics.binary_accuracy([[0, 1]], [[0.1, 0.9, 0.5]]), ValueError,
     r"shape \(1, 2\) but y_pred has shape \(1, 3\)"),
    (lambda: metrics.mean_squared_error([1.0, 2.0], [1.0, 2.0, 3.0]), ValueError,
     "2 samples but y_pred has 3"),
    (lambda: metrics.mean_squared_error([[1.0, 2.0]], [[1.0]]), ValueError, "shape"),
    (lambda: metrics.mean_absolute_error([1.0, np.nan], [1.0, 2.0]), ValueError, "NaN"),
    (lambda: metrics.r2_score([1.0, 2.0], [1.0, np.inf]), ValueError, "infinity"),
    (lambda: metrics.r2_score([1.0, 2.0], [1.0, 2.0], sample_weight=[0, 0]), ValueError,
     "sums to zero"),
])
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_bad_inputs_to_metric_objects():
    with pytest.raises(ValueError, match="unknown average"):
        metrics.Precision(average="binary")
    with pytest.raises(ValueError, match="k must be >= 1"):
        metrics.TopKAccuracy(k=0)
    with pytest.raises(ValueError, match="threshold"):
        metrics.BinaryAccuracy(threshold=0.0)
    with pytest.raises(TypeError, match="name"):
        metrics.Accuracy(name=3)
    # A single score column is read as binary logits, so labels must be 0/1.
    with pytest.raises(ValueError, match="binary logits"):
        metrics.Accuracy().update([0, 2], [0.3, 1.2])
    with pytest.raises(ValueError, match="y_pred contains NaN"):
        metrics.Accuracy().update([0, 1], [[0.3, np.nan], [0.1, 0.2]])
    m = metrics.Recall()
    m.update([0, 1], [[0.3, 0.2, 0.1], [0.1, 0.9, 0.0]])
    with pytest.raises(ValueError, match="earlier batches had 3"):
        m.update([0, 1], [[0.3, 0.2], [0.1, 0.9]])
    with pytest.raises(ValueError, match="num_classes=4"):
        metrics.F1Score(num_classes=4).update([0], [[0.3, 0.2, 0.1]])
    m = metrics.MSE()
    m.update([[1.0, 2.0]], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="earlier batches had 2"):
        m.update([1.0], [1.0])


# ---------------------------------------------------------------------------
# get
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, cls", [
    ("accuracy", metrics.Accuracy), ("acc", metrics.Accuracy),
    ("binary_accuracy", metrics.BinaryAccuracy), ("top_k_accuracy", metrics.TopKAccuracy),
    ("top5", metrics.TopKAccuracy), ("precision", metrics.Precision),
    ("recall", metrics.Recall), ("f1", metrics.F1Score), ("mse", metrics.MSE),
    ("mae", metrics.MAE), ("rmse", metrics.RMSE), ("r2", metrics.R2),
])
def test_get_names(name, cls):
    m = metrics.get(name)
    assert type(m) is cls
    assert m.name == name


def test_get_resolves_accuracy_by_loss():
    m = metrics.get("accuracy", loss=losses.BinaryCrossEntropy())
    assert type(m) is metrics.BinaryAccuracy and m.from_logits and m.name == "accuracy"
    assert type(metrics.get("acc", loss="binary_cross_entropy")) is metrics.BinaryAccuracy
    assert type(metrics.get("accuracy", loss=losses.CrossEntropy())) is metrics.Accuracy
    assert type(metrics.get("accuracy", loss=losses.MSE())) is metrics.Accuracy
    # multi-label outputs with BCE: element-wise accuracy
    m = metrics.get("accuracy", loss=losses.BinaryCrossEntropy())
    m.update([[1, 0], [0, 1]], [[2.0, -1.0], [1.0, 3.0]])
    assert m.result() == 0.75


def test_get_top_k_and_defaults():
    assert metrics.get("top5").k == 5
    assert metrics.get("top_k_accuracy").k == 5
    assert metrics.get("top3").k == 3
    assert metrics.get("top_2_accuracy").k == 2
    assert metrics.get("precision").average == "macro"
    assert metrics.get("binary_accuracy").from_logits is True


def test_get_passes_metrics_through_and_wraps_callables():
    m = metrics.Precision(average="micro")
    assert metrics.get(m) is m
    assert type(metrics.get(metrics.Recall)) is metrics.Recall

    def half_abs_error(y_true, y_pred):
        return float(np.mean(np.abs(np.asarray(y_true) - np.asarray(y_pred)))) / 2

    wrapped = metrics.get(half_abs_error)
    assert isinstance(wrapped, metrics.MeanMetricWrapper)
    assert wrapped.name == "half_abs_error"
    wrapped.update([0.0, 0.0, 0.0], [2.0, 2.0, 2.0])    # batch value 1, 3 samples
    wrapped.update([0.0], [6.0])                        # batch value 3, 1 sample
    assert wrapped.result() == pytest.approx((3 * 1 + 1 * 3) / 4)
    wrapped.reset()
    wrapped.update([0.0, 0.0], [2.0, 6.0], sample_weight=[1.0, 3.0])  # weight 4
    wrapped.update([0.0], [2.0], sample_weight=[4.0])                 # weight 4
    assert wrapped.result() == pytest.approx((2 + 1) / 2)
    bad = metrics.get(lambda y_true, y_pred: "no")
    with pytest.raises(TypeError, match="must return a number"):
        bad.update([0.0], [1.0])


def test_get_maps_cdl_functions_to_exact_streaming_metrics():
    m = metrics.get(metrics.r2_score)
    assert type(m) is metrics.R2 and m.name == "r2_score"
    assert type(metrics.get(metrics.f1_score)) is metrics.F1Score


def test_get_errors():
    with pytest.raises(ValueError, match="unknown metric 'accuracyy'; expected one of .*f1"):
        metrics.get("accuracyy")
    with pytest.raises(TypeError, match="a metric must be"):
        metrics.get(3)
    with pytest.raises(TypeError, match="a metric must be"):
        metrics.get(None)
