"""GradScaler's growth count at the top of int64 (a saved state may hold any count >= 0).

The update rule (rules/amp.hpp, update_scale) counted tracker + 1: a loaded count of INT64_MAX
wrapped to -2**63 at the next clean step, and that state saved a checkpoint its own loader refused.
"""

import numpy as np

from optkern import amp, optim

INT64_MAX = 2**63 - 1


def _clean_step(scaler, n=4):
    p = np.ones(n, np.float32)
    g = np.full(n, 0.5, np.float32)
    opt = optim.SGD([p], lr=0.1)
    scaler.step(opt, [g])
    scaler.update()
    return p


def test_count_saturates_and_its_checkpoint_loads():
    s = amp.GradScaler(init_scale=4.0, growth_interval=3)
    st = s.state_dict()
    st["_growth_tracker"] = INT64_MAX
    s.load_state_dict(st)
    _clean_step(s)
    saved = s.state_dict()
    assert saved["_growth_tracker"] == INT64_MAX  # (was -2**63)
    assert saved["scale"] == 4.0  # past the interval: no growth, as torch's count past it
    again = amp.GradScaler()
    again.load_state_dict(saved)
    assert again.state_dict()["_growth_tracker"] == INT64_MAX


def test_count_below_the_top_still_counts():
    s = amp.GradScaler(init_scale=4.0, growth_interval=3)
    st = s.state_dict()
    st["_growth_tracker"] = INT64_MAX - 1
    s.load_state_dict(st)
    _clean_step(s)
    assert s.state_dict()["_growth_tracker"] == INT64_MAX
