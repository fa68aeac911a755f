"""A check's result reused while a param group holds the very same values.

``optim.Optimizer._hyper`` and ``optkern.torch``'s ``_Fused._hyper`` check a group's
hyper-parameters at every step (GradScaler's step checks them once more before it unscales). The
check reads nothing but the group's values, so while the group holds the very same keys and the very
same immutable objects it would return an equal result: one lookup and an identity compare instead."""

from __future__ import annotations

from operator import is_

_IMMUTABLE = frozenset({float, int, bool, str, type(None)})


def immutable(v) -> bool:
    """Whether ``v`` cannot change while it is the same object, and compares and converts as a
    built-in (exact types: a subclass or a NumPy scalar may override both; a tensor or a list may
    change in place)."""
    if type(v) is tuple:
        return all(map(immutable, v))
    return type(v) in _IMMUTABLE


def cached(cache: dict, key, group: dict):
    """The result :func:`remember` kept for ``group`` under ``key`` while the group still holds the
    very same keys and value objects, else None."""
    hit = cache.get(key)
    if hit is not None and hit[0] == tuple(group) and all(map(is_, group.values(), hit[1])):
        return hit[2]
    return None


def remember(cache: dict, key, group: dict, result, *keep) -> None:
    """Keep ``result`` for ``group``'s values when every one but its params is :func:`immutable`
    (``keep``: objects held with it, e.g. the group whose id is the key, so the id stays its)."""
    if all(immutable(v) for k, v in group.items() if k != "params"):
        cache[key] = (tuple(group), list(group.values()), result, *keep)
