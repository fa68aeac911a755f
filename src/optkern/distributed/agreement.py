"""Ranks that agree before a collective: a call's input refused on one rank raises on every rank.

A collective entered by some ranks only waits forever (or, under ``python -m mpi4py``, aborts the
job when the refusing rank's error goes uncaught; caught, that rank goes on to the next collective
while the others still wait in this one, and the calls pair up wrongly). So every check of one
rank's own input that precedes a collective reports into an exchange every rank makes: the set-up's
allgather (:func:`agree`), one small allreduce of a call (:func:`refuse_together`), or the step's
hyper-parameter allreduce (:class:`.hyper_check.HyperCheck`). Every rank then raises: the refusing
rank its own error, the others the same type naming it and the rank.
"""

from __future__ import annotations

import hashlib
import numbers

import numpy as np

from .. import _backend

#: How a wrapper reduces the gradients (:func:`reduce_mode`), as its messages name each way.
MODES = ("grad_weight set (a weighted sum)", "op='mean' (grad_weight None)", "op='sum' (grad_weight None)")


def reduce_mode(op: str, grad_weight) -> int:
    """0: a weighted sum (``grad_weight`` set), 1: a mean, 2: a sum. Every rank must reduce alike: a
    mean on some ranks and a sum (or a weighted sum) on others ran the same collective, silently
    giving each rank another average (``grad_weight`` set on the short-shard rank only)."""
    return 0 if grad_weight is not None else (1 if op == "mean" else 2)


def mode_error(where: str, modes: list) -> ValueError | None:
    """The ValueError for ranks whose :func:`reduce_mode` differ (None where they all agree)."""
    r = next((r for r, m in enumerate(modes) if m != modes[0]), None)
    if r is None:
        return None
    return ValueError(
        f"{where}: the ranks reduce the gradients differently: {MODES[modes[r]]} on rank {r}, "
        f"{MODES[modes[0]]} on rank 0 (set grad_weight and op alike on every rank)"
    )


def agree(comm, fn):
    """``fn()`` on every rank, which returns ``(local, shared)``; returns ``(local, [every rank's
    shared])``. A TypeError / ValueError from ``fn`` on any rank raises on every rank (the rank's
    own error, or the lowest failing rank's, same type, saying which rank): no rank goes on to a
    collective the others never enter. One allgather of small objects (set-up, not steps)."""
    try:
        local, shared = fn()
        err = None
    except (TypeError, ValueError) as e:
        local, shared, err = None, None, e
    got = comm.allgather_object((_said(err), shared))
    _raise_any(err, [e for e, _ in got])
    return local, [s for _, s in got]


def refuse_together(comm, err, where: str, mode: int | None = None) -> None:
    """``err``: this rank's refusal of a call's input (a TypeError / ValueError) or None. Raise on
    every rank when any rank refused: the rank's own error, elsewhere the lowest refusing rank's
    (same type, saying which rank), before the call's collectives -- a rank alone with a bad
    argument raised while the others waited in them forever. ``mode``: this rank's
    :func:`reduce_mode`, compared in the same message (ValueError where the ranks differ). One
    allreduce of three float64 (max of ``(refused, mode, -mode)``); the messages are exchanged
    only when some rank refused or the modes differ."""
    if comm.size > 1:
        m = 0.0 if mode is None else float(mode)
        buf = np.array([0.0 if err is None else 1.0, m, -m])
        comm._live(where)
        comm._mpi_allreduce(buf, "max")  # (MPI's own max: small integers, never NaN)
        if buf[0] != 0.0 or buf[1] != -buf[2]:
            got = comm.allgather_object((_said(err), mode))
            _raise_any(err, [e for e, _ in got])
            raise mode_error(where, [m for _, m in got]) or AssertionError("modes differ, then agree")
    if err is not None:
        raise err


def _said(err):
    return None if err is None else (type(err).__name__, str(err))


def _raise_any(err, said: list) -> None:
    """Raise ``err`` (this rank's), else the first rank's in ``said`` (``_said`` of every rank's)."""
    if err is not None:
        raise err
    for r, theirs in enumerate(said):
        if theirs is not None:
            raise _KINDS.get(theirs[0], RuntimeError)(f"{theirs[1]} (on rank {r})")


_KINDS = {"TypeError": TypeError, "ValueError": ValueError}  # (any other: RuntimeError)


def load_together(comm, optimizer, load, digest=None) -> None:
    """``load()`` (a ``load_state_dict`` into ``optimizer``) on every rank, collective. A refusal on
    one rank only left the others loaded: they stepped from the checkpoint, it from its old state.
    Now every rank raises (the refusing rank's error) and a rank that had loaded is put back (its
    own earlier ``state_dict()``, loaded again: the loaders copy, so those arrays are intact).
    ``digest()``, after a load: what must be equal on every rank (a :func:`state_digest`; None:
    nothing), e.g. the replicas' loaded states. One allgather of small objects (loads are rare)."""
    before = optimizer.state_dict()
    loaded = False

    def run():
        nonlocal loaded
        load()
        loaded = True
        return None, (None if digest is None else digest())

    try:
        digests = agree(comm, run)[1]
        r = next((r for r, d in enumerate(digests) if d != digests[0]), None)
        if r is not None:
            raise ValueError(
                f"state_dict: rank {r} loaded another state than rank 0 (the ranks step on together "
                "only from the same state: load the same checkpoint on every rank)"
            )
    except (TypeError, ValueError):
        if loaded:
            optimizer.load_state_dict(before)
        raise


def _canon(v):
    """A hyper-parameter's value as the other ranks would write it (0.1 and np.float64(0.1) alike)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, (tuple, list)):
        return tuple(_canon(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted(((str(k), _canon(x)) for k, x in v.items()), key=lambda kv: kv[0]))
    return repr(v)


def state_digest(sd) -> str:
    """A hash of a state dict's contents (arrays by dtype, shape and bytes; NaN equal to NaN), for
    comparing the ranks' loaded states without sending them."""
    h = hashlib.blake2b(digest_size=16)
    _feed(h, sd)
    return h.hexdigest()


def _feed(h, v) -> None:
    if isinstance(v, dict):
        h.update(b"{")
        for k in sorted(v, key=str):
            h.update(repr(str(k)).encode())
            _feed(h, v[k])
        h.update(b"}")
    elif isinstance(v, (list, tuple)):
        h.update(b"[")
        for x in v:
            _feed(h, x)
        h.update(b"]")
    elif v is None or isinstance(v, (str, bool, np.bool_, numbers.Number)):
        h.update(repr(_canon(v)).encode())
    else:
        a = _host_array(v)
        if a is None:  # (an object printed by its address: by its type, as the other ranks see it)
            h.update(f"object {type(v).__name__}".encode())
        else:
            h.update(f"array {a.dtype.str} {a.shape}".encode())
            h.update(a.reshape(-1).view(np.uint8))


def _host_array(v):
    """``v`` (a NumPy / CuPy array, a CPU torch tensor, ...) as a contiguous NumPy array, or None."""
    try:
        a = _backend.to_numpy(v) if _backend.is_cupy(v) else np.asarray(v)
    except Exception:  # (a GPU tensor, an object NumPy cannot read)
        return None
    return np.ascontiguousarray(a) if a.dtype.kind not in "OUS" else None
