"""Hunt 40i: ``soft_targets`` (and ``mixup`` / ``cutmix``, which build targets with it) refuse a
``num_classes`` whose one-hot (N, num_classes) targets no array holds (more than 2**63 - 1 bytes),
naming it and the most it takes for that many rows: it raised NumPy's unnamed "Maximum allowed
dimension exceeded" or "array is too big", after the labels were checked against it."""

import numpy as np
import pytest

from optkern import regularize as R

INT64_MAX = 2**63 - 1
Y = np.array([0, 1, 0, 1])


def _want(most, dt, rows, got):
    over = f" over {rows} rows" if rows > 1 else ""
    return rf"^num_classes: must be <= {most} \(2\*\*63 - 1 bytes of {dt}{over}\), got {got}$"


@pytest.mark.parametrize("k", [2**62, 2**63 - 1, 2**70])
@pytest.mark.parametrize("dtype,itemsize", [(np.float32, 4), (np.float64, 8)])
def test_soft_targets_names_num_classes_no_array_holds(k, dtype, itemsize):
    with pytest.raises(ValueError, match=_want(INT64_MAX // (itemsize * 4), np.dtype(dtype).name, 4, k)):
        R.soft_targets(Y, 4, num_classes=k, dtype=dtype)


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_mixup_and_cutmix_name_it_too(mix):
    x = np.ones((4, 3, 4, 4), np.float32)
    x0 = x.copy()
    with pytest.raises(ValueError, match=_want(INT64_MAX // 16, "float32", 4, 2**70)):
        getattr(R, mix)(x, Y, num_classes=2**70, rng=np.random.default_rng(0))
    assert np.array_equal(x, x0)


def test_the_bound_counts_no_rows_as_one():  # (an empty (0, k) array: k itself bounded)
    with pytest.raises(ValueError, match=_want(INT64_MAX // 4, "float32", 1, 2**70)):
        R.soft_targets(np.zeros(0, np.int64), 0, num_classes=2**70)
    assert R.soft_targets(np.zeros(0, np.int64), 0, num_classes=2**40).shape == (0, 2**40)


def test_soft_targets_given_as_soft_ones_are_not_bounded():
    y = np.full((2, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match="^y: has 2 classes but num_classes is"):
        R.soft_targets(y, 2, num_classes=2**70)
