# The public path of names defined in cdl.training; the documentation of the
# module there is this module's documentation too (the API reference shows it).
from cdl.training import averaging as _averaging
from cdl.training.averaging import (
    ExponentialMovingAverage, StochasticWeightAveraging, update_batch_norm)

__doc__ = _averaging.__doc__

__all__ = ["ExponentialMovingAverage", "StochasticWeightAveraging", "update_batch_norm"]

# Shown and documented under this public path (the API reference lists the
# classes here and in cdl.callbacks; one canonical name avoids two).
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
