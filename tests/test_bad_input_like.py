"""Arrays that must match another array (a grad its parameter, an average's target its average)
are checked by one helper, ``_backend.check_like``: the same TypeError / ValueError, in the
native module's words, from every call that uses it, raised before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _backend, amp, optim, swa
from optkern.distributed.data_parallel import check_grads


def arrays(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(3).astype(dtype), rng.standard_normal((2, 2)).astype(dtype)]


#: (replace the second array with ..., exception, message)
BAD = [
    (lambda a: a.tolist(), TypeError, r"\[1\]: expected a numpy.ndarray, got list"),
    (lambda a: a.astype(np.float16), TypeError, r"\[1\]: expected float32, got float16"),
    (lambda a: a.reshape(4), ValueError, r"\[1\]: expected shape \(2, 2\), got \(4,\)"),
    (lambda a: a.T.copy()[:1], ValueError, r"\[1\]: expected shape \(2, 2\), got \(1, 2\)"),
]


def test_check_like_kinds_dtypes_and_shapes():
    ref = np.zeros((2, 3), np.float32)
    _backend.check_like(np.ones((2, 3), np.float32), ref, "x")
    _backend.check_like(np.ones((2, 3), np.float64), ref, "x", dtype=np.float64)
    with pytest.raises(TypeError, match=r"^x: expected float64, got float32"):
        _backend.check_like(np.ones((2, 3), np.float32), ref, "x", dtype=np.float64)
    with pytest.raises(TypeError, match=r"^x: expected a numpy or cupy array, got tuple"):
        _backend.check_like((1.0,), ref, "x", kind=False)
    with pytest.raises(ValueError, match=r"^x: expected shape \(2, 3\), got \(3, 2\)"):
        _backend.check_like(np.ones((3, 2), np.float32), ref, "x")
    assert _backend.type_name([]) == "list" and _backend.type_name(ref) == "numpy.ndarray"


class _NotOptkern:
    """An optimizer GradScaler knows only by its param_groups (no optkern prechecks)."""

    def __init__(self, params):
        self.param_groups = [{"params": params}]
        self.steps = 0

    def step(self, grads):
        self.steps += 1


def _sites():
    """(name, call(grads_or_targets), arrays the call must leave unchanged)."""
    params = arrays()
    plain = _NotOptkern(params)
    avg = swa.AveragedParams(params)
    avg.update(arrays(seed=1))
    sam = optim.SAM(optim.SGD(params, lr=0.1), rho=0.05)
    lb = optim.LBFGS(params)
    scaler = amp.GradScaler(init_scale=4.0)
    return [
        ("GradScaler.step", lambda g: scaler.step(plain, g), params + [p for p in avg.averages]),
        ("AveragedParams.update", lambda g: avg.update(g), params + avg.averages),
        ("AveragedParams.copy_to", lambda g: avg.copy_to(g), params + avg.averages),
        ("SAM.first_step", lambda g: sam.first_step(g), params),
        ("LBFGS closure", lambda g: lb.step(lambda: (1.0, g)), params),
        ("DistributedOptimizer grads", lambda g: check_grads(g, params), params),
    ]


@pytest.mark.parametrize("site", range(6))
@pytest.mark.parametrize("bad, exc, msg", BAD)
def test_every_site_names_the_mismatch_and_writes_nothing(site, bad, exc, msg):
    name, call, watched = _sites()[site]
    given = arrays(seed=5)
    given[1] = bad(given[1])
    before = [a.copy() for a in watched] + [np.array(a, copy=True) for a in given]
    with pytest.raises(exc, match=msg):
        call(given)
    after = [a for a in watched] + [np.asarray(a) for a in given]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b, err_msg=name)
