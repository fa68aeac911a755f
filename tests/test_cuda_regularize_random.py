"""CUDA penalty kernels (cuda/regularize.cu) and the float32 Philox fills (cuda/dropout.cu)
against the CPU module on the same inputs: launch sites no CUDA test reached before (found by
the emulator's launch-site coverage, tools/cuda_emu/run).

The penalty gradient is element-wise (l2 p + l1 sign(p) added to g): equal to the CPU's to one
rounding of each operation (relative to the terms: the sum may cancel); the value is a float64
sum in another blocking (rtol 1e-12).
Philox streams are the same bits on both devices, so the fills are compared bit for bit.
"""

import numpy as np
import pytest

from gpu import require_gpu, same_bits
from optkern import random as ok_random
from optkern import regularize

cp, _cuda = require_gpu()

SIZES = [1, 7, 1023, 0, 100003]
# more arrays than one launch's table (cuda/regularize.cu: 64 per launch)
MANY = [(i * 37) % 300 + 1 for i in range(150)]
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


def _arrays(rng, sizes, dtype):
    # a few exact zeros: sign(0) = 0, the minimal-norm subgradient
    out = []
    for n in sizes:
        x = rng.standard_normal(n).astype(dtype)
        x[::11] = 0
        out.append(x)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes", [SIZES, MANY], ids=["odd sizes", "150 arrays"])
@pytest.mark.parametrize("l1,l2", [(1e-3, 0.0), (0.0, 1e-2), (1e-3, 1e-2)])
def test_penalty_grad_and_value_match_cpu(dtype, sizes, l1, l2):
    rng = np.random.default_rng(len(sizes) * 7 + int(l1 * 1e4) + int(l2 * 1e3))
    p, g = _arrays(rng, sizes, dtype), _arrays(rng, sizes, dtype)
    # one rounding of each of the two operations, relative to the terms (the sum may cancel)
    bound = [2 * EPS[dtype] * (np.abs(x) + l2 * np.abs(y) + l1) for x, y in zip(g, p)]
    ref_g = [
        x.astype(np.float64) + l2 * y.astype(np.float64) + l1 * np.sign(y.astype(np.float64)) for x, y in zip(g, p)
    ]
    pd, gd = [cp.asarray(x) for x in p], [cp.asarray(x) for x in g]
    want = regularize.add_penalty_grad_(p, g, l1, l2, return_value=True)
    got = regularize.add_penalty_grad_(pd, gd, l1, l2, return_value=True)
    assert isinstance(got, cp.ndarray) and got.shape == ()
    np.testing.assert_allclose(float(got), want, rtol=1e-12)
    # the CPU's bits (rules::penalty_grad rounds explicitly), and the float64 reference of the
    # gradient, computed before the calls wrote g
    for i, (a, b) in enumerate(zip(gd, g)):
        same_bits(cp.asnumpy(a), b, f"grads[{i}]: the CPU's bits")
        got_i = cp.asnumpy(a).astype(np.float64)
        assert (np.abs(got_i - ref_g[i]) <= bound[i]).all(), f"grads[{i}] vs the float64 reference"
    for i, (a, b) in enumerate(zip(pd, p)):
        same_bits(cp.asnumpy(a), b, f"params[{i}] must not change")
    value = regularize.penalty(pd, l1, l2)
    np.testing.assert_allclose(float(value), regularize.penalty(p, l1, l2), rtol=1e-12)
    # the float64 reference: l1 sum|p| + l2 / 2 sum p^2
    ref = sum(l1 * np.abs(x.astype(np.float64)).sum() + l2 / 2 * (x.astype(np.float64) ** 2).sum() for x in p)
    np.testing.assert_allclose(float(value), ref, rtol=1e-12, atol=1e-300)


def test_penalty_without_value_and_empty_lists():
    p = [cp.asarray(np.arange(5, dtype=np.float32) - 2)]
    g = [cp.zeros(5, cp.float32)]
    assert regularize.add_penalty_grad_(p, g, 0.5, 0.0) is None
    np.testing.assert_array_equal(cp.asnumpy(g[0]), [-0.5, -0.5, 0.0, 0.5, 0.5])
    assert float(regularize.penalty([cp.zeros(0, cp.float64)], 1.0, 1.0)) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["uniform", "rademacher"])
@pytest.mark.parametrize("n,offset", [(1, 0), (7, 3), (1023, 5), (100003, 2**32 - 2), (4, 2**64 - 4)])
def test_philox_fills_are_the_cpu_bits(dtype, kind, n, offset):
    fill = getattr(ok_random, kind)
    want = fill(n, seed=1234567, offset=offset, dtype=dtype)
    got = fill(n, seed=1234567, offset=offset, dtype=dtype, like=cp.zeros(1))
    assert isinstance(got, cp.ndarray) and got.dtype == dtype
    same_bits(cp.asnumpy(got), want, f"{kind} {np.dtype(dtype).name} n={n} offset={offset}")
