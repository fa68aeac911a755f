"""AdagradNorm has no capturable mode (no ``adagrad_norm_capturable`` native variant): asked for one,
it must say so, naming ``capturable``, not leak an internal call's TypeError or ignore the flag."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import optim


def _params():
    return [np.ones(3, np.float32), np.ones(2, np.float32)]


@pytest.mark.parametrize("extra", [{}, {"master_weights": True}])
def test_capturable_true_in_the_constructor_is_refused_by_name(extra):
    ps = [p.astype(np.float16) for p in _params()] if extra else _params()
    with pytest.raises(ValueError, match=r"^capturable: AdagradNorm has no capturable mode"):
        optim.AdagradNorm(ps, capturable=True, **extra)


def test_capturable_false_in_the_constructor_is_the_plain_optimizer():
    # (generic code passing capturable=False to every optimizer: was "_lowp_init() got multiple values")
    a, b = _params(), _params()
    opt, ref = optim.AdagradNorm(a, lr=0.1, capturable=False), optim.AdagradNorm(b, lr=0.1)
    g = [np.full(3, 0.5, np.float32), np.full(2, -2.0, np.float32)]
    opt.step(g)
    ref.step(g)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)


def test_a_bad_capturable_flag_is_named():
    with pytest.raises(TypeError, match=r"^capturable: "):
        optim.AdagradNorm(_params(), capturable="yes")


def test_capturable_true_in_a_param_group_is_refused_by_name():
    opt = optim.AdagradNorm(_params()[:1])
    extra = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"^param_groups\[1\]\['capturable'\]: AdagradNorm has no capturable mode"):
        opt.add_param_group({"params": [extra], "capturable": True})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [extra], "capturable": False})  # (as the plain group)
    assert len(opt.param_groups) == 2


def test_capturable_true_set_on_a_group_later_is_refused_at_the_step():
    ps = _params()
    opt = optim.AdagradNorm(ps, lr=0.1)
    opt.param_groups[0]["capturable"] = True
    before = [p.copy() for p in ps]
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['capturable'\]: AdagradNorm has no capturable mode"):
        opt.step([np.ones(3, np.float32), np.ones(2, np.float32)])
    for p, q in zip(ps, before):
        np.testing.assert_array_equal(p, q)


def test_a_state_dict_keeps_this_optimizers_own_capturable_setting():
    # (the loader keeps each group's capturable, as for the capturable optimizers: a saved True is
    # not this optimizer's mode, and is not an error either)
    opt = optim.AdagradNorm(_params(), lr=0.1)
    sd = opt.state_dict()
    sd["param_groups"][0]["capturable"] = True
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["capturable"] is False  # (its own default, held as every default is)
