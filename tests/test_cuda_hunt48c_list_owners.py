"""optkern._cuda's lists own their items for the call: a sequence that makes each item on lookup
(a view or a copy per ``__getitem__``) handed the kernel the device pointer of an array freed as
soon as the next item was looked up. CuPy's pool (the emulator's NumPy allocator alike) gives the
next same-sized array that very block, so a read list's items all read the last one's values and a
written list's items "shared memory" with each other. Both gather paths are covered: ListCall
(the optimizer steps, norms) and gather_device (penalties, L-BFGS).

Skipped without CuPy or without a visible GPU."""

from __future__ import annotations

import numpy as np
import pytest

from gpu import require_gpu

cp, _cuda = require_gpu()

from test_hunt48c_list_owners import Fresh, _hosts  # noqa: E402 (after the skip)


def test_a_read_list_made_on_lookup_is_read_item_by_item():
    g_host = _hosts()
    params = [cp.zeros(3, dtype=cp.float32) for _ in g_host]
    grads = Fresh(g_host, cp.asarray)
    _cuda.sgd_(params, grads, None, 1.0, 0.0, 0.0, 0.0, False, False, False, 1)
    for p, g in zip(params, g_host):
        np.testing.assert_array_equal(cp.asnumpy(p), -g)
    assert grads.all_freed()  # owned for the call only


def test_a_written_list_made_on_lookup_is_not_an_alias_of_itself():
    params = Fresh(_hosts(), cp.asarray)
    grads = [cp.ones(3, dtype=cp.float32) for _ in range(4)]
    _cuda.sgd_(params, grads, None, 1.0, 0.0, 0.0, 0.0, False, False, False, 1)  # (updates the copies)
    assert params.all_freed()


def test_gather_device_owns_its_items_too():
    p_host = _hosts()
    out = cp.zeros(1, dtype=cp.float64)
    params = Fresh(p_host, cp.asarray)
    _cuda.penalty_value(params, 0.0, 2.0, out)
    want = sum(float((h.astype(np.float64) ** 2).sum()) for h in p_host)
    assert float(cp.asnumpy(out)[0]) == pytest.approx(want, rel=1e-12)
    assert params.all_freed()


def test_lbfgs_history_made_on_lookup():
    n = 3
    s_host, y_host = _hosts(2, n), [h * np.float32(-0.5) for h in _hosts(2, n)]
    g = cp.asarray(np.float32([1.0, -2.0, 0.5]))
    d = cp.zeros(n, dtype=cp.float32)
    out = cp.zeros(2, dtype=cp.float64)
    S, Y = Fresh(s_host, cp.asarray), Fresh(y_host, cp.asarray)
    _cuda.lbfgs_direction_(S, Y, [1.0, 0.0], [0.0, 1.0], g, 0.0, d, out)
    want = s_host[0].astype(np.float64) + y_host[1]  # d = sum_j cs[j] S[j] + cy[j] Y[j] (g_scale 0)
    np.testing.assert_allclose(cp.asnumpy(d), want, rtol=1e-6)
    assert S.all_freed() and Y.all_freed()
