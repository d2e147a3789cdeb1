"""The Optimizer base class: hyper-parameters, parameter groups, flat state.

An optimizer updates parameters in place from their gradients with
``step(params, grads)``. Its state (momentum buffers, moment estimates)
lives in one flat array per kind of state, aligned with the parameters
taken in order. When the parameters are consecutive views of one buffer,
as a ``cdl.Sequential``'s are, a step is one compiled kernel call over
the whole buffer (one per run of parameters that share the same
multipliers); otherwise it is one call per parameter array.
"""
import numpy as np

from cdl._validation import check_bool, check_number

__all__ = ["Optimizer"]


def _root(array):
    """The ndarray that owns ``array``'s memory (follows ``.base``)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def as_array_list(arrays, name):
    """``arrays`` (one ndarray or an iterable of them) as a non-empty list of
    ndarrays, or a TypeError/ValueError naming ``name``."""
    if isinstance(arrays, np.ndarray):
        return [arrays]
    try:
        arrays = list(arrays)
    except TypeError:
        raise TypeError(f"{name} must be an ndarray or a list of ndarrays") from None
    if not arrays:
        raise ValueError(f"{name} is empty")
    for a in arrays:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must hold ndarrays, got {type(a).__name__}")
    return arrays


def flat_span(arrays):
    """One 1-D view covering ``arrays`` if they are consecutive views of one
    contiguous buffer, else None."""
    root = _root(arrays[0])
    if root.ndim != 1 or not root.flags.c_contiguous:
        return None
    itemsize = root.itemsize
    start = (arrays[0].ctypes.data - root.ctypes.data) // itemsize
    position = start
    for a in arrays:
        if _root(a) is not root or not a.flags.c_contiguous \
                or a.ctypes.data != root.ctypes.data + position * itemsize:
            return None
        position += a.size
    return root[start:position]


class _Segment:
    """A run of parameters updated by one kernel call, with its multipliers."""

    __slots__ = ("param", "grad", "start", "stop", "lr_mult", "wd_mult")

    def __init__(self, param, grad, start, stop, lr_mult, wd_mult):
        self.param, self.grad = param, grad
        self.start, self.stop = start, stop
        self.lr_mult, self.wd_mult = lr_mult, wd_mult


class Optimizer:
    """Base class of cdl's optimizers.

    Parameters
    ----------
    lr : float
        Learning rate; may be changed between steps (``opt.lr = ...``),
        which is what ``cdl.schedules`` do.
    weight_decay : float
        L2 penalty coefficient (its exact use is the subclass's rule).
    param_groups : list of dict, optional
        Per-parameter multipliers: each dict has ``"params"`` (a list of
        arrays, e.g. ``model.layers[0].params``) and optionally
        ``"lr_mult"`` and ``"weight_decay_mult"`` (default 1). A parameter's
        effective learning rate is ``lr * lr_mult``, its weight decay
        ``weight_decay * weight_decay_mult``.
    exclude_bias_decay : bool
        If True, parameters with at most one axis (biases, normalisation
        scales) get no weight decay. This is judged on the arrays given to
        ``step``: pass ``model.params``, not the flat ``model.param_buffer``
        (which is itself one-dimensional, so all of it would be exempt).
    maximize : bool
        Climb the objective instead of descending it, as ``torch.optim``'s
        ``maximize=True``: every rule sees the negated gradient (weight
        decay still shrinks the parameters). The gradients passed to
        ``step`` are not modified; their negation goes into a scratch
        buffer of the optimizer. May be changed between steps.

    Notes
    -----
    Subclasses define ``_state_names`` (the flat state arrays they keep),
    ``_init_state(name, size, dtype)`` and ``_update(segment, state_views)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import optimizers
    >>> w = np.array([1.0, 2.0])
    >>> opt = optimizers.SGD(lr=0.1)
    >>> opt.step([w], [np.array([0.5, -1.0])])   # in place: w <- w - lr * g
    >>> w
    array([0.95, 2.1 ])
    >>> opt.lr = 0.01                           # settable, e.g. by a schedule
    """

    _state_names = ()

    def __init__(self, lr, weight_decay=0.0, param_groups=None, exclude_bias_decay=False,
                 maximize=False):
        self.lr = lr
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0.0)
        self.exclude_bias_decay = check_bool(exclude_bias_decay, "exclude_bias_decay")
        self.maximize = maximize
        self.param_groups = self.check_param_groups(param_groups)
        self.iterations = 0           # steps taken so far
        self.state = {}               # name -> flat ndarray, created on the first step
        self._layout = None           # shapes of the parameters the state belongs to
        self._params_seen = None      # the arrays of the last step, to reuse the plan
        self._grads_seen = None
        self._segments = None         # runs of parameters sharing multipliers
        self._cached_segments = None  # those runs paired with parameter/gradient storage
        self._work = None             # segments with their state slices
        self._negated = None          # per segment, the negated gradient (maximize)

    # --- hyper-parameters -----------------------------------------------------

    @property
    def lr(self):
        """The learning rate used by the next step."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_number(value, "lr", low=0.0)

    @property
    def maximize(self):
        """Whether steps ascend the objective (the rules see ``-grad``)."""
        return self._maximize

    @maximize.setter
    def maximize(self, value):
        self._maximize = check_bool(value, "maximize")

    @staticmethod
    def check_param_groups(groups):
        """``groups`` checked as the constructor's ``param_groups``: a list of
        dicts with ``params`` (a list), and ``lr_mult`` and ``weight_decay_mult``
        (numbers at least 0, 1.0 when absent); None gives ``[]``.

        Raises ``TypeError`` or ``ValueError`` for anything else.
        """
        if groups is None:
            return []
        checked = []
        for group in groups:
            if not isinstance(group, dict) or "params" not in group:
                raise TypeError("each parameter group must be a dict with a 'params' list")
            unknown = set(group) - {"params", "lr_mult", "weight_decay_mult"}
            if unknown:
                raise ValueError(f"unknown parameter group keys: {sorted(unknown)}")
            checked.append({
                "params": as_array_list(group["params"], "a parameter group's params"),
                "lr_mult": check_number(group.get("lr_mult", 1.0), "lr_mult", low=0.0),
                "weight_decay_mult": check_number(
                    group.get("weight_decay_mult", 1.0), "weight_decay_mult", low=0.0),
            })
        return checked

    def state_names(self):
        """The names of the flat state arrays this optimizer keeps (the keys
        of ``state_dict()["state"]`` once it has stepped), as a tuple."""
        return tuple(self._state_names)

    def get_config(self):
        """Hyper-parameters as a dict (the constructor's arguments)."""
        return {"lr": self.lr, "weight_decay": self.weight_decay,
                "exclude_bias_decay": self.exclude_bias_decay, "maximize": self.maximize}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # --- stepping -------------------------------------------------------------

    def step(self, params, grads):
        """Update ``params`` in place from ``grads``.

        Parameters
        ----------
        params : list of ndarray, or one ndarray
            Float32 or float64, C-contiguous, writeable; e.g. ``model.params``
            or ``model.param_buffer``.
        grads : list of ndarray, or one ndarray
            Aligned with ``params``, same shapes and dtype, C-contiguous;
            not modified.
        """
        params_list = as_array_list(params, "params")
        if self._params_seen is None or len(params_list) != len(self._params_seen) or any(
                a is not b for a, b in zip(params_list, self._params_seen)):
            self._prepare(params_list)
        grads_list = as_array_list(grads, "grads")
        if self._grads_seen is None or len(grads_list) != len(self._grads_seen) or any(
                a is not b for a, b in zip(grads_list, self._grads_seen)):
            self._cached_segments = self._segments_for(params_list, grads_list)
            self._grads_seen = grads_list
            self._work = None
            self._negated = None
        self._check_options()
        self.iterations += 1
        self._begin_step()
        if self._work is None:
            # Each segment's slices of the state, made once and reused every step.
            self._work = [(segment, {name: None if array is None
                                     else array[segment.start:segment.stop]
                                     for name, array in self.state.items()})
                          for segment in self._cached_segments]
        if self.maximize:
            for segment, views in zip(self._negated_segments(), (v for _, v in self._work)):
                self._update(segment, views)
        else:
            for segment, views in self._work:
                self._update(segment, views)

    def _negated_segments(self):
        """The step's segments with their gradients negated into scratch
        buffers (made once per gradient storage, reused every step)."""
        if self._negated is None:
            self._negated = [
                _Segment(s.param, np.empty_like(s.grad), s.start, s.stop, s.lr_mult,
                         s.wd_mult) for s, _ in self._work]
        for (segment, _), negated in zip(self._work, self._negated):
            np.negative(segment.grad, out=negated.grad)
        return self._negated

    def _check_options(self):
        """Raise, before anything changes, if the options cannot be applied to the
        state (subclasses)."""

    def _check_state_for(self, options):
        """Raise if an option was switched on after its state was created without it.

        ``options`` pairs each optional state name with the option that needs
        it. PyTorch creates such state on the first step only, and fails with a
        ``KeyError`` when the option is switched on later; this names the option.
        """
        for name, option in options:
            if getattr(self, option) and self.state.get(name, 0) is None:
                raise ValueError(
                    f"{type(self).__name__}: {option} cannot be switched on after the "
                    f"first step, which ran without it (there is no {name} to continue "
                    f"from; torch.optim.{type(self).__name__} cannot either). Set "
                    f"{option} before the first step, or start a new optimizer")

    def _begin_step(self):
        """Scalar work done once per step, before the kernels (subclasses)."""

    def _update(self, segment, state):
        raise NotImplementedError

    def _init_state(self, name, size, dtype):
        """Initial value of state ``name`` (default zeros; None for unused state)."""
        return np.zeros(size, dtype=dtype)

    def _prepare(self, params):
        """Check the parameters and (on the first step) create the state."""
        dtype = params[0].dtype
        for i, p in enumerate(params):
            if p.dtype not in (np.float32, np.float64):
                raise TypeError(f"params[{i}] must be float32 or float64, got {p.dtype}")
            if p.dtype != dtype:
                raise TypeError(f"params mix dtypes {dtype} and {p.dtype}")
            if not p.flags.c_contiguous or not p.flags.writeable or not p.flags.aligned:
                raise ValueError(
                    f"params[{i}] is updated in place, so it must be a C-contiguous, aligned "
                    "and writeable array")
        layout = [p.shape for p in params]
        if self._layout is None:
            size = sum(p.size for p in params)
            for name in self._state_names:
                pending = self.state.get(name)
                if pending is not None and (pending.size != size):
                    raise ValueError(
                        f"loaded state {name!r} has {pending.size} elements, "
                        f"the parameters {size}")
                self.state[name] = (self._init_state(name, size, dtype) if pending is None
                                    else np.ascontiguousarray(pending, dtype=dtype))
            self._layout = layout
        elif layout != self._layout:
            raise ValueError(
                f"this optimizer's state belongs to parameters of shapes {self._layout}; "
                f"got {layout}. Use a new optimizer for other parameters")
        for name, array in self.state.items():
            if array is not None and array.dtype != dtype:
                raise TypeError(f"state {name!r} is {array.dtype}, the parameters {dtype}")
        self._params_seen = params
        self._grads_seen = None
        self._segments = self._plan(params)

    def _multipliers(self, params):
        """(lr_mult, wd_mult) per parameter, from the groups and the bias rule."""
        mults = []
        for p in params:
            lr_mult, wd_mult = 1.0, 1.0
            for group in self.param_groups:
                if any(q is p or (q.ctypes.data == p.ctypes.data and q.shape == p.shape)
                       for q in group["params"]):
                    lr_mult, wd_mult = group["lr_mult"], group["weight_decay_mult"]
            if self.exclude_bias_decay and p.ndim <= 1:
                wd_mult = 0.0
            mults.append((lr_mult, wd_mult))
        return mults

    def _plan(self, params):
        """Runs of consecutive parameters sharing multipliers: (first, last + 1, mults)."""
        mults = self._multipliers(params)
        runs = []
        for i, m in enumerate(mults):
            if runs and runs[-1][2] == m:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1, m])
        return runs

    def _segments_for(self, params, grads):
        """Pair parameter and gradient storage into kernel-sized segments."""
        if len(grads) != len(params):
            raise ValueError(f"got {len(params)} params but {len(grads)} grads")
        for i, (p, g) in enumerate(zip(params, grads)):
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape}, params[{i}] {p.shape}")
            if g.dtype != p.dtype:
                raise TypeError(f"grads[{i}] has dtype {g.dtype}, params[{i}] {p.dtype}")
            if not g.flags.c_contiguous or not g.flags.aligned:
                # Checked here, before any segment is updated: the kernels
                # would refuse it halfway through a step.
                raise ValueError(f"grads[{i}] must be a C-contiguous, aligned array")
        segments = []
        offset = 0
        offsets = []
        for p in params:
            offsets.append(offset)
            offset += p.size
        for first, last, (lr_mult, wd_mult) in self._segments:
            p_span = flat_span(params[first:last]) if last - first > 1 else None
            g_span = flat_span(grads[first:last]) if p_span is not None else None
            if p_span is not None and g_span is not None:
                segments.append(_Segment(p_span, g_span, offsets[first],
                                         offsets[first] + p_span.size, lr_mult, wd_mult))
                continue
            for i in range(first, last):
                segments.append(_Segment(params[i].reshape(-1), grads[i].reshape(-1),
                                         offsets[i], offsets[i] + params[i].size,
                                         lr_mult, wd_mult))
        return segments

    # --- state ------------------------------------------------------------------

    def _scalar_state(self):
        """Scalars of the state beyond ``iterations`` (subclasses extend)."""
        return {}

    def _load_scalar_state(self, scalars):
        """Restore what ``_scalar_state`` saved."""

    def state_dict(self):
        """The optimizer's hyper-parameters and state as plain numbers and arrays.

        Returns
        -------
        dict
            ``{"class": name, "config": {...}, "iterations": int,
            "scalars": {...}, "state": {name: ndarray copy}}``.
        """
        return {
            "class": type(self).__name__,
            "config": self.get_config(),
            "iterations": self.iterations,
            "scalars": dict(self._scalar_state()),
            "state": {name: None if a is None else a.copy() for name, a in self.state.items()},
        }

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()``; the next step continues exactly where it left off.

        Hyper-parameters (including ``lr``) are restored too.
        """
        if state_dict.get("class") != type(self).__name__:
            raise ValueError(
                f"state of a {state_dict.get('class')} cannot load into a {type(self).__name__}")
        state = state_dict["state"]
        unknown = set(state) - set(self._state_names)
        if unknown:
            raise ValueError(f"unknown optimizer state {sorted(unknown)}")
        loaded = {name: (None if state.get(name) is None
                         else np.array(state[name], copy=True).reshape(-1))
                  for name in self._state_names}
        if self._layout is not None:
            # Check everything before changing anything: a rejected state
            # leaves this optimizer as it was.
            for name, array in loaded.items():
                current = self.state.get(name)
                if (array is None) != (current is None) or (
                        array is not None and array.size != current.size):
                    raise ValueError(f"loaded state {name!r} does not fit these parameters")
        for key, value in state_dict["config"].items():
            setattr(self, key, value)
        self.iterations = int(state_dict["iterations"])
        self._load_scalar_state(state_dict.get("scalars", {}))
        if self._layout is not None:
            for name, array in loaded.items():
                if array is not None:
                    self.state[name][...] = array
        else:
            self.state = loaded
