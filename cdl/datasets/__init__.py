"""Data sets that work offline: a bundled one, synthetic generators, MNIST files.

* :func:`load_digits` -- the UCI 8x8 handwritten digits (1,797 samples),
  shipped inside the package; :func:`load_shakespeare` -- an excerpt of
  Shakespeare's Coriolanus (100,020 characters) for character-level
  language models.
* Generators, all seeded (``seed=None | int | numpy.random.Generator``) and
  returning ``(X float64, y int64)``: :func:`make_xor`, :func:`make_moons`,
  :func:`make_circles`, :func:`make_spirals`, :func:`make_blobs`, and
  :func:`make_regression` (whose ``y`` is float64).
* :func:`load_mnist` / :func:`read_idx` -- read MNIST-style IDX files that you
  already have on disk (gzip-compressed or not). Nothing is ever downloaded.
"""
from cdl.datasets._base import Bunch, load_digits, load_shakespeare
from cdl.datasets._generators import (
    make_blobs, make_circles, make_moons, make_regression, make_spirals, make_xor)
from cdl.datasets._idx import load_mnist, read_idx

__all__ = [
    "Bunch", "load_digits", "load_shakespeare", "make_xor", "make_moons", "make_circles", "make_spirals",
    "make_blobs", "make_regression", "load_mnist", "read_idx",
]
