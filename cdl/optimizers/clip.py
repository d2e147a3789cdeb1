"""Gradient clipping, in place, over a list of gradient arrays."""
import math

import numpy as np

from cdl._kernels import clip as _k
from cdl._validation import BLAS_INT_MAX, check_bool, check_number
from cdl.optimizers.base import as_array_list, flat_span

#: Largest number of elements one kernel call takes: BLAS counts in 32-bit ints.
_CHUNK = BLAS_INT_MAX


def _flat_views(grads):
    """1-D views to clip: one over the whole run if the gradients are
    consecutive views of one buffer (a model's), else one per array; views
    longer than BLAS's 32-bit limit are split into pieces."""
    grads = as_array_list(grads, "grads")
    for i, g in enumerate(grads):
        if g.dtype not in (np.float32, np.float64):
            raise TypeError(f"grads[{i}] must be float32 or float64, got {g.dtype}")
        if not g.flags.c_contiguous or not g.flags.writeable or not g.flags.aligned:
            raise ValueError(
                f"grads[{i}] is clipped in place, so it must be a C-contiguous, aligned and "
                "writeable array")
    span = flat_span(grads) if len(grads) > 1 else None
    views = [span] if span is not None else [g.reshape(-1) for g in grads]
    return [v[start:start + _CHUNK] for v in views for start in range(0, max(v.size, 1), _CHUNK)]


def _p_norm(norms, p):
    """The p-norm of the vector of per-view norms, without overflowing:
    (1e300 ** 2) is too large for a float, the norm of [1e300] is not."""
    try:
        return math.fsum(n ** p for n in norms) ** (1.0 / p)
    except OverflowError:
        largest = max(norms)  # finite: an infinite or NaN norm does not overflow
        return largest * math.fsum((n / largest) ** p for n in norms) ** (1.0 / p)


def clip_grad_norm(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    r"""Scale gradients in place so that their joint norm is at most ``max_norm``.

    The rule is PyTorch's ``clip_grad_norm_``: with the total norm
    :math:`N = \|(\|g_1\|_p, \ldots, \|g_k\|_p)\|_p`, every gradient is
    multiplied by :math:`\min(1, \text{max\_norm} / (N + 10^{-6}))`.

    Parameters
    ----------
    grads : list of ndarray, or one ndarray
        E.g. ``model.grads`` or ``model.grad_buffer``.
    max_norm : float
    norm_type : float, default 2
        p of the norm; ``float("inf")`` for the largest absolute value.
    error_if_nonfinite : bool, default False
        Raise ``FloatingPointError`` if the total norm is NaN or infinite
        (the gradients are then left untouched).

    Returns
    -------
    float
        The total norm before clipping.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import optimizers
    >>> grads = [np.array([3.0]), np.array([4.0])]       # total norm 5
    >>> optimizers.clip_grad_norm(grads, max_norm=1.0)   # returns the norm before clipping
    5.0
    >>> [g.round(4) for g in grads]                      # scaled in place to norm 1
    [array([0.6]), array([0.8])]
    """
    max_norm = check_number(max_norm, "max_norm", low=0.0)
    norm_type = check_number(norm_type, "norm_type", low=0.0, low_inclusive=False,
                             finite=False)
    error_if_nonfinite = check_bool(error_if_nonfinite, "error_if_nonfinite")
    views = _flat_views(grads)
    norms = [_k.norm(v, norm_type) for v in views]
    if math.isinf(norm_type):
        # max() would drop a NaN that is not first; the total must be NaN then.
        total = math.nan if any(math.isnan(n) for n in norms) else max(norms)
    else:
        total = _p_norm(norms, norm_type)
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise FloatingPointError(
                f"the total norm of order {norm_type} of the gradients is non-finite ({total})")
    coef = min(max_norm / (total + 1e-6), 1.0)
    if coef < 1.0 or not math.isfinite(total):
        for v in views:
            _k.scale(v, coef)
    return total


def clip_grad_value(grads, clip_value):
    """Clamp every gradient element to [-clip_value, clip_value], in place.

    Parameters
    ----------
    grads : list of ndarray, or one ndarray
    clip_value : float >= 0

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import optimizers
    >>> grads = [np.array([-3.0, 0.5, 2.0])]
    >>> optimizers.clip_grad_value(grads, 1.0)
    >>> grads[0]
    array([-1. ,  0.5,  1. ])
    """
    clip_value = check_number(clip_value, "clip_value", low=0.0)
    for v in _flat_views(grads):
        _k.clamp(v, clip_value)
