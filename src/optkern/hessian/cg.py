"""Conjugate gradients on curvature operators: ``hessian.cg(A, b)`` solves ``(A + damping I) x = b``.

SciPy's ``scipy.sparse.linalg.cg`` contract (``x, info = cg(A, b, x0, rtol=..., atol=..., maxiter=...,
M=...)``; ``info`` 0 = converged, > 0 = iterations run without converging) on NumPy or CuPy vectors,
plus what Hessian-free optimization needs: Tikhonov ``damping``, a diagonal preconditioner, and an
exit on negative curvature (``p.A p <= 0``: an indefinite Hessian; ``info = -1``), returning the
iterate so far and the offending direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import _backend, _pool
from . import _cg_fused
from ._cg_inputs import _half_as_double, _preconditioner, z_exponent
from ._lockstep import in_lockstep
from .operators import as_operator
from .symmetry import require_symmetric

# (the one step rule, the fused iteration's; the loop reads it as this module's name)
_step_size = _cg_fused.step_size


@dataclass
class CGResult:
    """``x`` (the solution or last iterate), ``info`` (0 converged, > 0 iterations without converging,
    -1 negative curvature), ``iterations``, ``residual_norm`` (of ``b - (A + damping I) x``, from the
    recursion), ``residual`` (that vector), ``negative_curvature``, ``direction`` (the search direction
    of the last iteration: the negative-curvature direction when ``info == -1``) and ``num_matvecs``.
    A sequence like SciPy's result, the pair ``(x, info)``: ``x, info = hessian.cg(A, b)``,
    ``hessian.cg(A, b)[0]``, ``len`` 2 (indexing raised "not subscriptable": SciPy code reads ``[0]``)."""

    x: Any
    info: int
    iterations: int
    residual_norm: float
    residual: Any
    negative_curvature: bool
    direction: Any
    num_matvecs: int

    def __iter__(self):
        yield self.x
        yield self.info

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        return (self.x, self.info)[i]  # (a tuple's indexing: negative indices, slices, its IndexError / TypeError)


def _finite(xp, v, name: str) -> float:
    """``max |v|`` (0 for an empty ``v``), or ValueError naming ``v`` when it has NaN or Inf entries."""
    # max(max v, -min v): |v| as a temporary cost a vector and a pass more; NaN propagates alike
    big = max(float(v.max()), -float(v.min())) if v.size else 0.0
    if not math.isfinite(big):
        raise ValueError(f"{name}: has NaN or Inf entries")
    return big


def _start(mod, xp, b, scale: float, cold: bool) -> tuple:
    """``(r, p, x, r.r)``: ``r = b / scale`` (cg's own array, never ``b``: scale 1 copies it) and its
    sum of squares; with ``cold``, ``p = r`` (the first direction) and ``x = 0`` (else None, None).
    The CPU module makes them in one pass (cpp/cg.cpp's ``cg_start_``, the bits of the NumPy / CuPy
    steps below: four passes and a native one; 43 against 81-89 us at n = 203,530 in cache, a solve's
    setup after a GGN product 53-93 us shorter)."""
    start = getattr(mod, "cg_start_", None)
    if start is not None:
        r = xp.empty_like(b)
        p, x = (xp.empty_like(b), xp.empty_like(b)) if cold else (None, None)
        return r, p, x, start(b, r, p, x, scale)
    r = b / scale if scale != 1.0 else xp.array(b)
    rr = mod.cg_curvature(r, r, 0.0)
    return r, (xp.array(r) if cold else None), (xp.zeros_like(r) if cold else None), rr


def _unscaled(v: float, e: int) -> float:
    """``v * 2**e`` (inf or 0 where past float64's range, where math.ldexp raised OverflowError)."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.ldexp(np.float64(v), e))


def _curvature_overflow(mod, p, y, pAp: float, damping: float, undamped=None, pp=None, *, e: int = 0) -> ValueError:
    """The error for a curvature ``p.(A + damping I) p`` that is not finite: naming ``damping`` where
    ``p.A p`` alone is finite (a float64 damping of 1e308 overflowed it and "A: the product is not
    finite" named the operator for the caller's damping), else ``A``. ``undamped`` / ``pp``: ``p.A p`` /
    ``p.p`` where known; the others are summed here, on this error path only (no pass more per
    iteration). ``e``: the caller's ``p`` is ``2**e`` times this one (reported in the caller's terms)."""
    if damping:
        undamped = mod.cg_curvature(p, y, 0.0) if undamped is None else undamped
        if math.isfinite(undamped):
            pp = mod.cg_curvature(p, p, 0.0) if pp is None else pp
            return ValueError(
                f"damping: {damping!r} makes the curvature p.(A + damping I) p overflow "
                f"(p.Ap = {_unscaled(undamped, 2 * e)!r}, p.p = {_unscaled(pp, 2 * e)!r}); the solve needs a "
                "smaller damping"
            )
    return ValueError(f"A: the product is not finite (p.Ap = {pAp})")


def _diverged(err: ValueError, xp, x, p, dtype, it: int, x_exp: int, p_exp: int) -> ValueError:
    """``err`` (a sum of the solve left float range, blamed on A's product), or where CG's own iterates
    had grown past the square root of the dtype's max first, the error saying so. The system is solved
    for ``b`` scaled to ~1, so ``x`` and ``p`` start near 1: a singular A with ``b`` outside its range
    (a Gauss-Newton matrix without damping) has no solution, and the steps along its near-null
    directions grew until ``A p`` or ``x`` overflowed -- in float32 after ~20-200 iterations, where
    the error read "A: the product is not finite (p.Ap = nan)" for an operator of finite products
    (float64 returns such an x, ~1e17, as its last iterate). The growth is judged in the solve's units
    (where the range is left), reported in the caller's: ``x`` times ``2**x_exp`` (b's scale), ``p``
    times ``2**p_exp`` (b's and the preconditioner's, as the returned direction)."""
    if not str(err).startswith("A:"):  # (damping's overflow is named as it is)
        return err
    with np.errstate(invalid="ignore"):
        xmax, pmax = (float(xp.where(xp.isnan(v), 0.0, xp.abs(v)).max()) if v.size else 0.0 for v in (x, p))
    if not max(xmax, pmax) > math.sqrt(float(np.finfo(dtype).max)):
        return err
    return ValueError(
        f"A: CG diverged at iteration {it}: its iterates grew past the square root of {np.dtype(dtype).name}'s "
        f"range (|x| up to {_unscaled(xmax, x_exp):.4g}, |p| up to {_unscaled(pmax, p_exp):.4g}, in b's units; "
        f"{str(err)[3:]}); A + damping I is singular or nearly so and b has a component outside its range, so "
        "(A + damping I) x = b has no solution (a damping that makes A + damping I positive definite gives it one)"
    )


def _warm_residual_overflow(xp, y, x, damping: float, dtype) -> ValueError:
    """The error for a warm start whose residual ``b - (A + damping I) x0`` (``x = x0 / s``, ``y = A x``)
    is not finite: the native kernels' own check named their argument ``rz`` for it."""
    if not bool(xp.isfinite(y).all()):
        return ValueError("x0: the product A x0 is not finite (the warm start's residual b - (A + damping I) x0)")
    with np.errstate(over="ignore"):
        dx = damping * float(xp.abs(x).max())
    if damping and not dx <= float(np.finfo(dtype).max):
        return ValueError(
            f"damping: {damping!r} * x0 overflows {np.dtype(dtype).name} (the warm start's residual "
            "b - (A + damping I) x0)"
        )
    return ValueError("x0: the warm start's residual b - (A + damping I) x0 is not finite (r.r overflows)")


@in_lockstep("A")
@_pool.pooled  # (its vectors, fresh per solve, came as fresh pages: 300-760 page faults a solve)
def cg(
    A,
    b,
    x0=None,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    M=None,
    precond_diag=None,
    damping: float = 0.0,
    callback: Callable | None = None,
    stop_on_negative_curvature: bool = True,
) -> CGResult:
    """(Preconditioned) conjugate gradients for ``(A + damping I) x = b``.

    Args:
      A: a ``CurvatureOperator``, a square array, a SciPy sparse matrix (as SciPy's ``cg``), or anything
        with ``matvec`` and ``shape``.
      b: right-hand side, shape ``(n,)``.
      x0: starting point (warm start); zeros by default. Not modified.
      rtol, atol: stop when ``||r|| <= max(rtol ||b||, atol)`` (SciPy's documented rule; its code tests
        ``<``, so at ``||r||`` exactly the tolerance -- ``rtol=1`` from ``x0 = 0`` -- SciPy runs one
        iteration more). ``b = 0``: ``x = 0`` at once, whatever ``x0`` (as SciPy: info 0, no product).
      maxiter: iteration limit, at most ``2**63 - 1`` (default ``10 n``, like SciPy). ``maxiter=0`` runs
        none: ``info`` is 0 where ``x0`` (zeros without one) meets the tolerance already, else 1 --
        unlike SciPy's ``cg``, which returns ``info = maxiter = 0`` ("successful exit") for an ``x0`` it
        never tested; here ``info > 0`` always means not converged.
      M: preconditioner approximating ``(A + damping I)^-1`` (SciPy's meaning): operator, matrix or
        callable ``r -> M r``; must be SPD (checked through ``r.M r > 0`` at every iteration).
      precond_diag: or a positive diagonal ``D`` approximating ``A + damping I`` (applied as ``r / D``).
      damping: ``lambda >= 0`` added to the diagonal.
      callback: ``callback(xk)`` after each iteration, with a copy of the iterate ``x_k``: one a
        caller may keep (``callback=history.append``) or write to. SciPy's ``cg`` passes its live
        ``x``, which the next iteration overwrites in place: its callers who store it get the
        final iterate N times (the copy costs one vector per iteration, with a callback only).
      stop_on_negative_curvature: return at the first direction with ``p.(A + damping I) p <= 0``
        (else continue, as plain CG does, with no guarantee).
    """
    A = require_symmetric(_half_as_double(A), "A", "CG")
    op = as_operator(A)
    n = op.shape[0]
    xp = getattr(op, "xp", np)
    dtype = np.dtype(op.dtype)
    bv = op._vector(b, "b")  # (n,) or (n, 1), real, in the operator's dtype
    rtol = _backend.nonnegative("rtol", rtol)
    atol = _backend.nonnegative("atol", atol)
    damping = _backend.nonnegative("damping", damping)
    # (the kernels add damping * p in the vectors' dtype: past float32's range that was inf, and the
    # solve raised "A: the product is not finite", naming the operator for the caller's damping)
    _backend.finite_in("damping", damping, dtype)  # (a check: kept unrounded)
    # (at most int64's max, as Newton-CG's max_cg_iter that it takes: 2**70 ran, and unconverged
    # returned info = 2**70, a count no int64 holds)
    maxiter = 10 * n if maxiter is None else _backend.integer("maxiter", maxiter, lo=0, hi=_backend.INT64_MAX)
    stop_on_negative_curvature = _backend.flag("stop_on_negative_curvature", stop_on_negative_curvature)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable, got {type(callback).__name__}")
    big = _finite(xp, bv, "b")
    x0v = None if x0 is None else op._vector(x0, "x0")  # (maybe x0 itself: read only)
    x0max = 0.0 if x0v is None else _finite(xp, x0v, "x0")
    precond, m_exp = _preconditioner(M, precond_diag, n, xp, dtype)
    # The system solved for b / s, s the power of two (exact) with 1 <= max |b / s| < 2: r.r and p.Ap of
    # a b of 1e200 overflowed (x = 0 returned as converged, info 0), of 1e-200 underflowed to 0 (the
    # same), of 1e-160 lost their digits (x off by 1e-3, "converged"). Always, not only for such b: the
    # directions p are then ~1 and the products A p ~ ||A||, which a (c A) x = c b needs -- in float32
    # with c = 1e-20 its A p (~1e-40) were subnormal (x off by 3e-5), with c = 1e-22 zero ("negative
    # curvature", info -1), with c = 1e20 inf. x, r, p, the residual norm (and atol, x0 on the way in)
    # are scaled back; the solve is linear and s exact, so where nothing under- or overflowed the
    # iterates are the same bits as unscaled.
    b_exp = math.frexp(big)[1] - 1 if big else 0
    scale = math.ldexp(1.0, b_exp)
    atol /= scale
    # x, r, p: cg's own arrays, never b's or x0's (written in place, returned). x0 / s is fresh
    # already: taken as it is (a copy more cost a pass and a vector per solve).
    x = None if x0v is None else (x0v / scale if scale != 1.0 else xp.array(x0v))
    # whether x0 / s has a nonzero entry: its largest one divided as the array was (in its dtype,
    # exact but where it underflows: rounding is monotone), where an any(x) pass was read
    with np.errstate(all="ignore"):  # (an overflow to inf is nonzero too, as the array's was)
        x0_nonzero = x0v is not None and float(dtype.type(x0max) / dtype.type(scale)) != 0.0
    mod = _backend.backend(("b", bv))
    matvecs = 0

    def product(v):
        """``A v`` as a C-contiguous vector of the solve's dtype (the operator's own array: read only)."""
        nonlocal matvecs
        matvecs += 1
        y = xp.asarray(op.matvec(v))
        if y.size != n:
            raise ValueError(f"A: matvec returned shape {tuple(y.shape)} for a vector of {n}")
        return xp.ascontiguousarray(y.reshape(n), dtype=dtype)

    z_exp = None  # (M r scaled by 2**-z_exp: see _cg_inputs.z_exponent, fixed at the first M r)

    def p_exp() -> int:
        """The caller's direction ``p`` is ``2**p_exp()`` times the solve's: ``r = b / 2**b_exp``, and ``M``
        (so ``z = M r`` and ``p``) scaled by ``2**-(m_exp + z_exp)``; ``x`` and ``r`` are not (the step
        ``r.z / p.Ap`` undoes M's). ``r.z`` is ``2**(p_exp() + b_exp)`` times, ``p.Ap`` ``2**(2 p_exp())``."""
        return b_exp + m_exp + (z_exp or 0)

    def diverged(error: ValueError) -> ValueError:
        """:func:`_diverged` on this iteration's x and p, reported in the caller's units."""
        return _diverged(error, xp, x, p, dtype, it, b_exp, p_exp())

    def rz_reported(rz: float) -> float:
        return _unscaled(rz, p_exp() + b_exp)

    def preconditioned(r):
        nonlocal z_exp
        if precond is None:
            return r
        z = xp.asarray(precond(r))
        if z.size != n:
            raise ValueError(f"M: returned shape {tuple(z.shape)} for a vector of {n}")
        z = xp.ascontiguousarray(z.reshape(n), dtype=dtype)
        if z_exp is None:
            z_exp = z_exponent(xp, z, r)
        return xp.ldexp(z, -z_exp) if z_exp else z

    # r = b / s with r.r; from a cold start without a preconditioner x = 0 and the first direction
    # p = r as well (p0 below; None otherwise)
    r, p0, x_cold, bb = _start(mod, xp, bv, scale, x is None and precond is None)
    bnorm = math.sqrt(bb)
    if x_cold is not None:
        x = x_cold
    elif x is None or (bnorm == 0.0 and not bool(xp.any(r))):  # (b.b can underflow: r = b / s itself tested)
        # b = 0: x = 0 solves it exactly whatever x0 (SciPy returns it at once, info 0); from a
        # nonzero x0 the rule ||r|| <= max(rtol ||b||, atol) = 0 could never be met, and maxiter
        # products would only approach it. Here r = b = 0 meets it before any product.
        x = xp.zeros(n, dtype=dtype)
    elif x0_nonzero:  # r = b - (A + damping I) x0 by the update pass (its x: a scratch copy of x0)
        y0 = product(x)
        mod.cg_update_(xp.zeros_like(x), r, x, y0, 1.0, damping)
        bb = mod.cg_curvature(r, r, 0.0)
        if not math.isfinite(bb):
            raise _warm_residual_overflow(xp, y0, x, damping, dtype)
    tol = max(rtol * bnorm, atol)
    rr = bb  # r.r (r = b: its sum is b.b's, not taken again)
    rnorm = math.sqrt(rr)
    p = None
    result: dict[str, Any] = {"negative_curvature": False, "info": maxiter, "iterations": 0}
    if rnorm <= tol:
        result["info"] = 0
    else:
        # Per iteration: the product, then three fused passes (cpp/cg.cpp): the curvature
        # p.(A + damping I) p, the update of x and r with the new r.r, the next direction (two where
        # the operator tells p.A p with its product).
        z = preconditioned(r)
        rz = rr if precond is None else mod.cg_curvature(r, z, 0.0)
        if precond and not rz > 0.0:
            raise ValueError(f"M: the preconditioner is not positive definite (r.Mr = {rz_reported(rz)})")
        p = xp.array(z) if p0 is None else p0
        fused = precond is None  # (a preconditioner's z = M r is Python's, between the passes)
        # An operator that tells p.A p with A p (from_mlp's Gauss-Newton, from its rows x outputs
        # intermediate) spares the curvature pass, which ran at the float-to-double conversions' rate
        # (35 of the fused call's ~100 us at n = 203,530); p.p, for the damping, is summed as each
        # direction is written. The iterates agree with the pass's to rounding, not bit for bit.
        known = getattr(op, "_quad", None) if fused and hasattr(mod, "cg_iteration_known_") else None
        # ... and one that tells it before it forms A p takes the update inside its product (_cg_fused.py)
        inside = getattr(op, "_quad_then", None) if known is not None and hasattr(mod, "cg_update_slice_") else None
        pp = rr  # p.p (p = r: the same sum)
        for it in range(1, maxiter + 1):
            if inside is not None:
                matvecs += 1
                op.num_matvecs += 1
                pAp, pGp, rr, pp_next = _cg_fused.iteration(
                    inside, mod, x, r, p, pp, rz, damping, tol, stop_on_negative_curvature
                )
                y, told, pp = None, (pGp, pp), pp_next
            elif known is not None:  # (the library's own product: fresh, of the solve's shape and dtype)
                matvecs += 1
                op.num_matvecs += 1
                y, pGp = known(p)
                pAp = pGp + damping * pp if damping else pGp
                told = (pGp, pp)  # (the kernel returns NaN for p.p where it refuses pAp)
                # the update and the direction as cg_iteration_'s (its rules on pAp and rr), p.p summed
                rr, pp = mod.cg_iteration_known_(x, r, p, y, pAp, rz, damping, tol, stop_on_negative_curvature)
            else:
                y = product(p)
                if fused:
                    # The iteration's three passes below in one native call, one parallel region or the
                    # calling thread, whichever it timed faster (cpp/cg_threads.hpp; the same bits;
                    # cg_iteration_ decides as this loop does, from the same sums): the steps
                    # it skipped are told by pAp and rr as the checks below read them.
                    if xp.may_share_memory(y, p):  # (an operator handing back its input: p is written)
                        y = y.copy()
                    pAp, rr = mod.cg_iteration_(x, r, p, y, rz, damping, tol, stop_on_negative_curvature)
                else:
                    pAp = mod.cg_curvature(p, y, damping)
            # (a finite r.r: the fused iteration took the step, its pAp and alpha checked inside the product)
            if inside is None or not math.isfinite(rr):
                if not math.isfinite(pAp):  # (NaN read as negative curvature returned info -1)
                    told_ = told if known is not None else ()
                    error = _curvature_overflow(mod, p, y, pAp, damping, *told_, e=p_exp())
                    raise diverged(error)
                alpha = _step_size(pAp, rz, stop_on_negative_curvature)
                if alpha is None:
                    result.update(negative_curvature=True, info=-1, iterations=it - 1)
                    break
                if not math.isfinite(alpha):
                    error = ValueError(
                        f"A: the product gave a non-finite step (p.Ap = {_unscaled(pAp, 2 * p_exp())}, "
                        f"r.z = {rz_reported(rz)})"
                    )
                    raise diverged(error)
                if not fused:
                    rr = mod.cg_update_(x, r, p, y, alpha, damping)
            if not math.isfinite(rr):  # (a finite p.A p, a product with inf, or the update overflowing)
                # (next, with a preconditioner r.Mr was NaN, "M: not positive definite"; without one the
                # direction's kernel refused the step's beta, "beta: must be finite", no argument of cg)
                raise diverged(ValueError(f"A: the product is not finite (r.r = {rr})"))
            rnorm = math.sqrt(rr)
            result["iterations"] = it
            if callback is not None:
                callback(x.copy() if scale == 1.0 else x * scale)  # (x * scale: a new array too)
            if rnorm <= tol:
                result["info"] = 0
                break
            z = preconditioned(r)
            rz_new = rr if precond is None else mod.cg_curvature(r, z, 0.0)
            if precond and not rz_new > 0.0:
                raise ValueError(f"M: the preconditioner is not positive definite (r.Mr = {rz_reported(rz_new)})")
            beta = rz_new / rz
            if not math.isfinite(beta):  # (the kernel's own refusal named its argument, "beta")
                error = ValueError(
                    f"A: the residual's growth overflows (r.z = {rz_reported(rz_new)!r} after {rz_reported(rz)!r})"
                )
                raise diverged(error)
            if not fused:  # (fused: the kernel wrote the direction already)
                mod.cg_direction_(p, z, beta)
            rz = rz_new
        else:
            result["info"] = maxiter if maxiter > 0 else (0 if rnorm <= tol else 1)
    if scale != 1.0:  # in place: x, r are cg's own (the callback had copies)
        x *= scale
        r *= scale
        rnorm *= scale
    # p scales with b and with M (x and r do not: their step is 1 / c): M's powers of two undone too,
    # exactly, in one ldexp (the direction of M = 1e-30 I came back 2**100 times too long)
    if p is not None and p_exp():
        with np.errstate(over="ignore", under="ignore"):  # (the caller's own direction, where outside range)
            p = xp.ldexp(p, p_exp(), out=p)
    return CGResult(x=x, residual_norm=rnorm, residual=r, direction=p, num_matvecs=matvecs, **result)
