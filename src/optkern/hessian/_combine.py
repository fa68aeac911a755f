"""Linear combinations of basis rows whose bits do not depend on the thread count.

Thick restart's kept Ritz vectors ``Sk^T Q[:m]`` and the Ritz vectors ``Q^T S`` that ``lanczos`` and
``top_eigenvalues`` return were BLAS GEMMs summing over the basis size ``m``: OpenBLAS splits that
sum by thread, and at n = 70001 the restarted eigenvalues and eigenvectors under
OPENBLAS_NUM_THREADS=1 differed from those under 2. Here each output row is
``sum_j S[j, i] Q[j]`` added in the order j = 0, 1, ..., m - 1, each product and each add rounded (no
fused multiply-add): on the CPU by the native ``combine_rows_`` (OpenMP over column panels: the same
bits for any thread count), on the GPU by CuPy's elementwise multiplies and adds a column chunk at a
time -- the same operations, so the same bits. (The native kernel replaced NumPy's elementwise
chunks: one thread, 2 m calls a chunk; thick restart at n = 1e6, m = 60 spent ~0.7 s there.)"""

from __future__ import annotations

import numpy as np

from .. import _backend

#: Columns per chunk of the GPU's elementwise path: wide chunks keep the launches few.
_GPU_WIDTH = 1 << 16


def _chunks(Q, S):
    """``(c0, c1, Y_chunk)`` per column chunk, ``Y_chunk = S^T Q[:, c0:c1]`` (a scratch buffer, valid
    until the next chunk is yielded); ``Q`` is ``(m, n)`` rows, ``S`` is ``(m, k)`` of ``Q``'s module."""
    xp = _backend.array_module(Q)
    m, n = Q.shape
    k = S.shape[1]
    dt = xp.result_type(Q.dtype, S.dtype)
    width = max(1, min(_GPU_WIDTH, n))
    acc = xp.empty((k, width), dtype=dt)
    tmp = xp.empty((k, width), dtype=dt)
    cols = S.astype(dt, copy=False)[:, :, None]  # (m, k, 1): row j broadcasts S[j, :] down the columns
    for c0 in range(0, n, width):
        c1 = min(c0 + width, n)
        a, t = acc[:, : c1 - c0], tmp[:, : c1 - c0]
        if m == 0:
            a[...] = 0
        else:
            xp.multiply(cols[0], Q[0, c0:c1], out=a)
            for j in range(1, m):
                xp.multiply(cols[j], Q[j, c0:c1], out=t)
                a += t
        yield c0, c1, a


def _native(Q, S):
    """``(C, V, dt)`` for the CPU kernel: ``C = S^T`` and ``V = Q`` C-contiguous in their result dtype."""
    dt = np.result_type(Q.dtype, S.dtype)
    return np.ascontiguousarray(S.T, dtype=dt), np.ascontiguousarray(Q, dtype=dt), dt


def combine_rows_(Q, S):
    """Overwrite ``Q[:k]`` with ``S^T Q[:m]`` (``Q`` at least ``max(m, k)`` rows; ``S`` is ``(m, k)``)."""
    m, k = S.shape
    if not _backend.is_cupy(Q):
        C, V, dt = _native(Q[:m], S)
        if dt == Q.dtype and Q.flags.c_contiguous:  # (then V is Q[:m] itself)
            _backend.cpu.combine_rows_(C, Q[:m], Q[:k])  # in place: the kernel reads a panel before writing it
        else:
            Q[:k] = combine(C, V)
        return Q
    for c0, c1, a in _chunks(Q[:m], S):
        Q[: a.shape[0], c0:c1] = a
    return Q


def combine(C, V, transpose=False):
    """``C V`` (``(k, n)``; its transpose ``(n, k)`` with ``transpose``) for C-contiguous NumPy arrays of
    one dtype, in the fixed order of ``combine_rows_``."""
    out = np.empty((V.shape[1], C.shape[0]) if transpose else (C.shape[0], V.shape[1]), dtype=V.dtype)
    _backend.cpu.combine_rows_(C, V, out, transpose)
    return out


def ritz_vectors(Q, S):
    """``Q^T S`` as a C-contiguous ``(n, k)`` array: the Ritz vectors of the basis rows ``Q`` (m, n)."""
    if not _backend.is_cupy(Q):
        C, V, _ = _native(Q, S)
        return combine(C, V, transpose=True)
    xp = _backend.array_module(Q)
    out = xp.empty((Q.shape[1], S.shape[1]), dtype=xp.result_type(Q.dtype, S.dtype))
    for c0, c1, a in _chunks(Q, S):
        out[c0:c1] = a.T
    return out
