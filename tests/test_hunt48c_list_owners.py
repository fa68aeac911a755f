"""The CPU twin of test_cuda_hunt48c_list_owners (which failed before DeviceList held its items):
a sequence that makes each item on lookup (a new copy per ``__getitem__``, which NumPy's small-block
cache hands the next copy's allocation) is read item by item, and its items are freed after the
call, not kept. The CPU module's ArrayList held its items already (owners); this keeps the two
modules' contract alike."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from optkern import _cpu


class Fresh:
    """A sequence whose every lookup is a new copy of a stored array (nothing else holds it): ``make``
    copies (np.array; cp.asarray for the CUDA twin: a new device copy)."""

    def __init__(self, host: list[np.ndarray], make=np.array) -> None:
        self.host = host
        self.make = make
        self.made: list[weakref.ref] = []

    def __len__(self) -> int:
        return len(self.host)

    def __getitem__(self, i: int):
        if not -len(self.host) <= i < len(self.host):
            raise IndexError(i)
        a = self.make(self.host[i])
        self.made.append(weakref.ref(a))
        return a

    def all_freed(self) -> bool:
        gc.collect()
        return all(r() is None for r in self.made)


def _hosts(k: int = 4, n: int = 3) -> list[np.ndarray]:
    return [np.arange(n, dtype=np.float32) + np.float32(10 * (i + 1)) for i in range(k)]


def test_lookups_are_fresh_blocks_of_one_address():
    # (what makes the CUDA module's test bite: each copy takes the block the last one freed)
    addrs = {np.array(h).ctypes.data for h in _hosts()}
    assert len(addrs) == 1


def test_read_and_written_lists_made_on_lookup():
    g_host = _hosts()
    params = [np.zeros(3, np.float32) for _ in g_host]
    grads = Fresh(g_host)
    _cpu.sgd_(params, grads, None, 1.0, 0.0, 0.0, 0.0, False, False, False, 1)
    for p, g in zip(params, g_host):
        np.testing.assert_array_equal(p, -g)
    assert grads.all_freed()
    made = Fresh(_hosts())
    _cpu.sgd_(made, [np.ones(3, np.float32) for _ in range(4)], None, 1.0, 0.0, 0.0, 0.0, False, False, False, 1)
    assert made.all_freed()


def test_penalty_and_lbfgs_lists_made_on_lookup():
    p_host = _hosts()
    params = Fresh(p_host)
    got = _cpu.penalty_value(params, 0.0, 2.0)
    assert got == pytest.approx(sum(float((h.astype(np.float64) ** 2).sum()) for h in p_host), rel=1e-12)
    assert params.all_freed()
    s_host, y_host = _hosts(2), [h * np.float32(-0.5) for h in _hosts(2)]
    d, out = np.zeros(3, np.float32), np.zeros(2)
    S, Y = Fresh(s_host), Fresh(y_host)
    _cpu.lbfgs_direction_(S, Y, [1.0, 0.0], [0.0, 1.0], np.float32([1.0, -2.0, 0.5]), 0.0, d, out)
    np.testing.assert_allclose(d, s_host[0].astype(np.float64) + y_host[1], rtol=1e-6)
    assert S.all_freed() and Y.all_freed()
