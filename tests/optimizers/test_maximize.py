"""``maximize=True`` on every optimizer: torch.optim's rule (each update sees
the negated gradient), step by step against torch, switched mid-run, saved
and loaded, and never touching the caller's gradients."""
import numpy as np
import numpy.testing as npt
import pytest

import cdl
from cdl import layers, optimizers as O

#: Every optimizer with options that change how the gradient is used.
CASES = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.3}),
    ("Adamax", {"weight_decay": 0.1}),
    ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"betas": (0.8, 0.9), "weight_decay": 0.1}),
]
NAMES = sorted({name for name, _ in CASES})
SHAPES = [(4, 3), (3,)]


def _ids(case):
    return case[0] + "-" + "-".join(f"{k}={v}" for k, v in case[1].items())


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def _grads(rng):
    return [rng.standard_normal(s) for s in SHAPES]


def _run(torch, name, kwargs, maximize_at, steps=30):
    """Step cdl's and torch's optimizer side by side; ``maximize_at(step)``
    gives the flag before each step. Returns the largest parameter gap."""
    params = _params()
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = getattr(O, name)(maximize=maximize_at(0), **kwargs)
    topt = getattr(torch.optim, name)(tparams, foreach=False, maximize=maximize_at(0),
                                      **kwargs)
    rng = np.random.default_rng(1)
    worst = 0.0
    for step in range(steps):
        opt.maximize = maximize_at(step)
        topt.param_groups[0]["maximize"] = maximize_at(step)
        grads = _grads(rng)
        kept = [g.copy() for g in grads]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        opt.step(params, grads)
        topt.step()
        for g, k in zip(grads, kept):
            assert np.array_equal(g, k), "the caller's gradients were modified"
        for p, tp in zip(params, tparams):
            worst = max(worst, float(np.max(np.abs(p - tp.detach().numpy()))))
    return worst


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_maximize_matches_torch_step_by_step(case, torch64):
    name, kwargs = case
    assert _run(torch64, name, kwargs, lambda step: True) < 1e-12


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_maximize_switched_mid_run_matches_torch(case, torch64):
    name, kwargs = case
    assert _run(torch64, name, kwargs, lambda step: 8 <= step < 20) < 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_maximize_is_descent_on_the_negated_gradient(name):
    """Without weight decay, climbing g is descending -g, bit for bit."""
    up, down = _params(), _params()
    climb, descend = getattr(O, name)(maximize=True), getattr(O, name)()
    rng = np.random.default_rng(3)
    for _ in range(5):
        grads = _grads(rng)
        climb.step(up, grads)
        descend.step(down, [-g for g in grads])
    for a, b in zip(up, down):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_maximize_is_in_the_config_and_refuses_non_flags(name):
    opt = getattr(O, name)(maximize=True)
    assert opt.get_config()["maximize"] is True
    assert getattr(O, name)().get_config()["maximize"] is False
    copy = O.from_config({"class_name": name, "config": opt.get_config()})
    assert copy.maximize is True
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match="maximize"):
            getattr(O, name)(maximize=bad)
        with pytest.raises(TypeError, match="maximize"):
            opt.maximize = bad


def test_maximize_survives_a_model_save_and_training_continues_identically(tmp_path):
    def make():
        model = cdl.Sequential([layers.Dense(4, activation="tanh"), layers.Dense(1)],
                               input_shape=(3,), seed=0)
        model.compile(O.Adam(lr=0.01, maximize=True), "mse")
        return model

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    y = rng.standard_normal((32, 1)).astype(np.float32)
    model = make()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    first = model.evaluate(x, y)["loss"]
    model.save(tmp_path / "m.cdl")
    loaded = cdl.load_model(tmp_path / "m.cdl")
    assert loaded.optimizer.maximize is True
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert np.array_equal(model.param_buffer, loaded.param_buffer)
    # Gradient ascent on the MSE: the loss grows.
    assert model.evaluate(x, y)["loss"] > first
