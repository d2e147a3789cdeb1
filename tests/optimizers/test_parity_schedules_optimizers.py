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


# --- schedules: sweeps against torch.optim.lr_scheduler ------------------------------------

BASE = 0.1


def torch_rates(torch, make, n):
    """[rate after construction, after step 1, ..., after step n] of a torch scheduler
    built by ``make(optimizer, lr_scheduler)``."""
    import warnings
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # call-order notices
        sched = make(opt, torch.optim.lr_scheduler)
        rates = [opt.param_groups[0]["lr"]]
        for _ in range(n):
            opt.step()
            sched.step()
            rates.append(opt.param_groups[0]["lr"])
    return rates


def cdl_rates(make, n):
    """The same for cdl's scheduler on a cdl optimizer (which refuses rates < 0)."""
    opt = O.SGD(lr=BASE)
    sched = make(opt, S)
    rates = [opt.lr]
    for _ in range(n):
        sched.step()
        assert sched.get_last_lr() == opt.lr
        rates.append(opt.lr)
    return rates


def assert_rates_close(got, expected):
    # Rounding residues below zero (about -2e-19) are written as 0 by cdl.
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a >= 0
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15)


FACTORS = [0.0, 0.1, 1 / 3, 0.5, 1.0]
ITERS = [1, 3, 7, 10, 100]


@pytest.mark.parametrize("total_iters", ITERS)
@pytest.mark.parametrize("end", FACTORS)
@pytest.mark.parametrize("start", FACTORS)
def test_linear_lr_sweep_matches_torch(start, end, total_iters):
    torch = pytest.importorskip("torch")

    def make(opt, M):
        return M.LinearLR(opt, start_factor=start, end_factor=end, total_iters=total_iters)

    if start == 0:  # both refuse: the recursion divides by the start factor
        with pytest.raises(ValueError):
            make(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE),
                 torch.optim.lr_scheduler)
        with pytest.raises(ValueError, match="start_factor"):
            make(O.SGD(lr=BASE), S)
        return
    n = total_iters + 5
    assert_rates_close(cdl_rates(make, n), torch_rates(torch, make, n))


def test_linear_lr_to_zero_ends_at_zero_where_torch_rounds_below():
    torch = pytest.importorskip("torch")

    def make(opt, M):
        return M.LinearLR(opt, start_factor=0.1, end_factor=0.0, total_iters=10)

    expected = torch_rates(torch, make, 12)
    assert -1e-18 < expected[10] < 0  # torch's rounding residue
    assert cdl_rates(make, 12)[10:] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("T", ITERS)
def test_cosine_annealing_sweep_matches_torch(T):
    torch = pytest.importorskip("torch")

    def make(opt, M):
        return M.CosineAnnealingLR(opt, T_max=T, eta_min=0.0)

    assert_rates_close(cdl_rates(make, T + 5), torch_rates(torch, make, T + 5))


@pytest.mark.parametrize("T_mult", [1, 2])
@pytest.mark.parametrize("T_0", ITERS)
def test_warm_restarts_sweep_matches_torch(T_0, T_mult):
    torch = pytest.importorskip("torch")

    def make(opt, M):
        return M.CosineAnnealingWarmRestarts(opt, T_0=T_0, T_mult=T_mult)

    assert_rates_close(cdl_rates(make, T_0 + 5), torch_rates(torch, make, T_0 + 5))


ONE_CYCLE = [
    {"total_steps": n, "anneal_strategy": a, "three_phase": p, "pct_start": q}
    for n in [3, 7, 10, 100] for a in ["cos", "linear"] for p in [False, True]
    for q in [0.25, 0.3]]


@pytest.mark.parametrize("kwargs", ONE_CYCLE, ids=lambda k: "-".join(map(str, k.values())))
def test_one_cycle_sweep_matches_torch_to_its_end(kwargs):
    torch = pytest.importorskip("torch")

    def make(opt, M):
        return M.OneCycleLR(opt, max_lr=1.0, cycle_momentum=False, **kwargs)

    n = kwargs["total_steps"]
    expected = torch_rates(torch, make, n)
    # The total_steps-th step extends the last phase; linear annealing goes
    # below zero there, which cdl's optimizers refuse: they get 0.
    expected[n] = max(expected[n], 0.0)
    assert_rates_close(cdl_rates(make, n), expected)


@pytest.mark.parametrize("strategy", ["cos", "linear"])
def test_one_cycle_past_total_steps_says_so(strategy):
    torch = pytest.importorskip("torch")
    opt = O.SGD(lr=BASE)
    sched = S.OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy=strategy)
    for _ in range(10):
        sched.step()
    lr = opt.lr
    with pytest.raises(ValueError, match=r"stepped past total_steps \(10\)"):
        sched.step()
    assert opt.lr == lr and sched.last_epoch == 10
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=1.0, total_steps=10,
                                                 anneal_strategy=strategy)
    for _ in range(10):
        topt.step()
        tsched.step()
    with pytest.raises(ValueError):
        tsched.step()


def test_one_cycle_permissive_optimizer_gets_torchs_value_past_the_end():
    class Opt:
        lr = BASE

    opt = Opt()
    sched = S.OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy="linear")
    for _ in range(10):
        sched.step()
    assert opt.lr < 0  # as torch: the last phase extended


def test_user_set_negative_rate_still_raises():
    opt = O.SGD(lr=BASE)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1e-19


FIT_SCHEDULES = [
    ("linear_to_zero", lambda o: S.LinearLR(o, start_factor=0.1, end_factor=0.0,
                                            total_iters=10)),
    ("linear_third_to_zero", lambda o: S.LinearLR(o, start_factor=1 / 3, end_factor=0.0,
                                                  total_iters=7)),
    ("one_cycle_linear", lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=12,
                                                anneal_strategy="linear")),
    ("one_cycle_three_phase", lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=12,
                                                     anneal_strategy="linear",
                                                     three_phase=True)),
    ("cosine", lambda o: S.CosineAnnealingLR(o, T_max=7)),
    ("chained", lambda o: S.ChainedScheduler([
        S.LinearLR(o, start_factor=0.5, end_factor=0.0, total_iters=3),
        S.ExponentialLR(o, gamma=0.9)])),
]


@pytest.mark.parametrize("per", ["batch", "epoch"])
@pytest.mark.parametrize("name, make", FIT_SCHEDULES, ids=[n for n, _ in FIT_SCHEDULES])
def test_schedules_through_fit_never_stop_training(name, make, per):
    # 3 epochs of 4 batches: 12 batch steps (OneCycleLR's total_steps) or 3 epoch steps.
    x = np.linspace(-1, 1, 32).reshape(-1, 1)
    y = 3 * x
    model = cdl.Sequential([layers.Dense(1)], input_shape=(1,), seed=0)
    opt = O.SGD(lr=BASE)
    model.compile(opt, "mse")
    sched = make(opt)
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, shuffle=False,
                        callbacks=[callbacks.LearningRateScheduler(sched, per=per)])
    assert len(history.epoch) == 3
    assert all(lr >= 0 for lr in history.history["lr"])
    assert opt.lr >= 0 and np.isfinite(model.param_buffer).all()


# --- ChainedScheduler against torch -----------------------------------------------------------

def _warmup(W):
    return lambda t: min(t, W) / W


# name -> (cdl scheduler on opt, torch scheduler on opt): each the other's twin.
CHAINABLE = {
    "step": (lambda o: S.StepLR(o, 3, 0.5), lambda o, M: M.StepLR(o, 3, 0.5)),
    "multistep": (lambda o: S.MultiStepLR(o, [2, 5]), lambda o, M: M.MultiStepLR(o, [2, 5])),
    "exponential": (lambda o: S.ExponentialLR(o, 0.9), lambda o, M: M.ExponentialLR(o, 0.9)),
    "lambda": (lambda o: S.LambdaLR(o, lambda t: 0.5 + 0.1 * (t % 4)),
               lambda o, M: M.LambdaLR(o, lambda t: 0.5 + 0.1 * (t % 4))),
    "warmup": (lambda o: S.LinearWarmup(o, 4), lambda o, M: M.LambdaLR(o, _warmup(4))),
    "restarts": (lambda o: S.CosineAnnealingWarmRestarts(o, 3, 2, 0.001),
                 lambda o, M: M.CosineAnnealingWarmRestarts(o, 3, 2, 0.001)),
    "linear": (lambda o: S.LinearLR(o, 0.25, 1.0, 5), lambda o, M: M.LinearLR(o, 0.25, 1.0, 5)),
    "linear_to_zero": (lambda o: S.LinearLR(o, 0.5, 0.0, 4),
                       lambda o, M: M.LinearLR(o, 0.5, 0.0, 4)),
    "cosine": (lambda o: S.CosineAnnealingLR(o, 6), lambda o, M: M.CosineAnnealingLR(o, 6)),
}


def chain_rates(torch, names, n=14):
    """(torch rates, cdl rates) of ChainedScheduler over the schedulers ``names``,
    from before the first step to after step n."""
    import warnings
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE)
    opt = O.SGD(lr=BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tchain = torch.optim.lr_scheduler.ChainedScheduler(
            [CHAINABLE[k][1](topt, torch.optim.lr_scheduler) for k in names], topt)
        chain = S.ChainedScheduler([CHAINABLE[k][0](opt) for k in names])
        expected, got = [topt.param_groups[0]["lr"]], [opt.lr]
        for _ in range(n):
            topt.step()
            tchain.step()
            chain.step()
            expected.append(topt.param_groups[0]["lr"])
            got.append(opt.lr)
    return expected, got


def _chains():
    import itertools
    names = sorted(CHAINABLE)
    pairs = list(itertools.permutations(names, 2))
    triples = list(itertools.permutations(names, 3))[::11]  # a deterministic sample
    return [(n,) for n in names] + pairs + triples


@pytest.mark.parametrize("names", _chains(), ids="+".join)
def test_chained_scheduler_matches_torch_step_by_step(names):
    torch = pytest.importorskip("torch")
    expected, got = chain_rates(torch, names)
    assert_rates_close(got, expected)


def test_chained_rate_before_the_first_step_is_torchs():
    # A LambdaLR built after a LinearLR starts from the base rate in PyTorch
    # (the shared initial_lr), not from the rate the LinearLR set.
    opt = O.SGD(lr=0.1)
    chain = S.ChainedScheduler([S.LinearLR(opt, start_factor=0.25), S.LambdaLR(opt, lambda t: 1)])
    assert opt.lr == 0.1 and chain.get_last_lr() == 0.1
    opt = O.SGD(lr=0.1)
    S.ChainedScheduler([S.LinearLR(opt, start_factor=0.25),
                        S.CosineAnnealingWarmRestarts(opt, T_0=5)])
    assert opt.lr == 0.1


def test_chained_rate_left_alone_once_a_scheduler_was_stepped_or_the_rate_changed():
    opt = O.SGD(lr=0.1)
    a, b = S.ExponentialLR(opt, 0.5), S.LambdaLR(opt, lambda t: 1)
    a.step()
    S.ChainedScheduler([a, b])
    assert opt.lr == 0.05
    opt = O.SGD(lr=0.1)
    a, b = S.LinearLR(opt, start_factor=0.25), S.LambdaLR(opt, lambda t: 1)
    opt.lr = 0.3
    S.ChainedScheduler([a, b])
    assert opt.lr == 0.3


def _negative_in_the_middle(M, opt):
    # ExponentialLR pulls the rate far below the cosine's eta_min; at t = 4
    # the cosine recursion doubles (rate - eta_min): -0.03, which the LambdaLR
    # after it replaces by the base rate.
    return [M.ExponentialLR(opt, 0.1), M.CosineAnnealingLR(opt, 2, 0.05),
            M.LambdaLR(opt, lambda t: 1.0)]


def test_chained_intermediate_negative_rate_overwritten_later_matches_torch():
    torch = pytest.importorskip("torch")
    import warnings
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE)
    opt = O.SGD(lr=BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tchain = torch.optim.lr_scheduler.ChainedScheduler(
            _negative_in_the_middle(torch.optim.lr_scheduler, topt), topt)
        chain = S.ChainedScheduler(_negative_in_the_middle(S, opt))
        for k in range(1, 9):
            topt.step()
            tchain.step()
            chain.step()
            middle = tchain._schedulers[1].get_last_lr()[0]
            assert chain.schedulers[1].get_last_lr() == pytest.approx(middle, rel=1e-12)
            assert opt.lr == topt.param_groups[0]["lr"]
            if k == 4:
                assert middle < 0
                state = chain.state_dict()
    # A state saved at that step loads (its middle rate is below zero) and goes on alike.
    opt2 = O.SGD(lr=BASE)
    chain2 = S.ChainedScheduler(_negative_in_the_middle(S, opt2))
    chain2.load_state_dict(state)
    assert opt2.lr == BASE
    for _ in range(4):
        chain2.step()
    assert chain2.state_dict() == chain.state_dict()


def test_chained_final_negative_rate_raises_and_leaves_everything_as_it_was():
    opt = O.SGD(lr=BASE)
    chain = S.ChainedScheduler([S.ExponentialLR(opt, 0.1), S.CosineAnnealingLR(opt, 2, 0.05)])
    for _ in range(3):
        chain.step()
    before, lr = chain.state_dict(), opt.lr
    with pytest.raises(ValueError, match="ChainedScheduler.*>= 0"):
        chain.step()  # the cosine recursion at t = 4 gives -0.044
    assert chain.state_dict() == before and opt.lr == lr
    assert [s.last_epoch for s in chain.schedulers] == [3, 3]


def test_chained_error_in_a_later_scheduler_leaves_the_earlier_ones_unstepped():
    opt = O.SGD(lr=BASE)
    exp = S.ExponentialLR(opt, 0.9)
    chain = S.ChainedScheduler([exp, S.OneCycleLR(opt, max_lr=1.0, total_steps=3)])
    for _ in range(3):
        chain.step()
    lr = opt.lr
    with pytest.raises(ValueError, match="stepped past total_steps"):
        chain.step()
    assert exp.last_epoch == 3 and opt.lr == lr and chain.last_epoch == 3
