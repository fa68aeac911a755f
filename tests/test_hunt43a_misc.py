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


def test_scheduler_refuses_an_unknown_state_key_and_changes_nothing():
    from optkern import schedules as S

    opt = type("O", (), {})()
    opt.param_groups = [{"lr": 0.1}]
    sched = S.Scheduler(opt, S.exponential(0.1, 0.5))
    sched.step()
    before, lr = sched.state_dict(), opt.param_groups[0]["lr"]
    # a typo'd 'relative' was ignored: the values written as this scheduler's absolute ones
    with pytest.raises(ValueError, match="^state: unknown key 'relatve'"):
        sched.load_state_dict({"last_step": 3, "base_values": [1.0], "relatve": True})
    assert sched.state_dict() == before and opt.param_groups[0]["lr"] == lr
    sched.load_state_dict({"last_step": 3, "base_values": [0.1]})  # (the optional keys stay optional)
    assert opt.param_groups[0]["lr"] == 0.1 * 0.5**3


def test_early_stopping_refuses_an_unknown_state_key_and_changes_nothing():
    from optkern.regularize import EarlyStopping

    stop = EarlyStopping(patience=2)
    stop.step(1.0)
    before = stop.state_dict()
    with pytest.raises(ValueError, match="^state: unknown key 'num_bda'"):
        stop.load_state_dict({**before, "num_bda": 2})
    assert stop.state_dict() == before
    stop.load_state_dict({k: v for k, v in before.items() if k not in ("mode", "kept")})
