"""Hunt 56j: mixup / soft_targets on non-finite values follow IEEE arithmetic without NumPy's warnings.

``mixup`` of a batch holding +inf and -inf (a diverged input pipeline) mixed them to NaN as torch
does, but NumPy warned "invalid value encountered in add" -- an exception under ``-W error`` (the
project's test setting), raised instead of returning the batch. ``soft_targets`` checking rows
``[inf, -inf]`` summed them with the same warning: a RuntimeWarning raised instead of its
ValueError naming ``y``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optkern.regularize import mixup, soft_targets


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_mixup_of_opposite_infinities_is_nan_as_torch(dtype):
    x = np.array([[np.inf, 1.0, -np.inf], [-np.inf, 2.0, np.inf], [0.5, -3.0, 7.0]], dtype=dtype)
    y = np.array([0, 1, 2])
    m = mixup(x, y, alpha=1.0, num_classes=3, rng=4)
    lam, p = m.lam, np.asarray(m.perm)
    assert 0.0 < lam < 1.0 and not (p == np.arange(3)).all()  # (the seed pairs rows with others)
    # the same mix in torch, which follows IEEE arithmetic silently
    tx = torch.from_numpy(x)
    want = (
        tx * torch.tensor(lam, dtype=tx.dtype) + tx[torch.from_numpy(p)] * torch.tensor(1.0 - lam, dtype=tx.dtype)
    ).numpy()
    np.testing.assert_array_equal(m.x, want)  # (NaN where +inf meets -inf, inf where they agree)
    assert np.isnan(m.x).any()
    np.testing.assert_allclose(m.y.sum(axis=1, dtype=np.float64), 1.0, atol=1e-3)


@pytest.mark.parametrize("row", [[np.inf, -np.inf], [-np.inf, np.inf, 1.0], [np.inf, 0.0]])
def test_soft_targets_refuse_infinite_rows_by_name(row):
    y = np.array([row, np.full(len(row), 1.0 / len(row))], dtype=np.float32)
    with pytest.raises(ValueError, match=r"^y: soft targets must be non-negative and sum to 1 per row"):
        soft_targets(y, 2)
