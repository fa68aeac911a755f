"""LBFGS checkpoints in torch's layout: ``{"state": {0: {...}}, "param_groups": [{..., "params": [0, ...]}]}``.

torch keeps L-BFGS's global state under the first parameter; so does this. ``old_dirs`` are the
``y`` vectors and ``old_stps`` the ``s`` vectors (torch's names), oldest first. optkern adds
``gram_sy`` / ``gram_yy`` (the inner products it maintains). Loading keeps optkern's saved inner
products once checked against the vectors in O(k n) (:mod:`._lbfgs_gram`), and rebuilds them by the
step's own push for torch's checkpoints, which hold none (``LBFGS._gram_of``, k^2 n); ``ro`` and
``H_diag`` are derived from them, never read.

:func:`distinct`, :func:`same_params`, :func:`one_group` and :func:`vector` are the checks the single-group
second-order optimizers (LBFGS, NewtonCG) share: params that share no memory, and the first-order
optimizers' rules (:mod:`._state_checks`: the layout, unknown keys under ``strict``, values named
by their path in the dict) for one parameter group whose state lives under its first parameter's
index.
"""

from __future__ import annotations

import types
import weakref

import numpy as np

from .. import _aligned, _backend
from .._array_checks import byte_span
from . import _given, _lbfgs_gram
from ._lbfgs_history import MIN_CURVATURE, keeps_pair
from ._state_checks import _entries_by_index, check_array, check_groups, check_scalar, saved_values

#: the keys of LBFGS's state entry: torch's, and optkern's inner products
_KEYS = (
    "func_evals",
    "n_iter",
    "d",
    "t",
    "old_dirs",
    "old_stps",
    "ro",
    "H_diag",
    "prev_flat_grad",
    "prev_loss",
    "al",
    "gram_sy",
    "gram_yy",
)
#: what a run that has started (n_iter > 0) must hold
_NEEDED = ("d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss")


# ---- checks shared with NewtonCG -----------------------------------------------------------


def distinct(params: list) -> None:
    """ValueError unless the params share no memory (the same array twice, overlapping views), in
    the words of the step's own check: a step writes each param from its slice of one flat vector,
    so one would overwrite the other's update. Checked at construction (as the first-order
    optimizers refuse a param given twice), not first inside a step after its closure has run.
    The params are C-contiguous here (checked before): their byte spans are their memory."""
    _backend.check_disjoint([(*byte_span(p), f"params[{i}]") for i, p in enumerate(params) if p.nbytes])


def same_params(params: list, dtype, n: int) -> None:
    """The params at a step as the optimizer's flat vectors were made for: a param replaced in
    ``param_groups[0]['params']`` between steps must be updatable in place, of the optimizer's dtype,
    and all of them ``n`` elements. Checked before the closure runs: another size or dtype was found
    by the first native call after it, its error naming the history (``S[0]``), or not at all
    (NewtonCG mixed a float32 param into its float64 state)."""
    for i, p in enumerate(params):
        if not hasattr(p, "dtype") or not hasattr(p, "flags"):
            raise TypeError(f"param_groups[0]['params'][{i}]: expected an array, got {type(p).__name__}")
        _backend.check_written(p, dtype, f"param_groups[0]['params'][{i}]")
    total = sum(int(p.size) for p in params)
    if total != n:
        raise ValueError(
            f"param_groups[0]['params']: hold {total} elements, the optimizer's state {n} "
            "(one flat vector of the params it was made with)"
        )


def follow_params(opt) -> bool:
    """``opt``'s params (LBFGS's, NewtonCG's one group) at a step, before the closure runs: a torch
    tensor given new memory (``tensor.data = ...``, ``set_``) stepped there (``_given.follow``; the
    step wrote the old memory, the tensor never moved again), one the optimizer cannot step (another
    dtype, sharing memory with another param) refused, nothing written; then :func:`same_params`.
    Whether a tensor moved or a param was put in place since the last step (its values are others
    than the step's caches hold)."""
    ps = opt._params
    if type(ps) is not list:  # (a moved tensor's new view is put in its slot: a tuple cannot take it)
        raise TypeError(f"param_groups[0]['params']: expected a list of arrays, got {type(ps).__name__}")

    def accept(i: int, name: str, view) -> None:
        _backend.check_written(view, opt._dtype, name)

    def accept_all(new: list) -> None:
        # (the moved tensors' views together: each against the others' old views refused two
        # params that swapped their memory, at every step)
        distinct(_given.with_new(ps, new))

    moved = opt._follow_tensors(ps, "param_groups[0]['params']", accept, accept_all)
    put = take_put(opt, ps)
    same_params(ps, opt._dtype, opt._n)
    # (an array the caller put in a slot since the last step, over other memory, holds other values
    # too: NewtonCG's cached gradient was of the old ones, and its step went on from them, never
    # moving the new. A new view of the same memory -- optkern.torch's, at each step -- holds the same.)
    last = vars(opt).get("_params_seen")
    if last is not None and len(last) == len(ps) and all(q[0] is not None and q[0]() is p for p, q in zip(ps, last)):
        return bool(moved or put)  # (the arrays seen last, every one: no address read)
    seen = [_seen(p, last[i] if last is not None and i < len(last) else None) for i, p in enumerate(ps)]
    replaced = last is not None and (len(last) != len(ps) or any(_other(s, q) for s, q in zip(seen, last)))
    opt._params_seen = seen
    return bool(moved or put or replaced)


def _seen(p, last) -> tuple:
    """``(weak reference, address, owns its memory)`` of a param at a step: a weak reference, as the
    tuple of the params themselves kept every replaced param alive until the next step; the address read
    only for an array not the one seen last (``ndarray.ctypes`` costs a microsecond: optkern.torch's
    params are new views at every step)."""
    if last is not None and last[0] is not None and last[0]() is p:
        return last
    try:
        ref = weakref.ref(p)
    except TypeError:  # (an array type without weak references: its address alone)
        ref = None
    return ref, _given.tensor_address(p), getattr(p, "base", None) is None


def _other(now: tuple, last: tuple) -> bool:
    """A param put in place since the last step: at another address, or at the address of an array
    that owned its memory and is gone (freed: a new array was given its memory, holding other values).
    A new view of the memory seen last (optkern.torch's, at each step) is the same param."""
    if now is last:
        return False
    return now[1] != last[1] or (last[2] and last[0] is not None and last[0]() is None)


def take_put(opt, ps: list) -> bool:
    """A torch tensor (any array optkern views zero-copy) put in ``ps``, ``opt``'s one group's list,
    in place, taken as the first-order optimizers take one (``_check_replaced``, ``_given_in_place``):
    its view checked as a tensor's new memory is (updatable in place, of the optimizer's dtype, sharing
    no memory with the other params), then put in its slot, the tensor followed and bumped from now
    on; a tensor followed in a slot the caller refilled, followed and bumped no more. (It was refused,
    "expected an array, got Tensor".) Whether a tensor was put in."""
    where = "param_groups[0]['params']"
    views = _backend.as_list(ps, where)  # (the same objects where the list holds arrays only)
    new = [(i, v) for i, (v, p) in enumerate(zip(views, ps)) if v is not p]
    for i, v in new:
        _backend.check_written(v, opt._dtype, f"{where}[{i}]")
    if new:
        distinct(_given.with_new(ps, new))  # (before any is put in: refused at every step)
    # (positions, not tensors, walked: _retrack rewrites the followed lists)
    taken = {i for i, _ in new}
    refilled = [
        k for k, v in zip(opt._tensor_positions, opt._tensor_views) if k < len(ps) and ps[k] is not v and k not in taken
    ]
    for k in refilled:
        opt._retrack(k, ps[k], ps[k])  # (an array of the caller's; a tensor taken below is retracked there)
    for i, v in new:
        given, ps[i] = ps[i], v
        opt._retrack(i, given, v)
    if new or refilled:
        opt._given_tensors = list(opt._followed)
    return bool(new)


def one_group(opt, sd, hyper: tuple, keys: tuple, strict: bool) -> tuple[dict, str, dict]:
    """``(group, where, entry)`` from the state dict ``sd`` of a one-group optimizer, its layout checked.

    ``group``: ``opt``'s group updated from the saved one (extra entries kept, as the first-order
    optimizers do; the caller checks the values); ``entry``: the state under the first parameter's
    index (``{}`` when there is none: not started), ``where`` its path. ``hyper``: the group keys
    ``strict`` requires; ``keys``: those the entry may hold. Changes nothing.
    """
    name = type(opt).__name__
    ignored = "load_state_dict(..., strict=False) ignores it"
    (ids,) = check_groups(sd, [len(opt.param_groups[0]["params"])], strict=strict)
    groups, state, ours = sd["param_groups"], sd["state"], opt.param_groups[0]
    if strict:
        for k in hyper:
            if k not in groups[0]:
                raise ValueError(
                    f"state_dict['param_groups'][0]: missing {k!r} (load_state_dict(..., strict=False) "
                    f"keeps this optimizer's value, {ours[k]!r})"
                )
    group = {**ours, **saved_values(groups[0], "state_dict['param_groups'][0]", ("params",)), "params": ours["params"]}
    entries = _entries_by_index(state)
    key, entry = entries.pop(ids[0], (ids[0], {}))
    if strict and entries:
        other = next(iter(entries.values()))[0]
        raise ValueError(
            f"state_dict['state'][{other!r}]: {name} keeps its state under its first parameter's index "
            f"{ids[0]} ({ignored})"
        )
    where = f"state_dict['state'][{key!r}]"
    if not isinstance(entry, dict):
        raise TypeError(f"{where}: expected a dict, got {type(entry).__name__}")
    if strict:
        for k in entry:
            if k not in keys:
                raise ValueError(
                    f"{where}: unknown key {k!r} ({name} state holds {', '.join(map(repr, keys))}; {ignored})"
                )
    return group, where, entry


def _shaped(shape: tuple, dtype):
    """What :func:`check_array` reads of a parameter (shape, size, dtype), for arrays that belong to none."""
    return types.SimpleNamespace(shape=shape, size=int(np.prod(shape)), dtype=np.dtype(dtype))


def vector(v, like, n: int, name: str):
    """A saved flat vector of ``n`` entries, checked as the first-order optimizers check a state array
    (floating point, the shape, finite in ``like``'s dtype), copied onto ``like``'s backend and dtype."""
    check_array(v, _shaped((n,), like.dtype), name)
    # ours (later writes to the dict's arrays do not reach it), on a cache line as the optimizer's own
    return _aligned.copy(_backend.asarray_like(v, like))


def count(entry: dict, key: str, where: str, strict: bool) -> int:
    """A non-negative counter of a state entry (required in a non-empty entry under ``strict``), at most
    2**63 - 1: one past it no run reaches (an evaluation a nanosecond for 292 years), a damaged or tampered
    entry, as a negative one is; 2**70 was loaded, and torch's int64 tensors or a C count cannot hold it."""
    if key not in entry and (not strict or not entry):
        return 0
    if key not in entry:
        raise ValueError(f"{where}: missing {key!r}")
    return _backend.integer(f"{where}[{key!r}]", entry[key], lo=0, hi=_backend.INT64_MAX)


# ---- LBFGS --------------------------------------------------------------------------------


def state_dict(opt, copy: bool = True) -> dict:
    """``opt``'s checkpoint; ``copy=False``: its vectors are ``opt``'s own buffers, not copies (the
    step reuses them: for a caller that wraps them, as optkern.torch.LBFGS does, like torch's own
    state tensors), its Gram matrices still copies."""
    g = opt.param_groups[0]
    group = {k: v for k, v in g.items() if k != "params"}
    group["params"] = list(range(len(g["params"])))
    st = {"func_evals": opt.state["func_evals"], "n_iter": opt.state["n_iter"]}
    if opt.state["n_iter"] > 0:
        keep = opt._xp.array if copy else (lambda a: a)
        k = len(opt._S)
        st.update(
            {
                "d": keep(opt._d),
                "t": opt._t,
                "old_dirs": [keep(y) for y in opt._Y],
                "old_stps": [keep(s) for s in opt._S],
                "ro": list(opt._ro),
                "H_diag": opt._h_diag,
                "prev_flat_grad": keep(opt._prev_g),
                "prev_loss": opt._prev_loss,
                "gram_sy": opt._sy[:k, :k].copy(),
                "gram_yy": opt._yy[:k, :k].copy(),
            }
        )
        pad = int(g["history_size"]) - (0 if opt._al is None else len(opt._al))
        # torch's layout: history_size slots, None past the history (torch's step writes al[i] for
        # each pair it holds and never extends the list). Left out where that list would outgrow the
        # vectors the checkpoint holds: a history_size of 2**40 (a cap here, not an allocation) made
        # state_dict() and optkern.torch.LBFGS's every step raise MemoryError after it moved the
        # params. Without "al" torch's step makes its own, and al is only read after it is written.
        if opt._al is not None and pad <= opt._n * (2 * k + 2):
            st["al"] = list(opt._al) + [None] * max(pad, 0)
    return {"state": {0: st} if st else {}, "param_groups": [group]}


def _list(st: dict, key: str, where: str):
    v = st[key]
    if not isinstance(v, (list, tuple)):
        raise TypeError(f"{where}[{key!r}]: expected a list, got {type(v).__name__}")
    return v


def _history(opt, st: dict, where: str) -> dict:
    """The vectors and numbers of a run that has started, checked and copied next to the params."""
    missing = [k for k in _NEEDED if k not in st]
    if missing:
        raise ValueError(f"{where}: missing {missing[0]!r} (needed once n_iter > 0)")
    at = lambda k: f"{where}[{k!r}]"  # noqa: E731
    like, n = opt._params[0], opt._n
    ys = [vector(y, like, n, f"{at('old_dirs')}[{i}]") for i, y in enumerate(_list(st, "old_dirs", where))]
    ss = [vector(s, like, n, f"{at('old_stps')}[{i}]") for i, s in enumerate(_list(st, "old_stps", where))]
    # ro = 1 / s.y and H_diag = s.y / y.y of pairs kept for their curvature s.y > 1e-10: positive (checked
    # as saved, then taken from the vectors, below)
    ro = [check_scalar(r, f"{at('ro')}[{i}]", 0.0, None, True) for i, r in enumerate(_list(st, "ro", where))]
    k = len(ys)
    if not k == len(ss) == len(ro):
        raise ValueError(f"{where}: old_dirs, old_stps and ro hold {k}, {len(ss)} and {len(ro)} entries (one per pair)")
    # (more pairs than the group's history_size are a history that a history_size lowered between steps
    # left -- optkern's own between steps, torch's for good, whose step never drops more than one --: kept,
    # the next step drops the oldest first, as it does in the optimizer that saved them (LBFGS._trim).
    # They were refused: the optimizer's own checkpoint did not load, not even into itself.)
    out = {
        "S": ss,
        "Y": ys,
        "d": vector(st["d"], like, n, at("d")),
        "prev_g": vector(st["prev_flat_grad"], like, n, at("prev_flat_grad")),
        # (the last step length, >= 0: the next step's first pair is s = t d; a negative one entered
        # the history reversed)
        "t": check_scalar(st["t"], at("t"), 0.0),
        "prev_loss": check_scalar(st["prev_loss"], at("prev_loss")),
    }
    check_scalar(st["H_diag"], at("H_diag"), 0.0, None, True)
    if ("gram_sy" in st) != ("gram_yy" in st):
        have, lack = ("gram_sy", "gram_yy") if "gram_sy" in st else ("gram_yy", "gram_sy")
        raise ValueError(f"{where}: has {have!r} without {lack!r}")
    out["sy"], out["yy"] = _gram(opt, st, ss, ys, where)
    sy, yy = out["sy"], out["yy"]
    for j in range(k):  # (pair j's products with itself and the pairs before it, as the step's push checks them)
        if not (keeps_pair(sy[j, j]) and np.isfinite(sy[j, : j + 1]).all() and np.isfinite(sy[:j, j]).all()) or not (
            np.isfinite(yy[j, : j + 1]).all()
        ):
            raise ValueError(
                f"{at('old_stps')}[{j}], {at('old_dirs')}[{j}]: not a pair the step keeps (s.y = {float(sy[j, j])!r} "
                f"must exceed {MIN_CURVATURE!r}, and its inner products with itself and the pairs before it be finite)"
            )
    out["ro"] = [1.0 / float(sy[j, j]) for j in range(k)]
    out["H_diag"] = float(sy[k - 1, k - 1] / yy[k - 1, k - 1]) if k else 1.0
    al = st.get("al")  # torch: history_size slots, None where unused; only a report (state_dict)
    if al is not None:
        al = [None if a is None else check_scalar(a, f"{at('al')}[{i}]") for i, a in enumerate(_list(st, "al", where))]
    out["al"] = al[:k] if al is not None and None not in al[:k] else None
    return out


def _gram(opt, st: dict, ss: list, ys: list, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The history's Gram matrices: the checkpoint's own (optkern's: the bits the run held, so a resumed
    run is bit-identical), checked against the vectors in O(k n) (:mod:`._lbfgs_gram`: a stale or tampered
    entry is refused); rebuilt by the step's push (``LBFGSHistory._gram_of``, k^2 n) when it holds none
    (torch's). ``ro`` and ``H_diag`` are derived from them by the caller, never read."""
    k = len(ss)
    if "gram_sy" not in st:
        return opt._gram_of(ss, ys)
    for key in ("gram_sy", "gram_yy"):
        check_array(st[key], _shaped((k, k), np.float64), f"{where}[{key!r}]")
    # (copies: later writes to the dict's arrays do not reach them)
    sy, yy = (np.array(_host(st[key]), dtype=np.float64) for key in ("gram_sy", "gram_yy"))
    if k:
        _lbfgs_gram.check(opt, ss, ys, sy, yy, where)
    return sy, yy


def _host(a):
    """A saved matrix as a NumPy array: a CuPy array's ``get()``, a torch tensor's ``numpy()`` (its
    ``__array__`` takes no ``copy``: NumPy 2 warns)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "detach"):
        t = a.detach().cpu()
        return (t.resolve_neg() if hasattr(t, "resolve_neg") else t).numpy()
    return a.get() if hasattr(a, "get") else a


def load_state_dict(opt, sd: dict, strict: bool = True) -> None:
    from .lbfgs import _NAMES, _check_group

    group, where, st = one_group(opt, sd, _NAMES, _KEYS, strict)
    _check_group(group, "state_dict['param_groups'][0]")
    new = {k: count(st, k, where, strict) for k in ("func_evals", "n_iter")}
    loaded = _history(opt, st, where) if new["n_iter"] > 0 else {}
    # everything checked: now change the optimizer
    opt.param_groups[0].update(group)
    opt._reset()
    opt.state.update(new)
    if loaded:
        opt._S, opt._Y, opt._ro = loaded["S"], loaded["Y"], loaded["ro"]
        opt._sy, opt._yy = loaded["sy"], loaded["yy"]  # k x k: _push grows them
        opt._d, opt._prev_g, opt._al = loaded["d"], loaded["prev_g"], loaded["al"]
        opt._t, opt._h_diag, opt._prev_loss = loaded["t"], loaded["H_diag"], loaded["prev_loss"]
