"""BatchLoader (hunt 45h): a state taken inside an epoch, loaded into a loader set up otherwise.

Such a state held only the count of batches handed out, and a loader with another batch size,
dataset length or shuffle resumed at that count of its own batches: other examples, some seen twice
and some never in the epoch. Now it resumes at the saved loader's next example or is refused,
naming the setting, with nothing changed."""

import numpy as np
import pytest

import optkern
from optkern.data import BatchLoader


def _take(loader, k):
    """The first ``k`` batches of the loader's epoch and its state after them (taken in the loop)."""
    got = []
    for b in loader:
        got.append(b.tolist())
        if len(got) == k:
            return got, loader.state_dict()
    raise AssertionError("the epoch ended early")


def _flat(batches):
    return [v for b in batches for v in b]


@pytest.mark.parametrize(("size", "other"), [(4, 2), (4, 8), (6, 3), (5, 10)])
def test_another_batch_size_resumes_at_the_next_example(size, other):
    x = np.arange(24.0)
    seen, state = _take(BatchLoader(x, None, size, seed=3), 2)
    resumed = BatchLoader(x, None, other, seed=0)
    resumed.load_state_dict(state)
    rest = [b.tolist() for b in resumed]
    # every example exactly once in the epoch, in the saved loader's order
    assert _flat(seen) + _flat(rest) == BatchLoader(x, None, size, seed=3).order(0).astype(float).tolist()
    assert all(len(b) == other for b in rest[:-1]) and resumed.epoch == 1


def test_another_batch_size_mid_batch_is_refused_unchanged():
    x = np.arange(24.0)
    _, state = _take(BatchLoader(x, None, 4, seed=3), 1)  # 4 examples handed out: not batches of 3
    other = BatchLoader(x, None, 3, seed=9)
    before = other.state_dict()
    with pytest.raises(ValueError, match=r"^batch_size_schedule: gives 3 for epoch 0.* 4 examples"):
        other.load_state_dict(state)
    assert other.state_dict() == before and other.seed == 9


def test_another_dataset_length_is_refused_unchanged():
    _, state = _take(BatchLoader(np.arange(20.0), None, 4, seed=1), 2)
    other = BatchLoader(np.arange(21.0), None, 4, seed=1)
    with pytest.raises(ValueError, match=r"^x: .* of 20 examples, x has 21"):
        other.load_state_dict(state)
    assert other.state_dict() == {"epoch": 0, "seed": 1, "batch": 0}


@pytest.mark.parametrize("shuffle", [True, False])
def test_another_shuffle_is_refused(shuffle):
    x = np.arange(20.0)
    _, state = _take(BatchLoader(x, None, 4, seed=1, shuffle=shuffle), 2)
    other = BatchLoader(x, None, 4, seed=1, shuffle=not shuffle)
    with pytest.raises(ValueError, match=rf"^shuffle: .*shuffle={shuffle}, this loader's is {not shuffle}"):
        other.load_state_dict(state)
    assert other.state_dict()["batch"] == 0


def test_another_drop_last_keeps_the_position_and_decides_the_end():
    x = np.arange(10.0)
    seen, state = _take(BatchLoader(x, None, 4, seed=2, drop_last=True), 2)  # (the epoch's last)
    for drop_last, tail in [(True, 0), (False, 2)]:
        resumed = BatchLoader(x, None, 4, seed=2, drop_last=drop_last)
        resumed.load_state_dict(state)
        rest = [b.tolist() for b in resumed]
        assert len(_flat(rest)) == tail
        assert sorted(_flat(seen) + _flat(rest))[: 8 + tail] == sorted(_flat(seen) + _flat(rest))
        assert len(set(_flat(seen) + _flat(rest))) == 8 + tail


def test_the_last_partial_batch_taken_ends_the_epoch_under_any_size():
    x = np.arange(10.0)
    _, state = _take(BatchLoader(x, None, 4, seed=2), 3)  # 4 + 4 + 2: all handed out
    for size, drop_last in [(4, True), (3, False), (7, True)]:
        resumed = BatchLoader(x, None, size, drop_last=drop_last)
        resumed.load_state_dict(state)
        assert list(resumed) == [] and resumed.epoch == 1


def test_a_state_at_an_epoch_end_loads_into_any_setup():
    loader = BatchLoader(np.arange(20.0), None, 4, seed=1)
    list(loader)
    state = loader.state_dict()
    assert state == {"epoch": 1, "seed": 1, "batch": 0}  # (no setup: nothing it would constrain)
    other = BatchLoader(np.arange(7.0), None, 3, shuffle=False)
    other.load_state_dict(state)
    assert other.epoch == 1 and len(list(other)) == 3


def test_an_old_state_without_the_setup_still_loads_as_before():
    x = np.arange(20.0)
    loader = BatchLoader(x, None, 4, seed=1)
    loader.load_state_dict({"epoch": 0, "seed": 1, "batch": 2})
    assert [b.tolist() for b in loader] == [b.tolist() for b in BatchLoader(x, None, 4, seed=1).batches(0, 2)]
    with pytest.raises(ValueError, match=r"^state\['batch'\]: 6 batches taken, but epoch 0 has 5"):
        BatchLoader(x, None, 4).load_state_dict({"epoch": 0, "seed": 1, "batch": 6})


def test_a_partial_or_bad_setup_is_refused():
    loader = BatchLoader(np.arange(20.0), None, 4)
    with pytest.raises(ValueError, match=r"^state: missing 'shuffle'"):
        loader.load_state_dict({"epoch": 0, "seed": 1, "batch": 2, "n": 20, "batch_size": 4})
    with pytest.raises(ValueError, match=r"^state\['batch_size'\]: must be >= 1"):
        loader.load_state_dict({"epoch": 0, "seed": 1, "batch": 2, "n": 20, "batch_size": 0, "shuffle": True})
    with pytest.raises(TypeError, match=r"^state\['shuffle'\]: expected a bool"):
        loader.load_state_dict({"epoch": 0, "seed": 1, "batch": 2, "n": 20, "batch_size": 4, "shuffle": "no"})
    with pytest.raises(ValueError, match=r"^state\['batch'\]: 6 batches taken, but 20 examples make 5 of 4"):
        loader.load_state_dict({"epoch": 0, "seed": 1, "batch": 6, "n": 20, "batch_size": 4, "shuffle": True})
    assert loader.state_dict() == {"epoch": 0, "seed": 0, "batch": 0}


def test_through_a_checkpoint_file_into_another_batch_size(tmp_path):
    x = np.arange(30.0)
    saved = BatchLoader(x, None, 6, seed=2**40)
    seen = []
    for b in saved:
        seen.append(b.tolist())
        if len(seen) == 3:  # (saved inside the loop: leaving it ends the epoch)
            path = optkern.save(tmp_path / "loader.okpt", loader=saved)
            break
    resumed = BatchLoader(x, None, 9)
    optkern.load(path, loader=resumed)
    assert resumed.state_dict() == {"epoch": 0, "seed": 2**40, "batch": 2, "n": 30, "batch_size": 9, "shuffle": True}
    assert sorted(_flat(seen) + _flat(resumed)) == x.tolist()
