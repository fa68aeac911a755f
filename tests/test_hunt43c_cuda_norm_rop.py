"""The CUDA normalization R-operator's row sums (cuda/norm_rop.cu) in double, as the CPU's
(test_hunt43c_norm_rop.py): a layer-norm row of 65536 directions R{h} = 1000 + small.

Skips (with the reason) without CuPy, without the CUDA module or without a device.
"""

import pytest

from gpu import require_gpu

cp, _ = require_gpu()

import test_hunt43c_norm_rop as base  # noqa: E402
from optkern.nn import normalization as nz  # noqa: E402


def _run_gpu(p, axis):
    h, g, b, vg, vb, rh, dy, rdy = (cp.asarray(a) for a in p)
    _, saved = nz.norm_forward(h, g, b, base.EPS, axis)
    ry, rs = nz.norm_rop_forward(rh, g, vg, vb, saved, axis)
    out = (ry, *rs, *nz.norm_rop_backward(dy, rdy, g, vg, saved, rs, axis))
    return [cp.asnumpy(a) for a in out]


@pytest.mark.parametrize("offset", [100.0, 1000.0])
def test_cuda_layer_norm_long_row_with_offset_directions(offset):
    p = base._problem((1, 65536), offset, seed=1)
    err = base._errors(_run_gpu(p, 1), base._reference(p, 1))
    for k, e in err.items():
        assert e < {"m(x̂ R{h})": 1e-3, "R{dh}": 1e-5}.get(k, 2e-6), (k, err)
