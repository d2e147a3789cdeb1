"""Learning-rate schedules: formulas, parity with torch.optim.lr_scheduler,
state_dict round trips, ReduceLROnPlateau's rules, argument validation.

Expected values are written out here from the formulas, not computed with
cdl.schedules' own helpers.
"""
import json
import math
import warnings

import pytest

from cdl import schedules as S

BASE = 0.1
N = 50


class Opt:
    """The smallest optimizer the schedules accept: a float ``lr``."""

    def __init__(self, lr=BASE):
        self.lr = lr


class CheckedOpt:
    """An optimizer whose ``lr`` is a validating property, as cdl's are."""

    def __init__(self, lr=BASE):
        self.lr = lr

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        if not isinstance(value, float) or value < 0:
            raise ValueError(f"bad lr {value!r}")
        self._lr = value


def run(sched, opt, n=N):
    """[lr after construction, lr after step 1, ..., lr after step n]."""
    lrs = [sched.get_last_lr()]
    assert lrs[0] == opt.lr
    for _ in range(n):
        sched.step()
        lrs.append(sched.get_last_lr())
        assert lrs[-1] == opt.lr
    return lrs


def approx(values):
    return pytest.approx(values, rel=1e-12, abs=1e-15)


def cos_anneal(hi, lo, t, period):
    return lo + (hi - lo) * (1 + math.cos(math.pi * t / period)) / 2


# --- each schedule against its formula --------------------------------------------------


def test_step_lr():
    opt = Opt()
    lrs = run(S.StepLR(opt, step_size=7, gamma=0.5), opt)
    assert lrs == approx([BASE * 0.5 ** (t // 7) for t in range(N + 1)])
    assert lrs[6] == BASE and lrs[7] == approx(BASE / 2)


def test_multistep_lr_including_a_repeated_milestone():
    opt = Opt()
    milestones = [20, 3, 10, 10]  # unsorted, 10 twice: decays twice there
    lrs = run(S.MultiStepLR(opt, milestones, gamma=0.5), opt)
    expected = [BASE * 0.5 ** sum(m <= t for m in milestones) for t in range(N + 1)]
    assert lrs == approx(expected)
    assert lrs[10] == approx(BASE * 0.5 ** 3)


def test_exponential_lr():
    opt = Opt()
    lrs = run(S.ExponentialLR(opt, gamma=0.93), opt)
    assert lrs == approx([BASE * 0.93 ** t for t in range(N + 1)])


def test_cosine_annealing_lr_and_past_t_max():
    opt = Opt()
    lrs = run(S.CosineAnnealingLR(opt, T_max=12, eta_min=0.001), opt)
    assert lrs == approx([cos_anneal(BASE, 0.001, t, 12) for t in range(N + 1)])
    assert lrs[0] == BASE and lrs[12] == approx(0.001)
    assert lrs[24] == approx(BASE)  # past T_max the cosine is continued, as in PyTorch


def test_cosine_warm_restarts():
    opt = Opt()
    T0, mult, lo = 5, 2, 0.001
    lrs = run(S.CosineAnnealingWarmRestarts(opt, T_0=T0, T_mult=mult, eta_min=lo), opt)
    expected = []
    for t in range(N + 1):
        start, length = 0, T0
        while t >= start + length:
            start, length = start + length, length * mult
        expected.append(cos_anneal(BASE, lo, t - start, length))
    assert lrs == approx(expected)
    assert lrs[5] == BASE and lrs[15] == BASE and lrs[35] == BASE  # restarts


def test_cosine_warm_restarts_t_mult_1():
    opt = Opt()
    lrs = run(S.CosineAnnealingWarmRestarts(opt, T_0=4), opt)
    assert lrs == approx([cos_anneal(BASE, 0.0, t % 4, 4) for t in range(N + 1)])


def test_linear_lr():
    opt = Opt()
    s, e, T = 0.1, 0.9, 8
    lrs = run(S.LinearLR(opt, start_factor=s, end_factor=e, total_iters=T), opt)
    assert lrs == approx([BASE * (s + (e - s) * min(t, T) / T) for t in range(N + 1)])


def test_linear_lr_defaults_decay_to_zero():
    opt = Opt()
    lrs = run(S.LinearLR(opt), opt, 10)
    assert lrs == approx([BASE * (1 / 3 + (2 / 3) * min(t, 5) / 5) for t in range(11)])
    opt = Opt()
    lrs = run(S.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=4), opt, 8)
    assert lrs == approx([BASE * (1 - min(t, 4) / 4) for t in range(9)])


@pytest.mark.parametrize("start", [0.0, 0.25])
def test_linear_warmup(start):
    opt = Opt()
    lrs = run(S.LinearWarmup(opt, warmup_steps=10, start_factor=start), opt)
    assert lrs == approx([BASE * (start + (1 - start) * min(t, 10) / 10)
                          for t in range(N + 1)])
    assert lrs[0] == BASE * start and lrs[10:] == approx([BASE] * (N - 9))


def test_linear_warmup_matches_linear_lr():
    a, b = Opt(), Opt()
    lw = run(S.LinearWarmup(a, warmup_steps=6, start_factor=0.2), a, 20)
    ll = run(S.LinearLR(b, start_factor=0.2, end_factor=1.0, total_iters=6), b, 20)
    assert lw == approx(ll)


def test_lambda_lr():
    opt = Opt()
    lrs = run(S.LambdaLR(opt, lambda t: 1 / (1 + t)), opt)
    assert lrs == approx([BASE / (1 + t) for t in range(N + 1)])


def one_cycle_expected(max_lr, n, pct=0.3, div=25.0, final_div=1e4, strategy="cos",
                       three_phase=False):
    initial = max_lr / div
    low = initial / final_div

    def anneal(u, v, q):
        if strategy == "cos":
            return v + (u - v) / 2 * (1 + math.cos(math.pi * q))
        return u + (v - u) * q

    e1 = pct * n - 1
    out = []
    for t in range(n + 1):
        if three_phase:
            e2 = 2 * pct * n - 2
            if t <= e1:
                out.append(anneal(initial, max_lr, t / e1))
            elif t <= e2:
                out.append(anneal(max_lr, initial, (t - e1) / (e2 - e1)))
            else:
                out.append(anneal(initial, low, (t - e2) / (n - 1 - e2)))
        elif t <= e1:
            out.append(anneal(initial, max_lr, t / e1))
        else:
            out.append(anneal(max_lr, low, (t - e1) / (n - 1 - e1)))
    return out


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle(strategy, three_phase):
    opt = Opt(lr=123.0)  # ignored: the cycle is defined by max_lr
    sched = S.OneCycleLR(opt, max_lr=1.0, total_steps=N, anneal_strategy=strategy,
                         three_phase=three_phase)
    lrs = run(sched, opt)
    assert lrs == approx(one_cycle_expected(1.0, N, strategy=strategy,
                                            three_phase=three_phase))
    assert lrs[0] == approx(1.0 / 25) and sched.base_lr == approx(1.0 / 25)
    assert max(lrs) == approx(1.0)
    assert lrs[N - 1] == approx(1.0 / 25 / 1e4)
    with pytest.raises(ValueError, match="total_steps"):
        sched.step()  # step N + 1


def test_one_cycle_epochs_times_steps_per_epoch():
    a, b = Opt(), Opt()
    x = run(S.OneCycleLR(a, max_lr=0.5, epochs=5, steps_per_epoch=10), a)
    y = run(S.OneCycleLR(b, max_lr=0.5, total_steps=50), b)
    assert x == y


def test_one_cycle_zero_length_phase_does_not_divide_by_zero():
    opt = Opt()
    lrs = run(S.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=0.1), opt, 10)
    assert lrs[0] == approx(1.0)  # the warmup phase is empty: start at the peak
    assert lrs[9] == approx(1.0 / 25 / 1e4)


class MomentumOpt(Opt):
    def __init__(self, lr=BASE):
        super().__init__(lr)
        self.momentum = 0.5


class BetasOpt(Opt):
    def __init__(self, lr=BASE):
        super().__init__(lr)
        self.betas = (0.5, 0.999)


def test_one_cycle_momentum():
    opt = MomentumOpt()
    sched = S.OneCycleLR(opt, max_lr=1.0, total_steps=20, cycle_momentum=True,
                         base_momentum=0.8, max_momentum=0.9)
    moms = [opt.momentum]
    for _ in range(20):
        sched.step()
        moms.append(opt.momentum)
    # Inverse to the rate: 0.9 at the start, 0.8 at the peak (step 5), 0.9 at the end.
    expected = one_cycle_expected(1.0, 20)
    lo, hi = 0.8, 0.9
    e1 = 0.3 * 20 - 1
    exp_m = [lo + (hi - lo) / 2 * (1 + math.cos(math.pi * t / e1)) if t <= e1 else
             hi + (lo - hi) / 2 * (1 + math.cos(math.pi * (t - e1) / (19 - e1)))
             for t in range(21)]
    assert moms == approx(exp_m)
    assert opt.lr == approx(expected[20])
    bopt = BetasOpt()
    S.OneCycleLR(bopt, max_lr=1.0, total_steps=20, cycle_momentum=True)
    assert bopt.betas == (0.95, 0.999)
    # An optimizer without a momentum has its rate scheduled alone.
    plain = Opt()
    sched = S.OneCycleLR(plain, max_lr=1.0, total_steps=20)
    assert not sched.cycles_momentum and not hasattr(plain, "momentum")


def test_sequential_warmup_then_cosine():
    opt = Opt()
    warmup = S.LinearLR(opt, start_factor=0.1, total_iters=5)
    cosine = S.CosineAnnealingLR(opt, T_max=20)  # built after the warmup lowered lr
    sched = S.SequentialLR(opt, [warmup, cosine], milestones=[5])
    lrs = run(sched, opt, 25)
    expected = [BASE * (0.1 + 0.9 * t / 5) for t in range(5)]
    expected += [cos_anneal(BASE, 0.0, t - 5, 20) for t in range(5, 26)]
    assert lrs == approx(expected)
    assert sched.last_epoch == 25 and cosine.last_epoch == 20 and warmup.last_epoch == 4


def test_sequential_three_phases_restart_at_milestones():
    opt = Opt()
    sched = S.SequentialLR(opt, [S.LinearWarmup(opt, 4), S.ExponentialLR(opt, 0.9),
                                 S.StepLR(opt, 3, 0.5)], milestones=[4, 10])
    lrs = run(sched, opt, 20)
    expected = ([BASE * t / 4 for t in range(4)] + [BASE * 0.9 ** (t - 4) for t in range(4, 10)]
                + [BASE * 0.5 ** ((t - 10) // 3) for t in range(10, 21)])
    assert lrs == approx(expected)


def test_chained_multiplies():
    opt = Opt()
    sched = S.ChainedScheduler([S.LinearLR(opt, start_factor=0.2, total_iters=4),
                                S.ExponentialLR(opt, 0.95),
                                S.CosineAnnealingLR(opt, T_max=30),
                                S.StepLR(opt, 10, 0.5)])
    lrs = run(sched, opt, 30)
    expected = [BASE * (0.2 + 0.8 * min(t, 4) / 4) * 0.95 ** t
                * (1 + math.cos(math.pi * t / 30)) / 2 * 0.5 ** (t // 10)
                for t in range(30)]
    assert lrs[:30] == approx(expected)
    assert sched.last_epoch == 30


def test_recursive_schedules_respect_outside_changes():
    opt = Opt()
    sched = S.StepLR(opt, 2, 0.5)
    sched.step()
    opt.lr = 1.0  # e.g. the user rescales it by hand
    sched.step()
    assert opt.lr == 0.5 and sched.get_last_lr() == 0.5


def test_works_with_a_validating_lr_property():
    opt = CheckedOpt()
    lrs = run(S.CosineAnnealingLR(opt, T_max=10), opt, 10)
    assert lrs[-1] == approx(0.0)


def test_get_by_name():
    opt = Opt()
    assert isinstance(S.get("cosine", opt, T_max=5), S.CosineAnnealingLR)
    assert isinstance(S.get("CosineAnnealingLR", opt, T_max=5), S.CosineAnnealingLR)
    assert isinstance(S.get("one_cycle", opt, max_lr=1.0, total_steps=5), S.OneCycleLR)
    assert isinstance(S.get("StepLR", opt, step_size=2), S.StepLR)
    assert isinstance(S.get("reduce_lr_on_plateau", opt), S.ReduceLROnPlateau)
    assert isinstance(S.get(S.ExponentialLR, opt, gamma=0.9), S.ExponentialLR)
    chained = S.get("chained", opt, schedulers=[S.ExponentialLR(opt, 0.9)])
    assert isinstance(chained, S.ChainedScheduler)
    with pytest.raises(ValueError, match="unknown schedule"):
        S.get("nope", opt)
    with pytest.raises(TypeError):
        S.get(3, opt)


# --- ReduceLROnPlateau ------------------------------------------------------------------


def plateau_run(metrics, lr=1.0, **kwargs):
    opt = Opt(lr)
    sched = S.ReduceLROnPlateau(opt, **kwargs)
    assert opt.lr == lr and sched.last_epoch == 0
    out = []
    for m in metrics:
        sched.step(m)
        out.append(opt.lr)
        assert sched.get_last_lr() == opt.lr
    return out, sched


def test_plateau_patience():
    lrs, sched = plateau_run([5.0] * 8, patience=2, factor=0.5)
    # Step 1 sets the best; steps 2-3 are bad but tolerated; step 4 reduces; and so on.
    assert lrs == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert sched.last_epoch == 8


def test_plateau_improvements_reset_the_count():
    lrs, _ = plateau_run([5, 6, 6, 4, 6, 6, 6], patience=2, factor=0.5)
    assert lrs == [1, 1, 1, 1, 1, 1, 0.5]


def test_plateau_zero_patience_and_cooldown():
    lrs, sched = plateau_run([1.0] * 9, patience=0, cooldown=2, factor=0.5)
    # Reduce at step 2, then two cooldown steps ignore bad values, reduce at 5, 8.
    assert lrs == [1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125]
    assert sched.in_cooldown


def test_plateau_threshold_rel_and_abs_min():
    lrs, s = plateau_run([10, 9.5, 8.9], patience=0, factor=0.5, threshold=0.1)
    assert lrs == [1, 0.5, 0.5] and s.best == 8.9  # 9.5 >= 10 * 0.9: not better
    lrs, s = plateau_run([10, 9.95, 9.89], patience=0, factor=0.5, threshold=0.1,
                         threshold_mode="abs")
    assert lrs == [1, 0.5, 0.5] and s.best == 9.89


def test_plateau_mode_max():
    lrs, s = plateau_run([10, 10.5, 11.5], mode="max", patience=0, factor=0.5,
                         threshold=0.1)
    assert lrs == [1, 0.5, 0.5] and s.best == 11.5
    lrs, s = plateau_run([10, 10.05, 10.2], mode="max", patience=0, factor=0.5,
                         threshold=0.1, threshold_mode="abs")
    assert lrs == [1, 0.5, 0.5] and s.best == 10.2
    lrs, _ = plateau_run([1, 2, 3, 4], mode="max", patience=0)
    assert lrs == [1, 1, 1, 1]


def test_plateau_min_lr_and_eps():
    lrs, _ = plateau_run([1.0] * 5, lr=0.1, patience=0, factor=0.1, min_lr=0.003)
    assert lrs == approx([0.1, 0.01, 0.003, 0.003, 0.003])
    lrs, _ = plateau_run([1.0] * 3, lr=1.5e-8, patience=0, factor=0.5)
    assert lrs == [1.5e-8] * 3  # a change below eps = 1e-8 is not made
    lrs, _ = plateau_run([1.0] * 3, lr=1.5e-8, patience=0, factor=0.5, eps=0.0)
    assert lrs == [1.5e-8, 0.75e-8, 0.375e-8]


def test_plateau_nan_is_bad_and_metric_type():
    lrs, _ = plateau_run([1.0, float("nan")], patience=0, factor=0.5)
    assert lrs == [1, 0.5]
    sched = S.ReduceLROnPlateau(Opt())
    with pytest.raises(TypeError, match="metric"):
        sched.step("0.5")
    with pytest.raises(TypeError, match="metric"):
        sched.step(None)


def test_plateau_respects_outside_changes():
    opt = Opt(1.0)
    sched = S.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    sched.step(1.0)
    opt.lr = 0.2
    sched.step(1.0)
    assert opt.lr == 0.1


# --- state_dict round trips -------------------------------------------------------------

FACTORIES = {
    "step": lambda o: S.StepLR(o, 7, 0.5),
    "multistep": lambda o: S.MultiStepLR(o, [5, 15, 30], 0.3),
    "exponential": lambda o: S.ExponentialLR(o, 0.9),
    "cosine": lambda o: S.CosineAnnealingLR(o, 30, 0.001),
    "warm_restarts": lambda o: S.CosineAnnealingWarmRestarts(o, 4, 2, 0.001),
    "linear": lambda o: S.LinearLR(o, 0.1, 1.0, 25),
    "linear_warmup": lambda o: S.LinearWarmup(o, 25),
    "lambda": lambda o: S.LambdaLR(o, lambda t: 0.97 ** t),
    "one_cycle": lambda o: S.OneCycleLR(o, 1.0, total_steps=40, cycle_momentum=True),
    "sequential": lambda o: S.SequentialLR(
        o, [S.LinearLR(o, 0.1, total_iters=10), S.CosineAnnealingWarmRestarts(o, 6),
            S.ExponentialLR(o, 0.9)], milestones=[10, 25]),
    "chained": lambda o: S.ChainedScheduler(
        [S.LinearLR(o, 0.1, total_iters=10), S.CosineAnnealingLR(o, 25, 0.001),
         S.MultiStepLR(o, [12, 20], 0.5)]),
}


@pytest.mark.parametrize("k", [0, 7, 17])
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_state_dict_round_trip(name, k):
    make = FACTORIES[name]
    twin_opt = MomentumOpt()
    twin = make(twin_opt)
    twin_lrs = run(twin, twin_opt, 40)

    opt = MomentumOpt()
    sched = make(opt)
    for _ in range(k):
        sched.step()
    state = json.loads(json.dumps(sched.state_dict()))  # plain numbers only
    assert state == sched.state_dict()
    del sched

    fresh_opt = MomentumOpt()
    fresh = make(fresh_opt)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == k and fresh.get_last_lr() == fresh_opt.lr == twin_lrs[k]
    resumed = [fresh.get_last_lr()]
    for _ in range(40 - k):
        fresh.step()
        resumed.append(fresh_opt.lr)
    assert resumed == twin_lrs[k:]
    if name == "one_cycle":
        assert fresh_opt.momentum == twin_opt.momentum


def test_plateau_state_dict_round_trip():
    metrics = [5, 4, 4.5, 4.4, 4.3, 4.2, 4.6, 4.1, 4.7, 4.8, 4.9, 5.0, 3, 3, 3, 3, 3, 3]
    full, _ = plateau_run(metrics, patience=1, cooldown=1, factor=0.5)
    opt = Opt(1.0)
    sched = S.ReduceLROnPlateau(opt, patience=1, cooldown=1, factor=0.5)
    for m in metrics[:9]:
        sched.step(m)
    state = json.loads(json.dumps(sched.state_dict()))
    fresh_opt = Opt(1.0)
    fresh = S.ReduceLROnPlateau(fresh_opt, patience=1, cooldown=1, factor=0.5)
    fresh.load_state_dict(state)
    rest = []
    for m in metrics[9:]:
        fresh.step(m)
        rest.append(fresh_opt.lr)
    assert full[:9][-1] == state["last_lr"] and rest == full[9:]


def test_load_state_dict_rejects_a_foreign_dict():
    opt = Opt()
    with pytest.raises(ValueError, match="missing keys"):
        S.StepLR(opt, 3).load_state_dict(S.ExponentialLR(opt, 0.5).state_dict())
    with pytest.raises(TypeError):
        S.StepLR(opt, 3).load_state_dict([1, 2])
    chained = S.ChainedScheduler([S.ExponentialLR(opt, 0.5)])
    with pytest.raises(ValueError):
        chained.load_state_dict({"base_lr": 0.1})


# --- invalid arguments ------------------------------------------------------------------

INVALID = [
    (lambda o: S.StepLR(o, 0), ValueError, "step_size"),
    (lambda o: S.StepLR(o, 2.5), TypeError, "step_size"),
    (lambda o: S.StepLR(o, "3"), TypeError, "step_size"),
    (lambda o: S.StepLR(o, 3, gamma=0), ValueError, "gamma"),
    (lambda o: S.StepLR(o, 3, gamma=float("nan")), ValueError, "gamma"),
    (lambda o: S.MultiStepLR(o, 5), TypeError, "milestones"),
    (lambda o: S.MultiStepLR(o, [0, 3]), ValueError, "milestones"),
    (lambda o: S.MultiStepLR(o, [2, 3], gamma=-1), ValueError, "gamma"),
    (lambda o: S.ExponentialLR(o, -0.5), ValueError, "gamma"),
    (lambda o: S.ExponentialLR(o, None), TypeError, "gamma"),
    (lambda o: S.CosineAnnealingLR(o, 0), ValueError, "T_max"),
    (lambda o: S.CosineAnnealingLR(o, 10, eta_min=-1), ValueError, "eta_min"),
    (lambda o: S.CosineAnnealingWarmRestarts(o, 0), ValueError, "T_0"),
    (lambda o: S.CosineAnnealingWarmRestarts(o, 5, T_mult=0), ValueError, "T_mult"),
    (lambda o: S.CosineAnnealingWarmRestarts(o, 5, T_mult=1.5), TypeError, "T_mult"),
    (lambda o: S.LinearLR(o, start_factor=0), ValueError, "start_factor"),
    (lambda o: S.LinearLR(o, start_factor=1.5), ValueError, "start_factor"),
    (lambda o: S.LinearLR(o, end_factor=1.1), ValueError, "end_factor"),
    (lambda o: S.LinearLR(o, total_iters=0), ValueError, "total_iters"),
    (lambda o: S.LinearWarmup(o, 0), ValueError, "warmup_steps"),
    (lambda o: S.LinearWarmup(o, 5, start_factor=-0.1), ValueError, "start_factor"),
    (lambda o: S.LambdaLR(o, 0.5), TypeError, "lr_lambda"),
    (lambda o: S.LambdaLR(o, lambda t: None), TypeError, "lr_lambda"),
    (lambda o: S.LambdaLR(o, lambda t: -1.0), ValueError, "lr_lambda"),
    (lambda o: S.OneCycleLR(o, 1.0), ValueError, "total_steps"),
    (lambda o: S.OneCycleLR(o, 1.0, epochs=3), ValueError, "steps_per_epoch"),
    (lambda o: S.OneCycleLR(o, 1.0, total_steps=0), ValueError, "total_steps"),
    (lambda o: S.OneCycleLR(o, 1.0, epochs=0, steps_per_epoch=3), ValueError, "epochs"),
    (lambda o: S.OneCycleLR(o, 0.0, total_steps=10), ValueError, "max_lr"),
    (lambda o: S.OneCycleLR(o, 1.0, total_steps=10, pct_start=1.5), ValueError, "pct_start"),
    (lambda o: S.OneCycleLR(o, 1.0, total_steps=10, anneal_strategy="exp"), ValueError,
     "anneal_strategy"),
    (lambda o: S.OneCycleLR(o, 1.0, total_steps=10, div_factor=0), ValueError, "div_factor"),
    (lambda o: S.OneCycleLR(o, 1.0, total_steps=10, final_div_factor=-1), ValueError,
     "final_div_factor"),
    (lambda o: S.OneCycleLR(o, 1.0, total_steps=10, three_phase=1), TypeError, "three_phase"),
    (lambda o: S.ReduceLROnPlateau(o, mode="minimum"), ValueError, "mode"),
    (lambda o: S.ReduceLROnPlateau(o, factor=1.0), ValueError, "factor"),
    (lambda o: S.ReduceLROnPlateau(o, factor=0.0), ValueError, "factor"),
    (lambda o: S.ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
    (lambda o: S.ReduceLROnPlateau(o, patience=1.5), TypeError, "patience"),
    (lambda o: S.ReduceLROnPlateau(o, threshold=-1e-4), ValueError, "threshold"),
    (lambda o: S.ReduceLROnPlateau(o, threshold_mode="pct"), ValueError, "threshold_mode"),
    (lambda o: S.ReduceLROnPlateau(o, cooldown=-2), ValueError, "cooldown"),
    (lambda o: S.ReduceLROnPlateau(o, min_lr=-0.1), ValueError, "min_lr"),
    (lambda o: S.ReduceLROnPlateau(o, eps=-1), ValueError, "eps"),
    (lambda o: S.SequentialLR(o, [], []), ValueError, "at least one"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 2)], [3]), ValueError, "milestones"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 2), S.StepLR(o, 3)], [0]), ValueError,
     "milestones"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 2), S.StepLR(o, 3), S.StepLR(o, 4)], [5, 5]),
     ValueError, "increasing"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 2), S.ReduceLROnPlateau(o)], [3]),
     ValueError, "ReduceLROnPlateau"),
    (lambda o: S.SequentialLR(o, [S.StepLR(Opt(), 2), S.StepLR(o, 3)], [3]), ValueError,
     "another optimizer"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 2), "cosine"], [3]), TypeError, "schedulers"),
    (lambda o: S.ChainedScheduler([]), ValueError, "at least one"),
    (lambda o: S.ChainedScheduler(S.StepLR(o, 2)), TypeError, "list"),
    (lambda o: S.ChainedScheduler([S.StepLR(o, 2), S.StepLR(Opt(), 2)]), ValueError,
     "another optimizer"),
    (lambda o: S.ChainedScheduler([S.StepLR(o, 2)], optimizer=Opt()), ValueError,
     "another optimizer"),
    (lambda o: S.ChainedScheduler([S.ChainedScheduler([S.StepLR(o, 2)])]), TypeError,
     "nesting"),
]


@pytest.mark.parametrize("make, error, match", INVALID,
                         ids=[f"{i}-{m}" for i, (_, _, m) in enumerate(INVALID)])
def test_invalid_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make(Opt())


@pytest.mark.parametrize("bad, error", [(object(), TypeError), (Opt("0.1"), TypeError),
                                        (Opt(True), TypeError), (Opt(-0.1), ValueError),
                                        (Opt(float("inf")), ValueError)])
def test_invalid_optimizer(bad, error):
    with pytest.raises(error, match="lr"):
        S.StepLR(bad, 3)


def test_invalid_arguments_leave_the_optimizer_alone():
    opt = Opt()
    with pytest.raises(ValueError):
        S.LinearLR(opt, start_factor=0.5, total_iters=0)
    with pytest.raises(ValueError):
        S.OneCycleLR(opt, 1.0)
    assert opt.lr == BASE


# --- parity with torch.optim.lr_scheduler ------------------------------------------------


def torch_lrs(torch, make, n, lr=BASE, momentum=0.0):
    """lr (and momentum) sequence of a torch scheduler built by make(opt, lr_scheduler)."""
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=lr, momentum=momentum)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # epoch-deprecation and call-order notices
        sched = make(opt, torch.optim.lr_scheduler)
        lrs, moms = [sched.get_last_lr()[0]], [opt.param_groups[0]["momentum"]]
        for _ in range(n):
            opt.step()
            sched.step()
            lrs.append(sched.get_last_lr()[0])
            moms.append(opt.param_groups[0]["momentum"])
    return lrs, moms


PARITY = {
    "step": lambda o, M: M.StepLR(o, 7, 0.5),
    "step_default_gamma": lambda o, M: M.StepLR(o, 3),
    "multistep": lambda o, M: M.MultiStepLR(o, [3, 10, 10, 20], 0.5),
    "exponential": lambda o, M: M.ExponentialLR(o, 0.93),
    "cosine": lambda o, M: M.CosineAnnealingLR(o, 12, 0.001),
    "cosine_long": lambda o, M: M.CosineAnnealingLR(o, 60),
    "warm_restarts": lambda o, M: M.CosineAnnealingWarmRestarts(o, 5, 2, 0.001),
    "warm_restarts_mult1": lambda o, M: M.CosineAnnealingWarmRestarts(o, 7),
    "linear": lambda o, M: M.LinearLR(o, 0.1, 0.9, 8),
    "linear_default": lambda o, M: M.LinearLR(o),
    "linear_decay": lambda o, M: M.LinearLR(o, 1.0, 0.0, 20),
    "lambda": lambda o, M: M.LambdaLR(o, lambda t: 1 / (1 + 0.3 * t)),
    "sequential_warmup_cosine": lambda o, M: M.SequentialLR(
        o, [M.LinearLR(o, 0.01, total_iters=10), M.CosineAnnealingLR(o, 40, 1e-4)], [10]),
    "sequential_three": lambda o, M: M.SequentialLR(
        o, [M.ExponentialLR(o, 0.8), M.LambdaLR(o, lambda t: 0.5 + t / 100),
            M.CosineAnnealingWarmRestarts(o, 6), ], [7, 20]),
    "sequential_step_multistep": lambda o, M: M.SequentialLR(
        o, [M.StepLR(o, 2, 0.5), M.MultiStepLR(o, [5, 8], 0.1)], [6]),
    "chained_linear_exp": lambda o, M: M.ChainedScheduler(
        [M.LinearLR(o, 0.2, total_iters=4), M.ExponentialLR(o, 0.95)]),
    "chained_with_cosine": lambda o, M: M.ChainedScheduler(
        [M.LinearLR(o, 0.1, total_iters=5), M.CosineAnnealingLR(o, 20, 0.01),
         M.StepLR(o, 9, 0.5)]),
    "chained_cosine_first": lambda o, M: M.ChainedScheduler(
        [M.CosineAnnealingLR(o, 8), M.MultiStepLR(o, [4, 30], 0.5)]),
    "chained_lambda_overrides": lambda o, M: M.ChainedScheduler(
        [M.ExponentialLR(o, 0.9), M.LambdaLR(o, lambda t: 0.99 ** t)]),
}


@pytest.mark.parametrize("name", sorted(PARITY))
def test_parity_with_torch(name):
    torch = pytest.importorskip("torch")
    expected, _ = torch_lrs(torch, PARITY[name], N)
    opt = Opt()
    got = run(PARITY[name](opt, S), opt)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("kwargs", [
    dict(total_steps=N),
    dict(epochs=5, steps_per_epoch=10, pct_start=0.25, anneal_strategy="linear"),
    dict(total_steps=N, three_phase=True, div_factor=10.0, final_div_factor=100.0),
    dict(total_steps=37, pct_start=0.5, three_phase=True, anneal_strategy="linear"),
])
def test_one_cycle_parity_with_torch(kwargs):
    torch = pytest.importorskip("torch")
    n = kwargs.get("total_steps", 50)
    expected, expected_mom = torch_lrs(
        torch, lambda o, M: M.OneCycleLR(o, 0.8, **kwargs), n, momentum=0.9)
    opt = MomentumOpt()
    sched = S.OneCycleLR(opt, 0.8, cycle_momentum=True, **kwargs)
    got, mom = [opt.lr], [opt.momentum]
    for _ in range(n):
        sched.step()
        got.append(opt.lr)
        mom.append(opt.momentum)
    assert got == pytest.approx(expected, rel=1e-12)
    assert mom == pytest.approx(expected_mom, rel=1e-12)


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(mode="max", patience=1, factor=0.5, threshold=0.05),
    dict(patience=0, cooldown=2, threshold_mode="abs", threshold=0.02, min_lr=0.004),
    dict(mode="max", patience=2, cooldown=1, threshold_mode="abs", factor=0.3),
])
def test_plateau_parity_with_torch(kwargs):
    torch = pytest.importorskip("torch")
    metrics = [1.0 / (1 + 0.1 * t) + 0.05 * math.sin(1.7 * t) + (0.3 if t % 11 == 0 else 0)
               for t in range(60)]
    opt_t = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE)
    sched_t = torch.optim.lr_scheduler.ReduceLROnPlateau(opt_t, **kwargs)
    opt = Opt()
    sched = S.ReduceLROnPlateau(opt, **kwargs)
    for m in metrics:
        sched_t.step(m)
        sched.step(m)
        assert sched.get_last_lr() == sched_t.get_last_lr()[0]
        assert sched.num_bad_epochs == sched_t.num_bad_epochs
        assert sched.cooldown_counter == sched_t.cooldown_counter
        assert sched.best == sched_t.best
    assert sched.last_epoch == sched_t.last_epoch


def test_last_epoch_counts_like_torch():
    torch = pytest.importorskip("torch")
    opt_t = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched_t = torch.optim.lr_scheduler.StepLR(opt_t, 3)
        opt = Opt()
        sched = S.StepLR(opt, 3)
        assert sched.last_epoch == sched_t.last_epoch == 0
        for _ in range(4):
            opt_t.step()
            sched_t.step()
            sched.step()
        assert sched.last_epoch == sched_t.last_epoch == 4
