"""Hunt 39i: read-only refusals raised by native calls said a bare "array is read-only" for an
object exported through the unversioned DLPack protocol (NumPy views it read-only: no writability
in the export), where ``_foreign.as_array``'s views elsewhere say why (hunt 39g): clip_grad_norm_
/ clip_grad_value_ / clip_grads_with_norm_ grads, and the low-precision step's cached read-only
check (a half param's step plan, kept between steps). One explanation for all of them."""

import numpy as np
import pytest

from dlpack_exporters import HINT, Old
from optkern import clip
from optkern._foreign import as_array
from optkern.optim import SGD


@pytest.mark.parametrize(
    "call",
    [
        lambda gs: clip.clip_grad_norm_(gs, 0.1),
        lambda gs: clip.clip_grad_value_(gs, 0.1),
        lambda gs: clip.clip_grads_with_norm_(gs, 0.1, 5.0),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_clipping_an_unversioned_export_says_why(call, dtype):
    g = np.ones(4, dtype)
    with pytest.raises(ValueError, match=r"grads\[1\]: " + HINT):
        call([np.ones(4, dtype), Old(g)])
    assert (g == 1).all()


def test_a_plain_read_only_grad_keeps_the_bare_refusal():
    g = np.ones(4, np.float32)
    g.flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\[0\]: array is read-only$"):
        clip.clip_grad_norm_([g], 0.1)


def test_the_low_precision_steps_cached_check_says_why():
    p = np.zeros(4, np.float16)
    g = np.ones(4, np.float16)
    opt = SGD([p], lr=0.1, master_weights=True)
    opt.step([g])
    held = np.zeros(4, np.float16)
    opt.param_groups[0]["params"][0] = as_array(Old(held), "p")
    for _ in range(2):  # (the second step finds the plan the first one kept)
        # (refused as put in place, where it was put, since hunt 50b: before the plan is read)
        with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\]: " + HINT):
            opt.step([g])
    assert not held.any()
