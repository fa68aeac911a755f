"""ZeRO-1 checkpoints: a rank's slice of the state <-> the unsharded optimizer's state dict.

The local optimizer has one parameter per group it holds part of: the group's slice of
the flat buffer. Its state arrays are the same slices of the group's state laid out flat,
so consolidating is concatenating the slices in flat order and cutting them into the
arrays' shapes; re-sharding is the reverse for another slice. 8-bit states (``state_dtype=
"int8"``) travel as their float32 values: a slice's blocks are not the unsharded layout's, so
each side (re)quantizes its own (the same layout again gives the same codes back).
"""

from __future__ import annotations

import numpy as np

from .. import _backend, lowp
from ..optim._lowp import LowPrecisionMixin
from ..optim._state_checks import check_groups


def _is_array_state(name, v, shape) -> bool:
    """A per-element state array (exp_avg, ...) rather than a scalar (step, b_sq, mu_product)."""
    return name != "step" and hasattr(v, "shape") and tuple(v.shape) == tuple(shape)


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
        scales = entry.get(f"{k}_scale")
        if scales is None or not hasattr(v, "shape"):
            continue
        out.pop(f"{k}_scale")  # (the optimizers' own decoding of a stored 8-bit state, with its checks)
        values = LowPrecisionMixin._lowp_widen(v, "int8", entry, k, block, f"{where}[{k!r}]")
        out[k] = np.asarray(values).reshape(np.shape(v))
    return out


def _scalar(v):
    return _backend.to_numpy(v).item() if hasattr(v, "shape") else v


def local_pieces(optimizer, slices) -> list:
    """What this rank contributes to a consolidated checkpoint: per group slice, host copies."""
    sd = optimizer.state_dict()
    pieces, k = [], 0
    for gi, (a, b) in enumerate(slices):
        if b <= a:
            continue
        entry = _float_entry(sd["state"].get(k) or {}, f"state[{k}]")
        arrays = {n: _backend.to_numpy(v).copy() for n, v in entry.items() if _is_array_state(n, v, (b - a,))}
        scalars = {n: _scalar(v) for n, v in entry.items() if n not in arrays}
        pieces.append({"gi": gi, "a": a, "b": b, "arrays": arrays, "scalars": scalars, "stepped": bool(entry)})
        k += 1
    return pieces


def consolidate(gathered, param_groups, ranges, counts, params) -> dict:
    """The unsharded state dict from every rank's pieces (``counts``: parameters per group)."""
    by_group: dict[int, list] = {}
    for rank_pieces in gathered:
        for pc in rank_pieces:
            by_group.setdefault(pc["gi"], []).append(pc)
    state, groups, first = {}, [], 0
    for gi, n in enumerate(counts):
        group_params = list(range(first, first + n))
        first += n
        pieces = sorted(by_group.get(gi, []), key=lambda pc: pc["a"])
        if pieces and all(pc["stepped"] for pc in pieces):
            names = list(pieces[0]["arrays"])
            flat = {nm: np.concatenate([pc["arrays"][nm] for pc in pieces]) for nm in names}
            off = 0
            for i in group_params:
                p = params[i]
                entry = dict(pieces[0]["scalars"])
                for nm in names:
                    entry[nm] = flat[nm][off : off + p.size].reshape(p.shape).copy()
                state[i] = entry
                off += p.size
        groups.append({**{k: v for k, v in param_groups[gi].items() if k != "params"}, "params": group_params})
    return {"state": state, "param_groups": groups}


def reshard(sd, slices, ranges, counts, params) -> dict:
    """The local optimizer's state dict for this rank's ``slices`` from an unsharded one."""
    keys = check_groups(sd, list(counts), strict=False)  # (a shard, with 'zero', is not resharded)
    saved_groups, saved_state = list(sd["param_groups"]), sd["state"]
    state, groups, k, first = {}, [], 0, 0
    for gi, ((a, b), (g_lo, _g_hi), saved) in enumerate(zip(slices, ranges, saved_groups)):
        where = f"state_dict['param_groups'][{gi}]"
        ids, n = keys[gi], counts[gi]
        mine = params[first : first + n]
        first += n
        hyper = {kk: v for kk, v in saved.items() if kk != "params"}
        if b <= a:
            groups.append({**hyper, "params": []})
            continue
        entries = [
            _float_entry(saved_state.get(i, saved_state.get(str(i))) or {}, f"state_dict['state'][{i!r}]") for i in ids
        ]
        if any(entries) and not all(entries[j] or mine[j].size == 0 for j in range(n)):
            raise ValueError(
                f"{where}: some parameters have state and some do not; a sharded optimizer steps whole groups"
            )
        if any(entries):
            j0 = next(j for j, e in enumerate(entries) if e)
            ref = entries[j0]
            names = [nm for nm, v in ref.items() if _is_array_state(nm, v, mine[j0].shape)]
            entry = {nm: _scalar(v) for nm, v in ref.items() if nm not in names}
            for nm in names:
                parts = []
                for j, (e, p) in enumerate(zip(entries, mine)):
                    if p.size == 0:
                        continue
                    if nm not in e:
                        raise ValueError(f"state_dict['state'][{ids[j]!r}]: missing {nm!r}")
                    v = _backend.to_numpy(e[nm])
                    if v.size != p.size:
                        raise ValueError(
                            f"state_dict['state'][{ids[j]!r}][{nm!r}]: expected {p.size} elements, got {v.size}"
                        )
                    parts.append(np.asarray(v).reshape(-1))
                entry[nm] = np.concatenate(parts)[a - g_lo : b - g_lo]
            state[k] = entry
        groups.append({**hyper, "params": [k]})
        k += 1
    return {"state": state, "param_groups": groups}
