"""GradScaler's passes over the grads (a mixin of ``optkern.amp.GradScaler``): where the scale
and growth tracker live (beside the grads: NumPy, or CuPy on their device), the found_inf flags,
the unscale pass (``amp_unscale_``) and the check-only pass of a low-precision optimizer's grads
(``amp_check_``), each refusal named by its place in the caller's grads."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from . import _backend
from ._amp_checks import _all_float32, _float32_only, _grad_format
from ._amp_config import ScalerConfig
from ._amp_states import combined, renumbered
from .optim._given import _bump_torch_versions


def _bump_tensors(given) -> None:
    """Bump the torch tensors among ``given`` (an array or a list of them, as the caller passed it):
    one pass over the types (C speed) when torch is imported, a list only where there is one."""
    torch = sys.modules.get("torch")  # (no tensor without torch)
    if torch is None:
        return
    items = given if isinstance(given, (list, tuple)) else (given,)
    if any(issubclass(t, torch.Tensor) for t in set(map(type, items))):
        _bump_torch_versions([g for g in items if isinstance(g, torch.Tensor)])


class ScalerPasses(ScalerConfig):
    """A mixin of ``GradScaler``: its state's place and its unscale / check passes."""

    _scale: Any  # (1-element arrays: NumPy, or CuPy beside CuPy grads)
    _growth_tracker: Any

    # ---- where the state lives ---------------------------------------------------------------

    def _beside(self, like) -> None:
        """Move the scale and growth tracker to ``like``'s backend and device (if not there)."""
        if _backend.is_cupy(like):
            if not _backend.is_cupy(self._scale) or self._scale.device.id != like.device.id:
                self._scale = _backend.asarray_like(self._scale, like, np.float32)
                self._growth_tracker = _backend.asarray_like(self._growth_tracker, like, np.int64)
        elif isinstance(like, np.ndarray) and _backend.is_cupy(self._scale):  # (not an array: left to the checks)
            self._scale, self._growth_tracker = self._scale.get(), self._growth_tracker.get()

    def _native(self):
        return _backend.cuda_module() if _backend.is_cupy(self._scale) else _backend.cpu

    @property
    def _found_inf(self):
        """The found_inf flag ``update()`` would read now (set when any optimizer's grads held an
        inf/NaN), or None when nothing was checked since the last update(): the one flag this
        scaler kept before it kept one per optimizer, for code that inspects it."""
        flags = self._iteration.flags()
        return combined(flags, self._scale) if flags else None

    def _unscale(self, grads) -> Any:
        """found_inf of float32 ``grads``, unscaled in place in the same pass (``amp_unscale_``);
        None when every grad is None (nothing checked: no flag to step or update on). The torch
        tensors among them, written through views autograd does not see, get their version
        counters bumped, as by torch's in-place unscale (a graph that saved one refuses its
        backward instead of differentiating the unscaled values)."""
        found = self._unscale_arrays(grads)
        if found is not None:
            _bump_tensors(grads)
        return found

    def _unscale_arrays(self, grads) -> Any:
        """``_unscale`` but the version counters.

        The grads go to the native call as they are: it checks every one (float32 included)
        before it writes, so a list it takes is one of float32 arrays. Only a list it refuses is
        looked at here (None entries skipped, half grads named), and passed again: the common
        case reads no array in Python (a dtype read per array is ~0.1 us on CuPy)."""
        grads = _backend.as_list(grads, "grads")
        if not grads:
            return None
        found = self._new_flag(grads)
        with _backend._device_of(self._scale):
            try:
                self._native().amp_unscale_(grads, self._scale, found)
                return found
            except (TypeError, ValueError):
                if _all_float32(grads):  # (refused for another reason: its error stands)
                    raise
        live, index = _float32_only(grads), [i for i, g in enumerate(grads) if g is not None]
        if not live:
            return None
        with _backend._device_of(self._scale):
            try:
                self._native().amp_unscale_(live, self._scale, found)
            except (TypeError, ValueError) as e:  # (named by its place in grads, not in live)
                raise renumbered(e, index) from None
        return found

    def _new_flag(self, grads):
        """A zeroed found_inf flag beside ``grads`` (the scale moved there first)."""
        first = next((g for g in grads if g is not None), None)
        if first is not None:
            self._beside(first)
        return _backend.zeros(self._scale, 1, np.float32)

    def _check(self, grads) -> Any:
        """found_inf of ``grads`` (float32 and halves, as a low-precision optimizer takes them), the
        grads left scaled: that optimizer's step unscales them (``lowp_step``'s ``grad_scale``);
        None when every grad is None (nothing checked)."""
        grads = _backend.as_list(grads, "grads")
        found = self._new_flag(grads)
        by_fmt: dict[str, tuple[list, list]] = {}  # format -> (its grads, their places in grads)
        for i, g in enumerate(grads):
            if g is None:  # (a param the step skips)
                continue
            fmt = _grad_format(g, i)
            gs, index = by_fmt.setdefault(fmt, ([], []))
            gs.append(g if fmt == "float32" else g.view(np.uint16))
            index.append(i)
        with _backend._device_of(self._scale):
            for fmt, (gs, index) in by_fmt.items():
                try:
                    self._native().amp_check_(gs, fmt, found)
                except (TypeError, ValueError) as e:  # (named by its place in grads, not in gs)
                    raise renumbered(e, index) from None
        return found if by_fmt else None
