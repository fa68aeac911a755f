"""Hunt 40k: optkern.schedules at torch.optim.lr_scheduler's edges.

PolynomialLR with ``power=0`` is defined by torch (and optax's polynomial_schedule): the factor
``(1 - min(t, T) / T) ** 0`` is 1 at every step, the closed form and the chainable form alike, so
the lr stays at its initial value. optkern refused ``power=0`` (ValueError) -- a schedule the
references run was not expressible."""

import warnings

import pytest

from optkern import schedules as S

torch = pytest.importorskip("torch")
lrs = torch.optim.lr_scheduler


def _torch_lrs(make, steps, lr):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sch = make(opt)
    out = [opt.param_groups[0]["lr"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            opt.step()
            sch.step()
            out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("total", [1, 2, 5])
def test_polynomial_power_zero_is_torchs_constant_lr(total):
    s = S.polynomial(0.5, total, 0.0)
    ref = _torch_lrs(lambda o: lrs.PolynomialLR(o, total_iters=total, power=0.0), total + 4, 0.5)
    assert [s(t) for t in range(total + 5)] == ref == [0.5] * (total + 5)


def test_polynomial_power_zero_holds_lr_with_an_end_and_assigned():
    s = S.polynomial(0.5, 4, 0.0, end=0.1)
    assert [s(t) for t in range(8)] == [0.5] * 8  # (optax: (init - end) * 1 + end)
    s = S.polynomial(0.5, 4, 2.0)
    s.power = 0.0  # (assigned: checked by the constructor's rule, which takes 0 now)
    assert s(4) == 0.5


@pytest.mark.parametrize("power", [-1.0, float("nan"), float("inf")])
def test_polynomial_power_still_refuses_negative_and_non_finite(power):
    with pytest.raises(ValueError, match="^power"):
        S.polynomial(0.5, 4, power)


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("total", [1, 3])
def test_polynomial_past_total_matches_torch_closed_and_chainable(power, total):
    s = S.polynomial(0.5, total, power)
    ref = _torch_lrs(lambda o: lrs.PolynomialLR(o, total_iters=total, power=power), total + 6, 0.5)
    assert [s(t) for t in range(total + 7)] == pytest.approx(ref, rel=1e-12, abs=1e-15)
