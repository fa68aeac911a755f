"""optkern.data.BatchLoader's options assigned after construction (public attributes, as the
constructor's arguments): checked by name when read, as the constructor checks them, before the epoch
counts as begun -- "no" for shuffle / drop_last read as True silently, a seed of -1 or None raised
NumPy's or Python's unnamed errors (after the epoch had advanced)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern.data import BatchLoader

BAD = [
    ("shuffle", "no", TypeError),
    ("shuffle", None, TypeError),
    ("drop_last", "no", TypeError),
    ("drop_last", 2, (TypeError, ValueError)),
    ("seed", -1, ValueError),
    ("seed", 2.5, TypeError),
    ("seed", None, TypeError),
]


@pytest.mark.parametrize("attr, value, error", BAD)
def test_a_bad_option_assigned_later_is_named_before_the_epoch_begins(attr, value, error):
    loader = BatchLoader(np.arange(10.0), None, 3, seed=1)
    setattr(loader, attr, value)
    with pytest.raises(error, match=attr):
        next(iter(loader))
    assert loader.epoch == 0  # (the epoch did not count as begun)
    if attr != "drop_last":  # (the order does not depend on it)
        with pytest.raises(error, match=attr):
            loader.order()
    with pytest.raises(error, match=attr):
        list(loader.batches(0))


@pytest.mark.parametrize("attr, value", [("seed", -1), ("seed", None)])
def test_state_dict_names_a_bad_seed(attr, value):
    loader = BatchLoader(np.arange(10.0), None, 3)
    setattr(loader, attr, value)
    with pytest.raises((TypeError, ValueError), match="seed"):
        loader.state_dict()


def test_good_options_assigned_later_are_used():
    x = np.arange(10.0)
    loader = BatchLoader(x, None, 3, seed=1)
    loader.shuffle, loader.drop_last, loader.seed = False, True, np.int64(5)
    assert [b.tolist() for b in loader] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]
    loader.shuffle = np.bool_(True)
    want = BatchLoader(x, None, 3, seed=5, drop_last=True)
    want.epoch = 1
    assert [b.tolist() for b in loader] == [b.tolist() for b in want]
    assert loader.state_dict() == {"epoch": 2, "seed": 5, "batch": 0}


# ---- a position restored inside the loop stays restored ---------------------------------------


def test_a_state_loaded_inside_the_loop_is_kept_after_it():
    x = np.arange(20.0)
    loader = BatchLoader(x, None, 4, seed=1)
    saved = None
    for i, _ in enumerate(loader):
        if i == 1:
            saved = loader.state_dict()
        if i == 3:  # (a rollback to the checkpoint, as on a NaN loss, then out of the loop)
            loader.load_state_dict(saved)
            break
    want = {"epoch": 0, "seed": 1, "batch": 2, "n": 20, "batch_size": 4, "shuffle": True}
    assert loader.state_dict() == saved == want
    rest = [b.tolist() for b in loader]
    assert rest == [b.tolist() for b in BatchLoader(x, None, 4, seed=1).batches(0, 2)]
    assert loader.epoch == 1


def test_an_epoch_assigned_inside_the_loop_is_kept():
    loader = BatchLoader(np.arange(20.0), None, 4)
    for _ in loader:
        loader.epoch = 7
        break
    assert loader.epoch == 7 and loader.state_dict()["batch"] == 0


def test_an_epoch_left_early_still_counts_as_done():
    loader = BatchLoader(np.arange(20.0), None, 4)
    for _ in loader:
        break
    assert loader.state_dict() == {"epoch": 1, "seed": 0, "batch": 0}
    it = iter(loader)
    next(it)
    it.close()
    assert loader.epoch == 2
