"""Schedules and the Scheduler as a user drives them after construction.

A schedule's repr is the call that builds it (``cosine(1.0, T_max=10)`` printed as
``cosine(lr=1.0, total_steps=10, ...)``, which raised TypeError; the repr is what an overflow error
shows). Attributes assigned afterwards under the constructor's names take effect (``cosine.T_max``
was a new attribute never read) and are checked as the constructor checks them, before anything is
written: ``sequential``'s boundaries and schedules, ``chain``'s, ``linear_warmup``'s schedule,
``batch_size_schedule``'s cap and factor, ``FunctionSchedule``'s fn, cyclic's momentum bounds,
``cosine_restarts.cycle``'s step, the Scheduler's ``relative`` and ``last_step``."""

import numpy as np
import pytest

from optkern import schedules as S

CASES = [
    S.constant(0.3),
    S.linear(1.0, 0.1, 5),
    S.step_decay(1.0, 3, 0.5),
    S.multi_step(1.0, [2, 4], 0.5),
    S.exponential(1.0, 0.9),
    S.inverse_time(1.0, 0.5, 2.0),
    S.polynomial(1.0, 10, 2.0, 0.1),
    S.cosine(1.0, 10, 0.1),
    S.cosine_restarts(1.0, 3, 2, 0.1),
    S.cyclic(0.1, 1.0, 3, 2, "exp_range", 0.9),
    S.one_cycle(1.0, 20, 0.25, "linear", 10.0, 100.0, True),
    S.swalr(1.0, 0.1, 3, "linear"),
    S.linear_warmup(S.cosine(1.0, 10), 3, 0.1, True),
    S.batch_size_schedule(32, [3, 5], 2.0, 100, 0.5),
    S.sequential([S.cosine(1.0, 3), S.linear(0.5, 0.2, 4)], [3]),
    S.chain(S.cosine(1.0, 3), S.exponential(1.0, 0.9)),
    S.chain(S.constant(2.0)),
    S.warmup_cosine(1.0, 3, 10, 0.1, 0.2),
]


@pytest.mark.parametrize("sched", CASES, ids=lambda s: type(s).__name__)
def test_repr_is_a_call_that_builds_the_same_schedule(sched):
    rebuilt = eval(repr(sched), vars(S))
    assert type(rebuilt) is type(sched)
    assert [rebuilt(t) for t in range(40)] == [sched(t) for t in range(40)]
    assert repr(rebuilt) == repr(sched)


def test_repr_follows_an_assigned_attribute():
    c = S.cosine(1.0, 10)
    c.total_steps = 20  # (the horizon, assignable; the constructor calls it T_max)
    assert repr(c) == "cosine(lr=1.0, T_max=20, eta_min=0.0)"
    assert eval(repr(c), vars(S))(10) == c(10)


def test_overflow_error_names_the_constructor_arguments():
    # (cosine itself no longer overflows at lr 1e308 since hunt47d: its factor is halved before the
    # product; the chain's product does, and its repr shows each schedule's constructor arguments)
    with pytest.raises(
        ValueError,
        match=r"chain\(cosine\(lr=1e\+308, T_max=10, eta_min=0\.0\), constant\(value=10\.0\)\) overflows there",
    ):
        S.chain(S.cosine(1e308, 10), S.constant(10.0))(1)


@pytest.mark.parametrize(
    "make, arg, value",
    [(lambda: S.cosine(1.0, 10, 0.1), "T_max", 20), (lambda: S.linear(1.0, 0.0, 10), "steps", 20)],
    ids=["cosine.T_max", "linear.steps"],
)
def test_the_constructors_name_for_the_horizon_is_an_attribute_that_takes_effect(make, arg, value):
    # assigned under the name the constructor (and torch's CosineAnnealingLR) gives it, the horizon
    # was a new attribute the schedule never read: the old values went on, silently
    sched = make()
    assert getattr(sched, arg) == 10
    setattr(sched, arg, value)
    assert sched.total_steps == value and getattr(sched, arg) == value
    fresh = eval(repr(sched), vars(S))
    assert [sched(t) for t in range(30)] == [fresh(t) for t in range(30)]
    assert fresh.total_steps == value and "total_steps" not in repr(sched) and repr(sched).count(arg) == 1


_BAD_HORIZONS = [(2.5, TypeError), ("20", TypeError), (True, TypeError), (-1, ValueError)]


# (linear's horizon may be 0, optax's constant schedule of init: its least bad one is -1)
@pytest.mark.parametrize(
    "make, arg, bad, err",
    [(lambda: S.cosine(1.0, 10), "T_max", *b) for b in [(0, ValueError), *_BAD_HORIZONS]]
    + [(lambda: S.linear(1.0, 0.0, 10), "steps", *b) for b in _BAD_HORIZONS],
)
def test_a_bad_horizon_assigned_is_refused_by_its_name_and_nothing_changes(make, arg, bad, err):
    sched = make()
    before = [sched(t) for t in range(15)]
    with pytest.raises(err, match=rf"^{arg}: "):
        setattr(sched, arg, bad)
    assert [sched(t) for t in range(15)] == before


def test_constant_value_assigned_under_the_constructors_name_takes_effect():
    # ``value`` is also the method every schedule has: assigned, the float replaced it, and the
    # next call raised Python's unnamed "'float' object is not callable"
    c = S.constant(1.0)
    c.value = 2.5
    assert c(0) == c(7) == 2.5 and c.lr == 2.5 and callable(c.value)
    assert eval(repr(c), vars(S))(3) == 2.5


@pytest.mark.parametrize("bad, err", [("2", TypeError), (None, TypeError), (float("nan"), ValueError)])
def test_constant_bad_value_assigned_is_refused_by_name_and_nothing_changes(bad, err):
    c = S.constant(1.0)
    with pytest.raises(err, match=r"^value: "):
        c.value = bad
    assert c(0) == 1.0 and callable(c.value)


def test_cosine_restarts_cycle_checks_its_step_as_a_call_does():
    # the public cycle(t) took any step: (-1, 3) and (2.5, 3) for steps that do not exist, and
    # Python's unnamed TypeError for a string
    c = S.cosine_restarts(1.0, 3, 2)
    assert [c.cycle(t) for t in (0, 2, 3, 8, 9)] == [(0, 3), (2, 3), (0, 6), (5, 6), (0, 12)]
    for bad, err in ((-1, ValueError), (2.5, TypeError), ("3", TypeError), (None, TypeError), (True, TypeError)):
        with pytest.raises(err, match=r"^step: "):
            c.cycle(bad)


@pytest.mark.parametrize("attr, bad", [("T_0", 0), ("T_mult", 0), ("T_0", 2.5)])
def test_cosine_restarts_cycle_checks_assigned_attributes_as_a_call_does(attr, bad):
    # T_0 = 0 assigned: cycle(3) raised ZeroDivisionError (T_mult = 0: an endless loop in the walk)
    c = S.cosine_restarts(1.0, 3, 2)
    setattr(c, attr, bad)
    with pytest.raises((TypeError, ValueError), match=rf"^{attr}: "):
        c.cycle(3)
    with pytest.raises((TypeError, ValueError), match=rf"^{attr}: "):
        c(3)


def test_cyclic_momentum_bounds_inverted_by_assignment_run_as_at_construction():
    # (hunt 41a: an inverted pair is torch's upward cycle, taken at construction and by assignment
    # alike; both were refused: tests/test_hunt41a_schedules.py holds it against torch)
    c = S.cyclic(0.1, 1.0, 3)
    m = c.momentum(0.8, 0.9)
    before = [m(t) for t in range(7)]
    m.max_momentum = 0.5
    assert [m(t) for t in range(7)] == [c.momentum(0.8, 0.5)(t) for t in range(7)]
    m.max_momentum = 0.9
    assert [m(t) for t in range(7)] == before
    m.base_momentum = 0.95
    assert [m(t) for t in range(7)] == [c.momentum(0.95, 0.9)(t) for t in range(7)]


# ---- composite schedules and the batch-size schedule: attributes assigned after construction ----


def _seq():
    return S.sequential([S.constant(1.0), S.constant(2.0), S.constant(3.0)], [3, 6])


@pytest.mark.parametrize(
    "boundaries, match",
    [
        ([6, 3], r"^boundaries: must be strictly increasing, got 6 then 3"),  # ran 1, 1, 1, 3, ... silently
        ([3], r"^boundaries: expected 2 entries for 3 schedules, got 1"),  # ran the first two only
        ([3, 6, 9], r"^boundaries: expected 2 entries for 3 schedules, got 3"),  # IndexError at step 9
        ([0, 6], r"^boundaries\[0\]: must be >= 1, got 0"),  # the first schedule skipped
    ],
)
def test_sequential_boundaries_assigned_are_checked_as_the_constructor_checks_them(boundaries, match):
    q = _seq()
    before = [q(t) for t in range(12)]
    q.boundaries = boundaries
    with pytest.raises(ValueError, match=match):
        q(4)
    q.boundaries = [3, 6]
    assert [q(t) for t in range(12)] == before


@pytest.mark.parametrize("make, attr", [(_seq, "schedules"), (lambda: S.chain(S.constant(2.0)), "schedules")])
def test_composite_schedules_assigned_are_converted_as_the_constructor_converts_them(make, attr):
    # a number or a plain callable assigned raised Python's unnamed "'float' object is not callable"
    s = make()
    n = len(getattr(s, attr))
    setattr(s, attr, [0.5] + [lambda t: 2.0] * (n - 1))
    assert all(isinstance(x, S.Schedule) for x in getattr(s, attr))
    assert s(0) == 0.5
    with pytest.raises(TypeError, match=rf"^{attr}\[0\]: expected a Schedule, a callable or a number, got str"):
        setattr(s, attr, ["x"] * n)
    assert s(0) == 0.5  # (nothing assigned)
    getattr(s, attr)[0] = "x"  # changed in place: named at the next value
    with pytest.raises(TypeError, match=rf"^{attr}\[0\]: expected a Schedule"):
        s(0)


def test_linear_warmup_schedule_assigned_is_converted():
    w = S.linear_warmup(S.cosine(1.0, 10), 3)
    w.schedule = 0.5  # (a number: the constant schedule, as the constructor takes it)
    assert isinstance(w.schedule, S.Schedule) and w(5) == 0.5 and w.total_steps is None
    with pytest.raises(TypeError, match=r"^schedule: expected a Schedule, a callable or a number, got str"):
        w.schedule = "x"


def test_batch_size_schedule_cap_assigned_below_the_base_is_refused_as_at_construction():
    b = S.batch_size_schedule(32, [3, 5], 2.0, 100)
    b.max_batch_size = 1  # (gave batch 1 and the lr divided by 32, silently)
    with pytest.raises(ValueError, match=r"^max_batch_size: 1 is below base_batch_size 32"):
        b(0)
    with pytest.raises(ValueError, match=r"^max_batch_size: 1 is below base_batch_size 32"):
        b.batch_size(0)


def test_batch_size_schedule_factor_assigned_past_float64_is_refused_by_name():
    b = S.batch_size_schedule(32, [3, 5], 2.0)
    b.factor = 1e300  # (Python's unnamed OverflowError at the last milestone)
    for f in (b, b.batch_size):
        with pytest.raises(ValueError, match=r"^factor: base_batch_size \* factor \*\* len\(milestones\)"):
            f(6)


@pytest.mark.parametrize(
    "attr, bad, err", [("fn", 5, TypeError), ("total_steps", -3, ValueError), ("total_steps", 2.5, TypeError)]
)
def test_function_schedule_attributes_assigned_are_checked_as_the_constructor_checks_them(attr, bad, err):
    # fn = 5 raised Python's unnamed "'int' object is not callable"; a total_steps of -3 was taken
    f = S.FunctionSchedule(lambda t: 0.5, 10)
    setattr(f, attr, bad)
    with pytest.raises(err, match=rf"^{attr}: "):
        f(0)
    f2 = S.FunctionSchedule(lambda t: 0.5, 10)
    f2.total_steps = None  # (no horizon: valid, as at construction)
    assert f2(3) == 0.5


@pytest.mark.parametrize("make", [_seq, lambda: S.chain(S.constant(2.0))], ids=["sequential", "chain"])
def test_composite_schedules_assigned_empty_are_refused_as_at_construction(make):
    s = make()
    s.schedules = []  # (chain: every value 1.0; sequential: IndexError)
    with pytest.raises(ValueError, match=r"^schedules: need at least one schedule"):
        s(0)


def test_sequential_boundary_assigned_a_bool_is_refused_by_name():
    q = _seq()
    q.boundaries = [True, 6]
    with pytest.raises(TypeError, match=r"^boundaries\[0\]: "):
        q(0)


# ---- Scheduler: its own attributes, assigned after construction ----------------------------------


def _scheduler():
    from optkern import optim

    opt = optim.SGD([np.zeros(2, np.float32)], lr=0.1)
    return opt, S.Scheduler(opt, S.cosine(1.0, 10))


@pytest.mark.parametrize(
    "attr, bad, err",
    [
        ("relative", "no", TypeError),  # read as True: the lr became 0.1 x the schedule, silently
        ("relative", None, TypeError),
        ("last_step", None, TypeError),  # Python's unnamed "unsupported operand type(s) for +"
        ("last_step", 2.5, TypeError),  # named "step", 3.5
        ("last_step", -5, ValueError),  # named "step", -4
    ],
)
def test_scheduler_attributes_assigned_are_checked_by_name_before_a_step_writes(attr, bad, err):
    opt, sc = _scheduler()
    lr = opt.param_groups[0]["lr"]
    setattr(sc, attr, bad)
    with pytest.raises(err, match=rf"^{attr}: "):
        sc.step()
    with pytest.raises(err, match=rf"^{attr}: "):
        sc.values()
    assert opt.param_groups[0]["lr"] == lr and getattr(sc, attr) is bad  # nothing written
    setattr(sc, attr, {"relative": False, "last_step": 0}[attr])
    sc.step()
    assert sc.last_step == 1 and opt.param_groups[0]["lr"] == S.cosine(1.0, 10)(1)


def _adam_scheduler():
    from optkern import optim

    opt = optim.Adam([np.zeros(2, np.float32)], lr=0.1)
    return opt, S.Scheduler(opt, S.cosine(1.0, 10))


@pytest.mark.parametrize(
    "attr, bad, err, match",
    [
        ("key", 5, TypeError, "key: expected a str"),  # Python's unnamed KeyError: 5
        ("key", None, TypeError, "key: expected a str"),
        ("key", "nope", ValueError, "key: "),  # KeyError: 'nope'
        ("key", "betas", ValueError, "key: "),  # the betas tuple replaced by a float, silently
        ("index", "a", TypeError, "index: expected an int or None"),  # "'float' object is not iterable"
        ("index", True, TypeError, "index: expected an int or None"),
        ("index", 0, ValueError, "index: "),  # "'float' object is not iterable"
    ],
)
def test_scheduler_key_and_index_assigned_are_checked_by_name_before_anything_is_written(attr, bad, err, match):
    opt, sc = _adam_scheduler()
    before = dict(opt.param_groups[0])
    setattr(sc, attr, bad)
    for call in (sc.step, sc.values, sc.state_dict):
        with pytest.raises(err, match=rf"^{match}"):
            call()
    assert opt.param_groups[0] == before and sc.last_step == 0  # nothing written
    setattr(sc, attr, {"key": "lr", "index": None}[attr])
    sc.step()
    assert sc.last_step == 1 and opt.param_groups[0]["lr"] == S.cosine(1.0, 10)(1)
    assert opt.param_groups[0]["betas"] == before["betas"]


@pytest.mark.parametrize("bad", [None, "cosine", [0.1]])
def test_scheduler_schedule_assigned_is_converted_or_refused_as_at_construction(bad):
    # (None raised Python's unnamed "'NoneType' object is not callable" at the next step)
    opt, sc = _scheduler()
    sc.schedule = bad
    for call in (sc.step, sc.values):
        with pytest.raises(TypeError, match=r"^schedule: expected a Schedule, a callable or a number"):
            call()
    assert opt.param_groups[0]["lr"] == S.cosine(1.0, 10)(0) and sc.last_step == 0  # nothing written
    sc.schedule = 0.25  # a number, as the constructor takes it: constant(0.25)
    sc.step()
    assert opt.param_groups[0]["lr"] == 0.25 and sc.values() == [0.25]
