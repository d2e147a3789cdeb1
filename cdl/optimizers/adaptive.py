"""Adagrad and RMSprop: per-parameter learning rates from gradient history."""
import numpy as np

from cdl._kernels import optim as _k
from cdl._validation import check_bool, check_number
from cdl.optimizers.base import Optimizer


class Adagrad(Optimizer):
    r"""Adagrad, as ``torch.optim.Adagrad``.

    .. math::

        d_t &= g_t + \lambda \theta_{t-1} \\
        \tilde\eta_t &= \eta / (1 + (t - 1) \kappa) \\
        s_t &= s_{t-1} + d_t^2 \\
        \theta_t &= \theta_{t-1} - \tilde\eta_t \, d_t / (\sqrt{s_t} + \epsilon)

    with :math:`s_0` = ``initial_accumulator_value`` and lr decay :math:`\kappa`.

    Parameters
    ----------
    lr : float, default 1e-2
    lr_decay : float, default 0
    weight_decay : float, default 0
        Coupled L2 penalty.
    initial_accumulator_value : float, default 0
    eps : float, default 1e-10
    param_groups, exclude_bias_decay, maximize
        See ``cdl.optimizers.Optimizer``.

    Notes
    -----
    Keras' Adagrad defaults to lr 1e-3, initial accumulator 0.1 and eps 1e-7,
    and has no ``lr_decay``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import optimizers
    >>> w = np.array([1.0, 1.0])
    >>> opt = optimizers.Adagrad(lr=0.1)
    >>> opt.step([w], [np.array([2.0, 0.1])])   # first step: lr * sign(g)
    >>> w.round(4)
    array([0.9, 0.9])
    """

    _state_names = ("sum",)

    def __init__(self, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, param_groups=None, exclude_bias_decay=False,
                 maximize=False):
        super().__init__(lr, weight_decay, param_groups, exclude_bias_decay, maximize)
        self.lr_decay = check_number(lr_decay, "lr_decay", low=0.0)
        self.initial_accumulator_value = check_number(
            initial_accumulator_value, "initial_accumulator_value", low=0.0)
        self.eps = check_number(eps, "eps", low=0.0)

    def get_config(self):
        return {**super().get_config(), "lr_decay": self.lr_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}

    def _init_state(self, name, size, dtype):
        return np.full(size, self.initial_accumulator_value, dtype=dtype)

    def _update(self, segment, state):
        clr = self.lr * segment.lr_mult / (1 + (self.iterations - 1) * self.lr_decay)
        _k.adagrad(segment.param, segment.grad, state["sum"], clr,
                   self.weight_decay * segment.wd_mult, self.eps)


class RMSprop(Optimizer):
    r"""RMSprop, as ``torch.optim.RMSprop``.

    .. math::

        d_t &= g_t + \lambda \theta_{t-1} \\
        v_t &= \alpha v_{t-1} + (1 - \alpha) d_t^2 \\
        \bar g_t &= \alpha \bar g_{t-1} + (1 - \alpha) d_t \ \text{(centered)} \\
        D_t &= \sqrt{v_t - \bar g_t^2} + \epsilon \ \text{(centered)}, \quad
               \sqrt{v_t} + \epsilon \ \text{(otherwise)} \\
        b_t &= \mu b_{t-1} + d_t / D_t, \quad \theta_t = \theta_{t-1} - \eta b_t
               \ \text{(momentum)} \\
        \theta_t &= \theta_{t-1} - \eta d_t / D_t \ \text{(no momentum)}

    Parameters
    ----------
    lr : float, default 1e-2
    alpha : float, default 0.99
        Smoothing constant of the squared-gradient average.
    eps : float, default 1e-8
    weight_decay : float, default 0
        Coupled L2 penalty.
    momentum : float, default 0
    centered : bool, default False
        Normalise by an estimate of the gradient's variance.
    param_groups, exclude_bias_decay, maximize
        See ``cdl.optimizers.Optimizer``.

    Notes
    -----
    Keras' RMSprop calls ``alpha`` ``rho`` and defaults it to 0.9, puts eps
    inside the square root, and defaults to lr 1e-3 and eps 1e-7.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import optimizers
    >>> w = np.array([1.0])
    >>> opt = optimizers.RMSprop(lr=0.01)
    >>> opt.step([w], [np.array([4.0])])      # s = 0.01 * 16; w -= 0.01 * 4 / sqrt(s)
    >>> w.round(4)
    array([0.9])
    """

    _state_names = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, param_groups=None, exclude_bias_decay=False,
                 maximize=False):
        super().__init__(lr, weight_decay, param_groups, exclude_bias_decay, maximize)
        self.alpha = check_number(alpha, "alpha", low=0.0)
        self.eps = check_number(eps, "eps", low=0.0)
        self.momentum = check_number(momentum, "momentum", low=0.0)
        self.centered = check_bool(centered, "centered")

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "eps": self.eps,
                "momentum": self.momentum, "centered": self.centered}

    def _init_state(self, name, size, dtype):
        if (name == "grad_avg" and not self.centered) or (
                name == "momentum_buffer" and not self.momentum):
            return None
        return super()._init_state(name, size, dtype)

    def _check_options(self):
        self._check_state_for((("momentum_buffer", "momentum"), ("grad_avg", "centered")))

    def _update(self, segment, state):
        # An option switched off leaves its state as it was, to continue
        # from if it is switched on again (torch.optim.RMSprop's rule).
        _k.rmsprop(segment.param, segment.grad, state["square_avg"],
                   state["grad_avg"] if self.centered else None,
                   state["momentum_buffer"] if self.momentum > 0 else None,
                   self.lr * segment.lr_mult, self.alpha, self.eps,
                   self.weight_decay * segment.wd_mult, self.momentum)
