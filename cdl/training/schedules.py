r"""Learning-rate schedules with PyTorch's names, arguments and formulas.

A user coming from ``torch.optim.lr_scheduler`` gets the same sequence of
learning rates from the class of the same name here.

Contract with optimizers
------------------------
An optimizer is any object with a mutable float attribute ``lr``: its base
learning rate. (Parameter groups scale it by their own ``lr_mult``, so a
schedule only ever reads and writes ``optimizer.lr``.) Every scheduler

* takes the optimizer first, records ``base_lr = optimizer.lr`` at
  construction and, as PyTorch does, sets the initial learning rate there
  (``LinearLR`` starts at ``start_factor * base_lr``, ``OneCycleLR`` at
  ``max_lr / div_factor``; most others leave it at ``base_lr``);
* advances one unit per call of ``step()`` and writes the new rate into
  ``optimizer.lr``. The class only counts calls: its docstring says
  whether the unit is meant to be a batch (an optimizer step) or an epoch.
  ``ReduceLROnPlateau.step(metric)`` takes the monitored value instead;
* reports the current rate with ``get_last_lr()`` (a float) and the number
  of calls so far in ``last_epoch``, counted as PyTorch counts it: 0 right
  after construction, +1 per ``step()``;
* saves and restores its state with ``state_dict()`` /
  ``load_state_dict(d)``: a dict of plain numbers, strings and lists (no
  optimizer, no function) from which a scheduler built with the same
  arguments on a fresh optimizer continues exactly as an uninterrupted one.
  ``load_state_dict`` also writes the saved current rate into
  ``optimizer.lr`` (PyTorch leaves that to the optimizer's own
  ``load_state_dict``).

Typical use::

    opt = cdl.optimizers.SGD(lr=0.1, momentum=0.9)
    warmup = schedules.LinearLR(opt, start_factor=0.01, total_iters=500)
    cosine = schedules.CosineAnnealingLR(opt, T_max=9500)
    sched = schedules.SequentialLR(opt, [warmup, cosine], milestones=[500])
    for batch in batches:
        ...                      # forward, backward, opt.step(params, grads)
        sched.step()

Differences from PyTorch
------------------------
* One learning rate per optimizer (not one per parameter group), so
  ``get_last_lr()`` returns a float rather than a list, and arguments that
  PyTorch accepts as per-group lists (``max_lr``, ``min_lr``,
  ``lr_lambda``) take one value.
* No ``last_epoch`` constructor argument and no deprecated
  ``step(epoch)``: resume with ``load_state_dict``. For
  ``CosineAnnealingWarmRestarts`` stepped per batch, count ``T_0`` in
  batches instead of calling PyTorch's ``step(epoch + i / iters)``; the
  rates are the same.
* ``CosineAnnealingLR`` evaluates PyTorch's closed form rather than its
  recursion (equal up to rounding, including past ``T_max``); inside a
  ``ChainedScheduler`` it switches to PyTorch's recursion so that chaining
  composes as in PyTorch.
* The base rate that PyTorch keeps in ``param_group["initial_lr"]`` (shared
  by every scheduler built on that optimizer) is, here, each scheduler's own
  ``base_lr``; ``SequentialLR`` and ``ChainedScheduler`` reset their
  schedulers' ``base_lr`` to that of the one built first, which is what
  PyTorch's shared ``initial_lr`` amounts to.
* ``OneCycleLR`` cycles momentum only if asked (``cycle_momentum=True``;
  PyTorch's default is True), through an optional ``momentum``, ``betas``
  or ``beta1`` attribute of the optimizer.
* ``SequentialLR`` and ``ChainedScheduler`` do not nest (PyTorch's
  ``SequentialLR`` fails on a nested ``ChainedScheduler`` after its first
  milestone anyway).
* A rate that rounding leaves a hair below zero (``LinearLR`` ending at
  ``end_factor=0`` computes about -2e-19) is written as 0.0, where PyTorch
  writes the residue; cdl's optimizers refuse rates below zero.
"""
import bisect
import itertools
import math

from cdl._validation import check_bool, check_number
from cdl.optimizers.base import Optimizer

__all__ = [
    "LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts", "LinearLR", "LinearWarmup", "LambdaLR",
    "ConstantLR", "PolynomialLR", "MultiplicativeLR", "OneCycleLR", "CyclicLR",
    "ReduceLROnPlateau", "SequentialLR", "ChainedScheduler", "get",
]

# Construction order, to find the scheduler built first among several that
# share an optimizer (its base_lr is PyTorch's param_group["initial_lr"]).
_construction_counter = itertools.count()


def _read_lr(optimizer):
    """``optimizer.lr`` as a float, or raise naming what is wrong."""
    try:
        lr = optimizer.lr
    except AttributeError:
        raise TypeError(
            "optimizer must have a float attribute 'lr' (its base learning rate); "
            f"{type(optimizer).__name__} has none") from None
    return check_number(lr, "optimizer.lr", low=0.0)


#: A computed rate below zero by at most this fraction of the rates it was
#: computed from is a rounding residue of a rate meant to be 0 (LinearLR
#: ending at end_factor=0 computes about -2e-19): it is written as 0.0.
_ROUNDING = 1e-12


def _settle(lr, scale):
    """``lr``, or 0.0 if it is a negative rounding residue relative to ``scale``.

    PyTorch writes such a residue into the optimizer as it is; cdl's
    optimizers refuse negative rates, and a rate of -2e-19 instead of 0 makes
    no difference to training.
    """
    if -_ROUNDING * scale <= lr < 0:
        return 0.0
    return lr


def _check_choice(value, options, name):
    if not isinstance(value, str) or value not in options:
        known = ", ".join(repr(o) for o in options)
        raise ValueError(f"{name} must be one of {known}, got {value!r}")
    return value


def _cosine(base_lr, eta_min, t, period):
    """eta_min + (base_lr - eta_min) * (1 + cos(pi * t / period)) / 2."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t / period)) / 2


#: Where an optimizer keeps the momentum a cycling schedule sets, in the
#: order looked for: SGD and RMSprop's ``momentum``, the Adam family's
#: ``betas`` (its first item), or a ``beta1`` attribute.
_MOMENTUM_ATTRIBUTES = ("momentum", "betas", "beta1")


def _momentum_attribute(optimizer):
    """The name of ``optimizer``'s momentum attribute, or None if it has none."""
    for name in _MOMENTUM_ATTRIBUTES:
        if hasattr(optimizer, name):
            return name
    return None


def _write_momentum(optimizer, name, value):
    """Set the momentum ``name`` (see ``_momentum_attribute``) to ``value``."""
    if name == "betas":
        optimizer.betas = (value, *tuple(optimizer.betas)[1:])
    else:
        setattr(optimizer, name, value)


class LRScheduler:
    """Base class: counts ``step()`` calls and writes ``optimizer.lr``.

    Subclasses implement ``_compute_lr()`` (the rate at ``last_epoch``,
    which ``step()`` has just incremented) and, if that is recursive (reads
    the current ``optimizer.lr``), ``_closed_form_lr()`` (the rate at
    ``last_epoch`` from ``base_lr`` alone, used when ``SequentialLR``
    switches to the scheduler). They list their hyper-parameters in
    ``_hyper`` and any further running state in ``_extra_state``; both are
    saved by ``state_dict()``.

    Attributes
    ----------
    optimizer : object
        The optimizer whose ``lr`` is scheduled.
    base_lr : float
        ``optimizer.lr`` when the scheduler was built.
    last_epoch : int
        Number of ``step()`` calls since construction.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.StepLR(opt, step_size=2)
    >>> for epoch in range(3):
    ...     # ... train one epoch with opt ...
    ...     sched.step()
    >>> sched.last_epoch, round(sched.get_last_lr(), 6)
    (3, 0.01)
    >>> state = sched.state_dict()             # plain numbers: resume with load_state_dict
    """

    _hyper = ()
    _extra_state = ()
    _is_initial = False
    _chain = None  # the ChainedScheduler in the middle of stepping this one

    def __init__(self, optimizer):
        self.base_lr = _read_lr(optimizer)
        self._built_from = self.base_lr  # the rate before the initial step
        self.optimizer = optimizer
        self.last_epoch = -1
        self._created = next(_construction_counter)
        self._initial_step()

    # --- stepping --------------------------------------------------------------

    def _initial_step(self):
        """The step PyTorch takes in the constructor: last_epoch -1 -> 0."""
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self):
        """Advance one unit and write the new rate into ``optimizer.lr``."""
        self.last_epoch += 1
        self._set_lr(self._compute_lr())

    def _compute_lr(self):
        raise NotImplementedError

    def _closed_form_lr(self):
        return self._compute_lr()

    def _update_lr(self, epoch):
        """Jump to ``epoch`` using the closed form (SequentialLR milestones)."""
        self.last_epoch = epoch
        self._set_lr(self._closed_form_lr())

    def _current_lr(self):
        """The rate a recursive rule starts from: the optimizer's, or inside a
        ``ChainedScheduler`` step the rate left by the scheduler before."""
        if self._chain is not None:
            return self._chain._pending_lr
        return float(self.optimizer.lr)

    def _set_lr(self, lr):
        if self._chain is not None:
            # Passed on to the next scheduler of the chain as computed, as in
            # PyTorch; only the chain's final rate goes into the optimizer.
            self._chain._pending_lr = self._last_lr = lr
            return
        self.optimizer.lr = _settle(lr, max(self.base_lr, abs(float(self.optimizer.lr))))
        self._last_lr = float(self.optimizer.lr)

    def get_last_lr(self):
        """The learning rate most recently written (a float)."""
        return self._last_lr

    # --- state -----------------------------------------------------------------

    def _state_keys(self):
        return ("base_lr", "last_epoch", "last_lr") + self._hyper + self._extra_state

    def state_dict(self):
        """The scheduler's state as plain numbers (no optimizer, no function)."""
        state = {}
        for key in self._state_keys():
            value = self._last_lr if key == "last_lr" else getattr(self, key)
            state[key] = list(value) if isinstance(value, (list, tuple)) else value
        return state

    def load_state_dict(self, state_dict):
        """Restore a state from ``state_dict()`` and write its rate into the optimizer."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        expected = set(self._state_keys())
        missing = expected - set(state_dict)
        unknown = set(state_dict) - expected
        if missing or unknown:
            raise ValueError(
                f"state_dict does not fit {type(self).__name__}: "
                f"missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
        for key in self._state_keys():
            value = state_dict[key]
            if isinstance(value, (list, tuple)):
                value = list(value)
            if key == "last_lr":
                self._last_lr = float(value)
            else:
                setattr(self, key, value)
        self._set_lr(self._last_lr)

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        return f"{type(self).__name__}({args})"


class StepLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    .. math::

        \eta_t = \eta_{t-1} \cdot
            \begin{cases} \gamma & t > 0,\ t \bmod s = 0 \\ 1 & \text{otherwise}
            \end{cases}
        \qquad\text{i.e.}\qquad \eta_t = \eta_{\text{base}}\,\gamma^{\lfloor t / s \rfloor}

    where :math:`s` is ``step_size``. As in PyTorch the update is recursive
    (it multiplies the current ``optimizer.lr``), so it composes with other
    schedulers in a ``ChainedScheduler`` and with changes made to
    ``optimizer.lr`` from outside.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    step_size : int
        Period of the decay, >= 1.
    gamma : float
        Multiplicative factor, > 0. Default 0.1.

    Notes
    -----
    **Step unit:** Epochs, typically (one ``step()`` per epoch); per batch works equally
    with ``step_size`` counted in batches.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.StepLR(opt, step_size=2, gamma=0.5)
    >>> rates = []
    >>> for _ in range(5):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.1, 0.05, 0.05, 0.025, 0.025]
    """

    _hyper = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = check_number(step_size, "step_size", low=1, integer=True)
        self.gamma = check_number(gamma, "gamma", low=0, low_inclusive=False)
        super().__init__(optimizer)

    def _compute_lr(self):
        lr = self._current_lr()
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma

    def _closed_form_lr(self):
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)


class MultiStepLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` at each milestone.

    .. math::

        \eta_t = \eta_{t-1}\,\gamma^{c(t)}
        \qquad\text{i.e.}\qquad
        \eta_t = \eta_{\text{base}}\,\gamma^{\#\{m \in M : m \le t\}}

    where :math:`c(t)` is the number of times :math:`t` appears in the
    milestones :math:`M` (a repeated milestone decays once per occurrence,
    as in PyTorch). Recursive and chainable like :class:`StepLR`.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    milestones : iterable of int
        Step indices (>= 1) at which to decay; stored sorted.
    gamma : float
        Multiplicative factor, > 0. Default 0.1.

    Notes
    -----
    **Step unit:** Epochs, typically; batches if the milestones are counted in batches.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.MultiStepLR(opt, milestones=[2, 4], gamma=0.1)
    >>> rates = []
    >>> for _ in range(5):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.1, 0.01, 0.01, 0.001, 0.001]
    """

    _hyper = ("milestones", "gamma")

    def __init__(self, optimizer, milestones, gamma=0.1):
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"milestones must be a list of ints, got {milestones!r}")
        self.milestones = sorted(
            check_number(m, "each of milestones", low=1, integer=True) for m in milestones)
        self.gamma = check_number(gamma, "gamma", low=0, low_inclusive=False)
        super().__init__(optimizer)

    def _compute_lr(self):
        lr = self._current_lr()
        hits = self.milestones.count(self.last_epoch)
        return lr * self.gamma ** hits if hits else lr

    def _closed_form_lr(self):
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, self.last_epoch)


class ExponentialLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` at every step.

    .. math::

        \eta_t = \eta_{t-1}\,\gamma \quad (t \ge 1)
        \qquad\text{i.e.}\qquad \eta_t = \eta_{\text{base}}\,\gamma^{t}

    Recursive and chainable like :class:`StepLR`.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    gamma : float
        Multiplicative factor, > 0.

    Notes
    -----
    **Step unit:** Epochs, typically (PyTorch's docs say "every epoch"); per batch with a
    ``gamma`` closer to 1.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.ExponentialLR(opt, gamma=0.5)
    >>> rates = []
    >>> for _ in range(3):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.05, 0.025, 0.0125]
    """

    _hyper = ("gamma",)

    def __init__(self, optimizer, gamma):
        self.gamma = check_number(gamma, "gamma", low=0, low_inclusive=False)
        super().__init__(optimizer)

    def _compute_lr(self):
        lr = self._current_lr()
        return lr if self._is_initial else lr * self.gamma

    def _closed_form_lr(self):
        return self.base_lr * self.gamma ** self.last_epoch


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from ``base_lr`` down to ``eta_min`` over ``T_max`` steps.

    .. math::

        \eta_t = \eta_{\min} + \frac{\eta_{\text{base}} - \eta_{\min}}{2}
            \left(1 + \cos\frac{\pi t}{T_{\max}}\right)

    This is PyTorch's closed form. PyTorch computes the same values by a
    recursion; the two agree to rounding error (about 1e-15 relative).

    Past ``T_max`` the formula is simply continued, as in PyTorch: the rate
    climbs back to ``base_lr`` at ``2 * T_max`` and keeps oscillating with
    period ``2 * T_max``. It is not clamped at ``eta_min``; to hold
    ``eta_min`` afterwards, stop stepping, or put a constant schedule after
    it in a ``SequentialLR``. For restarts use
    :class:`CosineAnnealingWarmRestarts`.

    Standing alone it sets the rate from ``base_lr`` and ``last_epoch``
    only, overriding outside changes to ``optimizer.lr``. Inside a
    :class:`ChainedScheduler` it uses PyTorch's recursive update instead,

    .. math::

        \eta_t = \eta_{\min} + (\eta_{t-1} - \eta_{\min})\,
            \frac{1 + \cos(\pi t / T_{\max})}{1 + \cos(\pi (t-1) / T_{\max})}

    (with PyTorch's additive special case where the denominator vanishes),
    so that chaining composes exactly as in PyTorch.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    T_max : int
        Half-period in steps, >= 1: the rate reaches ``eta_min`` at step
        ``T_max``.
    eta_min : float
        Lowest rate, >= 0. Default 0.

    Notes
    -----
    **Step unit:** Either: epochs (``T_max`` = number of epochs) or batches (``T_max`` =
    total number of optimizer steps, the usual choice after a warmup).

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.CosineAnnealingLR(opt, T_max=4)
    >>> rates = []
    >>> for _ in range(4):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.085355, 0.05, 0.014645, 0.0]
    """

    _hyper = ("T_max", "eta_min")
    _chained = False

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = check_number(T_max, "T_max", low=1, integer=True)
        self.eta_min = check_number(eta_min, "eta_min", low=0)
        super().__init__(optimizer)

    def _compute_lr(self):
        if not self._chained:
            return self._closed_form_lr()
        # PyTorch's recursion (CosineAnnealingLR.get_lr), used inside a chain.
        lr, t, T = self._current_lr(), self.last_epoch, self.T_max
        if self._is_initial:
            return lr
        if (t - 1 - T) % (2 * T) == 0:
            return lr + (self.base_lr - self.eta_min) * (1 - math.cos(math.pi / T)) / 2
        return ((1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (lr - self.eta_min) + self.eta_min)

    def _closed_form_lr(self):
        return _cosine(self.base_lr, self.eta_min, self.last_epoch, self.T_max)


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR).

    .. math::

        \eta_t = \eta_{\min} + \frac{\eta_{\text{base}} - \eta_{\min}}{2}
            \left(1 + \cos\frac{\pi T_{\text{cur}}}{T_i}\right)

    where :math:`T_{\text{cur}}` counts steps since the last restart and
    :math:`T_i` is the current cycle length: :math:`T_0` at first, then
    multiplied by ``T_mult`` at every restart. A restart happens when
    :math:`T_{\text{cur}}` reaches :math:`T_i` (the rate jumps back to
    ``base_lr``), so the rate never quite reaches ``eta_min``, as in PyTorch.

    The rate is set from ``base_lr`` (PyTorch's formula is not recursive), so
    inside a ``ChainedScheduler`` it overrides the schedulers before it, as in
    PyTorch.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    T_0 : int
        Length of the first cycle in steps, >= 1.
    T_mult : int
        Factor by which the cycle length grows after each restart, >= 1.
        Default 1.
    eta_min : float
        Lowest rate, >= 0. Default 0.

    Notes
    -----
    **Step unit:** Either. PyTorch's per-batch idiom ``step(epoch + i / iters)`` is the
    same as counting ``T_0`` in batches here (``T_0 = epochs_per_cycle *
    iters``) and calling ``step()`` after every batch.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.CosineAnnealingWarmRestarts(opt, T_0=2)
    >>> rates = []
    >>> for _ in range(5):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.05, 0.1, 0.05, 0.1, 0.05]
    """

    _hyper = ("T_0", "T_mult", "eta_min")
    _extra_state = ("T_i", "T_cur")

    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0):
        self.T_0 = check_number(T_0, "T_0", low=1, integer=True)
        self.T_mult = check_number(T_mult, "T_mult", low=1, integer=True)
        self.eta_min = check_number(eta_min, "eta_min", low=0)
        self.T_i = self.T_0
        self.T_cur = -1
        super().__init__(optimizer)

    def step(self):
        """Advance one step (restarting when a cycle ends) and write ``optimizer.lr``."""
        if self.last_epoch < 0:
            self.T_i, self.T_cur = self.T_0, 0
        else:
            self.T_cur += 1
            if self.T_cur >= self.T_i:
                self.T_cur -= self.T_i
                self.T_i *= self.T_mult
        self.last_epoch += 1
        self._set_lr(self._compute_lr())

    def _update_lr(self, epoch):
        # Only ever called with epoch 0 (SequentialLR milestone): a fresh cycle.
        self.last_epoch = epoch
        self.T_i, self.T_cur = self.T_0, 0
        self._set_lr(self._compute_lr())

    def _compute_lr(self):
        return _cosine(self.base_lr, self.eta_min, self.T_cur, self.T_i)


class LinearLR(LRScheduler):
    r"""Scale the learning rate by a factor moving linearly from ``start_factor``
    to ``end_factor`` over ``total_iters`` steps: the linear warmup.

    .. math::

        \eta_t = \eta_{\text{base}} \left(f_s + (f_e - f_s)
            \frac{\min(t, T)}{T}\right)

    with :math:`f_s` = ``start_factor``, :math:`f_e` = ``end_factor``,
    :math:`T` = ``total_iters``; after :math:`T` steps the rate stays at
    :math:`f_e\,\eta_{\text{base}}`. As in PyTorch it is computed
    recursively, :math:`\eta_0 = f_s \eta`, then for :math:`1 \le t \le T`

    .. math::

        \eta_t = \eta_{t-1}\left(1 + \frac{f_e - f_s}
            {T f_s + (t - 1)(f_e - f_s)}\right),

    which multiplies the current ``optimizer.lr`` and so composes in a
    ``ChainedScheduler``. The recursion is why ``start_factor`` must be
    > 0 (PyTorch's rule); for a warmup from zero use :class:`LinearWarmup`.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    start_factor : float
        Factor at step 0, in (0, 1]. Default 1/3.
    end_factor : float
        Factor from step ``total_iters`` on, in [0, 1]. Default 1.
    total_iters : int
        Number of steps of the ramp, >= 1. Default 5.

    Notes
    -----
    **Step unit:** Steps (batches), as a warmup usually is; epochs work the same way.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.LinearLR(opt, start_factor=0.25, total_iters=3)
    >>> round(opt.lr, 6)              # set at construction
    0.025
    >>> rates = []
    >>> for _ in range(4):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.05, 0.075, 0.1, 0.1]
    """

    _hyper = ("start_factor", "end_factor", "total_iters")

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        self.start_factor = check_number(start_factor, "start_factor", low=0, high=1,
                                         low_inclusive=False)
        self.end_factor = check_number(end_factor, "end_factor", low=0, high=1)
        self.total_iters = check_number(total_iters, "total_iters", low=1, integer=True)
        super().__init__(optimizer)

    def _compute_lr(self):
        lr = self._current_lr()
        t, s, e = self.last_epoch, self.start_factor, self.end_factor
        if t == 0:
            return lr * s
        if t > self.total_iters:
            return lr
        return lr * (1.0 + (e - s) / (self.total_iters * s + (t - 1) * (e - s)))

    def _closed_form_lr(self):
        s, e = self.start_factor, self.end_factor
        return self.base_lr * (
            s + (e - s) * min(self.total_iters, self.last_epoch) / self.total_iters)


class LambdaLR(LRScheduler):
    r"""Learning rate = ``base_lr`` times a function of the step count.

    .. math::

        \eta_t = \eta_{\text{base}}\,\lambda(t)

    Not recursive: inside a ``ChainedScheduler`` it overrides the schedulers
    before it, as in PyTorch.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    lr_lambda : callable
        ``lr_lambda(t: int) -> float``, the factor at step ``t`` (t = 0 at
        construction). It must return a finite number >= 0.

    Notes
    -----
    ``state_dict()`` does not contain the function (PyTorch saves only the
    ``__dict__`` of callable objects): build the scheduler with the same
    function before ``load_state_dict``.

    **Step unit:** Whatever ``lr_lambda`` expects: steps or epochs.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.LambdaLR(opt, lambda t: 1 / (1 + t))
    >>> rates = []
    >>> for _ in range(3):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.05, 0.033333, 0.025]
    """

    def __init__(self, optimizer, lr_lambda):
        if not callable(lr_lambda):
            raise TypeError(f"lr_lambda must be callable, got {type(lr_lambda).__name__}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def _compute_lr(self):
        factor = check_number(self.lr_lambda(self.last_epoch),
                              f"the value of lr_lambda({self.last_epoch})", low=0.0)
        return self.base_lr * factor


class LinearWarmup(LambdaLR):
    r"""Linear warmup from ``start_factor * base_lr`` to ``base_lr`` in
    ``warmup_steps`` steps, then constant. Zero start allowed.

    .. math::

        \eta_t = \eta_{\text{base}} \left(f_s + (1 - f_s)
            \frac{\min(t, W)}{W}\right)

    A thin convenience: exactly PyTorch's
    ``LambdaLR(opt, lambda t: f_s + (1 - f_s) * min(t, W) / W)``, and (up to
    rounding) ``LinearLR(opt, start_factor=f_s, end_factor=1.0,
    total_iters=W)`` whenever :math:`f_s > 0`. Unlike ``LinearLR`` it allows
    the common start from zero (the default) because it is computed in closed
    form from ``base_lr``; for the same reason, in a ``ChainedScheduler`` it
    overrides the schedulers before it (use ``LinearLR`` there, or
    ``SequentialLR``).

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    warmup_steps : int
        Length of the warmup :math:`W`, >= 1.
    start_factor : float
        :math:`f_s`, factor at step 0, in [0, 1]. Default 0.

    Notes
    -----
    **Step unit:** Steps (batches).

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.LinearWarmup(opt, warmup_steps=4)
    >>> opt.lr
    0.0
    >>> rates = []
    >>> for _ in range(5):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.025, 0.05, 0.075, 0.1, 0.1]
    """

    _hyper = ("warmup_steps", "start_factor")

    def __init__(self, optimizer, warmup_steps, start_factor=0.0):
        self.warmup_steps = check_number(warmup_steps, "warmup_steps", low=1, integer=True)
        self.start_factor = check_number(start_factor, "start_factor", low=0, high=1)
        super().__init__(optimizer, self._warmup_factor)

    def _warmup_factor(self, t):
        s, w = self.start_factor, self.warmup_steps
        return s + (1 - s) * min(t, w) / w


class ConstantLR(LRScheduler):
    r"""Scale the learning rate by a constant ``factor`` for the first
    ``total_iters`` steps, then restore it.

    .. math::

        \eta_t = \eta_{\text{base}} \cdot
            \begin{cases} f & t < T \\ 1 & t \ge T \end{cases}

    with :math:`f` = ``factor`` and :math:`T` = ``total_iters``. As in
    PyTorch it is computed recursively (step 0 multiplies the current rate
    by :math:`f`, step :math:`T` divides it by :math:`f`), so it composes in
    a ``ChainedScheduler``.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    factor : float
        In (0, 1]. Default 1/3. (PyTorch also accepts 0, and then divides by
        zero at step ``total_iters``.)
    total_iters : int
        Steps at the reduced rate, >= 1. Default 5.

    Notes
    -----
    **Step unit:** Either; a short constant warmup is usually counted in batches.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.ConstantLR(opt, factor=0.5, total_iters=2)
    >>> round(opt.lr, 6)              # set at construction
    0.05
    >>> rates = []
    >>> for _ in range(3):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.05, 0.1, 0.1]
    """

    _hyper = ("factor", "total_iters")

    def __init__(self, optimizer, factor=1.0 / 3, total_iters=5):
        self.factor = check_number(factor, "factor", low=0, high=1, low_inclusive=False)
        self.total_iters = check_number(total_iters, "total_iters", low=1, integer=True)
        super().__init__(optimizer)

    def _compute_lr(self):
        lr = self._current_lr()
        if self.last_epoch == 0:
            return lr * self.factor
        if self.last_epoch != self.total_iters:
            return lr
        return lr * (1.0 / self.factor)

    def _closed_form_lr(self):
        return self.base_lr * (self.factor + (self.last_epoch >= self.total_iters)
                               * (1 - self.factor))


class PolynomialLR(LRScheduler):
    r"""Decay the learning rate to zero along a polynomial over ``total_iters`` steps.

    .. math::

        \eta_t = \eta_{\text{base}} \left(1 - \frac{\min(t, T)}{T}\right)^{p}

    with :math:`T` = ``total_iters`` and :math:`p` = ``power``: linear
    decay for :math:`p = 1`, and 0 from step :math:`T` on. As in PyTorch it
    is computed recursively,

    .. math::

        \eta_t = \eta_{t-1}
            \left(\frac{1 - t / T}{1 - (t - 1) / T}\right)^{p}
            \quad (1 \le t \le T),

    so it composes in a ``ChainedScheduler``.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    total_iters : int
        Steps until the rate reaches 0, >= 1. Default 5.
    power : float
        Exponent of the polynomial, >= 0. Default 1.

    Notes
    -----
    **Step unit:** Either; with ``total_iters`` the total number of optimizer steps it is
    the "poly" schedule of segmentation models.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.PolynomialLR(opt, total_iters=4, power=2.0)
    >>> rates = []
    >>> for _ in range(5):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.05625, 0.025, 0.00625, 0.0, 0.0]
    """

    _hyper = ("total_iters", "power")

    def __init__(self, optimizer, total_iters=5, power=1.0):
        self.total_iters = check_number(total_iters, "total_iters", low=1, integer=True)
        self.power = check_number(power, "power", low=0)
        super().__init__(optimizer)

    def _compute_lr(self):
        lr = self._current_lr()
        t, total = self.last_epoch, self.total_iters
        if self._is_initial or t > total:
            return lr
        return lr * ((1.0 - t / total) / (1.0 - (t - 1) / total)) ** self.power

    def _closed_form_lr(self):
        return self.base_lr * (1.0 - min(self.total_iters, self.last_epoch)
                               / self.total_iters) ** self.power


class MultiplicativeLR(LRScheduler):
    r"""Multiply the learning rate by a function of the step count, every step.

    .. math::

        \eta_t = \eta_{t-1}\,\lambda(t) \quad (t \ge 1)

    Recursive (it multiplies the current ``optimizer.lr``), so it composes
    in a ``ChainedScheduler``, and as in PyTorch it has no closed form: in a
    ``SequentialLR`` it takes over from the rate the scheduler before it
    left, multiplied by :math:`\lambda(0)`.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    lr_lambda : callable
        ``lr_lambda(t: int) -> float``, the factor applied at step ``t``. It
        must return a finite number >= 0.

    Notes
    -----
    ``state_dict()`` does not contain the function: build the scheduler
    with the same function before ``load_state_dict``, as for ``LambdaLR``.

    **Step unit:** Whatever ``lr_lambda`` expects: steps or epochs.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.MultiplicativeLR(opt, lambda t: 0.5 if t % 2 else 1.0)
    >>> rates = []
    >>> for _ in range(4):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.05, 0.05, 0.025, 0.025]
    """

    def __init__(self, optimizer, lr_lambda):
        if not callable(lr_lambda):
            raise TypeError(f"lr_lambda must be callable, got {type(lr_lambda).__name__}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def _factor(self):
        return check_number(self.lr_lambda(self.last_epoch),
                            f"the value of lr_lambda({self.last_epoch})", low=0.0)

    def _compute_lr(self):
        lr = self._current_lr()
        return lr if self._is_initial else lr * self._factor()

    def _closed_form_lr(self):
        # PyTorch's SequentialLR restarts a scheduler without a closed form
        # with get_lr() at step 0, outside the initial step.
        return self._current_lr() * self._factor()


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy: warm up to ``max_lr``, then anneal far below the start.

    With :math:`\eta_0 = \eta_{\max} / d` (``div_factor``),
    :math:`\eta_{\text{end}} = \eta_0 / d_f` (``final_div_factor``),
    :math:`N` = ``total_steps`` and :math:`p` = ``pct_start``, the phases end
    at step :math:`e_1 = pN - 1` and :math:`e_2 = N - 1` (two phases), or
    :math:`e_1 = pN - 1`, :math:`e_2 = 2pN - 2`, :math:`e_3 = N - 1`
    (``three_phase``). Within a phase from step :math:`a` to :math:`b` going
    from rate :math:`u` to :math:`v`, with :math:`q = (t - a) / (b - a)`,

    .. math::

        \eta_t = v + \frac{u - v}{2}\,(1 + \cos \pi q)
        \quad\text{(cos)}, \qquad
        \eta_t = u + (v - u)\,q \quad\text{(linear)}.

    Two phases go :math:`\eta_0 \to \eta_{\max} \to \eta_{\text{end}}`;
    three go :math:`\eta_0 \to \eta_{\max} \to \eta_0 \to \eta_{\text{end}}`.
    The optimizer's own ``lr`` is ignored (as in PyTorch), and ``base_lr`` is
    set to :math:`\eta_0`. Stepping more than ``total_steps`` times raises
    ``ValueError``, as in PyTorch. The ``total_steps``-th ``step()``, after
    the last step of the cycle, extends its last phase as PyTorch does;
    where that goes below zero (linear annealing), a cdl optimizer is given
    0 instead, since it refuses negative rates.

    As in PyTorch, momentum is cycled inversely to the rate by default
    (``cycle_momentum=True``): the optimizer's ``momentum`` (SGD, RMSprop),
    the first item of its ``betas`` (the Adam family) or its ``beta1`` is
    set between ``max_momentum`` (at the start and the end) and
    ``base_momentum`` (at the peak) with the same annealing. As in PyTorch
    this switches momentum on for an ``SGD`` built with ``momentum=0``.
    **An optimizer without a momentum** (``Adagrad``, or an object with only
    ``lr``) has its rate scheduled alone, where PyTorch raises
    ``ValueError``; ``cycles_momentum`` says which applies.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    max_lr : float
        Peak rate, > 0.
    total_steps : int, optional
        Length of the cycle in steps, >= 1. If omitted,
        ``epochs * steps_per_epoch``. Takes precedence over them if given.
    epochs, steps_per_epoch : int, optional
        Used (both required) when ``total_steps`` is omitted.
    pct_start : float
        Fraction of the cycle spent increasing the rate, in [0, 1]. Default 0.3.
    anneal_strategy : {"cos", "linear"}
        Default "cos".
    div_factor : float
        :math:`\eta_0 = \eta_{\max} / d`, > 0. Default 25.
    final_div_factor : float
        :math:`\eta_{\text{end}} = \eta_0 / d_f`, > 0. Default 1e4.
    three_phase : bool
        Default False (the fastai two-phase schedule).
    cycle_momentum : bool
        Default True, as PyTorch; see above for optimizers without a momentum.
    base_momentum, max_momentum : float
        Momentum at the peak and at the ends of the cycle, in [0, 1).
        Defaults 0.85 and 0.95.

    Notes
    -----
    Where a phase has zero length (e.g. ``pct_start * total_steps == 1``),
    PyTorch divides by zero; here the phase is taken as already complete.

    **Step unit:** Steps (batches): ``total_steps = epochs * steps_per_epoch``, one
    ``step()`` after every batch.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.OneCycleLR(opt, max_lr=1.0, total_steps=6)
    >>> round(opt.lr, 6)              # max_lr / div_factor
    0.04
    >>> rates = []
    >>> for _ in range(5):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.994415, 0.811746, 0.462637, 0.133478, 4e-06]
    """

    _hyper = ("max_lr", "total_steps", "pct_start", "anneal_strategy", "div_factor",
              "final_div_factor", "three_phase", "cycle_momentum", "base_momentum",
              "max_momentum")

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None,
                 steps_per_epoch=None, pct_start=0.3, anneal_strategy="cos",
                 div_factor=25.0, final_div_factor=1e4, three_phase=False,
                 cycle_momentum=True, base_momentum=0.85, max_momentum=0.95):
        if total_steps is not None:
            self.total_steps = check_number(total_steps, "total_steps", low=1, integer=True)
        elif epochs is not None and steps_per_epoch is not None:
            epochs = check_number(epochs, "epochs", low=1, integer=True)
            steps_per_epoch = check_number(steps_per_epoch, "steps_per_epoch", low=1,
                                           integer=True)
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError(
                "OneCycleLR needs total_steps, or both epochs and steps_per_epoch")
        self.max_lr = check_number(max_lr, "max_lr", low=0, low_inclusive=False)
        self.pct_start = check_number(pct_start, "pct_start", low=0, high=1)
        self.anneal_strategy = _check_choice(anneal_strategy, ("cos", "linear"),
                                             "anneal_strategy")
        self.div_factor = check_number(div_factor, "div_factor", low=0, low_inclusive=False)
        self.final_div_factor = check_number(final_div_factor, "final_div_factor", low=0,
                                             low_inclusive=False)
        self.three_phase = check_bool(three_phase, "three_phase")
        self.cycle_momentum = check_bool(cycle_momentum, "cycle_momentum")
        self.base_momentum = check_number(base_momentum, "base_momentum", low=0, high=1,
                                          high_inclusive=False)
        self.max_momentum = check_number(max_momentum, "max_momentum", low=0, high=1,
                                         high_inclusive=False)
        self._momentum_name = _momentum_attribute(optimizer) if self.cycle_momentum else None
        _read_lr(optimizer)  # validate before changing anything
        super().__init__(optimizer)
        self.base_lr = self.initial_lr

    @property
    def cycles_momentum(self):
        """Whether steps set the optimizer's momentum: ``cycle_momentum`` and
        the optimizer has one (``momentum``, ``betas`` or ``beta1``)."""
        return self._momentum_name is not None

    @property
    def initial_lr(self):
        """Rate at step 0: ``max_lr / div_factor``."""
        return self.max_lr / self.div_factor

    @property
    def min_lr(self):
        """Rate at the last step: ``initial_lr / final_div_factor``."""
        return self.initial_lr / self.final_div_factor

    def _phases(self):
        """(end_step, start_lr, end_lr, start_momentum, end_momentum) per phase."""
        n, p = self.total_steps, self.pct_start
        lo, hi = self.base_momentum, self.max_momentum
        if self.three_phase:
            return [
                (float(p * n) - 1, self.initial_lr, self.max_lr, hi, lo),
                (float(2 * p * n) - 2, self.max_lr, self.initial_lr, lo, hi),
                (n - 1, self.initial_lr, self.min_lr, hi, hi),
            ]
        return [
            (float(p * n) - 1, self.initial_lr, self.max_lr, hi, lo),
            (n - 1, self.max_lr, self.min_lr, lo, hi),
        ]

    def _anneal(self, start, end, pct):
        # PyTorch's OneCycleLR._annealing_cos / _annealing_linear, verbatim.
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _at(self, step_num):
        """(lr, momentum) at ``step_num``."""
        phases = self._phases()
        start_step = 0.0
        for i, (end_step, lr0, lr1, m0, m1) in enumerate(phases):
            if step_num <= end_step or i == len(phases) - 1:
                span = end_step - start_step
                pct = (step_num - start_step) / span if span != 0 else 1.0
                return self._anneal(lr0, lr1, pct), self._anneal(m0, m1, pct)
            start_step = end_step
        raise AssertionError("unreachable")

    def step(self):
        """Advance one step (at most ``total_steps`` times) and write ``optimizer.lr``."""
        if self.last_epoch + 1 > self.total_steps:
            raise ValueError(
                f"OneCycleLR stepped past total_steps ({self.total_steps}): this is call "
                f"{self.last_epoch + 1} of step(). Build it with a larger total_steps "
                "(or epochs and steps_per_epoch) to train longer")
        super().step()

    def _compute_lr(self):
        lr, momentum = self._at(self.last_epoch)
        if self.cycles_momentum:
            _write_momentum(self.optimizer, self._momentum_name, momentum)
        if self.last_epoch == self.total_steps and lr < 0 \
                and isinstance(self.optimizer, Optimizer):
            # One step past the cycle, which PyTorch allows (the rate set after
            # the last batch), its last phase extended: with linear annealing
            # that goes below zero, which cdl's optimizers refuse; 0 instead.
            lr = 0.0
        return lr

    def load_state_dict(self, state_dict):
        """Restore a state from ``state_dict()``; the rate and (when cycled) the
        momentum of that step are written into the optimizer."""
        super().load_state_dict(state_dict)
        self._momentum_name = (_momentum_attribute(self.optimizer) if self.cycle_momentum
                               else None)
        if self.cycles_momentum:
            _write_momentum(self.optimizer, self._momentum_name, self._at(self.last_epoch)[1])


class CyclicLR(LRScheduler):
    r"""Cycle the learning rate between two bounds (Smith's cyclical learning rates).

    A cycle is ``step_size_up`` steps from ``base_lr`` up to ``max_lr`` and
    ``step_size_down`` steps back down. With :math:`S = ` ``step_size_up +
    step_size_down``, :math:`r = ` ``step_size_up`` / :math:`S`, the cycle
    :math:`c = \lfloor 1 + t / S \rfloor` and the position in it
    :math:`x = 1 + t / S - c`,

    .. math::

        h = \begin{cases} x / r & x \le r \\ (x - 1) / (r - 1) & x > r \end{cases},
        \qquad
        \eta_t = \eta_{\text{base}} + (\eta_{\max} - \eta_{\text{base}})\,h\,
            \sigma(c \text{ or } t),

    where the scale :math:`\sigma` is 1 (``"triangular"``),
    :math:`2^{1-c}` (``"triangular2"``, halving the height every cycle) or
    :math:`\gamma^{t}` (``"exp_range"``), or ``scale_fn`` of the cycle or of
    the step count (``scale_mode``). These are PyTorch's formulas, and the
    rate at construction is ``base_lr``, which replaces the optimizer's.
    Not recursive: in a ``ChainedScheduler`` it overrides the schedulers
    before it, as in PyTorch.

    With ``cycle_momentum=True`` (PyTorch's default) the optimizer's
    momentum moves the other way, between ``max_momentum`` (at ``base_lr``)
    and ``base_momentum`` (at ``max_lr``): ``momentum`` for SGD and RMSprop,
    the first of ``betas`` for the Adam family, or ``beta1``. It is set to
    ``max_momentum`` at construction, which switches momentum on for an
    ``SGD`` built without it, as in PyTorch. An optimizer without a
    momentum (``Adagrad``) has its rate cycled alone, where PyTorch raises
    ``ValueError``; ``cycles_momentum`` says which applies.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    base_lr : float
        Lower bound of the rate, >= 0.
    max_lr : float
        Upper bound of the rate, >= 0. (The bound the rate reaches at the
        top of the first cycle; the height scales it afterwards.)
    step_size_up : int
        Steps of the rising half, >= 1. Default 2000.
    step_size_down : int, optional
        Steps of the falling half, >= 1. Default: ``step_size_up``.
    mode : {"triangular", "triangular2", "exp_range"}
        The scale :math:`\sigma`, ignored when ``scale_fn`` is given.
        Default "triangular".
    gamma : float
        Base of ``"exp_range"``'s :math:`\gamma^t`, > 0. Default 1.
    scale_fn : callable, optional
        ``scale_fn(x) -> float``, a custom :math:`\sigma`, replacing ``mode``.
    scale_mode : {"cycle", "iterations"}
        What ``scale_fn`` is given: the cycle number or the step count.
        Default "cycle". The built-in modes set it themselves (``"cycle"``
        for the triangular ones, ``"iterations"`` for ``"exp_range"``).
    cycle_momentum : bool
        Default True; see above.
    base_momentum, max_momentum : float
        Momentum at ``max_lr`` and at ``base_lr``, in [0, 1). Defaults 0.8
        and 0.9.

    Notes
    -----
    ``state_dict()`` does not contain ``scale_fn``: build the scheduler
    with the same function before ``load_state_dict``.

    **Step unit:** Steps (batches): Smith suggests ``step_size_up`` of 2 to 10 epochs'
    worth of batches.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1, momentum=0.9)
    >>> sched = schedules.CyclicLR(opt, base_lr=0.01, max_lr=0.05, step_size_up=2)
    >>> rates = []
    >>> for _ in range(5):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.03, 0.05, 0.03, 0.01, 0.03]
    >>> round(opt.momentum, 6)         # inverse to the rate
    0.85
    """

    _hyper = ("cycle_base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma",
              "scale_mode", "cycle_momentum", "base_momentum", "max_momentum")
    _MODES = ("triangular", "triangular2", "exp_range")

    def __init__(self, optimizer, base_lr, max_lr, step_size_up=2000, step_size_down=None,
                 mode="triangular", gamma=1.0, scale_fn=None, scale_mode="cycle",
                 cycle_momentum=True, base_momentum=0.8, max_momentum=0.9):
        self.cycle_base_lr = check_number(base_lr, "base_lr", low=0)
        self.max_lr = check_number(max_lr, "max_lr", low=0)
        self.step_size_up = check_number(step_size_up, "step_size_up", low=1, integer=True)
        self.step_size_down = self.step_size_up if step_size_down is None else check_number(
            step_size_down, "step_size_down", low=1, integer=True)
        if scale_fn is not None and not callable(scale_fn):
            raise TypeError(f"scale_fn must be callable, got {type(scale_fn).__name__}")
        self.scale_fn = scale_fn
        if scale_fn is None:
            self.mode = _check_choice(mode, self._MODES, "mode")
            self.scale_mode = "iterations" if self.mode == "exp_range" else "cycle"
        else:
            self.mode = mode
            self.scale_mode = _check_choice(scale_mode, ("cycle", "iterations"), "scale_mode")
        self.gamma = check_number(gamma, "gamma", low=0, low_inclusive=False)
        self.cycle_momentum = check_bool(cycle_momentum, "cycle_momentum")
        self.base_momentum = check_number(base_momentum, "base_momentum", low=0, high=1,
                                          high_inclusive=False)
        self.max_momentum = check_number(max_momentum, "max_momentum", low=0, high=1,
                                         high_inclusive=False)
        _read_lr(optimizer)  # validate before changing anything
        self._momentum_name = _momentum_attribute(optimizer) if self.cycle_momentum else None
        # As PyTorch: the cycle starts from base_lr, whatever the optimizer had.
        optimizer.lr = self.cycle_base_lr
        super().__init__(optimizer)

    @property
    def cycles_momentum(self):
        """Whether steps set the optimizer's momentum: ``cycle_momentum`` and
        the optimizer has one (``momentum``, ``betas`` or ``beta1``)."""
        return self._momentum_name is not None

    def _scale(self, x):
        if self.scale_fn is not None:
            return check_number(self.scale_fn(x), f"the value of scale_fn({x})")
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma ** x

    def _at(self, t):
        """(lr, momentum) at step ``t``, with PyTorch's order of operations."""
        total = float(self.step_size_up + self.step_size_down)
        ratio = self.step_size_up / total
        cycle = math.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        height = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        scale = self._scale(cycle if self.scale_mode == "cycle" else t)
        lr = self.cycle_base_lr + (self.max_lr - self.cycle_base_lr) * height * scale
        momentum = self.max_momentum - (self.max_momentum - self.base_momentum) * height * scale
        return lr, momentum

    def _compute_lr(self):
        lr, momentum = self._at(self.last_epoch)
        if self.cycles_momentum:
            _write_momentum(self.optimizer, self._momentum_name, momentum)
        return lr

    def load_state_dict(self, state_dict):
        """Restore a state from ``state_dict()``; the rate and (when cycled) the
        momentum of that step are written into the optimizer."""
        super().load_state_dict(state_dict)
        self._momentum_name = (_momentum_attribute(self.optimizer) if self.cycle_momentum
                               else None)
        if self.cycles_momentum:
            _write_momentum(self.optimizer, self._momentum_name, self._at(self.last_epoch)[1])


class ReduceLROnPlateau(LRScheduler):
    r"""Multiply the learning rate by ``factor`` when a metric stops improving.

    A value :math:`m` improves on the best so far, :math:`b`, when

    ==========  ==========================  ==========================
    mode        threshold_mode="rel"        threshold_mode="abs"
    ==========  ==========================  ==========================
    "min"       :math:`m < b\,(1 - \tau)`   :math:`m < b - \tau`
    "max"       :math:`m > b\,(1 + \tau)`   :math:`m > b + \tau`
    ==========  ==========================  ==========================

    (:math:`\tau` = ``threshold``). Each ``step(metric)`` either records an
    improvement (resetting the count of bad steps) or counts a bad step.
    During the ``cooldown`` steps after a reduction bad steps are not
    counted. When the count exceeds ``patience``,

    .. math::

        \eta \leftarrow \max(\eta \cdot \text{factor},\ \eta_{\min}),

    applied only if it lowers :math:`\eta` by more than ``eps``; then the
    count restarts and the cooldown begins. The first value is always an
    improvement (:math:`b` starts at :math:`\pm\infty`). NaN is never an
    improvement. The rate is read from and written to ``optimizer.lr``, so
    outside changes are respected. Construction does not change the rate.

    Parameters
    ----------
    optimizer : object
        Has a float attribute ``lr``.
    mode : {"min", "max"}
        Whether the metric should decrease (a loss) or increase (an
        accuracy). Default "min".
    factor : float
        In (0, 1). Default 0.1.
    patience : int
        Number of bad steps tolerated before reducing, >= 0. Default 10.
    threshold : float
        :math:`\tau` >= 0. Default 1e-4.
    threshold_mode : {"rel", "abs"}
        Default "rel".
    cooldown : int
        Steps to wait after a reduction before counting bad steps again,
        >= 0. Default 0.
    min_lr : float
        Lower bound on the rate, >= 0. Default 0.
    eps : float
        Smallest change of the rate worth making, >= 0. Default 1e-8.

    Notes
    -----
    **Step unit:** Epochs, typically: call ``step(validation_loss)`` once per evaluation;
    ``patience`` and ``cooldown`` are counted in those calls.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    >>> for val_loss in [1.0, 0.9, 0.9, 0.9, 0.9]:
    ...     sched.step(val_loss)
    >>> opt.lr
    0.05
    """

    _hyper = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown",
              "min_lr", "eps")
    _extra_state = ("best", "num_bad_epochs", "cooldown_counter")

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        self.mode = _check_choice(mode, ("min", "max"), "mode")
        self.factor = check_number(factor, "factor", low=0, high=1, low_inclusive=False,
                                   high_inclusive=False)
        self.patience = check_number(patience, "patience", low=0, integer=True)
        self.threshold = check_number(threshold, "threshold", low=0)
        self.threshold_mode = _check_choice(threshold_mode, ("rel", "abs"), "threshold_mode")
        self.cooldown = check_number(cooldown, "cooldown", low=0, integer=True)
        self.min_lr = check_number(min_lr, "min_lr", low=0)
        self.eps = check_number(eps, "eps", low=0)
        self.base_lr = _read_lr(optimizer)
        self.optimizer = optimizer
        self.last_epoch = 0
        self._created = next(_construction_counter)
        self._last_lr = self.base_lr
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    @property
    def in_cooldown(self):
        """True while bad steps are being ignored after a reduction."""
        return self.cooldown_counter > 0

    def is_better(self, a, best):
        """Whether the value ``a`` improves on ``best`` under mode and threshold."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metric):
        """Record one value of the monitored metric; reduce the rate if it has plateaued."""
        if isinstance(metric, (str, bytes)):
            raise TypeError(f"metric must be a number, got {metric!r}")
        try:
            current = float(metric)
        except (TypeError, ValueError):
            raise TypeError(f"metric must be a number, got {metric!r}") from None
        self.last_epoch += 1

        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1

        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad steps during the cooldown are ignored

        if self.num_bad_epochs > self.patience:
            old_lr = float(self.optimizer.lr)
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                self.optimizer.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

        self._last_lr = float(self.optimizer.lr)


def _check_children(owner, schedulers, optimizer):
    """Validate the schedulers of a SequentialLR/ChainedScheduler; return them as a list."""
    name = owner.__name__
    if isinstance(schedulers, LRScheduler) or not isinstance(schedulers, (list, tuple)):
        raise TypeError(f"{name}: schedulers must be a list of schedulers, got {schedulers!r}")
    schedulers = list(schedulers)
    if not schedulers:
        raise ValueError(f"{name}: schedulers must hold at least one scheduler")
    if optimizer is None:
        optimizer = getattr(schedulers[0], "optimizer", None)
    for i, s in enumerate(schedulers):
        if isinstance(s, (SequentialLR, ChainedScheduler)):
            raise TypeError(
                f"{name}: schedulers[{i}] is a {type(s).__name__}; nesting is not "
                "supported, list its schedulers directly")
        if not isinstance(s, LRScheduler):
            raise TypeError(
                f"{name}: schedulers[{i}] must be a cdl.schedules scheduler, "
                f"got {type(s).__name__}")
        if isinstance(s, ReduceLROnPlateau):
            raise ValueError(
                f"{name}: schedulers[{i}] is a ReduceLROnPlateau, which needs a metric "
                "in step() and cannot be combined")
        if s.optimizer is not optimizer:
            raise ValueError(
                f"{name}: schedulers[{i}] ({type(s).__name__}) belongs to another optimizer")
    if len({id(s) for s in schedulers}) != len(schedulers):
        raise ValueError(f"{name}: the same scheduler appears more than once in schedulers")
    return schedulers, optimizer


class SequentialLR(LRScheduler):
    r"""Run schedulers one after another, switching at the milestones.

    With milestones :math:`m_1 < \dots < m_{k-1}` and schedulers
    :math:`S_0, \dots, S_{k-1}`, step :math:`t` is handled by :math:`S_i`
    with :math:`m_i \le t < m_{i+1}`. At step :math:`m_i` the scheduler
    :math:`S_i` starts afresh: its ``last_epoch`` is set to 0 and its rate
    to its closed form there (for most, ``base_lr``), and after that it is
    stepped normally. So the second scheduler's step :math:`j` is the
    overall step :math:`m_1 + j`. This is PyTorch's behaviour, e.g.
    ``SequentialLR(opt, [LinearLR(opt, 0.1, total_iters=5),
    CosineAnnealingLR(opt, T_max=95)], milestones=[5])`` warms up for 5
    steps and then anneals from ``base_lr``.

    At construction, as in PyTorch, the rate is reset to the base rate, the
    steps that the schedulers took when they were built are undone, and
    only :math:`S_0` takes its initial step. All schedulers are given the
    ``base_lr`` of the one built first (PyTorch's shared ``initial_lr``),
    since a scheduler built after, say, a ``LinearLR`` would otherwise take
    the warmup's reduced starting rate as its base.

    Parameters
    ----------
    optimizer : object
        The optimizer every scheduler was built on.
    schedulers : list of schedulers
        At least one; not ``ReduceLROnPlateau``, ``SequentialLR`` or
        ``ChainedScheduler``.
    milestones : list of int
        Strictly increasing ints >= 1, one fewer than the schedulers.

    Notes
    -----
    **Step unit:** The same unit as the schedulers it runs (milestones in that unit);
    for warmup + cosine, steps (batches).

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> warmup = schedules.LinearLR(opt, start_factor=0.5, total_iters=2)
    >>> decay = schedules.ExponentialLR(opt, gamma=0.5)
    >>> sched = schedules.SequentialLR(opt, [warmup, decay], milestones=[2])
    >>> rates = []
    >>> for _ in range(4):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.075, 0.1, 0.05, 0.025]
    """

    def __init__(self, optimizer, schedulers, milestones):
        _read_lr(optimizer)
        schedulers, _ = _check_children(SequentialLR, schedulers, optimizer)
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, (list, tuple)):
            raise TypeError(f"milestones must be a list of ints, got {milestones!r}")
        milestones = [check_number(m, "each of milestones", low=1, integer=True)
                      for m in milestones]
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"milestones must have one entry fewer than schedulers: got "
                f"{len(schedulers)} schedulers and {len(milestones)} milestones")
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {milestones}")
        self.optimizer = optimizer
        self._schedulers = schedulers
        self.milestones = milestones
        self._created = min(s._created for s in schedulers)
        self.base_lr = min(schedulers, key=lambda s: s._created).base_lr
        for s in schedulers:
            s.base_lr = self.base_lr
            s.last_epoch -= 1  # PyTorch's recursive_undo
        optimizer.lr = self.base_lr
        self.last_epoch = 0
        schedulers[0]._initial_step()
        self._last_lr = schedulers[0].get_last_lr()

    @property
    def schedulers(self):
        """The schedulers, in order."""
        return list(self._schedulers)

    def step(self):
        """Advance one step with the scheduler in charge, starting it at its milestone."""
        self.last_epoch += 1
        idx = bisect.bisect_right(self.milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self.milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self):
        """Own counters plus every scheduler's ``state_dict()`` under "schedulers"."""
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch,
                "last_lr": self._last_lr, "milestones": list(self.milestones),
                "schedulers": [s.state_dict() for s in self._schedulers]}

    def load_state_dict(self, state_dict):
        """Restore from ``state_dict()`` (the same kinds of schedulers, in order)."""
        _load_composite(self, state_dict, ("base_lr", "last_epoch", "last_lr",
                                           "milestones", "schedulers"))
        self.milestones = list(state_dict["milestones"])

    def __repr__(self):
        return (f"SequentialLR(schedulers={self._schedulers!r}, "
                f"milestones={self.milestones!r})")


class ChainedScheduler(LRScheduler):
    r"""Step several schedulers together: their effects multiply.

    Each ``step()`` calls every scheduler's ``step()`` in order. The
    recursive schedulers (``StepLR``, ``MultiStepLR``, ``ExponentialLR``,
    ``LinearLR``, and ``CosineAnnealingLR``, which switches to PyTorch's
    recursion when chained) multiply the current rate, so for them

    .. math::

        \eta_t = \eta_{\text{base}} \prod_j f_j(t)

    where :math:`f_j(t)` is scheduler :math:`j`'s own factor (with a
    nonzero ``eta_min`` the cosine step is affine rather than a pure
    factor, exactly as in PyTorch). ``LambdaLR``, ``LinearWarmup``,
    ``CosineAnnealingWarmRestarts`` and ``OneCycleLR`` set the rate from
    their base instead, overriding whatever came before them in the chain;
    that is PyTorch's behaviour too. All schedulers are given the
    ``base_lr`` of the one built first (PyTorch's shared ``initial_lr``).
    Construction takes the schedulers' initial steps again, in the order
    they were built, with that shared base rate, so that the rate before the
    first ``step()`` is PyTorch's: a ``LambdaLR`` built after a ``LinearLR``
    starts from ``base_lr``, not from the rate the ``LinearLR`` set. (This is
    skipped if a scheduler was already stepped or the rate was changed after
    they were built; then the rate is left as it is.)

    Within a ``step()`` each scheduler passes the rate it computes to the
    next, as in PyTorch, and only the final rate is written into the
    optimizer: an intermediate rate below zero that a later scheduler
    replaces is no error. If a scheduler raises, or the final rate is below
    zero, the schedulers and the optimizer's rate are restored to where they
    were before the ``step()``.

    Parameters
    ----------
    schedulers : list of schedulers
        At least one, all on the same optimizer; not ``ReduceLROnPlateau``,
        ``SequentialLR`` or ``ChainedScheduler``.
    optimizer : object, optional
        Defaults to that of ``schedulers[0]``; if given, must be it.

    Attributes
    ----------
    last_epoch : int
        Number of ``step()`` calls (PyTorch's ``ChainedScheduler`` has no
        counter of its own).

    Notes
    -----
    **Step unit:** The same unit as the schedulers it chains.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> sched = schedules.ChainedScheduler([schedules.ExponentialLR(opt, gamma=0.9),
    ...                                      schedules.StepLR(opt, step_size=2, gamma=0.5)])
    >>> rates = []
    >>> for _ in range(3):
    ...     sched.step()
    ...     rates.append(round(opt.lr, 6))
    >>> rates
    [0.09, 0.0405, 0.03645]
    """

    def __init__(self, schedulers, optimizer=None):
        schedulers, optimizer = _check_children(ChainedScheduler, schedulers, optimizer)
        self.optimizer = optimizer
        self._schedulers = schedulers
        self._created = min(s._created for s in schedulers)
        self.base_lr = min(schedulers, key=lambda s: s._created).base_lr
        for s in schedulers:
            s.base_lr = self.base_lr
            if isinstance(s, CosineAnnealingLR):
                s._chained = True
        self.last_epoch = 0
        self._pending_lr = None  # the rate passed between schedulers in a step
        self._redo_initial_steps()
        self._last_lr = _read_lr(optimizer)

    def _redo_initial_steps(self):
        """Take the initial steps again from the shared base rate (see the class)."""
        order = sorted(self._schedulers, key=lambda s: s._created)
        if any(s.last_epoch != 0 for s in order) or \
                float(self.optimizer.lr) != order[-1]._last_lr:
            return
        built = [s._last_lr for s in order]
        saved = [s.state_dict() for s in self._schedulers]
        before = float(self.optimizer.lr)
        try:
            for k, s in enumerate(order):
                if k == 0 or s._built_from != built[k - 1]:
                    # The first, or the rate was set from outside before s was built.
                    self._pending_lr = s._built_from
                s.last_epoch = -1
                self._run(s, s._initial_step)
            self._write(self._pending_lr, before)
        except BaseException:
            self._restore(saved, before)
            raise

    def _run(self, scheduler, method):
        """Call ``method`` of ``scheduler`` with the rate passed through this chain."""
        scheduler._chain = self
        try:
            method()
        finally:
            scheduler._chain = None

    def _write(self, lr, before):
        """Write the chain's final rate into the optimizer, or raise."""
        scale = max([self.base_lr, abs(before)] + [abs(s._last_lr) for s in self._schedulers])
        lr = _settle(lr, scale)
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(
                f"ChainedScheduler: the chained schedulers set the learning rate to {lr} "
                "(a rate must be finite and >= 0); the schedulers and the rate are left "
                "as they were before this step")
        self.optimizer.lr = lr

    def _restore(self, saved, before):
        for s, state in zip(self._schedulers, saved):
            self._run(s, lambda s=s, state=state: s.load_state_dict(state))
        self.optimizer.lr = before

    @property
    def schedulers(self):
        """The schedulers, in order."""
        return list(self._schedulers)

    def step(self):
        """Call every scheduler's ``step()`` in turn; write the final rate."""
        saved = [s.state_dict() for s in self._schedulers]
        before = float(self.optimizer.lr)
        self._pending_lr = before
        try:
            for s in self._schedulers:
                self._run(s, s.step)
            self._write(self._pending_lr, before)
        except BaseException:
            self._restore(saved, before)
            raise
        self.last_epoch += 1
        self._last_lr = float(self.optimizer.lr)

    def state_dict(self):
        """Own counters plus every scheduler's ``state_dict()`` under "schedulers"."""
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch,
                "last_lr": self._last_lr,
                "schedulers": [s.state_dict() for s in self._schedulers]}

    def load_state_dict(self, state_dict):
        """Restore from ``state_dict()`` (the same kinds of schedulers, in order)."""
        _load_composite(self, state_dict, ("base_lr", "last_epoch", "last_lr", "schedulers"))

    def __repr__(self):
        return f"ChainedScheduler(schedulers={self._schedulers!r})"


def _load_composite(owner, state_dict, keys):
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    if set(state_dict) != set(keys):
        raise ValueError(
            f"state_dict does not fit {type(owner).__name__}: expected keys "
            f"{sorted(keys)}, got {sorted(state_dict)}")
    children = state_dict["schedulers"]
    if not isinstance(children, (list, tuple)) or len(children) != len(owner._schedulers):
        raise ValueError(
            f"state_dict holds {len(children) if isinstance(children, (list, tuple)) else '?'} "
            f"scheduler states, expected {len(owner._schedulers)}")
    for s, child in zip(owner._schedulers, children):
        # Each writes its saved rate to the owner, not to the optimizer: the
        # owner's own rate is written below, and a chained scheduler's saved
        # rate may be an intermediate one that no optimizer takes.
        s._chain = owner
        try:
            s.load_state_dict(child)
        finally:
            s._chain = None
    owner.base_lr = state_dict["base_lr"]
    owner.last_epoch = state_dict["last_epoch"]
    owner._last_lr = float(state_dict["last_lr"])
    owner.optimizer.lr = owner._last_lr


_BY_NAME = {
    "step": StepLR, "multistep": MultiStepLR, "exponential": ExponentialLR,
    "cosineannealing": CosineAnnealingLR, "cosine": CosineAnnealingLR,
    "cosineannealingwarmrestarts": CosineAnnealingWarmRestarts,
    "cosinewarmrestarts": CosineAnnealingWarmRestarts,
    "linear": LinearLR, "linearwarmup": LinearWarmup, "warmup": LinearWarmup,
    "lambda": LambdaLR, "onecycle": OneCycleLR, "constant": ConstantLR,
    "polynomial": PolynomialLR, "poly": PolynomialLR, "multiplicative": MultiplicativeLR,
    "cyclic": CyclicLR,
    "reducelronplateau": ReduceLROnPlateau, "reduceonplateau": ReduceLROnPlateau,
    "plateau": ReduceLROnPlateau,
    "sequential": SequentialLR, "chained": ChainedScheduler,
    "chainedscheduler": ChainedScheduler,
}


def _normalise(name):
    key = name.lower().replace("_", "").replace("-", "")
    if key not in _BY_NAME and key.endswith("lr") and key[:-2] in _BY_NAME:
        key = key[:-2]
    return key


def get(name, optimizer, **kwargs):
    """Build a scheduler by name: ``get("cosine", opt, T_max=100)``.

    Parameters
    ----------
    name : str or scheduler class
        The class name (``"CosineAnnealingLR"``) or its snake-case form
        without the "LR" (``"cosine_annealing"``, ``"one_cycle"``,
        ``"multi_step"``, ``"reduce_lr_on_plateau"``...), case-insensitive;
        also ``"cosine"``, ``"warmup"`` and ``"plateau"``.
    optimizer : object
        Has a float attribute ``lr``.
    **kwargs
        The class's other arguments.

    Examples
    --------
    >>> from cdl import optimizers, schedules
    >>> opt = optimizers.SGD(lr=0.1)
    >>> schedules.get("cosine", opt, T_max=10)
    CosineAnnealingLR(T_max=10, eta_min=0.0)
    """
    if isinstance(name, type) and issubclass(name, LRScheduler) \
            and name is not LRScheduler:
        cls = name
    elif isinstance(name, str):
        key = _normalise(name)
        if key not in _BY_NAME:
            known = ", ".join(sorted(_BY_NAME))
            raise ValueError(f"unknown schedule {name!r}; expected one of {known}")
        cls = _BY_NAME[key]
    else:
        raise TypeError(f"name must be a schedule name or class, got {name!r}")
    if cls is ChainedScheduler:
        return cls(optimizer=optimizer, **kwargs)
    return cls(optimizer, **kwargs)
