"""Which inputs a model's prediction depends on: gradient attributions and
permutation importance.

Every function takes a model (a built ``cdl.Sequential``) and a batch of
inputs and returns one attribution per input element, in the shape of the
inputs. Gradients come from the model's own backward pass, in inference
mode (dropout off, BatchNorm on its running statistics); the model's
weights and its gradient buffer are left as they were.

- ``input_gradients``: d output / d input (the raw gradient);
- ``saliency``: its absolute value (Simonyan et al. 2014);
- ``gradient_x_input``: gradient times input;
- ``integrated_gradients``: Sundararajan et al. (2017), the gradient
  averaged along the straight path from a baseline to the input, times
  (input - baseline); ``completeness`` checks that the attributions sum to
  f(input) - f(baseline);
- ``permutation_importance``: how much a score drops when one input
  feature is shuffled across samples (Breiman 2001), seeded.

The explained output is chosen with ``target``: a class (or output) index
for every sample, one index per sample, or None for the largest output of
each sample (the predicted class of a classifier). Attributions explain
the model's raw outputs: the logits of a classifier with a linear head.

Examples
--------
>>> import numpy as np
>>> import cdl
>>> from cdl import explain, layers
>>> model = cdl.Sequential([layers.Dense(4, activation="tanh"), layers.Dense(2)],
...                        input_shape=(3,), dtype="float64", seed=0)
>>> x = np.array([[0.5, -1.0, 2.0]])
>>> attributions = explain.integrated_gradients(model, x, target=1, steps=100)
>>> check = explain.completeness(model, x, attributions, target=1)
>>> bool(check.relative_error[0] < 1e-3)
True
"""
from typing import NamedTuple

import numpy as np

from cdl._validation import as_float_array, check_finite, check_number, choose

__all__ = ["input_gradients", "saliency", "gradient_x_input", "integrated_gradients",
           "completeness", "Completeness", "permutation_importance", "PermutationImportance"]

_IG_METHODS = ("trapezoid", "riemann_left", "riemann_right", "riemann_middle")


# --- shared helpers --------------------------------------------------------------------


def _inputs(model, x, name="x"):
    """``x`` as a checked array of the model's dtype (the model built if needed)."""
    if not model.built:
        if model.input_shape is None:
            model.build(np.shape(x)[1:])
        else:
            model.build()
    x = as_float_array(x, model.dtype, name)
    if x.ndim < 2 or x.shape[1:] != tuple(model.input_shape):
        raise ValueError(f"{name} has shape {x.shape}; the model expects "
                         f"(n_samples, {', '.join(map(str, model.input_shape))})")
    check_finite(x, name)
    if not model.layers[0].has_input_gradient:
        raise ValueError(f"the model's first layer ({type(model.layers[0]).__name__}) has no "
                         "input gradient, so its inputs cannot be attributed")
    return x


def _flat_outputs(outputs):
    return outputs.reshape(outputs.shape[0], -1)


def _resolve_target(target, outputs):
    """One output index (into each sample's flattened outputs) per sample."""
    flat = _flat_outputs(outputs)
    n, width = flat.shape
    if target is None:
        return flat.argmax(axis=1) if width > 1 else np.zeros(n, dtype=np.int64)
    target = np.asarray(target)
    if target.dtype.kind not in "iu" and not (
            target.dtype.kind == "f" and np.array_equal(target, np.round(target))):
        raise TypeError(f"target must hold integer output indices, got {target!r}")
    target = np.broadcast_to(target.astype(np.int64), (n,)) if target.ndim == 0 else \
        target.astype(np.int64)
    if target.shape != (n,):
        raise ValueError(f"target must be an int or hold one index per sample ({n}), "
                         f"got shape {target.shape}")
    if n and (target.min() < 0 or target.max() >= width):
        raise ValueError(f"target indices must lie in [0, {width}) (the outputs per sample), "
                         f"got {target.min()}..{target.max()}")
    return target


def _gradients(model, x, target):
    """d output[target] / d input for the checked batch ``x`` (inference mode)."""
    outputs = model.forward(x, training=False)
    seed = np.zeros(_flat_outputs(outputs).shape, dtype=model.dtype)
    seed[np.arange(x.shape[0]), target] = 1.0
    return model.backward(seed.reshape(outputs.shape))


def _batched_gradients(model, x, target, batch_size):
    saved = model.grad_buffer.copy()  # backward overwrites the weights' gradients
    try:
        out = np.empty_like(x)
        for start in range(0, x.shape[0], batch_size):
            stop = start + batch_size
            out[start:stop] = _gradients(model, x[start:stop], target[start:stop])
        return out
    finally:
        model.grad_buffer[...] = saved


def _predict(model, x, batch_size):
    return model.predict(x, batch_size=batch_size)


def _check_batch_size(batch_size):
    return check_number(batch_size, "batch_size", low=1, integer=True)


def _baseline(model, x, baseline):
    """The baseline broadcast to ``x``'s shape (zeros by default)."""
    if baseline is None:
        return np.zeros_like(x)
    base = as_float_array(baseline, model.dtype, "baseline")
    check_finite(base, "baseline")
    try:
        return np.ascontiguousarray(np.broadcast_to(base, x.shape))
    except ValueError:
        raise ValueError(f"baseline of shape {base.shape} does not broadcast to the inputs' "
                         f"shape {x.shape}") from None


# --- gradient attributions --------------------------------------------------------------


def input_gradients(model, x, target=None, batch_size=256):
    """Gradient of the chosen output with respect to each input element.

    Parameters
    ----------
    model : cdl.Sequential
    x : array_like of shape ``(n_samples, *input_shape)``
    target : int, array_like of int of shape (n_samples,), or None
        Index of the explained output (into each sample's flattened
        outputs); None explains each sample's largest output.
    batch_size : int
        Samples per forward/backward pass.

    Returns
    -------
    ndarray of shape ``(n_samples, *input_shape)``, the model's dtype

    Raises
    ------
    ValueError
        For inputs of the wrong shape, NaN, out-of-range targets, or a
        model whose first layer has no input gradient (Embedding).

    Examples
    --------
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([layers.Dense(1, use_bias=False)], input_shape=(2,), seed=0)
    >>> grads = explain.input_gradients(model, [[1.0, 2.0]])
    >>> bool((grads[0] == model.layers[0].kernel[:, 0]).all())
    True
    """
    x = _inputs(model, x)
    batch_size = _check_batch_size(batch_size)
    target = _resolve_target(target, _predict(model, x, batch_size))
    return _batched_gradients(model, x, target, batch_size)


def saliency(model, x, target=None, batch_size=256):
    """Saliency map: the absolute value of ``input_gradients``.

    Parameters
    ----------
    model : cdl.Sequential
    x : array_like of shape ``(n_samples, *input_shape)``
    target : int, array_like of int of shape (n_samples,), or None
        See ``input_gradients``.
    batch_size : int

    Returns
    -------
    ndarray of shape ``(n_samples, *input_shape)``, non-negative

    Examples
    --------
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([layers.Dense(3), layers.Dense(2)], input_shape=(4,), seed=0)
    >>> explain.saliency(model, [[1.0, 0.0, -1.0, 2.0]]).shape
    (1, 4)
    """
    return np.abs(input_gradients(model, x, target, batch_size))


def gradient_x_input(model, x, target=None, batch_size=256):
    """Gradient times input: each input element's first-order contribution.

    Parameters
    ----------
    model : cdl.Sequential
    x : array_like of shape ``(n_samples, *input_shape)``
    target : int, array_like of int of shape (n_samples,), or None
        See ``input_gradients``.
    batch_size : int

    Returns
    -------
    ndarray of shape ``(n_samples, *input_shape)``, the model's dtype

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([layers.Dense(1, use_bias=False)], input_shape=(2,),
    ...                        dtype="float64", seed=0)
    >>> x = np.array([[1.0, 2.0]])
    >>> # For a linear model the contributions add up to the output.
    >>> bool(np.isclose(explain.gradient_x_input(model, x).sum(), model.predict(x)[0, 0]))
    True
    """
    x = _inputs(model, x)
    return input_gradients(model, x, target, batch_size) * x


def _path_weights(steps, method):
    """Positions along the path (0 = baseline, 1 = input) and their weights."""
    if method == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps + 1)
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] *= 0.5
        return alphas, weights
    k = np.arange(steps, dtype=np.float64)
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (k + offset) / steps, np.full(steps, 1.0 / steps)


def integrated_gradients(model, x, target=None, baseline=None, steps=50, method="trapezoid",
                         batch_size=256):
    """Integrated gradients: (x - baseline) times the gradient averaged along
    the straight path from the baseline to x.

    The path integral is approximated with ``steps`` intervals by the
    trapezoid rule (default) or a Riemann sum; its error falls as the
    square of ``steps`` (trapezoid, midpoint) for smooth activations, more
    slowly across ReLU kinks. ``completeness`` measures it.

    Parameters
    ----------
    model : cdl.Sequential
    x : array_like of shape ``(n_samples, *input_shape)``
    target : int, array_like of int of shape (n_samples,), or None
        Explained output; None: the largest output of each sample at ``x``.
    baseline : array_like or float, optional
        The reference input, broadcast to ``x``'s shape; default zeros.
    steps : int >= 1
        Intervals of the path (``steps + 1`` gradients for the trapezoid
        rule, ``steps`` for a Riemann sum).
    method : {"trapezoid", "riemann_left", "riemann_right", "riemann_middle"}
    batch_size : int

    Returns
    -------
    ndarray of float64, shape ``(n_samples, *input_shape)``
        Attributions, accumulated in float64.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([layers.Dense(2, activation="tanh")], input_shape=(3,),
    ...                        dtype="float64", seed=0)
    >>> ig = explain.integrated_gradients(model, np.ones((1, 3)), target=0, steps=64)
    >>> ig.shape
    (1, 3)
    """
    x = _inputs(model, x)
    base = _baseline(model, x, baseline)
    steps = check_number(steps, "steps", low=1, integer=True)
    method = choose(method, _IG_METHODS, "method")
    batch_size = _check_batch_size(batch_size)
    target = _resolve_target(target, _predict(model, x, batch_size))
    delta = x - base
    total = np.zeros(x.shape, dtype=np.float64)
    point = np.empty_like(x)
    for alpha, weight in zip(*_path_weights(steps, method)):
        np.multiply(delta, model.dtype.type(alpha), out=point)
        point += base
        total += weight * _batched_gradients(model, point, target, batch_size)
    return total * delta


class Completeness(NamedTuple):
    """How far attributions are from adding up to f(x) - f(baseline).

    Attributes
    ----------
    attribution_sum : ndarray of shape (n_samples,)
    output_difference : ndarray of shape (n_samples,)
        f(x) - f(baseline) for the explained output.
    relative_error : ndarray of shape (n_samples,)
        ``|attribution_sum - output_difference| / |output_difference|``
        (the denominator floored at 1e-12).

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(2,), dtype="float64", seed=0)
    >>> x = np.array([[1.0, -2.0], [0.5, 3.0]])
    >>> check = explain.completeness(model, x, explain.integrated_gradients(model, x, steps=1))
    >>> check.relative_error.shape    # one value per sample
    (2,)
    >>> bool(np.allclose(check.attribution_sum, check.output_difference))
    True
    """

    attribution_sum: np.ndarray
    output_difference: np.ndarray
    relative_error: np.ndarray


def completeness(model, x, attributions, target=None, baseline=None, batch_size=256):
    """Check the completeness axiom of integrated gradients: the attributions
    of each sample sum to f(x) - f(baseline).

    Parameters
    ----------
    model : cdl.Sequential
    x : array_like of shape ``(n_samples, *input_shape)``
    attributions : array_like of shape ``(n_samples, *input_shape)``
        From ``integrated_gradients`` with the same ``target`` and ``baseline``.
    target : int, array_like of int of shape (n_samples,), or None
        As given to ``integrated_gradients`` (None: resolved at ``x``).
    baseline : array_like or float, optional
    batch_size : int

    Returns
    -------
    Completeness

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([layers.Dense(1)], input_shape=(2,), dtype="float64", seed=0)
    >>> x = np.array([[1.0, -2.0]])
    >>> ig = explain.integrated_gradients(model, x, steps=1)
    >>> bool(explain.completeness(model, x, ig).relative_error[0] < 1e-12)
    True
    """
    x = _inputs(model, x)
    base = _baseline(model, x, baseline)
    batch_size = _check_batch_size(batch_size)
    attributions = np.asarray(attributions, dtype=np.float64)
    if attributions.shape != x.shape:
        raise ValueError(f"attributions have shape {attributions.shape}, x {x.shape}")
    at_x = _flat_outputs(_predict(model, x, batch_size))
    at_base = _flat_outputs(_predict(model, base, batch_size))
    target = _resolve_target(target, at_x)
    rows = np.arange(x.shape[0])
    difference = at_x[rows, target].astype(np.float64) - at_base[rows, target]
    total = attributions.reshape(x.shape[0], -1).sum(axis=1)
    error = np.abs(total - difference) / np.maximum(np.abs(difference), 1e-12)
    return Completeness(total, difference, error)


# --- permutation importance ---------------------------------------------------------------


class PermutationImportance(NamedTuple):
    """Result of ``permutation_importance``.

    Attributes
    ----------
    importances_mean : ndarray of shape input_shape
        Mean drop of the score when the feature is shuffled.
    importances_std : ndarray of shape input_shape
        Standard deviation of the drop over the repeats.
    importances : ndarray of shape input_shape + (n_repeats,)
        Every drop.
    baseline_score : float
        The score on the unshuffled inputs.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([layers.Dense(1, use_bias=False)], input_shape=(2,),
    ...                        dtype="float64", seed=0)
    >>> model.layers[0].kernel[:] = [[1.0], [0.0]]   # only feature 0 matters
    >>> x = np.random.default_rng(0).standard_normal((20, 2))
    >>> result = explain.permutation_importance(model, x, x[:, 0], scoring="r2",
    ...                                         n_repeats=3, seed=0)
    >>> result.importances.shape    # (features, n_repeats)
    (2, 3)
    >>> result.baseline_score, float(result.importances_mean[1])
    (1.0, 0.0)
    """

    importances_mean: np.ndarray
    importances_std: np.ndarray
    importances: np.ndarray
    baseline_score: float


def _accuracy(y, outputs):
    flat = _flat_outputs(outputs)
    predicted = flat.argmax(axis=1) if flat.shape[1] > 1 else (flat[:, 0] > 0).astype(int)
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)
    return float(np.mean(predicted == labels.reshape(-1)))


def _r2(y, outputs):
    y = np.asarray(y, dtype=np.float64).reshape(outputs.shape[0], -1)
    pred = _flat_outputs(outputs).astype(np.float64)
    residual = ((y - pred) ** 2).sum()
    total = ((y - y.mean(axis=0)) ** 2).sum()
    return float(1.0 - residual / total) if total > 0 else 0.0


def _neg_mse(y, outputs):
    y = np.asarray(y, dtype=np.float64).reshape(outputs.shape[0], -1)
    return -float(((y - _flat_outputs(outputs)) ** 2).mean())


_SCORERS = {"accuracy": _accuracy, "r2": _r2, "neg_mean_squared_error": _neg_mse}


def _scorer(model, scoring):
    if callable(scoring):
        return scoring
    if scoring is None:
        if model.loss is None:
            raise ValueError("scoring=None scores with the model's loss, but the model is not "
                             f"compiled; compile it or pass scoring= (one of "
                             f"{', '.join(_SCORERS)} or a function)")
        loss = model.loss
        return lambda y, outputs: -float(loss.forward(outputs, y))
    return _SCORERS[choose(scoring, tuple(_SCORERS), "scoring")]


def permutation_importance(model, x, y, scoring=None, n_repeats=5, seed=None, batch_size=256):
    """Permutation feature importance: the drop of a score when one input
    element (feature, pixel) is shuffled across the samples.

    Parameters
    ----------
    model : cdl.Sequential
    x : array_like of shape ``(n_samples, *input_shape)``
    y : array_like
        Targets, as the score function takes them.
    scoring : None, str or callable
        Higher is better. None: minus the model's compiled loss;
        "accuracy" (argmax of the outputs, or output > 0 for one logit,
        against labels), "r2", "neg_mean_squared_error"; or a function
        ``score(y, outputs) -> float`` of the raw outputs.
    n_repeats : int >= 1
        Shuffles per feature.
    seed : int or numpy.random.Generator, optional
        Seeds the shuffles.
    batch_size : int

    Returns
    -------
    PermutationImportance

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([layers.Dense(1, use_bias=False)], input_shape=(2,),
    ...                        dtype="float64", seed=0)
    >>> model.layers[0].kernel[:] = [[1.0], [0.0]]   # only feature 0 matters
    >>> x = np.random.default_rng(0).standard_normal((100, 2))
    >>> result = explain.permutation_importance(model, x, x[:, 0], scoring="r2", seed=0)
    >>> bool(result.importances_mean[0] > 1.0 and result.importances_mean[1] == 0.0)
    True
    """
    if not model.built and model.input_shape is None:
        model.build(np.shape(x)[1:])
    x = as_float_array(x, model.dtype, "x")
    if x.ndim < 2 or (model.input_shape is not None and x.shape[1:] != model.input_shape):
        raise ValueError(f"x has shape {x.shape}; the model expects samples of shape "
                         f"{model.input_shape}")
    check_finite(x, "x")
    if np.shape(y)[:1] != (x.shape[0],):
        raise ValueError(f"y has {np.shape(y)[:1]} samples, x has {x.shape[0]}")
    n_repeats = check_number(n_repeats, "n_repeats", low=1, integer=True)
    batch_size = _check_batch_size(batch_size)
    score = _scorer(model, scoring)
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    work = x.reshape(n, -1).copy()
    baseline = float(score(y, _predict(model, x, batch_size)))
    drops = np.empty((work.shape[1], n_repeats))
    for feature in range(work.shape[1]):
        original = work[:, feature].copy()
        for repeat in range(n_repeats):
            work[:, feature] = original[rng.permutation(n)]
            outputs = _predict(model, work.reshape(x.shape), batch_size)
            drops[feature, repeat] = baseline - float(score(y, outputs))
        work[:, feature] = original
    shape = tuple(x.shape[1:])
    return PermutationImportance(drops.mean(axis=1).reshape(shape),
                                 drops.std(axis=1).reshape(shape),
                                 drops.reshape(shape + (n_repeats,)), baseline)
