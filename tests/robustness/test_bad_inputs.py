"""A matrix of bad inputs for models, layers and losses.

Every case either works -- and then gives the same result as the same call
on a clean, C-contiguous float copy of the input -- or raises a
``TypeError``/``ValueError`` (``RuntimeError`` for calls out of order)
whose message names the problem. No crash, no silent wrong answer, and the
caller's arrays are never modified.
"""
import os
import re
import subprocess
import sys

import numpy as np
import numpy.testing as npt
import pytest

import cdl
from cdl import initializers, layers, losses
from helpers import assert_allclose, random_array

N, FEATURES, OUT, CLASSES = 6, 4, 3, 3

X = random_array((N, FEATURES), seed=1)
G = random_array((N, OUT), seed=2)


# --- shared helpers -----------------------------------------------------------

def clean(a, dtype):
    """The clean reference for a bad input: a C-contiguous copy of ``dtype``."""
    return np.array(a, dtype=dtype, order="C")


def snapshot(a):
    """What the caller's argument holds now, to check it is never modified."""
    return (np.array(a, copy=True), a.flags.writeable) if isinstance(a, np.ndarray) else None


def assert_untouched(a, saved):
    if saved is not None:
        npt.assert_array_equal(a, saved[0])
        assert a.flags.writeable == saved[1]


def with_value(a, value, index=(1, 2)):
    """A float64 copy of ``a`` with ``value`` at ``index``."""
    a = np.array(a, dtype=np.float64)
    a[index[:a.ndim]] = value
    return a


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _unaligned(a):
    """A C-contiguous copy of ``a`` starting one byte into its buffer."""
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = buf[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


class _Subclass(np.ndarray):
    """An ndarray subclass, as third-party array types often are."""


#: Memory layouts that hold the same kind of values as a clean array; every
#: one must work and give the result of a clean contiguous copy.
LAYOUTS = {
    "every_other_row": lambda a: np.repeat(a, 2, axis=0)[::2],
    "every_other_column": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
    "transposed": lambda a: np.ascontiguousarray(a.T).T,
    "fortran_order": np.asfortranarray,
    "negative_strides": lambda a: np.flip(np.flip(a).copy()),
    "read_only": _read_only,
    "unaligned": _unaligned,
    "big_endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    "broadcast_zero_strides": lambda a: np.broadcast_to(a[:1], a.shape),
    "ndarray_subclass": lambda a: a.copy().view(_Subclass),
}
LAYOUT_PARAMS = [pytest.param(fn, id=name) for name, fn in LAYOUTS.items()]

#: Input conversions that must work: (make the bad input from float64
#: values, dtype a standalone layer builds itself in when fed it).
CONVERSIONS = {
    "int64": (lambda a: np.round(2 * a).astype(np.int64), np.float32),
    "int8": (lambda a: np.round(2 * a).astype(np.int8), np.float32),
    "uint8": (lambda a: np.abs(np.round(2 * a)).astype(np.uint8), np.float32),
    "bool": (lambda a: a > 0, np.float32),
    "float16": (lambda a: a.astype(np.float16), np.float32),
    "float32": (lambda a: a.astype(np.float32), np.float32),
    "float64": (lambda a: a.astype(np.float64), np.float64),
    "big_endian_float64": (lambda a: a.astype(">f8"), np.float64),
    "longdouble": (lambda a: a.astype(np.longdouble), None),
    "nested_list": (lambda a: a.tolist(), np.float32),
    "tuple_of_tuples": (lambda a: tuple(map(tuple, a.tolist())), np.float32),
    "int_nested_list": (lambda a: np.round(a).astype(int).tolist(), np.float32),
}
CONVERSION_PARAMS = [pytest.param(fn, dt, id=name) for name, (fn, dt) in CONVERSIONS.items()]

#: Inputs that hold no real numbers: (value, exception, message pattern).
NOT_NUMBERS = {
    "object": (X.astype(object), TypeError, "must hold real numbers.*object"),
    "complex": (X.astype(complex), TypeError, "must hold real numbers.*complex"),
    "strings": (X.astype(str), TypeError, "must hold real numbers"),
    "string_list": ([["a", "b", "c", "d"]] * N, TypeError, "must hold real numbers"),
    "bytes": (X.astype(bytes), TypeError, "must hold real numbers"),
    "datetime": (np.zeros((N, FEATURES), dtype="datetime64[s]"), TypeError,
                 "must hold real numbers.*datetime"),
    "none": (None, TypeError, "must hold real numbers"),
    "ragged_list": ([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], ValueError,
                    "could not be turned into an array"),
}
NOT_NUMBER_PARAMS = [pytest.param(v, e, m, id=k) for k, (v, e, m) in NOT_NUMBERS.items()]


# --- Sequential -----------------------------------------------------------------

def make_model(dtype="float32", input_shape=(FEATURES,)):
    return cdl.Sequential(
        [layers.Flatten(), layers.Dense(5, activation="tanh"), layers.Dropout(0.25),
         layers.Dense(OUT)], input_shape=input_shape, dtype=dtype, seed=0)


def run_model(x, grad, dtype, training=False, input_shape=(FEATURES,)):
    """Forward and backward through a fresh seeded model; copies of the results."""
    model = make_model(dtype, input_shape)
    y = model.forward(x, training=training)
    dx = model.backward(grad)
    return np.array(y), np.array(dx), [g.copy() for g in model.grads]


def assert_same_run(actual, reference, dtype):
    (y, dx, grads), (y_ref, dx_ref, grads_ref) = actual, reference
    for a, r in [(y, y_ref), (dx, dx_ref), *zip(grads, grads_ref)]:
        assert a.dtype == dtype and a.shape == r.shape
        assert_allclose(a, r, dtype)


MODEL_REJECTS = [
    pytest.param(X[0], ValueError, r"x has shape \(4,\), expected \(batch_size, 4", id="1d"),
    pytest.param(X[None], ValueError, r"x has shape \(1, 6, 4\)", id="3d"),
    pytest.param(X[:, :3], ValueError, r"x has shape \(6, 3\)", id="too_few_features"),
    pytest.param(np.hstack([X, X]), ValueError, r"x has shape \(6, 8\)", id="too_many_features"),
    pytest.param(1.0, ValueError, r"x has shape \(\)", id="scalar"),
    pytest.param(np.float32(1.0), ValueError, r"x has shape \(\)", id="numpy_scalar"),
    pytest.param([], ValueError, r"x has shape \(0,\)", id="empty_list"),
    pytest.param(with_value(X, np.nan), ValueError, "x contains NaN", id="nan"),
    pytest.param(with_value(X, np.inf), ValueError, "x contains infinity", id="inf"),
    pytest.param(with_value(X, -np.inf), ValueError, "x contains infinity", id="minus_inf"),
    pytest.param(with_value(with_value(X, np.inf), np.nan, (0, 0)), ValueError,
                 "x contains NaN", id="nan_and_inf"),
    pytest.param(np.full((N, FEATURES), 1e300), ValueError,
                 "x contains infinity.*too large for float32", id="too_large_for_float32",
                 marks=pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")),
]


@pytest.mark.parametrize("x, exc, match", MODEL_REJECTS + NOT_NUMBER_PARAMS)
def test_model_forward_rejects(x, exc, match):
    model = make_model("float32")
    saved = snapshot(x)
    with pytest.raises(exc, match=match):
        model.forward(x)
    assert_untouched(x, saved)


@pytest.mark.parametrize("x", [pytest.param(X[0], id="1d"), pytest.param(2.0, id="scalar")])
def test_unbuilt_model_rejects_missing_batch_axis(x):
    model = cdl.Sequential([layers.Dense(2)])
    with pytest.raises(ValueError, match=r"expected \(batch_size, features...\).*x\[None\]"):
        model.forward(x)
    assert not model.built


@pytest.mark.parametrize("convert, _", CONVERSION_PARAMS)
def test_model_converts_input(convert, _, dtype):
    x = convert(X)
    saved = snapshot(x)
    actual = run_model(x, G, dtype)
    assert_same_run(actual, run_model(clean(x, dtype), G, dtype), dtype)
    assert_untouched(x, saved)


@pytest.mark.parametrize("layout", LAYOUT_PARAMS)
def test_model_layouts(layout, dtype):
    x, grad = layout(X.astype(dtype)), layout(G.astype(dtype))
    saved_x, saved_grad = snapshot(x), snapshot(grad)
    actual = run_model(x, grad, dtype, training=True)
    reference = run_model(clean(x, dtype), clean(grad, dtype), dtype, training=True)
    assert_same_run(actual, reference, dtype)
    assert_untouched(x, saved_x)
    assert_untouched(grad, saved_grad)


@pytest.mark.parametrize("layout", LAYOUT_PARAMS)
def test_model_layouts_of_3d_input_through_flatten(layout, dtype):
    x3 = random_array((N, 2, 2), seed=7).astype(dtype)
    x = layout(x3)
    saved = snapshot(x)
    actual = run_model(x, G, dtype, input_shape=(2, 2))
    assert_same_run(actual, run_model(clean(x, dtype), G, dtype, input_shape=(2, 2)), dtype)
    assert_untouched(x, saved)


def test_no_float64_sneaks_into_a_float32_model():
    model = make_model("float32")
    y = model.forward(X, training=True)  # float64 input
    loss = losses.CrossEntropy()
    loss.forward(y, np.arange(N) % OUT)
    upstream = loss.backward()
    dx = model.backward(upstream.astype(np.float64))  # float64 gradient
    arrays = [y, upstream, dx, model.param_buffer, model.grad_buffer,
              *model.params, *model.grads]
    assert [a.dtype for a in arrays] == [np.float32] * len(arrays)
    for layer in model.layers:
        assert layer.dtype == np.float32
        assert all(p.dtype == np.float32 for p in layer.params + layer.grads)


def test_model_empty_batch(dtype):
    model = make_model(dtype)
    model.forward(X)
    model.backward(G)
    assert any(np.any(g != 0) for g in model.grads)
    y = model.forward(np.zeros((0, FEATURES)))
    assert y.shape == (0, OUT) and y.dtype == dtype
    dx = model.backward(np.zeros((0, OUT)))
    assert dx.shape == (0, FEATURES) and dx.dtype == dtype
    assert all(not np.any(g) for g in model.grads)  # overwritten: no stale gradient


def test_unbuilt_model_builds_on_an_empty_batch():
    model = cdl.Sequential([layers.Dense(2)], seed=0)
    assert model.forward(np.zeros((0, FEATURES))).shape == (0, 2)
    assert model.input_shape == (FEATURES,)


def test_model_empty_batch_of_3d_input_through_flatten():
    model = make_model("float64", input_shape=(2, 2))
    assert model.forward(np.zeros((0, 2, 2))).shape == (0, OUT)
    assert model.backward(np.zeros((0, OUT))).shape == (0, 2, 2)


def test_model_backward_before_forward():
    with pytest.raises(RuntimeError, match="backward called before forward"):
        make_model().backward(G)


MODEL_BAD_GRADS = [
    pytest.param(G[:, :2], ValueError, r"grad has shape \(6, 2\), expected \(6, 3\)",
                 id="too_few_columns"),
    pytest.param(G[:4], ValueError, r"grad has shape \(4, 3\), expected \(6, 3\)",
                 id="too_few_rows"),
    pytest.param(G.T, ValueError, r"grad has shape \(3, 6\)", id="transposed_shape"),
    pytest.param(G[0], ValueError, r"grad has shape \(3,\)", id="1d"),
    pytest.param(G[None], ValueError, r"grad has shape \(1, 6, 3\)", id="3d"),
    pytest.param(1.0, ValueError, r"grad has shape \(\)", id="scalar"),
    pytest.param(G.astype(object), TypeError, "grad must hold real numbers", id="object"),
    pytest.param(G.astype(complex), TypeError, "grad must hold real numbers", id="complex"),
    pytest.param([[1.0, 2.0, 3.0], [1.0]], ValueError, "grad could not be turned",
                 id="ragged_list"),
]


@pytest.mark.parametrize("grad, exc, match", MODEL_BAD_GRADS)
def test_model_backward_rejects(grad, exc, match):
    model = make_model()
    model.forward(X)
    with pytest.raises(exc, match=match):
        model.backward(grad)


# --- standalone layers --------------------------------------------------------------

LAYER_FACTORIES = {
    "Dense": lambda **kw: layers.Dense(OUT, **kw),
    "Dense_relu": lambda **kw: layers.Dense(OUT, activation="relu", **kw),
    "Dense_gelu": lambda **kw: layers.Dense(OUT, activation="gelu", **kw),
    "Dense_softmax": lambda **kw: layers.Dense(OUT, activation="softmax", **kw),
    "ReLU": layers.ReLU,
    "LeakyReLU": lambda **kw: layers.LeakyReLU(0.2, **kw),
    "Sigmoid": layers.Sigmoid,
    "Tanh": layers.Tanh,
    "Softmax": layers.Softmax,
    "GELU": layers.GELU,
    "ELU": lambda **kw: layers.ELU(0.5, **kw),
    "Activation_tanh": lambda **kw: layers.Activation("tanh", **kw),
    "Dropout": lambda **kw: layers.Dropout(0.5, **kw),
    "Flatten": layers.Flatten,
}
LAYER_PARAMS = [pytest.param(f, id=name) for name, f in LAYER_FACTORIES.items()]

LAYER_NAN_PARAMS = [pytest.param(f, id=name) for name, f in LAYER_FACTORIES.items()]


def run_layer(layer, x, grad=None):
    """Forward and backward (of ``grad`` or a fixed random gradient) through
    ``layer``; copies of the results."""
    y = layer.forward(x)
    if grad is None:
        grad = random_array(y.shape, seed=2).astype(y.dtype)
    dx = layer.backward(grad)
    return np.array(y), np.array(dx), [g.copy() for g in layer.grads]


@pytest.mark.parametrize("x, exc, match", NOT_NUMBER_PARAMS + [
    pytest.param(1.0, ValueError, "must have a batch axis, got a scalar", id="scalar"),
    pytest.param(np.float64(1.0), ValueError, "must have a batch axis, got a scalar",
                 id="numpy_scalar"),
])
@pytest.mark.parametrize("make_layer", LAYER_PARAMS)
def test_layer_forward_rejects(make_layer, x, exc, match):
    layer = make_layer()
    with pytest.raises(exc, match=match):
        layer.forward(x)


@pytest.mark.parametrize("x, shape", [
    pytest.param(X[0], r"\(4,\)", id="1d"),
    pytest.param(X[None], r"\(1, 6, 4\)", id="3d"),
    pytest.param(X[:, :3], r"\(6, 3\)", id="too_few_features"),
    pytest.param(np.hstack([X, X]), r"\(6, 8\)", id="too_many_features"),
    pytest.param(1.0, r"\(\)", id="scalar"),
])
@pytest.mark.parametrize("make_layer", LAYER_PARAMS)
def test_built_layer_rejects_wrong_shape(make_layer, x, shape):
    layer = make_layer()
    layer.forward(X)
    with pytest.raises(ValueError, match=rf"has shape {shape}, expected \(batch_size, 4"):
        layer.forward(x)


def test_dense_rejects_input_without_feature_axis():
    with pytest.raises(ValueError, match="Dense needs inputs with a feature axis"):
        layers.Dense(2).forward(X[0])


@pytest.mark.parametrize("convert, built_dtype", CONVERSION_PARAMS)
@pytest.mark.parametrize("make_layer", LAYER_PARAMS)
def test_layer_converts_input(make_layer, convert, built_dtype):
    x = convert(X)
    saved = snapshot(x)
    layer = make_layer()
    actual = run_layer(layer, x)  # first input: decides the layer's dtype
    if built_dtype is not None:
        assert layer.dtype == built_dtype
    assert_same_run(actual, run_layer(layer, clean(x, layer.dtype)), layer.dtype)
    assert_untouched(x, saved)


@pytest.mark.parametrize("layout", LAYOUT_PARAMS)
@pytest.mark.parametrize("make_layer", LAYER_PARAMS)
def test_layer_layouts(make_layer, layout, dtype):
    layer = make_layer()
    out_shape = (N, *layer.compute_output_shape((FEATURES,)))
    x, grad = layout(X.astype(dtype)), layout(random_array(out_shape, seed=2).astype(dtype))
    saved_x, saved_grad = snapshot(x), snapshot(grad)
    actual = run_layer(layer, x, grad)
    assert layer.dtype == dtype
    assert_same_run(actual, run_layer(layer, clean(x, dtype), clean(grad, dtype)), dtype)
    assert_untouched(x, saved_x)
    assert_untouched(grad, saved_grad)


@pytest.mark.parametrize("make_layer", LAYER_PARAMS)
def test_no_float64_sneaks_into_a_float32_layer(make_layer):
    layer = make_layer(dtype="float32")
    y = layer.forward(X)
    dx = layer.backward(random_array(y.shape, seed=2))  # float64 gradient
    arrays = [y, dx, *layer.params, *layer.grads]
    assert [a.dtype for a in arrays] == [np.float32] * len(arrays)


@pytest.mark.parametrize("make_layer", LAYER_NAN_PARAMS)
def test_layer_nan_input_raises_or_propagates(make_layer):
    x = with_value(X, np.nan)
    layer = make_layer()
    try:
        y = layer.forward(x)
    except ValueError as err:
        assert "NaN" in str(err)
        return
    assert np.isnan(y[1]).any(), "a NaN in the input vanished from the output"
    clean_rows = layer.forward(np.delete(x, 1, axis=0))
    assert_allclose(np.delete(y, 1, axis=0), clean_rows)


@pytest.mark.parametrize("make_layer", LAYER_PARAMS)
def test_layer_empty_batch(make_layer, dtype):
    layer = make_layer()
    run_layer(layer, X.astype(dtype))
    y = layer.forward(np.zeros((0, FEATURES), dtype=dtype), training=True)
    assert y.shape[0] == 0 and y.shape[1:] == layer.output_shape and y.dtype == dtype
    dx = layer.backward(np.zeros(y.shape))
    assert dx.shape == (0, FEATURES) and dx.dtype == dtype
    assert all(not np.any(g) for g in layer.grads)  # overwritten: no stale gradient


@pytest.mark.parametrize("make_layer", LAYER_PARAMS)
def test_layer_backward_before_forward(make_layer):
    with pytest.raises(RuntimeError, match="backward called before forward"):
        make_layer().backward(G)


@pytest.mark.parametrize("grad, exc, match", [
    pytest.param(lambda g: g[:, :2], ValueError, r"has shape \(6, 2\), expected \(6, ",
                 id="too_few_columns"),
    pytest.param(lambda g: g[:4], ValueError, r"has shape \(4, \d\), expected \(6, ",
                 id="too_few_rows"),
    pytest.param(lambda g: g[0], ValueError, r"has shape \(\d,\), expected \(6, ", id="1d"),
    pytest.param(lambda g: 1.0, ValueError, r"has shape \(\), expected \(6, ", id="scalar"),
    pytest.param(lambda g: g.astype(object), TypeError, "must hold real numbers",
                 id="object"),
    pytest.param(lambda g: [[1.0, 2.0], [1.0]], ValueError, "could not be turned",
                 id="ragged_list"),
])
@pytest.mark.parametrize("make_layer", LAYER_PARAMS)
def test_layer_backward_rejects(make_layer, grad, exc, match):
    layer = make_layer()
    y = layer.forward(X)
    with pytest.raises(exc, match=match):
        layer.backward(grad(np.ones_like(y)))


# --- losses --------------------------------------------------------------------------

PRED = random_array((N, CLASSES), seed=3)
REG_TARGET = random_array((N, CLASSES), seed=4)
BCE_TARGET = random_array((N, CLASSES), seed=5, low=0.0, high=1.0)
LABELS = np.array([0, 2, 1, 1, 0, 2])
PROBS = np.random.default_rng(6).dirichlet(np.ones(CLASSES), size=N)

#: name -> (loss factory, clean target, dtype of a clean target)
LOSSES = {
    "MSE": (losses.MSE, REG_TARGET, np.float64),
    "MAE": (losses.MAE, REG_TARGET, np.float64),
    "Huber": (lambda: losses.Huber(delta=0.5), REG_TARGET, np.float64),
    "BCE": (losses.BinaryCrossEntropy, BCE_TARGET, np.float64),
    "CE_labels": (losses.CrossEntropy, LABELS, np.int64),
    "CE_probs": (losses.CrossEntropy, PROBS, np.float64),
    "CE_smoothed": (lambda: losses.CrossEntropy(label_smoothing=0.1), LABELS, np.int64),
}
LABEL_LOSSES = ("CE_labels", "CE_smoothed")
CE_LOSSES = ("CE_labels", "CE_probs", "CE_smoothed")


def run_loss(name, pred, target):
    loss = LOSSES[name][0]()
    value = loss.forward(pred, target)
    assert isinstance(value, float)
    return value, loss.backward()


def assert_same_loss(actual, reference):
    (value, grad), (value_ref, grad_ref) = actual, reference
    assert grad.dtype == grad_ref.dtype and grad.shape == grad_ref.shape
    assert_allclose(value, value_ref, grad.dtype)
    assert_allclose(grad, grad_ref, grad.dtype)


def _with_huge_uint64_label(labels):
    """uint64 labels with 2**63 + 1, which wraps to a negative int64, at position 1."""
    labels = labels.astype(np.uint64)
    labels[labels == 2] = 2**63 + 1
    return labels


def _with_nan_or_inf(value):
    return lambda p, t: (p, with_value(t, value, (1, 0)))


#: Bad (pred, target) pairs that every loss must reject.
GENERIC_LOSS_REJECTS = {
    "pred_object": (lambda p, t: (p.astype(object), t), TypeError, "pred must hold real"),
    "pred_complex": (lambda p, t: (p.astype(complex), t), TypeError, "pred must hold real"),
    "pred_strings": (lambda p, t: (p.astype(str), t), TypeError, "pred must hold real"),
    "pred_none": (lambda p, t: (None, t), TypeError, "pred must hold real"),
    "pred_ragged": (lambda p, t: ([[1.0, 2.0], [1.0]], t), ValueError,
                    "pred could not be turned into an array"),
    "target_object": (lambda p, t: (p, t.astype(object)), TypeError, "must hold real"),
    "target_complex": (lambda p, t: (p, t.astype(complex)), TypeError, "must hold real"),
    "target_strings": (lambda p, t: (p, t.astype(str)), TypeError, "must hold real"),
    "target_none": (lambda p, t: (p, None), (TypeError, ValueError), "target|labels"),
    "target_ragged": (lambda p, t: (p, [[0, 1], [1]]), ValueError,
                      "target could not be turned into an array"),
    "target_nan": (_with_nan_or_inf(np.nan), ValueError, "contains NaN"),
    "target_inf": (_with_nan_or_inf(np.inf), ValueError, "contains infinity"),
    "target_minus_inf": (_with_nan_or_inf(-np.inf), ValueError, "contains infinity"),
    "target_too_short": (lambda p, t: (p, t[:-1]), ValueError, r"shape \(5"),
    "target_too_long": (lambda p, t: (p, np.concatenate([t, t[:1]])), ValueError,
                        r"shape \(7"),
    "empty_batch": (lambda p, t: (p[:0], t[:0]), ValueError, "loss of an empty batch"),
}

#: Bad (pred, target) pairs specific to some losses: (losses, make, exc, match).
SPECIFIC_LOSS_REJECTS = {
    "target_transposed_shape": (("MSE", "MAE", "Huber", "BCE", "CE_probs"),
                                lambda p, t: (p, t.T), ValueError,
                                r"has shape \(3, 6\), expected \(6, 3\)"),
    "target_n1_for_1d_pred": (("MSE", "MAE", "Huber", "BCE"),
                              lambda p, t: (p[:, 0], t[:, :1]), ValueError,
                              r"has shape \(6, 1\), expected \(6,\)"),
    "bce_target_above_1": (("BCE",), lambda p, t: (p, t + 1.0), ValueError,
                           r"targets must lie in \[0, 1\]"),
    "bce_target_below_0": (("BCE",), lambda p, t: (p, t - 1.0), ValueError,
                           r"targets must lie in \[0, 1\]"),
    "label_out_of_range": (LABEL_LOSSES, lambda p, t: (p, np.where(t == 2, 3, t)),
                           ValueError, "label 3 at position 1 is out of range for 3 classes"),
    "label_negative": (LABEL_LOSSES, lambda p, t: (p, t - 1), ValueError,
                       "label -1 at position 0 is out of range"),
    "label_fractional_float": (LABEL_LOSSES, lambda p, t: (p, t + 0.5), ValueError,
                               "whole class numbers"),
    "label_huge_float": (LABEL_LOSSES, lambda p, t: (p, np.where(t == 2, 1e30, t)),
                         ValueError, r"label 1e\+30 at position 1 is out of range"),
    "label_huge_uint64": (LABEL_LOSSES,
                          lambda p, t: (p, _with_huge_uint64_label(t)),
                          ValueError, f"label {2**63 + 1} at position 1 is out of range"),
    "labels_2d_int": (LABEL_LOSSES, lambda p, t: (p, np.eye(CLASSES, dtype=int)[t]),
                      ValueError, r"integer labels must have shape \(6,\) or \(6, 1\)"),
    "labels_row_vector": (LABEL_LOSSES, lambda p, t: (p, t[None]), ValueError,
                          r"got \(1, 6\)"),
    "labels_scalar": (LABEL_LOSSES, lambda p, t: (p, 1), ValueError, r"got \(\)"),
    "probs_too_few_classes": (("CE_probs",), lambda p, t: (p, t[:, :2]), ValueError,
                              r"target probabilities has shape \(6, 2\), expected \(6, 3\)"),
    "probs_3d": (("CE_probs",), lambda p, t: (p, t[None]), ValueError,
                 r"has shape \(1, 6, 3\)"),
    "probs_negative": (("CE_probs",), lambda p, t: (p, t - 0.5), ValueError,
                       "target probabilities must be non-negative"),
    "logits_1d": (CE_LOSSES, lambda p, t: (p[0], t), ValueError,
                  r"logits must have shape \(n, classes\), got \(3,\)"),
    "logits_3d": (CE_LOSSES, lambda p, t: (p[None], t), ValueError,
                  r"for predictions of shape \(1, 6, 3\) expected integer labels of shape "
                  r"\(1, 6\)"),
    "logits_scalar": (CE_LOSSES, lambda p, t: (1.0, t), ValueError,
                      r"logits must have shape \(n, classes\), got \(\)"),
    "logits_no_classes": (LABEL_LOSSES, lambda p, t: (p[:, :0], t * 0), ValueError,
                          "at least one class"),
}

LOSS_REJECT_PARAMS = [
    pytest.param(name, make, exc, match, id=f"{name}-{case}")
    for case, (make, exc, match) in GENERIC_LOSS_REJECTS.items() for name in LOSSES
] + [
    pytest.param(name, make, exc, match, id=f"{name}-{case}")
    for case, (names, make, exc, match) in SPECIFIC_LOSS_REJECTS.items() for name in names
]


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("name, make, exc, match", LOSS_REJECT_PARAMS)
def test_loss_forward_rejects(name, make, exc, match):
    pred, target = make(PRED, LOSSES[name][1])
    saved_pred, saved_target = snapshot(pred), snapshot(target)
    with pytest.raises(exc, match=match):
        LOSSES[name][0]().forward(pred, target)
    assert_untouched(pred, saved_pred)
    assert_untouched(target, saved_target)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_of_nan_predictions_is_nan(name):
    assert np.isnan(LOSSES[name][0]().forward(with_value(PRED, np.nan), LOSSES[name][1]))


@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradient_at_a_nan_prediction_is_nan(name):
    loss = LOSSES[name][0]()
    loss.forward(with_value(PRED, np.nan), LOSSES[name][1])
    assert np.isnan(loss.backward()[1]).any()


@pytest.mark.parametrize("name", LOSSES)
def test_loss_backward_before_forward(name):
    with pytest.raises(RuntimeError, match="backward called before forward"):
        LOSSES[name][0]().backward()


@pytest.mark.parametrize("convert, _", CONVERSION_PARAMS)
@pytest.mark.parametrize("name", LOSSES)
def test_loss_converts_pred(name, convert, _):
    pred, target = convert(PRED), LOSSES[name][1]
    saved = snapshot(pred)
    value, grad = run_loss(name, pred, target)
    assert grad.dtype == (np.float32 if getattr(pred, "dtype", None) == np.float32
                          else np.float64)
    assert_same_loss((value, grad), run_loss(name, clean(pred, grad.dtype), target))
    assert_untouched(pred, saved)


DENSE_TARGET_CONVERSIONS = {
    "int64": lambda t: np.round(t).astype(np.int64),
    "bool": lambda t: t > 0.5,
    "float16": lambda t: t.astype(np.float16),
    "float32": lambda t: t.astype(np.float32),
    "big_endian": lambda t: t.astype(">f8"),
    "nested_list": lambda t: t.tolist(),
}
LABEL_CONVERSIONS = {
    "int32": lambda t: t.astype(np.int32),
    "uint8": lambda t: t.astype(np.uint8),
    "uint64": lambda t: t.astype(np.uint64),
    "bool": lambda t: t > 0,
    "n_by_1_int": lambda t: t[:, None],
    "n_by_1_int_fortran": lambda t: np.asfortranarray(t[:, None]),
    "whole_floats": lambda t: t.astype(np.float64),
    "whole_float32": lambda t: t.astype(np.float32),
    "big_endian_int64": lambda t: t.astype(">i8"),
    "list": lambda t: t.tolist(),
}
TARGET_CONVERSION_PARAMS = [
    pytest.param(name, fn, id=f"{name}-{case}")
    for name in LOSSES
    for case, fn in (LABEL_CONVERSIONS if name in LABEL_LOSSES
                     else DENSE_TARGET_CONVERSIONS).items()
    # bool/int targets of a probability loss are not probabilities
    if not (name == "CE_probs" and case in ("int64", "bool"))
]


@pytest.mark.parametrize("name, convert", TARGET_CONVERSION_PARAMS)
def test_loss_converts_target(name, convert):
    _, target, target_dtype = LOSSES[name]
    bad = convert(target)
    saved = snapshot(bad)
    actual = run_loss(name, PRED, bad)
    reference_target = clean(bad, target_dtype).reshape(np.shape(target))
    assert_same_loss(actual, run_loss(name, PRED, reference_target))
    assert_untouched(bad, saved)


@pytest.mark.parametrize("name", ["MSE", "MAE", "Huber", "BCE"])
def test_loss_accepts_1d_target_for_n_by_1_pred(name):
    pred, target = PRED[:, :1], LOSSES[name][1][:, 0]
    assert_same_loss(run_loss(name, pred, target), run_loss(name, pred, target[:, None]))


@pytest.mark.parametrize("name, expected", [
    ("MSE", 0.25), ("MAE", 0.5),
    ("Huber", 0.125),  # delta = 0.5, d = 0.5: delta * (|d| - delta / 2)
    ("BCE", 1.0 - 0.5 + float(np.log1p(np.exp(-1.0)))),
])
def test_regression_and_bce_losses_of_scalars(name, expected):
    value, grad = run_loss(name, 1.0, 0.5)
    assert grad.shape == () and np.isclose(value, expected)
    assert_same_loss((value, grad), run_loss(name, np.array(1.0), np.array(0.5)))


@pytest.mark.parametrize("which", ["pred", "target"])
@pytest.mark.parametrize("layout", LAYOUT_PARAMS)
@pytest.mark.parametrize("name", LOSSES)
def test_loss_layouts(name, layout, which, dtype):
    pred, target = PRED.astype(dtype), LOSSES[name][1]
    if which == "pred":
        pred = layout(pred)
    else:
        target = layout(target)
    saved_pred, saved_target = snapshot(pred), snapshot(target)
    actual = run_loss(name, pred, target)
    assert actual[1].dtype == dtype
    target_dtype = LOSSES[name][2]
    assert_same_loss(actual, run_loss(name, clean(pred, dtype), clean(target, target_dtype)))
    assert_untouched(pred, saved_pred)
    assert_untouched(target, saved_target)


@pytest.mark.parametrize("name", LOSSES)
def test_float32_pred_keeps_loss_gradient_float32(name):
    _, grad = run_loss(name, PRED.astype(np.float32), LOSSES[name][1])  # float64 target
    assert grad.dtype == np.float32


# --- constructors, registries, gradcheck ---------------------------------------------

KNOWN_ACTIVATIONS = ("'linear', 'relu', 'leaky_relu', 'sigmoid', 'tanh', 'gelu', 'elu', "
                     "'softmax', 'selu', 'silu', 'swish', 'mish', 'softplus', 'softsign', "
                     "'hard_sigmoid', 'hard_swish', 'relu6', 'log_softmax'")


def _twice(layer):
    return cdl.Sequential([layer, layer])


CONSTRUCTOR_REJECTS = [
    ("Dense(0)", lambda: layers.Dense(0), ValueError, "units must be >= 1, got 0"),
    ("Dense(-1)", lambda: layers.Dense(-1), ValueError, "units must be >= 1, got -1"),
    ("Dense(2.5)", lambda: layers.Dense(2.5), TypeError, "units must be an integer, got 2.5"),
    ("Dense('a')", lambda: layers.Dense("a"), TypeError, "units must be a number, got 'a'"),
    ("Dense(True)", lambda: layers.Dense(True), TypeError, "units must be a number"),
    ("Dense(None)", lambda: layers.Dense(None), TypeError, "units must be a number"),
    ("Dense(inf)", lambda: layers.Dense(float("inf")), ValueError, "units must be finite"),
    ("Dense(nan)", lambda: layers.Dense(float("nan")), ValueError, "units must be finite"),
    ("Dense(activation='swoosh')", lambda: layers.Dense(2, activation="swoosh"), ValueError,
     re.escape(f"unknown activation 'swoosh'; expected one of {KNOWN_ACTIVATIONS}")),
    ("Dense(activation=np.tanh)", lambda: layers.Dense(2, activation=np.tanh), TypeError,
     "activation must be a name or None"),
    ("Activation('swoosh')", lambda: layers.Activation("swoosh"), ValueError,
     re.escape(f"unknown activation 'swoosh'; expected one of {KNOWN_ACTIVATIONS}")),
    ("Activation('ReLU')", lambda: layers.Activation("ReLU"), ValueError,
     "unknown activation 'ReLU'"),
    ("Dense(kernel_initializer='bogus')",
     lambda: layers.Dense(2, kernel_initializer="bogus"), ValueError,
     "unknown initializer 'bogus'"),
    ("Dropout(1.0)", lambda: layers.Dropout(1.0), ValueError, "rate must be < 1.0, got 1.0"),
    ("Dropout(-0.1)", lambda: layers.Dropout(-0.1), ValueError, "rate must be >= 0.0"),
    ("Dropout(nan)", lambda: layers.Dropout(float("nan")), ValueError, "rate must be finite"),
    ("Dropout('half')", lambda: layers.Dropout("half"), TypeError, "rate must be a number"),
    ("LeakyReLU('x')", lambda: layers.LeakyReLU("x"), TypeError,
     "negative_slope must be a number, got 'x'"),
    ("LeakyReLU(inf)", lambda: layers.LeakyReLU(float("inf")), ValueError,
     "negative_slope must be finite"),
    ("ELU('x')", lambda: layers.ELU("x"), TypeError, "alpha must be a number"),
    ("Layer(name=3)", lambda: layers.ReLU(name=3), TypeError, "name must be a string"),
    ("Layer(dtype='float16')", lambda: layers.Dense(2, dtype="float16"), TypeError,
     "dtype must be 'float32' or 'float64', got 'float16'"),
    ("Huber(delta=0)", lambda: losses.Huber(delta=0), ValueError, "delta must be > 0.0, got 0"),
    ("Huber(delta=-1)", lambda: losses.Huber(delta=-1), ValueError, "delta must be > 0.0"),
    ("Huber(delta='a')", lambda: losses.Huber(delta="a"), TypeError, "delta must be a number"),
    ("CrossEntropy(label_smoothing=1.0)", lambda: losses.CrossEntropy(label_smoothing=1.0),
     ValueError, "label_smoothing must be < 1.0, got 1.0"),
    ("CrossEntropy(label_smoothing=-0.1)",
     lambda: losses.CrossEntropy(label_smoothing=-0.1), ValueError,
     "label_smoothing must be >= 0.0"),
    ("losses.get('bogus')", lambda: losses.get("bogus"), ValueError,
     "unknown loss 'bogus'; expected one of .*cross_entropy.*mse"),
    ("losses.get(3)", lambda: losses.get(3), TypeError, "a loss must be a name or a Loss"),
    ("initializers.get('bogus')", lambda: initializers.get("bogus"), ValueError,
     "unknown initializer 'bogus'; expected one of .*glorot_uniform.*he_normal"),
    ("initializers.get(3)", lambda: initializers.get(3), TypeError,
     "an initializer must be a name or a callable"),
    ("Sequential([Dense, 'relu'])", lambda: cdl.Sequential([layers.Dense(2), "relu"]),
     TypeError, "Sequential takes Layer instances, got 'relu'"),
    ("Sequential([Dense, np.tanh])", lambda: cdl.Sequential([layers.Dense(2), np.tanh]),
     TypeError, "Sequential takes Layer instances"),
    ("Sequential([Dense class])", lambda: cdl.Sequential([layers.Dense]), TypeError,
     "Sequential takes Layer instances"),
    ("Sequential(duplicate names)",
     lambda: cdl.Sequential([layers.Dense(2, name="hidden"), layers.ReLU(name="hidden")]),
     ValueError, "a layer named 'hidden' is already in this model"),
    ("Sequential(same layer twice)", lambda: _twice(layers.ReLU(name="act")), ValueError,
     "layer 'act' is already in this model"),
    ("Sequential(dtype='float16')", lambda: cdl.Sequential([layers.Dense(2)], dtype="float16"),
     TypeError, "dtype must be 'float32' or 'float64', got 'float16'"),
    ("Sequential(dtype='int32')", lambda: cdl.Sequential([layers.Dense(2)], dtype="int32"),
     TypeError, "dtype must be 'float32' or 'float64', got 'int32'"),
    ("Sequential(dtype='>f8')", lambda: cdl.Sequential([layers.Dense(2)], dtype=">f8"),
     TypeError, "dtype must be 'float32' or 'float64'"),
    ("Sequential(dtype='bogus')", lambda: cdl.Sequential([layers.Dense(2)], dtype="bogus"),
     TypeError, "dtype must be 'float32' or 'float64', got 'bogus'"),
    ("Sequential(dtype=int)", lambda: cdl.Sequential([layers.Dense(2)], dtype=int),
     TypeError, "dtype must be 'float32' or 'float64'"),
    ("Sequential(layer dtype mismatch)",
     lambda: cdl.Sequential([layers.Dense(2, dtype="float64")], dtype="float32"), ValueError,
     "has dtype float64, the model float32"),
    ("Sequential(input_shape=(0,))",
     lambda: cdl.Sequential([layers.Dense(2)], input_shape=(0,)), ValueError,
     "input_shape must be a tuple of positive ints"),
    ("Sequential(input_shape=(4.5,))",
     lambda: cdl.Sequential([layers.Dense(2)], input_shape=(4.5,)), ValueError,
     "input_shape must be a tuple of positive ints"),
    ("Sequential(input_shape=object())",
     lambda: cdl.Sequential([layers.Dense(2)], input_shape=object()), TypeError,
     "input_shape must be a tuple of positive ints"),
]


@pytest.mark.parametrize("make, exc, match", [
    pytest.param(make, exc, match, id=case) for case, make, exc, match in CONSTRUCTOR_REJECTS])
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def _tanh_built_on_float32():
    layer = layers.Tanh()
    layer.forward(X.astype(np.float32))
    return layer


@pytest.mark.parametrize("make", [
    pytest.param(lambda: make_model("float32"), id="float32_model"),
    pytest.param(lambda: cdl.Sequential([layers.Dense(2)], seed=0), id="unbuilt_model"),
    pytest.param(lambda: layers.Dense(2, dtype="float32"), id="float32_layer"),
    pytest.param(_tanh_built_on_float32, id="layer_built_on_float32"),
])
def test_gradcheck_of_float32_raises(make):
    with pytest.raises(TypeError, match="float64"):
        cdl.gradcheck(make(), X)


# --- the whole matrix, once more in a child interpreter --------------------------------

def test_subprocess_guard_whole_matrix():
    """Run every case above in a fresh interpreter, so that a crash (a
    segfault in a kernel) fails this test instead of killing the session."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(cdl.__file__)))
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider",
         "-k", "not subprocess"],
        cwd=os.path.dirname(os.path.abspath(__file__)), env=env,
        capture_output=True, text=True, timeout=120)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode >= 0, f"the child crashed with signal {-proc.returncode}:\n{tail}"
    assert proc.returncode == 0, f"the child pytest failed:\n{tail}"
