"""optkern.schedules.swalr against torch.optim.swa_utils.SWALR, and its bad input."""

import math

import numpy as np
import pytest

from optkern import optim, schedules


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("epochs", [0, 1, 7, 10])
def test_swalr_matches_torch(strategy, epochs):
    torch = pytest.importorskip("torch")
    lr0, swa = 0.37, 0.05
    w = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr0)
    sched = torch.optim.swa_utils.SWALR(opt, swa_lr=swa, anneal_epochs=epochs, anneal_strategy=strategy)
    ours = schedules.swalr(lr0, swa, anneal_epochs=epochs, anneal_strategy=strategy)
    got, want = [ours(0)], [opt.param_groups[0]["lr"]]
    for t in range(1, 16):
        opt.step()
        sched.step()
        got.append(ours(t))
        want.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert got[-1] == swa


def test_swalr_reference_values_and_attach():
    s = schedules.swalr(1.0, 0.1, anneal_epochs=4, anneal_strategy="cos")
    for t in range(8):
        a = (1 - math.cos(math.pi * min(1.0, t / 4))) / 2
        assert s(t) == pytest.approx(0.1 * a + (1 - a), rel=1e-15)
    p = np.zeros(3, np.float32)
    opt = optim.SGD([p], lr=1.0)
    sc = s.attach(opt)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        opt.step([np.ones(3, np.float32)])
        sc.step()
        lrs.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, [s(t) for t in range(6)], rtol=1e-15)


def test_swalr_bad_input_is_named():
    with pytest.raises(ValueError, match="anneal_strategy"):
        schedules.swalr(1.0, 0.1, anneal_strategy="step")
    with pytest.raises(ValueError, match="anneal_epochs"):
        schedules.swalr(1.0, 0.1, anneal_epochs=-1)
    with pytest.raises(TypeError, match="anneal_epochs"):
        schedules.swalr(1.0, 0.1, anneal_epochs=2.5)
    with pytest.raises(ValueError, match="swa_lr"):
        schedules.swalr(1.0, -0.1)
    with pytest.raises(ValueError, match="initial_lr"):
        schedules.swalr(float("nan"), 0.1)
