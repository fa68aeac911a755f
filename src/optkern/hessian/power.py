"""Power iteration: the eigenvalue of largest magnitude of a symmetric operator (PyHessian's sharpness
estimate), with a residual bound for ``converged`` -- the simple estimator beside ``top_eigenvalues``
(``lanczos.py``), which converges faster."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import _backend, _fixed_sums
from ._lockstep import in_lockstep
from ._probes import checked_seed, start_vector
from ._products import check_estimate
from .operators import as_operator, unit_vector
from .symmetry import require_symmetric


@dataclass
class PowerResult:
    """Dominant eigenpair from power iteration (largest |eigenvalue|)."""

    eigenvalue: float
    eigenvector: object = field(repr=False)
    iterations: int
    converged: bool


@in_lockstep("op")
def power_iteration(op, max_iter: int = 100, tol: float = 1e-6, v0=None, seed: int = 0) -> PowerResult:
    """Power iteration for the eigenvalue of largest magnitude (PyHessian's sharpness estimate).

    Iterates ``v <- A v / ||A v||`` with the Rayleigh quotient ``theta = v^T A v`` as the estimate,
    from ``v0`` (default: uniform in ``[-1, 1)`` from ``seed``, as PyHessian starts from a Gaussian
    one). Simple and cheap per step but converges at rate ``|lambda_2 / lambda_1|`` (the residual;
    the quotient at its square); prefer ``top_eigenvalues``.

    ``converged=True`` means the residual bound ``||A v - theta v|| <= max(t |theta|, f)``, with
    ``t = max(tol, 64 eps)`` and ``f = 4 sqrt(n) s`` (``eps`` and ``s``, the smallest subnormal, of
    the operator's dtype: the accuracy its products reach, relative and absolute), for the unit
    ``v`` whose quotient is returned: for a symmetric operator an eigenvalue lies within
    ``||A v - theta v||`` of ``theta`` (Krylov-Bogoliubov), so ``theta`` is within that bound of
    an eigenvalue -- the dominant one unless ``v0`` had (numerically) no component along its
    eigenvector -- whatever the spectral gap. (It is checked once the quotient has settled to ``t``
    relative.) PyHessian's rule, the quotient settled to ``tol``, and the residual at ``sqrt(tol)``
    that this function took before, leave an error up to ``||r||^2 / gap``: 2.3e-5 at tol=1e-6 for a
    gap of 2 %. A slow gap now takes its iterations (the residual falls as ``(lambda_2 /
    lambda_1)^k``: about ``log(tol) / log(lambda_2 / lambda_1)`` products, twice the quotient's)
    or ends with ``converged=False`` at ``max_iter`` (at most ``2**63 - 1``). With eigenvalues ``+-lambda`` dominant the
    quotient settles on no eigenvalue and the residual does not fall: not converged. The
    eigenvector returned is ``A v / ||A v||`` (one step past ``v``).
    """
    op = require_symmetric(op, "op", "power iteration")
    op = as_operator(op, "op")  # (errors name the argument: op, not as_operator's A)
    # (at most int64's max, as cg's maxiter: 2**70 ran, and unconverged returned iterations = 2**70)
    max_iter = _backend.integer("max_iter", max_iter, lo=1, hi=_backend.INT64_MAX)
    tol = _backend.positive("tol", tol)
    seed = checked_seed(seed)  # (with v0 none is drawn: a bad seed was taken silently)
    xp = op.xp
    n = op.shape[0]
    fi = np.finfo(np.dtype(op.dtype))
    tol_eff = max(tol, 64 * float(fi.eps))  # (see the docstring)
    floor = 4 * math.sqrt(n) * float(fi.smallest_subnormal)  # (A v's entries: multiples of it)
    # (a uniform start vector, not +-1: [[1, 1], [1, 1]] gave 0.0 half the time, see _probes.start_vector)
    v = unit_vector(op, start_vector(n, seed=seed, index=0, dtype=op.dtype, xp=xp) if v0 is None else v0)
    lam = None
    for it in range(1, max_iter + 1):
        w = op.matvec(v)
        new = _fixed_sums.dot(v, w)  # (not NumPy's vdot: BLAS, whose last bits follow the thread count)
        big = check_estimate(float(xp.abs(w).max()))  # (NaN / Inf products: ValueError, as every estimator)
        if big == 0.0:
            return PowerResult(0.0, v, it, True)
        # (normalized as a start vector is, scaled first: NumPy's norm squares in w's dtype, and a float32
        # operator's eigenvalues near 1e-25 gave 0.0 "converged", near 1e19 "products are not finite")
        u = unit_vector(op, w, "op")
        if lam is not None and abs(new - lam) <= tol_eff * max(abs(new), np.finfo(np.float64).tiny):
            if _settled(xp, w, v, new, big, max(tol_eff * abs(new), floor)):
                return PowerResult(new, u, it, True)
        v, lam = u, new
    return PowerResult(new, v, max_iter, False)


def _settled(xp, w, v, theta: float, big: float, bound: float) -> bool:
    """Whether the unit vector ``v`` with ``w = A v`` and quotient ``theta`` has the residual bound
    ``||w - theta v|| <= bound`` (power_iteration's ``converged``: an eigenvalue within ``bound``
    of theta). The quotient alone can settle where no eigenvector is: with
    eigenvalues +-lambda dominant the iterate alternates between two vectors of one quotient
    (diag(5, -5, 1) stopped at -3.45, "converged"), and a subnormal operator's quotient repeats its
    coarse values (diag(1, 2, -3) * 1e-320 stopped at -2.485e-320 after two products). Scaled by
    ``big`` (max |w|): no square over- or underflows."""
    r = (w / big) - (theta / big) * v if big != 0.0 else w - theta * v
    rn = float(np.sqrt(_fixed_sums.dot(r, r))) * big
    return rn <= bound
