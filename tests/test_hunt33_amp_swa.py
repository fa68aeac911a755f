"""Defects found in optkern.amp, optkern.swa and optkern.schedules by the 33rd hunt, each with a test
that failed before its fix.

* ``GradScaler.step(optimizer, grads)`` with every grad None (no param of the optimizer has a grad)
  counted a clean step: nothing was checked, yet ``update()`` advanced the growth tracker and could
  grow the scale. torch raises ("No inf checks were recorded for this optimizer.", an
  AssertionError); optkern raises ValueError naming the optimizer, before anything is recorded.
"""

import numpy as np
import pytest

from optkern.amp import GradScaler
from optkern.optim import SGD


def _f32(rng, n):
    return rng.standard_normal(n).astype(np.float32)


# ---- GradScaler: an optimizer without grads ---------------------------------------------------


def test_step_with_every_grad_none_is_refused_and_counts_nothing():
    rng = np.random.default_rng(0)
    p = _f32(rng, 5)
    opt = SGD([p], lr=0.1)
    s = GradScaler(growth_interval=1)
    with pytest.raises(ValueError, match="optimizer: no inf checks"):
        s.step(opt, [None])
    # nothing recorded: update() has nothing to count (the scale doubled on nothing before)
    with pytest.raises(RuntimeError, match="no inf checks"):
        s.update()
    assert s.get_scale() == 2.0**16
    assert s.state_dict()["_growth_tracker"] == 0
    # a retry with a grad steps normally
    g = _f32(rng, 5)
    before = p.copy()
    s.step(opt, [g * np.float32(2.0**16)])
    s.update()
    np.testing.assert_allclose(p, before - 0.1 * g, rtol=1e-5, atol=1e-6)
    assert s.get_scale() == 2.0**17


def test_unscale_with_every_grad_none_then_step_is_refused_as_torchs():
    opt = SGD([np.ones(3, np.float32)], lr=0.1)
    s = GradScaler()
    assert s.unscale_(opt, [None]) is False
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt, [None])
    with pytest.raises(ValueError, match="optimizer: no inf checks"):
        s.step(opt, [None])
    with pytest.raises(RuntimeError, match="no inf checks"):
        s.update()


def test_anonymous_unscale_of_no_grads_is_refused():
    s = GradScaler()
    with pytest.raises(ValueError, match="grads: no inf checks"):
        s.unscale_([None, None])
    with pytest.raises(ValueError, match="grads: no inf checks"):
        s.unscale_([])


def test_a_second_optimizer_without_grads_leaves_the_other_ones_count():
    rng = np.random.default_rng(1)
    o1, o2 = SGD([np.ones(3, np.float32)], lr=0.1), SGD([np.ones(2, np.float32)], lr=0.1)
    s = GradScaler(growth_interval=3)
    s.step(o2, [_f32(rng, 2)])
    with pytest.raises(ValueError, match="optimizer"):
        s.step(o1, [None])
    s.update()
    assert s.state_dict()["_growth_tracker"] == 1  # (torch's: 1)


def test_low_precision_optimizer_with_every_grad_none_is_refused():
    p = np.ones(4, np.float16)
    opt = SGD([p], lr=0.1, master_weights=True)
    s = GradScaler(growth_interval=1)
    with pytest.raises(ValueError, match="optimizer: no inf checks"):
        s.step(opt, [None])
    with pytest.raises(RuntimeError):
        s.update()
    assert s.get_scale() == 2.0**16


def test_every_grad_none_refused_where_torchs_is():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.ones(3))
    topt = torch.optim.SGD([p], lr=0.1)
    ts = torch.amp.GradScaler("cpu")
    ts.scale(torch.ones(()))
    with pytest.raises(AssertionError, match="No inf checks were recorded for this optimizer"):
        ts.step(topt)
    opt = SGD([np.ones(3, np.float32)], lr=0.1)
    with pytest.raises(ValueError, match="no inf checks were recorded for this optimizer"):
        GradScaler().step(opt, [None])
