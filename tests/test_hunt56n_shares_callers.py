"""The last three direct ``shares_memory`` calls (``_array_checks.out_array``'s ``out`` check,
``hessian._mlp_checks._apart`` and ``_checkpoint_kinds._check_disjoint``) now go through the one
bounded helper ``_overlap.shares``: the same answers for NumPy views that interleave (no element in
common: accepted), and "shared" where NumPy gives up (its work bound, 0 here), as
tests/test_hunt56m_shares.py checks for the helper's other callers."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _overlap
from optkern._array_checks import out_array
from optkern._checkpoint_kinds import _check_disjoint
from optkern.hessian._mlp_checks import _apart


def _between(n: int):
    """(out, a): a C-contiguous ``out`` of 2 elements lying between a strided view's elements (their
    byte spans meet, no element in common), from one buffer of ``n`` strided elements."""
    buf = np.zeros(4 * n + 1, np.float32)
    return buf[2:4], buf[1::4]


@pytest.mark.parametrize("n", [2, 7, 1023])
def test_out_array_follows_the_bounded_helper(n, monkeypatch):
    out, a = _between(n)
    assert out_array(out, np, np.float32, (2,), {"a": a}) is out
    with pytest.raises(ValueError, match="out shares memory with a"):
        out_array(buf_overlap := a.base[1:3], np, np.float32, (2,), {"a": a})
    assert buf_overlap.base is a.base
    monkeypatch.setattr(_overlap, "SHARES_MAX_WORK", 0)
    with pytest.raises(ValueError, match="out shares memory with a"):
        out_array(out, np, np.float32, (2,), {"a": a})


@pytest.mark.parametrize("n", [2, 7, 1023])
def test_mlp_batches_apart_follows_the_bounded_helper(n, monkeypatch):
    out, x = _between(n)
    y = np.zeros(3, np.int64)
    batches = [(np.zeros((1, 1)), y), (x[:, None], y)]
    _apart(out, batches)  # (the first batch is not checked here: its product's own check does it)
    with pytest.raises(ValueError, match=r"out shares memory with batches\[1\]'s x"):
        _apart(x.base[1:3], batches)
    monkeypatch.setattr(_overlap, "SHARES_MAX_WORK", 0)
    with pytest.raises(ValueError, match=r"out shares memory with batches\[1\]'s x"):
        _apart(out, batches)


@pytest.mark.parametrize("n", [1, 7, 1023])
def test_checkpoint_targets_disjoint_follows_the_bounded_helper(n, monkeypatch):
    a = np.zeros(2 * n + 2)
    _check_disjoint("ckpt", {"even": a[::2], "odd": a[1::2]})
    with pytest.raises(ValueError, match=r"ckpt: targets \['even'\] and \['also'\] share memory"):
        _check_disjoint("ckpt", {"even": a[::2], "also": a[2::2]})
    monkeypatch.setattr(_overlap, "SHARES_MAX_WORK", 0)
    with pytest.raises(ValueError, match=r"ckpt: targets \['even'\] and \['odd'\] share memory"):
        _check_disjoint("ckpt", {"even": a[::2], "odd": a[1::2]})
