"""Random probe vectors for the stochastic estimators.

Rademacher (+-1) probes come from ``optkern.random.rademacher`` (the
counter-based Philox RNG: the same numbers on CPU and GPU for a seed and
offset). Probe ``i`` of a run uses the counter range starting at ``i * n``,
so any probe can be regenerated alone.
"""

from __future__ import annotations

from ..random import rademacher as _philox_rademacher


def rademacher(n: int, *, seed: int, index: int, dtype, xp):
    """Probe number ``index``: a ``(n,)`` array of +-1 of ``dtype`` on ``xp`` (numpy or cupy)."""
    like = xp.empty(0, dtype=dtype)
    return _philox_rademacher((n,), seed=seed, offset=index * n, dtype=dtype, like=like)
