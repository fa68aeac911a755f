"""Torch drop-in gaps found in session 32's hunt.

- ``optkern.torch.clip_grad_norm_`` refused a string ``norm_type`` other than 'inf' ("-inf", "2",
  "2.0") with a TypeError, where torch's reads any string with ``float()``: it reads them so now
  (tests/test_torch_hunt27_clip_args.py's table of orders), and names ``norm_type`` for one it
  cannot read. (The core ``optkern.clip_grad_norm_`` keeps
  taking numbers and 'inf' only, as its other numeric arguments: the fuzz contract's rule.)
- ``optkern.schedules.swalr`` used attributes assigned after construction unchecked: an
  ``anneal_strategy`` of 'foo' annealed linearly, a negative ``anneal_epochs`` extrapolated past
  ``swa_lr``, silently; a NaN ``swa_lr`` was refused only as the schedule's NaN value ("overflows
  there"). They are checked where they are used now, by the constructor's rules, naming the
  attribute, before a Scheduler writes a group.
- ``optkern.init.xavier_uniform_`` / ``xavier_normal_`` refused ``gain=0``, where torch's fill
  zeros; a negative gain stays refused, as torch refuses it (an empty range, a negative std).
  (``orthogonal_`` on a zero-element array stays silent: torch 2.13's does not warn either, only
  its kaiming initializers do.)
"""

import math

import numpy as np
import pytest

import optkern
from optkern import init, optim, schedules

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
from test_torch_hunt27_clip_args import _params  # noqa: E402  (two params with seeded grads)


@pytest.mark.parametrize("norm_type", ["fro", "two", ""])
def test_clip_grad_norm_unreadable_string_norm_type_is_refused(norm_type):
    ps = _params()
    before = [p.grad.clone() for p in ps]
    with pytest.raises(ValueError, match="norm_type"):
        ot.clip_grad_norm_(ps, 1.0, norm_type=norm_type)
    for p, b in zip(ps, before):
        assert torch.equal(p.grad, b)


@pytest.mark.parametrize("norm_type", ["2", "-inf", "fro"])
def test_numpy_clip_grad_norm_takes_numbers_and_inf_only(norm_type):
    """The core API takes numbers (and 'inf'), as its other numeric arguments, refusing a numeric
    string by name; reading strings as torch does is the adapter's (torch users' code passes them)."""
    g = np.arange(1.0, 7.0)
    with pytest.raises(TypeError, match="norm_type"):
        optkern.clip_grad_norm_([g], 1.0, norm_type=norm_type)
    np.testing.assert_array_equal(g, np.arange(1.0, 7.0))
    assert optkern.clip_grad_norm_([g], 100.0, norm_type="inf") == 6.0


@pytest.mark.parametrize(
    "attr, value, exc",
    [
        ("anneal_strategy", "foo", ValueError),
        ("anneal_strategy", None, TypeError),
        ("anneal_epochs", -2, ValueError),
        ("anneal_epochs", 2.5, TypeError),
        ("swa_lr", float("nan"), ValueError),
        ("swa_lr", "0.1", TypeError),
        ("swa_lr", -0.1, ValueError),
        ("initial_lr", float("nan"), ValueError),
    ],
)
def test_swalr_assigned_attributes_are_checked_where_used(attr, value, exc):
    s = schedules.swalr(1.0, 0.1, anneal_epochs=4)
    setattr(s, attr, value)
    with pytest.raises(exc, match=f"^{attr}: "):
        s(1)
    p = np.zeros(3, np.float32)
    opt = optim.SGD([p], lr=1.0)
    with pytest.raises(exc, match=attr):
        s.attach(opt)  # (attaching writes step 0's lr: refused before it does)
    assert opt.param_groups[0]["lr"] == 1.0
    s2 = schedules.swalr(1.0, 0.1, anneal_epochs=4)
    sc = s2.attach(opt)
    setattr(s2, attr, value)
    with pytest.raises(exc, match=attr):
        sc.step()
    assert opt.param_groups[0]["lr"] == 1.0 and sc.last_step == 0


def test_swalr_assigned_attributes_in_range_are_used():
    s = schedules.swalr(1.0, 0.1, anneal_epochs=4)
    s.anneal_strategy, s.anneal_epochs, s.swa_lr = "linear", 2, 0.5
    assert s(1) == pytest.approx(0.75, rel=1e-15)
    assert s(5) == 0.5


@pytest.mark.parametrize("name", ["xavier_uniform_", "xavier_normal_"])
def test_xavier_gain_zero_fills_zeros_as_torch(name):
    w = np.ones((4, 3), np.float32)
    assert getattr(init, name)(w, gain=0.0, rng=0) is w
    t = torch.ones(4, 3)
    getattr(torch.nn.init, name)(t, gain=0.0)
    np.testing.assert_array_equal(w, t.numpy())  # (zeros; -0.0 == 0.0)
    w0 = np.ones((4, 3))
    getattr(init, name)(w0, gain=0, rng=0)
    np.testing.assert_array_equal(w0, 0.0)


@pytest.mark.parametrize("name", ["xavier_uniform_", "xavier_normal_"])
@pytest.mark.parametrize("gain", [-1.0, -0.5, float("nan")])
def test_xavier_negative_gain_is_refused_as_torch_refuses_it(name, gain):
    w = np.ones((4, 3))
    with pytest.raises(ValueError, match="gain"):
        getattr(init, name)(w, gain=gain, rng=0)
    np.testing.assert_array_equal(w, 1.0)
    if not math.isnan(gain):
        with pytest.raises(RuntimeError):
            getattr(torch.nn.init, name)(torch.ones(4, 3), gain=gain)
