"""A norm ``out=`` exported through the unversioned DLPack protocol is refused with the reason,
as the optimizers' and clipping's read-only refusals are (56th session's leftover pass, i).

NumPy views such an export read-only (it carries no writability): every norm function and
backward refused it as a bare "out: array is read-only", from its native call, which left a user
with a writable buffer no clue why. The caller's ``out`` is now checked where it is taken (``_out``),
with the shared refusal (``_backend.read_only``), before anything is written.
"""

from __future__ import annotations

import numpy as np
import pytest

from dlpack_exporters import HINT, Old, Plain
from optkern.norm import functional as F

RNG = np.random.default_rng(56)
X2 = RNG.standard_normal((3, 7)).astype(np.float32)
X3 = RNG.standard_normal((2, 4, 5)).astype(np.float32)
W4 = RNG.standard_normal(4).astype(np.float32)
RM, RV = np.zeros(4, np.float32), np.ones(4, np.float32)


def _forwards():
    return {
        "layer_norm": (X2, lambda o: F.layer_norm(X2, 7, out=o)),
        "rms_norm": (X2, lambda o: F.rms_norm(X2, 7, out=o)),
        "group_norm": (X3, lambda o: F.group_norm(X3, 2, W4, W4, out=o)),
        "instance_norm": (X3, lambda o: F.instance_norm(X3, W4, W4, out=o)),
        "batch_norm_train": (X3, lambda o: F.batch_norm(X3, W4, W4, RM.copy(), RV.copy(), out=o)),
        "batch_norm_eval": (X3, lambda o: F.batch_norm(X3, W4, W4, RM, RV, training=False, out=o)),
    }


def _backwards():
    dy2, dy3 = np.ones_like(X2), np.ones_like(X3)
    _, ln = F.layer_norm(X2, 7)
    _, rms = F.rms_norm(X2, 7)
    _, gn = F.group_norm(X3, 2, W4, W4)
    _, inn = F.instance_norm(X3, W4, W4)
    _, bn = F.batch_norm(X3, W4, W4)
    return {
        "layer_norm_backward": (X2, lambda o: F.layer_norm_backward(dy2, X2, None, ln, out=o)),
        "rms_norm_backward": (X2, lambda o: F.rms_norm_backward(dy2, X2, None, rms, out=o)),
        "group_norm_backward": (X3, lambda o: F.group_norm_backward(dy3, X3, W4, gn, out=o)),
        "instance_norm_backward": (X3, lambda o: F.instance_norm_backward(dy3, X3, W4, inn, out=o)),
        "batch_norm_backward": (X3, lambda o: F.batch_norm_backward(dy3, X3, W4, bn, out=o)),
    }


CALLS = {**_forwards(), **_backwards()}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_unversioned_out_says_why_before_writing(name):
    x, call = CALLS[name]
    mem = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match=r"^out: " + HINT):
        call(Old(mem))
    assert (mem == 7.0).all()


@pytest.mark.parametrize("name", sorted(CALLS))
def test_plain_read_only_out_keeps_the_bare_refusal(name):
    x, call = CALLS[name]
    mem = np.full_like(x, 7.0)
    mem.flags.writeable = False
    with pytest.raises(ValueError, match=r"^out: array is read-only$"):
        call(mem)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_writable_export_is_written_as_a_numpy_out(name):
    x, call = CALLS[name]
    mem, ref = np.zeros_like(x), np.zeros_like(x)
    call(Plain(mem))
    call(ref)
    np.testing.assert_array_equal(mem, ref)
    assert np.isfinite(ref).all() and (ref != 0).any()
