"""Which models the fused training step covers, and how to describe them to it.

``build_plan(model, batch_size)`` turns a model that is a chain of layers
(a Sequential, or a graph ``Model`` that is one; ``model.chain``) whose layers all
describe themselves to the fused step (``Layer.fused_steps``: dense,
activation, dropout and flatten layers), trained with a supported loss,
into a ``cdl._kernels.fused.TrainPlan``; any other model gets None and
trains layer by layer. Both paths run the same kernels in the same order.
"""
import numpy as np

from cdl import losses
from cdl._kernels import fused as _k

#: The kernel of each ``FusedStep.kind``.
_KINDS = {"dense": _k.DENSE, "activation": _k.ACTIVATION, "dropout": _k.DROPOUT}


class Plan:
    """A ``TrainPlan`` with what the Python side needs to drive it."""

    def __init__(self, plan, dropout_widths, label_targets, d_out):
        self._plan = plan
        self.uniforms = plan.uniforms
        self.dropout_widths = dropout_widths
        self.label_targets = label_targets
        self.d_out = d_out
        self.train_step = plan.train_step
        self.output = plan.output


def _loss_code(loss):
    if getattr(loss, "reduction", "mean") != "mean":
        return None, None  # the fused step computes means
    if type(loss) is losses.CrossEntropy and loss.label_smoothing == 0.0 \
            and loss.weight is None:  # the fused step knows no class weights
        return _k.LOSS_CROSS_ENTROPY, 1.0
    if type(loss) is losses.BinaryCrossEntropy and loss.pos_weight is None:
        return _k.LOSS_BINARY_CROSS_ENTROPY, 1.0
    if type(loss) in (losses.MSE, losses.MAE, losses.Huber):
        return loss._kind, loss._delta()
    return None, None


def _declared_steps(layer):
    """``layer.fused_steps()`` if its own class declares them, else None
    (a subclass may compute something else than its parent's kernel)."""
    if "fused_steps" not in vars(type(layer)):
        return None
    return layer.fused_steps()


def build_plan(model, batch_size, training=True):
    """A ``Plan`` for ``model``, or None if it has a layer or loss the fused
    step does not cover (user layers, multi-axis inputs, soft-label losses).
    With ``training=False`` the plan serves ``predict`` only and any loss will do."""
    code, delta = _loss_code(model.loss) if training else (0, 1.0)
    chain = model.chain
    if code is None or chain is None or model.input_shape is None or \
            len(model.input_shape) != 1:
        return None
    steps, widths = [], []
    for layer in chain:
        if getattr(layer, "activity_regularizer", None) is not None:
            return None  # its penalty needs the layer's output in Python
        if len(layer.input_shape) != 1:
            return None
        described = _declared_steps(layer)
        if described is None:
            return None
        for step in described:
            kind = _KINDS[step.kind]
            steps.append((kind, *step[1:]))
            if kind == _k.DROPOUT:
                widths.append(step.width_in)
    if not steps or steps[0][0] != _k.DENSE:
        return None
    plan = _k.TrainPlan(steps, batch_size, model.dtype, code, delta)
    plan = Plan(plan, widths, code == _k.LOSS_CROSS_ENTROPY, steps[-1][2])
    plan.ignore_index = getattr(model.loss, "ignore_index", None) if training else None
    return plan


def plan_targets(plan, y, n):
    """Targets in the form the plan takes, or None to use the layer-by-layer
    path (which also reports any problem with them)."""
    if plan.label_targets:
        ignore = getattr(plan, "ignore_index", None)
        if ignore is not None and y.dtype == np.int64 and (y == ignore).any():
            return None  # the layer path leaves the ignored labels out
        if y.dtype == np.int64 and y.shape == (n,):
            return y
        return None
    if y.ndim == 1 and plan.d_out == 1:
        y = y.reshape(n, 1)
    if y.shape != (n, plan.d_out) or y.dtype != plan._plan.dtype:
        return None
    return y
