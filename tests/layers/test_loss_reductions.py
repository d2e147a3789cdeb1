"""Loss options as PyTorch's: ``reduction`` on every loss, ``ignore_index`` on
CrossEntropy/NLL, ``pos_weight`` on BinaryCrossEntropy, TripletMarginLoss and
MarginRankingLoss: PyTorch parity of values and gradients (float64, 1e-10),
sample weights, finite-difference gradients, configs, compile and saving."""
import numpy as np
import pytest

import cdl
from cdl import layers, losses, optimizers

torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")
F = torch.nn.functional

TOL = 1e-10
RNG = np.random.default_rng(21)
N = 6
CLASS_W = [0.5, 2.0, 1.0, 3.0]


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


def _c(a):
    return torch.tensor(np.asarray(a))


# Every case: (make the cdl loss for a reduction, torch loss(pred tensors, reduction),
# pred (array or list), target). torch's side returns the unreduced values for "none".
def _cases():
    z = RNG.normal(size=(N, 4)) * 2
    real = RNG.normal(size=(N, 3))
    labels = np.array([0, 3, -100, 1, 2, -100])
    seq = RNG.normal(size=(2, 5, 4))
    seq_labels = np.array([[0, 1, -100, 3, 2], [-100, -100, 1, 1, 0]])
    unit = RNG.random((N, 3))
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    probs = np.exp(logp)
    rates = RNG.integers(0, 4, size=(N, 3)).astype(float)
    signs = RNG.choice([-1.0, 1.0], size=(N, 3))
    emb = [RNG.normal(size=(N, 5)) for _ in range(3)]
    scores = [RNG.normal(size=(N, 1)), RNG.normal(size=(N, 1))]
    rank_y = RNG.choice([-1.0, 1.0], size=N)
    cw = torch.tensor(CLASS_W, dtype=torch.float64)
    pw = [0.5, 2.0, 3.0]
    return {
        "mse": (lambda r: losses.MSE(reduction=r), lambda p, r: F.mse_loss(p, _c(real[::-1].copy()), reduction=r), z[:, :3].copy(), real[::-1].copy()),
        "mae": (lambda r: losses.MAE(reduction=r), lambda p, r: F.l1_loss(p, _c(real), reduction=r), unit, real),
        "huber": (lambda r: losses.Huber(0.7, reduction=r), lambda p, r: F.huber_loss(p, _c(real), reduction=r, delta=0.7), z[:, :3] * 2, real),
        "bce": (lambda r: losses.BinaryCrossEntropy(reduction=r), lambda p, r: F.binary_cross_entropy_with_logits(p, _c(unit), reduction=r), real, unit),
        "bce_pos_weight": (lambda r: losses.BinaryCrossEntropy(pos_weight=pw, reduction=r), lambda p, r: F.binary_cross_entropy_with_logits(p, _c(unit), reduction=r, pos_weight=torch.tensor(pw, dtype=torch.float64)), real * 3, unit),
        "bce_pos_weight_scalar": (lambda r: losses.BinaryCrossEntropy(pos_weight=2.5, reduction=r), lambda p, r: F.binary_cross_entropy_with_logits(p, _c(unit), reduction=r, pos_weight=torch.tensor([2.5], dtype=torch.float64)), real, unit),
        "ce": (lambda r: losses.CrossEntropy(reduction=r), lambda p, r: F.cross_entropy(p, _c(labels), reduction=r), z, labels),
        "ce_probs": (lambda r: losses.CrossEntropy(weight=CLASS_W, reduction=r), lambda p, r: F.cross_entropy(p, _c(probs[::-1].copy()), weight=cw, reduction=r), z, probs[::-1].copy()),
        "ce_weighted_smoothed": (lambda r: losses.CrossEntropy(weight=CLASS_W, label_smoothing=0.2, reduction=r), lambda p, r: F.cross_entropy(p, _c(labels), weight=cw, label_smoothing=0.2, reduction=r), z, labels),
        "ce_smoothed": (lambda r: losses.CrossEntropy(label_smoothing=0.1, reduction=r), lambda p, r: F.cross_entropy(p, _c(labels), label_smoothing=0.1, reduction=r), z, labels),
        "ce_ignore_7": (lambda r: losses.CrossEntropy(ignore_index=2, reduction=r), lambda p, r: F.cross_entropy(p, _c(np.where(labels < 0, 0, labels)), ignore_index=2, reduction=r), z, np.where(labels < 0, 0, labels)),
        "ce_sequence": (lambda r: losses.CrossEntropy(weight=CLASS_W, label_smoothing=0.1, reduction=r), lambda p, r: F.cross_entropy(p.permute(0, 2, 1), _c(seq_labels), weight=cw, label_smoothing=0.1, reduction=r), seq, seq_labels),
        "nll": (lambda r: losses.NLL(reduction=r), lambda p, r: F.nll_loss(p, _c(labels), reduction=r), logp, labels),
        "nll_weighted": (lambda r: losses.NLL(weight=CLASS_W, reduction=r), lambda p, r: F.nll_loss(p, _c(labels), weight=cw, reduction=r), logp, labels),
        "nll_sequence": (lambda r: losses.NLL(reduction=r), lambda p, r: F.nll_loss(p.permute(0, 2, 1), _c(seq_labels), reduction=r), seq, seq_labels),
        "kl": (lambda r: losses.KLDivergence(reduction=r), lambda p, r: F.kl_div(p, _c(probs), reduction="batchmean" if r == "mean" else r), logp, probs),
        "kl_log_target": (lambda r: losses.KLDivergence(log_target=True, reduction=r), lambda p, r: F.kl_div(p, _c(logp[::-1].copy()), reduction="batchmean" if r == "mean" else r, log_target=True), logp, logp[::-1].copy()),
        "poisson": (lambda r: losses.Poisson(reduction=r), lambda p, r: F.poisson_nll_loss(p, _c(rates), reduction=r), real, rates),
        "poisson_rates": (lambda r: losses.Poisson(log_input=False, reduction=r), lambda p, r: F.poisson_nll_loss(p, _c(rates), log_input=False, reduction=r), unit + 0.1, rates),
        "cosine": (lambda r: losses.CosineSimilarity(reduction=r), lambda p, r: _reduce(-F.cosine_similarity(p, _c(real), dim=-1), r), z[:, :3] + 0.5, real),
        "cosine_axis": (lambda r: losses.CosineSimilarity(axis=1, reduction=r), lambda p, r: _reduce(-F.cosine_similarity(p, _c(seq[::-1, 1:4].copy()), dim=1), r), seq[:, :3].copy(), seq[::-1, 1:4].copy()),
        "hinge": (lambda r: losses.Hinge(reduction=r), lambda p, r: _reduce(torch.clamp(1 - _c(signs) * p, min=0), r), real, signs),
        "triplet": (lambda r: losses.TripletMarginLoss(reduction=r), lambda ps, r: F.triplet_margin_loss(*ps, reduction=r), emb, None),
        "triplet_swap_p1": (lambda r: losses.TripletMarginLoss(margin=2.0, p=1, swap=True, reduction=r), lambda ps, r: F.triplet_margin_loss(*ps, margin=2.0, p=1, swap=True, reduction=r), emb, None),
        "triplet_p3": (lambda r: losses.TripletMarginLoss(margin=0.5, p=3, eps=1e-3, reduction=r), lambda ps, r: F.triplet_margin_loss(*ps, margin=0.5, p=3, eps=1e-3, reduction=r), emb, None),
        "margin_ranking": (lambda r: losses.MarginRankingLoss(margin=0.3, reduction=r), lambda ps, r: F.margin_ranking_loss(*ps, _c(rank_y.reshape(N, 1)), margin=0.3, reduction=r), scores, rank_y),
    }


def _reduce(values, reduction):
    return values.mean() if reduction == "mean" else values.sum() if reduction == "sum" \
        else values


CASES = _cases()
REDUCTIONS = ("mean", "sum", "none")


def _torch_value(torch_fn, pred, reduction, weights):
    """torch's loss, and with sample weights the same reduction of the weighted
    terms: the values times each sample's weight, summed, or for the mean
    divided by what torch's mean divides by (its sum over its mean)."""
    tp = [_t(p) for p in pred] if isinstance(pred, list) else _t(pred)
    if weights is None:
        return tp, torch_fn(tp, reduction)
    values = torch_fn(tp, "none")
    w = torch.tensor(weights).reshape((-1,) + (1,) * (values.dim() - 1))
    weighted = values * w
    if reduction == "none":
        return tp, weighted
    if reduction == "sum":
        return tp, weighted.sum()
    with torch.no_grad():
        den = torch_fn([_t(p) for p in pred] if isinstance(pred, list) else _t(pred), "sum") \
            / torch_fn([_t(p) for p in pred] if isinstance(pred, list) else _t(pred), "mean")
    return tp, weighted.sum() / den


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_parity(name, reduction, weighted):
    make, torch_fn, pred, target = CASES[name]
    rows = (pred[0] if isinstance(pred, list) else pred).shape[0]
    weights = np.random.default_rng(3).uniform(0.2, 2.0, rows) if weighted else None
    loss = make(reduction)
    value = loss.forward(pred, target, weights)
    tp, expected = _torch_value(torch_fn, pred, reduction, weights)
    if reduction == "none":
        assert isinstance(value, np.ndarray) and value.shape == tuple(expected.shape)
        grad_out = np.random.default_rng(4).normal(size=value.shape)
        grad = loss.backward(grad_out)
        expected.backward(torch.tensor(grad_out))
    else:
        assert isinstance(value, float)
        grad = loss.backward()
        expected.backward()
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=TOL, atol=TOL)
    if isinstance(pred, list):
        assert isinstance(grad, list) and len(grad) == len(pred)
        for g, t in zip(grad, tp):
            np.testing.assert_allclose(g, t.grad.numpy(), rtol=TOL, atol=TOL)
    else:
        np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=TOL, atol=TOL)


def _numeric(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        up = f()
        flat[i] = keep - eps
        down = f()
        flat[i] = keep
        out[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_finite_differences(name, reduction):
    make, _, pred, target = CASES[name]
    if isinstance(pred, list):
        pred = np.concatenate(pred, axis=-1)  # the one-array form
    pred = np.array(pred, dtype=np.float64)
    weights = np.random.default_rng(5).uniform(0.2, 2.0, pred.shape[0])
    loss = make(reduction)
    if reduction == "none":
        values = loss.forward(pred, target, weights)
        r = np.random.default_rng(6).normal(size=values.shape)
        analytic = loss.backward(r)
        numeric = _numeric(lambda: float((loss.forward(pred, target, weights) * r).sum()), pred)
    else:
        loss.forward(pred, target, weights)
        analytic = loss.backward()
        numeric = _numeric(lambda: loss.forward(pred, target, weights), pred)
        cdl.gradcheck(loss, pred, target if target is not None else np.zeros(pred.shape[0]),
                      sample_weight=weights)
    scale = max(np.abs(analytic).max(), 1e-12)
    assert np.abs(analytic - numeric).max() / scale < 1e-6


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_matches_float64(name):
    make, _, pred, target = CASES[name]
    for reduction in REDUCTIONS:
        p32 = [np.float32(p) for p in pred] if isinstance(pred, list) else np.float32(pred)
        loss = make(reduction)
        v64 = loss.forward(pred, target)
        g64 = loss.backward(np.ones(np.shape(v64)) if reduction == "none" else None)
        v32 = loss.forward(p32, target)
        g32 = loss.backward(np.ones(np.shape(v32)) if reduction == "none" else None)
        if reduction == "none":
            assert v32.dtype == np.float32
        for a, b in zip(g32 if isinstance(g32, list) else [g32],
                        g64 if isinstance(g64, list) else [g64]):
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(v32, v64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_round_trip(name):
    for reduction in REDUCTIONS:
        loss = CASES[name][0](reduction)
        config = {"class_name": type(loss).__name__, "config": loss.get_config()}
        again = losses.from_config(config)
        assert again.get_config() == loss.get_config()
        assert again.reduction == reduction


def test_old_configs_load_as_mean():
    assert losses.from_config({"class_name": "MSE", "config": {}}).reduction == "mean"
    ce = losses.from_config({"class_name": "CrossEntropy",
                             "config": {"weight": None, "label_smoothing": 0.1}})
    assert (ce.reduction, ce.ignore_index) == ("mean", -100)
    assert losses.get("triplet_margin").margin == 1.0
    assert losses.get("margin_ranking").margin == 0.0


@pytest.mark.parametrize("bad", ["avg", None, 1, "Mean"])
def test_bad_reduction(bad):
    with pytest.raises(ValueError, match="reduction must be"):
        losses.MSE(reduction=bad)


def test_bad_options():
    with pytest.raises(TypeError, match="ignore_index"):
        losses.CrossEntropy(ignore_index=1.5)
    with pytest.raises(TypeError, match="ignore_index"):
        losses.NLL(ignore_index=True)
    with pytest.raises(ValueError, match="pos_weight must be non-negative"):
        losses.BinaryCrossEntropy(pos_weight=[-1.0])
    with pytest.raises(ValueError, match="pos_weight has 2 weights but pred has 3"):
        losses.BinaryCrossEntropy(pos_weight=[1.0, 2.0])(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="takes a list of 3 arrays"):
        losses.TripletMarginLoss()(np.zeros((2, 4)), None)
    with pytest.raises(ValueError, match="takes 3 arrays"):
        losses.TripletMarginLoss()([np.zeros((2, 4))] * 2, None)
    with pytest.raises(ValueError, match="one shape"):
        losses.TripletMarginLoss()([np.zeros((2, 4)), np.zeros((2, 4)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match="1 or -1"):
        losses.MarginRankingLoss()(np.zeros((2, 2)), np.array([1, 0]))
    with pytest.raises(ValueError, match="p must"):
        losses.TripletMarginLoss(p=0)
    loss = losses.MSE(reduction="none")
    loss(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="needs grad_output"):
        loss.backward()
    with pytest.raises(ValueError, match=r"grad_output has shape \(2,\)"):
        loss.backward(np.ones(2))
    with pytest.raises(ValueError, match="grad_output"):
        loss.backward(np.full((2, 3), np.nan))


def test_all_ignored_is_zero_with_zero_gradient():
    # PyTorch returns NaN for the mean here; cdl returns 0 and a zero gradient.
    z = RNG.normal(size=(3, 4))
    for loss in (losses.CrossEntropy(), losses.NLL(), losses.CrossEntropy(weight=CLASS_W),
                 losses.CrossEntropy(label_smoothing=0.1)):
        for reduction in REDUCTIONS:
            loss.reduction = reduction
            value = loss(z, np.full(3, -100))
            grad = loss.backward(np.ones(3) if reduction == "none" else None)
            assert np.all(np.asarray(value) == 0) and not grad.any()


def test_ignore_index_with_float_labels_and_none():
    z = RNG.normal(size=(4, 3))
    ce = losses.CrossEntropy()
    value = ce(z, np.array([0.0, -100.0, 2.0, 1.0]))
    assert value == pytest.approx(losses.CrossEntropy()(z[[0, 2, 3]], np.array([0, 2, 1])))
    with pytest.raises(ValueError, match="out of range"):
        losses.CrossEntropy(ignore_index=None)(z, np.array([0, -100, 2, 1]))


def test_compile_refuses_none_and_trains_with_sum():
    model = cdl.Sequential([layers.Dense(3)], input_shape=(4,), seed=0)
    with pytest.raises(ValueError, match="reduction='none'"):
        model.compile(optimizers.SGD(lr=0.1), losses.CrossEntropy(reduction="none"))
    x = RNG.normal(size=(8, 4))
    y = np.array([0, 1, 2, -100, 1, 0, -100, 2])
    model.compile(optimizers.SGD(lr=0.01), losses.CrossEntropy(reduction="sum"))
    history = model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_fit_skips_the_fused_step_for_ignored_labels():
    x = RNG.normal(size=(8, 4))
    y = np.array([0, 1, 2, -100, 1, 0, -100, 2])
    results = []
    for labels, loss in ((y, losses.CrossEntropy()),
                         (y[y >= 0], losses.CrossEntropy())):
        model = cdl.Sequential([layers.Dense(3)], input_shape=(4,), seed=0)
        model.compile(optimizers.SGD(lr=0.1), loss)
        rows = x if labels is y else x[y >= 0]
        model.fit(rows, labels, epochs=1, batch_size=len(labels), verbose=0, shuffle=False)
        results.append(model.layers[0].kernel.copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-14)


def test_siamese_triplet_model_trains_and_saves(tmp_path):
    encoder = layers.Dense(4)
    ins = [cdl.Input(shape=(6,)) for _ in range(3)]
    out = layers.Concatenate()([encoder(x) for x in ins])
    model = cdl.Model(ins, out, seed=0)
    model.compile(optimizers.SGD(lr=0.05), losses.TripletMarginLoss(margin=0.5, swap=True))
    x = [RNG.normal(size=(16, 6)) for _ in range(3)]
    before = model.evaluate(x, np.zeros(16))
    model.fit(x, np.zeros(16), epochs=5, batch_size=8, verbose=0)
    after = model.evaluate(x, np.zeros(16))
    assert after["loss"] < before["loss"]
    path = tmp_path / "siamese.cdl"
    cdl.io.save_model(model, path)
    loaded = cdl.io.load_model(path)
    assert loaded.loss.get_config() == model.loss.get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("loss", [
    losses.CrossEntropy(ignore_index=3, reduction="sum", label_smoothing=0.1),
    losses.NLL(weight=[1.0, 2.0, 1.0], ignore_index=-1),
    losses.BinaryCrossEntropy(pos_weight=[2.0, 1.0, 0.5]),
    losses.MSE(reduction="sum"),
    losses.MarginRankingLoss(margin=0.2),
], ids=lambda loss: type(loss).__name__)
def test_compiled_model_saves_its_loss(tmp_path, loss):
    model = cdl.Sequential([layers.Dense(3)], input_shape=(4,), seed=0)
    model.compile(optimizers.Adam(lr=0.01), loss)
    path = tmp_path / "model.cdl"
    cdl.io.save_model(model, path)
    loaded = cdl.io.load_model(path)
    assert type(loaded.loss) is type(loss)
    assert loaded.loss.get_config() == loss.get_config()
