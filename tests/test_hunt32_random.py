"""Hunt 32, the counter-based RNG and what uses it: shapes of zero-size arrays whose other
dimensions overflow (optkern.random, optkern.init's return-new variants), BatchLoader's epoch
after an epoch that failed before its first batch, BatchLoader shuffles of different seeds that
were the same permutations (seeds past 2**32), and initializers writing arrays whose elements
share memory (zero or overlapping strides)."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

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


# ---- initializers of arrays whose elements share memory ---------------------------------------


def _shared_rows():
    """A writable (4, 3) view whose four rows are one row of memory (torch's expand)."""
    base = np.zeros(3)
    return base, as_strided(base, shape=(4, 3), strides=(0, 8))


def _overlapping_rows():
    """A writable (3, 3) view whose rows overlap by one element (strides (16, 8))."""
    base = np.zeros(8)
    return base, as_strided(base, shape=(3, 3), strides=(16, 8))


FILLS = [
    lambda w: I.normal_(w, rng=0),
    lambda w: I.uniform_(w, rng=0),
    lambda w: I.lecun_uniform_(w, rng=0),
    lambda w: I.xavier_normal_(w, rng=0),
    lambda w: I.kaiming_uniform_(w, rng=0),
    lambda w: I.geometric_normal_(w, rng=0),
    lambda w: I.orthogonal_(w, rng=0),
]


@pytest.mark.parametrize("make", [_shared_rows, _overlapping_rows])
@pytest.mark.parametrize("fill", FILLS)
def test_initializers_refuse_arrays_whose_elements_share_memory(fill, make):
    """The draws were written one after another into shared memory: the last one left in every
    element that shares it, e.g. four equal rows of an "orthogonal" (4, 3) matrix. torch refuses
    these ("more than one element of the written-to tensor refers to a single memory location")."""
    base, w = make()
    assert w.flags.writeable
    with pytest.raises(ValueError, match=r"^w: array has overlapping elements"):
        fill(w)
    assert (base == 0).all()


def test_lsuv_refuses_a_weight_whose_elements_share_memory():
    base, w = _shared_rows()
    with pytest.raises(ValueError, match=r"^weights\[1\]: array has overlapping elements"):
        I.lsuv_([np.eye(4), w], lambda x: [x, x], np.ones((8, 4)), orthogonal_start=False, rng=0)
    assert (base == 0).all()


def test_initializers_accept_strided_arrays_with_distinct_elements():
    # (2, 3) with strides (24, 16): elements at bytes 0, 16, 32 and 24, 40, 56, distinct though the
    # strides are not nested (the rows interleave); and transposes, reversed and sliced views
    base = np.zeros(8)
    w = as_strided(base, shape=(2, 3), strides=(24, 16))
    I.orthogonal_(w, rng=0)
    np.testing.assert_allclose(w @ w.T, np.eye(2), atol=1e-12)
    assert base[1] == 0
    for v in (np.zeros((5, 3)).T, np.zeros((6, 4))[::-2, 1:], np.zeros((3, 1, 4))):
        want = I.xavier_normal_(np.zeros(v.shape), rng=3)
        np.testing.assert_array_equal(I.xavier_normal_(v, rng=3), want)


@pytest.mark.parametrize("n", [2, 5, 33])
def test_native_philox_calls_past_2_64_are_refused_as_on_the_gpu(n):
    """The native CPU fills and dropout refuse an offset whose offset + size passes 2**64, as the
    CUDA module (where the block count overflowed and the launch hung) and the Python wrappers do;
    they returned wrapped words before. A draw ending exactly at 2**64 still runs."""
    from optkern import _cpu

    off = 2**64 - n + 1
    x = np.ones(n, np.float32)
    for call in (
        lambda: _cpu.dropout_(x, np.empty_like(x), 0.5, 7, off, None),
        lambda: _cpu.random_uniform_(np.empty(n), 3, off),
        lambda: _cpu.random_rademacher_(np.empty(n, np.float32), 3, off),
    ):
        with pytest.raises(ValueError, match="offset: offset"):
            call()
    out = np.empty(n, np.float32)
    _cpu.random_uniform_(out, 3, off - 1)
    assert np.all((out >= 0) & (out < 1))
