"""Data adapters: what ``fit``, ``evaluate``, ``predict`` and ``train_step``
make of the data they are given.

Array data (NumPy arrays, lists, DataFrames, memory-mapped files) is
checked once, up front (``Inputs``, ``Targets``, ``sample_weights``), and
then read batch by batch into buffers reused from batch to batch; a
memory-mapped file is read through ``cdl.data.batching`` (from the file,
never whole). An iterable of batches (a generator, a
``cdl.data.BatchLoader``) is checked batch by batch as it yields them
(``IterableBatches``). ``ArrayBatches`` and ``IterableBatches`` give the
training loop the batches of each epoch; ``ArrayValidation`` and
``IterableValidation`` the validation passes. ``is_batch_iterable`` is the
one rule that tells an iterable of batches from array data.
"""
import math
import warnings

import numpy as np

from cdl import losses as _losses
from cdl._validation import (
    as_float_array, as_real_array, check_finite, check_number, choose, shape_fits)

__all__ = ["is_streamed", "is_batch_iterable", "refuse_batch_iterable", "Inputs", "Targets",
           "MultiInputs", "MultiTargets", "inputs_for", "targets_for", "weights_for",
           "take_rows", "num_rows",
           "class_weights", "sample_weights", "sample_shape", "batch_indices", "ArrayBatches",
           "IterableBatches", "ArrayValidation", "IterableValidation"]


def is_streamed(x):
    """Memory-mapped arrays are read batch by batch instead of converted whole."""
    return isinstance(x, np.memmap)


def take_rows(data, index, contiguous=False):
    """Rows ``index`` of checked data: an array, a list of arrays (one per
    input or output of a graph model; None entries stay None), or None;
    C-contiguous copies where needed with ``contiguous``."""
    if data is None:
        return None
    if isinstance(data, list):
        return [take_rows(part, index, contiguous) for part in data]
    return np.ascontiguousarray(data[index]) if contiguous else data[index]


def num_rows(data):
    """The number of samples of checked data (an array or a list of arrays)."""
    if isinstance(data, list):
        return next(part.shape[0] for part in data if part is not None)
    return data.shape[0]


def _sample_count(parts, names, what):
    counts = {name: len(part) for part, name in zip(parts, names) if part is not None}
    if len(set(counts.values())) > 1:
        raise ValueError(f"the {what} have different numbers of samples: " + ", ".join(
            f"{name!r}: {n}" for name, n in counts.items()))
    return next(iter(counts.values()))


class MultiInputs:
    """The inputs of a model with several: one ``Inputs`` per input, given
    as a list in input order or a dict keyed by input names; batches are
    lists of arrays in input order."""

    def __init__(self, model, x, name="x"):
        from cdl.graph import structure

        values = structure(x, model.input_names, name)
        self.parts = [Inputs.for_shape(value, shape, model.dtype, f"{name}[{key!r}]")
                      for value, shape, key in zip(values, model.input_shape,
                                                   model.input_names)]
        self.n = _sample_count(self.parts, model.input_names, f"inputs of {name}")
        self.dtype = model.dtype

    @property
    def data(self):
        """The checked arrays, in input order."""
        return [part.data for part in self.parts]

    def __len__(self):
        return self.n

    def batch(self, index):
        """Rows ``index`` of every input, as a list of arrays."""
        return [part.batch(index) for part in self.parts]

    def keep(self, index):
        """Keep only rows ``index`` (a slice), as ``fit`` does for validation_split."""
        for part in self.parts:
            part.keep(index)
        self.n = len(self.parts[0])


def inputs_for(model, x, name="x"):
    """``Inputs`` of ``x`` for ``model``, or ``MultiInputs`` for a model with
    several inputs."""
    if len(model.input_names) > 1:
        return MultiInputs(model, x, name)
    if isinstance(x, dict) or isinstance(x, (list, tuple)) and model.graph is not None:
        # A graph model's one input may come keyed by its name or as [x].
        from cdl.graph import structure

        x, = structure(x, model.input_names, name)
    return Inputs(model, x, name)


class Inputs:
    """Model inputs checked once, and gathered batch by batch into one buffer."""

    def __init__(self, model, x, name="x"):
        self._setup(x, model.input_shape, model.dtype, name)

    @classmethod
    def for_shape(cls, x, shape, dtype, name="x"):
        """Inputs of samples of ``shape`` (one input of a graph model)."""
        inputs = cls.__new__(cls)
        inputs._setup(x, shape, dtype, name)
        return inputs

    def _setup(self, x, input_shape, dtype, name):
        if x is None:
            raise ValueError(f"{name} is required")
        if isinstance(x, np.ndarray) and x.ndim >= 2 and input_shape is not None \
                and not shape_fits(x.shape[1:], input_shape):
            # Refused before the conversion below copies it (a broadcast view
            # can be far larger than its memory).
            as_real_array(x, name)
            raise ValueError(f"{name} has samples of shape {x.shape[1:]}, "
                             f"the model expects {input_shape}")
        if is_streamed(x):
            if x.dtype.kind not in "biuf":
                raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
            # Batches are read from the file, not through the mapping, so that
            # the file's pages do not pile up in memory (cdl.data.batching).
            self.data = x
            self.streamed = True
        else:
            self.data = as_float_array(x, dtype, name)
            check_finite(self.data, name)
            self.streamed = False
        if self.data.ndim < 2:
            raise ValueError(f"{name} has shape {self.data.shape}; expected (n_samples, features...)")
        if input_shape is not None and not shape_fits(self.data.shape[1:], input_shape):
            raise ValueError(f"{name} has samples of shape {self.data.shape[1:]}, "
                             f"the model expects {input_shape}")
        self.name = name
        self.dtype = dtype
        self._gather = None

    @classmethod
    def checked(cls, data, dtype, name="x"):
        """Inputs over ``data`` already checked (of ``dtype``, finite, or a
        memory map read batch by batch; a list of such arrays for a model
        with several inputs), without checking it again."""
        if isinstance(data, list):
            multi = MultiInputs.__new__(MultiInputs)
            multi.parts = [cls.checked(part, dtype, f"{name}[{i}]") for i, part in enumerate(data)]
            multi.n, multi.dtype = num_rows(data), dtype
            return multi
        inputs = cls.__new__(cls)
        inputs.data, inputs.streamed = data, is_streamed(data)
        inputs.dtype, inputs.name, inputs._gather = dtype, name, None
        return inputs

    def __len__(self):
        return self.data.shape[0]

    def keep(self, index):
        """Keep only rows ``index`` (a slice), as ``fit`` does for validation_split."""
        self.data = self.data[index]

    def batch(self, index):
        """Rows ``index`` (a slice or an index array) as a C-contiguous array
        of the model's dtype: a view of a slice in memory, a buffer reused by
        the next batch, or rows read from the file of a memory map."""
        self._gather = _gatherer(self._gather, self.data, self.dtype, self.name)
        rows = self._gather.read(index)
        if self.streamed:
            check_finite(rows, self.name)
        return rows


def _whole_numbers(values):
    """True for a float array of finite whole numbers within int64's range."""
    return values.dtype.kind == "f" and bool(np.isfinite(values).all()) and bool(
        (np.abs(values) < 2 ** 62).all()) and np.array_equal(values, np.round(values))


class MultiTargets:
    """The targets of a model with several outputs: one ``Targets`` per
    trained output (with that output's loss), given as a list in output
    order or a dict keyed by output names; an output without a loss needs
    none (its entry is None)."""

    def __init__(self, model, y, n, name="y"):
        from cdl.graph import structure

        if y is None:
            raise ValueError(f"{name} is required to train or evaluate")
        values = structure(y, model.output_names, name, allow_missing=True)
        losses = model.loss.losses
        self.parts = []
        for value, loss, key in zip(values, losses, model.output_names):
            if loss is None:
                self.parts.append(None)
            elif value is None:
                raise ValueError(f"{name} has no targets for output {key!r}, which has a loss")
            else:
                self.parts.append(Targets(value, n, loss, model.dtype, f"{name}[{key!r}]",
                                          _output_shape(model, len(self.parts))))

    @property
    def data(self):
        """The checked targets, in output order (None for untrained outputs)."""
        return [None if part is None else part.data for part in self.parts]

    def batch(self, index):
        """Rows ``index`` of every output's targets, as a list."""
        return [None if part is None else part.batch(index) for part in self.parts]

    def keep(self, index):
        """Keep only rows ``index`` (a slice)."""
        for part in self.parts:
            if part is not None:
                part.keep(index)


def _per_output(model):
    """True if ``model`` was compiled with a loss per output."""
    # Imported here: it needs cdl.metrics, which compile has loaded.
    from cdl.training.outputs import OutputLosses

    return isinstance(model.loss, OutputLosses)


def weights_for(model, sample_weight, class_weight, y, n):
    """``sample_weights`` for ``model``: for a model compiled with a loss
    per output, ``sample_weight`` may also be a dict by output name or a
    list in output order (one array, or None, per output); one array
    weights every output."""
    if not _per_output(model):
        if class_weight is not None and model.output_shape is not None and \
                len(model.output_shape) > 1:
            # Labels per position (a sequence model's (batch, T)) are not one
            # label per sample, which is what class_weight weighs.
            raise ValueError("class_weight weighs one label per sample; for labels per "
                             "position give the loss its class weights, "
                             "CrossEntropy(weight=...)")
        return sample_weights(sample_weight, class_weight, y, n, model.dtype)
    if class_weight is not None:
        raise ValueError("class_weight applies to a model with one output; with several, "
                         "give sample_weight per output")
    names = model.output_names
    if isinstance(sample_weight, dict) or (
            isinstance(sample_weight, (list, tuple)) and len(sample_weight) == len(names)
            and all(w is None or _one_axis(w) for w in sample_weight)):
        from cdl.graph import structure

        per = structure(sample_weight, names, "sample_weight", allow_missing=True)
        return [sample_weights(w, None, None, n, model.dtype) for w in per]
    return sample_weights(sample_weight, None, None, n, model.dtype)


def _one_axis(value):
    """True if ``value`` reads as a 1-D array; False for anything else,
    ragged lists included (NumPy raises for those; the weights' own check
    then names what is wrong)."""
    try:
        return np.ndim(value) == 1
    except ValueError:
        return False


def targets_for(model, y, n, name="y"):
    """``Targets`` of ``y`` for ``model``'s loss, or ``MultiTargets`` for a
    model compiled with a loss per output."""
    if _per_output(model):
        return MultiTargets(model, y, n, name)
    if isinstance(y, dict) or isinstance(y, (list, tuple)) and model.graph is not None:
        from cdl.graph import structure

        y, = structure(y, model.output_names, name)
    return Targets(y, n, model.loss, model.dtype, name, _output_shape(model, 0))


def _output_shape(model, index):
    """The per-sample shape of output ``index`` of a built model, else None."""
    shape = getattr(model, "output_shape", None)
    if isinstance(shape, list):
        shape = shape[index] if index < len(shape) else None
    if not isinstance(shape, tuple) or not all(d is None or isinstance(d, int) for d in shape):
        return None
    return shape


class Targets:
    """Targets (and per-sample weights) gathered batch by batch."""

    def __init__(self, y, n, loss, dtype, name="y", output_shape=None):
        if y is None:
            raise ValueError(f"{name} is required to train or evaluate")
        if is_streamed(y):
            if y.dtype.kind not in "biuf":
                raise TypeError(f"{name} must hold real numbers, got dtype {y.dtype}")
        else:
            y = as_real_array(y, name)  # names ragged lists, strings, complex...
        self.loss, self.name, self.dtype = loss, name, dtype
        self.streamed = is_streamed(y)
        self._gather = None
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"{name} has {y.shape[0] if y.ndim else 0} samples, x has {n}")
        # Labels have one axis less than the predictions: (n,) for (n, classes),
        # (n, T) for a sequence's (n, T, classes) (``output_shape`` is per sample).
        label_ndim = 1 if output_shape is None or len(output_shape) < 2 else len(output_shape)
        if isinstance(loss, _losses.CrossEntropy) and not self.streamed \
                and y.ndim == label_ndim and (y.dtype.kind in "biu" or _whole_numbers(y)):
            # Class labels, converted once (the loss checks their range per batch).
            self.data = np.require(y, np.int64, requirements="CA")  # kernels need aligned
        elif self.streamed:
            self.data = y
        else:
            self.data = as_float_array(y, dtype, name)
            self._check(self.data)

    def _check(self, values):
        """What the losses check per batch, done once for the whole array."""
        if values.dtype.kind == "f":
            check_finite(values, self.name)
            if isinstance(self.loss, _losses.BinaryCrossEntropy) and values.size and (
                    values.min() < 0 or values.max() > 1):
                raise ValueError("binary cross-entropy targets must lie in [0, 1]")

    def batch(self, index):
        """Targets of rows ``index`` (a slice or an index array), checked, as
        a C-contiguous array (a view or a reused buffer for targets in
        memory, a new array read from the file of a memory map)."""
        # Labels keep their int64; values read from a file are converted and
        # checked here, those in memory were when they were given.
        self._gather = _gatherer(self._gather, self.data, None, self.name)
        rows = self._gather.read(index)
        if self.streamed:
            if rows.dtype.kind == "f":
                rows = as_float_array(rows, self.dtype, self.name)
            self._check(rows)
        return rows

    def keep(self, index):
        """Keep only rows ``index`` (a slice), as ``fit`` does for validation_split."""
        self.data = self.data[index]


def _gatherer(gather, data, dtype, name):
    """``gather`` if it reads ``data``, else a new ``RowGatherer`` of it
    (``fit`` slices its data for ``validation_split``), closing the old one."""
    if gather is not None and gather.array is data:
        return gather
    if gather is not None:
        gather.close()
    # cdl.data is imported with the first batch, not with cdl (see cdl's lazy modules).
    from cdl.data.batching import RowGatherer

    return RowGatherer(data, dtype, name)


def class_weights(class_weight, y):
    """Per-sample weights from ``class_weight`` (a dict or "balanced")."""
    labels = _class_weight_labels(y)
    # Indexed through the classes present, not a table as long as the largest
    # label: a label of 10**12 must not allocate terabytes.
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if isinstance(class_weight, str):
        choose(class_weight, ("balanced",), "class_weight")
        per_class = len(labels) / (len(classes) * counts)
    elif isinstance(class_weight, dict):
        table = {int(k): check_number(v, f"class_weight[{k}]", low=0.0)
                 for k, v in class_weight.items()}
        missing = set(classes.tolist()) - set(table)
        if missing:
            raise ValueError(f"class_weight has no weight for classes {sorted(missing)}")
        per_class = np.array([table[c] for c in classes.tolist()], dtype=np.float64)
    else:
        raise TypeError("class_weight must be a dict {class: weight} or 'balanced'")
    return per_class[index.reshape(-1)]


def _class_weight_labels(y):
    """The class label of each sample of ``y`` (labels or one-hot rows) as int64."""
    y = as_real_array(y, "y")
    if y.ndim == 0 or y.ndim > 2:
        raise ValueError("class_weight needs y of class labels (n,) or (n, 1), or one-hot "
                         f"rows (n, classes); got shape {y.shape}")
    if y.dtype.kind == "f":
        check_finite(y, "y")
    labels = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)
    if labels.dtype.kind == "f":
        if not np.array_equal(labels, np.round(labels)) or (np.abs(labels) >= 2**62).any():
            raise ValueError("class_weight needs integer class labels (or one-hot targets)")
    elif labels.dtype.kind == "u" and labels.size and labels.max() >= 2**62:
        raise ValueError(f"class_weight: label {labels.max()} is too large")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"class_weight needs class labels >= 0, got {labels.min()}")
    return labels


def sample_weights(sample_weight, class_weight, y, n, dtype):
    """Combined per-sample weights (sample_weight * class weight) in ``dtype``,
    or None: the one check of weights for ``fit``, ``evaluate``,
    ``train_step`` and validation data. Raises ValueError for a wrong
    shape, NaN, infinity, negative weights or weights too large for
    ``dtype``."""
    weights = None
    if sample_weight is not None:
        weights = as_float_array(sample_weight, np.float64, "sample_weight")
        if weights.shape != (n,):
            raise ValueError(f"sample_weight has shape {weights.shape}, expected ({n},)")
        check_finite(weights, "sample_weight")
        if (weights < 0).any():
            raise ValueError("sample_weight must be non-negative")
    if class_weight is not None:
        per_class = class_weights(class_weight, y)
        if per_class.shape != (n,):
            raise ValueError(f"y has {per_class.shape[0]} samples, x has {n}")
        weights = per_class if weights is None else weights * per_class
    if weights is None:
        return None
    # Checked again in the model's dtype: 1e39 is a finite float64 but
    # infinity in float32, which would make the loss NaN.
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(weights, dtype=dtype)
    check_finite(converted, "sample_weight" if class_weight is None
                 else "sample_weight times class_weight")
    return converted


def sample_shape(x):
    """The shape of one sample of ``x``, to build a model from; ``x`` is
    checked first, so that a ragged list or strings get cdl's message."""
    if not is_streamed(x):
        x = as_real_array(x, "x")
    return x.shape[1:]


def batch_indices(n, batch_size, shuffle, rng, order=None):
    """Slices (in order) or index arrays (shuffled) covering range(n); a given
    ``order`` (a permutation of range(n)) is used instead of drawing one."""
    if not shuffle:
        return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if order is None:
        order = rng.permutation(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def is_batch_iterable(x):
    """True for an iterable of batches (a generator, an iterator, a data
    loader), as opposed to array data (arrays, lists, tuples, dicts of
    arrays keyed by input or output names, objects with
    ``__array__`` such as DataFrames, and objects with the buffer protocol
    such as ``memoryview`` and ``array.array``): the one rule by which
    ``fit``, ``evaluate``, ``predict`` and ``train_step`` tell them apart."""
    if isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)) or hasattr(x, "__array__"):
        return False
    if hasattr(x, "__next__"):
        return True
    return hasattr(x, "__iter__") and not _has_buffer(x)


def _has_buffer(x):
    """True if ``x`` exports the buffer protocol (NumPy reads it as an array)."""
    try:
        memoryview(x).release()
    except TypeError:
        return False
    return True


def refuse_batch_iterable(x, name, call):
    """Raise TypeError if ``x`` is an iterable of batches, which only ``fit``
    (and its ``validation_data``) take."""
    if is_batch_iterable(x):
        raise TypeError(f"{call} takes array data; {name} is an iterable of batches "
                        f"({type(x).__name__}), which only fit accepts")


class ArrayBatches:
    """``fit``'s training data given as arrays (in memory or memory-mapped):
    the batches of each epoch, in the order kept by ``FitProgress``."""

    exhausted = False

    def __init__(self, model, x, y, sample_weight, class_weight, batch_size, shuffle):
        self.inputs = inputs_for(model, x)
        self.n = len(self.inputs)
        self.weights = weights_for(model, sample_weight, class_weight, y, self.n)
        self.targets = targets_for(model, y, self.n)
        self.batch_size, self.shuffle = batch_size, shuffle
        self._validation_batch_size = max(batch_size, 256)

    @property
    def steps(self):
        """Batches per epoch."""
        return math.ceil(self.n / self.batch_size)

    @property
    def capacity(self):
        """The largest batch."""
        return min(self.batch_size, self.n)

    def split(self, fraction):
        """Hold out the last ``fraction`` of the samples (before shuffling)
        for validation; returns them as an ``ArrayValidation``."""
        split = int(self.n * (1.0 - fraction))
        if split == 0 or split == self.n:
            raise ValueError(f"validation_split={fraction} leaves no training or "
                             f"no validation samples out of {self.n}")
        inputs, targets, weights = self.inputs, self.targets, self.weights
        held_out = slice(split, None)
        val = ArrayValidation(take_rows(inputs.data, held_out), take_rows(targets.data, held_out),
                              take_rows(weights, held_out), self._validation_batch_size)
        inputs.keep(slice(0, split))
        targets.keep(slice(0, split))
        self.weights = take_rows(weights, slice(0, split))
        self.n = split
        return val

    def epoch(self, progress, epoch, rng, parallel):
        """Yield ``(batch number, rows, window)`` for each batch of ``epoch``:
        the rows of it that this process trains on (for ``load``) and the
        ``window`` that places them in the batch."""
        progress.begin_epoch(epoch, rng)
        batches = batch_indices(progress.n, progress.batch_size, progress.shuffle, rng,
                           progress.order)
        for b in range(progress.batch, len(batches)):
            rows, window = parallel.place(batches[b])
            yield b, rows, window

    def load(self, rows):
        """``(x, y, weights)`` of ``rows``."""
        return (self.inputs.batch(rows), self.targets.batch(rows), take_rows(self.weights, rows))


class IterableBatches:
    """Batches that an iterable yields as ``(x, y)`` or ``(x, y, sample_weight)``.

    An epoch is ``steps`` batches, or one pass over the iterable without
    ``steps``; an object that can be iterated again (a data loader, any
    object whose ``__iter__`` starts a new pass) starts a new pass when one
    ends, while an iterator that runs out (a generator) ends training
    (``exhausted``), with a warning. A list or tuple is array data, never
    a sequence of batches.
    """

    n = None
    batch_size = None
    shuffle = False
    capacity = 0

    def __init__(self, model, iterable, steps, class_weight, name):
        if isinstance(class_weight, str):
            raise ValueError("class_weight='balanced' needs all the labels up front; with an "
                             "iterable of batches give a dict {class: weight}")
        self.model, self.iterable, self.name = model, iterable, name
        self.class_weight = class_weight
        self.reiterable = not hasattr(iterable, "__next__")
        self.steps = steps if steps is not None else (
            len(iterable) if hasattr(iterable, "__len__") else None)
        self._steps_given = steps is not None
        self._iterator = None
        self.exhausted = False

    def _next(self, restart):
        """The next item, or None at the end of the data (a pass of a
        re-iterable is restarted once when ``restart``)."""
        if self._iterator is None:
            self._iterator = iter(self.iterable)
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = None
            if restart and self.reiterable:
                return self._next(False)
            return None

    def _start_pass(self):
        """Without ``steps``, begin a new pass over a re-iterable (an iterator
        carries on where it stopped)."""
        if not self._steps_given and self.reiterable:
            self._iterator = None

    def _checked(self, item, index):
        """One yielded batch as checked arrays (x, y, weights)."""
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise TypeError(f"batch {index} of {self.name} must be a tuple (x, y) or "
                            f"(x, y, sample_weight), got {type(item).__name__}")
        model = self.model
        xb, yb = item[0], item[1]
        if not model.built and model.input_shape is None:
            model.build(sample_shape(xb))
        x = inputs_for(model, xb, f"x of batch {index}")
        n = len(x)
        y = targets_for(model, yb, n, f"y of batch {index}")
        w = weights_for(model, item[2] if len(item) == 3 else None, self.class_weight, yb, n)
        whole = slice(0, n)   # converted and checked; read from the file if memory-mapped
        return x.batch(whole), y.batch(whole), w

    def epoch(self, progress, epoch, rng, parallel):
        """Yield ``(batch number, batch, window)`` for the batches of an epoch,
        each read and checked (see ``load``)."""
        progress.begin_epoch(epoch, rng)
        self._start_pass()
        b = 0
        while not self._steps_given or b < self.steps:
            batch = error = None
            try:
                item = self._next(restart=self._steps_given)
                batch = None if item is None else self._checked(item, b)
            except Exception as err:  # raised on every process by place_local
                error = err
            rows = None if batch is None else num_rows(batch[0])
            running, window = parallel.place_local(rows, error)
            if not running:
                if self._steps_given or b == 0:  # else a one-pass epoch ended
                    self.exhausted = True
                    warnings.warn(f"{self.name} ran out of batches in epoch {epoch + 1} "
                                  f"after {b} steps; training stops", stacklevel=4)
                return
            yield b, batch, window
            b += 1

    @staticmethod
    def load(batch):
        """The batch ``epoch`` read and checked, as ``(x, y, weights)``."""
        return batch

    def passes(self):
        """The batches of one evaluation: ``steps`` of them, or one pass."""
        self._start_pass()
        b = 0
        while not self._steps_given or b < self.steps:
            item = self._next(restart=self._steps_given)
            if item is None:
                if self._steps_given or b == 0:
                    raise ValueError(f"{self.name} ran out of batches after {b}; give an "
                                     "object that can be iterated again (a data loader) "
                                     "or validation_steps with a generator that does not end")
                return
            yield self._checked(item, b)
            b += 1


class ArrayValidation:
    """Validation data given as arrays."""

    def __init__(self, x, y, weights, batch_size):
        self.x, self.y, self.weights, self.batch_size = x, y, weights, batch_size

    def evaluate(self, model, parallel):
        """``evaluate``'s results on the validation arrays, run by the strategy ``parallel``."""
        return parallel.evaluate(model, self.x, self.y, self.weights, self.batch_size)


class IterableValidation:
    """Validation data given as an iterable of batches: ``steps`` batches of
    it, or one pass without ``steps``."""

    def __init__(self, source):
        self.source = source

    def evaluate(self, model, parallel):
        """``evaluate``'s results over the validation batches; the strategy
        ``parallel`` reduces them over the processes."""
        for m in model.metrics:
            m.reset()
        loss_sum, n = 0.0, 0
        for x, y, w in self.source.passes():
            rows = num_rows(x)
            if rows:
                loss_sum += model.evaluation_sums(x, y, w, rows)
                n += rows
        return parallel.evaluation_results(model, loss_sum, n)
