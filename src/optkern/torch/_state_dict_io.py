"""Checkpoints of an optkern.torch optimizer (a mixin of ``_Fused``): ``state_dict`` in torch's own
format (plus the stochastic-rounding seed of a low-precision step) and ``load_state_dict``, which
checks the whole state dict before anything is assigned and converts a checkpoint between storage
kinds (``_lowp.convert_checkpoint``)."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import torch

from .._lowp_schema import as_torch
from .._serial import serialized
from . import _lowp
from ._checks_state import load_defaults
from ._state import _HOST_SCALARS, _like_param, _meta, _scalars_to_host
from ._tracked import plain, tracked


class _StateDictIO:
    """torch's ``state_dict`` / ``load_state_dict`` around the checks of ``_StateDictChecks``.
    (torch's own are called by name: ``_Fused``'s other bases define neither.)"""

    if TYPE_CHECKING:  # everything else it reads is _Fused's
        state: Any
        param_groups: list
        _optimizer_load_state_dict_pre_hooks: Any
        _optimizer_load_state_dict_post_hooks: Any
        _optimizer_state_dict_pre_hooks: Any
        _optimizer_state_dict_post_hooks: Any

        def __getattr__(self, name: str) -> Any: ...

    @serialized
    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict``: its pre-hooks (``register_load_state_dict_pre_hook``: a hook
        may migrate an old checkpoint) run first, as torch runs them, so that what is checked and
        loaded (``_load``) is the state dict they return; then torch's post-hooks, once the load is
        done (torch's run after its ``__setstate__``: the groups filled, the step counts tensors;
        run by torch's loader inside ``_load`` they saw neither, nor a load refused after it)."""
        state_dict = state_dict.copy() if isinstance(state_dict, dict) else state_dict  # (torch's shallow copy)
        for hook in list(self._optimizer_load_state_dict_pre_hooks.values()):
            out = hook(self, state_dict)
            if out is not None:
                state_dict = out
        pre, post = self._optimizer_load_state_dict_pre_hooks, self._optimizer_load_state_dict_post_hooks
        # (torch's loader must not run them: the pre-hooks ran, the post-hooks run below)
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()
        try:
            self._load(state_dict)
        finally:
            self._optimizer_load_state_dict_pre_hooks = pre
            self._optimizer_load_state_dict_post_hooks = post
        for hook in list(post.values()):
            hook(self)

    def _load(self, state_dict: dict) -> None:
        """torch's loader (casts state to each param's dtype and device), then the step counters and
        mu_product back on the CPU, a number (older torch's ``"step": 2``) made the tensor torch's
        ``__setstate__`` makes (``_scalars_to_host``), the hyper-parameters torch's format lacks
        (``momentum_form``, RMSprop's ``nesterov``...) filled from the defaults (those torch's
        ``__setstate__`` fills, from torch's: ``_checks_state.load_defaults``).

        The whole state dict is checked first (``_check_state_dict``: its structure, every group's
        hyper-parameters as the constructor checks them, every state entry against its param), and
        on any error the optimizer keeps its state and groups: nothing is assigned. An optkern.optim
        checkpoint (NumPy arrays, ``block``, ``state_dtype``) is read in torch's form first
        (``_lowp_schema.as_torch``)."""
        state_dict = as_torch(state_dict)
        self._check_state_dict(state_dict)
        seed, state_dict = _lowp.take_seed(state_dict)  # (checked; torch's loader would keep it in the state)
        state_dict, exact = self._lowp_load(state_dict)
        self._check_state_entries(state_dict, exact)
        old: tuple = (self.state, self.param_groups)
        try:
            torch.optim.Optimizer.load_state_dict(self, state_dict)  # type: ignore[arg-type]  # (a mixin of one)
            _lowp.put_exact(self.state, exact, _meta(self._core)._state_names)
            scalars = tuple(k for k in self._run_keys if k in _HOST_SCALARS)
            for p, state in self.state.items():
                _scalars_to_host(state, scalars)
                _like_param(p, state)
            defaults = load_defaults(self)  # (once: the same for every group)
            for i, group in enumerate(self.param_groups):
                for k, v in defaults.items():
                    group.setdefault(k, v)
                self._validate(group, f"param_groups[{i}]")
            self.state = tracked(self.state, own=True)  # (torch's loader made the per-param dicts)
            _lowp.adopt_seed(self._lowp_core, seed, stepped=any(self.state.values()))
        except BaseException:
            self.state, self.param_groups = old[0], old[1]  # (torch's loader assigns new objects: the old are intact)
            raise
        finally:
            self._drop_layouts()

    @serialized
    def state_dict(self) -> dict:
        """torch's, its per-param dicts plain ones (what torch.load's weights_only unpickler reads),
        with the stochastic-rounding seed where the step draws with one (``_lowp.with_seed``).

        torch's hooks run as torch runs them: the pre-hooks first, then the post-hooks on the state
        dict as returned, what they return returned (a hook may wrap the checkpoint, or drop its
        state); so they run here, after the state dict is complete. The pre-hooks run here too,
        before torch's packing, with the real hook dicts in place: a post-hook one of them registers
        is the optimizer's for good (its handle removes it) and runs in this call, as in torch. Only
        the packing, which runs no caller code, sees the dicts emptied (it must not run them)."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        hooks = self._optimizer_state_dict_pre_hooks, self._optimizer_state_dict_post_hooks
        self._optimizer_state_dict_pre_hooks = self._optimizer_state_dict_post_hooks = OrderedDict()
        try:
            sd = torch.optim.Optimizer.state_dict(self)  # type: ignore[arg-type]  # (a mixin of one)
        finally:
            self._optimizer_state_dict_pre_hooks, self._optimizer_state_dict_post_hooks = hooks
        sd = {**sd, "state": _lowp.with_seed(plain(sd["state"]), self._lowp_cfg)}
        for hook in self._optimizer_state_dict_post_hooks.values():  # (live, as torch's loop)
            out = hook(self, sd)
            if out is not None:
                sd = out
        return sd

    def _lowp_load(self, state_dict: dict) -> tuple:
        """(``state_dict`` as torch's loader should see it, [(param, entry) it must not cast]):
        ``_lowp.convert_checkpoint`` for this optimizer's params, storage and moments."""
        params = [p for g in self.param_groups for p in g["params"]]
        return _lowp.convert_checkpoint(state_dict, params, self._lowp_cfg, _meta(self._core)._state_names)
