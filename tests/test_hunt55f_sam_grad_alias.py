"""SAM given a gradient beside the params in one buffer (no shared memory): taken as any other.

(Its gradient in a param's memory was refused here by name (h331); it now steps as the reference
SAM does, as optkern.torch.SAM's does: tests/test_hunt55k_sam_grad_alias.py.)
"""

from __future__ import annotations

import numpy as np

import optkern.optim as O


def test_gradients_beside_the_params_in_one_buffer_are_taken():
    n = 1023
    buf = np.random.default_rng(0).standard_normal(2 * n)
    p, g = buf[:n], buf[n:]
    w, gv = p.copy(), g.copy()
    sam = O.SAM(O.SGD([p], lr=0.1), rho=0.2)
    sam.first_step([g])
    np.testing.assert_allclose(p, w + 0.2 * gv / (np.linalg.norm(gv) + 1e-12), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(g, gv)
