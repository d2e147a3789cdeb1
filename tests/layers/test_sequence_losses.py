"""CrossEntropy, NLL and the accuracy metrics over sequences: predictions of
shape (batch, T, classes) (or more middle axes) with a label per position.
PyTorch parity (its class axis second), gradient checks, sample weights,
fit on (batch, T) labels, and rejected targets."""
import numpy as np
import pytest

import cdl
from cdl import _fused, layers, losses, metrics
from cdl.training import adapters

from helpers import GRADCHECK_TOL

B, T, C = 3, 5, 4
RNG = np.random.default_rng(77)
LOGITS = RNG.normal(size=(B, T, C)) * 2
LABELS = RNG.integers(0, C, size=(B, T))
PROBS = RNG.dirichlet(np.ones(C), size=(B, T))
CLASS_W = np.array([0.5, 2.0, 1.0, 3.0])
SAMPLE_W = np.array([0.3, 1.7, 1.0])


def _torch():
    return pytest.importorskip("torch")


def _class_first(x):
    """(batch, d1, ..., C) -> (batch, C, d1, ...): PyTorch's layout."""
    return x.permute(0, x.dim() - 1, *range(1, x.dim() - 1))


def _torch_loss(logits, target, sample_weight=None, **kwargs):
    """PyTorch's value and gradient. Sample weights (which PyTorch does not
    have) scale each sample's per-position losses, over the same divisor
    as the mean: the number of positions, or with class weights and labels
    the total class weight of the labels."""
    torch = _torch()
    import torch.nn.functional as F

    z = torch.tensor(logits, requires_grad=True)
    t = torch.tensor(target)
    if target.dtype.kind == "f":
        t = _class_first(t)
    if "weight" in kwargs:
        kwargs["weight"] = torch.tensor(kwargs["weight"])
    per = F.cross_entropy(_class_first(z), t, reduction="none", **kwargs)
    if target.dtype.kind != "f" and "weight" in kwargs:
        divisor = kwargs["weight"][t].sum()
    else:
        divisor = per.numel()
    if sample_weight is not None:
        shape = (-1,) + (1,) * (per.dim() - 1)
        per = per * torch.tensor(sample_weight).reshape(shape)
    value = per.sum() / divisor
    value.backward()
    return value.item(), z.grad.numpy()


CASES = {
    "labels": ({}, LABELS),
    "labels_class_weights": ({"weight": CLASS_W}, LABELS),
    "labels_smoothing": ({"label_smoothing": 0.2}, LABELS),
    "labels_class_weights_smoothing": ({"weight": CLASS_W, "label_smoothing": 0.1}, LABELS),
    "probabilities": ({}, PROBS),
    "probabilities_class_weights": ({"weight": CLASS_W}, PROBS),
    "probabilities_smoothing": ({"label_smoothing": 0.15}, PROBS),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_cross_entropy_over_positions_matches_torch(case, weighted):
    kwargs, target = CASES[case]
    sw = SAMPLE_W if weighted else None
    loss = losses.CrossEntropy(**kwargs)
    value = loss.forward(LOGITS, target, sw)
    grad = loss.backward()
    expected, expected_grad = _torch_loss(LOGITS, target, sw, **kwargs)
    assert grad.shape == LOGITS.shape and grad.dtype == np.float64
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_cross_entropy_over_positions_equals_flattened_rows(case):
    kwargs, target = CASES[case]
    sequence, rows = losses.CrossEntropy(**kwargs), losses.CrossEntropy(**kwargs)
    flat_target = target.reshape(B * T, -1) if target.dtype.kind == "f" else target.reshape(-1)
    value = sequence.forward(LOGITS, target, SAMPLE_W)
    expected = rows.forward(LOGITS.reshape(-1, C), flat_target, np.repeat(SAMPLE_W, T))
    assert value == expected
    assert np.array_equal(sequence.backward(), rows.backward().reshape(B, T, C))


def test_more_middle_axes_match_torch():
    z = RNG.normal(size=(2, 3, 2, C))
    y = RNG.integers(0, C, size=(2, 3, 2))
    for kwargs in ({}, {"weight": CLASS_W, "label_smoothing": 0.1}):
        loss = losses.CrossEntropy(**kwargs)
        value, grad = loss.forward(z, y, SAMPLE_W[:2]), loss.backward()
        expected, expected_grad = _torch_loss(z, y, SAMPLE_W[:2], **kwargs)
        np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_float32_logits_stay_float32():
    z = LOGITS.astype(np.float32)
    loss = losses.CrossEntropy()
    value = loss.forward(z, LABELS)
    grad = loss.backward()
    assert grad.dtype == np.float32 and grad.shape == z.shape
    expected, _ = _torch_loss(LOGITS, LABELS)
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_sample_weights_of_one_change_nothing_and_weigh_each_samples_positions():
    loss = losses.CrossEntropy()
    plain = loss.forward(LOGITS, LABELS)
    assert loss.forward(LOGITS, LABELS, np.ones(B)) == plain
    # Keras' rule: the weighted sum over positions divided by batch * T.
    per_position = np.array([losses.CrossEntropy().forward(LOGITS[i], LABELS[i])
                             for i in range(B)])  # mean over each sample's T positions
    np.testing.assert_allclose(loss.forward(LOGITS, LABELS, SAMPLE_W),
                               (SAMPLE_W * per_position).sum() / B, rtol=1e-13)


def test_label_forms_agree():
    """Labels (B, T), (B, T, 1), whole-number floats, and one-hot probabilities."""
    loss = losses.CrossEntropy()
    value = loss.forward(LOGITS, LABELS)
    assert loss.forward(LOGITS, LABELS[..., None]) == value
    assert loss.forward(LOGITS, LABELS.astype(np.float32)) == value
    assert loss.forward(LOGITS, LABELS.astype(np.int32).tolist()) == value
    np.testing.assert_allclose(loss.forward(LOGITS, np.eye(C)[LABELS]), value, rtol=1e-13)


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradcheck(case, weighted):
    kwargs, target = CASES[case]
    errors = cdl.gradcheck(losses.CrossEntropy(**kwargs), LOGITS, target,
                           sample_weight=SAMPLE_W if weighted else None)
    assert errors["input"] <= GRADCHECK_TOL


@pytest.mark.parametrize("class_weights", [None, CLASS_W], ids=["plain", "class_weights"])
def test_nll_over_positions_matches_torch(class_weights):
    torch = _torch()
    import torch.nn.functional as F

    log_probs = LOGITS - np.log(np.exp(LOGITS).sum(axis=-1, keepdims=True))
    loss = losses.NLL(weight=class_weights)
    value, grad = loss.forward(log_probs, LABELS), loss.backward()
    x = torch.tensor(log_probs, requires_grad=True)
    w = None if class_weights is None else torch.tensor(class_weights)
    ref = F.nll_loss(_class_first(x), torch.tensor(LABELS), weight=w)
    ref.backward()
    np.testing.assert_allclose(value, ref.item(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert cdl.gradcheck(losses.NLL(weight=class_weights), log_probs, LABELS,
                         sample_weight=SAMPLE_W)["input"] <= GRADCHECK_TOL


def test_class_weighted_divisor_counts_every_position():
    loss = losses.CrossEntropy(weight=CLASS_W)
    assert loss._divisor(LABELS, B) == pytest.approx(CLASS_W[LABELS].sum())
    assert losses.CrossEntropy()._divisor(LABELS, B) == B


@pytest.mark.parametrize("target, match", [
    (LABELS[:, :4], r"target has shape \(3, 4\); for predictions of shape \(3, 5, 4\) "
                    r"expected integer labels of shape \(3, 5\) or class probabilities"),
    (LABELS.reshape(-1), r"target has shape \(15,\)"),
    (np.where(LABELS == 2, 4, LABELS), r"label 4 at index \(\d, \d\) is out of range for "
                                       r"4 classes"),
    (np.where(LABELS == 2, -1, LABELS), r"label -1 at index .* is out of range"),
    (LABELS + 0.5, r"float labels must hold whole class numbers, got 0?\.?\d*\.5 at index"),
    (np.eye(C, dtype=np.int64)[LABELS], r"integer labels must have shape \(3, 5\)"),
    (np.where(LABELS == 1, np.nan, LABELS), "labels contains NaN|NaN"),
])
def test_bad_targets_raise_clear_errors(target, match):
    loss = losses.CrossEntropy()
    with pytest.raises(ValueError, match=match):
        loss.forward(LOGITS, target)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        loss.backward()


def test_bad_sample_weights_and_nll_probabilities_raise():
    with pytest.raises(ValueError, match=r"sample_weight has shape \(15,\), expected \(3,\)"):
        losses.CrossEntropy().forward(LOGITS, LABELS, np.ones(B * T))
    with pytest.raises(ValueError, match=r"expected integer labels of shape \(3, 5\)$"):
        losses.NLL().forward(LOGITS, PROBS)


def test_the_fused_step_leaves_sequence_outputs_to_the_layers():
    seq = cdl.Sequential([layers.Embedding(7, 4), layers.Dense(7)], input_shape=(6,), seed=0)
    seq.compile(loss="cross_entropy", optimizer="adam")
    assert _fused.build_plan(seq, 8) is None
    dense = cdl.Sequential([layers.Dense(7)], input_shape=(6, 3), seed=0)
    dense.compile(loss="cross_entropy", optimizer="adam")
    assert _fused.build_plan(dense, 8) is None


def test_targets_convert_sequence_labels_once():
    seq = cdl.Sequential([layers.Embedding(7, 4), layers.Dense(7)], input_shape=(6,), seed=0)
    seq.compile(loss="cross_entropy", optimizer="adam")
    for y in (np.zeros((5, 6), np.int32), np.zeros((5, 6))):
        assert adapters.targets_for(seq, y, 5).data.dtype == np.int64
    probs = np.full((5, 6, 7), 1 / 7)  # probabilities stay floats
    assert adapters.targets_for(seq, probs, 5).data.dtype == np.float32
    flat = cdl.Sequential([layers.Dense(3)], input_shape=(2,), seed=0)
    flat.compile(loss="cross_entropy", optimizer="adam")
    one_hot = np.eye(3, dtype=np.int64)[[0, 1, 2, 1]]  # (n, classes) integers: probabilities
    assert adapters.targets_for(flat, one_hot, 4).data.dtype == np.float32


# --- metrics -------------------------------------------------------------------------------

def test_accuracy_per_position():
    correct = LOGITS.argmax(-1) == LABELS
    assert metrics.accuracy(LABELS, LOGITS) == pytest.approx(correct.mean())
    assert metrics.accuracy(np.eye(C)[LABELS], LOGITS) == pytest.approx(correct.mean())
    weighted = (SAMPLE_W[:, None] * correct).sum() / (SAMPLE_W.sum() * T)
    assert metrics.accuracy(LABELS, LOGITS, SAMPLE_W) == pytest.approx(weighted)
    acc = metrics.Accuracy()
    acc.update(LABELS[:2], LOGITS[:2], SAMPLE_W[:2])
    acc.update(LABELS[2:], LOGITS[2:], SAMPLE_W[2:])
    assert acc.result() == pytest.approx(weighted)


def test_top_k_accuracy_per_position():
    k = 2
    true_score = np.take_along_axis(LOGITS, LABELS[..., None], -1)
    correct = (LOGITS > true_score).sum(-1) < k
    assert metrics.top_k_accuracy(LABELS, LOGITS, k=k) == pytest.approx(correct.mean())
    top = metrics.TopKAccuracy(k=k)
    top.update(LABELS, LOGITS, SAMPLE_W)
    weighted = (SAMPLE_W[:, None] * correct).sum() / (SAMPLE_W.sum() * T)
    assert top.result() == pytest.approx(weighted)


def test_accuracy_per_position_rejects_mismatched_labels():
    with pytest.raises(ValueError, match=r"expected class labels of shape \(3, 5\)"):
        metrics.accuracy(LABELS[:, :4], LOGITS)
    with pytest.raises(ValueError, match="y_true has 15 samples but y_pred has 3"):
        metrics.Accuracy().update(LABELS.reshape(-1), LOGITS)
    with pytest.raises(ValueError, match="out of range for 4 classes"):
        metrics.Accuracy().update(LABELS + 4, LOGITS)


# --- training ------------------------------------------------------------------------------

def test_a_per_position_model_trains_on_sequence_labels():
    """Embedding -> Dense(vocab) maps each token to the next one in a cycle."""
    vocab, steps = 7, 6
    rng = np.random.default_rng(0)
    x = rng.integers(0, vocab, size=(128, steps))
    y = (x + 1) % vocab
    model = cdl.Sequential([layers.Embedding(vocab, 8), layers.Dense(vocab)],
                           input_shape=(steps,), seed=0)
    model.compile(optimizer=cdl.optimizers.Adam(0.05), loss="cross_entropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] / 10
    assert history.history["accuracy"][-1] == 1.0
    result = model.evaluate(x, y)
    assert result["accuracy"] == 1.0
    assert model.predict(x).shape == (128, steps, vocab)
    with pytest.raises(ValueError, match="out of range"):
        model.evaluate(x, y + vocab)


def test_fit_refuses_class_weight_for_labels_per_position():
    model = cdl.Sequential([layers.Embedding(10, 4), layers.Dense(10)], input_shape=(5,),
                           seed=0)
    model.compile("adam", "cross_entropy")
    x = np.random.default_rng(0).integers(0, 10, (8, 5))
    with pytest.raises(ValueError, match="CrossEntropy\\(weight=...\\)"):
        model.fit(x, x, class_weight={i: 1.0 for i in range(10)}, verbose=0)
