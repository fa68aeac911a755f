"""CUDA twin of test_hunt36_curvature: traces of CuPy operators whose partial sums pass float64's
range though the products, samples and trace are in it (trace._column_dots, _mean, _diagonal_sum,
_sketch_basis: the sums taken again scaled by a power of two, on the device), as the CPU's.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import hessian as H

cp, _cuda = require_gpu()

D = np.array([1.0, 1, -1, -1, 0.5])


@pytest.mark.parametrize(
    ("method", "m", "c"), [("hutchinson", 30, 1.5e308), ("hutch++", 3, 1.5e308), ("hutch++", 30, 1.5e308)]
)
def test_trace_of_a_cupy_operator_whose_partial_sums_overflow(method, m, c):
    r = H.trace(cp.asarray(np.diag(c * D)), method, num_matvecs=m, seed=1)
    r1 = H.trace(np.diag(D), method, num_matvecs=m, seed=1)
    assert abs(r.estimate / c - r1.estimate) <= 1e-13 * np.abs(D).sum()
    if method == "hutchinson":
        np.testing.assert_array_equal(r.samples, c / 2)


def test_trace_of_a_huge_cupy_operator_is_the_cpus():
    A = np.diag(np.linspace(1.0, 9.0, 7)) * 1e306
    r, rc = H.trace(cp.asarray(A), num_matvecs=20, seed=3), H.trace(A, num_matvecs=20, seed=3)
    assert r.estimate == pytest.approx(rc.estimate, rel=1e-14)
    np.testing.assert_allclose(r.samples, rc.samples, rtol=1e-14)
