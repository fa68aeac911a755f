"""torch's ``Optimizer.state`` as an optkern.torch step sees it: mappings that count their changes,
so a step knows in O(1) that nothing changed since the last one and may reuse what it cached.

``_TrackedState`` (the ``defaultdict`` of per-param dicts) moves its ``version`` whenever a param's
dict is set, added, removed or replaced (``opt.state[p] = {...}``: the step must then use the new
dict's tensors); the view cache holds the per-param dicts it found, so a changed version drops it.
``_TrackedEntry`` (a per-param dict the optimizer made) moves one global count on any change inside
it (``opt.state[p]["exp_avg"] = t``); while the count stands still, the cache's per-entry identity
check (``_same_entries``: 600 dict lookups at 200 params, ~1.3% of a 16M-float Adam step, their
memory cold after the step's traffic) is skipped. A per-param dict the user made is plain: its runs
are checked entry by entry every step.

Checkpoints hold plain dicts (``state_dict``: torch.load's weights_only unpickler knows no other).
"""

from __future__ import annotations

import collections
import functools


def _counted(base: type, name: str, bump):
    """``base``'s mutator ``name``, then ``bump(self)`` (dict's C methods do not go through
    ``__setitem__``, so each is wrapped)."""
    method = getattr(base, name)

    @functools.wraps(method)
    def counted(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        finally:
            bump(self)

    return counted


_MUTATORS = ("__setitem__", "__delitem__", "clear", "pop", "popitem", "setdefault", "update", "__ior__")


def _counting(cls: type) -> type:
    """``cls`` (a subclass of a dict type) with every mutator of its base followed by ``cls._bump``."""
    base = cls.__mro__[1]
    for name in _MUTATORS:
        setattr(cls, name, _counted(base, name, cls._bump))  # type: ignore[attr-defined]
    return cls


@_counting
class _TrackedEntry(dict):
    """A per-param state dict: ``_TrackedEntry.changes`` moves on any change to any of them."""

    __slots__ = ()
    changes = 0

    def _bump(self) -> None:
        _TrackedEntry.changes += 1


@_counting
class _TrackedState(collections.defaultdict):
    """torch's ``defaultdict(dict)`` of per-param dicts, ``version`` moved on any change to which
    dict a param has (defaultdict's ``__missing__`` comes through ``__setitem__``)."""

    version = 0

    def _bump(self) -> None:
        self.version += 1


def tracked(state, own: bool = False) -> _TrackedState:
    """``state`` (torch's ``defaultdict(dict)``, or any mapping) as a ``_TrackedState`` making
    ``_TrackedEntry`` dicts: itself, or a shallow copy holding the same per-param dicts; ``own``:
    the per-param dicts are the optimizer's own (torch's loader just made them), copied into
    ``_TrackedEntry`` dicts.
    """
    if type(state) is _TrackedState and not own:
        return state
    if own:
        return _TrackedState(_TrackedEntry, {k: _TrackedEntry(v) for k, v in state.items()})
    return _TrackedState(_TrackedEntry, state)


def plain(state: dict) -> dict:
    """A ``state_dict()['state']`` with plain per-param dicts."""
    return {k: dict(v) if type(v) is _TrackedEntry else v for k, v in state.items()}
