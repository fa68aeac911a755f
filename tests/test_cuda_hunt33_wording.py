"""The CUDA module's wording of the errors of tests/test_hunt33_wording.py: one message on both
modules (the checks of optkern/cg_args.hpp and call_args.hpp's check_size). And a CuPy optimizer
step made of several native calls checks its arrays as a NumPy step does: the CUDA module's
precheck_step_ (optkern/step_checks.hpp), not a Python copy that named a grad of the wrong size
by its element count where the NumPy step names its shape.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import require_gpu
from optkern import _cpu
from optkern.optim import SGD, Adam
from test_hunt33_wording import BUFFER_CASES, CG_CASES, host

cp, _cuda = require_gpu()


def device(n):
    return cp.asarray(host(n))


@pytest.mark.parametrize("case", sorted({**CG_CASES, **BUFFER_CASES}))
def test_cuda_message_is_the_cpu_one(case):
    call, exc, message = {**CG_CASES, **BUFFER_CASES}[case]
    with pytest.raises(exc) as e:
        call(_cuda, device)
    assert str(e.value) == message
    with pytest.raises(exc) as e:
        call(_cpu, host)
    assert str(e.value) == message


def test_cg_vectors_are_left_alone_on_error():
    x, r, p = device(3), device(3), device(3)
    before = [a.get() for a in (x, r, p)]
    with pytest.raises(ValueError, match=r"^y: expected shape \(3,\), got \(3, 1\)$"):
        _cuda.cg_update_(x, r, p, device(3).reshape(3, 1), 1.0, 0.0)
    for a, b in zip((x, r, p), before):
        np.testing.assert_array_equal(a.get(), b)


# ---- a CuPy step of several native calls: the NumPy step's errors ----------------------------


def _step_error(xp, spoil, cls=Adam):
    """(type, message) of a two-group step over ``xp`` arrays with grads spoiled by ``spoil``,
    and whether any param changed."""
    ps = [xp.asarray(host(4)), xp.asarray(host(3)), xp.asarray(host(5))]
    opt = cls([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.1}], lr=0.01)
    grads = [xp.asarray(host(n)) for n in (4, 3, 5)]
    before = [np.asarray(p.get() if xp is cp else p).copy() for p in ps]
    with pytest.raises((TypeError, ValueError)) as e:
        opt.step(spoil(xp, ps, grads))
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p.get() if xp is cp else p, b)
    return type(e.value), str(e.value).replace("cupy.ndarray", "ARRAY").replace("numpy.ndarray", "ARRAY")


SPOILED = {
    "wrong size": lambda xp, ps, g: [g[0], g[1], xp.asarray(host(6))],
    "wrong shape": lambda xp, ps, g: [g[0], g[1], xp.asarray(host(6))[:5].reshape(5, 1)],
    "wrong dtype": lambda xp, ps, g: [g[0], g[1], g[2].astype(np.float32)],
    "strided": lambda xp, ps, g: [g[0], g[1], xp.asarray(host(10))[::2]],
    "other kind": lambda xp, ps, g: [g[0], g[1], [1.0] * 5],
    "grad is a param": lambda xp, ps, g: [g[0], g[1], ps[2]],
    "grad inside another group's param": lambda xp, ps, g: [ps[2][:4], g[1], g[2]],
}


@pytest.mark.parametrize("case", sorted(SPOILED))
@pytest.mark.parametrize("cls", [Adam, SGD])
def test_cupy_step_raises_the_numpy_step_error(case, cls):
    want = _step_error(np, SPOILED[case], cls)
    assert _step_error(cp, SPOILED[case], cls) == want


def test_cupy_step_names_a_wrong_size_grad_by_its_shape():
    assert _step_error(cp, SPOILED["wrong size"]) == (ValueError, "grads[2]: expected shape (5,), got (6,)")


def _replaced_param_error(xp, other):
    ps = [xp.asarray(host(4)), xp.asarray(host(5))]
    opt = Adam([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.1}], lr=0.01)
    opt.param_groups[1]["params"][0] = other(host(5))  # a param of the other kind, in place
    with pytest.raises(TypeError) as e:
        opt.step([xp.asarray(host(4)), xp.asarray(host(5))])
    np.testing.assert_array_equal(ps[0].get() if xp is cp else ps[0], host(4))
    return str(e.value)


def test_a_param_replaced_by_the_other_kind_is_named_as_on_the_cpu():
    # (the Python copy named the grad: "grads[1]: expected a numpy.ndarray, got cupy.ndarray")
    # (named by group and place since be043ef0: the optimizer has two groups)
    where = "param_groups[1]['params'][0]"
    assert _replaced_param_error(cp, np.asarray) == f"{where}: expected a cupy.ndarray, got numpy.ndarray"
    assert _replaced_param_error(np, cp.asarray) == f"{where}: expected a numpy.ndarray, got cupy.ndarray"


def test_a_step_over_numpy_and_cupy_groups_checks_both_before_writing():
    hp, dp = host(4), cp.asarray(host(5))
    opt = Adam([{"params": [hp]}, {"params": [dp], "lr": 0.1}], lr=0.01)
    with pytest.raises(ValueError, match=r"^grads\[1\]: expected shape \(5,\), got \(6,\)$"):
        opt.step([host(4), cp.asarray(host(6))])
    with pytest.raises(TypeError, match=r"^grads\[0\]: expected a numpy.ndarray, got cupy.ndarray$"):
        opt.step([cp.asarray(host(4)), cp.asarray(host(5))])
    np.testing.assert_array_equal(hp, host(4))
    np.testing.assert_array_equal(dp.get(), host(5))
    opt.step([host(4), cp.asarray(host(5))])
    assert not np.array_equal(hp, host(4)) and not np.array_equal(dp.get(), host(5))
