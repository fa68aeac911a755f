"""Spectral density by stochastic Lanczos quadrature (SLQ) and gradient concentration.

SLQ (Ghorbani, Krishnan & Xiao 2019; Lin, Saad & Yang 2016): for a unit
probe ``v``, ``m`` Lanczos steps give ``T = S diag(theta) S^T``, and
``v^T f(A) v ~ sum_i tau_i f(theta_i)`` with ``tau_i = S[0, i]^2`` (Gauss
quadrature). Averaging over Rademacher probes estimates the spectral measure
``(1/n) sum_j delta(t - lambda_j)``; a Gaussian kernel of width ``sigma``
turns the nodes into a smooth density (PyHessian's ``density``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _backend, _fixed_sums
from . import _orthonormal
from ._lockstep import in_lockstep, same_on_every_rank
from ._products import in_dtype, real_array
from ._vectors import in_range
from .lanczos import _tridiag_eigh, top_eigenvalues
from .operators import as_operator, with_progress
from .recurrence import LanczosRecurrence, run_lockstep
from .symmetry import require_symmetric


@dataclass
class SpectralDensity:
    """An SLQ estimate of the eigenvalue density.

    Attributes:
      grid: points ``t`` where the density is evaluated (float64).
      density: ``(1/P) sum_p sum_i tau_pi N(t; theta_pi, sigma^2)``, which
        integrates to 1 up to the mass outside the grid.
      nodes: ``(P, m)`` Ritz values per probe (zero-weight padding if a probe stopped early).
      weights: ``(P, m)`` quadrature weights, each row sums to 1.
      sigma: the Gaussian broadening width.
    """

    grid: np.ndarray = field(repr=False)
    density: np.ndarray = field(repr=False)
    nodes: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    sigma: float

    def cdf(self, t):
        """The (unbroadened) quadrature estimate of the spectral CDF at ``t``: exactly 0 below the lowest
        node (``-inf``), exactly 1 from the highest (``inf``), non-decreasing in ``t``; ValueError naming
        ``t`` for NaN points, which no comparison places: each read 0.0, the CDF below the whole spectrum."""
        # (a CuPy t read back to the host, as spectral_density's grid is: np.asarray refuses it)
        t = np.asarray(real_array(np, _backend.to_numpy(t) if _backend.is_cupy(t) else t, "t"), dtype=np.float64)
        if np.isnan(t).any():
            raise ValueError("t: has NaN entries")
        # Running sums over the sorted nodes, over their own total: the weights sum to 1 only to rounding
        # (cdf(inf) read 1.0000000000000004 or 0.9999999999999994), and a last running sum over itself is
        # exactly 1; running sums of nonnegative weights, and their quotients by one total, never decrease.
        order = np.argsort(self.nodes, axis=None, kind="stable")
        sums = np.cumsum(self.weights.ravel()[order])
        total = sums[-1] if sums.size else 0.0
        if total > 0:
            sums = sums / total
        taken = np.searchsorted(self.nodes.ravel()[order], t.ravel(), side="right")  # nodes <= t
        return np.concatenate(([0.0], sums))[taken].reshape(t.shape)

    def mean(self) -> float:
        """Estimate of ``tr(A) / n``, in range wherever float64 holds it (``_vectors.in_range``: the sum
        of nodes near float64's max overflowed, and the mean of ``[[-1e308]]``'s density was -inf, with
        NumPy's "overflow encountered in reduce", an error under ``-W error``)."""
        P = self.weights.shape[0]
        return in_range(np, self.nodes, lambda t: float((self.weights * t).sum() / P))


@in_lockstep("op")
def spectral_density(
    op,
    num_probes: int = 1,
    steps: int = 80,
    grid=10000,
    sigma: float | None = None,
    seed: int = 0,
    pad: float = 0.01,
    progress=None,
    reorthogonalize: str = "partial",
    basis_dtype=None,
    basis: str | None = None,
    probes_per_block: int = 1,
) -> SpectralDensity:
    """Eigenvalue density of a symmetric operator by stochastic Lanczos quadrature.

    Args:
      op: a ``CurvatureOperator`` (or a square array / LinearOperator).
      num_probes: number of Rademacher probes ``P`` (probe ``p`` is the seed's ``p``-th).
      steps: Lanczos steps per probe (``m``, at most ``2**63 - 1``; costs ``P * m`` products).
      grid: number of evenly spaced grid points spanning the nodes (widened by
        ``pad`` of the range plus ``3 sigma`` on each side), or the grid itself.
      sigma: Gaussian width (default ``0.01 * (max node - min node)``; 1e-3 of the
        nodes' magnitude if the range is 0 or within the nodes' rounding, 1e-3 if all nodes are 0).
        The density of ``c A`` (with ``c sigma``) is that of ``A`` on ``c`` times the grid, divided
        by ``c``, wherever float64 holds it (ValueError naming sigma where it does not).
      progress: optional ``progress(done, total)`` after each product (``total = P * m``).
      reorthogonalize: ``"partial"`` (default: Simon's omega-recurrence, the
        Ritz values of full reorthogonalization while reading the basis on few
        steps), ``"full"``, or ``"none"`` (no basis: 3 vectors per probe, the
        memory-bounded choice for large models; quadrature stays accurate).
      basis_dtype, basis: storage of the basis (``lanczos``): float32 for a float64
        operator, ``"host"`` for host memory with a CuPy operator.
      probes_per_block: probes run together, their products as one block
        (``op.matmat``: one forward pass per block for ``from_mlp``).

    Memory per probe run at once: 3 vectors with ``"none"``; plus ``(m + 1) n``
    basis entries otherwise.
    """
    op = require_symmetric(op, "op", "Lanczos")
    op = as_operator(op, "op")  # (errors name the argument: op, not as_operator's A)
    # (at most int32's max: a (P, m) array of nodes, and P * m products, is what they cost)
    P = _backend.integer("num_probes", num_probes, lo=1, hi=2**31 - 1)
    steps = _backend.integer("steps", steps, lo=1, hi=_backend.INT64_MAX)  # (a loop count: int64, as every one)
    # the grid's arguments checked before the products are spent
    pad = _backend.nonnegative("pad", pad)
    if sigma is not None:
        sigma = _backend.positive("sigma", sigma)
        _check_width(sigma, P, min(steps, op.shape[0]))  # (before P * m products are spent on an error)
        if np.ndim(grid) == 0 and not math.isfinite(3 * sigma):
            raise ValueError(f"sigma, pad: the grid's margin {3 * sigma!r} goes beyond float64's range")
    if np.ndim(grid) == 0:
        npts = _backend.integer("grid", grid, lo=2)
        if npts > 2**31 - 1:  # NumPy would refuse it with a message naming nothing
            raise ValueError(f"grid: must be at most 2**31 - 1 points, got {npts}")
    else:  # (complex, strings or None entries are not points: a cast would drop or refuse them unnamed)
        grid = real_array(np, _backend.to_numpy(grid) if _backend.is_cupy(grid) else grid, "grid")
        grid = np.asarray(grid, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0:  # (a 2-d grid came back flattened; an empty one wasted P * m products)
            raise ValueError(f"grid: expected a 1-d array of at least one point, got shape {tuple(grid.shape)}")
        if not np.isfinite(grid).all():  # (a NaN point made a NaN density, returned after the products)
            raise ValueError("grid: has NaN or Inf entries")
    n = op.shape[0]
    m = min(steps, n)
    per = _backend.integer("probes_per_block", probes_per_block, lo=1)
    op = with_progress(op, progress, P * m)
    nodes = np.zeros((P, m))
    weights = np.zeros((P, m))
    for p0 in range(0, P, per):
        recs = [
            LanczosRecurrence(op, m, None, seed, reorthogonalize, basis_dtype, basis, index=p)
            for p in range(p0, min(p0 + per, P))
        ]
        run_lockstep(op, recs)
        for p, rec in zip(range(p0, P), recs):
            alpha, beta, _ = rec.result()
            theta, S = _tridiag_eigh(alpha, beta)
            k = len(theta)
            nodes[p, :k] = theta
            nodes[p, k:] = theta[-1]
            weights[p, :k] = S[0] ** 2
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = _default_sigma(lo, hi, op.dtype)
        _check_width(sigma, P, m, " (the default width: pass a wider one)")
    with np.errstate(over="ignore"):
        width = hi - lo  # (inf for nodes near -+1e308: pad * hi - pad * lo, the same margin, may be finite)
        margin = (pad * width if math.isfinite(width) else pad * hi - pad * lo if pad else 0.0) + 3 * sigma
    if np.ndim(grid) == 0:
        if not (math.isfinite(lo - margin) and math.isfinite(hi + margin)):
            name = "sigma, pad" if not math.isfinite(hi + 3 * sigma) else "pad, sigma"
            raise ValueError(f"{name}: the grid's margin {margin!r} goes beyond float64's range")
        grid = _linspace(lo - margin, hi + margin, npts)
    dens = _broadened(grid, nodes, weights, sigma)
    if not np.isfinite(dens).all():  # (a density past float64's max: sigma below what float64 can divide by)
        raise ValueError(f"sigma: too small for a float64 density, got {sigma!r}")
    return SpectralDensity(grid, dens, nodes, weights, float(sigma))


def _check_width(sigma: float, P: int, m: int, default: str = "") -> None:
    """ValueError naming sigma where no density of width ``sigma`` is a float64, whatever the nodes: a
    probe's heaviest node weighs at least ``1 / m``, and its kernel alone peaks at ``1 / (sigma sqrt(2 pi)
    P m)``. A smaller width the density can carry is left to its own check. (0: a default width that
    underflowed, 1e-3 of nodes near the smallest subnormal, which the kernel divided by: NumPy's "invalid
    value encountered in divide" escaped under ``-W error``.) ``default``: said of a default width."""
    with np.errstate(over="ignore"):
        if not (sigma > 0.0 and math.isfinite(1.0 / (sigma * np.sqrt(2 * np.pi) * P * m))):
            raise ValueError(f"sigma: too small for a float64 density, got {sigma!r}{default}")


def _default_sigma(lo: float, hi: float, dtype) -> float:
    """1% of the nodes' range ``[lo, hi]``; where that range is 0 or only the nodes' rounding (Lanczos
    makes them to about ``eps ||A||``), 1e-3 of the nodes' magnitude (1e-3 if all are 0). ``Q I Q^T``'s
    nodes 1 ulp apart gave a width of 1e-18, a grid of 2 distinct points and a density integrating to
    19.9; on ``1e14 I`` a width of 1e-3 was below float64's spacing, the grid one point, the density 0.
    Relative, so that ``c A``'s width is ``c`` times ``A``'s at any scale: an absolute 1e-3 under
    ``2**-1000 I`` spread its one node over 1e298 times its value. (``0.01 hi - 0.01 lo``: ``hi - lo``
    of nodes near +-1e308 is inf.)"""
    scale = max(abs(lo), abs(hi))
    if hi / 2 - lo / 2 > 50 * float(np.finfo(dtype).eps) * scale:
        return 0.01 * hi - 0.01 * lo
    return 1e-3 * scale if scale > 0 else 1e-3


def _exponent(x: float) -> int:
    """``e`` with ``2**(e-1) <= |x| < 2**e`` (0 for 0): dividing by ``2**e`` is exact."""
    return math.frexp(x)[1]


def _linspace(a: float, b: float, n: int) -> np.ndarray:
    """``np.linspace(a, b, n)`` computed on ``[a, b] / 2**e``: its step ``(b - a) / (n - 1)`` was inf
    (a grid of NaN) for ends near -+1e308, and subnormal (a grid of repeated points) for ends near
    1e-310."""
    e = _exponent(max(abs(a), abs(b)))
    return np.ldexp(np.linspace(math.ldexp(a, -e), math.ldexp(b, -e), n), e)


def _broadened(grid: np.ndarray, nodes: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """``(1/P) sum_p sum_i tau_pi N(t; theta_pi, sigma^2)`` at the grid points ``t``, with the
    magnitudes held apart as powers of two: ``1 / sigma`` overflowed (refused) below sigma ~ 5e-309 --
    ``2**-1016`` times a spectrum of range 0.2 -- though the density (``2**1016 * 5``) was a float64,
    and ``t - theta`` was subnormal (bits lost) under such operators. Grid and nodes are divided by
    one power of two ``2**e`` (exact), ``sigma = ms * 2**es`` (``1 <= ms < 2``); the differences, the
    kernel's argument and its normalization are formed at magnitude ~1 and ``ldexp`` applies the
    exponents (inf where the density truly leaves float64, 0 where it underflows).

    Where that one power of two would take a nonzero point or node below float64's normal range (a
    caller's grid point at 1e308 beside nodes near 1e-100: they became 0, and the density elsewhere was
    off by up to 7x), each pair ``t - theta`` is divided by the power of two of its own larger magnitude
    instead (the smaller one, if it falls below the normal range then, is below an ulp of the other)."""
    P = nodes.shape[0]
    e = _exponent(max(float(np.abs(grid).max()), float(np.abs(nodes).max())))
    es = _exponent(sigma) - 1
    ms = math.ldexp(sigma, -es)
    g = np.ldexp(grid, -e)
    tiny = float(np.finfo(np.float64).tiny)
    common = all(bool(np.all((a == 0) | (np.abs(np.ldexp(a, -e)) >= tiny))) for a in (grid, nodes))
    eg = np.frexp(grid)[1][:, None]  # (the grid points' powers of two: the pairs' scales where not common)
    dens = np.zeros_like(grid)
    with np.errstate(over="ignore"):  # (z past float64's range: a kernel of exp(-inf) = 0)
        for p in range(P):
            if common:
                z = np.ldexp((g[:, None] - np.ldexp(nodes[p], -e)[None, :]) / ms, e - es)
            else:
                E = np.maximum(eg, np.frexp(nodes[p])[1][None, :])  # (each pair's own power of two)
                z = np.ldexp((np.ldexp(grid[:, None], -E) - np.ldexp(nodes[p][None, :], -E)) / ms, E - es)
            dens += (np.exp(-0.5 * z * z) * weights[p][None, :]).sum(axis=1)
        return np.ldexp(dens / (ms * math.sqrt(2 * math.pi) * P), -es)


def _check_rank(xp, V, sines, k: int) -> None:
    """ValueError unless the ``k`` columns of ``V`` span ``k`` dimensions. An orthonormalization
    completes or drops dependent columns: QR's arbitrary directions for zeros, or a column twice, gave
    the gradient's share of an arbitrary subspace (0.03, 0.28 for 12 x 2), as if measured. ``sines[i]``
    (``_orthonormal.orthonormalize_rows``) is the sine of column ``i``'s angle with the columns before
    it, QR's ``|R_ii| / ||v_i||``; Ritz vectors are orthonormal, this about 1."""
    tol = math.sqrt(float(np.finfo(V.dtype).eps))
    bad = next((i for i, s in enumerate(sines) if not s > tol), None)
    if bad is not None:
        what = "in the span of the columns before it" if bool(xp.any(V[:, bad])) else "zero"
        raise ValueError(
            f"eigenvectors: columns 0..{k - 1} must be linearly independent (Ritz vectors), column {bad} is {what}"
        )


def _top_space(op, k: int, tol, max_steps, seed, progress):
    """The Ritz vectors of the ``k`` largest eigenvalues, found with the (k+1)-th: ValueError naming
    ``k`` where the two are equal to the tolerance. The top-k eigenspace is then not unique and the
    fraction was that of whichever part of the repeated eigenspace Lanczos picked (diag(3, 3, 3, ...),
    k = 1: 0.018 or 0.40 by the seed)."""
    n = op.shape[0]
    if k > n:
        raise ValueError(f"k: must be at most n = {n}, got {k}")
    kk = min(k + 1, n)
    if max_steps is not None:
        max_steps = _backend.integer("max_steps", max_steps, lo=k, hi=_backend.INT64_MAX)
        if max_steps < kk:
            # (the caller's cap is on products, and k + 1 pairs take k + 1 of them: it was raised to
            # k + 1 here, one product past the cap; refused before any, as an unconverged run is)
            raise ValueError(
                f"max_steps: the top-{kk} Ritz pairs did not converge in {max_steps} products: they take at "
                f"least {kk} (the (k+1)-th tells whether the top-{k} eigenspace is unique); raise max_steps"
            )
    r = top_eigenvalues(
        op, kk, "LA", tol=tol, max_steps=max_steps, seed=seed, return_eigenvectors=True, progress=progress
    )
    if not r.converged:
        # (the unconverged Ritz vectors span another subspace: diag(10, 7, 5, ...) rotated, k = 2,
        # max_steps = 2 gave 0.033 for a fraction of 0.292, silently)
        raise ValueError(
            f"max_steps: the top-{kk} Ritz pairs did not converge in {r.steps} products (largest residual "
            f"{float(np.max(r.residuals)):.3g}): their span is not the top-{k} eigenspace; raise max_steps (or tol)"
        )
    if kk > k:
        theta = np.asarray(r.eigenvalues, np.float64)  # ("LA": descending)
        eps = (1e-10 if op.dtype == np.float64 else 1e-4) if tol is None else float(tol)
        scale = float(np.max(np.abs(theta)))
        # (as Python floats: the message's repr of NumPy 2's scalars read "np.float64(3.0)")
        a, b = float(theta[k - 1]), float(theta[k])
        if a - b <= eps * scale:
            raise ValueError(
                f"k: eigenvalues {k} and {k + 1} are equal to the tolerance ({a!r}, {b!r}): the "
                f"top-{k} eigenspace is not unique, and the fraction would depend on the basis Lanczos picks "
                "inside the repeated eigenspace; take k at a gap of the spectrum"
            )
    vecs: Any = r.eigenvectors  # (an array: return_eigenvectors=True)
    return vecs[:, :k]


@in_lockstep("op", own=("grad", "eigenvectors"))
def gradient_concentration(
    op,
    grad,
    k: int,
    tol: float | None = None,
    max_steps: int | None = None,
    seed: int = 0,
    eigenvectors=None,
    progress=None,
) -> float:
    """Fraction ``||P_k g||^2 / ||g||^2`` of the gradient inside the top-``k`` eigenspace.

    ``P_k`` projects onto the span of the ``k`` Ritz vectors of the largest
    eigenvalues (``top_eigenvalues(op, k, "LA")``), Gur-Ari et al. / Ghorbani et
    al.'s observation that the gradient lives mostly in the outlier subspace.

    Args:
      eigenvectors: optional ``(n, >= k)`` Ritz vectors of the largest
        eigenvalues, largest first, from an earlier
        ``top_eigenvalues(op, K, "LA", return_eigenvectors=True)`` with
        ``K >= k``; the first ``k`` columns are used and no Lanczos is run
        (``tol``, ``max_steps`` and ``seed`` are then ignored). The ``k`` columns must be linearly
        independent (ValueError otherwise: they would span no ``k``-dimensional subspace).
      progress: passed to ``top_eigenvalues``.

    Without ``eigenvectors`` the (k+1)-th largest eigenvalue is found too: where it equals the
    k-th (to ``tol`` relative to the largest in magnitude), the top-k eigenspace is not unique --
    any k directions of the repeated eigenspace are Ritz vectors, each giving another fraction --
    and ValueError names ``k``; where the k + 1 Ritz pairs do not converge to ``tol`` within
    ``max_steps`` products (at most ``2**63 - 1``), ValueError names ``max_steps`` (the fraction would be
    of another subspace).
    Given ``eigenvectors`` are taken as the subspace, unchecked. Over a distributed operator
    (``from_mlp(..., comm=)``) every rank passes the same ``grad`` (and ``eigenvectors``): the
    gradient of all the rows, not a rank's own (ValueError naming it on every rank otherwise).
    """
    op = require_symmetric(op, "op", "Lanczos")
    op = as_operator(op, "op")  # (errors name the argument: op, not as_operator's A)
    xp = op.xp
    k = _backend.integer("k", k, lo=1)
    g = op._vector(grad, "grad", scale_free=True)  # (the fraction is scale-free)
    if not bool(xp.isfinite(g).all()):  # (the fraction would be NaN)
        raise ValueError("grad: has NaN or Inf entries")
    big = float(xp.abs(g).max()) if g.size else 0.0
    if big == 0.0:
        raise ValueError("grad: is zero, the fraction is undefined")
    g = g / big  # the fraction is scale-free: ||g||^2 of a finite 1e200 gradient would overflow
    gg = _fixed_sums.dot(g, g)  # (sums of a fixed order: see optkern._fixed_sums)
    same_on_every_rank(op, g, "grad", "gradient")  # (a distributed op's ranks: one fraction, of one gradient)
    if eigenvectors is None:
        eigenvectors = _top_space(op, k, tol, max_steps, seed, progress)
    else:
        # (a torch tensor / DLPack matrix viewed, as grad is: it was refused, "expected a numpy array")
        eigenvectors = _backend.as_array(eigenvectors, "eigenvectors")
        if not (isinstance(eigenvectors, np.ndarray) or _backend.is_cupy(eigenvectors)) or (
            _backend.is_cupy(eigenvectors) != (xp is not np)
        ):
            kind = "numpy" if xp is np else "cupy"
            raise TypeError(f"eigenvectors: expected a {kind} array, got {_backend.type_name(eigenvectors)}")
        if eigenvectors.dtype.kind not in "iuf":  # (complex parts would be dropped with a warning)
            raise TypeError(f"eigenvectors: expected real numbers, got an array of dtype {eigenvectors.dtype}")
    if eigenvectors.ndim != 2 or eigenvectors.shape[0] != op.shape[0] or eigenvectors.shape[1] < k:
        raise ValueError(f"eigenvectors: expected shape ({op.shape[0]}, >= {k}), got {tuple(eigenvectors.shape)}")
    if not bool(xp.isfinite(eigenvectors[:, :k]).all()):  # (a NaN fraction otherwise)
        raise ValueError("eigenvectors: has NaN or Inf entries")
    V = eigenvectors[:, :k]
    if V.dtype.kind == "f":
        # Each column by its own power of two (exact; a zero column stays zero): a column's scale is not
        # the subspace, and in_dtype's one scale for all of them flushed a float64 column of 1 beside one
        # of 2**1000 to 0 in a float32 operator's cast ("column 1 is zero"), or to float32's subnormals.
        V = xp.ldexp(V, -xp.frexp(xp.abs(V).max(axis=0))[1])
    V = in_dtype(xp, V, op.dtype, "eigenvectors", scale_free=True)  # (a basis: any scale)
    same_on_every_rank(op, V, "eigenvectors", "subspace")
    # Re-orthonormalize the Ritz vectors, as rows, by the native CGS2 pass: not np.linalg.qr, whose
    # Householder updates reduce over n through BLAS in pieces cut by thread (the fraction's last bits
    # followed OPENBLAS_NUM_THREADS: see _orthonormal). (A copy: V may be the caller's array, and the
    # transpose of an (n, 1) or Fortran-ordered one is C-contiguous already.)
    U = xp.array(V.T, order="C")
    sines: list[float] = []
    _orthonormal.orthonormalize_rows(_orthonormal.kernel(xp, U.dtype), U, _orthonormal.coefficients(xp, k), sines)
    _check_rank(xp, V, sines, k)
    c = [_fixed_sums.dot(U[i], g) for i in range(k)]  # (U @ g: BLAS's, thread-count dependent)
    # Bessel's inequality bounds the sum by ||g||^2; the rows' orthonormality (to ~eps) and the
    # rounded sums exceeded it by an ulp or two (k = n gave 1.0000000000000002): a fraction is <= 1.
    return min(1.0, math.fsum(x * x for x in c) / gg)
