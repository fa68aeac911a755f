"""Momentum cycles with base_momentum above max_momentum, against torch (defect hunt 41a).

Defect fixed: ``cyclic(...).momentum(base_momentum, max_momentum)`` refused base_momentum >
max_momentum (ValueError), where torch's ``CyclicLR(cycle_momentum=True)`` takes the pair and runs
its formula ``max_momentum - (max_momentum - base_momentum) * wave``: the momentum then rises with
the lr instead of falling (the base_lr > max_lr triangle was taken already, hunt 40l). Now taken
and computed as torch computes it, bit for bit in float64, in every mode. ``one_cycle``'s momentum
took the inverted pair already; held here against torch's OneCycleLR too.
"""

from __future__ import annotations

import warnings

import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler


def _momenta(make, steps: int) -> list:
    """torch's momentum sequence as a training loop sees it (``step()`` after each step)."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sch = make(opt)
        for _ in range(steps):
            out.append(opt.param_groups[0]["momentum"])
            opt.step()
            sch.step()
    return out


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.97)])
@pytest.mark.parametrize("up, down", [(3, 3), (4, 2), (5, 0)])
@pytest.mark.parametrize("base_m, max_m", [(0.95, 0.85), (0.9, 0.8), (0.8, 0.9)])
def test_cyclic_momentum_matches_torch_also_with_base_momentum_above_max(mode, gamma, up, down, base_m, max_m):
    def make(o):
        return lrs.CyclicLR(
            o, 0.1, 1.0, up, down, mode=mode, gamma=gamma, cycle_momentum=True, base_momentum=base_m, max_momentum=max_m
        )

    steps = 4 * (up + down) + 3  # (four cycles and a bit)
    m = S.cyclic(0.1, 1.0, up, down, mode=mode, gamma=gamma).momentum(base_m, max_m)
    want = _momenta(make, steps)
    assert [m(t) for t in range(steps)] == want
    if base_m > max_m:  # (the inverted cycle: up from max_momentum with the lr)
        assert want[0] == max_m and max(want) > max_m


def test_cyclic_momentum_inverted_by_assignment_is_taken_as_torch_takes_it():
    m = S.cyclic(0.1, 1.0, 2).momentum(0.8, 0.9)
    m.base_momentum = 0.95
    assert [m(t) for t in range(5)] == pytest.approx([0.9, 0.925, 0.95, 0.925, 0.9], abs=1e-15)


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("base_m, max_m", [(0.95, 0.85), (0.85, 0.95)])
def test_one_cycle_momentum_matches_torch_also_with_base_momentum_above_max(three_phase, anneal, base_m, max_m):
    def make(o):
        return lrs.OneCycleLR(
            o,
            max_lr=0.1,
            total_steps=40,
            anneal_strategy=anneal,
            three_phase=three_phase,
            base_momentum=base_m,
            max_momentum=max_m,
        )

    m = S.one_cycle(0.1, 40, anneal=anneal, three_phase=three_phase).momentum(base_m, max_m)
    assert [m(t) for t in range(40)] == _momenta(make, 40)
