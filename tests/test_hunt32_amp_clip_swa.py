"""Defects found in optkern.amp.GradScaler, optkern.swa.AveragedParams and optkern.torch's clipping
by the 32nd hunt (amp / clipping / SWA against torch), each with a test that failed before its fix.

GradScaler's ``growth_factor``, ``backoff_factor`` and ``growth_interval`` are plain attributes, as
torch's ``set_growth_factor`` / ``set_backoff_factor`` / ``set_growth_interval`` set them:

* lowering ``growth_interval`` below the count of clean steps is what torch's
  ``set_growth_interval`` allows (its rule grows only when the count *reaches* the interval, so the
  scale then stays, and optkern's native rule is the same); ``state_dict()`` then wrote that count,
  and ``load_state_dict`` refused it (``_growth_tracker`` must be <= interval - 1): a checkpoint the
  scaler itself wrote could not be resumed, where torch's loads;
* a value of the wrong type assigned to one reached the native ``amp_update_scale_`` unchecked: a
  pybind11 "incompatible function arguments" TypeError naming no attribute (a str factor, a float
  interval), and an infinite ``growth_factor`` was taken silently and written by ``state_dict()``,
  which ``load_state_dict`` then refused. ``update()`` now checks them by the constructor's rules,
  naming the attribute, before the scale changes.

AveragedParams' ``decay``, ``mode`` and ``n_averaged`` are attributes too (an EMA decay warmed up by
assigning it each step is common practice), and ``update`` used them unchecked while the native
``swa_lerp_`` takes any weight: a decay of 2.0 extrapolated (weight -1: the average of 1 and 3 came
out -1), a NaN decay made every average NaN, ``n_averaged = 2.5`` went on counting 3.5, and
``n_averaged = None`` raised Python's unnamed TypeError *after* the averages were written. ``update``
now checks them as the constructor / ``load_state_dict`` do, naming them, before anything is written.

optkern.torch.clip_grad_norm_ / clip_grad_value_ hand optkern.clip the grads of the parameters that
have one, and its errors named them by their place in that list, as ``grads[k]``: behind a parameter
without a grad (a frozen layer), ``error_if_nonfinite`` blamed "grads[1]" for ``parameters[2].grad``,
and a grad shared by two parameters was "grads[1] shares memory with grads[0]". The adapter has no
``grads`` argument: its errors now name ``parameters[i].grad`` (and ``parameters``), as its other
checks do.

(Otherwise clipping, SWA / EMA averaging, update_bn and SWALR were compared with torch over norm
orders 1, 2, 3, 2.5, 7, 10, inf, -inf, 0.5, 0, all-zero / inf / NaN / None grads, use_buffers, EMA
decays and anneal settings, and agreed: no test here.)
"""

import math

import numpy as np
import pytest

from optkern.amp import GradScaler
from optkern.optim import SGD
from optkern.swa import AveragedParams

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")


def _clean_steps(scaler, opt, n):
    for _ in range(n):
        scaler.step(opt, [np.ones(2, np.float32)])
        scaler.update()


def _torch_clean_steps(scaler, opt, p, n):
    for _ in range(n):
        scaler.scale(torch.tensor(1.0))
        p.grad = torch.ones(2)
        scaler.step(opt)
        scaler.update()


def test_state_dict_with_the_interval_lowered_below_the_count_round_trips_as_torchs():
    s, o = GradScaler(init_scale=4.0, growth_interval=100), SGD([np.zeros(2, np.float32)], lr=0.1)
    tp = torch.nn.Parameter(torch.zeros(2))
    ts, to = torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=100), torch.optim.SGD([tp], lr=0.1)
    _clean_steps(s, o, 20)
    _torch_clean_steps(ts, to, tp, 20)
    s.growth_interval = 10
    ts.set_growth_interval(10)
    saved = s.state_dict()
    assert saved == ts.state_dict()
    resumed, tr = GradScaler(), torch.amp.GradScaler("cpu")
    resumed.load_state_dict(saved)  # (ValueError: state_dict['_growth_tracker'] must be <= 9)
    tr.load_state_dict(saved)
    _clean_steps(resumed, SGD([np.zeros(2, np.float32)], lr=0.1), 3)
    _torch_clean_steps(tr, torch.optim.SGD([tp], lr=0.1), tp, 3)
    assert resumed.state_dict() == tr.state_dict()


@pytest.mark.parametrize(
    "attr, value, err",
    [
        ("growth_factor", "2", TypeError),
        ("backoff_factor", None, TypeError),
        ("growth_interval", 2.5, TypeError),
        ("growth_factor", math.inf, ValueError),
        ("growth_factor", 1.0, ValueError),
        ("backoff_factor", 0.0, ValueError),
        ("growth_interval", 0, ValueError),
    ],
)
def test_update_names_a_bad_assigned_factor_or_interval_and_changes_nothing(attr, value, err):
    s, o = GradScaler(init_scale=4.0, growth_interval=1), SGD([np.zeros(2, np.float32)], lr=0.1)
    good = getattr(s, attr)
    setattr(s, attr, value)
    s.step(o, [np.ones(2, np.float32)])
    with pytest.raises(err, match=f"^{attr}: "):  # (not pybind11's list of signatures)
        s.update()
    assert s.get_scale() == 4.0
    setattr(s, attr, good)  # (the iteration's record stands: update() then runs)
    s.update()
    assert s.get_scale() == 8.0
    GradScaler().load_state_dict(s.state_dict())


@pytest.mark.parametrize(
    "attr, value, err",
    [
        ("decay", 2.0, ValueError),
        ("decay", -0.5, ValueError),
        ("decay", math.nan, ValueError),
        ("decay", "0.9", TypeError),
        ("mode", "mean", ValueError),
        ("n_averaged", -1, ValueError),
        ("n_averaged", 2.5, TypeError),
        ("n_averaged", None, TypeError),
    ],
)
def test_averaged_params_update_names_a_bad_assigned_attribute_before_writing(attr, value, err):
    ap = AveragedParams([np.ones(3, np.float32)], mode="ema", decay=0.5)
    ap.update([np.ones(3, np.float32)])
    setattr(ap, attr, value)
    with pytest.raises(err, match=f"^{attr}: "):
        ap.update([np.full(3, 3.0, np.float32)])
    np.testing.assert_array_equal(ap.averages[0], np.ones(3, np.float32))
    assert getattr(ap, attr) is value


def test_averaged_params_assigned_decay_warmup_is_torchs_ema():
    # the common EMA warm-up, decay assigned before each update, against torch's lerp
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(5).astype(np.float32) for _ in range(5)]
    ap = AveragedParams([xs[0]], mode="ema", decay=0.9)
    ref = torch.from_numpy(xs[0].copy())
    for t, x in enumerate(xs):
        ap.decay = min(0.9, (1 + t) / (10 + t))
        ap.update([x])
        if t:
            ref.lerp_(torch.from_numpy(x), 1 - ap.decay)
    np.testing.assert_array_equal(ap.averages[0], ref.numpy())


def _frozen_first(*grads):
    """A parameter without a grad (frozen), then one per grad."""
    params = [torch.nn.Parameter(torch.ones(2))]
    for g in grads:
        p = torch.nn.Parameter(torch.ones(2))
        p.grad = g
        params.append(p)
    return params


def test_clip_grad_norm_nonfinite_error_names_the_parameter_behind_one_without_grad():
    params = _frozen_first(torch.ones(2), torch.tensor([1.0, math.inf]))
    with pytest.raises(RuntimeError, match=r"^parameters\[2\]\.grad: contains non-finite values"):
        ot.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match=r"^parameters\[2\]\.grad: contains non-finite values"):
        ot.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)  # (optkern's ValueError too)
    assert torch.equal(params[1].grad, torch.ones(2))


def test_clip_grad_norm_overflowing_norm_error_names_parameters():
    p = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    p.grad = torch.full((2,), 1e200, dtype=torch.float64)  # finite, its norm past float64's range
    with pytest.raises(RuntimeError, match=r"^parameters: the total norm of order 2.0 is inf"):
        ot.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("clip", [lambda ps: ot.clip_grad_norm_(ps, 1.0), lambda ps: ot.clip_grad_value_(ps, 0.5)])
def test_clip_shared_grad_error_names_the_parameters(clip):
    shared = torch.ones(2)
    params = _frozen_first(shared, shared)
    with pytest.raises(ValueError, match=r"^parameters\[2\]\.grad shares memory with parameters\[1\]\.grad"):
        clip(params)
    assert torch.equal(shared, torch.ones(2))
