"""CUDA twin of tests/test_hunt37_clip_pnorm.py: grad_norm for p not in {1, 2, inf} scaled by the
power of two of max |g| (rules/pnorm.hpp: a max pass, then the scaled sum reading it on the
device), within two ulps of the exact norm at every scale, as the CPU's."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from test_hunt37_clip_pnorm import _grads, exact_norm, ulps  # noqa: E402


@pytest.mark.parametrize("p", [1.5, 3.0, 6.0])
@pytest.mark.parametrize(("dtype", "scale"), [(np.float64, 1e-120), (np.float64, 1e300), (np.float32, 1e30)])
def test_p_norm_within_two_ulps_of_the_exact_norm(p, dtype, scale):
    gs = _grads(scale, dtype, 1)
    out = cp.zeros(1)
    K.grad_norm([cp.asarray(g) for g in gs], p, out)
    got = float(out.get()[0])
    assert abs(ulps(got, exact_norm(gs, p))) <= 2.0


@pytest.mark.parametrize("p", [3.0, 5.0])
def test_zero_and_nonfinite_norms(p):
    out = cp.zeros(1)
    K.grad_norm([cp.zeros(5)], p, out)
    assert float(out.get()[0]) == 0.0
    K.grad_norm([cp.asarray([1.0, np.inf])], p, out)
    assert float(out.get()[0]) == np.inf
    K.grad_norm([cp.asarray([1.0, np.nan])], p, out)
    assert np.isnan(float(out.get()[0]))


@pytest.mark.parametrize(("p", "scale"), [(3.0, 1e120), (1.5, 1e30), (5.0, 1e-30)])
def test_distributed_p_norm_on_one_rank(p, scale):
    """_clip_global._global_norm's scaled branch on CuPy buffers (frexp, ldexp, log: tests/test_hunt37_clip_dist.py)."""
    pytest.importorskip("mpi4py")
    from mpi4py import MPI

    from optkern import clip

    gs = _grads(scale, np.float64, 2)
    total = clip.clip_grad_norm_([cp.asarray(g) for g in gs], 1e300, norm_type=p, comm=MPI.COMM_WORLD)
    assert abs(ulps(float(cp.asnumpy(total).ravel()[0]), exact_norm(gs, p))) <= 2.0
