"""What the 50th hunt's (e) state-dict tests compare: an optimizer's state before and after a
refused load (nothing may change)."""

from __future__ import annotations

import copy

import numpy as np


def frozen(opt) -> dict:
    """A deep copy of ``opt.state_dict()`` (its arrays are the live state)."""
    return copy.deepcopy(opt.state_dict())


def assert_same(a: dict, b: dict) -> None:
    """Two state dicts hold the same groups and, entry by entry, equal values (torch tensors or arrays)."""
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for k, v in a["state"][i].items():
            w = b["state"][i][k]
            if hasattr(v, "detach"):  # (a torch tensor: bfloat16 ones have no NumPy view)
                assert type(w) is type(v) and v.dtype == w.dtype and bool((v == w).all()), (i, k)
            else:
                assert np.array_equal(np.asarray(v), np.asarray(w)), (i, k)
