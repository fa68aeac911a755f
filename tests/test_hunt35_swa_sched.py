"""Session 35 hunt: optkern.swa, SWALP and optkern.schedules as a demanding user (odd layouts,
step counts, resumes), each test failing before its fix."""

import numpy as np
import pytest

from optkern.swa import AveragedParams


def test_averages_of_a_fortran_ordered_param_are_c_contiguous():
    # The construction-time copy kept the param's Fortran order: every later update raised
    # "averages[0]: array must be C-contiguous" (an array the caller never passed), even with
    # C-contiguous params of the right shape.
    init = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    avg = AveragedParams([init])
    assert avg.averages[0].flags.c_contiguous
    assert avg.state_dict()["averages"][0].flags.c_contiguous
    step1 = np.ones((2, 3), np.float32)
    step2 = np.full((2, 3), 3.0, np.float32)
    avg.update([step1])
    avg.update([step2])
    np.testing.assert_array_equal(avg.averages[0], np.full((2, 3), 2.0, np.float32))


def test_a_fortran_ordered_param_given_to_update_is_named():
    # (the kernel needs C order: the error names the caller's array, as for any other layout)
    avg = AveragedParams([np.zeros((2, 3), np.float32)])
    before = avg.averages[0].copy()
    with pytest.raises(ValueError, match=r"params\[0\]"):
        avg.update([np.asfortranarray(np.ones((2, 3), np.float32))])
    np.testing.assert_array_equal(avg.averages[0], before)
    assert avg.n_averaged == 0
