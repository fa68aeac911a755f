"""Random probe vectors for the stochastic estimators.

Rademacher (+-1) probes come from ``optkern.random.rademacher`` (the
counter-based Philox RNG: the same numbers on CPU and GPU for a seed and
offset). Probe ``i`` of a run uses the counter range starting at ``i * n``,
so any probe can be regenerated alone.

Start vectors of the eigensolvers (``top_eigenvalues``, ``power_iteration``) are uniform in
``[-1, 1)`` instead (``optkern.random.uniform``, the same stream): a +-1 vector is exactly orthogonal,
with probability 1/2, to an eigenvector such as ``(e1 - e2) / sqrt(2)``, whose eigenvalue the Krylov
space then never holds; a continuous one is orthogonal to none (ARPACK's and PyHessian's choice).
"""

from __future__ import annotations

from ..random import _u64
from ..random import rademacher as _philox_rademacher
from ..random import uniform as _philox_uniform


def checked_seed(seed) -> int:
    """``seed``, an estimator's argument, as the Philox key of its random vectors: an integer in
    ``[0, 2**64)`` (TypeError / ValueError naming ``seed``, as ``optkern.random`` words them). Checked
    with the estimator's other arguments, before any product: where it was first read by the draw of a
    vector, ``top_eigenvalues`` with ``v0`` raised only at a breakdown's replacement vector, after its
    products, and ``v0`` runs without one (``lanczos``, ``power_iteration``) or an exact Hutch++ trace
    (no probes) took ``-1`` or ``"x"`` silently."""
    return _u64("seed", seed)


def rademacher(n: int, *, seed: int, index: int, dtype, xp):
    """Probe number ``index``: a ``(n,)`` array of +-1 of ``dtype`` on ``xp`` (numpy or cupy)."""
    like = xp.empty(0, dtype=dtype)
    return _philox_rademacher((n,), seed=seed, offset=index * n, dtype=dtype, like=like)


def start_vector(n: int, *, seed: int, index: int, dtype, xp):
    """Start vector number ``index``: a ``(n,)`` array uniform in ``[-1, 1)`` of ``dtype`` on ``xp``."""
    like = xp.empty(0, dtype=dtype)
    u = _philox_uniform((n,), seed=seed, offset=index * n, dtype=dtype, like=like)
    u *= 2
    u -= 1
    return u
