"""Hunt 39i: AveragedParams took non-C-contiguous (strided, Fortran-ordered) or misaligned params at
construction, then every ``update`` refused them (``swa_lerp_`` reads params C-contiguous and
aligned; update refuses other layouts, as the optimizers refuse such params and grads). Refused at
construction now, naming the param, in the optimizers' wording."""

import numpy as np
import pytest

from optkern.swa import AveragedParams


def _misaligned():
    return np.zeros(4 * 6 + 1, np.uint8)[1:].view(np.float32)


@pytest.mark.parametrize(
    "make, msg",
    [
        (lambda: np.zeros((4, 4), np.float32)[:, ::2], "must be C-contiguous"),
        (lambda: np.asfortranarray(np.zeros((3, 4), np.float32)), "must be C-contiguous"),
        (_misaligned, "data is misaligned"),
    ],
)
def test_a_param_update_cannot_read_is_refused_at_construction(make, msg):
    with pytest.raises(ValueError, match=rf"^params\[1\]: array {msg}$"):
        AveragedParams([np.ones(3, np.float32), make()])


def test_update_refuses_the_same_layouts_in_the_same_words():
    avg = AveragedParams([np.ones(3, np.float32), np.zeros((3, 4), np.float32)])
    with pytest.raises(ValueError, match=r"^params\[1\]: array must be C-contiguous$"):
        avg.update([np.ones(3, np.float32), np.asfortranarray(np.zeros((3, 4), np.float32))])
    assert avg.n_averaged == 0


def test_contiguous_params_are_still_averaged():
    p = np.arange(4, dtype=np.float32)
    avg = AveragedParams([p])
    avg.update([p])
    avg.update([p + 2])
    np.testing.assert_array_equal(avg.averages[0], p + 1)
