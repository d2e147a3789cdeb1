"""Tests of the row-major BLAS seam ``cdl._kernels._blas`` against NumPy.

Every routine is compared with a float64 NumPy reference computed from the
same inputs, using the dtype tolerance of ``helpers.TOLERANCES``. Outputs
that ``beta = 0`` says to ignore are pre-filled with NaN, so a routine that
reads them instead of overwriting them fails.
"""
import re

import numpy as np
import pytest

from cdl._kernels import _blas
from cdl._validation import BLAS_INT_MAX
from helpers import assert_allclose, random_array

# (m, n, k): non-square products, every pair of sizes different somewhere,
# plus the degenerate sizes 1 and 0.
GEMM_SHAPES = [
    (1, 1, 1),
    (3, 7, 64),
    (64, 3, 7),
    (7, 64, 3),
    (1, 64, 7),
    (64, 1, 3),
    (3, 7, 1),
    (64, 64, 64),
    (0, 3, 7),   # no rows in C
    (3, 0, 7),   # no columns in C
    (3, 7, 0),   # empty inner dimension: C = beta * C
    (0, 0, 0),
]

# (alpha, beta): plain product, scaled product, accumulation, both scaled,
# alpha = 0 (C = beta * C).
ALPHA_BETA = [(1.0, 0.0), (2.5, 0.0), (1.0, 1.0), (-0.5, 2.0), (0.0, 3.0)]

GEMV_SHAPES = [(1, 1), (3, 7), (64, 3), (7, 64), (1, 64), (64, 1),
               (0, 3), (3, 0), (0, 0)]

VECTOR_SIZES = [0, 1, 7, 64, 1000]


def _dtype_id(dtype):
    """Short test id of a dtype, e.g. ``float32``."""
    return np.dtype(dtype).name


def _shape_id(shape):
    """Test id of a shape tuple, e.g. ``3x7x64``."""
    return "x".join(str(s) for s in shape)


def _ab_id(ab):
    """Test id of an (alpha, beta) pair."""
    return f"alpha={ab[0]:g},beta={ab[1]:g}"


def _output(shape, dtype, beta, seed):
    """Initial contents of an in-place output.

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy dtype
    beta : float
        With ``beta == 0`` BLAS must not read the output, so it is filled
        with NaN: any NaN left in the result means the old value leaked in.
    seed : int

    Returns
    -------
    ndarray
    """
    if beta == 0.0:
        return np.full(shape, np.nan, dtype=dtype)
    return random_array(shape, dtype, seed=seed)


# --- gemm -------------------------------------------------------------------

@pytest.mark.parametrize("alpha_beta", ALPHA_BETA, ids=_ab_id)
@pytest.mark.parametrize("mnk", GEMM_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
def test_gemm_matches_numpy(dtype, trans_a, trans_b, mnk, alpha_beta):
    m, n, k = mnk
    alpha, beta = alpha_beta
    # Store A and B in the layout the transpose flags expect.
    A = random_array((k, m) if trans_a else (m, k), dtype, seed=1)
    B = random_array((n, k) if trans_b else (k, n), dtype, seed=2)
    C = _output((m, n), dtype, beta, seed=3)
    C0 = C.astype(np.float64)
    opA = A.T if trans_a else A
    opB = B.T if trans_b else B
    expected = alpha * (opA.astype(np.float64) @ opB.astype(np.float64))
    if beta != 0.0:
        expected += beta * C0

    out = _blas.gemm(A, B, C, trans_a=trans_a, trans_b=trans_b,
                     alpha=alpha, beta=beta)

    assert out is C
    assert C.shape == (m, n) and C.dtype == dtype
    assert_allclose(C, expected, dtype=dtype)


def test_gemm_inputs_unchanged(dtype):
    # The seam swaps operands internally; it must not write to A or B.
    A = random_array((3, 5), dtype, seed=1)
    B = random_array((5, 4), dtype, seed=2)
    A0, B0 = A.copy(), B.copy()
    _blas.gemm(A, B, np.empty((3, 4), dtype))
    np.testing.assert_array_equal(A, A0)
    np.testing.assert_array_equal(B, B0)


def test_gemm_k0_gives_zeros(dtype):
    # An empty sum is 0: with k = 0 and beta = 0 every element of C is 0,
    # whatever C held before (NaN here).
    C = np.full((4, 3), np.nan, dtype)
    _blas.gemm(np.empty((4, 0), dtype), np.empty((0, 3), dtype), C)
    np.testing.assert_array_equal(C, np.zeros((4, 3)))


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)], ids=_shape_id)
def test_gemm_empty_c_returned(dtype, shape):
    m, n = shape
    C = np.empty((m, n), dtype)
    out = _blas.gemm(np.ones((m, 5), dtype), np.ones((5, n), dtype), C, beta=2.0)
    assert out is C and out.shape == (m, n)


def test_gemm_accepts_read_only_inputs(dtype):
    A = random_array((3, 5), dtype, seed=1)
    B = random_array((5, 4), dtype, seed=2)
    A.flags.writeable = False
    B.flags.writeable = False
    C = _blas.gemm(A, B, np.empty((3, 4), dtype))
    assert_allclose(C, A.astype(np.float64) @ B, dtype=dtype)


# --- gemv -------------------------------------------------------------------

@pytest.mark.parametrize("alpha_beta", ALPHA_BETA, ids=_ab_id)
@pytest.mark.parametrize("mn", GEMV_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
def test_gemv_matches_numpy(dtype, trans_a, mn, alpha_beta):
    m, n = mn
    alpha, beta = alpha_beta
    A = random_array((m, n), dtype, seed=1)
    opA = A.T if trans_a else A
    x = random_array((opA.shape[1],), dtype, seed=2)
    y = _output((opA.shape[0],), dtype, beta, seed=3)
    expected = alpha * (opA.astype(np.float64) @ x.astype(np.float64))
    if beta != 0.0:
        expected += beta * y.astype(np.float64)

    out = _blas.gemv(A, x, y, trans_a=trans_a, alpha=alpha, beta=beta)

    assert out is y
    assert_allclose(y, expected, dtype=dtype)


@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
def test_gemv_empty_inner_dimension_scales_y(dtype, trans_a):
    # op(A) has no columns, so y := beta * y. BLAS itself returns early
    # when a dimension is 0 and would leave y untouched.
    A = np.empty((0, 4) if trans_a else (4, 0), dtype)
    y = np.full(4, np.nan, dtype)
    _blas.gemv(A, np.empty(0, dtype), y, trans_a=trans_a)
    np.testing.assert_array_equal(y, np.zeros(4))
    y = np.arange(4, dtype=dtype)
    _blas.gemv(A, np.empty(0, dtype), y, trans_a=trans_a, beta=-2.0)
    np.testing.assert_array_equal(y, -2.0 * np.arange(4))


# --- level 1 ----------------------------------------------------------------

@pytest.mark.parametrize("alpha", [1.0, -2.5, 0.0])
@pytest.mark.parametrize("n", VECTOR_SIZES)
def test_axpy_matches_numpy(dtype, n, alpha):
    x = random_array((n,), dtype, seed=1)
    y = random_array((n,), dtype, seed=2)
    expected = alpha * x.astype(np.float64) + y
    out = _blas.axpy(alpha, x, y)
    assert out is y
    assert_allclose(y, expected, dtype=dtype)


@pytest.mark.parametrize("alpha", [2.0, -0.5, 0.0])
@pytest.mark.parametrize("n", VECTOR_SIZES)
def test_scal_matches_numpy(dtype, n, alpha):
    x = random_array((n,), dtype, seed=1)
    expected = alpha * x.astype(np.float64)
    out = _blas.scal(alpha, x)
    assert out is x
    assert_allclose(x, expected, dtype=dtype)


@pytest.mark.parametrize("n", VECTOR_SIZES)
def test_dot_matches_numpy(dtype, n):
    x = random_array((n,), dtype, seed=1)
    y = random_array((n,), dtype, seed=2)
    result = _blas.dot(x, y)
    assert type(result) is float
    assert_allclose(result, x.astype(np.float64) @ y, dtype=dtype)


@pytest.mark.parametrize("n", VECTOR_SIZES)
def test_nrm2_matches_numpy(dtype, n):
    x = random_array((n,), dtype, seed=1)
    result = _blas.nrm2(x)
    assert type(result) is float
    assert_allclose(result, np.linalg.norm(x.astype(np.float64)), dtype=dtype)


def test_nrm2_does_not_overflow(dtype):
    # The naive sqrt(sum(x**2)) overflows for x ~ 1e30 in float32 and
    # x ~ 1e200 in float64; BLAS nrm2 scales.
    big = 1e30 if dtype == np.float32 else 1e200
    x = np.array([3 * big, 4 * big], dtype)
    assert_allclose(_blas.nrm2(x), 5 * big, dtype=dtype)


# --- argument checks --------------------------------------------------------

def _f64(*shape):
    """A float64 C-contiguous array of ones of the given shape."""
    return np.ones(shape, np.float64)


def _read_only(a):
    """``a`` with its writeable flag cleared."""
    a.flags.writeable = False
    return a


def _unaligned(n):
    """A float64 array of ``n`` elements that is not aligned in memory."""
    return np.frombuffer(bytearray(8 * n + 1), dtype=np.float64, offset=1, count=n)


BAD_DTYPES = [np.int64, np.int32, np.float16, np.complex128]


@pytest.mark.parametrize("bad", BAD_DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("position", ["A", "B", "C"])
def test_gemm_rejects_non_float_dtype(position, bad):
    args = {"A": _f64(2, 3), "B": _f64(3, 4), "C": _f64(2, 4)}
    args[position] = args[position].astype(bad)
    with pytest.raises(TypeError, match=f"{position} must have dtype float32 or float64"):
        _blas.gemm(args["A"], args["B"], args["C"])


@pytest.mark.parametrize("position", ["B", "C"])
def test_gemm_rejects_mixed_dtypes(position):
    args = {"A": _f64(2, 3), "B": _f64(3, 4), "C": _f64(2, 4)}
    args[position] = args[position].astype(np.float32)
    with pytest.raises(TypeError, match=f"A and {position} must have the same dtype"):
        _blas.gemm(args["A"], args["B"], args["C"])


# Each case: id, a call that must fail, the exception, a regex the message
# must match.
ERROR_CASES = [
    # non-ndarray inputs
    ("gemm-list-A", lambda: _blas.gemm([[1.0, 2.0]], _f64(2, 1), _f64(1, 1)),
     TypeError, "A must be a numpy.ndarray, got list"),
    ("gemv-list-x", lambda: _blas.gemv(_f64(2, 2), [1.0, 2.0], _f64(2)),
     TypeError, "x must be a numpy.ndarray"),
    ("axpy-list-y", lambda: _blas.axpy(1.0, _f64(2), [1.0, 2.0]),
     TypeError, "y must be a numpy.ndarray"),
    ("scal-list", lambda: _blas.scal(1.0, [1.0]), TypeError, "numpy.ndarray"),
    ("dot-list", lambda: _blas.dot([1.0], _f64(1)), TypeError, "numpy.ndarray"),
    ("nrm2-list", lambda: _blas.nrm2([1.0]), TypeError, "numpy.ndarray"),
    # wrong dtype in level 1/2
    ("gemv-int-A", lambda: _blas.gemv(np.ones((2, 2), int), _f64(2), _f64(2)),
     TypeError, "A must have dtype float32 or float64, got int64"),
    ("gemv-mixed", lambda: _blas.gemv(_f64(2, 2), np.ones(2, np.float32), _f64(2)),
     TypeError, "A and x must have the same dtype, got float64 and float32"),
    ("axpy-float16", lambda: _blas.axpy(1.0, np.ones(2, np.float16), _f64(2)),
     TypeError, "got float16"),
    ("axpy-mixed", lambda: _blas.axpy(1.0, np.ones(2, np.float32), _f64(2)),
     TypeError, "same dtype"),
    ("dot-mixed", lambda: _blas.dot(_f64(2), np.ones(2, np.float32)),
     TypeError, "same dtype"),
    ("scal-int", lambda: _blas.scal(2.0, np.ones(3, np.int32)), TypeError, "got int32"),
    ("nrm2-float16", lambda: _blas.nrm2(np.ones(3, np.float16)), TypeError, "got float16"),
    # non-contiguous and Fortran-ordered
    ("gemm-strided-A", lambda: _blas.gemm(_f64(2, 6)[:, ::2], _f64(3, 4), _f64(2, 4)),
     ValueError, "A must be C-contiguous"),
    ("gemm-fortran-B", lambda: _blas.gemm(_f64(2, 3), np.asfortranarray(_f64(3, 4)),
                                          _f64(2, 4)),
     ValueError, "B must be C-contiguous"),
    ("gemm-fortran-C", lambda: _blas.gemm(_f64(2, 3), _f64(3, 4),
                                          np.asfortranarray(_f64(2, 4))),
     ValueError, "C must be C-contiguous"),
    ("gemm-transposed-view", lambda: _blas.gemm(_f64(3, 2).T, _f64(3, 4), _f64(2, 4)),
     ValueError, "A must be C-contiguous"),
    ("gemv-fortran-A", lambda: _blas.gemv(np.asfortranarray(_f64(2, 3)), _f64(3), _f64(2)),
     ValueError, "A must be C-contiguous"),
    ("axpy-strided-x", lambda: _blas.axpy(1.0, _f64(6)[::2], _f64(3)),
     ValueError, "x must be C-contiguous"),
    ("dot-strided-y", lambda: _blas.dot(_f64(3), _f64(6)[::2]),
     ValueError, "y must be C-contiguous"),
    ("nrm2-reversed", lambda: _blas.nrm2(_f64(3)[::-1]),
     ValueError, "x must be C-contiguous"),
    ("scal-unaligned", lambda: _blas.scal(2.0, _unaligned(3)),
     ValueError, "x must be aligned"),
    # read-only outputs
    ("gemm-readonly-C", lambda: _blas.gemm(_f64(2, 3), _f64(3, 4), _read_only(_f64(2, 4))),
     ValueError, "C is written in place and must be writeable"),
    ("gemv-readonly-y", lambda: _blas.gemv(_f64(2, 3), _f64(3), _read_only(_f64(2))),
     ValueError, "y is written in place"),
    ("axpy-readonly-y", lambda: _blas.axpy(1.0, _f64(3), _read_only(_f64(3))),
     ValueError, "y is written in place"),
    ("scal-readonly", lambda: _blas.scal(2.0, _read_only(_f64(3))),
     ValueError, "x is written in place"),
    # wrong rank
    ("gemm-1d-A", lambda: _blas.gemm(_f64(3), _f64(3, 4), _f64(1, 4)),
     ValueError, re.escape("A must be 2-dimensional, got shape (3,)")),
    ("gemv-2d-x", lambda: _blas.gemv(_f64(2, 3), _f64(3, 1), _f64(2)),
     ValueError, re.escape("x must be 1-dimensional, got shape (3, 1)")),
    ("axpy-2d", lambda: _blas.axpy(1.0, _f64(1, 3), _f64(1, 3)),
     ValueError, "1-dimensional"),
    # shape mismatches, with the shapes in the message
    ("gemm-inner", lambda: _blas.gemm(_f64(3, 4), _f64(5, 2), _f64(3, 2)),
     ValueError, re.escape("op(A) is (3, 4), op(B) is (5, 2)")),
    ("gemm-inner-transposed",
     lambda: _blas.gemm(_f64(3, 4), _f64(2, 5), _f64(3, 2), trans_b=True),
     ValueError, re.escape("op(A) is (3, 4), op(B) is (5, 2)")),
    ("gemm-C", lambda: _blas.gemm(_f64(3, 4), _f64(4, 2), _f64(3, 3)),
     ValueError, re.escape("C has shape (3, 3), expected (3, 2)")),
    ("gemm-C-transposed", lambda: _blas.gemm(_f64(4, 3), _f64(4, 2), _f64(4, 2),
                                             trans_a=True),
     ValueError, re.escape("C has shape (4, 2), expected (3, 2)")),
    ("gemv-x", lambda: _blas.gemv(_f64(2, 3), _f64(2), _f64(2)),
     ValueError, re.escape("A has shape (2, 3)") + ".*x must have 3 elements \\(has 2\\)"),
    ("gemv-y-transposed", lambda: _blas.gemv(_f64(2, 3), _f64(2), _f64(2), trans_a=True),
     ValueError, "transposed.*y must have 3 \\(has 2\\)"),
    ("axpy-length", lambda: _blas.axpy(1.0, _f64(3), _f64(4)),
     ValueError, "axpy: x has 3 elements, y has 4"),
    ("dot-length", lambda: _blas.dot(_f64(3), _f64(2)),
     ValueError, "dot: x has 3 elements, y has 2"),
]


@pytest.mark.parametrize("call, exc, match",
                         [case[1:] for case in ERROR_CASES],
                         ids=[case[0] for case in ERROR_CASES])
def test_argument_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_rejected_call_leaves_output_untouched():
    # Checks run before any write: a failed call must not modify C.
    C = np.full((3, 3), 7.0)
    with pytest.raises(ValueError):
        _blas.gemm(_f64(3, 4), _f64(4, 2), C)
    np.testing.assert_array_equal(C, 7.0)


# --- 32-bit size guard ------------------------------------------------------

@pytest.fixture(scope="module")
def huge_vector(tmp_path_factory):
    """A writable, C-contiguous float32 array of 2**31 elements, 8 GiB.

    It maps a sparse file, so it costs neither RAM nor disk as long as
    nothing reads or writes it. The size is exactly 2**31 on purpose: if
    the guard were missing, the truncated BLAS int would be negative, and
    BLAS would reject it rather than touch 8 GiB.

    Returns
    -------
    numpy.memmap of shape (2**31,)
    """
    n = BLAS_INT_MAX + 1
    path = tmp_path_factory.mktemp("huge") / "sparse.bin"
    with open(path, "wb") as f:
        f.truncate(n * 4)
    try:
        big = np.memmap(path, dtype=np.float32, mode="r+", shape=(n,))
    except (OSError, ValueError, MemoryError) as err:  # e.g. 32-bit address space
        pytest.skip(f"cannot map an 8 GiB sparse file: {err}")
    assert big.flags.c_contiguous and big.flags.writeable
    yield big
    del big


def _guard_cases(big):
    """Calls over ``big`` that must be stopped by the 32-bit size guard."""
    row = big.reshape(1, -1)      # (1, 2**31), C-contiguous view
    col = big.reshape(-1, 1)      # (2**31, 1), C-contiguous view
    one = np.zeros((1, 1), np.float32)
    return {
        "gemm-inner": (lambda: _blas.gemm(row, col, one), "gemm inner dimension"),
        "gemm-rows": (lambda: _blas.gemm(col, one, col), "gemm rows"),
        "gemm-columns": (lambda: _blas.gemm(one, row, row), "gemm columns"),
        "gemv-columns": (lambda: _blas.gemv(row, big, np.zeros(1, np.float32)),
                         "gemv columns"),
        "gemv-rows": (lambda: _blas.gemv(col, np.zeros(1, np.float32), big), "gemv rows"),
        "axpy": (lambda: _blas.axpy(1.0, big, big), "axpy length"),
        "scal": (lambda: _blas.scal(2.0, big), "scal length"),
        "dot": (lambda: _blas.dot(big, big), "dot length"),
        "nrm2": (lambda: _blas.nrm2(big), "nrm2 length"),
    }


@pytest.mark.parametrize("case", ["gemm-inner", "gemm-rows", "gemm-columns",
                                  "gemv-columns", "gemv-rows", "axpy", "scal",
                                  "dot", "nrm2"])
def test_size_guard_rejects_more_than_int32(huge_vector, case):
    call, what = _guard_cases(huge_vector)[case]
    with pytest.raises(ValueError, match=f"{what} is 2147483648, larger than "
                                         f"BLAS's 32-bit integer limit"):
        call()
