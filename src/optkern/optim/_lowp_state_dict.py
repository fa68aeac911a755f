"""The state-dict half of :class:`~optkern.optim._lowp.LowPrecisionMixin` (a base of it): saving
the storage format (``state_dtype``, ``block``, the rounding ``seed``) with each entry, and loading
any format by converting it (8-bit dequantized, bf16 widened to float32, then stored in this
optimizer's format); the state layout is described in :mod:`optkern.optim._lowp`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from .. import _backend, lowp
from .._lowp_blocks import block_scale_name
from .._lowp_schema import as_optim
from .._serial import serialized
from ._lowp_config import _MASTER, STATE_DTYPES, _host, block_scale_names
from ._parts import OptimizerParts
from ._state_checks import NONNEGATIVE

if TYPE_CHECKING:
    from ._lowp_config import LowpConfig


class LowpStateDictMixin(OptimizerParts):
    """``state_dict`` / ``load_state_dict`` of the low-precision optimizers (``LowPrecisionMixin``
    derives from it and configures ``_lowp``)."""

    if TYPE_CHECKING:  # (set by LowPrecisionMixin)
        _lowp: LowpConfig | None
        _lowp_seed0: int | None
    _lowp_raw: Mapping = MappingProxyType({})  # exact 8-bit data of a state dict being loaded

    # ---- state dict -----------------------------------------------------------------------

    @serialized
    def state_dict(self) -> dict:
        """The optimizer state in PyTorch's format (``Optimizer.state_dict``: the live arrays, not
        copies). In low precision each entry also holds its storage format: ``seed`` (stochastic
        rounding, bf16 states), ``state_dtype`` and, for 8-bit states, ``block`` (the moments as
        8-bit codes with their block scales; bf16 states as ``ml_dtypes.bfloat16`` arrays where
        ml_dtypes is installed). Any storage format loads into any other (``load_state_dict``)."""
        sd = super().state_dict()  # type: ignore[misc]
        lp = self._lowp
        if lp is None:
            return sd
        # the seed of the step's random words (stochastically rounded params, bf16 states): saved
        # with each entry, as the storage format, so that a resumed run rounds as this one would
        if lp.sr or lp.state_dtype == "bfloat16":
            for entry in sd["state"].values():
                entry["seed"] = lp.seed
        if lp.state_dtype == "float32":
            return sd
        bf = lowp.bfloat16_dtype()
        base = type(self)._state_names
        for entry in sd["state"].values():
            entry["state_dtype"] = lp.state_dtype
            if lp.state_dtype == "int8":
                entry["block"] = lp.block
            elif bf is not None:
                for n in base:
                    if n in entry and type(entry[n]) is np.ndarray:  # (CuPy has no ml_dtypes: raw bits)
                        entry[n] = entry[n].view(bf)
        return sd

    def _per_block_states(self) -> tuple:
        """The 8-bit moments' block scales (``<moment>_scale``), one float32 per block: their shape is
        theirs, not their param's (``_state_dict.follow_reshaped``)."""
        lp = self._lowp
        return () if lp is None else block_scale_names(type(self)._state_names, lp.state_dtype)

    @serialized
    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """As :meth:`Optimizer.load_state_dict`, converting the state's storage format (see
        :mod:`optkern.optim._lowp`) into this optimizer's."""
        self._lowp_raw = {}
        try:
            super().load_state_dict(self._lowp_float32(state_dict), strict)  # type: ignore[misc]
        finally:
            del self._lowp_raw
        self._adopt_seed(_saved_seed(state_dict), any(run.step for group_runs in self._runs for run in group_runs))

    def _adopt_seed(self, seed: int | None, stepped: bool) -> None:
        """A loaded checkpoint's stochastic-rounding seed as this optimizer's (optkern.torch's loads
        call it too): the saved seed replaces the constructor's, so the resumed steps draw the words
        the saved run would have drawn; a state dict without one keeps the seed, unless nothing in
        it ``stepped`` -- then no entry could hold one, and the optimizer is as constructed, with the
        constructor's (kept, a seed loaded before stayed: optkern.load, undoing a load by loading
        the state from before, left a fresh optimizer drawing the checkpoint's words)."""
        if seed is None and not stepped:
            seed = self._lowp_seed0
        if seed is not None and self._lowp is not None:
            self._lowp = self._lowp._replace(seed=seed)

    def _check_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """As the base check, on the state converted to float32 as :meth:`load_state_dict` loads it."""
        self._lowp_raw = {}
        try:
            super()._check_state_dict(self._lowp_float32(state_dict), strict)  # type: ignore[misc]
        finally:
            del self._lowp_raw

    def _lowp_float32(self, sd):
        """``sd`` with every stored state as float32 values (8-bit dequantized, bf16 widened), the
        format keys gone; exact 8-bit data kept aside when this optimizer stores the same. An
        optkern.torch checkpoint is read in this form first (``_lowp_schema.as_optim``)."""
        if not isinstance(sd, dict) or not isinstance(sd.get("state"), dict):
            return sd
        sd = as_optim(sd)
        _saved_seed(sd)  # (checked: one valid seed or none)
        lp = self._lowp
        base = type(self)._state_names
        sizes = self._saved_sizes(sd)
        state = {}
        for key, entry in sd["state"].items():
            if not isinstance(entry, dict):
                state[key] = entry
                continue
            where = f"state_dict['state'][{key!r}]"
            fmt = entry.get("state_dtype", "float32")
            if fmt not in STATE_DTYPES:
                raise ValueError(f"{where}['state_dtype']: expected one of {STATE_DTYPES}, got {fmt!r}")
            try:
                block = lowp._block(entry.get("block", 256)) if fmt == "int8" else 0
            except (TypeError, ValueError) as e:  # (named as the entry it came from)
                raise type(e)(f"{where}['block']: {str(e).partition(': ')[2]}") from None
            out = {}
            for k, v in entry.items():
                if k in ("state_dtype", "block", "seed") or k in block_scale_names(base, fmt):
                    continue
                if k == _MASTER and (lp is None or not lp.master):
                    continue  # an fp32 optimizer's params are its own master
                if k == _MASTER and v is not None:
                    # a bfloat16 master widened as the moments are (a float16 one was taken, a
                    # bfloat16 one refused as "not floating-point")
                    v = self._lowp_widen(v, "float32", entry, k, 0, f"{where}[{k!r}]")
                if k in base and v is not None:
                    v = self._lowp_widen(v, fmt, entry, k, block, f"{where}[{k!r}]", sizes.get(str(key)))
                    if fmt == "int8" and lp is not None and lp.state_dtype == "int8" and lp.block == block:
                        scale = block_scale_name(k)
                        self._lowp_raw[(str(key), k)] = (
                            _host(entry[k], f"{where}[{k!r}]"),
                            _host(entry[scale], f"{where}[{scale!r}]"),
                        )
                out[k] = v
            state[key] = out
        return {**sd, "state": state}

    def _saved_sizes(self, sd: dict) -> dict:
        """The element count of the param each saved entry belongs to, by ``str(key)`` (the groups'
        saved ids in order against this optimizer's params; {} where the groups do not match, which
        the base check then names)."""
        groups = sd.get("param_groups")
        if not isinstance(groups, list) or len(groups) != len(self.param_groups):
            return {}
        sizes: dict[str, int] = {}
        for saved, ours in zip(groups, self.param_groups):
            ids = saved.get("params") if isinstance(saved, dict) else None
            if not isinstance(ids, list) or len(ids) != len(ours["params"]):
                return {}
            sizes.update((str(i), int(p.size)) for i, p in zip(ids, ours["params"]))
        return sizes

    @staticmethod
    def _lowp_widen(v, fmt: str, entry: dict, k: str, block: int, where: str, size: int | None = None):
        """Saved state ``k`` as float32 values; ``size``: its param's element count, which 8-bit
        codes are checked against before their scales (truncated codes with the scales of the
        whole param were refused naming the scales, the entry that was right)."""
        if fmt == "int8":
            codes = _host(v, where)
            if codes.dtype != np.uint8:
                raise TypeError(f"{where}: expected uint8 codes (state_dtype 'int8'), got {codes.dtype}")
            if size is not None and codes.size != size:
                want = _backend.counted(size, "element")
                raise ValueError(f"{where}: expected {want} (like its parameter), got {codes.size}")
            scales = entry.get(block_scale_name(k))
            if scales is None:
                raise ValueError(
                    f"{where[: -len(repr(k)) - 2]}[{block_scale_name(k)!r}]: missing (8-bit state needs its scales)"
                )
            at = f"{where[: -len(repr(k)) - 2]}[{block_scale_name(k)!r}]"
            scales = _host(scales, at)
            lowp.check_block_scales(scales, codes.size, block, at, nonnegative=k in NONNEGATIVE)
            return lowp.dequantize_blockwise(codes, scales, block)
        # (a torch tensor too: torch.optim's state of a bfloat16 model is bfloat16, refused as "not
        # floating-point" by the checks that follow)
        a = _host(v, where) if isinstance(v, np.ndarray) or _backend.is_cupy(v) or _backend.is_foreign(v) else v
        if isinstance(a, np.ndarray) and not a.dtype.isnative and a.dtype.name in ("bfloat16", "uint16"):
            a = a.astype(a.dtype.newbyteorder("="))  # (a checkpoint of the other byte order: the same values)
        if isinstance(a, np.ndarray) and (a.dtype.name == "bfloat16" or (fmt == "bfloat16" and a.dtype == np.uint16)):
            return lowp.from_half(a, "bfloat16" if a.dtype == np.uint16 else None)
        return v

    def _parse_entry(self, saved_state: dict, sid, p, hp):
        lp = self._lowp
        if lp is None:
            return super()._parse_entry(saved_state, sid, p, hp)  # type: ignore[misc]
        # float32 copies (a float32 stand-in with p's shape), then this optimizer's storage
        step, arrays, extra = super()._parse_entry(  # type: ignore[misc]
            saved_state, sid, np.broadcast_to(np.zeros((), np.float32), p.shape), hp
        )
        if not arrays:
            return step, arrays, extra
        key = str(sid)  # as _lowp_float32 keyed the exact 8-bit data
        for n in type(self)._state_names:
            if n not in arrays:
                continue
            if lp.state_dtype == "bfloat16":
                arrays[n] = lowp.to_half(np.ascontiguousarray(arrays[n]), "bfloat16", raw=True)
            elif lp.state_dtype == "int8":
                raw = self._lowp_raw.get((key, n))
                if raw is not None:  # (C order: a Fortran copy of the codes was refused at every step)
                    codes = np.array(raw[0], np.uint8, order="C").reshape(p.shape)
                    scales = np.array(raw[1], np.float32)
                else:
                    codes, scales = lowp.quantize_blockwise(np.ascontiguousarray(arrays[n]), lp.block)
                arrays[n], arrays[block_scale_name(n)] = codes, scales
        if _backend.is_cupy(p):  # (built on the host above) onto p's device
            arrays = {n: _backend.asarray_like(a, p, a.dtype) for n, a in arrays.items()}
        if lp.master and _MASTER not in arrays:
            arrays[_MASTER] = lowp.from_half(p)
        return step, arrays, extra


def _saved_seed(sd) -> int | None:
    """The stochastic-rounding seed a state dict's entries were saved with (``None``: none saved);
    a ValueError if it is not one unsigned 64-bit integer shared by every entry."""
    seeds = {}
    state = sd.get("state") if isinstance(sd, dict) else None
    for key, entry in state.items() if isinstance(state, dict) else ():
        if isinstance(entry, dict) and "seed" in entry:
            v = entry["seed"]
            if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iu":
                v = v[()]  # (a 0-d array, as an archive may return it)
            try:
                seeds[key] = lowp._u64("seed", v)
            except (TypeError, ValueError) as e:
                raise type(e)(f"state_dict['state'][{key!r}]['seed']: {str(e).partition(': ')[2]}") from None
    if len(set(seeds.values())) > 1:
        raise ValueError(f"state_dict['state']: the entries were saved with different seeds {seeds}")
    return next(iter(seeds.values()), None)
