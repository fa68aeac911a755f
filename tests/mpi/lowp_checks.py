"""MPI checks of low precision under optkern.distributed: ZeRO-1 with compact states and their
checkpoints; data parallel training of float16 / bfloat16 params with float32 masters."""

from __future__ import annotations

import numpy as np
from _common import data, grads
from _runs import bitwise, zero_run
from checkpoint_checks import K

from optkern import optim
from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer, broadcast_params

try:
    import ml_dtypes

    HALVES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))
except ImportError:  # (the bfloat16 case needs ml_dtypes)
    HALVES = (np.dtype(np.float16),)


def compact_state_checkpoints(comm):
    """ZeRO-1 with 8-bit or bfloat16 moments: a consolidated checkpoint holds the float32 values of
    8-bit moments (bfloat16 ones as they are), each side quantizing them in the params' blocks;
    it loads into an unsharded optimizer of any storage, and back into ZeRO-1 at this world size,
    whose re-quantization of the same slices gives the same codes (consolidating again: the same
    checkpoint, bit for bit). 8-bit moments take at most 30% of the bytes of float32 moments of
    the same slice (whose padding is bounded)."""
    S, X = data(17, np.float32, seed=7)
    counts = [17] + [0] * (comm.size - 1)
    for lp in (dict(state_dtype="int8", block_size=64), dict(state_dtype="bfloat16")):
        hyper = dict(lr=1e-2, **lp)
        params, opt = zero_run(Communicator(comm, ordered=True), optim.Adam, hyper, np.float32, K, S, X, counts)
        if lp["state_dtype"] == "int8":
            # (each param starts at a multiple of the block, the slices are whole blocks: the slice
            # holds up to block - 1 elements of padding per param and per rank, here 6 small params
            # make up ~17% of the elements; 30% of the float32 moments of the same slice)
            assert opt.state_bytes() <= 0.3 * 8 * opt.chunk, (opt.state_bytes(), opt.chunk)
            assert opt.chunk <= -(-(sum(p.size for p in params) + 63 * len(params)) // comm.size) + 63, opt.chunk
        sd = opt.consolidate_state_dict(to=None)
        for i, p in enumerate(params):
            entry = sd["state"][i]
            assert entry["exp_avg"].shape == p.shape, (lp, i)
            assert ("exp_avg_scale" in entry) is False and entry.get("state_dtype", "float32") != "int8", (lp, i)
        for storage in ({}, dict(state_dtype="int8"), dict(state_dtype="bfloat16")):
            plain = optim.Adam([p.copy() for p in params], lr=1e-2, **storage)
            plain.load_state_dict(sd)
            plain.step(grads(params, S, X))
        again = ShardedOptimizer(optim.Adam, [p.copy() for p in params], Communicator(comm, ordered=True), **hyper)
        again.load_state_dict(sd)
        sd2 = again.consolidate_state_dict(to=None)
        for i in sd["state"]:
            for key, v in sd["state"][i].items():
                bitwise([np.asarray(v)], [np.asarray(sd2["state"][i][key])], f"{lp}: re-sharded {key}")


def half_precision_data_parallel(comm):
    """float16 / bfloat16 params with float32 masters, data parallel: params broadcast bit for bit,
    grads averaged (bfloat16 ones in float32, rounded to nearest even once: MPI has no bfloat16),
    every rank's step the one-process step with the averaged grads, bit for bit."""
    for dt in HALVES:
        rng = np.random.default_rng(comm.rank)  # different values on every rank
        params = [rng.standard_normal(n).astype(np.float32).astype(dt) for n in (300, 7, 1)]
        broadcast_params(params, Communicator(comm))
        mine = [p.copy() for p in params]
        opt = DistributedOptimizer(optim.AdamW(params, lr=1e-2, master_weights=True), Communicator(comm))
        one = optim.AdamW(mine, lr=1e-2, master_weights=True)
        for _ in range(2):
            g = [rng.standard_normal(p.size).astype(np.float32).astype(dt) for p in params]
            every = comm.mpi.allgather([x.copy() for x in g])
            opt.step(g)
            one.step([_mean(gs, dt) for gs in zip(*every)])
            for p, q in zip(params, mine):
                bitwise([p.view(np.uint16)], [q.view(np.uint16)], f"{dt.name} data parallel vs one process")
        gathered = comm.mpi.allgather(np.concatenate([p.view(np.uint16) for p in params]))
        assert all(np.array_equal(gathered[0], x) for x in gathered), dt.name


def half_precision_zero(comm):
    """ZeRO-1 over float16 / bfloat16 params with master weights: each rank keeps the float32
    master and moments of its slice only; the steps equal data parallel training bit for bit
    (ordered sums); the consolidated checkpoint continues in one process as data parallel does.
    AdaGrad-Norm's sharded ||g'||^2 is taken over the masters and widened grads (float32), as
    its unsharded master-weights step takes it (summed in another order: close, not bitwise)."""
    for dt in HALVES:
        for cls, hyper in ((optim.AdamW, dict(lr=1e-2)), (optim.AdagradNorm, dict(lr=0.5, b0=0.1, weight_decay=1e-2))):
            rng = np.random.default_rng(0)  # the same params on every rank
            params = [rng.standard_normal(n).astype(np.float32).astype(dt) for n in (300, 7, 1001)]
            zp, dp = [p.copy() for p in params], [p.copy() for p in params]
            z = ShardedOptimizer(cls, zp, Communicator(comm, ordered=True), master_weights=True, **hyper)
            d = DistributedOptimizer(cls(dp, master_weights=True, **hyper), Communicator(comm, ordered=True))
            for s in range(3):
                r = np.random.default_rng(100 * s + comm.rank)
                g = [r.standard_normal(p.size).astype(np.float32).astype(dt) for p in params]
                z.step([x.copy() for x in g])
                d.step([x.copy() for x in g])
            full = z.consolidate_state_dict(to=None)
            masters = [full["state"][i]["master_param"] for i in range(len(params))]
            want = [d.optimizer.state_dict()["state"][i]["master_param"] for i in range(len(params))]
            if cls is optim.AdagradNorm:
                for a, b in zip(masters, want):
                    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
                continue
            bitwise([p.view(np.uint16) for p in zp], [p.view(np.uint16) for p in dp], f"{dt.name}: ZeRO-1 vs DP")
            bitwise(masters, want, f"{dt.name}: consolidated masters")
            mine = z.state_bytes()
            assert mine <= 12 * (-(-sum(p.size for p in params) // comm.size)) + 64, mine  # master + m + v
            onep = [p.copy() for p in zp]
            one = cls(onep, master_weights=True, **hyper)
            one.load_state_dict(full)
            r = np.random.default_rng(7)
            g = [r.standard_normal(p.size).astype(np.float32).astype(dt) for p in params]
            every = comm.mpi.allgather([x.copy() for x in g])
            one.step([_mean(gs, dt) for gs in zip(*every)])
            d.step(g)
            bitwise([p.view(np.uint16) for p in onep], [p.view(np.uint16) for p in dp], f"{dt.name}: continued")


def _mean(gs, dt):
    """The rank-ordered mean of ``gs`` as the communicator takes it (bfloat16 summed in float32)."""
    if dt == np.float16:
        return sum(gs[1:], gs[0]) * dt.type(1 / len(gs))
    return (sum((x.astype(np.float32) for x in gs[1:]), gs[0].astype(np.float32)) * np.float32(1 / len(gs))).astype(dt)
