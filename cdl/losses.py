"""Loss functions.

Each loss is an object with ``forward(pred, target, sample_weight=None)
-> float`` (the mean over the batch) and ``backward() -> d loss / d pred``
for the last forward call. With ``sample_weight``, each sample's loss is
multiplied by its weight and the sum is still divided by the batch size
(Keras' convention), so weights of 1 change nothing. Class weights
(``CrossEntropy(weight=...)``, ``NLL(weight=...)``) follow PyTorch instead:
the sum is divided by the total class weight of the batch's labels.

``CrossEntropy`` and ``BinaryCrossEntropy`` take logits (unnormalised
scores) and apply the (log-)softmax or sigmoid themselves, stably; ``NLL``
and ``KLDivergence`` take log-probabilities (the output of a LogSoftmax
layer), as their PyTorch namesakes do.

``CrossEntropy`` and ``NLL`` also take a vector per position, such as a
language model's logits of shape (batch, T, classes) (any number of middle
axes, classes last) with labels of shape (batch, T): every position counts
as a sample of the mean (so the divisor is batch * T, or the class weight
of all the positions' labels), and ``sample_weight`` of shape (batch,)
weighs each sample's positions, the divisor unchanged, as Keras does.
"""
import numbers

import numpy as np

from cdl._kernels import losses as _k
from cdl._kernels import losses_extra as _kx
from cdl._validation import (
    as_float_array, as_real_array, check_bool, check_finite, check_number)

__all__ = ["Loss", "MSE", "MAE", "Huber", "CrossEntropy", "BinaryCrossEntropy", "NLL",
           "KLDivergence", "Poisson", "CosineSimilarity", "Hinge", "get", "from_config"]


def _as_pred(pred):
    """Predictions as a float array (float32 stays float32, anything else float64)."""
    # In native byte order, so that big-endian float32 stays float32 too.
    dtype = np.float32 if isinstance(pred, np.ndarray) and \
        pred.dtype.newbyteorder("=") == np.float32 else np.float64
    return as_float_array(pred, dtype, "pred")


def _as_dense_target(target, pred, name="target", allow_minus_inf=False):
    """Target with the dtype and shape of ``pred``; (n,) is accepted for (n, 1).
    NaN and infinities are rejected (-inf is let through with ``allow_minus_inf``,
    for log-probabilities)."""
    target = as_float_array(target, pred.dtype, name)
    if target.shape != pred.shape:
        if pred.ndim >= 1 and pred.shape[-1] == 1 and target.shape == pred.shape[:-1]:
            target = target.reshape(pred.shape)
        else:
            raise ValueError(
                f"{name} has shape {target.shape}, expected {pred.shape} (the shape of pred)")
    if not allow_minus_inf:
        check_finite(target, name)
    elif target.size and np.isnan(target).any():
        raise ValueError(f"{name} contains NaN")
    elif target.size and (target == np.inf).any():
        raise ValueError(f"{name} contains +infinity")
    return target


def _as_weights(sample_weight, pred):
    """Per-sample weights as a 1-D array of pred's dtype, or None."""
    if sample_weight is None:
        return None
    weights = as_float_array(sample_weight, pred.dtype, "sample_weight")
    rows = pred.shape[0] if pred.ndim else 1
    if weights.shape != (rows,):
        raise ValueError(
            f"sample_weight has shape {weights.shape}, expected ({rows},): one per sample")
    check_finite(weights, "sample_weight")
    if (weights < 0).any():
        raise ValueError("sample_weight must be non-negative")
    return weights


def _as_class_weights(weight):
    """A per-class weight vector as a read-only float64 array, or None."""
    if weight is None:
        return None
    weights = np.array(as_real_array(weight, "weight"), dtype=np.float64)
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(
            f"weight must be a 1-D sequence with one weight per class, got shape "
            f"{weights.shape}")
    check_finite(weights, "weight")
    if (weights < 0).any():
        raise ValueError("weight (class weights) must be non-negative")
    if not (weights > 0).any():
        raise ValueError("weight (class weights) must have at least one positive entry")
    weights.flags.writeable = False
    return weights


class _ClassWeights:
    """The ``weight=`` of a loss over classes, cast once per dtype."""

    def __init__(self, weight):
        self.weight = _as_class_weights(weight)
        self._cast = {}

    def _class_weights(self, classes, dtype):
        """The class weights in ``dtype`` (None without), checked against ``classes``."""
        if self.weight is None:
            return None
        if self.weight.shape[0] != classes:
            raise ValueError(
                f"weight has {self.weight.shape[0]} class weights but pred has {classes} "
                "classes")
        dtype = np.dtype(dtype)
        if dtype not in self._cast:
            self._cast[dtype] = np.ascontiguousarray(self.weight, dtype=dtype)
        return self._cast[dtype]

    def _weight_config(self):
        return None if self.weight is None else [float(w) for w in self.weight]

    def _divisor(self, target, n):
        """With class weights and integer labels, the batch mean divides by
        the total class weight of the labels (see the class docstring)."""
        if self.weight is None:
            return float(n)
        target = np.asarray(target)
        if target.dtype.kind in "iub" and (
                target.ndim > 2 or target.ndim == 2 and target.shape[1] != 1):
            # Integer labels of a sequence (n, d1, ...): the divisor is the class
            # weight of every position's label. (Float targets of two or more
            # axes are read as class probabilities, which divide by n.)
            target = target.reshape(-1)
            n = target.shape[0]
        try:
            labels = _class_labels(target, n, self.weight.shape[0])
        except ValueError:
            return float(n)  # forward raises on these targets, naming what is wrong
        return float(n) if labels is None else float(self.weight[labels].sum())

    def _divides_by_samples(self):
        return self.weight is None


def _class_labels(target, n, classes):
    """Integer labels as int64 of shape (n,), or None if ``target`` holds
    class probabilities (floats of more than one dimension)."""
    try:
        target = np.asarray(target)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"target could not be turned into an array: {err}") from None
    if target.dtype.kind in "iub" or (target.ndim == 1 and target.dtype.kind == "f"):
        if target.ndim == 2 and target.shape[1] == 1:
            target = target[:, 0]
        if target.ndim != 1:
            raise ValueError(
                f"integer labels must have shape ({n},) or ({n}, 1), got "
                f"{target.shape}; pass class probabilities as floats")
        if target.dtype.kind == "f":
            check_finite(target, "labels")
            if not np.array_equal(target, np.round(target)):
                raise ValueError(
                    "1-D float labels must hold whole class numbers; "
                    "pass class probabilities with shape (n, classes)")
        if target.dtype.kind in "fu":
            # Range-check before the cast: int64 would wrap huge values.
            bad = np.flatnonzero((target < 0) | (target >= classes))
            if bad.size:
                raise ValueError(
                    f"label {target[bad[0]]} at position {bad[0]} is out of "
                    f"range for {classes} classes")
        # Aligned too: a contiguous view at an odd byte offset stays unaligned
        # under ascontiguousarray, and the kernels load labels as int64 words.
        return np.require(target, np.int64, requirements="CA")
    return None


def _score_rows(pred, target, sample_weight, what, allow_probabilities=True):
    """``(rows, target, sample_weight)`` for a score vector per sample, of
    shape (n, classes), or per position, (n, d1, ..., classes): positions
    become rows (a view of the C-contiguous ``pred``), with their targets
    and each sample's weight repeated over its positions."""
    if pred.ndim < 2:
        raise ValueError(
            f"{what} must have shape (n, classes), got {pred.shape} (or "
            "(n, d1, ..., classes): a score vector per position)")
    if pred.ndim > 2:
        target, sample_weight = _position_targets(
            target, pred.shape, sample_weight, pred, allow_probabilities)
        pred = pred.reshape(-1, pred.shape[-1])
    return pred, target, sample_weight


def _position_targets(target, shape, sample_weight, pred, allow_probabilities=True):
    """Targets and sample weights of predictions of shape (n, d1, ..., classes)
    flattened to one row per position: labels of shape (n, d1, ...) (or with
    a trailing axis of 1) become (n * d1 * ...,) and class probabilities of
    ``shape`` become (n * d1 * ..., classes); each sample's weight is
    repeated over its positions. ``pred`` is the unflattened prediction,
    which the weights are checked against."""
    lead, classes = shape[:-1], shape[-1]
    try:
        t = np.asarray(target)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"target could not be turned into an array: {err}") from None
    as_real_array(t, "target")
    if t.shape == lead + (1,) and (t.dtype.kind in "iub" or classes != 1):
        t = t.reshape(lead)
    if t.shape == lead:
        if t.dtype.kind == "f":
            check_finite(t, "labels")
            bad = np.argwhere(t != np.round(t))
            if bad.size:
                raise ValueError(
                    f"float labels must hold whole class numbers, got {t[tuple(bad[0])]} at "
                    f"index {tuple(int(i) for i in bad[0])}; pass class probabilities with "
                    f"shape {shape}")
        if t.dtype.kind in "iuf":
            bad = np.argwhere((t < 0) | (t >= classes))
            if bad.size:
                raise ValueError(
                    f"label {t[tuple(bad[0])]} at index {tuple(int(i) for i in bad[0])} is "
                    f"out of range for {classes} classes")
        flat = t.reshape(-1)
        if flat.dtype.kind == "f":
            flat = flat.astype(np.int64)  # whole numbers in range, checked above
    elif t.shape == shape and allow_probabilities and t.dtype.kind == "f":
        flat = t.reshape(-1, classes)
    elif t.shape == shape and allow_probabilities:
        raise ValueError(
            f"integer labels must have shape {lead}, got {t.shape}; pass class "
            "probabilities as floats")
    else:
        expected = f"integer labels of shape {lead}"
        if allow_probabilities:
            expected += f" or class probabilities of shape {shape}"
        raise ValueError(
            f"target has shape {t.shape}; for predictions of shape {shape} expected "
            f"{expected}")
    weights = _as_weights(sample_weight, pred)
    if weights is not None:
        weights = np.repeat(weights, int(np.prod(lead[1:], dtype=np.int64)))
    return flat, weights


class Loss:
    """Base class of losses: ``forward(pred, target)`` then ``backward()``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> loss_fn = losses.MSE()
    >>> loss_fn.forward(np.array([[1.0], [2.0]]), np.array([[0.0], [2.0]]))
    0.5
    >>> loss_fn.backward()                    # d loss / d pred
    array([[1.],
           [0.]])
    """

    name = "loss"

    def __init__(self):
        self._cache = None

    def forward(self, pred, target, sample_weight=None):
        """Return the mean loss of ``pred`` against ``target`` as a float.

        Parameters
        ----------
        pred : array_like
        target : array_like
        sample_weight : array_like of shape (batch_size,), optional
            Non-negative weight of each sample's loss.
        """
        raise NotImplementedError

    def backward(self):
        """Return d loss / d pred for the last ``forward``, shaped like pred."""
        raise NotImplementedError

    def __call__(self, pred, target, sample_weight=None):
        return self.forward(pred, target, sample_weight)

    def _divisor(self, target, n):
        """What ``forward`` divides the batch's summed loss by: the number of
        samples ``n``. Data-parallel training weighs each process's part of a
        batch by it, so a loss whose mean divides by something else (class
        weights) overrides it."""
        return float(n)

    def _divides_by_samples(self):
        """True if ``_divisor`` is always the number of samples."""
        return type(self)._divisor is Loss._divisor

    def _need_forward(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._cache

    def get_config(self):
        """Constructor arguments as a dict."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _RegressionLoss(Loss):
    _kind = None

    def _delta(self):
        return 1.0

    def forward(self, pred, target, sample_weight=None):
        pred = _as_pred(pred)
        target = _as_dense_target(target, pred)
        weights = _as_weights(sample_weight, pred)
        loss = _k.regression_loss(self._kind, pred, target, self._delta(), weights)
        self._cache = (pred, target, weights)
        return loss

    def backward(self):
        pred, target, weights = self._need_forward()
        grad = np.empty_like(pred)
        _k.regression_grad(self._kind, pred, target, grad, self._delta(), weights)
        return grad


class MSE(_RegressionLoss):
    """Mean squared error: mean((pred - target) ** 2) over all elements.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> pred = np.array([[0.5, 1.0], [2.0, 0.0]])
    >>> losses.MSE()(pred, np.array([[0.0, 1.0], [1.0, 0.0]]))   # (0.25 + 0 + 1 + 0) / 4
    0.3125
    """

    name = "mse"
    _kind = _k.KINDS["mse"]


class MAE(_RegressionLoss):
    """Mean absolute error: ``mean(abs(pred - target))``; its gradient at 0 is 0.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> losses.MAE()(np.array([[0.5], [3.0]]), np.array([[0.0], [1.0]]))   # (0.5 + 2) / 2
    1.25
    """

    name = "mae"
    _kind = _k.KINDS["mae"]


class Huber(_RegressionLoss):
    """Huber loss, as PyTorch's HuberLoss: mean of ``0.5 * d**2`` if ``abs(d) < delta``,
    else ``delta * (abs(d) - 0.5 * delta)``, with ``d = pred - target``.

    Parameters
    ----------
    delta : float > 0

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> huber = losses.Huber(delta=1.0)
    >>> huber(np.array([[0.5], [3.0]]), np.array([[0.0], [0.0]]))   # (0.125 + 2.5) / 2
    1.3125
    """

    name = "huber"
    _kind = _k.KINDS["huber"]

    def __init__(self, delta=1.0):
        super().__init__()
        self.delta = check_number(delta, "delta", low=0.0, low_inclusive=False)

    def _delta(self):
        return self.delta

    def get_config(self):
        return {"delta": self.delta}


class CrossEntropy(_ClassWeights, Loss):
    """Softmax cross-entropy from logits, averaged over the batch.

    ``forward(logits, target)`` takes logits of shape (n, classes) and
    either integer class labels of shape (n,) (or (n, 1)) or class
    probabilities of shape (n, classes). Integer-valued float labels of
    shape (n,) are accepted as labels.

    Logits of shape (n, d1, ..., classes) -- a sequence model's
    (batch, T, vocab) -- take labels of shape (n, d1, ...) (or with a
    trailing axis of 1) or probabilities of the logits' shape, and are the
    (n * d1 * ...) rows of a batch below, each sample's weight applied to
    all its positions. This is PyTorch's ``CrossEntropyLoss`` on
    ``logits.permute(0, 2, 1)`` (PyTorch puts the classes second, cdl
    last), and Keras' ``SparseCategoricalCrossentropy(from_logits=True)``
    with its default "sum_over_batch_size" reduction. ``backward`` returns
    the logits' shape.

    With l_ij = logsumexp(z_i) - z_ij (minus the log-softmax), labels y_i,
    class weights c_j (all 1 without ``weight``), smoothing s and sample
    weights w_i (all 1 without ``sample_weight``), the loss is, as PyTorch's
    ``CrossEntropyLoss(weight=c, label_smoothing=s)``::

        labels:         sum_i w_i [(1 - s) c_{y_i} l_{i,y_i} + (s / C) sum_j c_j l_ij]
                        / sum_i c_{y_i}
        probabilities:  sum_i w_i sum_j c_j t_ij l_ij / n,
                        t = (1 - s) target + s / C

    so with class weights and integer labels the mean divides by the total
    class weight of the batch's labels, not by n (PyTorch's rule; a batch
    whose labels all have weight 0 raises ValueError), while probability
    targets keep dividing by n. ``sample_weight`` never changes the divisor.
    Keras' CategoricalCrossentropy takes probabilities by default
    (``from_logits=False``) and has no per-class weights.

    Parameters
    ----------
    weight : sequence of float, optional
        Non-negative weight of each class (one per column of the logits).
    label_smoothing : float in [0, 1)
        As PyTorch: the target becomes (1 - s) * onehot + s / classes.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    >>> loss_fn = losses.CrossEntropy()
    >>> round(loss_fn(logits, np.array([0, 1])), 4)                 # integer labels
    0.3606
    >>> round(loss_fn(logits, np.array([[1.0, 0, 0], [0, 1, 0]])), 4)   # or probabilities
    0.3606
    >>> loss_fn.backward().round(4)           # (softmax(logits) - onehot) / batch size
    array([[-0.0781,  0.0571,  0.021 ],
           [ 0.106 , -0.2119,  0.106 ]])
    >>> round(losses.CrossEntropy(label_smoothing=0.1)(logits, np.array([0, 1])), 4)
    0.4773
    >>> round(loss_fn(logits[None], np.array([[0, 1]])), 4)   # (batch 1, T 2, classes 3)
    0.3606
    >>> loss_fn.backward().shape
    (1, 2, 3)
    """

    name = "cross_entropy"

    def __init__(self, weight=None, label_smoothing=0.0):
        Loss.__init__(self)
        _ClassWeights.__init__(self, weight)
        self.label_smoothing = check_number(
            label_smoothing, "label_smoothing", low=0.0, high=1.0, high_inclusive=False)

    def get_config(self):
        return {"weight": self._weight_config(), "label_smoothing": self.label_smoothing}

    def _labels(self, target, n, classes):
        """Integer labels as int64 of shape (n,), or None if ``target`` holds
        probabilities."""
        return _class_labels(target, n, classes)

    def forward(self, pred, target, sample_weight=None):
        logits = _as_pred(pred)
        self._cache = None  # a failed forward leaves nothing for backward
        self._shape = logits.shape
        logits, target, sample_weight = _score_rows(logits, target, sample_weight, "logits")
        n, classes = logits.shape
        probs = np.empty_like(logits)
        labels = self._labels(target, n, classes)
        if labels is not None and labels.shape[0] != n:
            raise ValueError(f"labels have shape {labels.shape}, expected ({n},) to match pred")
        class_weights = self._class_weights(classes, logits.dtype)
        if labels is not None and class_weights is not None:
            weights = _as_weights(sample_weight, logits)
            loss = _k.cross_entropy_labels_weighted(
                logits, labels, probs, class_weights, self.label_smoothing, weights)
            self._cache = (probs, labels, None, weights, class_weights)
            return loss
        if labels is not None and self.label_smoothing == 0.0:
            weights = _as_weights(sample_weight, logits)
            loss = _k.cross_entropy_labels(logits, labels, probs, weights)
            self._cache = (probs, labels, None, weights, None)
            return loss
        if labels is not None:
            _k.cross_entropy_labels(logits, labels, probs)  # range check of labels
            soft = np.zeros_like(logits)
            soft[np.arange(n), labels] = 1.0
        else:
            soft = _as_dense_target(target, logits, "target probabilities")
            if (soft < 0).any():
                raise ValueError("target probabilities must be non-negative")
        if self.label_smoothing:
            soft = soft * (1.0 - self.label_smoothing) + self.label_smoothing / classes
            soft = np.ascontiguousarray(soft, dtype=logits.dtype)
        weights = _as_weights(sample_weight, logits)
        loss = _k.cross_entropy_soft(logits, soft, probs, weights, class_weights)
        self._cache = (probs, None, soft, weights, class_weights)
        return loss

    def backward(self):
        probs, labels, soft, weights, class_weights = self._need_forward()
        grad = np.empty_like(probs)
        if labels is not None and class_weights is not None:
            _k.cross_entropy_labels_weighted_grad(
                probs, labels, grad, class_weights, self.label_smoothing, weights)
        elif labels is not None:
            _k.cross_entropy_labels_grad(probs, labels, grad, weights)
        else:
            _k.cross_entropy_soft_grad(probs, soft, grad, weights, class_weights)
        return grad.reshape(self._shape)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits (as PyTorch's BCEWithLogitsLoss),
    averaged over all elements; targets in [0, 1] of the logits' shape
    ((n,) is accepted for logits of shape (n, 1)).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> logits = np.array([[2.0], [-1.0]])
    >>> round(losses.BinaryCrossEntropy()(logits, np.array([[1.0], [0.0]])), 4)
    0.2201
    """

    name = "binary_cross_entropy"

    def forward(self, pred, target, sample_weight=None):
        logits = _as_pred(pred)
        target = _as_dense_target(target, logits)
        if target.size and (target.min() < 0 or target.max() > 1):
            raise ValueError("binary cross-entropy targets must lie in [0, 1]")
        weights = _as_weights(sample_weight, logits)
        loss = _k.binary_cross_entropy(logits, target, weights)
        self._cache = (logits, target, weights)
        return loss

    def backward(self):
        logits, target, weights = self._need_forward()
        grad = np.empty_like(logits)
        _k.binary_cross_entropy_grad(logits, target, grad, weights)
        return grad


class NLL(_ClassWeights, Loss):
    """Negative log-likelihood of log-probabilities, as PyTorch's NLLLoss.

    ``forward(log_probs, labels)`` takes log-probabilities of shape
    (n, classes) (the output of a LogSoftmax layer; they are not checked to
    be normalised) and integer class labels of shape (n,) or (n, 1)::

        loss = -sum_i w_i c_{y_i} log_probs[i, y_i] / sum_i c_{y_i}

    with class weights c (all 1 without ``weight``, giving the plain mean
    over the batch) and sample weights w (all 1 without ``sample_weight``;
    they do not change the divisor). As in PyTorch, with class weights the
    mean divides by the total class weight of the batch's labels; a batch
    whose labels all have weight 0 raises ValueError (PyTorch returns NaN).
    As ``CrossEntropy``, log-probabilities of shape (n, d1, ..., classes)
    take labels of shape (n, d1, ...) and average over every position
    (PyTorch's extra dimensions, with the classes last instead of second).
    PyTorch's ``ignore_index`` is not supported.

    Parameters
    ----------
    weight : sequence of float, optional
        Non-negative weight of each class.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> log_probs = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]))
    >>> round(losses.NLL()(log_probs, np.array([0, 1])), 4)    # -(log 0.7 + log 0.8) / 2
    0.2899
    """

    name = "nll"

    def __init__(self, weight=None):
        Loss.__init__(self)
        _ClassWeights.__init__(self, weight)

    def get_config(self):
        return {"weight": self._weight_config()}

    def forward(self, pred, target, sample_weight=None):
        log_probs = _as_pred(pred)
        self._cache = None  # a failed forward leaves nothing for backward
        self._shape = log_probs.shape
        log_probs, target, sample_weight = _score_rows(
            log_probs, target, sample_weight, "log-probabilities", allow_probabilities=False)
        n, classes = log_probs.shape
        as_real_array(target, "labels")
        target = np.asarray(target)
        if target.ndim == 2 and target.shape[1] == 1:
            target = target[:, 0]  # whole-number float labels of shape (n, 1)
        labels = _class_labels(target, n, classes)
        if labels is None:
            raise ValueError(
                f"NLL takes integer class labels of shape ({n},), got floats of shape "
                f"{target.shape}; for class probabilities use CrossEntropy (from logits) "
                "or KLDivergence (from log-probabilities)")
        if labels.shape[0] != n:
            raise ValueError(f"labels have shape {labels.shape}, expected ({n},) to match pred")
        class_weights = self._class_weights(classes, log_probs.dtype)
        weights = _as_weights(sample_weight, log_probs)
        loss = _kx.nll_loss(log_probs, labels, class_weights, weights)
        self._cache = (log_probs, labels, class_weights, weights)
        return loss

    def backward(self):
        log_probs, labels, class_weights, weights = self._need_forward()
        grad = np.empty_like(log_probs)
        _kx.nll_grad(log_probs, labels, grad, class_weights, weights)
        return grad.reshape(self._shape)


class KLDivergence(Loss):
    """Kullback-Leibler divergence of log-probabilities from target
    distributions, as PyTorch's ``KLDivLoss(reduction="batchmean")``.

    ``forward(log_probs, target)`` takes log-probabilities x (e.g. a
    LogSoftmax output) and targets t of the same shape, probabilities by
    default or log-probabilities with ``log_target=True``::

        loss = sum_i w_i sum_j t_ij (log t_ij - x_ij) / n       (0 where t == 0)
        loss = sum_i w_i sum_j exp(t_ij) (t_ij - x_ij) / n      (log_target)

    with n = pred.shape[0] (the batch size: "batchmean") and sample weights
    w (all 1 without ``sample_weight``). Targets must be non-negative
    (``log_target=False``) or may hold -inf for zero probability
    (``log_target=True``); they are not checked to sum to 1.

    Keras' ``KLDivergence`` differs: it takes probabilities, not
    log-probabilities, as predictions, clips both arguments to
    [1e-7, 1] and computes sum t log(t / p) over the last axis before
    averaging over the batch.

    Parameters
    ----------
    log_target : bool
        Targets are log-probabilities.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> log_q = np.log(np.array([[0.5, 0.5]]))        # predictions: log-probabilities
    >>> p = np.array([[0.9, 0.1]])                      # targets: probabilities
    >>> round(losses.KLDivergence()(log_q, p), 4)       # sum p log(p / q)
    0.3681
    """

    name = "kl_divergence"

    def __init__(self, log_target=False):
        super().__init__()
        self.log_target = check_bool(log_target, "log_target")

    def get_config(self):
        return {"log_target": self.log_target}

    def forward(self, pred, target, sample_weight=None):
        log_probs = _as_pred(pred)
        target = _as_dense_target(target, log_probs, allow_minus_inf=self.log_target)
        if not self.log_target and target.size and (target < 0).any():
            raise ValueError(
                "KL divergence targets must be non-negative probabilities "
                "(pass log_target=True for log-probabilities)")
        weights = _as_weights(sample_weight, log_probs)
        loss = _kx.kl_divergence(log_probs, target, self.log_target, weights)
        self._cache = (log_probs, target, weights)
        return loss

    def backward(self):
        log_probs, target, weights = self._need_forward()
        grad = np.empty_like(log_probs)
        _kx.kl_divergence_grad(log_probs, target, grad, self.log_target, weights)
        return grad


class Poisson(Loss):
    """Poisson negative log-likelihood, as PyTorch's ``PoissonNLLLoss``
    (``full=False``), averaged over all elements::

        loss = mean(exp(pred) - target * pred)                 (log_input=True)
        loss = mean(pred - target * log(pred + eps))           (log_input=False)

    Targets (counts or rates) must be non-negative and have pred's shape.
    With ``log_input=False`` predictions must be non-negative rates
    (negative ones give NaN, as in PyTorch). PyTorch's ``full=True``
    Stirling term, which does not depend on pred, is not supported.

    Keras' ``Poisson`` is the ``log_input=False`` form with eps = 1e-7
    (``Poisson(log_input=False, eps=1e-7)``).

    Parameters
    ----------
    log_input : bool
        Predictions are log-rates (default) rather than rates.
    eps : float > 0
        Added to the rate before the log when ``log_input=False``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> log_rate = np.log(np.array([[2.0], [0.5]]))
    >>> round(losses.Poisson()(log_rate, np.array([[3.0], [0.0]])), 4)   # mean(exp(x) - y x)
    0.2103
    """

    name = "poisson"

    def __init__(self, log_input=True, eps=1e-8):
        super().__init__()
        self.log_input = check_bool(log_input, "log_input")
        self.eps = check_number(eps, "eps", low=0.0, low_inclusive=False)

    def get_config(self):
        return {"log_input": self.log_input, "eps": self.eps}

    def forward(self, pred, target, sample_weight=None):
        pred = _as_pred(pred)
        target = _as_dense_target(target, pred)
        if target.size and (target < 0).any():
            raise ValueError("Poisson targets (counts or rates) must be non-negative")
        weights = _as_weights(sample_weight, pred)
        loss = _kx.poisson_nll(pred, target, self.log_input, self.eps, weights)
        self._cache = (pred, target, weights)
        return loss

    def backward(self):
        pred, target, weights = self._need_forward()
        grad = np.empty_like(pred)
        _kx.poisson_nll_grad(pred, target, grad, self.log_input, self.eps, weights)
        return grad


class CosineSimilarity(Loss):
    """Keras' cosine-similarity loss: minus the mean cosine similarity of
    predictions and targets along ``axis``::

        loss = -mean(sum(normalize(target) * normalize(pred), axis))
        normalize(x) = x / max(||x||, 1e-7)

    The mean runs over every vector along ``axis`` (over the batch, and over
    any other axis), each sample's vectors weighted by its ``sample_weight``.
    The norm floor 1e-7 is Keras 3's (``ops.normalize`` with
    ``keras.backend.epsilon()``), so a zero vector has similarity 0;
    tf.keras 2 used ``tf.linalg.l2_normalize``, x / sqrt(max(||x||^2, 1e-12)),
    a floor of 1e-6, which only matters for vectors shorter than 1e-6.
    The result lies in [-1, 1], -1 when pred points along target. PyTorch's
    ``nn.CosineSimilarity`` is not a loss but returns +cos per pair (with its
    own norm floor, 1e-8): this loss is ``-F.cosine_similarity(pred, target,
    dim=axis).mean()`` for vectors that are not tiny.

    Parameters
    ----------
    axis : int
        The features axis, which may not be the batch axis 0; negative
        values count from the end.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> pred = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> round(losses.CosineSimilarity()(pred, np.array([[1.0, 0.0], [0.0, 1.0]])), 4)   # -(1 + 0.7071) / 2
    -0.8536
    """

    name = "cosine_similarity"

    def __init__(self, axis=-1):
        super().__init__()
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    def get_config(self):
        return {"axis": self.axis}

    def _resolve_axis(self, ndim):
        axis = self.axis + ndim if self.axis < 0 else self.axis
        if ndim < 2:
            raise ValueError(
                f"cosine similarity needs pred of shape (n, ..., features), got {ndim} "
                "dimension(s)")
        if not 0 <= axis < ndim:
            raise ValueError(f"axis {self.axis} is out of range for pred with {ndim} dimensions")
        if axis == 0:
            raise ValueError("axis may not be the batch axis (0)")
        return axis

    def forward(self, pred, target, sample_weight=None):
        pred = _as_pred(pred)
        target = _as_dense_target(target, pred)
        axis = self._resolve_axis(pred.ndim)
        weights = _as_weights(sample_weight, pred)
        if axis != pred.ndim - 1:
            pred = np.ascontiguousarray(np.moveaxis(pred, axis, -1))
            target = np.ascontiguousarray(np.moveaxis(target, axis, -1))
        loss = _kx.cosine_similarity(pred, target, weights)
        self._cache = (pred, target, weights, axis)
        return loss

    def backward(self):
        pred, target, weights, axis = self._need_forward()
        grad = np.empty_like(pred)
        _kx.cosine_similarity_grad(pred, target, grad, weights)
        if axis != pred.ndim - 1:
            grad = np.ascontiguousarray(np.moveaxis(grad, -1, axis))
        return grad


class Hinge(Loss):
    """Keras' hinge loss, averaged over all elements::

        loss = mean(max(1 - target * pred, 0))

    Targets must be -1 or 1; targets that are all 0 or 1 are first mapped
    to -1 / 1 (2 t - 1), as Keras does (so a batch mixing -1, 0 and 1 is
    rejected). ``pred`` is a raw score (no sigmoid). The gradient at the
    kink (target * pred == 1) is 0. PyTorch has no such loss (its
    HingeEmbeddingLoss is a different one).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> pred = np.array([[0.8], [-2.0], [0.3]])
    >>> round(losses.Hinge()(pred, np.array([[1.0], [-1.0], [-1.0]])), 4)   # mean(max(0, 1 - t p))
    0.5
    """

    name = "hinge"

    def forward(self, pred, target, sample_weight=None):
        pred = _as_pred(pred)
        target = _as_dense_target(target, pred)
        if target.size:
            if ((target == 0) | (target == 1)).all():
                target = 2.0 * target - 1.0
            elif not (np.abs(target) == 1).all():
                raise ValueError(
                    "hinge targets must be -1 or 1 (or all 0 or 1, which are converted "
                    "to -1 and 1)")
        weights = _as_weights(sample_weight, pred)
        loss = _kx.hinge(pred, target, weights)
        self._cache = (pred, target, weights)
        return loss

    def backward(self):
        pred, target, weights = self._need_forward()
        grad = np.empty_like(pred)
        _kx.hinge_grad(pred, target, grad, weights)
        return grad


_BY_NAME = {
    "mse": MSE, "mean_squared_error": MSE,
    "mae": MAE, "mean_absolute_error": MAE,
    "huber": Huber,
    "cross_entropy": CrossEntropy, "categorical_crossentropy": CrossEntropy,
    "sparse_categorical_crossentropy": CrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy, "binary_crossentropy": BinaryCrossEntropy,
    "bce": BinaryCrossEntropy,
    "nll": NLL,
    "kl_divergence": KLDivergence, "kld": KLDivergence,
    "poisson": Poisson,
    "cosine_similarity": CosineSimilarity,
    "hinge": Hinge,
}


def get(identifier):
    """Return a loss object from a name (e.g. ``"mse"``, ``"cross_entropy"``) or a Loss.

    Examples
    --------
    >>> from cdl import losses
    >>> losses.get("mse")
    MSE()
    >>> losses.get("cross_entropy")
    CrossEntropy(weight=None, label_smoothing=0.0)
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            known = ", ".join(sorted(_BY_NAME))
            raise ValueError(f"unknown loss {identifier!r}; expected one of {known}")
        return _BY_NAME[identifier]()
    raise TypeError(f"a loss must be a name or a Loss, got {identifier!r}")


def from_config(config):
    """A loss from ``{"class_name": ..., "config": {...}}`` (its ``get_config``).

    Examples
    --------
    >>> from cdl import losses
    >>> loss = losses.from_config({"class_name": "Huber", "config": {"delta": 2.0}})
    >>> loss.delta
    2.0
    """
    classes = {cls.__name__: cls for cls in (MSE, MAE, Huber, CrossEntropy, BinaryCrossEntropy,
                                             NLL, KLDivergence, Poisson, CosineSimilarity,
                                             Hinge)}
    name = config.get("class_name") if isinstance(config, dict) else None
    if name not in classes:
        raise ValueError(f"unknown loss class {name!r}")
    return classes[name](**config.get("config", {}))
