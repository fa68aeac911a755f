"""dropout with p = 1 as torch's: every element dropped, y = x * 0 (a NaN or inf input gives NaN),
the same in backward; p > 1 still refused. (It was refused: p had to be in [0, 1).)"""

import numpy as np
import pytest

from optkern import norm


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 1023])
def test_p_one_drops_everything(dtype, n):
    x = np.linspace(-3.0, 3.0, n).astype(dtype)
    if n >= 7:
        x[1], x[2], x[3] = np.nan, np.inf, -np.inf
    with np.errstate(invalid="ignore"):
        want = x * dtype(0)
    y, mask = norm.dropout(x, 1.0, seed=5, return_mask=True)
    np.testing.assert_array_equal(y, want)
    assert not mask.any()
    np.testing.assert_array_equal(norm.dropout_backward(x, 1.0, seed=5), want)


def test_p_one_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.array([1.5, -2.0, np.nan, np.inf, 0.0], np.float32)
    want = torch.nn.functional.dropout(torch.from_numpy(x.copy()), p=1.0, training=True).numpy()
    np.testing.assert_array_equal(norm.dropout(x, 1.0, seed=0), want)


def test_p_past_one_refused_before_writing():
    x = np.ones(4)
    for p in (np.nextafter(1.0, 2.0), 2.0):
        with pytest.raises(ValueError, match=r"^p: must be in \[0(\.0)?, 1(\.0)?\]"):
            norm.dropout(x, p, seed=1)
