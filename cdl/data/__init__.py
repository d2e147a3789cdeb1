"""Feeding data to a model: mini-batches, splits, scaling and label encoding.

* :func:`iterate_batches` yields the sample indices of each mini-batch (a
  ``slice`` when not shuffling, so that contiguous input is never copied).
* :class:`BatchLoader` yields ``(x_batch, y_batch[, w_batch])``, reading
  rows as ``fit`` does (:mod:`cdl.data.batching`): arrays in memory through
  buffers reused from batch to batch, ``np.memmap`` inputs from their file,
  batch by batch, never the whole file at once.
* :func:`train_test_split` splits arrays like scikit-learn's, optionally
  keeping the class proportions (``stratify``).
* :class:`StandardScaler` and :class:`MinMaxScaler` follow scikit-learn's
  fitted attributes; both have ``partial_fit`` so that data too large for
  memory can be fitted chunk by chunk (``fit`` does this on its own).
* :func:`one_hot` and :class:`LabelEncoder` turn labels into class indices
  and indicator rows.
* :func:`csv_to_npy` and :func:`concatenate_npy` write ``.npy`` files, in
  bounded memory, for data larger than memory: ``fit`` reads a file opened
  with ``np.load(path, mmap_mode="r")`` batch by batch.

The modules: :mod:`cdl.data.batching` (batches and the reading of their
rows, shared with ``fit``), :mod:`cdl.data.split`,
:mod:`cdl.data.preprocessing` and :mod:`cdl.data.convert`.

Random choices take ``seed``: ``None`` (fresh entropy), an ``int`` or a
``numpy.random.Generator`` (used as is, so its state advances). The same
integer seed always gives the same result.
"""
from cdl.data._common import as_generator
from cdl.data.batching import BatchLoader, iterate_batches
from cdl.data.convert import concatenate_npy, csv_to_npy
from cdl.data.preprocessing import (
    FIT_CHUNK_ELEMENTS, LabelEncoder, MinMaxScaler, NotFittedError, StandardScaler, one_hot)
from cdl.data.split import train_test_split

__all__ = [
    "iterate_batches", "BatchLoader", "train_test_split", "NotFittedError",
    "StandardScaler", "MinMaxScaler", "one_hot", "LabelEncoder", "csv_to_npy",
    "concatenate_npy",
]
