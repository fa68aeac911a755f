"""``GradScaler.scale``'s product (optkern.amp): a loss of whatever kind a training loop hands it
times the scale, with the result type a torch user expects.

The rule, by the kind of loss:

- an array or NumPy / CuPy scalar (or a torch tensor): torch's type promotion with its 0-d float32
  scale tensor. Integer and bool ones become float32 (their values rounded to float32, then the
  product in float32, inf past its range, as torch's); a 0-d float16 / bfloat16 one float32, an
  n-d one rounded back to its dtype; float32 / float64 ones keep their dtype.
- a Python number (int, bool or float): torch takes none (its ``scale`` asserts a tensor); here it
  is the Python float it converts to, times the scale: a Python float out. An int is converted
  exactly as ``float()`` converts it (``scale(16777217)`` is ``scale(16777217.0)``); one beyond
  float64's range raises ValueError naming the loss, as ``float()`` would (unnamed).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _backend
from .optim._lowp_config import _half_fmt


def _loss_widened(loss, name: str):
    """Loss ``loss`` (argument ``name``) as ``GradScaler.scale`` multiplies it (the module's rule): a
    Python int or bool as a Python float, a NumPy / CuPy integer or bool one as float32, any other as
    it is. TypeError naming ``name`` for an array of no numbers (a timedelta was scaled as one, an
    object array passed to NumPy), ValueError for a Python int beyond float64's range."""
    if isinstance(loss, int):  # (bool included; np.int64 is no int)
        try:
            return float(loss)
        except OverflowError:  # (Python's, naming no argument)
            raise ValueError(f"{name}: an integer beyond float range (float64's, about 1.8e308)") from None
    kind = loss.dtype.kind if isinstance(loss, (np.ndarray, np.generic)) or _backend.is_cupy(loss) else None
    if kind is not None and kind not in "biufc" and _half_fmt(loss.dtype) is None:  # (ml_dtypes' bfloat16: 'V')
        raise TypeError(f"{name}: expected a number or an array of numbers, got dtype {loss.dtype}")
    if kind is not None and kind in "biu":
        return loss.astype(np.float32)  # (int64 and uint64 stay below float32's max: no overflow here)
    return loss


class LossScaling:
    """GradScaler's ``_scaled`` (uses ``_scale``, ``_beside`` and ``get_scale``)."""

    if TYPE_CHECKING:
        _scale: Any

        def _beside(self, like) -> None: ...
        def get_scale(self) -> float: ...

    def _scaled(self, loss, name: str):
        if isinstance(loss, (list, tuple)):
            # torch's form for several outputs (``scaler.scale([l1, l2])``): each one scaled, in a
            # container of the same type (a list used to be refused as not a number)
            return type(loss)(self._scaled(v, f"{name}[{i}]") for i, v in enumerate(loss))
        loss = _loss_widened(loss, name)
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
            with np.errstate(over="ignore"):  # (inf past float32's or the half's range, as torch's, silently)
                wide = np.asarray(loss, np.float32) * np.float32(self.get_scale())
                return wide[()] if loss.ndim == 0 else wide.astype(loss.dtype)
        if _backend.is_foreign(loss):  # a DLPack / array-interface exporter: its NumPy / CuPy view, scaled
            return self._scaled(_backend.as_array(loss, name), name)
        try:
            # (a NumPy loss past its dtype's range when scaled: inf, as torch's, without NumPy's
            # overflow warning -- the overflow the scaler exists to back off from)
            with np.errstate(over="ignore"):
                return loss * self.get_scale()
        except TypeError:  # (Python's message names no argument)
            raise TypeError(f"{name}: expected a number or an array, got {type(loss).__name__}") from None
