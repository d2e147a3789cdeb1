"""Which inputs a model's prediction depends on: gradient attributions,
permutation importance, and the weights of attention layers.

Every function takes a model (a ``cdl.Sequential`` or a graph
``cdl.Model``) and a batch of inputs; the attributions are one per input
element, in the shape of the inputs. Gradients come from the model's own
backward pass, in inference mode (dropout off, BatchNorm on its running
statistics); the model's weights and its gradient buffer are left as they
were.

- ``input_gradients``: d output / d input (the raw gradient);
- ``saliency``: its absolute value (Simonyan et al. 2014);
- ``gradient_x_input``: gradient times input;
- ``integrated_gradients``: Sundararajan et al. (2017), the gradient
  averaged along the straight path from a baseline to the input, times
  (input - baseline); ``completeness`` checks that the attributions sum to
  f(input) - f(baseline);
- ``permutation_importance``: how much a score drops when one input
  feature is shuffled across samples (Breiman 2001), seeded;
- ``attention_scores``: the attention weights of every attention layer
  (those inside Transformer blocks too) at inference;
- ``attention_rollout``: Abnar and Zuidema (2020), the heads' weights
  averaged, with the residual's identity, multiplied through a stack of
  self-attention layers.

The explained output is chosen with ``target``: a class (or output) index
for every sample, one index per sample, or None for the largest output of
each sample (the predicted class of a classifier). Attributions explain
the model's raw outputs: the logits of a classifier with a linear head.

Graph models (``cdl.Model``) with several inputs take ``x`` as ``forward``
does, a list in input order or a dict keyed by input names, and get their
attributions per input: a list in input order, as ``model.backward``
returns the input gradients. An input that only feeds layers without an
input gradient (the token indices of an ``Embedding``) cannot be
attributed: its entry is None, and integrated gradients keep it at its
value along the whole path. A gradient explains one output, so a model
with several outputs needs ``output=``, the name or index of the explained
one (``target`` then indexes that output).

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

A model with two inputs and two outputs: one attribution array per input,
for the chosen output.

>>> image = cdl.Input(shape=(4,), name="image")
>>> meta = cdl.Input(shape=(2,), name="meta")
>>> h = layers.Concatenate()([layers.Dense(3, activation="tanh")(image), meta])
>>> graph = cdl.Model([image, meta], [layers.Dense(3, name="cls")(h),
...                                   layers.Dense(1, name="reg")(h)], dtype="float64", seed=0)
>>> inputs = {"image": np.ones((5, 4)), "meta": np.zeros((5, 2))}
>>> ig_image, ig_meta = explain.integrated_gradients(graph, inputs, output="cls")
>>> ig_image.shape, ig_meta.shape
((5, 4), (5, 2))
"""
from typing import NamedTuple

import numpy as np

from cdl._validation import as_float_array, check_finite, check_number, choose, shape_fits

__all__ = ["input_gradients", "saliency", "gradient_x_input", "integrated_gradients",
           "completeness", "Completeness", "permutation_importance", "PermutationImportance",
           "attention_scores", "attention_rollout"]

_IG_METHODS = ("trapezoid", "riemann_left", "riemann_right", "riemann_middle")


# --- shared helpers --------------------------------------------------------------------


def _check_model(model):
    from cdl.model import Model

    if not isinstance(model, Model):
        raise TypeError(f"cdl.explain takes a cdl.Sequential or cdl.Model, got "
                        f"{type(model).__name__}")


def _is_sequential(model):
    from cdl.model import Sequential

    return isinstance(model, Sequential)


def _checked_inputs(model, x, name="x"):
    """``x`` as a list of checked arrays of the model's dtype, one per input
    in input order (a Sequential built for ``x`` if it has no input shape)."""
    _check_model(model)
    if not _is_sequential(model):
        checked = model.check_input(x)
        return checked if isinstance(checked, list) else [checked]
    if not model.built:
        if model.input_shape is None:
            model.build(np.shape(x)[1:])
        else:
            model.build()
    x = as_float_array(x, model.dtype, name)
    if x.ndim < 2 or not shape_fits(x.shape[1:], model.input_shape):
        raise ValueError(f"{name} has shape {x.shape}; the model expects "
                         f"(n_samples, {', '.join(map(str, model.input_shape))})")
    check_finite(x, name)
    return [x]


def _differentiable(model):
    """For each input, whether a gradient can reach it: some layer reading it
    has an input gradient (or it is an output itself)."""
    if _is_sequential(model):
        return [model.layers[0].has_input_gradient]
    from cdl.model import graph_rows

    outputs = {t.id for t in model.outputs}
    readers = {}
    for node, _, _ in graph_rows(model):
        for tensor in node.inputs:
            readers[tensor.id] = readers.get(tensor.id, False) or node.layer.has_input_gradient
    return [t.id in outputs or readers.get(t.id, False) for t in model.inputs]


def _output_index(model, output):
    """The index of the explained output (``output``: a name, an index or
    None, which only a model with one output may leave out)."""
    names = list(model.output_names)
    if output is None:
        if len(names) == 1:
            return 0
        raise ValueError(f"the model has {len(names)} outputs "
                         f"({', '.join(repr(n) for n in names)}): choose the explained one "
                         "with output=<name> or output=<index>")
    if isinstance(output, str):
        if output not in names:
            raise ValueError(f"unknown output {output!r}; the model's outputs are "
                             f"{', '.join(repr(n) for n in names)}")
        return names.index(output)
    if isinstance(output, (int, np.integer)) and not isinstance(output, (bool, np.bool_)):
        if not 0 <= output < len(names):
            raise ValueError(f"output index {output} is out of range: the model has "
                             f"{len(names)} output(s)")
        return int(output)
    raise TypeError(f"output must be an output name or index, got {output!r}")


def _attributable(model, x, output):
    """``(inputs, differentiable, output index)`` of a gradient attribution,
    refusing a model none of whose inputs a gradient reaches."""
    xs = _checked_inputs(model, x)
    flags = _differentiable(model)
    index = _output_index(model, output)
    if not any(flags):
        if _is_sequential(model):
            raise ValueError(f"the model's first layer ({type(model.layers[0]).__name__}) has "
                             "no input gradient, so its inputs cannot be attributed")
        raise ValueError("every input of the model feeds only layers without an input "
                         "gradient (such as Embedding), so no input can be attributed")
    return xs, flags, index


def _per_input(model, values):
    """One value for a model with one input, else the list in input order."""
    return values[0] if len(model.input_names) == 1 else values


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


def _gradients(model, xs, target, index):
    """d output[index][target] / d input for every input of the checked batch
    ``xs`` (inference mode); None where no gradient reached an input."""
    outputs = model.forward(xs if len(xs) > 1 else xs[0], training=False)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    explained = outputs[index]
    seed = np.zeros(_flat_outputs(explained).shape, dtype=model.dtype)
    seed[np.arange(xs[0].shape[0]), target] = 1.0
    grads = [None] * len(outputs)   # the other outputs get no gradient
    grads[index] = seed.reshape(explained.shape)
    dx = model.backward(grads if len(grads) > 1 else grads[0])
    return dx if isinstance(dx, list) else [dx]


def _batched_gradients(model, xs, target, index, differentiable, batch_size):
    """The gradients of ``_gradients`` for every input a gradient can reach
    (None for the others), ``batch_size`` samples per pass."""
    saved = model.grad_buffer.copy()  # backward overwrites the weights' gradients
    try:
        out = [np.empty_like(x) if flag else None for x, flag in zip(xs, differentiable)]
        for start in range(0, xs[0].shape[0], batch_size):
            stop = start + batch_size
            parts = _gradients(model, [x[start:stop] for x in xs], target[start:stop], index)
            for whole, part in zip(out, parts):
                if whole is not None:
                    # No gradient: the explained output does not depend on this input.
                    whole[start:stop] = 0 if part is None else part
        return out
    finally:
        model.grad_buffer[...] = saved


def _predict(model, xs, index, batch_size):
    """The explained output for the checked inputs ``xs``."""
    outputs = model.predict(xs if len(xs) > 1 else xs[0], batch_size=batch_size)
    return outputs[index] if isinstance(outputs, list) else outputs


def _check_batch_size(batch_size):
    return check_number(batch_size, "batch_size", low=1, integer=True)


def _baseline(model, x, baseline, name="baseline"):
    """The baseline broadcast to ``x``'s shape (zeros by default)."""
    if baseline is None:
        return np.zeros_like(x)
    base = as_float_array(baseline, model.dtype, name)
    check_finite(base, name)
    try:
        return np.ascontiguousarray(np.broadcast_to(base, x.shape))
    except ValueError:
        raise ValueError(f"{name} of shape {base.shape} does not broadcast to the inputs' "
                         f"shape {x.shape}") from None


def _baselines(model, xs, differentiable, baseline):
    """One baseline per input: ``baseline`` for a model with one input; else
    None (zeros), one number for every input, or a list or dict with an
    entry per input (None: zeros). An input no gradient reaches stays at
    its value."""
    if len(xs) == 1:
        return [_baseline(model, xs[0], baseline)]
    from cdl.graph import structure

    names = model.input_names
    if baseline is None:
        values = [None] * len(xs)
    elif isinstance(baseline, (list, tuple, dict)):
        values = structure(baseline, names, "baseline", allow_missing=True)
        for name, value, flag in zip(names, values, differentiable):
            if value is not None and not flag:
                raise ValueError(f"input {name!r} feeds only layers without an input gradient: "
                                 "it stays at its value along the path, so its baseline must "
                                 "be None")
    elif np.ndim(baseline) == 0:
        values = [baseline] * len(xs)
    else:
        raise ValueError(f"the model has {len(names)} inputs "
                         f"({', '.join(repr(n) for n in names)}): give baseline as one number, "
                         "a list in input order or a dict keyed by input names")
    return [_baseline(model, x, value, f"baseline of input {name!r}") if flag else x
            for x, value, flag, name in zip(xs, values, differentiable, names)]


def _map(function, values):
    """``function`` applied to an attribution or to each of a list of them."""
    if isinstance(values, list):
        return [None if v is None else function(v) for v in values]
    return function(values)


# --- gradient attributions --------------------------------------------------------------

def _input_gradients(model, xs, differentiable, index, target, batch_size):
    batch_size = _check_batch_size(batch_size)
    target = _resolve_target(target, _predict(model, xs, index, batch_size))
    return _batched_gradients(model, xs, target, index, differentiable, batch_size)


def input_gradients(model, x, target=None, batch_size=256, output=None):
    """Gradient of the chosen output with respect to each input element.

    Parameters
    ----------
    model : cdl.Sequential or cdl.Model
    x : array_like of shape ``(n_samples, *input_shape)``, list or dict
        The inputs; for a model with several, a list in input order or a
        dict keyed by input names.
    target : int, array_like of int of shape (n_samples,), or None
        Index of the explained output (into each sample's flattened
        outputs); None explains each sample's largest output.
    batch_size : int
        Samples per forward/backward pass.
    output : str or int, optional
        The explained output of a model with several (its name or index);
        required for such a model.

    Returns
    -------
    ndarray of shape ``(n_samples, *input_shape)``, the model's dtype, or a list
        One per input, in input order, for a model with several inputs
        (None for an input that only feeds layers without an input
        gradient, zeros for one the output does not depend on).

    Raises
    ------
    ValueError
        For inputs of the wrong shape, NaN, out-of-range targets, a model
        with several outputs and no ``output``, or a model none of whose
        inputs has a gradient (a Sequential starting with Embedding).

    Examples
    --------
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([layers.Dense(1, use_bias=False)], input_shape=(2,), seed=0)
    >>> grads = explain.input_gradients(model, [[1.0, 2.0]])
    >>> bool((grads[0] == model.layers[0].kernel[:, 0]).all())
    True
    """
    xs, differentiable, index = _attributable(model, x, output)
    return _per_input(model, _input_gradients(model, xs, differentiable, index, target,
                                              batch_size))


def saliency(model, x, target=None, batch_size=256, output=None):
    """Saliency map: the absolute value of ``input_gradients``.

    Parameters
    ----------
    model : cdl.Sequential or cdl.Model
    x : array_like of shape ``(n_samples, *input_shape)``, list or dict
        See ``input_gradients``.
    target : int, array_like of int of shape (n_samples,), or None
        See ``input_gradients``.
    batch_size : int
    output : str or int, optional
        See ``input_gradients``.

    Returns
    -------
    ndarray of shape ``(n_samples, *input_shape)``, non-negative, or a list
        One per input for a model with several (see ``input_gradients``).

    Examples
    --------
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([layers.Dense(3), layers.Dense(2)], input_shape=(4,), seed=0)
    >>> explain.saliency(model, [[1.0, 0.0, -1.0, 2.0]]).shape
    (1, 4)
    """
    return _map(np.abs, input_gradients(model, x, target, batch_size, output))


def gradient_x_input(model, x, target=None, batch_size=256, output=None):
    """Gradient times input: each input element's first-order contribution.

    Parameters
    ----------
    model : cdl.Sequential or cdl.Model
    x : array_like of shape ``(n_samples, *input_shape)``, list or dict
        See ``input_gradients``.
    target : int, array_like of int of shape (n_samples,), or None
        See ``input_gradients``.
    batch_size : int
    output : str or int, optional
        See ``input_gradients``.

    Returns
    -------
    ndarray of shape ``(n_samples, *input_shape)``, the model's dtype, or a list
        One per input for a model with several (see ``input_gradients``).

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
    xs, differentiable, index = _attributable(model, x, output)
    grads = _input_gradients(model, xs, differentiable, index, target, batch_size)
    return _per_input(model, [None if g is None else g * v for g, v in zip(grads, xs)])


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
                         batch_size=256, output=None):
    """Integrated gradients: (x - baseline) times the gradient averaged along
    the straight path from the baseline to x.

    The path integral is approximated with ``steps`` intervals by the
    trapezoid rule (default) or a Riemann sum; its error falls as the
    square of ``steps`` (trapezoid, midpoint) for smooth activations, more
    slowly across ReLU kinks. ``completeness`` measures it.

    With several inputs, every input moves along the path at once (one
    path in the space of all inputs), so the attributions of all inputs
    together add up to f(x) - f(baseline); an input that only feeds layers
    without an input gradient stays at its value.

    Parameters
    ----------
    model : cdl.Sequential or cdl.Model
    x : array_like of shape ``(n_samples, *input_shape)``, list or dict
        See ``input_gradients``.
    target : int, array_like of int of shape (n_samples,), or None
        Explained output; None: the largest output of each sample at ``x``.
    baseline : array_like or float, list or dict, optional
        The reference input, broadcast to ``x``'s shape; default zeros.
        With several inputs: one number for all, or a list in input order
        or a dict keyed by input names of per-input baselines (None or a
        left-out key: zeros).
    steps : int >= 1
        Intervals of the path (``steps + 1`` gradients for the trapezoid
        rule, ``steps`` for a Riemann sum).
    method : {"trapezoid", "riemann_left", "riemann_right", "riemann_middle"}
    batch_size : int
    output : str or int, optional
        See ``input_gradients``.

    Returns
    -------
    ndarray of float64, shape ``(n_samples, *input_shape)``, or a list
        Attributions, accumulated in float64; one per input for a model
        with several (None for an input no gradient reaches).

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
    xs, differentiable, index = _attributable(model, x, output)
    bases = _baselines(model, xs, differentiable, baseline)
    steps = check_number(steps, "steps", low=1, integer=True)
    method = choose(method, _IG_METHODS, "method")
    batch_size = _check_batch_size(batch_size)
    target = _resolve_target(target, _predict(model, xs, index, batch_size))
    deltas = [x - base if flag else None for x, base, flag in zip(xs, bases, differentiable)]
    totals = [np.zeros(x.shape, dtype=np.float64) if flag else None
              for x, flag in zip(xs, differentiable)]
    points = [np.empty_like(x) if flag else x for x, flag in zip(xs, differentiable)]
    for alpha, weight in zip(*_path_weights(steps, method)):
        for point, delta, base in zip(points, deltas, bases):
            if delta is not None:
                np.multiply(delta, model.dtype.type(alpha), out=point)
                point += base
        grads = _batched_gradients(model, points, target, index, differentiable, batch_size)
        for total, grad in zip(totals, grads):
            if total is not None:
                total += weight * grad
    return _per_input(model, [None if total is None else total * delta
                              for total, delta in zip(totals, deltas)])


class Completeness(NamedTuple):
    """How far attributions are from adding up to f(x) - f(baseline).

    Attributes
    ----------
    attribution_sum : ndarray of shape (n_samples,)
        Over every input element (of every input).
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


def _checked_attributions(model, xs, differentiable, attributions):
    """The attributions as float64 arrays in input order (None for inputs no
    gradient reaches), each of its input's shape."""
    if len(xs) == 1:
        values = [attributions]
    else:
        from cdl.graph import structure

        values = structure(attributions, model.input_names, "attributions",
                           allow_missing=True)
    checked = []
    for name, value, x, flag in zip(model.input_names, values, xs, differentiable):
        what = "attributions" if len(xs) == 1 else f"attributions of input {name!r}"
        if not flag:
            if value is not None:
                raise ValueError(f"input {name!r} feeds only layers without an input "
                                 f"gradient: its attributions must be None")
            checked.append(None)
            continue
        if value is None:
            raise ValueError(f"{what} are missing")
        value = np.asarray(value, dtype=np.float64)
        if value.shape != x.shape:
            raise ValueError(f"{what} have shape {value.shape}, "
                             f"{'x' if len(xs) == 1 else 'the input'} {x.shape}")
        checked.append(value)
    return checked


def completeness(model, x, attributions, target=None, baseline=None, batch_size=256,
                 output=None):
    """Check the completeness axiom of integrated gradients: the attributions
    of each sample sum to f(x) - f(baseline).

    Parameters
    ----------
    model : cdl.Sequential or cdl.Model
    x : array_like of shape ``(n_samples, *input_shape)``, list or dict
        See ``input_gradients``.
    attributions : array_like of shape ``(n_samples, *input_shape)``, list or dict
        From ``integrated_gradients`` with the same ``target``, ``baseline``
        and ``output``; one per input (as it returns them) for a model with
        several, summed together.
    target : int, array_like of int of shape (n_samples,), or None
        As given to ``integrated_gradients`` (None: resolved at ``x``).
    baseline : array_like or float, list or dict, optional
    batch_size : int
    output : str or int, optional
        See ``input_gradients``.

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
    xs, differentiable, index = _attributable(model, x, output)
    bases = _baselines(model, xs, differentiable, baseline)
    batch_size = _check_batch_size(batch_size)
    attributions = _checked_attributions(model, xs, differentiable, attributions)
    n = xs[0].shape[0]
    at_x = _flat_outputs(_predict(model, xs, index, batch_size))
    at_base = _flat_outputs(_predict(model, bases, index, batch_size))
    target = _resolve_target(target, at_x)
    rows = np.arange(n)
    difference = at_x[rows, target].astype(np.float64) - at_base[rows, target]
    total = None
    for part in attributions:
        if part is not None:
            part = part.reshape(n, -1).sum(axis=1)
            total = part if total is None else total + part
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


def _scorer(model, scoring, index):
    if callable(scoring):
        return scoring
    if scoring is None:
        if model.loss is None:
            raise ValueError("scoring=None scores with the model's loss, but the model is not "
                             f"compiled; compile it or pass scoring= (one of "
                             f"{', '.join(_SCORERS)} or a function)")
        loss = model.loss
        if hasattr(loss, "loss_of"):   # a loss per output: the explained output's
            loss = loss.loss_of(index)
            if loss is None:
                raise ValueError(f"output {model.output_names[index]!r} has no loss to score "
                                 f"with; pass scoring= (one of {', '.join(_SCORERS)} or a "
                                 "function)")
        return lambda y, outputs: -float(loss.forward(outputs, y))
    return _SCORERS[choose(scoring, tuple(_SCORERS), "scoring")]


def _output_targets(model, y, index):
    """The targets of the explained output: ``y`` itself, or its entry for a
    dict keyed by output names."""
    if not isinstance(y, dict):
        return y
    name = model.output_names[index]
    unknown = [key for key in y if key not in model.output_names]
    if unknown:
        raise ValueError(f"y has unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                         f"expected {', '.join(repr(n) for n in model.output_names)}")
    if name not in y:
        raise ValueError(f"y has no targets for the explained output {name!r}")
    return y[name]


def permutation_importance(model, x, y, scoring=None, n_repeats=5, seed=None, batch_size=256,
                           output=None):
    """Permutation feature importance: the drop of a score when one input
    element (feature, pixel) is shuffled across the samples.

    Parameters
    ----------
    model : cdl.Sequential or cdl.Model
    x : array_like of shape ``(n_samples, *input_shape)``, list or dict
        The inputs; for a model with several, a list in input order or a
        dict keyed by input names. Every element of every input is
        shuffled in turn (inputs in order, one generator for all).
    y : array_like
        Targets of the explained output, as the score function takes them
        (or a dict keyed by output names holding them).
    scoring : None, str or callable
        Higher is better. None: minus the model's compiled loss (of the
        explained output, for a model compiled with a loss per output);
        "accuracy" (argmax of the outputs, or output > 0 for one logit,
        against labels), "r2", "neg_mean_squared_error"; or a function
        ``score(y, outputs) -> float`` of the raw outputs.
    n_repeats : int >= 1
        Shuffles per feature.
    seed : int or numpy.random.Generator, optional
        Seeds the shuffles.
    batch_size : int
    output : str or int, optional
        The scored output of a model with several (its name or index);
        required for such a model.

    Returns
    -------
    PermutationImportance, or a list of them
        One per input, in input order, for a model with several inputs
        (each with the same ``baseline_score``).

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
    xs = _checked_inputs(model, x)
    index = _output_index(model, output)
    y = _output_targets(model, y, index)
    n = xs[0].shape[0]
    if np.shape(y)[:1] != (n,):
        raise ValueError(f"y has {np.shape(y)[:1]} samples, x has {n}")
    n_repeats = check_number(n_repeats, "n_repeats", low=1, integer=True)
    batch_size = _check_batch_size(batch_size)
    score = _scorer(model, scoring, index)
    rng = np.random.default_rng(seed)
    baseline = float(score(y, _predict(model, xs, index, batch_size)))
    current = list(xs)
    results = []
    for i, x_i in enumerate(xs):
        work = x_i.reshape(n, -1).copy()
        current[i] = work.reshape(x_i.shape)   # a view: shuffles show through
        drops = np.empty((work.shape[1], n_repeats))
        for feature in range(work.shape[1]):
            original = work[:, feature].copy()
            for repeat in range(n_repeats):
                work[:, feature] = original[rng.permutation(n)]
                outputs = _predict(model, current, index, batch_size)
                drops[feature, repeat] = baseline - float(score(y, outputs))
            work[:, feature] = original
        current[i] = x_i
        shape = tuple(x_i.shape[1:])
        results.append(PermutationImportance(drops.mean(axis=1).reshape(shape),
                                             drops.std(axis=1).reshape(shape),
                                             drops.reshape(shape + (n_repeats,)), baseline))
    return _per_input(model, results)


# --- attention --------------------------------------------------------------------------

def _attention_layers(model):
    """``{name: layer}`` of every MultiHeadAttention in ``model``, in the order
    the model runs them: a top-level one under its own name, one inside a
    layer made of layers under ``"<outer name>/<inner name>"``, the inner
    name without the outer one's prefix (``"encoder/self_attention"`` for
    the self-attention of a TransformerEncoder named ``"encoder"``)."""
    from cdl.layers.attention import MultiHeadAttention

    found = {}

    def visit(layer, path):
        if isinstance(layer, MultiHeadAttention):
            found[path] = layer
            return
        for sub in layer.sublayers():
            prefix = f"{layer.name}_"
            short = sub.name[len(prefix):] if sub.name.startswith(prefix) else sub.name
            visit(sub, f"{path}/{short}")

    for layer in model.layers:
        visit(layer, layer.name)
    return found


def _chosen_attention(model, layers):
    """The attention layers of ``model`` named by ``layers`` (all if None)."""
    _check_model(model)
    found = _attention_layers(model)
    if not found:
        raise ValueError("the model has no attention layer (MultiHeadAttention, alone or "
                         "inside a TransformerEncoder or TransformerDecoder): there are no "
                         "attention scores to show")
    if not _is_sequential(model):
        from cdl.model import graph_rows

        calls = {}
        for node, _, _ in graph_rows(model):
            calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
        for name, layer in found.items():
            top = name.split("/")[0]
            owner = next(l for l in model.layers if l.name == top)
            if calls.get(id(owner), 0) > 1:
                raise ValueError(f"layer {top!r} is called {calls[id(owner)]} times in the "
                                 "graph: it keeps the attention scores of its last call only, "
                                 "so the scores of its other calls cannot be shown")
    if layers is None:
        return found
    names = [layers] if isinstance(layers, str) else layers
    if not isinstance(names, (list, tuple)) or not names or \
            not all(isinstance(n, str) for n in names):
        raise TypeError(f"layers must be an attention layer's name or a list of them, got "
                        f"{layers!r}")
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"unknown attention layer(s) {', '.join(map(repr, unknown))}; the "
                         f"model's are {', '.join(map(repr, found))}")
    return {name: found[name] for name in found if name in names}


def attention_scores(model, x, layers=None, batch_size=256):
    """The attention weights of every attention layer of ``model`` on ``x``.

    The softmax weights ``softmax(Q K^T / sqrt(key_dim) + masking)`` of
    each ``MultiHeadAttention``, those inside ``TransformerEncoder`` and
    ``TransformerDecoder`` blocks included, from an inference pass
    (``training=False``: no dropout), ``batch_size`` samples at a time. The
    layers need not have been made with ``return_attention_scores=True``:
    it is switched on for the passes and restored afterwards, with each
    layer's ``last_attention_scores``. Masked keys (padding carried from
    ``Embedding(mask_zero=True)``, causal attention) get weight 0.

    Parameters
    ----------
    model : cdl.Sequential or cdl.Model
    x : array_like, list or dict
        The inputs, as ``model.forward`` takes them.
    layers : str or list of str, optional
        Names of the layers to return (keys of the result); all by default.
    batch_size : int
        Samples per inference pass.

    Returns
    -------
    dict of str to ndarray of shape (n_samples, num_heads, Tq, Tk)
        Keyed by layer name, in the order the model runs them. A layer
        inside a block is named ``"<block name>/<role>"``, such as
        ``"encoder/self_attention"`` or ``"decoder/cross_attention"``.

    Raises
    ------
    ValueError
        If the model has no attention layer, ``layers`` names an unknown
        one, or an attention layer is called more than once in a graph
        (it keeps the scores of its last call only).

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([
    ...     layers.Embedding(20, 8, mask_zero=True),
    ...     layers.TransformerEncoder(2, dim_feedforward=16, name="encoder"),
    ...     layers.GlobalAvgPool1D(), layers.Dense(2)], input_shape=(4,), seed=0)
    >>> tokens = np.array([[5, 3, 7, 0]])                 # the last one is padding
    >>> scores = explain.attention_scores(model, tokens)
    >>> list(scores), scores["encoder/self_attention"].shape
    (['encoder/self_attention'], (1, 2, 4, 4))
    >>> weights = scores["encoder/self_attention"][0, 0]  # sample 0, head 0
    >>> bool(np.allclose(weights.sum(axis=-1), 1)), bool((weights[:, 3] == 0).all())
    (True, True)
    """
    chosen = _chosen_attention(model, layers)
    batch_size = _check_batch_size(batch_size)
    xs = _checked_inputs(model, x)
    saved = {name: (layer.return_attention_scores, layer.last_attention_scores)
             for name, layer in chosen.items()}
    parts = {name: [] for name in chosen}
    try:
        for layer in chosen.values():
            layer.return_attention_scores = True
        for start in range(0, xs[0].shape[0], batch_size):
            batch = [a[start:start + batch_size] for a in xs]
            model.forward(batch if len(batch) > 1 else batch[0], training=False)
            for name, layer in chosen.items():
                parts[name].append(np.array(layer.last_attention_scores))
    finally:
        for name, layer in chosen.items():
            layer.return_attention_scores, layer.last_attention_scores = saved[name]
    return {name: np.concatenate(p) if p else np.zeros((0,), dtype=model.dtype)
            for name, p in parts.items()}


_HEAD_FUSIONS = ("mean", "max", "min")


def attention_rollout(model, x, layers=None, head_fusion="mean", batch_size=256):
    """Attention rollout (Abnar and Zuidema 2020): how much each output
    position draws on each input position through a stack of
    self-attention layers.

    For each layer, the weights ``W`` (``attention_scores``) are fused over
    the heads (averaged by default), the identity is added for the residual
    connection, and the rows are renormalised: ``A = (W + I) / rowsum``.
    The rollout is the product through the layers, last one first:
    ``A_L ... A_2 A_1``. Row i of a sample's matrix sums to 1; entry (i,
    j) is the share of position j in position i of the last layer's output.
    A key masked in every layer (padding) gets weight 0 in every other
    position's row; causal attention gives a lower-triangular rollout.

    Parameters
    ----------
    model : cdl.Sequential or cdl.Model
        With self-attention layers on sequences of one length.
    x : array_like, list or dict
        The inputs, as ``model.forward`` takes them.
    layers : str or list of str, optional
        The attention layers to roll out (names as ``attention_scores``
        gives them); all of the model's by default.
    head_fusion : {"mean", "max", "min"}
        How the heads' weights are combined ("mean" is the paper's).
    batch_size : int
        Samples per inference pass.

    Returns
    -------
    ndarray of shape (n_samples, T, T)

    Raises
    ------
    ValueError
        If the model has no attention layer, one of the rolled-out layers
        is a cross-attention (its queries and keys are different sequences,
        such as a TransformerDecoder's attention to the memory), or the
        layers' sequences differ in length.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import explain, layers
    >>> model = cdl.Sequential([
    ...     layers.MultiHeadAttention(2, 4, name="first"),
    ...     layers.MultiHeadAttention(2, 4, name="second")], input_shape=(3, 8), seed=0)
    >>> x = np.random.default_rng(0).standard_normal((1, 3, 8))
    >>> rollout = explain.attention_rollout(model, x)
    >>> rollout.shape, bool(np.allclose(rollout.sum(axis=-1), 1))
    ((1, 3, 3), True)
    """
    if not isinstance(head_fusion, str):
        raise TypeError(f"head_fusion must be one of {_HEAD_FUSIONS}, got {head_fusion!r}")
    head_fusion = choose(head_fusion, _HEAD_FUSIONS, "head_fusion")
    chosen = _chosen_attention(model, layers)
    for name, layer in chosen.items():
        if layer.takes_list:
            raise ValueError(f"attention layer {name!r} is a cross-attention (called on "
                             "[query, value] or [query, value, key]): its queries and keys "
                             "are different sequences, so attention rollout, which follows "
                             "one sequence through self-attention layers, cannot go "
                             "through it")
    scores = attention_scores(model, x, layers=list(chosen), batch_size=batch_size)
    lengths = {name: s.shape[-1] for name, s in scores.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError("attention rollout needs one sequence length through the layers, "
                         "got " + ", ".join(f"{n!r}: {t}" for n, t in lengths.items()))
    rollout = None
    for s in scores.values():
        fused = getattr(s, head_fusion)(axis=1)                  # (n, T, T)
        fused = fused + np.eye(fused.shape[-1], dtype=fused.dtype)
        fused /= fused.sum(axis=-1, keepdims=True)
        rollout = fused if rollout is None else fused @ rollout
    return rollout
