"""Bad input to optkern.distributed raises TypeError/ValueError naming the argument, before anything
is written (run by tests/test_bad_input_optim_dist.py under ``mpiexec -n 1`` and ``-n 2``).

Every rank makes the same calls with the same bad input, so every rank raises before any
collective and none waits alone; a failing check aborts the job. Prints
``bad_input: N checks passed on W``.
"""

from __future__ import annotations

import pickle
import re

import numpy as np

from optkern import optim as O
from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer


def raises(exc, pattern: str, fn) -> None:
    try:
        fn()
    except exc as e:
        assert re.search(pattern, str(e)), f"{type(e).__name__}: {e!r} does not match {pattern!r}"
        return
    except Exception as e:
        raise AssertionError(f"expected {exc.__name__} matching {pattern!r}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"expected {exc.__name__} matching {pattern!r}, nothing raised")


def snap(*xs) -> bytes:
    return pickle.dumps([[np.array(a, copy=True) for a in x] if isinstance(x, list) else x for x in xs])


def ones(n, v=1.0):
    return np.full(n, v, np.float32)


def do_refuses_before_reducing(comm):
    """DistributedOptimizer.step: the wrapped step's checks come before the scaled reduction."""
    p = [ones(3), ones(2)]
    d = DistributedOptimizer(O.SGD(p, lr=0.1), comm, grad_weight=0.5)
    before = snap(p)
    raises(ValueError, r"^grads\[0\] shares memory with params\[0\]", lambda: d.step(p))  # grads = params
    assert snap(p) == before, "params scaled by a refused step"
    g = [ones(3), ones(2)]
    d.param_groups[0]["lr"] = -1
    raises(ValueError, r"^param_groups\[0\]\['lr'\]", lambda: d.step(g))
    assert snap(g, p) == snap([ones(3), ones(2)], p), "grads scaled by a refused step"
    d.param_groups[0]["lr"] = 0.1
    d.step(g)  # the weighted sum over the ranks: 0.5 * world
    want = 1 - 0.1 * 0.5 * comm.size
    assert all(np.allclose(a, want) for a in p), p
    # a group edited in place: refused by the wrapped optimizer's check, before the reduction
    d.param_groups[0]["params"].append(ones(4))
    g2, before = [ones(3), ones(2)], snap(p)
    raises(ValueError, r"^param_groups\[0\]\['params'\]", lambda: d.step(g2))
    assert snap(g2, p) == snap([ones(3), ones(2)], p)
    d.param_groups[0]["params"].pop()


def do_sizes(comm):
    opt = O.SGD([ones(3)], lr=0.1)
    raises(ValueError, r"^bucket_mb: ", lambda: DistributedOptimizer(opt, comm, bucket_mb=float("inf")))
    raises(ValueError, r"^bucket_mb: ", lambda: DistributedOptimizer(opt, comm, bucket_mb=10**400))
    raises(ValueError, r"^bucket_mb: ", lambda: DistributedOptimizer(opt, comm, bucket_mb="1"))  # (as always)
    raises(ValueError, r"^grad_weight: ", lambda: DistributedOptimizer(opt, comm, grad_weight=10**400))
    raises(ValueError, r"^direct_kb: ", lambda: DistributedOptimizer(opt, comm, direct_kb=float("nan")))
    DistributedOptimizer(opt, comm, direct_kb=float("inf"))  # documented: pack every gradient


def sharded_refuses_aliasing_params(comm):
    p = ones(3, 0.0)
    raises(ValueError, r"^params\[1\]: ", lambda: ShardedOptimizer(O.SGD, [p, p], comm, lr=1.0))
    base = ones(5, 0.0)
    raises(ValueError, r"^params\[1\] shares memory", lambda: ShardedOptimizer(O.SGD, [base[:3], base[2:]], comm, lr=1))
    groups = [{"params": [base[2:]]}, {"params": [ones(2), base[:3]]}]
    raises(ValueError, r"^params\[2\] shares memory", lambda: ShardedOptimizer(O.SGD, groups, comm, lr=1))
    assert (base == 0).all() and (p == 0).all()
    raises(TypeError, r"^params: ", lambda: ShardedOptimizer(O.Adam, None, comm))
    # disjoint views of one buffer are fine
    s = ShardedOptimizer(O.SGD, [base[:2], base[2:]], comm, lr=1.0)
    s.step([ones(2), ones(3, 5.0)])
    assert np.allclose(base, [-1, -1, -5, -5, -5]), base


def sharded_adagrad_norm_hyper(comm):
    ps = [ones(3), ones(2)]
    s = ShardedOptimizer(O.AdagradNorm, ps, comm, lr=0.1)
    s.step([ones(3), ones(2)])
    g = [ones(3), ones(2)]
    before = snap(ps, s.params, g) + pickle.dumps(s.state_dict()["optimizer"]["state"])
    s.param_groups[0]["weight_decay"] = "x"
    raises(TypeError, r"^param_groups\[0\]\['weight_decay'\]", lambda: s.step(g))
    s.param_groups[0]["weight_decay"] = 0.0
    del s.param_groups[0]["maximize"]
    raises(ValueError, r"^param_groups\[0\]: missing 'maximize'", lambda: s.step(g))
    s.param_groups[0]["maximize"] = None
    raises(TypeError, r"^param_groups\[0\]\['maximize'\]", lambda: s.step(g))
    s.param_groups[0]["lr"] = -1
    s.param_groups[0]["maximize"] = False
    raises(ValueError, r"^param_groups\[0\]\['lr'\]", lambda: s.step(g))
    assert snap(ps, s.params, g) + pickle.dumps(s.state_dict()["optimizer"]["state"]) == before
    s.param_groups[0]["lr"] = 0.1
    s.step(g)  # still steps
    assert all((a < 1).all() for a in ps)


def sharded_load_state_dict(comm):
    ps = [ones(3)]
    s = ShardedOptimizer(O.Adam, ps, comm, lr=0.1)
    s.step([ones(3)])
    before = pickle.dumps(s.state_dict())
    raises(TypeError, r"^state_dict\['zero'\]: ", lambda: s.load_state_dict({"zero": 1}))
    raises(ValueError, r"^state_dict: .*'optimizer'", lambda: s.load_state_dict({"zero": s.state_dict()["zero"]}))
    assert pickle.dumps(s.state_dict()) == before
    s.load_state_dict(s.state_dict())


def allreduce_ordered_flag(comm):
    x = np.arange(4, dtype=np.float32)
    raises(TypeError, r"^ordered: ", lambda: comm.allreduce(x, ordered="x"))
    raises(TypeError, r"^ordered: ", lambda: comm.reduce_scatter(np.zeros(2 * comm.size, np.float32), ordered=1))
    assert (x == np.arange(4)).all()
    comm.allreduce(x, ordered=np.bool_(True))


CHECKS = [
    do_refuses_before_reducing,
    do_sizes,
    sharded_refuses_aliasing_params,
    sharded_adagrad_norm_hyper,
    sharded_load_state_dict,
    allreduce_ordered_flag,
]


def main():
    comm = Communicator(backend="mpi")
    for check in CHECKS:
        check(comm)
    if comm.rank == 0:
        print(f"bad_input: {len(CHECKS)} checks passed on {comm.size}", flush=True)


if __name__ == "__main__":
    main()
