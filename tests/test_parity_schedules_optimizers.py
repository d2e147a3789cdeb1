"""Parity with torch.optim when hyper-parameters change during training, and
with torch.optim.lr_scheduler over sweeps of configurations, chains and fit.

Each optimizer test changes one option between steps, as a user or a
schedule would, and compares every step with torch.optim's; each schedule
test compares the rate after every ``step()`` with torch's scheduler.
"""
import numpy as np
import pytest

import cdl
from cdl import callbacks, layers, optimizers as O, schedules as S


@pytest.fixture
def torch64():
    """torch with float64 as the default dtype (NAdam's mu_product and the step
    counters are kept in the default dtype), restored afterwards."""
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(old)


def _grads(steps, n, seed):
    """Gradients that shrink after the first steps, so that a running maximum
    (amsgrad) and a running average of squares differ."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n) * (4.0 if k < 3 else 0.25) for k in range(steps)]


def run_against_torch(torch, name, kwargs, changes, steps=10, n=6, seed=0):
    """Step cdl's and torch's optimizer ``name`` side by side.

    ``changes`` maps a step index to ``{option: value}`` set on both before
    that step. Returns the largest parameter difference over all steps.
    """
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(n)
    grads = _grads(steps, n, seed + 1)
    w = w0.copy()
    opt = getattr(O, name)(**kwargs)
    tw = torch.tensor(w0.copy(), requires_grad=True)
    topt = getattr(torch.optim, name)([tw], **kwargs)
    worst = 0.0
    for k in range(steps):
        for option, value in changes.get(k, {}).items():
            setattr(opt, option, value)
            topt.param_groups[0][option] = value
        tw.grad = torch.tensor(grads[k])
        topt.step()
        opt.step([w], [grads[k]])
        worst = max(worst, float(np.max(np.abs(w - tw.detach().numpy()))))
    return worst


# --- options switched off and on again ---------------------------------------------------

SWITCHES = [
    # momentum off with dampening > 0: a plain step, no buffer, no dampening
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}, {3: {"momentum": 0.0}}),
    # off, then on again: torch resumes from the buffer as it was left
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3},
     {3: {"momentum": 0.0}, 6: {"momentum": 0.5}}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1},
     {2: {"momentum": 0.0}, 4: {"momentum": 0.9}, 6: {"momentum": 0.0}}),
    # switched on after plain steps: the buffer starts from that gradient
    ("SGD", {"lr": 0.1, "momentum": 0.0, "dampening": 0.3}, {3: {"momentum": 0.5}}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True},
     {3: {"nesterov": False}, 5: {"nesterov": True}}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True},
     {3: {"momentum": 0.0, "nesterov": False}, 6: {"momentum": 0.8, "nesterov": True}}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5}, {3: {"momentum": 0.0}, 6: {"momentum": 0.9}}),
    ("RMSprop", {"lr": 0.01, "centered": True}, {3: {"centered": False}, 6: {"centered": True}}),
    ("Adam", {"lr": 0.01, "betas": (0.9, 0.5), "amsgrad": True},
     {3: {"amsgrad": False}, 6: {"amsgrad": True}}),
    ("AdamW", {"lr": 0.01, "betas": (0.9, 0.5), "amsgrad": True},
     {3: {"amsgrad": False}, 6: {"amsgrad": True}}),
]


@pytest.mark.parametrize("name, kwargs, changes", SWITCHES)
def test_options_switched_mid_run_match_torch(torch64, name, kwargs, changes):
    assert run_against_torch(torch64, name, kwargs, changes) < 1e-12


def test_sgd_momentum_off_does_not_damp_the_step():
    w, g = np.array([1.0]), np.array([2.0])
    opt = O.SGD(lr=0.1, momentum=0.9, dampening=0.5)
    opt.step([w], [g])                       # buffer = g
    opt.momentum = 0.0
    before = w.copy()
    opt.step([w], [g])
    np.testing.assert_allclose(before - w, [0.1 * 2.0], rtol=1e-15)
    np.testing.assert_array_equal(opt.state["momentum_buffer"], [2.0])   # left as it was
    opt.momentum = 0.9
    opt.step([w], [g])                       # resumes: 0.9 * 2 + 0.5 * 2
    np.testing.assert_allclose(opt.state["momentum_buffer"], [2.8], rtol=1e-15)


@pytest.mark.parametrize("name, kwargs, option, value", [
    ("RMSprop", {}, "momentum", 0.9),
    ("RMSprop", {}, "centered", True),
    ("Adam", {}, "amsgrad", True),
    ("AdamW", {}, "amsgrad", True),
])
def test_options_needing_state_cannot_be_switched_on_later(torch64, name, kwargs, option,
                                                           value):
    w, g = np.array([1.0, -1.0]), np.array([0.5, 0.25])
    opt = getattr(O, name)(lr=0.01, **kwargs)
    opt.step([w], [g])
    setattr(opt, option, value)
    before, iterations = w.copy(), opt.iterations
    with pytest.raises(ValueError, match=f"{option} cannot be switched on after the first step"):
        opt.step([w], [g])
    # Refused before anything changed.
    np.testing.assert_array_equal(w, before)
    assert opt.iterations == iterations
    # torch.optim cannot either (its state has no such buffer).
    tw = torch64.tensor([1.0, -1.0], requires_grad=True)
    topt = getattr(torch64.optim, name)([tw], lr=0.01, **kwargs)
    tw.grad = torch64.tensor([0.5, 0.25])
    topt.step()
    topt.param_groups[0][option] = value
    with pytest.raises(KeyError):
        topt.step()
    # Switched off again, the optimizer goes on.
    setattr(opt, option, type(value)(0))
    opt.step([w], [g])
    assert opt.iterations == iterations + 1


def test_options_set_before_the_first_step_apply():
    w, g = np.array([1.0]), np.array([0.5])
    opt = O.Adam(lr=0.01)
    opt.amsgrad = True
    opt.step([w], [g])
    assert opt.state["max_exp_avg_sq"] is not None


# Every settable hyper-parameter changed at step 3 and set back at step 6.
SWEEP = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01},
     {"lr": 0.05, "weight_decay": 0.1, "momentum": 0.5, "dampening": 0.7}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
     {"weight_decay": 0.0, "momentum": 0.5, "nesterov": False}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1, "weight_decay": 0.01,
                 "initial_accumulator_value": 0.2},
     {"lr": 0.05, "weight_decay": 0.1, "lr_decay": 0.5, "eps": 1e-3,
      "initial_accumulator_value": 3.0}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.01, "momentum": 0.5,
                 "centered": True},
     {"lr": 0.05, "alpha": 0.5, "eps": 1e-2, "weight_decay": 0.0, "momentum": 0.9,
      "centered": False}),
    ("Adam", {"lr": 0.01, "betas": (0.9, 0.5), "weight_decay": 0.01, "amsgrad": True},
     {"lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-2, "weight_decay": 0.0, "amsgrad": False}),
    ("AdamW", {"lr": 0.01, "betas": (0.9, 0.5), "weight_decay": 0.1, "amsgrad": True},
     {"lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-2, "weight_decay": 0.5, "amsgrad": False}),
    ("Adamax", {"lr": 0.01, "betas": (0.9, 0.5), "weight_decay": 0.01},
     {"lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-2, "weight_decay": 0.5}),
    ("NAdam", {"lr": 0.01, "betas": (0.9, 0.5), "weight_decay": 0.01},
     {"lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-2, "weight_decay": 0.5,
      "momentum_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 0.01, "betas": (0.9, 0.5), "weight_decay": 0.01},
     {"lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-2, "weight_decay": 0.5,
      "decoupled_weight_decay": True}),
]


@pytest.mark.parametrize("name, kwargs, option, value", [
    (name, kwargs, option, value)
    for name, kwargs, options in SWEEP for option, value in options.items()])
def test_hyper_parameters_changed_mid_run_match_torch(torch64, name, kwargs, option, value):
    changes = {3: {option: value}}
    if option in kwargs:
        changes[6] = {option: kwargs[option]}
    assert run_against_torch(torch64, name, kwargs, changes) < 1e-12
