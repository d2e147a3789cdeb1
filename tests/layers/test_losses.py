"""NLL, KLDivergence, Poisson, CosineSimilarity, Hinge and class weights in
CrossEntropy/NLL: NumPy references from the formulas, PyTorch parity,
gradient checks, names and configs, and rejected targets."""
import numpy as np
import pytest

import cdl
from cdl import _fused, losses
from cdl._kernels import losses as _k

from helpers import GRADCHECK_TOL, assert_allclose, random_array

N, C = 7, 4
RNG = np.random.default_rng(2024)
LABELS = np.array([0, 3, 1, 1, 2, 3, 0])
CLASS_W = np.array([0.5, 2.0, 1.0, 3.0])
SAMPLE_W = RNG.uniform(0.2, 2.0, N)


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def probs(shape, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(shape[1]), size=shape[0])


def run(loss, pred, target, sample_weight=None):
    value = loss.forward(pred, target, sample_weight)
    assert isinstance(value, float)
    grad = loss.backward()
    assert grad.shape == np.shape(pred) and grad.dtype == np.asarray(pred).dtype
    return value, grad


def weights_or_ones(sample_weight, n):
    return np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)


# --- NumPy references, written from the formulas -----------------------------------------

def nll_ref(x, y, cw=None, sw=None):
    n, c = x.shape
    cw = np.ones(c) if cw is None else cw
    sw = weights_or_ones(sw, n)
    den = cw[y].sum()
    value = -(sw * cw[y] * x[np.arange(n), y]).sum() / den
    grad = np.zeros_like(x)
    grad[np.arange(n), y] = -sw * cw[y] / den
    return value, grad


def ce_weighted_ref(z, y, cw, s=0.0, sw=None):
    """PyTorch's cross_entropy(weight=cw, label_smoothing=s) with labels, per-sample
    weights on top; gradient from softmax(z) m_i - t_i."""
    n, c = z.shape
    sw = weights_or_ones(sw, n)
    lp = log_softmax(z)
    t = (s / c) * np.tile(cw, (n, 1))
    t[np.arange(n), y] += (1 - s) * cw[y]
    den = cw[y].sum()
    value = -(sw[:, None] * t * lp).sum() / den
    grad = sw[:, None] * (np.exp(lp) * t.sum(1, keepdims=True) - t) / den
    return value, grad


def ce_probs_weighted_ref(z, t, cw, s=0.0, sw=None):
    n, c = z.shape
    sw = weights_or_ones(sw, n)
    t = (t * (1 - s) + s / c) * cw
    lp = log_softmax(z)
    value = -(sw[:, None] * t * lp).sum() / n
    grad = sw[:, None] * (np.exp(lp) * t.sum(1, keepdims=True) - t) / n
    return value, grad


def kld_ref(x, t, log_target=False, sw=None):
    n = x.shape[0]
    sw = weights_or_ones(sw, n).reshape((n,) + (1,) * (x.ndim - 1))
    if log_target:
        p = np.exp(t)
        with np.errstate(invalid="ignore"):
            point = np.where(p > 0, p * (t - x), 0.0)
    else:
        p = t
        with np.errstate(divide="ignore", invalid="ignore"):
            point = np.where(t > 0, t * (np.log(t) - x), 0.0)
    return (sw * point).sum() / n, -sw * p / n


def poisson_ref(x, t, log_input=True, eps=1e-8, sw=None):
    n = x.shape[0]
    sw = weights_or_ones(sw, n).reshape((n,) + (1,) * (x.ndim - 1))
    if log_input:
        point, grad = np.exp(x) - t * x, np.exp(x) - t
    else:
        point, grad = x - t * np.log(x + eps), 1 - t / (x + eps)
    return (sw * point).sum() / x.size, sw * grad / x.size


def keras_normalize(v, axis):
    """Keras 3 ops.normalize: x * min(rsqrt(sum x^2), 1 / 1e-7)."""
    with np.errstate(divide="ignore"):
        inv = np.minimum(1 / np.sqrt((v * v).sum(axis=axis, keepdims=True)), 1e7)
    return v * inv


def cosine_ref(p, t, axis=-1, sw=None):
    per_vector = -(keras_normalize(t, axis) * keras_normalize(p, axis)).sum(axis=axis)
    n = p.shape[0]
    sw = weights_or_ones(sw, n).reshape((n,) + (1,) * (per_vector.ndim - 1))
    return (sw * per_vector).sum() / per_vector.size


def hinge_ref(p, t, sw=None):
    t = np.asarray(t, np.float64)
    if np.all((t == 0) | (t == 1)):
        t = 2 * t - 1
    n = p.shape[0]
    sw = weights_or_ones(sw, n).reshape((n,) + (1,) * (p.ndim - 1))
    margin = 1 - t * p
    return (sw * np.maximum(margin, 0)).sum() / p.size, sw * np.where(margin > 0, -t, 0) / p.size


# --- forward and backward against the references, in float32 and float64 -------------------

@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
@pytest.mark.parametrize("class_weighted", [False, True], ids=["no_cw", "cw"])
def test_nll_matches_reference(dtype, weighted, class_weighted):
    x = log_softmax(random_array((N, C), seed=1))
    sw = SAMPLE_W if weighted else None
    cw = CLASS_W if class_weighted else None
    value, grad = run(losses.NLL(weight=cw), x.astype(dtype), LABELS, sw)
    ref_value, ref_grad = nll_ref(x.astype(dtype).astype(np.float64), LABELS, cw, sw)
    assert_allclose(value, ref_value, dtype)
    assert_allclose(grad, ref_grad, dtype)


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
def test_class_weighted_cross_entropy_matches_reference(dtype, smoothing, weighted):
    z = random_array((N, C), seed=2)
    sw = SAMPLE_W if weighted else None
    value, grad = run(losses.CrossEntropy(weight=CLASS_W, label_smoothing=smoothing),
                      z.astype(dtype), LABELS, sw)
    ref_value, ref_grad = ce_weighted_ref(z.astype(dtype).astype(np.float64), LABELS,
                                          CLASS_W, smoothing, sw)
    assert_allclose(value, ref_value, dtype)
    assert_allclose(grad, ref_grad, dtype)


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_class_weighted_cross_entropy_with_probabilities(dtype, smoothing):
    z, t = random_array((N, C), seed=3), probs((N, C), 4)
    value, grad = run(losses.CrossEntropy(weight=CLASS_W, label_smoothing=smoothing),
                      z.astype(dtype), t.astype(dtype), SAMPLE_W)
    ref_value, ref_grad = ce_probs_weighted_ref(
        z.astype(dtype).astype(np.float64), t.astype(dtype).astype(np.float64), CLASS_W,
        smoothing, SAMPLE_W)
    assert_allclose(value, ref_value, dtype)
    assert_allclose(grad, ref_grad, dtype)


@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
def test_kl_divergence_matches_reference(dtype, log_target, weighted):
    x = log_softmax(random_array((N, C), seed=5))
    t = probs((N, C), 6)
    t[1, 2] = t[4, 0] = 0.0  # zero probabilities contribute 0
    with np.errstate(divide="ignore"):
        target = np.log(t) if log_target else t
    sw = SAMPLE_W if weighted else None
    value, grad = run(losses.KLDivergence(log_target=log_target), x.astype(dtype),
                      target.astype(dtype), sw)
    ref_value, ref_grad = kld_ref(x.astype(dtype).astype(np.float64),
                                  target.astype(dtype).astype(np.float64), log_target, sw)
    assert np.isfinite(value)
    assert_allclose(value, ref_value, dtype)
    assert_allclose(grad, ref_grad, dtype)


@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
def test_poisson_matches_reference(dtype, log_input, weighted):
    x = random_array((N, 3), seed=7) if log_input else random_array((N, 3), seed=7, low=0.1,
                                                                     high=3.0)
    t = np.random.default_rng(8).poisson(2.0, (N, 3)).astype(np.float64)
    sw = SAMPLE_W if weighted else None
    loss = losses.Poisson(log_input=log_input, eps=1e-6)
    value, grad = run(loss, x.astype(dtype), t, sw)
    ref_value, ref_grad = poisson_ref(x.astype(dtype).astype(np.float64), t, log_input,
                                      1e-6, sw)
    assert_allclose(value, ref_value, dtype)
    assert_allclose(grad, ref_grad, dtype)


@pytest.mark.parametrize("shape, axis", [((N, 5), -1), ((N, 3, 5), -1), ((N, 3, 5), 1),
                                         ((N, 3, 5), -2)])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
def test_cosine_similarity_matches_keras_formula(dtype, shape, axis, weighted):
    p, t = random_array(shape, seed=9), random_array(shape, seed=10)
    p[0] = 0.0  # a zero prediction vector: similarity 0, as Keras
    sw = SAMPLE_W if weighted else None
    value, grad = run(losses.CosineSimilarity(axis=axis), p.astype(dtype), t.astype(dtype), sw)
    assert_allclose(value, cosine_ref(p.astype(dtype).astype(np.float64),
                                      t.astype(dtype).astype(np.float64), axis, sw), dtype)
    if dtype == np.float64:
        cdl.gradcheck(losses.CosineSimilarity(axis=axis), p + 0.1, t, sample_weight=sw,
                      tol=GRADCHECK_TOL)


def test_cosine_similarity_keras_docstring_example():
    # keras.losses.cosine_similarity example: [-0., -0.99999994, 0.99999994], mean -0.
    y_true = [[0., 1.], [1., 1.], [1., 1.]]
    y_pred = [[1., 0.], [1., 1.], [-1., -1.]]
    loss = losses.CosineSimilarity()
    assert abs(loss.forward(np.array(y_pred), y_true)) < 1e-15
    assert abs(loss.forward(np.array(y_pred[1:2]), y_true[1:2]) + 1.0) < 1e-15


def test_cosine_similarity_norm_floor_is_keras_epsilon():
    # Below the floor 1e-7 the norm is replaced by 1e-7: cos = p.t / (1e-7 |t|).
    p, t = np.array([[3e-8, 4e-8]]), np.array([[3.0, 4.0]])
    assert_allclose(losses.CosineSimilarity().forward(p, t), -(25e-8 / 5) / 1e-7)
    cdl.gradcheck(losses.CosineSimilarity(), p, t, eps=1e-12, tol=1e-5)


@pytest.mark.parametrize("binary", [False, True], ids=["pm1", "01"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
def test_hinge_matches_keras_formula(dtype, binary, weighted):
    p = random_array((N, 3), seed=11)
    t01 = np.random.default_rng(12).integers(0, 2, (N, 3))
    t = t01 if binary else 2 * t01 - 1
    sw = SAMPLE_W if weighted else None
    value, grad = run(losses.Hinge(), p.astype(dtype), t, sw)
    ref_value, ref_grad = hinge_ref(p.astype(dtype).astype(np.float64), t, sw)
    assert_allclose(value, ref_value, dtype)
    assert_allclose(grad, ref_grad, dtype)


def test_hinge_all_ones_and_all_minus_ones_batches():
    p = random_array((5, 1), seed=13)
    for t in (np.ones(5), -np.ones(5), np.zeros(5)):
        assert_allclose(losses.Hinge().forward(p, t), hinge_ref(p, t[:, None])[0])
    # Zero targets are -1 (all-binary batch), so -1 and 0 agree.
    assert losses.Hinge().forward(p, np.zeros(5)) == losses.Hinge().forward(p, -np.ones(5))


def test_hinge_gradient_is_zero_at_the_kink():
    loss = losses.Hinge()
    loss.forward(np.array([[1.0, -1.0, 0.5]]), np.array([[1.0, -1.0, 1.0]]))
    np.testing.assert_array_equal(loss.backward(), [[0.0, 0.0, -1 / 3]])


# --- PyTorch parity ------------------------------------------------------------------

def _torch_grad(fn, x):
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    value = fn(xt)
    value.backward()
    return value.item(), xt.grad.numpy()


@pytest.mark.parametrize("torch_dtype", ["float32", "float64"])
@pytest.mark.parametrize("class_weighted", [False, True], ids=["no_cw", "cw"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
def test_nll_matches_torch(torch_dtype, class_weighted, weighted):
    torch = pytest.importorskip("torch")
    x = log_softmax(random_array((N, C), seed=14)).astype(torch_dtype)
    cw = CLASS_W if class_weighted else None
    sw = SAMPLE_W.astype(torch_dtype) if weighted else None
    value, grad = run(losses.NLL(weight=cw), x, LABELS, sw)
    weight = None if cw is None else torch.tensor(cw, dtype=getattr(torch, torch_dtype))
    labels = torch.tensor(LABELS)

    def reference(xt):
        if sw is None:
            return torch.nn.functional.nll_loss(xt, labels, weight=weight)
        per_sample = torch.nn.functional.nll_loss(xt, labels, weight=weight, reduction="none")
        den = weight[labels].sum() if weight is not None else N
        return (torch.tensor(sw) * per_sample).sum() / den

    ref_value, ref_grad = _torch_grad(reference, x)
    assert_allclose(value, ref_value, torch_dtype)
    assert_allclose(grad, ref_grad, torch_dtype)


@pytest.mark.parametrize("torch_dtype", ["float32", "float64"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
def test_class_weighted_cross_entropy_matches_torch(torch_dtype, smoothing, weighted):
    torch = pytest.importorskip("torch")
    z = random_array((N, C), seed=15).astype(torch_dtype)
    sw = SAMPLE_W.astype(torch_dtype) if weighted else None
    value, grad = run(losses.CrossEntropy(weight=CLASS_W, label_smoothing=smoothing), z,
                      LABELS, sw)
    weight = torch.tensor(CLASS_W, dtype=getattr(torch, torch_dtype))
    labels = torch.tensor(LABELS)
    F = torch.nn.functional

    def reference(zt):
        if sw is None:
            return F.cross_entropy(zt, labels, weight=weight, label_smoothing=smoothing)
        # reduction="none" gives each sample's weighted loss; the mean divides by the
        # class weights of the labels.
        per_sample = F.cross_entropy(zt, labels, weight=weight, label_smoothing=smoothing,
                                     reduction="none")
        return (torch.tensor(sw) * per_sample).sum() / weight[labels].sum()

    ref_value, ref_grad = _torch_grad(reference, z)
    assert_allclose(value, ref_value, torch_dtype)
    assert_allclose(grad, ref_grad, torch_dtype)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_class_weighted_cross_entropy_with_probabilities_matches_torch(smoothing):
    torch = pytest.importorskip("torch")
    z, t = random_array((N, C), seed=16), probs((N, C), 17)
    value, grad = run(losses.CrossEntropy(weight=CLASS_W, label_smoothing=smoothing), z, t)
    ref_value, ref_grad = _torch_grad(
        lambda zt: torch.nn.functional.cross_entropy(
            zt, torch.tensor(t), weight=torch.tensor(CLASS_W), label_smoothing=smoothing), z)
    assert_allclose(value, ref_value)
    assert_allclose(grad, ref_grad)


@pytest.mark.parametrize("torch_dtype", ["float32", "float64"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_divergence_matches_torch(torch_dtype, log_target):
    torch = pytest.importorskip("torch")
    x = log_softmax(random_array((N, 3, C), seed=18).reshape(-1, C)).reshape(N, 3, C)
    t = probs((N * 3, C), 19).reshape(N, 3, C)
    t[2, 1, 0] = 0.0
    with np.errstate(divide="ignore"):
        target = (np.log(t) if log_target else t).astype(torch_dtype)
    x = x.astype(torch_dtype)
    value, grad = run(losses.KLDivergence(log_target=log_target), x, target)
    tt = torch.tensor(target)
    if log_target:  # torch gives NaN for exp(-inf) * (-inf - x); cdl gives 0
        tt = torch.where(torch.isinf(tt), torch.tensor(-1e4, dtype=tt.dtype), tt)
    ref_value, ref_grad = _torch_grad(
        lambda xt: torch.nn.functional.kl_div(xt, tt, reduction="batchmean",
                                              log_target=log_target), x)
    assert_allclose(value, ref_value, torch_dtype)
    assert_allclose(grad, ref_grad, torch_dtype)


@pytest.mark.parametrize("torch_dtype", ["float32", "float64"])
@pytest.mark.parametrize("log_input, eps", [(True, 1e-8), (False, 1e-8), (False, 0.5)])
def test_poisson_matches_torch(torch_dtype, log_input, eps):
    torch = pytest.importorskip("torch")
    x = (random_array((N, 3), seed=20) if log_input
         else random_array((N, 3), seed=20, low=0.05, high=4.0)).astype(torch_dtype)
    t = np.random.default_rng(21).poisson(1.5, (N, 3)).astype(torch_dtype)
    value, grad = run(losses.Poisson(log_input=log_input, eps=eps), x, t)
    ref_value, ref_grad = _torch_grad(
        lambda xt: torch.nn.functional.poisson_nll_loss(
            xt, torch.tensor(t), log_input=log_input, full=False, eps=eps), x)
    assert_allclose(value, ref_value, torch_dtype)
    assert_allclose(grad, ref_grad, torch_dtype)


def test_keras_poisson_is_rates_with_eps_1e_7():
    x = random_array((N, 3), seed=22, low=0.1, high=3.0)
    t = np.random.default_rng(23).poisson(1.0, (N, 3)).astype(float)
    keras = np.mean(x - t * np.log(x + 1e-7))
    assert_allclose(losses.Poisson(log_input=False, eps=1e-7).forward(x, t), keras)


@pytest.mark.parametrize("torch_dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, axis", [((N, 6), -1), ((N, 3, 6), 1)])
def test_cosine_similarity_matches_torch(torch_dtype, shape, axis):
    torch = pytest.importorskip("torch")
    p = random_array(shape, seed=24).astype(torch_dtype)
    t = random_array(shape, seed=25).astype(torch_dtype)
    value, grad = run(losses.CosineSimilarity(axis=axis), p, t)
    ref_value, ref_grad = _torch_grad(
        lambda pt: -torch.nn.functional.cosine_similarity(pt, torch.tensor(t), dim=axis).mean(),
        p)
    assert_allclose(value, ref_value, torch_dtype)
    assert_allclose(grad, ref_grad, torch_dtype)


def test_hinge_matches_torch_autograd_of_the_keras_formula():
    torch = pytest.importorskip("torch")
    p = random_array((N, 3), seed=26)
    t = 2.0 * np.random.default_rng(27).integers(0, 2, (N, 3)) - 1
    value, grad = run(losses.Hinge(), p, t)
    ref_value, ref_grad = _torch_grad(
        lambda pt: torch.clamp(1 - torch.tensor(t) * pt, min=0).mean(), p)
    assert_allclose(value, ref_value)
    assert_allclose(grad, ref_grad)


# --- gradient checks (float64, with and without sample weights) --------------------------

def _gradcheck_cases():
    z = random_array((N, C), seed=30)
    lp = log_softmax(z)
    t = probs((N, C), 31)
    t[3, 1] = 0.0
    with np.errstate(divide="ignore"):
        log_t = np.log(t)
    hinge_pred = random_array((N, 3), seed=32)
    hinge_pred[np.abs(np.abs(hinge_pred) - 1) < 1e-3] += 0.01  # away from the kink
    return {
        "nll": (losses.NLL(), lp, LABELS),
        "nll_cw": (losses.NLL(weight=CLASS_W), lp, LABELS),
        "ce_cw": (losses.CrossEntropy(weight=CLASS_W), z, LABELS),
        "ce_cw_smoothed": (losses.CrossEntropy(weight=CLASS_W, label_smoothing=0.2), z, LABELS),
        "ce_cw_probs": (losses.CrossEntropy(weight=CLASS_W, label_smoothing=0.1), z, t),
        "kld": (losses.KLDivergence(), lp, t),
        "kld_log_target": (losses.KLDivergence(log_target=True), lp, log_t),
        "poisson_log": (losses.Poisson(), random_array((N, 3), seed=33),
                        np.random.default_rng(34).poisson(2.0, (N, 3))),
        "poisson_rates": (losses.Poisson(log_input=False),
                          random_array((N, 3), seed=35, low=0.5, high=3.0),
                          np.random.default_rng(36).poisson(2.0, (N, 3))),
        "cosine": (losses.CosineSimilarity(), random_array((N, 5), seed=37),
                   random_array((N, 5), seed=38)),
        "cosine_axis1": (losses.CosineSimilarity(axis=1), random_array((N, 4, 3), seed=39),
                         random_array((N, 4, 3), seed=40)),
        "hinge": (losses.Hinge(), hinge_pred,
                  np.random.default_rng(41).integers(0, 2, (N, 3))),
    }


GRADCHECK_CASES = _gradcheck_cases()


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
@pytest.mark.parametrize("case", sorted(GRADCHECK_CASES))
def test_gradcheck(case, weighted):
    loss, pred, target = GRADCHECK_CASES[case]
    errors = cdl.gradcheck(loss, pred, target, sample_weight=SAMPLE_W if weighted else None)
    assert errors["input"] <= GRADCHECK_TOL


# --- class weights: the unweighted path, equivalences, the fused step ---------------------

def test_unweighted_cross_entropy_path_is_unchanged(dtype):
    z = random_array((N, C), seed=42, dtype=dtype)
    loss = losses.CrossEntropy()
    value = loss.forward(z, LABELS, SAMPLE_W.astype(dtype))
    grad = loss.backward()
    probs_ = np.empty_like(z)
    assert value == _k.cross_entropy_labels(z, LABELS, probs_, SAMPLE_W.astype(dtype))
    ref_grad = _k.cross_entropy_labels_grad(probs_, LABELS, np.empty_like(z),
                                            SAMPLE_W.astype(dtype))
    np.testing.assert_array_equal(grad, ref_grad)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_unit_class_weights_equal_no_class_weights(smoothing):
    z = random_array((N, C), seed=43)
    for target in (LABELS, probs((N, C), 44)):
        ones = run(losses.CrossEntropy(weight=np.ones(C), label_smoothing=smoothing), z, target,
                   SAMPLE_W)
        plain = run(losses.CrossEntropy(label_smoothing=smoothing), z, target, SAMPLE_W)
        assert_allclose(ones[0], plain[0])
        assert_allclose(ones[1], plain[1])
    assert_allclose(run(losses.NLL(weight=np.ones(C)), z, LABELS)[1],
                    run(losses.NLL(), z, LABELS)[1])


@pytest.mark.parametrize("class_weighted", [False, True], ids=["no_cw", "cw"])
def test_nll_of_log_softmax_is_cross_entropy(class_weighted):
    # The chain rule through log-softmax turns NLL's gradient into CrossEntropy's.
    z = random_array((N, C), seed=49)
    cw = CLASS_W if class_weighted else None
    ce_value, ce_grad = run(losses.CrossEntropy(weight=cw), z, LABELS, SAMPLE_W)
    nll_value, g = run(losses.NLL(weight=cw), log_softmax(z), LABELS, SAMPLE_W)
    assert_allclose(nll_value, ce_value)
    assert_allclose(g - np.exp(log_softmax(z)) * g.sum(axis=1, keepdims=True), ce_grad)


def test_nll_after_a_log_softmax_layer_trains_like_cross_entropy():
    if not hasattr(cdl.layers, "LogSoftmax"):
        pytest.skip("no LogSoftmax layer in this checkout")
    x, y = random_array((24, 4), seed=56), np.arange(24) % 3

    def fit(layers, loss):
        model = cdl.Sequential(layers, input_shape=(4,), dtype="float64", seed=2)
        model.compile("sgd", loss)
        return model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)

    nll = fit([cdl.layers.Dense(3), cdl.layers.LogSoftmax()], losses.NLL(weight=[1, 2, 3]))
    ce = fit([cdl.layers.Dense(3)], losses.CrossEntropy(weight=[1, 2, 3]))
    assert_allclose(nll.history["loss"], ce.history["loss"], rtol=1e-9)


def test_class_weights_scale_free():
    # Dividing by the labels' total class weight makes the loss scale-invariant.
    z = random_array((N, C), seed=45)
    a = losses.CrossEntropy(weight=CLASS_W).forward(z, LABELS)
    b = losses.CrossEntropy(weight=10 * CLASS_W).forward(z, LABELS)
    assert_allclose(a, b)


def test_fused_step_skips_class_weighted_cross_entropy():
    assert _fused._loss_code(losses.CrossEntropy())[0] is not None
    assert _fused._loss_code(losses.CrossEntropy(weight=[1.0, 2.0, 3.0])) == (None, None)
    for loss in (losses.NLL(), losses.KLDivergence(), losses.Poisson(),
                 losses.CosineSimilarity(), losses.Hinge()):
        assert _fused._loss_code(loss) == (None, None)


def test_training_with_class_weighted_cross_entropy_uses_them():
    x = random_array((40, 5), seed=46)
    y = np.random.default_rng(47).integers(0, 3, 40)
    weight = [1.0, 5.0, 0.2]

    def final_weights(loss):
        model = cdl.Sequential([cdl.layers.Dense(3)], input_shape=(5,), seed=1)
        model.compile("sgd", loss)
        model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        return model.get_weights()

    weighted = final_weights(losses.CrossEntropy(weight=weight))
    plain = final_weights(losses.CrossEntropy())
    assert not np.allclose(weighted[0], plain[0])
    # Same as the layer-by-layer path of a model that holds the reference loss.
    model = cdl.Sequential([cdl.layers.Dense(3)], input_shape=(5,), seed=1)
    model.compile("sgd", losses.CrossEntropy(weight=weight))
    model.use_fused_step = False
    model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), weighted):
        np.testing.assert_array_equal(a, b)


# --- names, configs, saving -------------------------------------------------------------

@pytest.mark.parametrize("name, cls", [
    ("nll", losses.NLL), ("kl_divergence", losses.KLDivergence), ("kld", losses.KLDivergence),
    ("poisson", losses.Poisson), ("cosine_similarity", losses.CosineSimilarity),
    ("hinge", losses.Hinge)])
def test_compile_strings(name, cls):
    assert type(losses.get(name)) is cls
    model = cdl.Sequential([cdl.layers.Dense(3)], input_shape=(5,), seed=0)
    model.compile("sgd", name)
    assert type(model.loss) is cls


CONFIG_CASES = [
    losses.NLL(), losses.NLL(weight=[0.5, 1.0, 2.0, 0.0]),
    losses.CrossEntropy(weight=(1, 2, 3, 4), label_smoothing=0.1), losses.CrossEntropy(),
    losses.KLDivergence(), losses.KLDivergence(log_target=True),
    losses.Poisson(), losses.Poisson(log_input=False, eps=1e-7),
    losses.CosineSimilarity(), losses.CosineSimilarity(axis=1), losses.Hinge(),
]


@pytest.mark.parametrize("loss", CONFIG_CASES, ids=repr)
def test_from_config_round_trip(loss):
    config = {"class_name": type(loss).__name__, "config": loss.get_config()}
    clone = losses.from_config(config)
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    assert repr(clone) == repr(loss)


def test_cross_entropy_config_holds_the_weight_as_a_list():
    config = losses.CrossEntropy(weight=np.array([1, 2.5]), label_smoothing=0.1).get_config()
    assert config == {"weight": [1.0, 2.5], "label_smoothing": 0.1, "ignore_index": -100,
                      "reduction": "mean"}
    assert type(config["weight"]) is list and all(type(w) is float for w in config["weight"])
    # A config saved before class weights existed still loads.
    old = losses.from_config({"class_name": "CrossEntropy", "config": {"label_smoothing": 0.1}})
    assert old.weight is None and old.label_smoothing == 0.1


def test_model_with_class_weighted_cross_entropy_saves_and_loads(tmp_path):
    model = cdl.Sequential([cdl.layers.Dense(3)], input_shape=(5,), seed=1)
    model.compile("adam", losses.CrossEntropy(weight=[1.0, 2.0, 0.5], label_smoothing=0.05))
    path = tmp_path / "model.cdl"
    model.save(path)
    loaded = cdl.load_model(path)
    assert type(loaded.loss) is losses.CrossEntropy
    assert loaded.loss.get_config() == model.loss.get_config()
    x, y = random_array((6, 5), seed=48), np.array([0, 1, 2, 2, 1, 0])
    assert loaded.loss.forward(loaded.predict(x), y) == model.loss.forward(model.predict(x), y)


@pytest.mark.parametrize("loss, y", [
    ("kld", probs((24, 3), 50)), ("poisson", np.random.default_rng(51).poisson(1.0, (24, 3))),
    ("cosine_similarity", random_array((24, 3), seed=52)),
    ("hinge", np.random.default_rng(53).integers(0, 2, (24, 3))),
    ("nll", np.random.default_rng(54).integers(0, 3, 24))])
def test_fit_runs_with_each_new_loss(loss, y):
    model = cdl.Sequential([cdl.layers.Dense(3)], input_shape=(4,), seed=2)
    model.compile("sgd", loss)
    history = model.fit(random_array((24, 4), seed=55), y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


# --- rejected targets and arguments ---------------------------------------------------

LP = log_softmax(random_array((N, C), seed=60))


@pytest.mark.parametrize("make, pred, target, exc, match", [
    (losses.NLL, LP, probs((N, C), 61), ValueError, "NLL takes integer class labels"),
    (losses.NLL, LP, np.where(LABELS == 3, 4, LABELS), ValueError,
     "label 4 at position 1 is out of range for 4 classes"),
    (losses.NLL, LP, LABELS - 1, ValueError, "label -1 at position 0 is out of range"),
    (losses.NLL, LP, LABELS + 0.5, ValueError, "whole class numbers"),
    (losses.NLL, LP, LABELS[:-1], ValueError, r"shape \(6,\), expected \(7,\)"),
    (losses.NLL, LP, LABELS.astype(str), TypeError, "labels must hold real numbers"),
    (losses.NLL, LP[0], LABELS, ValueError, r"must have shape \(n, classes\)"),
    (lambda: losses.NLL(weight=[1.0, 2.0]), LP, LABELS, ValueError,
     "weight has 2 class weights but pred has 4 classes"),
    (lambda: losses.NLL(weight=[0.0, 1.0, 1.0, 1.0]), LP, np.zeros(N, int), ValueError,
     "class weights of this batch's labels sum to 0"),
    (lambda: losses.CrossEntropy(weight=[1.0, 2.0, 3.0]), LP, LABELS, ValueError,
     "weight has 3 class weights but pred has 4 classes"),
    (lambda: losses.CrossEntropy(weight=[0.0, 1.0, 1.0, 1.0], label_smoothing=0.1), LP,
     np.zeros(N, int), ValueError, "class weights of this batch's labels sum to 0"),
    (lambda: losses.CrossEntropy(weight=[1.0, 1.0, 1.0, 1.0]), LP, LABELS + 1, ValueError,
     "label 4 at position 1 is out of range"),
    (losses.KLDivergence, LP, probs((N, C), 62) - 0.5, ValueError,
     "KL divergence targets must be non-negative"),
    (losses.KLDivergence, LP, np.full((N, C), np.nan), ValueError, "contains NaN"),
    (losses.KLDivergence, LP, np.full((N, C), -np.inf), ValueError, "contains infinity"),
    (lambda: losses.KLDivergence(log_target=True), LP, np.full((N, C), np.inf), ValueError,
     r"contains \+infinity"),
    (lambda: losses.KLDivergence(log_target=True), LP, np.full((N, C), np.nan), ValueError,
     "contains NaN"),
    (losses.KLDivergence, LP, probs((N, 3), 63), ValueError,
     r"has shape \(7, 3\), expected \(7, 4\)"),
    (losses.Poisson, LP, -np.ones((N, C)), ValueError, "Poisson targets .* non-negative"),
    (losses.Poisson, LP, np.full((N, C), np.inf), ValueError, "contains infinity"),
    (losses.Hinge, LP, np.full((N, C), 0.5), ValueError, "hinge targets must be -1 or 1"),
    (losses.Hinge, LP, np.tile([-1.0, 0.0, 1.0, 1.0], (N, 1)), ValueError,
     "hinge targets must be -1 or 1"),
    (losses.Hinge, LP, np.full((N, C), np.nan), ValueError, "contains NaN"),
    (losses.CosineSimilarity, LP[:, 0], LP[:, 0], ValueError, "needs pred of shape"),
    (lambda: losses.CosineSimilarity(axis=0), LP, LP, ValueError, "batch axis"),
    (lambda: losses.CosineSimilarity(axis=2), LP, LP, ValueError, "out of range"),
    (losses.CosineSimilarity, LP, LP.T, ValueError, r"has shape \(4, 7\)"),
    (losses.CosineSimilarity, LP[:, :0], LP[:, :0], ValueError, "empty batch|length 0"),
    (losses.Hinge, LP[:0], LP[:0], ValueError, "empty batch"),
    (losses.NLL, LP[:0], LABELS[:0], ValueError, "empty batch"),
])
def test_bad_targets_are_rejected(make, pred, target, exc, match):
    with pytest.raises(exc, match=match):
        make().forward(pred, target)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: losses.NLL(weight=[1.0, -1.0]), ValueError, "non-negative"),
    (lambda: losses.NLL(weight=[0.0, 0.0]), ValueError, "at least one positive"),
    (lambda: losses.NLL(weight=[[1.0, 2.0]]), ValueError, "1-D"),
    (lambda: losses.CrossEntropy(weight=[1.0, np.nan]), ValueError, "contains NaN"),
    (lambda: losses.CrossEntropy(weight="ab"), TypeError, "weight must hold real numbers"),
    (lambda: losses.KLDivergence(log_target="yes"), TypeError, "log_target must be"),
    (lambda: losses.Poisson(log_input=1), TypeError, "log_input must be"),
    (lambda: losses.Poisson(eps=0.0), ValueError, "eps"),
    (lambda: losses.CosineSimilarity(axis=1.5), TypeError, "axis must be an integer"),
])
def test_bad_arguments_are_rejected(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_kernel_rejects_bad_class_weights():
    z = random_array((N, C), seed=64)
    with pytest.raises(ValueError, match="class_weight has 3 elements"):
        _k.cross_entropy_labels_weighted(z, LABELS, np.empty_like(z), np.ones(3))
    with pytest.raises(TypeError):
        _k.cross_entropy_labels_weighted(z, LABELS, np.empty_like(z), np.ones(C, np.float32))


@pytest.mark.parametrize("loss, target", [
    (losses.NLL(), LABELS), (losses.NLL(weight=CLASS_W), LABELS),
    (losses.CrossEntropy(weight=CLASS_W), LABELS), (losses.KLDivergence(), probs((N, C), 65)),
    (losses.Poisson(), np.ones((N, C))), (losses.CosineSimilarity(), np.ones((N, C))),
    (losses.Hinge(), np.ones((N, C)))])
def test_nan_prediction_gives_nan_loss_and_gradient(loss, target):
    pred = LP.copy()
    pred[1, LABELS[1]] = np.nan
    assert np.isnan(loss.forward(pred, target))
    assert np.isnan(loss.backward()[1]).any()


@pytest.mark.parametrize("loss", [losses.NLL(), losses.KLDivergence(), losses.Poisson(),
                                  losses.CosineSimilarity(), losses.Hinge()], ids=repr)
def test_backward_before_forward(loss):
    with pytest.raises(RuntimeError, match="backward called before forward"):
        loss.backward()
