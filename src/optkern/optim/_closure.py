"""What a closure returns to a closure-based step (``Optimizer.step(closure=...)``, L-BFGS,
Newton-CG, SAM): ``(loss, grads)`` at the current params, each checked here once, errors naming
``closure``."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _backend
from .._foreign import shown_values


def call(closure) -> tuple:
    """``closure()``'s ``(loss, grads)``, as returned; TypeError naming ``closure`` for anything else."""
    out = closure()
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(f"closure: expected it to return (loss, grads), got {type(out).__name__}")
    return out


def closure_loss(loss, finite: bool = True) -> float:
    """The loss a closure returned, as a finite float; TypeError / ValueError naming ``closure``.
    ``finite=False``: a NaN / inf loss (an int beyond float's range: inf of its sign) is returned,
    for a caller that reads it as a point outside the function's domain (Newton-CG's trial point).

    Shared by the second-order optimizers' closures (LBFGS, NewtonCG, SAM). A number or a one-element
    array of any shape (NumPy, CuPy, a torch tensor); not a string (``float("1.5")`` would parse it) and not a
    complex number (``float`` of a NumPy complex drops the imaginary part with only a warning).
    """
    # (a torch loss that requires grad, as a closure computing it with autograd returns it: its
    # value, detached; float() of it made torch warn at every evaluation, an error under -W error)
    loss = shown_values(loss)
    dtype = getattr(loss, "dtype", None)
    if (
        isinstance(loss, (str, bytes, bool, np.bool_))
        or (isinstance(loss, numbers.Complex) and not isinstance(loss, numbers.Real))
        or (dtype is not None and getattr(dtype, "kind", "f") not in "iuf")
    ):
        raise TypeError(f"closure: loss must be a real scalar, got {type(loss).__name__}")
    shape = getattr(loss, "shape", None)
    one = loss
    if shape is not None and len(shape) and math.prod(shape) == 1 and hasattr(loss, "item"):
        # one element in any shape ((1,), (1, 1): a batch of one): float() of a NumPy array of
        # ndim > 0 is an error since NumPy 2 (torch and CuPy still take it); item() takes it in all
        one = loss.item()
    try:
        v = float(one)
    except OverflowError:  # an int beyond float's range
        if not finite:
            return math.inf if one > 0 else -math.inf
        raise ValueError("closure: returned a non-finite loss (an integer beyond float's range)") from None
    except (TypeError, ValueError):
        what = f"an array of shape {tuple(loss.shape)}" if hasattr(loss, "shape") else type(loss).__name__
        raise TypeError(f"closure: loss must be a real scalar, got {what}") from None
    if finite and not math.isfinite(v):
        raise ValueError(f"closure: returned a non-finite loss ({v})")
    return v


def closure_grads(grads, params: list) -> list:
    """A closure's ``grads``: one per param (a lone array for one param), each checked against its
    param; a None (a param without a gradient) reads as zeros, as torch.optim.LBFGS reads a None
    ``.grad``."""
    grads = _backend.check_list_like(_backend.as_list(grads, "closure: grads"), params, "closure: grads", none=True)
    if all(g is not None for g in grads):
        return grads
    xp = _backend.array_module(params[0])
    with _backend._device_of(params[0]):
        return [xp.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


#: (LBFGS, NewtonCG, SAM), imported at the first ``steps_from_closure`` (they import this module;
#: the imports on every call cost GradScaler.step ~6 us)
_CLOSURE_KINDS: tuple = ()


def steps_from_closure(optimizer) -> bool:
    """Whether ``optimizer`` (an instance or a class) steps from a closure, not from gradients:
    L-BFGS (line search), Newton-CG (trial step, damping) and SAM (the ascent point) evaluate the
    loss and gradient themselves, maybe several times a step."""
    global _CLOSURE_KINDS
    if not _CLOSURE_KINDS:
        from .lbfgs import LBFGS
        from .newton_cg import NewtonCG
        from .sam import SAM

        _CLOSURE_KINDS = (LBFGS, NewtonCG, SAM)
    kinds = _CLOSURE_KINDS
    return issubclass(optimizer, kinds) if isinstance(optimizer, type) else isinstance(optimizer, kinds)
