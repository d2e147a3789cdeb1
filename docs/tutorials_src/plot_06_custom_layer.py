"""
Writing your own layer
======================

A layer written in Python and NumPy mixes freely with the built-in,
compiled ones. It subclasses ``cdl.layers.Layer``, creates its weights in
``build``, and implements ``forward`` and ``backward``. ``cdl.gradcheck``
then compares its analytic gradients with finite differences, which catches
the usual mistakes in a backward pass.
"""

# %%
# A learned activation
# --------------------
# Swish with a learned slope per feature: :math:`y = x \, \sigma(\beta x)`,
# with :math:`\beta` a weight of shape ``(features,)``. Its derivatives,
# with :math:`s = \sigma(\beta x)`, are
#
# .. math::
#
#    \frac{\partial y}{\partial x} = s + \beta x s (1 - s), \qquad
#    \frac{\partial y}{\partial \beta} = x^2 s (1 - s).
#
# The contract:
#
# - ``build(input_shape)`` gets the shape of one sample and creates weights
#   with ``add_weight(name, shape, initializer)``. The weight is then
#   ``self.beta`` and its gradient ``self.beta_grad``. A model moves both
#   into its flat buffers, so always use these attributes.
# - ``forward(x, training)`` starts with ``x = self._check_input(x)``
#   (which converts ``x`` to the layer's dtype and checks its shape), keeps
#   what backward needs and returns the output.
# - ``backward(grad)`` gets :math:`\partial L / \partial y`, *overwrites*
#   every gradient (``self.beta_grad[...] = ...``), and returns
#   :math:`\partial L / \partial x`.
# - ``get_config`` returns the constructor's arguments, so that a saved
#   model can rebuild the layer.
import numpy as np

import cdl
from cdl import layers, optimizers


@cdl.register_layer          # lets cdl.load_model find the class by name
class LearnedSwish(layers.Layer):
    def __init__(self, beta_init=1.0, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.beta_init = float(beta_init)

    def build(self, input_shape):
        self.add_weight("beta", (input_shape[-1],), cdl.initializers.Constant(self.beta_init))

    def forward(self, x, training=False):
        x = self._check_input(x)
        s = 1 / (1 + np.exp(-self.beta * x))
        self._cache = (x, s)
        return x * s

    def backward(self, grad):
        x, s = self._cache
        ds = s * (1 - s)
        axes = tuple(range(x.ndim - 1))                  # every axis but the features
        self.beta_grad[...] = (grad * x * x * ds).sum(axis=axes)
        return grad * (s + self.beta * x * ds)

    def get_config(self):
        return {**super().get_config(), "beta_init": self.beta_init}


# %%
# Checking the gradients
# ----------------------
# ``gradcheck`` works in float64: pass a float64 batch and the layer is
# built as float64. It perturbs each input and weight in turn, and compares
# the change of a random projection of the output with what ``backward``
# says. It returns the worst relative error per tensor.
rng = np.random.default_rng(0)
x = rng.normal(size=(5, 3))
print(cdl.gradcheck(LearnedSwish(), x))

# %%
# A wrong backward pass fails loudly. Here the :math:`\beta x s (1 - s)`
# term of :math:`\partial y / \partial x` is forgotten:


class BrokenSwish(LearnedSwish):
    def backward(self, grad):
        super().backward(grad)
        x, s = self._cache
        return grad * s


try:
    cdl.gradcheck(BrokenSwish(), x)
except cdl.GradcheckError as error:
    print("GradcheckError:", error)

# %%
# In a model, and checked as a whole
# ----------------------------------
# The layer takes its dtype and random generator from the model, and its
# weight joins the model's flat parameter buffer, so every optimizer updates
# it with the rest. ``gradcheck`` also checks a whole model and loss.
model = cdl.Sequential([
    layers.Dense(16),
    LearnedSwish(),
    layers.Dense(2),
], input_shape=(2,), seed=0, dtype="float64")
labels = rng.integers(0, 2, 5)
errors = cdl.gradcheck(model, rng.normal(size=(5, 2)), labels, loss="cross_entropy")
print({name: f"{error:.1e}" for name, error in errors.items()})

# %%
# Training and saving
# -------------------
# Models with user layers train on the layer-by-layer path (the fused
# compiled step covers only built-in dense layers). ``register_layer`` made
# the class known to ``cdl.load_model``, which rebuilds it from
# ``get_config``.
import os
import tempfile

x_train, y_train = cdl.datasets.make_moons(n_samples=400, noise=0.15, seed=0)
model = cdl.Sequential([
    layers.Dense(16),
    LearnedSwish(),
    layers.Dense(2),
], input_shape=(2,), seed=0)
model.compile(optimizers.Adam(lr=1e-2), "cross_entropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=40, batch_size=32, verbose=0)
print(model.evaluate(x_train, y_train))
print("learned slopes:", model.layers[1].beta.round(2))

with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "swish.cdl")
    model.save(path)
    loaded = cdl.load_model(path)
print(type(loaded.layers[1]).__name__,
      "same predictions:", np.array_equal(loaded.predict(x_train), model.predict(x_train)))
