# The public path of names defined in cdl.training; the documentation of the
# module there is this module's documentation too (the API reference shows it).
from cdl.training import callbacks as _callbacks
from cdl.training.averaging import ExponentialMovingAverage, StochasticWeightAveraging
from cdl.training.callbacks import (
    BackupAndRestore, Callback, CallbackList, CSVLogger, EarlyStopping, History, LambdaCallback,
    LearningRateScheduler, LossThreshold, ModelCheckpoint, ProgbarLogger, ReduceLROnPlateau,
    TerminateOnNaN)

__doc__ = _callbacks.__doc__

__all__ = [
    "Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping",
    "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler", "TerminateOnNaN",
    "CSVLogger", "LambdaCallback", "LossThreshold", "BackupAndRestore",
    "ExponentialMovingAverage", "StochasticWeightAveraging",
]
