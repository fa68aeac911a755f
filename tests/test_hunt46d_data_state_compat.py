"""BatchLoader's state dict across optkern versions (hunt 46d). A state taken inside an epoch holds
``n``, ``batch_size`` and ``shuffle`` (what its batches were cut from), keys the loaders from before
them refuse by name ("state: unknown key 'n'"); one taken at an epoch's boundary must keep the keys
every version since the position was kept reads (``epoch``, ``seed``, ``batch`` = 0), and the docs
say so: where a mid-epoch state loads, and how to take one an older version loads."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _backend
from optkern.data import BatchLoader

_OLD_KEYS = ("epoch", "seed"), ("batch",)  # (the check of the loaders before n, batch_size, shuffle)


def _boundary_states():
    loader = BatchLoader(np.arange(10.0), None, 3, seed=1)
    yield "fresh", loader.state_dict()
    for _ in loader:
        pass
    yield "after an epoch", loader.state_dict()
    for _ in loader:
        break
    yield "left early", loader.state_dict()
    loader.epoch = 7
    yield "epoch assigned", loader.state_dict()
    other = BatchLoader(np.arange(10.0), None, 3, seed=1)
    for k, _ in enumerate(other):
        if k == 1:
            mid = other.state_dict()
            break
    loader.load_state_dict(mid)
    for _ in loader:  # (the resumed epoch's rest)
        pass
    yield "a resumed epoch done", loader.state_dict()


@pytest.mark.parametrize(("where", "state"), list(_boundary_states()))
def test_a_state_at_an_epoch_boundary_loads_in_older_versions(where, state):
    assert set(state) == {"epoch", "seed", "batch"} and state["batch"] == 0, where
    _backend.state_keys(state, *_OLD_KEYS, "a BatchLoader's")  # (what an older load_state_dict checks)


def _mid_epoch(n=10, shuffle=True):
    loader = BatchLoader(np.arange(float(n)), None, 3, seed=1, shuffle=shuffle)
    for _ in loader:
        return loader, loader.state_dict()
    raise AssertionError("no batch")


def test_a_mid_epoch_state_holds_its_setup_which_older_versions_refuse():
    _, state = _mid_epoch()
    assert state == {"epoch": 0, "seed": 1, "batch": 1, "n": 10, "batch_size": 3, "shuffle": True}
    with pytest.raises(ValueError, match="unknown key 'n'"):
        _backend.state_keys(state, *_OLD_KEYS, "a BatchLoader's")


def test_a_mid_epoch_state_resumes_only_with_the_same_n_and_shuffle():
    # (what state_dict's doc and the README promise, observed: the next batch of the saved loader,
    # and another dataset length or shuffle refused by name, the loader left as it was)
    _, state = _mid_epoch()
    whole = [b.copy() for b in BatchLoader(np.arange(10.0), None, 3, seed=1)]  # (the saved loader's epoch)
    resumed = BatchLoader(np.arange(10.0), None, 3, seed=5)
    resumed.load_state_dict(state)
    got = [b.copy() for b in resumed]
    assert len(got) == len(whole) - 1 and all(np.array_equal(a, b) for a, b in zip(got, whole[1:]))
    others = [(BatchLoader(np.arange(11.0), None, 3, seed=1), "x"), (_mid_epoch(shuffle=False)[0], "shuffle")]
    for other, name in others:
        before = other.state_dict()
        with pytest.raises(ValueError, match=rf"^{name}\b"):
            other.load_state_dict(state)
        assert other.state_dict() == before
