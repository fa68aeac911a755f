"""optkern.torch's optimizers with a 0-d NumPy array ``lr`` (``np.array(1e-2)``, what NumPy code
often holds a rate in), as torch.optim takes it: torch's for-loop computes with it as with the NumPy
scalar it holds (NumPy 2's promotion treats the two alike: a float32 one keeps its step scalars in
float32), so a drop-in must step with it too, bit for bit. It was refused ("lr: expected a real
number, got ndarray"), at construction and when an LR scheduler's user set one in a group."""

from __future__ import annotations

import numpy as np
import pytest

import optkern.torch as okt

torch = pytest.importorskip("torch")

from torch_ieee_sqrt import run_seeded  # noqa: E402 (after the torch skip)

SIZES = (0, 1, 7, 1023)
NAMES = ("SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam")
HYPER = {
    "SGD": dict(momentum=0.9, weight_decay=0.1),
    "Adagrad": dict(lr_decay=0.01, weight_decay=0.1),
    "RMSprop": dict(momentum=0.5, centered=True),
    "Adadelta": dict(weight_decay=0.1),
    "Adam": dict(amsgrad=True, weight_decay=0.1),
    "AdamW": dict(weight_decay=0.1),
    "NAdam": dict(weight_decay=0.1, decoupled_weight_decay=True),
}


def _run(lib, name, dtype, lr, steps, set_later=False):
    return run_seeded(lib, name, dtype, SIZES, HYPER[name], "lr", lr, steps, set_later, placeholder=0.5)


@pytest.mark.parametrize("set_later", [False, True], ids=["constructor", "group"])
@pytest.mark.parametrize("lr", [np.array(1e-2), np.array(1e-2, np.float32)], ids=["f64", "f32"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_a_0d_array_lr_steps_as_torch_optim(name, dtype, lr, set_later):
    theirs = _run(torch.optim, name, dtype, lr, 20, set_later)
    ours = _run(okt, name, dtype, lr, 20, set_later)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_the_group_keeps_the_users_array():
    lr = np.array(1e-2)
    opt = okt.Adam([torch.zeros(3, requires_grad=True)], lr=lr)
    assert opt.param_groups[0]["lr"] is lr


@pytest.mark.parametrize(
    "bad", [np.array([1e-2, 1e-2]), np.array(-1e-2), np.array(True), np.array("0.1"), np.array(1e-2 + 0j)]
)
def test_a_bad_array_lr_is_refused_by_name(bad):
    with pytest.raises((TypeError, ValueError), match=r"lr"):
        okt.Adam([torch.zeros(3, requires_grad=True)], lr=bad)
