"""Weight initialisers.

Each initialiser is a callable ``init(shape, dtype, rng) -> ndarray``
drawing from the NumPy generator ``rng`` (the model's seeded generator),
so that a model built twice with the same seed has the same weights.
Values are drawn in float64 and then cast, so float32 and float64 models
built with one seed start from the same weights up to rounding.

Fans follow the usual convention: for a weight of shape (d_in, d_out),
fan_in = d_in and fan_out = d_out; for a convolution kernel
(..., c_in, c_out), both are multiplied by the receptive field size.
"""
import math

import numpy as np

from cdl._validation import check_number

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform",
    "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform",
    "LecunNormal", "Orthogonal", "compute_fans", "get",
]


def compute_fans(shape):
    """Return (fan_in, fan_out) of a weight of the given shape.

    Examples
    --------
    >>> from cdl import initializers
    >>> initializers.compute_fans((64, 10))            # a Dense kernel (in, out)
    (64, 10)
    >>> initializers.compute_fans((3, 3, 16, 32))      # a Conv2D kernel: 3 * 3 * 16 in, 3 * 3 * 32 out
    (144, 288)
    """
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base class: subclasses implement ``draw(shape, rng) -> float64 array``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> class Halves(initializers.Initializer):
    ...     def draw(self, shape, rng):
    ...         return np.full(shape, 0.5)
    >>> Halves()((2,), np.float32, rng)         # called with (shape, dtype, generator)
    array([0.5, 0.5], dtype=float32)
    """

    def __call__(self, shape, dtype, rng):
        values = np.asarray(self.draw(tuple(shape), rng), dtype=np.float64)
        return np.ascontiguousarray(values.reshape(shape), dtype=dtype)

    def draw(self, shape, rng):
        """Values of the given shape (float64) drawn from the generator ``rng``."""
        raise NotImplementedError

    def get_config(self):
        """Constructor arguments, as a JSON-friendly dict."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    """All zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> initializers.Zeros()((2, 3), np.float32, rng)
    array([[0., 0., 0.],
           [0., 0., 0.]], dtype=float32)
    """

    def draw(self, shape, rng):
        return np.zeros(shape)


class Ones(Initializer):
    """All ones.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> initializers.Ones()((2, 3), np.float32, rng)
    array([[1., 1., 1.],
           [1., 1., 1.]], dtype=float32)
    """

    def draw(self, shape, rng):
        return np.ones(shape)


class Constant(Initializer):
    """Every element equal to ``value``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> initializers.Constant(0.1)((2, 3), np.float32, rng)
    array([[0.1, 0.1, 0.1],
           [0.1, 0.1, 0.1]], dtype=float32)
    """

    def __init__(self, value=0.0):
        self.value = check_number(value, "value")

    def draw(self, shape, rng):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    """Normal draws with the given ``mean`` and ``stddev``.

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> initializers.RandomNormal(stddev=1.0)((2, 3), np.float32, rng).round(3)
    array([[ 0.126, -0.132,  0.64 ],
           [ 0.105, -0.536,  0.362]], dtype=float32)
    """

    def __init__(self, mean=0.0, stddev=0.05):
        self.mean = check_number(mean, "mean")
        self.stddev = check_number(stddev, "stddev", low=0)

    def draw(self, shape, rng):
        return rng.normal(self.mean, self.stddev, size=shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class RandomUniform(Initializer):
    """Uniform draws in [minval, maxval).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> initializers.RandomUniform(-1.0, 1.0)((2, 3), np.float32, rng).round(3)
    array([[ 0.274, -0.46 , -0.918],
           [-0.967,  0.627,  0.826]], dtype=float32)
    """

    def __init__(self, minval=-0.05, maxval=0.05):
        self.minval = check_number(minval, "minval")
        self.maxval = check_number(maxval, "maxval")
        if self.maxval < self.minval:
            raise ValueError(f"maxval ({maxval}) must not be below minval ({minval})")

    def draw(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, size=shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


class _VarianceScaling(Initializer):
    """Draws with variance ``scale / fan`` (normal) or the uniform equivalent."""

    scale = 1.0
    mode = "fan_in"          # "fan_in", "fan_out" or "fan_avg"
    distribution = "normal"  # "normal" or "uniform"

    def draw(self, shape, rng):
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out,
               "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        if self.distribution == "normal":
            return rng.normal(0.0, math.sqrt(variance), size=shape)
        limit = math.sqrt(3.0 * variance)
        return rng.uniform(-limit, limit, size=shape)


class GlorotUniform(_VarianceScaling):
    """Glorot/Xavier uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> w = initializers.GlorotUniform()((300, 200), np.float64, rng)
    >>> round(float(np.abs(w).max()), 3), round(float(np.sqrt(6 / 500)), 3)   # within (-a, a)
    (0.11, 0.11)
    """
    mode, distribution = "fan_avg", "uniform"


class GlorotNormal(_VarianceScaling):
    """Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out)), as PyTorch (not truncated).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> w = initializers.GlorotNormal()((300, 200), np.float64, rng)
    >>> round(float(w.std()), 3), round(float(np.sqrt(2 / 500)), 3)
    (0.063, 0.063)
    """
    mode, distribution = "fan_avg", "normal"


class HeUniform(_VarianceScaling):
    """He/Kaiming uniform: U(-a, a), a = sqrt(6 / fan_in).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> w = initializers.HeUniform()((300, 200), np.float64, rng)
    >>> round(float(w.std()), 3), round(float(np.sqrt(2 / 300)), 3)   # variance 2 / fan_in
    (0.082, 0.082)
    """
    scale, distribution = 2.0, "uniform"


class HeNormal(_VarianceScaling):
    """He/Kaiming normal: N(0, 2 / fan_in), as PyTorch (not truncated).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> w = initializers.HeNormal()((300, 200), np.float64, rng)
    >>> round(float(w.std()), 3), round(float(np.sqrt(2 / 300)), 3)
    (0.082, 0.082)
    """
    scale, distribution = 2.0, "normal"


class LecunUniform(_VarianceScaling):
    """LeCun uniform: U(-a, a), a = sqrt(3 / fan_in).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> w = initializers.LecunUniform()((300, 200), np.float64, rng)
    >>> round(float(w.std()), 3), round(float(np.sqrt(1 / 300)), 3)   # variance 1 / fan_in
    (0.058, 0.058)
    """
    distribution = "uniform"


class LecunNormal(_VarianceScaling):
    """LeCun normal: N(0, 1 / fan_in) (not truncated).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> w = initializers.LecunNormal()((300, 200), np.float64, rng)
    >>> round(float(w.std()), 3), round(float(np.sqrt(1 / 300)), 3)
    (0.058, 0.058)
    """
    distribution = "normal"


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain``, from the QR of a normal draw.

    Shapes of rank > 2 are flattened to (prod(shape[:-1]), shape[-1]).

    Examples
    --------
    >>> import numpy as np
    >>> from cdl import initializers
    >>> rng = np.random.default_rng(0)
    >>> q = initializers.Orthogonal()((4, 4), np.float64, rng)
    >>> np.allclose(q.T @ q, np.eye(4))
    True
    """

    def __init__(self, gain=1.0):
        self.gain = check_number(gain, "gain")

    def draw(self, shape, rng):
        if len(shape) < 2:
            raise ValueError(f"the orthogonal initialiser needs rank >= 2, got shape {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = rng.normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))  # make the decomposition unique
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)

    def get_config(self):
        return {"gain": self.gain}


_BY_NAME = {
    "zeros": Zeros, "ones": Ones, "constant": Constant,
    "normal": RandomNormal, "random_normal": RandomNormal,
    "uniform": RandomUniform, "random_uniform": RandomUniform,
    "glorot_uniform": GlorotUniform, "xavier_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal, "xavier_normal": GlorotNormal,
    "he_uniform": HeUniform, "kaiming_uniform": HeUniform,
    "he_normal": HeNormal, "kaiming_normal": HeNormal,
    "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
    "orthogonal": Orthogonal,
}


def get(identifier):
    """Return an initialiser from a name, an instance, a class or a callable.

    Parameters
    ----------
    identifier : str, Initializer, type or callable
        A name such as ``"glorot_uniform"`` or ``"he_normal"`` (see
        ``cdl.initializers`` for all), or a callable
        ``(shape, dtype, rng) -> ndarray``.

    Examples
    --------
    >>> from cdl import initializers
    >>> initializers.get("he_normal")
    HeNormal()
    >>> initializers.get(initializers.Constant(0.1))
    Constant(value=0.1)
    """
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            known = ", ".join(sorted(_BY_NAME))
            raise ValueError(f"unknown initializer {identifier!r}; expected one of {known}")
        return _BY_NAME[key]()
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise TypeError(f"an initializer must be a name or a callable, got {identifier!r}")


def name_of(initializer):
    """The registry name of a built-in initialiser, for configs."""
    for name, cls in _BY_NAME.items():
        if type(initializer) is cls:
            return name
    return None
