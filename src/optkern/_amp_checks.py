"""GradScaler's checks (optkern.amp): its state by the constructor's rules, the grads and the
optimizer it steps, and which optimizers read its found_inf flag on the device."""

from __future__ import annotations

import math
from collections.abc import Mapping
from operator import attrgetter

import numpy as np

from . import _backend
from ._array_checks import first_sharing
from .optim._closure import steps_from_closure
from .optim._lowp_config import _half_fmt


def _skips_on_device(optimizer) -> bool:
    """Whether ``optimizer``'s CUDA step reads GradScaler's device flag: capturable mode in every
    group (its step counters live on the device, and a skipped step leaves them). A low-precision
    step counts on the host (its bias corrections and Philox streams): skipped only by its kernel,
    it would count the step it did not take, so its flag is read on the host, as torch reads a
    non-fused optimizer's."""
    if getattr(optimizer, "_lowp", None) is not None:
        return False
    groups = getattr(optimizer, "param_groups", None) or []
    return bool(groups) and getattr(optimizer, "_capturable", False) and all(g.get("capturable") for g in groups)


def _grad_format(g, i: int) -> str:
    """'float32', 'bfloat16' or 'float16': the formats a low-precision step takes as grads."""
    if not hasattr(g, "dtype"):
        raise TypeError(f"grads[{i}]: expected an array, got {type(g).__name__}")
    dt = np.dtype(g.dtype)
    fmt = "float32" if dt == np.float32 else _half_fmt(dt)
    if fmt is None:
        raise TypeError(f"grads[{i}]: expected float32, float16 or bfloat16 gradients, got {dt}")
    return fmt


def _float32_in(name: str, value, lo: float, hi: float = math.inf) -> float:
    """A real in the open interval (lo, hi) that stays inside it rounded to float32, as the native
    rule holds the scale and its factors: a scale of 1e39 would be inf there and 1e-50 zero, a
    backoff_factor of 1 - 1e-9 one (no backoff)."""
    v = _backend.in_range(name, value, lo, None if hi == math.inf else hi, lo_open=True, hi_open=True)
    with np.errstate(over="ignore"):
        f = float(np.float32(v))
    if not lo < f < hi:
        raise ValueError(f"{name}: must stay in ({lo}, {hi}) rounded to float32, got {v!r} (float32: {f})")
    return v


def _scale_in(name: str, value) -> float:
    """A scale the user sets (``init_scale``, ``update(new_scale)``): ``_float32_in`` (0, negative
    and non-finite refused, as 1e-50, zero in float32), and one whose reciprocal is a finite float32.
    The unscale multiplies by ``float32(1 / scale)`` and checks the gradients it reads, as torch's
    does, not the products: below 2.938737e-39 (float32 subnormals from 2**-128 down) that
    reciprocal is inf, every finite gradient unscaled to inf (0 to NaN) with found_inf clear,
    and the step wrote them into the params. torch accepts such a scale; refused here by name."""
    v = _float32_in(name, value, 0.0)
    with np.errstate(over="ignore"):
        inv = np.float32(1.0 / float(np.float32(v)))
    if not math.isfinite(inv):
        raise ValueError(
            f"{name}: 1 / {name} (the unscale's factor) overflows float32 for {v!r}; the smallest scale "
            "taken is 2.938737e-39 (2**-128 * (1 + 2**-21))"
        )
    return v


#: the smallest scale whose unscale factor ``float32(1 / scale)`` is finite (rules::update_scale's
#: floor): 2**-128 * (1 + 2**-21) = 2.938737e-39, a float32 subnormal
SMALLEST_SCALE = 2.0**-128 * (1 + 2.0**-21)


def _saved_scale(name: str, value) -> float:
    """A scale read back from a state dict: the constructor's rule, except that 0 and the scales
    below ``SMALLEST_SCALE`` load as it. torch's backoff reaches them (0 after 166 non-finite steps
    in a row from 2**16), so its state dicts hold them; taken as they are, the next step unscaled
    every finite gradient to inf / NaN into the params (the backoff here stops at the floor)."""
    if _backend.real(name, value) == 0.0:
        return SMALLEST_SCALE
    return max(_float32_in(name, value, 0.0), SMALLEST_SCALE)


def _new_scale(value, scale):
    """``update(new_scale)``'s value: a number, or a 1-element float array (torch takes a 1-element
    floating tensor, bfloat16 too: the scale read back from ``get_scale`` as an array, say),
    checked by ``_scale_in`` wherever it lives. A device one is read back (4 bytes; torch copies it
    unchecked on the device): unchecked, a NaN, 0, negative or overflowing value became the device
    scale where the same value on the host is refused, and a negative one flips every later step.
    A foreign array (a torch tensor, as torch's ``update`` takes) is viewed as the NumPy / CuPy
    array it is; a CuPy one for a scaler on the CPU is refused (torch's device check)."""
    if _backend.is_foreign(value):  # (was refused as "expected a real number")
        value = _backend.as_array(value, "new_scale")
    if isinstance(value, np.ndarray) or _backend.is_cupy(value):
        dt = np.dtype(value.dtype)
        if value.size != 1 or not (dt.kind == "f" or _half_fmt(dt) == "bfloat16"):
            raise TypeError(f"new_scale: expected a number or a 1-element float array, got {dt} {value.shape}")
        if _backend.is_cupy(value):
            if not _backend.is_cupy(scale):
                raise ValueError("new_scale: a CUDA array for a scaler whose scale is on the CPU")
            value = value.reshape(1).get()
        value = float(value.reshape(-1)[0])
    return np.float32(_scale_in("new_scale", value))


#: why a step or unscale_ on no grads at all is refused (torch's AssertionError message)
_NOTHING_CHECKED = "no inf checks were recorded for this optimizer"

#: the scaler's state, in ``state_dict``'s keys
_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")


def _checked_state(state: Mapping, names: dict, *, saved: bool = False) -> dict:
    """``state`` (``_KEYS`` -> value) checked, the constructor's rules for each (ValueError /
    TypeError naming ``names[key]``), before the caller assigns any of it; a ``saved`` state
    (``load_state_dict``) may hold a scale that backed off below the floor, torch's 0 (``_saved_scale``)."""
    interval = _backend.integer(names["growth_interval"], state["growth_interval"], lo=1, hi=_backend.INT64_MAX)
    scale = _saved_scale if saved else _scale_in
    return {
        "scale": scale(names["scale"], state["scale"]),
        "growth_factor": _float32_in(names["growth_factor"], state["growth_factor"], 1.0),
        "backoff_factor": _float32_in(names["backoff_factor"], state["backoff_factor"], 0.0, 1.0),
        "growth_interval": interval,
        # the rule keeps the count of clean steps below the interval (it grows and restarts there);
        # a saved one may be past it: the interval lowered below the count (torch's
        # set_growth_interval; its rule and ours then grow no more), which state_dict() writes
        "_growth_tracker": _backend.integer(
            names["_growth_tracker"], state["_growth_tracker"], lo=0, hi=_backend.INT64_MAX if saved else interval - 1
        ),
    }


_FLOAT32 = {np.dtype(np.float32)}


def _all_float32(arrays: list) -> bool:
    """Whether every one of ``arrays`` is a float32 array, in one pass (naming none)."""
    try:
        return not set(map(attrgetter("dtype"), arrays)) - _FLOAT32
    except AttributeError:
        return False


def _float32_only(grads: list) -> list:
    """``grads`` without its None entries (params the step skips), each checked to be float32
    (a half grad is unscaled inside a master_weights optimizer's step, after widening)."""
    for i, g in enumerate(grads):
        if g is not None and _grad_format(g, i) != "float32":
            raise TypeError(
                f"grads[{i}]: {g.dtype} gradients are unscaled inside the optimizer's step (in float32): "
                "call scaler.step(optimizer, grads) with a master_weights optimizer, without unscale_()"
            )
    return [g for g in grads if g is not None]


def _wrapped_lowp(optimizer):
    """The low-precision optimizer a distributed wrapper (``DistributedOptimizer``,
    ``ShardedOptimizer``: ``synchronize`` / ``skip_synchronize``) steps, else None."""
    inner = getattr(optimizer, "optimizer", None)
    if getattr(inner, "_lowp", None) is None:
        return None
    if not all(callable(getattr(optimizer, k, None)) for k in ("synchronize", "skip_synchronize")):
        return None
    return inner


def _check_optimizer(optimizer) -> None:
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer: expected an optimizer (with a step() method), got {type(optimizer).__name__}")


def _check_steps_from_grads(optimizer) -> None:
    """``GradScaler.step``'s optimizer (enabled) steps from the grads it unscales: one that steps
    from a closure (L-BFGS, Newton-CG, SAM, or a DistributedOptimizer of one) evaluates its loss and
    grads itself, and its step refused the unscaled list as a closure after the caller's grads were
    written. Refused first, naming ``optimizer`` (torch refuses closures under GradScaler)."""
    for opt in (optimizer, getattr(optimizer, "optimizer", None)):
        if opt is not None and steps_from_closure(opt):
            raise TypeError(
                f"optimizer: {type(opt).__name__} steps from a closure (it evaluates the loss and grads itself), "
                "which GradScaler.step cannot unscale (torch: closure use is not supported if GradScaler is enabled)"
            )


def _check_grads_of(optimizer, grads) -> list | None:
    """``grads`` against ``optimizer``'s params (its ``param_groups``, all groups in order), before
    ``GradScaler.step`` unscales them in place. An optkern optimizer checks them as its step would
    (``_check_step``: one per param or None, kind, dtype, shape, layout, no grad sharing memory
    with a param or state array) and the checked list is returned: its step need not check those
    same arrays again. For another optimizer: one per param (or None), each of its param's kind,
    dtype and shape, none sharing memory with a param; one without ``param_groups`` of dicts is
    left to check its grads itself."""
    check = getattr(optimizer, "_check_step", None)
    if callable(check):
        grads = _backend.as_list(grads, "grads")
        check(grads)
        return grads
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "params" in g for g in groups):
        return None
    # (torch tensors viewed as the grads are: compared as they are, a float32 tensor's dtype
    # torch.float32 refused every float32 grad)
    params = _backend.as_list([p for g in groups for p in g["params"]], "params")
    grads = _backend.check_list_like(_backend.as_list(grads, "grads"), params, "grads", none=True)
    for i, g in enumerate(grads):
        if g is not None:  # (a param the step skips, as torch skips a None .grad)
            _grad_format(g, i)
    _refuse_grads_in_params(grads, params)
    return None


def _refuse_grads_in_params(grads: list, params: list) -> None:
    """ValueError (the optimizers' own words) naming a grad that shares memory with a param: the
    unscale divided that param by the scale in place, and the step then moved it by that, silently
    (an optkern optimizer's ``_check_step`` refuses it; another one's grads were checked for kind,
    dtype and shape only). Params sharing memory with each other are the optimizer's business."""
    live = [i for i, g in enumerate(grads) if g is not None]
    pair = first_sharing([grads[i] for i in live] + params, apart=len(live))
    if pair is not None:
        g, p = live[pair[0]], pair[1] - len(live)  # (a pair across the sets: the grad comes first)
        raise ValueError(f"grads[{g}] shares memory with params[{p}] (aliasing arrays cannot be updated in place)")
