"""Hunt 32, the counter-based RNG and what uses it: shapes of zero-size arrays whose other
dimensions overflow (optkern.random, optkern.init's return-new variants), BatchLoader's epoch
after an epoch that failed before its first batch, and BatchLoader shuffles of different seeds
that were the same permutations (seeds past 2**32)."""

import numpy as np
import pytest

from optkern import data
from optkern import init as I
from optkern import random as R

# ---- zero-size shapes -------------------------------------------------------------------------

# zero elements, but the other dimensions span more than 2**63 bytes: NumPy refuses to make the
# array with "array is too big", which does not name the argument
HUGE_EMPTY = [(2**62, 4, 0), (0, 2**62, 2), (2**31, 2**31, 0)]


@pytest.mark.parametrize("shape", HUGE_EMPTY)
@pytest.mark.parametrize("fn", [R.uniform, R.rademacher])
def test_random_zero_size_shape_past_the_byte_limit_names_shape(fn, shape):
    with pytest.raises(ValueError, match=r"^shape: "):
        fn(shape, seed=0)


@pytest.mark.parametrize("shape", HUGE_EMPTY)
def test_init_new_zero_size_shape_past_the_byte_limit_names_shape(shape):
    with pytest.raises(ValueError, match=r"^shape: "):
        I.normal(shape, rng=0)


def test_zero_size_shapes_numpy_can_make_still_work():
    assert R.uniform((2**30, 2**30, 0), seed=0).shape == (2**30, 2**30, 0)  # 2**62 bytes of float32
    assert R.uniform((2**40, 0), seed=0, dtype=np.float64).shape == (2**40, 0)
    assert I.uniform((0, 2**40), rng=0, dtype=np.float64).shape == (0, 2**40)


# ---- BatchLoader ------------------------------------------------------------------------------


def test_an_epoch_that_fails_before_its_first_batch_is_not_counted():
    sizes = {0: 0}  # epoch 0's batch size is invalid until it is fixed
    loader = data.BatchLoader(np.arange(10.0), None, lambda e: sizes.get(e, 4), seed=1)
    with pytest.raises(ValueError, match="batch_size_schedule: returned 0 for epoch 0"):
        for _ in loader:  # (list(loader) would fail in len(loader), before iterating)
            pass
    assert loader.epoch == 0
    sizes[0] = 3
    assert [len(b) for b in loader] == [3, 3, 3, 1]  # epoch 0, with the fixed size
    assert loader.epoch == 1


def test_an_epoch_broken_off_after_a_batch_still_counts():
    loader = data.BatchLoader(np.arange(10.0), None, 4, seed=1)
    for _ in loader:
        break
    assert loader.epoch == 1


def _epoch_orders(seed, epochs):
    loader = data.BatchLoader(np.arange(64.0), None, 64, seed=seed)
    return [loader.order(e) for e in range(epochs)]


@pytest.mark.parametrize("high", [1, 3, 2**31])
def test_seeds_past_2_32_do_not_replay_another_seeds_epochs(high):
    """numpy's SeedSequence reads ``[seed, e]`` as 32-bit words: ``[5 + 2**32 * j, 0]`` is the
    words ``[5, j, 0]``, whose trailing 0 is the same as none: seed ``5 + 2**32 j``'s epoch 0 was
    seed 5's epoch ``j``, bit for bit (and its epoch ``e``, seed 5's epoch ``j + 2**32 e``)."""
    small = _epoch_orders(5, 4)
    big = _epoch_orders(5 + 2**32 * high, 4)
    for e, order in enumerate(big):
        for f, other in enumerate(small):
            assert not np.array_equal(order, other), f"seed 5 + 2**32 * {high}, epoch {e} == seed 5, epoch {f}"
    if high == 1:
        assert not np.array_equal(big[0], _epoch_orders(5, 2)[1])


def test_seeds_below_2_32_keep_their_documented_shuffle():
    loader = data.BatchLoader(np.arange(50.0), None, 7, seed=123)
    for e in (0, 1, 2**33 + 1):
        np.testing.assert_array_equal(loader.order(e), np.random.default_rng([123, e]).permutation(50))


def test_large_seeds_shuffle_reproducibly_and_per_epoch():
    a, b = _epoch_orders(2**64 + 7, 3), _epoch_orders(2**64 + 7, 3)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    assert sorted(a[0].tolist()) == list(range(64))
