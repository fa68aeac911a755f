"""The check of a ``load_state_dict`` argument's keys, shared by the objects whose state is a flat dict
(schedulers, loaders, stoppers), re-exported by ``_backend``."""

from __future__ import annotations


def state_keys(state, required, optional=(), owner: str = "", name: str = "state") -> dict:
    """``state`` if it is a dict holding every key of ``required`` and none but those and ``optional``;
    else TypeError / ValueError naming the key (``name``: the argument as the caller calls it). An
    unknown key (a typo'd ``'relatve'``, another object's state) was ignored silently, and the load
    went on with this object's own value."""
    if not isinstance(state, dict):
        raise TypeError(f"{name}: expected a dict, got {type(state).__name__}")
    for k in required:
        if k not in state:
            raise ValueError(f"{name}: missing {k!r}")
    known = (*required, *optional)
    for k in state:
        if k not in known:
            holds = ", ".join(repr(x) for x in known)
            raise ValueError(f"{name}: unknown key {k!r} ({owner + ' state' if owner else 'it'} holds {holds})")
    return state
