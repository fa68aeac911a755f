"""The state of an optkern.torch optimizer's params (a mixin of ``_Fused``): which state a step
with a group's hyper-parameters uses and keeps, and the torch-format state a param starts with,
each as the optkern.optim class the adapter mirrors (``_core``) says."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..optim._lowp_config import block_scale_names
from ..optim._run import _Run
from . import _lowp, _views
from ._state import _scalar_dtype, _step_tensor, _zeros


class _InitialState:
    """Which state a param has and its initial values (``_m``: the optkern.optim instance)."""

    if TYPE_CHECKING:  # everything else it reads is _Fused's
        _needed_memo: tuple | None  # (assigned here too: mypy could not tell its type from _Fused's)

        def __getattr__(self, name: str) -> Any: ...

    def _state_names(self, group: dict) -> tuple:
        """The state tensors a step with this group's hyper-parameters uses."""
        return self._needed(self._hyper(group))

    def _needed(self, hp: tuple) -> tuple:
        """The state tensors a step with checked hyper-parameters ``hp`` uses: ``_m._needed``, kept
        for the last ``hp`` object (the cached one a group's steps reuse: ``_Fused._hyper``). Two
        calls and a tuple a step less: each step asks three times, its code cold after a large
        step's memory traffic."""
        memo = self._needed_memo
        if memo is None or memo[0] is not hp:
            memo = self._needed_memo = (hp, tuple(self._m._needed(hp)))
        return memo[1]

    def _keeps_state(self, group: dict, dtype: torch.dtype) -> bool:
        """Whether a step of the group's ``dtype`` params keeps per-param state: a step count, a
        per-param scalar or a state tensor (SGD without momentum keeps none, as torch's)."""
        return bool(self._run_keys or self._stored(self._hyper(group), dtype))

    def _stored(self, hp: tuple, dtype: torch.dtype) -> tuple:
        """Every state tensor a step of ``dtype`` params with checked hyper-parameters ``hp`` reads or writes."""
        names = self._needed(hp)
        cfg = self._lowp_cfg
        return names if cfg is None else _lowp.stored_names(cfg, names, dtype)

    def _block_scales(self, hp: tuple) -> tuple:
        """The 8-bit block scales among ``_stored(hp, ...)``: one float32 per block of a param, not
        shaped as the param."""
        cfg = self._lowp_cfg
        return () if cfg is None else block_scale_names(self._needed(hp), cfg.state_dtype)

    def _init_state(self, p, state: dict, group: dict) -> None:
        """torch-format state for ``p``: a step counter, per-param scalars (NAdam's mu_product) and
        the state tensors, each initialised as the optkern.optim class initialises its arrays. (A
        step count or scalar ``state`` holds already is kept: SGD's buffers may come later.)"""
        m = self._m
        hp = self._hyper(group)
        if m._has_step or self._lowp_core:
            state.setdefault("step", _step_tensor())
        with _views.on_stream(p):
            for name, value in m._new_extra(_Run([0], [_views.view(p)], None), hp).items():
                state.setdefault(name, torch.tensor(float(value), dtype=_scalar_dtype()))
            if self._lowp_core:  # (the storage the low-precision step takes)
                _lowp.new_state(p, state, m, tuple(m._needed(hp)), hp)
                return
            for name in m._needed(hp):
                t = _zeros(p)
                _views.view(t)[...] = m._new_state(name, _views.view(t), hp)
                state[name] = t
