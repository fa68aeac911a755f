"""Scheduler on the group values a torch / NumPy user actually has: NumPy scalars, 1-element arrays,
torch tensors (lr and betas), and callables that only make sense over the steps they run."""

import math

import numpy as np
import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler


def groups(*values, key="lr"):
    opt = type("O", (), {})()
    opt.param_groups = [{key: v} for v in values]
    return opt


@pytest.mark.parametrize("lr", [np.float64(0.1), np.float32(0.1)])
def test_numpy_scalar_lr_is_scheduled(lr):
    # A NumPy scalar (lr = 0.1 * np.sqrt(batch / 256)) was taken for a device array and "filled":
    # np.generic.fill changes nothing, so the lr silently stayed at its first value.
    opt = groups(lr)
    sched = S.Scheduler(opt, S.step_decay(0.1, 1, 0.5))
    for _ in range(3):
        sched.step()
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(0.1 * 0.5**3)
    assert sched.get_last_lr() == [pytest.approx(0.0125)]


def test_numpy_scalar_lr_in_an_optkern_optimizer():
    optim = pytest.importorskip("optkern.optim")
    w = np.zeros(3)
    opt = optim.SGD([w], lr=0.1 * np.sqrt(np.float64(256) / 256))
    sched = S.Scheduler(opt, S.cosine(0.1, 10))
    for _ in range(5):
        opt.step([np.ones(3)])
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(S.cosine(0.1, 10)(5))


def test_initial_value_does_not_alias_an_array_lr_filled_in_place():
    # group['initial_lr'] was the very array then filled in place: it drifted with the schedule and
    # the next Scheduler (a second phase, a resumed run) took the current lr for the base.
    lr = np.array([0.1])
    opt = groups(lr)
    sched = S.Scheduler(opt, S.step_decay(1.0, 1, 0.5), relative=True)
    sched.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and lr[0] == pytest.approx(0.025)  # still in place
    assert float(opt.param_groups[0]["initial_lr"][0]) == 0.1
    assert S.Scheduler(opt, S.constant(1.0), relative=True).base_values == [0.1]


def torch_adam(**kw):
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], **kw)


def test_tensor_lr_like_torch():
    # torch takes lr as a tensor and its schedulers fill it in place; Scheduler refused it
    # ("expected a real number, got Tensor": a tensor's size is a method, not an int).
    ours, ref = torch_adam(lr=torch.tensor(0.1)), torch_adam(lr=torch.tensor(0.1))
    lr = ours.param_groups[0]["lr"]
    sched = S.Scheduler(ours, S.step_decay(0.1, 2, 0.5))
    tsched = lrs.StepLR(ref, 2, 0.5)
    for _ in range(5):
        assert ours.param_groups[0]["lr"] is lr  # updated in place, as torch's schedulers do
        assert float(lr) == pytest.approx(float(ref.param_groups[0]["lr"]))
        ours.step()
        ref.step()
        sched.step()
        tsched.step()
    assert float(ours.param_groups[0]["initial_lr"]) == pytest.approx(0.1)
    assert sched.get_last_lr() == [pytest.approx(0.025)]
    state = sched.state_dict()
    fresh = torch_adam(lr=torch.tensor(0.1))
    S.Scheduler(fresh, S.step_decay(0.1, 2, 0.5)).load_state_dict(state)
    assert float(fresh.param_groups[0]["lr"]) == pytest.approx(0.025)


def test_tensor_lr_of_an_optkern_torch_optimizer():
    ot = pytest.importorskip("optkern.torch")
    p = torch.nn.Parameter(torch.zeros(2))
    opt = ot.Adam([p], lr=torch.tensor([0.1]))
    sched = S.Scheduler(opt, S.cosine(0.1, 10))
    for _ in range(3):
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(S.cosine(0.1, 10)(3))


def test_tensor_betas_cycled_like_torch():
    ours = torch_adam(lr=0.1, betas=(torch.tensor(0.9), torch.tensor(0.999)))
    ref = torch_adam(lr=0.1, betas=(torch.tensor(0.9), torch.tensor(0.999)))
    cycle = S.one_cycle(0.1, 10)
    S.Scheduler(ours, cycle)
    mom = S.momentum_scheduler(ours, cycle.momentum())
    tsched = lrs.OneCycleLR(ref, 0.1, total_steps=10)
    for _ in range(9):
        assert float(ours.param_groups[0]["betas"][0]) == pytest.approx(float(ref.param_groups[0]["betas"][0]))
        ref.step()
        tsched.step()
        mom.step()


def test_a_function_schedule_returning_a_tensor():
    assert S.FunctionSchedule(lambda t: torch.tensor(0.5) ** t)(2) == 0.25


@pytest.mark.parametrize(
    "fn",
    [
        lambda t, table=[1.0] * 100: table[t],  # torch: LambdaLR(opt, lambda e: table[e])
        lambda t: np.float64(10.0) ** t,  # inf from step 309 on
        lambda t: math.exp(t),  # OverflowError from step 710 on
    ],
    ids=["table", "overflow-inf", "overflow-error"],
)
def test_callable_failing_beyond_the_run_is_accepted(fn):
    # The scale warning samples the schedule at up to 1000 steps; a failure there made the
    # constructor raise although the run (here 50 steps) never reaches those steps.
    opt = groups(0.1)
    sched = S.Scheduler(opt, fn, relative=True)
    for _ in range(50):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * float(fn(50)))


def test_callable_failing_at_step_0_still_raises():
    with pytest.raises(ValueError, match="schedule: returned inf at step 0"):
        S.Scheduler(groups(0.1), lambda t: math.inf, relative=True)
