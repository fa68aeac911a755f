"""The CUDA normalization R-operator (cuda/norm_rop.cu) on the cases of test_hunt28_nn_rop_directions.py
(directions near the dtype's max: the groups redone scaled, one thread a group) and of
test_hunt28_nn_rop_shapes.py (each array's shape checked, not only its element count).

Skips (with the reason) without CuPy, without the CUDA module or without a device.
"""

import numpy as np
import pytest

from gpu import require_gpu

cp, _ = require_gpu()

import test_hunt28_nn_rop_directions as base  # noqa: E402
from optkern.nn import normalization as nz  # noqa: E402


def _dev(*a):
    return [cp.asarray(t) for t in a]


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_forward_with_rh_near_the_max(dtype, axis):
    rng, h, g, b, vg, vb = base._problem(dtype, axis, 0)
    rh = base._big_rows(rng, dtype, *h.shape, axis)
    H, G, B, VG, VB, RH = _dev(h, g, b, vg, vb, rh)
    _, saved = nz.norm_forward(H, G, B, base.EPS, axis)
    ry, (rx, mx) = nz.norm_rop_forward(RH, G, VG, VB, saved, axis)
    want = base._ref_forward(h, g, b, vg, vb, rh, axis, base.KBIG[dtype])
    for got, w, what in zip((ry, rx, mx), want, ("R{y}", "R{x̂}", "m(x̂ R{h})")):
        base._close(cp.asnumpy(got), w, dtype, what)


@pytest.mark.parametrize("case", sorted(base.CASES))
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_backward_with_directions_near_the_max(dtype, axis, case):
    big_dy, big_rdy, big_rh = base.CASES[case]
    rng, h, g, b, vg, vb = base._problem(dtype, axis, 1)
    N, D = h.shape
    small = lambda: (0.3 * rng.standard_normal((N, D))).astype(dtype)
    dy = base._big_rows(rng, dtype, N, D, axis) if big_dy else small()
    rdy = base._big_rows(rng, dtype, N, D, axis) if big_rdy else small()
    rh = base._big_rows(rng, dtype, N, D, axis) if big_rh else small()
    H, G, B, VG, VB, DY, RDY, RH = _dev(h, g, b, vg, vb, dy, rdy, rh)
    _, saved = nz.norm_forward(H, G, B, base.EPS, axis)
    _, (rx, mx) = nz.norm_rop_forward(RH, G, VG, VB, saved, axis)
    got = nz.norm_rop_backward(DY, RDY, G, VG, saved, (rx, mx), axis)
    k = base.KBIG[dtype]
    a, c = (k if big_dy else 0), (k if big_rh or not big_dy else 0)
    want = base._ref_backward(h, g, b, vg, dy, rdy, cp.asnumpy(rx), cp.asnumpy(mx), axis, a, c)
    for gt, w, what in zip(got, want, ("dh", "R{dh}", "R{dγ}", "R{dβ}")):
        base._close(cp.asnumpy(gt), w, dtype, what)


@pytest.mark.parametrize("axis", [0, 1])
def test_cuda_refuses_a_transposed_direction(axis):
    rng = np.random.default_rng(1)
    h, rh = (cp.asarray(rng.standard_normal((4, 6)).astype(np.float32)) for _ in range(2))
    g, b = cp.ones(6, np.float32), cp.zeros(6, np.float32)
    _, saved = nz.norm_forward(h, g, b, 1e-5, axis)
    with pytest.raises(ValueError, match="^rh: expected shape"):
        nz.norm_rop_forward(cp.ascontiguousarray(rh.T), g, g, b, saved, axis)
    _, rs = nz.norm_rop_forward(rh, g, g, b, saved, axis)
    with pytest.raises(ValueError, match="^dy: expected shape"):
        nz.norm_rop_backward(rh.reshape(-1), rh, g, g, saved, rs, axis)
