"""optkern.schedules: defects found by the hunt against torch.optim.lr_scheduler (hunt 27).

Each test failed before its fix: the argument checks (counts beyond int64, flags, a
FunctionSchedule's horizon, what composed schedules return), ``get_last_lr`` and a param group
added after the Scheduler. The torch comparisons are in test_sched_hunt27_torch.py."""

import math
import warnings

import pytest

from optkern import schedules as S

HUGE = 10**400  # an int beyond float64's range: every count must refuse it by name


class Opt:
    def __init__(self, *lrs):
        self.param_groups = [{"lr": lr} for lr in lrs]


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda n: S.cosine(1.0, T_max=n), "T_max"),
        (lambda n: S.cosine_restarts(1.0, T_0=n), "T_0"),
        (lambda n: S.cosine_restarts(1.0, T_0=2, T_mult=n), "T_mult"),
        (lambda n: S.cyclic(0.1, 1.0, step_size_up=n), "step_size_up"),
        (lambda n: S.cyclic(0.1, 1.0, step_size_up=2, step_size_down=n), "step_size_down"),
        (lambda n: S.one_cycle(1.0, total_steps=n), "total_steps"),
        (lambda n: S.linear_warmup(S.constant(1.0), n), "warmup_steps"),
        (lambda n: S.warmup_cosine(1.0, 2, total_steps=n), "total_steps"),
    ],
)
def test_count_beyond_int64_is_refused_by_name(make, name):
    # Was accepted, then OverflowError ("int too large to convert to float") at the first value
    # (cosine, cosine_restarts, cyclic, linear_warmup, warmup_cosine) or at construction
    # (one_cycle): neither the TypeError / ValueError of the contract nor naming the argument.
    with pytest.raises(ValueError, match=name):
        sched = make(HUGE)
        [sched(t) for t in (0, 1, 5)]


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda n: S.step_decay(1.0, step_size=n), "step_size"),
        (lambda n: S.polynomial(1.0, total_steps=n), "total_steps"),
        (lambda n: S.linear(1.0, 0.0, steps=n), "steps"),
        (lambda n: S.swalr(1.0, 0.1, anneal_epochs=n), "anneal_epochs"),
        (lambda n: S.multi_step(1.0, [2, n]), r"milestones\[1\]"),
    ],
)
def test_every_count_has_the_step_bound(make, name):
    # These computed in integers and so never overflowed; the one bound (a step's, INT64_MAX)
    # now holds for every count alike (a count past every step means the same as INT64_MAX).
    with pytest.raises(ValueError, match=name):
        make(HUGE)


def test_count_at_int64_max_still_works():
    n = 2**63 - 1
    for sched in (S.cosine(1.0, n), S.cosine_restarts(1.0, n, n), S.cyclic(0.1, 1.0, n, n), S.one_cycle(1.0, n)):
        assert math.isfinite(sched(n)) and math.isfinite(sched(0))


@pytest.mark.parametrize("bad", ["False", "no", None, 1, 0.0, float("nan"), [0]])
def test_one_cycle_three_phase_must_be_a_bool(bad):
    # three_phase=bool(x): "False" (a config file's string) or NaN ran the three-phase schedule.
    with pytest.raises(TypeError, match="three_phase"):
        S.one_cycle(1.0, 100, three_phase=bad)


@pytest.mark.parametrize("bad", ["False", None, 1, float("nan")])
def test_linear_warmup_shift_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="shift"):
        S.linear_warmup(S.cosine(1.0, 10), 3, shift=bad)


def test_bool_flags_still_accept_bools():
    import numpy as np

    assert S.one_cycle(1.0, 100, three_phase=np.bool_(True)).three_phase is True
    assert S.linear_warmup(S.cosine(1.0, 10), 3, shift=False).shift is False


@pytest.mark.parametrize(
    "total, exc",
    [("x", TypeError), (2.5, TypeError), (float("nan"), TypeError), (True, TypeError), (-1, ValueError)],
)
def test_function_schedule_total_steps_checked(total, exc):
    # Not checked at all: "x" / NaN failed later inside the Scheduler's scale check with int()'s
    # own message ("invalid literal for int()"), -1 and 2.5 were taken as horizons.
    with pytest.raises(exc, match="total_steps"):
        S.FunctionSchedule(lambda t: 0.1, total_steps=total)


def test_function_schedule_total_steps_valid():
    assert S.FunctionSchedule(lambda t: 0.1).total_steps is None
    assert S.FunctionSchedule(lambda t: 0.1, total_steps=0).total_steps == 0
    assert S.linear_warmup(S.FunctionSchedule(lambda t: 1.0, 7), 3).total_steps == 7


@pytest.mark.parametrize(
    "make",
    [
        lambda f: S.chain(f, S.constant(1.0)),
        lambda f: S.sequential([S.constant(1.0), f], [2]),
        lambda f: S.linear_warmup(f, 1),
        lambda f: S.linear_warmup(f, 1, shift=True),
    ],
    ids=["chain", "sequential", "linear_warmup", "linear_warmup-shift"],
)
@pytest.mark.parametrize("ret", [[0.5], None, "0.5", True], ids=["list", "None", "str", "bool"])
def test_composed_schedule_checks_what_its_parts_return(make, ret):
    # A part returning a list / None / str raised Python's own "can't multiply sequence by
    # non-int of type 'float'" (chain, linear_warmup) or, through sequential, the right error only
    # by luck; a bool was taken as 1.0 by chain and linear_warmup, though a schedule returning
    # one by itself is refused.
    sched = make(S.FunctionSchedule(lambda t: ret))
    with pytest.raises(TypeError, match=r"schedule: returned \w+ at step"):
        [sched(t) for t in range(4)]


def test_composed_schedule_part_nan_names_the_step():
    sched = S.chain(S.FunctionSchedule(lambda t: 1.0 if t < 3 else math.nan), 2.0)
    assert sched(2) == 2.0
    with pytest.raises(ValueError, match="schedule: returned nan at step 3"):
        sched(3)


def test_get_last_lr_is_what_the_scheduler_wrote():
    # Documented as "the values last written", it read the groups: an lr set by hand, or by a
    # second scheduler on the same optimizer, was reported as this scheduler's (torch's
    # get_last_lr returns its own last values).
    opt = Opt(0.1, 0.02)
    sched = S.Scheduler(opt, S.step_decay(1.0, 1, 0.5), relative=True)
    sched.step()
    opt.param_groups[0]["lr"] = 0.7
    assert sched.get_last_lr() == [0.05, 0.01]
    with pytest.warns(S.ScheduleScaleWarning):  # (an absolute schedule on groups 0.1 and 0.02)
        other = S.Scheduler(opt, S.constant(0.3))
    assert sched.get_last_lr() == [0.05, 0.01] and other.get_last_lr() == [0.3, 0.3]
    sched.step()
    assert sched.get_last_lr() == [0.025, 0.005] == [g["lr"] for g in opt.param_groups]
    state = sched.state_dict()
    fresh = S.Scheduler(Opt(0.1, 0.02), S.step_decay(1.0, 1, 0.5), relative=True)
    fresh.load_state_dict(state)
    assert fresh.get_last_lr() == [0.025, 0.005]


def test_get_last_lr_of_one_beta():
    opt = Opt(0.1)
    opt.param_groups[0]["betas"] = (0.9, 0.999)
    sched = S.Scheduler(opt, S.linear(0.95, 0.85, 2), key="betas", index=0)
    sched.step()
    opt.param_groups[0]["betas"] = (0.5, 0.999)
    assert sched.get_last_lr() == [pytest.approx(0.9)]


def test_param_group_added_after_the_scheduler_is_not_left_behind():
    # optimizer.add_param_group (unfreezing layers mid-run) after the Scheduler: zip() dropped
    # the new group, whose lr then stayed at its configured value without a word.
    opt = Opt(0.1)
    sched = S.Scheduler(opt, S.step_decay(1.0, 1, 0.5), relative=True)
    sched.step()
    opt.param_groups.append({"lr": 0.3})
    with pytest.raises(ValueError, match=r"2 param groups.*1"):
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.3] and sched.last_step == 1
    opt.param_groups.pop()
    sched.step()  # the groups it was built for: on it goes
    assert opt.param_groups[0]["lr"] == 0.025


def test_param_group_removed_after_the_scheduler_is_refused():
    opt = Opt(0.1, 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = S.Scheduler(opt, S.constant(0.1))
    del opt.param_groups[1]
    with pytest.raises(ValueError, match="param groups"):
        sched.step()


def test_load_state_dict_names_last_step():
    sched = S.Scheduler(Opt(0.1), S.constant(0.1))
    with pytest.raises(TypeError, match=r"state\['last_step'\]"):
        sched.load_state_dict({"last_step": 2.0, "base_values": [0.1]})
    with pytest.raises(ValueError, match=r"state\['last_step'\]"):
        sched.load_state_dict({"last_step": -1, "base_values": [0.1]})


def test_relative_scheduler_on_no_param_groups():
    # The scale warning's message read base_values[0]: IndexError for an optimizer without groups
    # (the absolute kind was accepted, as an empty optimizer has nothing to schedule).
    opt = Opt()
    for relative in (True, False):
        sched = S.Scheduler(opt, S.constant(0.001), relative=relative)
        sched.step()
        assert sched.get_last_lr() == [] and sched.last_step == 1
