"""Schedules that refused arguments torch's schedulers accept (users porting from torch hit
ValueError): exponential / step_decay / multi_step with gamma > 1, multi_step with milestone 0 or
repeated, cyclic with base_lr > max_lr. Each is compared with torch's closed form, exactly."""

from __future__ import annotations

import math
import warnings

import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler


def _closed_form(make, steps, lr=0.1):
    """torch's closed-form lr at each step (``_get_closed_form_lr`` at ``last_epoch = t``)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sch = make(opt)
    out = []
    for t in range(steps):
        sch.last_epoch = t
        out.append(sch._get_closed_form_lr()[0])
    return out


def _chained(make, steps, lr=0.1):
    """torch's lr sequence as a training loop sees it (``step()`` after each step)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sch = make(opt)
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sch.step()
    return out


@pytest.mark.parametrize("gamma", [1.5, 1.0001, 2.0, 10.0])
def test_exponential_takes_gamma_above_one_as_torch(gamma):
    # an lr range test: torch's ExponentialLR(gamma=1.5) gives 1, 1.5, 2.25, ...; refused here
    s = S.exponential(1.0, gamma)
    want = _closed_form(lambda o: lrs.ExponentialLR(o, gamma), 12, lr=1.0)
    assert [s(t) for t in range(12)] == want
    assert [s(t) for t in range(12)] == pytest.approx(_chained(lambda o: lrs.ExponentialLR(o, gamma), 12, 1.0))
    if gamma == 1.5:
        assert [s(t) for t in range(3)] == [1.0, 1.5, 2.25]


@pytest.mark.parametrize("gamma, step_size", [(1.5, 1), (2.0, 3), (1.1, 7)])
def test_step_decay_takes_gamma_above_one_as_torch(gamma, step_size):
    s = S.step_decay(0.1, step_size, gamma)
    want = _closed_form(lambda o: lrs.StepLR(o, step_size, gamma), 30)
    assert [s(t) for t in range(30)] == want


def test_multi_step_takes_gamma_above_one_as_torch():
    s = S.multi_step(0.1, [2, 5], 3.0)
    assert [s(t) for t in range(9)] == _closed_form(lambda o: lrs.MultiStepLR(o, [2, 5], 3.0), 9)


def test_gamma_above_one_assigned_later_is_taken():
    s = S.exponential(1.0, 0.5)
    s.gamma = 1.5
    assert s(2) == 2.25


def test_gamma_above_one_overflowing_is_refused_naming_the_schedule():
    s = S.exponential(1.0, 2.0)
    assert s(1023) == 2.0**1023
    with pytest.raises(ValueError, match=r"^schedule: returned inf at step 1024.*exponential"):
        s(1024)


@pytest.mark.parametrize("make", [S.exponential, lambda lr, g: S.step_decay(lr, 2, g)])
@pytest.mark.parametrize("gamma", [0.0, -0.5, math.nan, math.inf, -math.inf])
def test_gamma_zero_negative_or_not_finite_is_still_refused_by_name(make, gamma):
    # torch takes these and runs lr 0 (gamma 0), a sign-flipping lr (< 0) or NaN / inf from step 1
    with pytest.raises(ValueError, match="^gamma: "):
        make(1.0, gamma)
    s = make(1.0, 0.5)
    s.gamma = gamma
    with pytest.raises(ValueError, match="^gamma: "):
        s(3)


@pytest.mark.parametrize("milestones", [[0, 2], [0], [0, 0, 3], [2, 2, 4], [3, 0, 0, 1]])
def test_multi_step_takes_milestone_zero_and_repeats_as_torch(milestones):
    # torch applies gamma from step 0 for a milestone 0 ([0.5, 0.5, 0.25, ...] for [0, 2]), and
    # once per repetition (a Counter); milestone 0 was refused here
    s = S.multi_step(1.0, milestones, 0.5)
    want = _closed_form(lambda o: lrs.MultiStepLR(o, milestones, 0.5), 8, lr=1.0)
    assert [s(t) for t in range(8)] == want
    assert [s(t) for t in range(8)] == _chained(lambda o: lrs.MultiStepLR(o, milestones, 0.5), 8, lr=1.0)
    if milestones == [0, 2]:
        assert [s(t) for t in range(4)] == [0.5, 0.5, 0.25, 0.25]


def test_multi_step_milestone_zero_through_a_scheduler_and_negative_still_refused():
    opt = type("O", (), {})()
    opt.param_groups = [{"lr": 1.0}]
    sch = S.multi_step(1.0, [0, 2], 0.5).attach(opt)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        sch.step()
    assert seen == [0.5, 0.5, 0.25, 0.25]
    with pytest.raises(ValueError, match=r"^milestones\[1\]: "):
        S.multi_step(1.0, [0, -1])
    s = S.multi_step(1.0, [1])
    s.milestones = [0, -3]
    with pytest.raises(ValueError, match=r"^milestones\[1\]: "):
        s(0)


@pytest.mark.parametrize(
    "mode, gamma, up, down", [("triangular", 1.0, 2, 2), ("triangular2", 1.0, 3, 5), ("exp_range", 0.9, 4, 0)]
)
def test_cyclic_base_lr_above_max_lr_runs_torchs_downward_triangle(mode, gamma, up, down):
    # torch's CyclicLR takes base_lr > max_lr: the cycle starts at base_lr and dips to max_lr
    def make(o):
        return lrs.CyclicLR(o, 1.0, 0.2, up, down, mode=mode, gamma=gamma, cycle_momentum=False)

    s = S.cyclic(1.0, 0.2, up, down, mode=mode, gamma=gamma)
    want = _chained(make, 30, lr=1.0)
    assert [s(t) for t in range(30)] == want
    assert min(want) < 1.0 and max(want) == 1.0  # (downward)


def test_cyclic_base_lr_raised_past_max_lr_later_is_taken():
    s = S.cyclic(0.1, 1.0, 2)
    s.base_lr = 1.5
    assert [s(t) for t in range(5)] == [1.5, 1.25, 1.0, 1.25, 1.5]
