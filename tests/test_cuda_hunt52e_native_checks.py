"""Hunt 52e's native checks on the CUDA module (run on a GPU, or on the CPU under tools/cuda_emu/run).

* Integer arguments converted by name (def_named's checks::Int, shared with optkern._cpu).
* Norm forwards' eps refused where not finite or not usable in float32 statistics (check_norm_eps).
* softmax_xent_fwd with a label outside [0, C): the GPU cannot refuse it before launching (a host
  check of device labels synchronizes); its row of loss, logp and dlogits is NaN, never left unwritten.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import require_gpu

cp, cuda = require_gpu()


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (1.5, TypeError, r"^seed: expected an integer, got float$"),
        (True, TypeError, r"^seed: expected an integer, got bool$"),
        (2**64, ValueError, r"^seed: must be <= 18446744073709551615, got 18446744073709551616$"),
    ],
)
def test_integers_are_named(bad, error, message):
    out = cp.full(7, -1.0)
    with pytest.raises(error, match=message):
        cuda.random_uniform_(out, bad, 0)
    assert bool((out == -1.0).all())
    cuda.random_uniform_(out, np.uint64(5), np.int32(0))
    assert bool(((out >= 0) & (out < 1)).all())


@pytest.mark.parametrize(
    ("dtype", "eps", "message"),
    [
        (np.float64, float("inf"), r"^eps: must be finite, got inf$"),
        (np.float32, 1e39, r"^eps: 1e\+39 overflows float32 \(the statistics' dtype\)"),
        (np.float32, 1e-50, r"^eps: 1e-50 rounds to 0 in float32 \(the statistics' dtype\)"),
    ],
)
def test_norm_eps_is_refused(dtype, eps, message):
    st = np.float64 if dtype == np.float64 else np.float32
    x = cp.asarray(np.random.default_rng(0).standard_normal((3, 7)).astype(dtype))
    out, mean, rstd = cp.full((3, 7), -1.0, dtype), cp.full(3, -1.0, st), cp.full(3, -1.0, st)
    with pytest.raises(ValueError, match=message):
        cuda.row_norm_forward(x, None, None, out, mean, rstd, 3, 1, 7, 1, eps, False)
    m, r, v = (cp.full(7, -1.0, st) for _ in range(3))
    with pytest.raises(ValueError, match=message):
        cuda.channel_stats(x, m, r, v, 3, 7, 1, eps)
    assert all(bool((a == -1.0).all()) for a in (out, mean, rstd, m, r, v))


@pytest.mark.parametrize("bad", [-1, 4, 2**40])
def test_a_bad_label_gives_a_nan_row_not_an_unwritten_one(bad):
    z = cp.asarray(np.random.default_rng(1).standard_normal((3, 4)))
    labels = cp.asarray(np.array([0, bad, 2], np.int64))
    loss, logp, g = cp.full(3, 7.0), cp.full((3, 4), 7.0), cp.full((3, 4), 7.0)
    cuda.softmax_xent_fwd(z, labels, loss, logp, g)
    assert bool(cp.isnan(loss[1])) and bool(cp.isnan(logp[1]).all()) and bool(cp.isnan(g[1]).all())
    for row in (0, 2):
        assert bool(cp.isfinite(loss[row])) and bool(cp.isfinite(logp[row]).all()) and bool(cp.isfinite(g[row]).all())
