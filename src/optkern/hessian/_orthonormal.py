"""Orthonormalization and projections whose bits do not depend on the thread count.

``np.linalg.qr`` (LAPACK over BLAS) and GEMMs such as ``Q.T @ G`` reduce over the ``n`` rows in
pieces that OpenBLAS cuts by thread: Hutch++'s estimate at n = 70001 was 17.118156745885052 with one
OpenBLAS thread and 17.118156745885038 with two, and block Lanczos's Ritz values moved too (ranks of
a distributed operator with other BLAS thread counts then diverged). These go through the native
``lanczos_orthogonalize_`` pass instead (classical Gram-Schmidt twice over fixed column blocks whose
partial sums are added in block order: the same bits for any thread count, on the CPU and the GPU).
The basis is held as rows (C-contiguous), as the kernel takes it. Rows projected independently (block
Lanczos's products, Hutch++'s probes) go through ``lanczos_orthogonalize_rows_`` on the CPU: one
read of the basis for the whole block, each row the bits ``lanczos_orthogonalize_`` gives it alone,
which is what the GPU module, row by row, computes. Rows made orthonormal in order (Hutch++'s sketch,
``gradient_concentration``'s Ritz vectors), each against the rows before it, which that kernel cannot
take (it never projects a row on another row of its block), go through ``orthonormalize_rows_``: the
per-call loop below, natively, the first pass's products with the rows already final taken for eight
rows in one read of them (the same bits)."""

from __future__ import annotations

import math

import numpy as np

from .. import _backend

#: At most this many passes of the kernel (each CGS2) per row: a row still cancelling by half after
#: them lies in the span of the rows before it to rounding (Kahan's "twice is enough", repeated).
_MAX_PASSES = 3


def kernel(xp, dtype):
    """The native module of ``xp`` arrays of ``dtype`` (the CPU's or the GPU's)."""
    return _backend.backend(("Q", xp.empty(0, dtype=dtype)))


def coefficients(xp, k: int):
    """Scratch for the kernel's projection coefficients (float64, at least ``k``)."""
    return xp.zeros(max(k, 1), dtype="float64")


def orthonormalize_rows(mod, Q, coeffs, sines=None) -> int:
    """The rows of the C-contiguous ``Q`` made orthonormal in place, in order (each against the rows
    before it, as QR orders the columns of ``Q^T``: the first ``j`` rows span what the first ``j``
    did, or more, below). A zero row stays zero: it adds nothing to ``Q^T Q`` or to a projection. A row in the span of
    the rows before to rounding (a rank-deficient sketch) is not zeroed: its first pass cancels it to
    rounding noise (its sine ~1e-16), the next pass normalizes that noise, and the result is kept, a
    unit row orthogonal to the rows before -- an arbitrary direction, harmless where any orthonormal
    basis will do (Hutch++'s sketch); callers that must know read ``sines``. Rows of any magnitude
    (the kernel's norm is scaled near the ends of the range); NaN / Inf rows stay not finite (the
    caller's check on the products names the operator). Returns the number of nonzero rows.
    ``sines`` (a list) receives per row the fraction of it left by its first
    CGS2 pass against the rows before, the sine of its angle with their span (QR's ``|R_ii| / ||q_i||``;
    0 for a zero row, NaN for a row not finite): for callers with their own threshold of dependence.
    The CPU module runs this loop natively (``orthonormalize_rows_``, the same bits); the GPU's goes
    call by call."""
    if mod is _backend.cpu:
        s = np.empty(Q.shape[0])
        kept = int(mod.orthonormalize_rows_(Q, s, _MAX_PASSES))
        if sines is not None:
            sines.extend(s.tolist())
        return kept
    kept = 0
    for i in range(Q.shape[0]):
        w = Q[i]
        first = float(mod.lanczos_orthogonalize_(Q[:0], 0, w, coeffs))  # (k = 0: w / ||w||, scaled where need be)
        if first == 0.0:
            if sines is not None:
                sines.append(0.0)
            continue  # (a zero row, left zero)
        independent = not math.isfinite(first)
        if sines is not None and independent:
            sines.append(math.nan)
        for p in range(0 if independent else _MAX_PASSES):
            left = float(mod.lanczos_orthogonalize_(Q[:i], i, w, coeffs))  # (w a unit vector: the fraction left)
            if p == 0 and sines is not None:
                sines.append(left)
            if left == 0.0:
                break
            if not left < 0.5:  # no cancellation (or NaN): orthogonal to the rows before to rounding
                independent = True
                break
        if independent:
            kept += 1
        else:
            w[...] = 0.0
    return kept


def _rows(mod, Q, W, coeffs, passes) -> list[float]:
    """``lanczos_orthogonalize_`` of each row of ``W`` against the rows of ``Q`` (``coeffs``: ``(b, >= k)``
    float64, row ``v`` receiving row ``v``'s coefficients); their norms before normalization. The CPU
    kernel takes the block at once, the GPU's row by row (the same bits)."""
    k = Q.shape[0]
    if mod is _backend.cpu:
        betas = np.empty(W.shape[0])
        mod.lanczos_orthogonalize_rows_(Q, k, W, coeffs, betas, passes)
        return betas.tolist()
    return [float(mod.lanczos_orthogonalize_(Q, k, W[v], coeffs[v], passes)) for v in range(W.shape[0])]


def _unnormalize(W, betas) -> None:
    for v, beta in enumerate(betas):  # (a Python float per row: the row's dtype, as w *= beta)
        if beta != 0.0 and math.isfinite(beta):
            W[v] *= beta


def project_out_rows(mod, Q, W, coeffs) -> None:
    """``w <- w - Q^T (Q w)`` in place for each row ``w`` of the C-contiguous ``W``, one Gram-Schmidt pass
    against the orthonormal rows of ``Q``, read once for all of them (``coeffs``: ``(rows of W, >= rows
    of Q)`` float64 scratch). The kernel normalizes each row: scaled back by the norm it returns, which
    costs a rounding per entry; a projection of zero is zero."""
    _unnormalize(W, _rows(mod, Q, W, coeffs, 1))


def orthogonalize_rows_against(mod, Q, W, coeffs) -> list[float]:
    """``w <- w - Q^T (Q w)``, twice (CGS2), in place for each row ``w`` of the C-contiguous ``W`` (not
    against each other) against the orthonormal rows of ``Q``, read once for all of them;
    ``coeffs[v, :k]`` (a ``(rows of W, >= k)`` float64 array) receives row ``v``'s total coefficients
    ``Q w``. Returns the rows' norms after (each row unnormalized, as a GEMM's block CGS2 leaves it, to a
    rounding per entry)."""
    betas = _rows(mod, Q, W, coeffs, 2)
    _unnormalize(W, betas)
    return betas
