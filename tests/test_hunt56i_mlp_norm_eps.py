"""``nn.MLP``'s ``norm_eps`` is checked by optkern.norm's one eps rule (56th session's leftover
pass, i): the constructor repeated the float32 checks of ``norm._common._eps`` in its own words
("the model's dtype"), so the two could drift. A bad value now gives the same error from both entry
points, naming each its own argument; float64 models and norm=None still take what float32 cannot.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import norm
from optkern.nn import MLP

F32_MAX = float(np.finfo(np.float32).max)
TINY = float(np.nextafter(np.float32(0), np.float32(1)))
BAD = [0.0, -1e-5, float("nan"), float("inf"), 1e-50, 2.0**-150, 1e39, np.float64(1e50), np.float64(1e-46), "x", None]
GOOD = [TINY, 2.0**-149, F32_MAX, 1e-5, np.float64(1e-3)]


def _error(call):
    try:
        call()
    except (TypeError, ValueError) as e:
        return type(e), str(e)
    return None


def _mlp(eps, norm_kind="layer", dtype=np.float32):
    return MLP([3, 4, 2], norm=norm_kind, norm_eps=eps, dtype=dtype)


@pytest.mark.parametrize("eps", BAD, ids=repr)
@pytest.mark.parametrize("kind", ["layer", "batch"])
def test_bad_norm_eps_is_the_norm_functions_error(eps, kind):
    x = np.ones((2, 4), np.float32)
    theirs = _error(lambda: norm.layer_norm(x, 4, eps=eps))
    ours = _error(lambda: _mlp(eps, kind))
    assert theirs is not None and theirs[1].startswith("eps: ")
    assert ours == (theirs[0], "norm_" + theirs[1])


@pytest.mark.parametrize("eps", GOOD, ids=repr)
def test_good_norm_eps_is_taken_by_both(eps):
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    y, _ = norm.layer_norm(x, 4, eps=eps)
    m = _mlp(eps)
    assert m.norm_eps == float(eps) and type(m.norm_eps) is float
    assert np.isfinite(m.loss(m.init_params(0), x[:, :3], np.array([0, 1])))


@pytest.mark.parametrize("eps", [1e-50, 1e39])
def test_float32_only_checks_stay_float32_and_norm_only(eps):
    # (float64 statistics, or no normalization at all, take what float32 cannot hold)
    assert _mlp(eps, dtype=np.float64).norm_eps == eps
    assert _mlp(eps, norm_kind=None).norm_eps == eps
    y, _ = norm.layer_norm(np.ones((2, 4)), 4, eps=eps)
    assert y.dtype == np.float64
