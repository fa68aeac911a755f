"""Hunt 42x (the 55th's leftovers), item 3: the 55th refused np.float16 hyper-parameters of the
optimizers (optim/_hyper.py: torch.optim computes its step scalars from one in float16, NumPy 2's
promotion), but the schedules' base learning rates and SAM's rho still took one. torch's schedulers
and davda54's SAM compute with them the same way (``base_lr * factor`` is float16 under NEP 50), so
they are refused by name through the same check (optkern._hyper_scalars)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import optim, schedules

torch = pytest.importorskip("torch")
import optkern.torch as okt  # noqa: E402

H = np.float16(0.1)
MSG = r"a numpy\.float16 scalar"


@pytest.mark.parametrize(
    "name, make",
    [
        ("base_lr", lambda: schedules.cyclic(base_lr=H, max_lr=1.0)),
        ("max_lr", lambda: schedules.cyclic(base_lr=0.01, max_lr=np.float16(1.0))),
        ("base_lr", lambda: schedules.scale_lr(H, 256, 128)),
        ("initial_lr", lambda: schedules.swalr(H, 0.01)),
        ("swa_lr", lambda: schedules.swalr(0.1, np.float16(0.01))),
        ("lr", lambda: schedules.cosine(lr=H, T_max=10)),
        ("max_lr", lambda: schedules.one_cycle(max_lr=H, total_steps=10)),
    ],
)
def test_schedules_refuse_a_float16_base_lr(name, make):
    with pytest.raises(TypeError, match=rf"^{name}: {MSG}"):
        make()


def test_a_scheduler_refuses_a_groups_float16_lr_before_writing_any_group():
    p = np.zeros(3, np.float32)
    opt = optim.SGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = H
    with pytest.raises(TypeError, match=rf"^optimizer\.param_groups\[0\]\['lr'\]: {MSG}"):
        schedules.Scheduler(opt, schedules.cosine(1.0, 10), relative=True)
    assert opt.param_groups[0]["lr"] is H and "initial_lr" not in opt.param_groups[0]


def test_sam_refuses_a_float16_rho_at_construction_and_at_the_step():
    p = np.ones(7, np.float32)
    with pytest.raises(TypeError, match=rf"^rho: {MSG}"):
        optim.SAM(optim.SGD([p], lr=0.1), rho=H)
    sam = optim.SAM(optim.SGD([p], lr=0.1), rho=0.05)
    sam.rho = H  # (assigned between steps: checked again at the step, nothing moved)
    with pytest.raises(TypeError, match=rf"^rho: {MSG}"):
        sam.first_step([np.ones(7, np.float32)])
    np.testing.assert_array_equal(p, np.ones(7, np.float32))


def test_torch_sam_refuses_a_float16_rho():
    w = torch.nn.Parameter(torch.ones(7))
    with pytest.raises(TypeError, match=rf"^rho: {MSG}"):
        okt.SAM([w], torch.optim.SGD, rho=H, lr=0.1)


def test_float_values_still_pass():
    assert schedules.cyclic(base_lr=float(H), max_lr=1.0).value(0) == float(H)
    optim.SAM(optim.SGD([np.ones(7, np.float32)], lr=0.1), rho=np.float32(0.05))
