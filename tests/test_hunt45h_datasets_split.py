"""Dataset.split (hunt 45h): a val_fraction that leaves no training sample is named.

At 0.9999 the digits' 1797 samples round to 1797 for validation, and the error said "digits: 1797
samples are too few to split", blaming the data for the argument."""

import numpy as np
import pytest

from optkern.datasets import DataError, Dataset, load_digits


def test_a_fraction_leaving_no_training_sample_is_named():
    digits = load_digits()
    with pytest.raises(ValueError, match=r"^val_fraction: 0\.9999 of 1797 samples is 1797 for validation"):
        digits.split(0.9999)
    train, val = digits.split(0.9997)  # (1796.5 rounds to 1796: one training sample)
    assert (len(train.y), len(val.y)) == (1, 1796)


def test_one_sample_is_still_too_few():
    tiny = Dataset(np.zeros((1, 2), np.float32), np.zeros(1, np.int64), 2, "tiny")
    with pytest.raises(DataError, match="^tiny: 1 samples are too few to split"):
        tiny.split(0.5)
