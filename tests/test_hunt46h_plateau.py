"""``schedules.ReduceLROnPlateau.load_state_dict`` refused a ``cooldown_counter`` above ``cooldown``:
a state any run reaches when ``cooldown`` is assigned lower during a cooldown (the attributes are
assignable, as torch's), so the run's own ``state_dict`` (torch's too, which torch loads) could not
be loaded. It is taken now, and the run resumed from it goes on as the uninterrupted one, and as torch's.
"""

from __future__ import annotations

import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")


def _groups():
    return type("Opt", (), {"param_groups": [{"lr": 0.1}, {"lr": 0.02}]})()


METRICS = [1.0, 2.0, 3.0, 0.5, 0.6, 0.7, 0.8, 0.9]


def test_state_with_a_cooldown_lowered_mid_cooldown_loads_and_resumes_like_torch():
    opt = _groups()
    s = S.ReduceLROnPlateau(opt, patience=0, cooldown=3)
    p = torch.nn.Parameter(torch.zeros(1))
    topt = torch.optim.SGD([{"params": [p], "lr": 0.1}, {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.02}])
    t = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, patience=0, cooldown=3)
    for m in METRICS[:2]:
        s.step(m)
        t.step(m)
    s.cooldown = t.cooldown = 1  # (tuned mid-run, inside the cooldown)
    state = s.state_dict()
    assert state["cooldown_counter"] > state["cooldown"]

    resumed_opt = _groups()
    for g, h in zip(resumed_opt.param_groups, opt.param_groups):
        g["lr"] = h["lr"]
    resumed = S.ReduceLROnPlateau(resumed_opt)
    resumed.load_state_dict(state)
    from_torch_opt = _groups()
    for g, h in zip(from_torch_opt.param_groups, opt.param_groups):
        g["lr"] = h["lr"]
    from_torch = S.ReduceLROnPlateau(from_torch_opt)
    from_torch.load_state_dict(t.state_dict())

    for m in METRICS[2:]:
        for sched in (s, t, resumed, from_torch):
            sched.step(m)
        lrs = [g["lr"] for g in opt.param_groups]
        assert [g["lr"] for g in topt.param_groups] == lrs
        assert [g["lr"] for g in resumed_opt.param_groups] == lrs
        assert [g["lr"] for g in from_torch_opt.param_groups] == lrs
        assert resumed.state_dict() == s.state_dict() == from_torch.state_dict()
        assert s.cooldown_counter == t.cooldown_counter and s.num_bad_epochs == t.num_bad_epochs


def test_state_with_a_mode_assigned_mid_run_loads_as_torch_saves_it():
    # torch's mode_worse stays the constructor's mode's; so did this one's, and load refused it
    opt = _groups()
    s = S.ReduceLROnPlateau(opt, patience=0)
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    t = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, patience=0)
    for sched in (s, t):
        sched.step(1.0)
        sched.mode = "max"
        sched.step(2.0)
    for state in (s.state_dict(), t.state_dict()):
        assert state["mode"] == "max" and state["mode_worse"] == float("inf")
        other = S.ReduceLROnPlateau(_groups())
        other.load_state_dict(state)
        assert other.mode == "max" and other.best == 2.0 and other.mode_worse == float("inf")


@pytest.mark.parametrize("worse, exc", [(0.0, ValueError), (float("nan"), ValueError), ("inf", TypeError)])
def test_a_mode_worse_no_mode_starts_from_is_still_refused(worse, exc):
    s = S.ReduceLROnPlateau(_groups())
    state = s.state_dict()
    before = dict(state)
    state["mode_worse"] = worse
    with pytest.raises(exc, match=r"^state\['mode_worse'\]"):
        s.load_state_dict(state)
    assert s.state_dict() == before
