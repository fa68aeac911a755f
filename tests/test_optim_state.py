"""state_dict round trips, loading PyTorch checkpoints, thread-count independence."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import optkern._backend as B
import optkern.optim as O
from optim_registry import OPTIMIZERS

N = 5
# per optimizer, its registered variant with the most hyper-parameters set
ROUND_TRIP = [(info.name, max(info.valid, key=len)) for info in OPTIMIZERS]


def _data(seed, dtype=np.float32, shapes=((1,), (7,), (1000,), (3, 50))):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(2 * N)]
    return params, grads


@pytest.mark.parametrize("name,hp", ROUND_TRIP, ids=[n for n, _ in ROUND_TRIP])
def test_round_trip_is_bitwise(name, hp):
    params, grad_seq = _data(11)
    straight = [p.copy() for p in params]
    opt = getattr(O, name)(straight, **hp)
    for grads in grad_seq:
        opt.step(grads)

    resumed = [p.copy() for p in params]
    first = getattr(O, name)(resumed, **hp)
    for grads in grad_seq[:N]:
        first.step(grads)
    saved = pickle.loads(pickle.dumps(first.state_dict()))  # as if written to disk
    second = getattr(O, name)(resumed, lr=123.0)  # hyper-parameters come from the checkpoint
    second.load_state_dict(saved)
    assert second.param_groups[0]["lr"] == hp.get("lr", opt.defaults["lr"])
    for grads in grad_seq[N:]:
        second.step(grads)
    for a, b in zip(straight, resumed):
        assert np.array_equal(a, b)


def test_state_dict_arrays_are_copied_on_load():
    params, grad_seq = _data(12)
    opt = O.Adam(params)
    opt.step(grad_seq[0])
    sd = opt.state_dict()
    other = O.Adam([p.copy() for p in params])
    other.load_state_dict(sd)
    other.step(grad_seq[1])
    assert not np.shares_memory(other.state_dict()["state"][0]["exp_avg"], sd["state"][0]["exp_avg"])
    assert other.state_dict()["state"][0]["step"] == 2 and sd["state"][0]["step"] == 1


def test_load_mixed_steps_splits_the_group():
    """A checkpoint whose params took different numbers of steps still resumes exactly."""
    params, grad_seq = _data(13)
    a, b = [p.copy() for p in params], [p.copy() for p in params]
    opt_a = O.Adam(a[:2], lr=0.01)
    opt_b = O.Adam(a[2:], lr=0.01)
    for grads in grad_seq[:3]:
        opt_a.step(grads[:2])
    for grads in grad_seq[:5]:
        opt_b.step(grads[2:])
    sd = {
        "state": {**opt_a.state_dict()["state"], **{k + 2: v for k, v in opt_b.state_dict()["state"].items()}},
        "param_groups": [{**opt_a.state_dict()["param_groups"][0], "params": [0, 1, 2, 3]}],
    }
    b[:] = [x.copy() for x in a]
    merged = O.Adam(b, lr=0.01)
    merged.load_state_dict(sd)
    for grads in grad_seq[5:]:
        opt_a.step(grads[:2])
        opt_b.step(grads[2:])
        merged.step(grads)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    steps = {i: s["step"] for i, s in merged.state_dict()["state"].items()}
    assert steps == {0: 8, 1: 8, 2: 10, 3: 10}


def test_load_rejects_mismatches_and_changes_nothing():
    params, grad_seq = _data(14)
    opt = O.Adam(params, lr=0.01)
    opt.step(grad_seq[0])
    before = pickle.dumps(opt.state_dict())
    good = opt.state_dict()
    bad_size = pickle.loads(pickle.dumps(good))
    bad_size["state"][2]["exp_avg"] = np.zeros(999, np.float32)
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[2\]\['exp_avg'\]: expected 1000 elements"):
        opt.load_state_dict(bad_size)
    bad_groups = {"state": {}, "param_groups": good["param_groups"] * 2}
    with pytest.raises(ValueError, match="2 parameter groups"):
        opt.load_state_dict(bad_groups)
    bad_hp = pickle.loads(pickle.dumps(good))
    bad_hp["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"\['lr'\]"):
        opt.load_state_dict(bad_hp)
    missing = pickle.loads(pickle.dumps(good))
    del missing["state"][1]["exp_avg_sq"]
    with pytest.raises(ValueError, match="missing state 'exp_avg_sq'"):
        opt.load_state_dict(missing)
    assert pickle.dumps(opt.state_dict()) == before


@pytest.mark.parametrize(
    "name,hp",
    [
        ("Adam", dict(lr=0.01, amsgrad=True)),
        ("SGD", dict(lr=0.1, momentum=0.9)),
        ("NAdam", dict(lr=0.01)),
        ("RMSprop", dict(momentum=0.5, centered=True)),
        ("Adagrad", dict(lr=0.1)),
    ],
)
def test_loads_a_torch_checkpoint(name, hp):
    """torch's state_dict (tensors, float steps) loads directly and training continues alike."""
    torch = pytest.importorskip("torch")
    params, grad_seq = _data(15, np.float64)
    tp = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, name)(tp, **hp)
    for grads in grad_seq[:N]:
        for t, g in zip(tp, grads):
            t.grad = torch.tensor(g)
        topt.step()
    ours = [t.detach().numpy().copy() for t in tp]
    opt = getattr(O, name)(ours)
    opt.load_state_dict(topt.state_dict())
    for grads in grad_seq[N:]:
        for t, g in zip(tp, grads):
            t.grad = torch.tensor(g)
        topt.step()
        opt.step(grads)
    rtol = 1e-7 if name == "NAdam" else 1e-10  # torch's mu_product is float32
    for a, t in zip(ours, tp):
        np.testing.assert_allclose(a, t.detach().numpy(), rtol=rtol, atol=1e-12)


# ---- thread-count independence ---------------------------------------------------------------


def _run_everything(seed=5, cases=ROUND_TRIP):
    """Digest of several steps of each optimizer plus the reductions (large enough for many chunks)."""
    import hashlib

    from optkern.clip import clip_grad_norm_

    rng = np.random.default_rng(seed)
    shapes = [(200_001,), (70_000,), (5,)]
    h = hashlib.sha256()
    for name, hp in cases:
        params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        opt = getattr(O, name)(params, **hp)
        for _ in range(3):
            opt.step([rng.standard_normal(s).astype(np.float32) for s in shapes])
        for p in params:
            h.update(p.tobytes())
    grads = [rng.standard_normal(s) for s in shapes]
    for p in (1.0, 2.0, 3.0, float("inf")):
        h.update(np.float64(clip_grad_norm_([g.copy() for g in grads], 1.0, p)).tobytes())
    return h.hexdigest()


def test_bitwise_same_for_1_2_3_threads_in_process():
    try:
        digests = set()
        for n in (1, 2, 3):
            B.cpu.set_num_threads(n)
            digests.add(_run_everything())
    finally:
        B.cpu.set_num_threads(os.cpu_count() or 1)
    assert len(digests) == 1


def test_bitwise_same_with_omp_num_threads_1_and_2():
    script = textwrap.dedent("""
        import sys
        sys.path[:0] = sys.argv[1:3]
        import test_optim_state as T
        print(T._run_everything(cases=[c for c in T.ROUND_TRIP if c[0] in ("AdagradNorm", "Adam")]))
    """)
    here = os.path.dirname(__file__)
    # the optkern under test (installed or in-tree), not necessarily ../src
    src = os.path.dirname(os.path.dirname(B.__file__))
    out = []
    for n in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": n}
        r = subprocess.run(
            [sys.executable, "-c", script, here, src], env=env, capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        out.append(r.stdout.strip())
    assert out[0] == out[1] and len(out[0]) == 64
