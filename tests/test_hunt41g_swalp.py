"""Hunt 41g: ``SWALP.step`` reads its step count ``t`` (an attribute, as ``load_state_dict`` sets it)
by ``load_state_dict``'s rule, naming ``t``, before it writes.

It was used as it stood: None or "3" raised Python's unnamed TypeError, 2.5 and -5 were refused as
"step" (the quantizers' Philox argument, -5 shown as -4), True went on as step 1 -> 2, and
a count of 2**63 - 1 (the largest ``load_state_dict`` takes) stepped to 2**63, a checkpoint its own
``load_state_dict`` then refused."""

import numpy as np
import pytest

from optkern.swalp import SWALP

INT64_MAX = 2**63 - 1


def _stepped():
    p = [np.linspace(-1, 1, 7, dtype=np.float32)]
    opt = SWALP(p, lr=0.1, momentum=0.9)
    opt.step([np.ones(7, np.float32)])
    return opt, p


@pytest.mark.parametrize(
    "t,err",
    [
        (None, TypeError),
        ("3", TypeError),
        (2.5, TypeError),
        (True, TypeError),
        (-5, ValueError),
        (INT64_MAX, ValueError),
    ],
)
def test_step_refuses_a_bad_count_naming_t(t, err):
    opt, p = _stepped()
    before = (p[0].copy(), opt.buffers[0].copy(), opt.swa.n_averaged, [a.copy() for a in opt.averages])
    opt.t = t
    with pytest.raises(err, match=r"^t: "):
        opt.step([np.ones(7, np.float32)])
    assert opt.t is t
    assert np.array_equal(p[0], before[0]) and np.array_equal(opt.buffers[0], before[1])
    assert opt.swa.n_averaged == before[2] and np.array_equal(opt.averages[0], before[3][0])


def test_count_stays_a_python_int_and_checkpoint_reloads():
    opt, _ = _stepped()
    opt.t = np.int64(4)
    opt.step([np.ones(7, np.float32)])
    assert type(opt.t) is int and opt.t == 5
    sd = opt.state_dict()
    sd["t"] = INT64_MAX - 1
    opt.load_state_dict(sd)
    opt.step([np.ones(7, np.float32)])  # the last count a checkpoint holds
    assert opt.t == INT64_MAX
    opt.load_state_dict(opt.state_dict())  # its own checkpoint loads
    assert opt.t == INT64_MAX
