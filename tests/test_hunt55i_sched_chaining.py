"""Two schedulers on one optimizer: torch's chainable ones (StepLR, MultiStepLR, ExponentialLR)
multiply the current lr, so two of them give the product; two optkern Schedulers on one entry do
not (each writes its own value: the last one to step wins, as documented in
``optkern.schedules`` and ``Scheduler``). The documented way, one relative Scheduler over
``chain`` of the schedules, gives torch's chained lrs: within 4 ulp over 30 steps (torch multiplies
the current lr at every step, rounding each time; chain computes each factor's power once)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import optim, schedules

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler

LRS = (0.1, 0.037)  # (two groups: per-group ratios kept)


def _torch_lrs(make, steps: int = 30) -> list:
    ps = [torch.nn.Parameter(torch.zeros(1)) for _ in LRS]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(ps, LRS)])
    scheds = make(opt)
    out = []
    for _ in range(steps + 1):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        for s in scheds:
            s.step()
    return out


def _optkern_lrs(schedule, steps: int = 30) -> list:
    opt = optim.SGD([{"params": [np.zeros(1, np.float32)], "lr": lr} for lr in LRS])
    sched = schedules.Scheduler(opt, schedule, relative=True)
    out = []
    for _ in range(steps + 1):
        out.append([g["lr"] for g in opt.param_groups])
        sched.step()
    return out


CASES = [
    (
        "step+exponential",
        lambda o: [lrs.StepLR(o, 7, 0.3), lrs.ExponentialLR(o, 0.93)],
        schedules.chain(schedules.step_decay(1.0, 7, 0.3), schedules.exponential(1.0, 0.93)),
    ),
    (
        "multistep+exponential",
        lambda o: [lrs.MultiStepLR(o, [3, 11, 20], 0.5), lrs.ExponentialLR(o, 1.05)],
        schedules.chain(schedules.multi_step(1.0, [3, 11, 20], 0.5), schedules.exponential(1.0, 1.05)),
    ),
    (
        "step+multistep",
        lambda o: [lrs.StepLR(o, 4, 0.9), lrs.MultiStepLR(o, [5, 5, 17], 0.1)],
        schedules.chain(schedules.step_decay(1.0, 4, 0.9), schedules.multi_step(1.0, [5, 5, 17], 0.1)),
    ),
]


@pytest.mark.parametrize("name, make, chained", CASES, ids=[c[0] for c in CASES])
def test_one_scheduler_over_chain_gives_torchs_chained_schedulers(name, make, chained):
    want, got = np.array(_torch_lrs(make)), np.array(_optkern_lrs(chained))
    ulps = np.abs(got - want) / np.spacing(want)
    assert ulps.max() <= 4, (ulps.max(), np.unravel_index(ulps.argmax(), ulps.shape))
    assert want[-1, 0] != want[0, 0] and not np.allclose(want[:, 0], want[0, 0])  # (the lr moved)


def test_two_schedulers_on_one_entry_do_not_chain_the_last_one_wins():
    """The documented difference (not torch's product): a test that it stays as documented."""
    opt = optim.SGD([np.zeros(1, np.float32)], lr=0.1)
    a = schedules.Scheduler(opt, schedules.step_decay(1.0, 2, 0.5), relative=True)
    b = schedules.Scheduler(opt, schedules.exponential(1.0, 0.9), relative=True)
    for t in range(1, 6):
        a.step()
        b.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.9**t, rel=1e-15)


def test_the_docs_say_so_where_users_look():
    for doc in (schedules.__doc__, schedules.Scheduler.__doc__, schedules.chain.__doc__):
        text = " ".join((doc or "").split())
        assert "chain" in text and ("do not chain" in text or "do not multiply" in text)
