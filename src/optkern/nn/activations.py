"""Elementwise activations with their first and second derivatives.

One native pass (``optkern._cpu`` / ``optkern._cuda`` ``activation_fwd``)
computes ``f(z)``, ``f'(z)`` and ``f''(z)``: the forward pass keeps ``f'`` for
backpropagation and the R-operator, and the Hessian-vector product needs
``f''``. GELU is the exact erf form (``torch.nn.functional.gelu`` default),
softplus has ``beta = 1``; relu's derivatives at the kink are taken as 0 (and ``f'`` at NaN as
1: torch's backward passes a NaN input's gradient on).
"""

from __future__ import annotations

import numbers

from .. import _backend

ACTIVATIONS = ("identity", "tanh", "relu", "gelu", "sigmoid", "softplus")


def check_activation(kind: str) -> str:
    """Return ``kind`` if it names a supported activation, else raise ValueError."""
    if not isinstance(kind, str) or kind not in ACTIVATIONS:  # (an array would make `in` ambiguous)
        raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {kind!r}")
    return str(kind)  # (a NumPy string kept its type: MLP's repr read "activation=np.str_('relu')")


@_backend.on_array_device
def activation(kind: str, z, *, order: int = 0):
    """Apply activation ``kind`` to ``z`` (NumPy or CuPy, float32/float64, C-contiguous).

    Args:
      kind: one of ``ACTIVATIONS``.
      z: pre-activations, any shape.
      order: 0 returns ``f(z)``; 1 returns ``(f, f')``; 2 returns ``(f, f', f'')``.

    Returns:
      New arrays of ``z``'s shape and dtype, all from a single fused pass.
    """
    check_activation(kind)
    if isinstance(order, bool) or not isinstance(order, numbers.Integral):
        raise TypeError(f"order: expected an integer (0, 1 or 2), got {type(order).__name__}")
    if order not in (0, 1, 2):
        raise ValueError(f"order: must be 0, 1 or 2, got {order!r}")
    _backend.check_one_array(z, "z")
    mod = _backend.backend(("z", z))
    xp = _backend.array_module(z)
    a = xp.empty_like(z)
    d1 = xp.empty_like(z) if order >= 1 else None
    d2 = xp.empty_like(z) if order >= 2 else None
    mod.activation_fwd(kind, z, a, d1, d2)
    if order == 0:
        return a
    return (a, d1) if order == 1 else (a, d1, d2)
