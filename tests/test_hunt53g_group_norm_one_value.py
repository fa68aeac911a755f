"""group_norm (and the GroupNorm module) of a single value to normalize: torch's F.group_norm (what
nn.GroupNorm calls) raises "Expected more than 1 value per channel when training" where
N * (C / num_groups) * prod(spatial) == 1 -- one sample whose groups hold one value each, so that
every output is the bias and every input gradient 0 -- as batch norm (N * S == 1) and instance norm
(S == 1) do, which optkern follows. optkern's group_norm returned y = bias there without a word.
Where torch does not raise (two samples, or groups of two values) optkern normalizes as it does."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import norm

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _x(shape, dtype=np.float64):
    return np.random.default_rng(7).standard_normal(shape).astype(dtype)


# (shape, num_groups): N * C / G * S == 1
REFUSED = [((1, 4, 1), 4), ((1, 1), 1), ((1, 3), 3), ((1, 6, 1, 1), 6), ((1, 2, 1, 1, 1), 2)]
# one value per group but two samples, or one sample with two values a group: torch normalizes
TAKEN = [((2, 4, 1), 4), ((1, 4, 1), 2), ((1, 4), 2), ((2, 3), 3), ((1, 2, 2), 2)]


@pytest.mark.parametrize("shape,groups", REFUSED)
def test_torch_refuses_these(shape, groups):
    with pytest.raises(ValueError, match="more than 1 value"):
        F.group_norm(torch.from_numpy(_x(shape)), groups)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,groups", REFUSED)
def test_group_norm_refuses_one_value_naming_x(shape, groups, dtype):
    x = _x(shape, dtype)
    out = np.full_like(x, 5.0)
    with pytest.raises(ValueError, match=r"^x: expected more than 1 value per group"):
        norm.group_norm(x, groups, out=out)
    np.testing.assert_array_equal(out, 5.0)  # (nothing written)


@pytest.mark.parametrize("shape,groups", REFUSED)
def test_group_norm_module_refuses_one_value(shape, groups):
    m = norm.GroupNorm(groups, shape[1], dtype=np.float64)
    with pytest.raises(ValueError, match=r"^x: expected more than 1 value per group"):
        m(_x(shape))


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("shape,groups", TAKEN)
def test_group_norm_where_torch_normalizes(shape, groups, dtype, tol):
    x = _x(shape, dtype)
    C = shape[1]
    w = np.linspace(0.5, 2.0, C).astype(dtype)
    b = np.linspace(-1.0, 1.0, C).astype(dtype)
    y, _ = norm.group_norm(x, groups, w, b)
    # (the reference in float64 from the same values: torch's float32 group norm of one-value groups
    # leaves 2e-5 of rounding where x - mean is exactly 0)
    t64 = (torch.from_numpy(a.astype(np.float64)) for a in (x, w, b))
    ref = F.group_norm(next(t64), groups, next(t64), next(t64)).numpy()
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
