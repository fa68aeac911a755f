"""BatchLoader's data arguments (x, y: constructor and attributes) go through the one array view
every optkern entry point uses (``_foreign.as_array``): a NumPy masked array is refused naming the
argument (its batches were masked arrays whose mask optkern's steps ignore), a ``np.matrix`` is
batched as its plain ndarray (its batches were matrices, 2-D whatever the indexing)."""

import numpy as np
import pytest

from optkern.data import BatchLoader


def _masked(shape):
    a = np.random.default_rng().standard_normal(shape)
    return np.ma.masked_array(a, mask=a > 1.0)


@pytest.mark.parametrize("name", ["x", "y"])
def test_constructor_refuses_masked(name):
    args = {"x": np.ones((7, 3)), "y": np.ones(7)}
    args[name] = _masked((7, 3) if name == "x" else (7,))
    with pytest.raises(TypeError, match=rf"^{name}: .*masked array"):
        BatchLoader(**args, batch_size_schedule=2)


@pytest.mark.parametrize("name", ["x", "y"])
def test_assigned_masked_refused_before_a_batch(name):
    loader = BatchLoader(np.ones((7, 3)), np.ones(7), batch_size_schedule=2)
    setattr(loader, name, _masked((7, 3) if name == "x" else (7,)))
    with pytest.raises(TypeError, match=rf"^{name}: .*masked array"):
        next(iter(loader))
    assert loader.epoch == 0  # (refused before the epoch counted as begun)
    with pytest.raises(TypeError, match=rf"^{name}: .*masked array"):
        next(loader.batches(0))


_MATRIX = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")


@_MATRIX
@pytest.mark.parametrize("n", [1, 7, 1023])
def test_matrix_batched_as_plain_ndarray(n):
    rng = np.random.default_rng()
    xa, ya = rng.standard_normal((n, 3)), rng.standard_normal((n, 1))
    ref = BatchLoader(xa, ya, batch_size_schedule=4, seed=5)
    loader = BatchLoader(np.asmatrix(xa), np.asmatrix(ya), batch_size_schedule=4, seed=5)
    got, want = list(loader), list(ref)
    assert len(got) == len(want) == -(-n // 4)
    for (gx, gy), (wx, wy) in zip(got, want):
        assert type(gx) is np.ndarray and type(gy) is np.ndarray
        np.testing.assert_array_equal(gx, wx)
        np.testing.assert_array_equal(gy, wy)


@_MATRIX
def test_matrix_x_alone():
    xa = np.arange(14.0).reshape(7, 2)
    loader = BatchLoader(np.asmatrix(xa), batch_size_schedule=3, shuffle=False)
    got = list(loader)
    assert all(type(b) is np.ndarray for b in got)
    np.testing.assert_array_equal(np.concatenate(got), xa)
