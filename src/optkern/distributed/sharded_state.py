"""ZeRO-1 checkpoints: a rank's slice of the state <-> the unsharded optimizer's state dict.

The local optimizer has one parameter per group it holds part of: the group's slice of
the flat buffer (with 8-bit states, one per array it holds part of: each array's piece of the
slice). Its state arrays are the same pieces of the group's state laid out flat, so
consolidating is placing the pieces at their flat offsets and cutting them into the arrays'
shapes (at their flat offsets: 8-bit states leave a gap before an array cut by a rank boundary,
to start it at a block); re-sharding is the reverse for other pieces. 8-bit states (``state_dtype="int8"``) travel as
their float32 values, which each side quantizes again in the same blocks (each array's own,
from its element 0): the same codes back.
"""

from __future__ import annotations

import numpy as np

from .. import _backend, lowp
from .._lowp_blocks import block_scale_name
from ..optim._lowp import LowPrecisionMixin
from ..optim._run import _Run
from ..optim._state_checks import (
    NONNEGATIVE,
    SCALARS,
    _entries_by_index,
    check_array,
    check_groups,
    check_listed,
    check_scalar,
    check_step,
)
from . import shard_checks


def _array_names(optimizer) -> tuple:
    """The names of the per-element state arrays (exp_avg, master_param, ...): the optimizer's own
    list, not a guess from shapes (a one-element slice's array looks like a scalar, and a state
    saved with the wrong shape must be named as wrong, not taken for a scalar)."""
    return tuple(optimizer._state_names)


def state_bytes(optimizer) -> int:
    total = 0
    for entry in optimizer.state_dict()["state"].values():
        for v in entry.values():
            if hasattr(v, "nbytes") and getattr(v, "ndim", 0) > 0:
                total += int(v.nbytes)
    return total


def _float_entry(entry: dict, where: str) -> dict:
    """An 8-bit state entry (``state_dtype`` 'int8': uint8 codes, ``<name>_scale``, ``block``) as
    the float32 values it holds, without its format keys; any other entry as it is."""
    if not isinstance(entry, dict) or entry.get("state_dtype") != "int8":
        return entry
    block = lowp._block(entry.get("block", 256))
    out = {k: v for k, v in entry.items() if k not in ("state_dtype", "block")}
    for k, v in entry.items():
        scales = entry.get(block_scale_name(k))
        if scales is None or not hasattr(v, "shape"):
            continue
        out.pop(block_scale_name(k))  # (the optimizers' own decoding of a stored 8-bit state, with its checks)
        values = LowPrecisionMixin._lowp_widen(v, "int8", entry, k, block, f"{where}[{k!r}]")
        out[k] = np.asarray(values).reshape(np.shape(v))
    return out


def _float32_entry(entry: dict, names, where: str) -> dict:
    """An entry in any storage format as the float32 values the unsharded loader checks (8-bit
    codes dequantized, bfloat16 widened: exact), its format keys gone; the local optimizer
    stores them in its own format again."""
    entry = _float_entry(entry, where)
    fmt = entry.get("state_dtype", "float32")
    if fmt != "bfloat16":
        return entry
    out = {k: v for k, v in entry.items() if k != "state_dtype"}
    for k in names:
        if entry.get(k) is not None:
            v = LowPrecisionMixin._lowp_widen(entry[k], fmt, entry, k, 0, f"{where}[{k!r}]")
            out[k] = v if v is entry[k] else np.asarray(v).reshape(np.shape(entry[k]))
    return out


def _scalar(v):
    """A one-element array as a number (step, mu_product, b_sq); anything else as it is (an unknown
    key the local optimizer's load then names)."""
    return _backend.to_numpy(v).item() if hasattr(v, "shape") and getattr(v, "size", 0) == 1 else v


def local_pieces(optimizer, pieces) -> list:
    """What this rank contributes to a consolidated checkpoint: per local array (``pieces``: per
    group, the arrays' flat ranges), host copies."""
    sd = optimizer.state_dict()
    names = _array_names(optimizer)
    out, k = [], 0
    for gi, cuts in enumerate(pieces):
        for a, b in cuts:
            entry = _float_entry(sd["state"].get(k) or {}, f"state[{k}]")
            arrays = {n: _backend.to_numpy(v).copy() for n, v in entry.items() if n in names and v is not None}
            scalars = {n: _scalar(v) for n, v in entry.items() if n not in arrays}
            out.append({"gi": gi, "a": a, "b": b, "arrays": arrays, "scalars": scalars, "stepped": bool(entry)})
            k += 1
    return out


def consolidate(gathered, param_groups, ranges, counts, params, offs) -> dict:
    """The unsharded state dict from every rank's pieces (``counts``: parameters per group,
    ``offs``: each param's flat offset, ``ranges``: each group's; the gaps between them are
    dropped)."""
    by_group: dict[int, list] = {}
    for rank_pieces in gathered:
        for pc in rank_pieces:
            by_group.setdefault(pc["gi"], []).append(pc)
    state, groups, first = {}, [], 0
    for gi, n in enumerate(counts):
        group_params = list(range(first, first + n))
        first += n
        pieces = by_group.get(gi, [])
        if pieces and all(pc["stepped"] for pc in pieces):
            g_lo, g_hi = ranges[gi]
            flat = {}
            for nm in pieces[0]["arrays"]:  # (the group's flat range: each piece at its place)
                parts = [pc["arrays"][nm].reshape(-1) for pc in pieces]
                flat[nm] = np.zeros(g_hi - g_lo, dtype=np.result_type(*parts))
                for pc, part in zip(pieces, parts):
                    flat[nm][pc["a"] - g_lo : pc["b"] - g_lo] = part
            for i in group_params:
                p, off = params[i], offs[i] - g_lo
                entry = dict(pieces[0]["scalars"])
                for nm, f in flat.items():
                    entry[nm] = f[off : off + p.size].reshape(p.shape).copy()
                state[i] = entry
        groups.append({**{k: v for k, v in param_groups[gi].items() if k != "params"}, "params": group_params})
    return {"state": state, "param_groups": groups}


def reshard(sd, optimizer, pieces, ranges, counts, params, offs) -> dict:
    """The local optimizer's state dict for this rank's arrays (``pieces``: per group, their flat
    ranges) from an unsharded one.

    Every group is checked, not only those this rank holds part of: each rank loads the same
    dict, so each refuses a bad one with the same error (none goes on alone to the next step's
    collectives)."""
    # strict, as the unsharded optimizer's default load: an unknown key or the state of an index no
    # group lists was dropped here in silence (the unsharded optimizer refuses both, naming them)
    keys = check_groups(sd, list(counts), strict=True)  # (a shard, with 'zero', is not resharded)
    check_listed(_entries_by_index(sd["state"]), keys)
    names = _array_names(optimizer)
    scalar_names = tuple(getattr(optimizer, "_scalar_names", ()))
    saved_groups, saved_state = list(sd["param_groups"]), sd["state"]
    merged: list = []
    first = 0
    for gi, n in enumerate(counts):
        mine = params[first : first + n]
        first += n
        merged.append(_group_entry(saved_state, keys[gi], mine, names, scalar_names, gi))
    state, groups, k, first = {}, [], 0, 0
    for gi, (cuts, (g_lo, g_hi), saved) in enumerate(zip(pieces, ranges, saved_groups)):
        at = [o - g_lo for o, p in zip(offs[first : first + counts[gi]], params[first : first + counts[gi]]) if p.size]
        first += counts[gi]
        hyper = {kk: v for kk, v in saved.items() if kk != "params"}
        group_state = merged[gi]
        laid = {}  # (the group's arrays laid out flat, once for all its pieces here)
        if group_state is not None and cuts:
            laid = {nm: _laid(parts, at, g_hi - g_lo) for nm, parts in group_state[1].items()}
        ks = []
        for a, b in cuts:
            if group_state is not None:
                state[k] = {**group_state[0], **{nm: v[a - g_lo : b - g_lo] for nm, v in laid.items()}}
            ks.append(k)
            k += 1
        groups.append({**hyper, "params": ks})
    return {"state": state, "param_groups": groups}


def _laid(parts: list, at: list, n: int) -> np.ndarray:
    """A group's params' flat arrays ``parts`` laid out as in the flat buffer (``at``: their
    offsets in the group's ``n`` elements; the gaps between them, zeros)."""
    out = np.zeros(n, dtype=np.result_type(*parts))
    for part, o in zip(parts, at):
        out[o : o + part.size] = part
    return out


def _group_entry(saved_state, ids, mine, names, scalar_names, gi: int) -> tuple | None:
    """One group's state as the single entry a slice of it takes: (scalars, {array name: the
    params' flat arrays in order}), or None when no parameter of the group has state.

    The local optimizer steps a group's slice as one parameter, with one step count: the
    group's parameters must agree on everything but their arrays (a parameter skipped by a
    ``None`` gradient has fewer steps than the others: refused, naming both entries). Each
    array is checked as an unsharded optimizer's load checks it (its parameter's shape, ...).
    Zero-size parameters hold no element of the flat buffer: their entries are ignored."""
    where = f"state_dict['param_groups'][{gi}]"
    entries = {}
    for j, (i, p) in enumerate(zip(ids, mine)):
        raw = saved_state.get(i, saved_state.get(str(i)))
        if p.size and isinstance(raw, dict) and not raw:  # (read as "no state": the group's, silently)
            raise ValueError(f"state_dict['state'][{i!r}]: empty (a parameter that has not taken a step has no entry)")
        if p.size and raw:
            if not isinstance(raw, dict):
                raise TypeError(f"state_dict['state'][{i!r}]: expected a dict, got {type(raw).__name__}")
            entries[j] = _float32_entry(raw, names, f"state_dict['state'][{i!r}]")
    live = [j for j, p in enumerate(mine) if p.size]
    if not entries:
        return None
    bare = [j for j in live if j not in entries]
    if bare:
        raise ValueError(
            f"{where}: some parameters have state and some do not (state_dict['state'][{ids[bare[0]]!r}] has "
            f"none, state_dict['state'][{ids[next(iter(entries))]!r}] has); a sharded optimizer steps whole groups"
        )
    ref_j = live[0]
    ref_where = f"state_dict['state'][{ids[ref_j]!r}]"
    ref_arrays = {nm for nm in names if entries[ref_j].get(nm) is not None}
    ref_numbers = _numbers(entries[ref_j], scalar_names, ref_where)
    arrays: dict = {nm: [] for nm in names if nm in ref_arrays}
    for j in live:
        e, ew = entries[j], f"state_dict['state'][{ids[j]!r}]"
        have = {nm for nm in names if e.get(nm) is not None}
        if have != ref_arrays:
            nm, lacks = min((nm, ew if nm in ref_arrays else ref_where) for nm in have ^ ref_arrays)
            raise ValueError(f"{lacks}: missing {nm!r} (other parameters of its group have it)")
        for nm in arrays:
            check_array(e[nm], mine[j], f"{ew}[{nm!r}]", nm in NONNEGATIVE)
            arrays[nm].append(np.asarray(_backend.to_numpy(e[nm])).reshape(-1))
        nums = _numbers(e, scalar_names, ew)
        for key in [k for k in ("step", *scalar_names) if k in nums or k in ref_numbers]:  # step first
            if key not in nums or key not in ref_numbers:
                raise ValueError(
                    f"{ew if key not in nums else ref_where}: missing {key!r} (other parameters of its group have it)"
                )
            if nums[key] != ref_numbers[key]:
                raise ValueError(
                    f"{ew}[{key!r}]: {nums[key]!r} differs from {ref_where}[{key!r}] = {ref_numbers[key]!r} in the "
                    "same parameter group (a sharded optimizer steps a group's slice as one array, with one "
                    "step count: load this state into an unsharded optimizer)"
                )
    scalars = {nm: _scalar(v) for nm, v in entries[ref_j].items() if nm not in arrays}
    return scalars, arrays


def _numbers(entry: dict, scalar_names, where: str) -> dict:
    """An entry's step and per-parameter scalars, as checked numbers (a tensor step, a float
    mu_product ...), for comparing the entries of one group."""
    out: dict = {}
    if entry.get("step") is not None:
        out["step"] = check_step(entry["step"], f"{where}['step']")
    for nm in scalar_names:
        if entry.get(nm) is not None:
            lo, hi, lo_open = SCALARS.get(nm, (None, None, False))
            out[nm] = check_scalar(entry[nm], f"{where}[{nm!r}]", lo, hi, lo_open)
    return out


def shard_counts(optimizer, pieces) -> list:
    """Per group, what every rank holding a slice of it must have loaded alike (None on a rank
    without one): the step count and the per-group scalars (NAdam's mu_product, AdaGrad-Norm's
    b_sq), or "no state". A group steps as one array: a shard from another step of the run
    (rank 0's from one checkpoint, rank 1's from another) stepped its slice with another bias
    correction than the other slices, silently. (``pieces``: per group, the local arrays.)"""
    state = optimizer.state_dict()["state"]
    keys = ("step", *getattr(optimizer, "_scalar_names", ()))
    out: list[str | None] = []
    k = 0
    for cuts in pieces:
        if not cuts:
            out.append(None)
            continue
        entry = state.get(k) or {}
        said = ", ".join(f"{n} {_scalar(entry[n])!r}" for n in keys if entry.get(n) is not None)
        out.append(said or "no state")
        k += len(cuts)
    return out


def shards_apart(counts: list) -> ValueError | None:
    """The ValueError for ranks whose :func:`shard_counts` differ on a group they hold, or None."""
    for gi in range(len(counts[0]) if counts else 0):
        held = [(r, c[gi]) for r, c in enumerate(counts) if c[gi] is not None]
        bad = next(((r, c) for r, c in held if c != held[0][1]), None)
        if bad is not None:
            return ValueError(
                f"state_dict: rank {bad[0]} loaded a shard of param_groups[{gi}] at {bad[1]}, rank {held[0][0]} at "
                f"{held[0][1]} (the slices of a group step as one array: load the shards of one checkpoint)"
            )
    return None


def load(zopt, state_dict) -> None:
    """``ShardedOptimizer.load_state_dict`` on this rank (the ranks' agreement is the caller's):
    a consolidated dict resharded to this rank's slices, or this rank's own shard."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
    if "zero" in state_dict:
        lay, ours = state_dict["zero"], zopt._layout()
        if not isinstance(lay, dict):
            raise TypeError(f"state_dict['zero']: expected a dict (a shard's layout), got {type(lay).__name__}")
        if "optimizer" not in state_dict:
            raise ValueError("state_dict: a shard (with 'zero') is missing 'optimizer'")
        try:
            shard_checks.check_shard(lay, ours, state_dict["optimizer"], zopt._pieces)
            zopt.optimizer.load_state_dict(state_dict["optimizer"])
        except (TypeError, ValueError) as e:
            raise _inside_optimizer(e) from e
        return
    local = reshard(state_dict, zopt.optimizer, zopt._pieces, zopt._ranges, zopt._counts, zopt._user, zopt._offs)
    zopt.optimizer.load_state_dict(local)


def _inside_optimizer(e: Exception) -> Exception:
    """``e`` of the local optimizer's checks, which name paths in its own state dict
    (``state_dict['state'][0]['step']``), naming them in the shard, under ``['optimizer']``."""
    root, msg = "state_dict", str(e)
    if msg.startswith(root) and not msg.startswith((f"{root}['zero']", f"{root}['optimizer']")):
        msg = f"{root}['optimizer']" + msg[len(root) :]
    return type(e)(msg)


def swapped(v, swap: dict, seen: set):
    """``v`` with each object of ``swap`` (id -> (old, new)) replaced by its new one, in the lists,
    dicts, tuples and runs (``_Run``) it holds; lists, dicts and runs changed in place."""
    hit = swap.get(id(v))
    if hit is not None and hit[0] is v:
        return hit[1]
    if id(v) in seen:
        return v
    if isinstance(v, list):
        seen.add(id(v))
        v[:] = [swapped(x, swap, seen) for x in v]
    elif isinstance(v, dict):
        seen.add(id(v))
        for k, x in list(v.items()):
            v[k] = swapped(x, swap, seen)
    elif isinstance(v, tuple) and not hasattr(v, "_fields"):
        return tuple(swapped(x, swap, seen) for x in v)
    elif isinstance(v, _Run):
        seen.add(id(v))
        for k in _Run.__slots__:
            if hasattr(v, k):
                setattr(v, k, swapped(getattr(v, k), swap, seen))
    return v
