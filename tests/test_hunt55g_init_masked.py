"""Hunt 55g: optkern.init's in-place initializers refuse a NumPy masked array by name, as every other
array argument of optkern does (``_foreign.refuse_masked``), before anything is written.

They took it as a plain array: every element was overwritten, the masked ones too, and the fill
(``w[...] = draw``, MaskedArray's own assignment) cleared the mask -- a pruned weight's mask was
lost without a word (``xavier_uniform_`` on a (3, 4) array with 3 masked entries left 0 masked).
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import init as I

MSG = "w: expected a numpy.ndarray, got a masked array"

# (name, extra positional arguments, shape): every in-place initializer of optkern.init
IN_PLACE = [
    ("xavier_uniform_", (), (3, 4)),
    ("xavier_normal_", (), (3, 4)),
    ("kaiming_uniform_", (), (3, 4)),
    ("kaiming_normal_", (), (3, 4)),
    ("lecun_uniform_", (), (3, 4)),
    ("lecun_normal_", (), (3, 4)),
    ("geometric_uniform_", (), (3, 4)),
    ("geometric_normal_", (), (3, 4)),
    ("uniform_", (), (3, 4)),
    ("normal_", (), (3, 4)),
    ("trunc_normal_", (), (3, 4)),
    ("orthogonal_", (), (3, 4)),
    ("sparse_", (0.5,), (3, 4)),
    ("constant_", (2.0,), (3, 4)),
    ("zeros_", (), (3, 4)),
    ("ones_", (), (3, 4)),
    ("eye_", (), (3, 4)),
    ("dirac_", (), (3, 3, 3)),
]


def _masked(shape):
    data = np.full(shape, 7.0, np.float32)
    mask = np.zeros(shape, bool)
    mask.flat[::2] = True
    return np.ma.array(data, mask=mask)


@pytest.mark.parametrize("name,args,shape", IN_PLACE, ids=[c[0] for c in IN_PLACE])
def test_in_place_initializers_refuse_masked_arrays_unwritten(name, args, shape):
    w = _masked(shape)
    mask, data = w.mask.copy(), w.data.copy()
    with pytest.raises(TypeError, match=MSG):
        getattr(I, name)(w, *args)
    np.testing.assert_array_equal(w.mask, mask)  # (the mask kept)
    np.testing.assert_array_equal(w.data, data)  # (nothing written)


def test_lsuv_names_the_masked_weight():
    ws = [np.ones((4, 3), np.float32), _masked((3, 4))]
    with pytest.raises(TypeError, match=r"weights\[1\]: expected a numpy.ndarray, got a masked array"):
        I.lsuv_(ws, lambda ws, x: [x], np.ones((5, 4), np.float32))


def test_plain_and_other_subclasses_still_fill():
    """The refusal is the masked array's only: a plain array and another ndarray subclass still fill."""

    class Sub(np.ndarray):
        pass

    for w in (np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32).view(Sub)):
        I.ones_(w)
        assert np.all(np.asarray(w) == 1)
