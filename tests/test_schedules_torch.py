"""optkern.schedules against torch.optim.lr_scheduler, step by step."""

import warnings

import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler


def torch_values(make, steps, lr=0.1, **opt_kw):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr, momentum=0.9, **opt_kw)
    sch = make(opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sch.step()
    return out


def ours(sched, steps, lr=0.1):
    opt = type("O", (), {})()
    opt.param_groups = [{"lr": lr}]
    sch = sched.attach(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        sch.step()
    return out


# A torch user's code states lrs in absolute terms: optimizer lr 0.1 and the same numbers in the schedule.
CASES = [
    ("StepLR", lambda o: lrs.StepLR(o, 7, gamma=0.3), S.step_decay(0.1, 7, 0.3), 40),
    ("MultiStepLR", lambda o: lrs.MultiStepLR(o, [3, 8, 8, 20], gamma=0.5), S.multi_step(0.1, [3, 8, 8, 20], 0.5), 30),
    ("ExponentialLR", lambda o: lrs.ExponentialLR(o, 0.93), S.exponential(0.1, 0.93), 50),
    ("CosineAnnealingLR", lambda o: lrs.CosineAnnealingLR(o, 25, eta_min=0.01), S.cosine(0.1, 25, eta_min=0.01), 26),
    (
        "CosineAnnealingWarmRestarts",
        lambda o: lrs.CosineAnnealingWarmRestarts(o, 3, T_mult=2, eta_min=0.001),
        S.cosine_restarts(0.1, 3, 2, eta_min=0.001),
        60,
    ),
    ("CosineAnnealingWarmRestarts1", lambda o: lrs.CosineAnnealingWarmRestarts(o, 5), S.cosine_restarts(0.1, 5), 33),
    ("PolynomialLR", lambda o: lrs.PolynomialLR(o, total_iters=17, power=1.7), S.polynomial(0.1, 17, 1.7), 30),
    (
        "LinearLR",
        lambda o: lrs.LinearLR(o, start_factor=0.25, end_factor=0.5, total_iters=9),
        S.linear(0.025, 0.05, 9),
        20,
    ),
    (
        "ConstantLR",
        lambda o: lrs.ConstantLR(o, factor=0.5, total_iters=4),
        S.sequential([S.constant(0.05), S.constant(0.1)], [4]),
        10,
    ),
    (
        "OneCycleLR",
        lambda o: lrs.OneCycleLR(o, max_lr=0.1, total_steps=30, cycle_momentum=False),
        S.one_cycle(0.1, 30),
        30,
    ),
    (
        "CyclicLR",
        lambda o: lrs.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3, cycle_momentum=False),
        S.cyclic(0.01, 0.1, 3),
        25,
    ),
    (
        "SequentialLR",
        lambda o: lrs.SequentialLR(
            o, [lrs.ConstantLR(o, 0.1, total_iters=3), lrs.ExponentialLR(o, 0.9)], milestones=[3]
        ),
        S.sequential([S.constant(0.01), S.exponential(0.1, 0.9)], [3]),
        20,
    ),
]


@pytest.mark.parametrize("name, make_torch, sched, steps", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(name, make_torch, sched, steps):
    # A torch user's absolute schedule gives torch's lr sequence, warning-free.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mine = ours(sched, steps)
    assert mine == pytest.approx(torch_values(make_torch, steps), rel=1e-9, abs=1e-12)


def test_relative_schedule_matches_lambda_lr_on_groups():
    # torch's LambdaLR multiplies each group's own lr: relative=True here.
    def groups():
        return [
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1},
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.02},
        ]

    f = S.warmup_cosine(1.0, 4, 30)
    a, b = torch.optim.SGD(groups(), lr=1.0), torch.optim.SGD(groups(), lr=1.0)
    ref = lrs.LambdaLR(a, f)
    mine = S.Scheduler(b, f, relative=True)
    for _ in range(30):
        assert [g["lr"] for g in b.param_groups] == pytest.approx([g["lr"] for g in a.param_groups], rel=1e-12)
        a.step(), b.step(), ref.step(), mine.step()


def test_one_cycle_drives_adam_beta1_like_torch():
    p, q = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    a, b = torch.optim.Adam([p], lr=1e-3), torch.optim.Adam([q], lr=1e-3)
    ref = lrs.OneCycleLR(a, max_lr=0.01, total_steps=25, base_momentum=0.8, max_momentum=0.9)
    cyc = S.one_cycle(0.01, 25)
    lr_s, beta_s = S.Scheduler(b, cyc), S.momentum_scheduler(b, cyc.momentum(0.8, 0.9))
    for _ in range(25):
        assert b.param_groups[0]["lr"] == pytest.approx(a.param_groups[0]["lr"], rel=1e-12)
        assert b.param_groups[0]["betas"][0] == pytest.approx(a.param_groups[0]["betas"][0], rel=1e-12)
        assert b.param_groups[0]["betas"][1] == a.param_groups[0]["betas"][1]
        a.step(), b.step(), ref.step(), lr_s.step(), beta_s.step()


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.97)])
def test_cyclic_momentum_matches_torch(mode, gamma):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sch = lrs.CyclicLR(
        opt,
        base_lr=0.01,
        max_lr=0.2,
        step_size_up=4,
        step_size_down=6,
        mode=mode,
        gamma=gamma,
        cycle_momentum=True,
        base_momentum=0.8,
        max_momentum=0.9,
    )
    ref = []
    for _ in range(45):
        ref.append(opt.param_groups[0]["momentum"])
        opt.step()
        sch.step()
    mine = S.cyclic(0.01, 0.2, 4, 6, mode=mode, gamma=gamma).momentum(0.8, 0.9)
    assert [mine(t) for t in range(45)] == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_matches_torch(anneal, three_phase):
    total = 57
    ref = torch_values(
        lambda o: lrs.OneCycleLR(
            o,
            max_lr=0.4,
            total_steps=total,
            pct_start=0.35,
            anneal_strategy=anneal,
            div_factor=20,
            final_div_factor=300,
            three_phase=three_phase,
        ),
        total,
    )
    s = S.one_cycle(0.4, total, 0.35, anneal, 20, 300, three_phase)
    assert [s(t) for t in range(total)] == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.97)])
def test_cyclic_matches_torch(mode, gamma):
    ref = torch_values(
        lambda o: lrs.CyclicLR(
            o, base_lr=0.01, max_lr=0.2, step_size_up=4, step_size_down=6, mode=mode, gamma=gamma, cycle_momentum=False
        ),
        45,
    )
    s = S.cyclic(0.01, 0.2, 4, 6, mode=mode, gamma=gamma)
    assert [s(t) for t in range(45)] == pytest.approx(ref, rel=1e-9)


def test_linear_warmup_then_step_matches_torch_chain():
    # Goyal et al.: warm-up multiplier times a step decay, unshifted (torch ChainedScheduler).
    def make(o):
        return lrs.ChainedScheduler([lrs.LinearLR(o, start_factor=0.25, total_iters=5), lrs.StepLR(o, 10, 0.1)])

    sched = S.linear_warmup(S.step_decay(0.1, 10, 0.1), 5, start_factor=0.25)
    assert ours(sched, 35) == pytest.approx(torch_values(make, 35), rel=1e-9)


@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_momentum_matches_torch(three_phase):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sch = lrs.OneCycleLR(
        opt, max_lr=0.3, total_steps=40, pct_start=0.4, three_phase=three_phase, base_momentum=0.8, max_momentum=0.93
    )
    ref = []
    for _ in range(40):
        ref.append(opt.param_groups[0]["momentum"])
        opt.step()
        sch.step()
    mine = S.one_cycle(0.3, 40, 0.4, three_phase=three_phase).momentum(0.8, 0.93)
    assert [mine(t) for t in range(40)] == pytest.approx(ref, rel=1e-12)


def test_scheduler_drives_a_torch_optimizer_like_torch_does():
    # Two param groups with different base lrs, driven by our Scheduler vs torch's MultiStepLR.
    def groups():
        return [
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1},
            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.02},
        ]

    a, b = torch.optim.SGD(groups(), lr=1.0), torch.optim.SGD(groups(), lr=1.0)
    ref = lrs.MultiStepLR(a, [2, 5], gamma=0.3)
    mine = S.multi_step(1.0, [2, 5], 0.3).attach(b, relative=True)
    for _ in range(8):
        assert [g["lr"] for g in b.param_groups] == pytest.approx([g["lr"] for g in a.param_groups], rel=1e-12)
        a.step()
        b.step()
        ref.step()
        mine.step()
