"""Capturable mode: the step counters on the device, for steps a CUDA graph can capture.

With ``capturable=True`` an optimizer keeps each run's step counter (and NAdam's
``mu_product``) in a float64 device array, ``counters`` = [steps taken] or
[steps taken, mu_product], and calls ``optkern._cuda.<rule>_capturable``: its
kernel computes the step scalars on the device with the same ``Rule::at`` the
host uses for a plain step (``rules/optim.hpp``) and advances the counters
after the update. A device ``lr`` (a one-element float64 CuPy array) is read
there too. Everything goes to CuPy's current stream, nothing is copied or
synchronized, and the native call checks its arguments before it launches, so
a refused step leaves the counters as they were. ``amp.GradScaler.step`` hands
its device found-inf flag to these calls: a nonzero flag makes the kernel write
nothing and leaves the device counters (torch's fused-optimizer skip).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _backend
from ._parts import OptimizerParts
from ._run import _Run


def is_capturing(like) -> bool:
    """Whether CuPy's current stream (on ``like``'s device) is capturing a graph."""
    import cupy

    with cupy.cuda.Device(like.device.id):
        s = cupy.cuda.get_current_stream()
        f = getattr(s, "is_capturing", None)
        return bool(f()) if f is not None else False


def counters(like, values):
    """A float64 array holding ``values`` on ``like``'s device."""
    import cupy

    with cupy.cuda.Device(like.device.id):
        return cupy.array(np.asarray(values, dtype=np.float64), dtype=np.float64)


def scalar_view(buf, i: int):
    """Element ``i`` of ``buf`` as a live 0-d array (the state dict's ``step``, ``mu_product``)."""
    return buf[i : i + 1].reshape(())


class CapturableMixin(OptimizerParts):
    """Optimizer's capturable mode (uses ``_has_step``, ``_capturable`` and the subclass hooks)."""

    #: Whether this optimizer has a ``<rule>_capturable`` native variant.
    _capturable = False

    def _counter_values(self, run: _Run) -> list:
        """The host values of a run's device counters: [steps taken] (NAdam adds mu_product)."""
        return [run.step]

    def _counters_to_host(self, run: _Run, values) -> None:
        """Leaving capturable mode: the device counters (fetched, a synchronization) into the run."""
        run.step = int(values[0])

    def _new_dev(self, run: _Run) -> dict:
        """A run's device buffers; SGD (no step count) keeps none."""
        if not self._has_step:
            return {"counters": None}
        buf = counters(run.params[0], self._counter_values(run))
        return {"counters": buf, "step": scalar_view(buf, 0)}

    def _checked(self, group: dict, where: str):
        """(hp, capturable flag, device lr or None) of a group, validated.

        A CuPy ``lr`` (capturable mode only) is read on the device; the host checks see 0.0.
        """
        n = (lambda k: f"{where}[{k!r}]") if where else (lambda k: k)
        cap = False
        if self._capturable:
            cap = _backend.flag(n("capturable"), group.get("capturable", False))
            if cap and getattr(self, "_lowp", None) is not None:
                # (a low-precision step has no capturable variant: it ignored the device counters,
                # which then never advanced, and leaving capturable mode set the step count to them)
                raise ValueError(f"{n('capturable')}: not supported with master_weights or a compact state_dtype")
        elif _backend.flag(n("capturable"), group.get("capturable", False)):
            # (was ignored: a group asking for device counters stepped as a plain one, its host reads
            # and all, inside a CUDA graph too)
            raise ValueError(f"{n('capturable')}: {type(self).__name__} has no capturable mode")
        lr_dev: Any = group.get("lr")
        if not _backend.is_cupy(lr_dev):
            return self._check_group(group, where), cap, None
        if not cap:
            raise TypeError(
                f"{n('lr')}: a CuPy array is read on the device only in capturable mode "
                "(capturable=True); pass a float otherwise"
            )
        if lr_dev.dtype != np.float64 or lr_dev.size != 1:
            raise TypeError(
                f"{n('lr')}: expected a float64 CuPy array of one element, got "
                f"{lr_dev.dtype} with {lr_dev.size} elements"
            )
        return self._check_group({**group, "lr": 0.0}, where), cap, lr_dev

    def _check_capturable_arrays(self, flag: str, p, lr_dev, where: str) -> None:
        """Capturable mode needs CuPy parameters (and a device lr on their device)."""
        if not _backend.is_cupy(p):
            raise ValueError(
                f"{flag}: needs CuPy arrays (the parameters are NumPy arrays); capturable=True is for CUDA graphs"
            )
        if lr_dev is not None and lr_dev.device.id != p.device.id:
            name = f"{where}['lr']" if where else "lr"
            raise ValueError(f"{name}: is on device {lr_dev.device.id} but the parameters are on device {p.device.id}")

    def _step_capturable(self, run: _Run, grads: list, hp, lr_dev) -> None:
        if run.dev is None or any(name not in run.state for name in self._needed(hp)):
            if is_capturing(run.params[0]):
                raise RuntimeError(
                    "capturable: this step would create optimizer state while the stream is "
                    "capturing a graph; take one eager step before capturing"
                )
            self._ensure_state(run, hp)
            if run.dev is None:
                run.dev = self._new_dev(run)
        found_inf = getattr(self, "_amp_found_inf", None)  # amp.GradScaler's device flag: skips the step there
        dev = (run.dev["counters"], lr_dev) + (() if found_inf is None else (found_inf,))
        self._update(run, grads, hp, self._host_step(run), dev)

    def _leave_capturable(self, run: _Run) -> None:
        if run.dev["counters"] is not None:
            self._counters_to_host(run, run.dev["counters"].get())
        run.dev = None
