"""Anomaly detection: name the first layer that produced NaN or infinity.

When checking is on (``cdl.detect_anomaly()`` for every model, or
``model.compile(..., check_numerics=True)`` for one), a model trains and
predicts layer by layer instead of through the fused step, and after each
layer's forward pass, the loss, each layer's backward pass and each
optimizer step it counts the non-finite values of what was just computed.
The first array with any raises ``NonFiniteError`` naming the layer, the
pass and the array. Off (the default) the only cost is one flag test per
pass through the layers.
"""
import contextlib

import numpy as np

from cdl._validation import check_bool

__all__ = ["NonFiniteError", "detect_anomaly", "set_detect_anomaly", "is_anomaly_enabled"]


class _Switch:
    """The process-wide setting (a class attribute reads fast in the hot loops)."""
    on = False


switch = _Switch()


class NonFiniteError(FloatingPointError):
    """A layer, the loss or an optimizer step produced NaN or infinity while
    anomaly detection was on.

    A subclass of ``FloatingPointError`` (hence of ``ArithmeticError``), as
    NumPy raises for floating-point errors it is told to trap.

    Attributes
    ----------
    where : str
        ``"layer"``, ``"loss"`` or ``"optimizer"``.
    name : str
        The layer's name, or the loss's or optimizer's class name.
    class_name : str
        The class of the layer, loss or optimizer.
    index : int or None
        The layer's position in the model (None for the loss and optimizer).
    pass_name : str
        ``"forward"``, ``"backward"`` or ``"step"``.
    array : str
        What held the bad values: ``"output"``, ``"input gradient"``,
        ``"gradient of weight 'kernel'"``, ``"value"`` (of the loss), or for
        the optimizer ``"weight 'kernel' of layer 'dense' (Dense, index 0)"``.
    count : int
        How many of its values are NaN or infinite.
    size : int
        How many values it has.

    Examples
    --------
    >>> import cdl
    >>> error = cdl.NonFiniteError("loss", "MeanSquaredError", "MeanSquaredError",
    ...                            None, "forward", "value", 1, 1)
    >>> isinstance(error, FloatingPointError)
    True
    >>> print(error)
    loss MeanSquaredError produced 1 non-finite value (NaN or infinity) out of 1 in its value during the forward pass
    """

    def __init__(self, where, name, class_name, index, pass_name, array, count, size):
        self.where, self.name, self.class_name, self.index = where, name, class_name, index
        self.pass_name, self.array, self.count, self.size = pass_name, array, count, size
        if where == "layer":
            who = f"layer {name!r} ({class_name}, index {index})"
        else:
            who = f"{where} {class_name}"
        inside = array if where == "optimizer" else f"its {array}"
        during = "its step" if pass_name == "step" else f"the {pass_name} pass"
        super().__init__(
            f"{who} produced {count} non-finite value{'s' if count != 1 else ''} "
            f"(NaN or infinity) out of {size} in {inside} during {during}")


def is_anomaly_enabled():
    """Whether every model checks for NaN/infinity after each layer.

    Returns
    -------
    bool

    Examples
    --------
    >>> import cdl
    >>> cdl.is_anomaly_enabled()
    False
    >>> with cdl.detect_anomaly():
    ...     cdl.is_anomaly_enabled()
    True
    """
    return switch.on


def set_detect_anomaly(mode):
    """Turn anomaly detection on or off for every model in the process.

    Parameters
    ----------
    mode : bool

    Returns
    -------
    bool
        The previous setting.

    Examples
    --------
    >>> import cdl
    >>> cdl.set_detect_anomaly(True)
    False
    >>> cdl.is_anomaly_enabled()
    True
    >>> cdl.set_detect_anomaly(False)
    True
    """
    previous, switch.on = switch.on, check_bool(mode, "mode")
    return previous


class detect_anomaly(contextlib.ContextDecorator):
    """Check every layer for NaN and infinity inside a ``with`` block.

    Inside the block every model trains and predicts layer by layer and
    raises ``cdl.NonFiniteError`` (a ``FloatingPointError``) at the first
    layer output, loss value, gradient or updated weight that holds NaN or
    infinity, naming the layer (name, class, index), the pass and the
    array. On leaving, the previous setting returns. The setting is
    process-wide (all threads), as PyTorch's ``detect_anomaly``; for one
    model use ``model.compile(..., check_numerics=True)`` instead. Also
    usable as a decorator.

    Parameters
    ----------
    mode : bool, default True
        False turns checking off inside the block.

    Examples
    --------
    >>> import numpy as np, cdl
    >>> from cdl import layers
    >>> model = cdl.Sequential([layers.Dense(2, name="head")], input_shape=(2,),
    ...                        dtype="float64", seed=0)
    >>> model.compile("sgd", "mse")
    >>> model.params[0][0, 0] = np.inf
    >>> with cdl.detect_anomaly():
    ...     try:
    ...         model.train_step(np.ones((1, 2)), np.zeros((1, 2)))
    ...     except cdl.NonFiniteError as error:
    ...         print(error.name, error.index, error.pass_name, error.array, error.count)
    head 0 forward output 1
    """

    def __init__(self, mode=True):
        self.mode = check_bool(mode, "mode")
        self._previous = []

    def __enter__(self):
        self._previous.append(set_detect_anomaly(self.mode))
        return self

    def __exit__(self, *exc):
        set_detect_anomaly(self._previous.pop())
        return False


def checking(model):
    """Whether ``model`` checks its passes now."""
    return switch.on or model.check_numerics


def _bad_count(array):
    """Number of NaN/infinite values of a float array (0 quickly when none)."""
    values = np.asarray(array)
    if values.dtype.kind not in "fc" or values.size == 0:
        return 0
    # One summing pass without a temporary: the sum is finite when every value
    # is (float64 sums of float32 values cannot overflow), so count only if not.
    with np.errstate(all="ignore"):  # inf - inf makes the NaN we look for
        total = np.add.reduce(values, axis=None, dtype=np.float64)
    if np.isfinite(total):
        return 0
    return int(values.size - np.count_nonzero(np.isfinite(values)))


def check_forward(layer, index, output):
    """Raise NonFiniteError if the layer's forward output holds NaN/infinity."""
    count = _bad_count(output)
    if count:
        raise NonFiniteError("layer", layer.name, type(layer).__name__, index, "forward",
                             "output", count, np.size(output))


def check_backward(layer, index, input_grad):
    """Raise NonFiniteError if the layer's backward pass produced NaN/infinity
    in a weight gradient (checked first, in weight order) or its input gradient."""
    for owner, name in layer.weight_owners():
        grad = getattr(owner, name + "_grad")
        count = _bad_count(grad)
        if count:
            label = name if owner is layer else f"{owner.name}.{name}"
            raise NonFiniteError("layer", layer.name, type(layer).__name__, index, "backward",
                                 f"gradient of weight {label!r}", count, grad.size)
    if input_grad is not None:
        count = _bad_count(input_grad)
        if count:
            raise NonFiniteError("layer", layer.name, type(layer).__name__, index, "backward",
                                 "input gradient", count, np.size(input_grad))


def check_loss(loss, value, grad):
    """Raise NonFiniteError if the loss value or its gradient is not finite."""
    name = type(loss).__name__
    if not np.isfinite(value):
        raise NonFiniteError("loss", name, name, None, "forward", "value", 1, 1)
    count = _bad_count(grad)
    if count:
        raise NonFiniteError("loss", name, name, None, "backward", "gradient", count,
                             np.size(grad))


def check_weights(model):
    """Raise NonFiniteError if the optimizer step left NaN/infinity in a weight."""
    if not _bad_count(model.param_buffer):
        return
    name = type(model.optimizer).__name__
    for index, layer in enumerate(model.layers):
        for owner, weight in layer.weight_owners():
            count = _bad_count(getattr(owner, weight))
            if count:
                label = weight if owner is layer else f"{owner.name}.{weight}"
                raise NonFiniteError("optimizer", name, name, None, "step",
                                     f"weight {label!r} of layer {layer.name!r} "
                                     f"({type(layer).__name__}, index {index})",
                                     count, getattr(owner, weight).size)
