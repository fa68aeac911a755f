"""CUDA twin of test_hunt41k_lanczos: a zero eigenvalue of a CuPy operator converges, as on the CPU.

The convergence rule (``BlockKrylov.converged``) is host Python shared by both paths: a CuPy operator
must take the same decisions (converged, steps) as the NumPy one, and a scaled one as the unscaled.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import hessian

cp, _cuda = require_gpu()

EPS = float(np.finfo(np.float64).eps)


@pytest.mark.parametrize("c", [1.0, 1e-10, 1e10])
def test_zero_eigenvalue_of_a_cupy_operator_converges_as_on_the_cpu(c):
    A = np.diag(np.r_[0.0, 0.0, np.linspace(1.0, 2.0, 120)])
    cpu = hessian.top_eigenvalues(A, 1, "SA", max_steps=100)
    gpu = hessian.top_eigenvalues(cp.asarray(c * A), 1, "SA", max_steps=100)
    assert cpu.converged and cpu.steps < 100, (cpu.residuals, cpu.steps)
    assert (gpu.converged, gpu.steps) == (cpu.converged, cpu.steps)
    assert abs(gpu.eigenvalues[0] / c) <= 16 * EPS * 2.0
