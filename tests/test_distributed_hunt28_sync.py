"""Ranks that disagree, found by a hunt at 2 ranks: each raised on one rank while the others
waited in a collective forever (or, with ``python -m mpi4py``, aborted the job), or went on apart.

- ``DistributedOptimizer.synchronize`` / ``ShardedOptimizer.synchronize`` called alone (no step)
  with a gradient refused on one rank only (another shape or dtype, None, read-only, overlapping,
  a ``grad_weight`` beyond the gradients' dtype there): that rank raised, the others sat in the
  buckets' allreduce / the reduce-scatter. (The step path agreed on its checks already.)
- Construction arguments refused on one rank only (``grad_weight``, ``bucket_mb``, ``op``, a
  non-array in ``check_same_params``, a read-only array or bad ``root`` in ``broadcast_params``,
  ``global_share``'s ``local_rows``, ``distributed``'s ``weight`` / ``op``,
  ``consolidate_state_dict``'s ``to``): the others waited in the set-up's allgather.
- A distributed curvature product refused on one rank (its operator's product not finite, or an
  error in the user's function there): the others waited in the ordered sum.
- ``load_state_dict`` refused on one rank only: the other ranks had loaded, so the replicas (or
  the ZeRO-1 shards) stepped on from two different states; data-parallel ranks loading different
  (valid) checkpoints stepped apart silently.
- A step inside ``skip_synchronize()`` on some ranks only: the others averaged the gradients in
  a collective the skipping ranks never entered.
- ``grad_weight`` set on some ranks only (or ``op`` differing): the same collective ran, a mean on
  some ranks and a (weighted) sum on others, each rank silently stepping with another "average".

Each agreement now rides in a collective the call makes anyway or in one small allreduce: every
rank raises (the refusing rank its own error, the others the same type naming it and the rank),
nothing is written, and the next call works. Each test launches this file under ``mpiexec -n 2
python -m mpi4py`` with one case (the functions below ``# ---- cases``), which prints ``rank R:
CASE ok`` on every rank; a hang is a failure (the launch's timeout).
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes seconds)


def _run(case: str) -> None:
    run_case(__file__, case, 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_data_parallel_synchronize_refused_on_one_rank_raises_on_every_rank():
    _run("sync_dp")


@pytest.mark.spawns
def test_zero_synchronize_refused_on_one_rank_raises_on_every_rank():
    _run("sync_zero")


@pytest.mark.spawns
def test_set_up_arguments_refused_on_one_rank_raise_on_every_rank():
    _run("setup")


@pytest.mark.spawns
def test_a_curvature_product_failing_on_one_rank_raises_on_every_rank():
    _run("curvature")


@pytest.mark.spawns
def test_data_parallel_load_refused_or_different_on_one_rank_loads_nowhere():
    _run("load_dp")


@pytest.mark.spawns
def test_zero_load_refused_on_one_rank_loads_nowhere():
    _run("load_zero")


@pytest.mark.spawns
def test_a_step_inside_skip_synchronize_on_one_rank_only_raises_on_every_rank():
    _run("skip_one_rank")


@pytest.mark.spawns
def test_a_mean_on_one_rank_and_a_sum_or_weighted_sum_on_another_raise_on_every_rank():
    _run("mode_one_rank")


# ---- cases (run under mpiexec) ------------------------------------------------------------------

BAD = 1  # the rank that disagrees


def _params():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(5), rng.standard_normal((2, 3)), rng.standard_normal(4)]


def _grads(k: int, rank: int) -> list:
    return [np.full(5, 0.5 + k + rank), np.full((2, 3), -1.0 + k * rank), np.full(4, 0.25 * k - rank)]


def _bad_grads(r: int) -> list:
    """(grads, exception, text of the refusing rank): each refused on rank BAD only."""
    out = []
    for kind in ("shape", "dtype", "none", "readonly", "overlap"):
        g = _grads(1, r)
        if r == BAD:
            if kind == "shape":
                g[2] = np.ones(3)
            elif kind == "dtype":
                g[1] = g[1].astype(np.float32)
            elif kind == "none":
                g[1] = None
            elif kind == "readonly":
                g[0].flags.writeable = False
            else:
                g[2] = g[0][:4]  # (two gradients in one memory: summed twice)
        out.append((kind, g))
    return out


def _check_refused(comm, call, g, kind, texts) -> None:
    exc, text = texts[kind]
    before = [None if a is None else a.copy() for a in g]
    with _raises(exc, text if comm.rank == BAD else "(on rank 1)"):
        call(g)
    for a, b in zip(g, before):
        assert a is None or a.tobytes() == b.tobytes(), f"{kind}: a refused synchronize wrote a gradient"


_DP_TEXTS = {
    "shape": (ValueError, "grads[2]: expected shape (4,), got (3,)"),
    "dtype": (TypeError, "grads[1]"),
    "none": (TypeError, "grads[1]"),
    "readonly": (ValueError, "grads[0]: array is read-only"),
    "overlap": (ValueError, "grads[2]"),
}


def _mean(k: int) -> list:
    return [(a + b) / 2 for a, b in zip(_grads(k, 0), _grads(k, 1))]


def case_sync_dp(comm) -> None:
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    r = comm.rank
    for kw in ({}, {"direct_kb": 0.01}):  # packed buckets, and every gradient reduced in place
        p = _params()
        d = DistributedOptimizer(optim.SGD(p, lr=0.1), comm, **kw)
        for kind, g in _bad_grads(r):
            _check_refused(comm, d.synchronize, g, kind, _DP_TEXTS)
        # a grad_weight beyond the gradients' dtype on one rank (each rank its own weight)
        q = [a.astype(np.float32) for a in p]
        d32 = DistributedOptimizer(optim.SGD(q, lr=0.1), comm, grad_weight=0.5, **kw)
        d32.grad_weight = 1e300 if r == BAD else 0.5
        g32 = [a.astype(np.float32) for a in _grads(1, r)]
        text = "grad_weight: 1e+300 is not finite in the gradients' dtype float32"
        with _raises(ValueError, text if r == BAD else "(on rank 1)"):
            d32.synchronize(g32)
        # and the next synchronize averages, on every rank
        g = _grads(2, r)
        d.synchronize(g)
        for a, b in zip(g, _mean(2)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)


def case_sync_zero(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    r = comm.rank
    texts = dict(_DP_TEXTS, readonly=None, overlap=None)  # (ZeRO copies the gradients: both fine)
    z = ShardedOptimizer(optim.SGD, _params(), comm, lr=0.1)
    for kind, g in _bad_grads(r):
        if texts[kind] is not None:
            _check_refused(comm, z.synchronize, g, kind, texts)
    z32 = ShardedOptimizer(optim.SGD, [a.astype(np.float32) for a in _params()], comm, lr=0.1, grad_weight=0.5)
    z32.grad_weight = 1e300 if r == BAD else 0.5
    text = "grad_weight: 1e+300 is not finite in the gradients' dtype float32"
    with _raises(ValueError, text if r == BAD else "(on rank 1)"):
        z32.synchronize([a.astype(np.float32) for a in _grads(1, r)])
    shard = z.synchronize(_grads(2, r))  # this rank's slice of the mean
    flat = np.concatenate([a.reshape(-1) for a in _mean(2)])
    np.testing.assert_allclose(np.concatenate(shard), flat[z.lo : z.hi], rtol=0, atol=1e-15)


def case_setup(comm) -> None:
    from optkern import optim
    from optkern.distributed import (
        DistributedOptimizer,
        ShardedOptimizer,
        broadcast_params,
        check_same_params,
        distributed,
        global_share,
    )

    r = comm.rank

    def one_rank(exc, text, fn) -> None:
        with _raises(exc, text if r == BAD else "(on rank 1)"):
            fn()

    p = _params()
    bad = r == BAD
    one_rank(
        ValueError,
        "grad_weight: must be finite",
        lambda: DistributedOptimizer(optim.SGD(p, lr=0.1), comm, grad_weight=float("nan") if bad else 0.5),
    )
    one_rank(
        ValueError, "bucket_mb", lambda: DistributedOptimizer(optim.SGD(p, lr=0.1), comm, bucket_mb=0 if bad else 1)
    )
    one_rank(
        TypeError,
        "optimizer: expected an optkern optimizer",
        lambda: DistributedOptimizer(object() if bad else optim.SGD(p, lr=0.1), comm),
    )
    one_rank(
        ValueError,
        "grad_weight: must be finite",
        lambda: ShardedOptimizer(optim.SGD, p, comm, grad_weight=-1.0 if bad else 0.5, lr=0.1),
    )
    one_rank(
        ValueError,
        "op: expected 'mean' or 'sum'",
        lambda: ShardedOptimizer(optim.SGD, p, comm, op="max" if bad else "mean", lr=0.1),
    )
    one_rank(
        TypeError,
        "params[1]: expected a numpy or cupy array",
        lambda: check_same_params([p[0], "x" if bad else p[1]], comm),
    )
    q = [a.copy() for a in p]
    q[0].flags.writeable = not bad
    one_rank(ValueError, "arrays[0]: array is read-only", lambda: broadcast_params(q, comm))
    one_rank(ValueError, "root: must be < the world size 2", lambda: broadcast_params(p, comm, root=5 if bad else 0))
    one_rank(ValueError, "local_rows", lambda: global_share(-1 if bad else 3, comm))
    eye = np.eye(3)
    one_rank(ValueError, "weight: must be finite", lambda: distributed(eye, comm, weight=float("nan") if bad else 0.5))
    one_rank(TypeError, "", lambda: distributed("not an operator" if bad else eye, comm))
    z = ShardedOptimizer(optim.SGD, p, comm, lr=0.1)
    one_rank(ValueError, "to: must be < the world size 2", lambda: z.consolidate_state_dict(to=7 if bad else 0))
    # and the agreed calls go on: a broadcast, a share
    q = [a + r for a in p]
    broadcast_params(q, comm)
    for a, b in zip(q, p):
        np.testing.assert_array_equal(a, b)
    assert global_share(3 if r == 0 else 1, comm) == (0.75 if r == 0 else 0.25)


def case_curvature(comm) -> None:
    from optkern import hessian
    from optkern.distributed import distributed

    r = comm.rank
    A = [np.diag([1.0, 2.0, 3.0]), np.diag([3.0, 2.0, 1.0])]
    state = {"fail": None}

    def hvp(v):
        if r == BAD and state["fail"] == "nan":
            return np.full(3, np.nan)
        if r == BAD and state["fail"] == "raise":
            raise KeyError("my data")
        return A[r] @ v

    def hmm(V):
        return np.stack([hvp(V[:, j]) for j in range(V.shape[1])], axis=1)

    H = distributed(hessian.from_hvp(hvp, 3, matmat=hmm), comm, weight=0.5)
    v, V = np.array([1.0, -1.0, 2.0]), np.arange(6.0).reshape(3, 2)
    want = 0.5 * (A[0] + A[1])
    for fail, exc, text in (("nan", ValueError, "NaN or Inf entries"), ("raise", KeyError, "my data")):
        state["fail"] = fail
        for call in (lambda: H.matvec(v), lambda: H.matmat(V)):
            other = RuntimeError if exc is KeyError else exc
            with _raises(exc if r == BAD else other, text if r == BAD else "(on rank 1)"):
                call()
    state["fail"] = None
    np.testing.assert_allclose(H.matvec(v), want @ v, rtol=1e-15)
    np.testing.assert_allclose(H.matmat(V), want @ V, rtol=1e-15)


def _adam_dp(comm):
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    p = _params()
    return p, DistributedOptimizer(optim.Adam(p, lr=0.01), comm)


def _state_bytes(sd) -> list:
    return [(i, k, np.asarray(v).tobytes()) for i, e in sorted(sd["state"].items()) for k, v in sorted(e.items())]


def case_load_dp(comm) -> None:
    r = comm.rank
    p, d = _adam_dp(comm)
    d.step(_grads(0, r))
    ckpt1 = copy.deepcopy(d.state_dict())
    d.step(_grads(1, r))
    ckpt2 = copy.deepcopy(d.state_dict())
    d.step(_grads(2, r))
    now = _state_bytes(d.state_dict())
    # refused on one rank (an array of another shape): nowhere loaded
    bad = copy.deepcopy(ckpt1)
    if r == BAD:
        bad["state"][2]["exp_avg"] = np.zeros(3)
    with _raises(ValueError, "exp_avg" if r == BAD else "(on rank 1)"):
        d.load_state_dict(bad)
    assert _state_bytes(d.state_dict()) == now, "a load refused on one rank changed this rank's state"
    # valid, but another checkpoint on one rank: the replicas would step apart
    with _raises(ValueError, "state_dict: rank 1 loaded another state than rank 0"):
        d.load_state_dict(ckpt2 if r == BAD else ckpt1)
    assert _state_bytes(d.state_dict()) == now, "a load of different checkpoints changed this rank's state"
    # the same checkpoint everywhere: loaded, and the replicas step alike
    d.load_state_dict(ckpt1)
    assert _state_bytes(d.state_dict()) == _state_bytes(ckpt1)
    d.step(_grads(3, r))
    got = comm.allgather_object([a.tobytes() for a in p])
    assert got[0] == got[1], "the replicas differ after loading the same checkpoint"


def case_load_zero(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    r = comm.rank
    z = ShardedOptimizer(optim.Adam, _params(), comm, lr=0.01)
    z.step(_grads(0, r))
    full1, shard1 = z.consolidate_state_dict(to=None), copy.deepcopy(z.state_dict())
    z.step(_grads(1, r))
    now = _state_bytes(z.state_dict()["optimizer"])
    bad = copy.deepcopy(full1)
    if r == BAD:
        bad["state"][1]["exp_avg_sq"] = -np.ones((2, 3))
    with _raises(ValueError, "exp_avg_sq" if r == BAD else "(on rank 1)"):
        z.load_state_dict(bad)
    assert _state_bytes(z.state_dict()["optimizer"]) == now, "a load refused on one rank changed this rank's shard"
    # the other rank's shard, on one rank
    theirs = comm.allgather_object(shard1)[0]
    with _raises(ValueError, "state_dict['zero']['rank']" if r == BAD else "(on rank 1)"):
        z.load_state_dict(theirs if r == BAD else shard1)
    assert _state_bytes(z.state_dict()["optimizer"]) == now, "a shard refused on one rank changed this rank's shard"
    # valid, but another consolidated checkpoint on one rank: each rank's slice of another state
    full2 = z.consolidate_state_dict(to=None)
    with _raises(ValueError, "state_dict: rank 1 loaded another state than rank 0"):
        z.load_state_dict(full2 if r == BAD else full1)
    assert _state_bytes(z.state_dict()["optimizer"]) == now, "a load of different checkpoints changed this rank's shard"
    with _raises(TypeError, "state_dict: expected a dict" if r == BAD else "(on rank 1)"):
        z.load_state_dict(None if r == BAD else full1)
    assert _state_bytes(z.state_dict()["optimizer"]) == now
    z.load_state_dict(full1)
    assert _state_bytes(z.state_dict()["optimizer"]) == _state_bytes(shard1["optimizer"])


def case_skip_one_rank(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    r = comm.rank
    text = "step: inside skip_synchronize() on rank 0, outside it on rank 1"
    p, d = _adam_dp(comm)
    q = _params()
    z = ShardedOptimizer(optim.Adam, q, comm, lr=0.01)
    for opt, params in ((d, p), (z, q)):
        g = _grads(0, r)
        opt.synchronize(g)
        before = [a.copy() for a in params]
        with _raises(RuntimeError, text):
            if r == 0:
                with opt.skip_synchronize():
                    opt.step(g)
            else:
                opt.step(g)
        for a, b in zip(params, before):
            assert a.tobytes() == b.tobytes(), "a refused step wrote a parameter"
        with opt.skip_synchronize():  # (the synchronize above still holds)
            opt.step(g)
        opt.step(_grads(1, r))
        got = comm.allgather_object([a.tobytes() for a in params])
        assert got[0] == got[1], "the ranks' parameters differ"


def case_mode_one_rank(comm) -> None:
    from optkern import optim
    from optkern.distributed import DistributedOptimizer, ShardedOptimizer

    r = comm.rank
    weighted, mean, total = (
        "grad_weight set (a weighted sum)",
        "op='mean' (grad_weight None)",
        "op='sum' (grad_weight None)",
    )
    for make in (
        lambda p, **kw: DistributedOptimizer(optim.SGD(p, lr=0.1), comm, **kw),
        lambda p, **kw: ShardedOptimizer(optim.SGD, p, comm, lr=0.1, **kw),
    ):
        p = _params()
        before = [a.copy() for a in p]
        for kw, theirs in (({"grad_weight": 0.5}, weighted), ({"op": "sum"}, total)):
            opt = make(p, **(kw if r == BAD else {}))
            for call, where in ((opt.synchronize, "synchronize"), (opt.step, "step")):
                g = _grads(1, r)
                gb = [a.copy() for a in g]
                with _raises(
                    ValueError,
                    f"{where}: the ranks reduce the gradients differently: {theirs} on rank 1, {mean} on rank 0",
                ):
                    call(g)
                for a, b in zip(g + p, gb + before):
                    assert a.tobytes() == b.tobytes(), "a refused call wrote an array"
            opt.grad_weight, opt.op = 0.5, "mean"  # (alike: the weighted sum of every rank)
            opt.step(_grads(1, r))
            got = comm.allgather_object([a.tobytes() for a in p])
            assert got[0] == got[1], "the ranks' parameters differ"
            before = [a.copy() for a in p]


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
