"""BatchLoader (hunt 45h): its public attributes as read, like its options (``shuffle``, ``seed``).

A ``y`` assigned with more examples than ``x`` was paired with its first rows silently, one with fewer
failed with NumPy's unnamed IndexError from inside an epoch that then counted as done; an ``epoch``
assigned as -1 or "2" went into ``state_dict`` unchecked, a state its own ``load_state_dict`` refuses,
and a NumPy integer one came back as ``np.int64``."""

import numpy as np
import pytest

from optkern.data import BatchLoader


@pytest.mark.parametrize("rows", [5, 12])
def test_a_y_assigned_of_another_length_is_refused_before_the_epoch_begins(rows):
    loader = BatchLoader(np.arange(10.0), np.arange(10), 4)
    loader.y = np.arange(rows)
    with pytest.raises(ValueError, match=rf"^y: expected 10 examples to match x, got shape \({rows},\)"):
        list(loader)
    assert loader.epoch == 0
    with pytest.raises(ValueError, match="^y: expected 10 examples"):
        list(loader.batches(0))


def test_an_x_assigned_as_a_list_is_named():
    loader = BatchLoader(np.arange(10.0), None, 4)
    loader.x = list(range(10))
    with pytest.raises(TypeError, match="^x: expected a numpy or cupy array, got list"):
        len(loader)
    with pytest.raises(TypeError, match="^x: expected a numpy or cupy array, got list"):
        list(loader)
    assert loader.epoch == 0


def test_an_x_assigned_of_another_length_is_batched_whole():
    loader = BatchLoader(np.arange(10.0), None, 4, seed=1)
    loader.x = np.arange(12.0)
    assert len(loader) == 3
    assert sorted(v for b in loader for v in b.tolist()) == list(range(12))


@pytest.mark.parametrize(("epoch", "error"), [(-1, ValueError), ("2", TypeError), (2.0, TypeError)])
def test_a_bad_epoch_assigned_is_named_by_state_dict(epoch, error):
    loader = BatchLoader(np.arange(10.0), None, 4)
    loader.epoch = epoch
    with pytest.raises(error, match="^epoch: "):
        loader.state_dict()


def test_a_numpy_epoch_assigned_gives_plain_ints():
    loader = BatchLoader(np.arange(10.0), None, 4)
    loader.epoch = np.int64(2)
    state = loader.state_dict()
    assert state == {"epoch": 2, "seed": 0, "batch": 0} and type(state["epoch"]) is int
    list(loader)
    assert type(loader.state_dict()["epoch"]) is int and loader.epoch == 3
