"""Block Lanczos with full reorthogonalization, thick restart and breakdown handling.

The engine behind ``top_eigenvalues``. It keeps an orthonormal basis ``Q``
(rows) and the dense projected matrix ``H = Q^T A Q``, filled column by
column from the orthogonalization coefficients (so after a restart, where
``H`` is no longer tridiagonal, nothing changes). One step multiplies the
newest block of ``b`` basis vectors (``op.matmat``: one forward pass for a
block when the operator has block products), orthogonalizes the products
against the whole basis, twice (CGS2: the fused native pass
``lanczos_orthogonalize_rows_``, the basis read once for the block, each row's bits those of
``lanczos_orthogonalize_`` alone: the same for any thread count, CPU or GPU), and
orthonormalizes them within the block, which gives the next block and the
coupling ``R`` (``A Q_m = Q_m H_m + Q_new R E_m^T``); the residual of a Ritz
pair ``(theta, Q_m s)`` is ``||R s_last||`` with ``s_last`` the last ``b``
entries of ``s``.

* Breakdown: a product in the span of the basis (an invariant subspace, as
  for ``A = I``) leaves a zero residual; that direction is replaced by a new
  random vector orthogonal to the basis and its coupling set to zero
  (ARPACK's remedy), so the wanted eigenvalues still all appear. When the
  whole block broke down, the Ritz pairs of the invariant subspace all have
  zero residuals, found or not the copies of a repeated eigenvalue outside it
  (so, to tolerance, where the coupling is that small without a breakdown):
  ``fresh_pairs`` gives the new sequence's, which the caller also waits for,
  and ``ended`` the last such sequence's once it broke down in turn.
* Thick restart (Wu & Simon 2000): with ``max_basis = p`` the basis never
  holds more than ``p + b`` vectors. When it is full, the ``l`` most wanted
  Ritz vectors (about half the basis) are formed in place, ``H`` becomes
  ``diag(theta_kept)``, the pending block follows them, and Lanczos goes on.
  Memory: ``(p + b) n`` basis entries plus one ``b x n`` product block.
* Narrowing (``_narrow``): a restart keeping ``l < b`` Ritz vectors rotates the
  pending block onto the ``l`` directions of their residuals and goes on with
  blocks of ``l``, the rows freed multiplied; directions carrying residuals
  within the caller's budget go too, their share added to the bounds.
"""

from __future__ import annotations

import numpy as np

from .. import _backend, _fixed_sums, _malloc
from . import _combine, _eigh, _orthonormal
from ._probes import start_vector
from ._products import CouplingCheck, check_estimate
from ._restart import restart_count as restart_count  # (their home before: lanczos and tests import them here)
from ._restart import restart_keep as restart_keep
from ._restart import select as select
from .operators import unit_vector, vector_norm

#: Groups of dropped directions (``BlockKrylov._narrow``) whose couplings are carried before the oldest
#: half is folded into one bound.
_GROUPS = 32


class BlockKrylov:
    """Incremental block Lanczos state; ``step()`` multiplies one block, ``ritz()`` gives the Ritz pairs."""

    def __init__(self, op, block_size, capacity, v0, seed):
        self.op = op
        self.xp = xp = op.xp
        self.n = n = op.shape[0]
        self.b = b = int(block_size)
        self.cap = int(capacity)  # basis vectors that have been multiplied, at most
        self.mod = _backend.backend(("v0", xp.empty(0, dtype=op.dtype)))
        self.Q = _malloc.populate(xp.empty((self.cap + b, n), dtype=op.dtype))  # (see _malloc.populate)
        self.H = np.zeros((self.cap + b, self.cap + b))
        self.coeffs = xp.zeros(self.cap + 2 * b, dtype=np.float64)
        self.bcoeffs = xp.zeros((b, self.cap + b), dtype=np.float64)  # (a block's rows' coefficients)
        self.seed, self.next_probe = seed, 0
        self.m = 0  # basis vectors multiplied (H[:m, :m] complete); rows m..m+b-1 are the pending block
        self.products = 0
        self.eps = float(np.finfo(op.dtype).eps)
        self.scale = 0.0  # largest |H| entry seen: breakdown is judged relative to it
        # First basis row of the Krylov sequence begun where a direction last broke down, to within ``invariant_tol``
        # relative (the caller's tolerance; 0: an exact breakdown); None if none did (see fresh_pairs)
        self.fresh: int | None = None
        # ``(theta, residuals)`` of the last such sequence that ended (began where the whole block broke
        # down, ended at the next breakdown: an invariant subspace to the tolerance); None if none has
        self.ended: tuple[np.ndarray, np.ndarray] | None = None
        self.fresh_whole = False  # (whether every direction broke down where ``fresh`` begins)
        self.invariant_tol = 0.0
        # What the directions ``_narrow`` dropped may add to the residual of any Ritz pair (a unit ``s``):
        # the sum of the largest singular value dropped at each restart (held within the caller's budget)
        self.spent = 0.0
        self.budget = 0.0  # (the caller's bound on ``spent``, set before each restart: 0 narrows exactly only)
        # The dropped directions' couplings to the kept Ritz vectors (rows, one group per restart; columns:
        # the first basis rows), carried through later restarts: ``ritz`` adds each pair's own share of
        # ``spent`` to its bound (``_drift``); ``slack``: the norms of the oldest groups, folded (fewer products)
        self.drift: list[np.ndarray] = []
        self.slack = 0.0
        if v0 is not None:
            self.Q[0] = unit_vector(op, v0)
        self.R = self._orthonormalize_block(0, 0 if v0 is None else 1)
        # The coupling R of the block just multiplied to the pending one, which the pending block's
        # products see transposed if A is symmetric; None where rows moved since (a restart, a narrowed block)
        self._coupling: np.ndarray | None = None
        self._symmetry = CouplingCheck(op)

    # ---- orthogonalization ------------------------------------------------

    def _random_row(self, row):
        # (uniform, not +-1: a +-1 start vector missed the eigenvector (1, -1) / sqrt(2) half the time, _probes)
        self.Q[row] = start_vector(self.n, seed=self.seed, index=self.next_probe, dtype=self.op.dtype, xp=self.xp)
        self.next_probe += 1

    def _orth_row(self, row, lo, k):
        """Row ``row`` against rows ``[lo, lo + k)`` (CGS2, fused native pass), normalized; returns its prior
        norm. ``coeffs[:k]`` receives the projection coefficients."""
        # (k = 0: only normalized, by the same native pass -- its norm scaled where w's squares leave the range)
        return float(self.mod.lanczos_orthogonalize_(self.Q[lo : lo + k], k, self.Q[row], self.coeffs))

    def _replace(self, row):
        """A new random direction at ``row``, orthonormal to every row before it (a random vector can
        lie in the span of the basis to rounding: then the next one is tried; a zero row if the space is full)."""
        for _ in range(8):
            self._random_row(row)
            nrm = _fixed_sums.norm(self.Q[row])
            left = self._orth_row(row, 0, row) / nrm
            left *= self._orth_row(row, 0, row)
            if left > 1e3 * self.eps:
                return
        self.Q[row] = 0.0

    def _broke_down(self, beta, ref):
        check_estimate(beta)  # NaN / Inf products: ValueError naming op, as every estimator raises
        return beta <= 10 * self.eps * max(self.scale, ref)

    def _orthonormalize_block(self, lo, filled, ref=None):
        """Rows ``[lo, lo + b)``, already orthogonal to the basis before ``lo`` for the first ``filled`` of
        them (the rest become new random vectors), orthonormalized within the block. ``ref``: the norms
        of the rows before any projection (for the cancellation and breakdown tests). Returns the
        coupling ``R`` (``b x b``, upper triangular; a zero row where a direction broke down and was
        replaced by a random one)."""
        b = self.b
        R = np.zeros((b, b))
        for i in range(b):
            row = lo + i
            if i >= filled:
                self._replace(row)
                continue
            beta = self._orth_row(row, lo, i)
            R[:i, i] = _to_host(self.coeffs[:i])
            ref_i = float(ref[i]) if ref is not None else beta
            if beta < 0.5 * ref_i and row:  # cancellation (DGKS): once more against the whole basis
                again = self._orth_row(row, 0, row)
                R[:i, i] += beta * _to_host(self.coeffs[lo:row])
                beta *= again
            if self._broke_down(beta, ref_i):
                self._replace(row)
                continue
            R[i, i] = beta
        return R

    # ---- one step ---------------------------------------------------------

    def _last_block(self):
        """Before a step past ``cap``: only a basis that may hold the whole space (``cap = n``) steps
        there, with a final partial block of the ``cap - m`` directions left (a whole block stopped
        short of ``n`` products when ``b`` does not divide ``n``: wrong Ritz values on small problems).
        The exhausted space left the other pending rows zero (``_replace``): the live rows move to the
        front and the block narrows to them (``b``, ``R`` and the residuals then have its width; the
        step after it fills the space, no other follows). False when no direction is left."""
        m, want = self.m, self.cap - self.m
        P = self.Q[m : m + self.b]
        live = np.flatnonzero(_to_host(self.xp.linalg.norm(P, axis=1)) > 0)[:want]
        P[: len(live)] = P[live]  # (fancy indexing reads a copy first: no overlap)
        width = len(live)
        while width < want:  # (a direction lost to rounding: a new random one, zero if none is left)
            self._replace(m + width)
            if not bool(self.xp.any(self.Q[m + width])):
                break
            width += 1
        if width:
            self.b = width
        # The live rows' coupling moves with them (rows of R: Q_pending^T A Q_last = R); the rows drawn
        # fresh above have none known and are not compared. (None here left a grossly asymmetric user
        # operator unchecked at n = 3 in blocks of 2, its only other block the first: top eigenvalue 1.70
        # of a triangular matrix whose eigenvalues are -3.98, -0.61 and -0.11, no error, no warning.)
        if self._coupling is not None:
            self._coupling = self._coupling[live]
        return width > 0

    def step(self):
        """Multiply the pending block, extend ``H``, orthonormalize the next block (restarting first if full;
        past ``cap`` with a narrower last block, see ``_last_block``). Returns False when nothing was left."""
        if self.m + self.b > self.cap and not self._last_block():
            self.cap = self.m  # the space is exhausted: the Ritz pairs are final
            return False
        xp, b, m = self.xp, self.b, self.m
        hi = m + b
        W = self.op.matmat(self.Q[m:hi].T)  # (n, b)
        self.products += b
        new = self.Q[hi : hi + b]  # callers restart() first when the basis is full
        new[...] = W.T
        if b == 1:
            ref = vector_norm(xp, new[0])  # (scaled: the product of c A with c = 1e200 squared to inf)
            beta = self._orth_row(hi, 0, hi)
            self.H[:hi, m] = _to_host(self.coeffs[:hi])
            self.scale = max(self.scale, float(np.abs(self.H[:hi, m]).max()))
            if self._broke_down(beta, ref):
                self._replace(hi)
                beta = 0.0
            R = np.array([[beta]])
        else:
            ref = _to_host(vector_norm(xp, new, axis=1))
            # CGS2 of each row against the basis by the native pass (not two GEMMs a pass: BLAS cuts
            # their sums over n by thread, and the Ritz values followed OPENBLAS_NUM_THREADS)
            # (the block at once on the CPU: the basis read once, each row's bits as alone)
            _orthonormal.orthogonalize_rows_against(self.mod, self.Q[:hi], new, self.bcoeffs[:b])
            Ct = _to_host(self.bcoeffs[:b, :hi]).T
            self.H[:hi, m:hi] = Ct
            self.scale = max(self.scale, float(np.abs(Ct).max()))
            R = self._orthonormalize_block(hi, b, ref)
        if self._coupling is not None and len(self._coupling) and m >= self._coupling.shape[1]:
            # Q_prev^T A Q_block against Q_block^T A Q_prev = the previous step's R: equal for a symmetric A
            # (R's rows: the block's leading rows that have one, all but in a narrowed last block)
            rows, prev = self._coupling.shape
            self._symmetry(self.H[m - prev : m, m : m + rows], self._coupling.T, self.scale)
        self.scale = max(self.scale, float(np.abs(R).max()))
        # A direction broke down (a random one replaced it: R[i, i] = 0), or did to within tolerance (a
        # Krylov space holding 5, 2 and 1 of a spectrum 5, 5, 5, 2, 1, ... ends on a beta of rounding
        # size, above the breakdown test, and every Ritz pair has converged): the next block starts a
        # new sequence there (random rows, or the residual's rounding noise, orthogonal to the basis)
        self.R = R
        self._coupling = R  # (compared with the next step's products: CouplingCheck)
        self.m = hi
        lost = np.abs(np.diag(R)) <= self.invariant_tol * self.scale
        if lost.any():
            # A sequence begun where the whole block broke down (new rows only, decoupled from the rows
            # before) ends: its pairs are A's on an invariant subspace to the tolerance. Not one begun
            # where a direction of a block went on (coupled to the rows before), nor the start
            # vector's own (v0 may be special).
            if self.fresh is not None and self.fresh_whole:
                self.ended = self._pairs(self.fresh)
            self.fresh, self.fresh_whole = hi, bool(lost.all())
        return True

    def fresh_pairs(self):
        """``(theta, residuals)`` of the Krylov sequence begun where the basis last spanned an invariant
        subspace or a direction broke down (``fresh``; None if neither happened): the Ritz pairs of
        ``H[fresh:m, fresh:m]``, decoupled from the rows before to within the tolerance when the whole
        block broke down (else the compression of A on the new rows, a guide for when to stop: the
        values returned are always those of the whole basis). Those rows' own Ritz pairs then have (near) zero
        residuals whether or not the wanted eigenvalues are among them (the copies of a repeated
        eigenvalue beyond the first lie outside one Krylov space), so a caller holds out for this
        sequence's most wanted pair too: the best candidate left in the rest of the space."""
        if self.fresh is None:
            return None
        if self.m - self.fresh < self.b:  # (its random rows not multiplied yet)
            return np.empty(0), np.empty(0)
        return self._pairs(self.fresh)

    def _pairs(self, lo):
        """``(theta, residuals)`` of ``H[lo:m, lo:m]`` with the current coupling ``R``."""
        theta, S = _eigh.eigh(self.projected()[lo:, lo:])
        return theta, vector_norm(np, self._rs(S[-self.b :]), axis=0)

    def _rs(self, S_last):  # (R S_last, fixed order: a GEMM's sums followed BLAS's thread count; callers'
        # vector_norm scales: R of c A is ~c, the squares may overflow)
        return _combine.combine(np.ascontiguousarray(self.R), np.ascontiguousarray(S_last))

    def projected(self):
        """Symmetric ``H[:m, :m]`` (the strictly lower part mirrored from the upper)."""
        H = self.H[: self.m, : self.m]
        return np.triu(H) + np.triu(H, 1).T

    def eig(self):
        """``(theta, S)``: the eigenpairs of the projected ``H``, without residuals (what ``restart``
        takes; on one BLAS thread: ``_eigh``)."""
        return _eigh.eigh(self.projected())  # (on one BLAS thread: _eigh)

    def ritz(self):
        """``(theta, S, residuals)``: eigenpairs of ``H`` and ``||A u_i - theta_i u_i|| = ||R s_last,i||``."""
        theta, S = self.eig()
        return theta, S, vector_norm(np, self._rs(S[self.m - self.b : self.m]), axis=0) + self._drift(S)

    def finish(self) -> None:
        """The run ends here: the symmetry check's held-back warning released (``CouplingCheck.finish``)."""
        self._symmetry.finish()

    def _drift(self, S):
        """What the directions ``_narrow`` dropped add to the residual bound of each Ritz pair (columns of
        ``S``): ``sum_g ||D_g s||`` over the groups kept, plus the norms of those folded into ``slack``."""
        out = np.full(S.shape[1], self.slack)
        for D in self.drift:  # (fixed order, as R s_last)
            out += vector_norm(np, _combine.combine(D, np.ascontiguousarray(S[: D.shape[1]])), axis=0)
        return out

    def converged(self, theta, res, tol):
        """Whether each Ritz pair ``(theta, res)`` has converged: ``res <= max(tol * max(|theta|, eps^(2/3)
        ||A||), eps ||A||)``, ``eps`` the operator dtype's, ``||A||`` estimated by the largest |Ritz
        value| or projected entry seen (a lower bound). The one rule of ``top_eigenvalues`` and its
        fresh sequences. Relative to ``|theta|`` alone (with ``tiny`` as the floor) a zero eigenvalue
        never converged: the residual estimate ``||R s_last||`` stops near its rounding, eps ||A||
        (diag(0, 1..10), "SA": every step, residual 1e-18, ``converged=False``). ARPACK's floor,
        ``tol eps^(2/3)``, is absolute; here it scales with ``||A||`` (``c A`` decides as ``A``), and
        the residual is never asked below ``eps ||A||``, the accuracy the products resolve (Weyl):
        an eigenvalue then lies within that bound of ``theta`` (Krylov-Bogoliubov)."""
        return np.asarray(res) <= self.bound(theta, tol)

    def bound(self, theta, tol):
        """The residual ``converged`` asks of each Ritz value ``theta``: how far from it an eigenvalue
        may lie once converged."""
        theta = np.abs(np.asarray(theta, dtype=np.float64))
        nrm = max(self.scale, float(theta.max()) if theta.size else 0.0)
        floor = max(tol * self.eps ** (2.0 / 3.0), self.eps) * nrm
        return np.maximum(tol * theta, floor)

    @property
    def full(self):
        return self.m + self.b > self.cap

    def restart(self, keep, theta, S):
        """Thick restart keeping the Ritz vectors of ``H`` at indices ``keep`` (``theta, S``: ``eig()``'s), the
        block narrowed where their residuals allow (``_narrow``, within ``budget``); returns nothing."""
        m, b, nk = self.m, self.b, len(keep)
        assert nk + 2 * b <= self.cap + b  # room for the pending block and its product
        Sk = self.xp.asarray(S[:, keep].astype(self.op.dtype))  # (m, nk)
        _combine.combine_rows_(self.Q, Sk)  # Y = Sk^T Q[:m], in place (fixed order: no BLAS thread split)
        self.drift = [_combine.combine(D, np.ascontiguousarray(S[: D.shape[1], keep])) for D in self.drift]
        if b > 1:
            b = self._narrow(S[m - b : m][:, keep], self.budget)
        self.Q[nk : nk + b] = self.Q[m : m + b]  # the pending block follows the kept Ritz vectors
        self.H[:] = 0.0
        self.H[np.arange(nk), np.arange(nk)] = theta[keep]
        self.fresh = None  # (the kept Ritz vectors mix the sequences: no decoupled one is left)
        self._coupling = None  # (the block after the kept Ritz vectors couples to them through R S_last)
        # (``ended`` stays: its values bound A's outside the subspaces found, and the k most wanted kept
        # only grow more wanted as the basis grows again, interlacing)
        # Y^T A Q_pending (= (R S_last)^T) enters H when the pending block is multiplied next.
        self.m = nk

    def _narrow(self, S_last, budget):
        """The pending block rotated onto the directions holding the kept Ritz vectors' residuals
        (``S_last``: the last ``b`` rows of their ``l`` eigenvectors of ``H``), narrowed to ``min(b, l)``,
        or fewer by ``budget``; returns the new width. ``A Y = Y diag(theta) + P^T C`` with ``C = R S_last``
        (``b x l``), ``C = U Sigma V^T``: the rows ``U^T P`` in order of ``sigma``. ``l < b``: the first
        ``l`` hold every residual exactly and the rest none (the restarted space is the block Krylov space
        of ``Y`` either way, the Ritz values and ``||R s_last||`` as before); the ``b - l`` rows freed go
        to multiplied vectors (``cap``): longer Krylov sequences per cycle for the same memory. At ``k =
        1``, ``b = 4``, ``max_basis = 6`` a whole block a cycle (a polynomial of degree one per restart)
        took 7720 products at ``tol = 1e-6`` on a clustered top (eigsh with 10 vectors: 231); narrowed,
        972. The ``l >= k`` vectors, a block as wide, keep the copies of a wanted eigenvalue found so far.

        ``l >= b`` narrows nothing exactly, but converged pairs' residuals are small: at ``k = 17``, ``b =
        4``, ``max_basis = 22`` two of the four ``sigma`` fell to 1e-8 of the others within a few hundred
        products. Directions are dropped, the smallest first, while the sum over restarts of the largest
        ``sigma`` dropped stays within ``budget`` (``lanczos._narrow_budget``). A dropped ``d`` with ``A Y
        = ... + d (sigma v^T)`` leaves each later Ritz vector ``Q^T s`` a residual part ``d (sigma v^T
        s_Y)`` outside the basis, not in ``||R s_last||``: ``_drift`` adds it to the bound (triangle
        inequality; the Ritz values, from ``H``, stay exact). 8400 products -> 537 on that clustered top
        at ``tol = 1e-6`` (eigsh with 26 vectors: 165)."""
        b, m = self.b, self.m
        C = self._rs(S_last)
        U, sv, Vt = np.linalg.svd(C)  # (U: b x b, orthogonal, its first w columns span C's; sv descending)
        w = min(b, S_last.shape[1])
        exact = w
        while w > 1 and self.spent + sv[w - 1] <= budget:
            w -= 1
        if w < exact:
            self.spent += float(sv[w])  # (the largest dropped: ||sum of sigma u v^T dropped||_2)
            self.drift.append(np.ascontiguousarray(sv[w:exact, None] * Vt[w:exact]))
            if len(self.drift) > _GROUPS:  # (||D s|| <= ||D||_2 for a unit s: the oldest half folded)
                self.slack += sum(float(np.linalg.norm(D, 2)) for D in self.drift[: _GROUPS // 2])
                del self.drift[: _GROUPS // 2]
        if w == b:
            return b
        # rows m..m+w-1 = U[:, :w]^T P, in place (as the kept Ritz vectors: fixed order, no BLAS thread split)
        _combine.combine_rows_(self.Q[m : m + b], self.xp.asarray(U[:, :w].astype(self.op.dtype)))
        self.b = w
        self.cap = self.Q.shape[0] - w  # (the rows the pending block and its product no longer need)
        return w


def _to_host(a):
    return a.get() if _backend.is_cupy(a) else np.asarray(a)
