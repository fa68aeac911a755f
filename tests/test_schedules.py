"""optkern.schedules: closed forms, PyTorch agreement, driving optimizers, resume, bad input."""

import math

import numpy as np
import pytest

from optkern import schedules as S


class FakeOpt:
    """Stand-in optimizer: param_groups as optkern.optim / torch.optim have them."""

    def __init__(self, *lrs, momentum=0.9):
        self.param_groups = [{"lr": lr, "momentum": momentum, "params": []} for lr in lrs]


# ---- closed forms ------------------------------------------------------------


def test_step_multistep_exponential_closed_forms():
    s = S.step_decay(0.5, step_size=3, gamma=0.2)
    assert [s(t) for t in (0, 2, 3, 5, 6, 10)] == pytest.approx([0.5, 0.5, 0.1, 0.1, 0.02, 0.5 * 0.2**3])
    m = S.multi_step(2.0, milestones=[2, 5, 5], gamma=0.5)
    assert [m(t) for t in (0, 1, 2, 4, 5, 100)] == pytest.approx([2, 2, 1, 1, 0.25, 0.25])
    e = S.exponential(3.0, gamma=0.9)
    assert e(7) == pytest.approx(3.0 * 0.9**7)


def test_inverse_time_and_robbins_monro():
    s = S.inverse_time(0.3, k=0.1)
    for t in (0, 1, 17, 1000):
        assert s(t) == pytest.approx(0.3 / (1 + 0.1 * t))
    p = S.inverse_time(1.0, k=2.0, power=0.75)
    assert p(9) == pytest.approx(1 / 19**0.75)
    # power 1: partial sums of lr grow like log T, of lr^2 converge.
    t = np.arange(200000)
    lr = 1.0 / (1 + t)
    assert lr.sum() > 12 and (lr**2).sum() < math.pi**2 / 6 + 1e-9


def test_polynomial_linear_constant():
    s = S.polynomial(1.0, total_steps=10, power=2.0, end=0.1)
    for t in (0, 3, 10, 15):
        assert s(t) == pytest.approx(0.9 * (1 - min(t, 10) / 10) ** 2 + 0.1)
    lin = S.linear(0.0, 2.0, 4)
    assert [lin(t) for t in range(6)] == pytest.approx([0, 0.5, 1, 1.5, 2, 2])
    assert S.constant(0.7)(123) == 0.7


def test_cosine_and_restarts():
    c = S.cosine(1.0, T_max=8, eta_min=0.1)
    for t in (0, 2, 4, 8):
        assert c(t) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * t / 8)) / 2)
    assert c(20) == pytest.approx(0.1)
    r = S.cosine_restarts(1.0, T_0=3, T_mult=2)
    # cycles: [0,3) len 3, [3,9) len 6, [9,21) len 12
    for t, cur, length in [(0, 0, 3), (2, 2, 3), (3, 0, 6), (8, 5, 6), (9, 0, 12), (20, 11, 12), (21, 0, 24)]:
        assert r(t) == pytest.approx((1 + math.cos(math.pi * cur / length)) / 2)
    r1 = S.cosine_restarts(2.0, T_0=5)
    assert r1(7) == pytest.approx(r1(2))


def test_cyclic_modes():
    tri = S.cyclic(0.1, 1.0, step_size_up=4)
    assert [tri(t) for t in (0, 2, 4, 6, 8, 10)] == pytest.approx([0.1, 0.55, 1.0, 0.55, 0.1, 0.55])
    tri2 = S.cyclic(0.0, 1.0, step_size_up=2, mode="triangular2")
    assert [tri2(t) for t in (2, 6, 10)] == pytest.approx([1.0, 0.5, 0.25])
    ex = S.cyclic(0.0, 1.0, step_size_up=2, mode="exp_range", gamma=0.9)
    assert ex(2) == pytest.approx(0.81) and ex(6) == pytest.approx(0.9**6)


def test_one_cycle_phases():
    s = S.one_cycle(1.0, total_steps=100, pct_start=0.25, div_factor=10, final_div_factor=100)
    assert s(0) == pytest.approx(0.1)
    assert s(24) == pytest.approx(1.0)
    assert s(99) == pytest.approx(0.1 / 100)
    assert s(500) == s(99)
    lin = S.one_cycle(1.0, total_steps=11, pct_start=0.5, anneal="linear", div_factor=2, final_div_factor=1)
    # up: steps 0..4.5 from 0.5 to 1; down: 4.5..10 from 1 to 0.5
    assert lin(2) == pytest.approx(0.5 + 0.5 * 2 / 4.5)
    assert lin(7) == pytest.approx(1.0 - 0.5 * (7 - 4.5) / 5.5)


def test_warmup_chain_sequential():
    base = S.step_decay(1.0, step_size=10, gamma=0.1)
    w = S.linear_warmup(base, 5, start_factor=0.2)
    assert w(0) == pytest.approx(0.2)
    assert w(2) == pytest.approx(0.2 + 0.8 * 2 / 5)
    assert w(5) == 1.0 and w(10) == pytest.approx(0.1)
    ws = S.linear_warmup(S.cosine(1.0, T_max=10), 4, shift=True)
    assert ws(4) == 1.0 and ws(9) == pytest.approx(S.cosine(1.0, T_max=10)(5))
    assert ws.total_steps == 14
    ch = S.chain(S.exponential(1.0, 0.5), S.constant(3.0))
    assert ch(3) == pytest.approx(3 * 0.125)
    seq = S.sequential([S.linear(0.0, 1.0, 3), S.cosine(1.0, 10), 0.05], boundaries=[3, 13])
    assert [seq(t) for t in (0, 1, 3)] == pytest.approx([0.0, 1 / 3, 1.0])
    assert seq(8) == pytest.approx(S.cosine(1.0, 10)(5))
    assert seq(13) == 0.05 and seq(1000) == 0.05
    wc = S.warmup_cosine(2.0, warmup_steps=10, total_steps=110, eta_min=0.2)
    assert wc(5) == pytest.approx(1.0) and wc(60) == pytest.approx(0.2 + 1.8 / 2)
    assert S.FunctionSchedule(lambda t: 1 / (t + 1))(3) == 0.25


def test_scale_lr():
    assert S.scale_lr(0.1, 1024, 256) == pytest.approx(0.4)
    assert S.scale_lr(0.1, 1024, 256, rule="sqrt") == pytest.approx(0.2)


def test_batch_size_schedule_keeps_noise_scale():
    b = S.batch_size_schedule(128, milestones=[10, 20, 30], factor=5, max_batch_size=5000, lr=0.1)
    assert [b.batch_size(t) for t in (0, 9, 10, 20, 30, 99)] == [128, 128, 640, 3200, 5000, 5000]
    assert [b(t) for t in (0, 10, 20)] == [0.1, 0.1, 0.1]
    decay = S.multi_step(0.1, [10, 20, 30], gamma=0.2)
    for t in (0, 15, 25, 35):
        assert b(t) / b.batch_size(t) == pytest.approx(decay(t) / 128)
    nocap = S.batch_size_schedule(32, milestones=[1], factor=2)
    assert nocap.batch_size(5) == 64 and nocap(5) == 1.0


# ---- driving optimizers, resume ----------------------------------------------


def test_scheduler_multiplier_keeps_group_ratios():
    opt = FakeOpt(0.1, 0.01)
    sch = S.step_decay(1.0, step_size=2, gamma=0.5).attach(opt, relative=True)
    seen = []
    for _ in range(5):
        seen.append([g["lr"] for g in opt.param_groups])
        sch.step()
    np.testing.assert_allclose(seen, [[0.1, 0.01], [0.1, 0.01], [0.05, 0.005], [0.05, 0.005], [0.025, 0.0025]])
    assert sch.last_step == 5 and sch.get_last_lr() == pytest.approx([0.025, 0.0025])


def test_scheduler_absolute_by_default_and_other_keys():
    opt = FakeOpt(0.3, 0.3)
    S.Scheduler(opt, S.constant(0.2))
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.2]
    mom = S.Scheduler(opt, S.linear(0.95, 0.85, 2), key="momentum")
    mom.step()
    assert opt.param_groups[1]["momentum"] == pytest.approx(0.9)


def test_scheduler_drives_one_beta():
    opt = FakeOpt(0.1)
    opt.param_groups[0]["betas"] = (0.9, 0.999)
    sch = S.Scheduler(opt, S.linear(0.95, 0.85, 2), key="betas", index=0)
    assert opt.param_groups[0]["betas"] == (0.95, 0.999)
    sch.step()
    assert opt.param_groups[0]["betas"] == pytest.approx((0.9, 0.999)) and isinstance(
        opt.param_groups[0]["betas"], tuple
    )
    assert sch.get_last_lr() == pytest.approx([0.9])
    # one_cycle's momentum through momentum_scheduler picks betas[0] as torch does
    opt2 = FakeOpt(0.1)
    opt2.param_groups[0]["betas"] = [0.9, 0.99]
    m = S.momentum_scheduler(opt2, S.one_cycle(0.1, 10).momentum(0.85, 0.95))
    assert m.key == "betas" and m.index == 0 and opt2.param_groups[0]["betas"] == [0.95, 0.99]


@pytest.mark.parametrize(
    "relative, sched, groups, match",
    [
        (False, S.warmup_cosine(1.0, 5, 50), (1e-3,), "relative=True"),  # a multiplier used as absolute
        (True, S.warmup_cosine(1e-3, 5, 50), (1e-3,), "multiplier"),  # an absolute lr used as multiplier
        (False, S.step_decay(0.1, 3), (0.1, 0.01), "different"),  # absolute flattens group ratios
    ],
)
def test_scheduler_misuse_is_loud(relative, sched, groups, match):
    with pytest.warns(S.ScheduleScaleWarning, match=match):
        S.Scheduler(FakeOpt(*groups), sched, relative=relative)


def test_scheduler_plausible_use_is_quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        S.Scheduler(FakeOpt(0.1), S.one_cycle(0.1, 100))  # torch's OneCycleLR(max_lr=0.1)
        S.Scheduler(FakeOpt(1e-3), S.warmup_cosine(3e-3, 5, 50))
        S.Scheduler(FakeOpt(0.1, 0.01), S.warmup_cosine(1.0, 5, 50), relative=True)


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (lambda t: "0.1", TypeError, "schedule: returned str at step 0"),
        (lambda t: None, TypeError, "schedule: returned NoneType"),
        (lambda t: float("nan"), ValueError, "schedule: returned nan"),
        (lambda t: [0.1], TypeError, "schedule: returned list"),
    ],
)
def test_scheduler_schedule_returning_a_non_number(bad, exc, match):
    with pytest.raises(exc, match=match):
        S.Scheduler(FakeOpt(0.1), bad)


@pytest.mark.parametrize(
    "make",
    [
        lambda: S.linear_warmup(S.cosine_restarts(1.0, T_0=4, T_mult=2), 3, start_factor=0.1),
        lambda: S.one_cycle(1.0, total_steps=40, three_phase=True),
        lambda: S.cyclic(0.1, 1.0, 3, 5, mode="triangular2"),
        lambda: S.batch_size_schedule(8, [5, 9, 12], 2.0, 32),
    ],
)
def test_resume_from_state_dict_equals_uninterrupted(make):
    ref_opt = FakeOpt(0.3, 0.03)
    ref = make().attach(ref_opt, relative=True)
    ref_lrs = []
    for _ in range(30):
        ref.step()
        ref_lrs.append([g["lr"] for g in ref_opt.param_groups])

    opt = FakeOpt(0.3, 0.03)
    sch = make().attach(opt, relative=True)
    lrs = []
    for _ in range(13):
        sch.step()
        lrs.append([g["lr"] for g in opt.param_groups])
    saved_sched, saved_groups = sch.state_dict(), [dict(g) for g in opt.param_groups]
    # A fresh process: new optimizer restored from its groups (lr already decayed), new scheduler.
    opt2 = FakeOpt(0.3, 0.03)
    for g, s in zip(opt2.param_groups, saved_groups):
        g.update(s)
    sch2 = make().attach(opt2, relative=True)
    sch2.load_state_dict(saved_sched)
    for _ in range(17):
        sch2.step()
        lrs.append([g["lr"] for g in opt2.param_groups])
    assert lrs == ref_lrs


def test_scheduler_bad_inputs():
    with pytest.raises(TypeError, match="optimizer"):
        S.Scheduler(object(), S.constant(1.0))
    with pytest.raises(TypeError, match="relative"):
        S.Scheduler(FakeOpt(0.1), S.constant(0.1), relative="yes")
    with pytest.raises(ValueError, match="betas"):
        S.Scheduler(FakeOpt(0.1), S.constant(0.1), key="betas")
    beta_opt = FakeOpt(0.1)
    beta_opt.param_groups[0]["betas"] = (0.9, 0.999)
    with pytest.raises(TypeError, match="index="):
        S.Scheduler(beta_opt, S.constant(0.9), key="betas")
    with pytest.raises(ValueError, match="index: 2 is out of range"):
        S.Scheduler(beta_opt, S.constant(0.9), key="betas", index=2)
    with pytest.raises(TypeError, match="index: "):
        S.Scheduler(FakeOpt(0.1), S.constant(0.1), index=0)
    sch = S.Scheduler(FakeOpt(0.1), S.constant(0.1))
    with pytest.raises(ValueError, match="base_values"):
        sch.load_state_dict({"last_step": 3, "base_values": [0.1, 0.2]})
    with pytest.raises(ValueError, match="step"):
        sch.load_state_dict({"last_step": -1, "base_values": [0.1]})


@pytest.mark.parametrize(
    "call, match, exc",
    [
        (lambda: S.step_decay(1.0, 5)(-1), "step", ValueError),
        (lambda: S.cosine(1.0, 5)(2.5), "step", TypeError),
        (lambda: S.linear_warmup(S.cosine(1.0, T_max=10), 11), "warmup_steps", ValueError),
        (lambda: S.warmup_cosine(1.0, 10, 10), "warmup_steps", ValueError),
        (lambda: S.step_decay(0.0, 5), "lr", ValueError),
        (lambda: S.step_decay(-1.0, 5), "lr", ValueError),
        (lambda: S.step_decay(1.0, 0), "step_size", ValueError),
        (lambda: S.step_decay(1.0, 2, gamma=float("inf")), "gamma", ValueError),
        (lambda: S.exponential(1.0, gamma=0.0), "gamma", ValueError),
        (lambda: S.multi_step(1.0, [-1, 3]), r"milestones\[0\]", ValueError),
        (lambda: S.inverse_time(1.0, k=-1), "k", ValueError),
        (lambda: S.polynomial(1.0, 0), "total_steps", ValueError),
        (lambda: S.cosine_restarts(1.0, T_0=2, T_mult=0), "T_mult", ValueError),
        (lambda: S.cyclic(0.1, 1.0, mode="sine"), "mode", ValueError),
        (lambda: S.cyclic(0.5, 0.0), "max_lr", ValueError),
        (lambda: S.one_cycle(1.0, 100).momentum(base_momentum=1.5), "base_momentum", ValueError),
        (lambda: S.one_cycle(1.0, 100, pct_start=1.0), "pct_start", ValueError),
        (lambda: S.one_cycle(1.0, 100, anneal="exp"), "anneal", ValueError),
        (lambda: S.one_cycle(1.0, 100, div_factor=0), "div_factor", ValueError),
        (lambda: S.sequential([S.constant(1.0), S.constant(2.0)], [3, 4]), "boundaries", ValueError),
        (lambda: S.sequential([S.constant(1.0)] * 3, [4, 4]), "boundaries", ValueError),
        (lambda: S.chain(), "schedules", ValueError),
        (lambda: S.scale_lr(0.1, 0, 256), "batch", ValueError),
        (lambda: S.scale_lr(0.1, 64, 256, rule="log"), "rule", ValueError),
        (lambda: S.batch_size_schedule(64, [3], factor=1.0), "factor", ValueError),
        (lambda: S.batch_size_schedule(64, [3], max_batch_size=32), "max_batch_size", ValueError),
        (lambda: S.batch_size_schedule(64, [3]).batch_size(-2), "step", ValueError),
        (lambda: S.linear_warmup("fast", 3), "schedule", TypeError),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match, exc):
    with pytest.raises(exc, match=match):
        call()
