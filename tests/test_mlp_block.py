"""Block curvature products (k directions through one forward pass) and per-layer operators.

Block products against k single products (``MLP.hvp`` / ``ggn_vp``, themselves checked by
finite differences in test_mlp.py); per-layer operators against the matching block of the
dense Hessian and against central differences of the gradient.
"""

import numpy as np
import pytest

from optkern import hessian
from optkern.hessian.mlp_operator import block_indices
from optkern.nn import MLP

CASES = [
    (act, norm, loss)
    for act in ("tanh", "gelu", "softplus")
    for norm in (None, "batch", "layer")
    for loss in ("cross_entropy", "mse")
]


def make(act="tanh", norm=None, loss="cross_entropy", sizes=(7, 9, 8, 3), n=11, dtype=np.float64, seed=0, **kw):
    model = MLP(list(sizes), activation=act, norm=norm, loss=loss, dtype=dtype, **kw)
    rng = np.random.default_rng(seed)
    params = (model.init_params(seed) + 0.1 * rng.standard_normal(model.num_params)).astype(dtype)
    x = rng.standard_normal((n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], n) if loss == "cross_entropy" else rng.standard_normal((n, sizes[-1])).astype(dtype)
    return model, params, x, y, rng


@pytest.mark.parametrize("act,norm,loss", CASES)
@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_block_product_equals_k_single_products(act, norm, loss, kind):
    model, p, x, y, rng = make(act, norm, loss, label_smoothing=0.1 if loss == "cross_entropy" else 0.0)
    V = rng.standard_normal((5, model.num_params))
    block = model.hvp_block if kind == "hessian" else model.ggn_block
    single = model.hvp if kind == "hessian" else model.ggn_vp
    got = block(p, x, y, V)
    want = np.stack([single(p, x, y, V[d]) for d in range(5)])
    assert got.shape == (5, model.num_params) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13 * np.abs(want).max())


@pytest.mark.parametrize("sizes", [(4, 3), (6, 1), (5, 7, 2), (3, 4, 5, 6, 2)])
@pytest.mark.parametrize("k", [1, 2, 9])
def test_block_product_shapes(sizes, k):
    model, p, x, y, rng = make("tanh", "batch", "cross_entropy" if sizes[-1] > 1 else "mse", sizes=sizes)
    V = rng.standard_normal((k, model.num_params))
    got = model.hvp_block(p, x, y, V)
    want = np.stack([model.hvp(p, x, y, V[d]) for d in range(k)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13 * np.abs(want).max())


def test_block_product_float32_matches_float64_reference():
    m64, p, x, y, rng = make("tanh", "layer")
    m32 = MLP(m64.sizes, activation="tanh", norm="layer", dtype=np.float32)
    V = rng.standard_normal((4, m64.num_params))
    got = m32.hvp_block(p.astype(np.float32), x.astype(np.float32), y, V.astype(np.float32))
    want = m64.hvp_block(p, x, y, V)
    assert got.dtype == np.float32
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5
    # and bit-for-bit close to the float32 single products
    single = np.stack(
        [m32.hvp(p.astype(np.float32), x.astype(np.float32), y, V[d].astype(np.float32)) for d in range(4)]
    )
    np.testing.assert_allclose(got, single, rtol=1e-4, atol=1e-5 * np.abs(single).max())


def test_block_product_rejects_bad_input():
    model, p, x, y, _ = make()
    n = model.num_params
    with pytest.raises(TypeError, match="V"):
        model.hvp_block(p, x, y, np.ones((2, n), np.float32))
    with pytest.raises(TypeError, match="V"):
        model.ggn_block(p, x, y, [[0.0] * n])
    for bad in (np.ones(n), np.ones((2, n + 1)), np.ones((0, n + 1))):  # ((0, n): test_hunt56l_block_k0)
        with pytest.raises(ValueError, match="V"):
            model.hvp_block(p, x, y, bad)


def test_block_product_accepts_non_contiguous_rows():
    model, p, x, y, rng = make()
    V = rng.standard_normal((model.num_params, 3)).T  # (3, n) F-ordered
    want = np.stack([model.hvp(p, x, y, np.ascontiguousarray(V[d])) for d in range(3)])
    np.testing.assert_allclose(model.hvp_block(p, x, y, V), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["hessian", "ggn"])
@pytest.mark.parametrize("block_size", [1, 4, 64])
def test_from_mlp_matmat_uses_block_products(kind, block_size):
    model, p, x, y, rng = make("tanh", "batch")
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    op = hessian.from_mlp(model, p, kind=kind, batches=batches, block_size=block_size)
    V = rng.standard_normal((model.num_params, 10))
    got = op.matmat(V)
    want = np.stack([op.matvec(V[:, j]) for j in range(10)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13 * np.abs(want).max())
    assert op.num_matvecs == 20


def test_from_mlp_rejects_bad_block_arguments():
    model, p, x, y, _ = make()
    for bad in ("layer0", "layer4", "layers1", "W1", ("layer1", "layer1")):
        with pytest.raises(ValueError, match="block"):
            hessian.from_mlp(model, p, x, y, block=bad)
    for bad in (1, ["layer1", 2], []):
        with pytest.raises(TypeError, match="block"):
            hessian.from_mlp(model, p, x, y, block=bad)
    with pytest.raises(ValueError, match="block_size"):
        hessian.from_mlp(model, p, x, y, block_size=0)
    with pytest.raises(TypeError, match="bogus"):
        hessian.from_mlp(model, p, x, y, bogus=1)


@pytest.fixture(scope="module")
def dense():
    model, p, x, y, _ = make("tanh", "batch", sizes=(6, 8, 7, 4), n=13)
    op = hessian.from_mlp(model, p, x, y)
    H = np.stack([op.matvec(e) for e in np.eye(model.num_params)], axis=1)
    return model, p, x, y, H


@pytest.mark.parametrize("block", ["layer1", "layer2", "layer3", ("layer3", "layer1")])
@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_per_layer_operator_is_the_block_of_the_full_operator(dense, block, kind):
    model, p, x, y, H = dense
    idx = block_indices(model, block)
    full = hessian.from_mlp(model, p, x, y, kind=kind)
    ref = H if kind == "hessian" else np.stack([full.matvec(e) for e in np.eye(model.num_params)], axis=1)
    op = hessian.from_mlp(model, p, x, y, kind=kind, block=block)
    assert op.shape == (len(idx), len(idx))
    B = op.matmat(np.eye(len(idx)))
    np.testing.assert_allclose(B, ref[np.ix_(idx, idx)], rtol=1e-12, atol=1e-13)
    v = np.random.default_rng(1).standard_normal(len(idx))
    np.testing.assert_allclose(op.matvec(v), ref[np.ix_(idx, idx)] @ v, rtol=1e-11, atol=1e-13)


def test_per_layer_hessian_matches_finite_differences_of_the_gradient(dense):
    model, p, x, y, _ = dense
    idx = block_indices(model, "layer2")
    op = hessian.from_mlp(model, p, x, y, block="layer2")
    rng = np.random.default_rng(2)
    v = rng.standard_normal(len(idx))
    full = np.zeros(model.num_params)
    full[idx] = v
    h = 1e-5
    fd = (model.loss_and_grad(p + h * full, x, y)[1] - model.loss_and_grad(p - h * full, x, y)[1]) / (2 * h)
    np.testing.assert_allclose(op.matvec(v), fd[idx], rtol=1e-6, atol=1e-8)


def test_per_layer_indices_cover_each_layer_once():
    model, *_ = make("tanh", "layer", sizes=(6, 8, 7, 4))
    parts = [block_indices(model, f"layer{i}") for i in (1, 2, 3)]
    assert np.array_equal(np.concatenate(parts), np.arange(model.num_params))
    assert len(parts[0]) == 8 * 6 + 8 * 3 and len(parts[2]) == 4 * 7 + 4


def test_per_layer_top_eigenvalue_and_trace(dense):
    model, p, x, y, H = dense
    idx = block_indices(model, "layer2")
    Hb = H[np.ix_(idx, idx)]
    op = hessian.from_mlp(model, p, x, y, block="layer2")
    r = hessian.top_eigenvalues(op, 2)
    np.testing.assert_allclose(r.eigenvalues, np.sort(np.linalg.eigvalsh(Hb))[::-1][:2], rtol=1e-9)
    t = hessian.trace(op, "hutch++", len(idx) * 3)  # sketch spans the whole block: exact
    assert abs(t.estimate - np.trace(Hb)) < 1e-9 * abs(np.trace(Hb)) + 1e-10
