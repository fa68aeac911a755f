"""The total norm's parts shared by one process and the ranks of a distributed ``clip_grad_norm_``
(``comm=``): the scaled p-norm's partial sums, fold and root for p > ``_SCALED_P``, and the ranks'
exchange: every rank's partial sums gathered and folded as one process folds its own."""

from __future__ import annotations

import math
import zlib

import numpy as np

from . import _backend

#: Above this p the total norm is taken as ``m * (sum (|g| / m)^p)^(1/p)`` with ``m = max |g|``.
#: The plain ``sum |g|^p`` (torch's at any p) leaves float64's normal range beyond it for float32
#: values (1.4e-45^p .. 3.4e38^p): it overflowed to inf, so clipping zeroed the gradients ([0.5,
#: 0.5, 3] at p=2000), or underflowed to a zero norm. The native kernel's sum for other p up to 6
#: is of ``|g| 2^-e`` (``2^e <= max |g|``: exact, rules/pnorm.hpp): float64 gradients past 1e51 no
#: longer overflow it, and the norm is within about an ulp of the exact one at any scale (the
#: unscaled root was 20-35 ulps off for gradients of 1e+-30). In float64: for p = 1, 2 and inf the
#: norm is torch's to the bit; for other p it may differ from torch's (a float32 norm of per-array
#: float32 norms) by an ulp of float32.
_SCALED_P = 6.0


def _scaled_parts(xp, grads, m, p: float, k: int):
    """(|g| / m)^p summed in float64 chunk by chunk: one part a chunk of ``k`` elements of an
    array (the native kernel's, ``grad_norm_chunk``: a ShardedOptimizer's ranks take the same
    chunks of the params, sharded_clip), in order (``m``: the largest |g| of every array the norm
    takes, where finite and positive; else the terms unscaled)."""
    scale = xp.where(xp.isfinite(m) & (m > 0), m, 1.0)
    chunks = [g.reshape(-1)[s : s + k] for g in grads for s in range(0, g.size, k)]
    parts = xp.zeros(len(chunks), dtype=np.float64)
    for i, c in enumerate(chunks):
        parts[i] = xp.sum((xp.abs(c).astype(np.float64) / scale) ** p)  # terms <= 1, the largest one 1
    return parts


def _fold(xp, parts):
    """``0 + parts[0] + parts[1] + ...`` in that order, as a 1-element float64 array: the one
    process's sum of its parts, and the ranks' gathered parts summed alike (the same additions)."""
    s = xp.zeros(1, dtype=np.float64)
    for i in range(parts.size):
        s += parts[i]
    return s


def _scaled_sum(xp, grads, m, p: float, k: int):
    """sum over ``grads`` of (|g| / m)^p in float64, chunk by chunk in order (``_scaled_parts``)."""
    return _fold(xp, _scaled_parts(xp, grads, m, p, k))


def _scaled_root(xp, s, m, p: float):
    """The norm from ``_scaled_sum``'s ``s``: m s^(1/p), or m itself where it is 0, inf or NaN."""
    ok = xp.isfinite(m) & (m > 0)
    return xp.where(ok, xp.where(ok, m, 1.0) * s ** (1.0 / p), m)


def _parts(xp, mod, grads, p: float, m, k: int = 0):
    """The partial sums of ``grads`` for the norm of order ``p`` (p > ``_SCALED_P``: scaled by ``m``,
    the global max |g|), one per chunk of ``k`` (``mod.grad_norm_chunk()``) elements of each array."""
    if p > _SCALED_P:
        return _scaled_parts(xp, grads, m, p, k or mod.grad_norm_chunk())
    return mod.grad_norm_parts(grads, p, m)


def _gathered(comm, xp, parts):
    """Every rank's ``parts`` concatenated in rank order: two collectives, the counts' (each rank
    its own slot, the others 0) and the parts' (each padded with zeros to the longest, the zeros
    dropped again). On the GPU the partials are combined in a tree whose shape follows their
    positions: zeros between the ranks' moved them, and the norm off the one process's."""
    counts = np.zeros(comm.size)
    counts[comm.rank] = parts.size
    comm.allreduce(counts, "max", check=False)
    k = int(counts.max())
    send = xp.zeros(k, dtype=np.float64)
    send[: parts.size] = parts
    every = comm.allgather(send, check=False)
    return xp.concatenate([every[r * k : r * k + int(n)] for r, n in enumerate(counts)])


@np.errstate(all="ignore")  # (as _scaled_norm)
def _global_norm(buf, p: float, comm, grads=(), mod=None, local=None, shard=None, peak=None):
    """``buf`` (from ``_local_norm``: this rank's max |g| for p = inf and for p other than 1 and 2,
    else not written) becomes the norm over every rank's part, in place; returns it as a float for
    NumPy, None for CuPy (the value stays on the device). ``grads``: this rank's; ``mod``: their
    native module (None without grads); ``local``: their partial sums at p = 1 and 2
    (``grad_norm_parts``); ``shard``: the ``ShardLayout`` of a ShardedOptimizer's slice (its chunks
    are those of the params, put together across the ranks' boundaries: distributed.sharded_clip);
    ``peak``: the global max |g| where the call's agreement carried it (NumPy ranks), else None.

    The one process sums its terms in parts (the native kernel's chunks, for p > ``_SCALED_P`` too)
    and ends them (a fold in order on the CPU, a fixed tree on the GPU, then the root); each
    rank takes the same parts of its own arrays, their terms scaled by the global max |g| as the one
    process scales them, the ranks gather them in rank order and end them with the same native
    ``grad_norm_finish`` (rules::pnorm_root: the one definition of the root, on the device for CuPy,
    no host sync): the one process's norm of the ranks' arrays in rank order, bit for bit whatever
    the values (the ranks' sums added, or their norms rooted and raised to p again, were an ulp or
    more off it). A rank without gradients (a NumPy buffer) ends the CuPy ranks' parts on the CPU:
    its returned norm may be an ulp off theirs (a fold in order, not the GPU's tree)."""
    from .distributed.communicator import as_communicator

    comm = as_communicator(comm)
    xp = _backend.array_module(buf)
    if p not in (1.0, 2.0):  # the global max |g|: the norm at p = inf, else what scales every rank's terms
        if peak is None:
            comm.allreduce(buf, "max", check=False)
        else:
            buf[...] = peak
    if p == math.inf:
        return float(buf[0]) if xp is np else None
    if mod is None:
        every = _gathered(comm, xp, xp.zeros(0))
    elif shard is not None:  # (the params' chunks, each one array: their count known from the layout)
        from .distributed.sharded_clip import every_part

        k = mod.grad_norm_chunk()
        mine = local if p in (1.0, 2.0) else None  # (p = 1, 2: the inside chunks' parts, _local_norm's)
        every = every_part(shard, comm, xp, grads, k, lambda c: _parts(xp, mod, c, p, buf, k), mine)
    else:
        every = _gathered(comm, xp, local if p in (1.0, 2.0) and local is not None else _parts(xp, mod, grads, p, buf))
    if p > _SCALED_P:
        buf[...] = _scaled_root(xp, _fold(xp, every), buf, p)
    else:
        _backend.backend(("out", buf)).grad_norm_finish(every, p, buf)
    return float(buf[0]) if xp is np else None


def _dtype_name(local) -> str | None:
    """The dtype of this rank's gradients as the caller passed them (a 16-bit format, not its float32
    copies), or None where it holds no element (an empty array of any dtype: a rank without
    gradients, as the docs ask, takes part whatever its dtype)."""
    if local is None or local[2] is None or not sum(int(g.size) for g in local[0]):
        return None
    half = local[9]
    return str((half[0] if half is not None else local[0])[0].dtype)


def dtype_code(local) -> float | None:
    """``_dtype_name`` as a number for the call's header (None: no element here)."""
    name = _dtype_name(local)
    # (a number every rank derives alike from the name, exact in float64: NumPy's dtype.num of an
    # ml_dtypes format follows the order the formats were registered in)
    return None if name is None else float(zlib.crc32(name.encode()))


def dtypes_apart(comm, local) -> TypeError:
    """The TypeError every rank raises when the ranks' gradients (those holding elements) are of
    different dtypes: they are the parts of one vector, which one process refuses to mix (each rank
    rounded its clip factor in its own dtype, and the replicas were scaled apart, silently)."""
    names = comm.allgather_object(_dtype_name(local))
    held = [(r, n) for r, n in enumerate(names) if n is not None]
    (r0, first), (r, other) = held[0], next((r, n) for r, n in held if n != held[0][1])
    return TypeError(
        f"clip_grad_norm_: grads: {first} on rank {r0}, {other} on rank {r} (the ranks' gradients are "
        "the parts of one vector: one dtype, as one process takes them)"
    )
