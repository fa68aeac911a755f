"""``DistributedOptimizer``: data-parallel training, gradients averaged in fused buckets.

Horovod's interface (``synchronize()``, ``skip_synchronize()``) over any optkern
optimizer; PyTorch DDP's buckets for small arrays (few large collectives, not one per
array), large arrays reduced in place (no copies).
"""

from __future__ import annotations

import contextlib

import numpy as np

from .._array_checks import byte_span
from .._clip_checks import _check_no_overlap
from ..optim._closure import steps_from_closure
from . import hyper_check
from .agreement import (
    agree,
    check_comm_kinds,
    first_unlike,
    load_together,
    reduce_mode,
    refuse_together,
    state_digest,
)
from .agreement import optimizer_state_digest as _state_digest
from .buckets import check_slots, make_buckets
from .closure_steps import ClosureSteps
from .communicator import as_communicator
from .data_parallel_args import (
    _grad_weight,
    _local_set_up,
    check_grads,
    check_optimizer_step,
    check_same_sizes,
    native_writable,
)
from .groups import grown, restorable
from .params import check_same_params


class DistributedOptimizer(ClosureSteps):
    """Data-parallel wrapper of an optkern optimizer: every rank steps with the averaged gradient.

    Args:
      optimizer: an ``optkern.optim`` optimizer over this rank's replica of the parameters
        (the same layout, groups, hyper-parameters and low-precision options, the stochastic
        rounding's seed included, and the same state, on every rank: checked here, ValueError on
        every rank; make the values equal with :func:`broadcast_params`). Hyper-parameters
        changed later through ``param_groups`` (schedules) must change alike on every rank:
        each ``step`` compares them (a hash, one small allreduce) and raises ValueError on every
        rank where they differ.
      comm: a :class:`Communicator` (``ordered=True`` for bitwise reproducible averages)
        or an mpi4py communicator.
      bucket_mb: fusion buffer size in MiB: gradients are packed into flat buffers of at
        most this size, one allreduce per buffer. (Blocking calls, one after the other:
        MPICH's non-blocking allreduce progresses only inside MPI calls, so starting all
        buffers first overlapped nothing and took 1.6x as long on 64M floats.)
      direct_kb: a gradient of at least this many KiB is reduced in place, no copies into and
        out of a buffer, when it is C-contiguous (else through a buffer of its own). Packing
        copies a gradient twice, which costs as much as reducing it once; one more
        collective costs about 10 us (MPICH, shared memory). ``float("inf")``: pack all.
      op: ``"mean"`` (average over ranks) or ``"sum"``.
      grad_weight: for uneven shards: this rank's ``local rows / global rows``. Each rank's
        gradient (the mean over its rows) is scaled by it and the results are summed, so
        the step sees the mean over the global batch; a rank with zero rows passes zeros
        and weight 0. Replaces ``op``. Settable between steps (``opt.grad_weight = w``).

    ``step(grads)`` = ``synchronize(grads)`` (averaged gradients written into ``grads``)
    then the wrapped optimizer's step. To work on the averaged gradients first (e.g.
    :func:`optkern.clip_grad_norm_`), call ``synchronize(grads)`` yourself and step inside
    ``with opt.skip_synchronize():`` (on every rank alike: see there, and ``check_replicas``,
    a debug mode that compares the gradients stepped there). Write gradients straight into :meth:`grad_buffers`
    (views of the fusion buffers, and the direct gradients' own buffers) to skip the packing
    copies of small gradients too. Every rank passes an array for every parameter (zeros where
    its part of the batch gave none): a None grad is refused, since the ranks could disagree on
    which parameters have one and the collectives would not match.

    Closure optimizers (``optim.LBFGS``, ``optim.NewtonCG``, ``optim.SAM``): ``step(closure)``,
    ``closure() -> (loss, grads)`` on this rank's rows (a None grad reads as zeros). Each call of
    the closure is averaged as the gradients are (its loss too, reduced alike: the mean, the sum or
    the ``grad_weight``-weighted sum; copied into the fusion buffers, the closure's arrays are not
    written), so with ``ordered=True`` every rank's optimizer sees the same bits and takes the same
    line-search / damping / ascent decisions: the params stay identical on every rank and match one
    process on the concatenated data to rounding. A closure that raises or returns a bad result on
    one rank raises on every rank (that rank's own error; a KeyboardInterrupt there: RuntimeError
    elsewhere), the params put back as the optimizer puts them back alone. Newton-CG needs the
    distributed curvature (``hessian.from_mlp(..., comm=comm)`` or :func:`.curvature.distributed`):
    a rank-local operator gives each rank another CG solution. ``step(grads)`` on them raises
    TypeError before anything is written; so does ``step(closure)`` on the other optimizers.
    """

    def __init__(
        self, optimizer, comm, bucket_mb: float = 25, op: str = "mean", grad_weight=None, direct_kb: float = 256
    ):
        self.comm = as_communicator(comm)
        # this rank's arguments checked, the outcome agreed: a rank alone with a bad one (its own
        # grad_weight, for uneven shards) raised while the others waited in the allgathers below
        # (and the Communicators compared: ordered on some ranks only, their reductions never paired up)
        local = lambda: _local_set_up(self.comm, optimizer, bucket_mb, op, grad_weight, direct_kb)  # noqa: E731
        args, shared = agree(self.comm, local, "DistributedOptimizer()")
        check_comm_kinds([kind for kind, _ in shared])
        check_same_sizes([sizes for _, sizes in shared])
        bucket_mb, direct_kb, self.grad_weight, self._params = args
        self.optimizer = optimizer
        self.op = op
        self._bucket_bytes, self._direct_bytes = int(bucket_mb * 2**20), direct_kb * 2**10
        check_same_params(self._params, self.comm)
        self._counts, self._hyper_check, _ = self._agreed_groups(self._params, len(self._params), state=True)
        self._buckets = make_buckets(self._params, self._bucket_bytes, self._direct_bytes)
        self._skip = False
        self._synced = False
        self.check_replicas = False

    def _agreed_groups(self, params: list, new: int, state: bool = False) -> tuple:
        """(counts per group, the step's :class:`.hyper_check.HyperCheck`, every rank's digest of
        ``params[new:]``), the groups compared across ranks. Collective (one allgather). ``state``
        (at construction): the wrapped optimizer's state compared too (a digest): a rank that had
        stepped, or loaded another checkpoint, before wrapping stepped its replica from another
        step count and moments, and the replicas drifted apart with no error.

        Every rank steps its whole replica with its own groups' values: they must be everyone's,
        at construction and at every step (a group's lr set, or a schedule stepped, on one rank
        only made that replica diverge silently). One allgather here, one small allreduce a step."""
        opt, words = self.optimizer, hyper_check.REPLICA
        counts = [len(g["params"]) for g in opt.param_groups]
        held = (lambda: _state_digest(opt)) if state else (lambda: None)
        got = agree(
            self.comm,
            lambda: (None, (hyper_check.signature(opt, counts, words), state_digest(params[new:]), held())),
            "the optimizer's param groups",
        )
        sigs = [sig for sig, _, _ in got[1]]
        hyper_check.check_same_groups(sigs, words)
        r = first_unlike([s for *_, s in got[1]])
        if r is not None:
            raise ValueError(
                f"optimizer: rank {r} holds another state than rank 0 (stepped or loaded before it was wrapped: "
                "each rank would step its replica from its own; load one checkpoint through this wrapper's "
                "load_state_dict, or wrap fresh optimizers)"
            )
        check = hyper_check.HyperCheck(opt, counts, self.comm, sigs[self.comm.rank], words)
        return counts, check, [d for _, d, _ in got[1]]

    # ---- the optimizer's face -----------------------------------------------------------

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def defaults(self):
        return self.optimizer.defaults

    def state_dict(self) -> dict:
        """The wrapped optimizer's state dict (the same on every rank: save it from one)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Load ``state_dict`` on every rank (collective): the replicas step alike only from the same
        state. A dict refused on one rank, or loading into another state than rank 0's (another
        checkpoint, another step), raises on every rank and leaves every rank's state as it was
        (a refusal on one rank only left the others loaded and stepping on, their replicas apart)."""
        opt = self.optimizer
        load_together(self.comm, opt, lambda: opt.load_state_dict(state_dict), lambda: state_digest(opt.state_dict()))

    def add_param_group(self, param_group: dict) -> None:
        """Add a group to the wrapped optimizer on every rank (collective), as its own
        ``add_param_group`` does, and rebuild the buckets for it.

        Every rank passes its replica's group: the same shapes, dtypes, hyper-parameters and values
        (each rank steps its own replica from them: copy rank 0's with :func:`broadcast_params`
        first). A group refused on one rank (its optimizer's checks, a mismatch with the other
        ranks) raises on every rank and is added on none. A group added to the wrapped optimizer
        directly, alike on every rank, is followed at the next ``step`` / ``synchronize``."""
        self.comm._live("add_param_group")
        opt = self.optimizer
        undo = restorable(opt)

        def add():
            if not callable(getattr(opt, "add_param_group", None)):
                raise TypeError(f"optimizer: {type(opt).__name__} has no add_param_group")
            if grown(opt, self._counts):  # (added directly and not yet followed: agreed in _follow)
                raise ValueError(
                    "param_groups: a group was added to the wrapped optimizer directly and not yet "
                    "followed (step or synchronize first)"
                )
            opt.add_param_group(param_group)
            return None, None

        try:
            agree(self.comm, add, "add_param_group")
            self._follow()
        except (TypeError, ValueError):
            undo()  # (every rank raises: the ranks that had added the group drop it again)
            raise

    def _follow(self) -> None:
        """Buckets, counts and the step's check made again for the wrapped optimizer's groups, after
        a group was added on every rank (collective: every rank calls it at the same point). The new
        arrays must be alike on every rank: layout and values (compared by a digest); nothing of
        this wrapper changes unless they are."""
        opt, old = self.optimizer, len(self._params)
        params = [p for g in opt.param_groups for p in g["params"]]
        check_same_params(params, self.comm)
        counts, check, digests = self._agreed_groups(params, old)
        r = first_unlike(digests)
        if r is not None:
            raise ValueError(
                f"param_groups[{len(self._counts)}:]: the added parameters hold other values on rank {r} than "
                "on rank 0 (each rank steps its own replica from them: copy rank 0's with "
                "broadcast_params(arrays, comm) before adding them)"
            )
        self._params, self._counts, self._hyper_check = params, counts, check
        self._buckets = make_buckets(params, self._bucket_bytes, self._direct_bytes)
        self._synced = False  # (a synchronize before the group was added did not reduce its gradients)

    def __repr__(self) -> str:
        return f"DistributedOptimizer({type(self.optimizer).__name__}, {len(self._buckets)} buckets, {self.comm!r})"

    # ---- gradients ------------------------------------------------------------------------

    def grad_buffers(self) -> list:
        """One array per parameter (its shape and dtype), views of the fusion buffers.

        Gradients written into these are reduced without the copies into and out of the
        buffers; pass this list to ``step`` / ``synchronize``.
        """
        if grown(self.optimizer, self._counts):
            raise RuntimeError(
                "grad_buffers: a group was added to the wrapped optimizer since the buckets were made: "
                "they are made again at the next step or synchronize (or add groups with this wrapper's "
                "add_param_group, which makes them at once)"
            )
        views = [None] * len(self._params)
        for b in self._buckets:
            for i, v in zip(b.index, b.views):
                views[i] = v
        return views

    @property
    def num_buckets(self) -> int:
        return len(self._buckets)

    def synchronize(self, grads) -> None:
        """Average ``grads`` over the ranks, in place (weighted sum with ``grad_weight``).

        Collective. Gradients refused on one rank (another shape or dtype, None, read-only, ...) or
        ranks that reduce differently (``grad_weight`` set on some only, another ``op``) raise on
        every rank before any gradient is written (one small allreduce agrees on it)."""
        self.comm._live("synchronize")  # (asked here: at one rank no collective would ask)
        err, checked = None, None
        added = grown(self.optimizer, self._counts)
        try:
            if not added:  # (grown: checked against the new layout once it is agreed, below)
                checked = self._checked(grads)
        except (TypeError, ValueError) as e:
            err = e
        # (every rank: a rank alone with a bad gradient raised while the others waited in the
        # buckets' allreduce forever; one small allreduce, as the step's hyper-parameter check,
        # which also compares the group counts: a group added on some ranks only raises)
        n = len(self.optimizer.param_groups)
        refuse_together(self.comm, err, "synchronize", reduce_mode(self.op, self.grad_weight), (("param_groups", n),))
        if added:  # (on every rank: the counts agreed)
            self._follow()
            self.synchronize(grads)
            return
        assert checked is not None
        self._reduce(*checked)

    def _checked(self, grads) -> tuple:
        """(grads as a list, the weight): everything ``synchronize`` checks before it writes."""
        grads = check_grads(grads, self._params)
        check_slots(self._buckets, grads)
        if native_writable(grads):
            return grads, _grad_weight(self.grad_weight, (grads[0].dtype,))
        spans = []  # (not decided natively: the Python check, which names what it refuses)
        for i, g in enumerate(grads):
            if isinstance(g, np.ndarray) and not g.flags.writeable:
                raise ValueError(f"grads[{i}]: array is read-only (the average is written into it)")
            lo, hi = byte_span(g)
            if hi > lo:
                spans.append((lo, hi, i))
        _check_no_overlap(spans, grads)  # an array reduced in place twice would be summed twice
        return grads, _grad_weight(self.grad_weight, {g.dtype for g in grads})

    def _check_step(self, grads) -> None:
        """``grads`` as this step checks them (``amp.GradScaler`` asks before unscaling them in place;
        after a group added to the wrapped optimizer directly, against its groups: the step follows
        them, and the buckets' old layout refused every gradient list the step would take)."""
        if grown(self.optimizer, self._counts):
            check_optimizer_step(self.optimizer, grads)
            return
        self._checked(grads)

    def _reduce(self, grads: list, w) -> None:
        op = self.op if w is None else "sum"
        if self.comm.size == 1 and w in (None, 1.0):  # the average of one rank: nothing to do
            self._synced = True
            return
        for b in self._buckets:
            b.reduce(self.comm, grads, op, w)
        self._synced = True

    @contextlib.contextmanager
    def skip_synchronize(self):
        """Inside: ``step`` uses the gradients as they are (after your own ``synchronize``).

        They must stay the same on every rank: a rank that changes its averaged gradients alone
        (clipping them without ``comm=``, so by its own norm) steps its replica with its own, and
        the replicas drift apart silently (no step compares gradients: that would cost a pass
        over them and their bytes every step). To look for it, set ``opt.check_replicas = True``
        on every rank (a debug mode: each step inside this context hashes the gradients and the
        hash rides in the step's hyper-parameter allreduce, no message of its own): gradients
        that differ raise ValueError on every rank, naming one, before anything is stepped. Bit
        equality: ``ordered=True`` averages are bitwise equal on every rank (MPI's own allreduce's
        usually are, without that promise)."""
        self._skip = True
        try:
            yield self
        finally:
            self._skip = False

    def step(self, grads) -> None:
        """Average the gradients over the ranks (unless inside ``skip_synchronize``), then step.

        Every rank checks its gradients and the wrapped optimizer's checks, then the ranks compare
        the outcome with their hyper-parameters (one allreduce of two float64): a step refused on
        one rank (a bad gradient, an lr < 0 there) or hyper-parameters that differ raise on every
        rank, before any gradient is averaged (a rank alone with an error raised while the others
        waited in the buckets' allreduce forever; a rank alone with another lr stepped silently).
        """
        self.comm._live("step")  # (asked here: at one rank no collective would ask)
        if steps_from_closure(self.optimizer):
            return self._closure_step(grads)
        if grown(self.optimizer, self._counts):
            self._step_grown(grads)
            return
        err: Exception | None = None
        w, debug = None, False
        if self._skip and not self._synced:  # (agreed below: every rank raises it)
            err = RuntimeError(
                "step: inside skip_synchronize() but synchronize(grads) was not called since the last step"
            )
        try:
            if not self._skip:
                grads, w = self._checked(grads)
            check_optimizer_step(self.optimizer, grads)  # a refused step must not find grads averaged
            debug = hyper_check.check_replicas_flag(self)  # (a bad one: refused together)
        except (TypeError, ValueError) as e:
            err = e
        # (check_replicas, a debug mode: the stepped grads' hash rides in the step's allreduce below)
        digest = hyper_check.grads_digest(grads) if debug and self._skip and err is None else None
        # (every rank, every step: an error on one rank raises on every rank, as does a step inside
        # skip_synchronize() on some ranks only: the others' reduction would wait for them)
        self._hyper_check(err, self._skip, reduce_mode(self.op, self.grad_weight), digest)
        if not self._skip:
            self._reduce(grads, w)
        self.optimizer.step(grads)
        self._synced = False

    def _step_grown(self, grads) -> None:
        """A step after a group was added to the wrapped optimizer directly: the groups (their counts
        and values, with the new ones) compared in the step's own allreduce -- a rank that added
        none, or another, raises with every rank -- then, on every rank, the buckets made again
        and the step as usual."""
        err: Exception | None = None
        try:
            check_optimizer_step(self.optimizer, grads)  # (the new groups' values, the grads' layout)
        except (TypeError, ValueError) as e:
            err = e
        self._hyper_check.counts = [len(g["params"]) for g in self.optimizer.param_groups]
        self._hyper_check(err, self._skip, reduce_mode(self.op, self.grad_weight))
        self._follow()
        self.step(grads)

    def zero_grad_buffers(self) -> None:
        """Fill the fusion buffers behind :meth:`grad_buffers` with zeros (for gradients that are
        accumulated into them with ``+=``); a buffer not made yet is left unmade."""
        for b in self._buckets:
            if b.allocated():  # a direct gradient's buffer exists once grad_buffers() asked for it
                b.flat.fill(0)
