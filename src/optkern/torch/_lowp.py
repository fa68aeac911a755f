"""Low-precision storage in optkern.torch's optimizers (AdagradNorm: master weights only): the
keywords of :mod:`optkern.optim._lowp` (``master_weights``, ``stochastic_rounding``, ``state_dtype``, ``seed``,
``block_size``) on torch tensors.

The step is optkern.optim's own low-precision step (one native pass: half grad in, float32 master
and compact states updated, half param out), run by an instance of the optkern.optim class
configured with those keywords. State lives in ``optimizer.state[p]`` as torch tensors:

* ``master_param``: the float32 master copy (``master_weights=True``);
* each moment (``exp_avg``, ...) as float32, ``torch.bfloat16``, or ``torch.uint8`` codes of the
  dynamic blockwise 8-bit map with ``<name>_scale`` (one float32 per block) and ``block_size``;
* ``step`` (also for SGD here: the stochastic-rounding stream of a step is drawn from it).

``state_dict()`` holds exactly these, and, where the step draws random words (stochastic rounding,
bfloat16 states), each non-empty entry the ``seed`` they are drawn from (a Python int, as
optkern.optim's checkpoints hold it): ``load_state_dict`` takes the saved seed over the
constructor's, so a resumed run rounds as the saved one would have; a checkpoint without one (torch's,
or saved before the seed was) keeps the constructor's. torch.optim's loader keeps the key as an
unknown per-param entry (its steps ignore it, its ``state_dict`` saves it again), so the seed
survives a trip through torch.optim too. ``load_state_dict`` takes any of them (and torch's own
float32 checkpoints) and converts into this optimizer's format: 8-bit with the same block is
copied exactly, anything else goes through float32 (bf16 rounded to nearest even, 8-bit by
blockwise quantization; a missing master starts from the param, and so does a half one: only
torch.optim's loader makes that, casting the entry it does not know to its param's dtype, and its
steps then moved the param, not that copy). ``to_torch_state_dict`` (``_torch_form``) turns one back into what
``torch.optim``'s optimizers load; it is needed for 8-bit states: torch's loader casts the uint8
codes to the param's dtype as values without a word (bfloat16 moments it widens exactly).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from .. import lowp
from .._array_checks import counted
from .._foreign import refuse_meta, shown_values
from .._lowp_blocks import block_scale_name
from ..optim._lowp import _saved_seed
from ..optim._lowp_config import _MASTER, LowpConfig, block_scale_names
from ..optim._state_checks import NONNEGATIVE
from . import _views
from ._checks_state import check_values
from ._state import _saved_ids

_HALVES = (torch.float16, torch.bfloat16)
#: why low-precision storage refuses complex params (its master copy, 8-bit blocks and Philox
#: element counters are over the param's elements; torch.optim has no complex half recipe either)
COMPLEX_WHY = "with low-precision storage (master_weights / stochastic_rounding / state_dtype): use the default"
# (a half param given to an optimizer built without master weights)
HALF_HINT = "float16 / bfloat16 params need master_weights=True: an fp32 master copy in the optimizer's state"
_BLOCK = "block_size"
_SEED = "seed"


@functools.cache
def _core_type(core: type) -> type:
    """``core`` whose low-precision step takes uint16 params as bfloat16 (how ``_views`` hands
    bfloat16 tensors over: NumPy and CuPy have no bfloat16)."""

    def _half_format(self, p):
        return "bfloat16" if p.dtype == np.uint16 else core._half_format(self, p)

    def __reduce__(self):  # (pickle finds a class by its name: this one is made here, by ``core``)
        return _rebuilt_core, (core, dict(vars(self)))

    return type(
        core.__name__, (core,), {"_half_format": _half_format, "__reduce__": __reduce__, "__module__": __name__}
    )


def _rebuilt_core(core: type, state: dict):
    """A pickled ``make_core`` instance (an optimizer pickled with ``torch.save(opt)``) rebuilt."""
    m: Any = object.__new__(_core_type(core))
    vars(m).update(state)
    return m


def make_core(core: type, options: dict):
    """An optkern.optim ``core`` instance configured by the low-precision keywords ``options``
    (its ``_lowp``), or None when they ask for plain float32/float64 storage."""
    if not options:
        return None
    m: Any = object.__new__(_core_type(core))
    m._lowp_init(False, **options)
    return m if m._lowp is not None else None


def param_dtypes(cfg: LowpConfig | None) -> tuple:
    """The param dtypes an optimizer with ``cfg`` updates (none complex: ``COMPLEX_WHY``). With
    master weights, float32 params too (a half model's norms kept in float32, say): they are their
    own master."""
    if cfg is None:
        return _views.TYPES
    return _HALVES + (torch.float32,) if cfg.master else (torch.float32,)


def check_contiguous(p: torch.Tensor, name: str) -> None:
    """ValueError naming ``name`` for a param low-precision storage cannot hold: the master copy,
    the 8-bit blocks and the stochastic-rounding counters run over its elements in C order, which
    a permuted layout (channels_last, a transposed param) does not have."""
    if not p.is_contiguous():
        raise ValueError(
            f"{name}: low-precision storage needs a contiguous param, got strides {tuple(p.stride())} "
            "(a permuted layout, such as channels_last)"
        )


def stored_names(cfg: LowpConfig, names: tuple, dtype: torch.dtype) -> tuple:
    """Every state tensor of a step of ``dtype`` params using moments ``names``: the moments, their
    8-bit scales, the master copy (of half params)."""
    return names + block_scale_names(names, cfg.state_dtype) + ((_MASTER,) if cfg.master and dtype in _HALVES else ())


def new_state(p: torch.Tensor, state: dict, m, names: tuple, hp) -> None:
    """Fresh moments ``names`` (and their scales) in the storage of optkern.optim instance ``m``,
    holding what ``m`` starts them at (``_lowp_initial``: Adagrad's accumulator), and the master."""
    cfg, dev = m._lowp, p.device
    for n in names:
        v = m._lowp_initial_value(n, hp)
        fill, scale = m._lowp_initial(n, hp)
        if cfg.state_dtype == "int8":
            state[n] = torch.full(p.shape, int(fill), dtype=torch.uint8, device=dev)
            nb = lowp.n_blocks(p.numel(), cfg.block)
            state[block_scale_name(n)] = torch.full((nb,), float(scale), dtype=torch.float32, device=dev)
            state[_BLOCK] = cfg.block
        else:  # (torch's float32 -> bfloat16 is to nearest even, as _lowp_initial's bits)
            dt = torch.bfloat16 if cfg.state_dtype == "bfloat16" else torch.float32
            state[n] = torch.full(p.shape, float(v), dtype=dt, device=dev)
    if cfg.master and p.dtype in _HALVES and _MASTER not in state:
        state[_MASTER] = p.detach().to(torch.float32, memory_format=torch.contiguous_format, copy=True)


# ---- torch.amp.GradScaler --------------------------------------------------------------


def amp_skip(opt) -> bool:
    """Whether torch.amp.GradScaler found an inf/NaN grad for this step (its ``found_inf``, set on
    the optimizer around the step): then nothing is written, the step counts stay, as in torch's
    fused optimizers. Read on the host: on CUDA one sync per step, as GradScaler makes for torch's
    non-fused optimizers (the step count and stochastic-rounding stream live on the host)."""
    found = getattr(opt, "found_inf", None)
    return found is not None and bool(found)


def _torch_device(like) -> torch.device:
    """The torch device of a tensor or of its NumPy / CuPy view (a CuPy array's ``device`` is
    CuPy's own Device object, which ``Tensor.to`` refuses)."""
    if isinstance(like, torch.Tensor):
        return like.device
    if isinstance(like, np.ndarray):
        return torch.device("cpu")
    return torch.device("cuda", like.device.id)


def amp_scale(opt, like):
    """GradScaler's ``grad_scale`` (set on the optimizer around the step; None once ``unscale_``
    ran) as the 1-element float32 array beside ``like`` that the low-precision step divides the
    grads by, as it widens them (a float16 grad unscaled in float16 would lose what the scaling kept)."""
    scale = getattr(opt, "grad_scale", None)
    if scale is None:
        return None
    if not isinstance(scale, torch.Tensor):
        scale = torch.tensor(float(scale))
    t = scale.detach().to(device=_torch_device(like), dtype=torch.float32).reshape(1)
    return _views.view(t if t.is_contiguous() else t.clone())


# ---- checkpoints ------------------------------------------------------------------------


def with_seed(state: dict, cfg: LowpConfig | None) -> dict:
    """A ``state_dict()['state']`` whose non-empty entries also hold ``cfg``'s seed where the step
    draws random words with it (stochastic rounding, bfloat16 states), as optkern.optim saves it.
    New dicts: the optimizer's own entries are not touched (empty ones stay empty: a param that
    has not stepped holds nothing)."""
    if cfg is None or not (cfg.sr or cfg.state_dtype == "bfloat16"):
        return state
    return {k: {**e, _SEED: cfg.seed} if isinstance(e, dict) and e else e for k, e in state.items()}


def take_seed(state_dict) -> tuple:
    """(the seed ``state_dict``'s entries were saved with, or None where none was; ``state_dict``
    without it, for torch's loader). ValueError / TypeError naming the entry for a seed that is not
    an unsigned 64-bit int or differs between entries; nothing is changed then."""
    seed = _saved_seed(state_dict)
    if seed is None:
        return None, state_dict
    state = {
        k: {n: v for n, v in e.items() if n != _SEED} if isinstance(e, dict) and _SEED in e else e
        for k, e in state_dict["state"].items()
    }
    return seed, {**state_dict, "state": state}


def _widen(entry: dict, k: str, where: str, n_p: int | None = None) -> np.ndarray:
    """Saved moment ``k`` of a state entry as float32/float64 values (8-bit decoded, bf16 widened).
    ``n_p``: its param's element count, which 8-bit codes are checked against before their scales
    (truncated codes with the scales of the whole param were refused naming the scales)."""
    v = entry[k]
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{where}[{k!r}]: expected a tensor, got {type(v).__name__}")
    refuse_meta(v, f"{where}[{k!r}]")
    v = shown_values(v).cpu()  # (a lazy neg / conj view: its values, as the plain loader reads them)
    if v.dtype is torch.uint8:
        if n_p is not None and v.numel() != n_p:
            raise ValueError(f"{where}[{k!r}]: has {v.numel()} values, its param {n_p}")
        scales, block = entry.get(block_scale_name(k)), entry.get(_BLOCK)
        if not isinstance(scales, torch.Tensor) or scales.dtype is not torch.float32:
            raise ValueError(f"{where}[{block_scale_name(k)!r}]: 8-bit state needs its float32 block scales")
        refuse_meta(scales, f"{where}[{block_scale_name(k)!r}]")
        if isinstance(block, bool) or not isinstance(block, int):
            raise ValueError(f"{where}[{_BLOCK!r}]: 8-bit state needs its block size (an int)")
        block = lowp._block(block)
        host = scales.detach().cpu().numpy()
        at = f"{where}[{block_scale_name(k)!r}]"
        lowp.check_block_scales(host, v.numel(), block, at, nonnegative=k in NONNEGATIVE)
        return lowp.dequantize_blockwise(v.numpy().reshape(-1), host, block)
    if not v.is_floating_point():
        raise TypeError(f"{where}[{k!r}]: expected a floating-point or uint8 (8-bit) tensor, got {v.dtype}")
    return (v.float() if v.dtype in _HALVES else v).numpy().reshape(-1)


def _is_8bit(entry: dict, k: str) -> bool:
    return isinstance(entry.get(k), torch.Tensor) and entry[k].dtype is torch.uint8


def holds_8bit(state_dict) -> bool:
    """Whether ``state_dict`` holds a moment in this module's 8-bit storage: ``torch.uint8`` codes
    beside their ``<name>_scale`` and the entry's ``block_size`` (what ``to_torch_state_dict``
    converts for ``torch.optim``, whose loader takes the codes as values)."""
    state = state_dict.get("state") if isinstance(state_dict, dict) else None
    return isinstance(state, dict) and any(
        isinstance(e, dict) and _BLOCK in e and any(_is_8bit(e, k) and block_scale_name(k) in e for k in e)
        for e in state.values()
    )


def float_entry(entry: dict, names: tuple, where: str, n_p: int | None = None) -> dict:
    """``entry`` with moments ``names`` as float tensors and the low-precision extras (scales,
    block size, master) gone: what torch's optimizers keep (``n_p``: the param's element count)."""
    # (a scale beside a moment that is not 8-bit is stale: an 8-bit checkpoint's, loaded before
    # the loaders dropped it; torch's optimizers would keep it as an unknown entry)
    out = {k: v for k, v in entry.items() if k not in (_BLOCK, _MASTER, *map(block_scale_name, names))}
    for n in names:
        if n in entry and entry[n] is not None:
            x = torch.from_numpy(_widen(entry, n, where, n_p))  # (_widen: a tensor, or it raised)
            out[n] = x.reshape(entry[n].shape)
    return out


def lowp_entry(entry: dict, p: torch.Tensor, cfg: LowpConfig, names: tuple, where: str) -> dict:
    """Saved state ``entry`` (any format) of param ``p`` in ``cfg``'s storage, as CPU tensors
    (not ``step``: torch's loader keeps that)."""
    out: dict = {}
    n_p = p.numel()
    own = storage_keys(names)  # (a 0-d param's moments and master are 0-d too: made below, or dropped)
    for k, v in entry.items():  # per-param scalars other than step (NAdam's mu_product): as saved
        if k != "step" and k not in own and isinstance(v, torch.Tensor) and v.dim() == 0:
            out[k] = v.detach().clone()
    for n in names:
        if n not in entry or entry[n] is None:
            continue
        # (an int block size only: a tensor compared as one raised "Boolean value of Tensor ... is
        # ambiguous"; any other is refused by _widen, naming it)
        block = entry.get(_BLOCK)
        if _is_8bit(entry, n) and cfg.state_dtype == "int8" and isinstance(block, int) and block == cfg.block:
            x = _widen(entry, n, where, n_p)  # (checks the codes against their param and scales)
            codes, scales = entry[n].detach().cpu(), entry[block_scale_name(n)].detach().cpu()
        else:
            x = _widen(entry, n, where, n_p).astype(np.float32)
            codes = scales = None
        if x.size != n_p:
            raise ValueError(f"{where}[{n!r}]: has {x.size} values, its param {n_p}")
        _check_shape(entry[n], p, f"{where}[{n!r}]")  # (another model's param of this size: named)
        check_values(torch.from_numpy(x), f"{where}[{n!r}]", n in NONNEGATIVE)
        if cfg.state_dtype == "int8":
            if codes is None:
                c, s = lowp.quantize_blockwise(x, cfg.block)
                codes, scales = torch.from_numpy(c), torch.from_numpy(s)
            out[n] = codes.reshape(p.shape).clone()
            out[block_scale_name(n)], out[_BLOCK] = scales.reshape(-1).clone(), cfg.block  # (one per block, 1-D)
        else:
            dt = torch.bfloat16 if cfg.state_dtype == "bfloat16" else torch.float32
            out[n] = torch.from_numpy(x).reshape(p.shape).to(dt)  # (to bfloat16: nearest even)
    if cfg.master and p.dtype in _HALVES:
        m = entry.get(_MASTER)
        if m is not None and not isinstance(m, torch.Tensor):  # (read as "no master", the saved weights were lost)
            raise TypeError(f"{where}[{_MASTER!r}]: expected a tensor, got {type(m).__name__}")
        if isinstance(m, torch.Tensor):
            if m.numel() != n_p or not m.is_floating_point():
                want = counted(n_p, "float value")
                raise ValueError(f"{where}[{_MASTER!r}]: expected {want}, got {m.numel()} {m.dtype}")
            _check_shape(m, p, f"{where}[{_MASTER!r}]")
        if isinstance(m, torch.Tensor) and m.dtype not in _HALVES:
            check_values(m.detach(), f"{where}[{_MASTER!r}]", False)
            out[_MASTER] = m.detach().cpu().to(torch.float32).reshape(p.shape).clone()
        else:  # none, or a half one: torch.optim's loader cast it to its param's dtype, and its
            # steps moved the param, not it (taken, the param would jump back): from the param
            out[_MASTER] = p.detach().cpu().to(torch.float32).clone()
    return out


def _check_shape(v: torch.Tensor, p: torch.Tensor, where: str) -> None:
    """ValueError naming ``where`` unless saved tensor ``v`` has its param's shape (as a plain
    optimizer's loader requires: a transposed or reshaped param of another model is not this one's)."""
    if v.shape != p.shape:
        raise ValueError(f"{where}: expected shape {tuple(p.shape)} (its param's), got {tuple(v.shape)}")


def storage_keys(names: tuple) -> tuple:
    """The entries of a state that belong to its storage format, with moments ``names``: the
    moments, their 8-bit scales, the block size and the master copy (``lowp_entry`` makes each
    one this optimizer stores; torch's loader would keep the others as they were saved: an 8-bit
    checkpoint's scales in a bfloat16 optimizer's state, a master beside a float32 param)."""
    return (*names, *map(block_scale_name, names), _BLOCK, _MASTER)


def put_exact(state, exact: list, names: tuple) -> None:
    """Each (param, entry) of ``exact`` (``convert_checkpoint``'s) into ``state[param]`` as stored
    (torch's loader cast it to the param's dtype), on the param's device, with what torch's loader
    kept of the saved storage and ``lowp_entry`` did not make (``storage_keys``: another format's)
    gone."""
    stale = storage_keys(names)
    for p, entry in exact:
        st = state[p]
        for k in stale:
            st.pop(k, None)
        st.update({k: v.to(p.device) if isinstance(v, torch.Tensor) else v for k, v in entry.items()})


def adopt_seed(core, seed: int | None, stepped: bool) -> None:
    """A loaded checkpoint's stochastic-rounding seed (``take_seed``) as optkern.optim instance
    ``core``'s, by its own rule (``_adopt_seed``); no ``core`` (no low precision): nothing is drawn."""
    if core is not None:
        core._adopt_seed(seed, stepped)


def convert_checkpoint(state_dict, params: list, cfg: LowpConfig | None, names: tuple) -> tuple:
    """``state_dict`` as torch's loader should see it for ``params``, and the state it must not
    cast: each param's (param, entry) in storage ``cfg`` (``lowp_entry``). Without low precision
    (``cfg`` None), a low-precision checkpoint's moments (``names``) come back as floats
    (``float_entry``) for torch's loader to cast as usual; a float one is left alone."""
    if not isinstance(state_dict, dict) or not isinstance(state_dict.get("state"), dict):
        return state_dict, []
    ids = _saved_ids(state_dict) if isinstance(state_dict.get("param_groups"), list) else []
    if len(ids) != len(params):
        return state_dict, []  # (torch's loader says what is wrong)
    state, exact = dict(state_dict["state"]), []
    for sid, p in zip(ids, params):
        entry = state.get(sid)
        if not isinstance(entry, dict):
            continue
        where = f"state_dict['state'][{sid!r}]"
        if cfg is not None:
            exact.append((p, lowp_entry(entry, p, cfg, names, where)))
        elif any(k in entry for k in (_MASTER, _BLOCK)) or any(_is_8bit(entry, n) for n in names):
            n_p = None if torch.nn.parameter.is_lazy(p) else p.numel()  # (a lazy param: no size yet)
            state[sid] = float_entry(entry, names, where, n_p)
    return {**state_dict, "state": state}, exact
