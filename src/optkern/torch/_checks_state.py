"""The checks of ``load_state_dict`` in optkern.torch's optimizers (a mixin of ``_Fused``): the
whole state dict -- structure, the groups' hyper-parameters, each param's state entries -- before
torch's loader changes anything."""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, Any

import torch

from .. import _backend
from .._foreign import refuse_meta
from ..optim._state_checks import _MAX_STEP, NONNEGATIVE, REQUIRED, SCALARS, _row, check_groups
from ._host_values import host_group
from ._impl_keywords import TORCH_IMPL_KEYWORDS, impl_names
from ._state import _HOST_SCALARS, _meta
from ._tensor_hypers import refuse_bool_lr

_STRIDED = torch.strided

#: The group keys torch.optim's ``__setstate__`` (which its loader runs) sets to its defaults where
#: a loaded group lacks them, by class name: torch's loader replaces a group with the saved one, so
#: a checkpoint without ``maximize`` steps as maximize=False whatever the optimizer was made with.
TORCH_SETDEFAULT = {
    "SGD": ("nesterov", "maximize"),
    "Adam": ("amsgrad", "maximize", "decoupled_weight_decay"),
    "NAdam": ("maximize", "decoupled_weight_decay"),
    "Adagrad": ("maximize",),
    "RMSprop": ("momentum", "centered", "maximize"),
    "Adadelta": ("maximize",),
    "AdagradNorm": ("maximize",),
}
#: Of ``REQUIRED``, what torch's step never reads: a loaded group without it stays without (torch's
#: does), and is read with this optimizer's value (``host_read``: a new param's state starts there).
_TORCH_UNREAD = {"Adagrad": ("initial_accumulator_value",)}
#: torch's ``__setstate__`` value of an implementation keyword where it is not its signature's
#: (SGD's ``fused``: None in the signature, False for a loaded group without it).
_IMPL_SETDEFAULT = {"SGD": {"fused": False}}


def torch_required(cls) -> tuple:
    """The hyper-parameters a saved group loaded into ``cls`` must carry: the others torch's loader
    fills in or its step never reads. One missing: torch's step failed on it with a KeyError; ours
    took the constructor's value and stepped on (another lr, silently)."""
    without = _row(TORCH_SETDEFAULT, cls, ()) + _row(_TORCH_UNREAD, cls, ())
    return tuple(k for k in _row(REQUIRED, cls, ("lr",)) if k not in without)


def load_defaults(opt) -> dict:
    """What a saved group of ``opt`` lacks loads as: torch's defaults (its signature's) for the keys
    of ``TORCH_SETDEFAULT`` and for the implementation keywords the class takes (``foreach``...: its
    ``__setstate__`` fills them, not from the constructor's), this optimizer's value for optkern's own
    keys (``momentum_form``); not the keys torch's step never reads (``_TORCH_UNREAD``: torch's
    loaded group lacks them too)."""
    # (torch's namesake's signature: its defaults are its __setstate__'s; optkern's Adam says None
    # for "the class's"; AdagradNorm, optkern's own, has its own)
    cls = type(opt)
    named = (getattr(torch.optim, c.__name__, None) for c in cls.__mro__)
    torch_cls = next((c for c in named if isinstance(c, type) and c is not torch.optim.Optimizer), cls)
    sig = inspect.signature(torch_cls).parameters
    torch_keys = [k for k in _row(TORCH_SETDEFAULT, cls, ()) if k in sig and k in opt.defaults]
    impl = {k: TORCH_IMPL_KEYWORDS[k] for k in impl_names(cls)} if _row(TORCH_SETDEFAULT, cls, None) else {}
    unread = _row(_TORCH_UNREAD, cls, ())
    own = {k: v for k, v in opt.defaults.items() if k not in unread}
    return {**own, **{k: sig[k].default for k in torch_keys}, **impl, **_row(_IMPL_SETDEFAULT, cls, {})}


def host_read(opt, group: dict, where: str) -> dict:
    """``host_group(group)`` (what the checks and functional forms take), with the hyper-parameters
    torch's step never reads that a loaded group may lack (``_TORCH_UNREAD``) at ``opt``'s values:
    torch's Adagrad starts every param's sums at its constructor's ``initial_accumulator_value``.
    A bool tensor lr read as its value where torch's step takes it (``opt._BOOL_LR``), else refused."""
    if not opt._BOOL_LR:
        refuse_bool_lr(group, where)
    host = host_group(group, where, opt._BOOL_LR)
    missing = [k for k in _row(_TORCH_UNREAD, type(opt), ()) if k not in host]
    return {**host, **{k: opt.defaults[k] for k in missing}} if missing else host


class _StateDictChecks:
    """A mixin of ``_Fused`` (its groups, state, views and hyper-parameters)."""

    if TYPE_CHECKING:  # everything else it reads is _Fused's

        def __getattr__(self, name: str) -> Any: ...

    def _check_state_dict(self, sd) -> None:
        """TypeError / ValueError naming the first entry of ``sd`` this optimizer cannot load (its
        structure and the groups' hyper-parameters; the state entries: ``_check_state_entries``)."""
        keys = check_groups(sd, [len(g["params"]) for g in self.param_groups], strict=False, indices=False)
        _check_listed(sd["state"], {k for group in keys for k in group})
        required, defaults = torch_required(type(self)), load_defaults(self)  # (once: the same for every group)
        for i, (saved, own) in enumerate(zip(sd["param_groups"], self.param_groups)):
            where = f"state_dict['param_groups'][{i}]"
            for k in required:
                if k not in saved:
                    raise ValueError(
                        f"{where}: missing {k!r} (torch's loader replaces a group with the saved one, "
                        "whose step needs it)"
                    )
            group = {**defaults, **saved, "params": own["params"]}  # (as it will be once loaded)
            self._m._check(host_read(self, group, where), where)
            self._validate(group, where)

    def _check_state_entries(self, sd: dict, exact: list) -> None:
        """Each param's saved state (``sd`` as torch's loader will see it; ``exact``: the entries
        that replace it, low precision) as a step of this optimizer reads it: a dict; the step count
        and per-param scalars finite numbers (or 1-element tensors), the step count a whole number >= 0; each
        state tensor a floating-point (a complex param's: complex) tensor of its param's shape.
        Names the first bad entry."""
        lowp = {id(p) for p, _ in exact}
        names = set(_meta(self._core)._state_names) - set(_HOST_SCALARS)
        m = self._m
        # what a stepped param's entry must hold (torch's loader raises KeyError for a missing step;
        # a missing state tensor only at torch's step): an entry holds all of it, or is empty
        scalars = ("step", *m._scalar_names) if m._has_step and self._complete_state else ()
        defaults = load_defaults(self) if self._complete_state else {}  # (once: the same for every group)
        for gi, (saved, own) in enumerate(zip(sd["param_groups"], self.param_groups)):
            needed: tuple = ()
            if self._complete_state:
                group = {**defaults, **saved, "params": own["params"]}  # (checked: _check_state_dict)
                where = f"state_dict['param_groups'][{gi}]"
                hp = m._check(host_read(self, group, where), where)
                needed = tuple(n for n in m._needed(hp) if n not in self._may_be_none)
            for k, p in zip(saved["params"], own["params"]):
                if k in sd["state"]:
                    self._check_entry(sd["state"][k], f"state_dict['state'][{k!r}]", p, names, scalars, needed, lowp)

    def _check_entry(self, entry, where: str, p, names: set, scalars: tuple, needed: tuple, lowp: set) -> None:
        """One param's saved entry (``_check_state_entries``): ``scalars`` and ``needed`` (state
        tensors the saved group's hyper-parameters need) present in a non-empty one."""
        if not isinstance(entry, dict):
            raise TypeError(f"{where}: expected a dict, got {type(entry).__name__}")
        for n in _HOST_SCALARS:
            if n in entry:
                _check_scalar(entry[n], f"{where}[{n!r}]", nonnegative=n == "step", whole=n == "step", key=n)
        # (a low-precision param's entry too: lowp_entry converts the moments present and skips a
        # missing one, which loaded and then failed every step with "missing state")
        # (a None one too, where the param is low precision: lowp_entry skipped it, and every step
        # refused it; the checks below name a None plain state as no tensor)
        for n in scalars + needed:
            if entry and (n not in entry or (id(p) in lowp and entry[n] is None)):
                raise ValueError(
                    f"{where}: missing {n!r} (a stepped param's entry holds every entry its step reads; "
                    "a param that has not stepped has none)"
                )
        if id(p) in lowp:
            return  # (its moments: converted and checked by _lowp.lowp_entry)
        for n in names:
            if n not in entry:
                continue
            t = entry[n]
            if t is None and n in self._may_be_none:
                continue  # (torch 1.x SGD saved {'momentum_buffer': None}: made from the next grad)
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{where}[{n!r}]: expected a torch.Tensor, got {type(t).__name__}")
            if p.is_complex():  # (its state is complex too, as torch's: torch's loader would not cast it)
                if not (t.is_complex() and t.layout is _STRIDED):
                    got = f"{t.dtype} {t.layout}"
                    raise TypeError(
                        f"{where}[{n!r}]: expected a dense complex tensor (its param is {p.dtype}), got {got}"
                    )
            elif not (t.is_floating_point() and t.layout is _STRIDED):
                raise TypeError(f"{where}[{n!r}]: expected a dense floating-point tensor, got {t.dtype} {t.layout}")
            if t.shape != p.shape:
                raise ValueError(f"{where}[{n!r}]: expected shape {tuple(p.shape)} (its param's), got {tuple(t.shape)}")
            check_values(t, f"{where}[{n!r}]", n in NONNEGATIVE and not t.is_complex())


def check_values(t: torch.Tensor, name: str, nonnegative: bool) -> None:
    """ValueError naming ``name`` where saved state ``t`` holds a NaN or inf, or (``nonnegative``: a
    second moment, an accumulator) a negative entry: loaded, the next step wrote NaN into its param
    (optkern.optim's loader refuses both, :data:`~optkern.optim._state_checks.NONNEGATIVE`)."""
    refuse_meta(t, name)
    if t.layout is not _STRIDED:  # (a sparse master_param: aminmax raised NotImplementedError below)
        raise TypeError(f"{name}: expected a dense tensor, got {t.layout}")
    if t.numel() == 0:
        return
    # one reading pass, nothing allocated (torch.isfinite(t).all() made a bool tensor of t's size:
    # 70x slower on a large checkpoint); min and max propagate NaN
    t = t.detach()
    if t.is_complex():  # (a conjugated view, loaded as the values it shows: copied to be viewed as real)
        t = torch.view_as_real(t.resolve_conj())
    lo, hi = torch.stack(torch.aminmax(t)).tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name}: holds NaN or inf entries (the next step would write them into its param)")
    if nonnegative and lo < 0:
        raise ValueError(f"{name}: holds negative entries (a sum or average of squares is >= 0)")


def _check_listed(state: dict, listed: set) -> None:
    """ValueError naming the first key of a saved ``state`` that no saved group lists (``listed``):
    torch's loader keeps such an entry under that key and never steps it, so a checkpoint whose
    keys were changed (strings after a trip through JSON; ids renamed in its groups) would load with
    its state silently dropped."""
    for k in state:
        if k not in listed:
            raise ValueError(
                f"state_dict['state'][{k!r}]: no parameter group lists this id (state_dict['param_groups'][i]"
                "['params'] holds the ids of the params whose state it keys)"
            )


def _check_scalar(v, name: str, nonnegative: bool, whole: bool = False, key: str = "") -> None:
    """A saved step count or per-param scalar: a real number or a 1-element real tensor, finite
    (and >= 0 where ``nonnegative``, a whole number where ``whole``; in its range where ``key`` is a
    per-param scalar of optkern.optim's table ``SCALARS``: NAdam's mu_product in [0, 1], which
    loaded out of it and then refused every step; AdaGrad-Norm's b_sq > 0, divided by)."""
    if isinstance(v, torch.Tensor):
        refuse_meta(v, name)
        if v.numel() != 1 or v.is_complex() or v.dtype is torch.bool:
            raise TypeError(
                f"{name}: expected a number or a 1-element real tensor, got {v.dtype} of shape {tuple(v.shape)}"
            )
        v = float(v.detach().cpu().reshape(()))
    if key in SCALARS:
        lo, hi, lo_open = SCALARS[key]
        _backend.in_range(name, v, lo, hi, lo_open=lo_open)
    elif nonnegative:
        x = _backend.nonnegative(name, v)
        # (a step count, ``whole``: a fraction stepped as int(step) + 1, its bias corrections those
        # of another step than the count it kept, and than torch.optim's)
        if whole and x % 1:
            raise ValueError(f"{name}: expected a whole number of steps, got {x}")
        if whole and x > _MAX_STEP:  # (optkern.optim's bound: loaded, every step refused it)
            raise ValueError(f"{name}: {x:.17g} is beyond 2**53, where step counts stop being exact")
    else:
        _backend.real(name, v)
