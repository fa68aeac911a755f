"""optkern.schedules against torch.optim.lr_scheduler bit for bit, where torch computes each value
from the step alone (CyclicLR, OneCycleLR, CosineAnnealingWarmRestarts): the same float operations
in the same order give the same bits. (torch's chainable schedulers -- StepLR, ExponentialLR,
CosineAnnealingLR, LinearLR, PolynomialLR -- multiply the previous lr, so a pure function of the
step agrees with them to rounding only: test_schedules_torch.py.)"""

import warnings

import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler


def torch_run(make, steps, opt_cls=torch.optim.SGD, **kw):
    """(lr, momentum-or-beta1) before each of ``steps`` steps of a torch scheduler."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = opt_cls([p], lr=0.1, **kw)
    sched = make(opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            g = opt.param_groups[0]
            out.append((g["lr"], g["betas"][0] if "betas" in g else g["momentum"]))
            opt.step()
            sched.step()
    return out


@pytest.mark.parametrize("gamma", [0.97, 0.999, 0.9999])
@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam], ids=["momentum", "beta1"])
def test_cyclic_exp_range_bitwise(gamma, opt_cls):
    # torch: base + ((max - base) * scale) * gamma**t; optkern multiplied scale * gamma**t first:
    # 23 of 300 lrs an ulp away at gamma=0.97, 74 at 0.999 (momentum: 4 of 300).
    kw = {"momentum": 0.9} if opt_cls is torch.optim.SGD else {}
    ref = torch_run(
        lambda o: lrs.CyclicLR(
            o, 0.013, 0.21, 4, 7, mode="exp_range", gamma=gamma, base_momentum=0.81, max_momentum=0.93
        ),
        300,
        opt_cls,
        **kw,
    )
    s = S.cyclic(0.013, 0.21, 4, 7, mode="exp_range", gamma=gamma)
    m = s.momentum(0.81, 0.93)
    assert [s(t) for t in range(300)] == [r[0] for r in ref]
    assert [m(t) for t in range(300)] == [r[1] for r in ref]


@pytest.mark.parametrize("mode", ["triangular", "triangular2"])
def test_cyclic_other_modes_bitwise(mode):
    ref = torch_run(
        lambda o: lrs.CyclicLR(o, 0.013, 0.21, 5, 3, mode=mode, base_momentum=0.8, max_momentum=0.95),
        400,
        momentum=0.9,
    )
    s = S.cyclic(0.013, 0.21, 5, 3, mode=mode)
    m = s.momentum(0.8, 0.95)
    assert [(s(t), m(t)) for t in range(400)] == ref


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_bitwise_with_beta1(three_phase, anneal):
    total = 173
    ref = torch_run(
        lambda o: lrs.OneCycleLR(
            o,
            0.37,
            total_steps=total,
            pct_start=0.27,
            anneal_strategy=anneal,
            div_factor=13,
            final_div_factor=77,
            three_phase=three_phase,
            base_momentum=0.8,
            max_momentum=0.91,
        ),
        total,
        torch.optim.Adam,
    )
    s = S.one_cycle(0.37, total, 0.27, anneal, 13, 77, three_phase)
    m = s.momentum(0.8, 0.91)
    assert [(s(t), m(t)) for t in range(total)] == ref


def test_one_cycle_epochs_times_steps_per_epoch():
    ref = torch_run(lambda o: lrs.OneCycleLR(o, 0.2, epochs=7, steps_per_epoch=9, cycle_momentum=False), 63)
    s = S.one_cycle(0.2, 7 * 9)
    assert [s(t) for t in range(63)] == [r[0] for r in ref]


@pytest.mark.parametrize("T_0, T_mult, eta_min", [(3, 1, 0.0), (3, 2, 0.001), (5, 3, 0.01), (1, 2, 0.0)])
def test_cosine_warm_restarts_bitwise_over_1000_steps(T_0, T_mult, eta_min):
    ref = torch_run(lambda o: lrs.CosineAnnealingWarmRestarts(o, T_0, T_mult, eta_min=eta_min), 1000, momentum=0.9)
    s = S.cosine_restarts(0.1, T_0, T_mult, eta_min)
    assert [s(t) for t in range(1000)] == [r[0] for r in ref]


def test_scheduler_drives_cyclic_momentum_of_adam_like_torch():
    # lr and beta1 written by two Schedulers; beta2 untouched, as torch's cycle_momentum leaves it.
    a = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1, betas=(0.9, 0.98))
    b = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1, betas=(0.9, 0.98))
    ref = lrs.CyclicLR(a, 0.01, 0.1, 3, mode="exp_range", gamma=0.99, base_momentum=0.85, max_momentum=0.95)
    cyc = S.cyclic(0.01, 0.1, 3, mode="exp_range", gamma=0.99)
    mine = [S.Scheduler(b, cyc), S.momentum_scheduler(b, cyc.momentum(0.85, 0.95))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(40):
            assert b.param_groups[0]["lr"] == a.param_groups[0]["lr"]
            assert b.param_groups[0]["betas"] == a.param_groups[0]["betas"]
            a.step(), b.step(), ref.step()
            for s in mine:
                s.step()
