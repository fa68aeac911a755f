"""Weight norm's backward with dw (or v) near the dtype's max.

With s = Σ dw v per row, dg = s / ‖v‖ and dv = (g / ‖v‖)(dw - (s / ‖v‖²) v). The kernels summed s
directly: float32 rows dw = [1.9e38, 1.9e38, 1.9e38, 0, 0, 0] with v ~ 1.5 gave s = inf, dg = inf and
dv = ±inf everywhere, where dg (3.1e38) and dv (~1e37) are in range; so did v ~ 1e30 with dw ~ 1e10
(s ~ 1e41 past the max, dg = s / ‖v‖ ~ 1e10). dv is linear in dw and of degree -1 in v, dg linear in
dw and of degree 0 in v: such rows are now computed again with dw and v scaled by powers of two.

Reference: torch's float64 autograd of torch._weight_norm on dw / 2^k and v / 2^j (exact), scaled back.
"""

import numpy as np
import pytest
import torch

import optkern
import optkern.norm as on

torch.set_num_threads(1)

BIG = {np.float32: 0.55 * 3.4028235e38, np.float64: 0.55 * 1.7976931348623157e308}
KBIG = {np.float32: 127, np.float64: 1023}
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def _reference(dw, v, g, kdw, kv):
    """float64 (dg, dv) of w = g v / ‖v‖ per row (dim 0), from dw 2^-kdw and v 2^-kv, scaled back."""
    tv = torch.tensor(np.ldexp(np.asarray(v, np.float64), -kv), requires_grad=True)
    tg = torch.tensor(np.asarray(g, np.float64).reshape(-1, *([1] * (v.ndim - 1))), requires_grad=True)
    torch._weight_norm(tv, tg, 0).backward(torch.tensor(np.ldexp(np.asarray(dw, np.float64), -kdw)))
    with np.errstate(over="ignore"):
        return np.ldexp(tg.grad.numpy().reshape(-1), kdw), np.ldexp(tv.grad.numpy(), kdw - kv)


def _close(got, want, dtype, what):
    assert got.dtype == dtype, what
    assert np.isfinite(got).all(), f"{what}: not finite: {got}"
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale, err_msg=what)


def _big_dw(dtype, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((3, 6)).astype(dtype)
    v[:, :3] = np.abs(v[:, :3]) + 1.0  # (Σ dw v of the leading three: past the max)
    g = rng.uniform(0.5, 1.0, 3).astype(dtype)
    dw = (rng.uniform(-0.01, 0.01, (3, 6)) * BIG[dtype]).astype(dtype)
    dw[:, :3] = BIG[dtype]
    return dw, v, g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dw_near_the_max(dtype):
    dw, v, g = _big_dw(dtype)
    _, saved = on.weight_norm(v, g, dim=0)
    dg, dv = on.weight_norm_backward(dw, v, g, saved)
    want = _reference(dw, v, g, KBIG[dtype], 0)
    _close(dg, want[0], dtype, "dg")
    _close(dv, want[1], dtype, "dv")


def v_near_the_max_root(dtype):
    """(dw, v, g, e): v ~ 2^(e + 4) and dw ~ 2^(e - 2), e = emax / 2 (the CUDA test's case too)."""
    rng = np.random.default_rng(1)
    e = np.finfo(dtype).maxexp // 2
    v = np.ldexp(rng.uniform(1.0, 2.0, (2, 5)), e + 4).astype(dtype)
    g = rng.uniform(0.5, 1.0, 2).astype(dtype)
    dw = np.ldexp(rng.uniform(1.0, 2.0, (2, 5)), e - 2).astype(dtype)
    return dw, v, g, e


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_v_near_the_max_root(dtype):
    """v ~ 2^(emax/2 + 4) and dw ~ 2^(emax/2 - 2): s = Σ dw v past the max, dg ~ 1e10 / 1e153."""
    dw, v, g, e = v_near_the_max_root(dtype)
    _, saved = on.weight_norm(v, g, dim=0)
    dg, dv = on.weight_norm_backward(dw, v, g, saved)
    want = _reference(dw, v, g, e, e)
    _close(dg, want[0], dtype, "dg")
    _close(dv, want[1], dtype, "dv")


def test_ordinary_rows_keep_their_bits_and_threads_do_not_matter():
    dtype = np.float32
    rng = np.random.default_rng(2)
    v = rng.standard_normal((400, 96)).astype(dtype)
    v[:, :3] = np.abs(v[:, :3]) + 1.0
    g = rng.uniform(0.5, 1.0, 400).astype(dtype)
    dw = rng.standard_normal((400, 96)).astype(dtype)
    _, saved = on.weight_norm(v, g, dim=0)
    plain = on.weight_norm_backward(dw, v, g, saved)
    dw2 = dw.copy()
    dw2[::7, :3] = BIG[dtype]  # every 7th row: s past the max
    out = []
    before = optkern.get_num_threads()
    try:
        for t in (1, 2):
            optkern.set_num_threads(t)
            out.append(on.weight_norm_backward(dw2, v, g, saved))
    finally:
        optkern.set_num_threads(before)
    for a, b in zip(out[0], out[1]):
        np.testing.assert_array_equal(a, b)
    dg, dv = out[0]
    assert np.isfinite(dg).all() and np.isfinite(dv).all()
    keep = np.arange(400) % 7 != 0
    np.testing.assert_array_equal(dg[keep], plain[0][keep])
    np.testing.assert_array_equal(dv[keep], plain[1][keep])
    want = _reference(dw2[::7], v[::7], g[::7], KBIG[dtype], 0)
    _close(dg[::7], want[0], dtype, "dg")
    _close(dv[::7], want[1], dtype, "dv")
