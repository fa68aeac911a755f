"""Schedules whose intermediates left float64's range while their values did not: ``cosine`` (and
``cosine_restarts``, ``warmup_cosine``) doubled ``lr - eta_min`` before halving it (lr = 1e308: inf
from step 1 -- step 0 for cosine_restarts --, refused as an overflow); ``exponential`` /
``step_decay`` / ``multi_step`` took ``gamma ** n`` to 0 or inf where ``lr * gamma ** n`` is a normal
float (1e300 * 0.1**400 was 0, 1e-300 * 10**400 refused), and ``inverse_time`` / ``polynomial`` the
same with a real exponent; ``linear(1e308, -1e308, n)`` was NaN at step 0. Compared with the exact
value (``Fraction``) and with torch's schedulers in float64."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import pytest

from optkern import schedules as S

BIG = [1e308, 1.7976931348623157e308]
TINY = [5e-324, 1e-310, 2.2250738585072014e-308]


def _exact_cos(lr, eta, t, period):
    h = (1.0 + math.cos(math.pi * t / period)) / 2.0  # (exact halving of the float cos)
    return float(Fraction(eta) + (Fraction(lr) - Fraction(eta)) * Fraction(h))


@pytest.mark.parametrize("lr", BIG + TINY + [0.1])
@pytest.mark.parametrize("eta_frac", [0.0, 1 / 3])
def test_cosine_is_the_correctly_rounded_closed_form_at_any_lr(lr, eta_frac):
    eta = lr * eta_frac
    s = S.cosine(lr, T_max=10, eta_min=eta)
    assert s(0) == lr
    for t in range(1, 13):
        want = _exact_cos(lr, eta, min(t, 10), 10)
        assert s(t) == pytest.approx(want, rel=2**-51, abs=5e-324), t


@pytest.mark.parametrize("lr", BIG)
def test_cosine_restarts_and_warmup_cosine_at_the_top_of_the_range(lr):
    r = S.cosine_restarts(lr, T_0=3, T_mult=2)
    assert [r(t) for t in (0, 3, 9)] == [lr, lr, lr]  # (each cycle's start)
    assert all(0 < r(t) < lr for t in (1, 2, 4, 8))
    w = S.warmup_cosine(lr, 2, 12)
    assert w(2) == lr and 0 < w(7) < lr and w(12) == 0.0


def _torch_lrs(torch, make, lr, n):
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr)
    sch = make(opt)
    out = [opt.param_groups[0]["lr"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (torch's "step() before optimizer.step()" nag)
        for _ in range(n):
            opt.step()
            sch.step()
            out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("lr", BIG + TINY[1:])
def test_cosine_against_torch_cosine_annealing_and_lambda_lr(lr):
    torch = pytest.importorskip("torch")
    lrs = torch.optim.lr_scheduler
    ours = [S.cosine(lr, T_max=10)(t) for t in range(11)]
    theirs = _torch_lrs(torch, lambda o: lrs.CosineAnnealingLR(o, T_max=10), lr, 10)  # (recursive form)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-322)  # (subnormal lrs: a few of their ulps)
    # LambdaLR with the multiplier schedule: lr * cosine(1)(t), which a relative Scheduler writes
    mult = S.cosine(1.0, T_max=10)
    theirs = _torch_lrs(torch, lambda o: lrs.LambdaLR(o, lambda e: mult(e)), lr, 10)
    opt = type("Opt", (), {"param_groups": [{"lr": lr}]})()
    sc = S.Scheduler(opt, mult, relative=True)
    mine = [opt.param_groups[0]["lr"]]
    for _ in range(10):
        sc.step()
        mine.append(opt.param_groups[0]["lr"])
    assert mine == theirs  # (the same product: bit for bit)


CASES = [(1e300, 0.1, 400), (1e-300, 10.0, 400), (5e-324, 2.0, 1074), (1.0, 0.5, 1074), (1e308, 0.999, 700000)]


@pytest.mark.parametrize("lr, gamma, n", CASES)
def test_powers_of_gamma_out_of_range_where_the_product_is_not(lr, gamma, n):
    want = float(Fraction(lr) * Fraction(gamma) ** n) if n < 10**4 else lr * math.exp(n * math.log(gamma))
    tol = 2**-48 if n < 10**4 else 1e-9  # (the reference of the last: exp and log's own error)
    for s, t in (
        (S.exponential(lr, gamma), n),
        (S.step_decay(lr, 3, gamma), 3 * n + 2),
        (S.multi_step(lr, list(range(1, min(n, 2000) + 1)), gamma), n if n <= 2000 else None),
    ):
        if t is not None:
            assert s(t) == pytest.approx(want, rel=tol, abs=0), s


def test_power_past_the_range_is_still_zero_or_refused():
    assert S.exponential(1e308, 0.5)(2200) == 0.0
    with pytest.raises(ValueError, match="overflows there"):
        S.exponential(1e300, 2.0)(100)


@pytest.mark.parametrize("lr, gamma, n", [(1e300, 0.1, 400), (1e-300, 10.0, 400)])
def test_exponential_against_torch_exponential_lr(lr, gamma, n):
    torch = pytest.importorskip("torch")
    theirs = _torch_lrs(torch, lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma), lr, n)
    ours = S.exponential(lr, gamma)
    assert [ours(t) for t in range(0, n + 1, 50)] == pytest.approx(theirs[::50], rel=1e-12, abs=0)


def test_linear_between_values_of_opposite_sign_at_the_range_top():
    s = S.linear(1e308, -1e308, 10)
    assert [s(0), s(5), s(10), s(11)] == [1e308, 0.0, -1e308, -1e308]
    assert s(3) == pytest.approx(0.4e308, rel=1e-15)


@pytest.mark.parametrize("lr, k, p, t", [(1e300, 1.0, 40.0, 10**10), (1e300, 1.0, 2.0, 10**18), (1e-10, 3.0, 120.0, 7)])
def test_inverse_time_where_the_power_underflows_and_the_product_does_not(lr, k, p, t):
    want = float(Fraction(lr) / Fraction(1.0 + k * t) ** int(p))
    assert S.inverse_time(lr, k, p)(t) == pytest.approx(want, rel=1e-12, abs=0)


def test_inverse_time_past_the_divisors_range():
    # 1 + k t past float64's top was inf, so every value 0; (1e310) ** -0.01 * 1e300 is ~7.9e296
    got = S.inverse_time(1e300, 1e300, 0.01)(10**10)
    assert got == pytest.approx(1e300 * math.exp(-0.01 * (math.log(1e300) + math.log(1e10))), rel=1e-12, abs=0)


def test_polynomial_where_the_power_underflows_and_the_product_does_not():
    s = S.polynomial(1e300, 10, 400.0)
    for t in range(11):
        frac = 1.0 - t / 10
        want = float(Fraction(1e300) * Fraction(frac) ** 400)
        assert s(t) == pytest.approx(want, rel=1e-12, abs=0), t  # (t = 9: 1e-100, was 0)
    torch = pytest.importorskip("torch")
    lrs = torch.optim.lr_scheduler
    theirs = _torch_lrs(torch, lambda o: lrs.PolynomialLR(o, total_iters=10, power=400.0), 1e300, 9)
    assert [s(t) for t in range(10)] == pytest.approx(theirs, rel=1e-10, abs=0)
