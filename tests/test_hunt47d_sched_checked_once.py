"""``Scheduler.step`` ran the whole check of an array / tensor lr written in place (``check_put``:
dtype, writable, a leaf requiring grad) at every step, ~40% of a step with array lrs. It runs once
per entry object now (on construction, load_state_dict, or when a group's entry is replaced); the
same object is read again only for what it can change itself, still refused by name before any
group is written."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import schedules as S
from optkern.schedules import scheduler as scheduler_module


@pytest.fixture
def checks(monkeypatch):
    calls = []
    real = scheduler_module.check_put

    def counting(v, where):
        calls.append(where)
        return real(v, where)

    monkeypatch.setattr(scheduler_module, "check_put", counting)
    return calls


def _opt(*lrs):
    return type("Opt", (), {"param_groups": [{"lr": v} for v in lrs]})()


def test_an_array_lr_is_checked_once_not_at_every_step(checks):
    a, b = np.array([0.1]), np.array([0.2], np.float32)
    opt = _opt(0.3, a, b)
    sc = S.Scheduler(opt, S.exponential(1.0, 0.5), relative=True)
    assert len(checks) == 2  # (the two arrays, at construction)
    for _ in range(5):
        sc.step()
    assert len(checks) == 2
    assert a[0] == 0.1 * 0.5**5 and b[0] == np.float32(0.2 * 0.5**5)
    c = np.array([0.4])
    opt.param_groups[1]["lr"] = c  # (a replaced entry: checked again, that one alone)
    sc.step()
    assert checks[2:] == ["optimizer.param_groups[1]['lr']"]
    assert c[0] == 0.1 * 0.5**6
    sc.load_state_dict(sc.state_dict())  # (checked as a step checks: nothing new)
    assert len(checks) == 3


def _read_only(a):
    a.flags.writeable = False


def _int_dtype(a):
    a.dtype = np.int64  # (assignable: the same object, another dtype)


CHANGES = [(_read_only, ValueError, "read-only"), (_int_dtype, TypeError, "int64")]


@pytest.mark.parametrize("change, exc, match", CHANGES)
def test_the_same_array_changed_in_place_is_still_refused_before_any_write(change, exc, match):
    a, b = np.array([0.1]), np.array([0.2])
    opt = _opt(a, b)
    sc = S.Scheduler(opt, S.exponential(1.0, 0.5), relative=True)
    sc.step()
    change(b)
    with pytest.raises(exc, match=r"^optimizer\.param_groups\[1\]\['lr'\]: .*" + match):
        sc.step()
    assert a[0] == 0.05 and sc.last_step == 1  # (the first group not written)


def test_a_tensor_lr_made_to_require_grad_is_still_refused():
    torch = pytest.importorskip("torch")
    t = torch.tensor(0.1, dtype=torch.float64)
    a = np.array([0.2])
    opt = _opt(a, t)
    sc = S.Scheduler(opt, S.exponential(1.0, 0.5), relative=True)
    sc.step()
    t.requires_grad_(True)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['lr'\]: a leaf tensor that requires grad"):
        sc.step()
    assert a[0] == 0.1 and sc.last_step == 1
    t.requires_grad_(False)
    sc.step()
    assert t.item() == pytest.approx(0.1 * 0.25) and a[0] == 0.05
