"""``_backend.check_disjoint``: the Python twin of the native step check (cpp/step_checks.cpp) used
by low-precision steps (CuPy steps of the float optimizers take the CUDA module's native check).
Written spans may overlap nothing; read spans only each other."""

import numpy as np
import pytest

from optkern import _backend


@pytest.mark.parametrize(
    "written, read, message",
    [
        ([(0, 8, "params[0]"), (8, 16, "params[1]")], [(16, 24, "grads[0]"), (16, 24, "grads[1]")], None),
        ([(0, 8, "params[0]"), (4, 12, "params[1]")], [], "params[1] shares memory with params[0]"),
        ([(0, 8, "params[0]")], [(0, 8, "grads[0]")], "grads[0] shares memory with params[0]"),
        ([(10, 20, "params[0]")], [(0, 11, "grads[0]")], "params[0] shares memory with grads[0]"),
        ([(0, 100, "state[0]['m']"), (200, 300, "params[0]")], [(99, 101, "grads[1]")], "grads[1] shares memory with"),
        ([(0, 100, "params[0]"), (150, 160, "params[1]")], [(120, 130, "grads[0]")], None),  # in a gap
    ],
)
def test_check_disjoint(written, read, message):
    if message is None:
        _backend.check_disjoint(written, read)
    else:
        with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
            _backend.check_disjoint(written, read)


def test_a_step_of_two_groups_refuses_two_params_sharing_memory():
    # (the native check, precheck_step_: a CuPy step takes the CUDA module's, written once with it)
    from optkern import optim

    buf = np.zeros(10, np.float32)
    opt = optim.Adam([{"params": [buf[:6]]}, {"params": [buf[4:]], "lr": 0.1}])
    # (named by group and place: param_groups[1]['params'][0] and [0]['params'][0], hunt 51f)
    with pytest.raises(ValueError, match=r"shares memory with param_groups\[0\]\['params'\]\[0\]"):
        opt.step([np.ones(6, np.float32), np.ones(6, np.float32)])
    assert not buf.any()
