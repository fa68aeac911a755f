"""``amp.GradScaler``: ``unscale_(grads)`` (the single-optimizer form) then ``unscale_(optimizer, grads)``
on the same grads divided them by the scale a second time, silently (the optimizer was still READY:
only a step claimed the first unscale). torch's unscale_ refuses a second call for one optimizer;
this one now raises the same RuntimeError, the grads unscaled once, and the step still claims them.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import amp, optim

SCALE = 4.0


def _sgd():
    p = np.zeros(3, np.float32)
    return p, optim.SGD([p], lr=1.0)


@pytest.mark.parametrize("again", [lambda g: [g], lambda g: [g[:]], lambda g: (x for x in [g])])
def test_named_unscale_of_grads_unscaled_by_the_single_optimizer_form_raises(again):
    p, opt = _sgd()
    s = amp.GradScaler(init_scale=SCALE)
    g = np.full(3, SCALE, np.float32)
    assert s.unscale_([g]) is False
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt, again(g))
    assert np.array_equal(g, np.ones(3, np.float32))  # unscaled once, not 1 / SCALE
    s.step(opt, [g])  # (claims the first unscale: steps on them as they are)
    assert np.array_equal(p, -np.ones(3, np.float32))
    s.update()
    assert s.get_scale() == SCALE


def test_another_optimizer_naming_those_grads_raises_too_and_other_grads_still_unscale():
    _, a = _sgd()
    pb, b = _sgd()
    s = amp.GradScaler(init_scale=SCALE)
    g = np.full(3, SCALE, np.float32)
    s.unscale_([g])
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(b, [g])
    assert np.array_equal(g, np.ones(3, np.float32))
    gb = np.full(3, SCALE, np.float32)
    assert s.unscale_(b, [gb]) is False  # (its own grads: unscaled, as before)
    assert np.array_equal(gb, np.ones(3, np.float32))
    s.step(b, [gb])
    assert np.array_equal(pb, -np.ones(3, np.float32))
    s.step(a, [g])
    s.update()


@pytest.mark.parametrize("bad", [SCALE, np.inf])
def test_step_on_other_grads_than_the_unscaled_ones_is_refused(bad):
    # unscale_(opt, ga) then step(opt, gb): the step took gb as unscaled (stepped on it still scaled)
    # and skipped on ga's flag (an inf in gb was written into the params)
    p, opt = _sgd()
    s = amp.GradScaler(init_scale=SCALE)
    ga, gb = np.full(3, SCALE, np.float32), np.full(3, bad, np.float32)
    s.unscale_(opt, [ga])
    with pytest.raises(ValueError, match=r"^grads: "):
        s.step(opt, [gb])
    assert np.array_equal(p, np.zeros(3, np.float32)) and np.array_equal(gb, np.full(3, bad, np.float32))
    s.step(opt, [ga[:]])  # (the unscaled grads, as new views: stepped once)
    assert np.array_equal(p, -np.ones(3, np.float32))
    s.update()
    assert s.get_scale() == SCALE


def test_step_after_the_single_optimizer_form_on_its_grads_still_claims_them():
    p, opt = _sgd()
    s = amp.GradScaler(init_scale=SCALE)
    g = np.full(3, SCALE, np.float32)
    s.unscale_([g])
    s.step(opt, [g])
    assert np.array_equal(p, -np.ones(3, np.float32))


def test_step_on_the_unscaled_grads_as_a_torch_tensor_view_is_taken():
    torch = pytest.importorskip("torch")
    p, opt = _sgd()
    s = amp.GradScaler(init_scale=SCALE)
    t = torch.full((3,), SCALE)
    s.unscale_(opt, [t])
    s.step(opt, [t.numpy()])
    assert np.array_equal(p, -np.ones(3, np.float32))
