"""``EigenResult.steps`` is the count of operator products (what ``max_steps`` caps), as returned;
its documentation said "Lanczos steps taken", a third of it with ``block_size=3`` (105 products were
35 block steps)."""

import numpy as np
import pytest

from optkern import hessian


@pytest.mark.parametrize("block_size, max_basis", [(1, None), (3, None), (2, 8), (4, None)])
def test_steps_counts_the_products(block_size, max_basis):
    d = np.linspace(0.0, 1.0, 61) ** 3
    op = hessian.from_hvp(lambda v: d * v, 61, matmat=lambda V: d[:, None] * V)
    done = []
    r = hessian.top_eigenvalues(
        op, 2, block_size=block_size, max_basis=max_basis, max_steps=61, progress=lambda k, total: done.append(k)
    )
    assert r.steps == done[-1] == op.num_matvecs


@pytest.mark.parametrize("block_size", [1, 2, 3, 4])
@pytest.mark.parametrize("cap", [7, 20, 31])
def test_max_steps_caps_the_products_that_steps_counts(block_size, cap):
    # (what the doc promises, observed: steps counts products, not block steps, and max_steps caps
    # them; a tolerance never met, so the cap is what stops it)
    d = np.linspace(0.0, 1.0, 61) ** 3
    op = hessian.from_hvp(lambda v: d * v, 61, matmat=lambda V: d[:, None] * V)
    r = hessian.top_eigenvalues(op, 2, block_size=block_size, max_steps=cap, tol=1e-15)
    assert not r.converged
    assert r.steps == op.num_matvecs <= cap
    assert r.steps > cap - block_size  # (stopped by the cap: no room for another block)
