"""optkern.data.BatchLoader with a batch-size schedule."""

import numpy as np
import pytest

from optkern import data, schedules


def dataset(n=103):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return x, np.arange(n)


def test_epochs_cover_data_once_with_scheduled_sizes():
    x, y = dataset()
    sched = schedules.batch_size_schedule(10, milestones=[1, 2], factor=2, max_batch_size=30)
    loader = data.BatchLoader(x, y, sched, seed=4)
    sizes = []
    for epoch in range(4):
        assert loader.epoch == epoch
        seen = []
        batches = list(loader)
        for xb, yb in batches:
            np.testing.assert_array_equal(xb, x[yb])
            seen.extend(yb.tolist())
        assert sorted(seen) == list(range(103))
        sizes.append([len(b[1]) for b in batches])
    assert sizes[0] == [10] * 10 + [3]
    assert sizes[1] == [20] * 5 + [3]
    assert sizes[2] == sizes[3] == [30] * 3 + [13]
    assert loader.epoch == 4


def test_shuffle_reproducible_per_epoch_and_resume():
    x, y = dataset()
    a = data.BatchLoader(x, y, 16, seed=1)
    e0 = [yb.copy() for _, yb in a]
    e1 = [yb.copy() for _, yb in a]
    assert not np.array_equal(np.concatenate(e0), np.concatenate(e1))
    b = data.BatchLoader(x, y, 16, seed=1)
    b.load_state_dict({"epoch": 1, "seed": 1})
    for u, v in zip(e1, [yb for _, yb in b]):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(np.concatenate(e0), np.arange(103))


def test_drop_last_no_shuffle_callable_and_x_only():
    x, _ = dataset(10)
    loader = data.BatchLoader(x, None, lambda e: 3 + e, shuffle=False, drop_last=True)
    assert len(loader) == 3
    got = list(loader)
    np.testing.assert_array_equal(np.concatenate(got), x[:9])
    assert [len(b) for b in loader] == [4, 4]


def test_bad_inputs():
    x, y = dataset()
    with pytest.raises(ValueError, match="y"):
        data.BatchLoader(x, y[:5], 8)
    with pytest.raises(TypeError, match="x"):
        data.BatchLoader(list(x), y, 8)
    with pytest.raises(ValueError, match="batch_size_schedule"):
        data.BatchLoader(x, y, 0)
    with pytest.raises(TypeError, match="batch_size_schedule"):
        data.BatchLoader(x, y, "big")
    with pytest.raises(ValueError, match="batch_size_schedule: returned 0"):
        list(data.BatchLoader(x, y, lambda e: 0))
    with pytest.raises(ValueError, match="seed"):
        data.BatchLoader(x, y, 8, seed=-1)


def test_cupy_batches():
    cp = pytest.importorskip("cupy", reason="CuPy is not installed: CuPy batches untested here")
    x, y = dataset()
    ref = [yb for _, yb in data.BatchLoader(x, y, 7, seed=2)]
    got = [yb for _, yb in data.BatchLoader(cp.asarray(x), cp.asarray(y), 7, seed=2)]
    for u, v in zip(ref, got):
        np.testing.assert_array_equal(u, cp.asnumpy(v))
