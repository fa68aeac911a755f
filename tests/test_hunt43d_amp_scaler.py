"""``amp.GradScaler``: whose grads ``unscale_(grads)`` unscaled, and the attributes a scaled step
sets on its optimizer.

1. ``unscale_(grads)`` (no optimizer named, the single-optimizer form) was claimed by the next
   step of any optimizer not unscaled yet: ``unscale_(grads_a)`` then ``step(B, grads_b)`` stepped
   B on ``grads_b`` still scaled (torch tracks each optimizer's unscale: B's grads are unscaled by
   its step). The flag is now claimed only by a step on the same grads (the same memory: views
   made again, a new list or a torch tensor's NumPy view count as the same); another optimizer's
   step unscales its own grads, and the first optimizer still claims its flag after.
2. ``step`` set ``_amp_grad_scale`` / ``_amp_checked`` / ``_amp_found_inf`` on the optimizer
   outside the optimizer's lock: a plain ``step`` of the same optimizer from another thread in
   between took them as its own (a low-precision optimizer unscaled that thread's unscaled grads
   by the scale again). They are now set, used and cleared under the optimizer's lock.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from optkern import amp, optim

SCALE = 4.0


def _sgd(dt=np.float32, **kw):
    p = np.zeros(3, dt)
    return p, optim.SGD([p], lr=1.0, **kw)


def test_unscale_of_other_grads_is_not_claimed_by_another_optimizers_step():
    pa, a = _sgd()
    pb, b = _sgd()
    s = amp.GradScaler(init_scale=SCALE)
    ga, gb = [np.full(3, SCALE, np.float32)], [np.full(3, SCALE, np.float32)]
    assert s.unscale_(ga) is False
    s.step(b, gb)  # (b's own grads: unscaled by its step)
    assert np.array_equal(gb[0], np.ones(3, np.float32)) and np.array_equal(pb, -np.ones(3, np.float32))
    s.step(a, ga)  # (a claims the unscale of its grads: not unscaled twice)
    assert np.array_equal(ga[0], np.ones(3, np.float32)) and np.array_equal(pa, -np.ones(3, np.float32))
    s.update()
    assert s.get_scale() == SCALE  # (two clean flags, growth_interval not reached)


def test_unscale_is_claimed_by_a_step_on_the_same_memory():
    # new views, a new list, a generator, a torch tensor and its NumPy view: the same grads
    for make, again in (
        (lambda g: [g], lambda g: [g[:]]),
        (lambda g: (x for x in [g]), lambda g: [g]),
    ):
        p, opt = _sgd()
        s = amp.GradScaler(init_scale=SCALE)
        g = np.full(3, SCALE, np.float32)
        s.unscale_(make(g))
        s.step(opt, again(g))
        assert np.array_equal(p, -np.ones(3, np.float32)), make
    p, opt = _sgd()
    s = amp.GradScaler(init_scale=SCALE)
    t = torch.full((3,), SCALE)
    s.unscale_([t])
    s.step(opt, [t.numpy()])
    assert np.array_equal(p, -np.ones(3, np.float32))


def test_attributes_of_a_scaled_step_are_not_seen_by_another_threads_step():
    # a master-weights optimizer unscales inside its step, by the scale the scaler sets on it
    class Probe(optim.SGD):
        def step(self, grads=None, closure=None):
            if self._amp_grad_scale is not None and not self.other_started:
                # the scaler's step: another thread steps this optimizer plainly meanwhile (it must
                # wait for this step, and then see no scale of ours)
                self.other_started = True
                self.other.start()
                self.other.join(0.5)
            return super().step(grads, closure)

    p = np.zeros(3, np.float16)
    opt = Probe([p], lr=1.0, master_weights=True)
    opt.other_started = False
    plain = [np.ones(3, np.float16)]  # (already unscaled: stepped by 1)
    opt.other = threading.Thread(target=lambda: opt.step(plain), daemon=True)
    s = amp.GradScaler(init_scale=SCALE)
    s.step(opt, [np.full(3, SCALE, np.float16)])
    opt.other.join(20)
    assert not opt.other.is_alive()
    # both steps took a gradient of 1: p = -2 (the plain step unscaled by 4 gave -1.25)
    assert np.array_equal(p, np.full(3, -2.0, np.float16)), p
