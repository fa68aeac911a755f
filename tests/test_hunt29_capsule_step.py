"""optkern.optim steps given DLPack capsules as grads (what the torch adapter hands the native calls).

A capsule used to go through ``_backend.as_array`` one by one (~1.5 us of type tests each, to come
back unchanged), and every step scanned the params for torch tensors: 200 tiny grads took 395 us a
step as capsules and 96 us as arrays. Capsules now take the arrays' fast path: the results must be
the same bits as with arrays, and a wrong capsule still refused by name before anything is written.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.dlpack import to_dlpack  # noqa: E402

import optkern.optim as O  # noqa: E402


def _params(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(3 + 7 * i).astype(np.float32) for i in range(n)]


@pytest.mark.parametrize("name, hp", [("Adam", dict(lr=1e-2)), ("SGD", dict(lr=0.1, momentum=0.9))])
def test_capsule_grads_step_as_array_grads(name, hp):
    a, b = _params(), _params()
    oa, ob = getattr(O, name)(a, **hp), getattr(O, name)(b, **hp)
    for s in range(3):
        grads = _params(seed=10 + s)
        oa.step(grads)
        ob.step([to_dlpack(torch.from_numpy(g)) for g in grads])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_mixed_capsules_and_arrays_and_none():
    a, b = _params(), _params()
    oa, ob = O.Adam(a, lr=1e-2), O.Adam(b, lr=1e-2)
    grads = _params(seed=3)
    oa.step([grads[0], None, grads[2], grads[3], None])
    ob.step([to_dlpack(torch.from_numpy(grads[0])), None, grads[2], to_dlpack(torch.from_numpy(grads[3])), None])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_wrong_capsule_refused_by_name_before_writing():
    p = _params()
    opt = O.Adam(p, lr=1e-2)
    before = [x.copy() for x in p]
    grads = [to_dlpack(torch.from_numpy(g)) for g in _params(seed=4)]
    grads[3] = to_dlpack(torch.zeros(p[3].size, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"grads\[3\]"):
        opt.step(grads)
    short = [to_dlpack(torch.from_numpy(g)) for g in _params(seed=4)]
    short[1] = to_dlpack(torch.zeros(p[1].size - 1, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        opt.step(short)
    for x, y in zip(p, before):
        np.testing.assert_array_equal(x, y)


def test_transposed_capsule_refused_in_a_multi_call_step():
    """A step with some grads None runs several native calls, checked first in one pass
    (precheck_step_): capsules are checked there too, their shapes against their params'."""
    p = [np.zeros((3, 4), np.float32), np.zeros(5, np.float32)]
    opt = O.Adam(p, lr=1e-2)
    with pytest.raises(ValueError, match=r"grads\[0\]: expected shape \(3, 4\), got \(4, 3\)"):
        opt.step([to_dlpack(torch.ones(4, 3)), None])
    assert not p[0].any()
