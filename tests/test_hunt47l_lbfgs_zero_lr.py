"""LBFGS with the strong-Wolfe line search and a step of length 0 (``lr = 0``, a valid value) takes
it without searching: the line search divided by its zero-width bracket, and a ZeroDivisionError
escaped from inside it (from the second step on, after the history had advanced; torch's LBFGS
fails alike)."""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_a_zero_lr_with_strong_wolfe_leaves_the_params_and_goes_on_once_raised(dt):
    x = np.linspace(-1, 1.3, 5).astype(dt)
    c = np.array([1.0, 2.0, 4.0, 0.5, 3.0], dt)

    def closure():
        return float((0.5 * c * x * x + 0.125 * x**4).sum()), [(c * x + 0.5 * x**3).astype(dt)]

    opt = O.LBFGS([x], lr=0.0, max_iter=5, line_search_fn="strong_wolfe")
    x0 = x.copy()
    for _ in range(3):
        loss = opt.step(closure)
        assert np.array_equal(x, x0) and loss == closure()[0]
    opt.param_groups[0]["lr"] = 1.0
    opt.step(closure)
    assert np.isfinite(x).all() and closure()[0] < 0.5 * loss
