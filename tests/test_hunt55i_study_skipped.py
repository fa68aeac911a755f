"""The low-precision study's skipped-step count (``lowprec.HalfWeights.skipped``) comes from the
scaler's own found-inf flag of the step (``GradScaler.found_inf(optimizer)``, torch's
``_found_inf_per_device``), not from the scale going down: a step skipped with the scale at the
backoff's floor (it cannot go lower) was not counted. (``backoff_factor=1``, the other case
where the scale stays, is refused by GradScaler: its range is (0, 1), torch's too.)"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import optim
from optkern._amp_checks import SMALLEST_SCALE
from optkern.amp import GradScaler
from optkern.study import lowprec


def _half_weights(n: int = 7):
    p = np.random.default_rng(5512).standard_normal(n).astype(np.float32)
    w = lowprec.HalfWeights(p, "float16")
    return w, optim.Adam([w.half], lr=0.1, master_weights=True)


def test_a_skipped_step_at_the_floor_of_the_scale_is_counted():
    w, opt = _half_weights()
    assert w.scaler is not None
    w.scaler.update(new_scale=SMALLEST_SCALE)
    floor = w.scaler.get_scale()
    before = w.half.copy()
    g = np.full(7, 0.5, np.float32)
    g[3] = np.inf  # (an overflow whatever the scale)
    for k in range(1, 4):
        w.step(opt, [g])
        assert w.skipped == k
        assert w.scaler.get_scale() == floor  # (the backoff stops there: the old count saw nothing)
        assert np.array_equal(w.half, before)  # (skipped: nothing written)
    w.scaler.update(new_scale=1.0)  # (at the floor a finite 0.5 is stored as float16 zero)
    w.step(opt, [np.full(7, 0.5, np.float32)])  # a finite step is not counted
    assert w.skipped == 3 and not np.array_equal(w.half, before)


def test_clean_and_overflowed_steps_are_counted_as_the_scaler_decided():
    w, opt = _half_weights(1023)
    rng = np.random.default_rng(5513)
    want = 0
    for i in range(12):
        g = (rng.standard_normal(1023) * 1e-3).astype(np.float32)  # (finite in float16 times 2**16)
        if i % 3 == 1:
            g[i] = np.nan
            want += 1
        w.step(opt, [g])
        assert w.skipped == want, i


def test_found_inf_reads_this_iterations_flag_of_each_optimizer():
    a, b = np.ones(5, np.float32), np.ones(3, np.float32)
    oa, ob = optim.SGD([a], lr=0.1), optim.SGD([b], lr=0.1)
    s = GradScaler(init_scale=4.0)
    s.step(oa, [np.full(5, 1.0, np.float32)])
    s.step(ob, [np.array([1.0, np.inf, 1.0], np.float32)])
    assert s.found_inf(oa) is False and s.found_inf(ob) is True
    assert np.array_equal(b, np.ones(3, np.float32)) and not np.array_equal(a, np.ones(5, np.float32))
    s.update()
    with pytest.raises(RuntimeError, match=r"found_inf\(\): nothing recorded for this optimizer"):
        s.found_inf(oa)  # (update() starts a new iteration)


def test_found_inf_after_unscale_is_that_flag():
    a = np.ones(5, np.float32)
    o = optim.SGD([a], lr=0.1)
    s = GradScaler(init_scale=2.0)
    g = np.array([1.0, 2.0, np.nan, 4.0, 5.0], np.float32)
    s.unscale_(o, [g])
    assert s.found_inf(o) is True


def test_found_inf_of_a_disabled_scaler_is_false():
    o = optim.SGD([np.ones(2, np.float32)], lr=0.1)
    s = GradScaler(enabled=False)
    s.step(o, [np.full(2, np.inf, np.float32)])
    assert s.found_inf(o) is False
