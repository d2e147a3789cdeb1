"""The bundled digits data set and the container returned by loaders."""
import gzip
from importlib import resources

import numpy as np

from cdl._validation import check_bool

__all__ = ["Bunch", "load_digits", "load_shakespeare"]

_DIGITS_DESCR = """\
Optical recognition of handwritten digits
-----------------------------------------

1,797 samples, 10 classes (digits 0..9), 64 features: an 8x8 image whose
pixels are integers 0..16. From 32x32 bitmaps of digits written by 43
people, each 4x4 block of pixels is replaced by its count of set pixels
(NIST preprocessing). This is the test part (optdigits.tes) of the UCI
data set; the writers are different from those of its training part.

Class counts for 0..9: 178, 182, 177, 183, 181, 182, 181, 179, 174, 180.

Source: E. Alpaydin and C. Kaynak (1998). Optical Recognition of
Handwritten Digits [Dataset]. UCI Machine Learning Repository.
https://doi.org/10.24432/C50P49 -- licensed CC BY 4.0.
The bundled file was taken unchanged from scikit-learn (BSD 3-Clause);
see cdl/datasets/data/README.txt.
"""


class Bunch(dict):
    """A dict whose keys are also attributes: ``bunch.data is bunch["data"]``.

    Examples
    --------
    >>> from cdl import datasets
    >>> digits = datasets.load_digits()
    >>> digits.data is digits["data"], sorted(digits)
    (True, ['DESCR', 'data', 'feature_names', 'images', 'target', 'target_names'])
    """

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value

    def __dir__(self):
        return list(self.keys())


def load_digits(return_X_y=False):
    """Load the UCI optical-recognition handwritten digits (8x8 images).

    1,797 samples of 64 pixel counts in 0..16, labels 0..9, read from a
    compressed copy bundled with cdl (no network access).

    Parameters
    ----------
    return_X_y : bool, default False
        Return ``(data, target)`` instead of a :class:`Bunch`.

    Returns
    -------
    Bunch or tuple of ndarray
        A :class:`Bunch` with the keys below, or ``(data, target)`` if
        ``return_X_y``:

        - ``data``: ndarray of float64, shape (1797, 64). Pixel values 0..16
          as floats (like scikit-learn); divide by 16 to get values in [0, 1].
        - ``target``: ndarray of int64, shape (1797,).
        - ``images``: ndarray of float64, shape (1797, 8, 8): ``data``
          reshaped to images (a view of ``data``).
        - ``feature_names``: list of str, ``"pixel_<row>_<col>"``.
        - ``target_names``: ndarray of int64, ``0`` to ``9``.
        - ``DESCR``: str.

    Notes
    -----
    Data: E. Alpaydin and C. Kaynak (1998), Optical Recognition of
    Handwritten Digits [Dataset], UCI Machine Learning Repository,
    https://doi.org/10.24432/C50P49, licensed CC BY 4.0. The bundled file
    ``cdl/datasets/data/digits.csv.gz`` is scikit-learn's copy (the package
    is BSD 3-Clause licensed), unchanged; ``data/README.txt`` beside it has
    the details.

    Examples
    --------
    >>> X, y = load_digits(return_X_y=True)
    >>> X.shape, y.shape
    ((1797, 64), (1797,))
    """
    return_X_y = check_bool(return_X_y, "return_X_y")
    source = resources.files("cdl.datasets").joinpath("data", "digits.csv.gz")
    with source.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.float64)
    if table.shape != (1797, 65):  # pragma: no cover - guards a damaged install
        raise RuntimeError(f"the bundled digits file has shape {table.shape}, "
                           "expected (1797, 65); reinstall cdl")
    data = np.ascontiguousarray(table[:, :64])
    target = table[:, 64].astype(np.int64)
    if return_X_y:
        return data, target
    return Bunch(
        data=data,
        target=target,
        images=data.reshape(-1, 8, 8),
        feature_names=[f"pixel_{r}_{c}" for r in range(8) for c in range(8)],
        target_names=np.arange(10, dtype=np.int64),
        DESCR=_DIGITS_DESCR,
    )


def load_shakespeare():
    """Load an excerpt of Shakespeare's Coriolanus as one string, for
    character-level language models.

    The first 100,020 characters (3,927 lines) of "tiny Shakespeare",
    bundled with cdl (no network access): speakers' names followed by a
    colon, their lines, and blank lines between speeches, in 61 distinct
    ASCII characters.

    Returns
    -------
    str

    Notes
    -----
    Shakespeare's plays are in the public domain. The bundled file
    ``cdl/datasets/data/shakespeare.txt`` is the start, unchanged, of
    ``data/tinyshakespeare/input.txt`` of https://github.com/karpathy/char-rnn
    (MIT License); ``data/README.txt`` beside it has the details.

    Examples
    --------
    >>> text = load_shakespeare()
    >>> len(text), len(set(text))
    (100020, 61)
    >>> print(text[:44])
    First Citizen:
    Before we proceed any further
    """
    source = resources.files("cdl.datasets").joinpath("data", "shakespeare.txt")
    text = source.read_text(encoding="utf-8")
    if len(text) != 100_020:  # pragma: no cover - guards a damaged install
        raise RuntimeError(f"the bundled Shakespeare file has {len(text)} characters, "
                           "expected 100020; reinstall cdl")
    return text
