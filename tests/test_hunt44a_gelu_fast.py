"""GELU's rule vectorizes again, at its accuracy (rules::nnmath::gelu_terms, tools/gelu_coeffs.py).

The 43rd session made GELU correctly rounded in float32 over libm's double erfc: a scalar call per
element, the activation loop no longer vectorized (16M float32 forward 145-171 -> 233-238 ms, 7x
torch's). Phi now comes from two polynomials (1/2 + z P(z^2) near 0, the Mills ratio in
Shepherd-Laframboise's variable elsewhere) and the rule's one exp. And the double exp_ (sigmoid,
tanh, GELU) converted 2^k's exponent double -> int64, which AVX2 lacks: GCC left the whole float64
loop -- and GELU's, computed in double -- of the x86-64-v3 clone scalar.

Checked here: every activation loop of cpp/activation_loop.hpp vectorizes for AVX2 (GCC's dump, as
tests/test_rules_vectorize.py), and GELU's f, f', f'' on a dense random grid, float64 within 5 ulps
(of the value, as test_hunt43g_gelu_tails) and float32 correctly rounded wherever normal, both
sides of the polynomials' switch at |z| = 0.75 included.
"""

from __future__ import annotations

import re

import mpmath
import numpy as np
import pytest

from optkern.nn.activations import activation
from test_hunt43g_gelu_tails import check_within_ulps
from test_rules_vectorize import _gcc, vectorizer_sections

# identity is left out: GCC turns its loops into memcpy / memset calls, not vector loops. (softplus
# joined when its log1p became rules::nnmath::log1p01_, test_hunt44j_softplus_fast.)
VECTOR_ACTS = ("tanh", "relu", "gelu", "sigmoid", "softplus")

_RNG = np.random.default_rng(44)
_Z = np.concatenate(
    [
        _RNG.uniform(-40, 40, 600),
        _RNG.uniform(-3, 3, 600),
        _RNG.choice([-1, 1], 300) * np.geomspace(1e-6, 38, 300),
        np.nextafter(0.75, [-1.0, 2.0]),
        np.nextafter(-0.75, [-1.0, 2.0]),
        [0.75, -0.75],
    ]
)


@pytest.mark.spawns
def test_every_activation_loop_vectorizes_for_avx2(tmp_path):
    cxx = _gcc()
    if cxx is None:
        pytest.skip("needs GCC on x86-64 (the vectorizer whose dump this reads)")
    src = ['#include "activation_loop.hpp"']
    for act in VECTOR_ACTS:
        for t in ("float", "double"):
            src.append(
                f"template void optkern::activation_range<{t}, optkern::rules::Act::{act}>"
                f"(const {t}*, {t}*, {t}*, {t}*, int64_t);"
            )
    sections = vectorizer_sections(cxx, tmp_path, src, ["-fopenmp-simd"])
    counts = {}
    for s in sections:
        head = s.split(" (", 1)[0]
        if "activation_range<" in head:
            m = re.search(r"vectorized (\d+) loops in function", s)
            counts[head] = int(m.group(1)) if m else 0
    assert len(counts) == 2 * len(VECTOR_ACTS), sorted(counts)
    # three loops each: f, f'; f, f'; f alone
    scalar = sorted(name for name, n in counts.items() if n != 3)
    assert not scalar, f"activation loops GCC did not vectorize: {scalar}"


def test_gelu_float64_within_5_ulps_on_a_dense_grid():
    z = _Z.astype(np.float64)
    check_within_ulps(z, activation("gelu", z, order=2), np.float64, 5.0)


def _round_f32(v) -> np.float32:
    with mpmath.workprec(24):
        return np.float32(float(+mpmath.mpf(v)))


def test_gelu_float32_correctly_rounded_on_a_dense_grid():
    z = _Z.astype(np.float32)
    got = activation("gelu", z, order=2)
    mpmath.mp.dps = 40
    for k in range(3):
        want = []
        for v in z:
            x = mpmath.mpf(float(v))
            cdf, pdf = mpmath.ncdf(x), mpmath.npdf(x)
            want.append(_round_f32((x * cdf, cdf + x * pdf, pdf * (2 - x * x))[k]))
        want = np.array(want, np.float32)
        normal = np.abs(want) >= np.finfo(np.float32).tiny
        bad = np.nonzero(normal & (got[k] != want))[0]
        assert bad.size == 0, (k, z[bad][:5], got[k][bad][:5], want[bad][:5])
    # (and the subnormal and 0 results within a subnormal, as the 43rd's check)
    check_within_ulps(z, got, np.float32, 1.0)


def test_gelu_forward_only_equals_the_full_pass():
    """order 0 and 1 (the loops that leave f'' or both derivatives out) give the full pass's bits."""
    for dt in (np.float32, np.float64):
        z = _Z.astype(dt)
        f, d1, _ = activation("gelu", z, order=2)
        np.testing.assert_array_equal(activation("gelu", z), f)
        f1, d11 = activation("gelu", z, order=1)
        np.testing.assert_array_equal(f1, f)
        np.testing.assert_array_equal(d11, d1)
