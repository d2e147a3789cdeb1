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

Every loss takes ``reduction="mean" | "sum" | "none"`` as PyTorch's (see
``Loss``): the sum of the same terms, or the loss of every element (the
elementwise losses) or sample (position, for CrossEntropy and NLL), with
``backward(grad_output)`` for the latter. ``TripletMarginLoss`` and
``MarginRankingLoss`` take several arrays, as a list or side by side along
the last axis of one (a graph model's Concatenate output).
"""
import numbers

import numpy as np
from scipy import special as _special

from cdl._kernels import losses as _k
from cdl._kernels import losses_extra as _kx
from cdl._validation import (
    as_float_array, as_real_array, check_bool, check_finite, check_number)

__all__ = ["Loss", "MSE", "MAE", "Huber", "CrossEntropy", "BinaryCrossEntropy", "NLL",
           "KLDivergence", "Poisson", "CosineSimilarity", "Hinge", "TripletMarginLoss",
           "MarginRankingLoss", "get", "from_config"]


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


_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    """``reduction`` checked: "mean", "sum" or "none"."""
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _row_weights(weights, shape):
    """Per-sample ``weights`` (or None) broadcast against an array of ``shape``
    whose first axis is the batch, as float64 (1.0 without weights)."""
    if weights is None:
        return 1.0
    return np.asarray(weights, np.float64).reshape((-1,) + (1,) * (len(shape) - 1))


class Loss:
    """Base class of losses: ``forward(pred, target)`` then ``backward()``.

    Every built-in loss takes ``reduction``, with PyTorch's meaning:
    "mean" (the default) returns the mean described by the loss's
    docstring as a float, "sum" the sum of the same terms (the mean times
    its divisor: the number of elements, of samples, or the class weights
    of the labels), and "none" an array of the loss of every element (the
    elementwise losses) or every sample or position (the others), each
    multiplied by its sample's ``sample_weight``. ``backward`` then takes
    ``grad_output``, d (something) / d values, an array of that shape, and
    returns the gradient with respect to pred (for "mean" and "sum" it may
    be omitted, or a number that scales the gradient).

    ``compile`` needs a scalar loss, so it refuses a loss with
    ``reduction="none"``; "sum" trains on the sum.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}

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
    >>> per_element = losses.MSE(reduction="none")
    >>> per_element(np.array([[1.0], [2.0]]), np.array([[0.0], [2.0]]))
    array([[1.],
           [0.]])
    >>> per_element.backward(np.array([[1.0], [3.0]]))
    array([[2.],
           [0.]])
    """

    name = "loss"

    def __init__(self, reduction="mean"):
        self._cache = None
        self.reduction = _check_reduction(reduction)

    def forward(self, pred, target, sample_weight=None):
        """Return the loss of ``pred`` against ``target``: a float (the mean
        or the sum) or, with ``reduction="none"``, an array.

        Parameters
        ----------
        pred : array_like
        target : array_like
        sample_weight : array_like of shape (batch_size,), optional
            Non-negative weight of each sample's loss.
        """
        self._cache = None  # a failed forward leaves nothing for backward
        mean = self._forward(pred, target, sample_weight)
        if self.reduction == "mean":
            return mean
        if self.reduction == "sum":
            return float(mean * self._den)
        # An array also for a single value (a 0-d input), as "none" promises.
        return np.asarray(self._values())

    def backward(self, grad_output=None):
        """Return d loss / d pred for the last ``forward``, shaped like pred.

        Parameters
        ----------
        grad_output : array_like or float, optional
            With ``reduction="none"`` (where it is required): the gradient
            with respect to the values ``forward`` returned, of their shape.
            Otherwise None or a number multiplying the gradient.
        """
        self._need_forward()
        if self.reduction == "none":
            if grad_output is None:
                raise ValueError(
                    "backward of a loss with reduction='none' needs grad_output, the "
                    f"gradient with respect to the {self._values_shape} values forward "
                    "returned")
            g = as_float_array(grad_output, np.float64, "grad_output")
            if g.shape != self._values_shape:
                raise ValueError(
                    f"grad_output has shape {g.shape}, expected {self._values_shape} (the "
                    "shape of the values forward returned)")
            check_finite(g, "grad_output")
            return self._backward_values(g)
        scale = 1.0 if grad_output is None else check_number(grad_output, "grad_output")
        grad = self._backward()
        if self.reduction == "sum":
            scale *= self._den
        if scale != 1.0:
            if isinstance(grad, list):  # a loss of several inputs
                return [g * g.dtype.type(scale) for g in grad]
            grad = grad * grad.dtype.type(scale)
        return grad

    def __call__(self, pred, target, sample_weight=None):
        return self.forward(pred, target, sample_weight)

    def _forward(self, pred, target, sample_weight):
        """The mean loss; sets ``_cache`` and ``_den`` (the mean's divisor)."""
        raise NotImplementedError

    def _backward(self):
        """d mean / d pred for the cached forward."""
        raise NotImplementedError

    def _values(self):
        """The weighted loss of every element or sample ("none"); sets
        ``_values_shape``."""
        raise NotImplementedError

    def _backward_values(self, grad_output):
        """d sum(grad_output * values) / d pred (float64 ``grad_output``)."""
        raise NotImplementedError

    def _divisor(self, target, n):
        """What ``forward`` divides the batch's summed loss by: the number of
        samples ``n``. Data-parallel training weighs each process's part of a
        batch by it, so a loss whose mean divides by something else (class
        weights) overrides it."""
        self._check_mean("data-parallel training")
        return float(n)

    def _check_mean(self, what):
        if getattr(self, "reduction", "mean") != "mean":
            raise ValueError(
                f"{what} needs a loss with reduction='mean', got {type(self).__name__}"
                f"(reduction={self.reduction!r})")

    def _divides_by_samples(self):
        """True if ``_divisor`` is always the number of samples."""
        return type(self)._divisor is Loss._divisor and \
            getattr(self, "reduction", "mean") == "mean"

    def _need_forward(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._cache

    def _config(self):
        """The loss's own constructor arguments (``get_config`` adds ``reduction``)."""
        return {}

    def get_config(self):
        """Constructor arguments as a dict."""
        config = self._config()
        if hasattr(self, "reduction"):
            config["reduction"] = self.reduction
        return config

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _ElementwiseLoss(Loss):
    """A loss of every element of pred: "none" returns pred's shape. The
    mean is the kernels'; the values and their gradients for "none" come
    from ``_elementwise`` (float64 NumPy)."""

    def _check_target(self, target):
        """The target checked, possibly converted (Hinge maps 0/1 to -1/1)."""
        return target

    def _den_of(self, pred):
        return float(pred.size)

    def _forward(self, pred, target, sample_weight):
        pred = _as_pred(pred)
        target = _as_dense_target(target, pred, allow_minus_inf=self._allow_minus_inf())
        target = self._check_target(target)
        weights = _as_weights(sample_weight, pred)
        loss = self._kernel_loss(pred, target, weights)
        self._cache = (pred, target, weights)
        self._den = self._den_of(pred)
        return loss

    def _allow_minus_inf(self):
        return False

    def _backward(self):
        pred, target, weights = self._cache
        grad = np.empty_like(pred)
        self._kernel_grad(pred, target, grad, weights)
        return grad

    def _values(self):
        pred, target, weights = self._cache
        values, _ = self._elementwise(pred.astype(np.float64), target.astype(np.float64))
        self._values_shape = pred.shape
        return (values * _row_weights(weights, pred.shape)).astype(pred.dtype)

    def _backward_values(self, grad_output):
        pred, target, weights = self._cache
        _, deriv = self._elementwise(pred.astype(np.float64), target.astype(np.float64))
        return (grad_output * _row_weights(weights, pred.shape) * deriv).astype(pred.dtype)


class _RegressionLoss(_ElementwiseLoss):
    _kind = None

    def _delta(self):
        return 1.0

    def _kernel_loss(self, pred, target, weights):
        return _k.regression_loss(self._kind, pred, target, self._delta(), weights)

    def _kernel_grad(self, pred, target, grad, weights):
        _k.regression_grad(self._kind, pred, target, grad, self._delta(), weights)


class MSE(_RegressionLoss):
    """Mean squared error: mean((pred - target) ** 2) over all elements.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}
        See ``Loss``; "none" returns the squared error of every element.

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

    def _elementwise(self, p, t):
        d = p - t
        return d * d, 2.0 * d


class MAE(_RegressionLoss):
    """Mean absolute error: ``mean(abs(pred - target))``; its gradient at 0 is 0.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}
        See ``Loss``; "none" returns the absolute error of every element.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> losses.MAE()(np.array([[0.5], [3.0]]), np.array([[0.0], [1.0]]))   # (0.5 + 2) / 2
    1.25
    """

    name = "mae"
    _kind = _k.KINDS["mae"]

    def _elementwise(self, p, t):
        d = p - t
        return np.abs(d), np.sign(d)


class Huber(_RegressionLoss):
    """Huber loss, as PyTorch's HuberLoss: mean of ``0.5 * d**2`` if ``abs(d) < delta``,
    else ``delta * (abs(d) - 0.5 * delta)``, with ``d = pred - target``.

    Parameters
    ----------
    delta : float > 0
    reduction : {"mean", "sum", "none"}
        See ``Loss``; "none" returns the loss of every element.

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

    def __init__(self, delta=1.0, reduction="mean"):
        super().__init__(reduction)
        self.delta = check_number(delta, "delta", low=0.0, low_inclusive=False)

    def _delta(self):
        return self.delta

    def _config(self):
        return {"delta": self.delta}

    def _elementwise(self, p, t):
        d = p - t
        ad = np.abs(d)
        values = np.where(ad < self.delta, 0.5 * d * d, self.delta * (ad - 0.5 * self.delta))
        return values, np.clip(d, -self.delta, self.delta)


def _check_ignore_index(ignore_index):
    if ignore_index is None:
        return None
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an integer or None, got {ignore_index!r}")
    return int(ignore_index)


def _drop_ignored(ignore_index, target, shape):
    """``(target, mask)``: labels for predictions of ``shape`` with those equal
    to ``ignore_index`` replaced by 0 (a valid class, so that the usual checks
    pass) and the boolean mask of the ignored positions (of shape
    ``shape[:-1]``), or ``(target, None)`` when nothing is ignored or the
    target is not labels (class probabilities, or something malformed that
    the usual checks then report)."""
    if ignore_index is None:
        return target, None
    try:
        t = np.asarray(target)
    except ValueError:
        return target, None
    if t.dtype.kind not in "biuf":
        return target, None
    lead = tuple(shape[:-1])
    if t.shape == lead + (1,) and t.dtype.kind in "biu":
        t = t.reshape(lead)
    if t.shape != lead:
        return target, None
    mask = t == ignore_index
    if not mask.any():
        return target, None
    t = t.astype(np.int64) if t.dtype.kind == "b" else t.copy()
    t[mask] = 0
    return t, mask


class _LabelRows:
    """What CrossEntropy and NLL share: ``ignore_index``, and the rows left
    once ignored positions are dropped (their loss and gradient are 0)."""

    def _keep_rows(self, ignored, rows, labels, weights):
        """``(rows, labels, weights)`` without the ignored positions, and the mask
        of those kept (None when all are)."""
        if ignored is None or labels is None:
            return rows, labels, weights, None
        keep = ~ignored.reshape(-1)
        rows = np.ascontiguousarray(rows[keep])
        labels = np.require(labels[keep], np.int64, requirements="CA")
        if weights is not None:
            weights = np.ascontiguousarray(weights[keep])
        return rows, labels, weights, keep

    def _scatter(self, kept, keep, trailing=()):
        """``kept`` values of the kept rows placed among zeros for all rows."""
        if keep is None:
            return kept
        full = np.zeros((keep.shape[0],) + trailing, dtype=kept.dtype)
        full[keep] = kept
        return full

    def _divisor(self, target, n):
        """With class weights and integer labels, the batch mean divides by
        the total class weight of the labels (see the class docstring);
        ignored labels count for nothing."""
        self._check_mean("data-parallel training")
        try:
            t = np.asarray(target)
        except ValueError:
            return float(n)  # forward raises on these targets, naming what is wrong
        ignored = self.ignore_index is not None and t.dtype.kind in "biuf" and \
            bool((t == self.ignore_index).any())
        if ignored and self.weight is None:
            raise ValueError(
                f"data-parallel training splits a batch by its samples, but this batch has "
                f"labels equal to ignore_index={self.ignore_index}, which change "
                f"{type(self).__name__}'s divisor: pass weight=[1.0] * classes (the same "
                "loss, divided by the batch's label count) or train in one process")
        if self.weight is None:
            return float(n)
        if t.dtype.kind in "iub" and (t.ndim > 2 or t.ndim == 2 and t.shape[1] != 1):
            # Integer labels of a sequence (n, d1, ...): the divisor is the class
            # weight of every position's label. (Float targets of two or more
            # axes are read as class probabilities, which divide by n.)
            t = t.reshape(-1)
        if ignored:
            t = t.reshape(-1)
            t = t[t != self.ignore_index]
        n = t.shape[0] if t.ndim else n
        try:
            labels = _class_labels(t, n, self.weight.shape[0])
        except ValueError:
            return float(n)
        return float(n) if labels is None else float(self.weight[labels].sum())

    def _divides_by_samples(self):
        return self.weight is None and self.reduction == "mean"


def _rows_backward(loss, grad_output, weights, dtype):
    """The gradient of CrossEntropy's or NLL's per-position values, given
    ``grad_output`` (their gradient): the positions ``ignore_index`` kept,
    each row's incoming gradient (times its sample weight) passed to the
    mean's kernel as a row weight, and the mean's divisor undone."""
    g = grad_output.reshape(-1)
    if loss._keep is not None:
        g = g[loss._keep]
    if weights is not None:
        g = g * weights
    grad = loss._grad(np.ascontiguousarray(g, dtype=dtype))
    grad *= grad.dtype.type(loss._den)
    return loss._full_grad(grad)


class CrossEntropy(_LabelRows, _ClassWeights, Loss):
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

    Labels equal to ``ignore_index`` (PyTorch's default -100, e.g. padding
    tokens) contribute nothing, to the sum as to the divisor (the count, or
    the class weight, of the other labels), as in PyTorch; label smoothing
    skips them too. If every label of a batch is ignored the mean is 0 with
    a zero gradient (PyTorch returns NaN). With ``reduction="none"`` the
    loss of every sample or position comes back (shape ``pred.shape[:-1]``;
    0 at ignored positions), each times its class weight ``c_{y_i}`` (the
    smoothing term as above) and sample weight, as PyTorch's.

    Parameters
    ----------
    weight : sequence of float, optional
        Non-negative weight of each class (one per column of the logits).
    label_smoothing : float in [0, 1)
        As PyTorch: the target becomes (1 - s) * onehot + s / classes.
    ignore_index : int or None
        Label whose positions are left out (integer labels only); None
        ignores none.
    reduction : {"mean", "sum", "none"}
        See ``Loss``.

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

    def __init__(self, weight=None, label_smoothing=0.0, ignore_index=-100, reduction="mean"):
        Loss.__init__(self, reduction)
        _ClassWeights.__init__(self, weight)
        self.label_smoothing = check_number(
            label_smoothing, "label_smoothing", low=0.0, high=1.0, high_inclusive=False)
        self.ignore_index = _check_ignore_index(ignore_index)

    def _config(self):
        return {"weight": self._weight_config(), "label_smoothing": self.label_smoothing,
                "ignore_index": self.ignore_index}

    def _labels(self, target, n, classes):
        """Integer labels as int64 of shape (n,), or None if ``target`` holds
        probabilities."""
        return _class_labels(target, n, classes)

    def _forward(self, pred, target, sample_weight):
        logits = _as_pred(pred)
        self._shape = logits.shape
        target, ignored = _drop_ignored(self.ignore_index, target, logits.shape)
        logits, target, sample_weight = _score_rows(logits, target, sample_weight, "logits")
        n, classes = logits.shape
        labels = self._labels(target, n, classes)
        if labels is not None and labels.shape[0] != n:
            raise ValueError(f"labels have shape {labels.shape}, expected ({n},) to match pred")
        class_weights = self._class_weights(classes, logits.dtype)
        weights = _as_weights(sample_weight, logits)
        logits, labels, weights, keep = self._keep_rows(ignored, logits, labels, weights)
        self._keep = keep
        n = logits.shape[0]
        if n == 0 and keep is not None:  # every position ignored: 0, with a zero gradient
            self._cache = (logits, None, None, None, None, None)
            self._den = 0.0
            return 0.0
        probs = np.empty_like(logits)
        if labels is not None and class_weights is not None:
            loss = _k.cross_entropy_labels_weighted(
                logits, labels, probs, class_weights, self.label_smoothing, weights)
            self._cache = (logits, probs, labels, None, weights, class_weights)
            self._den = _k.labels_class_weight(class_weights, labels)
            return loss
        self._den = float(n)
        if labels is not None and self.label_smoothing == 0.0:
            loss = _k.cross_entropy_labels(logits, labels, probs, weights)
            self._cache = (logits, probs, labels, None, weights, None)
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
        loss = _k.cross_entropy_soft(logits, soft, probs, weights, class_weights)
        self._cache = (logits, probs, None, soft, weights, class_weights)
        return loss

    def _grad(self, weights):
        """d mean / d logits of the kept rows with sample weights ``weights``."""
        logits, probs, labels, soft, _, class_weights = self._cache
        grad = np.empty_like(probs)
        if labels is not None and class_weights is not None:
            _k.cross_entropy_labels_weighted_grad(
                probs, labels, grad, class_weights, self.label_smoothing, weights)
        elif labels is not None:
            _k.cross_entropy_labels_grad(probs, labels, grad, weights)
        else:
            _k.cross_entropy_soft_grad(probs, soft, grad, weights, class_weights)
        return grad

    def _full_grad(self, grad):
        classes = self._shape[-1]
        return self._scatter(grad, self._keep, (classes,)).reshape(self._shape)

    def _backward(self):
        if self._cache[1] is None:
            return np.zeros(self._shape, self._cache[0].dtype)
        return self._full_grad(self._grad(self._cache[4]))

    def _values(self):
        logits, probs, labels, soft, weights, class_weights = self._cache
        self._values_shape = self._shape[:-1]
        if probs is None:
            return np.zeros(self._values_shape, logits.dtype)
        z = logits.astype(np.float64)
        top = z.max(axis=1, keepdims=True)
        nll = top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)) - z  # l_ij
        c = np.ones(z.shape[1]) if class_weights is None else class_weights.astype(np.float64)
        if labels is None:  # probabilities, or labels smoothed into them
            t = soft.astype(np.float64)
            values = (nll * t * c).sum(axis=1)
        else:
            s = self.label_smoothing
            rows = np.arange(z.shape[0])
            values = (1.0 - s) * c[labels] * nll[rows, labels]
            if s:
                values += s / z.shape[1] * (nll * c).sum(axis=1)
        if weights is not None:
            values = values * weights
        return self._scatter(values.astype(logits.dtype), self._keep).reshape(
            self._values_shape)

    def _backward_values(self, grad_output):
        logits, probs, _, _, weights, _ = self._cache
        if probs is None:
            return np.zeros(self._shape, logits.dtype)
        return _rows_backward(self, grad_output, weights, logits.dtype)


def _as_pos_weight(pos_weight):
    """BinaryCrossEntropy's ``pos_weight``: None, or a read-only non-negative
    float64 vector (a number becomes one entry, broadcast over every column)."""
    if pos_weight is None:
        return None
    weights = np.array(as_real_array(pos_weight, "pos_weight"), dtype=np.float64)
    if weights.ndim == 0:
        weights = weights.reshape(1)
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(
            f"pos_weight must be a number or a 1-D sequence with one weight per column "
            f"(the last axis), got shape {weights.shape}")
    check_finite(weights, "pos_weight")
    if (weights < 0).any():
        raise ValueError("pos_weight must be non-negative")
    weights.flags.writeable = False
    return weights


class BinaryCrossEntropy(_ElementwiseLoss):
    """Binary cross-entropy from logits (as PyTorch's BCEWithLogitsLoss),
    averaged over all elements; targets in [0, 1] of the logits' shape
    ((n,) is accepted for logits of shape (n, 1)).

    With logits x, targets t, sample weights w (all 1 without
    ``sample_weight``) and ``pos_weight`` p (all 1 without it), the loss
    of an element is, as PyTorch's ``BCEWithLogitsLoss(pos_weight=p)``::

        l = -[p_j t log(sigmoid(x)) + (1 - t) log(1 - sigmoid(x))]

    with p broadcast over the last axis (one weight per column: per class
    of a multi-label output), so p > 1 favours recall of the positives.
    The mean is ``sum(w l) / pred.size``. cdl's loss takes logits, so it
    is ``BCEWithLogitsLoss``'s counterpart (PyTorch's ``BCELoss``, which
    takes probabilities, has no ``pos_weight``).

    Parameters
    ----------
    pos_weight : float or sequence of float, optional
        Non-negative weight of the positive term, per column of the last
        axis (or one number for all).
    reduction : {"mean", "sum", "none"}
        See ``Loss``; "none" returns the loss of every element.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> logits = np.array([[2.0], [-1.0]])
    >>> round(losses.BinaryCrossEntropy()(logits, np.array([[1.0], [0.0]])), 4)
    0.2201
    >>> round(losses.BinaryCrossEntropy(pos_weight=3.0)(logits, np.array([[1.0], [0.0]])), 4)
    0.347
    """

    name = "binary_cross_entropy"

    def __init__(self, pos_weight=None, reduction="mean"):
        super().__init__(reduction)
        self.pos_weight = _as_pos_weight(pos_weight)

    def _config(self):
        return {"pos_weight": None if self.pos_weight is None
                else [float(w) for w in self.pos_weight]}

    def _check_target(self, target):
        if target.size and (target.min() < 0 or target.max() > 1):
            raise ValueError("binary cross-entropy targets must lie in [0, 1]")
        if self.pos_weight is not None and self.pos_weight.size != 1 and (
                target.ndim == 0 or target.shape[-1] != self.pos_weight.size):
            raise ValueError(
                f"pos_weight has {self.pos_weight.size} weights but pred has "
                f"{target.shape[-1] if target.ndim else 1} columns (its last axis)")
        return target

    def _kernel_loss(self, pred, target, weights):
        if self.pos_weight is None:
            return _k.binary_cross_entropy(pred, target, weights)
        values, _ = self._elementwise(pred.astype(np.float64), target.astype(np.float64))
        return float((values * _row_weights(weights, pred.shape)).sum() / pred.size)

    def _kernel_grad(self, pred, target, grad, weights):
        if self.pos_weight is None:
            _k.binary_cross_entropy_grad(pred, target, grad, weights)
            return
        _, deriv = self._elementwise(pred.astype(np.float64), target.astype(np.float64))
        grad[...] = deriv * _row_weights(weights, pred.shape) / pred.size

    def _elementwise(self, x, t):
        # PyTorch's form: (1 - t) x + (1 + (p - 1) t) softplus(-x), stable for any x.
        scale = 1.0 if self.pos_weight is None else 1.0 + (self.pos_weight - 1.0) * t
        softplus = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0.0)
        values = (1.0 - t) * x + scale * softplus
        return values, (1.0 - t) - scale * _special.expit(-x)


class NLL(_LabelRows, _ClassWeights, Loss):
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
    Labels equal to ``ignore_index`` (PyTorch's default -100) count for
    nothing, in the sum as in the divisor; a batch whose labels are all
    ignored has loss 0 and a zero gradient (PyTorch: NaN). With
    ``reduction="none"`` the loss of every sample or position comes back,
    ``-w_i c_{y_i} log_probs[i, y_i]`` (0 where ignored).

    Parameters
    ----------
    weight : sequence of float, optional
        Non-negative weight of each class.
    ignore_index : int or None
        Label whose positions are left out; None ignores none.
    reduction : {"mean", "sum", "none"}
        See ``Loss``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> log_probs = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]))
    >>> round(losses.NLL()(log_probs, np.array([0, 1])), 4)    # -(log 0.7 + log 0.8) / 2
    0.2899
    """

    name = "nll"

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        Loss.__init__(self, reduction)
        _ClassWeights.__init__(self, weight)
        self.ignore_index = _check_ignore_index(ignore_index)

    def _config(self):
        return {"weight": self._weight_config(), "ignore_index": self.ignore_index}

    def _forward(self, pred, target, sample_weight):
        log_probs = _as_pred(pred)
        self._shape = log_probs.shape
        target, ignored = _drop_ignored(self.ignore_index, target, log_probs.shape)
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
        log_probs, labels, weights, keep = self._keep_rows(ignored, log_probs, labels, weights)
        self._keep = keep
        if log_probs.shape[0] == 0 and keep is not None:  # every position ignored
            self._cache = (log_probs, None, None, None)
            self._den = 0.0
            return 0.0
        loss = _kx.nll_loss(log_probs, labels, class_weights, weights)
        self._cache = (log_probs, labels, class_weights, weights)
        self._den = _k.labels_class_weight(class_weights, labels)
        return loss

    def _grad(self, weights):
        log_probs, labels, class_weights, _ = self._cache
        grad = np.empty_like(log_probs)
        _kx.nll_grad(log_probs, labels, grad, class_weights, weights)
        return grad

    def _full_grad(self, grad):
        return self._scatter(grad, self._keep, (self._shape[-1],)).reshape(self._shape)

    def _backward(self):
        if self._cache[1] is None:
            return np.zeros(self._shape, self._cache[0].dtype)
        return self._full_grad(self._grad(self._cache[3]))

    def _values(self):
        log_probs, labels, class_weights, weights = self._cache
        self._values_shape = self._shape[:-1]
        if labels is None:
            return np.zeros(self._values_shape, log_probs.dtype)
        values = -log_probs[np.arange(labels.shape[0]), labels].astype(np.float64)
        if class_weights is not None:
            values = values * class_weights[labels]
        if weights is not None:
            values = values * weights
        return self._scatter(values.astype(log_probs.dtype), self._keep).reshape(
            self._values_shape)

    def _backward_values(self, grad_output):
        log_probs, labels, _, weights = self._cache
        if labels is None:
            return np.zeros(self._shape, log_probs.dtype)
        return _rows_backward(self, grad_output, weights, log_probs.dtype)


class KLDivergence(_ElementwiseLoss):
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
    reduction : {"mean", "sum", "none"}
        See ``Loss``: "mean" is the "batchmean" above (the division by the
        batch size), "sum" the sum of every term, "none" the term of every
        element (PyTorch's "none").

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

    def __init__(self, log_target=False, reduction="mean"):
        super().__init__(reduction)
        self.log_target = check_bool(log_target, "log_target")

    def _config(self):
        return {"log_target": self.log_target}

    def _allow_minus_inf(self):
        return self.log_target

    def _den_of(self, pred):
        return float(pred.shape[0] if pred.ndim else 1)

    def _check_target(self, target):
        if not self.log_target and target.size and (target < 0).any():
            raise ValueError(
                "KL divergence targets must be non-negative probabilities "
                "(pass log_target=True for log-probabilities)")
        return target

    def _kernel_loss(self, pred, target, weights):
        return _kx.kl_divergence(pred, target, self.log_target, weights)

    def _kernel_grad(self, pred, target, grad, weights):
        _kx.kl_divergence_grad(pred, target, grad, self.log_target, weights)

    def _elementwise(self, x, t):
        # A zero probability (t == 0, or t == -inf as a log) adds nothing.
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.log_target:
                p = np.exp(t)
                values = np.where(p > 0, p * (t - x), 0.0)
            else:
                p = t
                values = np.where(t > 0, t * (np.log(np.where(t > 0, t, 1.0)) - x), 0.0)
        return values, -p


class Poisson(_ElementwiseLoss):
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
    reduction : {"mean", "sum", "none"}
        See ``Loss``; "none" returns the loss of every element.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> log_rate = np.log(np.array([[2.0], [0.5]]))
    >>> round(losses.Poisson()(log_rate, np.array([[3.0], [0.0]])), 4)   # mean(exp(x) - y x)
    0.2103
    """

    name = "poisson"

    def __init__(self, log_input=True, eps=1e-8, reduction="mean"):
        super().__init__(reduction)
        self.log_input = check_bool(log_input, "log_input")
        self.eps = check_number(eps, "eps", low=0.0, low_inclusive=False)

    def _config(self):
        return {"log_input": self.log_input, "eps": self.eps}

    def _check_target(self, target):
        if target.size and (target < 0).any():
            raise ValueError("Poisson targets (counts or rates) must be non-negative")
        return target

    def _kernel_loss(self, pred, target, weights):
        return _kx.poisson_nll(pred, target, self.log_input, self.eps, weights)

    def _kernel_grad(self, pred, target, grad, weights):
        _kx.poisson_nll_grad(pred, target, grad, self.log_input, self.eps, weights)

    def _elementwise(self, x, t):
        if self.log_input:
            e = np.exp(x)
            return e - t * x, e - t
        with np.errstate(divide="ignore", invalid="ignore"):
            return x - t * np.log(x + self.eps), 1.0 - t / (x + self.eps)


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
    reduction : {"mean", "sum", "none"}
        See ``Loss``; "none" returns minus the similarity of every vector
        (pred's shape without ``axis``).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> pred = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> round(losses.CosineSimilarity()(pred, np.array([[1.0, 0.0], [0.0, 1.0]])), 4)   # -(1 + 0.7071) / 2
    -0.8536
    """

    name = "cosine_similarity"

    def __init__(self, axis=-1, reduction="mean"):
        super().__init__(reduction)
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    def _config(self):
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

    def _forward(self, pred, target, sample_weight):
        pred = _as_pred(pred)
        target = _as_dense_target(target, pred)
        axis = self._resolve_axis(pred.ndim)
        weights = _as_weights(sample_weight, pred)
        if axis != pred.ndim - 1:
            pred = np.ascontiguousarray(np.moveaxis(pred, axis, -1))
            target = np.ascontiguousarray(np.moveaxis(target, axis, -1))
        loss = _kx.cosine_similarity(pred, target, weights)
        self._cache = (pred, target, weights, axis)
        self._den = float(pred.size // pred.shape[-1])
        self._values_shape = pred.shape[:-1]
        return loss

    def _grad(self, pred, target, weights):
        grad = np.empty_like(pred)
        _kx.cosine_similarity_grad(pred, target, grad, weights)
        if self._cache[3] != pred.ndim - 1:
            grad = np.ascontiguousarray(np.moveaxis(grad, -1, self._cache[3]))
        return grad

    def _backward(self):
        pred, target, weights, _ = self._cache
        return self._grad(pred, target, weights)

    def _values(self):
        pred, target, weights, _ = self._cache
        p, t = pred.astype(np.float64), target.astype(np.float64)
        floor = _kx.COSINE_EPSILON
        pn = np.maximum(np.sqrt((p * p).sum(axis=-1)), floor)
        tn = np.maximum(np.sqrt((t * t).sum(axis=-1)), floor)
        values = -(p * t).sum(axis=-1) / (pn * tn)
        return (values * _row_weights(weights, values.shape)).astype(pred.dtype)

    def _backward_values(self, grad_output):
        # Every vector becomes a row of its own, weighted by its grad_output.
        pred, target, weights, axis = self._cache
        features = pred.shape[-1]
        g = grad_output * _row_weights(weights, grad_output.shape)
        rows_p = pred.reshape(-1, features)
        grad = np.empty_like(rows_p)
        _kx.cosine_similarity_grad(rows_p, target.reshape(-1, features), grad,
                                   np.ascontiguousarray(g.reshape(-1), dtype=pred.dtype))
        grad *= grad.dtype.type(rows_p.shape[0])
        grad = grad.reshape(pred.shape)
        if axis != pred.ndim - 1:
            grad = np.ascontiguousarray(np.moveaxis(grad, -1, axis))
        return grad


class Hinge(_ElementwiseLoss):
    """Keras' hinge loss, averaged over all elements::

        loss = mean(max(1 - target * pred, 0))

    Targets must be -1 or 1; targets that are all 0 or 1 are first mapped
    to -1 / 1 (2 t - 1), as Keras does (so a batch mixing -1, 0 and 1 is
    rejected). ``pred`` is a raw score (no sigmoid). The gradient at the
    kink (target * pred == 1) is 0. PyTorch has no such loss (its
    HingeEmbeddingLoss is a different one).

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}
        See ``Loss``; "none" returns the loss of every element (Keras'
        "none" averages over the last axis first).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> pred = np.array([[0.8], [-2.0], [0.3]])
    >>> round(losses.Hinge()(pred, np.array([[1.0], [-1.0], [-1.0]])), 4)   # mean(max(0, 1 - t p))
    0.5
    """

    name = "hinge"

    def _check_target(self, target):
        if target.size:
            if ((target == 0) | (target == 1)).all():
                target = 2.0 * target - 1.0
            elif not (np.abs(target) == 1).all():
                raise ValueError(
                    "hinge targets must be -1 or 1 (or all 0 or 1, which are converted "
                    "to -1 and 1)")
        return target

    def _kernel_loss(self, pred, target, weights):
        return _kx.hinge(pred, target, weights)

    def _kernel_grad(self, pred, target, grad, weights):
        _kx.hinge_grad(pred, target, grad, weights)

    def _elementwise(self, p, t):
        margin = 1.0 - t * p
        return np.maximum(margin, 0.0), np.where(margin > 0, -t, 0.0)


def _split_inputs(pred, parts, what):
    """``parts`` float arrays of one shape from a list/tuple of them or from one
    array whose last axis holds them side by side (a Concatenate output);
    returns (arrays, joined) with ``joined`` True for the one-array form."""
    if isinstance(pred, (list, tuple)) and pred and all(isinstance(p, np.ndarray) for p in pred):
        if len(pred) != parts:
            raise ValueError(f"{what} takes {parts} arrays, got {len(pred)}")
        arrays = [_as_pred(p) for p in pred]
        dtype = np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
        arrays = [np.asarray(a, dtype) for a in arrays]
        if any(a.shape != arrays[0].shape for a in arrays):
            raise ValueError(
                f"{what}'s arrays must have one shape, got {[a.shape for a in arrays]}")
        return arrays, False
    pred = _as_pred(pred)
    if pred.ndim < 2 or pred.shape[-1] == 0 or pred.shape[-1] % parts:
        raise ValueError(
            f"{what} takes a list of {parts} arrays, or one array of shape (batch, ..., "
            f"{parts} * width) whose last axis joins them, got shape {pred.shape}")
    width = pred.shape[-1] // parts
    return [pred[..., k * width:(k + 1) * width] for k in range(parts)], True


def _join_grads(grads, joined, dtype):
    grads = [g.astype(dtype) for g in grads]
    return np.concatenate(grads, axis=-1) if joined else grads


class _SeveralInputs(Loss):
    """A loss of several arrays, which ``forward`` takes as a list or side by
    side along the last axis of one array (for a model whose output
    concatenates them); ``backward`` answers in the same form."""

    def forward(self, pred, target=None, sample_weight=None):
        """Return the loss of the arrays in ``pred`` (see the class docstring)."""
        return Loss.forward(self, pred, target, sample_weight)

    def __call__(self, pred, target=None, sample_weight=None):
        return self.forward(pred, target, sample_weight)

    def _weights(self, sample_weight, rows, dtype):
        if sample_weight is None:
            return None
        weights = as_float_array(sample_weight, dtype, "sample_weight")
        if weights.shape != (rows,):
            raise ValueError(
                f"sample_weight has shape {weights.shape}, expected ({rows},): one per sample")
        check_finite(weights, "sample_weight")
        if (weights < 0).any():
            raise ValueError("sample_weight must be non-negative")
        return weights.astype(np.float64)

    def _finish(self, values, weights):
        """The mean of the weighted ``values``; caches their shape and divisor."""
        if values.size == 0:
            self._cache = None
            raise ValueError("the loss of an empty batch is undefined")
        self._values_shape = values.shape
        self._den = float(values.size)
        weighted = values * _row_weights(weights, values.shape)
        self._weighted = weighted
        return float(weighted.sum() / values.size) if values.size else 0.0

    def _backward(self):
        return self._backward_values(np.full(self._values_shape, 1.0 / self._den))

    def _values(self):
        return self._weighted.astype(self._dtype)


class TripletMarginLoss(_SeveralInputs):
    """Triplet margin loss, as PyTorch's ``TripletMarginLoss``: for anchors a,
    positives p and negatives n, embeddings of shape (batch, features)::

        loss_i = max(d(a_i, p_i) - d(a_i, n_i) + margin, 0)
        d(x, y) = ||x - y + eps||_p

    (with ``swap``, d(a_i, n_i) becomes min(d(a_i, n_i), d(p_i, n_i)):
    the distance swap of Balntas et al.), averaged over the batch, each
    sample's loss times its ``sample_weight``.

    The three embeddings come as a list ``[a, p, n]`` of NumPy arrays of shape
    (batch, features), or as one array of shape (batch, 3 * features)
    holding them side by side: the output of a siamese graph model that
    ends in ``Concatenate()([a, p, n])``, which is how ``fit`` trains one
    (its targets are not used: pass zeros, one per sample). ``backward``
    returns the gradients in the form ``forward`` got: a list of three
    arrays, or one array.

    Parameters
    ----------
    margin : float
    p : float > 0
        The norm's order.
    eps : float >= 0
        Added to the differences before the norm, as PyTorch does.
    swap : bool
    reduction : {"mean", "sum", "none"}
        See ``Loss``; "none" returns each sample's loss, shape (batch,).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> a = np.array([[0.0, 0.0]]); p = np.array([[1.0, 0.0]]); n = np.array([[0.0, 3.0]])
    >>> round(losses.TripletMarginLoss(margin=3.0)([a, p, n]), 4)   # 1 - 3 + 3
    1.0
    >>> round(losses.TripletMarginLoss(margin=3.0)(np.hstack([a, p, n])), 4)
    1.0

    A siamese model: one encoder shared by three inputs, its embeddings
    side by side, trained with ``fit`` (the targets are unused zeros):

    >>> from cdl import layers, optimizers
    >>> import cdl
    >>> encoder = layers.Dense(4)
    >>> ins = [cdl.Input(shape=(6,)) for _ in range(3)]
    >>> out = layers.Concatenate()([encoder(x) for x in ins])
    >>> model = cdl.Model(ins, out, seed=0)
    >>> model.compile(optimizers.SGD(lr=0.1), losses.TripletMarginLoss())
    >>> rng = np.random.default_rng(0)
    >>> x = [rng.normal(size=(32, 6)) for _ in range(3)]
    >>> history = model.fit(x, np.zeros(32), epochs=2, batch_size=16, verbose=0)
    >>> model.predict(x).shape
    (32, 12)
    """

    name = "triplet_margin"

    def __init__(self, margin=1.0, p=2, eps=1e-6, swap=False, reduction="mean"):
        super().__init__(reduction)
        self.margin = check_number(margin, "margin")
        self.p = check_number(p, "p", low=0.0, low_inclusive=False)
        self.eps = check_number(eps, "eps", low=0.0)
        self.swap = check_bool(swap, "swap")

    def _config(self):
        return {"margin": self.margin, "p": self.p, "eps": self.eps, "swap": self.swap}

    def _distance(self, x, y):
        """(d, d d / d x) of every row: the p-norm of x - y + eps."""
        diff = x - y + self.eps
        a = np.abs(diff)
        if self.p == 2:
            d = np.sqrt((diff * diff).sum(axis=-1))
            with np.errstate(divide="ignore", invalid="ignore"):
                grad = np.where(d[:, None] > 0, diff / d[:, None], 0.0)
            return d, grad
        d = (a ** self.p).sum(axis=-1) ** (1.0 / self.p)
        with np.errstate(divide="ignore", invalid="ignore"):
            grad = np.where(d[:, None] > 0,
                            np.sign(diff) * a ** (self.p - 1) / d[:, None] ** (self.p - 1), 0.0)
        return d, grad

    def _forward(self, pred, target, sample_weight):
        (a, p, n), joined = _split_inputs(pred, 3, "TripletMarginLoss")
        if a.ndim != 2:
            raise ValueError(
                f"TripletMarginLoss takes embeddings of shape (batch, features), got {a.shape}")
        for name, x in (("anchor", a), ("positive", p), ("negative", n)):
            check_finite(x, name)
        self._dtype = a.dtype
        if target is not None:
            # Not used, but checked: fit hands on whatever targets it was given.
            t = as_real_array(target, "target")
            if t.ndim == 0 or t.shape[0] != a.shape[0]:
                raise ValueError(
                    f"target has shape {t.shape}, expected {a.shape[0]} rows (it is not "
                    "used: pass None, or zeros for fit)")
            check_finite(np.asarray(t, np.float64), "target")
        a, p, n = (x.astype(np.float64) for x in (a, p, n))
        weights = self._weights(sample_weight, a.shape[0], self._dtype)
        d_ap, g_ap = self._distance(a, p)
        d_an, g_an = self._distance(a, n)
        use_pn = np.zeros(a.shape[0], bool)
        g_pn = None
        if self.swap:
            d_pn, g_pn = self._distance(p, n)
            use_pn = d_pn < d_an
            d_an = np.where(use_pn, d_pn, d_an)
        values = np.maximum(d_ap - d_an + self.margin, 0.0)
        self._cache = (values > 0, g_ap, g_an, g_pn, use_pn, weights, joined)
        return self._finish(values, weights)

    def _backward_values(self, grad_output):
        active, g_ap, g_an, g_pn, use_pn, weights, joined = self._cache
        g = (grad_output * _row_weights(weights, grad_output.shape) * active)[:, None]
        # d(a, p) pulls on a and p; the negative distance on a (or p, swapped) and n.
        neg = g * np.where(use_pn[:, None], 0.0, g_an)
        swapped = g * np.where(use_pn[:, None], g_pn if g_pn is not None else 0.0, 0.0)
        grad_a = g * g_ap - neg
        grad_p = -g * g_ap - swapped
        grad_n = neg + swapped
        return _join_grads([grad_a, grad_p, grad_n], joined, self._dtype)


class MarginRankingLoss(_SeveralInputs):
    """Margin ranking loss, as PyTorch's ``MarginRankingLoss``: for scores
    x1, x2 and targets y in {1, -1} (1: x1 should rank higher)::

        loss = mean(max(-y (x1 - x2) + margin, 0))

    over every element, each sample's terms times its ``sample_weight``.
    The two scores come as a list ``[x1, x2]`` of NumPy arrays of one shape, or
    as one array whose last axis holds them side by side (shape (batch, 2)
    for one score each: the output of ``Concatenate()([s1, s2])`` in a
    graph model that scores two inputs with one shared network). ``target``
    has the shape of x1 ((batch,) is accepted for x1 of shape (batch, 1)).
    ``backward`` returns the gradients in the form ``forward`` got.

    Parameters
    ----------
    margin : float
    reduction : {"mean", "sum", "none"}
        See ``Loss``; "none" returns the loss of every element (x1's shape).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import losses
    >>> x1 = np.array([[0.5], [2.0]]); x2 = np.array([[1.0], [0.0]])
    >>> losses.MarginRankingLoss(margin=0.1)([x1, x2], np.array([1, 1]))   # (0.6 + 0) / 2
    0.3
    >>> losses.MarginRankingLoss(margin=0.1)(np.hstack([x1, x2]), np.array([1, 1]))
    0.3
    """

    name = "margin_ranking"

    def __init__(self, margin=0.0, reduction="mean"):
        super().__init__(reduction)
        self.margin = check_number(margin, "margin")

    def _config(self):
        return {"margin": self.margin}

    def _forward(self, pred, target, sample_weight):
        (x1, x2), joined = _split_inputs(pred, 2, "MarginRankingLoss")
        check_finite(x1, "x1")
        check_finite(x2, "x2")
        self._dtype = x1.dtype
        y = _as_dense_target(target, x1)
        if y.size and not (np.abs(y) == 1).all():
            raise ValueError("margin ranking targets must be 1 or -1")
        rows = x1.shape[0] if x1.ndim else 1
        weights = self._weights(sample_weight, rows, self._dtype)
        y = y.astype(np.float64)
        values = np.maximum(-y * (x1.astype(np.float64) - x2) + self.margin, 0.0)
        self._cache = (np.where(values > 0, -y, 0.0), weights, joined)
        return self._finish(values, weights)

    def _backward_values(self, grad_output):
        slope, weights, joined = self._cache
        g = grad_output * _row_weights(weights, grad_output.shape) * slope
        return _join_grads([g, -g], joined, self._dtype)


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
    "triplet_margin": TripletMarginLoss,
    "margin_ranking": MarginRankingLoss,
}


def get(identifier):
    """Return a loss object from a name (e.g. ``"mse"``, ``"cross_entropy"``) or a Loss.

    Examples
    --------
    >>> from cdl import losses
    >>> losses.get("mse")
    MSE(reduction='mean')
    >>> losses.get("cross_entropy")
    CrossEntropy(weight=None, label_smoothing=0.0, ignore_index=-100, reduction='mean')
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
                                             Hinge, TripletMarginLoss, MarginRankingLoss)}
    name = config.get("class_name") if isinstance(config, dict) else None
    if name not in classes:
        raise ValueError(f"unknown loss class {name!r}")
    return classes[name](**config.get("config", {}))
