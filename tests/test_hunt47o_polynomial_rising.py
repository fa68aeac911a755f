"""``polynomial`` rising to an ``end`` above ``lr``: ``(lr - end) * frac ** power + end`` with
``lr - end`` < 0 reached ``math.log2`` of it once ``frac ** power`` left float64's normal range
(``power=400`` at step 9 of 10: ``0.1 ** 400``), an unnamed "math domain error". Compared with the
exact value (``Fraction``; integer powers, so the exact power is a rational)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from optkern import schedules as S
from optkern.schedules._range_safe import scaled_real_power


def _exact(lr, end, total, power, t):
    frac = 1.0 - min(t, total) / total  # (the float the schedule raises to the power)
    return float((Fraction(lr) - Fraction(end)) * Fraction(frac) ** power + Fraction(end))


@pytest.mark.parametrize("lr, end", [(0.1, 1.0), (1e-300, 1e-290), (5e-324, 1e-310), (0.5, 0.5000000000000001)])
@pytest.mark.parametrize("power", [1, 3, 400, 2000])
def test_polynomial_rising_to_end_is_the_rounded_exact_value(lr, end, power):
    s = S.polynomial(lr=lr, total_steps=10, power=power, end=end)
    for t in range(12):
        # (a few ulp of end: the plain formula, torch's, rounds lr - end and the sum at end's scale)
        assert s(t) == pytest.approx(_exact(lr, end, 10, power, t), rel=0, abs=4 * math.ulp(end)), t


def test_the_reviewers_case():
    assert S.polynomial(lr=0.1, total_steps=10, power=400, end=1.0)(9) == 1.0


@pytest.mark.parametrize("c", [-3.0, -1e300, -5e-324, 3.0])
@pytest.mark.parametrize("base, p", [(0.1, 400), (0.5, 1074), (0.9, 7000), (1e-5, 62)])
def test_scaled_real_power_of_a_negative_factor_keeps_its_sign(c, base, p):
    want = float(Fraction(c) * Fraction(base) ** p)
    got = scaled_real_power(c, base, float(p))
    assert got == pytest.approx(want, rel=1e-12, abs=5e-324)
    assert str(got).startswith("-") == (c < 0)  # (a product below the smallest subnormal: -0.0)
