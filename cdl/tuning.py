"""Training helpers: the learning-rate range test and Monte-Carlo dropout.

``find_lr`` trains a compiled model for a few steps while raising the
learning rate exponentially, records the loss at each step and suggests a
rate (Smith 2017, "Cyclical learning rates"); the model, its optimizer and
its random generator are left exactly as they were. ``predict_mc`` runs a
model several times with its dropout layers active and everything else in
inference mode (Gal & Ghahramani 2016), returning the mean prediction and
its spread.

Examples
--------
>>> import numpy as np
>>> import cdl
>>> from cdl import layers, tuning
>>> model = cdl.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.5),
...                         layers.Dense(1)], input_shape=(2,), seed=0)
>>> mean, std = tuning.predict_mc(model, np.ones((3, 2)), mc_samples=20, seed=0)
>>> mean.shape, bool((std > 0).any())
((3, 1), True)
"""
import contextlib
import math

import numpy as np

from cdl import optimizers as _optimizers
from cdl._validation import check_number
from cdl.layers.base import iter_layers
from cdl.layers.attention import MultiHeadAttention
from cdl.layers.core import Dropout
from cdl.layers.noise import SpatialDropout1D, SpatialDropout2D
from cdl.training import adapters

__all__ = ["find_lr", "LRFinderResult", "predict_mc", "training_mode_only", "DROPOUT_LAYERS"]

#: Layers that ``predict_mc`` keeps in training mode (subclasses included);
#: an attention layer only when it has attention dropout.
DROPOUT_LAYERS = (Dropout, SpatialDropout1D, SpatialDropout2D, MultiHeadAttention)


# --- training mode for chosen layers -------------------------------------------------------


@contextlib.contextmanager
def training_mode_only(model, layer_types):
    """Within the block, the layers of ``layer_types`` (at any depth) run in
    training mode whatever ``forward``'s ``training`` flag says; the others
    follow the flag.

    Layers inside blocks are found through ``Layer.sublayers()`` (see
    ``cdl.layers.iter_layers``). In a graph model, every call of a shared
    layer is switched (each later call runs a copy of the layer that
    shares its weights). ``predict_mc`` uses it to keep dropout on,
    ``cdl.averaging.update_batch_norm`` to let BatchNorm learn statistics
    while dropout stays off.

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
    layer_types : type or tuple of types

    Yields
    ------
    list of Layer
        The layers switched to training mode (with the copies that run the
        later calls of a shared layer).

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers, tuning
    >>> model = cdl.Sequential([layers.Residual([layers.Dropout(0.5)])],
    ...                        input_shape=(4,), seed=0)
    >>> with tuning.training_mode_only(model, layers.Dropout) as chosen:
    ...     y = model.predict(np.ones((1, 4)))
    >>> [type(layer).__name__ for layer in chosen], bool((y != 1).any())
    (['Dropout'], True)
    """
    chosen = [layer for layer in iter_layers(_runners(model)) if isinstance(layer, layer_types)
              and (not isinstance(layer, MultiHeadAttention) or layer.dropout > 0)]
    saved = []
    try:
        for layer in chosen:
            saved.append((layer, layer.__dict__.get("forward")))
            bound = layer.forward

            def forced(x, training=False, _forward=bound, **keywords):
                return _forward(x, True, **keywords)   # attention's masks pass through

            # An instance attribute shadows the class's method for this layer only.
            layer.forward = forced
        yield chosen
    finally:
        for layer, previous in saved:
            if previous is None:
                del layer.forward
            else:
                layer.forward = previous


def _runners(model):
    """Every object that runs a layer call of ``model``: its layers, and the
    copies that run the later calls of a shared layer in a graph model."""
    runners = getattr(model, "_runners", None)
    return runners() if runners is not None else model.layers


# --- the learning-rate range test ----------------------------------------------------------


class LRFinderResult:
    """What ``find_lr`` measured.

    Attributes
    ----------
    lrs : ndarray of shape (n_steps,)
        The learning rate of each step taken.
    losses : ndarray of shape (n_steps,)
        The training loss of each step (of its batch, before the update).
    smoothed_losses : ndarray of shape (n_steps,)
        Exponential moving average of ``losses``, bias-corrected.
    suggested_lr : float
        Where the smoothed loss falls fastest (per decade of lr), before
        its minimum.
    min_loss_lr : float
        The rate of the lowest smoothed loss; a tenth of it is another
        common choice.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers, tuning
    >>> x = np.random.default_rng(0).standard_normal((64, 2)).astype("float32")
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(2,), seed=0)
    >>> model.compile("sgd", "mse")
    >>> result = tuning.find_lr(model, x, x.sum(axis=1, keepdims=True), num_steps=20)
    >>> len(result.lrs) == len(result.losses) == len(result.smoothed_losses)
    True
    >>> bool(result.lrs[0] < result.lrs[-1])    # the rate rises every step
    True
    """

    def __init__(self, lrs, losses, smoothed_losses, suggested_lr, min_loss_lr):
        self.lrs = lrs
        self.losses = losses
        self.smoothed_losses = smoothed_losses
        self.suggested_lr = suggested_lr
        self.min_loss_lr = min_loss_lr

    def __repr__(self):
        return (f"LRFinderResult({len(self.lrs)} steps, suggested_lr={self.suggested_lr:.3g}, "
                f"min_loss_lr={self.min_loss_lr:.3g})")

    def plot(self, path):
        """Plot the loss against the learning rate (log scale) to a PNG,
        marking the suggested rate.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        path, as given

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        """
        from cdl._plotting import pyplot

        plt = pyplot("LRFinderResult.plot")
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(self.lrs, self.losses, color="0.75", label="batch loss")
        ax.plot(self.lrs, self.smoothed_losses, label="smoothed loss")
        ax.axvline(self.suggested_lr, color="C3", linestyle="--",
                   label=f"suggested lr {self.suggested_lr:.2g}")
        ax.set_xscale("log")
        finite = self.smoothed_losses[np.isfinite(self.smoothed_losses)]
        if finite.size:
            # Clip at a little above the starting loss: the diverging tail
            # would squash the interesting part of the curve.
            raw = self.losses[np.isfinite(self.losses)]
            low = float(min(finite.min(), raw.min() if raw.size else finite.min()))
            first = float(finite[0])
            span = max(first - low, 1e-12)
            ax.set_ylim(low - 0.1 * span, first + 0.5 * span)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _fresh_optimizer(optimizer):
    """An optimizer of the same class and settings with no state."""
    fresh = _optimizers.from_config({"class_name": type(optimizer).__name__,
                                     "config": optimizer.get_config()})
    fresh.param_groups = optimizer.param_groups
    return fresh


def _suggest(lrs, smoothed):
    """(suggested lr, lr of the minimum) from a smoothed loss curve."""
    # The first steps have little smoothing history, so their noise could
    # pose as the minimum or the steepest descent: skip a tenth of them.
    skip = len(lrs) // 10 if len(lrs) >= 20 else 0
    curve = np.where(np.isfinite(smoothed), smoothed, np.inf)
    best = skip + int(np.argmin(curve[skip:]))
    min_loss_lr = float(lrs[best])
    if best - skip < 2:
        return max(min_loss_lr / 10.0, float(lrs[0])), min_loss_lr
    slopes = np.gradient(smoothed[skip:best + 1], np.log10(lrs[skip:best + 1]))
    return float(lrs[skip + int(np.argmin(slopes))]), min_loss_lr


def find_lr(model, x, y, start_lr=1e-7, end_lr=10.0, num_steps=100, batch_size=32,
            sample_weight=None, smoothing=0.98, diverge_threshold=4.0):
    """Learning-rate range test: train with an exponentially rising rate and
    record the loss, then put the model back as it was.

    Each step trains one batch (cycling over shuffled ``x``) at
    ``start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))``, with a fresh
    optimizer of the model's class and settings. The test stops early when
    the loss is not finite or the smoothed loss exceeds
    ``diverge_threshold`` times its minimum. Afterwards the weights, the
    layers' buffers (BatchNorm statistics), the gradients, the optimizer
    (untouched) and the random generator are exactly as before.

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
        Compiled.
    x : array_like of shape ``(n_samples, *input_shape)``, list or dict
        As for ``fit``: for a model with several inputs, a list in input
        order or a dict keyed by input names.
    y : array_like, list or dict
        Targets, as for ``fit`` (per output for a model compiled with a
        loss per output).
    start_lr, end_lr : float, 0 < start_lr < end_lr
    num_steps : int >= 2
    batch_size : int >= 1
    sample_weight : array_like of shape (n_samples,), list or dict, optional
        As for ``fit``: one array, or one per output.
    smoothing : float in [0, 1)
        Weight of the past in the moving average of the loss.
    diverge_threshold : float > 1

    Returns
    -------
    LRFinderResult

    Raises
    ------
    RuntimeError
        If the model is not compiled.
    ValueError, TypeError
        For data ``fit`` would refuse (missing or unknown input or output
        names, NaN, sample counts that differ, ...).

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers, tuning
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((256, 4)).astype("float32")
    >>> y = (x.sum(axis=1) > 0).astype(int)
    >>> model = cdl.Sequential([layers.Dense(16, activation="relu"), layers.Dense(2)],
    ...                        input_shape=(4,), seed=0)
    >>> model.compile("sgd", "cross_entropy")
    >>> before = model.get_weights()
    >>> result = tuning.find_lr(model, x, y, num_steps=60)
    >>> 1e-7 <= result.suggested_lr <= 10.0
    True
    >>> all((a == b).all() for a, b in zip(before, model.get_weights()))
    True
    """
    model.require_compiled()
    start_lr = check_number(start_lr, "start_lr", low=0.0, low_inclusive=False)
    end_lr = check_number(end_lr, "end_lr", low=start_lr, low_inclusive=False)
    num_steps = check_number(num_steps, "num_steps", low=2, integer=True)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    smoothing = check_number(smoothing, "smoothing", low=0.0, high=1.0, high_inclusive=False)
    diverge_threshold = check_number(diverge_threshold, "diverge_threshold", low=1.0,
                                     low_inclusive=False)
    adapters.refuse_batch_iterable(x, "x", "find_lr")
    if not model.built and model.input_shape is None:
        model.build(adapters.sample_shape(x))
    model.ensure_built()
    # fit's checks: x, y and the weights as for fit (lists or dicts by input
    # and output name for a graph model), each checked once, up front.
    inputs = adapters.inputs_for(model, x)
    n = len(inputs)
    if n == 0:
        raise ValueError("find_lr needs samples; x has none")
    targets = adapters.targets_for(model, y, n)
    weights = adapters.weights_for(model, sample_weight, None, None, n)
    lrs = start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))

    saved_params = model.param_buffer.copy()
    saved_grads = model.grad_buffer.copy()
    saved_buffers = [(array, array.copy()) for layer in model.layers
                     for array in layer.buffers().values()]
    saved_rng = model.rng.bit_generator.state
    optimizer = model.optimizer
    losses, smoothed = [], []
    try:
        model.optimizer = _fresh_optimizer(optimizer)
        average, best = 0.0, math.inf
        order = np.empty(0, dtype=np.int64)
        position = 0
        for step, lr in enumerate(lrs):
            if position + batch_size > order.size:
                order, position = model.rng.permutation(n), 0
            index = order[position:position + batch_size]
            position += batch_size
            model.optimizer.lr = float(lr)
            loss = float(model.train_step(inputs.batch(index), targets.batch(index),
                                          adapters.take_rows(weights, index)))
            losses.append(loss)
            average = smoothing * average + (1.0 - smoothing) * loss
            value = average / (1.0 - smoothing ** (step + 1))
            smoothed.append(value)
            if not math.isfinite(loss) or value > diverge_threshold * best:
                break
            best = min(best, value)
    finally:
        model.optimizer = optimizer
        model.param_buffer[...] = saved_params
        model.grad_buffer[...] = saved_grads
        for array, saved in saved_buffers:
            array[...] = saved
        model.rng.bit_generator.state = saved_rng
    lrs = lrs[:len(losses)]
    smoothed = np.asarray(smoothed)
    suggested, min_loss_lr = _suggest(lrs, smoothed)
    return LRFinderResult(lrs, np.asarray(losses), smoothed, suggested, min_loss_lr)


# --- Monte-Carlo dropout ---------------------------------------------------------------------


def _softmax(outputs):
    shifted = outputs - outputs.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


def _sigmoid(outputs):
    return 0.5 * (1.0 + np.tanh(0.5 * outputs))


_TRANSFORMS = {"softmax": _softmax, "sigmoid": _sigmoid}


def _one_transform(transform):
    """A transform given by name, function or None, as a function or None."""
    if isinstance(transform, str):
        if transform not in _TRANSFORMS:
            raise ValueError(f"transform must be None, 'softmax', 'sigmoid' or a function, "
                             f"got {transform!r}")
        return _TRANSFORMS[transform]
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be None, a name or a function, got {transform!r}")
    return transform


def _transforms(transform, names):
    """One transform (or None) per output ``names``: ``transform`` given for
    every output, or per output as a dict by name or a list in order."""
    if isinstance(transform, dict):
        unknown = [k for k in transform if k not in names]
        if unknown:
            raise ValueError(f"transform has unknown output name(s) "
                             f"{', '.join(repr(k) for k in unknown)}; the outputs are "
                             f"{', '.join(repr(n) for n in names)}")
        return [_one_transform(transform.get(name)) for name in names]
    if isinstance(transform, (list, tuple)):
        if len(transform) != len(names):
            raise ValueError(f"transform has {len(transform)} entries, the model has "
                             f"{len(names)} outputs ({', '.join(repr(n) for n in names)})")
        return [_one_transform(t) for t in transform]
    return [_one_transform(transform)] * len(names)


def predict_mc(model, x, mc_samples=30, batch_size=256, seed=None, transform=None):
    """Monte-Carlo dropout: the mean and standard deviation of
    ``mc_samples`` predictions with dropout active.

    Dropout layers (``DROPOUT_LAYERS``, at any depth, and every call of a
    shared one in a graph model) draw new masks for every pass; every
    other layer is in inference mode (BatchNorm uses its running
    statistics, GaussianNoise adds nothing).

    Parameters
    ----------
    model : cdl.Model or cdl.Sequential
        With at least one dropout layer.
    x : array_like of shape ``(n_samples, *input_shape)``, list or dict
        As for ``predict``: for a model with several inputs, a list in
        input order or a dict keyed by input names.
    mc_samples : int >= 1
        Stochastic passes per sample.
    batch_size : int >= 1
    seed : int, optional
        Seeds the masks with a generator of its own, leaving the model's
        generator untouched; by default the masks come from the model's
        generator (which advances).
    transform : {None, "softmax", "sigmoid"}, callable, dict or list
        Applied to each pass's outputs before averaging (e.g. "softmax" for
        the mean class probabilities of a model with logit outputs). For a
        model with several outputs, one transform applies to every output;
        a dict by output name or a list in output order gives each its own
        (None, or a name left out of the dict: no transform).

    Returns
    -------
    mean : ndarray of shape ``(n_samples, *output_shape)``
    std : ndarray of shape ``(n_samples, *output_shape)``
        Population standard deviation over the passes; both in the
        model's dtype, accumulated in float64. For a model with several
        outputs, ``mean`` and ``std`` are lists of such arrays in output
        order (as ``predict`` returns a list).

    Raises
    ------
    ValueError
        If the model has no dropout layer (the spread would be zero), or
        ``x`` does not fit the model's inputs.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers, tuning
    >>> model = cdl.Sequential([layers.Dense(8, activation="relu"), layers.Dropout(0.3),
    ...                         layers.Dense(3)], input_shape=(4,), seed=0)
    >>> mean, std = tuning.predict_mc(model, np.ones((2, 4)), mc_samples=10, seed=1,
    ...                               transform="softmax")
    >>> np.allclose(mean.sum(axis=1), 1.0)
    True

    A graph model with two outputs gives a list of means and one of spreads:

    >>> a = cdl.Input(shape=(4,), name="a")
    >>> h = layers.Dropout(0.3)(layers.Dense(8, activation="relu")(a))
    >>> graph = cdl.Model(a, [layers.Dense(3, name="cls")(h), layers.Dense(1, name="reg")(h)],
    ...                   seed=0)
    >>> means, stds = tuning.predict_mc(graph, np.ones((2, 4)), mc_samples=10, seed=1,
    ...                                 transform={"cls": "softmax"})
    >>> [m.shape for m in means], np.allclose(means[0].sum(axis=1), 1.0)
    ([(2, 3), (2, 1)], True)
    """
    mc_samples = check_number(mc_samples, "mc_samples", low=1, integer=True)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    names = list(model.output_names)
    transforms = _transforms(transform, names)
    adapters.refuse_batch_iterable(x, "x", "predict_mc")
    if not model.built and model.input_shape is None:
        model.build(adapters.sample_shape(x))
    model.ensure_built()
    inputs = adapters.inputs_for(model, x)
    n = len(inputs)
    several = len(names) > 1
    shapes = model.output_shape if several else [model.output_shape]
    means = [np.zeros((n,) + tuple(shape)) for shape in shapes]
    spreads = [np.zeros_like(mean) for mean in means]  # sums of squared deviations (Welford)
    with training_mode_only(model, DROPOUT_LAYERS) as dropouts:
        if not dropouts:
            raise ValueError("the model has no dropout layer, so Monte-Carlo dropout would "
                             "repeat one prediction; use model.predict")
        generators = [(layer, layer._rng) for layer in dropouts]
        try:
            if seed is not None:
                own = np.random.default_rng(seed)
                for layer in dropouts:
                    layer._rng = own
            for start in range(0, n, batch_size):
                rows = slice(start, min(start + batch_size, n))
                xb = inputs.batch(rows)
                for k in range(1, mc_samples + 1):
                    outs = model.forward(xb, training=False)
                    outs = outs if several else [outs]
                    for out, fn, mean, spread in zip(outs, transforms, means, spreads):
                        if fn is not None:
                            out = fn(out)
                        delta = out - mean[rows]
                        mean[rows] += delta / k
                        spread[rows] += delta * (out - mean[rows])
        finally:
            for layer, generator in generators:
                layer._rng = generator
    means = [mean.astype(model.dtype) for mean in means]
    stds = [np.sqrt(spread / mc_samples).astype(model.dtype) for spread in spreads]
    return (means, stds) if several else (means[0], stds[0])
