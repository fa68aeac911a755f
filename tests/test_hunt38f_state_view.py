"""``Optimizer.state[param]``: a read-only entry (hunt 38f).

The entry is built from ``state_dict()`` at each lookup, so assigning into it
(``opt.state[p]["exp_avg"] = ...``, torch's idiom) changed a dict nobody reads again: the
optimizer stepped on with its old state, silently. Now such writes raise TypeError naming
the entry; the live arrays in it may still be changed in place, and copies are plain dicts."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import optkern.optim as O


def _opt():
    p = np.ones(3)
    opt = O.Adam([p], lr=0.1)
    opt.step([np.ones(3)])
    return opt, p


@pytest.mark.parametrize(
    "write",
    [
        lambda e: e.__setitem__("exp_avg", np.zeros(3)),
        lambda e: e.__delitem__("exp_avg"),
        lambda e: e.update(exp_avg=np.zeros(3)),
        lambda e: e.pop("exp_avg"),
        lambda e: e.popitem(),
        lambda e: e.setdefault("max_exp_avg_sq", np.zeros(3)),
        lambda e: e.clear(),
        lambda e: e.__ior__({"step": 5}),
    ],
)
def test_writes_into_an_entry_raise(write):
    opt, p = _opt()
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(TypeError, match=r"state\[param\]"):
        write(opt.state[p])
    after = opt.state_dict()
    assert after["state"][0].keys() == before["state"][0].keys()
    for k, v in before["state"][0].items():
        assert np.array_equal(after["state"][0][k], v)


def test_entry_arrays_are_live_and_copies_are_plain_dicts():
    opt, p = _opt()
    e = opt.state[p]
    e["exp_avg"][...] = 0.0  # in place: the live array, as documented
    assert np.array_equal(opt.state_dict()["state"][0]["exp_avg"], np.zeros(3))
    for c in (copy.deepcopy(e), copy.copy(e), pickle.loads(pickle.dumps(e)), dict(e), e | {}):
        assert type(c) is dict
        c["step"] = 7  # a copy is the caller's own
    assert opt.state[p]["step"] == 1
    assert list(e) == list(opt.state[p]) == ["step", "exp_avg", "exp_avg_sq"]
