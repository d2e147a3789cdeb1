# The public path of names defined in cdl.training; the documentation of the
# module there is this module's documentation too (the API reference shows it).
from cdl.training import schedules as _schedules
from cdl.training.schedules import (
    ChainedScheduler, ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, CyclicLR,
    ExponentialLR, LambdaLR, LinearLR, LinearWarmup, LRScheduler, MultiplicativeLR,
    MultiStepLR, OneCycleLR, PolynomialLR, ReduceLROnPlateau, SequentialLR, StepLR, get)

__doc__ = _schedules.__doc__

__all__ = [
    "LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts", "LinearLR", "LinearWarmup", "LambdaLR",
    "ConstantLR", "PolynomialLR", "MultiplicativeLR", "OneCycleLR", "CyclicLR",
    "ReduceLROnPlateau", "SequentialLR", "ChainedScheduler", "get",
]

# Shown and documented under this public path.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
