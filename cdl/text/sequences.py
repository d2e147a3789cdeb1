"""Padding and truncating sequences of token ids to one length."""

import numpy as np

from cdl._validation import check_number

__all__ = ["pad_sequences"]


def pad_sequences(sequences, maxlen=None, padding="post", truncating="post", value=0,
                  dtype="int64"):
    """Pad (or cut) sequences to one length and stack them into an array.

    As Keras' ``keras.utils.pad_sequences``, with two differences: the
    defaults pad and cut at the end (``"post"``), where Keras' are
    ``"pre"``, so that position ``t`` of every row is the ``t``-th token (what
    a causal language model and ``Embedding(mask_zero=True)`` expect); and
    the default ``dtype`` is ``int64`` (Keras': ``int32``). Pass
    ``padding="pre", truncating="pre", dtype="int32"`` for Keras' results.

    Parameters
    ----------
    sequences : iterable of sequences
        Lists, tuples or arrays of token ids (or of samples of any one
        shape: each element then becomes a row of that shape). Empty
        sequences give rows of padding.
    maxlen : int >= 0, optional
        The length of every row; by default the longest sequence's.
    padding : {"post", "pre"}
        Where the padding goes: after (``"post"``) or before each sequence.
    truncating : {"post", "pre"}
        Which end a sequence longer than ``maxlen`` loses: ``"post"`` keeps
        its first ``maxlen`` values, ``"pre"`` its last ``maxlen``.
    value : scalar
        The padding value.
    dtype : str or numpy.dtype
        The dtype of the result. Values are converted without loss: a
        fractional float, or an id outside an integer ``dtype``'s range, is
        refused rather than rounded or wrapped around.

    Returns
    -------
    ndarray of shape ``(len(sequences), maxlen, *sample_shape)``

    Raises
    ------
    TypeError
        For a ``sequences`` that is a string or not iterable, an element that
        is None, a string, bytes or a scalar, or values of a kind ``dtype``
        cannot hold (strings for a numeric ``dtype``).
    ValueError
        For an unknown ``padding`` or ``truncating``, a negative ``maxlen``,
        sequences whose samples differ in shape, or a value that would
        change on conversion to ``dtype``.

    Examples
    --------
    >>> from cdl.text import pad_sequences
    >>> pad_sequences([[1], [2, 3], [4, 5, 6]])
    array([[1, 0, 0],
           [2, 3, 0],
           [4, 5, 6]])
    >>> pad_sequences([[1], [2, 3], [4, 5, 6]], maxlen=2)
    array([[1, 0],
           [2, 3],
           [4, 5]])

    Keras' defaults, and its documented results:

    >>> pad_sequences([[1], [2, 3], [4, 5, 6]], maxlen=2, padding="pre", truncating="pre",
    ...               dtype="int32")
    array([[0, 1],
           [2, 3],
           [5, 6]], dtype=int32)
    """
    if isinstance(sequences, (str, bytes)):
        raise TypeError(f"sequences must be a list of sequences, not a {type(sequences).__name__}")
    try:
        sequences = list(sequences)
    except TypeError:
        raise TypeError("sequences must be an iterable of sequences, got "
                        f"{type(sequences).__name__}") from None
    if maxlen is not None:
        maxlen = check_number(maxlen, "maxlen", low=0, integer=True)
    if padding not in ("post", "pre"):
        raise ValueError(f"padding must be 'post' or 'pre', got {padding!r}")
    if truncating not in ("post", "pre"):
        raise ValueError(f"truncating must be 'post' or 'pre', got {truncating!r}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy dtype, got {dtype!r}") from None
    arrays = [_as_sequence(s, i) for i, s in enumerate(sequences)]
    shapes = {a.shape[1:] for a in arrays if len(a)}
    if len(shapes) > 1:
        first = next(i for i, a in enumerate(arrays) if len(a))
        odd = next(i for i, a in enumerate(arrays) if len(a) and a.shape[1:] != arrays[first].shape[1:])
        raise ValueError(f"the samples of sequences[{odd}] have shape {arrays[odd].shape[1:]}, "
                         f"those of sequences[{first}] {arrays[first].shape[1:]}")
    sample_shape = shapes.pop() if shapes else ()
    if maxlen is None:
        maxlen = max((len(a) for a in arrays), default=0)
    fill = _convert(np.asarray(value), dtype, "value")
    if fill.ndim:
        raise TypeError(f"value must be a scalar, got an array of shape {fill.shape}")
    out = np.full((len(arrays), maxlen) + sample_shape, fill, dtype=dtype)
    if maxlen == 0:
        return out
    for i, a in enumerate(arrays):
        kept = a[:maxlen] if truncating == "post" else a[-maxlen:]
        if not len(kept):
            continue
        kept = _convert(kept, dtype, f"sequences[{i}]")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, maxlen - len(kept):] = kept
    return out


def _as_sequence(s, i):
    """Element ``i`` of ``sequences`` as an array with a first (time) axis."""
    if s is None or isinstance(s, (str, bytes)):
        raise TypeError(f"sequences[{i}] must be a sequence of ids, got "
                        f"{'None' if s is None else type(s).__name__}")
    if not isinstance(s, np.ndarray):
        try:
            len(s)
        except TypeError:
            raise TypeError(f"sequences[{i}] must be a sequence of ids, got "
                            f"{type(s).__name__}") from None
    try:
        a = np.asarray(s)
    except ValueError as error:  # ragged nesting
        raise ValueError(f"sequences[{i}] is not a sequence of equal-shaped samples "
                         f"({error})") from None
    if a.ndim == 0:
        raise TypeError(f"sequences[{i}] must be a sequence of ids, got a scalar")
    return a


def _convert(a, dtype, what):
    """``a`` as ``dtype``, refusing conversions that would change a value."""
    if dtype.kind in "OSU" or a.size == 0:
        return a.astype(dtype)
    if a.dtype.kind == "O":
        try:
            a = np.asarray(a.tolist())
        except ValueError:
            pass
        # What stays an object array holds integers too large for int64, or
        # things that are not numbers.
        if a.dtype.kind == "O" and not all(isinstance(v, (int, np.integer)) and
                                           not isinstance(v, bool) for v in a.flat):
            raise TypeError(f"{what} holds values that are not numbers")
    if a.dtype.kind in "SUV" or (a.dtype.kind == "c" and dtype.kind != "c"):
        raise TypeError(f"{what} holds {a.dtype} values, which {dtype} cannot hold")
    if dtype.kind in "iu" and a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError(f"{what} holds a value that is not finite; {dtype} cannot hold it")
        fractional = np.flatnonzero(a != np.floor(a))
        if fractional.size:
            raise ValueError(f"{what} holds {a.flat[fractional[0]]}, which is not a whole "
                             f"number; {dtype} holds whole numbers")
    if dtype.kind in "iu" and a.dtype.kind in "iufO":
        info = np.iinfo(dtype)
        low, high = (_python_number(v) for v in (a.min(), a.max()))
        if low < info.min or high > info.max:   # Python numbers compare exactly
            raise ValueError(f"{what} holds {low if low < info.min else high}, outside the "
                             f"range of {dtype} [{info.min}, {info.max}]")
    return a.astype(dtype)


def _python_number(v):
    return v.item() if isinstance(v, np.generic) else v
