"""optkern.distributed with the closure optimizers (L-BFGS, Newton-CG, SAM) and their failures.

``DistributedOptimizer(optim.LBFGS(...))`` (or NewtonCG, SAM) constructed, but its ``step(grads)``
averaged the gradients in place and then handed them to an optimizer whose step takes a closure:
TypeError "closure: expected a callable" after the user's gradients were overwritten; and
``step(closure)`` was refused as "grads: expected an array". There was no way to step them. Now
``step(closure)`` averages every result of the closure over the ranks (loss and gradients, reduced
as the gradients are: mean, sum or ``grad_weight``-weighted sum, through the fusion buffers) before
the optimizer sees it, so every rank takes the same line-search / CG / ascent decisions: the params
are the same bits on every rank and match one process on the concatenated data to rounding.
``step(grads)`` on them raises TypeError naming ``closure`` before anything is written. A closure
that fails on one rank (NaN / wrong shape / wrong dtype gradient, its own exception, a Ctrl-C)
raises on every rank, the params put back on every rank.

``ShardedOptimizer(optim.LBFGS / NewtonCG / SAM, ...)`` refused with messages naming ``params``
("doesn't support per-parameter options", "params[0]: expected a float32 or float64 array") or a
bare Python "got multiple values for argument 'base'": now a TypeError naming ``optimizer_class``
(ZeRO-1 cannot shard an optimizer that steps from a closure over all the params).

The tests launch this file under ``mpiexec -n N python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 120  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
def test_closure_optimizers_step_as_one_process_on_the_concatenated_data():
    run_case(__file__, "closure_match", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_closure_optimizers_step_as_one_process_on_four_ranks():
    run_case(__file__, "closure_match", 4, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_closure_optimizer_refuses_grads_before_writing_them():
    run_case(__file__, "grads_refused", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_sharded_refuses_closure_optimizers_naming_optimizer_class():
    run_case(__file__, "sharded_refused", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_closure_failing_on_one_rank_raises_on_every_rank_params_unchanged():
    run_case(__file__, "closure_fails", 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------

N, D = 23, 6
COUNTS = {1: [N], 2: [15, 8], 4: [9, 0, 8, 6]}  # uneven shards, one rank without rows at 4


def _problem():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, D))
    y = X @ rng.standard_normal(D) + 0.1 * rng.standard_normal(N)
    return X, y


def _rows(rank: int, size: int) -> slice:
    c = COUNTS[size]
    return slice(sum(c[:rank]), sum(c[: rank + 1]))


def _closure(p, X, y):
    """The mean least-squares loss and gradient over the rows of X (zeros for no rows)."""

    def closure():
        if X.shape[0] == 0:
            return 0.0, [np.zeros_like(p)]
        r = X @ p - y
        return 0.5 * float(r @ r) / X.shape[0], [X.T @ r / X.shape[0]]

    return closure


def _curvature(X):
    from optkern import hessian

    H = X.T @ X / X.shape[0] if X.shape[0] else np.zeros((D, D))
    return hessian.as_operator(H)


def _make(kind, p, X, comm=None, weight=1.0):
    from optkern import optim
    from optkern.distributed import distributed

    if kind == "lbfgs":
        return optim.LBFGS([p], lr=1, max_iter=5, history_size=3)
    if kind == "lbfgs-wolfe":
        return optim.LBFGS([p], lr=1, max_iter=6, line_search_fn="strong_wolfe")
    if kind == "newton":
        op = _curvature(X) if comm is None else distributed(_curvature(X), comm, weight)
        return optim.NewtonCG([p], op, damping=0.1, max_cg_iter=4)
    return optim.SAM(optim.SGD([p], lr=0.1, momentum=0.9), rho=0.05)


KINDS = ("lbfgs", "lbfgs-wolfe", "newton", "sam")


def case_closure_match(comm) -> None:
    from optkern.distributed import DistributedOptimizer, global_share

    X, y = _problem()
    sl = _rows(comm.rank, comm.size)
    Xr, yr = X[sl], y[sl]
    w = global_share(Xr.shape[0], comm)
    for kind in KINDS:
        p, p1 = np.zeros(D), np.zeros(D)
        opt = DistributedOptimizer(_make(kind, p, Xr, comm, w), comm, grad_weight=w)
        one = _make(kind, p1, X)
        for s in range(3):
            loss = opt.step(_closure(p, Xr, yr))
            loss1 = one.step(_closure(p1, X, y))
            np.testing.assert_allclose(p, p1, rtol=1e-9, atol=1e-12, err_msg=f"{kind} step {s}")
            np.testing.assert_allclose(float(loss), float(loss1), rtol=1e-9, err_msg=f"{kind} step {s}")
            every = comm.mpi.allgather(p.copy())
            assert all(np.array_equal(e.view(np.uint64), p.view(np.uint64)) for e in every), (kind, s)
        assert not np.array_equal(p, np.zeros(D)), kind


def case_grads_refused(comm) -> None:
    from optkern.distributed import DistributedOptimizer

    X, _ = _problem()
    for kind in KINDS:
        p = np.zeros(D)
        opt = DistributedOptimizer(_make(kind, p, X[:0] if kind == "newton" else X), comm)
        g = [np.full(D, comm.rank + 1.0)]
        with raises(TypeError, "closure: "):
            opt.step(g)
        assert np.array_equal(g[0], np.full(D, comm.rank + 1.0)), (kind, "the grads were written")
        assert np.array_equal(p, np.zeros(D)), kind


def case_sharded_refused(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    for cls, hyper in ((optim.LBFGS, {}), (optim.NewtonCG, {"curvature": _curvature(_problem()[0])}), (optim.SAM, {})):
        with raises(TypeError, "optimizer_class: "):
            ShardedOptimizer(cls, [np.zeros(D)], comm, **hyper)


def case_closure_fails(comm) -> None:
    from optkern.distributed import DistributedOptimizer

    X, y = _problem()
    sl = _rows(comm.rank, comm.size)
    Xr, yr = X[sl], y[sl]

    def bad(p, how, at_call):
        good, calls = _closure(p, Xr, yr), [0]

        def closure():
            calls[0] += 1
            loss, g = good()
            if comm.rank != 1 or calls[0] != at_call:
                return loss, g
            if how == "nan":
                g[0][2] = np.nan
            elif how == "shape":
                g = [g[0][:-1]]
            elif how == "dtype":
                g = [g[0].astype(np.float32)]
            elif how == "raise":
                raise OSError("disk gone")
            elif how == "interrupt":
                raise KeyboardInterrupt
            return loss, g

        return closure

    for kind in KINDS:
        for how in ("nan", "shape", "dtype", "raise", "interrupt"):
            for at_call in (1, 2):
                p = np.zeros(D)
                opt = DistributedOptimizer(_make(kind, p, Xr, comm, 1.0), comm)
                opt.step(_closure(p, Xr, yr))  # one good step first: the state and params move
                before = p.copy()
                raised = True
                try:
                    opt.step(bad(p, how, at_call))
                    raised = False
                except KeyboardInterrupt:
                    assert comm.rank == 1 and how == "interrupt"
                except (TypeError, ValueError, RuntimeError, OSError) as e:
                    assert how != "interrupt" or comm.rank != 1, (kind, how, e)
                # (a call the step never makes -- Newton-CG reuses the trial point's result -- or a
                # NaN gradient it only keeps: no error, but on every rank alike)
                assert comm.mpi.allgather(raised) == [raised] * comm.size, (kind, how, at_call)
                assert raised or how == "nan" or kind == "newton", (kind, how, at_call, "no error")
                every = comm.mpi.allgather(p.copy())
                assert all(np.array_equal(e.view(np.uint64), p.view(np.uint64)) for e in every), (kind, how, at_call)
                if raised:
                    assert np.array_equal(p, before), (kind, how, at_call, "params moved")
                if not np.isfinite(p).all():  # (SAM's base stepped with the NaN ascent gradient, alike)
                    continue
                opt.step(_closure(p, Xr, yr))  # and the ranks step on together
                every = comm.mpi.allgather(p.copy())
                assert all(np.array_equal(e.view(np.uint64), p.view(np.uint64)) for e in every), (kind, how, at_call)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
