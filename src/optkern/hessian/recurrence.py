"""The Lanczos three-term recurrence behind ``lanczos`` and ``spectral_density``.

Every step makes ``w = A q_j`` and orthogonalizes it locally against
``q_{j-1}, q_j`` (CGS2 in the fused native pass, float64 coefficients), which
gives ``alpha_j`` and ``beta_{j+1}``. What happens against the older vectors
is the ``reorthogonalize`` mode:

* ``"full"``: ``w`` is orthogonalized against the whole stored basis every
  step (CGS2, three reads of the basis).
* ``"partial"``: Simon's (1984) omega-recurrence estimates ``|q_{j+1}^T q_k|``
  for all ``k`` from ``alpha`` and ``beta`` alone (O(j) flops); only when the
  estimate passes ``sqrt(eps)`` is ``w`` orthogonalized against the whole
  basis (CGS2), at that step and the next; a direction that cannot be made
  semi-orthogonal (a Krylov space exhausted to the precision of the stored
  basis) ends the run as a breakdown does. The basis stays semi-orthogonal, which
  keeps the Ritz values as accurate as full reorthogonalization (Simon's
  theorem: ``T`` is then the projection of ``A`` on an orthonormal basis of the
  Krylov space to working precision) while most steps never read the basis.
* ``"none"``: no basis at all (the plain recurrence). Loses orthogonality
  once Ritz values converge (spurious copies of converged eigenvalues), but
  Gauss quadrature (SLQ) stays accurate (Knizhnerman 1996; Golub & Meurant):
  the right choice for densities of large models.

Memory per recurrence (``n`` parameters, ``m`` steps, ``s`` bytes of the
operator's dtype): ``"none"``: 3 vectors, ``3 n s`` (``q_{j-1}``, ``q_j``, and the
product ``w``); ``"full"`` / ``"partial"``: that plus the basis, ``(m + 1) n``
entries of ``basis_dtype`` (float32: 4 bytes each, half of float64), on the
device or, with ``basis="host"``, in host memory (products stay on the GPU;
each step copies ``q_{j+1}`` to the host once, and a reorthogonalization copies
``w`` there and back).
"""

from __future__ import annotations

import numpy as np

from .. import _backend, _malloc
from ._probes import rademacher
from ._products import CouplingCheck, check_estimate
from ._vectors import in_range
from .operators import unit_vector

MODES = ("full", "partial", "none")


def _to_host(a):
    return a.get() if _backend.is_cupy(a) else a


class LanczosRecurrence:
    """One Lanczos recurrence; ``vector()`` is the next vector to multiply, ``advance(A @ vector())`` a step."""

    def __init__(
        self, op, max_steps, v0, seed, reorthogonalize="full", basis_dtype=None, basis=None, index=0, keep_basis=False
    ):
        # (a string first: an array would make ``in`` ambiguous, a list would be unhashable)
        if not isinstance(reorthogonalize, str) or reorthogonalize not in MODES:
            raise ValueError(f"reorthogonalize: expected 'full', 'partial' or 'none', got {reorthogonalize!r}")
        if basis is not None and (not isinstance(basis, str) or basis not in ("device", "host")):
            raise ValueError(f"basis: expected None, 'device' or 'host', got {basis!r}")
        wdt = np.dtype(op.dtype)
        try:
            bdt = wdt if basis_dtype is None else np.dtype(basis_dtype)
        except (TypeError, ValueError):  # NumPy's message would name nothing
            raise TypeError(
                f"basis_dtype: expected float32 or the operator's dtype {wdt}, got {basis_dtype!r}"
            ) from None
        if bdt not in (np.float32, np.float64) or bdt.itemsize > wdt.itemsize:
            raise TypeError(f"basis_dtype: expected float32 or the operator's dtype {wdt}, got {bdt}")
        self.op, self.xp, self.mode = op, op.xp, reorthogonalize
        xp = self.xp
        n = op.shape[0]
        self.n, self.m = n, min(int(max_steps), n)
        self.mod = _backend.backend(("v0", xp.empty(0, dtype=wdt)))
        self.bxp = np if basis == "host" else xp
        self.bmod = _backend.cpu if basis == "host" else self.mod
        keep = reorthogonalize != "none" or keep_basis  # "none" stores the vectors only when asked to
        # (faulted in now: on demand it cost ~6% of the products at 670k parameters, see _malloc.populate)
        self.Q = _malloc.populate(self.bxp.empty((self.m + 1, n), dtype=bdt)) if keep else None
        # q_{j-1} and q_j; row `cur` holds q_j. A step writes q_{j+1} over q_{j-1} and flips `cur`:
        # one copy of an n-vector per step, not two (a copy at 57.7M parameters: ~2% of its HVP).
        self.ring = xp.zeros((2, n), dtype=wdt)
        self.cur = 1
        self._w = None  # the product buffer (see product())
        self.coeffs = xp.zeros(2, dtype=np.float64)
        self.bcoeffs = self.bxp.zeros(self.m + 1, dtype=np.float64)
        if v0 is None:
            v0 = rademacher(n, seed=seed, index=index, dtype=wdt, xp=xp)
        self.ring[1] = unit_vector(op, v0)
        self._store(0, self.ring[1])
        self.alpha, self.beta = [], []  # beta[j]: norm of the residual after step j
        self.done = False
        self.reorths = 0  # steps that read the whole basis
        # omega-recurrence state (partial): estimates of q_j^T q_k, k <= j
        beps = float(np.finfo(bdt).eps)
        # Orthogonality right after a (double-accumulated) CGS2: a few units of the basis' rounding.
        # (The textbook eps * sqrt(n) would sit within 4x of sqrt(eps) for float32 at n ~ 1e6 and make
        # every step reorthogonalize.)
        self.eps1 = 4.0 * max(float(np.finfo(wdt).eps), beps)
        self.eta = np.sqrt(beps)
        # (every array _omega uses, made once: it allocated ~8 arrays of up to m + 1 entries a step,
        # the new estimates among them). Three rows of estimates, rotated: q_{j-1}'s, q_j's and the
        # next's (written while the other two are read); ``_ab``: alpha_0.., beta_0.. at fixed
        # places, then the step's (a, b), as the recurrence's one input array (in_range scales it
        # where its sums overflow: the unwritten zeros change neither its max nor its finiteness).
        self._oms = np.zeros((3, self.m + 1))
        self.om_prev, self.om, self._om_next = self._oms
        self.om[0] = 1.0
        self._ab = np.zeros(2 * (self.m + 1) + 2)
        self._work = np.empty(self.m + 1)
        self._scale = 0.0  # max(|alpha_k|, beta_k) so far
        self._symmetry = CouplingCheck(op)
        self.force = False

    @property
    def steps(self):
        return len(self.alpha)

    def vector(self):
        return self.ring[self.cur]

    def product(self, op):
        """``A q_j``: into this recurrence's product buffer when the operator writes into one
        (allocated once per run: a fresh n-vector per step costs its page faults and its unmapping,
        ~5% of a 670k-parameter HVP), else a fresh array."""
        if not getattr(op, "writes_into", False):
            return op.matvec(self.vector())
        if self._w is None:
            self._w = self.xp.empty(self.n, dtype=self.ring.dtype)
        return op.matvec(self.vector(), out=self._w)

    def _store(self, row, w):
        if self.Q is not None:
            self.Q[row] = _to_host(w) if self.bxp is np else w

    def _reorthogonalize(self, w, j):
        """``w`` against the stored ``q_0 .. q_j``, renormalized; returns ``(r, c)``: the norm factor
        and the size of the last pass' projection coefficients (what that pass removed).

        "full": CGS2. "partial": one classical Gram-Schmidt pass -- the omega-recurrence calls this
        while ``w`` is still orthogonal to the basis to about ``sqrt(eps)``, and one pass then
        leaves about ``eps``; it reads the basis twice instead of three times. A second pass where
        the first removed more than ``eps ** (1/4)``: past a near-breakdown (a Krylov space
        exhausted, ``beta`` of rounding size) ``w`` is that rounding noise, mostly inside the span
        of the basis, and one pass against a basis orthogonal only to ``sqrt(eps)`` left
        components ~``sqrt(eps) / r``: the basis lost orthogonality completely and SLQ nodes fell
        outside the spectrum."""
        self.reorths += 1
        passes = 1 if self.mode == "partial" else 2
        wb = w if self.bxp is self.xp else np.ascontiguousarray(_to_host(w))  # (host basis, device vectors)
        r = float(self.bmod.lanczos_orthogonalize_(self.Q[: j + 1], j + 1, wb, self.bcoeffs, passes))
        c = float(self.bxp.linalg.norm(self.bcoeffs[: j + 1]))
        if passes == 1 and c > np.sqrt(self.eta):
            r *= float(self.bmod.lanczos_orthogonalize_(self.Q[: j + 1], j + 1, wb, self.bcoeffs, 1))
            c = float(self.bxp.linalg.norm(self.bcoeffs[: j + 1]))
        if wb is not w:
            w[...] = self.xp.asarray(wb)
        return r, c

    def _omega(self, j, a, b):
        """Simon's recurrence for ``omega_{j+1, k} ~ q_{j+1}^T q_k``; True when reorthogonalization is due.

        ``omega_{j+1,k} b = beta_k om_{k+1} + (alpha_k - a) om_k + beta_{k-1} om_{k-1} - beta_{j-1}
        om'_k``, plus ``eps1 (beta_k + b)`` of its sign (``om``: q_j's estimates, ``om'``:
        q_{j-1}'s), written into the preallocated rows in that order of operations."""
        om, op_, new, w = self.om, self.om_prev, self._om_next, self._work
        M = self.m + 1
        if j > 0:
            ab = self._ab
            ab[-2], ab[-1] = a, b

            def row(t):  # t = (alpha_0..m, beta_0..m, a, b); alpha_k, beta_k written for k < j
                al, bk1, a, b = t[:j], t[M : M + j], t[-2], t[-1]  # (bk1: beta between q_k and q_{k+1})
                x, u = new[:j], w[:j]
                np.multiply(bk1, om[1 : j + 1], out=x)
                np.subtract(al, a, out=u)
                u *= om[:j]
                x += u
                u[0] = 0.0  # beta between q_{k-1} and q_k times om_{k-1}: 0 for k = 0
                np.multiply(bk1[: j - 1], om[: j - 1], out=u[1:])
                x += u
                np.multiply(bk1[j - 1], op_[:j], out=u)
                x -= u
                np.add(bk1, b, out=u)
                u *= self.eps1
                np.copysign(u, x, out=u)
                x += u
                x /= b
                return x

            # (scale-free, alpha and beta divided by a power of two where they overflowed it: for a
            # spectrum near float64's max, alpha_k - a and the sums passed it, NumPy warned "overflow
            # encountered in add" -- an error under -W error -- and inf / NaN estimates decided)
            in_range(np, ab, row, scaled_back=False)
        new[j] = self.eps1
        new[j + 1] = 1.0
        self.om_prev, self.om, self._om_next = om, new, op_
        if j == 0:
            return False
        np.abs(new[:j], out=w[:j])
        return float(w[:j].max()) > self.eta

    def advance(self, w):
        """One step with ``w = A q_j`` (overwritten)."""
        j = self.steps
        ring = self.ring
        if not (w.flags.c_contiguous and getattr(w.flags, "writeable", True) and w.dtype == ring.dtype):
            w = self.xp.array(w, dtype=ring.dtype, order="C")  # the product is overwritten in place
        cur = self.cur
        if j > 0:  # local CGS2 against q_{j-1}, q_j (fused, float64 coefficients; the row order does not matter)
            b = float(self.mod.lanczos_orthogonalize_(ring, 2, w, self.coeffs))
        else:
            b = float(self.mod.lanczos_orthogonalize_(ring[cur:], 1, w, self.coeffs))
            cur = 0  # coefficient index of q_0
        c = _to_host(self.coeffs)  # (one transfer for both)
        a = float(c[cur])
        check_estimate(b)  # NaN / Inf products: ValueError naming op, as every estimator raises
        if j > 0:  # q_{j-1}^T A q_j against q_j^T A q_{j-1} = beta_{j-1}: equal for a symmetric A
            self._scale = max(self._scale, abs(a), b)
            self._symmetry(c[cur ^ 1], self.beta[-1], self._scale)
        lost = False
        if b > 0 and self.mode != "none" and j + 1 < self.m:
            due = self.mode == "full" or self.force
            self.force = False
            if (self.mode == "partial" and self._omega(j, a, b)) or due:
                if self.mode == "partial" and not due:
                    self.force = True  # Simon: reorthogonalize the next vector too
                r, c = self._reorthogonalize(w, j)
                b *= r
                # What is left of w is orthogonal to the stored basis to (its rounding + what the
                # last pass removed times the basis' own loss, at most eta) over r, not to eps1: with
                # a float32 basis (and a float64 w) a near-breakdown's r ~ 1e-8 leaves components ~1
                # that estimates reset to eps1 never saw (Ritz values at 100x the spectrum). Where
                # even that is above sqrt(eps), no semi-orthogonal direction is left to continue
                # with: the Krylov space is exhausted to the basis' precision, and T is final (an
                # invariant subspace, as a breakdown).
                self.om[: j + 1] = min(1.0, (self.eps1 + self.eta * c) / max(r, self.eps1))
                lost = self.mode == "partial" and self.om[0] > self.eta
        self.alpha.append(a)
        self.beta.append(b)
        if j < self.m:  # (the omega-recurrence's input: alpha_k, beta_k at fixed places)
            self._ab[j], self._ab[self.m + 1 + j] = a, b
        self._scale = max(self._scale, abs(a), b)  # (a running max: the lists were scanned every step)
        scale = self._scale
        # Invariant subspace found (or the space is exhausted): T is exact.
        if j + 1 >= self.m or not b > 10 * np.finfo(self.op.dtype).eps * scale or lost:
            self.done = True
            self._symmetry.finish()  # (a gross gap held back for a second step that never came: warned)
            return
        self.cur ^= 1
        ring[self.cur] = w
        self._store(j + 1, w)

    def result(self):
        return np.array(self.alpha), np.array(self.beta[:-1]), self.beta[-1]

    def basis(self):
        """The stored basis rows ``q_0 .. q_{m-1}`` (None for ``"none"`` unless ``keep_basis``)."""
        return None if self.Q is None else self.Q[: self.steps]


def run_lockstep(op, recs):
    """Advance the recurrences ``recs`` together until all are done: each step multiplies the
    current vectors of the live ones as one block (``op.matmat``: one forward pass for ``from_mlp``)."""
    xp = op.xp
    while True:
        live = [r for r in recs if not r.done]
        if not live:
            return
        if len(live) == 1:
            live[0].advance(live[0].product(op))
            continue
        W = op.matmat(xp.stack([r.vector() for r in live], axis=1))
        for i, r in enumerate(live):
            r.advance(xp.ascontiguousarray(W[:, i]))
