"""``GradScaler.update(new_scale)`` with a 1-element float array, as torch takes a 1-element tensor
(a float or NumPy scalar only, before: ``TypeError: new_scale: expected a real number``)."""

import numpy as np
import pytest

from optkern import amp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (), (1, 1)])
def test_a_one_element_float_array_sets_the_scale(dtype, shape):
    s = amp.GradScaler(init_scale=8.0)
    s.update(np.full(shape, 0.5, dtype))
    assert s.get_scale() == 0.5


@pytest.mark.parametrize(
    ("bad", "exc"),
    [
        (np.ones(2), TypeError),
        (np.array([3]), TypeError),
        (np.array([-1.0]), ValueError),
        (np.array([np.inf]), ValueError),
    ],
)
def test_bad_arrays_are_refused_by_name_and_keep_the_scale(bad, exc):
    s = amp.GradScaler(init_scale=8.0)
    with pytest.raises(exc, match="^new_scale:"):
        s.update(bad)
    assert s.get_scale() == 8.0
