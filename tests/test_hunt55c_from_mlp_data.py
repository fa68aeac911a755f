"""``hessian.from_mlp`` checks its batches' x and y when it builds the operator (55th hunt, c).

x with rows other than y's, the wrong feature count, y labels past the classes or of the wrong
dtype were taken, and raised only at the operator's first product -- inside whichever estimator or
solver it was handed to (test_hessian_fixed pinned that late raise). The checks are the products'
own (``MLP._check``), named ``x`` / ``y`` as given, or ``batches[i]'s x`` / ``y``; the products
still check (values may change in place between products)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP

m = MLP((5, 7, 3))  # float32, cross-entropy over 3 classes
mse = MLP((5, 4, 2), loss="mse", dtype=np.float64)
rng = np.random.default_rng(0)
X = rng.standard_normal((7, 5)).astype(np.float32)
Y = rng.integers(0, 3, 7)

BAD = [
    ("rows", X, Y[:6], ValueError, r"y: expected integer labels of shape \(7,\), got \(6,\)$"),
    ("more rows", X[:1], Y, ValueError, r"y: expected integer labels of shape \(1,\), got \(7,\)$"),
    ("features", X[:, :4], Y, ValueError, r"x: expected shape \(N, 5\), got \(7, 4\)$"),
    ("x 1-D", X[0], Y[:1], ValueError, r"x: expected shape \(N, 5\), got \(5,\)$"),
    ("x 3-D", X[None], Y, ValueError, r"x: expected shape \(N, 5\), got \(1, 7, 5\)$"),
    ("label too large", X, np.where(np.arange(7) == 3, 3, Y), ValueError, r"y: values must be in \[0, 3\)"),
    ("label negative", X, np.where(np.arange(7) == 6, -1, Y), ValueError, r"y: values must be in \[0, 3\)"),
    ("float labels", X, Y.astype(np.float32), TypeError, r"y: expected integer labels .* got float32$"),
    ("bool x", X > 0, Y, TypeError, r"x: expected real numbers \(float or integer\), got bool$"),
    ("complex x", X.astype(np.complex64), Y, TypeError, r"x: expected real numbers .* got complex64$"),
]


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("kind", ["hessian", "ggn"])
@pytest.mark.parametrize("case, x, y, err, match", BAD, ids=[b[0] for b in BAD])
def test_bad_data_is_refused_when_the_operator_is_built(case, x, y, err, match, kind, fixed):
    p = m.init_params(1)
    with pytest.raises(err, match="^" + match):
        hessian.from_mlp(m, p, x, y, kind=kind, fixed=fixed)
    with pytest.raises(err, match=r"^batches\[1\]'s " + match):
        hessian.from_mlp(m, p, batches=[(X, Y), (x, y)], kind=kind, fixed=fixed)
    with pytest.raises(err, match=r"^batches\[0\]'s " + match):
        hessian.from_mlp(m, p, batches=[(x, y)], kind=kind, fixed=fixed, block="layer2")


@pytest.mark.parametrize(
    "y, err, match",
    [
        (np.zeros((7, 3)), ValueError, r"^y: expected targets of shape \(7, 2\), got \(7, 3\)$"),
        (np.zeros(6), ValueError, r"^y: expected targets of shape \(7, 2\), got \(6,\)$"),
        (np.zeros((7, 2), bool), TypeError, r"^y: expected real numbers .* got bool$"),
    ],
)
def test_bad_regression_targets_are_refused_when_built(y, err, match):
    with pytest.raises(err, match=match):
        hessian.from_mlp(mse, mse.init_params(0), X.astype(np.float64), y)


def test_good_data_of_other_dtypes_still_builds_and_matches_the_model():
    """float64 x / int32 labels for a float32 model are taken (cast), as the products take them; the
    operator's product is the model's, and a float64 x of a float32 model is not refused."""
    p = m.init_params(2)
    v = rng.standard_normal(m.num_params).astype(np.float32)
    x64, y32 = X.astype(np.float64), Y.astype(np.int32)
    for fixed in (False, True):
        op = hessian.from_mlp(m, p, x64, y32, fixed=fixed)
        np.testing.assert_array_equal(op.matvec(v), m.hvp(p, x64, y32, v))


def test_empty_batches_of_a_rank_share_are_dropped_unchecked():
    """A batch without rows adds nothing and is not checked (a rank's share may be none), as before."""
    p = m.init_params(3)
    v = rng.standard_normal(m.num_params).astype(np.float32)
    op = hessian.from_mlp(m, p, batches=[(X[:0], Y[:0]), (X, Y)])
    np.testing.assert_allclose(op.matvec(v), m.hvp(p, X, Y, v), rtol=1e-6, atol=1e-7)


def test_labels_changed_in_place_after_the_build_are_still_refused_by_the_product():
    p = m.init_params(4)
    y = Y.copy()
    op = hessian.from_mlp(m, p, X, y)
    y[0] = 9
    with pytest.raises(ValueError, match=r"^y: values must be in \[0, 3\)"):
        op.matvec(np.ones(m.num_params, np.float32))
