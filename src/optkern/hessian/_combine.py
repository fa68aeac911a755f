"""Linear combinations of basis rows whose bits do not depend on the thread count.

Thick restart's kept Ritz vectors ``Sk^T Q[:m]`` and the Ritz vectors ``Q^T S`` that ``lanczos`` and
``top_eigenvalues`` return were BLAS GEMMs summing over the basis size ``m``: OpenBLAS splits that
sum by thread, and at n = 70001 the restarted eigenvalues and eigenvectors under
OPENBLAS_NUM_THREADS=1 differed from those under 2. Here each output row is
``sum_j S[j, i] Q[j]`` added in the order j = 0, 1, ..., m - 1 by elementwise multiplies and adds
(no BLAS, no threads: the same bits for any thread count; CuPy runs the same operations), a column chunk
at a time so the partial sums stay near the cache and a chunk's output may overwrite its input rows.
Slower than the GEMM (no fused multiply-add, one thread): a native kernel would close the gap."""

from __future__ import annotations

from .. import _backend

#: Columns per chunk: each chunk costs 2 m NumPy calls, whose overhead dominated narrow chunks
#: (n = 1e6, m = 60, k = 30 in float64: ~2 s at 256 columns, ~0.7-1 s at 8192-16384, slower again
#: at 65536 as the accumulators leave the cache). On a GPU wide chunks keep the launches few.
_CPU_WIDTH = 8192
_GPU_WIDTH = 1 << 16


def _chunks(Q, S):
    """``(c0, c1, Y_chunk)`` per column chunk, ``Y_chunk = S^T Q[:, c0:c1]`` (a scratch buffer, valid
    until the next chunk is yielded); ``Q`` is ``(m, n)`` rows, ``S`` is ``(m, k)`` of ``Q``'s module."""
    xp = _backend.array_module(Q)
    m, n = Q.shape
    k = S.shape[1]
    dt = xp.result_type(Q.dtype, S.dtype)
    width = _GPU_WIDTH if _backend.is_cupy(Q) else _CPU_WIDTH
    width = max(1, min(width, n))
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


def combine_rows_(Q, S):
    """Overwrite ``Q[:k]`` with ``S^T Q[:m]`` (``Q`` at least ``max(m, k)`` rows; ``S`` is ``(m, k)``)."""
    m = S.shape[0]
    for c0, c1, a in _chunks(Q[:m], S):
        Q[: a.shape[0], c0:c1] = a
    return Q


def ritz_vectors(Q, S):
    """``Q^T S`` as a C-contiguous ``(n, k)`` array: the Ritz vectors of the basis rows ``Q`` (m, n)."""
    xp = _backend.array_module(Q)
    out = xp.empty((Q.shape[1], S.shape[1]), dtype=xp.result_type(Q.dtype, S.dtype))
    for c0, c1, a in _chunks(Q, S):
        out[c0:c1] = a.T
    return out
