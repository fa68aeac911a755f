"""Hunt 41d: ``BatchNorm.load_state_dict`` names ``num_batches_tracked`` for every bad count.

The count was read as ``int(count.item())``: a NaN or inf array raised Python's unnamed
``ValueError: cannot convert float NaN to integer``, a complex one an unnamed TypeError, an array of
several values NumPy's unnamed "can only convert an array of size 1 to a Python scalar", and a string
array ``np.array("3")`` was taken as 3. Each is now the ValueError / TypeError naming the key, and
nothing is written. (A float count is truncated, as torch's copy into its int64 buffer does.)
"""

import numpy as np
import pytest

from optkern import norm

KEY = r"^state_dict\['num_batches_tracked'\]: "


def _state(count):
    bn = norm.BatchNorm(3, dtype=np.float64)
    sd = bn.state_dict()
    sd["running_mean"] = sd["running_mean"] + 1.5
    sd["num_batches_tracked"] = count
    return bn, sd


@pytest.mark.parametrize(
    "count,err",
    [
        (np.array(np.nan), ValueError),
        (np.array(np.inf), ValueError),
        (np.float64(-np.inf), ValueError),
        (np.array(1 + 2j), TypeError),
        (np.array([3, 4]), ValueError),
        (np.array("3"), TypeError),
        (np.zeros((2, 1)), ValueError),
    ],
    ids=["nan", "inf", "-inf scalar", "complex", "two values", "string", "2x1"],
)
def test_a_bad_count_is_refused_naming_its_key_before_anything_is_written(count, err):
    bn, sd = _state(count)
    with pytest.raises(err, match=KEY):
        bn.load_state_dict(sd)
    assert bn.num_batches_tracked == 0 and not bn.running_mean.any()


def test_a_torch_count_of_nan_is_refused_too():
    torch = pytest.importorskip("torch")
    bn, sd = _state(torch.tensor(float("nan")))
    with pytest.raises(ValueError, match=KEY):
        bn.load_state_dict(sd)
    assert bn.num_batches_tracked == 0


@pytest.mark.parametrize(
    "count,want",
    [(np.array(7), 7), (np.array([7]), 7), (np.array(7.9), 7), (np.int32(4), 4), (5, 5), (np.array(True), 1)],
)
def test_good_counts_still_load(count, want):
    bn, sd = _state(count)
    bn.load_state_dict(sd)
    assert bn.num_batches_tracked == want and np.all(bn.running_mean == 1.5)
