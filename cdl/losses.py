"""Loss functions.

Each loss is an object with ``forward(pred, target, sample_weight=None)
-> float`` (the mean over the batch) and ``backward() -> d loss / d pred``
for the last forward call. With ``sample_weight``, each sample's loss is
multiplied by its weight and the sum is still divided by the batch size
(Keras' convention), so weights of 1 change nothing. Classification losses take logits (unnormalised scores)
and apply the (log-)softmax or sigmoid themselves, stably.
"""
import numpy as np

from cdl._kernels import losses as _k
from cdl._validation import as_float_array, check_finite, check_number

__all__ = ["Loss", "MSE", "MAE", "Huber", "CrossEntropy", "BinaryCrossEntropy", "get",
           "from_config"]


def _as_pred(pred):
    """Predictions as a float array (float32 stays float32, anything else float64)."""
    # In native byte order, so that big-endian float32 stays float32 too.
    dtype = np.float32 if isinstance(pred, np.ndarray) and \
        pred.dtype.newbyteorder("=") == np.float32 else np.float64
    return as_float_array(pred, dtype, "pred")


def _as_dense_target(target, pred, name="target"):
    """Target with the dtype and shape of ``pred``; (n,) is accepted for (n, 1)."""
    target = as_float_array(target, pred.dtype, name)
    if target.shape != pred.shape:
        if pred.ndim >= 1 and pred.shape[-1] == 1 and target.shape == pred.shape[:-1]:
            target = target.reshape(pred.shape)
        else:
            raise ValueError(
                f"{name} has shape {target.shape}, expected {pred.shape} (the shape of pred)")
    check_finite(target, name)
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


class Loss:
    """Base class of losses: ``forward(pred, target)`` then ``backward()``."""

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
    """Mean squared error: mean((pred - target) ** 2) over all elements."""

    name = "mse"
    _kind = _k.KINDS["mse"]


class MAE(_RegressionLoss):
    """Mean absolute error: mean(|pred - target|); its gradient at 0 is 0."""

    name = "mae"
    _kind = _k.KINDS["mae"]


class Huber(_RegressionLoss):
    """Huber loss, as PyTorch's HuberLoss: mean of 0.5 d^2 if |d| < delta,
    else delta * (|d| - 0.5 delta), with d = pred - target.

    Parameters
    ----------
    delta : float > 0
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


class CrossEntropy(Loss):
    """Softmax cross-entropy from logits, averaged over the batch.

    ``forward(logits, target)`` takes logits of shape (n, classes) and
    either integer class labels of shape (n,) (or (n, 1)) or class
    probabilities of shape (n, classes). Integer-valued float labels of
    shape (n,) are accepted as labels.

    Parameters
    ----------
    label_smoothing : float in [0, 1)
        As PyTorch: the target becomes (1 - s) * onehot + s / classes.
    """

    name = "cross_entropy"

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        self.label_smoothing = check_number(
            label_smoothing, "label_smoothing", low=0.0, high=1.0, high_inclusive=False)

    def get_config(self):
        return {"label_smoothing": self.label_smoothing}

    def _labels(self, target, n, classes):
        """Integer labels as int64 of shape (n,), or None if ``target`` holds
        probabilities."""
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
            return np.ascontiguousarray(target, dtype=np.int64)
        return None

    def forward(self, pred, target, sample_weight=None):
        logits = _as_pred(pred)
        if logits.ndim != 2:
            raise ValueError(f"logits must have shape (n, classes), got {logits.shape}")
        n, classes = logits.shape
        probs = np.empty_like(logits)
        labels = self._labels(target, n, classes)
        if labels is not None and labels.shape[0] != n:
            raise ValueError(f"labels have shape {labels.shape}, expected ({n},) to match pred")
        if labels is not None and self.label_smoothing == 0.0:
            weights = _as_weights(sample_weight, logits)
            loss = _k.cross_entropy_labels(logits, labels, probs, weights)
            self._cache = (probs, labels, None, weights)
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
        loss = _k.cross_entropy_soft(logits, soft, probs, weights)
        self._cache = (probs, None, soft, weights)
        return loss

    def backward(self):
        probs, labels, soft, weights = self._need_forward()
        grad = np.empty_like(probs)
        if labels is not None:
            _k.cross_entropy_labels_grad(probs, labels, grad, weights)
        else:
            _k.cross_entropy_soft_grad(probs, soft, grad, weights)
        return grad


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits (as PyTorch's BCEWithLogitsLoss),
    averaged over all elements; targets in [0, 1] of the logits' shape
    ((n,) is accepted for logits of shape (n, 1))."""

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


_BY_NAME = {
    "mse": MSE, "mean_squared_error": MSE,
    "mae": MAE, "mean_absolute_error": MAE,
    "huber": Huber,
    "cross_entropy": CrossEntropy, "categorical_crossentropy": CrossEntropy,
    "sparse_categorical_crossentropy": CrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy, "binary_crossentropy": BinaryCrossEntropy,
    "bce": BinaryCrossEntropy,
}


def get(identifier):
    """Return a loss object from a name (e.g. ``"mse"``, ``"cross_entropy"``) or a Loss."""
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
    """A loss from ``{"class_name": ..., "config": {...}}`` (its ``get_config``)."""
    classes = {cls.__name__: cls for cls in (MSE, MAE, Huber, CrossEntropy, BinaryCrossEntropy)}
    name = config.get("class_name") if isinstance(config, dict) else None
    if name not in classes:
        raise ValueError(f"unknown loss class {name!r}")
    return classes[name](**config.get("config", {}))
