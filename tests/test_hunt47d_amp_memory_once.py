"""``GradScaler.step`` after ``unscale_(grads)`` (the single-optimizer form) walked the grads' memory
(``memory_of``: a byte span per array) twice: once to claim the pending unscale, once more to compare
with the very memory it had just claimed. Once now, and the claim and refusal still hold."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _amp_states, amp, optim


@pytest.fixture
def walks(monkeypatch):
    calls = []
    real = _amp_states.memory_of

    def counting(grads):
        calls.append(1)
        return real(grads)

    monkeypatch.setattr(_amp_states, "memory_of", counting)
    return calls


def _setup():
    p = np.zeros(3, np.float32)
    return p, optim.SGD([p], lr=1.0), amp.GradScaler(init_scale=4.0)


def test_step_claiming_the_single_optimizer_unscale_walks_the_grads_once(walks):
    p, opt, s = _setup()
    g = np.full(3, 4.0, np.float32)
    s.unscale_([g])
    walks.clear()
    s.step(opt, [g])
    assert len(walks) == 1
    assert np.array_equal(p, -np.ones(3, np.float32))  # stepped on the grads unscaled once


def test_step_after_named_unscale_walks_once_and_still_refuses_other_grads(walks):
    p, opt, s = _setup()
    g = np.full(3, 4.0, np.float32)
    s.unscale_(opt, [g])
    walks.clear()
    with pytest.raises(ValueError, match="grads: not the grads unscale_"):
        s.step(opt, [np.full(3, 4.0, np.float32)])
    assert len(walks) == 1
    assert np.array_equal(p, np.zeros(3, np.float32))
    s.step(opt, [g[:]])  # (the same memory through another view: taken)
    assert np.array_equal(p, -np.ones(3, np.float32))
