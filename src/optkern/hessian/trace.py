"""Stochastic trace estimation: Hutchinson and Hutch++.

Hutchinson (1989): ``tr(A) = E[z^T A z]`` for Rademacher ``z``; the mean of
``m`` samples has standard error ``std(z^T A z) / sqrt(m)``.
Hutch++ (Meyer, Musco, Musco & Woodruff 2021): with ``m`` products, take
``s = m // 3`` probes ``S``, an orthonormal basis ``Q`` of ``A S``, compute
``tr(Q^T A Q)`` exactly and estimate the rest ``tr((I - QQ^T) A (I - QQ^T))``
by Hutchinson with ``m - 2 s`` projected probes. For a matrix whose spectrum
decays, the top-``s`` part carries most of the trace and the variance drops
from O(1/m) to O(1/m^2). With ``m >= 3 n`` the sketch would span the whole space
(``Q`` has only ``n`` columns, ``A Q`` costs ``n`` products, the projected
probes are zero): the trace is then computed exactly from the ``n`` products
``A e_i``, and ``num_matvecs`` is ``n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import _backend
from . import _orthonormal
from ._lockstep import in_lockstep
from ._probes import checked_seed, rademacher
from ._products import check_estimate
from ._vectors import in_range as _in_range
from .operators import as_operator, with_progress


@dataclass
class TraceResult:
    """A trace estimate.

    Attributes:
      estimate: the estimated trace.
      stderr: standard error of the stochastic part (0 when it is exact).
      num_matvecs: operator products used.
      method: ``"hutchinson"`` or ``"hutch++"``.
      samples: the Hutchinson samples ``z^T A z`` (float64 NumPy).
    """

    estimate: float
    stderr: float
    num_matvecs: int
    method: str
    samples: np.ndarray = field(repr=False)


#: At most this many probe elements (n x probes) are generated and multiplied at once: 32 MiB of
#: float64 per block, about three blocks live (the probes, their products, the element-wise
#: product). The whole n x m block of before asked for 240 GB with 1,000 probes on a model of 10M
#: parameters. Up to the bound (the study's trace, 100 probes on 30K parameters) one block holds
#: every probe: the computation of before, bit for bit.
PROBE_BLOCK_ELEMENTS = 1 << 22


def _blocks(n: int, first: int, count: int):
    """``(start, size)`` of the blocks probes ``first .. first + count - 1`` stream in: as many
    probes as ``PROBE_BLOCK_ELEMENTS`` holds, at least one."""
    width = max(1, PROBE_BLOCK_ELEMENTS // max(n, 1))
    for start in range(first, first + count, width):
        yield start, min(width, first + count - start)


def _probe_block(op, seed, first, count):
    xp = op.xp
    n = op.shape[0]
    Z = xp.empty((n, count), dtype=op.dtype)
    for i in range(count):
        Z[:, i] = rademacher(n, seed=seed, index=first + i, dtype=op.dtype, xp=xp)
    return Z


def _hutchinson_samples(op, seed, first, count, project=None):
    """``z^T A z`` of probes ``first .. first + count - 1`` (after ``project``: Hutch++'s
    deflation), streamed in bounded blocks (``_blocks``). A block narrower than all the probes
    changes the rounding only: BLAS's gemm and NumPy's column sums order their sums by width."""
    parts = []
    for start, size in _blocks(op.shape[0], first, count):
        Z = _probe_block(op, seed, start, size)
        if project is not None:
            Z = project(Z)
        AZ = op.matmat(Z)
        # (summed in float64: a float32 running sum down 2**20 rows was off by 1e-5 relative)
        parts.append(np.asarray(_to_host(_column_dots(op.xp, Z, AZ)), dtype=np.float64))
        del Z, AZ  # (before the next block is made: two blocks would be live at once)
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def _diagonal_sum(xp, M) -> float:
    """``trace(M)``, summed as ``xp.trace`` sums it (in M's dtype), in range (``_in_range``)."""
    return _in_range(xp, xp.diagonal(M), lambda d: float(d.sum()))


def _column_dots(xp, Z, AZ):
    """``z^T (A z)`` per column, summed in float64, in range (``_in_range`` on ``A Z``: Hutch++'s
    projected probes times 1e308 products, or c, c, -c, -c down a column)."""
    return _in_range(xp, AZ, lambda a: (Z * a).sum(axis=0, dtype=np.float64))


def _mean(samples) -> float:
    """The samples' mean, ``sum / m`` as NumPy's mean takes it, in range (``_in_range``: 20 samples
    of 1e307 have a mean)."""
    return _in_range(np, samples, lambda s: float(s.sum()) / len(samples))


def _sketch_basis(op, Y):
    """An orthonormal basis of the sketch ``Y = A S``, as rows (``s x n``, C-contiguous), and the
    kernel that made it. Not ``np.linalg.qr``: LAPACK's Householder steps reduce over ``n`` through
    BLAS, whose sums follow the thread count (see ``_orthonormal``). Columns of ``Y`` in the span of
    those before them (a rank-deficient sketch: an operator of rank below ``s``) give zero rows. Entries
    near float64's max are fine: each row is normalized with a scaled norm first."""
    xp = op.xp
    Q = xp.ascontiguousarray(Y.T)
    mod = _orthonormal.kernel(xp, op.dtype)
    _orthonormal.orthonormalize_rows(mod, Q, _orthonormal.coefficients(xp, Q.shape[0]))
    return Q, mod


def _projector(mod, Q):
    """``G -> (I - Q^T Q) G`` for the orthonormal rows of ``Q``, each column by the native pass, ``Q`` read
    once for all of them (not ``G - Q^T (Q G)`` by GEMMs: their sums over ``n`` follow BLAS's thread
    count)."""

    def project(G):
        xp = _backend.array_module(G)
        Gt = xp.ascontiguousarray(G.T)  # (the probes as rows: contiguous, as the kernel takes them)
        coeffs = xp.zeros((Gt.shape[0], max(Q.shape[0], 1)), dtype="float64")
        _orthonormal.project_out_rows(mod, Q, Gt, coeffs)  # (Q read once for all the probes)
        return xp.ascontiguousarray(Gt.T)

    return project


def _to_host(a):
    return a.get() if _backend.is_cupy(a) else a


def _stderr(samples):
    m = len(samples)
    if m < 2:
        return float("inf")
    # (scaled by a power of two of the largest sample, exact: NumPy's std squares the deviations, and the
    # stderr of c A's samples was inf for c = 1e200, 0 for c = 1e-200)
    big = float(np.abs(samples).max())
    e = math.frexp(big)[1] if math.isfinite(big) else 0
    return math.ldexp(float(np.std(np.ldexp(samples, -e), ddof=1) / np.sqrt(m)), e)


_MAX_COUNT = 2**31 - 1


@in_lockstep("op")
def trace(op, method: str = "hutchinson", num_matvecs: int = 100, seed: int = 0, progress=None) -> TraceResult:
    """Estimate ``tr(op)`` from ``num_matvecs`` operator products.

    Args:
      op: a ``CurvatureOperator`` (or a square array / LinearOperator).
      method: ``"hutchinson"`` or ``"hutch++"`` (needs ``num_matvecs >= 3``).
      num_matvecs: total number of products with ``op``; ``"hutch++"`` with
        ``num_matvecs >= 3 n`` makes ``n`` (the exact trace, ``stderr`` 0, no samples).
      seed: seed of the Rademacher probes (probe ``i`` is reproducible alone,
        the same on CPU and GPU).
      progress: optional ``progress(done, total)`` after each product (``total``: the
        products made, ``TraceResult.num_matvecs``).

    NaN or Inf products raise ValueError (naming ``fn`` for ``from_hvp``, else ``op``), as in
    every estimator.

    Memory: the probes are made and multiplied in blocks of at most ``PROBE_BLOCK_ELEMENTS``
    (n x probes) elements, whatever ``num_matvecs``; Hutch++'s sketch (``num_matvecs // 3``
    vectors and its orthonormal basis) is held whole, as the method needs.
    """
    op = as_operator(op, "op")  # (errors name the argument: op, not as_operator's A)
    if not isinstance(method, str) or method not in ("hutchinson", "hutch++"):
        raise ValueError(f"method: expected 'hutchinson' or 'hutch++', got {method!r}")
    m = _backend.integer("num_matvecs", num_matvecs, lo=1)
    if m > _MAX_COUNT:  # NumPy would refuse the probe block with a message naming nothing
        raise ValueError(f"num_matvecs: must be at most 2**31 - 1, got {m}")
    if method == "hutch++" and m < 3:
        raise ValueError(f"num_matvecs: hutch++ needs at least 3, got {m}")
    seed = checked_seed(seed)  # (an exact Hutch++ draws no probe: a bad seed was taken silently)
    n = op.shape[0]
    exact = method == "hutch++" and m // 3 >= n
    op = with_progress(op, progress, n if exact else m)
    xp = op.xp
    if method == "hutchinson":
        samples = _hutchinson_samples(op, seed, 0, m)
        return TraceResult(check_estimate(_mean(samples)), _stderr(samples), m, method, samples)
    if exact:
        # s >= n sketch columns would span the space: the basis has n vectors, A Q costs n products (not
        # s: the count reported m products where fewer were made) and the projected probes are zero.
        # A I gives the same exact trace from n products.
        t = _diagonal_sum(xp, op.matmat(xp.eye(n, dtype=op.dtype)))
        return TraceResult(check_estimate(t), 0.0, n, method, np.zeros(0))
    s = m // 3
    S = _probe_block(op, seed, 0, s)
    Q, mod = _sketch_basis(op, op.matmat(S))
    del S  # (the sketch's probes: not needed past the basis)
    Qc = xp.ascontiguousarray(Q.T)
    # tr(Q^T A Q) as the sum of q_i . A q_i, NumPy's / CuPy's column sums (not the GEMM Q^T (A Q): BLAS)
    dots = np.asarray(_to_host(_column_dots(xp, Qc, op.matmat(Qc))), dtype=np.float64)
    t_top = _in_range(np, dots, lambda d: float(d.sum()))
    del Qc
    samples = _hutchinson_samples(op, seed, s, m - 2 * s, project=_projector(mod, Q))
    return TraceResult(check_estimate(t_top + _mean(samples)), _stderr(samples), m, method, samples)
