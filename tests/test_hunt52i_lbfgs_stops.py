"""optim.LBFGS stops where torch.optim.LBFGS stops on its two tolerance_change rules (float64).

The iterate-by-iterate comparisons elsewhere run with the default tolerance_change = 1e-9, which
their problems never reach before max_iter / max_eval / tolerance_grad: dropping either rule
(|loss - prev_loss| < tolerance_change, max |t d| <= tolerance_change) left every float64 test
passing. Here each rule is the one that ends the step, and the points evaluated, n_iter and
func_evals must equal torch's (points to 1e-10 relative)."""

import numpy as np
import pytest

from test_lbfgs import rosen, rosen_grad
from test_lbfgs import run_pair as _run_pair

torch = pytest.importorskip("torch")


def run_pair(scale, **hp):
    """One step of each from test_lbfgs's start on Rosenbrock's function times ``scale``: the points
    each closure saw and the two states."""
    x0 = np.array([-1.2, 1.0, 0.3, -0.4, 0.9])
    seen_t, seen_o, ts, os_ = _run_pair(lambda x: (scale * rosen(x), scale * rosen_grad(x)), x0, 1, **hp)[:4]
    return seen_t, seen_o, ts, os_


def check_same(seen_t, seen_o, ts, os_, max_iter):
    assert len(seen_t) == len(seen_o)
    for a, b in zip(seen_t, seen_o):
        assert np.max(np.abs(a - b)) <= 1e-10 * np.max(np.abs(a))
    assert (ts["n_iter"], ts["func_evals"]) == (os_["n_iter"], os_["func_evals"])
    assert ts["n_iter"] < max_iter  # a tolerance stopped it, not max_iter


def test_loss_change_rule_stops_where_torch_stops():
    """|loss - prev_loss| < tolerance_change ends the step (strong Wolfe: its steps stay above the
    tolerance; without a line search this problem's fixed steps meet the step-length rule first)."""
    seen_t, seen_o, ts, os_ = run_pair(
        1.0, lr=1.0, max_iter=200, tolerance_grad=0.0, tolerance_change=1e-3, line_search_fn="strong_wolfe"
    )
    check_same(seen_t, seen_o, ts, os_, 200)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_step_length_rule_stops_where_torch_stops(line_search_fn):
    """max |t d| <= tolerance_change ends the step: the loss is scaled by 1e8, so its changes stay
    far above tolerance_change while the steps shrink below it."""
    lr = 1.0 if line_search_fn else 1e-11
    seen_t, seen_o, ts, os_ = run_pair(
        1e8, lr=lr, max_iter=200, tolerance_grad=0.0, tolerance_change=1e-2, line_search_fn=line_search_fn
    )
    check_same(seen_t, seen_o, ts, os_, 200)
