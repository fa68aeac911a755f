"""optkern.distributed, 41st hunt (j): the wrappers' per-step gradient checks in one native pass.

``DistributedOptimizer`` checked its gradients (kind, dtype, shape, writable, no two sharing
memory) in a Python loop, ~3-7 ms a step at 1000 arrays; ``ShardedOptimizer`` (kind, dtype,
shape) ~2.5 ms. Now plain NumPy gradients of their params' shapes and dtypes pass in a few
C-level passes and one ``precheck_step_``; anything that pass refuses or cannot decide (a strided
gradient the buckets reduce through a copy, mixed dtypes, a subclass) goes through the Python
check, which words the error. These guard the cases that reach the new paths at one rank.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mpi4py")


def _comm():
    from mpi4py import MPI

    from optkern.distributed import Communicator

    return Communicator(MPI.COMM_SELF)


def _dp(params, **kw):
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    groups = [{"params": [a]} for a in params]  # (a group per param: one dtype each)
    return DistributedOptimizer(optim.SGD(groups, lr=0.5), _comm(), **kw)


def _refused(call, grads, params, exc, text):
    before = [a.copy() for a in grads + params]
    with pytest.raises(exc) as e:
        call(grads)
    assert str(e.value) == text
    for a, b in zip(grads + params, before):
        assert a.tobytes() == b.tobytes()  # nothing written before the error


def test_dp_strided_gradient_reduced_through_the_python_check():
    # the native pass refuses a non-contiguous gradient; the buckets take it (through a copy)
    p = [np.zeros(4, np.float32), np.zeros(3, np.float32)]
    d = _dp(p, grad_weight=0.5)
    g = [np.arange(8, dtype=np.float32)[::2], np.ones(3, np.float32)]
    d.synchronize(g)
    np.testing.assert_array_equal(g[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(g[1], [0.5] * 3)
    ro = np.arange(8, dtype=np.float32)[::2]
    ro.flags.writeable = False
    _refused(d.synchronize, [ro, g[1]], p, ValueError, "grads[0]: array is read-only (the average is written into it)")


def test_dp_refusals_worded_as_before():
    p = [np.zeros(4, np.float32), np.zeros(3, np.float32), np.zeros(0, np.float32)]
    d = _dp(p, grad_weight=0.5)
    g = [np.ones(4, np.float32), np.ones(3, np.float32), np.zeros(0, np.float32)]
    ro = g[1].copy()
    ro.flags.writeable = False
    text = "grads[1]: array is read-only (the average is written into it)"
    _refused(d.synchronize, [g[0], ro, g[2]], p, ValueError, text)
    _refused(d.step, [g[0], ro, g[2]], p, ValueError, text)
    big = np.ones(7, np.float32)
    shared = [big[:4], big[4:], g[2]]
    shared[1] = big[1:4]  # (of its param's shape, inside grads[0])
    text = "grads[1] shares memory with grads[0] (aliasing arrays cannot be updated in place)"
    _refused(d.synchronize, shared, p, ValueError, text)
    text = "grads[1]: expected float32, got float64"
    _refused(d.synchronize, [g[0], np.ones(3), g[2]], p, TypeError, text)
    text = "grads[0]: expected float32, got >f4"
    _refused(d.synchronize, [g[0].astype(">f4"), g[1], g[2]], p, TypeError, text)
    text = "grads[2]: expected shape (0,), got (1,)"
    _refused(d.synchronize, [g[0], g[1], np.zeros(1, np.float32)], p, ValueError, text)
    text = "grads: expected 3 arrays (one per parameter), got 2"
    _refused(d.synchronize, g[:2], p, ValueError, text)
    d.synchronize(g)  # and the good list is averaged (weighted) in place
    np.testing.assert_array_equal(g[0], [0.5] * 4)


def test_dp_mixed_dtypes_checked_in_python():
    p = [np.zeros(4, np.float32), np.zeros(3, np.float64)]
    d = _dp(p, grad_weight=0.5)
    g = [np.ones(4, np.float32), np.ones(3, np.float64)]
    ro = g[1].copy()
    ro.flags.writeable = False
    _refused(d.step, [g[0], ro], p, ValueError, "grads[1]: array is read-only (the average is written into it)")
    d.step(g)
    np.testing.assert_array_equal(g[1], [0.5] * 3)
    np.testing.assert_array_equal(p[1], [-0.25] * 3)


class _Sub(np.ndarray):
    pass


def test_subclass_and_reshaped_param_through_the_python_check():
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    p = [np.zeros(4, np.float32), np.zeros(3, np.float32)]
    d = _dp(p, grad_weight=0.5)
    g = [np.ones(4, np.float32).view(_Sub), np.ones(3, np.float32)]
    d.synchronize(g)  # (a subclass passes the kind check, as it always did)
    np.testing.assert_array_equal(g[0], [0.5] * 4)
    q = [np.zeros(4, np.float32), np.zeros(3, np.float32)]
    z = ShardedOptimizer(optim.SGD, q, _comm(), lr=0.5)
    z.step([np.ones(4, np.float32).view(_Sub), np.ones(3, np.float32)])
    np.testing.assert_array_equal(q[0], [-0.5] * 4)
    q[0].shape = (2, 2)  # the param's shape now: the grads' are compared with it, each step
    text = "grads[0]: expected shape (2, 2), got (4,)"
    _refused(z.step, [np.ones(4, np.float32), np.ones(3, np.float32)], q, ValueError, text)


def test_zero_takes_read_only_and_strided_gradients():
    # ShardedOptimizer copies the gradients: read-only and strided ones are fine there
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    q = [np.zeros(4, np.float32), np.zeros(3, np.float32)]
    z = ShardedOptimizer(optim.SGD, q, _comm(), lr=0.5)
    ro = np.ones(3, np.float32)
    ro.flags.writeable = False
    z.step([np.ones(8, np.float32)[::2], ro])
    np.testing.assert_array_equal(q[0], [-0.5] * 4)
    np.testing.assert_array_equal(q[1], [-0.5] * 3)
    _refused(z.step, [np.ones(4), ro], q, TypeError, "grads[0]: expected float32, got float64")
