"""Hunt 40i: the optimizers' bool options (``maximize``, ``nesterov``, ``amsgrad``, ``centered``,
``decoupled_weight_decay``) take a bool or the ints 0 / 1 (torch's code passes those), and refuse
any other int naming the option: -1 and 2**70 were taken as True (an ascent step for
``maximize=-1``), while the refusal of a float said "expected a bool"."""

import numpy as np
import pytest

from optkern import functional as F
from optkern import optim

FLAGS = [
    (optim.SGD, "maximize", {}),
    (optim.SGD, "nesterov", {"momentum": 0.9}),
    (optim.Adam, "amsgrad", {}),
    (optim.Adam, "maximize", {}),
    (optim.Adam, "decoupled_weight_decay", {}),
    (optim.RMSprop, "centered", {}),
    (optim.RMSprop, "maximize", {}),
    (optim.Adagrad, "maximize", {}),
    (optim.Adadelta, "maximize", {}),
]


def _ids(case):
    return f"{case[0].__name__}-{case[1]}" if isinstance(case, tuple) else repr(case)


@pytest.mark.parametrize("case", FLAGS, ids=_ids)
@pytest.mark.parametrize("bad", [-1, 2, 2**70, np.int64(-1), np.uint8(7)], ids=repr)
def test_an_int_other_than_0_or_1_is_refused_naming_the_option(case, bad):
    cls, name, extra = case
    with pytest.raises(ValueError, match=rf"^{name}: expected a bool \(or 0 / 1\), got {int(bad)}$"):
        cls([np.ones(3, np.float32)], lr=0.1, **extra, **{name: bad})
    opt = cls([np.ones(3, np.float32)], lr=0.1, **extra)
    before = len(opt.param_groups)
    with pytest.raises(ValueError, match=rf"^param_groups\[1\]\['{name}'\]: expected a bool \(or 0 / 1\)"):
        opt.add_param_group({"params": [np.ones(2, np.float32)], name: bad})
    assert len(opt.param_groups) == before


@pytest.mark.parametrize("case", FLAGS, ids=_ids)
@pytest.mark.parametrize("ok", [0, 1, np.int64(1), True, np.False_], ids=repr)
def test_bools_and_0_or_1_are_taken(case, ok):
    cls, name, extra = case
    cls([np.ones(3, np.float32)], lr=0.1, **extra, **{name: ok})


@pytest.mark.parametrize("case", FLAGS, ids=_ids)
def test_a_float_says_what_is_taken(case):
    cls, name, extra = case
    with pytest.raises(TypeError, match=rf"^{name}: expected a bool \(or 0 / 1\), got float$"):
        cls([np.ones(3, np.float32)], lr=0.1, **extra, **{name: 1.0})


def test_the_functional_form_refuses_it_too_nothing_written():
    p, g, m = np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"^maximize: expected a bool \(or 0 / 1\), got -1$"):
        F.sgd_([p], [g], [m], lr=0.1, momentum=0.9, maximize=-1)
    assert np.array_equal(p, np.ones(3, np.float32)) and not m.any()
