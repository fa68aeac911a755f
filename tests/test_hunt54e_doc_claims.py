"""Statements of the README and the docstrings against what the code does (54th session's docs
hunt, e).

- The README said ``weight_norm`` raises ValueError for NaN and inf, unqualified; on CuPy input it
  does not (its docstring: the check would synchronize the host; w is NaN there).
- ``Optimizer.load_state_dict``'s docstring said "no unknown keys" under ``strict=True``; a
  group's extra entries (a scheduler's ``initial_lr``, torch's ``foreach``) are kept, as torch
  keeps them, and only the top level's and the state entries' unknown keys are refused.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_readme_weight_norm_raises_only_on_numpy_input_as_its_docstring_says():
    from optkern.norm import weight_norm

    doc = _flat(inspect.getdoc(weight_norm) or "")
    assert "raises ValueError on NumPy input" in doc and "CuPy: w is NaN" in doc
    said = _flat(README.read_text(encoding="utf-8"))
    assert "`weight_norm` raises `ValueError` for NaN and inf alike on NumPy input" in said
    for bad in (np.nan, np.inf, -np.inf):
        v = np.ones((3, 4), np.float32)
        v[1, 2] = bad
        with pytest.raises(ValueError, match=r"^v: slice 1 along dim"):
            weight_norm(v, np.ones(3, np.float32))


def _sgd_state_dict():
    from optkern import optim

    p = np.linspace(-1, 1, 7).astype(np.float32)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    opt.step([np.ones(7, np.float32)])
    return opt.state_dict()


def test_load_state_dict_keeps_a_groups_extra_entries_and_refuses_other_unknown_keys():
    from optkern import optim

    doc = _flat(inspect.getdoc(optim.Optimizer.load_state_dict) or "")
    assert "no unknown keys at the top level or in a state entry" in doc and "are kept" in doc
    sd = _sgd_state_dict()
    sd["param_groups"][0]["initial_lr"] = 0.1  # (a scheduler's)
    sd["param_groups"][0]["foreach"] = None  # (torch's)
    opt = optim.SGD([np.zeros(7, np.float32)], lr=0.5, momentum=0.9)
    opt.load_state_dict(sd)  # strict
    assert opt.param_groups[0]["initial_lr"] == 0.1 and opt.param_groups[0]["foreach"] is None
    for where in ("top", "entry"):
        bad = copy.deepcopy(_sgd_state_dict())
        (bad if where == "top" else bad["state"][0])["extra"] = 1
        opt = optim.SGD([np.zeros(7, np.float32)], lr=0.5, momentum=0.9)
        with pytest.raises(ValueError, match="unknown key 'extra'"):
            opt.load_state_dict(bad)
        assert opt.param_groups[0]["lr"] == 0.5 and not opt.state_dict()["state"]
        opt.load_state_dict(bad, strict=False)
        assert opt.param_groups[0]["lr"] == 0.1
