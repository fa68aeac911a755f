"""mixup / CutMix: label mass, reproducibility, exact box-area lambda, bad input."""

import numpy as np
import pytest

from optkern import regularize as R


def batch(n=6, c=3, h=8, w=10, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c, h, w)).astype(np.float32), rng.integers(0, k, n)


def test_mixup_formula_and_label_mass():
    x, y = batch()
    m = R.mixup(x, y, alpha=0.4, num_classes=4, rng=7)
    assert 0.0 <= m.lam <= 1.0 and sorted(m.perm.tolist()) == list(range(6))
    np.testing.assert_allclose(m.x, m.lam * x + (1 - m.lam) * x[m.perm], rtol=1e-6, atol=1e-6)
    onehot = np.eye(4, dtype=np.float32)[y]
    np.testing.assert_allclose(m.y, m.lam * onehot + (1 - m.lam) * onehot[m.perm], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m.y.sum(axis=1), 1.0, rtol=1e-6)
    assert m.x.dtype == np.float32 and m.box is None


def test_mixup_reproducible_and_lambda_distribution():
    x, y = batch()
    a, b = R.mixup(x, y, 1.0, num_classes=4, rng=3), R.mixup(x, y, 1.0, num_classes=4, rng=3)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.lam == b.lam
    g = np.random.default_rng(11)
    lams = np.array([R.mixup(x[:, :1, :1, :1], y, 0.5, num_classes=4, rng=g).lam for _ in range(3000)])
    # Beta(0.5, 0.5): mean 1/2, variance 1/8; standard error of the mean ~ 0.0065
    assert abs(lams.mean() - 0.5) < 0.03 and abs(lams.var() - 0.125) < 0.01


def test_mixup_soft_targets_in():
    x, _ = batch()
    rng = np.random.default_rng(2)
    t = rng.random((6, 5))
    t /= t.sum(axis=1, keepdims=True)
    m = R.mixup(x.reshape(6, -1), t, 0.2, rng=1)  # any (N, ...) shape
    np.testing.assert_allclose(m.y.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(m.y, m.lam * t + (1 - m.lam) * t[m.perm], rtol=1e-12)


def test_cutmix_box_and_exact_area_lambda():
    x, y = batch(n=5, h=9, w=13)
    for seed in range(20):
        m = R.cutmix(x, y, alpha=1.0, num_classes=4, rng=seed)
        y1, y2, x1, x2 = m.box
        area = (y2 - y1) * (x2 - x1)
        assert m.lam == 1.0 - area / (9 * 13)
        inside = np.zeros((9, 13), bool)
        inside[y1:y2, x1:x2] = True
        np.testing.assert_array_equal(m.x[:, :, inside], x[m.perm][:, :, inside])
        np.testing.assert_array_equal(m.x[:, :, ~inside], x[:, :, ~inside])
        # the actual pixel share of each image equals the target weights
        onehot = np.eye(4, dtype=np.float32)[y]
        np.testing.assert_allclose(m.y, m.lam * onehot + (1 - m.lam) * onehot[m.perm], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(m.y.sum(axis=1), 1.0, rtol=1e-6)
    a, b = R.cutmix(x, y, 1.0, num_classes=4, rng=5), R.cutmix(x, y, 1.0, num_classes=4, rng=5)
    assert a.box == b.box and a.lam == b.lam
    np.testing.assert_array_equal(a.x, b.x)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda x, y: R.mixup(x, y, 0.0, num_classes=4), ValueError, "alpha"),
        (lambda x, y: R.cutmix(x, y, -1.0, num_classes=4), ValueError, "alpha"),
        (lambda x, y: R.mixup(x, y, 0.2), ValueError, "num_classes"),
        (lambda x, y: R.mixup(x, y[:3], 0.2, num_classes=4), ValueError, "y"),
        (lambda x, y: R.mixup(x, y, 0.2, num_classes=2), ValueError, r"labels must be in \[0, 2\)"),
        (lambda x, y: R.cutmix(x[0], y, 0.2, num_classes=4), ValueError, r"\(N, C, H, W\)"),
        (lambda x, y: R.mixup(x.astype(np.int32), y, 0.2, num_classes=4), TypeError, "x"),
        (lambda x, y: R.mixup(x, np.full((6, 4), 0.5), 0.2), ValueError, "sum to 1"),
        (lambda x, y: R.mixup(x, y, 0.2, num_classes=4, rng="seed"), TypeError, "rng"),
        (lambda x, y: R.mixup(list(x), y, 0.2, num_classes=4), TypeError, "x"),
    ],
)
def test_bad_inputs(call, exc, match):
    x, y = batch()
    with pytest.raises(exc, match=match):
        call(x, y)


def test_cupy_batches_match_numpy():
    cp = pytest.importorskip("cupy", reason="CuPy is not installed: CuPy mixup/cutmix untested here")
    x, y = batch()
    for fn in (R.mixup, R.cutmix):
        a = fn(x, y, 0.7, num_classes=4, rng=12)
        b = fn(cp.asarray(x), cp.asarray(y), 0.7, num_classes=4, rng=12)
        assert a.lam == b.lam and a.box == b.box
        np.testing.assert_allclose(cp.asnumpy(b.x), a.x, rtol=1e-6)
        np.testing.assert_allclose(cp.asnumpy(b.y), a.y, rtol=1e-6)


@pytest.mark.parametrize(
    "y",
    [np.array([True, False] * 3), np.array(list("abcdef")), np.full((6, 4), 0.25 + 0j)],
    ids=["bool", "str", "complex"],
)
def test_wrong_target_dtype_is_a_type_error(y):
    # the contract: a wrong dtype is a TypeError naming the argument (these were ValueErrors)
    x, _ = batch()
    with pytest.raises(TypeError, match=r"^y: expected integer labels or float soft targets"):
        R.mixup(x, y, 0.2, num_classes=4)


@pytest.mark.parametrize("k, exc", [(4.0, TypeError), (True, TypeError), (0, ValueError)])
def test_num_classes_is_checked_with_soft_targets_too(k, exc):
    # num_classes=4.0 (or True against one class) passed unchecked beside soft targets
    x, _ = batch()
    with pytest.raises(exc, match="^num_classes"):
        R.mixup(x, np.full((6, 4), 0.25, np.float32), 0.2, num_classes=k)
