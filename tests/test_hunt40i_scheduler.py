"""Hunt 40i: a ``Scheduler`` whose ``key`` no param group has is refused naming ``key`` (the
argument that is wrong) and the entries the group has, where it said
"optimizer.param_groups[0]: has no 'lrr' entry", naming the optimizer; nothing is changed."""

import numpy as np
import pytest

from optkern import optim, schedules


def test_a_missing_key_names_key_and_the_groups_entries():
    opt = optim.SGD([np.ones(3, np.float32)], lr=0.1, momentum=0.9)
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match=r"^key: optimizer.param_groups\[0\] has no 'lrr' entry \(its entries: ") as e:
        schedules.Scheduler(opt, schedules.cosine(0.1, 10), key="lrr")
    assert "'lr'" in str(e.value) and "'momentum'" in str(e.value) and "'params'" not in str(e.value)
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == [
        {k: v for k, v in g.items() if k != "params"} for g in before
    ]


def test_the_group_named_is_the_first_without_it():
    opt = optim.SGD([{"params": [np.ones(3, np.float32)], "extra": 1.0}, {"params": [np.ones(2, np.float32)]}], lr=0.1)
    with pytest.raises(ValueError, match=r"^key: optimizer.param_groups\[1\] has no 'extra' entry"):
        schedules.Scheduler(opt, schedules.constant(1.0), key="extra")
