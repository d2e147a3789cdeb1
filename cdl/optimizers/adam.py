"""Adam and its relatives: AdamW, Adamax, NAdam, RAdam."""
import math

from cdl._kernels import optim as _k
from cdl._validation import check_bool, check_number
from cdl.optimizers.base import Optimizer


def _check_betas(betas):
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair of numbers, got {betas!r}") from None
    return (check_number(beta1, "betas[0]", low=0.0, high=1.0, high_inclusive=False),
            check_number(beta2, "betas[1]", low=0.0, high=1.0, high_inclusive=False))


class _AdamBase(Optimizer):
    """Shared constructor and config of the Adam family."""

    _state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr, betas, eps, weight_decay, param_groups, exclude_bias_decay,
                 maximize):
        super().__init__(lr, weight_decay, param_groups, exclude_bias_decay, maximize)
        self.betas = _check_betas(betas)
        self.eps = check_number(eps, "eps", low=0.0)

    def get_config(self):
        return {**super().get_config(), "betas": tuple(self.betas), "eps": self.eps}

    @staticmethod
    def _weight_decay_terms(lr, wd, decoupled):
        """(L2 coefficient added to the gradient, factor the parameters are
        first multiplied by): (wd, 1) coupled, (0, 1 - lr wd) decoupled."""
        return (0.0, 1.0 - lr * wd) if decoupled else (wd, 1.0)


class Adam(_AdamBase):
    r"""Adam, as ``torch.optim.Adam``.

    .. math::

        d_t &= g_t + \lambda \theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) d_t \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) d_t^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \ \text{(amsgrad)}, \quad v_t \ \text{(otherwise)} \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1 - \beta_1^t}
                    \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    eps is added after the bias correction of the second moment; amsgrad
    keeps the running maximum of the raw (uncorrected) second moment.

    Parameters
    ----------
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
        Coupled L2 penalty, added to the gradient (see ``AdamW`` for decoupled).
    amsgrad : bool, default False
    param_groups, exclude_bias_decay, maximize
        See ``cdl.optimizers.Optimizer``.

    Notes
    -----
    Keras' Adam defaults eps to 1e-7 and adds it to :math:`\sqrt{v_t}` before
    the bias correction is folded into the step size (an "epsilon hat"),
    so the two differ slightly when :math:`v_t` is small.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import optimizers
    >>> w = np.array([1.0, 1.0])
    >>> opt = optimizers.Adam(lr=0.1)
    >>> opt.step([w], [np.array([3.0, -0.01])])   # the first step is lr * sign(g)
    >>> w.round(4)
    array([0.9, 1.1])
    """

    _state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 param_groups=None, exclude_bias_decay=False, maximize=False):
        super().__init__(lr, betas, eps, weight_decay, param_groups, exclude_bias_decay,
                         maximize)
        self.amsgrad = check_bool(amsgrad, "amsgrad")

    def get_config(self):
        return {**super().get_config(), "amsgrad": self.amsgrad}

    def _init_state(self, name, size, dtype):
        if name == "max_exp_avg_sq" and not self.amsgrad:
            return None
        return super()._init_state(name, size, dtype)

    def _check_options(self):
        self._check_state_for((("max_exp_avg_sq", "amsgrad"),))

    def _update(self, segment, state):
        beta1, beta2 = self.betas
        t = self.iterations
        lr = self.lr * segment.lr_mult
        wd = self.weight_decay * segment.wd_mult
        # amsgrad switched off keeps its maximum as it was, to continue from
        # if switched on again (torch.optim.Adam's rule).
        _k.adam(segment.param, segment.grad, state["exp_avg"], state["exp_avg_sq"],
                state["max_exp_avg_sq"] if self.amsgrad else None, lr / (1 - beta1 ** t), math.sqrt(1 - beta2 ** t),
                beta1, beta2, self.eps, *self._weight_decay_terms(lr, wd, self._decoupled))


class AdamW(Adam):
    r"""AdamW (decoupled weight decay), as ``torch.optim.AdamW``.

    The parameters first decay, :math:`\theta \leftarrow \theta (1 - \eta \lambda)`
    with the current learning rate, then take an ``Adam`` step without any
    L2 term in the gradient.

    Parameters
    ----------
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 1e-2
    amsgrad : bool, default False
    param_groups, exclude_bias_decay, maximize
        See ``cdl.optimizers.Optimizer``.

    Notes
    -----
    Keras' AdamW defaults weight_decay to 0.004 and eps to 1e-7.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import optimizers
    >>> w = np.array([1.0])
    >>> opt = optimizers.AdamW(lr=0.1, weight_decay=0.5)
    >>> opt.step([w], [np.array([0.0])])     # zero gradient: only the decay, w *= 1 - lr * wd
    >>> w
    array([0.95])
    """

    _decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 param_groups=None, exclude_bias_decay=False, maximize=False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad, param_groups, exclude_bias_decay,
                         maximize)


class Adamax(_AdamBase):
    r"""Adamax (Adam with the infinity norm), as ``torch.optim.Adamax``.

    .. math::

        d_t &= g_t + \lambda \theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) d_t \\
        u_t &= \max(\beta_2 u_{t-1}, |d_t| + \epsilon) \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1 - \beta_1^t} \frac{m_t}{u_t}

    Parameters
    ----------
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
        Coupled L2 penalty.
    param_groups, exclude_bias_decay, maximize
        See ``cdl.optimizers.Optimizer``.

    Notes
    -----
    Keras' Adamax takes :math:`u_t = \max(\beta_2 u_{t-1}, |g_t|)` and adds eps
    (default 1e-7) in the denominator instead; its default lr is 1e-3.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import optimizers
    >>> w = np.array([1.0])
    >>> opt = optimizers.Adamax(lr=0.1)
    >>> opt.step([w], [np.array([5.0])])
    >>> w.round(4)
    array([0.9])
    """

    _state_names = ("exp_avg", "exp_inf")

    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 param_groups=None, exclude_bias_decay=False, maximize=False):
        super().__init__(lr, betas, eps, weight_decay, param_groups, exclude_bias_decay,
                         maximize)

    def _update(self, segment, state):
        beta1, beta2 = self.betas
        clr = self.lr * segment.lr_mult / (1 - beta1 ** self.iterations)
        _k.adamax(segment.param, segment.grad, state["exp_avg"], state["exp_inf"], clr,
                  beta1, beta2, self.eps, self.weight_decay * segment.wd_mult)


class NAdam(_AdamBase):
    r"""NAdam (Adam with Nesterov momentum), as ``torch.optim.NAdam``.

    .. math::

        \mu_t &= \beta_1 (1 - \tfrac12 \cdot 0.96^{t \psi}), \quad
        \Pi_t = \prod_{i \le t} \mu_i \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) d_t, \quad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) d_t^2 \\
        D_t &= \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
        \theta_t &= \theta_{t-1} - \eta \frac{1 - \mu_t}{1 - \Pi_t} \frac{d_t}{D_t}
                   - \eta \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} \frac{m_t}{D_t}

    with :math:`d_t = g_t + \lambda \theta_{t-1}`, or, with
    ``decoupled_weight_decay``, :math:`\theta \leftarrow \theta (1 - \eta\lambda)`
    first and :math:`d_t = g_t`.

    Parameters
    ----------
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum_decay : float, default 4e-3
        :math:`\psi` in the momentum schedule.
    decoupled_weight_decay : bool, default False
    param_groups, exclude_bias_decay, maximize
        See ``cdl.optimizers.Optimizer``.

    Notes
    -----
    Keras' Nadam uses the same momentum schedule with its decay fixed at
    0.004, defaults lr to 1e-3 and eps to 1e-7, and has no weight decay
    coupling option.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import optimizers
    >>> w = np.array([1.0])
    >>> opt = optimizers.NAdam(lr=0.1)
    >>> opt.step([w], [np.array([5.0])])
    >>> w.round(4)
    array([0.8944])
    """

    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, param_groups=None,
                 exclude_bias_decay=False, maximize=False):
        super().__init__(lr, betas, eps, weight_decay, param_groups, exclude_bias_decay,
                         maximize)
        self.momentum_decay = check_number(momentum_decay, "momentum_decay", low=0.0)
        self.decoupled_weight_decay = check_bool(decoupled_weight_decay,
                                                 "decoupled_weight_decay")
        self.mu_product = 1.0

    def get_config(self):
        return {**super().get_config(), "momentum_decay": self.momentum_decay,
                "decoupled_weight_decay": self.decoupled_weight_decay}

    def _scalar_state(self):
        return {"mu_product": self.mu_product}

    def _load_scalar_state(self, scalars):
        self.mu_product = float(scalars.get("mu_product", 1.0))

    def _begin_step(self):
        beta1 = self.betas[0]
        t = self.iterations
        self._mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))
        self._mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * self.momentum_decay))
        self.mu_product *= self._mu

    def _update(self, segment, state):
        beta1, beta2 = self.betas
        lr = self.lr * segment.lr_mult
        wd = self.weight_decay * segment.wd_mult
        c_grad = lr * (1.0 - self._mu) / (1.0 - self.mu_product)
        c_avg = lr * self._mu_next / (1.0 - self.mu_product * self._mu_next)
        _k.nadam(segment.param, segment.grad, state["exp_avg"], state["exp_avg_sq"],
                 c_grad, c_avg, 1 - beta2 ** self.iterations, beta1, beta2, self.eps,
                 *self._weight_decay_terms(lr, wd, self.decoupled_weight_decay))


class RAdam(_AdamBase):
    r"""RAdam (rectified Adam), as ``torch.optim.RAdam``.

    .. math::

        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) d_t, \quad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) d_t^2, \quad
        \hat m_t = m_t / (1 - \beta_1^t) \\
        \rho_\infty &= 2 / (1 - \beta_2) - 1, \quad
        \rho_t = \rho_\infty - 2 t \beta_2^t / (1 - \beta_2^t) \\
        r_t &= \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}
                          {(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
        \theta_t &= \theta_{t-1} - \eta \hat m_t r_t
                    \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon}
                    \ \text{if } \rho_t > 5, \quad
                    \theta_{t-1} - \eta \hat m_t \ \text{otherwise}

    with :math:`d_t = g_t + \lambda \theta_{t-1}`, or, with
    ``decoupled_weight_decay``, :math:`\theta \leftarrow \theta (1 - \eta\lambda)`
    first and :math:`d_t = g_t`.

    Parameters
    ----------
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    decoupled_weight_decay : bool, default False
    param_groups, exclude_bias_decay, maximize
        See ``cdl.optimizers.Optimizer``.

    Notes
    -----
    Keras has no RAdam in its core optimizers.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import optimizers
    >>> w = np.array([1.0])
    >>> opt = optimizers.RAdam(lr=0.1)
    >>> opt.step([w], [np.array([5.0])])     # early steps: bias-corrected momentum, no adaptive term
    >>> w.round(4)
    array([0.5])
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, param_groups=None, exclude_bias_decay=False,
                 maximize=False):
        super().__init__(lr, betas, eps, weight_decay, param_groups, exclude_bias_decay,
                         maximize)
        self.decoupled_weight_decay = check_bool(decoupled_weight_decay,
                                                 "decoupled_weight_decay")

    def get_config(self):
        return {**super().get_config(), "decoupled_weight_decay": self.decoupled_weight_decay}

    def _update(self, segment, state):
        beta1, beta2 = self.betas
        t = self.iterations
        lr = self.lr * segment.lr_mult
        wd = self.weight_decay * segment.wd_mult
        bc2 = 1 - beta2 ** t
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * (beta2 ** t) / bc2
        rectified = rho_t > 5.0
        rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                         / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) if rectified else 0.0
        _k.radam(segment.param, segment.grad, state["exp_avg"], state["exp_avg_sq"], lr,
                 1 - beta1 ** t, bc2 ** 0.5, rect, rectified, beta1, beta2, self.eps,
                 *self._weight_decay_terms(lr, wd, self.decoupled_weight_decay))
