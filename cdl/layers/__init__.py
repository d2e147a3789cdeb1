"""Built-in layers and the Layer base class for writing your own.

Each module listed in ``_MODULES`` declares its public layers in
``__all__``; they are exported here and registered by class name, which is
how saved models find them again.
"""
import importlib

from cdl.layers.base import Layer, iter_layers

#: The modules that hold built-in layers, in the order they are exported.
_MODULES = ("dense", "activation", "core", "composite", "merge", "normalization",
            "embedding", "pooling", "reshaping", "noise", "conv", "recurrent", "attention",
            "transformer")

_BY_NAME = {}
for _module_name in _MODULES:
    _module = importlib.import_module(f"cdl.layers.{_module_name}")
    for _name in _module.__all__:
        _obj = getattr(_module, _name)
        globals()[_name] = _obj
        if isinstance(_obj, type) and issubclass(_obj, Layer):
            _BY_NAME[_name] = _obj
del _module_name, _module, _name, _obj

__all__ = ["Layer", *_BY_NAME, "get", "iter_layers", "register_layer"]


#: Layer classes registered by users with ``register_layer`` (name -> class).
_REGISTERED = {}


def register_layer(cls):
    """Make a user-defined ``Layer`` subclass loadable from saved models.

    Usable as a decorator::

        @cdl.register_layer
        class Scale(cdl.layers.Layer):
            ...

    The class is registered under its ``__name__``, which is what
    ``Sequential.get_config`` records. Built-in names cannot be taken;
    registering a name again replaces the earlier user class.

    Returns
    -------
    cls, unchanged

    Examples
    --------
    >>> import cdl
    >>> @cdl.register_layer
    ... class Identity(cdl.layers.Layer):
    ...     def forward(self, x, training=False):
    ...         return self._check_input(x)
    ...     def backward(self, grad):
    ...         return grad
    >>> cdl.layers.get("Identity") is Identity
    True
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer takes a Layer subclass, got {cls!r}")
    name = cls.__name__
    if name in _BY_NAME:
        if _BY_NAME[name] is cls:
            return cls
        raise ValueError(f"{name!r} is the name of a built-in layer; give your class "
                         "another name")
    _REGISTERED[name] = cls
    return cls


def get(class_name):
    """Return the layer class called ``class_name`` (for configs): a built-in
    one, else one registered with ``register_layer``.

    Examples
    --------
    >>> from cdl import layers
    >>> layers.get("Dense")
    <class 'cdl.layers.dense.Dense'>
    """
    if isinstance(class_name, str):
        if class_name in _BY_NAME:
            return _BY_NAME[class_name]
        if class_name in _REGISTERED:
            return _REGISTERED[class_name]
    raise ValueError(f"unknown layer class {class_name!r}; built-in layers are "
                     f"{', '.join(sorted(_BY_NAME))}, and your own classes must be "
                     "registered with cdl.register_layer")
