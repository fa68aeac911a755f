"""Dynamic loss scaling with torch.amp.GradScaler's semantics.

``scaler.scale(loss)`` multiplies the loss (so the backward pass produces
gradients times ``scale``); ``scaler.step(optimizer, grads)`` unscales the
gradients in place and checks them for inf/NaN in the same pass
(``_cpu.lowp_unscale_``), and steps the optimizer only when all are finite --
otherwise params and optimizer state are untouched; ``scaler.update()`` then
backs the scale off after a non-finite step (``scale *= backoff_factor``) or
grows it after ``growth_interval`` consecutive finite steps
(``scale *= growth_factor``). The scale is kept in float32, as torch keeps it.
"""

from __future__ import annotations

import numpy as np

from . import _backend

__all__ = ["GradScaler"]


class GradScaler:
    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ):
        self._scale = np.float32(_backend.positive("init_scale", init_scale))
        self.growth_factor = _backend.in_range("growth_factor", growth_factor, 1.0, lo_open=True)
        self.backoff_factor = _backend.in_range("backoff_factor", backoff_factor, 0.0, 1.0, lo_open=True, hi_open=True)
        self.growth_interval = _backend.integer("growth_interval", growth_interval, lo=1)
        self.enabled = bool(enabled)
        self._growth_tracker = 0
        self._found_inf: bool | None = None  # None: not unscaled since the last update()

    def get_scale(self) -> float:
        return float(self._scale) if self.enabled else 1.0

    def scale(self, loss):
        """``loss * scale`` (anything that multiplies by a float)."""
        return loss * self.get_scale() if self.enabled else loss

    def unscale_(self, grads) -> bool:
        """Divide float32 ``grads`` by the scale in place; returns found_inf. Once per step."""
        if not self.enabled:
            return False
        if self._found_inf is not None:
            raise RuntimeError("unscale_() has already been called since the last update()")
        grads = _backend.as_list(grads, "grads")
        inv = float(np.float32(1.0 / float(self._scale)))  # torch: scale.double().reciprocal().float()
        self._found_inf = bool(_backend.cpu.lowp_unscale_(grads, inv))
        return self._found_inf

    def step(self, optimizer, grads, *args, **kwargs):
        """Unscale (unless done) and step ``optimizer`` unless a gradient is inf/NaN.
        Returns the optimizer's result, or None for a skipped step."""
        if not self.enabled:
            return optimizer.step(grads, *args, **kwargs)
        found = self._found_inf if self._found_inf is not None else self.unscale_(grads)
        if found:
            return None
        return optimizer.step(grads, *args, **kwargs)

    def update(self, new_scale: float | None = None) -> None:
        """torch's _amp_update_scale_: back off after inf, grow after growth_interval clean steps."""
        if not self.enabled:
            return
        if new_scale is not None:
            self._scale = np.float32(_backend.positive("new_scale", new_scale))
        elif self._found_inf is None:
            raise RuntimeError("update(): no step was unscaled since the last update()")
        elif self._found_inf:
            self._scale = np.float32(self._scale * np.float32(self.backoff_factor))
            self._growth_tracker = 0
        else:
            successful = self._growth_tracker + 1
            if successful == self.growth_interval:
                grown = np.float32(self._scale * np.float32(self.growth_factor))
                if np.isfinite(grown):
                    self._scale = grown
                self._growth_tracker = 0
            else:
                self._growth_tracker = successful
        self._found_inf = None

    def state_dict(self) -> dict:
        return {
            "scale": float(self._scale),
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
            "_growth_tracker": self._growth_tracker,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"):
            if key not in state:
                raise ValueError(f"state_dict: missing '{key}'")
        self._scale = np.float32(_backend.positive("scale", state["scale"]))
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])
        self._growth_tracker = int(state["_growth_tracker"])
