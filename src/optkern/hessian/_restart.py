"""Which Ritz vectors block Lanczos keeps: the wanted ones (:func:`select`), and how many and which of
them a thick restart keeps (:func:`restart_count`, :func:`restart_keep`) -- ``top_eigenvalues``'s
choices over the Ritz values of ``krylov.BlockKrylov``, which only forms the vectors kept."""

from __future__ import annotations

import numpy as np


def select(theta, k, which):
    """Indices of the ``k`` wanted Ritz values (``LA``: largest, ``SA``: smallest, ``LM``: largest |.|)."""
    if which == "LA":
        idx = np.argsort(-theta, kind="stable")
    elif which == "SA":
        idx = np.argsort(theta, kind="stable")
    else:
        idx = np.argsort(-np.abs(theta), kind="stable")
    return idx[:k]


def restart_count(k, m, cap, b):
    """How many Ritz vectors a thick restart of a full basis (``m`` multiplied, ``cap`` at most, blocks of
    ``b``) keeps: the most wanted half (at least ``k``), then raised so that the whole blocks the next
    cycle multiplies fill ``cap`` exactly. The extra vectors are the next-wanted Ritz vectors, for no
    further product: the space a cycle builds is ``span(kept) + K_s(A, pending block)``, so keeping
    more only enlarges it (the Ritz values of the wanted end can only improve), and the nearest
    unwanted Ritz pair kept widens the gap the least wanted one converges by (ARPACK keeps such extra
    ones too, its ``nev`` adjustment). Without it a basis near its minimum (``k = 17``, ``b = 4``,
    ``cap = 22``) kept exactly ``k``, one slot stayed unused each cycle, the 17th eigenvalue's residual
    fell by the ratio of its gap to the 18th's and ``converged=False`` after 3000 products (eigsh with
    the same memory: ~80)."""
    half = max(k, min(m - b, (cap - b + k) // 2))
    blocks = max(1, (cap - half) // b)  # (whole blocks the next cycle multiplies)
    return cap - blocks * b


def restart_keep(theta, k, count, room, which):
    """Indices of the Ritz vectors a thick restart keeps: the ``count`` most wanted (at least ``k``),
    at most ``room``. ``LM`` wants the two ends of the spectrum at once, and Ritz values lie inside
    the eigenvalues (interlacing): at the end whose wanted eigenvalue was still underestimated (6.1 of
    6.5 beside -6.2 of -6.2) its Ritz value fell outside the k largest |theta|, was dropped, became a
    root of the restart's filter, which damped that eigenvector away, and the other end "converged"
    (k = 1: -6.2 on 15 of 40 seeds). So the first unwanted Ritz value on each side of the wanted ones
    (the frontier, as LA's and SA's k+1-th on their one side: below every wanted eigenvalue there) is
    kept too, in place of the least wanted beyond the first ``k`` where ``room`` is short
    (``top_eigenvalues`` leaves room for both)."""
    keep = [int(i) for i in select(theta, max(k, count), which)]
    if which == "LM":
        wanted = set(keep[:k])
        asc = [int(i) for i in np.argsort(theta, kind="stable")]
        lo = next((j for j, i in enumerate(asc) if i not in wanted), None)
        if lo is not None:
            hi = next(j for j in range(len(asc) - 1, -1, -1) if asc[j] not in wanted)
            extra = [asc[lo]] + ([asc[hi]] if hi != lo else [])
            extra = [i for i in extra if i not in keep]
            keep = keep[: max(k, min(len(keep), room - len(extra)))] + extra
    return np.sort(np.asarray(keep[:room], dtype=np.int64))
