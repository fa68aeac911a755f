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
beside the gradients (``_amp_passes.py``): NumPy for NumPy grads, CuPy on the grads' device for CuPy
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

import contextlib
from typing import Any

import numpy as np

from . import _backend
from ._amp_checks import (
    _KEYS,
    _NOTHING_CHECKED,
    _check_grads_of,
    _check_optimizer,
    _check_steps_from_grads,
    _checked_state,
    _new_scale,
    _skips_on_device,
    _wrapped_lowp,
)
from ._amp_loss import LossScaling
from ._amp_passes import ScalerPasses
from ._amp_states import Iteration, OptState, Stepping, agreed, combined, distributed, memory_of
from ._serial import lock_of, serialized

__all__ = ["GradScaler", "OptState"]


class GradScaler(ScalerPasses, LossScaling):
    """Dynamic loss scaling with ``torch.amp.GradScaler``'s keywords and defaults (no ``device``: the
    scale lives beside the grads) and methods (``scale``, ``unscale_``, ``step``, ``update``,
    ``get_scale``, ``state_dict``; ``found_inf(optimizer)``: torch's ``_found_inf_per_device``); see the
    module docstring.

    ``init_scale`` and ``update(new_scale)`` take a scale in float32's range whose reciprocal (the
    unscale's factor) is a finite float32: from 2.938737e-39 up. Zero, negative, non-finite and
    smaller scales raise ValueError naming the argument (torch takes the ones below 2.938737e-39,
    where finite gradients unscale to inf / NaN without setting found_inf and the step writes them
    into the params). The backoff stops there too (torch's goes on to 0 after ~166 overflowing
    steps in a row from 2**16, and writes inf / NaN into the params at the next clean step), and
    ``load_state_dict`` takes a saved scale below it (torch's 0) as that smallest scale.

    One scaler shared by several threads: ``scale``, ``unscale_``, ``step``, ``update``,
    ``state_dict`` and ``load_state_dict`` hold its own reentrant lock (``optkern._serial``, as the
    optimizers' methods do), so that the calls run in some order, each whole: ``update()`` read the
    recorded flags and then dropped the record, and a flag another thread recorded in between was
    lost (its inf never backed the scale off). ``step`` holds it until its flag is recorded, not
    across the optimizer's step (a step waiting for a thread that uses the scaler waited for ever)."""

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

    # ---- the API -------------------------------------------------------------------------------

    def get_scale(self) -> float:
        """The current scale (reads it back from the GPU: a synchronization there)."""
        return float(_backend.to_numpy(self._scale)[0]) if self.enabled else 1.0

    @serialized
    def found_inf(self, optimizer) -> bool:
        """Whether ``optimizer``'s grads held an inf / NaN in this iteration (since the last
        ``update()``, recorded by its ``step`` or ``unscale_``): its step was skipped, and
        ``update()`` backs the scale off. torch's ``_found_inf_per_device(optimizer)`` as one bool
        (read back from the GPU: a synchronization there); False for a disabled scaler. The way
        to count skipped steps: the scale going down misses those at the backoff's floor.
        RuntimeError when nothing was recorded for ``optimizer`` since the last ``update()``."""
        if not self.enabled:
            return False
        found = self._iteration.states.get(id(optimizer), [None, None])[1]
        if found is None:
            raise RuntimeError("found_inf(): nothing recorded for this optimizer since the last update()")
        return bool(_backend.to_numpy(found)[0])

    def is_enabled(self) -> bool:
        """Whether the scaler scales (torch's ``is_enabled``)."""
        return self.enabled

    @serialized
    def scale(self, loss):
        """``loss * scale``; a list or tuple of losses, each scaled, as torch's. An array or NumPy /
        CuPy scalar (a CuPy one by the device scale) follows torch's promotion with its 0-d float32
        scale tensor: an integer or bool one comes out float32, a 0-d half one float32, float32 /
        float64 ones keep their dtype. A Python number (int, bool, float; torch takes none) comes
        out a Python float: an int converted as ``float()`` converts it, ValueError naming the loss
        beyond float64's range (``optkern._amp_loss``)."""
        if not self.enabled:
            return loss
        return self._scaled(loss, "loss")

    @serialized
    def unscale_(self, optimizer=None, grads=None):
        """``unscale_(optimizer, grads)``: divide ``optimizer``'s float32 ``grads`` by the scale in
        place, once per optimizer per iteration (torch's ``unscale_(optimizer)``); its ``step``
        then steps on them unless one is inf/NaN (on other grads: ValueError). Returns found_inf: a
        bool for NumPy grads, the 1-element float32 device flag for CuPy grads (no synchronization). RuntimeError, as
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
        self._iteration.refuse_pending(optimizer, grads)  # (unscale_(grads) unscaled these: not twice)
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
        self._iteration.record(optimizer, OptState.UNSCALED, found, memory_of(grads))
        if found is None:
            return False
        return found if _backend.is_cupy(found) else bool(found[0])

    def _unscale_anonymous(self, grads):
        """``unscale_(grads)``: no optimizer to key them by, so only while nothing else was
        unscaled or stepped in this iteration (which optimizer's grads they are is then plain)."""
        if not self.enabled:
            return False
        grads = _backend.read_once(grads)  # (a generator: unscaled, then its arrays kept for the step)
        if self._iteration:
            raise RuntimeError(
                "unscale_() has already been called since the last update() (with several "
                "optimizers, name each one: unscale_(optimizer, grads))"
            )
        found = self._unscale(grads)
        if found is None:
            raise ValueError(f"grads: {_NOTHING_CHECKED} (every grad is None)")
        self._iteration.pending, self._iteration.pending_grads = found, memory_of(grads)
        return found if _backend.is_cupy(found) else bool(found[0])

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
        as ``unscale_`` would: the next ``step`` does not unscale them again.) An optimizer that
        steps from a closure (L-BFGS, Newton-CG, SAM) raises TypeError naming ``optimizer`` first.

        The scaler's lock is held while the grads are checked and unscaled and the step's flag is
        recorded, not while the optimizer steps: held there, a step waiting for another thread
        that used the scaler (a closure evaluated on a worker that scales its loss, another
        pipeline stage's ``unscale_``) waited for ever. The flag is recorded before the optimizer
        steps (torch records it at the unscale): an ``update()`` of another thread meanwhile reads
        it, and the step hands a low-precision optimizer a copy of its iteration's scale."""
        _check_optimizer(optimizer)
        if not self.enabled:
            return optimizer.step(grads, *args, **kwargs)
        grads = _backend.read_once(grads)  # (a generator: checked, unscaled and stepped alike)
        if "closure" in kwargs:  # (its grads would reach the step scaled: torch refuses it too)
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        _check_steps_from_grads(optimizer)  # (before its grads are unscaled in place)
        with lock_of(self):
            plan = self._begin_step(optimizer, grads)
        if plan is None:  # (skipped: an inf/NaN)
            return None
        return self._run_step(plan, lambda grads: optimizer.step(grads, *args, **kwargs))

    def _begin_step(self, optimizer, grads) -> Stepping | None:
        """``step`` up to the optimizer's step, under the lock: the grads checked (unscaled, or
        only checked for a low-precision optimizer), the flag recorded; None for a skipped step."""
        it = self._iteration
        if it.stage(optimizer) is OptState.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        it.take_unscaled(optimizer, grads)  # (the grads unscale_ unscaled, or ValueError)
        # A low-precision optimizer unscales in its own step (its grads only checked here), unless
        # unscale_() already did it in place (float32 grads).
        ready = it.stage(optimizer) is OptState.READY
        inner = _wrapped_lowp(optimizer) if ready else None
        if inner is not None:  # (its grads reduced first: the flag of the grads its step takes)
            return self._begin_wrapped(optimizer, inner, grads)
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
        # the device flag decides on the device (the step's kernel writes nothing when it is set);
        # the grads checked above are not checked again (any other optimizer: nothing to tell it)
        attrs = {}
        if on_device or fused or checked is not None:
            attrs = {
                "_amp_found_inf": found if on_device else None,
                "_amp_grad_scale": self._scale_copy() if fused else None,
                "_amp_checked": checked,
            }
        before = it.stepping(optimizer, found)
        return Stepping(it, optimizer, before, grads, optimizer, attrs, None)

    def _begin_wrapped(self, optimizer, inner, grads) -> Stepping | None:
        """``_begin_step`` of a distributed wrapper over a low-precision optimizer
        (``master_weights`` / ``state_dtype``), whose step unscales the grads after widening them
        (float16 / bfloat16 grads included). The scaled grads are reduced first (``synchronize``:
        collective, a refusal on one rank raises on every rank), then the reduced grads are
        checked (the sum of finite scaled grads can overflow: that average is what the step would
        take) and the flag agreed over the ranks (a ZeRO-1 rank checks its slice only); the
        wrapper then steps on them inside ``skip_synchronize`` with the scale handed to the
        optimizer, or every rank skips."""
        it = self._iteration
        reduced = optimizer.synchronize(grads)
        if reduced is None:  # (DistributedOptimizer: averaged in place, into grads)
            grads = reduced = _backend.as_list(grads, "grads")
        found = self._check(reduced)
        found = agreed(optimizer, self._new_flag(reduced) if found is None else found)
        if _backend.to_numpy(found)[0]:
            it.record(optimizer, OptState.STEPPED, found)
            return None
        attrs = {"_amp_grad_scale": self._scale_copy()}
        before = it.stepping(optimizer, found)
        return Stepping(it, optimizer, before, grads, inner, attrs, optimizer.skip_synchronize())

    def _scale_copy(self):
        """The scale a low-precision step unscales by: this iteration's, which an ``update()`` of
        another thread during that step (the lock released) must not change under it."""
        with _backend._device_of(self._scale):
            return self._scale.copy()

    def _run_step(self, plan: Stepping, call):
        """The optimizer's step (``call(grads)``) of ``plan``, without the lock; one that raises takes
        the record ``_begin_step`` wrote back (a refused step changes nothing).

        The attributes set on the optimizer for this step (the device flag, the scale, the checked
        grads) are set and cleared under the optimizer's own lock (reentrant: its step takes it
        again), held across the step: set outside it, another thread's plain ``step`` of the same
        optimizer in between read them as its own (its grads unscaled by this scale, skipped on
        this flag, or taken as checked)."""
        held = lock_of(plan.target) if plan.attrs else contextlib.nullcontext()
        try:
            with held:
                for k, v in plan.attrs.items():
                    setattr(plan.target, k, v)
                try:
                    if plan.context is None:
                        return call(plan.grads)
                    with plan.context:
                        return call(plan.grads)
                finally:
                    for k in plan.attrs:
                        setattr(plan.target, k, None)
        except BaseException:
            with lock_of(self):  # (the optimizer's lock released first: never one lock inside the other)
                plan.iteration.undo(plan.optimizer, plan.before)
            raise

    @serialized
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
