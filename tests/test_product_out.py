"""Products written into the caller's buffer: ``MLP.hvp/ggn_vp(out=)``, ``CurvatureOperator.matvec(out=)``
and the Lanczos recurrences that reuse one product buffer per run."""

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP


def _problem(norm=None, dtype=np.float64):
    model = MLP([11, 8, 6, 3], activation="tanh", norm=norm, dtype=dtype)
    rng = np.random.default_rng(2)
    params = model.init_params(0).astype(dtype)
    x = rng.standard_normal((17, 11)).astype(dtype)
    y = rng.integers(0, 3, 17)
    v = rng.standard_normal(model.num_params).astype(dtype)
    return model, params, x, y, v


@pytest.mark.parametrize("norm", [None, "batch"])
@pytest.mark.parametrize("kind", ["hvp", "ggn_vp"])
def test_mlp_product_into_out_equals_fresh(kind, norm):
    model, params, x, y, v = _problem(norm)
    fn = getattr(model, kind)
    want = fn(params, x, y, v)
    out = np.full_like(params, np.nan)  # every entry must be written
    got = fn(params, x, y, v, out=out)
    assert got is out
    assert np.array_equal(out, want)


def test_mlp_product_out_is_checked_before_any_work():
    model, params, x, y, v = _problem()
    cases = [
        (np.zeros(params.size, np.float32), TypeError, "^out: expected float64"),
        (np.zeros(params.size + 1), ValueError, r"^out: expected shape"),
        (np.zeros(2 * params.size)[::2], ValueError, "^out: array must be C-contiguous"),
        (params, ValueError, "^out shares memory with params"),
        (v, ValueError, "^out shares memory with v"),
        ([0.0] * params.size, TypeError, "^out: expected a numpy array"),
    ]
    ro = np.zeros_like(params)
    ro.flags.writeable = False
    cases.append((ro, ValueError, "^out: array is read-only"))
    p0, v0 = params.copy(), v.copy()
    for out, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            model.hvp(params, x, y, v, out=out)
    assert np.array_equal(params, p0) and np.array_equal(v, v0)


def test_operator_matvec_out_with_and_without_native_support():
    model, params, x, y, v = _problem()
    op = hessian.from_mlp(model, params, x, y)
    assert op.writes_into
    want = op.matvec(v)
    out = np.empty_like(v)
    assert op.matvec(v, out=out) is out and np.array_equal(out, want)
    plain = hessian.from_hvp(lambda u: model.hvp(params, x, y, u), v.size)
    assert not plain.writes_into
    out2 = np.empty_like(v)
    assert plain.matvec(v, out=out2) is out2 and np.array_equal(out2, want)
    for bad, exc in ((np.empty(v.size, np.float32), TypeError), (np.empty(v.size + 1), ValueError), (v, ValueError)):
        with pytest.raises(exc, match="^out"):
            op.matvec(v, out=bad)
    # a layer block is read out of the full product: no direct writing, same results
    blk = hessian.from_mlp(model, params, x, y, block="layer2")
    assert not blk.writes_into
    u = v[: blk.shape[0]].copy()
    np.testing.assert_array_equal(blk.matvec(u, out=np.empty_like(u)), blk.matvec(u))
    with pytest.raises(TypeError, match="^into"):
        hessian.from_hvp(lambda u: u, 3, into=5)


def test_mean_over_batches_into_out():
    model, params, x, y, v = _problem()
    op = hessian.from_mlp(model, params, batches=[(x[:5], y[:5]), (x[5:], y[5:])])
    out = np.full_like(v, np.nan)
    op.matvec(v, out=out)
    np.testing.assert_allclose(out, model.hvp(params, x, y, v), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", ["full", "partial", "none"])
def test_lanczos_with_a_product_buffer_equals_fresh_products(mode):
    model, params, x, y, _ = _problem()
    op = hessian.from_mlp(model, params, x, y)
    plain = hessian.from_hvp(op.matvec, op.shape[0])  # same products, a fresh array each
    a = hessian.lanczos(op, 30, reorthogonalize=mode)
    b = hessian.lanczos(plain, 30, reorthogonalize=mode)
    for u, w in zip(a, b):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(w))
    da = hessian.spectral_density(op, num_probes=1, steps=25, reorthogonalize=mode)
    db = hessian.spectral_density(plain, num_probes=1, steps=25, reorthogonalize=mode)
    np.testing.assert_array_equal(da.nodes, db.nodes)
