"""Optimizers: update rules against a NumPy reference and torch.optim, state, groups, checks.

The reference implementations below are written from PyTorch's documented
algorithms (``torch.optim`` docs), element-wise on flat float64 arrays with
their own state; they share no code with ``cdl.optimizers``.
"""
import math
import platform

import numpy as np
import numpy.testing as npt
import pytest

import cdl
from cdl import optimizers as optim
from helpers import TOLERANCES

SHAPES = [(4, 3), (3,), (2, 2, 2)]  # separate arrays: one kernel call per array
N_STEPS = 100

# float64 against the reference / torch: ~1e-12 relative. The tiny atol only
# covers state entries that cancel to ~0 (a momentum buffer crossing zero).
RTOL64 = {"rtol": 1e-12, "atol": 1e-14}


# --- NumPy reference implementations -------------------------------------------

class _Ref:
    """One optimizer on a flat float64 vector; ``state`` uses cdl's/torch's names,
    None for a buffer the configuration does not use."""

    def __init__(self, lr, **hyper):
        self.lr = lr
        self.t = 0
        self.hyper = hyper
        self.state = {}

    def step(self, p, g):
        """Update the flat float64 ``p`` in place from ``g``."""
        self.t += 1
        if self.t == 1:
            self.init(p.size)
        self.update(p, np.asarray(g, dtype=np.float64))

    def coupled(self, p, g, wd):
        return g + wd * p if wd else g.copy()


class RefSGD(_Ref):
    def __init__(self, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                         weight_decay=weight_decay)

    def init(self, n):
        self.state = {"momentum_buffer": None}

    def update(self, p, g):
        h = self.hyper
        d = self.coupled(p, g, h["weight_decay"])
        mu = h["momentum"]
        if mu:
            if self.t == 1:
                b = d.copy()
            else:
                b = mu * self.state["momentum_buffer"] + (1 - h["dampening"]) * d
            self.state["momentum_buffer"] = b
            d = d + mu * b if h["nesterov"] else b
        p -= self.lr * d


class RefAdagrad(_Ref):
    def __init__(self, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10):
        super().__init__(lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps)

    def init(self, n):
        self.state = {"sum": np.full(n, self.hyper["initial_accumulator_value"])}

    def update(self, p, g):
        h = self.hyper
        d = self.coupled(p, g, h["weight_decay"])
        clr = self.lr / (1 + (self.t - 1) * h["lr_decay"])
        self.state["sum"] = self.state["sum"] + d * d
        p -= clr * d / (np.sqrt(self.state["sum"]) + h["eps"])


class RefRMSprop(_Ref):
    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered)

    def init(self, n):
        h = self.hyper
        self.state = {"square_avg": np.zeros(n),
                      "grad_avg": np.zeros(n) if h["centered"] else None,
                      "momentum_buffer": np.zeros(n) if h["momentum"] else None}

    def update(self, p, g):
        h, s = self.hyper, self.state
        a = h["alpha"]
        d = self.coupled(p, g, h["weight_decay"])
        s["square_avg"] = a * s["square_avg"] + (1 - a) * d * d
        if h["centered"]:
            s["grad_avg"] = a * s["grad_avg"] + (1 - a) * d
            denom = np.sqrt(s["square_avg"] - s["grad_avg"] ** 2) + h["eps"]
        else:
            denom = np.sqrt(s["square_avg"]) + h["eps"]
        if h["momentum"]:
            s["momentum_buffer"] = h["momentum"] * s["momentum_buffer"] + d / denom
            p -= self.lr * s["momentum_buffer"]
        else:
            p -= self.lr * d / denom


class RefAdam(_Ref):
    decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)

    def init(self, n):
        self.state = {"exp_avg": np.zeros(n), "exp_avg_sq": np.zeros(n),
                      "max_exp_avg_sq": np.zeros(n) if self.hyper["amsgrad"] else None}

    def update(self, p, g):
        h, s, t = self.hyper, self.state, self.t
        b1, b2 = h["betas"]
        if self.decoupled:
            p *= 1 - self.lr * h["weight_decay"]
            d = g.copy()
        else:
            d = self.coupled(p, g, h["weight_decay"])
        s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * d
        s["exp_avg_sq"] = b2 * s["exp_avg_sq"] + (1 - b2) * d * d
        second = s["exp_avg_sq"]
        if h["amsgrad"]:  # running max of the uncorrected second moment
            s["max_exp_avg_sq"] = np.maximum(s["max_exp_avg_sq"], s["exp_avg_sq"])
            second = s["max_exp_avg_sq"]
        m_hat = s["exp_avg"] / (1 - b1 ** t)
        v_hat = second / (1 - b2 ** t)
        p -= self.lr * m_hat / (np.sqrt(v_hat) + h["eps"])


class RefAdamW(RefAdam):
    decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad)


class RefAdamax(_Ref):
    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def init(self, n):
        self.state = {"exp_avg": np.zeros(n), "exp_inf": np.zeros(n)}

    def update(self, p, g):
        h, s = self.hyper, self.state
        b1, b2 = h["betas"]
        d = self.coupled(p, g, h["weight_decay"])
        s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * d
        s["exp_inf"] = np.maximum(b2 * s["exp_inf"], np.abs(d) + h["eps"])
        p -= self.lr / (1 - b1 ** self.t) * s["exp_avg"] / s["exp_inf"]


class RefNAdam(_Ref):
    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 momentum_decay=4e-3, decoupled_weight_decay=False):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         momentum_decay=momentum_decay,
                         decoupled_weight_decay=decoupled_weight_decay)
        self.mu_product = 1.0

    def init(self, n):
        self.state = {"exp_avg": np.zeros(n), "exp_avg_sq": np.zeros(n)}

    def update(self, p, g):
        h, s, t = self.hyper, self.state, self.t
        b1, b2 = h["betas"]
        if h["decoupled_weight_decay"]:
            p *= 1 - self.lr * h["weight_decay"]
            d = g.copy()
        else:
            d = self.coupled(p, g, h["weight_decay"])
        mu = b1 * (1 - 0.5 * 0.96 ** (t * h["momentum_decay"]))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * h["momentum_decay"]))
        self.mu_product *= mu
        s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * d
        s["exp_avg_sq"] = b2 * s["exp_avg_sq"] + (1 - b2) * d * d
        denom = np.sqrt(s["exp_avg_sq"] / (1 - b2 ** t)) + h["eps"]
        p -= self.lr * (1 - mu) / (1 - self.mu_product) * d / denom
        p -= self.lr * mu_next / (1 - self.mu_product * mu_next) * s["exp_avg"] / denom


class RefRAdam(_Ref):
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         decoupled_weight_decay=decoupled_weight_decay)

    def init(self, n):
        self.state = {"exp_avg": np.zeros(n), "exp_avg_sq": np.zeros(n)}

    def update(self, p, g):
        h, s, t = self.hyper, self.state, self.t
        b1, b2 = h["betas"]
        if h["decoupled_weight_decay"]:
            p *= 1 - self.lr * h["weight_decay"]
            d = g.copy()
        else:
            d = self.coupled(p, g, h["weight_decay"])
        s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * d
        s["exp_avg_sq"] = b2 * s["exp_avg_sq"] + (1 - b2) * d * d
        m_hat = s["exp_avg"] / (1 - b1 ** t)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho_t > 5:
            adaptive = math.sqrt(1 - b2 ** t) / (np.sqrt(s["exp_avg_sq"]) + h["eps"])
            r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                          / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            p -= self.lr * m_hat * adaptive * r
        else:
            p -= self.lr * m_hat


REFS = {"SGD": RefSGD, "Adagrad": RefAdagrad, "RMSprop": RefRMSprop, "Adam": RefAdam,
        "AdamW": RefAdamW, "Adamax": RefAdamax, "NAdam": RefNAdam, "RAdam": RefRAdam}
NAMES = list(REFS)

#: (optimizer, constructor arguments): every option of every optimizer.
CASES = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.02, "momentum": 0.8, "nesterov": True, "weight_decay": 0.2}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05}),
    ("Adagrad", {"weight_decay": 0.1}),
    ("Adagrad", {"initial_accumulator_value": 0.5}),
    ("Adagrad", {"eps": 1e-3, "lr_decay": 0.01, "weight_decay": 0.05,
                 "initial_accumulator_value": 0.1}),
    ("RMSprop", {}),
    ("RMSprop", {"alpha": 0.9, "eps": 1e-3}),
    ("RMSprop", {"weight_decay": 0.1}),
    ("RMSprop", {"momentum": 0.8}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "weight_decay": 0.1, "alpha": 0.95}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-3}),
    ("Adam", {"weight_decay": 0.1}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "betas": (0.5, 0.9)}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.3}),
    ("AdamW", {"amsgrad": True, "betas": (0.7, 0.99), "eps": 1e-4}),
    ("Adamax", {}),
    ("Adamax", {"betas": (0.8, 0.95), "eps": 1e-3}),
    ("Adamax", {"weight_decay": 0.1}),
    ("NAdam", {}),
    ("NAdam", {"momentum_decay": 0.02, "betas": (0.8, 0.95), "eps": 1e-4}),
    ("NAdam", {"weight_decay": 0.1}),
    ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {}),
    ("RAdam", {"betas": (0.8, 0.9), "eps": 1e-4}),  # rectification from step 6 on
    ("RAdam", {"weight_decay": 0.1}),
    ("RAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
]


def case_id(case):
    name, kwargs = case
    return name + ("-" + "-".join(f"{k}={v}" for k, v in kwargs.items()) if kwargs else "")


def lr_factor(step):
    """The learning rate changes twice during a run (as a schedule would)."""
    return 1.0 if step < 40 else 0.3 if step < 70 else 1.7


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def make_grads(rng, dtype):
    """Gradients of varied magnitude; element 0 always has a zero gradient."""
    grads = []
    for s in SHAPES:
        grads.append((rng.standard_normal(s) * np.exp(rng.normal(0, 1, s))).astype(dtype))
    grads[0][0, 0] = 0
    return grads


def flat(arrays):
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays])


def assert_state_matches(opt, ref, **tol):
    assert set(opt.state) == set(ref.state) == set(type(opt)._state_names)
    for name, expected in ref.state.items():
        actual = opt.state[name]
        if expected is None:
            assert actual is None, f"state {name!r} should be unused"
        else:
            assert actual is not None, f"state {name!r} missing"
            npt.assert_allclose(actual, expected, err_msg=f"state {name!r}", **tol)


# --- against the NumPy reference -------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_reference(case, dtype):
    name, kwargs = case
    opt = getattr(optim, name)(**kwargs)
    ref = REFS[name](**kwargs)
    base_lr = ref.lr
    assert opt.lr == base_lr  # same default learning rate
    params = make_params(dtype)
    p_ref = flat(params)
    rng = np.random.default_rng(1)
    for step in range(N_STEPS):
        opt.lr = ref.lr = base_lr * lr_factor(step)
        grads = make_grads(rng, dtype)
        kept = [g.copy() for g in grads]
        opt.step(params, grads)
        ref.step(p_ref, flat(grads))
        for g, k in zip(grads, kept):  # gradients are never modified
            assert np.array_equal(g, k)
    assert opt.iterations == N_STEPS
    assert all(p.dtype == dtype for p in params)
    assert all(a.dtype == dtype for a in opt.state.values() if a is not None)
    # float32 runs against a float64 reference: the float32 table (rtol 1e-4,
    # atol 1e-5) holds over 100 steps of float32 rounding.
    tol = RTOL64 if dtype == np.float64 else TOLERANCES[np.dtype(np.float32)]
    npt.assert_allclose(flat(params), p_ref, **tol)
    assert_state_matches(opt, ref, **tol)
    if name == "NAdam":
        assert opt.mu_product == pytest.approx(ref.mu_product, rel=1e-14)
    # The run moved the parameters by far more than the tolerance.
    assert np.max(np.abs(flat(params) - flat(make_params(dtype)))) > 1e-3


def test_reference_detects_a_wrong_rule():
    """The comparison is sharp: Keras-style SGD momentum (lr folded into the
    velocity) agrees at constant lr but not once lr changes."""
    params = make_params(np.float64)
    opt = optim.SGD(lr=0.05, momentum=0.9)
    ref = RefSGD(lr=0.05, momentum=0.9)
    p_ref = flat(params)
    rng = np.random.default_rng(1)
    velocity = np.zeros_like(p_ref)
    p_keras = p_ref.copy()
    for step in range(N_STEPS):
        lr = 0.05 * lr_factor(step)
        opt.lr = ref.lr = lr
        g = make_grads(rng, np.float64)
        opt.step(params, g)
        ref.step(p_ref, flat(g))
        velocity = 0.9 * velocity - lr * flat(g)
        p_keras += velocity
    npt.assert_allclose(flat(params), p_ref, **RTOL64)
    assert not np.allclose(p_keras, p_ref, **RTOL64)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_match_pytorch(name):
    """Defaults of every hyper-parameter are torch.optim's."""
    config = getattr(optim, name)().get_config()
    ref = REFS[name]()
    expected = {"lr": ref.lr, **ref.hyper}
    for key, value in expected.items():
        actual = config[key]
        assert (tuple(actual) if key == "betas" else actual) == value, key


# --- against torch.optim ------------------------------------------------------------

def torch_flat_state(opt_t, tparams, name):
    values = [opt_t.state[p].get(name) for p in tparams]
    if any(v is None for v in values):
        return None
    return np.concatenate([v.detach().numpy().reshape(-1) for v in values])


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_torch(case, torch64):
    torch = torch64
    name, kwargs = case
    params = make_params(np.float64)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = getattr(optim, name)(**kwargs)
    opt_t = getattr(torch.optim, name)(tparams, foreach=False, **kwargs)
    base_lr = opt.lr
    assert opt_t.param_groups[0]["lr"] == base_lr
    rng = np.random.default_rng(2)
    for step in range(N_STEPS):
        opt.lr = base_lr * lr_factor(step)
        opt_t.param_groups[0]["lr"] = base_lr * lr_factor(step)
        grads = make_grads(rng, np.float64)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        opt.step(params, grads)
        opt_t.step()
    npt.assert_allclose(flat(params), flat([t.detach().numpy() for t in tparams]), **RTOL64)
    for state_name in type(opt)._state_names:
        expected = torch_flat_state(opt_t, tparams, state_name)
        actual = opt.state[state_name]
        if expected is None:
            assert actual is None, state_name
        else:
            npt.assert_allclose(actual, expected, err_msg=state_name, **RTOL64)
    assert opt.iterations == N_STEPS
    if name != "SGD":  # torch's SGD keeps no step count
        assert float(opt_t.state[tparams[0]]["step"]) == N_STEPS
    if name == "NAdam":
        mu_product = opt_t.state[tparams[0]]["mu_product"]
        assert mu_product.dtype == torch.float64
        assert opt.mu_product == pytest.approx(float(mu_product), rel=1e-14)


# --- state_dict ------------------------------------------------------------------------

#: One configuration per optimizer with as much state as it can keep.
RICH = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    "Adagrad": {"lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 0.1},
    "RMSprop": {"momentum": 0.5, "centered": True, "weight_decay": 0.1},
    "Adam": {"amsgrad": True, "weight_decay": 0.1},
    "AdamW": {"amsgrad": True, "weight_decay": 0.05},
    "Adamax": {"weight_decay": 0.1},
    "NAdam": {"weight_decay": 0.1, "decoupled_weight_decay": True},
    "RAdam": {"weight_decay": 0.1},
}


def grad_sequence(n, dtype, seed=3):
    rng = np.random.default_rng(seed)
    return [make_grads(rng, dtype) for _ in range(n)]


@pytest.mark.parametrize("k", [0, 3, 7])
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name, k, dtype):
    cls = getattr(optim, name)
    grads = grad_sequence(k + 10, dtype)
    twin, twin_params = cls(**RICH[name]), make_params(dtype)
    for step, g in enumerate(grads):
        twin.lr = 1e-2 * lr_factor(step * 10)
        twin.step(twin_params, g)

    first, params = cls(**RICH[name]), make_params(dtype)
    for step, g in enumerate(grads[:k]):
        first.lr = 1e-2 * lr_factor(step * 10)
        first.step(params, g)
    saved = first.state_dict()
    assert saved["class"] == name and saved["iterations"] == k
    # The saved arrays are copies: later steps of `first` do not change them.
    snapshot = {key: None if a is None else a.copy() for key, a in saved["state"].items()}
    first.step(make_params(dtype), grads[0])
    for key, a in saved["state"].items():
        assert (a is None and snapshot[key] is None) or np.array_equal(a, snapshot[key])

    # A fresh optimizer (default hyper-parameters: the config is restored too),
    # loaded before its first step.
    resumed = cls()
    resumed.load_state_dict(saved)
    assert resumed.get_config() == first.get_config()
    assert resumed.iterations == k
    for step, g in enumerate(grads[k:], start=k):
        resumed.lr = 1e-2 * lr_factor(step * 10)
        resumed.step(params, g)
    for p, q in zip(params, twin_params):
        assert np.array_equal(p, q)
    for key, a in twin.state.items():
        assert (a is None and resumed.state[key] is None) or np.array_equal(a, resumed.state[key])
    if name == "NAdam":
        assert resumed.mu_product == twin.mu_product


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_into_a_used_optimizer(name, dtype):
    """Loading into an optimizer that already stepped on these parameters
    replaces its state in place."""
    cls = getattr(optim, name)
    grads = grad_sequence(12, dtype)
    twin, twin_params = cls(**RICH[name]), make_params(dtype)
    for g in grads:
        twin.step(twin_params, g)
    source, params = cls(**RICH[name]), make_params(dtype)
    for g in grads[:5]:
        source.step(params, g)
    saved = source.state_dict()
    other, other_params = cls(**RICH[name]), make_params(dtype, seed=9)
    for g in grads[6:]:
        other.step(other_params, g)
    other.load_state_dict(saved)
    for g in grads[5:]:
        other.step(params, g)
    for p, q in zip(params, twin_params):
        assert np.array_equal(p, q)
    # The loaded arrays were copied: changing the dict afterwards changes nothing.
    for a in saved["state"].values():
        if a is not None:
            a[...] = 123.0
    assert not any(np.any(a == 123.0) for a in other.state.values() if a is not None)


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_rejects_other_class_and_sizes(name):
    cls = getattr(optim, name)
    other_name = "Adam" if name != "Adam" else "SGD"
    foreign = getattr(optim, other_name)(**RICH[other_name])
    foreign.step(make_params(np.float64), grad_sequence(1, np.float64)[0])
    with pytest.raises(ValueError, match=other_name):
        cls().load_state_dict(foreign.state_dict())

    opt = cls(**RICH[name])
    params = make_params(np.float64)
    for g in grad_sequence(3, np.float64):
        opt.step(params, g)
    opt.lr = 0.125
    saved = opt.state_dict()

    # Into an optimizer whose state belongs to parameters of another size.
    small = [np.ones(5)]
    used = cls(**RICH[name])
    used.step(small, [np.ones(5)])
    before = used.state_dict()
    with pytest.raises(ValueError):
        used.load_state_dict(saved)
    # A rejected load leaves the optimizer as it was.
    after = used.state_dict()
    assert after["iterations"] == before["iterations"] and after["config"] == before["config"]
    assert after["scalars"] == before["scalars"]
    used.step(small, [np.ones(5)])

    # Into a fresh optimizer, then stepped with parameters of another size.
    fresh = cls()
    fresh.load_state_dict(saved)
    with pytest.raises(ValueError, match="elements"):
        fresh.step(small, [np.ones(5)])

    # Unknown state names.
    bad = dict(saved, state={**saved["state"], "velocity": np.zeros(27)})
    with pytest.raises(ValueError, match="velocity"):
        cls().load_state_dict(bad)


# --- parameter groups ------------------------------------------------------------------

# Multipliers and lr factors are powers of two so that lr * lr_mult * factor is
# exact in any order: the grouped run must then be bit-identical to the split one.
GROUP_LR = 0.03
GROUP_WD = 0.1


def pow2_factor(step):
    return 1.0 if step < 10 else 0.5 if step < 20 else 2.0


@pytest.mark.parametrize("name", NAMES)
def test_param_groups_match_separate_optimizers(name, dtype):
    cls = getattr(optim, name)
    extra = {k: v for k, v in RICH[name].items() if k not in ("lr", "weight_decay")}
    a, b, c = make_params(dtype)
    opt = cls(lr=GROUP_LR, weight_decay=GROUP_WD, **extra, param_groups=[
        {"params": [a], "lr_mult": 0.5, "weight_decay_mult": 2.0},
        {"params": [c], "lr_mult": 4.0, "weight_decay_mult": 0.0}])
    a2, b2, c2 = (x.copy() for x in (a, b, c))
    split = [(cls(lr=GROUP_LR * 0.5, weight_decay=GROUP_WD * 2.0, **extra), a2, 0.5),
             (cls(lr=GROUP_LR, weight_decay=GROUP_WD, **extra), b2, 1.0),
             (cls(lr=GROUP_LR * 4.0, weight_decay=0.0, **extra), c2, 4.0)]
    for step, (ga, gb, gc) in enumerate(grad_sequence(30, dtype)):
        opt.lr = GROUP_LR * pow2_factor(step)
        opt.step([a, b, c], [ga, gb, gc])
        for (o, p, mult), g in zip(split, (ga, gb, gc)):
            o.lr = GROUP_LR * mult * pow2_factor(step)
            o.step([p], [g])
    for p, q in zip((a, b, c), (a2, b2, c2)):
        npt.assert_array_equal(p, q)
    # The multipliers mattered.
    plain, plain_params = cls(lr=GROUP_LR, weight_decay=GROUP_WD, **extra), make_params(dtype)
    for step, g in enumerate(grad_sequence(30, dtype)):
        plain.lr = GROUP_LR * pow2_factor(step)
        plain.step(plain_params, g)
    assert not np.allclose(plain_params[0], a) and not np.allclose(plain_params[2], c)
    npt.assert_array_equal(plain_params[1], b)


@pytest.mark.parametrize("name", NAMES)
def test_exclude_bias_decay(name, dtype):
    cls = getattr(optim, name)
    extra = {k: v for k, v in RICH[name].items() if k not in ("lr", "weight_decay")}
    rng = np.random.default_rng(4)
    kernel, bias = rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(4).astype(dtype)
    k2, b2, b3 = kernel.copy(), bias.copy(), bias.copy()
    opt = cls(lr=GROUP_LR, weight_decay=GROUP_WD, exclude_bias_decay=True, **extra)
    opt_k = cls(lr=GROUP_LR, weight_decay=GROUP_WD, **extra)
    opt_b = cls(lr=GROUP_LR, weight_decay=0.0, **extra)
    opt_decayed = cls(lr=GROUP_LR, weight_decay=GROUP_WD, **extra)
    for _ in range(20):
        gk, gb = rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(4).astype(dtype)
        opt.step([kernel, bias], [gk, gb])
        opt_k.step([k2], [gk])
        opt_b.step([b2], [gb])
        opt_decayed.step([b3], [gb])
    npt.assert_array_equal(kernel, k2)
    npt.assert_array_equal(bias, b2)
    assert not np.allclose(bias, b3)  # weight decay would have changed the bias


def small_model():
    model = cdl.Sequential([cdl.layers.Dense(4), cdl.layers.Dense(2)], input_shape=(3,),
                           dtype="float64", seed=0)
    return model


@pytest.mark.parametrize("name", NAMES)
def test_contiguous_model_params_list_flat_and_copies_agree(name):
    """model.params (consecutive views: one kernel call), the flat buffer, separate
    copies (one call per array) and mixes of the two give identical results."""
    cls = getattr(optim, name)
    models = [small_model() for _ in range(5)]
    assert all(np.array_equal(m.param_buffer, models[0].param_buffer) for m in models)
    copies = [p.copy() for p in models[2].params]
    copy_grads = [[g.copy() for g in models[0].grads] for _ in range(2)]
    steppers = [
        lambda o: o.step(models[0].params, models[0].grads),
        lambda o: o.step(models[1].param_buffer, models[1].grad_buffer),
        lambda o: o.step(copies, copy_grads[0]),
        lambda o: o.step(models[3].params, copy_grads[1]),  # contiguous params only
        lambda o: o.step(list(models[4].params), list(models[4].grads)),  # new lists
    ]
    opts = [cls(**RICH[name]) for _ in steppers]
    rng = np.random.default_rng(5)
    for step in range(25):
        g = rng.standard_normal(models[0].grad_buffer.size)
        for m in models:
            m.grad_buffer[:] = g
        for grads in copy_grads:
            for cg, mg in zip(grads, models[0].grads):
                cg[...] = mg
        for o, stepper in zip(opts, steppers):
            o.lr = 0.01 * lr_factor(step * 4)
            stepper(o)
        for m in models:
            assert np.array_equal(m.grad_buffer, g)
    # The model's params are still views of its buffer, updated in place.
    assert np.shares_memory(models[0].params[0], models[0].param_buffer)
    assert not np.array_equal(models[0].param_buffer, small_model().param_buffer)
    for result in (models[1].param_buffer, flat(copies), models[3].param_buffer,
                   models[4].param_buffer):
        npt.assert_array_equal(models[0].param_buffer, result)
    for key in opts[0].state:
        for o in opts[1:]:
            a, b = opts[0].state[key], o.state[key]
            assert (a is None and b is None) or np.array_equal(a, b)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "NAdam"])
def test_model_param_groups_contiguous_and_copies_agree(name):
    """A group spanning a whole layer (two consecutive views: one kernel call)
    gives what the same group over separate copies gives."""
    cls = getattr(optim, name)
    model = small_model()
    copies = [p.copy() for p in model.params]
    copy_grads = [g.copy() for g in model.grads]
    extra = {k: v for k, v in RICH[name].items() if k not in ("lr", "weight_decay")}
    opt = cls(lr=GROUP_LR, weight_decay=GROUP_WD, **extra, param_groups=[
        {"params": model.layers[0].params, "lr_mult": 0.5, "weight_decay_mult": 2.0}])
    opt_c = cls(lr=GROUP_LR, weight_decay=GROUP_WD, **extra, param_groups=[
        {"params": copies[:2], "lr_mult": 0.5, "weight_decay_mult": 2.0}])
    rng = np.random.default_rng(6)
    for _ in range(15):
        model.grad_buffer[:] = rng.standard_normal(model.grad_buffer.size)
        for cg, mg in zip(copy_grads, model.grads):
            cg[...] = mg
        opt.step(model.params, model.grads)
        opt_c.step(copies, copy_grads)
    npt.assert_array_equal(model.param_buffer, flat(copies))


# --- convergence -------------------------------------------------------------------------

def rosenbrock(p):
    x, y = p
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def rosenbrock_grad(p):
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


ROSENBROCK = [
    ("SGD", {"lr": 1e-3}),
    ("SGD", {"lr": 5e-4, "momentum": 0.9}),
    ("SGD", {"lr": 5e-4, "momentum": 0.9, "nesterov": True}),
    ("Adagrad", {"lr": 0.5}),
    ("RMSprop", {"lr": 1e-2}),
    ("RMSprop", {"lr": 1e-3, "momentum": 0.9, "centered": True}),
    ("Adam", {"lr": 0.05}),
    ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("AdamW", {"lr": 0.05, "weight_decay": 1e-3}),
    ("Adamax", {"lr": 0.05}),
    ("NAdam", {"lr": 0.05}),
    # RAdam's first (unrectified) steps are momentum SGD with lr: keep it small.
    ("RAdam", {"lr": 5e-3}),
]


@pytest.mark.parametrize("case", ROSENBROCK, ids=case_id)
def test_rosenbrock_gets_closer(case, dtype):
    name, kwargs = case
    opt = getattr(optim, name)(**kwargs)
    p = np.array([-1.5, 2.0], dtype=dtype)
    start_dist, start_loss = np.hypot(p[0] - 1, p[1] - 1), rosenbrock(p.astype(np.float64))
    for _ in range(500):
        opt.step(p, rosenbrock_grad(p.astype(np.float64)).astype(dtype))
    assert np.all(np.isfinite(p))
    dist, loss = np.hypot(p[0] - 1, p[1] - 1), rosenbrock(p.astype(np.float64))
    assert dist < 0.9 * start_dist, (p, dist, start_dist)
    assert loss < 0.5 * start_loss, (p, loss, start_loss)


# --- argument checks --------------------------------------------------------------------

INVALID = [
    ("SGD", {"lr": -0.1}, ValueError, "lr"),
    ("Adam", {"lr": -1e-3}, ValueError, "lr"),
    ("SGD", {"lr": "a"}, TypeError, "lr"),
    ("Adam", {"lr": "a"}, TypeError, "lr"),
    ("RMSprop", {"lr": float("nan")}, ValueError, "lr"),
    ("SGD", {"momentum": -0.5}, ValueError, "momentum"),
    ("RMSprop", {"momentum": -0.5}, ValueError, "momentum"),
    ("SGD", {"nesterov": True}, ValueError, "nesterov"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError, "nesterov"),
    ("Adam", {"betas": (1.0, 0.999)}, ValueError, "betas"),
    ("Adam", {"betas": (0.9, 1.0)}, ValueError, "betas"),
    ("AdamW", {"betas": (-0.1, 0.999)}, ValueError, "betas"),
    ("Adamax", {"betas": (0.9, 1.5)}, ValueError, "betas"),
    ("NAdam", {"betas": (0.9,)}, TypeError, "betas"),
    ("RAdam", {"betas": 0.9}, TypeError, "betas"),
    ("Adam", {"betas": (0.9, 0.99, 0.9)}, TypeError, "betas"),
    ("Adam", {"betas": ("a", 0.99)}, TypeError, "betas"),
    ("Adam", {"eps": -1e-8}, ValueError, "eps"),
    ("Adagrad", {"eps": -1e-8}, ValueError, "eps"),
    ("RMSprop", {"eps": -1e-8}, ValueError, "eps"),
    ("Adamax", {"eps": -1e-8}, ValueError, "eps"),
    ("NAdam", {"eps": -1e-8}, ValueError, "eps"),
    ("RAdam", {"eps": -1e-8}, ValueError, "eps"),
    ("RMSprop", {"alpha": -0.1}, ValueError, "alpha"),
    ("Adagrad", {"lr_decay": -0.1}, ValueError, "lr_decay"),
    ("Adagrad", {"initial_accumulator_value": -1.0}, ValueError, "initial_accumulator_value"),
    ("NAdam", {"momentum_decay": -1.0}, ValueError, "momentum_decay"),
    ("SGD", {"param_groups": [{"params": [np.zeros(2)], "lr_mult": -1.0}]}, ValueError,
     "lr_mult"),
    ("SGD", {"param_groups": [{"params": [np.zeros(2)], "lr": 1.0}]}, ValueError, "lr"),
    ("SGD", {"param_groups": [[np.zeros(2)]]}, TypeError, "params"),
] + [(name, {"weight_decay": -0.01}, ValueError, "weight_decay") for name in NAMES]


@pytest.mark.parametrize("name,kwargs,error,argument", INVALID,
                         ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(INVALID)])
def test_invalid_hyper_parameters(name, kwargs, error, argument):
    with pytest.raises(error, match=argument):
        getattr(optim, name)(**kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_invalid_lr_assignment(name):
    opt = getattr(optim, name)()
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1
    with pytest.raises(TypeError, match="lr"):
        opt.lr = "a"
    with pytest.raises(ValueError, match="lr"):
        opt.lr = float("inf")
    opt.lr = 0.5
    assert opt.lr == 0.5


def _bad_steps():
    p = lambda *s: np.zeros(s)  # noqa: E731
    return [
        ("fewer grads", [p(2, 3), p(3)], [p(2, 3)], ValueError),
        ("more grads", [p(2, 3)], [p(2, 3), p(3)], ValueError),
        ("grad shape", [p(2, 3), p(3)], [p(3, 2), p(3)], ValueError),
        ("grad size", [p(2, 3)], [p(7)], ValueError),
        ("grad dtype", [p(2, 3)], [np.zeros((2, 3), np.float32)], TypeError),
        ("int params", [np.zeros(3, np.int64)], [np.zeros(3, np.int64)], TypeError),
        ("mixed param dtypes", [p(3), np.zeros(3, np.float32)], [p(3), p(3)], TypeError),
        ("strided param", [p(3, 4)[:, ::2]], [p(3, 2)], ValueError),
        ("strided grad", [p(3, 2)], [p(3, 4)[:, ::2]], ValueError),
        ("empty list", [], [], ValueError),
        ("not arrays", [[1.0, 2.0]], [[1.0, 2.0]], TypeError),
        ("not a list", 3.0, 3.0, TypeError),
    ]


@pytest.mark.parametrize("name", ["SGD", "Adam", "NAdam"])
@pytest.mark.parametrize("params,grads,error",
                         [pytest.param(*case[1:], id=case[0]) for case in _bad_steps()])
def test_step_rejects_mismatched_inputs(name, params, grads, error):
    opt = getattr(optim, name)()
    kept = [np.array(q, copy=True) for q in params] if isinstance(params, list) else params
    with pytest.raises(error):
        opt.step(params, grads)
    assert opt.iterations == 0
    if isinstance(params, list):
        for q, k in zip(params, kept):
            assert np.array_equal(q, k)


def test_step_rejects_read_only_params():
    p = np.zeros(3)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        optim.Adam().step([p], [np.ones(3)])


@pytest.mark.parametrize("name", NAMES)
def test_later_step_with_other_shapes_raises(name):
    opt = getattr(optim, name)(**RICH[name])  # with state arrays (SGD: momentum)
    opt.step(make_params(np.float64), grad_sequence(1, np.float64)[0])
    with pytest.raises(ValueError, match="shapes"):
        opt.step([np.zeros((3, 4)), np.zeros(3), np.zeros(8)],
                 [np.ones((3, 4)), np.ones(3), np.ones(8)])
    with pytest.raises(ValueError, match="shapes"):
        opt.step([np.zeros(27)], [np.ones(27)])  # same size, other layout
    with pytest.raises(TypeError):
        opt.step(make_params(np.float32), grad_sequence(1, np.float32)[0])
    assert opt.iterations == 1
    # New arrays of the same shapes are accepted (e.g. copies of the parameters).
    opt.step(make_params(np.float64), grad_sequence(1, np.float64)[0])
    assert opt.iterations == 2


def test_get():
    assert isinstance(optim.get("adam"), optim.Adam)
    assert isinstance(optim.get("AdamW"), optim.AdamW)
    assert optim.get("sgd", lr=0.5, momentum=0.9).momentum == 0.9
    for name in NAMES:
        assert type(optim.get(name.lower())).__name__ == name
    opt = optim.RMSprop()
    assert optim.get(opt) is opt
    with pytest.raises(ValueError) as info:
        optim.get("adamm")
    message = str(info.value)
    assert "adamm" in message
    for name in NAMES:
        assert name.lower() in message
    with pytest.raises(ValueError):
        optim.get(None)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"),
                    reason="updates flush subnormal numbers on x86 CPUs only")
@pytest.mark.parametrize("opt", [
    lambda: optim.SGD(lr=0.1, momentum=0.9), lambda: optim.Adagrad(lr=0.1),
    lambda: optim.RMSprop(lr=0.1, momentum=0.9, centered=True), lambda: optim.Adam(lr=0.1),
    lambda: optim.Adam(lr=0.1, amsgrad=True), lambda: optim.AdamW(lr=0.1),
    lambda: optim.Adamax(lr=0.1), lambda: optim.NAdam(lr=0.1), lambda: optim.RAdam(lr=0.1)],
    ids=lambda make: type(make()).__name__)
def test_updates_flush_decayed_state_to_zero(opt, dtype):
    # A moment that decays below the normal range would stick at the smallest
    # subnormal (0.9 x it rounds back to it) and slow every later step.
    optimizer = opt()
    params = [np.ones(64, dtype=dtype)]
    optimizer.step(params, [np.full(64, 0.5, dtype=dtype)])
    tiny = np.finfo(dtype).smallest_subnormal
    for state in optimizer.state.values():
        if state is not None:
            state[...] = 3 * tiny
    optimizer.step(params, [np.zeros(64, dtype=dtype)])
    smallest_normal = np.finfo(dtype).tiny
    for name, state in optimizer.state.items():
        # AMSGrad's running maximum is copied, not computed: it may keep a
        # subnormal, which the update reads as zero, at full speed.
        if state is not None and name != "max_exp_avg_sq":
            assert ((state == 0) | (np.abs(state) >= smallest_normal)).all(), name
    assert np.isfinite(params[0]).all()
    # The CPU's mode is restored after the update: NumPy keeps subnormals.
    assert np.asarray(tiny * 3, dtype=dtype) * dtype(0.5) != 0
