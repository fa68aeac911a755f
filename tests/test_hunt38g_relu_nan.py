"""relu' at NaN as torch takes it: torch's ReluBackward passes the gradient where the input is not
<= 0 (``threshold_backward``), so a NaN pre-activation carries its gradient (1) on; optkern's rule
tested z > 0 and gave 0, cutting a NaN input's gradient off where torch propagates it. At -0, 0 and
below, 0 both ways; f(NaN) NaN both ways."""

import numpy as np
import pytest

from optkern.nn.activations import activation

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_derivatives_at_nan_and_zeros_match_torch(dtype):
    z = np.array([np.nan, -0.0, 0.0, 1.0, -1.0, np.inf, -np.inf, 1e-45], dtype)
    f, d1, d2 = activation("relu", z, order=2)
    t = torch.tensor(z, requires_grad=True)
    y = torch.relu(t)
    y.backward(torch.ones_like(t))
    np.testing.assert_array_equal(f, y.detach().numpy())
    np.testing.assert_array_equal(np.signbit(f), np.signbit(y.detach().numpy()))
    np.testing.assert_array_equal(d1, t.grad.numpy())
    np.testing.assert_array_equal(d2, np.zeros_like(z))
