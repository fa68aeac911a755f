"""CUDA twin of tests/test_hunt36_sam.py: float64 SAM's ascent for a gradient of subnormal entries
takes its scale from the rescanned sum (rules::sam_scale_rescanned), as the CPU's does; the step
against the NumPy reference on the gradient scaled by an exact power of two, and the CPU's step
within the rounding of the two sums' orders (ASAM with w = 1.5 too: tests/test_cuda_hunt36_asam.py)."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _backend  # noqa: E402

CPU = _backend.cpu
EPS = np.finfo(np.float64).eps
SCALE = 2.0**1000


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("scale", [1e-310, 1e-320, 3.5e-323])
@pytest.mark.parametrize("n", [1, 1000, 70001])
def test_float64_ascent_of_a_subnormal_gradient(scale, n, adaptive):
    g = np.random.default_rng(n).standard_normal(n) * scale
    if not np.any(g):
        g[0] = 5e-324
    p0 = np.full(n, 1.5) if adaptive else np.zeros(n)
    p, b, out = cp.asarray(p0), cp.empty(n), cp.zeros(1)
    K.sam_perturb_([p], [cp.asarray(g)], [b], 0.05, 0.0, out, adaptive)
    gs = g * SCALE
    delta = 0.05 * (p0 * p0) * gs / np.linalg.norm(p0 * gs) if adaptive else 0.05 * gs / np.linalg.norm(gs)
    want = p0 + delta
    got = cp.asnumpy(p)
    assert np.all(np.abs(got - want) <= 4 * EPS * np.abs(p0) + 16 * EPS * np.abs(delta))
    pc = p0.copy()
    CPU.sam_perturb_([pc], [g], [np.empty(n)], 0.05, 0.0, np.zeros(1), adaptive)
    assert np.all(np.abs(got - pc) <= 4 * EPS * np.abs(p0) + 8 * EPS * np.abs(delta))
    np.testing.assert_array_equal(cp.asnumpy(b), p0)


def test_in_range_gradient_keeps_its_bits_against_the_cpu():
    g = np.random.default_rng(9).standard_normal(4099)
    p0 = np.random.default_rng(10).standard_normal(4099)
    p = cp.asarray(p0)
    K.sam_perturb_([p], [cp.asarray(g)], [cp.empty(4099)], 0.05, 1e-12, cp.zeros(1), False)
    pc = p0.copy()
    CPU.sam_perturb_([pc], [g], [np.empty(4099)], 0.05, 1e-12, np.zeros(1), False)
    np.testing.assert_allclose(cp.asnumpy(p), pc, rtol=0, atol=4 * EPS * 0.05)
