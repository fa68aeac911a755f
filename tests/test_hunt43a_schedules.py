"""cyclic's step sizes and one_cycle's degenerate arguments against torch's CyclicLR / OneCycleLR."""

import math
import warnings

import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler


def _torch_run(make, steps, opt_cls=torch.optim.SGD, key="lr"):
    """torch's values before each of ``steps`` scheduler steps (group 0's ``key``)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = opt_cls([p], lr=0.1, momentum=0.9) if opt_cls is torch.optim.SGD else opt_cls([p], lr=0.1)
    sched = make(opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            out.append(opt.param_groups[0][key])
            opt.step()
            sched.step()
    return out


@pytest.mark.parametrize(
    "up, down, mode, gamma",
    [
        (2.5, None, "triangular", 1.0),
        (2.5, 1.5, "triangular2", 1.0),
        (0.5, None, "triangular", 1.0),
        (3.7, 0.0, "exp_range", 0.97),  # a sawtooth of a fractional rise
        (1.25, 2.75, "exp_range", 0.99),
        (4, 2.5, "triangular", 1.0),
    ],
)
def test_cyclic_takes_fractional_step_sizes_as_torch(up, down, mode, gamma):
    kw = dict(step_size_up=up, step_size_down=down, mode=mode, gamma=gamma)
    ref = _torch_run(lambda o: lrs.CyclicLR(o, 0.01, 0.1, cycle_momentum=False, **kw), 30)
    s = S.cyclic(0.01, 0.1, **kw)
    assert [s(t) for t in range(30)] == ref  # bit for bit: the same float arithmetic
    mom_kw = dict(base_momentum=0.8, max_momentum=0.9, **kw)
    mom = _torch_run(lambda o: lrs.CyclicLR(o, 0.01, 0.1, **mom_kw), 30, key="momentum")
    m = s.momentum(0.8, 0.9)
    assert [m(t) for t in range(30)] == mom


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(step_size_up=0), ValueError, "^step_size_up"),  # torch: ZeroDivisionError at step 0
        (dict(step_size_up=-1.5), ValueError, "^step_size_up"),
        (dict(step_size_up=math.nan), ValueError, "^step_size_up"),
        (dict(step_size_up="2"), TypeError, "^step_size_up"),
        (dict(step_size_up=2, step_size_down=-0.5), ValueError, "^step_size_down"),
        (dict(step_size_up=1e308, step_size_down=1e308), ValueError, "^step_size_down: .* overflows"),
    ],
)
def test_cyclic_bad_step_sizes_are_named(kw, exc, match):
    with pytest.raises(exc, match=match):
        S.cyclic(0.01, 0.1, **kw)


def test_cyclic_step_size_assigned_later_is_checked():
    s = S.cyclic(0.01, 0.1, 2)
    s.step_size_up = 1.5  # (a fractional one taken, as at construction)
    assert s(1) == pytest.approx(0.01 + 0.09 / 1.5)
    s.step_size_up = -1.0
    with pytest.raises(ValueError, match="^step_size_up"):
        s(1)


ONE_CYCLE = [
    dict(total_steps=1),
    dict(total_steps=2),
    dict(total_steps=3),
    dict(total_steps=3, three_phase=True),
    dict(total_steps=1, three_phase=True, anneal_strategy="linear"),
    dict(total_steps=10, pct_start=0.0),
    dict(total_steps=10, pct_start=0.0, three_phase=True),
    dict(total_steps=10, pct_start=0.05),
    dict(total_steps=10, pct_start=0.95, anneal_strategy="linear"),
    dict(total_steps=10, pct_start=0.8, three_phase=True),
    dict(total_steps=10, pct_start=1.0, three_phase=True),
    dict(total_steps=10, div_factor=1.0, final_div_factor=1.0),
    dict(total_steps=10, final_div_factor=0.5),
    dict(total_steps=10, final_div_factor=1e308),  # the final lr underflows to 0, as torch's
]


@pytest.mark.parametrize("kw", ONE_CYCLE, ids=[repr(k) for k in ONE_CYCLE])
@pytest.mark.parametrize("max_lr", [0.1, 0.0])
def test_one_cycle_degenerate_arguments_run_as_torch(kw, max_lr):
    kw = dict(kw)
    anneal = kw.pop("anneal_strategy", "cos")
    n = kw["total_steps"]
    ref = _torch_run(lambda o: lrs.OneCycleLR(o, max_lr, anneal_strategy=anneal, cycle_momentum=False, **kw), n)
    s = S.one_cycle(max_lr, anneal=anneal, **kw)
    assert [s(t) for t in range(n)] == ref
    assert s(n + 5) == s(n - 1)  # (past the last step: held)
    mom = _torch_run(
        lambda o: lrs.OneCycleLR(o, max_lr, anneal_strategy=anneal, base_momentum=0.8, max_momentum=0.9, **kw),
        n,
        key="momentum",
    )
    m = s.momentum(0.8, 0.9)
    assert [m(t) for t in range(n)] == mom


@pytest.mark.parametrize(
    "kw",
    [
        dict(total_steps=10, pct_start=0.1),  # a warm-up of one step: torch's 0 / 0 at step 0
        dict(total_steps=4, pct_start=0.25, three_phase=True),
        dict(total_steps=10, pct_start=1.0),  # an empty last phase: torch's 0 / 0 at its step 10
    ],
)
def test_one_cycle_where_torch_divides_by_zero_pct_start_is_named(kw):
    with pytest.raises(ZeroDivisionError):
        _torch_run(lambda o: lrs.OneCycleLR(o, 0.1, cycle_momentum=False, **kw), kw["total_steps"] + 1)
    with pytest.raises(ValueError, match="^pct_start: .* no length"):
        S.one_cycle(0.1, **kw)


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(total_steps=0), "total_steps"),
        (dict(pct_start=-0.1), "pct_start"),
        (dict(pct_start=1.5), "pct_start"),
        (dict(max_lr=-0.1), "max_lr"),
        (dict(div_factor=0.0), "div_factor"),  # torch: ZeroDivisionError
        (dict(final_div_factor=0.0), "final_div_factor"),
        (dict(div_factor=-1.0), "div_factor"),  # torch: negative lrs
        (dict(max_lr=1e300, div_factor=1e-300), "div_factor"),
    ],
)
def test_one_cycle_bad_arguments_are_named(kw, name):
    kw = {"max_lr": 0.1, "total_steps": 10, **kw}
    with pytest.raises(ValueError, match=f"^{name}"):
        S.one_cycle(**kw)
