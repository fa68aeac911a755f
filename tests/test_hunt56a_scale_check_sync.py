"""Hunt 42x (the 55th's leftovers), item 2: ``dequantize_blockwise``'s scale check reads the scales'
values, which on CuPy synchronizes the host. A device-side check cannot raise (the error needs the
host to see the values; left on the device it could only make the decoded values NaN, as non-finite
scales already do): documented in ``check_block_scales`` and ``dequantize_blockwise``, and the two
counts (non-finite, negative) are brought to the host in one copy (two before, with
``nonnegative``). CuPy is absent here: the NumPy path is tested, the CuPy path type-checked (mypy)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _backend, lowp
from optkern._lowp_blocks import check_block_scales


def _scales(n: int = 3) -> np.ndarray:
    return np.random.default_rng(n).uniform(0.5, 2.0, n).astype(np.float32)


def test_the_check_reads_the_values_once(monkeypatch):
    reads = []
    real = _backend.to_numpy
    monkeypatch.setattr(_backend, "to_numpy", lambda x: reads.append(x) or real(x))
    check_block_scales(_scales(), 2 * 64 + 1, 64, nonnegative=True)
    assert len(reads) == 1 and reads[0].shape == (2,)  # (both counts in one array: one copy)


@pytest.mark.parametrize("nonnegative", [False, True])
def test_non_finite_scales_are_refused_before_negative_ones(nonnegative):
    s = _scales()
    s[0], s[2] = -1.0, np.nan
    with pytest.raises(ValueError, match=r"^at: 1 non-finite block scale \(NaN or inf\)$"):
        check_block_scales(s, 3 * 64, 64, "at", nonnegative=nonnegative)


def test_negative_scales_counted_only_for_a_nonnegative_state():
    s = _scales()
    s[[0, 2]] = -s[[0, 2]]
    check_block_scales(s, 3 * 64, 64, "at")  # (the signed map's mark)
    with pytest.raises(ValueError, match=r"^at: 2 negative block scales"):
        check_block_scales(s, 3 * 64, 64, "at", nonnegative=True)


@pytest.mark.parametrize("n", [0, 1, 7, 1023])
def test_dequantize_still_decodes_valid_scales(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    codes, scales = lowp.quantize_blockwise(x, 64)
    y = lowp.dequantize_blockwise(codes, scales, 64)
    assert y.shape == x.shape and np.allclose(y, x, rtol=0, atol=np.abs(x).max(initial=0) / 64)


def test_the_synchronization_is_documented():
    assert "synchronization" in lowp.dequantize_blockwise.__doc__
    assert "one synchronization per call" in " ".join(check_block_scales.__doc__.split())
