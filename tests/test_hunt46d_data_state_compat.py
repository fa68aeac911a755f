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


def test_a_mid_epoch_state_holds_its_setup_and_the_docs_say_what_it_needs():
    loader = BatchLoader(np.arange(10.0), None, 3, seed=1)
    for _ in loader:
        state = loader.state_dict()
        break
    assert state == {"epoch": 0, "seed": 1, "batch": 1, "n": 10, "batch_size": 3, "shuffle": True}
    with pytest.raises(ValueError, match="unknown key 'n'"):
        _backend.state_keys(state, *_OLD_KEYS, "a BatchLoader's")
    doc = " ".join(BatchLoader.state_dict.__doc__.split())
    assert "older optkern" in doc and "epoch's boundary" in doc
    import pathlib

    readme = " ".join((pathlib.Path(__file__).parents[1] / "README.md").read_text().split())
    assert "`n`, `batch_size` and `shuffle`" in readme
