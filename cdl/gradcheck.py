"""Finite-difference gradient checking of layers, losses and models."""
import numpy as np

from cdl._validation import as_real_array, check_bool, check_finite
from cdl.layers.base import Layer
from cdl.losses import Loss
from cdl.model import Model, Sequential

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` when an analytic gradient disagrees with the
    finite-difference estimate.

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> class Double(cdl.layers.Layer):
    ...     def forward(self, x, training=False):
    ...         return 2 * self._check_input(x)
    ...     def backward(self, grad):
    ...         return grad                  # wrong: should be 2 * grad
    >>> try:
    ...     cdl.gradcheck(Double(), np.ones((2, 3)))
    ... except cdl.GradcheckError as error:
    ...     print(error)
    gradients disagree with finite differences (tol 1e-06): input: 0.5
    """


def _relative_error(analytic, numeric):
    """max |a - n| divided by the largest gradient magnitude in the tensor."""
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0), 1e-12)
    return float(np.abs(analytic - numeric).max(initial=0.0) / scale)


def _generators(obj):
    layers = obj.layers if isinstance(obj, Model) else [obj]
    return [layer._rng for layer in layers if getattr(layer, "_rng", None) is not None]


def _numeric_gradient(f, array, eps):
    """Central differences of the scalar function ``f()`` w.r.t. ``array`` (in place)."""
    flat = array.reshape(-1)
    grad = np.empty(flat.size)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        up = f()
        flat[i] = saved - eps
        down = f()
        flat[i] = saved
        grad[i] = (up - down) / (2 * eps)
    return grad.reshape(array.shape)


def gradcheck(obj, x, target=None, *, loss=None, sample_weight=None, training=False,
              eps=1e-6, tol=1e-6, seed=0, raise_on_error=True):
    """Check the analytic gradients of a layer, a loss or a model numerically.

    The scalar being differentiated is ``loss.forward(obj(x), target)`` if a
    loss is given, ``sum(obj(x) * R)`` for a fixed random R otherwise, or,
    when ``obj`` is itself a Loss, ``obj.forward(x, target)``. Gradients
    are compared, in float64, with central differences with respect to the
    input and every parameter. For a graph ``Model`` with several outputs
    the scalar is the sum over the outputs: of each output's loss (times
    its weight, for a compiled ``model.loss``), or of ``sum(y_k * R_k)``.

    Parameters
    ----------
    obj : Layer, Model, Sequential or Loss
        Layers and models must be float64 (an unbuilt layer is built as
        float64 on ``x``).
    x : array_like, list or dict of array_like
        Input batch (for a loss: the predictions); for a layer that takes
        a list of inputs (``takes_list``, such as ``layers.Add``), a list
        of input batches; for a graph ``Model``, one batch per input: a
        list in input order or a dict keyed by ``input_names`` (one array
        for a model with one input).
    target : array_like, list or dict, optional
        Targets, for a loss; for a graph ``Model``, one per output (a list
        in output order or a dict keyed by ``output_names``; an output
        without a loss needs none).
    loss : Loss, str, list or dict, optional
        Loss applied to the output of a layer or model. For a graph
        ``Model``: one loss for every output, a list or dict of losses per
        output (None, or left out of a dict: that output adds nothing, so
        the weights only it reaches have zero gradients), or the
        ``OutputLosses`` that ``compile`` made (``model.loss``), with its
        loss weights (a Sequential compiled with ``loss_weights`` takes
        its ``OutputLosses`` too).
    sample_weight : array_like of shape (batch_size,), list or dict, optional
        Per-sample weights passed to the loss; for a graph ``Model``, one
        array for every output or one per output (a list or dict).
    training : bool
        Run forward in training mode; random layers (dropout) reuse one
        mask for every evaluation.
    eps : float
        Finite-difference step.
    tol : float
        Largest accepted relative error (max absolute difference divided
        by the tensor's largest gradient magnitude).
    seed : int
        Seed of the random projection R.
    raise_on_error : bool
        Raise ``GradcheckError`` when a tensor is off; otherwise just return.

    Returns
    -------
    dict
        Worst relative error per tensor: ``"input"`` (``"input_0"``,
        ``"input_1"``, ... for a layer that takes a list of inputs;
        ``"input:<name>"`` for each input of a graph ``Model``, named as in
        ``input_names``) and, for layers and models,
        ``"<layer name>.<weight name>"`` (a shared layer's once: its
        gradients summed over its calls).

    Examples
    --------
    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> x = np.random.default_rng(0).normal(size=(3, 4))      # float64 input
    >>> errors = cdl.gradcheck(layers.Dense(2, activation="tanh", name="dense"), x)
    >>> sorted(errors)
    ['dense.bias', 'dense.kernel', 'input']
    >>> all(error < 1e-6 for error in errors.values())
    True
    >>> sorted(cdl.gradcheck(layers.Multiply(), [x, 2 * x]))
    ['input_0', 'input_1']

    A graph model with two inputs, a shared layer and two outputs, the
    second not trained:

    >>> a, b = cdl.Input(shape=(4,), name="a"), cdl.Input(shape=(4,), name="b")
    >>> shared = layers.Dense(3, activation="tanh", name="shared")
    >>> h = layers.Add(name="sum")([shared(a), shared(b)])
    >>> model = cdl.Model([a, b], [layers.Dense(2, name="cls")(h),
    ...                            layers.Dense(1, name="reg")(h)], seed=0, dtype="float64")
    >>> errors = cdl.gradcheck(model, {"a": x, "b": -x}, {"cls": np.array([0, 1, 1])},
    ...                        loss={"cls": "cross_entropy"})
    >>> sorted(errors)
    ['cls.bias', 'cls.kernel', 'input:a', 'input:b', 'reg.bias', 'reg.kernel', 'shared.bias', 'shared.kernel']
    >>> max(errors.values()) < 1e-6
    True
    """
    from cdl import losses as _losses

    training = check_bool(training, "training")
    raise_on_error = check_bool(raise_on_error, "raise_on_error")
    if isinstance(obj, Model) and not isinstance(obj, Sequential):
        return _check_graph(obj, x, target, loss, sample_weight, training, eps, tol, seed,
                            raise_on_error)
    many = isinstance(obj, Layer) and (obj.takes_list or (
        # An unbuilt layer taking one input or a list takes the form of x.
        obj.takes_list_or_tensor and not obj.built and isinstance(x, (list, tuple))
        and bool(x) and all(isinstance(a, np.ndarray) for a in x)))
    if many:
        if not isinstance(x, (list, tuple)) or not x:
            raise TypeError(f"{obj.name} ({type(obj).__name__}) takes a list of inputs: give "
                            f"gradcheck a non-empty list of arrays, got {type(x).__name__}")
        inputs = [_private_input(a, f"x[{i}]") for i, a in enumerate(x)]
        x = inputs
        input_keys = [f"input_{i}" for i in range(len(inputs))]
    else:
        x = _private_input(x)
        inputs, input_keys = [x], ["input"]
    if isinstance(obj, Loss):
        return _check_loss(obj, x, target, sample_weight, eps, tol, raise_on_error)
    if not isinstance(obj, (Layer, Sequential)):
        raise TypeError(f"gradcheck takes a Layer, a Model or a Loss, got {obj!r}")
    if isinstance(obj, Layer) and not obj.built and obj.dtype is None:
        obj.dtype = np.dtype(np.float64)
    if isinstance(obj, Sequential) and not obj.built and obj.input_shape is None:
        obj.build(x.shape[1:])
    if obj.dtype != np.float64:
        raise TypeError(
            f"gradcheck needs float64 to be meaningful; {obj!r} has dtype {obj.dtype}: "
            "build it with dtype='float64'")
    if isinstance(obj, Sequential) and _is_output_losses(loss):
        loss_fn = _graph_loss(obj, loss)   # compiled with loss_weights
    else:
        loss_fn = None if loss is None else _losses.get(loss)
    if loss_fn is not None and target is None:
        raise ValueError("a target is needed with a loss")

    out = obj.forward(x, training=training)
    generators = _generators(obj) if training else []
    states = [g.bit_generator.state for g in generators]
    projection = np.random.default_rng(seed).standard_normal(np.shape(out))

    def evaluate():
        for g, state in zip(generators, states):
            g.bit_generator.state = state
        y = obj.forward(x, training=training)
        if loss_fn is not None:
            return loss_fn.forward(y, target, sample_weight)
        return float(np.sum(y * projection))

    evaluate()
    upstream = loss_fn.backward() if loss_fn is not None else projection
    input_grad = obj.backward(upstream)
    input_grads = list(input_grad) if many else [input_grad]
    if len(input_grads) != len(inputs):
        raise ValueError(f"{obj.name}.backward returned {len(input_grads)} input gradients "
                         f"for {len(inputs)} inputs")
    # A layer with no input gradient (Embedding's indices) is checked on its weights only.
    layers = obj.layers if isinstance(obj, Sequential) else [obj]
    return _compare(evaluate, input_keys, inputs, input_grads, layers, eps, tol,
                    raise_on_error)


def _compare(evaluate, input_keys, inputs, input_grads, layers, eps, tol, raise_on_error):
    """Compare the analytic gradients (``input_grads`` aligned with
    ``inputs``, None where there is none, and every weight's ``_grad`` of
    ``layers``, read now) with central differences of ``evaluate()``."""
    analytic = {key: np.array(g, dtype=np.float64)
                for key, g in zip(input_keys, input_grads) if g is not None}
    owned = [(f"{owner.name}.{name}", owner, name)
             for layer in layers for owner, name in layer.weight_owners()]
    for key, layer, name in owned:
        analytic[key] = np.array(getattr(layer, name + "_grad"), dtype=np.float64)

    errors = {}
    for key, array in zip(input_keys, inputs):
        if key in analytic:
            errors[key] = _relative_error(analytic[key], _numeric_gradient(evaluate, array, eps))
    for key, layer, name in owned:
        numeric = _numeric_gradient(evaluate, getattr(layer, name), eps)
        errors[key] = _relative_error(analytic[key], numeric)
    evaluate()  # leave the caches as after a plain forward
    return _report(errors, tol, raise_on_error)


def _is_output_losses(loss):
    from cdl.training.outputs import OutputLosses

    return isinstance(loss, OutputLosses)


def _graph_loss(model, loss):
    """The loss of a graph model's outputs as gradcheck uses it: None, a
    plain Loss (one output), or an ``OutputLosses`` over every output."""
    from cdl.training.outputs import OutputLosses, compile_outputs

    if loss is None or isinstance(loss, OutputLosses):
        if loss is not None and list(loss.names) != list(model.output_names):
            raise ValueError(f"the loss is for outputs {loss.names}, the model has "
                             f"{model.output_names}")
        return loss
    made, _, _ = compile_outputs(list(model.output_names), loss, None, None)
    return made


def _check_graph(model, x, target, loss, sample_weight, training, eps, tol, seed,
                 raise_on_error):
    """``gradcheck`` of a graph ``Model``: data and losses per input and output."""
    from cdl import graph as _graph
    from cdl.training.outputs import OutputLosses

    if model.dtype != np.float64:
        raise TypeError(
            f"gradcheck needs float64 to be meaningful; {model!r} has dtype {model.dtype}: "
            "make it with dtype='float64'")
    model.ensure_built()
    in_names, out_names = list(model.input_names), list(model.output_names)
    inputs = [_private_input(value, "x" if len(in_names) == 1 else f"x[{name!r}]")
              for value, name in zip(_graph.structure(x, in_names, "x"), in_names)]
    # Checked for their shapes; the private float64 copies are what forward
    # reads, and what the finite differences perturb.
    feed = inputs if len(inputs) > 1 else inputs[0]
    model.check_input(feed)
    input_keys = [f"input:{name}" for name in in_names]
    loss_fn = _graph_loss(model, loss)
    many_out = isinstance(loss_fn, OutputLosses)
    if loss_fn is not None:
        if target is None:
            raise ValueError("a target is needed with a loss")
        targets = _graph.structure(target, out_names, "target", allow_missing=True)
        if not many_out:
            if targets[0] is None:
                raise ValueError("a target is needed with a loss")
            targets = targets[0]
        if many_out and (isinstance(sample_weight, dict) or (
                isinstance(sample_weight, (list, tuple)) and len(sample_weight) == len(out_names)
                and all(w is None or np.ndim(w) == 1 for w in sample_weight))):
            sample_weight = _graph.structure(sample_weight, out_names, "sample_weight",
                                             allow_missing=True)

    def as_list(value):
        return value if len(out_names) > 1 else [value]

    outs = as_list(model.forward_checked(feed, training))
    generators = _generators(model) if training else []
    states = [g.bit_generator.state for g in generators]
    rng = np.random.default_rng(seed)
    projections = [rng.standard_normal(np.shape(out)) for out in outs]

    def evaluate():
        for g, state in zip(generators, states):
            g.bit_generator.state = state
        ys = model.forward_checked(feed, training)
        if loss_fn is not None:
            return loss_fn.forward(as_list(ys) if many_out else ys, targets, sample_weight)
        return float(sum(np.sum(y * r) for y, r in zip(as_list(ys), projections)))

    evaluate()
    upstream = loss_fn.backward() if loss_fn is not None else projections
    if not isinstance(upstream, list):
        upstream = [upstream]
    input_grads = model.backward(upstream if len(out_names) > 1 else upstream[0])
    input_grads = input_grads if len(in_names) > 1 else [input_grads]
    return _compare(evaluate, input_keys, inputs, input_grads, model.layers, eps, tol,
                    raise_on_error)


def _private_input(x, name="x"):
    """A C-contiguous float64 copy of ``x``, which the finite differences
    perturb in place (through a flat view, so it must be C-contiguous)."""
    x = np.array(as_real_array(x, name), dtype=np.float64, order="C")
    check_finite(x, name)
    return x


def _check_loss(loss_fn, pred, target, sample_weight, eps, tol, raise_on_error):
    if target is None:
        raise ValueError("gradcheck of a loss needs a target")
    loss_fn.forward(pred, target, sample_weight)
    analytic = np.array(loss_fn.backward(), dtype=np.float64)
    numeric = _numeric_gradient(lambda: loss_fn.forward(pred, target, sample_weight), pred, eps)
    return _report({"input": _relative_error(analytic, numeric)}, tol, raise_on_error)


def _report(errors, tol, raise_on_error):
    bad = {k: v for k, v in errors.items() if not v <= tol}
    if bad and raise_on_error:
        lines = ", ".join(f"{k}: {v:.3g}" for k, v in bad.items())
        raise GradcheckError(f"gradients disagree with finite differences (tol {tol:g}): {lines}")
    return errors
