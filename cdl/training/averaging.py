"""Averages of the weights along training, as callbacks: an exponential
moving average (EMA) and stochastic weight averaging (SWA).

Both keep a float64 copy of the model's flat parameter buffer, updated
from the trained weights (the EMA after every few optimizer steps, SWA at
the end of chosen epochs), and copy it into the model when training ends
(``apply_on_train_end``). ``apply()``/``restore()`` and the context
manager ``swapped()`` put the average in and take it out again at any
time, e.g. to evaluate it; with ``evaluate_with_average=True`` the
callback does that around every evaluation pass that ``fit`` announces
with ``on_test_begin``/``on_test_end``.

BatchNorm's running statistics are not weights: they were gathered with
the trained weights, not with their average. ``update_batch_norm(model,
x)`` recomputes them for the weights in the model (the average, after it
is applied); give the callbacks ``bn_data=x_train`` to have that done at
the end of training.

Examples
--------
>>> import numpy as np
>>> import cdl
>>> from cdl import averaging, layers
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((128, 3)).astype("float32")
>>> y = x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")
>>> model = cdl.Sequential([layers.Dense(1)], input_shape=(3,), seed=0)
>>> model.compile(cdl.optimizers.SGD(lr=0.05), "mse")
>>> ema = averaging.ExponentialMovingAverage(decay=0.9)
>>> _ = model.fit(x, y, epochs=20, batch_size=16, verbose=0, callbacks=[ema])
>>> bool(np.abs(model.layers[0].kernel.ravel() - [1.0, -2.0, 0.5]).max() < 0.05)
True
"""
import contextlib
import math

import numpy as np

from cdl._validation import (
    as_float_array, check_bool, check_finite, check_number, choose, shape_fits)
from cdl.layers import iter_layers
from cdl.layers.normalization import BatchNorm
from cdl.training.callbacks import Callback
from cdl.tuning import training_mode_only

__all__ = ["ExponentialMovingAverage", "StochasticWeightAveraging", "update_batch_norm"]


def update_batch_norm(model, x, batch_size=256):
    """Recompute every BatchNorm's running statistics for the model's
    current weights.

    The statistics are reset, then set to the average over the batches of
    ``x`` of each batch's mean and (unbiased) variance, as PyTorch's
    ``torch.optim.swa_utils.update_bn`` does. Only the BatchNorm layers
    (at any depth) run in training mode; dropout and noise stay off.

    Parameters
    ----------
    model : cdl.Sequential
    x : array_like of shape ``(n_samples, *input_shape)``
        Training inputs, n_samples >= 2.
    batch_size : int >= 2
        The batches are of ``batch_size`` to ``2 * batch_size - 1`` samples.

    Returns
    -------
    int
        The number of BatchNorm layers updated (0: nothing to do).

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import averaging, layers
    >>> model = cdl.Sequential([layers.BatchNorm()], input_shape=(2,), seed=0)
    >>> x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    >>> averaging.update_batch_norm(model, x, batch_size=4)
    1
    >>> model.layers[0].running_mean.tolist()
    [3.0, 4.0]
    """
    batch_size = check_number(batch_size, "batch_size", low=2, integer=True)
    model.ensure_built()
    norms = [layer for layer in iter_layers(model.layers) if isinstance(layer, BatchNorm)]
    if not norms:
        return 0
    x = as_float_array(x, model.dtype, "x")
    if x.ndim < 2 or not shape_fits(x.shape[1:], model.input_shape):
        raise ValueError(f"x has shape {x.shape}; the model expects samples of shape "
                         f"{model.input_shape}")
    check_finite(x, "x")
    if x.shape[0] < 2:
        raise ValueError("update_batch_norm needs at least 2 samples")
    # Batches of at least batch_size samples: BatchNorm cannot train on one sample.
    bounds = np.linspace(0, x.shape[0], max(1, x.shape[0] // batch_size) + 1).astype(int)
    momenta = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.running_mean[...] = 0.0
            layer.running_var[...] = 1.0
        with training_mode_only(model, BatchNorm):
            for k, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
                # Momentum 1/k makes the running value the plain mean of k batches.
                for layer in norms:
                    layer.momentum = 1.0 / k
                model.forward(x[start:stop], training=False)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    return len(norms)


class _WeightAverage(Callback):
    """The average's storage, swapping and end-of-training handling shared
    by ExponentialMovingAverage and StochasticWeightAveraging."""

    def __init__(self, apply_on_train_end, evaluate_with_average, bn_data, bn_batch_size):
        super().__init__()
        self.apply_on_train_end = check_bool(apply_on_train_end, "apply_on_train_end")
        self.evaluate_with_average = check_bool(evaluate_with_average, "evaluate_with_average")
        self.bn_data = bn_data
        self.bn_batch_size = check_number(bn_batch_size, "bn_batch_size", low=2, integer=True)
        self.n_averaged = 0
        self._average = None
        self._saved = None
        self._swapped_for_test = False

    # --- the average -----------------------------------------------------------

    @property
    def average(self):
        """The averaged flat parameter buffer in the model's dtype (a copy),
        or None before training."""
        if self._average is None:
            return None
        return self._average.astype(self.model.dtype)

    def average_weights(self):
        """The averaged weights shaped like ``model.params`` (copies).

        Returns
        -------
        list of ndarray, or None before training
        """
        flat = self.average
        if flat is None:
            return None
        weights, offset = [], 0
        for p in self.model.params:
            weights.append(flat[offset:offset + p.size].reshape(p.shape))
            offset += p.size
        return weights

    def _start(self):
        self._average = self.model.param_buffer.astype(np.float64)
        self.n_averaged = 0
        self._saved = None

    # --- swapping --------------------------------------------------------------

    def apply(self):
        """Copy the average into the model, keeping the model's own weights
        (and BatchNorm statistics) for ``restore()``.

        Raises
        ------
        RuntimeError
            Before any training with this callback.
        """
        if self._average is None:
            raise RuntimeError("there is no average yet: train with this callback first")
        if self._saved is None:
            model = self.model
            self._saved = (model.param_buffer.copy(),
                           [(array, array.copy()) for layer in model.layers
                            for array in layer.buffers().values()])
        self.model.param_buffer[...] = self._average

    def restore(self):
        """Put back the weights (and BatchNorm statistics) that ``apply()``
        replaced; does nothing if the average is not applied."""
        if self._saved is None:
            return
        params, buffers = self._saved
        self.model.param_buffer[...] = params
        for array, saved in buffers:
            array[...] = saved
        self._saved = None

    @contextlib.contextmanager
    def swapped(self):
        """Within the block the model holds the average; afterwards its own
        weights again.

        Examples
        --------
        ``with ema.swapped(): print(model.evaluate(x_val, y_val))``
        """
        applied_here = self._saved is None
        self.apply()
        try:
            yield self
        finally:
            if applied_here:
                self.restore()

    # --- hooks -----------------------------------------------------------------

    def on_test_begin(self, logs=None):
        if self.evaluate_with_average and self._average is not None and self.n_averaged:
            self._swapped_for_test = self._saved is None
            self.apply()

    def on_test_end(self, logs=None):
        if self._swapped_for_test:
            self.restore()
            self._swapped_for_test = False

    def on_train_end(self, logs=None):
        if self.apply_on_train_end and self.n_averaged:
            self.apply()
            if self.bn_data is not None:
                update_batch_norm(self.model, self.bn_data, self.bn_batch_size)


class ExponentialMovingAverage(_WeightAverage):
    """Keep an exponential moving average of the weights during training
    and use it at the end.

    After every ``update_every``-th optimizer step (once ``start_step``
    steps have passed) the average moves towards the weights::

        average = d * average + (1 - d) * weights,
        d = min(decay, (1 + t) / (10 + t)) with warmup, else decay

    where t counts the updates so far (TensorFlow's ``num_updates`` rule,
    which lets the average forget the initial weights quickly). The
    average starts as the weights at the start of ``fit`` (or at
    ``start_step``) and is accumulated in float64.

    Parameters
    ----------
    decay : float in [0, 1)
    warmup : bool, default True
    update_every : int >= 1, default 1
        Optimizer steps between updates.
    start_step : int >= 0, default 0
        Steps to train before averaging starts.
    apply_on_train_end : bool, default True
        Copy the average into the model when training ends (the trained
        weights stay available through ``restore()``).
    evaluate_with_average : bool, default True
        Evaluate with the average during evaluation passes that ``fit``
        wraps in ``on_test_begin``/``on_test_end``.
    bn_data : array_like, optional
        Training inputs: after applying the average at the end, recompute
        BatchNorm statistics on them (``update_batch_norm``).
    bn_batch_size : int >= 2, default 256

    Attributes
    ----------
    n_averaged : int
        Updates made in the last ``fit``.
    average : ndarray or None
        The averaged flat parameter buffer.

    Examples
    --------
    >>> from cdl import averaging
    >>> ema = averaging.ExponentialMovingAverage(decay=0.999)
    >>> # model.fit(x, y, epochs=10, callbacks=[ema]); the model then holds the EMA.
    """

    def __init__(self, decay=0.999, warmup=True, update_every=1, start_step=0,
                 apply_on_train_end=True, evaluate_with_average=True, bn_data=None,
                 bn_batch_size=256):
        super().__init__(apply_on_train_end, evaluate_with_average, bn_data, bn_batch_size)
        self.decay = check_number(decay, "decay", low=0.0, high=1.0, high_inclusive=False)
        self.warmup = check_bool(warmup, "warmup")
        self.update_every = check_number(update_every, "update_every", low=1, integer=True)
        self.start_step = check_number(start_step, "start_step", low=0, integer=True)
        self._steps = 0
        self._work = None

    def on_train_begin(self, logs=None):
        self._start()
        self._steps = 0
        self._work = np.empty_like(self._average)

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if self._steps <= self.start_step:
            if self._steps == self.start_step:
                self._average[...] = self.model.param_buffer  # start from here
            return
        if (self._steps - self.start_step) % self.update_every:
            return
        t = self.n_averaged
        decay = min(self.decay, (1.0 + t) / (10.0 + t)) if self.warmup else self.decay
        # average += (1 - decay) * (weights - average), in place, in float64.
        np.subtract(self.model.param_buffer, self._average, out=self._work)
        self._work *= 1.0 - decay
        self._average += self._work
        self.n_averaged += 1


class StochasticWeightAveraging(_WeightAverage):
    """Stochastic weight averaging (Izmailov et al. 2018): average the
    weights at the end of every ``frequency``-th epoch from ``start_epoch``
    on, and use the average at the end.

    The average is the plain mean of the snapshots. Optionally, from
    ``start_epoch`` on, the learning rate moves to ``swa_lr`` (over
    ``anneal_epochs`` epochs, as PyTorch's ``SWALR``) and stays there; this
    overrides other schedules from then on.

    Parameters
    ----------
    start_epoch : int >= 0
        First epoch (0-based, as ``fit`` counts) whose weights are averaged.
    swa_lr : float > 0, optional
        Learning rate of the averaging phase; None leaves the rate alone.
    anneal_epochs : int >= 0, default 0
        Epochs over which the rate moves from its value at ``start_epoch``
        to ``swa_lr`` (0: at once).
    anneal_strategy : {"cos", "linear"}, default "cos"
    frequency : int >= 1, default 1
        Average every ``frequency`` epochs.
    apply_on_train_end : bool, default True
    evaluate_with_average : bool, default False
    bn_data : array_like, optional
        Training inputs for ``update_batch_norm`` after the average is
        applied (recommended for models with BatchNorm).
    bn_batch_size : int >= 2, default 256

    Attributes
    ----------
    n_averaged : int
        Snapshots in the average.
    average : ndarray or None

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import averaging, layers
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((64, 2)).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(2,), seed=0)
    >>> model.compile(cdl.optimizers.SGD(lr=0.1), "mse")
    >>> swa = averaging.StochasticWeightAveraging(start_epoch=5, swa_lr=0.01)
    >>> _ = model.fit(x, y, epochs=10, batch_size=16, verbose=0, callbacks=[swa])
    >>> swa.n_averaged, model.optimizer.lr
    (5, 0.01)
    """

    def __init__(self, start_epoch, swa_lr=None, anneal_epochs=0, anneal_strategy="cos",
                 frequency=1, apply_on_train_end=True, evaluate_with_average=False,
                 bn_data=None, bn_batch_size=256):
        super().__init__(apply_on_train_end, evaluate_with_average, bn_data, bn_batch_size)
        self.start_epoch = check_number(start_epoch, "start_epoch", low=0, integer=True)
        self.swa_lr = None if swa_lr is None else check_number(swa_lr, "swa_lr", low=0.0,
                                                               low_inclusive=False)
        self.anneal_epochs = check_number(anneal_epochs, "anneal_epochs", low=0, integer=True)
        self.anneal_strategy = choose(anneal_strategy, ("cos", "linear"), "anneal_strategy")
        self.frequency = check_number(frequency, "frequency", low=1, integer=True)
        self._anneal_from = None

    def on_train_begin(self, logs=None):
        self._start()
        self._anneal_from = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.swa_lr is None or epoch < self.start_epoch:
            return
        if self._anneal_from is None:
            self._anneal_from = self.model.optimizer.lr
        if self.anneal_epochs == 0:
            progress = 1.0
        else:
            progress = min(1.0, (epoch - self.start_epoch + 1) / self.anneal_epochs)
        if self.anneal_strategy == "cos":
            progress = (1.0 - math.cos(math.pi * progress)) / 2.0
        self.model.optimizer.lr = (1.0 - progress) * self._anneal_from + progress * self.swa_lr

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_epoch or (epoch - self.start_epoch) % self.frequency:
            return
        self.n_averaged += 1
        # Running mean: average += (weights - average) / n.
        self._average += (self.model.param_buffer - self._average) / self.n_averaged
