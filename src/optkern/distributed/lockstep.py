"""The ranks' estimators in lockstep over a :func:`.curvature.distributed` operator.

Every product of a distributed operator is a collective, so every rank must run the same estimator
with the same arguments: the same count of products, each of the same vectors. Nothing compared
them: an argument refused on one rank (``trace(H, num_matvecs=-1)``) raised there while the others
waited in the first product forever; other counts (``spectral_density(num_probes=...)``) left a rank
waiting for a product the others never made; another ``seed`` or ``v0`` on one rank summed products
of other vectors into every rank's, a wrong answer and no error. So each product first exchanges a
small header (what this rank is doing, the product's column count, a fingerprint of its vectors),
and an estimator ends with one more (done, or refused with this rank's error): ranks that differ
raise the same error everywhere. One allreduce of a few float64 per product.
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np

from .. import _backend
from .agreement import _raise_any, _said, extremes, first_unlike

PRODUCT, DONE, REFUSED = 1, 2, 3
_SAID = {PRODUCT: "asks for another product", DONE: "has finished its estimator", REFUSED: "refused its estimator"}
_SAME = "every rank runs the same estimator with the same arguments: num_matvecs, k, seed, v0, ..."


class OtherVectors(ValueError):
    """The error every rank raises where a product's vectors differ between the ranks (the same
    count of them): ``rank`` is the first rank whose vectors are not rank 0's. Callers that compared
    an input through a product's header (``hessian._lockstep.same_on_every_rank``) name their
    argument from it: they matched the message's text before, which any rewording broke."""

    def __init__(self, message: str, rank: int) -> None:
        super().__init__(message)
        self.rank = rank

    def __reduce__(self):  # (pickled with its rank: the default would call OtherVectors(message))
        return type(self), (str(self), self.rank)


def fingerprint(x, whole: bool = False) -> float:
    """A 48-bit hash of about 32 rows of ``x`` (a vector or a block of columns), as a float64
    (exact in the header). Every rank running the same estimator multiplies the same bits (the
    products are summed in rank order); vectors made from another seed differ in about half of
    their entries, so 32 rows tell them apart. ``whole``: of every row, for an input compared once
    (``hessian._lockstep.same_on_every_rank``): a gradient that differs in a few entries between
    the ranks passed the 32 rows, and each rank returned another fraction, no error."""
    n = int(x.shape[0])
    sample = x if whole else x[:: max(1, n // 32)]
    rows = _backend.to_numpy(sample) if _backend.is_cupy(sample) else np.asarray(sample)
    h = hashlib.blake2b(np.ascontiguousarray(rows).tobytes(), digest_size=6).digest()
    return float(int.from_bytes(h, "little"))


class Lockstep:
    """The headers of one distributed operator's products and estimators (see the module doc)."""

    def __init__(self, comm):
        self.comm = comm
        self.depth = 0  # estimators running (one may call another: only the outermost ends with a header)

    def __deepcopy__(self, memo) -> Lockstep:
        # (a copied operator's products still run through this one, held by their closures: the
        # copy's estimators must count and mark errors in the same object)
        return self

    def product(self, x, whole: bool = False) -> None:
        """Before a product of ``x`` (``(n,)`` or ``(n, k)``): the ranks agree they all make it
        (``whole``: comparing every row of ``x``, see :func:`fingerprint`)."""
        self._header(PRODUCT, 1 if x.ndim == 1 else int(x.shape[1]), fingerprint(x, whole))

    @contextlib.contextmanager
    def estimator(self):
        """Around an estimator: its end (its result, or its error) agreed across the ranks."""
        self.depth += 1
        try:
            yield
        except Exception as e:
            self.depth -= 1
            # (an error a header raised was raised on every rank from that header: another header
            # for it would wait for ranks that have left)
            if self.depth == 0 and not self._from_header(e):
                self._header(REFUSED, 0, 0.0, e)
            raise
        self.depth -= 1
        if self.depth == 0:
            self._header(DONE, 0, 0.0)

    def _header(self, state: int, columns: int, fp: float, err: Exception | None = None) -> None:
        """One allreduce (max of each value and its negative: every rank sees whether any differs);
        only when some do are the ranks' headers exchanged, and every rank raises."""
        comm = self.comm
        if comm.size == 1:
            return
        values = (float(state), float(columns), fp)
        try:  # ("allreduce": the product's first collective)
            hi, lo = extremes(comm, list(values), "allreduce", "a distributed curvature estimator")
        except (RuntimeError, TypeError, ValueError) as e:  # (ranks in other calls, a rank that refused
            # its comm: raised on every rank, no header follows)
            e._optkern_lockstep = self  # type: ignore[union-attr]
            raise
        if all(hi == lo):  # every rank alike (refused on every rank: each raises its own)
            return
        got = comm.allgather_object((values, _said(err)))
        bad = err if err is not None else _apart([v for v, _ in got], [s for _, s in got])
        # (marked, not kept here: a kept error would keep its traceback's frames and their arrays alive)
        bad._optkern_lockstep = self  # type: ignore[attr-defined]
        raise bad

    def _from_header(self, e: BaseException | None) -> bool:
        """Whether ``e`` (or an error it was raised from) is one a header of this operator raised."""
        while e is not None:
            if getattr(e, "_optkern_lockstep", None) is self:
                return True
            e = e.__cause__ or e.__context__
        return False


def _apart(headers: list, said: list) -> Exception:
    """The error every rank raises for headers that differ: the refusing rank's error first."""
    try:
        _raise_any(None, said)
    except (TypeError, ValueError, RuntimeError) as e:
        return e
    states = [int(h[0]) for h in headers]
    r = first_unlike(states)
    if r is not None:
        return ValueError(f"op: rank {r} {_SAID[states[r]]}, rank 0 {_SAID[states[0]]} ({_SAME})")
    r = first_unlike(headers) or 0  # (some header differs: _header compared them)
    if headers[r][1] != headers[0][1]:
        what = f"a product of {int(headers[r][1])} vectors on rank {r}, of {int(headers[0][1])} on rank 0"
        return ValueError(f"op: {what} ({_SAME})")
    return OtherVectors(f"op: rank {r} multiplies other vectors than rank 0 ({_SAME})", r)
