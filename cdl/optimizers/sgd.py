"""Stochastic gradient descent, with momentum and Nesterov momentum."""
import math

import numpy as np

from cdl._kernels import optim as _k
from cdl._validation import check_bool, check_number
from cdl.optimizers.base import Optimizer


class SGD(Optimizer):
    r"""Gradient descent: plain, mini-batch, with momentum or Nesterov momentum.

    With the whole data set as the batch this is batch gradient descent;
    with mini-batches, stochastic gradient descent. The rule is PyTorch's
    (``torch.optim.SGD``), for gradient :math:`g_t` and parameters
    :math:`\theta_t`:

    .. math::

        d_t &= g_t + \lambda \theta_{t-1} \\
        b_t &= d_t \ \text{(first step)}, \quad
               b_t = \mu b_{t-1} + (1 - \tau) d_t \ \text{(later)} \\
        d_t &\leftarrow d_t + \mu b_t \ \text{(nesterov)}, \quad
               d_t \leftarrow b_t \ \text{(momentum, not nesterov)} \\
        \theta_t &= \theta_{t-1} - \eta d_t

    with learning rate :math:`\eta` = ``lr``, weight decay :math:`\lambda`,
    momentum :math:`\mu` and dampening :math:`\tau`.

    Parameters
    ----------
    lr : float, default 1e-3
    momentum : float, default 0
    dampening : float, default 0
    nesterov : bool, default False
        Needs ``momentum > 0`` and ``dampening == 0``.
    weight_decay : float, default 0
        Coupled L2 penalty, added to the gradient.
    param_groups, exclude_bias_decay, maximize
        See ``cdl.optimizers.Optimizer``.

    Notes
    -----
    Keras' SGD keeps the learning rate inside the velocity
    (:math:`v = \mu v - \eta g`, :math:`\theta \mathrel{+}= v`), which gives
    the same trajectory only while ``lr`` is constant, and its Nesterov
    variant is written in a different (equivalent at constant ``lr``) form;
    its default ``lr`` is 0.01. The momentum buffer here starts as the first
    gradient, as in PyTorch, not as zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import optimizers
    >>> w = np.array([1.0])
    >>> opt = optimizers.SGD(lr=0.1, momentum=0.9)
    >>> for _ in range(3):
    ...     opt.step([w], [np.array([1.0])])   # velocity 1, 1.9, 2.71
    >>> w.round(4)                               # 1 - 0.1 * (1 + 1.9 + 2.71)
    array([0.439])
    """

    _state_names = ("momentum_buffer",)

    def __init__(self, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                 param_groups=None, exclude_bias_decay=False, maximize=False):
        super().__init__(lr, weight_decay, param_groups, exclude_bias_decay, maximize)
        self.momentum = check_number(momentum, "momentum", low=0.0)
        self.dampening = check_number(dampening, "dampening")
        self.nesterov = check_bool(nesterov, "nesterov")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov momentum requires momentum > 0 and dampening = 0")

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum,
                "dampening": self.dampening, "nesterov": self.nesterov}

    def _init_state(self, name, size, dtype):
        return super()._init_state(name, size, dtype) if self.momentum else None

    def _update(self, segment, state):
        # With momentum 0 the step uses no buffer and no dampening, and the
        # buffer is kept as it was: switched on again, momentum resumes from
        # it (torch.optim.SGD's rule).
        _k.sgd(segment.param, segment.grad,
               state["momentum_buffer"] if self.momentum else None,
               self.lr * segment.lr_mult, self.weight_decay * segment.wd_mult,
               self.momentum, self.dampening, self.nesterov, self._first)

    def _begin_step(self):
        # The momentum buffer is created from the first gradient it sees,
        # also when momentum is switched on after some plain steps.
        self._first = self.iterations == 1
        if self.momentum and self.state.get("momentum_buffer", 0) is None:
            size = sum(math.prod(shape) for shape in self._layout)
            self.state["momentum_buffer"] = np.zeros(size, dtype=self._params_seen[0].dtype)
            self._first = True
            self._work = None  # the cached state slices predate the new buffer
