"""linear over 0 steps (optax's constant schedule), cyclic at a subnormal cycle length and past
triangular2's 1024th cycle, and one_cycle's negative divisors, against optax / torch."""

import math
import warnings

import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler


def _torch_cyclic(steps, **kw):
    """torch's CyclicLR lrs before each of ``steps`` scheduler steps, or the exception it raised."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = lrs.CyclicLR(opt, **kw)
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return out


@pytest.mark.parametrize("init, end", [(1.0, 0.0), (0.0, 2.5), (-3.0, 3.0)])
def test_linear_over_zero_steps_is_optax_constant_init(init, end):
    # optax.linear_schedule(init, end, transition_steps=0) -> polynomial_schedule's
    # "non-positive transition_steps ... a constant schedule with value init_value": refused here.
    sched = S.linear(init, end, 0)
    assert [sched(t) for t in (0, 1, 2, 10**9)] == [init] * 4
    assert sched.total_steps == 0 and sched.steps == 0
    assert eval(repr(sched), vars(S))(5) == init
    sched.steps = 4  # a horizon assigned afterwards: the transition runs
    assert [sched(t) for t in range(6)] == pytest.approx([init + (end - init) * min(t, 4) / 4 for t in range(6)])
    sched.steps = 0
    assert sched(3) == init


@pytest.mark.parametrize("bad, err", [(-1, ValueError), (2.5, TypeError), (None, TypeError)])
def test_linear_negative_or_non_integer_steps_still_refused(bad, err):
    with pytest.raises(err, match="^steps: "):
        S.linear(1.0, 0.0, bad)
    sched = S.linear(1.0, 0.0, 0)
    with pytest.raises(err, match="^steps: "):
        sched.steps = bad
    assert sched(3) == 1.0


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("up, down", [(5e-324, None), (1e-310, 0.0), (2e-320, 1e-320)])
def test_cyclic_subnormal_cycle_is_refused_naming_step_size_up(mode, up, down):
    # t / (up + down) overflowed to inf, and math.floor(inf) raised Python's unnamed OverflowError
    # (torch's CyclicLR: the same OverflowError) at step 1, for the lr and its momentum cycle
    with pytest.raises(OverflowError):
        _torch_cyclic(3, base_lr=0.1, max_lr=1.0, step_size_up=up, step_size_down=down, mode=mode)
    sched = S.cyclic(0.1, 1.0, up, down, mode=mode)
    assert sched(0) == 0.1  # (as torch's: its first lr)
    for s in (sched, sched.momentum()):
        with pytest.raises(ValueError, match="^step_size_up: .*overflows float64"):
            s(1)


def test_cyclic_tiny_but_normal_cycle_gives_torchs_values_and_triangular2_its_limit():
    # a cycle of 1e-300 steps: every step is a whole number of cycles, base_lr in torch's triangular
    # and exp_range; triangular2's 1 / 2 ** (cycle - 1) overflows in torch (OverflowError) where the
    # amplitude is below 2 ** -1024: base_lr here, its limit (not NaN, not 0)
    for mode in ("triangular", "exp_range"):
        assert [S.cyclic(0.1, 1.0, 1e-300, mode=mode)(t) for t in range(6)] == _torch_cyclic(
            6, base_lr=0.1, max_lr=1.0, step_size_up=1e-300, mode=mode
        )
    with pytest.raises(OverflowError):
        _torch_cyclic(3, base_lr=0.1, max_lr=1.0, step_size_up=1e-300, mode="triangular2")
    tri2 = S.cyclic(0.1, 1.0, 1e-300, mode="triangular2")
    assert [tri2(t) for t in range(6)] == [0.1] * 6


def test_triangular2_matches_torch_bit_for_bit_up_to_where_torch_overflows():
    # step 1 of a 2-step cycle is a peak: its height (max - base) / 2 ** (cycle - 1), down to the
    # subnormal amplitude of cycle 1024 (2 ** -1023); torch raises from cycle 1025 on (2.0 ** 1024)
    n = 2 * 1024 - 1  # (torch computes the lr of step n after the last value read)
    mine = S.cyclic(0.5, 1.5, 1, mode="triangular2")
    theirs = _torch_cyclic(n, base_lr=0.5, max_lr=1.5, step_size_up=1, mode="triangular2")
    assert [mine(t) for t in range(n)] == theirs
    with pytest.raises(OverflowError):
        _torch_cyclic(n + 2, base_lr=0.5, max_lr=1.5, step_size_up=1, mode="triangular2")
    assert mine(n + 1) == 0.5 and mine(10**12 + 1) == 0.5 and not math.isnan(mine(2**62))


@pytest.mark.parametrize("name", ["div_factor", "final_div_factor"])
def test_one_cycle_negative_divisor_refused_with_torchs_negative_lrs_as_the_reason(name):
    # torch's OneCycleLR takes it and runs negative lrs (gradient ascent), silently: refused here,
    # now saying why (the message was only "must be in (0.0, inf)")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = lrs.OneCycleLR(opt, 1.0, total_steps=10, **{name: -25.0})
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(9):
        opt.step()
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    assert min(seen) < 0
    with pytest.raises(ValueError, match=rf"^{name}: must be > 0, got -25.0 \(.*negative"):
        S.one_cycle(1.0, 10, **{name: -25.0})
    with pytest.raises(ValueError, match=rf"^{name}: "):
        S.one_cycle(1.0, 10, **{name: 0.0})
    with pytest.raises(TypeError, match=rf"^{name}: "):
        S.one_cycle(1.0, 10, **{name: "2"})
