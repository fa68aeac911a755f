"""Hunt 32, the counter-based RNG and what uses it: shapes of zero-size arrays whose other
dimensions overflow (optkern.random, optkern.init's return-new variants), and BatchLoader's epoch
after an epoch that failed before its first batch."""

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
