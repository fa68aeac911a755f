"""The schedules split their scalar checks one way: a hyper-parameter value a scheduler computes
with (gamma, a factor, a momentum, pct_start, a divisor, ReduceLROnPlateau's factor / threshold /
eps / min_lr, a constant's value, linear's ends) refuses a NumPy float16 by name
(``optkern._hyper_scalars``: torch's schedulers compute with one in float16), at construction and
on assignment; a count or length in steps (``step_size_up``, ``step_size_down``) takes one, as
torch's CyclicLR takes ``float(step_size_up)``.

Before: gamma took a float16 (ExponentialLR(gamma=np.float16(0.9)) gives lr 0.08997 in float16, ours
0.0899902 silently), and so did the momentum ends, start_factor, the one-cycle divisors, pct_start and
ReduceLROnPlateau's; step_size_up refused one although step_size_down took it."""

import numpy as np
import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")

H = np.float16(0.5)

# (name, build with the float16 in that argument, attribute assigned afterwards or None)
VALUES = [
    ("gamma", lambda: S.exponential(0.1, gamma=np.float16(0.9)), "gamma"),
    ("gamma", lambda: S.step_decay(0.1, step_size=2, gamma=H), "gamma"),
    ("gamma", lambda: S.multi_step(0.1, milestones=[2], gamma=H), "gamma"),
    ("gamma", lambda: S.cyclic(0.1, 1.0, 4, mode="exp_range", gamma=np.float16(0.99)), "gamma"),
    ("start_factor", lambda: S.linear_warmup(S.constant(0.1), 5, start_factor=H), "start_factor"),
    ("base_momentum", lambda: S.cyclic(0.1, 1.0, 4).momentum(base_momentum=np.float16(0.8)), "base_momentum"),
    ("max_momentum", lambda: S.cyclic(0.1, 1.0, 4).momentum(max_momentum=np.float16(0.9)), "max_momentum"),
    ("base_momentum", lambda: S.one_cycle(1.0, 100).momentum(base_momentum=np.float16(0.85)), None),
    ("max_momentum", lambda: S.one_cycle(1.0, 100).momentum(max_momentum=np.float16(0.95)), None),
    ("pct_start", lambda: S.one_cycle(1.0, 100, pct_start=np.float16(0.3)), None),
    ("div_factor", lambda: S.one_cycle(1.0, 100, div_factor=np.float16(25)), None),
    ("final_div_factor", lambda: S.one_cycle(1.0, 100, final_div_factor=np.float16(1000)), None),
    ("factor", lambda: S.batch_size_schedule(8, [2], factor=np.float16(2)), "factor"),
    ("value", lambda: S.constant(np.float16(0.1)), None),
    ("schedule", lambda: S.as_schedule(np.float16(0.1)), None),
    ("init", lambda: S.linear(np.float16(0.1), 0.0, 10), None),
    ("end", lambda: S.linear(0.1, np.float16(0.01), 10), None),
]
VALUE_IDS = [f"{n}-{i}" for i, (n, _, _) in enumerate(VALUES)]


@pytest.mark.parametrize(("name", "build", "attr"), VALUES, ids=VALUE_IDS)
def test_value_float16_refused_at_construction(name, build, attr):
    with pytest.raises(TypeError, match=rf"^{name}: a numpy\.float16 scalar"):
        build()


ASSIGNED = [
    (S.exponential(0.1, gamma=0.9), "gamma", 0.9),
    (S.step_decay(0.1, step_size=2, gamma=0.5), "gamma", 0.5),
    (S.multi_step(0.1, milestones=[2], gamma=0.5), "gamma", 0.5),
    (S.cyclic(0.1, 1.0, 4, mode="exp_range", gamma=0.99), "gamma", 0.99),
    (S.linear_warmup(S.constant(0.1), 5, start_factor=0.5), "start_factor", 0.5),
    (S.cyclic(0.1, 1.0, 4).momentum(), "base_momentum", 0.8),
    (S.cyclic(0.1, 1.0, 4).momentum(), "max_momentum", 0.9),
    (S.batch_size_schedule(8, [2], factor=2.0), "factor", 2.0),
    (S.constant(0.1), "lr", 0.1),
    (S.linear(0.1, 0.0, 10), "init", 0.1),
    (S.linear(0.1, 0.0, 10), "end", 0.0),
]


@pytest.mark.parametrize(("sched", "attr", "value"), ASSIGNED, ids=[f"{a}-{i}" for i, (_, a, _) in enumerate(ASSIGNED)])
def test_value_float16_refused_on_assignment(sched, attr, value):
    # (assignment is checked before the next value, by the constructor's rule)
    setattr(sched, attr, np.float16(value))
    with pytest.raises(TypeError, match=rf"^{attr}: a numpy\.float16 scalar"):
        sched(3)
    setattr(sched, attr, value)
    assert isinstance(sched(3), float)


def test_torch_computes_a_float16_gamma_in_float16():
    # why gamma is refused: torch's value is not ours in double
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=np.float16(0.9))
    opt.step()
    sched.step()
    lr = opt.param_groups[0]["lr"]
    assert type(lr) is np.float16 and float(lr) != S.exponential(0.1, gamma=float(np.float16(0.9)))(1)


@pytest.mark.parametrize(
    ("up", "down"), [(np.float16(3), None), (np.float16(2.5), np.float16(1.5)), (3, np.float16(2))]
)
def test_step_sizes_are_counts_float16_taken_as_torch(up, down):
    sched = S.cyclic(0.1, 1.0, step_size_up=up, step_size_down=down)
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    ref = torch.optim.lr_scheduler.CyclicLR(opt, 0.1, 1.0, step_size_up=up, step_size_down=down, cycle_momentum=False)
    theirs = []
    for _ in range(13):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert [sched(t) for t in range(13)] == theirs
    sched.step_size_up = np.float16(4)  # (assignment takes one too)
    assert sched.step_size_up == 4.0


def plateau(**kw):
    p = torch.zeros(1, requires_grad=True)
    return S.ReduceLROnPlateau(torch.optim.SGD([p], lr=0.1), **kw)


@pytest.mark.parametrize("name", ["factor", "threshold", "eps", "min_lr"])
def test_plateau_values_refuse_float16(name):
    with pytest.raises(TypeError, match=rf"{name}: a numpy\.float16 scalar"):
        plateau(**{name: np.float16(0.5 if name == "factor" else 1e-3)})


def test_plateau_min_lr_list_entry_named():
    with pytest.raises(TypeError, match=r"min_lr\[1\]: a numpy\.float16 scalar"):
        S.ReduceLROnPlateau(
            torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(2)], lr=0.1),
            min_lr=[0.0, np.float16(1e-3)],
        )


@pytest.mark.parametrize("name", ["patience", "cooldown"])
def test_plateau_counts_unchanged(name):
    assert getattr(plateau(**{name: 3}), name) == 3


@pytest.mark.parametrize("name", ["factor", "threshold", "eps"])
def test_plateau_assignment_refused_before_the_step(name):
    sched = plateau()
    setattr(sched, name, np.float16(0.5))
    with pytest.raises(TypeError, match=rf"{name}: a numpy\.float16 scalar"):
        sched.step(1.0)
    assert sched.optimizer.param_groups[0]["lr"] == 0.1
