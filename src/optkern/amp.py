"""Dynamic loss scaling with torch.amp.GradScaler's semantics.

``scaler.scale(loss)`` multiplies the loss (so the backward pass produces
gradients times ``scale``); ``scaler.step(optimizer, grads)`` unscales the
gradients in place and checks them for inf/NaN in the same pass
(``amp_unscale_``) -- for a low-precision optimizer (``master_weights`` /
``state_dtype``) it only checks them (``amp_check_``, float16 / bfloat16 grads
included) and the optimizer's step unscales them after widening to float32 --
and steps the optimizer only when all are finite --
otherwise params and optimizer state are untouched; ``scaler.update()`` then
backs the scale off after a non-finite step (``scale *= backoff_factor``) or
grows it after ``growth_interval`` consecutive finite steps
(``scale *= growth_factor``; ``amp_update_scale_``, torch's
``_amp_update_scale_``). The scale is kept in float32, as torch keeps it.

Several optimizers share one scaler as in torch (``scaler.step(opt1, g1);
scaler.step(opt2, g2); scaler.update()``): each optimizer is unscaled
(``step``, or ``unscale_(optimizer, grads)``) and skipped on its own grads'
found_inf flag, at most once each per iteration (a second ``unscale_`` or
``step`` for it before ``update()`` raises torch's RuntimeError), and
``update()`` backs off when any of them found an inf/NaN (``_amp_states.py``).
A distributed wrapper (``DistributedOptimizer``, ``ShardedOptimizer``) of a low-precision
optimizer reduces the scaled grads first; the reduced grads decide (agreed by every rank) and the
wrapper steps on them, its optimizer unscaling them after widening.
Disabled (``enabled=False``), ``step`` is the optimizer's own step and
``state_dict()`` is ``{}``, as torch's.

The scale, the growth tracker and each found-inf flag live in 1-element arrays
beside the gradients: NumPy for NumPy grads, CuPy on the grads' device for CuPy
grads, where unscaling and the update run on the device and never synchronize
the host (``unscale_`` then returns the device flag; ``get_scale`` and
``state_dict`` read the scale back, which does synchronize). A low-precision
optimizer (``master_weights`` / ``state_dtype``) on CuPy params receives the
flag and skips the step on the device (its kernel writes nothing when the flag
is set); unlike torch's fused optimizers, its step count (and NAdam's momentum
product) still advances on such a skipped step (the next step's bias
corrections count it). An optimizer in
capturable mode (``capturable=True`` in every group) receives the flag too, and
its device step counters stay on a skipped step, as torch's do. Any other
optimizer on CuPy params is stepped or skipped on the host after reading the
flag (a synchronization, as torch's non-fused optimizers do).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from operator import attrgetter, is_
from typing import Any

import numpy as np

from . import _backend
from ._amp_states import Iteration, OptState, agreed, combined, distributed, renumbered
from .optim._lowp_config import _half_fmt

__all__ = ["GradScaler", "OptState"]


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


def _saved_scale(name: str, value) -> float:
    """A scale read back from a state dict: the constructor's rule, or 0, which the scale reaches
    by backing off (from 2**16, 166 non-finite steps in a row underflow float32, as torch's scale
    does): ``state_dict()`` writes it, so ``load_state_dict`` must take it back."""
    return 0.0 if _backend.real(name, value) == 0.0 else _float32_in(name, value, 0.0)


def _new_scale(value, scale):
    """``update(new_scale)``'s value: a number, or a 1-element float array (torch takes a 1-element
    tensor: the scale read back from ``get_scale`` as an array, say). A NumPy one is checked as a
    number; a device one is copied on the device, unchecked, as torch copies it (a check would
    read it on the host: a sync)."""
    if isinstance(value, np.ndarray) or _backend.is_cupy(value):
        if value.size != 1 or value.dtype.kind != "f":
            raise TypeError(f"new_scale: expected a number or a 1-element float array, got {value.dtype} {value.shape}")
        if _backend.is_cupy(value):
            if not _backend.is_cupy(scale):
                raise ValueError("new_scale: a CuPy array for a scaler on the CPU")
            return value.reshape(1).astype(np.float32)
        value = float(value.reshape(-1)[0])
    return np.float32(_float32_in("new_scale", value, 0.0))


#: why a step or unscale_ on no grads at all is refused (torch's AssertionError message)
_NOTHING_CHECKED = "no inf checks were recorded for this optimizer"

#: the scaler's state, in ``state_dict``'s keys
_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")


def _checked_state(state: Mapping, names: dict, *, saved: bool = False) -> dict:
    """``state`` (``_KEYS`` -> value) checked, the constructor's rules for each (ValueError /
    TypeError naming ``names[key]``), before the caller assigns any of it; a ``saved`` state
    (``load_state_dict``) may hold a scale that backed off to 0 (``_saved_scale``)."""
    interval = _backend.integer(names["growth_interval"], state["growth_interval"], lo=1, hi=_backend.INT64_MAX)
    scale = _saved_scale if saved else lambda name, v: _float32_in(name, v, 0.0)
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

#: the types whose objects ``GradScaler._rule`` reuses its checks of (immutable built-ins: a subclass
#: or a NumPy scalar is checked at every update)
_PLAIN_NUMBERS = frozenset({float, int})


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


def _check_grads_of(optimizer, grads) -> list | None:
    """``grads`` against ``optimizer``'s params (its ``param_groups``, all groups in order), before
    ``GradScaler.step`` unscales them in place. An optkern optimizer checks them as its step would
    (``_check_step``: one per param or None, kind, dtype, shape, layout, no grad sharing memory
    with a param or state array) and the checked list is returned: its step need not check those
    same arrays again. For another optimizer: one per param (or None), each of its param's kind,
    dtype and shape; one without ``param_groups`` of dicts is left to check its grads itself."""
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
    return None


class GradScaler:
    """Dynamic loss scaling with ``torch.amp.GradScaler``'s keywords and defaults (no ``device``: the
    scale lives beside the grads) and methods (``scale``, ``unscale_``, ``step``, ``update``,
    ``get_scale``, ``state_dict``); see the module docstring."""

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ):
        given = {
            "scale": init_scale,
            "growth_factor": growth_factor,
            "backoff_factor": backoff_factor,
            "growth_interval": growth_interval,
            "_growth_tracker": 0,
        }
        st = _checked_state(given, {**{k: k for k in _KEYS}, "scale": "init_scale"})
        # 1-element arrays beside the grads: NumPy, or CuPy on their device (_beside)
        self._scale: Any = np.full(1, st["scale"], np.float32)
        self._growth_tracker: Any = np.zeros(1, np.int64)
        self._assign(st)
        self.enabled = _backend.flag("enabled", enabled)  # ("no" or None must not read as a choice)
        # each optimizer's stage and found_inf flag since the last update() (torch's
        # _per_optimizer_states): one flag for all would step a second optimizer on scaled grads
        self._iteration = Iteration()

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

    # ---- the API -------------------------------------------------------------------------------

    def get_scale(self) -> float:
        """The current scale (reads it back from the GPU: a synchronization there)."""
        return float(_backend.to_numpy(self._scale)[0]) if self.enabled else 1.0

    def is_enabled(self) -> bool:
        """Whether the scaler scales (torch's ``is_enabled``)."""
        return self.enabled

    def get_growth_factor(self) -> float:
        return self.growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        """torch's ``set_growth_factor``, checked by the constructor's rule (ValueError / TypeError
        naming ``new_factor``; torch takes any value) before it is assigned."""
        self.growth_factor = _float32_in("new_factor", new_factor, 1.0)

    def get_backoff_factor(self) -> float:
        return self.backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        """torch's ``set_backoff_factor``, checked by the constructor's rule (in (0, 1))."""
        self.backoff_factor = _float32_in("new_factor", new_factor, 0.0, 1.0)

    def get_growth_interval(self) -> int:
        return self.growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        """torch's ``set_growth_interval``, checked by the constructor's rule (an integer >= 1; one
        below the current count of clean steps is taken, as torch takes it: the scale then stays)."""
        self.growth_interval = _backend.integer("new_interval", new_interval, lo=1, hi=_backend.INT64_MAX)

    def _get_growth_tracker(self) -> int:
        """The count of clean steps since the last growth or backoff (torch's; 0 when disabled)."""
        return int(_backend.to_numpy(self._growth_tracker)[0]) if self.enabled else 0

    def scale(self, loss):
        """``loss * scale`` (anything that multiplies by a float; a CuPy loss by the device scale; a
        0-d NumPy half loss promoted to float32, as torch's 0-d float32 scale promotes it; a list
        or tuple of losses, each scaled, as torch's)."""
        if not self.enabled:
            return loss
        return self._scaled(loss, "loss")

    def _scaled(self, loss, name: str):
        if isinstance(loss, (list, tuple)):
            # torch's form for several outputs (``scaler.scale([l1, l2])``): each one scaled, in a
            # container of the same type (a list used to be refused as not a number)
            return type(loss)(self._scaled(v, f"{name}[{i}]") for i, v in enumerate(loss))
        if _backend.is_cupy(loss):
            self._beside(loss)
            return loss * self._scale[0]
        torch = sys.modules.get("torch")  # (a tensor exists: torch is imported)
        if torch is not None and isinstance(loss, torch.Tensor):
            # torch's own product, by its 0-d float32 scale tensor: a 0-d float16 / bfloat16 loss
            # comes out float32 (times a Python float it stayed float16: 2**16 * loss was inf)
            return loss * torch.full((), self.get_scale(), dtype=torch.float32, device=loss.device)
        if isinstance(loss, (np.ndarray, np.generic)) and _half_fmt(loss.dtype) is not None:
            # torch multiplies by its 0-d float32 scale tensor, in float32: a 0-d float16 /
            # bfloat16 loss (the usual scalar loss) comes out float32, an n-d one is rounded back
            # to its dtype. NumPy with a Python float scale rounded the scale itself to the half
            # type first (2**16 is inf in float16: every float16 loss became inf or NaN) and
            # kept a 0-d loss half.
            wide = np.asarray(loss, np.float32) * np.float32(self.get_scale())
            if loss.ndim == 0:
                return wide[()]
            with np.errstate(over="ignore"):  # (inf past the half type's range, as torch's, silently)
                return wide.astype(loss.dtype)
        if _backend.is_foreign(loss):  # a DLPack / array-interface exporter: its NumPy / CuPy view, scaled
            return self._scaled(_backend.as_array(loss, name), name)
        try:
            return loss * self.get_scale()
        except TypeError:  # (Python's message names no argument)
            raise TypeError(f"{name}: expected a number or an array, got {type(loss).__name__}") from None

    def unscale_(self, optimizer=None, grads=None):
        """``unscale_(optimizer, grads)``: divide ``optimizer``'s float32 ``grads`` by the scale in
        place, once per optimizer per iteration (torch's ``unscale_(optimizer)``); its ``step``
        then steps on them unless one is inf/NaN. Returns found_inf: a bool for NumPy grads, the
        1-element float32 device flag for CuPy grads (no synchronization). RuntimeError, as
        torch's, when this optimizer was unscaled or stepped since the last ``update()``.

        ``unscale_(grads)`` (no optimizer) is the single-optimizer form: once per iteration, the
        next ``step`` of an optimizer not unscaled yet takes these grads as its own, unscaled.

        float16 / bfloat16 grads (a ``master_weights`` optimizer's) raise TypeError: ``step``
        unscales them inside the optimizer's step, after widening to float32 -- unscaled in their
        own format they would lose the small values the scaling kept (torch's GradScaler refuses
        to unscale FP16 gradients for the same reason).

        Every grad None: ``unscale_(optimizer, grads)`` records the optimizer as unscaled with
        nothing checked (torch's) and returns False, and its ``step`` raises ValueError;
        ``unscale_(grads)`` raises ValueError naming ``grads``."""
        if grads is None:  # unscale_(grads)
            if callable(getattr(optimizer, "step", None)):
                raise TypeError("grads: unscale_(optimizer) needs that optimizer's grads: unscale_(optimizer, grads)")
            return self._unscale_anonymous(optimizer)
        if optimizer is None:  # unscale_(grads=grads), as the single-optimizer form was called
            return self._unscale_anonymous(grads)
        _check_optimizer(optimizer)
        if not self.enabled:
            return False
        grads = _backend.read_once(grads)  # (a generator: checked, unscaled and stepped alike)
        stage = self._iteration.stage(optimizer)
        if stage is OptState.UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if stage is OptState.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        try:
            _check_grads_of(optimizer, grads)  # (before the grads are unscaled in place)
        except (TypeError, ValueError) as e:  # (every rank of a distributed wrapper raises)
            agreed(optimizer, self._new_flag(()), e)
        if distributed(optimizer):  # read only until every rank agreed (one may refuse), then unscaled
            checked = self._check(grads)
            found = agreed(optimizer, self._new_flag(()) if checked is None else checked)
            self._unscale(grads)
            found = None if checked is None else found
        else:
            found = self._unscale(grads)
        # (every grad None: recorded with no flag, as torch records an optimizer without grads;
        # its step() then raises, having nothing checked to step on)
        self._iteration.record(optimizer, OptState.UNSCALED, found)
        if found is None:
            return False
        return found if _backend.is_cupy(found) else bool(found[0])

    def _unscale_anonymous(self, grads):
        """``unscale_(grads)``: no optimizer to key them by, so only while nothing else was
        unscaled or stepped in this iteration (which optimizer's grads they are is then plain)."""
        if not self.enabled:
            return False
        if self._iteration:
            raise RuntimeError(
                "unscale_() has already been called since the last update() (with several "
                "optimizers, name each one: unscale_(optimizer, grads))"
            )
        found = self._unscale(grads)
        if found is None:
            raise ValueError(f"grads: {_NOTHING_CHECKED} (every grad is None)")
        self._iteration.pending = found
        return found if _backend.is_cupy(found) else bool(found[0])

    def _unscale(self, grads) -> Any:
        """found_inf of float32 ``grads``, unscaled in place in the same pass (``amp_unscale_``);
        None when every grad is None (nothing checked: no flag to step or update on).

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

    def step(self, optimizer, grads, *args, **kwargs):
        """Unscale ``optimizer``'s ``grads`` (unless ``unscale_`` did) and step it unless one of
        them is inf/NaN, torch's per-optimizer rules: each optimizer is unscaled and skipped on
        its own grads' flag; a second ``step`` for one optimizer before ``update()`` raises
        RuntimeError. Returns the optimizer's result, or None for a skipped step. ValueError naming
        the optimizer when every one of its grads is None (torch's AssertionError "No inf checks
        were recorded for this optimizer."): nothing was checked, so there is no clean step to
        count; the scaler and the optimizer are left as they were.

        ``grads`` are checked against the optimizer's params before they are unscaled in place,
        and a low-precision optimizer's step (its grads only read here) that raises leaves the
        scaler as it was: a refused step changes nothing. (A step that raises after float32 grads
        were unscaled, on a hyper-parameter set invalid since the last step, leaves them unscaled,
        as ``unscale_`` would: the next ``step`` does not unscale them again.)"""
        _check_optimizer(optimizer)
        if not self.enabled:
            return optimizer.step(grads, *args, **kwargs)
        grads = _backend.read_once(grads)  # (a generator: checked, unscaled and stepped alike)
        if "closure" in kwargs:  # (its grads would reach the step scaled: torch refuses it too)
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        it = self._iteration
        if it.stage(optimizer) is OptState.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        it.claim_pending(optimizer)
        # A low-precision optimizer unscales in its own step (its grads only checked here), unless
        # unscale_() already did it in place (float32 grads).
        ready = it.stage(optimizer) is OptState.READY
        inner = _wrapped_lowp(optimizer) if ready else None
        if inner is not None:  # (its grads reduced first: the flag of the grads its step takes)
            return self._step_wrapped(optimizer, inner, grads, args, kwargs)
        fused = ready and getattr(optimizer, "_lowp", None) is not None
        checked = err = None
        unscale = False  # (a distributed wrapper's float32 grads: unscaled once every rank agreed)
        try:
            if fused:
                found = self._check(grads)  # (recorded once the step ran: a refused step changes nothing)
            elif ready:
                checked = _check_grads_of(optimizer, grads)  # (unscaled in place: checked first)
                if distributed(optimizer):  # (read only: another rank may refuse its grads)
                    found, unscale = self._check(grads), True
                else:
                    found = self._unscale(grads)
            else:
                found = it.found_inf(optimizer)
            if found is None:
                # torch's AssertionError "No inf checks were recorded for this optimizer.": a step
                # on no grads was counted as a clean one (update() grew the scale on nothing).
                # Refused before anything is recorded (every grad None: nothing was written).
                raise ValueError(f"optimizer: {_NOTHING_CHECKED} (every one of its grads is None)")
            if ready and not fused and not unscale:
                it.record(optimizer, OptState.UNSCALED, found)
        except (TypeError, ValueError) as e:
            if not distributed(optimizer):
                raise
            err, found = e, self._new_flag(())
        found = agreed(optimizer, found, err)
        if unscale:
            self._unscale(grads)  # (its own flag is this rank's alone: the agreed one decides)
            it.record(optimizer, OptState.UNSCALED, found)
        on_device = _backend.is_cupy(found) and _skips_on_device(optimizer)
        if not on_device and _backend.to_numpy(found)[0]:
            it.record(optimizer, OptState.STEPPED, found)
            return None
        if not (on_device or fused or checked is not None):  # (any optimizer: nothing to tell it)
            result = optimizer.step(grads, *args, **kwargs)
            it.record(optimizer, OptState.STEPPED, found)
            return result
        # the device flag decides on the device (the step's kernel writes nothing when it is set);
        # the grads checked above are not checked again
        optimizer._amp_found_inf = found if on_device else None
        optimizer._amp_grad_scale = self._scale if fused else None
        optimizer._amp_checked = checked
        try:
            result = optimizer.step(grads, *args, **kwargs)
        finally:
            optimizer._amp_found_inf = optimizer._amp_grad_scale = optimizer._amp_checked = None
        it.record(optimizer, OptState.STEPPED, found)
        return result

    def _step_wrapped(self, optimizer, inner, grads, args, kwargs):
        """``step`` of a distributed wrapper over a low-precision optimizer (``master_weights`` /
        ``state_dtype``), whose step unscales the grads after widening them (float16 / bfloat16 grads
        included). The scaled grads are reduced first (``synchronize``: collective, a refusal on one
        rank raises on every rank), then the reduced grads are checked (the sum of finite scaled
        grads can overflow: that average is what the step would take) and the flag agreed over the
        ranks (a ZeRO-1 rank checks its slice only), then the wrapper steps on them inside
        ``skip_synchronize`` with the scale handed to the optimizer, or every rank skips."""
        it = self._iteration
        reduced = optimizer.synchronize(grads)
        if reduced is None:  # (DistributedOptimizer: averaged in place, into grads)
            grads = reduced = _backend.as_list(grads, "grads")
        found = self._check(reduced)
        found = agreed(optimizer, self._new_flag(reduced) if found is None else found)
        if _backend.to_numpy(found)[0]:
            it.record(optimizer, OptState.STEPPED, found)
            return None
        inner._amp_grad_scale = self._scale
        try:
            with optimizer.skip_synchronize():
                result = optimizer.step(grads, *args, **kwargs)
        finally:
            inner._amp_grad_scale = None
        it.record(optimizer, OptState.STEPPED, found)
        return result

    def update(self, new_scale: float | None = None) -> None:
        """torch's _amp_update_scale_: back off when any optimizer's grads held an inf/NaN since
        the last update(), grow after growth_interval clean iterations."""
        if not self.enabled:
            return
        if new_scale is not None:
            self._scale[...] = _new_scale(new_scale, self._scale)
        else:
            flags = self._iteration.flags()
            if not flags:
                raise RuntimeError(
                    "update(): no inf checks were recorded since the last update() (no step or unscale_)"
                )
            rule = self._rule()
            with _backend._device_of(self._scale):
                self._native().amp_update_scale_(self._scale, self._growth_tracker, combined(flags, self._scale), *rule)
        self._iteration = Iteration()

    def _rule(self) -> tuple:
        """(growth_factor, backoff_factor, growth_interval) by the constructor's rules, naming the
        attribute: assigned as torch's set_growth_factor / set_growth_interval set them, they are
        not checked there (a str factor or a float interval reached the native call: pybind11's
        TypeError naming none; an infinite factor was taken, and written by state_dict())."""
        given = (self.growth_factor, self.backoff_factor, self.growth_interval)
        hit = self.__dict__.get("_rule_checked")  # (the values last checked, and the rule)
        if hit is not None and all(map(is_, given, hit[0])):
            return hit[1]  # the very same objects, of exact float / int types: checked already
        rule = (
            _float32_in("growth_factor", given[0], 1.0),
            _float32_in("backoff_factor", given[1], 0.0, 1.0),
            _backend.integer("growth_interval", given[2], lo=1, hi=_backend.INT64_MAX),
        )
        if set(map(type, given)) <= _PLAIN_NUMBERS:  # (immutable, and compared as built-ins)
            self._rule_checked = (given, rule)
        return rule

    def state_dict(self) -> dict:
        """The scale, its factors, interval and growth tracker; ``{}`` when disabled (torch's)."""
        if not self.enabled:
            return {}
        return {
            "scale": float(_backend.to_numpy(self._scale)[0]),
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
            "_growth_tracker": int(_backend.to_numpy(self._growth_tracker)[0]),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output, every value checked (as by the constructor) before
        any is assigned; a no-op when disabled, as torch's."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state_dict: expected a dict, got {type(state).__name__}")
        if not self.enabled:
            return  # (torch's: a disabled scaler keeps no state; its own state_dict() is {})
        if not state:
            raise ValueError("state_dict: empty, possibly saved from a disabled GradScaler")
        for key in _KEYS:
            if key not in state:
                raise ValueError(f"state_dict: missing '{key}'")
        self._assign(_checked_state(state, {k: f"state_dict[{k!r}]" for k in _KEYS}, saved=True))

    def _assign(self, st: dict) -> None:
        """Take the checked state ``st`` (``_checked_state``)."""
        self._scale[...] = np.float32(st["scale"])
        self._growth_tracker[...] = st["_growth_tracker"]
        self.growth_factor = st["growth_factor"]
        self.backoff_factor = st["backoff_factor"]
        self.growth_interval = st["growth_interval"]

    # ---- copies ---------------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        # the iteration's record names optimizers by id(): a copy would hold the originals' ids
        if self.enabled and self._iteration:
            raise RuntimeError(
                "A GradScaler instance may only be pickled at the beginning of an iteration, or at "
                "the end after scaler.update()."
            )
        state = {**vars(self), "_iteration": Iteration()}  # (empty: a shallow copy gets its own)
        state.pop("_rule_checked", None)  # (a cache of _rule: pickles stay as they were)
        return state

    def __setstate__(self, state: dict) -> None:
        if "_iteration" not in state:  # pickled before the per-optimizer record: its one flag
            pending = state.pop("_found_inf", None)
            state["_iteration"] = Iteration()
            state["_iteration"].pending = pending
        vars(self).update(state)
