"""Scheduler(key="betas", index=-1) drives betas[1] as index=1 does: it kept its base value under
'initial_betas-1', where a later Scheduler of index=1 did not find it (it read the current beta as
its base instead), and the state of one did not load into the other. A negative index now names the
same element as its positive twin, everywhere."""

import numpy as np
import pytest

import optkern.optim as O
from optkern import schedules


def _opt():
    return O.Adam([np.zeros(3)], lr=1e-3, betas=(0.9, 0.99))


def test_a_negative_index_is_its_positive_twin():
    a, b = _opt(), _opt()
    sa = schedules.Scheduler(a, schedules.constant(0.5), relative=True, key="betas", index=-1)
    sb = schedules.Scheduler(b, schedules.constant(0.5), relative=True, key="betas", index=1)
    assert sa.index == 1
    assert set(a.param_groups[0]) == set(b.param_groups[0])
    assert a.param_groups[0]["betas"] == b.param_groups[0]["betas"]
    sb.load_state_dict(sa.state_dict())
    for _ in range(3):
        sa.step()
        sb.step()
    assert a.param_groups[0]["betas"] == b.param_groups[0]["betas"]


def test_a_second_scheduler_finds_the_first_ones_base():
    a = _opt()
    schedules.Scheduler(a, schedules.constant(0.5), relative=True, key="betas", index=-1)
    s2 = schedules.Scheduler(a, schedules.constant(0.5), relative=True, key="betas", index=1)
    assert s2.base_values == [pytest.approx(0.99)]
