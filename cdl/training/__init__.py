"""Training: everything that makes a model learn, over the model protocol.

Modules
-------
``protocol``
    ``TrainableModel``: the members of a model that the trainer uses.
``trainer``
    ``TrainingMixin``: ``compile``, ``fit``, ``evaluate``, ``predict`` and
    ``train_step`` for a model that satisfies the protocol, and
    ``FitProgress``, where a ``fit`` stands.
``adapters``
    What ``fit`` makes of its data: arrays and memory maps checked once and
    read batch by batch, iterables of batches checked as they come.
``strategy``
    ``Strategy``, how a step runs, and ``SingleProcess``;
    ``cdl.distributed.DataParallel`` is the data-parallel strategy.
``checkpoint``
    The training state that makes a stopped ``fit`` resumable, and the
    callbacks that save it (``ModelCheckpoint``, ``BackupAndRestore``).
``callbacks``, ``schedules``, ``averaging``
    Code run at fixed points of ``fit``, learning-rate schedules and weight
    averages; their public path is ``cdl.callbacks``, ``cdl.schedules`` and
    ``cdl.averaging``.

``checkpoint``, ``callbacks``, ``schedules`` and ``averaging`` are
imported when first used, so that ``import cdl`` stays quick.
"""
from cdl.training.protocol import TrainableModel
from cdl.training.strategy import SingleProcess, Strategy
from cdl.training.trainer import FitProgress, TrainingMixin

__all__ = ["TrainingMixin", "TrainableModel", "Strategy", "SingleProcess", "FitProgress"]
