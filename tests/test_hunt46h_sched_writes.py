"""A group value that a Scheduler / ReduceLROnPlateau writes in place (a 1-element array or tensor lr)
but that cannot take the value: a read-only NumPy array raised NumPy's unnamed "assignment
destination is read-only" after the groups before it were written (the Scheduler's step left
``last_step`` behind the groups, ReduceLROnPlateau its counters); a leaf tensor that requires grad
raised torch's error the same way; an integer array took the lr truncated (0.05 written as 0),
silently. Each is now refused naming the entry before any group changes.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import schedules as S


def _torch():
    """torch, for the tensor cases alone (skipped without it; the NumPy cases run regardless)."""
    return pytest.importorskip("torch")


def _opt(second):
    return type("Opt", (), {"param_groups": [{"lr": 0.1}, {"lr": second}]})()


def _read_only():
    a = np.array([0.1])
    a.flags.writeable = False
    return a


BAD = [
    pytest.param(_read_only, ValueError, "read-only", id="read-only-array"),
    pytest.param(lambda: np.array([1], np.int64), TypeError, "int64", id="int-array"),
    pytest.param(lambda: _torch().tensor(0.1, requires_grad=True), ValueError, "requires grad", id="leaf-grad"),
    pytest.param(lambda: _torch().tensor(1), TypeError, "int64", id="int-tensor"),
]


def _number(v) -> float:
    return float(np.asarray(v.detach() if hasattr(v, "detach") else v).item())


def _snapshot(opt):
    return [{k: _number(v) for k, v in g.items()} for g in opt.param_groups]


@pytest.mark.parametrize("make, exc, match", BAD)
def test_scheduler_construction_refuses_before_writing(make, exc, match):
    opt = _opt(make())
    with pytest.raises(exc, match=r"^optimizer\.param_groups\[1\]\['lr'\]: .*" + match):
        S.Scheduler(opt, S.exponential(1.0, 0.5), relative=True)
    assert opt.param_groups[0] == {"lr": 0.1}  # (no 'initial_lr', no value written)
    assert set(opt.param_groups[1]) == {"lr"}


@pytest.mark.parametrize("make, exc, match", BAD)
def test_scheduler_step_refuses_before_writing(make, exc, match):
    good = np.array([0.1])
    opt = _opt(good)
    sc = S.Scheduler(opt, S.exponential(1.0, 0.5), relative=True)
    opt.param_groups[1]["lr"] = make()  # (the entry replaced between steps)
    before = _snapshot(opt)
    with pytest.raises(exc, match=match):
        sc.step()
    assert _snapshot(opt) == before and sc.last_step == 0
    # and load_state_dict likewise
    with pytest.raises(exc, match=match):
        sc.load_state_dict({**sc.state_dict(), "last_step": 3})
    assert _snapshot(opt) == before and sc.last_step == 0


@pytest.mark.parametrize("make, exc, match", BAD)
def test_plateau_reduction_refuses_before_writing(make, exc, match):
    opt = _opt(np.array([0.1]))
    s = S.ReduceLROnPlateau(opt, patience=0)
    s.step(1.0)
    opt.param_groups[1]["lr"] = make()
    before, state = _snapshot(opt), s.state_dict()
    with pytest.raises(exc, match=r"^optimizer\.param_groups\[1\]\['lr'\]: .*" + match):
        s.step(2.0)  # (a bad epoch past the patience: every lr reduced)
    assert _snapshot(opt) == before and s.state_dict() == state


def test_writable_float_arrays_are_still_written_in_place():
    f32, f64 = np.array([0.1], np.float32), np.array([0.1])
    opt = type("Opt", (), {"param_groups": [{"lr": f32}, {"lr": f64}]})()
    sc = S.Scheduler(opt, S.exponential(1.0, 0.5), relative=True)
    sc.step()
    assert opt.param_groups[0]["lr"] is f32 and f32[0] == np.float32(0.1 * 0.5)
    assert opt.param_groups[1]["lr"] is f64 and f64[0] == pytest.approx(0.05, rel=1e-15)


def test_writable_float_tensors_are_still_written_in_place():
    torch = _torch()
    t = torch.tensor(0.1, dtype=torch.float64)
    opt = type("Opt", (), {"param_groups": [{"lr": 0.1}, {"lr": t}]})()
    sc = S.Scheduler(opt, S.exponential(1.0, 0.5), relative=True)
    sc.step()
    assert opt.param_groups[1]["lr"] is t and t.item() == pytest.approx(0.05, rel=1e-7)


def test_plateau_group_left_as_it_is_may_hold_a_read_only_lr():
    # a group already at its min_lr is not written (torch skips it): its entry is not refused
    opt = _opt(_read_only())
    s = S.ReduceLROnPlateau(opt, patience=0, min_lr=[0.0, 0.1])
    s.step(1.0)
    s.step(2.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01) and opt.param_groups[1]["lr"][0] == 0.1
