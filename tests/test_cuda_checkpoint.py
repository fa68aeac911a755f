"""optkern.save / optkern.load and load_state_dict's checks with CuPy state (skipped without a GPU).

CuPy state is saved from a host copy and restored onto the parameters' device, plain and
capturable; a corrupted CuPy state dict is refused on the device (no host copy) and leaves the
optimizer untouched.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern
from gpu import require_gpu
from optkern import optim as O
from optkern import schedules as S

cp, _cuda = require_gpu()

SHAPES = ((33, 3), (7,), (1,))
CASES = [
    (O.SGD, {"lr": 0.05, "momentum": 0.9}),
    (O.Adagrad, {"lr": 0.1}),
    (O.RMSprop, {"lr": 0.01, "centered": True, "momentum": 0.5}),
    (O.Adadelta, {}),
    (O.Adam, {"lr": 0.01, "amsgrad": True}),
    (O.NAdam, {"lr": 0.01}),
]


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [cp.asarray(rng.standard_normal(s).astype(np.float32)) for s in SHAPES]


def _grads(t):
    rng = np.random.default_rng(500 + t)
    return [cp.asarray(rng.standard_normal(s).astype(np.float32)) for s in SHAPES]


def _train(opt, sched, start, stop):
    for t in range(start, stop):
        opt.step(_grads(t))
        sched.step()


@pytest.mark.parametrize("capturable", [False, True])
@pytest.mark.parametrize("cls,hp", CASES, ids=[c[0].__name__ for c in CASES])
def test_gpu_checkpoint_resumes_bitwise_on_the_device(cls, hp, capturable, tmp_path):
    pa = _params()
    a = cls(pa, capturable=capturable, **hp)
    sa = S.Scheduler(a, S.warmup_cosine(1.0, warmup_steps=2, total_steps=10), relative=True)
    _train(a, sa, 0, 4)
    optkern.save(tmp_path / "ck.npz", opt=a, sched=sa, params=pa)
    plain = optkern.load(tmp_path / "ck.npz")
    assert all(type(p) is np.ndarray for p in plain["params"])  # plain data: host arrays
    pb = _params(seed=3)
    b = cls(pb, capturable=capturable, **hp)
    sb = S.Scheduler(b, S.warmup_cosine(1.0, warmup_steps=2, total_steps=10), relative=True)
    optkern.load(tmp_path / "ck.npz", opt=b, sched=sb, params=pb)
    for entry in b.state_dict()["state"].values():
        for k, v in entry.items():
            if k in cls._state_names:
                assert isinstance(v, cp.ndarray) and v.device.id == pb[0].device.id
    _train(a, sa, 4, 8)
    _train(b, sb, 4, 8)
    for x, y in zip(pa, pb):
        assert isinstance(y, cp.ndarray) and cp.array_equal(x, y)


def test_corrupted_cupy_state_is_refused_and_changes_nothing():
    pa = _params()
    opt = O.Adam(pa, lr=0.01, amsgrad=True)
    opt.step(_grads(0))
    target = O.Adam(_params(seed=2), lr=0.01, amsgrad=True)
    target.step(_grads(1))
    before = {
        i: {k: (v.get() if isinstance(v, cp.ndarray) else v) for k, v in e.items()}
        for i, e in target.state_dict()["state"].items()
    }
    for key, value, exc, match in [
        ("exp_avg", np.nan, ValueError, "non-finite"),
        ("exp_avg_sq", -1.0, ValueError, "negative entries"),
        ("max_exp_avg_sq", np.inf, ValueError, "non-finite"),
    ]:
        sd = opt.state_dict()
        bad = sd["state"][0][key].copy()
        bad[0, 0] = value
        sd["state"][0] = {**sd["state"][0], key: bad}
        with pytest.raises(exc, match=rf"\['state'\]\[0\]\['{key}'\]: .*{match}"):
            target.load_state_dict(sd)
    sd = opt.state_dict()
    sd["state"][0] = {**sd["state"][0], "exp_avg": sd["state"][0]["exp_avg"].reshape(3, 33)}
    with pytest.raises(ValueError, match=r"expected shape \(33, 3\)"):
        target.load_state_dict(sd)
    after = {
        i: {k: (v.get() if isinstance(v, cp.ndarray) else v) for k, v in e.items()}
        for i, e in target.state_dict()["state"].items()
    }
    for i, entry in before.items():
        for k, v in entry.items():
            assert np.array_equal(v, after[i][k])


def test_cupy_array_target_is_restored_on_its_device(tmp_path):
    a = cp.arange(12, dtype=cp.float32).reshape(3, 4)
    optkern.save(tmp_path / "ck.npz", a=a)
    b = cp.zeros((3, 4), cp.float32)
    optkern.load(tmp_path / "ck.npz", a=b)
    assert cp.array_equal(a, b)
    with pytest.raises(ValueError, match="saved array is float32"):
        optkern.load(tmp_path / "ck.npz", a=cp.zeros((3, 4), cp.float64))
