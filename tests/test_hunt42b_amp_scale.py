"""``amp.GradScaler.scale`` of a NumPy loss that overflows when scaled (defect hunt 42b).

Defect fixed: a float32 / float64 NumPy loss (scalar or array) whose product with the scale
passes its dtype's range warned "overflow encountered in multiply" (an error under pytest's
warnings filter and ``python -W error``; a FloatingPointError under ``np.errstate(all="raise")``)
-- and a float16 / bfloat16 loss likewise, in its float32 product -- where torch's scaled loss is
inf, silently: the very case dynamic loss scaling exists for (the inf reaches the grads, the step
is skipped and the scale backs off). Now the product is inf, as torch's, without a warning.
"""

import numpy as np
import pytest
import torch

from optkern import amp

ml_dtypes = pytest.importorskip("ml_dtypes")

LOSSES = [
    np.float32(1e34),
    np.array([1e34, 1.0], np.float32),
    np.array(1e34, np.float32),
    np.float64(1e300),
    np.array([1e300], np.float64),
    np.float16(6e4),
    np.array([6e4, 1.0], ml_dtypes.bfloat16),
]


def _as_tensor(loss) -> torch.Tensor:
    a = np.asarray(loss)
    if a.dtype.name == "bfloat16":  # (torch takes no ml_dtypes array: its bits, viewed)
        return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(a)


@pytest.mark.parametrize("loss", LOSSES, ids=lambda a: f"{type(a).__name__}-{a.dtype}-{np.ndim(a)}d")
@pytest.mark.parametrize("raise_", [False, True])
def test_a_scaled_loss_past_its_range_is_inf_as_torch_s(loss, raise_):
    scaler = amp.GradScaler(init_scale=2.0**120)
    torch_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**120)
    like = (
        torch.from_numpy(np.asarray(loss).view(np.uint16)).view(torch.bfloat16)
        if loss.dtype.name == "bfloat16"
        else torch.from_numpy(np.asarray(loss))
    )
    want = torch_scaler.scale(like)
    with np.errstate(all="raise" if raise_ else "warn"):
        got = scaler.scale(loss)
    got_t = np.asarray(got, np.float64)
    want_t = want.double().numpy()
    np.testing.assert_array_equal(got_t, want_t)
    assert np.isinf(got_t).any()
