"""``hessian.cg``'s preconditioner scaling undone on what it returns and reports (56th hunt, m).

h343 scaled ``M r`` (and ``precond_diag``'s reciprocal) by a power of two ``2**-e`` where far from
``r``: exact for ``x`` and ``r`` (CG's iterates of ``c M`` are those of ``M``), but the search
direction ``p`` scales by ``c`` and was returned scaled. ``A = diag(-1, 2, 3)``, ``b = 1``,
``precond_diag = 1e-30``: the negative-curvature direction ``M b = 1e30 b`` came back as
``[2.66, 0.89, 0.30]``; Newton-CG, which steps along it when negative curvature shows at once,
moved ``w`` by ``-0.634 b`` for a preconditioner of ``1e40`` (``-1e-30 b`` before). The
"not positive definite" error's ``r.Mr`` was scaled too.

Now every returned or reported quantity is the unscaled preconditioner's: for ``c`` a power of two
the same bits times ``c``, for other ``c`` the float64 reference's values."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import optkern.optim as O
from optkern import hessian

INDEFINITE = np.diag([-1.0, 2.0, 3.0])
POWERS = [2.0**-100, 2.0**100, 2.0**-700, 2.0**700]
DECIMALS = [1e-30, 1e30, 1e-200, 1e200]


def _spd(n: int, dtype, seed: int = 5):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n))
    return (B @ B.T + n * np.eye(n)).astype(dtype), rng.standard_normal(n).astype(dtype)


def _same_but_direction(got, want, factor: float) -> None:
    """``got`` is ``want``'s solve with the preconditioner times ``factor`` (a power of two): x, r,
    counts the same bits, the direction ``factor`` times ``want``'s, bit for bit."""
    assert (got.info, got.iterations, got.negative_curvature) == (want.info, want.iterations, want.negative_curvature)
    assert got.num_matvecs == want.num_matvecs
    np.testing.assert_array_equal(got.x, want.x)
    np.testing.assert_array_equal(got.residual, want.residual)
    assert got.residual_norm == want.residual_norm
    np.testing.assert_array_equal(got.direction, want.direction * want.direction.dtype.type(factor))


# (float32: directions 1 / c within its range)
@pytest.mark.parametrize(("c", "dtype"), [(c, np.float64) for c in POWERS] + [(c, np.float32) for c in POWERS[:2]])
def test_precond_diag_times_a_power_of_two_scales_only_the_direction(c, dtype):
    for A, b in ((INDEFINITE.astype(dtype), np.ones(3, dtype)), _spd(7, dtype)):
        d = np.arange(1.0, A.shape[0] + 1.0)
        want = hessian.cg(A, b, precond_diag=d)
        got = hessian.cg(A, b, precond_diag=c * d)
        _same_but_direction(got, want, 1.0 / c)


def _diag_m(how: str, k: float, n: int):
    """``M = k diag(1, 1/2, ..., 1/n)`` as a callable or a matrix."""
    w = k / np.arange(1.0, n + 1.0)
    return (lambda r: w * r) if how == "callable" else np.diag(w)


@pytest.mark.parametrize("c", POWERS)
@pytest.mark.parametrize("how", ["callable", "matrix"])
def test_m_times_a_power_of_two_scales_only_the_direction(c, how):
    for A, b in ((INDEFINITE, np.ones(3)), _spd(7, np.float64), _spd(1, np.float64)):
        n = A.shape[0]
        want = hessian.cg(A, b, M=_diag_m(how, 1.0, n))
        got = hessian.cg(A, b, M=_diag_m(how, c, n))
        _same_but_direction(got, want, c)


@pytest.mark.parametrize("c", DECIMALS + POWERS)
def test_the_negative_curvature_direction_is_m_b(c):
    """At once negative curvature (``b.Ab < 0`` along ``M b``): the direction is ``M b`` itself, against
    float64 NumPy, for ``M = c I`` and ``precond_diag = 1 / c``. (``[3.4e30, 1.1e30, 3.8e29]``-like
    values before h343, ``[2.66, 0.89, 0.30]`` after it, for ``precond_diag = 1e-30``.)"""
    A = np.diag([-5.0, 2.0, 3.0])
    b = np.array([1.0, 0.5, 0.25])
    for res in (hessian.cg(A, b, M=lambda r: r * c), hessian.cg(A, b, precond_diag=np.full(3, 1.0 / c))):
        assert res.info == -1 and res.negative_curvature and res.iterations == 0
        np.testing.assert_allclose(res.direction, b * c, rtol=1e-14)
        np.testing.assert_array_equal(res.x, np.zeros(3))


@pytest.mark.parametrize("c", DECIMALS)
def test_a_decimal_scale_gives_the_unscaled_direction_times_c(c):
    A, b = _spd(9, np.float64, seed=11)
    w = 1.0 / np.diag(A)
    want = hessian.cg(A, b, M=lambda r: w * r, maxiter=4)
    for got in (
        hessian.cg(A, b, M=lambda r: (c * w) * r, maxiter=4),
        hessian.cg(A, b, precond_diag=np.diag(A) / c, maxiter=4),
    ):
        assert (got.info, got.iterations) == (want.info, want.iterations) == (4, 4)
        np.testing.assert_allclose(got.x, want.x, rtol=1e-12)
        np.testing.assert_allclose(got.direction, want.direction * c, rtol=1e-12)


def _rmr(message: str) -> float:
    m = re.fullmatch(r"M: the preconditioner is not positive definite \(r\.Mr = (\S+)\)", message)
    assert m, message
    return float(m.group(1))


@pytest.mark.parametrize("c", DECIMALS + POWERS)
def test_the_not_positive_definite_error_reports_the_callers_r_mr(c):
    b = np.array([1.0, -2.0, 0.5, 3.0, 0.125])
    A = np.diag(np.arange(1.0, 6.0))
    with pytest.raises(ValueError) as one:
        hessian.cg(A, b, M=lambda r: -r)
    with pytest.raises(ValueError) as scaled:
        hessian.cg(A, b, M=lambda r: -c * r)
    unscaled = _rmr(str(one.value))
    assert unscaled == -float(b @ b)
    got = _rmr(str(scaled.value))
    if c in POWERS:
        assert got == math.ldexp(unscaled, round(math.log2(c)))
    np.testing.assert_allclose(got, -c * float(b @ b), rtol=1e-14)


@pytest.mark.parametrize("pre", [1e40, 2.0**200, 1e120, 1e-40])
def test_newton_cg_steps_along_m_g_at_once_negative_curvature(pre):
    """One Newton-CG step where CG meets negative curvature at once: ``p = -M g`` with
    ``M = diag(1 / (pre + damping)**0.75)``, accepted (the model is the loss, rho = 1): ``w = -M b``.
    (``preconditioner = 1e40`` moved ``w`` to ``-0.634 b``, not ``-1e-30 b``.)"""
    A = np.diag([-1.0, 2.0, 3.0])
    b = np.array([1.0, 0.1, 0.1])
    w = np.zeros(3)
    lam = 1e-8
    opt = O.NewtonCG(
        [w], hessian.as_operator(A), lr=1.0, damping=lam, preconditioner=np.full(3, pre), precond_exponent=0.75,
        warm_start=0.0,
    )  # fmt: skip
    opt.step(lambda: (float(0.5 * w @ A @ w + b @ w), [A @ w + b]))
    np.testing.assert_allclose(w, -b / (pre + lam) ** 0.75, rtol=1e-13)


def _damping_numbers(message: str) -> tuple[float, float]:
    m = re.search(r"\(p\.Ap = (\S+), p\.p = (\S+)\)", message)
    assert m and message.startswith("damping: "), message
    return float(m.group(1)), float(m.group(2))


@pytest.mark.parametrize("c", POWERS[:2] + DECIMALS[:2])
def test_the_damping_overflow_error_reports_the_callers_direction(c):
    """A damping that overflows ``p.(A + damping I) p`` at the first direction ``p = M b``: its error's
    ``p.Ap`` and ``p.p`` are those of the caller's ``M = c I`` (``c**2`` times ``M = I``'s), not of the
    solve's rescaled ``M``."""
    A = np.diag(np.arange(1.0, 6.0))
    b = np.array([1.0, -0.5, 0.25, 1.0, 0.75])
    msgs = []
    for k in (1.0, c):
        with pytest.raises(ValueError) as err:
            hessian.cg(A, b, M=lambda r, k=k: k * r, damping=1e308)
        msgs.append(_damping_numbers(str(err.value)))
    (pap1, pp1), (pap, pp) = msgs
    assert (pap1, pp1) == (float(b @ A @ b), float(b @ b))
    np.testing.assert_allclose([pap, pp], [c * c * pap1, c * c * pp1], rtol=1e-14)
    if c in POWERS:
        assert (pap, pp) == (pap1 * c * c, pp1 * c * c)
