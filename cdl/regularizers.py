"""Weight and activity regularizers: L1, L2 and both (Keras' names and defaults).

A regularizer adds ``penalty(w)`` to the training loss and its gradient to
the weight's gradient. Give one to a layer, e.g.
``Dense(64, kernel_regularizer=regularizers.L2(1e-4))`` or
``kernel_regularizer="l2"``; ``fit`` and ``evaluate`` report the loss with
the penalties included, as Keras does.
"""
import numpy as np

from cdl._validation import check_number

__all__ = ["Regularizer", "L1", "L2", "L1L2", "get"]


class Regularizer:
    """Base class: ``penalty(w) -> float`` and ``add_gradient(w, grad)`` (in place).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import regularizers
    >>> w = np.array([1.0, -2.0])
    >>> reg = regularizers.L2(0.1)
    >>> reg.penalty(w)                  # 0.1 * (1 + 4)
    0.5
    >>> grad = np.zeros(2)
    >>> reg.add_gradient(w, grad)       # adds 2 * 0.1 * w
    >>> grad
    array([ 0.2, -0.4])
    """

    def penalty(self, w):
        """The penalty of weight array ``w``, as a float."""
        raise NotImplementedError

    def add_gradient(self, w, grad):
        """Add d penalty / d w to ``grad``, in place."""
        raise NotImplementedError

    def __call__(self, w):
        return self.penalty(w)

    def get_config(self):
        """Constructor arguments as a dict."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    r""":math:`\ell_1 \sum |w| + \ell_2 \sum w^2`; gradient
    :math:`\ell_1 \operatorname{sign}(w) + 2 \ell_2 w`.

    Parameters
    ----------
    l1, l2 : float >= 0, default 0

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import regularizers
    >>> w = np.array([1.0, -2.0])
    >>> round(regularizers.L1L2(l1=0.01, l2=0.1).penalty(w), 6)   # 0.01 * 3 + 0.1 * 5
    0.53
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = check_number(l1, "l1", low=0.0)
        self.l2 = check_number(l2, "l2", low=0.0)

    def penalty(self, w):
        total = 0.0
        if self.l1:
            total += self.l1 * float(np.abs(w).sum(dtype=np.float64))
        if self.l2:
            total += self.l2 * float(np.square(w, dtype=np.float64).sum())
        return total

    def add_gradient(self, w, grad):
        if self.l1:
            grad += (self.l1 * np.sign(w)).astype(grad.dtype, copy=False)
        if self.l2:
            grad += (2.0 * self.l2 * w).astype(grad.dtype, copy=False)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    r""":math:`\ell_1 \sum |w|` (Keras' default :math:`\ell_1` = 0.01).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import regularizers
    >>> w = np.array([1.0, -2.0])
    >>> regularizers.L1(0.5).penalty(w)
    1.5
    >>> from cdl import layers
    >>> dense = layers.Dense(4, kernel_regularizer=regularizers.L1(1e-4))   # on a layer's weights
    """

    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    r""":math:`\ell_2 \sum w^2` (Keras' default :math:`\ell_2` = 0.01; PyTorch's
    ``weight_decay=d`` corresponds to :math:`\ell_2 = d / 2`).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import regularizers
    >>> w = np.array([1.0, -2.0])
    >>> regularizers.L2(0.5).penalty(w)
    2.5
    >>> from cdl import layers
    >>> dense = layers.Dense(4, kernel_regularizer="l2")       # by name, with the default 0.01
    """

    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}
_CLASSES = {cls.__name__: cls for cls in (L1, L2, L1L2)}


def get(identifier):
    """A regularizer from None, a name ("l1", "l2", "l1_l2"), an instance, or a
    ``{"class_name", "config"}`` dict (what configs store).

    Examples
    --------
    >>> from cdl import regularizers
    >>> regularizers.get("l2")
    L2(l2=0.01)
    >>> regularizers.get(None) is None
    True
    """
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    raise ValueError(f"unknown regularizer {identifier!r}; expected one of "
                     f"{', '.join(sorted(_BY_NAME))} or a Regularizer")


def config_of(regularizer):
    """What ``get`` takes back: None or ``{"class_name", "config"}``."""
    if regularizer is None:
        return None
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}
