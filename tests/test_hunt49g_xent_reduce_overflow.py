"""softmax_cross_entropy's "mean" / "sum" reductions (and softmax_cross_entropy_grad's mean) of
float32 rows whose losses are finite but sum past the max: inf, as torch's cross_entropy gives
(IEEE arithmetic, the MLP's rule), without NumPy's "overflow encountered in reduce" RuntimeWarning,
which escaped the reduction (an error under -W error: the project's tests' setting)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from optkern.nn import softmax_cross_entropy, softmax_cross_entropy_grad

torch = pytest.importorskip("torch")


def _rows():
    z = np.array([[1.5e38, -1.5e38]] * 3, np.float32)  # each row's loss 3e38: finite
    return z, np.array([1, 1, 1])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reductions_past_the_max_are_torchs_inf_without_a_warning(reduction):
    z, y = _rows()
    rows = softmax_cross_entropy(z, y, reduction="none")
    assert np.isfinite(rows).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = softmax_cross_entropy(z, y, reduction=reduction)
    want = torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.from_numpy(y), reduction=reduction)
    assert float(got) == float(want) == np.inf


def test_grad_mean_past_the_max_without_a_warning():
    z, y = _rows()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = softmax_cross_entropy_grad(z, y)
    assert float(loss) == np.inf and np.isfinite(grad).all()


def test_ordinary_rows_keep_their_values():
    z = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0])
    rows = softmax_cross_entropy(z, y, reduction="none")
    assert softmax_cross_entropy(z, y) == rows.mean()
    assert softmax_cross_entropy(z, y, reduction="sum") == rows.sum()
