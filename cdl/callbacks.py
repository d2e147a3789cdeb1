# The public path of the callbacks defined in cdl.training (callbacks, checkpoint
# and averaging); the documentation of cdl.training.callbacks is this module's
# documentation too (the API reference shows it).
from cdl.training import callbacks as _callbacks
from cdl.training.averaging import ExponentialMovingAverage, StochasticWeightAveraging
from cdl.training.callbacks import (
    Callback, CallbackList, CSVLogger, EarlyStopping, History, LambdaCallback,
    LearningRateScheduler, LossThreshold, ProgbarLogger, ReduceLROnPlateau, TensorBoard,
    TerminateOnNaN)
from cdl.training.checkpoint import BackupAndRestore, ModelCheckpoint

__doc__ = _callbacks.__doc__

__all__ = [
    "Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping",
    "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler", "TerminateOnNaN",
    "CSVLogger", "LambdaCallback", "LossThreshold", "BackupAndRestore",
    "ExponentialMovingAverage", "StochasticWeightAveraging", "TensorBoard",
]

# Shown and documented under this public path; the averaging callbacks keep
# cdl.averaging's.
for _name in __all__:
    if globals()[_name].__module__ in ("cdl.training.callbacks", "cdl.training.checkpoint"):
        globals()[_name].__module__ = __name__
del _name
