"""Training: everything that makes a model learn, over the model protocol.

Modules
-------
``trainer``
    ``TrainingMixin``: ``compile``, ``fit``, ``evaluate``, ``predict`` and
    ``train_step`` for a model that satisfies the model protocol.
``callbacks``, ``schedules``, ``averaging``
    Code run at fixed points of ``fit``, learning-rate schedules and weight
    averages; their public path is ``cdl.callbacks``, ``cdl.schedules`` and
    ``cdl.averaging``.

The submodules other than ``trainer`` are imported on first use, so that
``import cdl`` stays quick.
"""
from cdl.training.trainer import TrainingMixin

__all__ = ["TrainingMixin"]
