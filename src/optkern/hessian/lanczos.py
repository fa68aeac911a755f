"""Lanczos tridiagonalization and extreme eigenvalues (power iteration: ``power.py``, imported here).

``lanczos`` builds an orthonormal Krylov basis ``q_0, q_1, ...`` of a
symmetric operator ``A`` and the tridiagonal ``T = Q^T A Q`` (diagonal
``alpha``, off-diagonal ``beta``). With ``reorthogonalize="full"`` each new
vector ``A q_j`` is orthogonalized against ALL previous ones twice
(classical Gram-Schmidt twice, CGS2) and normalized in one fused native pass
per step (``lanczos_orthogonalize_`` in ``optkern._cpu`` / ``optkern._cuda``),
which keeps the basis orthonormal to rounding: Ritz values then converge
without the spurious copies plain Lanczos produces. ``"partial"`` (Simon's
omega-recurrence) gives the same Ritz values while reading the basis only on
the few steps that need it; ``"none"`` keeps no basis (``recurrence.py``).
``top_eigenvalues`` runs block Lanczos with thick restart (``krylov.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _backend
from . import _combine, _eigh
from ._lockstep import in_lockstep
from ._probes import checked_seed, start_vector
from ._restart import restart_count, restart_keep, select
from .krylov import BlockKrylov
from .operators import as_operator, with_progress
from .power import PowerResult as PowerResult  # (their home before: optkern.hessian.lanczos)
from .power import power_iteration as power_iteration
from .recurrence import LanczosRecurrence
from .symmetry import require_symmetric

#: Without ``max_steps`` and ``max_basis``, ``top_eigenvalues`` keeps the basis it always held (``max(30 k,
#: 200)`` vectors) and thick-restarts it when full, for at most this many times its products. It stopped
#: there with ``converged=False``: 30 eigenvalues within 1 % at the top of n = 2000, k = 5: an error of
#: 7.8e-8 after 200 products, where eigsh converged to 1e-10 in 345 (restarted: 230).
_DEFAULT_CYCLES = 10


def _tridiag_eigh(alpha, beta):
    T = np.diag(np.asarray(alpha, dtype=np.float64))
    if len(beta):
        b = np.asarray(beta, dtype=np.float64)
        T += np.diag(b, 1) + np.diag(b, -1)
    return _eigh.eigh(T)  # (on one BLAS thread: a check's eigh waited on the pool under oversubscription)


@in_lockstep("op")
def lanczos(
    op,
    steps: int,
    v0=None,
    reorthogonalize: str = "full",
    return_vectors: bool = False,
    seed: int = 0,
    return_ritz: bool = False,
    progress=None,
    basis_dtype=None,
    basis: str | None = None,
):
    """Run ``steps`` Lanczos iterations on the symmetric operator ``op``.

    Args:
      op: a ``CurvatureOperator`` (or anything ``as_operator`` accepts).
      steps: number of iterations ``m``, at most ``2**63 - 1`` (capped at ``n``; fewer are returned
        when an invariant subspace is found early: ``T`` then holds each
        distinct eigenvalue of that subspace once, and a repeated eigenvalue's
        further copies are not seen (``top_eigenvalues`` goes on past it)).
      v0: start vector (default: uniform in ``[-1, 1)`` from ``seed``, as ``top_eigenvalues``; SLQ's
        probes, ``spectral_density``'s, stay Rademacher).
      reorthogonalize: ``"full"`` (every step against the whole basis: CGS2,
        fused native pass), ``"partial"`` (Simon's omega-recurrence: against the
        basis only when orthogonality is about to be lost; the same Ritz values
        to working precision, most steps never read the basis) or ``"none"``
        (three-term recurrence, no basis kept: 3 vectors of memory; loses
        orthogonality, fine for SLQ quadrature). See ``optkern.hessian.recurrence``.
      return_vectors: also return the basis (stored even with ``"none"``, then not orthonormal).
      seed: seed of the default start vector.
      return_ritz: also return the Ritz pairs of ``T``: values ``theta``
        (ascending, float64 NumPy) and vectors ``U = Q^T S`` (``n x m``, columns,
        the op's array module), so ``A U[:, i] ~ theta[i] U[:, i]``.
      progress: optional ``progress(done, total)`` after each product (``total``: the
        steps, fewer are made when an invariant subspace is found).
      basis_dtype: storage of the kept basis: None (the operator's dtype) or
        float32 for a float64 operator (half the memory and bytes read; products,
        ``alpha``, ``beta`` and the working vectors stay float64; Ritz values then
        agree with a float64 basis to about float32's ``sqrt(eps)`` relative).
      basis: ``"host"`` keeps the basis in host memory while a CuPy operator's
        products run on the GPU; None / ``"device"``: with the vectors.

    Memory: ``3 n`` vectors for ``"none"`` (without ``return_vectors`` / ``return_ritz``);
    plus ``(m + 1) n`` basis entries of ``basis_dtype`` otherwise.

    Returns:
      ``(alpha, beta)`` as float64 NumPy arrays: the diagonal (``m``) and the
      off-diagonal (``m - 1``) of ``T = Q^T A Q``; with ``return_vectors``,
      ``(alpha, beta, Q)`` where ``Q`` (``m x n``, the basis' array module and dtype) holds
      the orthonormal Lanczos vectors as ROWS, so Ritz vectors are ``Q.T @ S``
      for eigenvectors ``S`` of ``T``; with ``return_ritz``, ``(theta, U)`` is
      appended to whichever of the two tuples is returned.
    """
    op = require_symmetric(op, "op", "Lanczos")
    op = as_operator(op, "op")  # (errors name the argument: op, not as_operator's A)
    steps = _backend.integer("steps", steps, lo=1, hi=_backend.INT64_MAX)  # (a loop count: int64, as every one)
    return_vectors = _backend.flag("return_vectors", return_vectors)
    return_ritz = _backend.flag("return_ritz", return_ritz)
    seed = checked_seed(seed)  # (with v0 none is drawn: a bad seed was taken silently)
    op = with_progress(op, progress, min(steps, op.shape[0]))
    if v0 is None:  # (uniform, not +-1: a +-1 start missed the top eigenvector (e1 - e2) / sqrt(2) half the time)
        v0 = start_vector(op.shape[0], seed=seed, index=0, dtype=op.dtype, xp=op.xp)
    lz = LanczosRecurrence(
        op, steps, v0, seed, reorthogonalize, basis_dtype, basis, keep_basis=return_vectors or return_ritz
    )
    while not lz.done:
        lz.advance(lz.product(op))
    alpha, beta, _ = lz.result()
    Q = lz.basis()
    out = (alpha, beta) + ((Q,) if return_vectors else ())
    if return_ritz:
        theta, S = _tridiag_eigh(alpha, beta)
        out += (theta, _combine.ritz_vectors(Q, _backend.array_module(Q).asarray(S, dtype=Q.dtype)))
    return out


@dataclass
class EigenResult:
    """Extreme eigenpairs from Lanczos.

    Attributes:
      eigenvalues: float64 NumPy array of the ``k`` wanted Ritz values, ordered
        by ``which`` (``LA``: descending, ``SA``: ascending, ``LM``: descending |value|).
      eigenvectors: ``(n, k)`` Ritz vectors (op's array module) or None.
      residuals: bounds ``|beta_m s_{m,i}| = ||A u_i - theta_i u_i||`` per pair (plus at most a quarter
        of the tolerance's bound after restarts that narrowed the block: ``krylov.BlockKrylov._narrow``).
      steps: the operator products made (``block_size`` per block Lanczos step, fewer in a last
        narrower block: what ``max_steps`` caps; it read "Lanczos steps taken", a third of it for
        ``block_size=3``).
      converged: whether every residual is below ``tol * |theta_i|``, or for eigenvalues near zero
        a floor proportional to ``||A||`` (``BlockKrylov.converged``; see ``top_eigenvalues``).
    """

    eigenvalues: np.ndarray
    eigenvectors: object = field(repr=False)
    residuals: np.ndarray
    steps: int
    converged: bool


@in_lockstep("op")
def top_eigenvalues(
    op,
    k: int = 1,
    which: str = "LA",
    tol: float | None = None,
    max_steps: int | None = None,
    v0=None,
    seed: int = 0,
    return_eigenvectors: bool = False,
    check_every: int = 5,
    progress=None,
    block_size: int = 1,
    max_basis: int | None = None,
) -> EigenResult:
    """The ``k`` extreme eigenvalues of a symmetric operator by (block) Lanczos with full reorthogonalization.

    ``which="LA"`` gives the largest (sharpness: ``k=1``), ``"SA"`` the smallest
    (most negative curvature), ``"LM"`` the largest in magnitude. Every
    ``check_every`` steps the Ritz pairs of the projected matrix are formed and
    iteration stops once each wanted pair has residual ``||A u - theta u||`` at
    most ``tol * |theta|``, or, for theta near zero (a flat direction), at most
    ``max(tol eps^(2/3), eps) * ||A||`` (``eps`` the operator dtype's, ``||A||`` the
    largest |Ritz value| or projected entry seen: an operator ``c A`` decides as ``A``;
    ``tol * |theta|`` alone was never met at a zero eigenvalue); for an isolated
    eigenvalue the error of ``theta`` is at most that residual (and typically its
    square over the gap), so to about ``eps ||A||`` absolute near zero. An exact
    invariant subspace (e.g. ``A = I``) does not stop it early: the lost
    direction is replaced by a random orthogonal one, as ARPACK does
    (``optkern.hessian.krylov``), and iteration goes on until that new
    sequence's most wanted Ritz pair has converged too, so the copies of a
    repeated eigenvalue outside the subspace are found -- or until such a
    sequence ended in an invariant subspace of its own with its most wanted
    value no more wanted than the k-th found (none further can be wanted:
    many copies of the wanted eigenvalue converge before ``n`` products).

    Repeated eigenvalues: one Krylov space holds one eigenvector per distinct
    eigenvalue, and with ``block_size=1`` further copies of an eigenvalue appear
    only through such breakdowns or by rounding, so the pairs can converge with
    a copy missing (eigenvalues 5, 5, 5, 4, 4 and many distinct smaller ones:
    ``[5, 5, 4]`` for ``k=3``). Where multiplicities matter, use a
    ``block_size`` at least the largest multiplicity expected among the wanted
    ones (as ``scipy.sparse.linalg.eigsh`` has no guarantee either).

    Args:
      tol: relative residual tolerance (default 1e-10 for float64, 1e-4 for float32; with the floor
        near zero above).
      max_steps: cap on the operator products, at most ``2**63 - 1`` (default ``10 max(30 k, 200)``, with the basis
        ``max_basis`` defaults to: as ``eigsh``'s ``maxiter``, restarts rather than a stop unconverged).
      v0, seed: the start vector (default: uniform in ``[-1, 1)`` from ``seed``; the rest of a
        first block, and the replacements of lost directions, too).
      progress: optional ``progress(done, total)`` after each product (``total``: the most
        products it may make; iteration usually stops earlier).
      block_size: vectors per Lanczos step ``b``; ``b > 1`` multiplies blocks
        (``op.matmat``: one forward pass per block for ``from_mlp``) and finds
        clustered or repeated eigenvalues more reliably (1 is used when ``n`` or
        ``max_steps`` is below ``k + b``).
      max_basis: memory bound: the basis holds at most ``max_basis + b``
        vectors (``(max_basis + 2 b) n`` entries with the product block; at
        least ``k + b``, ``k + b + 2`` for ``LM``); when full, Lanczos restarts thickly from the
        most wanted half of its Ritz vectors, more where the next cycle's whole blocks leave room
        (``_restart.restart_count``; for ``LM`` with the first unwanted one at each end of the spectrum
        among them), the block narrowed to the directions their residuals need (``BlockKrylov._narrow``:
        more blocks per cycle near the minimum). Default: with ``max_steps`` given, no restart (basis up to
        ``max_steps`` vectors); without, ``max(30 k, 200)`` (no restart where that holds the whole space).
        With restarts prefer ``block_size=1`` unless ``max_basis`` is many blocks: a cycle then adds few
        block degrees, and ``b = 4`` at ``max_basis = k + 5`` took 5-35x eigsh's products where ``b = 1`` in
        the same memory took 1.1-1.7x (bench/RESULTS.md, 51st session, h292). The cost follows the whole
        blocks a cycle multiplies after a restart (about ``(max_basis - k + b) / (2 b)``, at least one): 1-3
        blocks took 2.9-23x eigsh's products at equal memory, 4-5 blocks 1.1-3.6x, 8 or more 0.7-1.3x
        (n = 2000, k = 3 / 10, ``max_basis`` 20 / 40: bench/eig_block_restart_table.py, 52nd session, h302).
    """
    op = require_symmetric(op, "op", "Lanczos")
    op = as_operator(op, "op")  # (errors name the argument: op, not as_operator's A)
    k = _backend.integer("k", k, lo=1)
    n = op.shape[0]
    if k > n:
        raise ValueError(f"k: must be at most n = {n}, got {k}")
    if not isinstance(which, str) or which not in ("LA", "SA", "LM"):
        raise ValueError(f"which: expected 'LA', 'SA' or 'LM', got {which!r}")
    return_eigenvectors = _backend.flag("return_eigenvectors", return_eigenvectors)
    if tol is None:
        tol = 1e-10 if op.dtype == np.float64 else 1e-4
    tol = _backend.positive("tol", tol)
    b = _backend.integer("block_size", block_size, lo=1)
    # (with v0 the first draw may come at a breakdown, after products: the error came there, or never)
    seed = checked_seed(seed)
    if b > n:
        raise ValueError(f"block_size: must be at most n = {n}, got {b}")
    default_steps = max_steps is None
    # (the basis a run without max_steps holds, as before; restarting when full: _DEFAULT_CYCLES)
    basis = max(30 * k, 200)
    max_steps = (
        _DEFAULT_CYCLES * basis
        if default_steps
        else _backend.integer("max_steps", max_steps, lo=k, hi=_backend.INT64_MAX)
    )
    check_every = _backend.integer("check_every", check_every, lo=1)
    if max_basis is not None:
        max_basis = _backend.integer("max_basis", max_basis, lo=k + b)
    if min(max_steps, n) < k + b:  # too small a space for blocks: one vector at a time
        b = 1
    if default_steps and max_basis is None:
        max_basis = max(basis, k + b + 2)  # (room for LM's restart; the whole space: no restart, below)
    if max_basis is not None and max_basis + b >= n:
        # The bound admits the whole space (its n + b rows are within max_basis + 2 b): no restart. A
        # restarted basis there had more rows than the space holds; the lost ones stayed zero, were
        # multiplied, and came back as Ritz value 0 with a zero eigenvector (diag(1..5), k=1, "SA",
        # block_size=2, max_basis=4, max_steps=8: eigenvalue 0.0, "converged").
        max_basis = None
    if max_basis is not None and which == "LM" and max_basis < k + b + 2:
        # (room at a restart for the first unwanted Ritz value at each end of the spectrum besides the
        # k wanted: _restart.restart_keep)
        raise ValueError(f"max_basis: must be >= {k + b + 2} (k + block_size + 2 for which='LM'), got {max_basis}")
    cap = min(max_steps, n, max_basis or n)
    # A basis that may hold the whole space fills it, the last block narrower when b does not divide n (whole blocks
    # stopped short of n products: wrong eigenvalues where n products make them exact). Without restarts products
    # come in whole blocks. With them the capacity is not rounded down to whole blocks: a restart leaves any number
    # of vectors, and rounding could leave less than the k + b a restart needs (max_basis=10, block_size=4, k=5).
    whole = cap == n
    if not whole and max_basis is None:
        cap = (cap // b) * b
    # progress' total bounds the products: the basis' capacity, or with thick restarts (which go on
    # past n) max_steps (min(max_steps, n) was passed 10x by max_steps = 10 n; the whole blocks of
    # max_steps by narrowed ones, krylov: (50, 48) for b = 4, max_steps = 50)
    op = with_progress(op, progress, cap if whole or max_basis is None else max_steps)
    kr = BlockKrylov(op, b, cap, v0, seed)
    kr.invariant_tol = tol  # (a basis invariant to the tolerance: every pair converged, _fresh_converged)
    steps = 0
    while True:
        if kr.full and not whole:
            theta, S = kr.eig()  # (no residuals: a restart uses none)
            keep = restart_keep(theta, k, restart_count(k, kr.m, kr.cap, kr.b), kr.cap - kr.b, which)
            kr.budget = _narrow_budget(kr, theta[select(theta, k, which)], which, tol)
            kr.restart(keep, theta, S)
        kr.step()
        steps += 1
        if whole:  # (no restart: at most n products, and the whole space gives the exact eigenvalues)
            last = kr.m >= kr.cap
        else:
            last = kr.products + kr.b > max_steps or (kr.full and max_basis is None)  # (kr.b: narrowed, krylov)
        if kr.m < k or (not last and steps % check_every):
            continue
        theta, S, res_all = kr.ritz()
        idx = select(theta, k, which)
        res = res_all[idx]
        ok = bool(np.all(kr.converged(theta[idx], res, tol)))
        if ok and kr.m < n:
            ok = _fresh_converged(kr, which, tol, theta[idx[-1]])
        if ok or last:
            kr.finish()  # (a gross asymmetry seen at one step only: warned, CouplingCheck.finish)
            vecs = None
            if return_eigenvectors:
                Sd = op.xp.asarray(S[:, idx].astype(op.dtype))
                vecs = _combine.ritz_vectors(kr.Q[: kr.m], Sd)  # (fixed order: no BLAS thread split)
            return EigenResult(theta[idx], vecs, res, kr.products, ok)


def _narrow_budget(kr, wanted, which, tol):
    """What narrowing at restarts may add to every residual bound in all (``BlockKrylov._narrow``): a quarter
    of the least bound ``converged`` will ask of a wanted pair. Known now where it cannot shrink: wanted Ritz
    values move outward (interlacing; restarts keep them), so ``|theta|`` does not fall for ``LA`` >= 0 or
    ``SA`` <= 0, and the floor only grows (``||A||``'s estimate); elsewhere the floor alone (a budget from an
    early, larger |theta| could leave a pair that never converges)."""
    grows = (which == "LA" and float(wanted.min()) >= 0.0) or (which == "SA" and float(wanted.max()) <= 0.0)
    return 0.25 * float(kr.bound(wanted if grows else [0.0], tol).min())


def _fresh_converged(kr, which, tol, least):
    """After an invariant subspace (the breakdown of a whole block, ``BlockKrylov.fresh_pairs``) its
    Ritz pairs all have zero residuals: an operator with eigenvalue 5 three times and a start vector
    whose Krylov space held 5, 2 and 1 stopped there with [5, 2, 1] for k = 3, "converged". The
    sequence from the new random vector, orthogonal to that subspace, must also have converged its
    most wanted pair (the best candidate left in the rest of the space, a further copy of 5 there):
    either it is among the k wanted, or it is less wanted than all of them.

    Or such a sequence has ended (``BlockKrylov.ended``: it broke down in turn), its most wanted pair
    converged and no more wanted than ``least``, the k-th wanted value of the whole basis (to the
    bounds ``converged`` gives the two values, ``BlockKrylov.bound``): that pair holds the most wanted
    eigenvalue left outside the sequences before it, so the space outside them all has none more
    wanted, and a further copy there changes none of the k. Without it a wanted eigenvalue with many
    copies never converged before ``n`` products: each random vector in its eigenspace broke down at
    once and the next check found the new sequence not multiplied yet (diag(0 x 40, 1..10), "SA",
    ``max_steps=30``: residual 0, ``converged=False``). A most wanted value beyond ``least`` is no
    such proof: 5 three times among 2 and 1s, the second sequence holding 5 and 1 when the k = 3
    found were [5, 5, 2]."""
    if kr.ended is not None:
        theta, res = kr.ended
        j = select(theta, 1, which)[0]
        t = float(theta[j])
        beyond = {"LA": t - least, "SA": least - t, "LM": abs(t) - abs(least)}[which]
        # (t and least: one eigenvalue where they differ by at most the sum of their converged bounds,
        # each known to its own -- two Ritz values of one zero eigenvalue differ by ~eps ||A||, the floor)
        close = beyond <= float(kr.bound([t, least], tol).sum())
        if close and kr.converged(theta[j : j + 1], res[j : j + 1], tol)[0]:
            return True
    fresh = kr.fresh_pairs()
    if fresh is None:
        return True
    theta, res = fresh
    if len(theta) == 0:
        return False
    j = select(theta, 1, which)[0]
    return bool(kr.converged(theta[j : j + 1], res[j : j + 1], tol)[0])
