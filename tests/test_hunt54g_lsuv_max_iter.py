"""lsuv_'s max_iter is a loop count: past int64 it is refused by name before anything is written (as
every curvature loop count, test_hunt54a_curvature_loop_caps.py); the bound itself still runs."""

import numpy as np
import pytest

from optkern import init as I


def _layer():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 7))
    x = rng.standard_normal((33, 7))
    return w, x, (lambda xb: [xb @ w.T])


@pytest.mark.parametrize("bad", [2**63, 2**70, np.uint64(2**64 - 1)])
def test_max_iter_past_int64_is_refused_before_any_write(bad):
    w, x, forward = _layer()
    w0 = w.copy()
    with pytest.raises(ValueError, match="max_iter"):
        I.lsuv_([w], forward, x, rng=0, max_iter=bad)
    np.testing.assert_array_equal(w, w0)


def test_max_iter_at_int64_max_runs_to_unit_variance():
    w, x, forward = _layer()
    (var,) = I.lsuv_([w], forward, x, rng=0, max_iter=2**63 - 1)
    assert abs(var - 1.0) <= 0.1
    assert abs(float(np.var(x @ w.T)) - 1.0) <= 0.1
