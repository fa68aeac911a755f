"""ShardedOptimizer's gradient reduce-scatter (ZeRO-1's one collective before the step): the user's
gradients copied into the flat buffer, weighted, reduced and scattered into this rank's slice."""

from __future__ import annotations

import numpy as np

from . import sharded_clip, sharded_copy
from ._arrays import _IEEE
from ._arrays import _is_half_bits as _is_half


@_IEEE  # (a weighted product past the range on one rank raised there, the others left in the collective)
def reduce_scatter(opt, grads: list, w) -> list:
    """``grads`` (checked) into the flat gradient buffer, times the weight ``w`` (or None), reduce-scattered
    into this rank's slice; returns the slice as :meth:`ShardedOptimizer.synchronize` does. ``opt``: the
    ShardedOptimizer."""
    sharded_copy.write_grads(opt._gviews, grads)
    if w is not None and _is_half(opt._gflat):
        # 16-bit gradients times the weight, summed in float32 and rounded once, as
        # DistributedOptimizer's buckets do (the weight and each product rounded to 16 bits,
        # and ordered float16 sums rounded at each rank, were bits apart from data-parallel)
        w32 = opt._gflat.astype(np.float32)
        w32 *= np.float32(w)
        opt._shard[...] = opt.comm.reduce_scatter(w32, "sum", check=False).astype(opt._shard.dtype)
    else:
        if w is not None:
            opt._gflat *= opt._gflat.dtype.type(w)
        opt.comm.reduce_scatter(opt._gflat, opt.op if w is None else "sum", out=opt._shard, check=False)
    opt._synced = True
    # a rank holding no slice still returns one (empty) array: its kind picks the collective's path
    # (a ShardGrads: clip_grad_norm_(shard, comm=) takes the params' chunks, the unsharded clip's bits)
    return sharded_clip.ShardGrads(list(opt._local_grads) or [opt._shard[:0]], sharded_clip.layout_of(opt))
