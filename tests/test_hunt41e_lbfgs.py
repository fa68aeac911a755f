"""L-BFGS defects (41st hunt, e)."""

import numpy as np
import pytest

from optkern.optim import LBFGS


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_read_only_gradient_is_taken(line_search_fn, dtype):
    # A closure returning a read-only gradient (JAX's arrays through np.asarray, a frozen buffer) of
    # a single param raised the native call's unnamed "ValueError: array is not writeable": the
    # gradient's statistics pass asked for write access to what it only reads.
    d = np.arange(1.0, 7.0, dtype=dtype)

    def run(frozen):
        x = np.ones(6, dtype=dtype)
        opt = LBFGS([x], max_iter=5, line_search_fn=line_search_fn)

        def closure():
            g = d * x
            g.setflags(write=not frozen)
            return float(0.5 * (d * x * x).sum()), [g]

        losses = [opt.step(closure) for _ in range(3)]
        return x, losses

    x, losses = run(True)
    x_ref, losses_ref = run(False)
    np.testing.assert_array_equal(x, x_ref)
    assert losses == losses_ref
    assert losses[-1] < losses[0]
