"""Hunt 42e: normalization defects found by running adversarial cases (float64 references of the
same float32 inputs; torch 2.13's CPU errors quoted for scale).

- Batch norm's float32 backward on (N, C, S) input with S > 1 summed Σ dy and Σ dy x̂ of a channel
  run after run in float32 (up to 16K / S runs a block, then the blocks, again in float32): with a
  dy of a common offset (1 + small) db came out ~2e-6 off and dx, whose mean(g) subtracts that sum,
  4e-5 of its size: 20-40x torch's error, where the S = 1 layout (sums in double) was within it.
- The MLP's batch-norm R-operator summed its columns the same way (the hvp's dh 20x
  batch_norm_backward's error), and weight_norm_backward's s = Σ dw v in float32 lanes.
- A layer / RMS norm backward whose x has no dims past the saved statistics blamed the defaulted
  ``normalized_shape``.
"""

import numpy as np
import pytest

from optkern import norm


def _bn_reference(x, dy):
    """Float64 training-mode batch norm backward (weight 1) of float32 x, dy: (dx, dweight, dbias)."""
    ax = (0,) + tuple(range(2, x.ndim))
    bs = (1, -1) + (1,) * (x.ndim - 2)
    xd, g = x.astype(np.float64), dy.astype(np.float64)
    m = xd.mean(ax).reshape(bs)
    r = 1 / np.sqrt(((xd - m) ** 2).mean(ax).reshape(bs) + 1e-5)
    xh = (xd - m) * r
    dx = r * (g - g.mean(ax).reshape(bs) - xh * (g * xh).mean(ax).reshape(bs))
    return dx, (g * xh).sum(ax), g.sum(ax)


@pytest.mark.parametrize("shape", [(4096, 2, 4), (16384, 3, 2), (1024, 4, 16), (256, 2, 64)])
def test_batch_norm_backward_float32_sums_over_many_runs(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = (1 + 0.01 * rng.standard_normal(shape)).astype(np.float32)
    w = np.ones(shape[1], np.float32)
    _, saved = norm.batch_norm(x, w, w)
    dx, _, db = norm.batch_norm_backward(dy, x, w, saved)
    rdx, _, rdb = _bn_reference(x, dy)
    # (torch 2.13's float32 CPU kernel: db 1e-8 - 5e-8, dx 1.2e-6 - 1.6e-6 of their size here; these
    # were 2e-7 - 2e-6 and 4.6e-6 - 4.4e-5)
    assert np.abs(db - rdb).max() <= 1e-7 * np.abs(rdb).max()
    assert np.abs(dx - rdx).max() <= 3e-6 * np.abs(rdx).max()


@pytest.mark.parametrize("shape", [(16384, 4), (4096, 8), (65536, 2)])
def test_batch_norm_rop_float32_column_sums(shape):
    """The MLP's batch-norm R-operator (cpp/norm_rop.cpp) summed each column's N terms one after the
    other in float32: with directions of a common offset the hvp's dh came out 2e-5 - 6e-5 of its
    size (batch_norm_backward's, the same quantity: 2e-6 - 3e-6) and R{dβ} = Σ R{dy} 2e-6 - 7e-6 off.
    Against the array-generic formulation (normalization.py) in float64 on the same float32 inputs."""
    from optkern.nn import normalization as nz

    rng = np.random.default_rng(1)
    N, D = shape
    h = rng.standard_normal(shape).astype(np.float32)
    dy, rh, rdy = ((1 + 0.01 * rng.standard_normal(shape)).astype(np.float32) for _ in range(3))
    gamma = (1 + rng.standard_normal(D)).astype(np.float32)
    vg, vb = (rng.standard_normal(D).astype(np.float32) for _ in range(2))
    _, saved = nz.norm_forward(h, gamma, np.zeros(D, np.float32), 1e-5, 0)
    _, rsaved = nz.norm_rop_forward(rh, gamma, vg, vb, saved, 0)
    dh, rdh, _, rdb = nz.norm_rop_backward(dy, rdy, gamma, vg, saved, rsaved, 0)
    f = lambda a: a.astype(np.float64)
    _, (xhat, rstd) = nz._generic_forward(f(h), f(gamma), np.zeros(D), 1e-5, 0)
    s64 = nz.Saved(f(h), None, xhat=xhat, rstd=rstd, axis=0)
    _, rs64 = nz.norm_rop_forward(f(rh), f(gamma), f(vg), f(vb), s64, 0)
    dh64, rdh64, _, rdb64 = nz.norm_rop_backward(f(dy), f(rdy), f(gamma), f(vg), s64, rs64, 0)

    def rel(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    assert rel(rdb, rdb64) <= 1e-7
    assert rel(dh, dh64) <= 6e-6
    assert rel(rdh, rdh64) <= 2e-5


@pytest.mark.parametrize("shape, dim", [((1, 1000000), 0), ((1000000,), None), ((4, 262144), 0)])
def test_weight_norm_backward_float32_long_rows(shape, dim):
    """weight_norm_backward's s = Σ dw v was a float32 lane sum (32 lanes of M / 32 terms each, every
    addition rounded): dv = (g / ‖v‖)(dw - s v / ‖v‖²) cancels where dw is near parallel to v, and
    came out 5e-4 - 7e-3 of its size off (torch 2.13: 4e-4 - 2e-3), where ‖v‖ (block sums, double)
    left 1e-4. s is now summed as ‖v‖² is (block_sum: float blocks of 8 terms added in double)."""
    rng = np.random.default_rng(2)
    v = rng.standard_normal(shape).astype(np.float32)
    dw = (v + 1e-3 * rng.standard_normal(shape)).astype(np.float32)
    rows = shape[0] if dim == 0 else 1
    g = np.ones(rows, np.float32)
    _, saved = norm.weight_norm(v, g, dim)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    vd, dwd = v.astype(np.float64).reshape(rows, -1), dw.astype(np.float64).reshape(rows, -1)
    nrm = np.sqrt((vd * vd).sum(1))
    s = (dwd * vd).sum(1)
    rdv = (dwd - (s / nrm**2)[:, None] * vd) / nrm[:, None]
    assert np.abs(dg - s / nrm).max() <= 1e-6 * np.abs(s / nrm).max()
    assert np.abs(dv.reshape(rows, -1) - rdv).max() <= 2e-4 * np.abs(rdv).max()


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_row_backward_default_shape_names_saved_not_normalized_shape(kind):
    """normalized_shape defaults to x.shape[saved's ndim:]; an x of no more dims than the saved
    statistics (another reshape of the forward's x) left it () and the error blamed
    ``normalized_shape``, an argument the caller had not passed."""
    x = np.arange(36, dtype=np.float32).reshape(2, 3, 6)
    fwd, bwd, field = (
        (norm.layer_norm, norm.layer_norm_backward, "mean")
        if kind == "layer"
        else (norm.rms_norm, norm.rms_norm_backward, "inv_rms")
    )
    _, saved = fwd(x, (6,))
    x2 = x.reshape(6, 6)
    with pytest.raises(ValueError, match=rf"^x, saved\.{field}: .*\(6, 6\).*\(2, 3\)"):
        bwd(np.ones_like(x2), x2, None, saved)
    with pytest.raises(ValueError, match=r"^normalized_shape: "):  # (given: still its own error)
        bwd(np.ones_like(x2), x2, None, saved, normalized_shape=(5,))
