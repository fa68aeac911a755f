"""CUDA twin of test_hunt34_misc's SAM cases: ``sam_perturb_`` (cuda/sam.cu) of a gradient with a NaN
entry leaves the params at ``w`` bit for bit (the shared rule's scale is 0 for a non-finite norm, as
on the CPU), and ``optim.SAM.step`` on CuPy arrays refuses a NaN / Inf closure gradient with ``w``
and the state untouched, as on NumPy.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _backend, optim  # noqa: E402


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_sam_perturb_of_a_non_finite_gradient_keeps_w_bitwise_as_the_cpu(bad, adaptive):
    w = np.array([-0.0, 1.5, -2.25, 0.0, 3.0], np.float32)
    g = np.array([0.5, bad, 2.0, 3.0, -1.0], np.float32)
    p, b, out = cp.array(w), cp.full(5, 9, np.float32), cp.zeros(1)
    K.sam_perturb_([p], [cp.array(g)], [b], 0.05, 1e-12, out, adaptive)
    assert cp.asnumpy(p).tobytes() == w.tobytes() and cp.asnumpy(b).tobytes() == w.tobytes()
    pc, bc, oc = w.copy(), np.full(5, 9, np.float32), np.zeros(1)
    _backend.cpu.sam_perturb_([pc], [g], [bc], 0.05, 1e-12, oc, adaptive)
    assert pc.tobytes() == w.tobytes()
    assert np.isnan(float(cp.asnumpy(out)[0])) == np.isnan(oc[0]) and not np.isfinite(oc[0])


@pytest.mark.parametrize("at", [1, 2])
def test_sam_step_on_cupy_refuses_a_nan_closure_gradient(at):
    w = np.linspace(-1.0, 1.0, 7).astype(np.float32)
    p = cp.array(w)
    sam = optim.SAM(optim.Adam([p], lr=0.1), rho=0.05)
    calls = []

    def closure():
        calls.append(1)
        g = p + 1
        if len(calls) == at:
            g[3] = np.nan
        return 1.0, [g]

    with pytest.raises(ValueError, match="^closure: returned a gradient with NaN or Inf entries"):
        sam.step(closure)
    assert cp.asnumpy(p).tobytes() == w.tobytes()
    assert sam.base.state_dict()["state"] == {}
