"""pickle and ``copy.deepcopy`` for objects that hold the native module (``optkern._cpu`` /
``optkern._cuda``: a module does not pickle): the module is kept by its name and imported again."""

from __future__ import annotations

import importlib
import types

from ._serial import unlocked


class _ModuleName(str):
    """A native module's name standing in for it in a pickled state."""


def by_name(state: dict) -> dict:
    """``state`` with each module value replaced by its name."""
    return {k: _ModuleName(v.__name__) if isinstance(v, types.ModuleType) else v for k, v in state.items()}


def imported(state: dict) -> dict:
    """``by_name``'s inverse: each name of a module imported."""
    return {k: importlib.import_module(v) if isinstance(v, _ModuleName) else v for k, v in state.items()}


class NativeByName:
    """A mixin: the attributes that are native modules pickled and copied by name."""

    def __getstate__(self) -> dict:
        return by_name(unlocked(vars(self)))

    def __setstate__(self, state: dict) -> None:
        vars(self).update(imported(state))
