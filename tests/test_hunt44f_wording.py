"""Counts in error messages: "expected 1 array", not "expected 1 arrays" (one wording, Python's
``_array_checks.counted`` and the C++ ``counted`` of both modules)."""

import numpy as np
import pytest

import optkern
from optkern import _backend
from optkern import schedules as S


def test_counted_is_singular_at_one_only():
    assert [_backend.counted(n, "array") for n in (0, 1, 2)] == ["0 arrays", "1 array", "2 arrays"]
    assert _backend.counted(1, "entry", "entries") == "1 entry"
    assert _backend.counted(3, "entry", "entries") == "3 entries"


def test_optimizer_grads_of_one_parameter():
    opt = optkern.optim.SGD([np.zeros(3, np.float32)], lr=0.1)
    g = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"^grads: expected 1 array \(one per parameter\), got 2$"):
        opt.step([g, g])
    with pytest.raises(ValueError, match=r"^grads: expected 2 arrays \(one per parameter\), got 1$"):
        optkern.optim.SGD([np.zeros(3, np.float32)] * 1 + [np.zeros(2, np.float32)], lr=0.1).step([g])


def test_plateau_min_lr_list_of_one_group():
    opt = optkern.optim.SGD([np.zeros(3, np.float32)], lr=0.1)
    with pytest.raises(ValueError, match=r"^min_lr: expected 1 value \(one per param group\), got 2$"):
        S.ReduceLROnPlateau(opt, min_lr=[0.0, 0.0])


def test_sequential_boundaries_of_two_schedules():
    with pytest.raises(ValueError, match=r"^boundaries: expected 1 entry for 2 schedules, got 0$"):
        S.sequential([1.0, 0.5], [])


def test_state_dict_of_a_one_element_parameter():
    opt = optkern.optim.Adam([np.zeros(1, np.float32)], lr=0.1)
    opt.step([np.ones(1, np.float32)])
    sd = opt.state_dict()
    for key, v in sd["state"][0].items():
        if isinstance(v, np.ndarray) and v.size == 1 and v.dtype == np.float32:
            sd["state"][0][key] = np.zeros(2, np.float32)
            break
    else:
        raise AssertionError(f"no per-element state in {sd['state'][0]}")
    with pytest.raises(ValueError, match=r"expected 1 element \("):
        opt.load_state_dict(sd)


def test_native_lists_and_lbfgs_coefficients_of_one_row():
    cpu = _backend.cpu
    s, g = np.ones(4), np.ones(4)
    d, out = np.zeros(4), np.zeros(4)
    with pytest.raises(ValueError, match=r"^Y: expected 1 array, got 2$"):
        cpu.lbfgs_direction_([s], [s, s], [1.0], [1.0], g, -1.0, d, out)
    with pytest.raises(ValueError, match=r"^coef_s, coef_y: expected 1 coefficient each \(one per history row\)"):
        cpu.lbfgs_direction_([s], [s], [1.0, 2.0], [1.0, 2.0], g, -1.0, d, out)
