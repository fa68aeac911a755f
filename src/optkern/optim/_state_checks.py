"""Validation of a state dict before an optimizer's ``load_state_dict`` changes anything.

:func:`check_state_dict` reads the optimizer (its ``param_groups`` and the class-level
names of its state: ``_state_names``, ``_scalar_names``, ``_has_step``) and the candidate
dict, and raises TypeError / ValueError naming the first bad entry by its path in the dict
(``state_dict['state'][3]['exp_avg_sq']: negative entries ...``). It writes nothing, so
``load_state_dict`` calls it first and an error leaves the optimizer untouched.

What each state must satisfy is declared once, in the tables below, by state name (a name
means the same thing in every optimizer that holds it) and, for the hyper-parameters a
checkpoint must carry, by optimizer class (looked up along the class's MRO, so AdamW uses
Adam's row). A new optimizer gets the generic checks (shapes, dtypes, finiteness, steps,
known keys) without a row; it adds one for sign constraints or required hyper-parameters.

Rules (``strict=True``, the default):

- every state array is a floating-point array (NumPy, CuPy, or anything with ``__array__``
  such as a CPU torch tensor) with exactly its parameter's shape, all entries finite and
  representable in the parameter's dtype; second moments, accumulators and AMSGrad maxima
  (:data:`NONNEGATIVE`) have no negative entry;
- ``step`` is a non-negative integer: a Python/NumPy integer, an integral float, or a one-
  element integer or float array (PyTorch's tensor step, a capturable optimizer's device
  counter); not a bool, a string or a fraction;
- per-parameter scalars (:data:`SCALARS`: NAdam's ``mu_product``, AdaGrad-Norm's ``b_sq``)
  are real numbers in their range, and equal across a group where the optimizer keeps one
  per group;
- a parameter's entry, when present, holds everything the saved hyper-parameters need: a
  ``step`` (optimizers that count steps), every needed state array (SGD with momentum: its
  ``momentum_buffer``) and every scalar. A parameter that has not taken a step simply has
  no entry (it starts afresh);
- each parameter group carries the hyper-parameters of :data:`REQUIRED` (``lr`` always);
  options that PyTorch lacks or added late (``maximize``, ``decoupled_weight_decay``,
  ``momentum_form``, RMSprop's ``nesterov``) keep this optimizer's value when absent, and
  other extra group entries (a scheduler's ``initial_lr``, PyTorch's ``foreach``) are kept;
- no unknown keys: in the top-level dict, in a state entry, or state indices that no group lists.

``strict=False`` relaxes only the structure: unknown keys and unlisted indices are ignored,
missing hyper-parameters keep this optimizer's values, and an empty entry ``{}`` means "not
stepped yet". Values (shapes, dtypes, finiteness, signs, steps, scalars) are always checked.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _backend
from .._foreign import host_number, host_values

#: State arrays that can never be negative (sums and averages of squares, their maxima).
NONNEGATIVE = frozenset({"exp_avg_sq", "max_exp_avg_sq", "sum", "square_avg", "acc_delta"})

#: Per-parameter scalars: (low, high, low end open). mu_product is a product of momentum
#: factors in [0, 1] (1 before the first step): 0 once it underflows (float32 after about 120 steps at the defaults, as
#: torch's does) or from the first step with betas[0] = 0, and its state dicts hold that 0; b_sq
#: is AdaGrad-Norm's b^2 >= b0^2 > 0, divided by.
SCALARS = {"mu_product": (0.0, 1.0, False), "b_sq": (0.0, None, True)}

#: Hyper-parameters a group must carry, by optimizer class name: those PyTorch's counterpart
#: has always stored, and AdaGrad-Norm's own.
REQUIRED = {
    "SGD": ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
    "Adagrad": ("lr", "lr_decay", "weight_decay", "eps", "initial_accumulator_value"),
    "AdagradNorm": ("lr", "b0", "weight_decay"),
    "RMSprop": ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"),
    "Adadelta": ("lr", "rho", "eps", "weight_decay"),
    "Adam": ("lr", "betas", "eps", "weight_decay", "amsgrad"),
    "NAdam": ("lr", "betas", "eps", "weight_decay", "momentum_decay"),
}

_MAX_STEP = 2**53  # steps become doubles in the bias corrections: exact up to here


def _row(table: dict, cls, default):
    for c in cls.__mro__:
        if c.__name__ in table:
            return table[c.__name__]
    return default


def check_state_dict(opt, state_dict, *, strict: bool = True) -> None:
    """Raise TypeError / ValueError naming the first entry of ``state_dict`` that ``opt`` must not load."""
    ids = check_groups(state_dict, _counts(opt), strict=strict)
    entries = _entries_by_index(state_dict["state"])
    for gi, (ours, saved) in enumerate(zip(opt.param_groups, state_dict["param_groups"])):
        _check_group(opt, saved, ours, gi, ids[gi], entries, strict)
    if strict:
        check_listed(entries, ids)


def check_listed(entries: dict, ids: list[list]) -> None:
    """ValueError naming the first of ``entries`` (``_entries_by_index``) whose index no group's
    ``ids`` (``check_groups``) lists: a strict load refuses the state it would drop."""
    listed = {i for group in ids for i in group}
    unlisted = sorted(set(entries) - listed)
    if unlisted:
        key = entries[unlisted[0]][0]
        raise ValueError(
            f"state_dict['state'][{key!r}]: no parameter group lists this index "
            "(load_state_dict(..., strict=False) ignores it)"
        )


def _counts(opt) -> list[int]:
    return [len(g["params"]) for g in opt.param_groups]


def _entries_by_index(state: dict) -> dict:
    """{parameter index: (key as saved, entry)}; keys are ints or, after JSON, decimal strings."""
    out: dict[int, tuple] = {}
    for key, entry in state.items():
        if isinstance(key, bool) or not isinstance(key, (numbers.Integral, str)):
            raise TypeError(f"state_dict['state']: key {key!r} is not a parameter index")
        try:
            i = int(key)
        except ValueError:
            raise ValueError(f"state_dict['state']: key {key!r} is not a parameter index") from None
        # a string only in its decimal form: the loader looks an entry up by i and str(i), so an
        # entry under "01", " 1" or "+1" was checked as param 1's and then never loaded (dropped)
        if isinstance(key, str) and key != str(i):
            raise ValueError(
                f"state_dict['state']: key {key!r} is not a parameter index (write index {i} as {i} or {str(i)!r})"
            )
        if i in out:
            raise ValueError(f"state_dict['state']: index {i} appears twice (as {out[i][0]!r} and {key!r})")
        out[i] = (key, entry)
    return out


def check_groups(sd, counts: list[int], *, strict: bool = True, indices: bool = True) -> list[list]:
    """The structure every state dict in torch's format must have, against the optimizer's
    groups of ``counts`` parameters each: a dict with a ``'state'`` dict and a ``'param_groups'``
    list of as many groups (when ``strict``, no other key); group ``i`` a dict whose ``'params'``
    lists ``counts[i]`` keys, no key twice in the whole dict. Returns each group's keys:
    integers when ``indices`` (optkern.optim's format), else any hashable (torch's loader maps
    saved keys to params by position). Raises TypeError / ValueError naming the first bad entry."""
    if not isinstance(sd, dict):
        raise TypeError(f"state_dict: expected a dict (an optimizer's state_dict()), got {type(sd).__name__}")
    if "zero" in sd and "state" not in sd:  # (the missing 'state' named no way out)
        raise ValueError(
            "state_dict: is one rank's ShardedOptimizer shard (its state_dict(): 'zero' and 'optimizer'), "
            "a slice of the state: load the dict its consolidate_state_dict() returns"
        )
    for k in ("state", "param_groups"):
        if k not in sd:
            raise ValueError(f"state_dict: missing {k!r} (expected a dict with 'state' and 'param_groups')")
    if strict:
        extra = [k for k in sd if k not in ("state", "param_groups")]
        if extra:
            raise ValueError(
                f"state_dict: unknown key {extra[0]!r} (expected 'state' and 'param_groups'; "
                "load_state_dict(..., strict=False) ignores it)"
            )
    groups, state = sd["param_groups"], sd["state"]
    if not isinstance(groups, (list, tuple)):
        raise TypeError(f"state_dict['param_groups']: expected a list, got {type(groups).__name__}")
    if not isinstance(state, dict):
        raise TypeError(f"state_dict['state']: expected a dict, got {type(state).__name__}")
    if len(groups) != len(counts):
        raise ValueError(
            f"state_dict['param_groups']: has {len(groups)} parameter groups, this optimizer has {len(counts)}"
        )
    seen: set = set()
    return [_group_keys(saved, n, gi, seen, indices) for gi, (saved, n) in enumerate(zip(groups, counts))]


def _group_keys(saved, n: int, gi: int, seen: set, indices: bool) -> list:
    """The keys of one saved group's ``'params'`` (``check_groups``); adds them to ``seen``."""
    where = f"state_dict['param_groups'][{gi}]"
    if not isinstance(saved, dict):
        raise TypeError(f"{where}: expected a dict, got {type(saved).__name__}")
    keys = saved.get("params")
    what = "parameter indices" if indices else "parameter ids"
    if not isinstance(keys, (list, tuple)):
        raise TypeError(f"{where}['params']: expected a list of {what}, got {type(keys).__name__}")
    if len(keys) != n:
        raise ValueError(f"{where}['params']: has {len(keys)} parameters, this optimizer's group has {n}")
    out = []
    for k, key in enumerate(keys):
        if indices and (isinstance(key, bool) or not isinstance(key, numbers.Integral)):
            raise TypeError(f"{where}['params'][{k}]: expected an integer index, got {type(key).__name__}")
        key = int(key) if indices else key
        try:
            twice = key in seen
        except TypeError:  # unhashable
            raise TypeError(f"{where}['params'][{k}]: expected a parameter id, got {type(key).__name__}") from None
        if twice:
            raise ValueError(f"{where}['params'][{k}]: {key!r} is listed twice")
        seen.add(key)
        out.append(key)
    return out


def saved_values(saved: dict, where: str, drop=("params", "capturable")) -> dict:
    """A saved group's values but those of ``drop``, as the loaded group takes them:
    torch tensors (torch takes ``lr`` and ``betas`` as tensors and saves them so) as the Python
    floats they hold, as the state tensors are read as the values they hold; the checks that
    follow name any other kind of value. ``where``: the group's path, which errors name."""
    return {k: host_number(v, f"{where}[{k!r}]", k == "betas") for k, v in saved.items() if k not in drop}


def _check_group(opt, saved: dict, ours: dict, gi: int, ids: list, entries: dict, strict: bool) -> None:
    where = f"state_dict['param_groups'][{gi}]"
    if strict:
        for k in _row(REQUIRED, type(opt), ("lr",)):
            if k not in saved:
                raise ValueError(
                    f"{where}: missing {k!r} (load_state_dict(..., strict=False) keeps this "
                    f"optimizer's value, {ours.get(k)!r})"
                )
    # the group load_state_dict would build; its own checks name the bad hyper-parameter
    group = {**ours, **saved_values(saved, where)}
    hp = opt._checked(group, where)[0]
    needed = set(opt._needed(hp))
    first = None  # (where, step, scalars) of the group's first entry: one run per group must agree
    for sid, p in zip(ids, ours["params"]):
        if sid not in entries:
            continue
        key, entry = entries[sid]
        ewhere = f"state_dict['state'][{key!r}]"
        step, scalars = _check_entry(opt, entry, ewhere, p, needed, strict)
        if getattr(opt, "_one_run_per_group", False) and step > 0:
            if first is None:
                first = (ewhere, step, scalars)
            else:
                _check_agrees(first, (ewhere, step, scalars))


def _check_agrees(a, b) -> None:
    """Optimizers with one state per group (AdaGrad-Norm) repeat it in every entry: equal copies."""
    if a[1] != b[1]:
        raise ValueError(
            f"{b[0]}['step']: {b[1]} differs from {a[0]}['step'] = {a[1]} in the same group "
            "(this optimizer keeps one step count per group)"
        )
    for name, v in b[2].items():
        if a[2].get(name) != v:
            raise ValueError(
                f"{b[0]}[{name!r}]: {v!r} differs from {a[0]}[{name!r}] = {a[2].get(name)!r} in "
                "the same group (this optimizer keeps one per group)"
            )


def _check_entry(opt, entry, where: str, p, needed: set, strict: bool):
    """(step, {scalar name: value}) of one parameter's entry, every value checked."""
    if not isinstance(entry, dict):
        raise TypeError(f"{where}: expected a dict, got {type(entry).__name__}")
    has_step = getattr(opt, "_has_step", True)
    names, scalar_names = tuple(opt._state_names), tuple(getattr(opt, "_scalar_names", ()))
    if strict:  # ("step" also for SGD: its low-precision steps count, for their Philox streams)
        known = ("step",) + names + scalar_names
        for k in entry:
            if k not in known:
                raise ValueError(
                    f"{where}: unknown key {k!r} ({type(opt).__name__} state holds "
                    f"{', '.join(map(repr, known))}; load_state_dict(..., strict=False) ignores it)"
                )
    elif not entry:
        return 0, {}
    for name in names:
        if entry.get(name) is not None:
            check_array(entry[name], p, f"{where}[{name!r}]", name in NONNEGATIVE)
    if has_step or "step" in entry:
        step = check_step(entry.get("step"), f"{where}['step']")
    else:  # no step count: a present entry is a stepped one, under strict
        step = 1 if strict or any(entry.get(n) is not None for n in names) else 0
    for name in names:
        if step > 0 and name in needed and entry.get(name) is None:
            raise ValueError(
                f"{where}: missing state {name!r} needed by these hyper-parameters (a parameter "
                "that has not taken a step has no entry)"
            )
    scalars = {}
    for name in scalar_names:
        if step == 0 and entry.get(name) is None:
            continue  # (a step-0 entry's scalar is optional; one saved is loaded: scalars_saved)
        if name not in entry:
            raise ValueError(f"{where}: missing {name!r}")
        lo, hi, lo_open = SCALARS.get(name, (None, None, False))
        scalars[name] = check_scalar(entry[name], f"{where}[{name!r}]", lo, hi, lo_open)
    return step, scalars


def scalars_saved(opt, entry: dict, step: int) -> bool:
    """Whether ``entry``'s per-parameter scalars (NAdam's ``mu_product``) are loaded: always after a
    step, and at step 0 where saved (torch's next step reads them, as it reads a step-0 entry's
    moments: a saved mu_product started again at 1)."""
    return step > 0 or any(entry.get(n) is not None for n in getattr(opt, "_scalar_names", ()))


# ---- values --------------------------------------------------------------------------


def _host_or_device(v, name: str):
    """CuPy arrays stay on their device, the rest go through ``np.asarray``."""
    if _backend.is_cupy(v):
        return v
    if not isinstance(v, np.ndarray) and not hasattr(v, "__array__"):
        raise TypeError(f"{name}: expected an array, got {type(v).__name__}")
    try:
        return host_values(v)  # (a torch tensor's values: see _foreign.host_values)
    except Exception as e:
        raise TypeError(f"{name}: cannot be read as a NumPy array ({type(v).__name__}: {e})") from None


def check_array(v, p, name: str, nonnegative: bool = False) -> None:
    """A state array for param ``p``: floating point, ``p``'s shape, finite in ``p``'s dtype, signs."""
    a = _host_or_device(v, name)
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {a.dtype}")
    if a.size != p.size:
        raise ValueError(f"{name}: expected {_backend.counted(p.size, 'element')} (like its parameter), got {a.size}")
    if tuple(a.shape) != tuple(p.shape):
        raise ValueError(f"{name}: expected shape {tuple(p.shape)} (its parameter's), got {tuple(a.shape)}")
    if a.size == 0:
        return
    _backend.check_finite(a, name)
    pdt = p.dtype if p.dtype.itemsize >= 4 else np.dtype(np.float32)  # half params: float32 master and states
    if a.dtype.itemsize > pdt.itemsize and float(abs(a).max()) > float(np.finfo(pdt).max):
        # (a half param's master and states are float32: that is what they overflow)
        what = f"the parameter's dtype {p.dtype}" if pdt == p.dtype else f"float32 (the state of a {p.dtype} parameter)"
        raise ValueError(f"{name}: entries overflow {what}")
    if nonnegative:
        neg = int((a < 0).sum())
        if neg:
            raise ValueError(f"{name}: negative entries ({neg} of {a.size}; this state is never negative)")


def _one_number(v, name: str, what: str):
    """A Python or NumPy number from a number or a one-element array (NumPy, CuPy, torch)."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected {what}, got bool")
    if isinstance(v, numbers.Real):
        return v
    if _backend.is_cupy(v) or isinstance(v, np.ndarray) or hasattr(v, "__array__"):
        a = _host_or_device(v, name)
        if a.size != 1:
            raise ValueError(f"{name}: expected {what}, got an array of shape {tuple(a.shape)}")
        if a.dtype.kind not in "iuf":
            raise TypeError(f"{name}: expected {what}, got an array of dtype {a.dtype}")
        return (a.get() if _backend.is_cupy(a) else a).reshape(()).item()
    raise TypeError(f"{name}: expected {what}, got {type(v).__name__}")


def check_step(v, name: str) -> int:
    """A step count: a non-negative integer (an integral float or one-element array is accepted)."""
    if v is None:
        raise ValueError(f"{name}: missing")
    x = _one_number(v, name, "a non-negative integer")
    if isinstance(x, numbers.Integral):
        x = int(x)
    else:
        x = float(x)
        if not (np.isfinite(x) and x == int(x)):
            raise ValueError(f"{name}: expected a non-negative integer, got {x!r}")
        x = int(x)
    if x < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {x}")
    if x > _MAX_STEP:
        raise ValueError(f"{name}: {x} is beyond 2**53, where step counts stop being exact")
    return x


def check_scalar(v, name: str, lo=None, hi=None, lo_open=False) -> float:
    """A finite real number in its range (a one-element array is accepted)."""
    if v is None:
        raise ValueError(f"{name}: missing")
    return _backend.in_range(name, float(_one_number(v, name, "a real number")), lo, hi, lo_open=lo_open)
