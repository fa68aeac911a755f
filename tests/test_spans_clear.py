"""``_cpu.spans_clear``: the torch adapter's check, between full checks of a multi-call step, that
every grad is aligned and shares no byte with a tensor the step writes -- against a brute-force
reference on random spans (touching, nested, empty, misaligned)."""

import numpy as np
import pytest

from optkern._cpu import spans_clear


def _written(rng, count):
    lo = np.sort(rng.integers(0, 4096, count)).astype(np.int64)
    hi = lo + rng.integers(0, 64, count)
    return lo, hi


def _reference(ptrs, nbytes, itemsizes, wlo, whi) -> bool:
    for p, n, s in zip(ptrs, nbytes, itemsizes):
        if p % s:
            return False
        if n and any(a < p + n and p < b for a, b in zip(wlo, whi)):
            return False
    return True


def _args(wlo, whi):
    reach = np.maximum.accumulate(whi) if len(whi) else np.zeros(0, np.int64)
    return wlo, reach


@pytest.mark.parametrize("seed", range(300))
def test_equals_the_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    wlo, whi = _written(rng, int(rng.integers(0, 9)))
    count = int(rng.integers(0, 7))
    itemsizes = rng.choice([1, 2, 4, 8], count).astype(np.int64)
    ptrs = [int(x) for x in rng.integers(0, 4200, count)]
    if rng.random() < 0.7:  # (mostly aligned, so that the overlaps decide)
        ptrs = [p - p % int(s) for p, s in zip(ptrs, itemsizes)]
    nbytes = (rng.integers(0, 8, count) * itemsizes).astype(np.int64)
    want = _reference(ptrs, nbytes, itemsizes, wlo, whi)
    assert spans_clear(ptrs, nbytes, itemsizes, *_args(wlo, whi)) is want


def test_touching_spans_are_clear_and_one_shared_byte_is_not():
    wlo, whi = np.array([100, 200], np.int64), np.array([150, 260], np.int64)
    one = np.ones(1, np.int64)
    assert spans_clear([150], np.array([50], np.int64), one, *_args(wlo, whi))  # [150, 200)
    assert not spans_clear([149], np.array([1], np.int64), one, *_args(wlo, whi))
    assert not spans_clear([199], np.array([2], np.int64), one, *_args(wlo, whi))
    assert spans_clear([120], np.zeros(1, np.int64), one, *_args(wlo, whi))  # (an empty grad)
    # a written span reaching past later ones (reach, not the last start's own end)
    wlo, whi = np.array([0, 10], np.int64), np.array([1000, 20], np.int64)
    assert not spans_clear([500], np.array([4], np.int64), one, *_args(wlo, whi))


def test_misaligned_grad_is_not_clear():
    empty = np.zeros(0, np.int64)
    assert not spans_clear([6], np.array([4], np.int64), np.array([4], np.int64), empty, empty)
    assert spans_clear([8], np.array([4], np.int64), np.array([4], np.int64), empty, empty)


def test_mismatched_lengths_are_named():
    one = np.ones(1, np.int64)
    with pytest.raises(ValueError, match="nbytes, itemsizes"):
        spans_clear([0, 8], one, one, one, one)
    with pytest.raises(ValueError, match="wlo, reach"):
        spans_clear([0], one, one, one, np.ones(2, np.int64))
