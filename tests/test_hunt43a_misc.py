"""BatchLoader.load_state_dict's unknown keys; optkern.random's 0-d array shapes (NumPy's sizes)."""

import numpy as np
import pytest

from optkern import data
from optkern import random as okr


def test_batch_loader_refuses_an_unknown_state_key_and_changes_nothing():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    loader = data.BatchLoader(x, None, 4, seed=3)
    before = loader.state_dict()
    # a typo'd 'batch' restarted the epoch silently; a Scheduler's state was taken as well
    for bad in ({"epoch": 2, "seed": 3, "btach": 1}, {"epoch": 2, "seed": 3, "batch": 0, "last_step": 5}):
        with pytest.raises(ValueError, match="^state: unknown key"):
            loader.load_state_dict(bad)
        assert loader.state_dict() == before
    loader.load_state_dict({"epoch": 2, "seed": 3, "batch": 1})  # its own keys (and 'batch' optional)
    loader.load_state_dict({"epoch": 2, "seed": 3})
    assert loader.state_dict() == {"epoch": 2, "seed": 3, "batch": 0}


@pytest.mark.parametrize("fn", [okr.uniform, okr.rademacher])
@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.int32])
def test_a_0d_integer_array_is_a_size_as_numpy_takes_it(fn, dtype):
    size = np.array(5, dtype=dtype)
    assert np.random.default_rng(0).uniform(size=size).shape == (5,)  # NumPy's reading
    np.testing.assert_array_equal(fn(size, 7, 3), fn(5, 7, 3))


def test_0d_shapes_as_numpy():
    a = okr.uniform((), 7)  # NumPy's Generator.uniform(size=()) is a 0-d array too
    assert a.shape == np.random.default_rng(0).uniform(size=()).shape == ()
    assert a == okr.uniform(1, 7)[0]
    with pytest.raises(TypeError, match="^shape"):
        okr.uniform(np.array(3.0), 7)  # (NumPy refuses a float size as well)
    with pytest.raises(ValueError, match="^shape"):
        okr.uniform(np.array(-2), 7)
