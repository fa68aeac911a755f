"""BatchLoader (hunt 45h): a state loaded inside the loop, and the loop going on.

The loop kept handing out the batches after the ones it had reached, as if nothing was loaded, and
recorded its own position over the restored one: a rollback to a checkpoint (as on a NaN loss)
that went on in the same loop was lost, its batches never seen again, the epoch ended as if it had
not happened."""

import numpy as np

from optkern.data import BatchLoader


def _run(loader, rollback_at, saved_at):
    got, saved, rolled = [], None, False
    for b in loader:
        got.append(b.tolist())
        if len(got) == saved_at:
            saved = loader.state_dict()
        if len(got) == rollback_at and not rolled:
            loader.load_state_dict(saved)
            rolled = True
    return got


def test_a_rollback_inside_the_loop_goes_on_from_the_restored_batch():
    x = np.arange(20.0)
    got = _run(BatchLoader(x, None, 4, seed=1), rollback_at=4, saved_at=2)
    epoch = [b.tolist() for b in BatchLoader(x, None, 4, seed=1).batches(0)]
    assert got == epoch[:4] + epoch[2:]  # batches 3 and 4 again, after the checkpoint's 2
    loader = BatchLoader(x, None, 4, seed=1)
    _run(loader, rollback_at=4, saved_at=2)
    assert loader.state_dict() == {"epoch": 1, "seed": 1, "batch": 0}


def test_a_state_of_another_seed_loaded_inside_the_loop_goes_on_in_its_order():
    x = np.arange(20.0)
    loader = BatchLoader(x, None, 4, seed=1)
    state = {"epoch": 0, "seed": 9, "batch": 3, "n": 20, "batch_size": 4, "shuffle": True}
    got = []
    for b in loader:
        got.append(b.tolist())
        if len(got) == 1:
            loader.load_state_dict(state)
    want = [b.tolist() for b in BatchLoader(x, None, 4, seed=9).batches(0, 3)]
    assert got[1:] == want and loader.epoch == 1


def test_a_state_of_another_epoch_loaded_inside_the_loop_ends_it_there():
    x = np.arange(20.0)
    loader = BatchLoader(x, None, 4, seed=1)
    got = []
    for b in loader:
        got.append(b.tolist())
        if len(got) == 2:
            loader.load_state_dict({"epoch": 3, "seed": 1, "batch": 1})
    assert len(got) == 2  # (one loop, one epoch: the restored one's batches in the next loop)
    assert loader.state_dict() == {"epoch": 3, "seed": 1, "batch": 1, "n": 20, "batch_size": 4, "shuffle": True}
    assert [b.tolist() for b in loader] == [b.tolist() for b in BatchLoader(x, None, 4, seed=1).batches(3, 1)]


def test_an_epoch_assigned_inside_the_loop_ends_it():
    loader = BatchLoader(np.arange(20.0), None, 4)
    got = []
    for b in loader:
        got.append(b)
        loader.epoch = 7
    assert len(got) == 1 and loader.state_dict() == {"epoch": 7, "seed": 0, "batch": 0}


def test_two_loops_at_once_share_the_one_position():
    # (each loop's batch moves the loader's position, which the other then goes on from: every batch
    # once; they went on from their own, the second loop's first batch handed out twice)
    x = np.arange(20.0)
    loader = BatchLoader(x, None, 4, seed=1)
    got = [v for a, b in zip(loader, loader) for v in (a.tolist(), b.tolist())]
    epoch = [b.tolist() for b in BatchLoader(x, None, 4, seed=1).batches(0)]
    assert got == epoch[:4] and loader.epoch == 1
