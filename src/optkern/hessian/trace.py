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

from dataclasses import dataclass, field

import numpy as np

from .. import _backend
from ._probes import rademacher
from ._products import check_estimate
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


def _probe_block(op, seed, first, count):
    xp = op.xp
    n = op.shape[0]
    Z = xp.empty((n, count), dtype=op.dtype)
    for i in range(count):
        Z[:, i] = rademacher(n, seed=seed, index=first + i, dtype=op.dtype, xp=xp)
    return Z


def _hutchinson_samples(op, Z):
    AZ = op.matmat(Z)
    return np.asarray(_to_host((Z * AZ).sum(axis=0)), dtype=np.float64)


def _to_host(a):
    return a.get() if _backend.is_cupy(a) else a


def _stderr(samples):
    m = len(samples)
    return float(np.std(samples, ddof=1) / np.sqrt(m)) if m > 1 else float("inf")


_MAX_COUNT = 2**31 - 1


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
    """
    op = as_operator(op)
    if not isinstance(method, str) or method not in ("hutchinson", "hutch++"):
        raise ValueError(f"method: expected 'hutchinson' or 'hutch++', got {method!r}")
    m = _backend.integer("num_matvecs", num_matvecs, lo=1)
    if m > _MAX_COUNT:  # NumPy would refuse the probe block with a message naming nothing
        raise ValueError(f"num_matvecs: must be at most 2**31 - 1, got {m}")
    if method == "hutch++" and m < 3:
        raise ValueError(f"num_matvecs: hutch++ needs at least 3, got {m}")
    n = op.shape[0]
    exact = method == "hutch++" and m // 3 >= n
    op = with_progress(op, progress, n if exact else m)
    xp = op.xp
    if method == "hutchinson":
        samples = _hutchinson_samples(op, _probe_block(op, seed, 0, m))
        return TraceResult(check_estimate(float(samples.mean())), _stderr(samples), m, method, samples)
    if exact:
        # s >= n sketch columns would span the space: the QR has n columns, A Q costs n products (not
        # s: the count reported m products where fewer were made) and the projected probes are zero.
        # A I gives the same exact trace from n products.
        t = float(xp.trace(op.matmat(xp.eye(n, dtype=op.dtype))))
        return TraceResult(check_estimate(t), 0.0, n, method, np.zeros(0))
    s = m // 3
    S = _probe_block(op, seed, 0, s)
    Q, _ = xp.linalg.qr(op.matmat(S))
    AQ = op.matmat(xp.ascontiguousarray(Q))
    t_top = float(xp.trace(Q.T @ AQ))
    g = m - 2 * s
    G = _probe_block(op, seed, s, g)
    G = G - Q @ (Q.T @ G)
    samples = _hutchinson_samples(op, G)
    return TraceResult(check_estimate(t_top + float(samples.mean())), _stderr(samples), m, method, samples)
