"""ZeRO-1 checkpoints across world sizes: written by the 2-rank run, continued on 4 and on 1 rank.

Files go through ``optkern.save`` / ``optkern.load`` (atomic, checksummed, no pickle): the
consolidated state on rank 0, and each rank's own shard.

All rows sit on rank 0 (the others pass zero gradients with weight 0), so every reduction is
exact and the re-sharded continuation must match the unsharded run bit for bit.
"""

from __future__ import annotations

import os

import numpy as np
from _common import data, flat, grads, init_params, same_on_all_ranks
from _runs import bitwise, close, my_rows, reference_run, zero_run

import optkern
from optkern import optim
from optkern.distributed import Communicator, ShardedOptimizer

CKPT = [
    ("adam-amsgrad", optim.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=1e-3)),
    ("sgd-nesterov-wd", optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("nadam", optim.NAdam, dict(lr=1e-2)),
    ("adagrad-norm", optim.AdagradNorm, dict(lr=0.5, b0=0.1, weight_decay=1e-2)),
]
K, M = 3, 2  # steps before / after the checkpoint


def checkpoint_write(comm):
    """ZeRO-1 at this world size, all rows on rank 0 (exact sums): consolidate after K steps."""
    outdir = checkpoint_write.outdir
    S, X = data(17, np.float64, seed=7)
    counts = [17] + [0] * (comm.size - 1)
    for name, cls, hyper in CKPT:
        ref = reference_run(cls, hyper, np.float64, K + M, S, X)
        params, opt = zero_run(Communicator(comm, ordered=True), cls, hyper, np.float64, K, S, X, counts)
        sd = opt.consolidate_state_dict(to=0)
        own = opt.state_dict()
        if comm.rank != 0:
            assert sd is None
        else:
            optkern.save(os.path.join(outdir, f"ckpt-{name}.npz"), state=sd, params=params, ref=ref)
            # the consolidated checkpoint is an unsharded optimizer's state dict: continue there
            plain = cls(params, **hyper)
            plain.load_state_dict(sd)
            for _ in range(M):
                plain.step(grads(params, S, X))
            check = close if cls is optim.AdagradNorm else (lambda a, b, _r, w: bitwise(a, b, w))
            check(params, ref, 1e-12, f"{name}: consolidated state in an unsharded optimizer")
        # a shard loads back at the same world size, from this rank's own file
        shard = optkern.save(os.path.join(outdir, f"shard-{name}-{comm.rank}-of-{comm.size}.npz"), opt=opt)
        opt2 = ShardedOptimizer(cls, init_params(np.float64), Communicator(comm, ordered=True), **hyper)
        optkern.load(shard, opt=opt2)
        for bad, msg in (
            ({**own, "zero": {**own["zero"], "world": comm.size + 1}}, "'world'"),
            ({"state": {}, "param_groups": []}, "parameter groups"),
            ({"state": {}, "param_groups": [{"params": "01"}]}, "['params']: expected a list of parameter indices"),
            ({"state": [], "param_groups": [{"params": [0]}]}, "state_dict['state']: expected a dict"),
        ):
            try:
                opt2.load_state_dict(bad)
            except (TypeError, ValueError) as e:
                assert msg in str(e), str(e)
            else:
                raise AssertionError(msg)
        a, b = opt.consolidate_state_dict(to=None), opt2.consolidate_state_dict(to=None)
        assert a["state"].keys() == b["state"].keys() and a["state"], name
        for i in a["state"]:
            assert a["state"][i].keys() == b["state"][i].keys(), name
            for key, v in a["state"][i].items():
                bitwise([np.asarray(v)], [np.asarray(b["state"][i][key])], f"{name}: shard reload {key}")


def checkpoint_continue(comm):
    """Load the checkpoint written at another world size here, re-sharded; continue M steps."""
    outdir = checkpoint_continue.outdir
    S, X = data(17, np.float64, seed=7)
    counts = [17] + [0] * (comm.size - 1)
    for name, cls, hyper in CKPT:
        ck = optkern.load(os.path.join(outdir, f"ckpt-{name}.npz"))
        params = [p.copy() for p in ck["params"]]
        opt = ShardedOptimizer(
            cls, params, Communicator(comm, ordered=True), grad_weight=float(comm.rank == 0), **hyper
        )
        opt.load_state_dict(ck["state"])
        for _ in range(M):
            opt.step(grads(params, *(my_rows(comm, counts, S, X))))
        if cls is optim.AdagradNorm:
            close(params, ck["ref"], 1e-12, f"{name}: re-sharded to {comm.size} ranks")
        else:
            bitwise(params, ck["ref"], f"{name}: re-sharded to {comm.size} ranks, continued")
        same_on_all_ranks(comm, flat(params), name)
