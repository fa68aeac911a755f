"""Hunt 40i: counters at the end of int64.

``BatchNorm.load_state_dict`` refuses a ``num_batches_tracked`` that no training forward takes
(2**63 - 1: the next one counts past int64), naming the key, nothing changed -- it was loaded and
the next training forward refused it (as ``AveragedParams``' ``n_averaged``).
``Scheduler.step()`` at ``last_step`` 2**63 - 1 (a state ``values()`` still reads) refuses naming
``last_step``, where it blamed "step", an argument ``step()`` does not have."""

import numpy as np
import pytest

from optkern import norm, optim, schedules

INT64_MAX = 2**63 - 1


def test_batch_norm_load_refuses_a_count_no_forward_takes():
    bn = norm.BatchNorm(3)
    sd = bn.state_dict()
    sd["num_batches_tracked"] = np.asarray(INT64_MAX, np.int64)
    sd["running_mean"] = np.full(3, 5.0, np.float32)
    with pytest.raises(
        ValueError, match=rf"^state_dict\['num_batches_tracked'\]: must be <= {INT64_MAX - 1}, got {INT64_MAX}$"
    ):
        bn.load_state_dict(sd)
    assert bn.num_batches_tracked == 0 and not bn.running_mean.any()
    sd["num_batches_tracked"] = INT64_MAX - 1
    bn.load_state_dict(sd)
    bn(np.ones((4, 3), np.float32))
    assert bn.num_batches_tracked == INT64_MAX


def test_scheduler_step_at_the_last_int64_step_names_last_step():
    opt = optim.SGD([np.ones(3, np.float32)], lr=0.1)
    s = schedules.Scheduler(opt, schedules.constant(0.5))
    sd = s.state_dict()
    sd["last_step"] = INT64_MAX
    s.load_state_dict(sd)
    assert s.values() == [0.5]  # (a state values() reads: absolute, the constant)
    lr = opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match=rf"^last_step: must be <= {INT64_MAX - 1} to step, got {INT64_MAX}$"):
        s.step()
    assert s.last_step == INT64_MAX and opt.param_groups[0]["lr"] == lr
