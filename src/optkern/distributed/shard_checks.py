"""A ZeRO-1 shard's layout (``state_dict()['zero']``) against this rank's, before it loads: each
difference refused naming the entry and what it means (another world size, other params, another
rank's shard, another state storage's alignment)."""

from __future__ import annotations

import numpy as np

from . import sharded_setup  # (a module: it imports this one through sharded_state)


def check_shard(lay: dict, ours: dict, saved, pieces: list) -> None:
    """ValueError where shard layout ``lay`` (with the local optimizer's state dict ``saved``)
    does not load into this rank's layout ``ours`` (``pieces``: per group, this rank's arrays)."""
    why = _relaid(_saved_storage(lay, saved), (ours["state_dtype"], ours["block"]))
    for k in ("world", "shapes", "numel", "chunk", "rank"):  # (the first that differs says why)
        theirs = lay.get(k)
        if k == "shapes" and isinstance(theirs, (list, tuple)):  # (a JSON round trip makes tuples lists)
            theirs = [tuple(s) if isinstance(s, (list, tuple)) else s for s in theirs]
        if theirs != ours[k]:
            raise ValueError(
                f"state_dict['zero'][{k!r}]: is {lay.get(k)!r}, this optimizer's is {ours[k]!r}" + _hint(k, why)
            )
    _check_offsets(lay, ours["offsets"], why)
    _check_pieces(saved, pieces)


def _saved_storage(lay: dict, saved) -> tuple | None:
    """A shard's (state_dtype, block its params align to): its layout's, or (saved before layouts
    held them) its state entries' (an 8-bit one holds its block); None where nothing tells."""
    if "block" in lay:
        return lay.get("state_dtype"), lay["block"]
    state = saved.get("state") if isinstance(saved, dict) else None
    for entry in state.values() if isinstance(state, dict) else ():
        if isinstance(entry, dict):
            fmt = entry.get("state_dtype", "float32")
            saved_block = {"block_size": entry["block"]} if "block" in entry else {}
            return fmt, sharded_setup.align_of({"state_dtype": fmt, **saved_block})
    return None


def _relaid(theirs: tuple | None, ours: tuple) -> str:
    """Why a shard at this world size has another chunk or offsets: its states' storage aligned the
    params to another block (8-bit states: to whole blocks; else to 1), or "" if not that. (The
    message said "to change the world size" where the world was the same: the storage differed.)"""
    if theirs is None or theirs[1] == ours[1]:
        return ""

    def said(s: tuple) -> str:
        return f"state_dtype={s[0]!r}" + (f", block_size={s[1]}" if s[1] != 1 else "")

    return (
        f" (the shard is of an optimizer with {said(theirs)}, this one has {said(ours)}, which lays the "
        "params out at other offsets: load a consolidate_state_dict() checkpoint to change the storage)"
    )


def _hint(key: str, why: str) -> str:
    """What a shard's layout entry ``key`` differing from this optimizer's means. (Every difference
    said "load a consolidate_state_dict() checkpoint to change the world size", at the same world
    size too: a shard of other params, another rank's, or of another storage.)"""
    if key == "world":
        return " (load a consolidate_state_dict() checkpoint to change the world size)"
    if key in ("shapes", "numel"):
        return " (a shard of other parameters: load a checkpoint of these)"
    if why:
        return why
    if key == "rank":
        return " (another rank's shard: each rank loads its own, or every rank a consolidate_state_dict() checkpoint)"
    return " (load a consolidate_state_dict() checkpoint)"


def _check_offsets(lay: dict, ours: list, why: str) -> None:
    """A shard's params at this optimizer's flat offsets (8-bit states align each to a block, other
    states do not: the same world, numel and chunk can hold them elsewhere). A shard saved before
    layouts held offsets had them consecutive."""
    theirs = lay.get("offsets")
    if theirs is None:
        sizes = [int(np.prod(s)) for s in lay.get("shapes") or ()]
        theirs = [sum(sizes[:i]) for i in range(len(sizes))]
    try:
        theirs = [int(o) for o in theirs]
    except (TypeError, ValueError):
        raise TypeError(f"state_dict['zero']['offsets']: expected a list of integers, got {theirs!r}") from None
    if theirs != ours:
        raise ValueError(
            f"state_dict['zero']['offsets']: is {theirs!r}, this optimizer's is {ours!r}"
            + (
                why
                or " (a shard laid out for another state_dtype or block_size: load a "
                "consolidate_state_dict() checkpoint)"
            )
        )


def _check_pieces(saved, pieces: list) -> None:
    """A shard's local arrays per group as this rank's (``pieces``). With 8-bit states, shards saved
    before each param's piece of a slice was an array of its own hold one array per group slice:
    where their params lay at the same offsets (each a whole number of blocks) the local optimizer
    refused them with "has 1 parameters, this optimizer's group has 2", which says nothing of what
    to do. (Anything else malformed: the local optimizer's own check names it.)"""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or len(groups) != len(pieces):
        return
    for gi, (g, cuts) in enumerate(zip(groups, pieces)):
        held = g.get("params") if isinstance(g, dict) else None
        if isinstance(held, (list, tuple)) and len(held) != len(cuts):
            raise ValueError(
                f"state_dict['optimizer']['param_groups'][{gi}]['params']: has {len(held)} arrays, this rank's "
                f"slice of group {gi} is {len(cuts)} (a shard laid out otherwise: 8-bit shards saved before "
                "each param's piece of a slice was an array of its own hold one per group; load a "
                "consolidate_state_dict() checkpoint)"
            )
