"""A float16 lr refused by optkern.torch names what the caller passed: a NumPy float16 scalar as a
scalar, a 0-d float16 NumPy array as a 0-d array (it was called 'a numpy.float16 scalar', the value
the checks unwrapped it to), at construction and when set on a group before a step; a float16 tensor
lr is not refused by that check (it steps)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

LR = 0.01
CASES = [
    (np.float16(LR), "a numpy.float16 scalar"),
    (np.array(LR, np.float16), "a 0-d numpy.float16 array"),
]
NAMES = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]


def param():
    torch.manual_seed(0)
    return torch.randn(7, requires_grad=True)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("lr", "what"), CASES, ids=["scalar", "0-d array"])
def test_constructor_names_the_kind(name, lr, what):
    with pytest.raises(TypeError) as e:
        getattr(ot, name)([param()], lr=lr)
    msg = str(e.value)
    assert "lr" in msg and f"{what} (0.01000213623046875) is refused" in msg
    other = CASES[0][1] if "array" in what else CASES[1][1]
    assert other not in msg


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("lr", "what"), CASES, ids=["scalar", "0-d array"])
def test_group_value_names_the_kind_and_writes_nothing(name, lr, what):
    p = param()
    opt = getattr(ot, name)([p], lr=0.1)
    opt.param_groups[0]["lr"] = lr
    p.grad = torch.randn(7)
    before = p.detach().clone()
    with pytest.raises(TypeError, match=rf"param_groups\[0\]\['lr'\]: {what} \(0\.01000213623046875\)"):
        opt.step()
    assert torch.equal(p.detach(), before) and float(opt.state[p].get("step", 0)) == 0


@pytest.mark.parametrize("name", NAMES)
def test_float16_tensor_lr_is_not_this_refusal(name):
    p = param()
    opt = getattr(ot, name)([p], lr=torch.tensor(LR, dtype=torch.float16))
    p.grad = torch.randn(7)
    before = p.detach().clone()
    opt.step()
    assert not torch.equal(p.detach(), before)


def test_float32_zero_d_array_lr_still_steps():
    p = param()
    opt = ot.Adam([p], lr=np.array(LR, np.float32))
    p.grad = torch.randn(7)
    opt.step()
    assert opt.state[p]


@pytest.mark.parametrize(("lr", "what"), CASES, ids=["scalar", "0-d array"])
def test_scheduler_names_the_kind(lr, what):
    # the schedules' Scheduler shares the check: a torch.optim group's float16 lr, scalar or 0-d array
    # (torch's schedulers compute the next lr from it in float16), refused as what it is, unchanged
    from optkern import schedules

    opt = torch.optim.SGD([param()], lr=lr)
    with pytest.raises(TypeError, match=rf"param_groups\[0\]\['lr'\]: {what} \(0\.01000213623046875\)"):
        schedules.exponential(1.0, gamma=0.5).attach(opt, relative=True)
    assert opt.param_groups[0]["lr"] is lr and float(lr) == float(np.float16(LR))


def test_scheduler_takes_a_float32_zero_d_array_lr():
    from optkern import schedules

    lr = np.array(LR, np.float32)
    opt = torch.optim.SGD([param()], lr=lr)
    sched = schedules.exponential(1.0, gamma=0.5).attach(opt, relative=True)
    sched.step()
    assert float(opt.param_groups[0]["lr"]) == float(np.float32(LR)) * 0.5
