"""hessian.cg's iteration inside the operator's product, for an operator that tells ``p.A p`` before it
forms ``A p`` (``hessian.from_mlp``'s Gauss-Newton on one batch: ``(J p).H_L (J p)`` after the R-forward
pass, ``J^T H_L J p`` from the backward pass).

With ``p.A p`` the step ``alpha = r.r / p.(A + damping I) p`` is known before the backward pass runs, so
each slice of ``A p`` it forms (a layer's weight gradient, its bias gradient) goes straight into
``x += alpha p``, ``r -= alpha (A p + damping p)`` and the slice's ``r.r`` (``cg_update_slice_``) while
it is in cache: ``A p`` is never written out as a vector nor read back by a pass of its own (at batch
128 the product is cheap and that pass, the vectors come back from memory after the product, was a
large share of the iteration). Then ``p = r + beta p`` with ``p.p`` (``cg_direction_sum_``).
Measured (784-256-10 float32, damping 1e-3, 10 iterations against 10 products paired, CPU time on one
thread, host under load 10-15): CG overhead at batch 128 +8.1..+9.3 % unfused, -0.4..+5.3 % fused;
at batch 512 +2.6..+3.1 %, +1.7..+2.9 %.

The decisions are ``cg_iteration_known_``'s (``optkern/cg_args.hpp``: ``cg_step``, ``cg_next``) on the
same doubles, and ``x``, ``r`` get the same bits for the same ``p``, ``alpha``; ``r.r`` is summed by
slices (other chunks than the whole-vector pass), so the iterates after the first agree with the
unfused ones to rounding, not bit for bit.
"""

from __future__ import annotations

import math
from typing import Any, Callable


def step_size(pAp: float, rz: float, stop: bool) -> float | None:
    """``alpha = r.z / pAp`` for a finite curvature ``pAp`` (inf at 0), or None where CG stops there
    (``stop``: ``stop_on_negative_curvature``). (hessian.cg's
    loop, and ``iteration`` before its product's update.)"""
    if not pAp > 0.0 and stop:
        return None
    return rz / pAp if pAp != 0.0 else math.inf


def iteration(
    quad_then: Callable, mod: Any, x, r, p, pp: float, rz: float, damping: float, tol: float, stop: bool
) -> tuple[float, float, float, float]:
    """One iteration from the product ``A p`` on: ``(pAp, pGp, rr, pp)`` -- ``pAp = p.(A + damping I) p``,
    ``pGp = p.A p``, ``rr`` the new ``r.r`` (NaN where ``x`` and ``r`` were not written: no step, as
    ``cg_iteration_known_`` returns) and ``p.p`` of the new direction (NaN where it was not written,
    0 without damping). ``pp``: ``p.p`` of the direction ``p`` given."""
    parts: list[float] = []
    told: list[float] = []

    def then(pGp: float):
        pAp = pGp + damping * pp if damping else pGp
        told.extend((pAp, pGp))  # (computed once: the caller's checks read this pAp)
        # cg_args::cg_step: a finite step along a direction of (allowed) curvature, else nothing written
        alpha = step_size(pAp, rz, stop) if math.isfinite(pAp) else None
        if alpha is None or not math.isfinite(alpha):
            return None

        def sink(lo: int, y, transposed: bool) -> None:
            hi = lo + y.size
            parts.append(mod.cg_update_slice_(x[lo:hi], r[lo:hi], p[lo:hi], y, alpha, damping, transposed))

        return sink

    quad_then(p, then)
    pAp, pGp = told
    if not parts:
        return pAp, pGp, math.nan, math.nan
    rr = 0.0
    for s in parts:  # (in the backward pass's order: the same bits every call)
        rr += s
    # cg_args::cg_next: the next direction while not converged and beta finite
    beta = rr / rz
    if not (math.isfinite(rr) and math.sqrt(rr) > tol and math.isfinite(beta)):
        return pAp, pGp, rr, math.nan
    if damping:
        return pAp, pGp, rr, mod.cg_direction_sum_(p, r, beta)
    mod.cg_direction_(p, r, beta)
    return pAp, pGp, rr, 0.0
