"""Hunt 56j: ``optkern.nn.losses.mse_forward`` follows IEEE arithmetic on huge and infinite values
without NumPy's warnings, as ``torch.nn.functional.mse_loss`` and the MLP's own loss do.

Called through ``MLP.loss`` it ran under the MLP's ``np.errstate`` (inf, silently); called directly,
outputs of 1e200 against targets of -1e200 raised "overflow encountered in multiply" and inf against
inf "invalid value encountered in subtract" (RuntimeWarning: errors under ``-W error``) instead of
returning torch's inf / NaN.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from optkern.nn.losses import mse_forward


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "out, y",
    [
        ([[1e200, 2.0], [-1.0, 0.5]], [[-1e200, 2.0], [1.0, 0.25]]),  # (float32: both are inf)
        ([[np.inf, 1.0, 3.0]], [[np.inf, 0.0, 1.0]]),
        ([[3e38, -3e38, 1.0]], [[-3e38, 3e38, 0.0]]),
        ([[np.nan, 1.0]], [[0.0, 1.0]]),
    ],
)
def test_mse_forward_matches_torch_on_nonfinite(out, y, dtype):
    with np.errstate(over="ignore"):  # (1e200 as float32 is inf: the case itself, not under test)
        o, t = np.array(out, dtype=dtype), np.array(y, dtype=dtype)
    loss, g, h = mse_forward(o, t)
    to = torch.from_numpy(o).requires_grad_()
    want = F.mse_loss(to, torch.from_numpy(t))
    want.backward()
    np.testing.assert_array_equal(np.asarray(loss), want.detach().numpy())
    assert to.grad is not None
    np.testing.assert_allclose(g, to.grad.numpy(), rtol=1e-6, equal_nan=True)
    assert h == 2.0 / o.size


@pytest.mark.parametrize("shape", [(0, 2), (3, 0), (0,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_forward_of_no_elements_is_nan_as_torch(shape, dtype):
    """No elements: torch's mean is NaN; NumPy's mean warned "Mean of empty slice" (an error under
    ``-W error``) before it."""
    o = np.zeros(shape, dtype=dtype)
    loss, g, _ = mse_forward(o, o.copy())
    want = F.mse_loss(torch.from_numpy(o), torch.from_numpy(o.copy()))
    assert np.isnan(loss) and np.isnan(want.item())
    assert np.asarray(loss).dtype == dtype and g.shape == shape
