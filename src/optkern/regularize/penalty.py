"""L1 / L2 penalties fused into the gradient, many arrays in one native call.

Coupled vs decoupled weight decay. Adding ``l2/2 * ||p||^2`` to the loss puts
``l2 * p`` into the gradient (:func:`add_penalty_grad_`). With SGD this is the
same as shrinking the weights by ``lr * l2`` each step. With adaptive methods
it is not: Adam divides the whole gradient, penalty included, by
``sqrt(v) + eps``, so weights with large historical gradients are barely
regularized. Decoupled weight decay (AdamW, Loshchilov & Hutter 2019) instead
shrinks ``p <- p - lr * wd * p`` outside the adaptive scaling, which
regularizes every weight at the same rate and decouples the best ``wd`` from
the best ``lr``. Use these functions for an explicit penalty term (L1
sparsity, L2 for SGD or for an exact penalized objective); use
``optkern.optim.AdamW``'s ``weight_decay`` for decoupled decay.
"""

from __future__ import annotations

import numpy as np

from .. import _backend
from .._torch_written import bumps_written


def _lists(params, grads=None):
    params = _backend.as_list(params, "params")
    grads = None if grads is None else _backend.as_list(grads, "grads")
    mod = _backend.backend(("params", params), ("grads", grads))
    return mod, params, grads


def _check_rounded(params, **coeffs) -> None:
    """The gradient kernel rounds ``l1`` / ``l2`` to the arrays' dtype: one past float32's range
    would write NaN (inf * sign(0)) and infs into every gradient. (The penalty's value is summed in
    float64: no limit there.)"""
    if params and getattr(params[0], "dtype", None) == np.float32:
        for name, v in coeffs.items():
            _backend.finite_in(name, v, np.float32)


def _out(params, mod):
    xp = _backend.array_module(params[0]) if params else None
    return (xp or np).zeros(1, dtype="float64"), mod is _backend.cpu


# (torch grads: written as by torch's in-place add, their version counters bumped: a graph that had
# saved one differentiated its new values silently, where torch refuses the backward)
@bumps_written("grads")
@_backend.on_array_device
def add_penalty_grad_(params, grads, l1=0.0, l2=0.0, *, return_value=False):
    """``grads[i] += l2 * params[i] + l1 * sign(params[i])`` in place, all arrays in one call.

    The gradient of ``l1 * sum|p| + l2 / 2 * sum p^2`` (sign(0) = 0, the
    minimal-norm subgradient). Arrays: float32 or float64, one dtype, one
    backend, C-contiguous, ``grads[i]`` the size of ``params[i]``.

    Returns None, or with ``return_value=True`` the penalty value computed in
    the same pass (a float for NumPy; a 0-d float64 CuPy array for CuPy, so
    no host sync).
    """
    mod, params, grads = _lists(params, grads)
    l1 = _backend.nonnegative("l1", l1)
    l2 = _backend.nonnegative("l2", l2)
    _check_rounded(params, l1=l1, l2=l2)
    if not _backend.flag("return_value", return_value):
        mod.penalty_grad_(params, grads, l1, l2, None)
        return None
    out, on_cpu = _out(params, mod)
    mod.penalty_grad_(params, grads, l1, l2, out)
    return float(out[0]) if on_cpu else out[0]


@_backend.on_array_device
def penalty(params, l1=0.0, l2=0.0):
    """``l1 * sum|p| + l2 / 2 * sum p^2`` over all arrays.

    Accumulated in float64 with a fixed blocking (bitwise reproducible for any
    thread count). A float for NumPy arrays, a 0-d float64 CuPy array for CuPy.
    """
    mod, params, _ = _lists(params)
    l1 = _backend.nonnegative("l1", l1)
    l2 = _backend.nonnegative("l2", l2)
    out, on_cpu = _out(params, mod)
    mod.penalty_value(params, l1, l2, out)
    return float(out[0]) if on_cpu else out[0]
