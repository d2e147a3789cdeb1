"""Data sets that work offline: a bundled one, synthetic generators, MNIST files.

* :func:`load_digits` -- the UCI 8x8 handwritten digits (1,797 samples),
  shipped inside the package; :func:`load_shakespeare` -- an excerpt of
  Shakespeare's Coriolanus (100,020 characters) for character-level
  language models.
* Generators, all seeded (``seed=None | int | numpy.random.Generator``) and
  returning ``(X float64, y int64)``: :func:`make_xor`, :func:`make_moons`,
  :func:`make_circles`, :func:`make_spirals`, :func:`make_blobs`, and
  :func:`make_regression` (whose ``y`` is float64).
* Standard data sets downloaded on first use, verified against pinned
  SHA-256 hashes and cached (``pip install 'cdl[datasets]'`` for the
  download; the cache is ``$CDL_DATA`` or ``~/.cache/cdl``, the server
  ``$CDL_DATASETS_URL`` or the official one): :func:`load_mnist`,
  :func:`load_fashion_mnist`, :func:`load_cifar10`, :func:`load_imdb` (with
  :func:`load_imdb_word_index`), returning ``(x_train, y_train), (x_test,
  y_test)`` as Keras does.
* :func:`load_mnist` with a folder / :func:`read_idx` -- read MNIST-style IDX
  files that you already have on disk (gzip-compressed or not).
"""
from cdl.datasets._base import Bunch, load_digits, load_shakespeare
from cdl.datasets._generators import (
    make_blobs, make_circles, make_moons, make_regression, make_spirals, make_xor)
from cdl.datasets._idx import load_mnist, read_idx
from cdl.datasets._remote import load_cifar10, load_fashion_mnist, load_imdb, load_imdb_word_index

__all__ = [
    "Bunch", "load_digits", "load_shakespeare", "make_xor", "make_moons", "make_circles", "make_spirals",
    "make_blobs", "make_regression", "load_mnist", "read_idx", "load_fashion_mnist", "load_cifar10",
    "load_imdb", "load_imdb_word_index",
]
