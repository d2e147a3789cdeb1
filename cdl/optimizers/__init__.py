"""Optimizers: compiled, in-place updates that follow ``torch.optim``'s rules.

Every optimizer has ``step(params, grads)``, a settable ``lr``,
``state_dict()``/``load_state_dict()``, and accepts ``param_groups`` and
``exclude_bias_decay`` (see ``Optimizer``).
"""
from cdl.optimizers.adam import Adam, Adamax, AdamW, NAdam, RAdam
from cdl.optimizers.adaptive import Adagrad, RMSprop
from cdl.optimizers.base import Optimizer
from cdl.optimizers.clip import clip_grad_norm, clip_grad_value
from cdl.optimizers.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Adamax", "NAdam",
           "RAdam", "clip_grad_norm", "clip_grad_value", "get", "from_config"]

_BY_NAME = {cls.__name__.lower(): cls for cls in
            (SGD, Adagrad, RMSprop, Adam, AdamW, Adamax, NAdam, RAdam)}


def get(identifier, **kwargs):
    """Return an optimizer from a name (``"adam"``, ``"sgd"``, ...) or an instance.

    Examples
    --------
    >>> from cdl import optimizers
    >>> optimizers.get("adam", lr=0.01).lr
    0.01
    >>> type(optimizers.get("sgd")).__name__
    'SGD'
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()](**kwargs)
    known = ", ".join(sorted(_BY_NAME))
    raise ValueError(f"unknown optimizer {identifier!r}; expected one of {known}")


def from_config(config):
    """An optimizer from ``{"class_name": ..., "config": {...}}`` (its ``get_config``).

    Examples
    --------
    >>> from cdl import optimizers
    >>> opt = optimizers.Adam(lr=0.01, betas=(0.8, 0.99))
    >>> copy = optimizers.from_config({"class_name": "Adam", "config": opt.get_config()})
    >>> copy.lr, copy.betas
    (0.01, (0.8, 0.99))
    """
    name = config.get("class_name", "") if isinstance(config, dict) else ""
    cls = _BY_NAME.get(name.lower())
    if cls is None or cls.__name__ != name:
        raise ValueError(f"unknown optimizer class {name!r}")
    kwargs = dict(config.get("config", {}))
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return cls(**kwargs)
