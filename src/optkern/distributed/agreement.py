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

import functools
import hashlib
import numbers

import numpy as np

from .. import _backend

#: How a wrapper reduces the gradients (:func:`reduce_mode`), as its messages name each way.
MODES = ("grad_weight set (a weighted sum)", "op='mean' (grad_weight None)", "op='sum' (grad_weight None)")


def first_unlike(values: list) -> int | None:
    """The first rank whose value differs from rank 0's (None where every rank's is the same)."""
    return next((r for r, v in enumerate(values) if v != values[0]), None)


def reduce_mode(op: str, grad_weight) -> int:
    """0: a weighted sum (``grad_weight`` set), 1: a mean, 2: a sum. Every rank must reduce alike: a
    mean on some ranks and a sum (or a weighted sum) on others ran the same collective, silently
    giving each rank another average (``grad_weight`` set on the short-shard rank only)."""
    return 0 if grad_weight is not None else (1 if op == "mean" else 2)


def mode_error(where: str, modes: list) -> ValueError | None:
    """The ValueError for ranks whose :func:`reduce_mode` differ (None where they all agree)."""
    r = first_unlike(modes)
    if r is None:
        return None
    return ValueError(
        f"{where}: the ranks reduce the gradients differently: {MODES[modes[r]]} on rank {r}, "
        f"{MODES[modes[0]]} on rank 0 (set grad_weight and op alike on every rank)"
    )


def comm_kind(comm) -> tuple:
    """How this rank's Communicator runs a reduction: rank-ordered (a gather of rows) or MPI's own,
    NCCL or MPI for CuPy arrays. Ranks that differ make different collectives and wait in them
    forever (``Communicator(ordered=...)`` set on some ranks only): compared by the wrappers'
    set-up (:func:`check_comm_kinds`)."""
    return bool(comm.ordered), comm._nccl is not None


def check_comm_kinds(kinds: list) -> None:
    """ValueError (on every rank: ``kinds`` are every rank's :func:`comm_kind`) naming the first rank
    whose Communicator reduces otherwise than rank 0's."""
    r = first_unlike(kinds)
    if r is not None:
        (o, n), (o0, n0) = kinds[r], kinds[0]
        what = f"ordered={o} on rank {r}, ordered={o0} on rank 0"
        if o == o0:
            what = f"NCCL {n} on rank {r}, {n0} on rank 0"
        raise ValueError(
            f"comm: {what} (the ranks' reductions would not pair up and wait forever: make the "
            "Communicator alike on every rank)"
        )


def agree(comm, fn, call: str = "set-up"):
    """``fn()`` on every rank, which returns ``(local, shared)``; returns ``(local, [every rank's
    shared])``. A TypeError / ValueError from ``fn`` on any rank raises on every rank (the rank's
    own error, or the lowest failing rank's, same type, saying which rank): no rank goes on to a
    collective the others never enter. A header (:func:`extremes`: the ranks are all in ``call``)
    and one allgather of small objects (set-up, not steps)."""
    try:
        local, shared = fn()
        err = None
    except (TypeError, ValueError) as e:
        local, shared, err = None, None, e
    if comm.size > 1:
        extremes(comm, [], "allgather_object", call)
    got = comm.allgather_object((_said(err), shared))
    _raise_any(err, [e for e, _ in got])
    return local, [s for _, s in got]


#: Values of every call's first allreduce (its header): the call's code, then up to
#: ``HEADER - 1`` values of the caller's, zeros after. One length for every call, so that ranks in
#: two different calls (``step`` on one, ``synchronize`` on another) pair their headers up and
#: see it, where allreduces of two lengths aborted the job (MPI_ERR_TRUNCATE, "Message truncated").
HEADER = 12


@functools.cache
def _code(call: str) -> float:
    """A call's name as a 40-bit integer (exact in a float64, and in its negative)."""
    return float(int.from_bytes(hashlib.blake2b(call.encode(), digest_size=5).digest(), "little"))


def extremes(comm, values: list, where: str, call: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The largest and the smallest of each of ``values`` over the ranks, in one allreduce (MPI's
    max of each value and of its negative; small numbers, never NaN): where the two differ, some
    rank's value differs from another's. ``where`` names the call if MPI is finalized; ``call``
    (default ``where``) is the call the ranks must all be making: the allreduce is the call's
    header (:data:`HEADER`), and ranks making different calls raise a RuntimeError on every rank,
    naming each rank's call, before either call's collectives."""
    if len(values) >= HEADER:
        raise AssertionError(f"{where}: a header holds {HEADER - 1} values, not {len(values)}")
    buf = np.zeros(2 * HEADER)  # (value, -value) pairs: one max gives every value's max and min
    head = buf[0::2]
    head[0] = _code(call or where)
    head[1 : len(values) + 1] = values
    np.negative(head, out=buf[1::2])
    comm._live(where)
    comm._header_reduce(buf)
    hi, lo = buf[0::2], -buf[1::2]
    if hi[0] != lo[0]:
        raise apart(comm, call or where)
    return hi[1 : len(values) + 1], lo[1 : len(values) + 1]


def apart(comm, call: str) -> Exception:
    """The ranks' headers in ``comm`` (a Communicator) differ: every rank's ``call`` gathered, the
    notes of the ranks among them that refused their ``comm`` taken from the queue
    (:func:`.no_comm.drain`), and :func:`calls_apart`'s error returned."""
    from .no_comm import drain  # (that module imports this one)
    from .private import channel

    comm._live("allgather_object")
    calls = channel(comm.mpi).allgather(call)  # (where the header was: a refusing rank's allgather)
    drain(calls, comm.mpi)
    return calls_apart(calls)


def calls_apart(calls: list) -> Exception:
    """The error every rank raises when the ranks' headers come from different calls: a RuntimeError
    naming each rank's call, or, where a rank refused its ``comm`` argument (:mod:`.no_comm`: it sent
    its error instead of a call), that rank's error, same type, saying which rank."""
    for r, c in enumerate(calls):
        if isinstance(c, tuple):
            kind, text = c[1]
            return _KINDS.get(kind, RuntimeError)(f"{text} (on rank {r}: no rank goes on without it)")
    said = ", ".join(f"rank {r}: {c}" for r, c in enumerate(calls))
    return RuntimeError(
        f"the ranks made different collective calls ({said}): every rank makes the same calls of "
        "the distributed objects, in the same order (nothing was reduced or written)"
    )


def refuse_together(
    comm, err, where: str, mode: int | None = None, same: tuple = (), call: str | None = None, maxed: tuple = ()
) -> list:
    """``err``: this rank's refusal of a call's input (a TypeError / ValueError) or None. Raise on
    every rank when any rank refused: the rank's own error, elsewhere the lowest refusing rank's
    (same type, saying which rank), before the call's collectives -- a rank alone with a bad
    argument raised while the others waited in them forever. ``mode``: this rank's
    :func:`reduce_mode`, compared in the same message (ValueError where the ranks differ); so are
    ``same``, ``(name, value)`` pairs (small ints or None) that must be equal on every rank: a
    wrapped optimizer's count of ``"param_groups"`` (a group added on some ranks only: those
    rebuilt their buckets, collectively, while the others reduced), a root (``to=0`` on one rank,
    ``to=1`` on another: each waited for the other's gather forever). One allreduce of a few
    float64 (max of each value and its negative), the call's header (``call``, default ``where``:
    :func:`extremes`); the messages are exchanged only when some rank refused or a value differs.
    ``maxed``: floats (never NaN; as many on every rank) whose largest over the ranks the call needs,
    carried by the same allreduce (not compared): returned, in order (a collective less)."""
    got_max = [float(v) for v in maxed]
    if comm.size > 1:
        refused = 0.0 if err is None else 1.0
        values = [0.0 if mode is None else float(mode)] + [-1.0 if v is None else float(v) for _, v in same]
        hi, lo = extremes(comm, [refused, *values, *got_max], where, call)
        k = len(values) + 1
        got_max, hi, lo = [float(v) for v in hi[k:]], hi[:k], lo[:k]
        if hi[0] != 0.0 or any(hi[1:] != lo[1:]):
            got = comm.allgather_object((_said(err), mode, [v for _, v in same]))
            # the groups first (the ranks' other errors follow from a group added on some only), then
            # the refusals, then the values (a refusing rank's own is None)
            apart = [_apart(where, name, [vs[i] for _, _, vs in got]) for i, (name, _) in enumerate(same)]
            groups = [bad for (name, _), bad in zip(same, apart) if name == "param_groups" and bad]
            if groups:
                raise groups[0]
            _raise_any(err, [e for e, _, _ in got])
            bad = next((bad for bad in apart if bad), None) or mode_error(where, [m for _, m, _ in got])
            raise bad or AssertionError("values differ, then agree")
    if err is not None:
        raise err
    return got_max


def _apart(where: str, name: str, values: list) -> ValueError | None:
    if name == "param_groups":
        return groups_error(where, values)
    r = first_unlike(values)
    if r is None:
        return None
    return ValueError(f"{where}: {name}={values[r]!r} on rank {r}, {name}={values[0]!r} on rank 0 (pass it alike)")


def groups_error(where: str, counts: list) -> ValueError | None:
    """The ValueError for ranks whose optimizers hold another count of parameter groups (None where
    they all agree)."""
    r = first_unlike(counts)
    if r is None:
        return None
    return ValueError(
        f"{where}: param_groups: {counts[r]} parameter groups on rank {r}, {counts[0]} on rank 0 (a group "
        "added on some ranks only: add_param_group must be called alike on every rank)"
    )


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


def load_together(comm, optimizer, load, digest=None, apart=None) -> None:
    """``load()`` (a ``load_state_dict`` into ``optimizer``) on every rank, collective. A refusal on
    one rank only left the others loaded: they stepped from the checkpoint, it from its old state.
    Now every rank raises (the refusing rank's error) and a rank that had loaded is put back (its
    own earlier ``state_dict()``, loaded again: the loaders copy, so those arrays are intact).
    ``digest()``, after a load: what must be equal on every rank (a :func:`state_digest`; None:
    nothing), e.g. the replicas' loaded states; ``apart(digests)``: the ValueError for digests that
    disagree, or None (by default: any that differs from rank 0's). One allgather of small objects
    (loads are rare)."""
    before = optimizer.state_dict()
    loaded = False

    def run():
        nonlocal loaded
        load()
        loaded = True
        return None, (None if digest is None else digest())

    try:
        digests = agree(comm, run, "load_state_dict")[1]
        bad = (apart or loaded_apart)(digests)
        if bad is not None:
            raise bad
    except (TypeError, ValueError):
        if loaded:
            optimizer.load_state_dict(before)
        raise


def loaded_apart(digests: list) -> ValueError | None:
    """The ValueError for ranks whose loaded states' digests differ from rank 0's (None where alike)."""
    r = first_unlike(digests)
    if r is None:
        return None
    return ValueError(
        f"state_dict: rank {r} loaded another state than rank 0 (the ranks step on together "
        "only from the same state: load the same checkpoint on every rank)"
    )


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


def optimizer_state_digest(opt) -> str | None:
    """A digest of ``opt``'s state dict but its param groups (compared by the hyper-parameters'
    check, with messages naming them): ``state``, a closure optimizer's history, a wrapper's (SAM)
    base optimizer's. None where the optimizer has no ``state_dict`` (nothing compared).

    Hashed array by array over the state's own memory (``state_digest`` streams each array's bytes):
    the first-order optimizers' state dicts hold their live arrays; L-BFGS's, copies of its history,
    so its live view is read (``_live_state_dict``). A ``state_dict()`` that fails on this rank
    (SAM between its two steps, MemoryError) is reported on every rank as a ValueError naming it: it
    runs inside the set-up's exchange, which only a TypeError / ValueError leaves on every rank
    together (another error raised here alone, the others waited in it), and it is no "other state"."""
    read = getattr(opt, "_live_state_dict", None) or getattr(opt, "state_dict", None)
    if not callable(read):  # (an optimizer without one: every rank alike)
        return None
    try:
        sd = read()
    except (TypeError, ValueError):
        raise
    except Exception as e:
        raise ValueError(f"optimizer.state_dict(): raised {type(e).__name__}: {e}") from e
    return state_digest({k: v for k, v in sd.items() if k != "param_groups"}) if isinstance(sd, dict) else None


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
