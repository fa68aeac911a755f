"""GradScaler's factors, interval and state (a mixin of ``optkern.amp.GradScaler``): torch's
getters and setters, the growth rule checked where it is used, ``state_dict`` / ``load_state_dict``,
and pickling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _backend
from ._amp_checks import _KEYS, _checked_state, _float32_in
from ._amp_states import Iteration
from ._checked_values import cached, remember
from ._serial import serialized, unlocked


class ScalerConfig:
    """A mixin of ``GradScaler`` (its scale, growth tracker, factors, interval and iteration record)."""

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...

    def get_growth_factor(self) -> float:
        """The ``growth_factor`` in use (torch's ``get_growth_factor``)."""
        return self.growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        """torch's ``set_growth_factor``, checked by the constructor's rule (ValueError / TypeError
        naming ``new_factor``; torch takes any value) before it is assigned."""
        self.growth_factor = _float32_in("new_factor", new_factor, 1.0)

    def get_backoff_factor(self) -> float:
        """The ``backoff_factor`` in use (torch's ``get_backoff_factor``)."""
        return self.backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        """torch's ``set_backoff_factor``, checked by the constructor's rule (in (0, 1))."""
        self.backoff_factor = _float32_in("new_factor", new_factor, 0.0, 1.0)

    def get_growth_interval(self) -> int:
        """The ``growth_interval`` in use (torch's ``get_growth_interval``)."""
        return self.growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        """torch's ``set_growth_interval``, checked by the constructor's rule (an integer >= 1; one
        below the current count of clean steps is taken, as torch takes it: the scale then stays)."""
        self.growth_interval = _backend.integer("new_interval", new_interval, lo=1, hi=_backend.INT64_MAX)

    def _get_growth_tracker(self) -> int:
        """The count of clean steps since the last growth or backoff (torch's; 0 when disabled)."""
        return int(_backend.to_numpy(self._growth_tracker)[0]) if self.enabled else 0

    def _rule(self) -> tuple:
        """(growth_factor, backoff_factor, growth_interval) by the constructor's rules, naming the
        attribute: assigned as torch's set_growth_factor / set_growth_interval set them, they are
        not checked there (a str factor or a float interval reached the native call: pybind11's
        TypeError naming none; an infinite factor was taken, and written by state_dict())."""
        given = {k: getattr(self, k) for k in ("growth_factor", "backoff_factor", "growth_interval")}
        cache = self.__dict__.setdefault("_rule_checked", {})  # (left out of pickles: __getstate__)
        rule = cached(cache, "rule", given)  # (the very same immutable objects: checked already)
        if rule is None:
            rule = (
                _float32_in("growth_factor", given["growth_factor"], 1.0),
                _float32_in("backoff_factor", given["backoff_factor"], 0.0, 1.0),
                _backend.integer("growth_interval", given["growth_interval"], lo=1, hi=_backend.INT64_MAX),
            )
            remember(cache, "rule", given, rule)
        return rule

    @serialized
    def state_dict(self) -> dict:
        """The scale, its factors, interval and growth tracker; ``{}`` when disabled (torch's)."""
        if not self.enabled:
            return {}
        return {
            "scale": float(_backend.to_numpy(self._scale)[0]),
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
            "_growth_tracker": int(_backend.to_numpy(self._growth_tracker)[0]),
        }

    @serialized
    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output, every value checked (as by the constructor) before
        any is assigned; a no-op when disabled, as torch's."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state_dict: expected a dict, got {type(state).__name__}")
        if not self.enabled:
            return  # (torch's: a disabled scaler keeps no state; its own state_dict() is {})
        if not state:
            raise ValueError("state_dict: empty, possibly saved from a disabled GradScaler")
        for key in _KEYS:
            if key not in state:
                raise ValueError(f"state_dict: missing '{key}'")
        self._assign(_checked_state(state, {k: f"state_dict[{k!r}]" for k in _KEYS}, saved=True))

    def _assign(self, st: dict) -> None:
        """Take the checked state ``st`` (``_checked_state``)."""
        self._scale[...] = np.float32(st["scale"])
        self._growth_tracker[...] = st["_growth_tracker"]
        self.growth_factor = st["growth_factor"]
        self.backoff_factor = st["backoff_factor"]
        self.growth_interval = st["growth_interval"]

    # ---- copies ---------------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        # the iteration's record names optimizers by id(): a copy would hold the originals' ids
        if self.enabled and self._iteration:
            raise RuntimeError(
                "A GradScaler instance may only be pickled at the beginning of an iteration, or at "
                "the end after scaler.update()."
            )
        state = {**unlocked(vars(self)), "_iteration": Iteration()}  # (empty: a shallow copy gets its own)
        state.pop("_rule_checked", None)  # (a cache of _rule: pickles stay as they were)
        return state

    def __setstate__(self, state: dict) -> None:
        if "_iteration" not in state:  # pickled before the per-optimizer record: its one flag
            pending = state.pop("_found_inf", None)
            state["_iteration"] = Iteration()
            state["_iteration"].pending = pending
        vars(self).update(state)
