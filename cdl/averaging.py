# The public path of names defined in cdl.training; the documentation of the
# module there is this module's documentation too (the API reference shows it).
from cdl.training import averaging as _averaging
from cdl.training.averaging import (
    ExponentialMovingAverage, StochasticWeightAveraging, update_batch_norm)

__doc__ = _averaging.__doc__

__all__ = ["ExponentialMovingAverage", "StochasticWeightAveraging", "update_batch_norm"]
