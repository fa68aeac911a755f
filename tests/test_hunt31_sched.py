"""Schedules, SWA and regularizers: defects found in the 31st hunt, one test each."""

from __future__ import annotations

import warnings

import pytest

from optkern import schedules as S


def _torch_lrs(make, steps, lr=0.1):
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(torch, opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return out


@pytest.mark.parametrize("milestones", [[5, 2], [8, 3, 3, 1], [4, 9, 2, 9]])
def test_multi_step_takes_unsorted_milestones_as_torch_does(milestones):
    # torch's MultiStepLR counts its milestones (order is irrelevant); multi_step refused an
    # unsorted list with ValueError.
    want = _torch_lrs(lambda torch, o: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma=0.5), 14)
    s = S.multi_step(0.1, milestones, 0.5)
    assert [s(t) for t in range(14)] == pytest.approx(want, rel=1e-12, abs=0)
    assert s.milestones == sorted(milestones)
