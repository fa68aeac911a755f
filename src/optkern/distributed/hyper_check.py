"""The same parameter groups and hyper-parameters on every rank: at construction and at every step.

``ShardedOptimizer`` (ZeRO-1) and ``DistributedOptimizer`` (data-parallel) both step with values
each rank reads from its own ``param_groups``: every rank's replica (data-parallel) or slice (ZeRO)
is updated with them, so a group's ``lr`` set on one rank only, or a schedule stepped on one rank
only, made that rank's parameters diverge from the others', silently. Both wrappers compare the
groups at construction (:func:`signature` on every rank, :func:`check_same_groups`) and again at
every step (:class:`HyperCheck`: a hash, one small allreduce).
"""

from __future__ import annotations

import hashlib
import numbers
from typing import NamedTuple

import numpy as np

from .. import _backend
from .agreement import _canon, _raise_any, _said, extremes, groups_error, mode_error, state_digest

#: The low-precision options, as LowpConfig's fields name them -> the keyword.
_LOWP_KEYWORDS = {
    "master": "master_weights",
    "sr": "stochastic_rounding",
    "state_dtype": "state_dtype",
    "block": "block_size",
    "seed": "seed",
}


class Words(NamedTuple):
    """How the messages name the wrapper's arguments and why the ranks must agree."""

    optimizer: str
    groups: str
    why: str


# Data-parallel: each rank rounds its whole replica, and another seed on one rank rounded its half
# params (or bfloat16 moments) differently: its replica diverged. ZeRO: each rank rounds its own
# slice with the words of its global elements, as the unsharded optimizer does: another seed on one
# rank gave a run that is no unsharded optimizer's and changes with the world size.
ZERO = Words("optimizer_class", "params", "each rank steps its own slice of the group")
REPLICA = Words("optimizer", "param_groups", "each rank steps its own replica with them")


def _plain(v) -> bool:
    """A value every rank writes alike (a number, a string, ...; not an object printed by address)."""
    if v is None or isinstance(v, (str, bool, np.bool_, numbers.Number)):
        return True
    return isinstance(v, (tuple, list)) and all(_plain(x) for x in v)


def signature(optimizer, counts, words: Words = ZERO) -> tuple:
    """What must agree across ranks, picklable: the optimizer's class, its low-precision options,
    and per group the count of arrays and the validated hyper-parameters (``_checked``: defaults
    filled in, as the step reads them). An optimizer without ``_checked`` (SAM, LBFGS, Newton-CG:
    data-parallel through ``synchronize`` only) contributes its groups' plain entries as they are."""
    lp = getattr(optimizer, "_lowp", None)  # (None: plain float32 storage, no master)
    lowp = {"master": False, "sr": False, "state_dtype": "float32"}
    if lp is not None:
        lowp = {k: getattr(lp, k) for k in _LOWP_KEYWORDS if k not in ("block", "seed")}
        if lp.state_dtype == "int8":  # (the block size of 8-bit states only)
            lowp["block"] = lp.block
        if lp.sr or lp.state_dtype == "bfloat16":  # (the seed of stochastic rounding only: bfloat16
            lowp["seed"] = lp.seed  # moments round stochastically too, without stochastic_rounding)
    checked = getattr(optimizer, "_checked", None)
    groups = []
    for gi, (g, n) in enumerate(zip(optimizer.param_groups, counts)):
        if checked is None:
            groups.append((n, {k: v for k, v in g.items() if k != "params" and _plain(v)}))
            continue
        hp, cap, _ = checked(g, f"{words.groups}[{gi}]")
        values = hp._asdict() if hasattr(hp, "_asdict") else dict(enumerate(hp))
        groups.append((n, {**values, "capturable": bool(cap)}))
    return type(optimizer).__name__, lowp, groups


def check_same_groups(sigs: list, words: Words = ZERO) -> None:
    """Raise ValueError (on every rank: ``sigs`` are every rank's :func:`signature`) naming the
    first group or option where a rank differs from rank 0."""
    where, why = words.groups, words.why
    (cls0, lowp0, groups0) = sigs[0]
    for r, (cls, lowp, groups) in enumerate(sigs[1:], start=1):
        if cls != cls0:
            raise ValueError(f"{words.optimizer}: {cls} on rank {r}, {cls0} on rank 0")
        for k, kw in _LOWP_KEYWORDS.items():
            if _unlike(lowp.get(k), lowp0.get(k)):
                raise ValueError(f"{kw}: {lowp.get(k)!r} on rank {r}, {lowp0.get(k)!r} on rank 0")
        if len(groups) != len(groups0):
            raise ValueError(
                f"{where}: {len(groups)} parameter groups on rank {r}, {len(groups0)} on rank 0 "
                f"(every rank needs the same groups: {why})"
            )
        for gi, ((n0, hp0), (n, hp)) in enumerate(zip(groups0, groups)):
            if n != n0:
                raise ValueError(
                    f"{where}[{gi}]['params']: {n} arrays on rank {r}, {n0} on rank 0 "
                    "(every rank needs the same groups)"
                )
            for k in sorted(set(hp0) | set(hp), key=str):
                if _unlike(hp.get(k), hp0.get(k)):
                    raise ValueError(
                        f"{where}[{gi}]: hyper-parameter {k!r} is {hp.get(k)!r} on rank {r}, {hp0.get(k)!r} on "
                        f"rank 0 ({why}: they must agree)"
                    )


def _unlike(a, b) -> bool:
    """Whether two ranks' values differ as the step's hash (:func:`_digest`) tells them apart: -0.0
    and 0.0 too (equal by ``==``: the groups were agreed at construction, then every step's hashes
    differed and it raised AssertionError; a -0.0 lr steps a -0.0 param to another sign bit)."""
    return a != b or repr(_canon(a)) != repr(_canon(b))


def _digest(sig) -> float:
    """A 48-bit hash of a :func:`signature`, as a float64 (exact: a collective compares it)."""
    h = hashlib.blake2b(repr(_canon(sig)).encode(), digest_size=6).digest()
    return float(int.from_bytes(h, "little"))


#: Entries kept as they are in a snapshot (most are: asking each of them _snapshot_value's questions
#: cost 10 us a step for an Adam of two groups, against 4 us for this set lookup).
_AS_IS = frozenset({float, int, bool, str, tuple, type(None)})


def _snapshot_value(v):
    """A group entry as it stands, compared by value at the next step (an array by its bytes; a CuPy
    ``lr`` of capturable mode, read on the device only, by identity: the host checks see 0.0 for it;
    a list or dict by a copy of its items: kept itself, a change in place, ``g["betas"][1] = ...`` on
    one rank, compared equal to the snapshot, which was that same list)."""
    if _backend.is_cupy(v):
        return ("cupy", id(v))
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, list):
        return ("list", tuple(_snapshot_value(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple((k, _snapshot_value(x)) for k, x in v.items()))
    return v


class HyperCheck:
    """The hyper-parameters of every group, agreed across ranks at every step.

    Construction compares the ranks' groups (:func:`check_same_groups`); a change after it on one
    rank only (``opt.param_groups[1]["lr"] = ...``, a schedule stepped on one rank) made that rank
    step differently, silently. ``__call__`` (each step, on every rank) takes a snapshot of the
    groups' entries (no validation: microseconds), hashes the validated :func:`signature` again only
    when the snapshot changed on this rank, and compares the hashes in one allreduce of two float64
    (max of ``(h, -h)``: every rank sees whether any differs) -- every rank makes that call every
    step, changed or not, or a rank that changed would wait alone in it. Only when the hashes differ
    are the signatures exchanged, and every rank raises the same ValueError naming the group, the
    hyper-parameter and the ranks. ``words``: as for :func:`check_same_groups`.
    """

    #: what the ``grads`` digest of ``__call__`` covers (a key of ``REPLICA_PARTS``)
    replicas = "grads"

    def __init__(self, optimizer, counts, comm, sig, words: Words = ZERO):
        self.optimizer, self.counts, self.comm, self.words = optimizer, counts, comm, words
        self._snap = self._snapshot()
        self._sig, self._hash = sig, _digest(sig)

    def _snapshot(self) -> list:
        return [
            [(k, v if type(v) in _AS_IS else _snapshot_value(v)) for k, v in g.items() if k != "params"]
            for g in self.optimizer.param_groups
        ]

    def __call__(
        self, err: Exception | None = None, skip: bool = False, mode: int = 0, grads: int | None = None
    ) -> None:
        """``err``: this rank's step refused its input (TypeError / ValueError, or RuntimeError):
        raised here after the allreduce, and on every other rank as the same type naming this rank.
        ``skip``: this step is inside ``skip_synchronize()`` (no reduction), ``mode``: how it
        reduces (:func:`.agreement.reduce_mode`, 0..2): in the hash too, as a step inside it on
        some ranks only left the others waiting in their reduction, and a mean on some ranks
        beside a (weighted) sum on others gave each another average. ``grads``: a 48-bit digest of
        the gradients the step takes (``grads_digest``; ``DistributedOptimizer.check_replicas``
        inside ``skip_synchronize()``), folded into the hash: no message of its own."""
        if err is None:
            snap = self._snapshot()
            try:
                same = snap == self._snap
            except ValueError:  # (an entry whose == is an array, not a bool)
                same = False
            if not same:
                self._sig = signature(self.optimizer, self.counts, self.words)  # (the step checked the values)
                self._hash, self._snap = _digest(self._sig), snap
        # (hashes are < 2**48, so 8h + 2 mode + skip is exact in a float64; >= 0: -1 differs from all)
        key = self._hash if grads is None else float(int(self._hash) ^ grads)
        h = 8.0 * key + 2 * mode + bool(skip) if err is None else -1.0
        hi = lo = np.array([h])
        if self.comm.size > 1:
            # the step's header (.agreement.extremes: MPI's own max, exact in any order, never NaN;
            # allreduce's NaN handling cost 15 us a step, MPI's 0.4 us), which also finds ranks
            # making another call than the step
            hi, lo = extremes(self.comm, [h], "step")
        if hi[0] == h and lo[0] == h:  # every rank alike (every rank refused: each raises its own)
            if err is not None:
                raise err
            return
        got = self.comm.allgather_object((_said(err), self._sig, bool(skip), mode, grads))
        # a group added on some ranks only first (their steps' own errors follow from it)
        bad_groups = groups_error("step", [len(sig[2]) for _, sig, *_ in got])
        if bad_groups is not None:
            raise bad_groups
        try:
            _raise_any(err, [theirs for theirs, *_ in got])
        except (TypeError, ValueError, RuntimeError) as e:
            if e is err:
                raise
            raise type(e)(f"step: {e}") from None
        skips = [g[2] for g in got]
        if any(s != skips[0] for s in skips):
            r = skips.index(not skips[0])
            raise RuntimeError(
                f"step: inside skip_synchronize() on rank {r if skips[r] else 0}, outside it on rank "
                f"{0 if skips[r] else r} (every rank steps alike: the ranks outside reduce the gradients, "
                "a collective the others never enter)"
            )
        bad_mode = mode_error("step", [g[3] for g in got])
        if bad_mode is not None:
            raise bad_mode
        try:
            check_same_groups([sig for _, sig, *_ in got], self.words)
        except ValueError as e:
            raise ValueError(
                f"step: the ranks' hyper-parameters differ, changed after construction on some ranks only: {e}"
            ) from None
        bad_grads = grads_error([g[4] for g in got], self.replicas)
        if bad_grads is not None:
            raise bad_grads
        # (equal signatures and grads, different hashes: not reachable -- the hash is of them)
        raise AssertionError("hyper-parameter hashes differ between equal signatures")


def grads_digest(grads: list) -> int:
    """A 48-bit hash of the gradients' bytes (dtype, shape and values, NaN equal to NaN), for
    :class:`HyperCheck`'s ``grads``: the ranks compare their averaged gradients without sending them."""
    return int(_digest(state_digest(grads)))


#: What ``check_replicas`` compares (the digest folded into the step's hash) and what the ranks were
#: told when it differs: DistributedOptimizer's replicas step with the gradients they hold inside
#: ``skip_synchronize()``; ZeRO-1's each read their slice from their own copy of the params, whose
#: all-gather then mixes the ranks' copies.
REPLICA_PARTS = {
    "grads": (
        "inside skip_synchronize() the gradients on rank {r} differ from rank 0's (changed after "
        "synchronize() on some ranks only, e.g. clipped without comm=: each replica would step with its "
        "own and drift apart); nothing was stepped"
    ),
    "params": (
        "the params on rank {r} differ from rank 0's (changed on some ranks only, e.g. weights loaded "
        "or re-initialized there: each rank steps its slice from its own copy and the all-gather would "
        "mix them); nothing was stepped"
    ),
}


def check_replicas_flag(opt) -> bool:
    """``opt.check_replicas`` (a debug mode of the data-parallel optimizers, default False) as a
    bool; a bad value refused naming it (inside the step's checks: refused on every rank)."""
    return _backend.flag("check_replicas", opt.check_replicas)


def grads_error(digests: list, part: str = "grads") -> ValueError | None:
    """The error of the ranks' replica digests (:func:`grads_digest`, None where not taken) when
    they differ: the check set on some ranks only, or the ``part`` (``REPLICA_PARTS``) that
    differs between ranks."""
    r = next((i for i, d in enumerate(digests) if d != digests[0]), None)
    if r is None:
        return None
    if None in digests:
        on, off = (r, 0) if digests[0] is None else (0, r)
        return ValueError(f"step: check_replicas is set on rank {on}, not on rank {off} (set it alike on every rank)")
    return ValueError("step: " + REPLICA_PARTS[part].format(r=r))
