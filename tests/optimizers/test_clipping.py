"""Gradient clipping: clip_grad_norm / clip_grad_value against NumPy and PyTorch.

Non-finite gradients without ``error_if_nonfinite`` follow PyTorch's
``clip_grad_norm_`` exactly (asserted below and compared with torch):

* a NaN anywhere makes the total norm NaN, the coefficient NaN, and every
  gradient element of every array NaN;
* an infinity (and no NaN) makes the total norm inf and the coefficient 0:
  finite elements become 0 and the infinite ones NaN (inf * 0).
"""
import math

import numpy as np
import numpy.testing as npt
import pytest

import cdl
from cdl.optimizers import clip_grad_norm, clip_grad_value
from helpers import TOLERANCES

NORM_TYPES = [2.0, 1.0, 3.5, math.inf]
SHAPES = [(5, 7), (7,), (3, 4, 2), (130,)]  # 130: past the BLAS kernels' unrolled blocks


def make_grads(dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return [(scale * rng.standard_normal(s)).astype(dtype) for s in SHAPES]


def make_model_grads(dtype, seed=0):
    """A model's gradients: consecutive views into one flat buffer."""
    model = cdl.Sequential([cdl.layers.Dense(6), cdl.layers.Dense(3)], input_shape=(5,),
                           dtype=np.dtype(dtype).name, seed=0)
    model.grad_buffer[:] = 3.0 * np.random.default_rng(seed).standard_normal(
        model.grad_buffer.size)
    return model


def ref_total_norm(grads, norm_type):
    """PyTorch's rule: the norm of the per-array norms, computed in float64."""
    norms = [np.linalg.norm(np.asarray(g, dtype=np.float64).reshape(-1), ord=norm_type)
             for g in grads]
    return float(np.linalg.norm(np.array(norms), ord=norm_type))


def ref_clip(grads, max_norm, norm_type):
    total = ref_total_norm(grads, norm_type)
    coef = min(1.0, max_norm / (total + 1e-6))
    return total, [np.asarray(g, dtype=np.float64) * coef for g in grads]


def tol(dtype):
    return {"rtol": 1e-12, "atol": 0} if dtype == np.float64 else TOLERANCES[np.dtype(dtype)]


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def torch_clip(torch, grads, max_norm, norm_type, **kwargs):
    params = [torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True)
              for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(np.array(g, copy=True))
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type, foreach=False,
                                           **kwargs)
    return float(total), [p.grad.numpy() for p in params]


# --- clip_grad_norm --------------------------------------------------------------

@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
@pytest.mark.parametrize("layout", ["list", "model", "flat", "single"])
def test_clip_grad_norm_matches_reference(layout, norm_type, dtype):
    if layout == "list":
        grads = make_grads(dtype)
        target = grads
    elif layout == "single":
        grads = make_grads(dtype)[0]
        target = [grads]
    else:
        model = make_model_grads(dtype)
        grads = model.grads if layout == "model" else model.grad_buffer
        target = model.grads
    before = [g.copy() for g in target]
    total0 = ref_total_norm(before, norm_type)
    max_norm = total0 / 3
    expected_total, expected = ref_clip(before, max_norm, norm_type)
    total = clip_grad_norm(grads, max_norm, norm_type)
    assert isinstance(total, float)
    npt.assert_allclose(total, expected_total, **tol(dtype))  # the norm before clipping
    for g, e in zip(target, expected):
        assert g.dtype == dtype
        npt.assert_allclose(g, e, **tol(dtype))
    # Afterwards the norm is max_norm (up to the 1e-6 guard).
    npt.assert_allclose(ref_total_norm(target, norm_type), max_norm, rtol=1e-5)
    assert ref_total_norm(target, norm_type) <= max_norm * (1 + 1e-6)


@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
def test_model_views_flat_buffer_and_copies_agree(norm_type, dtype):
    views, flat, copies = (make_model_grads(dtype) for _ in range(3))
    copy_grads = [g.copy() for g in copies.grads]
    totals = [clip_grad_norm(views.grads, 1.0, norm_type),
              clip_grad_norm(flat.grad_buffer, 1.0, norm_type),
              clip_grad_norm(copy_grads, 1.0, norm_type)]
    assert totals[0] == totals[1]
    npt.assert_allclose(totals[2], totals[0], **tol(dtype))
    npt.assert_array_equal(views.grad_buffer, flat.grad_buffer)
    npt.assert_allclose(np.concatenate([g.reshape(-1) for g in copy_grads]),
                        views.grad_buffer, **tol(dtype))


@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
@pytest.mark.parametrize("layout", ["list", "model"])
def test_clip_grad_norm_matches_torch(layout, norm_type, dtype, torch):
    if layout == "list":
        grads = make_grads(dtype)
        clip = grads
    else:
        model = make_model_grads(dtype)
        grads = [g.copy() for g in model.grads]
        clip = model.grads
    for max_norm in (ref_total_norm(grads, norm_type) / 4, 0.0):
        before = [g.copy() for g in clip]
        expected_total, expected = torch_clip(torch, before, max_norm, norm_type)
        total = clip_grad_norm(clip, max_norm, norm_type)
        npt.assert_allclose(total, expected_total, **tol(dtype))
        for g, e in zip(clip, expected):
            npt.assert_allclose(g, e, **tol(dtype))
        for g, b in zip(clip, before):  # restore for the next max_norm
            g[...] = b
    # max_norm 0 zeroes the gradients (as in PyTorch).
    clip_grad_norm(clip, 0.0, norm_type)
    assert all(np.all(g == 0) for g in clip)


@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
def test_no_change_under_max_norm(norm_type, dtype):
    grads = make_grads(dtype)
    model = make_model_grads(dtype)
    for target in (grads, model.grads, model.grad_buffer):
        before = [g.copy() for g in (target if isinstance(target, list) else [target])]
        total0 = ref_total_norm(before, norm_type)
        total = clip_grad_norm(target, 2 * total0, norm_type)
        npt.assert_allclose(total, total0, **tol(dtype))
        after = target if isinstance(target, list) else [target]
        for g, b in zip(after, before):
            npt.assert_array_equal(g, b)


def test_zero_size_and_zero_gradients(dtype):
    grads = [np.zeros(0, dtype), np.zeros((2, 3), dtype)]
    assert clip_grad_norm(grads, 1.0) == 0.0
    assert all(np.all(g == 0) for g in grads)
    g = make_grads(dtype)[1]
    expected_total, expected = ref_clip([g], 1.0, 2.0)
    assert clip_grad_norm([np.zeros(0, dtype), g], 1.0) == pytest.approx(expected_total,
                                                                         rel=1e-6)
    npt.assert_allclose(g, expected[0], **tol(dtype))


# --- non-finite gradients ----------------------------------------------------------------

def with_bad_value(dtype, bad, contiguous, where):
    """Gradients with one non-finite element, in the first or the last array."""
    if contiguous:
        model = make_model_grads(dtype)
        grads = model.grads
    else:
        grads = make_grads(dtype)
    grads[where].reshape(-1)[37 % grads[where].size] = bad
    return grads


BAD = [np.nan, np.inf, -np.inf]
WHERE = pytest.mark.parametrize("where", [0, -1], ids=["first", "last"])


@pytest.mark.parametrize("bad", BAD, ids=str)
@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
@pytest.mark.parametrize("contiguous", [False, True], ids=["list", "model"])
@WHERE
def test_error_if_nonfinite_raises_and_leaves_grads(contiguous, norm_type, bad, where, dtype):
    grads = with_bad_value(dtype, bad, contiguous, where)
    before = [g.copy() for g in grads]
    with pytest.raises(FloatingPointError, match="non-finite"):
        clip_grad_norm(grads, 1.0, norm_type, error_if_nonfinite=True)
    for g, b in zip(grads, before):
        npt.assert_array_equal(g, b)  # NaNs compare equal here


@pytest.mark.parametrize("bad", BAD, ids=str)
@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
@pytest.mark.parametrize("contiguous", [False, True], ids=["list", "model"])
@WHERE
def test_nonfinite_propagates_as_in_pytorch(contiguous, norm_type, bad, where, dtype):
    grads = with_bad_value(dtype, bad, contiguous, where)
    bad_mask = [~np.isfinite(g) for g in grads]
    total = clip_grad_norm(grads, 1.0, norm_type)
    if np.isnan(bad):
        assert math.isnan(total)
        assert all(np.all(np.isnan(g)) for g in grads)
    else:
        assert total == math.inf
        for g, mask in zip(grads, bad_mask):
            assert np.all(np.isnan(g[mask]))
            assert np.all(g[~mask] == 0)


@pytest.mark.parametrize("bad", BAD, ids=str)
@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
@WHERE
def test_nonfinite_matches_torch(norm_type, bad, where, dtype, torch):
    grads = with_bad_value(dtype, bad, False, where)
    expected_total, expected = torch_clip(torch, grads, 1.0, norm_type)
    total = clip_grad_norm(grads, 1.0, norm_type)
    assert (math.isnan(total) and math.isnan(expected_total)) or total == expected_total
    for g, e in zip(grads, expected):
        npt.assert_array_equal(g, e)


# --- clip_grad_value ---------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["list", "model", "flat"])
def test_clip_grad_value_clamps(layout, dtype):
    if layout == "list":
        grads = make_grads(dtype)
        target = grads
    else:
        model = make_model_grads(dtype)
        target = model.grads
        grads = model.grads if layout == "model" else model.grad_buffer
    before = [g.copy() for g in target]
    assert clip_grad_value(grads, 1.5) is None
    for g, b in zip(target, before):
        assert g.dtype == dtype
        npt.assert_array_equal(g, np.clip(b, -1.5, 1.5))
    assert any(np.any(np.abs(b) > 1.5) for b in before)  # something was clamped


def test_clip_grad_value_edge_values(dtype):
    g = np.array([np.nan, np.inf, -np.inf, 0.5, -3.0], dtype)
    clip_grad_value([g], 1.0)
    npt.assert_array_equal(g, np.array([np.nan, 1.0, -1.0, 0.5, -1.0], dtype))  # NaN stays
    h = make_grads(dtype)[0]
    clip_grad_value(h, 0.0)
    assert np.all(h == 0)


def test_clip_grad_value_matches_torch(dtype, torch):
    grads = make_grads(dtype) + [np.array([np.nan, np.inf, -np.inf], dtype)]
    params = [torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True)
              for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_value_(params, 2.0, foreach=False)
    clip_grad_value(grads, 2.0)
    for g, p in zip(grads, params):
        npt.assert_array_equal(g, p.grad.numpy())


# --- argument checks -------------------------------------------------------------------

def test_invalid_arguments_raise(dtype):
    grads = make_grads(dtype)
    before = [g.copy() for g in grads]
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(grads, -1.0)
    with pytest.raises(TypeError, match="max_norm"):
        clip_grad_norm(grads, "a")
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(grads, float("nan"))
    for norm_type in (0, 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="norm_type"):
            clip_grad_norm(grads, 1.0, norm_type)
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value(grads, -0.5)
    with pytest.raises(TypeError, match="clip_value"):
        clip_grad_value(grads, None)
    for g, b in zip(grads, before):
        npt.assert_array_equal(g, b)


@pytest.mark.parametrize("clip", [
    lambda g: clip_grad_norm(g, 1.0),
    lambda g: clip_grad_value(g, 0.1),
], ids=["norm", "value"])
def test_invalid_gradients_raise(clip):
    with pytest.raises(TypeError, match="float32 or float64"):
        clip([np.ones(3, np.int64)])
    with pytest.raises(TypeError, match="float32 or float64"):
        clip([np.ones(3), np.ones(3, np.float16)])
    with pytest.raises(TypeError):
        clip([[1.0, 2.0]])
    with pytest.raises(ValueError):
        clip([])
    with pytest.raises(ValueError, match="contiguous"):
        clip([np.ones((4, 4))[:, ::2]])
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        clip([ro])
