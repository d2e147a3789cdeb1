"""The model classes that model files hold.

A model class registers itself here when its module is imported, so the
saving code finds it by the name a file records without importing the
module that defines it: the model module imports the saving code to offer
``save`` and ``load_weights``, and the dependency goes one way only.
"""
__all__ = ["register_model_class", "model_class", "check_model"]

_CLASSES = {}


def register_model_class(cls):
    """Let files hold models of ``cls``, under its class name; returns ``cls``.

    Examples
    --------
    >>> import cdl
    >>> from cdl.saving.models import model_class
    >>> model_class("Sequential") is cdl.Sequential
    True
    """
    _CLASSES[cls.__name__] = cls
    return cls


def model_class(name):
    """The registered model class called ``name``, or KeyError."""
    return _CLASSES[name]


def check_model(model):
    """Raise TypeError unless ``model`` is an instance of a registered model class."""
    if not isinstance(model, tuple(_CLASSES.values())):
        kinds = " or ".join(f"cdl.{name}" for name in sorted(_CLASSES)) or "cdl model"
        raise TypeError(f"expected a {kinds} model, got {type(model).__name__}")
