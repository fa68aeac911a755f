"""A group's hyper-parameters, validated: the Optimizer mixin that calls the subclass's ``_check``
and checks the result against the params' dtypes, each result kept and reused while the group
holds the very same values (``_checked_values``) and the very same params list."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._checked_values import cached, remember
from ._hyper import _check_dtype
from ._parts import OptimizerParts


class GroupHyperMixin(OptimizerParts):
    """Optimizer's checks of a group's hyper-parameters (uses ``_check``, ``_math_dtype``,
    ``_hp_checked`` and ``_dtype_checked``)."""

    if TYPE_CHECKING:
        _hp_checked: dict
        _dtype_checked: dict

        def _check(self, group: dict, where: str) -> tuple: ...
        def _math_dtype(self, dt): ...

    def _hyper(self, group: dict, where: str):
        """``_check(group, where)``, reused while the group holds the very same keys and the very
        same immutable values (exact float, int, bool, str, None, tuples of them) as when it last
        passed: ``_check`` reads nothing else, so it would return an equal tuple. A new value (a
        scheduler's lr, -0.0 for 0.0, a subclass or NumPy scalar, a list) is checked in full.
        ``GradScaler.step`` checks the group before it unscales the grads and the step checks it
        again: the second check is this lookup (~0.3 us, where Adam's ``_check`` is ~3 us)."""
        cache = self.__dict__.get("_hp_checked")
        if cache is None:  # (an optimizer unpickled from before the cache)
            cache = self._hp_checked = {}
        hp = cached(cache, where, group)
        if hp is not None:
            return hp
        try:
            hp = self._check(group, where)
        except KeyError as e:  # a hyper-parameter deleted from the group between steps
            raise ValueError(f"{where or 'defaults'}: missing {e.args[0]!r}") from None
        remember(cache, where, group, hp)
        return hp

    def _check_group(self, group: dict, where: str):
        """A group's validated hyper-parameters (``_check``), also against its params' dtypes."""
        hp = self._hyper(group, where)
        params = group.get("params")
        if params:
            cached = self._dtype_checked.get(where)
            if cached is not None and cached[1] is params and cached[0] == hp:
                return hp  # checked when hp last changed (or a param was replaced: _check_replaced)
            names = {
                "beta1": f"{where}['betas'][0]" if where else "betas[0]",
                "beta2": f"{where}['betas'][1]" if where else "betas[1]",
            }
            for dt in sorted({self._math_dtype(p.dtype) for p in params}, key=str):
                _check_dtype(hp, dt, where, names)
            self._dtype_checked[where] = (hp, params)
        return hp
