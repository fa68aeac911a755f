"""BatchLoader (hunt 46d): a state taken inside the loop after the epoch's last batch -- every
example handed out, the epoch over but for the loop's return -- loaded into a loader over another
dataset length or another ``shuffle``. It was refused ("x: the state is 4 batches into epoch 0 of
10 examples, x has 12 (their order differs: load it at an epoch's end, ...)"), though it is at an
epoch's end and no order is left to differ: the loop checkpoints at its last step as at any other.
It now loads at the end of that epoch (the next loop hands out nothing and ends it)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern.data import BatchLoader


def _last_batch_state(n=10, size=3, **kw):
    loader = BatchLoader(np.arange(float(n)), None, size, seed=4, **kw)
    for _ in loader:
        state = loader.state_dict()  # (the last one: taken after the epoch's last batch)
    return state


@pytest.mark.parametrize(
    ("n", "kw"), [(12, {}), (7, {}), (10, {"shuffle": False}), (13, {"shuffle": False, "drop_last": True})]
)
def test_a_state_after_the_last_batch_loads_into_another_setup_at_the_epochs_end(n, kw):
    state = _last_batch_state()
    assert state["batch"] == 4 and state["n"] == 10
    other = BatchLoader(np.arange(float(n)), None, 3, seed=0, **kw)
    other.load_state_dict(state)
    assert other.state_dict()["batch"] == len(other) and other.epoch == 0
    assert [b.tolist() for b in other] == [] and other.epoch == 1
    # the next epoch is the whole of this loader's data, in the saved seed's order
    seen = [v for b in other for v in b.tolist()]
    assert len(set(seen)) == len(seen) == (n - n % 3 if kw.get("drop_last") else n) and set(seen) <= set(range(n))
    assert other.state_dict() == {"epoch": 2, "seed": 4, "batch": 0}


def test_a_state_inside_the_epoch_is_still_refused_for_another_length():
    loader = BatchLoader(np.arange(10.0), None, 3, seed=4)
    for _ in loader:
        state = loader.state_dict()
        break
    other = BatchLoader(np.arange(12.0), None, 3, seed=0)
    with pytest.raises(ValueError, match=r"^x: the state is 1 batches into epoch 0 of 10 examples, x has 12"):
        other.load_state_dict(state)
    assert other.state_dict() == {"epoch": 0, "seed": 0, "batch": 0}
