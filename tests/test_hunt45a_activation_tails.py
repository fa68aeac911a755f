"""The tails of tanh, sigmoid and softplus (rules::nnmath::exp_em1_ / logistic_, shared by the CPU and
the GPU), down to where the values underflow, against mpmath and torch.

- exp_ flushed e^x to 0 below x = -87 (float32) / -708 (float64), but e^x stays normal to -87.34 /
  -708.40 and subnormal, not 0, to -103.97 / -745.13: sigmoid and softplus (f, f', f'') were 0 there
  where torch.sigmoid / softplus give the (sub)normal value, tanh's sech^2 0 past |z| 44 / 354.
- sigmoid's f' = s (1 - s) cancelled to 0 as s -> 1 (z past ~17 / ~37, e^-z normal), and its
  f'' = f' (1 - 2 s) lost all digits near z = 0 (float32 f''(-3.8e-8) was 1.5e-8, 4.8e-9 true).
- tanh(+0) was -0 (torch: +0).

Errors are counted in units of the spacing of the dtype at the correctly rounded value, subnormal
spacing included, so a subnormal output is held to the same bound as a normal one. Measured over
[-800, 800] with the tails, +-0 and subnormal z (max ulps f / f' / f'', float32; float64): tanh
2.4 / 3.9 / 5.8; 2.4 / 3.9 / 5.6, sigmoid 2.1 / 3.4 / 4.4; 2.2 / 3.9 / 5.4, softplus 1.3 / 2.1 / 3.4;
1.2 / 2.2 / 3.9 (before: 1.2e7 .. 2.3e7 ulps float32, 2.9e15 .. 1.3e16 float64, from the flushed tails,
the cancelled s (1 - s) and 1 - 2 s).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import torch

from optkern.nn.activations import activation

_RNG = np.random.default_rng(4501)
# (f, f', f'') max ulps, measured (float32, float64): the mpmath sweep over this grid and [-800, 800]
BOUNDS = {"tanh": (2.5, 4.0, 6.0), "sigmoid": (2.25, 4.0, 5.5), "softplus": (1.5, 2.5, 4.5)}


def grid(dt) -> np.ndarray:
    f32 = dt is np.float32
    sub = float(np.finfo(dt).smallest_subnormal)
    tail = (-104.0, -86.5) if f32 else (-746.0, -707.5)  # e^z subnormal, and the old flush point
    th = (43.5, 44.5) if f32 else (354.0, 355.0)  # sech^2 normal, e^(-2|z|) subnormal
    return np.concatenate(
        [
            _RNG.uniform(-800, 800, 120),
            _RNG.uniform(-8, 8, 120),
            _RNG.uniform(*tail, 120),
            _RNG.choice([-1, 1], 60) * _RNG.uniform(*th, 60),
            _RNG.uniform(15, 104, 60) if f32 else _RNG.uniform(35, 746, 60),
            _RNG.choice([-1, 1], 80) * np.geomspace(sub, 1, 80),
            [0.0, -0.0, 1.0, -1.0, sub, -sub, float(np.finfo(dt).max), -float(np.finfo(dt).max)],
        ]
    ).astype(dt)


def ref(kind, v) -> tuple:
    """(f, f', f'') at v as mpmath numbers (50 digits)."""
    mpmath.mp.dps = 50
    x = mpmath.mpf(float(v))
    if kind == "tanh":
        t, s2 = mpmath.tanh(x), mpmath.sech(x) ** 2
        return t, s2, -2 * t * s2
    e = mpmath.exp(-abs(x))
    s = 1 / (1 + mpmath.exp(-x))
    d1 = e / (1 + e) ** 2
    if kind == "sigmoid":
        return s, d1, d1 * mpmath.tanh(-x / 2)  # 1 - 2 s = tanh(-x / 2)
    return x + mpmath.log1p(mpmath.exp(-x)) if x > 0 else mpmath.log1p(mpmath.exp(x)), s, d1


def max_ulps(got, want, dt) -> tuple[float, int]:
    """Largest |got - want| in spacings of dt at the rounded want (subnormal spacing included)."""
    errs = []
    for g, w in zip(got, want):
        r = abs(float(w))
        with np.errstate(over="ignore"):  # (the spacing at the dtype's max is past it)
            sp = float(np.spacing(dt(r))) if np.isfinite(dt(r)) else np.inf
        errs.append(float(abs(mpmath.mpf(float(g)) - w) / sp) if np.isfinite(g) else np.inf)
    return max(errs), int(np.argmax(errs))


def check_kind(kind, z, got, dt) -> None:
    want = [ref(kind, v) for v in z]
    for k in range(3):
        err, i = max_ulps(got[k], [w[k] for w in want], dt)
        assert err <= BOUNDS[kind][k], (kind, dt.__name__, k, err, float(z[i]), float(got[k][i]))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["tanh", "sigmoid", "softplus"])
def test_within_a_few_ulps_down_to_underflow(kind, dt):
    z = grid(dt)
    check_kind(kind, z, activation(kind, z, order=2), dt)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_sigmoid_and_softplus_match_torch_below_the_old_flush(dt):
    """sigmoid(-100) float32 is 3.8e-44 (torch.softplus(-100) and torch.exp(-100) give it); it was 0 below
    z = -87. (torch.sigmoid itself is 0 below -88.7 / -709.8, where its e^-z overflows.) There f, f'
    and f'' of both round to e^z."""
    lo, hi = (-103.9, -87.0) if dt is np.float32 else (-745.1, -708.0)
    z = np.linspace(lo, hi, 257).astype(dt)
    tz = torch.from_numpy(z)
    tol = dict(rtol=2 * np.finfo(dt).eps, atol=np.finfo(dt).smallest_subnormal)
    ez, sig = torch.exp(tz).numpy(), torch.sigmoid(tz).numpy()
    np.testing.assert_allclose(activation("softplus", z), torch.nn.functional.softplus(tz).numpy(), **tol)
    for kind in ("sigmoid", "softplus"):
        got = activation(kind, z, order=2)
        for k in range(3):
            assert np.all(got[k] > 0), (kind, k)
            np.testing.assert_allclose(got[k], ez, **tol, err_msg=f"{kind} {k}")
    np.testing.assert_allclose(activation("sigmoid", z)[sig > 0], sig[sig > 0], **tol)


def test_sigmoid_derivatives_in_the_right_tail_and_near_zero():
    for dt, z in ((np.float32, [20.0, 40.0, 80.0, 100.0]), (np.float64, [40.0, 200.0, 700.0, 740.0])):
        zz = np.array(z, dt)
        _, d1, d2 = activation("sigmoid", zz, order=2)
        e = np.exp(-zz.astype(np.float64))
        np.testing.assert_allclose(d1, e, rtol=4 * np.finfo(dt).eps, atol=np.finfo(dt).smallest_subnormal)
        np.testing.assert_allclose(d2, -e, rtol=4 * np.finfo(dt).eps, atol=np.finfo(dt).smallest_subnormal)
    z = np.array([-3.8074056e-08, 1e-20, -1e-30, 1e-5], np.float32)
    _, _, d2 = activation("sigmoid", z, order=2)
    np.testing.assert_allclose(d2, -z.astype(np.float64) / 8, rtol=2e-7)  # f'' = -z / 8 + O(z^3)


def test_tanh_matches_torch_and_keeps_the_sign_of_zero():
    for dt in (np.float32, np.float64):
        z = np.concatenate([[0.0, -0.0], _RNG.uniform(-10, 10, 500), np.geomspace(1e-30, 1, 50)]).astype(dt)
        f = activation("tanh", z)
        want = torch.tanh(torch.from_numpy(z)).numpy()
        np.testing.assert_array_equal(np.signbit(f), np.signbit(want))
        np.testing.assert_allclose(f, want, rtol=3 * np.finfo(dt).eps, atol=0)


def test_special_values():
    for dt in (np.float32, np.float64):
        z = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dt)
        for kind, want in {
            "tanh": ([1, -1, 0, -0.0], [0, 0, 1, 1], [0, 0, 0, 0]),
            "sigmoid": ([1, 0, 0.5, 0.5], [0, 0, 0.25, 0.25], [0, 0, 0, 0]),
            "softplus": ([np.inf, 0, np.log(2), np.log(2)], [1, 0, 0.5, 0.5], [0, 0, 0.25, 0.25]),
        }.items():
            got = activation(kind, z, order=2)
            for k in range(3):
                assert np.isnan(got[k][0]), (kind, k)
                np.testing.assert_array_equal(got[k][1:], np.array(want[k], dt), err_msg=f"{kind} {k}")
            assert np.signbit(got[0][4]) == (kind == "tanh") and not np.signbit(got[0][3]), kind
