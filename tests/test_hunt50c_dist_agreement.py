"""Arguments that differ between the ranks, or are refused on one rank only, raise on every rank.

1. ``Communicator(comm='x')`` (an intercommunicator, any non-communicator) on one rank raised
   there at once, while the ranks given a good communicator waited in their first exchange forever
   (``Communicator()``'s, a wrapper's set-up, a checked collective, an estimator's): the refusing
   rank had no communicator to report into. It now joins the others' header in ``COMM_WORLD``
   (``optkern.distributed.no_comm``): its own TypeError there, the same type naming it elsewhere.
2. The distributed curvature estimators with another ``k``, ``grid``, ``sigma``, ``pad``, ``tol``,
   ``num_probes``, ``seed``, ... on one rank: a different result per rank, no error (``k``,
   ``grid``, ``sigma``, ``pad``), or an error naming no argument ("rank 1 asks for another
   product"). Every estimator's arguments are now compared in one header at its start
   (``hessian._lockstep``): a ValueError naming the argument on every rank.
3. The optimizers' per-rank arguments (lr, weight decay, betas, momentum, eps, amsgrad, maximize,
   params' shapes and dtypes, grads, clip max_norm / norm_type, op, bucket_mb) were already compared
   (tests/test_distributed_dp_hyper.py, test_distributed_zero_hyper.py, test_distributed_clip_agree.py...);
   the wrapped optimizer's state was not: a rank that had stepped before ``DistributedOptimizer(opt)``
   drifted apart from the others with no error. Now compared at construction.

Each MPI test launches this file under ``mpiexec -n 2 python -m mpi4py`` with one case (every rank
prints ``rank R: CASE ok``); a hang is a failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes a few seconds)


def _launch(case: str) -> None:
    pytest.importorskip("mpi4py")
    run_case(__file__, case, 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_bad_comm_on_one_rank_raises_on_every_rank():
    _launch("bad_comm")


def case_bad_comm(comm) -> None:
    """Rank 1 passes no communicator; rank 0 the world, to each entry point that takes one."""
    from mpi4py import MPI

    from optkern import clip_grad_norm_, hessian, optim
    from optkern.distributed import (
        Communicator,
        DistributedOptimizer,
        ShardedOptimizer,
        broadcast_params,
        distributed,
        global_share,
    )

    bad = comm.rank == 1
    mine = "x" if bad else MPI.COMM_WORLD  # (None: clip_grad_norm_ is rank-local)
    own = "comm: expected an mpi4py.MPI.Comm or a Communicator, got str"
    told = own + " (on rank 1"  # (rank 0: rank 1's error, naming that rank)

    def each(fn) -> None:
        with raises(TypeError, own if bad else told):
            fn()

    each(lambda: Communicator(mine, backend="mpi"))
    each(lambda: Communicator(mine, ordered=True))
    each(lambda: DistributedOptimizer(optim.AdamW([np.ones(7)], lr=0.1), mine))
    each(lambda: ShardedOptimizer(optim.SGD, [np.ones(7)], mine, lr=0.1))
    each(lambda: distributed(np.eye(3), mine, 0.5))
    each(lambda: global_share(3, mine))
    each(lambda: broadcast_params([np.ones(3)], mine))
    each(lambda: clip_grad_norm_([np.ones(7)], 1.0, comm=mine))
    # the good rank already holds its objects: its first call's header meets the refusal
    c = Communicator(backend="mpi")
    H = distributed(np.diag(np.arange(1.0, 8.0)), c, 0.5)
    dp = DistributedOptimizer(optim.SGD([np.ones(7)], lr=0.1), c)
    if bad:
        for _ in range(3):
            each(lambda: Communicator(mine))
    else:
        each(lambda: c.allreduce(np.ones(5)))
        each(lambda: hessian.trace(H, num_matvecs=4))
        each(lambda: dp.step([np.ones(7)]))  # (the step's header; nothing written)
        np.testing.assert_array_equal(dp.optimizer.param_groups[0]["params"][0], np.ones(7))
    # every rank refusing: each its own error, at once
    with raises(TypeError, "comm: expected an mpi4py.MPI.Comm or a Communicator, got int"):
        Communicator(3)
    # and the ranks go on together afterwards
    x = np.full(5, comm.rank + 1.0)
    Communicator(backend="mpi").allreduce(x)
    np.testing.assert_array_equal(x, np.full(5, 3.0))


@pytest.mark.spawns
def test_an_estimator_argument_that_differs_between_ranks_is_named_on_every_rank():
    _launch("estimators")


def _named(name: str, mine, theirs, call: str):
    """The error every rank raises where rank 1 passed ``theirs`` and rank 0 ``mine``."""
    return raises(ValueError, f"{name}: {theirs} on rank 1, {mine} on rank 0 (every rank runs {call}()")


def case_estimators(comm) -> None:
    """Rank 1 passes another value of one argument. Silent before (each rank its own result): k,
    grid, sigma, pad, which, eigenvectors' count; named nothing before ("rank 1 asks for another
    product"): num_probes, steps, tol, rtol, seed, method, v0."""
    from optkern import hessian
    from optkern.distributed import distributed

    n = 41
    A = np.diag(np.linspace(1.0, 5.0, n))
    H = distributed(A, comm, 0.5)
    r = comm.rank

    def pick(a, b):
        return a if r == 0 else b

    with _named("k", 2, 3, "top_eigenvalues"):
        hessian.top_eigenvalues(H, k=pick(2, 3))
    with _named("which", "'LA'", "'LM'", "top_eigenvalues"):
        hessian.top_eigenvalues(H, k=2, which=pick("LA", "LM"))
    with _named("tol", 0.001, 1e-08, "top_eigenvalues"):
        hessian.top_eigenvalues(H, k=2, tol=pick(1e-3, 1e-8))
    with _named("grid", 100, 50, "spectral_density"):
        hessian.spectral_density(H, num_probes=2, steps=8, grid=pick(100, 50))
    g1, g2 = np.linspace(0.0, 6.0, 31), np.linspace(0.0, 6.0, 31)
    g2[7] += 1e-9  # (one entry of a grid given as an array)
    with raises(ValueError, "grid: an array of shape (31,), float64 (hash"):
        hessian.spectral_density(H, num_probes=2, steps=8, grid=pick(g1, g2))
    with _named("sigma", 0.1, 0.2, "spectral_density"):
        hessian.spectral_density(H, num_probes=2, steps=8, grid=64, sigma=pick(0.1, 0.2))
    with _named("pad", 0.01, 0.1, "spectral_density"):
        hessian.spectral_density(H, num_probes=2, steps=8, grid=64, pad=pick(0.01, 0.1))
    with _named("num_probes", 2, 3, "spectral_density"):
        hessian.spectral_density(H, num_probes=pick(2, 3), steps=8, grid=64)
    with _named("steps", 8, 9, "lanczos"):
        hessian.lanczos(H, steps=pick(8, 9))
    with _named("seed", 0, 1, "trace"):
        hessian.trace(H, num_matvecs=6, seed=r)
    with _named("method", "'hutchinson'", "'hutch++'", "trace"):
        hessian.trace(H, method=pick("hutchinson", "hutch++"), num_matvecs=12)
    with _named("tol", 0.01, 1e-09, "power_iteration"):
        hessian.power_iteration(H, tol=pick(1e-2, 1e-9))
    with raises(ValueError, "v0: an array of shape (41,), float64 (hash"):
        hessian.power_iteration(H, v0=pick(np.ones(n), np.arange(1.0, n + 1)))
    with _named("rtol", 0.001, 1e-10, "cg"):
        hessian.cg(H, np.ones(n), rtol=pick(1e-3, 1e-10))
    with _named("k", 2, 3, "gradient_concentration"):
        hessian.gradient_concentration(H, np.ones(n), pick(2, 3))
    # a rank refusing its own argument: its error (naming the bad value) on every rank, as before
    with raises(ValueError, "k: must be >= 1, got 0"):
        hessian.top_eigenvalues(H, k=pick(2, 0))
    # what each rank may pass its own: a progress callback (rank 0 reports), a number's type
    seen: list = []
    t = hessian.trace(H, num_matvecs=8, seed=3, progress=pick(lambda *a: seen.append(a), None))
    t2 = hessian.trace(H, num_matvecs=np.int64(8) if r else 8, seed=3)
    got = comm.allgather_object((t.estimate, t2.estimate))
    assert got[0] == got[1] and t.estimate == t2.estimate, got
    assert (len(seen) > 0) == (r == 0), seen
    top = hessian.top_eigenvalues(H, k=2, return_eigenvectors=r == 0)
    np.testing.assert_allclose(top.eigenvalues, [5.0, 4.9], rtol=1e-10)
    assert (top.eigenvectors is not None) == (r == 0)


def test_an_estimators_arguments_as_every_rank_reads_them():
    """Without MPI: the texts compared (equal values alike, arrays by every entry, callables left
    out) and the error naming the first argument that differs."""
    import inspect

    from optkern.distributed.lockstep import ArgumentsApart, _arguments_apart, arguments_fingerprint
    from optkern.hessian._lockstep import arguments

    def est(op, k=1, tol=None, grid=10, v0=None, progress=None, seed=0):
        return None

    sig = inspect.signature(est)
    a = arguments(sig, ("H", 2), {"tol": 0.5, "progress": print}, ("op",))
    b = arguments(sig, ("H", np.int64(2)), {"tol": np.float64(0.5)}, ("op",))
    assert a == b and [k for k, _ in a] == ["k", "tol", "grid", "v0", "seed"], a
    assert arguments_fingerprint(("est()", a)) == arguments_fingerprint(("est()", b))
    v = np.linspace(0.0, 1.0, 101)
    w = v.copy()
    w[50] = np.nextafter(w[50], 2.0)  # (one entry, one ulp)
    x, y = (arguments(sig, ("H",), {"v0": u}, ("op",)) for u in (v, w))
    assert x != y and arguments_fingerprint(("est()", x)) != arguments_fingerprint(("est()", y))
    e = _arguments_apart([("est()", x), ("est()", x), ("est()", y)])
    assert isinstance(e, ArgumentsApart) and str(e).startswith("v0: an array of shape (101,), float64 (hash")
    assert "on rank 2" in str(e)
    assert _arguments_apart([("est()", x), ("est()", x)]) is None
    assert _arguments_apart([("est()", x), None]) is None  # (rank 1 elsewhere: the states name it)
    e = _arguments_apart([("trace()", x), ("lanczos()", x)])
    assert isinstance(e, ArgumentsApart) and "op: rank 1 runs lanczos(), rank 0 trace()" in str(e)
    assert arguments(sig, ("H", 1, 2, 3, 4, 5, 6, 7, 8), {}, ("op",)) == ()  # (unbound: the call's own error)


@pytest.mark.spawns
def test_a_data_parallel_optimizer_refuses_another_state_on_one_rank():
    _launch("dp_state")


def case_dp_state(comm) -> None:
    """Rank 1's Adam stepped once (zero gradients: the params unchanged, the step count 1) before
    it was wrapped: the wrapper took it, and after one step with the same averaged gradient the
    replicas differed (-1.1 on rank 0, -1.0744 on rank 1), no error. Now refused on every rank."""
    from optkern import optim
    from optkern.distributed import DistributedOptimizer

    p = [np.linspace(-1.0, 1.0, 7)]
    opt = optim.Adam(p, lr=0.1)
    if comm.rank == 1:
        opt.step([np.zeros(7)])
    with raises(ValueError, "optimizer: rank 1 holds another state than rank 0"):
        DistributedOptimizer(opt, comm)
    # the same state on every rank (both stepped alike), and a fresh one: taken, the replicas equal
    if comm.rank == 0:
        opt.step([np.zeros(7)])
    for o in (opt, optim.Adam([q.copy() for q in p], lr=0.1)):
        dp = DistributedOptimizer(o, comm)
        dp.step([np.full(7, 0.5 + comm.rank)])
        mine = o.param_groups[0]["params"][0]
        got = comm.allgather_object(mine.tobytes())
        assert got[0] == got[1], "the replicas differ"


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
