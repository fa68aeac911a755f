"""Stochastic weight averaging (Izmailov et al. 2018) and EMA of parameters,
with torch.optim.swa_utils.AveragedModel's semantics: the first
``update(params)`` copies the params; each later one folds them into the
average in one fused pass (``_cpu.swa_lerp_``, torch._foreach_lerp_'s
formula): ``avg <- lerp(avg, p, 1 / (n + 1))`` for ``mode="swa"`` (the running
mean of the n + 1 iterates) and ``avg <- lerp(avg, p, 1 - decay)`` for
``mode="ema"`` (torch's get_ema_multi_avg_fn).

NumPy or CuPy params (all of one kind): the averages live next to them (CuPy on their device)
and the update runs there (``_cuda.swa_lerp_``, the same rule and the same bits as on the CPU).
"""

from __future__ import annotations

import numpy as np

from . import _backend

__all__ = ["AveragedParams"]


def _copy(p):
    """A float32 copy of ``p`` on its backend and device."""
    with _backend._device_of(p):
        return _backend.array_module(p).array(p, dtype=np.float32, copy=True)


class AveragedParams:
    def __init__(self, params, mode: str = "swa", decay: float = 0.999):
        if mode not in ("swa", "ema"):
            raise ValueError(f"mode: expected 'swa' or 'ema', got {mode!r}")
        self.mode = mode
        self.decay = _backend.in_range("decay", decay, 0.0, 1.0)
        params = _backend.as_list(params, "params")
        for i, p in enumerate(params):
            if not (isinstance(p, np.ndarray) or _backend.is_cupy(p)) or p.dtype != np.float32:
                raise TypeError(
                    f"params[{i}]: expected a float32 numpy or cupy array, got {getattr(p, 'dtype', type(p).__name__)}"
                )
        self._mod = _backend.backend(("params", params))  # (TypeError naming a param of the other kind)
        self.averages = [_copy(p) for p in params]
        self.n_averaged = 0

    def update(self, params) -> None:
        """Fold the current ``params`` (same shapes as at construction) into the average."""
        params = _backend.as_list(params, "params")
        if len(params) != len(self.averages):
            raise ValueError(f"params: expected {len(self.averages)} arrays, got {len(params)}")
        for i, (a, p) in enumerate(zip(self.averages, params)):
            if getattr(p, "shape", None) != a.shape:
                raise ValueError(f"params[{i}]: expected shape {a.shape}, got {getattr(p, 'shape', None)}")
        # lerp weight 1 is an exact copy
        w = 1.0 if self.n_averaged == 0 else 1.0 / (self.n_averaged + 1) if self.mode == "swa" else 1.0 - self.decay
        with _backend._device_of(self.averages[0] if self.averages else None):
            self._mod.swa_lerp_(self.averages, params, w)
        self.n_averaged += 1

    def copy_to(self, params) -> None:
        """Write the average into ``params`` (e.g. before recomputing batch-norm statistics)."""
        for i, (p, a) in enumerate(zip(_backend.as_list(params, "params"), self.averages)):
            if getattr(p, "shape", None) != a.shape:
                raise ValueError(f"params[{i}]: expected shape {a.shape}, got {getattr(p, 'shape', None)}")
            p[...] = a

    def state_dict(self) -> dict:
        return {
            "mode": self.mode,
            "decay": self.decay,
            "n_averaged": self.n_averaged,
            "averages": [_copy(a) for a in self.averages],
        }
