"""``ShardedOptimizer``'s construction checks: the user's params and groups, and the same group
layout and hyper-parameters on every rank.

Each rank steps its own slice of the flat buffer with its own local optimizer, so everything
that decides how a slice is updated must agree across ranks: the arrays (``check_same_params``),
how they are grouped, each group's hyper-parameters and the low-precision options. A rank that
disagrees would update its slice differently (one parameter with two different updates, owned
by two ranks), or enter a per-group collective of another length (AdaGrad-Norm's ``||g||^2``).
The hyper-parameters are checked again at every step (:class:`HyperCheck`): a schedule or a user
changing a group's ``lr`` on one rank only made the ranks diverge silently.
"""

from __future__ import annotations

import hashlib
import numbers

import numpy as np

from .. import _backend
from ..clip import _span
from ..optim._lowp_config import _half_fmt


def groups_of(params, where="params") -> list:
    """The user's params as a list of group dicts (a list of arrays is one group)."""
    if isinstance(params, dict):
        raise TypeError(f"{where}: expected a list of arrays or a list of dicts, got a dict")
    if isinstance(params, np.ndarray) or _backend.is_cupy(params):
        params = [params]
    try:
        groups = list(params)
    except TypeError:
        raise TypeError(f"{where}: expected a list of arrays or a list of dicts, got {type(params).__name__}") from None
    if not groups:
        raise ValueError(f"{where}: got an empty parameter list")
    if not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    out = []
    for gi, g in enumerate(groups):
        if not isinstance(g, dict) or "params" not in g:
            raise TypeError(f"{where}[{gi}]: expected a dict with 'params'")
        out.append({**g, "params": _backend.as_list(g["params"], f"param_groups[{gi}]['params']")})
    return out


def check_params(params) -> None:
    """One kind, one dtype (a float the flat buffer can hold), one device, writable, distinct."""
    if not params:
        raise ValueError("params: no arrays to optimize")
    _backend.backend(("params", params))  # one kind
    dt = params[0].dtype
    for i, p in enumerate(params):
        if p.dtype not in (np.float32, np.float64) and _half_fmt(p.dtype) is None:
            raise TypeError(f"params[{i}]: expected float32, float64, float16 or bfloat16, got {p.dtype}")
        if p.dtype != dt:
            raise TypeError(
                f"params[{i}]: expected {dt} like params[0], got {p.dtype} (one flat buffer holds every parameter)"
            )
        if _backend.is_cupy(p) and p.device.id != params[0].device.id:
            raise ValueError(f"params[{i}]: on device {p.device.id}, params[0] on {params[0].device.id}")
        if isinstance(p, np.ndarray) and not p.flags.writeable:
            raise ValueError(f"params[{i}]: array is read-only")
    check_distinct(params)


def check_distinct(params) -> None:
    """Raise ValueError naming the later of two params that share memory (the same array twice, or
    overlapping views): each is copied back from its own slice of the flat buffer after a step, so
    one would overwrite the other's update (an unsharded optimizer refuses them too)."""
    spans: list = []
    seen: dict = {}
    for i, p in enumerate(params):
        j = seen.setdefault(id(p), i)
        if j != i:
            raise ValueError(f"params[{i}]: the same array as params[{j}] (a parameter appears twice)")
        lo, hi = _span(p, _backend.is_cupy(p))
        if hi > lo:
            spans.append((lo, hi, i))
    spans.sort()
    far = None  # the span reaching furthest so far
    for s in spans:
        if far is not None and s[0] < far[1]:
            i, j = max(s[2], far[2]), min(s[2], far[2])
            raise ValueError(f"params[{i}] shares memory with params[{j}] (aliasing arrays cannot be updated in place)")
        if far is None or s[1] > far[1]:
            far = s


#: The low-precision options, as LowpConfig's fields name them -> the keyword (the seed may differ:
#: each rank draws the stochastic rounding of its own slice).
_LOWP_KEYWORDS = {
    "master": "master_weights",
    "sr": "stochastic_rounding",
    "state_dtype": "state_dtype",
    "block": "block_size",
}


def signature(optimizer, counts) -> tuple:
    """What must agree across ranks, picklable: the optimizer's class, its low-precision options,
    and per group the count of arrays and the validated hyper-parameters (``_checked``: defaults
    filled in, as the step reads them)."""
    lp = getattr(optimizer, "_lowp", None)  # (None: plain float32 storage, no master)
    lowp = {"master": False, "sr": False, "state_dtype": "float32"}
    if lp is not None:
        lowp = {k: getattr(lp, k) for k in _LOWP_KEYWORDS if k != "block"}
        if lp.state_dtype == "int8":  # (the block size of 8-bit states only)
            lowp["block"] = lp.block
    groups = []
    for gi, (g, n) in enumerate(zip(optimizer.param_groups, counts)):
        hp, cap, _ = optimizer._checked(g, f"params[{gi}]")
        values = hp._asdict() if hasattr(hp, "_asdict") else dict(enumerate(hp))
        groups.append((n, {**values, "capturable": bool(cap)}))
    return type(optimizer).__name__, lowp, groups


def check_same_groups(sigs: list) -> None:
    """Raise ValueError (on every rank: ``sigs`` are every rank's :func:`signature`) naming the
    first group or option where a rank differs from rank 0."""
    (cls0, lowp0, groups0) = sigs[0]
    for r, (cls, lowp, groups) in enumerate(sigs[1:], start=1):
        if cls != cls0:
            raise ValueError(f"optimizer_class: {cls} on rank {r}, {cls0} on rank 0")
        for k, kw in _LOWP_KEYWORDS.items():
            if lowp.get(k) != lowp0.get(k):
                raise ValueError(f"{kw}: {lowp.get(k)!r} on rank {r}, {lowp0.get(k)!r} on rank 0")
        if len(groups) != len(groups0):
            raise ValueError(
                f"params: {len(groups)} parameter groups on rank {r}, {len(groups0)} on rank 0 "
                "(every rank needs the same groups: each steps its own slice of them)"
            )
        for gi, ((n0, hp0), (n, hp)) in enumerate(zip(groups0, groups)):
            if n != n0:
                raise ValueError(
                    f"params[{gi}]['params']: {n} arrays on rank {r}, {n0} on rank 0 (every rank needs the same groups)"
                )
            for k in sorted(set(hp0) | set(hp), key=str):
                if hp.get(k) != hp0.get(k):
                    raise ValueError(
                        f"params[{gi}]: hyper-parameter {k!r} is {hp.get(k)!r} on rank {r}, {hp0.get(k)!r} on "
                        "rank 0 (each rank steps its own slice of the group: they must agree)"
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


def _digest(sig) -> float:
    """A 48-bit hash of a :func:`signature`, as a float64 (exact: a collective compares it)."""
    h = hashlib.blake2b(repr(_canon(sig)).encode(), digest_size=6).digest()
    return float(int.from_bytes(h, "little"))


def _snapshot_value(v):
    """A group entry as it stands, compared by value at the next step (an array by its bytes; a CuPy
    ``lr`` of capturable mode, read on the device only, by identity: the host checks see 0.0 for it)."""
    if _backend.is_cupy(v):
        return ("cupy", id(v))
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.str, v.shape, v.tobytes())
    return v


class HyperCheck:
    """The hyper-parameters of every group, agreed across ranks at every step.

    Construction compares the ranks' groups (:func:`check_same_groups`); a change after it on one
    rank only (``opt.param_groups[1]["lr"] = ...``, a schedule stepped on one rank) made that rank
    step its slices differently, silently. ``__call__`` (each step, on every rank) takes a snapshot
    of the groups' entries (no validation: microseconds), hashes the validated :func:`signature`
    again only when the snapshot changed on this rank, and compares the hashes in one allreduce of
    two float64 (max of ``(h, -h)``: every rank sees whether any differs) -- every rank makes that
    call every step, changed or not, or a rank that changed would wait alone in it. Only when the
    hashes differ are the signatures exchanged, and every rank raises the same ValueError naming the
    group, the hyper-parameter and the ranks.
    """

    def __init__(self, optimizer, counts, comm, sig):
        self.optimizer, self.counts, self.comm = optimizer, counts, comm
        self._snap = self._snapshot()
        self._sig, self._hash = sig, _digest(sig)
        self._buf = np.zeros(2)

    def _snapshot(self) -> list:
        return [[(k, _snapshot_value(v)) for k, v in g.items() if k != "params"] for g in self.optimizer.param_groups]

    def __call__(self, err: Exception | None = None) -> None:
        """``err``: this rank's step refused its input (TypeError / ValueError): raised here after
        the allreduce, and on every other rank as the same type naming this rank."""
        if err is None:
            snap = self._snapshot()
            try:
                same = snap == self._snap
            except ValueError:  # (an entry whose == is an array, not a bool)
                same = False
            if not same:
                self._sig = signature(self.optimizer, self.counts)  # (validated by the step's checks before)
                self._hash, self._snap = _digest(self._sig), snap
        h = self._hash if err is None else -1.0  # (hashes are >= 0: -1 differs from every one)
        buf = self._buf
        buf[0], buf[1] = h, -h
        if self.comm.size > 1:  # (a max is exact in any order: not the ordered mode's gather of rows)
            self.comm.allreduce(buf, "max", ordered=False)
        if buf[0] == h and -buf[1] == h:  # every rank alike (every rank refused: each raises its own)
            if err is not None:
                raise err
            return
        got = self.comm.allgather_object((None if err is None else (type(err).__name__, str(err)), self._sig))
        if err is not None:
            raise err
        for r, (theirs, _) in enumerate(got):
            if theirs is not None:
                raise (TypeError if theirs[0] == "TypeError" else ValueError)(f"step: {theirs[1]} (on rank {r})")
        try:
            check_same_groups([sig for _, sig in got])
        except ValueError as e:
            raise ValueError(
                f"step: the ranks' hyper-parameters differ, changed after construction on some ranks only: {e}"
            ) from None
        # (equal signatures, different hashes: not reachable -- the hash is of the signature)
        raise AssertionError("hyper-parameter hashes differ between equal signatures")
