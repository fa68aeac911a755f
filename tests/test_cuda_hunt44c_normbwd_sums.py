"""CUDA twin of test_hunt44c_normbwd_sums.py (hunt 44c): the float32 row-norm backward's sums Σ g and
Σ g x̂ in double (rules::grad_means), each thread's share of a row summed in double as the CPU's
block_sums. In float each of a row's 256 threads summed 256 terms of 65536 alike: dx 8.5e-6 relative
off the float32 formula with exact sums (g = 1 + 0.01 N; group norm's runs 9.4e-6), 0.49 where dx nearly
vanishes (under tools/cuda_emu before the fix). Checked against the float32 formula with exact sums and
the float64 reference. Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on
the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu
from optkern.norm import functional as F
from test_hunt44c_normbwd_sums import _check, _dys

cp, _ = require_gpu()

f32 = np.float32


@pytest.mark.parametrize("kind", ["offset_g", "large_g", "dx_vanishes"])
def test_layer_norm_long_rows(kind):
    rng = np.random.default_rng(44)
    M = 65536
    x = rng.standard_normal((2, M)).astype(f32)
    w = (3 + 0.1 * rng.standard_normal(M)).astype(f32) if kind == "large_g" else np.ones(M, f32)
    dy = _dys(x, rng)[kind]
    _, sv = F.layer_norm(cp.asarray(x), M, cp.asarray(w), None, 1e-5)
    dx, _, _ = F.layer_norm_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), sv, param_grads=False)
    mu, rs = cp.asnumpy(sv.mean), cp.asnumpy(sv.rstd)
    _check(cp.asnumpy(dx), dy, x, w, mu, rs, False, 1e-5, 0.1 if kind == "dx_vanishes" else 1e-6)


@pytest.mark.parametrize("kind", ["offset_g", "dx_vanishes"])
def test_group_norm_long_runs(kind):
    rng = np.random.default_rng(45)
    x = rng.standard_normal((1, 4, 16384)).astype(f32)
    dy = _dys(x, rng)[kind]
    _, sv = F.group_norm(cp.asarray(x), 2, None, None, 1e-5)
    dx, _, _ = F.group_norm_backward(cp.asarray(dy), cp.asarray(x), None, sv, param_grads=False)
    mu, rs = cp.asnumpy(sv.mean), cp.asnumpy(sv.rstd)
    _check(
        cp.asnumpy(dx),
        dy,
        x.reshape(2, -1),
        np.ones(1, f32),
        mu,
        rs,
        False,
        1e-5,
        0.1 if kind == "dx_vanishes" else 1e-6,
    )
