"""pad_sequences: Keras' documented examples, Keras itself where installed,
the "post" defaults, samples of any shape, and bad input."""
import numpy as np
import numpy.testing as npt
import pytest

from cdl.text import pad_sequences

SEQUENCES = [[1], [2, 3], [4, 5, 6]]
#: Keras' own defaults, to compare with its documented results.
KERAS = {"padding": "pre", "truncating": "pre", "dtype": "int32"}


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [[0, 0, 1], [0, 2, 3], [4, 5, 6]]),
    ({"value": -1}, [[-1, -1, 1], [-1, 2, 3], [4, 5, 6]]),
    ({"padding": "post"}, [[1, 0, 0], [2, 3, 0], [4, 5, 6]]),
    ({"maxlen": 2}, [[0, 1], [2, 3], [5, 6]]),
])
def test_keras_documented_examples(kwargs, expected):
    """The examples of keras.utils.pad_sequences' docstring, with Keras' defaults."""
    out = pad_sequences(SEQUENCES, **{**KERAS, **kwargs})
    npt.assert_array_equal(out, expected)
    assert out.dtype == np.int32


def test_the_defaults_pad_and_cut_at_the_end_in_int64():
    out = pad_sequences(SEQUENCES)
    npt.assert_array_equal(out, [[1, 0, 0], [2, 3, 0], [4, 5, 6]])
    assert out.dtype == np.int64
    npt.assert_array_equal(pad_sequences(SEQUENCES, maxlen=2), [[1, 0], [2, 3], [4, 5]])


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("maxlen", [None, 1, 3, 7])
def test_agrees_with_keras(padding, truncating, maxlen, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "numpy")   # pad_sequences is NumPy in any backend
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 50, size=n).tolist() for n in [0, 1, 4, 9, 3, 5]]
    for dtype, value in [("int32", 0), ("int64", -7), ("float32", 0.5)]:
        ours = pad_sequences(sequences, maxlen=maxlen, padding=padding, truncating=truncating,
                             value=value, dtype=dtype)
        theirs = keras.utils.pad_sequences(sequences, maxlen=maxlen, padding=padding,
                                           truncating=truncating, value=value, dtype=dtype)
        npt.assert_array_equal(ours, theirs)
        assert ours.dtype == theirs.dtype


def test_by_hand_for_every_combination():
    seq = [[1, 2, 3, 4, 5]]
    assert pad_sequences(seq, maxlen=3, truncating="post").tolist() == [[1, 2, 3]]
    assert pad_sequences(seq, maxlen=3, truncating="pre").tolist() == [[3, 4, 5]]
    assert pad_sequences(seq, maxlen=7, padding="post").tolist() == [[1, 2, 3, 4, 5, 0, 0]]
    assert pad_sequences(seq, maxlen=7, padding="pre").tolist() == [[0, 0, 1, 2, 3, 4, 5]]
    assert pad_sequences(seq, maxlen=0).shape == (1, 0)
    assert pad_sequences(seq, maxlen=0, truncating="pre").shape == (1, 0)


def test_inputs_of_every_kind():
    expected = [[1, 2], [3, 0]]
    for sequences in ([(1, 2), (3,)], [np.array([1, 2]), np.array([3], dtype=np.uint8)],
                      (s for s in [[1, 2], [3]]), [[1.0, 2.0], [3.0]], [[True, 2], [3]]):
        npt.assert_array_equal(pad_sequences(sequences), expected)
    npt.assert_array_equal(pad_sequences(np.arange(6).reshape(2, 3), maxlen=2), [[0, 1], [3, 4]])


def test_empty_inputs():
    assert pad_sequences([]).shape == (0, 0)
    assert pad_sequences([], maxlen=4).shape == (0, 4)
    npt.assert_array_equal(pad_sequences([[], [1]]), [[0], [1]])
    npt.assert_array_equal(pad_sequences([[], []], value=9, maxlen=2), [[9, 9], [9, 9]])


def test_samples_of_any_shape_become_rows():
    out = pad_sequences([[[1, 2], [3, 4]], [], [[5, 6]]], value=-1)
    assert out.shape == (3, 2, 2)
    npt.assert_array_equal(out[2], [[5, 6], [-1, -1]])
    npt.assert_array_equal(out[1], -1)


def test_other_dtypes():
    out = pad_sequences([[0.5, 1.5], [2.5]], dtype="float32", value=np.nan)
    npt.assert_array_equal(out, np.array([[0.5, 1.5], [2.5, np.nan]], dtype=np.float32))
    strings = pad_sequences([["a", "b"], ["c"]], dtype=object, value="<pad>")
    assert strings.tolist() == [["a", "b"], ["c", "<pad>"]]
    npt.assert_array_equal(pad_sequences([[255, 0]], dtype=np.uint8), [[255, 0]])


@pytest.mark.parametrize("sequences, kwargs, error, match", [
    ("abc", {}, TypeError, "not a str"),
    (b"abc", {}, TypeError, "not a bytes"),
    (5, {}, TypeError, "iterable of sequences, got int"),
    ([[1], None], {}, TypeError, r"sequences\[1\] must be a sequence of ids, got None"),
    ([[1], "ab"], {}, TypeError, r"sequences\[1\] must be a sequence of ids, got str"),
    ([[1], 2], {}, TypeError, r"sequences\[1\] must be a sequence of ids, got int"),
    ([np.array(3)], {}, TypeError, "got a scalar"),
    ([[1], [[1, 2], [3]]], {}, ValueError, r"sequences\[1\] is not a sequence of equal-shaped"),
    ([[1], [[1, 2]]], {}, ValueError, r"the samples of sequences\[1\] have shape \(2,\)"),
    ([[1.5]], {}, ValueError, "holds 1.5, which is not a whole number"),
    ([[np.inf]], {}, ValueError, "not finite"),
    ([[300]], {"dtype": "int8"}, ValueError, r"holds 300, outside the range of int8"),
    ([[-1]], {"dtype": "uint8"}, ValueError, "holds -1, outside the range of uint8"),
    ([[2 ** 70]], {}, ValueError, "outside the range of int64"),
    ([["a"]], {}, TypeError, "holds <U1 values, which int64 cannot hold"),
    ([[1 + 2j]], {}, TypeError, "complex128 values"),
    ([[1]], {"value": 0.5}, ValueError, "value holds 0.5"),
    ([[1]], {"value": "x"}, TypeError, "value holds <U1 values"),
    ([[1]], {"value": [0, 0]}, TypeError, "value must be a scalar"),
    ([[1]], {"value": -1, "dtype": "uint8"}, ValueError, "value holds -1"),
    ([[1]], {"maxlen": -1}, ValueError, "maxlen must be >= 0"),
    ([[1]], {"maxlen": 2.5}, TypeError, "maxlen must be an integer"),
    ([[1]], {"padding": "left"}, ValueError, "padding must be 'post' or 'pre'"),
    ([[1]], {"truncating": None}, ValueError, "truncating must be 'post' or 'pre'"),
    ([[1]], {"dtype": "no such dtype"}, TypeError, "dtype must be a NumPy dtype"),
])
def test_bad_input_is_refused_naming_it(sequences, kwargs, error, match):
    with pytest.raises(error, match=match):
        pad_sequences(sequences, **kwargs)
