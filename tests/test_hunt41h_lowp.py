"""The 41st hunt (h): the low-precision step's whole-step check, and ZeRO-1 8-bit shards.

* A step of several native calls (param groups; ZeRO-1 with 8-bit states, where each param's piece
  of a rank's slice is an array of the local optimizer, and ``ShardedOptimizer`` /
  ``DistributedOptimizer`` check the step before they reduce the gradients) checked every grad,
  param and state array in Python (``_lowp_check``: ``check_state``, ``byte_span``,
  ``check_disjoint``), ~25 us an array, at every step: ZeRO-1 of 1000 arrays of 10 spent ~30 ms a
  step there, against ~1 ms for its float32 states. Now one pass of the CPU module's
  ``precheck_step_`` checks NumPy runs (the Python check runs only where it refuses, or cannot
  decide, to name the entry as before); the cases below are refused as they were.

* A rank's shard saved by the 8-bit layout before 62f6d2c (one local array per group slice)
  whose params happened to lie at the same offsets was refused with the local optimizer's
  "has 1 parameters, this optimizer's group has 2", which says nothing of what to do. Now the
  message names the shard's layout and says to load a ``consolidate_state_dict()`` checkpoint.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import optim
from optkern.optim import _lowp_checks


def _two_groups(n=6, size=300):
    rng = np.random.default_rng(1)
    ps = [rng.standard_normal(size).astype(np.float32) for _ in range(n)]
    gs = [rng.standard_normal(size).astype(np.float32) for _ in range(n)]
    opt = optim.Adam([{"params": ps[:2]}, {"params": ps[2:], "lr": 1e-2}], lr=1e-3, state_dtype="int8")
    opt.step(gs)
    return opt, ps, gs


def test_a_valid_multi_call_step_is_checked_without_the_per_array_python_check(monkeypatch):
    opt, ps, gs = _two_groups()
    calls = []
    real = _lowp_checks.check_state
    monkeypatch.setattr("optkern.optim._lowp.check_state", lambda *a: calls.append(1) or real(*a))
    for _ in range(3):
        opt.step(gs)
        opt._check_step(gs)  # (what ShardedOptimizer and DistributedOptimizer ask before each step)
    assert calls == []


@pytest.mark.parametrize(
    "spoil, exc, text",
    [
        ("readonly_state", ValueError, "state[4]['exp_avg']: array is read-only"),
        ("short_scales", ValueError, "state[3]['exp_avg_sq_scale']: expected 2 block scales"),
        ("state_dtype", TypeError, "state[5]['exp_avg']: expected uint8, got int8"),
        ("grad_aliases_state", ValueError, "grads[2] shares memory with state[2]['exp_avg_sq']"),
        ("grad_shape", ValueError, "grads[1]: expected shape (300,), got (3, 100)"),
        ("grad_dtype", TypeError, "grads[0]: expected float32, got float64"),
        ("state_on_list", TypeError, "state[2]['exp_avg']: expected an array on its parameter's backend"),
    ],
)
def test_bad_arrays_are_named_before_any_call_writes(spoil, exc, text):
    opt, ps, gs = _two_groups()
    gs = list(gs)
    runs = [run for rs in opt._runs for run in rs]
    st = {i: run.state for run in runs for i in run.index}
    pos = {i: k for run in runs for k, i in enumerate(run.index)}
    if spoil == "readonly_state":
        st[4]["exp_avg"][pos[4]].flags.writeable = False
    elif spoil == "short_scales":
        st[3]["exp_avg_sq_scale"][pos[3]] = st[3]["exp_avg_sq_scale"][pos[3]][:1].copy()
    elif spoil == "state_dtype":
        st[5]["exp_avg"][pos[5]] = st[5]["exp_avg"][pos[5]].view(np.int8)
    elif spoil == "grad_aliases_state":
        buf = np.zeros(1200, np.uint8)  # (a state's codes and a grad in one buffer)
        st[2]["exp_avg_sq"][pos[2]] = buf[:300]
        gs[2] = buf.view(np.float32)
    elif spoil == "grad_shape":
        gs[1] = gs[1].reshape(3, 100)
    elif spoil == "grad_dtype":
        gs[0] = gs[0].astype(np.float64)
    elif spoil == "state_on_list":
        st[2]["exp_avg"][pos[2]] = list(st[2]["exp_avg"][pos[2]])
    before = [p.copy() for p in ps]
    with pytest.raises(exc) as e:
        opt.step(gs)
    assert text in str(e.value)
    for a, b in zip(before, ps):
        assert np.array_equal(a, b)


def test_an_int8_shard_of_the_layout_before_one_array_per_piece_says_to_load_a_consolidated_checkpoint():
    from mpi4py import MPI

    from optkern.distributed import Communicator, ShardedOptimizer

    rng = np.random.default_rng(2)
    ps = [rng.standard_normal(256).astype(np.float32) for _ in range(2)]
    gs = [rng.standard_normal(256).astype(np.float32) for _ in range(2)]
    z = ShardedOptimizer(optim.Adam, ps, Communicator(MPI.COMM_SELF), lr=1e-3, state_dtype="int8")
    z.step(gs)
    # the layout before 62f6d2c: the same offsets (each array a whole number of blocks), but the
    # rank's slice one array of the local optimizer
    old = optim.Adam([np.concatenate(ps)], lr=1e-3, state_dtype="int8")
    old.step([np.concatenate(gs)])
    shard = {"zero": z.state_dict()["zero"], "optimizer": old.state_dict()}
    before = z.state_dict()["optimizer"]["state"]
    with pytest.raises(ValueError) as e:
        z.load_state_dict(shard)
    msg = str(e.value)
    assert "state_dict['optimizer']['param_groups'][0]['params']" in msg, msg
    assert "consolidate_state_dict()" in msg, msg
    after = z.state_dict()["optimizer"]["state"]
    for k in before:
        for n, v in before[k].items():
            assert np.array_equal(np.asarray(v), np.asarray(after[k][n])), (k, n)
