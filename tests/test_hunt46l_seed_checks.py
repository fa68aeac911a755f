"""optkern.lowp's seed / step / offset checks are optkern.random's (one definition: lowp had a copy),
and their messages still name lowp's argument."""

import numpy as np
import pytest

import optkern.random as R
from optkern import lowp


def test_lowp_checks_its_seeds_with_randoms_definition():
    assert lowp._u64 is R._u64


@pytest.mark.parametrize("arg", ["seed", "step", "offset"])
@pytest.mark.parametrize(
    "bad, err, match", [(-1, ValueError, ""), (2**64, ValueError, "< 2\\*\\*64"), (1.5, TypeError, "")]
)
def test_lowp_seed_errors_name_the_argument(arg, bad, err, match):
    x = np.ones(4, np.float32)
    with pytest.raises(err, match=f"^{arg}: .*{match}"):
        lowp.stochastic_round(x, **{arg: bad})
    with pytest.raises(err, match=f"^{arg}: .*{match}"):
        lowp.quantize_fixed_point(x, **{arg: bad})


def test_numpy_integers_still_taken():
    x = np.linspace(-1, 1, 9, dtype=np.float32)
    a = lowp.stochastic_round(x, seed=np.uint64(2**64 - 1), step=np.int32(3), raw=True)
    b = lowp.stochastic_round(x, seed=2**64 - 1, step=3, raw=True)
    np.testing.assert_array_equal(a, b)
