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

The products alone did not name the argument ("rank 1 asks for another product"), and arguments
that change no product (``grid``, ``sigma``, ``pad`` of ``spectral_density``; ``k`` of
``top_eigenvalues`` where the Krylov space is the same) gave each rank another result, no error.
So an estimator also starts with a header: a fingerprint of its arguments as each rank reads them
(``hessian._lockstep.arguments``). Where they differ the error naming the first one
(:class:`ArgumentsApart`) is raised on every rank before the first product; a rank that refused its
own arguments before then still has its error raised everywhere (it names the bad value).
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np

from .. import _backend
from .agreement import _raise_any, _said, extremes, first_unlike

PRODUCT, DONE, REFUSED, START = 1, 2, 3, 4
_SAID = {
    PRODUCT: "asks for another product",
    DONE: "has finished its estimator",
    REFUSED: "refused its estimator",
    START: "starts an estimator",
}
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


class ArgumentsApart(ValueError):
    """An estimator's argument that differs between the ranks (:meth:`Lockstep.estimator`): raised
    on every rank before its first product, unless a rank refused its own arguments before it (that
    rank's error is then every rank's, as it names the argument and the bad value)."""


class Lockstep:
    """The headers of one distributed operator's products and estimators (see the module doc)."""

    def __init__(self, comm):
        self.comm = comm
        self.depth = 0  # estimators running (one may call another: only the outermost ends with a header)
        self.pending: ArgumentsApart | None = None  # (the outermost estimator's arguments, where they differ)

    def __deepcopy__(self, memo) -> Lockstep:
        # (a copied operator's products still run through this one, held by their closures: the
        # copy's estimators must count and mark errors in the same object)
        return self

    def product(self, x, whole: bool = False) -> None:
        """Before a product of ``x`` (``(n,)`` or ``(n, k)``): the ranks agree they all make it
        (``whole``: comparing every row of ``x``, see :func:`fingerprint`)."""
        if self.pending is not None:  # (every rank knows it: raised alike, agreed at the estimator's end)
            raise self.pending
        self._header(PRODUCT, 1 if x.ndim == 1 else int(x.shape[1]), fingerprint(x, whole))

    @contextlib.contextmanager
    def estimator(self, call: str = "the estimator", fields: tuple = ()):
        """Around an estimator (``call``): its arguments (``fields``, ``(name, text)`` pairs: how
        each rank reads them) compared at its start, its end (its result, or its error) agreed
        across the ranks. Only the outermost estimator's (one may call another)."""
        if self.depth == 0:
            self.pending = None
            if fields:
                self._start(call, fields)
        self.depth += 1
        try:
            yield
        except Exception as e:
            self.depth -= 1
            # (an error a header raised was raised on every rank from that header: another header
            # for it would wait for ranks that have left)
            if self.depth == 0:
                pending, self.pending = self.pending, None
                if not self._from_header(e):
                    # (the pending error, raised by a product, may come wrapped: a composed operator's)
                    apart = pending if pending is not None and _chain_holds(e, pending) else None
                    self._header(REFUSED, int(apart is not None), 0.0, apart or e)
                    if apart is not None:
                        raise apart from None
            raise
        self.depth -= 1
        if self.depth == 0:
            late, self.pending = self.pending, None
            if late is not None:  # (no product made: the ranks' results still differ)
                self._header(REFUSED, 1, 0.0, late)
                raise late
            self._header(DONE, 0, 0.0)

    def _start(self, call: str, fields: tuple) -> None:
        """An estimator's first header: its arguments' fingerprint. Where only the arguments differ
        (every rank starting an estimator), their error is kept for the first product
        (:attr:`pending`): a rank refusing its own arguments before it raises its own there, which
        every rank then raises (it names the bad value, where this error would name the rank)."""
        comm = self.comm
        if comm.size == 1:
            return
        values = (float(START), 0.0, arguments_fingerprint((call, fields)))
        if self._agreed(values):
            return
        got = comm.allgather_object((values, None, (call, fields)))
        headers = [v for v, _, _ in got]
        if first_unlike([int(h[0]) for h in headers]) is None:
            self.pending = _arguments_apart([f for *_, f in got])
            if self.pending is not None:
                return
        bad = _apart(headers, [s for _, s, _ in got], [f for *_, f in got])
        bad._optkern_lockstep = self  # type: ignore[attr-defined]
        raise bad

    def _agreed(self, values: tuple) -> bool:
        """One header (:func:`.agreement.extremes`): whether every rank's ``values`` are the same."""
        try:  # ("allreduce": the product's first collective)
            hi, lo = extremes(self.comm, list(values), "allreduce", "a distributed curvature estimator")
        except (RuntimeError, TypeError, ValueError) as e:  # (ranks in other calls, a rank that refused
            # its comm: raised on every rank, no header follows)
            e._optkern_lockstep = self  # type: ignore[union-attr]
            raise
        return bool(all(hi == lo))  # (refused on every rank alike: each raises its own)

    def _header(self, state: int, columns: int, fp: float, err: Exception | None = None) -> None:
        """One allreduce (max of each value and its negative: every rank sees whether any differs);
        only when some do are the ranks' headers exchanged, and every rank raises. ``err``: this
        rank's error (REFUSED); a refusal of its own comes before an :class:`ArgumentsApart`."""
        comm = self.comm
        if comm.size == 1:
            return
        values = (float(state), float(columns), fp)
        if self._agreed(values):
            return
        got = comm.allgather_object((values, _said(err), None))
        said = [None if s is None or s[0] == ArgumentsApart.__name__ else s for _, s, _ in got]
        if err is not None and (not isinstance(err, ArgumentsApart) or not any(said)):
            bad = err
        else:
            bad = _apart([v for v, _, _ in got], said, [f for *_, f in got])
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


def _chain_holds(e: BaseException | None, x: BaseException) -> bool:
    """Whether ``x`` is ``e`` or an error ``e`` was raised from."""
    while e is not None:
        if e is x:
            return True
        e = e.__cause__ or e.__context__
    return False


def arguments_fingerprint(fields: tuple) -> float:
    """A 48-bit hash of an estimator's ``(name, text)`` arguments, as a float64 (exact in the header)."""
    h = hashlib.blake2b(repr(tuple(fields)).encode(), digest_size=6).digest()
    return float(int.from_bytes(h, "little"))


def _arguments_apart(fields: list) -> ArgumentsApart | None:
    """The error naming the first argument whose text differs from rank 0's (``fields``: every
    rank's ``(call, ((name, text), ...))``, None where a rank's header was no estimator's start)."""
    if any(f is None for f in fields):
        return None
    call, first = fields[0]
    r = first_unlike([f[0] for f in fields])
    if r is not None:
        return ArgumentsApart(f"op: rank {r} runs {fields[r][0]}, rank 0 {call} ({_SAME})")
    for i, (name, text) in enumerate(first):
        r = first_unlike([f[1][i] if i < len(f[1]) else None for f in fields])
        if r is not None:
            theirs = fields[r][1][i][1] if i < len(fields[r][1]) else "nothing"
            return ArgumentsApart(
                f"{name}: {theirs} on rank {r}, {text} on rank 0 (every rank runs {call} over a distributed "
                "operator with the same arguments: its products are collectives)"
            )
    return None


def _apart(headers: list, said: list, fields: list | None = None) -> Exception:
    """The error every rank raises for headers that differ: the refusing rank's error first, then
    an estimator's argument that differs (``fields``: every rank's, see :func:`_arguments_apart`)."""
    try:
        _raise_any(None, said)
    except (TypeError, ValueError, RuntimeError) as e:
        return e
    states = [int(h[0]) for h in headers]
    named = _arguments_apart(fields) if fields else None
    if named is not None:
        return named
    r = first_unlike(states)
    if r is not None:
        return ValueError(f"op: rank {r} {_SAID[states[r]]}, rank 0 {_SAID[states[0]]} ({_SAME})")
    r = first_unlike(headers) or 0  # (some header differs: _header compared them)
    if headers[r][1] != headers[0][1]:
        what = f"a product of {int(headers[r][1])} vectors on rank {r}, of {int(headers[0][1])} on rank 0"
        return ValueError(f"op: {what} ({_SAME})")
    return OtherVectors(f"op: rank {r} multiplies other vectors than rank 0 ({_SAME})", r)
