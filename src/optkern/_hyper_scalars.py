"""Scalar hyper-parameter checks shared by the optimizers, their SAM wrappers and the schedules:
``_backend``'s range checks, a NumPy float16 scalar refused first.

torch.optim computes its step scalars from a float16 NumPy lr (or beta, decay ...) in float16
(NumPy 2's promotion, NEP 50: np.float16 op float is float16): Adam's lr / (1 - beta1^t) and
1 - beta1 rounded to 11 bits, 995 of 1000 params off the same steps with float(lr). torch's
schedulers (``base_lr * factor``) and davda54's SAM (``rho / (norm + 1e-12)``) do the same. optkern
computes them in double (a float32 one: torch's float32 ops, torch/_tensor_lr.py), so a float16
one is refused by name rather than used differently (tests/test_hunt55d_float16_hypers.py,
tests/test_hunt56a_float16_hypers.py)."""

from __future__ import annotations

import numpy as np

from . import _backend


def refuse_float16(name: str, value) -> None:
    """TypeError naming ``name`` for a ``numpy.float16`` scalar or 0-d array (NumPy 2 promotes the
    latter as the scalar it holds: see the module docstring), saying which of the two was passed."""
    if type(value) is np.float16:
        what = "a numpy.float16 scalar"
    elif type(value) is np.ndarray and value.ndim == 0 and value.dtype == np.float16:
        what = "a 0-d numpy.float16 array"
    else:
        return
    raise TypeError(
        f"{name}: {what} ({float(value)!r}) is refused: torch.optim computes its step scalars from "
        "one in float16 (rounded); pass float(value)"
    )


def real(name: str, value) -> float:
    refuse_float16(name, value)
    return _backend.real(name, value)


def in_range(name: str, value, lo=None, hi=None, *, lo_open=False, hi_open=False) -> float:
    refuse_float16(name, value)
    return _backend.in_range(name, value, lo, hi, lo_open=lo_open, hi_open=hi_open)


def nonnegative(name: str, value) -> float:
    refuse_float16(name, value)
    return _backend.nonnegative(name, value)


def positive(name: str, value) -> float:
    refuse_float16(name, value)
    return _backend.positive(name, value)
