"""Parameter groups added after a wrapper was made (``add_param_group``): what both wrappers share.

A wrapper builds its collectives from the optimizer's groups as they were (DistributedOptimizer's
buckets, ShardedOptimizer's flat buffer and slices). A group added later, through the wrapper's
``add_param_group`` (collective) or to the wrapped optimizer directly (followed at the next
``step`` / ``synchronize``, which compare the ranks' group counts in the allreduce they make
anyway), rebuilds them on every rank together. An ``add_param_group`` refused on one rank is
undone on the ranks that had accepted it (:func:`restorable`): the ranks keep the same groups.
"""

from __future__ import annotations


def _copy(v):
    if type(v) is list:
        return ("list", v, list(v))
    if type(v) is dict:
        return ("dict", v, dict(v))
    return ("value", v, None)


def restorable(obj):
    """A function that puts ``obj``'s attributes back as they are now: lists and dicts refilled in
    place with their current items (an optimizer's ``add_param_group`` appends to its own lists:
    ``param_groups``, its runs, its index), others rebound, attributes added since removed.
    Enough to undo an append-only change such as adding a group, not a change inside an item."""
    saved = {k: _copy(v) for k, v in vars(obj).items()}

    def restore() -> None:
        for k in [k for k in vars(obj) if k not in saved]:
            delattr(obj, k)
        for k, (kind, v, items) in saved.items():
            if kind == "list":
                v[:] = items
            elif kind == "dict":
                v.clear()
                v.update(items)
            setattr(obj, k, v)

    return restore


def grown(optimizer, counts: list) -> bool:
    """Whether ``optimizer`` holds more groups than the wrapper was built for (``counts``: one per
    group): a group added to it directly, since."""
    return len(optimizer.param_groups) != len(counts)
