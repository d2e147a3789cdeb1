"""Regression tests for the bugs that the entry-point fuzz (fuzz_entry_points.py)
found: each one is the smallest input that showed the bug."""
import numpy as np
import numpy.testing as npt
import pytest

import cdl
from cdl import data, layers, losses, metrics, optimizers


def _unaligned(a):
    """A C-contiguous copy of ``a`` that starts one byte into its buffer."""
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = buf[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


# --- optimizers and clipping ----------------------------------------------------

@pytest.mark.parametrize("which", ["params", "grads"])
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_unaligned_array_is_refused_before_any_update(name, which):
    params = [np.ones(3), np.ones(2)]
    grads = [np.ones(3), np.ones(2)]
    if which == "params":
        params[1] = _unaligned(params[1])
    else:
        grads[1] = _unaligned(grads[1])
    opt = getattr(optimizers, name)(lr=0.1)
    with pytest.raises(ValueError, match=rf"{which}\[1\] .*aligned"):
        opt.step(params, grads)
    assert opt.iterations == 0
    npt.assert_array_equal(params[0], np.ones(3))  # no half-done step


@pytest.mark.parametrize("clip", [lambda g: optimizers.clip_grad_value(g, 0.5),
                                  lambda g: optimizers.clip_grad_norm(g, 0.5)],
                         ids=["value", "norm"])
def test_clipping_refuses_unaligned_grads_before_changing_any(clip):
    grads = [np.full(3, 2.0), _unaligned(np.full(2, 2.0))]
    with pytest.raises(ValueError, match=r"grads\[1\] .*aligned"):
        clip(grads)
    npt.assert_array_equal(grads[0], np.full(3, 2.0))


@pytest.mark.parametrize("dtype", [np.float64])
def test_clip_grad_norm_of_huge_gradients_does_not_overflow(dtype):
    grads = [np.array([3e300, 0.0], dtype=dtype), np.array([4e300], dtype=dtype)]
    total = optimizers.clip_grad_norm(grads, 1.0)
    assert total == pytest.approx(5e300)
    npt.assert_allclose(np.concatenate(grads), [0.6, 0.0, 0.8])


def test_clip_grad_norm_splits_views_longer_than_blas_takes(monkeypatch):
    from cdl.optimizers import clip
    grads = np.random.default_rng(0).standard_normal(10)
    expected = grads.copy()
    expected_total = optimizers.clip_grad_norm(expected, 1.0)
    monkeypatch.setattr(clip, "_CHUNK", 3)  # as if 3 elements were BLAS's limit
    assert [v.size for v in clip._flat_views(grads)] == [3, 3, 3, 1]
    assert optimizers.clip_grad_norm(grads, 1.0) == pytest.approx(expected_total)
    npt.assert_allclose(grads, expected)


# --- training ---------------------------------------------------------------------

def _classifier():
    model = cdl.Sequential([layers.Dense(3)], input_shape=(2,), seed=0)
    model.compile(optimizers.SGD(lr=0.1), "cross_entropy")
    return model


@pytest.mark.parametrize("y, exc, match", [
    (np.array(["a", "b", "a"]), TypeError, "y must hold real numbers"),
    (np.array([0, 1, "a"], dtype=object), TypeError, "y must hold real numbers"),
    ([[0], [1, 2], [0]], ValueError, "y could not be turned into an array"),
    (np.array([0.0, np.nan, 1.0]), ValueError, "y contains NaN"),
    (np.array([0, -1, 1]), ValueError, "class labels >= 0, got -1"),
])
def test_class_weight_checks_the_labels(y, exc, match):
    with pytest.raises(exc, match=match):
        _classifier().fit(np.zeros((3, 2)), y, class_weight="balanced", verbose=0)


def test_class_weight_with_sample_weight_names_a_short_y():
    with pytest.raises(ValueError, match="y has 2 samples, x has 3"):
        _classifier().fit(np.zeros((3, 2)), np.array([0, 1]), sample_weight=np.ones(3),
                          class_weight="balanced", verbose=0)


def test_class_weight_of_a_huge_label_does_not_allocate_a_table_that_long():
    from cdl.training.adapters import class_weights
    weights = class_weights("balanced", np.array([0, 10**15, 10**15]))
    npt.assert_allclose(weights, [1.5, 0.75, 0.75])
    weights = class_weights({0: 2.0, 10**15: 3.0}, np.array([10**15, 0]))
    npt.assert_allclose(weights, [3.0, 2.0])


def test_ragged_targets_get_a_message_naming_them():
    model = cdl.Sequential([layers.Dense(1)], input_shape=(2,), seed=0)
    model.compile(optimizers.SGD(), "mse")
    with pytest.raises(ValueError, match="y could not be turned into an array"):
        model.fit(np.zeros((2, 2)), [[0.0], [1.0, 2.0]], verbose=0)


# --- gradcheck --------------------------------------------------------------------

def test_gradcheck_of_a_fortran_ordered_input_perturbs_the_input():
    layer = layers.Dense(2, activation="tanh", dtype="float64")
    x = np.asfortranarray(np.random.default_rng(0).standard_normal((3, 2)))
    errors = cdl.gradcheck(layer, x)  # raised "input: 1" when x was perturbed in a copy
    assert errors["input"] < 1e-6


@pytest.mark.parametrize("x, exc, match", [
    (np.array([[0.5, np.nan]]), ValueError, "x contains NaN"),
    (np.array([[0.5, np.inf]]), ValueError, "x contains infinity"),
    (np.array([[0.5, 1.0]]) + 1j, TypeError, "x must hold real numbers"),
    (np.array([["0.5", "1.0"]]), TypeError, "x must hold real numbers"),
    (np.array([[0.5, "a"]], dtype=object), TypeError, "x must hold real numbers"),
])
def test_gradcheck_refuses_inputs_it_cannot_differentiate(x, exc, match):
    with pytest.raises(exc, match=match):
        cdl.gradcheck(layers.Dense(2, dtype="float64"), x)
    with pytest.raises(exc, match=match):
        cdl.gradcheck(losses.MSE(), x, np.zeros((1, 2)))


# --- layers -----------------------------------------------------------------------

def test_embedding_takes_unaligned_indices():
    indices = np.array([[0, 3], [2, 1]])
    expected = layers.Embedding(4, 2, dtype="float64")
    expected._build((2,), "float64", np.random.default_rng(0))
    layer = layers.Embedding(4, 2, dtype="float64")
    layer._build((2,), "float64", np.random.default_rng(0))
    npt.assert_array_equal(layer.forward(_unaligned(indices)), expected.forward(indices))


@pytest.mark.parametrize("make, shape", [
    (lambda: layers.Dense(2), (1, 0)),
    (lambda: layers.BatchNorm(), (1, 2, 2, 0)),
    (lambda: layers.LayerNorm(), (2, 0)),
    (lambda: layers.Concatenate([[layers.Dense(2)], [layers.ReLU()]]), (1, 0)),
])
def test_layer_refuses_to_build_on_empty_samples(make, shape):
    with pytest.raises(ValueError, match="every axis of a sample needs at least one element"):
        make().forward(np.zeros(shape))


def test_built_layer_refuses_a_wrong_shape_before_converting():
    layer = layers.Dense(2, dtype="float32")
    layer.forward(np.zeros((2, 3), dtype=np.float32))
    wrong = np.broadcast_to(np.zeros(1), (2**40, 3))  # 8 TiB if it were copied
    with pytest.raises(ValueError, match="the number of input rows"):
        layer.forward(wrong)
    with pytest.raises(ValueError, match=r"has shape \(1099511627776, 2\)"):
        layer.backward(np.broadcast_to(np.zeros(1), (2**40, 2)))


# --- metrics and data ----------------------------------------------------------------

@pytest.mark.parametrize("metric", [metrics.Accuracy, metrics.Precision, metrics.F1Score])
def test_metric_objects_refuse_scores_without_columns(metric):
    with pytest.raises(ValueError, match=r"y_pred has shape \(3, 0\)"):
        metric().update(np.array([0, 1, 0]), np.zeros((3, 0)))


def test_confusion_matrix_names_a_ragged_sample_weight():
    with pytest.raises(ValueError, match="sample_weight could not be turned into an array"):
        metrics.confusion_matrix([0, 1], [0, 1], sample_weight=[[1.0], [1.0, 2.0]])


def test_train_test_split_names_unsortable_stratify_labels():
    labels = np.array([0, "a", 0, "a"], dtype=object)
    with pytest.raises(TypeError, match="stratify holds labels that cannot be sorted"):
        data.train_test_split(np.zeros((4, 1)), stratify=labels, test_size=2, seed=0)


@pytest.mark.parametrize("y, exc, match", [
    ([0, 1, 1, 0], None, None),                                   # a list works as in fit
    (np.array([0.0, np.nan, 1.0, 0.0]), ValueError, "NaN"),
    (np.array([[0, 1, 1, 0]]), ValueError, "samples"),
    (np.array(["a", "b", "c", "d"]), TypeError, "real numbers"),
])
def test_train_step_checks_targets_like_fit_on_both_paths(y, exc, match):
    x = np.random.default_rng(0).standard_normal((4, 3))
    for fused in (True, False):
        model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
        model.compile("sgd", "cross_entropy")
        model.use_fused_step = fused
        if exc is None:
            assert np.isfinite(model.train_step(x, y))
        else:
            with pytest.raises(exc, match=match):
                model.train_step(x, y)


def test_train_step_names_an_empty_batch():
    model = cdl.Sequential([layers.Dense(2)], input_shape=(3,), seed=0)
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="at least one sample"):
        model.train_step(np.zeros((0, 3)), np.zeros((0, 2)))


@pytest.mark.parametrize("call", ["fit", "predict"])
def test_an_unbuilt_model_names_a_ragged_x(call):
    model = cdl.Sequential([layers.Dense(2)], seed=0)
    model.compile("sgd", "mse")
    ragged = [[1.0, 2.0], [3.0]]
    args = (ragged, np.zeros((2, 2))) if call == "fit" else (ragged,)
    with pytest.raises(ValueError, match="x could not be turned into an array"):
        getattr(model, call)(*args, verbose=0) if call == "fit" else model.predict(*args)
