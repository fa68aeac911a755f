"""Random probe vectors for the stochastic estimators.

Rademacher (+-1) probes come from ``optkern.random.rademacher`` (the
counter-based Philox RNG: the same numbers on CPU and GPU for a seed and
offset). Probe ``i`` of a run uses the counter range starting at ``i * n``,
so any probe can be regenerated alone.
"""
from __future__ import annotations

import numpy as np


def rademacher(n: int, *, seed: int, index: int, dtype, xp):
    """Probe number ``index`` (a ``(n,)`` array of +-1 of ``dtype`` on ``xp``)."""
    try:
        from ..random import rademacher as philox_rademacher
    except ImportError:  # the RNG module has not landed: host generator, same on both backends
        philox_rademacher = None
    if philox_rademacher is not None:
        like = xp.empty(0, dtype=dtype)
        return philox_rademacher((n,), seed=seed, offset=index * n, dtype=dtype, like=like)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])
    host = (rng.integers(0, 2, n, dtype=np.int8) * 2 - 1).astype(dtype)
    return xp.asarray(host)
