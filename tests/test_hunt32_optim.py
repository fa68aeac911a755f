"""optkern.optim (hunt 32): the core optimizers' checks and semantics at their edges.

- A param replaced in its group's own list by an array of another dtype: the group's
  hyper-parameters are checked against the new dtype (the per-group cache of that check kept
  the old dtype's verdict, and an ``lr`` beyond float32 wrote NaN into a float32 param).
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O


def test_param_replaced_by_another_dtype_checks_the_hyper_parameters_again():
    p = np.ones(3)
    opt = O.SGD([p], lr=1e39)  # finite in float64, inf in float32
    opt.step([np.zeros(3)])
    new = np.ones(3, np.float32)
    opt.param_groups[0]["params"][0] = new
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['lr'\]: 1e\+39 is not finite in float32"):
        opt.step([np.zeros(3, np.float32)])
    np.testing.assert_array_equal(new, 1.0)
