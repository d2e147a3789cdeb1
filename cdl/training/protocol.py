"""The model protocol: what the trainer needs of a model, and nothing more.

``TrainingMixin`` (``compile``, ``fit``, ``evaluate``, ``predict``,
``train_step``) works on any model class that has the members listed in
``TrainableModel``; ``cdl.Sequential`` is one. The trainer never reads a
model's private members, so a model that is a graph of layers trains
through the same loops by providing these.

The members, grouped by what the trainer does with them:

Structure
    ``name``, ``dtype`` (a NumPy float dtype), ``rng`` (a
    ``numpy.random.Generator``, the source of dropout and shuffling),
    ``input_shape`` and ``output_shape`` (one sample's, None before the
    model is built; a list of them for a model with several inputs or
    outputs), ``input_names`` and ``output_names`` (the keys of data given
    as dicts, in the order of lists), ``built``, ``build(input_shape=None)``,
    ``ensure_built()``, ``layers`` (a list, in order of computation),
    ``chain`` (the same list when the model is one chain of layers, else
    None), ``output_layers`` (the layer computing each output) and
    ``graph`` (a graph model's ``cdl.graph.Graph``, None for a stack of
    layers: data for a graph's one input may come as ``[x]``).
Parameters
    ``params`` and ``grads`` (aligned lists of arrays), ``param_buffer``
    and ``grad_buffer`` (the flat arrays they are views of; the optimizer
    state is the optimizer's, kept per position in ``params``),
    ``count_params()``.
Computing
    ``check_input(x)`` (the checked batch, building the model on first use;
    a list of arrays in input order for several inputs),
    ``forward_checked(x, training)`` and ``backward_checked(grad,
    input_grad)`` (one pass over a checked batch, without the checks of
    ``forward``/``backward``; the backward pass fills ``grads``; a list of
    outputs, and of their gradients, for several outputs).
Penalties
    ``regularization_loss()``, ``has_regularization()`` and
    ``add_regularization_gradients()``.

The fused training step (``cdl._fused``) runs ``chain``; a model that is
not a chain, or whose layers the fused step does not cover, trains
through ``forward_checked``/``backward_checked``.
"""
from typing import Protocol, runtime_checkable

__all__ = ["TrainableModel"]


@runtime_checkable
class TrainableModel(Protocol):
    """What ``cdl.training.TrainingMixin`` calls on the model it is mixed into.

    Examples
    --------
    >>> import cdl
    >>> from cdl import layers
    >>> from cdl.training.protocol import TrainableModel
    >>> model = cdl.Sequential([layers.Dense(2)], input_shape=(3,))
    >>> isinstance(model, TrainableModel)
    True
    """

    name: str
    dtype: object
    rng: object
    input_shape: object
    output_shape: object
    built: bool
    params: list
    grads: list
    param_buffer: object
    grad_buffer: object
    input_names: list
    output_names: list
    graph: object

    @property
    def layers(self):
        """The layers, in the order the forward pass runs them."""

    @property
    def chain(self):
        """``layers`` when the model is one chain of layers, else None."""

    @property
    def output_layers(self):
        """The layer that computes each output, in output order."""

    def build(self, input_shape=None):
        """Build every layer for samples of ``input_shape`` (or the model's)."""

    def ensure_built(self):
        """Build the model if it is not built yet."""

    def count_params(self):
        """Total number of scalar weights."""

    def check_input(self, x):
        """``x`` as a checked array of the model's dtype (the model is built
        from its sample shape if it has none)."""

    def forward_checked(self, x, training):
        """The outputs for a batch returned by ``check_input``."""

    def backward_checked(self, grad, input_grad):
        """Back-propagate ``grad`` (d loss / d outputs of the last
        ``forward_checked``), filling ``grads``; with ``input_grad=False``
        the gradient with respect to the input may be skipped (None)."""

    def regularization_loss(self):
        """The weight and activity penalties of the last training pass."""

    def has_regularization(self):
        """True if any weight or activity penalty is set."""

    def add_regularization_gradients(self):
        """Add the penalties' gradients to ``grads``."""
