"""optkern._cpu.penalty_grad_ / penalty_value: an ``out`` sharing memory with a param or a grad is
refused before anything is written (it took the penalty's value in place of that element; the CUDA
module refused it already, tests/test_cuda_hunt33.py), as any written array sharing memory is."""

import numpy as np
import pytest

from optkern import _backend

_cpu = _backend.cpu


@pytest.mark.parametrize(
    "call, culprit",
    [
        (lambda p, g: _cpu.penalty_grad_([p[:3]], [g[:3]], 0.1, 0.1, p[2:3]), "params[0]"),
        (lambda p, g: _cpu.penalty_grad_([p[:3]], [g[:3]], 0.1, 0.1, g[1:2]), "grads[0]"),
        (lambda p, g: _cpu.penalty_value([p[:3]], 0.1, 0.1, p[0:1]), "params[0]"),
    ],
    ids=["grad: out in a param", "grad: out in a grad", "value: out in a param"],
)
def test_out_sharing_memory_is_refused(call, culprit):
    p, g = np.linspace(1.0, 2.0, 6), np.linspace(-1.0, 1.0, 6)
    with pytest.raises(ValueError, match="shares memory") as e:
        call(p, g)
    assert culprit in str(e.value) and "out" in str(e.value), str(e.value)
    np.testing.assert_array_equal(p, np.linspace(1.0, 2.0, 6))
    np.testing.assert_array_equal(g, np.linspace(-1.0, 1.0, 6))


def test_out_beside_the_arrays_still_runs():
    p, g = np.linspace(1.0, 2.0, 6), np.linspace(-1.0, 1.0, 6)
    v = _cpu.penalty_grad_([p[:3]], [g[:3]], 0.1, 0.1, p[3:4])
    want = 0.1 * np.abs(np.linspace(1.0, 2.0, 6)[:3]).sum() + 0.05 * (np.linspace(1.0, 2.0, 6)[:3] ** 2).sum()
    assert v == pytest.approx(want, rel=1e-15) and p[3] == v
