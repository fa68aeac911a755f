"""What every optimizer's functional form shares: argument lists, hyper-parameter checks
(in range, and representable in the arrays' dtype) and the call of the native step.

Each optimizer module (``optim/<name>.py``) defines its functional form next to its class
from these: a named tuple of its hyper-parameters, ``_check_<name>`` (validates and
normalises them into it), ``_<name>_call`` (one :func:`_native` call) and the public
``<name>_`` that :mod:`optkern.functional` re-exports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import numpy as np

from .. import _backend
from .._hyper_scalars import in_range as in_range
from .._hyper_scalars import nonnegative as nonnegative
from .._hyper_scalars import positive as positive
from ._state_checks import _MAX_STEP


def _namer(where: str) -> Callable[[str], str]:
    """'lr' for functional calls, "param_groups[1]['lr']" for optimizer groups."""
    if not where:
        return lambda k: k
    return lambda k: f"{where}[{k!r}]"


def _flag(name: str, value) -> bool:
    """A bool option: a bool, or the int 0 / 1 (torch's code passes those); any other int is refused
    -- ``bool()`` read -1 and 2**70 as True (``maximize=-1``: an ascent step, silently)."""
    if value is True or value is False or isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        if value == 0 or value == 1:
            return bool(value)
        raise ValueError(f"{name}: expected a bool (or 0 / 1), got {int(value)}")
    raise TypeError(f"{name}: expected a bool (or 0 / 1), got {type(value).__name__}")


# (in_range, nonnegative, positive: the scalar checks, a NumPy float16 refused first, imported above
# from optkern._hyper_scalars, the one definition SAM and the schedules share)


def _lists(params, grads, **states):
    """params, grads and state lists as lists; the native module that runs them."""
    params = _backend.as_list(params, "params")
    grads = _backend.as_list(grads, "grads")
    out = {k: (None if v is None else _backend.as_list(v, k)) for k, v in states.items()}
    named = [("params", params), ("grads", grads)] + [(k, v) for k, v in out.items() if v is not None]
    mod = _backend.backend(*named)
    _check_shapes(params, grads)
    return mod, params, grads, out


_shape = attrgetter("shape")


def _check_shapes(params, grads) -> bool:
    """Raise ValueError naming the first grad with its param's size but another shape.

    The native calls compare sizes only, and a transposed gradient would pass them.
    Non-arrays and size mismatches are left to the native checks, which name them. Returns
    whether a grad is a DLPack capsule (the step's read-only lists take them): its shape is not
    readable here, only by the native precheck (``precheck_step_``), which the caller runs then.
    """
    try:
        if list(map(_shape, grads)) == list(map(_shape, params)):
            return False  # the common case, in one comparison
    except AttributeError:
        pass
    capsules = False
    for i, (p, g) in enumerate(zip(params, grads)):
        shape = getattr(g, "shape", None)
        if shape is None:
            capsules = capsules or type(g) is _backend.CAPSULE
        elif shape != p.shape and getattr(g, "size", None) == p.size:
            raise ValueError(f"grads[{i}]: expected shape {tuple(p.shape)}, got {tuple(shape)}")
    return capsules


def _step_count(step) -> int:
    """A functional call's step number: from 1 up to the steps a state dict may hold (2**53, where
    the bias corrections' doubles stop counting exactly)."""
    return _backend.integer("step", step, lo=1, hi=_MAX_STEP)


# ---- hyper-parameters against the dtype they run in -------------------------------------
# (The native steps make the same checks with the same messages: each description's `in_dtype`
# table in cpp/include/optkern/signatures_optim.hpp, checks::check_in_dtype in dtype_checks.hpp;
# tests/test_hunt50a_native_checks.py pins that the two agree, value by value.)
# The rules round these hyper-parameters (and scalars derived from them in double) to the
# arrays' dtype: each must stay finite there, and eps must stay > 0 (a zero eps divides 0 by
# 0 where a gradient is 0). lr_decay and momentum_decay are used in double only. b0 is
# squared into AdaGrad-Norm's float64 b^2, which must be finite and > 0.
_ROUNDED = frozenset(
    {
        "lr",
        "momentum",
        "dampening",
        "weight_decay",
        "eps",
        "alpha",
        "rho",
        "beta1",
        "beta2",
        "initial_accumulator_value",
    }
)
_POSITIVE = frozenset({"eps"})
_SQUARED = frozenset({"b0"})
# Multiplicative hyper-parameters meet each other and squared gradients in one product
# (Adam's (1 - beta2) (g + wd p)^2, SGD's lr (wd p + momentum b)): below float32's max ** (1/4)
# (4.3e9) such products of moderate data stay finite wherever a float64 evaluation is; float64's
# bound (1.2e77) does the same for the order in which the rules multiply. Narrower dtypes compute
# in float32.
_SCALES = frozenset({"lr", "weight_decay", "momentum"})
# NAdam keeps its momentum product in the arrays' dtype (torch keeps a float32 tensor): a beta1
# that rounds to 1 there makes every bias correction 1 - mu_product zero and the step infinite.
_BELOW_ONE_WITH = {"beta1": "momentum_decay"}
_F32_SCALE_MAX = float(np.finfo(np.float32).max) ** 0.25
_F64_SCALE_MAX = float(np.finfo(np.float64).max) ** 0.25


# (hyper-parameters, their types, dtype) that passed _check_dtype: a step's hyper-parameters rarely
# change, and the check's float conversions cost tens of microseconds per call.
_DTYPE_OK: dict = {}


def _check_dtype(hp: Any, dtype, where: str = "", names=None) -> None:
    """Raise ValueError naming the first hyper-parameter of ``hp`` that ``dtype`` cannot run.

    ``names``: how errors name fields (default: the field name, in ``where``'s group).
    """
    try:
        key: Any = (type(hp), hp, tuple(map(type, hp)), dtype)
        if key in _DTYPE_OK:
            return
    except TypeError:  # an unhashable field: checked every time
        key = None
    _check_dtype_fields(hp, np.dtype(dtype), where, names)
    if key is not None:
        if len(_DTYPE_OK) >= 256:
            _DTYPE_OK.clear()
        _DTYPE_OK[key] = None


def _mu_rounds_to_one(dtype: np.dtype) -> float:
    """t * momentum_decay past which NAdam's 1 - 0.96^(t momentum_decay) / 2 rounds to 1 in ``dtype``
    (0.96^x / 2 below half an ulp of 1: 2^-(nmant + 2)); 407.5 in float32."""
    return (np.finfo(dtype).nmant + 1) * math.log(2.0) / -math.log(0.96)


# float32_lr's float32 operands ({field: the flag it also needs, or None}) and the errors' words for
# them, read from the native table (signatures_optim_checks.hpp: kFloat32Operands), so the rule is
# written once. The native steps check it too, but this check cannot go: it names a group's field
# (param_groups[1]['lr']) and runs before anything a step does first -- GradScaler.step unscales the
# grads in place, optkern.torch makes its state -- where the native call comes last.
_F32_OPERANDS: dict[str, str | None] = _backend.cpu.FLOAT32_LR_OPERANDS
_F32_WHOSE: str = _backend.cpu.FLOAT32_LR_WHOSE


def _float32_operand(hp: Any, field: str) -> bool:
    """Whether ``field`` of ``hp`` is rounded to float32 whatever the arrays' dtype (float32_lr:
    optkern.torch's float32 tensor lr; ``_F32_OPERANDS``)."""
    if not getattr(hp, "float32_lr", False) or field not in _F32_OPERANDS:
        return False
    when = _F32_OPERANDS[field]
    return when is None or bool(getattr(hp, when, False))


def _check_dtype_fields(hp: Any, dtype: np.dtype, where: str, names) -> None:
    n = _namer(where)
    arrays = dtype
    for field, v in zip(hp._fields, hp):
        if isinstance(v, bool) or not isinstance(v, float):
            continue
        name = (names or {}).get(field) or n(field)
        dtype, whose = arrays, "the arrays' dtype"
        if arrays.itemsize > 4 and _float32_operand(hp, field):
            dtype, whose = np.dtype(np.float32), _F32_WHOSE
        if field in _ROUNDED:
            r = _backend.finite_in(name, v, dtype, whose)
            bound = _F32_SCALE_MAX if dtype.itemsize < 8 else _F64_SCALE_MAX
            if field in _SCALES and abs(v) > bound:
                kind = "float32" if dtype.itemsize < 8 else "float64"
                raise ValueError(
                    f"{name}: {v!r} is above {bound:.4g} ({kind}'s max ** (1/4)), the largest value "
                    f"a {dtype.name} step keeps finite"
                )
            if _BELOW_ONE_WITH.get(field) in hp._fields and not r < 1.0:
                raise ValueError(
                    f"{name}: {v!r} rounds to 1 in {dtype.name} (the arrays' dtype), where NAdam's momentum "
                    "factor mu_t = beta1 (1 - 0.96^(t momentum_decay) / 2) then rounds to 1 once t * "
                    f"momentum_decay passes about {_mu_rounds_to_one(dtype):.1f}: a momentum product still 1 "
                    "(the first step, or a loaded state's) then makes the step divide by 1 - mu_product = 0; "
                    "the largest usable value is "
                    f"{float(np.nextafter(dtype.type(1), dtype.type(0)))!r}"
                )
            if field in _POSITIVE and not r > 0:
                raise ValueError(
                    f"{name}: {v!r} rounds to 0 in {dtype.name} (the arrays' dtype); "
                    f"the smallest usable value is {float(np.nextafter(dtype.type(0), dtype.type(1)))!r}"
                )
        elif field in _SQUARED and not (np.isfinite(v * v) and v * v > 0):
            raise ValueError(f"{name}: {v!r} squared is not a finite positive float64 (b^2 starts at b0^2)")
    if "b0" in hp._fields and "lr" in hp._fields:
        _check_rate_bound(hp.lr, hp.b0, arrays, (names or {}).get("b0") or n("b0"))


def _check_rate_bound(
    lr: float, b0: float, dtype, name: str, squared: bool = False, lr_name: str | None = None
) -> None:
    """AdaGrad-Norm steps with the rate ``lr / b`` (``b`` grows from ``b0``), rounded to the step's
    dtype (float32 below float64): past that dtype's max it rounds to inf, and a zero gradient's
    step inf * 0 turned every param into NaN. (Once the first gradient is in ``b^2``, ``rate * |g'|
    <= lr``: the largest rate is the only one to bound.) ``squared``: ``b0`` is a ``b^2`` (a
    functional call's or a loaded state's ``b_sq``), whose ``b^2 = 0`` steps nothing. ``lr_name``:
    the lr is the value that changed (a group's lr raised over a state's ``b^2``): the error names it."""
    if not b0 > 0:  # (b^2 = 0 steps nothing; a NaN or negative one is the caller's error to name)
        return
    dtype = np.dtype(dtype)
    top = float(np.finfo(np.float32 if dtype.itemsize < 8 else np.float64).max)
    b = math.sqrt(b0) if squared else b0
    if lr / b > top and lr_name is not None:
        raise ValueError(
            f"{lr_name}: {lr!r} with {name} = {b0!r} makes the step size lr / sqrt(b^2) = {lr / b:.4g} "
            f"overflow {'float32' if dtype.itemsize < 8 else 'float64'} (max {top:.4g}), where a zero "
            f"gradient's step is NaN: the largest usable lr there is {top * b:.4g}"
        )
    if lr / b > top:
        what, smallest = ("b^2", (lr / top) ** 2) if squared else ("b0", lr / top)
        raise ValueError(
            f"{name}: {b0!r} makes the step size lr / {'sqrt(b^2)' if squared else 'b0'} = {lr / b:.4g} "
            f"overflow {'float32' if dtype.itemsize < 8 else 'float64'} (max {top:.4g}), where a zero "
            f"gradient's step is NaN: the smallest usable {what} with lr={lr!r} is {smallest:.4g}"
        )


def _check_params_dtype(hp: tuple, params) -> None:
    dtype = getattr(params[0], "dtype", None) if params else None
    # A dtype the CPU module cannot run is the params' error (the native checks name them), not lr's.
    if dtype is not None and (dtype in (np.float32, np.float64) or not isinstance(params[0], np.ndarray)):
        _check_dtype(hp, dtype)


def _native(mod, rule: str, args: tuple, dev) -> Any:
    """``mod.<rule>_(*args)``, or with ``dev = (counters, lr_buffer)`` its capturable variant."""
    with _backend.read_only_explained(args):  # (a read-only param: why, for an unversioned DLPack view)
        if dev is None:
            return getattr(mod, rule + "_")(*args)
        return getattr(mod, rule + "_capturable")(*args, *dev)
