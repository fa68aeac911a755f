"""Hunt 42d: optkern.schedules against torch.optim.lr_scheduler where they still differed."""

import warnings

import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler


def _torch_cyclic(steps, **kw):
    """torch's CyclicLR lr and momentum sequences over ``steps`` steps (SGD with momentum)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sch = lrs.CyclicLR(opt, **kw)
    lr, mom = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the scheduler stepped before the optimizer: no step is taken)
        for _ in range(steps):
            lr.append(opt.param_groups[0]["lr"])
            mom.append(opt.param_groups[0]["momentum"])
            sch.step()
    return lr, mom


@pytest.mark.parametrize("gamma", [1.001, 1.003])  # (a faster growth: the Scheduler warns of its peak)
def test_cyclic_exp_range_gamma_above_one_matches_torch(gamma):
    # torch's CyclicLR takes any gamma (exp_range grows the amplitude with gamma > 1); it was refused
    # here ("gamma: must be in (0.0, 1.0]"), and so was a gamma the other modes ignore.
    kw = dict(base_lr=0.01, max_lr=0.1, step_size_up=4, step_size_down=7, mode="exp_range", gamma=gamma)
    ref_lr, ref_mom = _torch_cyclic(150, **kw, cycle_momentum=True, base_momentum=0.8, max_momentum=0.9)
    s = S.cyclic(0.01, 0.1, 4, 7, mode="exp_range", gamma=gamma)
    opt = type("O", (), {})()
    opt.param_groups = [{"lr": 0.1}]
    sch = S.Scheduler(opt, s)
    mine = []
    for t in range(150):
        mine.append(opt.param_groups[0]["lr"])
        if t == 75:  # a state_dict round trip mid-way into a fresh Scheduler continues the sequence
            state = sch.state_dict()
            opt.param_groups = [{"lr": 0.5}]
            sch = S.Scheduler(opt, s)
            sch.load_state_dict(state)
            assert opt.param_groups[0]["lr"] == mine[-1]
        sch.step()
    assert mine == pytest.approx(ref_lr, rel=1e-12)
    mom = s.momentum(0.8, 0.9)
    assert [mom(t) for t in range(150)] == pytest.approx(ref_mom, rel=1e-12)


@pytest.mark.parametrize("mode", ["triangular", "triangular2"])
def test_cyclic_ignores_gamma_outside_exp_range_as_torch_does(mode):
    ref, _ = _torch_cyclic(40, base_lr=0.01, max_lr=0.1, step_size_up=3, mode=mode, gamma=3.0, cycle_momentum=False)
    s = S.cyclic(0.01, 0.1, 3, mode=mode, gamma=3.0)
    assert [s(t) for t in range(40)] == pytest.approx(ref, rel=1e-12)


def test_cyclic_exp_range_overflow_is_refused_naming_the_schedule():
    # gamma ** t past float64's range: ValueError naming the schedule and the step, as exponential's
    # (Python's float power raised an unnamed OverflowError there)
    s = S.cyclic(0.01, 0.1, 3, mode="exp_range", gamma=1.5)
    assert s(10) > 0
    with pytest.raises(ValueError, match=r"^schedule: returned inf at step 5000.*cyclic\("):
        s(5000)
    with pytest.raises(ValueError, match=r"^schedule: returned .* at step 5000"):
        s.momentum()(5000)


@pytest.mark.parametrize("gamma", [0.0, -0.5, float("inf"), float("nan")])
def test_cyclic_gamma_still_refused_by_name(gamma):
    with pytest.raises(ValueError, match="^gamma"):
        S.cyclic(0.01, 0.1, 3, mode="exp_range", gamma=gamma)
    s = S.cyclic(0.01, 0.1, 3, mode="exp_range")
    s.gamma = gamma
    with pytest.raises(ValueError, match="^gamma"):
        s(1)
