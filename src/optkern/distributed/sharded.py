"""``ShardedOptimizer``: ZeRO stage 1 (Rajbhandari et al. 2020, DeepSpeed) over any optkern optimizer.

The parameters live in one flat buffer, padded to ``world * chunk`` elements; rank ``r``
owns elements ``[r * chunk, (r + 1) * chunk)`` and keeps the optimizer state of that slice
only. With 8-bit states (``state_dtype="int8"``) ``chunk`` is whole quantization blocks, a
parameter cut by a rank boundary starts at a multiple of the block and each parameter's piece of
a slice is an array of its own: every block is one of the unsharded optimizer's blocks, so the
codes (and the steps) are its own at any world size. A step:
the gradients are packed into a flat buffer and reduce-scattered (each rank receives its
slice, summed over ranks), the wrapped optimizer steps on the slice (views of
the flat buffer, one view per parameter group: a slice may cut through arrays), and the
slices are all-gathered back into every rank's flat buffer.
"""

from __future__ import annotations

import contextlib

from .. import _backend
from ..optim import AdagradNorm
from ..optim._given import FollowsTensors, _bump_torch_versions
from . import (
    hyper_check,
    sharded_copy,
    sharded_groups,
    sharded_norm,
    sharded_reduce,
    sharded_setup,
    sharded_state,
)
from .agreement import (
    agree,
    check_comm_kinds,
    comm_kind,
    reduce_mode,
    refuse_together,
)
from .communicator import as_communicator
from .data_parallel import _grad_weight, check_grads, check_optimizer_step, steps_from_closure
from .data_parallel_args import refuse_torch_optimizer
from .groups import grown
from .params import check_same_params
from .sharded_checkpoints import ShardedCheckpoints


class ShardedOptimizer(FollowsTensors, ShardedCheckpoints):
    """ZeRO-1: the state of ``optimizer_class`` split over the ranks (≈ 1/world of it per rank).

    Args:
      optimizer_class: an ``optkern.optim`` optimizer class (``optkern.optim.AdamW``, ...).
      params: this rank's replica of the parameters (a list of arrays, or of group dicts
        with per-group hyper-parameters); one dtype (float32 or float64, or float16 / bfloat16 with
        ``master_weights=True``: each rank keeps the float32 master of its slice) and one kind
        (NumPy or CuPy), the same arrays, groups and hyper-parameters on every rank (checked
        at construction: ValueError on every rank) and the same values before each step
        (:func:`broadcast_params`, before or after construction: each step reads this rank's
        slice from its own arrays). Any count of elements: the flat buffer is padded to a
        multiple of the world size (with ``state_dtype="int8"``, to whole blocks per rank, and an
        array cut by a rank boundary starts at a multiple of ``block_size``, so that the 8-bit
        steps are the unsharded optimizer's, bit for bit, at any world size: at most
        ``block_size - 1`` zeros per rank boundary in the flat parameter and gradient buffers,
        none in the state).
      comm: a :class:`Communicator` (``ordered=True``: bitwise equal to
        :class:`DistributedOptimizer` with the same optimizer) or an mpi4py communicator.
      op, grad_weight: as for :class:`DistributedOptimizer`.
      **hyper: the optimizer's hyper-parameters (``lr=...``). Changed later through
        ``param_groups`` (schedules), they must change alike on every rank: each step compares
        them (a hash, one small allreduce) and raises ValueError on every rank where they differ.

    The arrays passed in are the parameters, as for an unsharded optimizer: each ``step``
    reads this rank's slice from them (so weights loaded into them in place, e.g. by
    ``optkern.load(path, opt=opt, params=params)``, are what the step continues from) and
    leaves the updated values in them on every rank (with ``master_weights``, once a slice has
    stepped its float32 master holds the weights, as in an unsharded optimizer: it is in the
    checkpoints). ``opt.params`` are views of the flat
    buffer with the same shapes, holding the last step's values: read them, but write the
    arrays passed in (the next step reads those, not these). ``param_groups`` are the local
    optimizer's groups (hyper-parameters per group, for schedules; their ``params`` are this
    rank's slices). ``synchronize(grads)`` returns this rank's slice of the averaged
    gradient (a list of arrays that knows its place among the params), e.g. for
    ``clip_grad_norm_(shard, max_norm, comm=comm)``, then step inside ``with
    opt.skip_synchronize():``: the unsharded clip and step, bit for bit (that list itself, not a
    copy: the norm takes the params' own chunks across the ranks' boundaries, sharded_clip).

    The params must stay the same on every rank: each step reads this rank's slice from its own
    copy, and the all-gather gives every rank the slices the others read from theirs (weights
    loaded or changed on some ranks only end up half taken, silently: no step compares the params,
    a pass over them every step). To look for it, set ``opt.check_replicas = True`` on every rank
    (a debug mode, as :class:`DistributedOptimizer`'s, sharing its code: each step hashes the
    params and the hash rides in the step's hyper-parameter allreduce): params that differ raise
    ValueError on every rank, naming one, before anything is stepped. (The slices of the gradient
    differ by design: clip them with ``comm=``, which takes the global norm.)

    AdaGrad-Norm's ``||g||^2`` is summed over the ranks' slices (rank-ordered, so ``b^2`` is
    the same on every rank); its float64 sum is rounded differently than one process's.
    """

    def __init__(self, optimizer_class, params, comm, *, op: str = "mean", grad_weight=None, **hyper):
        self.comm = comm = as_communicator(comm)
        # this rank's arguments checked first, the outcome agreed on: a rank refusing its arrays (or
        # its own grad_weight, for uneven shards) must not leave the others waiting in the
        # exchanges below
        groups, kinds = agree(
            comm, lambda: (self._parse(optimizer_class, params, op, grad_weight), comm_kind(comm)), "ShardedOptimizer()"
        )
        check_comm_kinds(kinds)
        self._class, self._hyper = optimizer_class, hyper
        self._build(groups)
        self._skip = False
        self._synced = False
        self.check_replicas = False

    def _build(self, groups: list) -> None:
        """The buffers, slices and local optimizer for ``groups`` (the user's groups; their arrays are
        ``self._user``), at construction and when groups are added. Collective, checks agreed."""
        check_same_params(self._user, self.comm)
        p0 = self._user[0]
        self.numel = sum(int(p.size) for p in self._user)
        self.world, self.rank = self.comm.size, self.comm.rank
        self._copies = None  # (sharded_copy's plan of the step's copies: made again for this layout)
        # (the order of their elements in the flat buffer, compared at every step)
        self._layouts, self._layout_words = sharded_copy.layouts(self._user)
        # 8-bit states are quantized in blocks from each param's element 0: the slices are whole
        # blocks, a param cut by a rank boundary starts at a block multiple and each param's piece
        # of a slice is an array of the local optimizer, so that every block is one of the
        # unsharded optimizer's (else the codes depended on the world size)
        align = sharded_setup.align_of(self._hyper)
        self._offs, span, self.chunk = sharded_setup.layout(self._user, align, self.world)
        xp = _backend.array_module(p0)
        with _backend._device_of(p0):
            self._flat = xp.zeros(self.chunk * self.world, dtype=p0.dtype)
            self._gflat = xp.zeros(self.chunk * self.world, dtype=p0.dtype)
        self._ranges: list[tuple[int, int]] = []  # each group's [lo, hi) in the flat buffers
        self.params, k = [], 0
        for g in groups:
            n = len(g["params"])
            ends = [(o, o + p.size) for o, p in zip(self._offs[k : k + n], g["params"])]
            for (o, e), p in zip(ends, g["params"]):
                v = self._flat[o:e].reshape(p.shape)
                v[...] = p
                self.params.append(v)
            at = self._offs[k] if n else (self._ranges[-1][1] if self._ranges else 0)
            self._ranges.append((at, ends[-1][1] if n else at))
            k += n
        self._counts = [len(g["params"]) for g in groups]
        self._gviews = [self._gflat[a : a + p.size].reshape(p.shape) for a, p in zip(self._offs, self._user)]
        self.lo = min(self.rank * self.chunk, span)
        self.hi = min(self.lo + self.chunk, span)
        # (param, first, stop) in its C order, with the flat offset: the pieces of this rank's slice
        self._own = sharded_setup.own_pieces(self._user, self._offs, self.lo, self.hi)
        with _backend._device_of(p0):
            self._shard = xp.zeros(self.chunk, dtype=p0.dtype)  # this rank's reduced gradient slice
        base = self.rank * self.chunk
        self._slices = []  # per group: (a, b) in flat coordinates, a == b when this rank holds none
        self._pieces = []  # per group: the local optimizer's arrays, (a, b) in flat coordinates
        local_groups, self._local_grads, first = [], [], 0
        for g, (g_lo, g_hi) in zip(groups, self._ranges):
            a, b = max(self.lo, g_lo), min(self.hi, g_hi)
            a, b = (a, b) if a < b else (a, a)
            self._slices.append((a, b))
            n = len(g["params"])
            cuts = sharded_setup.pieces_of(a, b, g["params"], self._offs[first : first + n], align)
            first += n
            self._pieces.append(cuts)
            self._local_grads += [self._shard[c - base : e - base] for c, e in cuts]
            local = [self._flat[c:e] for c, e in cuts]
            local_groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": local})
        # built on every rank, then the layout compared: each rank's groups and hyper-parameters
        # decide how it steps its own slice, so they must be everyone's (the local optimizer can
        # also refuse its slice on one rank only, e.g. a hyper-parameter checked against dtypes)
        make = self._local
        self.optimizer, sigs = agree(self.comm, lambda: make(self._class, local_groups, self._hyper), "the shards")
        # stochastic rounding's Philox counters: each element of a local param (a group's slice)
        # draws its unsharded element's word, as the unsharded optimizer numbers them (numbered from
        # 0 on every rank, each rank rounded its slice with the first slice's words, and the ranks'
        # roundings correlated; numbered by the flat offset, a param after an 8-bit state's
        # alignment gap drew other words than in the unsharded optimizer)
        if hasattr(self.optimizer, "_element_starts"):
            arrays = [cut for cuts in self._pieces for cut in cuts]
            starts, runs = sharded_setup.element_numbering(arrays, self._user, self._offs)
            self.optimizer._element_starts, self.optimizer._element_runs = starts, runs
        hyper_check.check_same_groups(sigs)
        # and at every step (a change on one rank only diverges silently): one allreduce of a hash
        self._hyper_check = hyper_check.HyperCheck(self.optimizer, self._counts, self.comm, sigs[self.rank])
        self._hyper_check.replicas = "params"  # (check_replicas compares the params the slices are read from)
        self._sq_by_group: list = []
        self._adagrad_norm = isinstance(self.optimizer, AdagradNorm)
        if self._adagrad_norm:
            self.optimizer.global_sq_norm = self._global_sq_norm

    def _parse(self, optimizer_class, params, op, grad_weight) -> list:
        """The groups of ``params``, their arrays (``self._user``) and the other arguments checked
        on this rank."""
        if not isinstance(optimizer_class, type) or not hasattr(optimizer_class, "step"):
            raise TypeError(f"optimizer_class: expected an optkern optimizer class, got {optimizer_class!r}")
        refuse_torch_optimizer(optimizer_class, "optimizer_class", "an optkern.optim optimizer class")
        if steps_from_closure(optimizer_class):
            # (its line search / CG / ascent step need the whole gradient and loss; a slice's
            # optimizer made from groups refused them with messages naming params or base)
            raise TypeError(
                f"optimizer_class: {optimizer_class.__name__} steps from a closure over all the params, which "
                "ZeRO-1 cannot shard: wrap it in DistributedOptimizer (it averages the closure's results)"
            )
        if not isinstance(op, str) or op not in ("mean", "sum"):
            raise ValueError(f"op: expected 'mean' or 'sum', got {op!r}")
        self.op = op
        self.grad_weight = _grad_weight(grad_weight)
        groups, given = sharded_setup.groups_of(params)
        self._user = [p for g in groups for p in g["params"]]
        self._given_tensors = self._track(given, self._user)  # (followed to new memory: sharded_setup)
        sharded_setup.check_params(self._user)
        return groups

    def _local(self, optimizer_class, local_groups, hyper) -> tuple:
        """(the local optimizer of this rank's slices, its layout signature for the other ranks)."""
        opt = optimizer_class(local_groups, **hyper)
        return opt, hyper_check.signature(opt, self._counts)

    # ---- copies ----------------------------------------------------------------------------

    # The views of the flat buffers (``params``, the local optimizer's slices, the gradient views)
    # are arrays of their own to pickle and ``copy.deepcopy``: copied one by one they no longer
    # see the copied buffers, and the copy's steps updated arrays its all-gather never wrote. So
    # they are left out of the copied state and made again on the copied buffers. (The
    # communicator is copied as the rest: an mpi4py communicator copies to the same one, so a
    # copy made alike on every rank steps with the other ranks' copies.)
    # (a copy follows no tensor: its params are arrays of its own, as optim's copies)
    _VIEWS = ("params", "_gviews", "_local_grads", "_copies", *FollowsTensors._FOLLOWED)

    def __getstate__(self) -> dict:
        return {k: v for k, v in vars(self).items() if k not in self._VIEWS}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        sharded_setup.views_again(self)

    # ---- the optimizer's face -----------------------------------------------------------

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def __repr__(self) -> str:
        return (
            f"ShardedOptimizer({type(self.optimizer).__name__}, {self.numel} elements, rank {self.rank} "
            f"owns [{self.lo}, {self.hi}), {self.comm!r})"
        )

    def state_bytes(self) -> int:
        """Bytes of optimizer state arrays held by this rank."""
        return sharded_state.state_bytes(self.optimizer)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (a dict with ``"params"``, this rank's replica of the arrays, and
        optional hyper-parameters) on every rank, as torch's ZeroRedundancyOptimizer does. Collective.

        The new arrays go at the end of the flat buffer, so every rank's slice moves: the state is
        consolidated on every rank (transiently the whole state on each) and resharded into the new
        slices; the steps go on as an unsharded optimizer's after its ``add_param_group``. A group
        refused on one rank (another shape or dtype than the other ranks', bad hyper-parameters)
        raises on every rank and leaves every rank as it was. A group added to the local optimizer
        (``opt.optimizer``) directly, alike on every rank, is followed the same way at the next
        ``step`` / ``synchronize`` / ``consolidate_state_dict`` / ``load_state_dict``."""
        self.comm._live("add_param_group")
        group, given = agree(self.comm, lambda: (sharded_groups.new_group(self, param_group), None), "add_param_group")[
            0
        ]
        sharded_groups.regroup(self, sharded_groups.user_groups(self) + [group])
        n = len(group["params"])
        tensors = self._track(given, self._user[-n:] if n else [], len(self._user) - n)
        self._given_tensors = [*getattr(self, "_given_tensors", ()), *tensors]

    def _follow(self, where: str, err=None, mode: int | None = None, same: tuple = (), call: str | None = None) -> bool:
        """Whether a group was added to the local optimizer directly, agreed (with ``err`` and ``mode``
        as :func:`.agreement.refuse_together` agrees them: a count of groups that differs between
        ranks raises on every rank), and if so the optimizer re-sharded for it on every rank."""
        added = grown(self.optimizer, self._counts)
        refuse_together(self.comm, err, where, mode, (("param_groups", len(self.optimizer.param_groups)), *same), call)
        if added:
            groups = sharded_groups.user_groups(self) + sharded_groups.added_directly(self)
            sharded_groups.regroup(self, groups)
        return added

    # ---- a step ---------------------------------------------------------------------------

    def synchronize(self, grads) -> list:
        """Reduce-scatter ``grads``: returns this rank's slice of the average (one array per group
        it holds part of -- with 8-bit states, per array it holds part of --, or one empty array;
        views of an internal buffer). ``grads`` are not
        modified. Collective: gradients refused on one rank raise on every rank, as in
        :meth:`DistributedOptimizer.synchronize`."""
        self.comm._live("synchronize")  # (before the gradients are copied into the flat buffer)
        err = w = checked = None
        try:
            if not grown(self.optimizer, self._counts):  # (else checked once it is followed, below)
                sharded_copy.check_layouts(self)
                checked, w = check_grads(grads, self._user), self._weight()
        except (TypeError, ValueError) as e:
            err = e
        # (every rank: a rank alone with a bad gradient raised while the others waited in the
        # reduce-scatter forever; one small allreduce, as the step's hyper-parameter check, which
        # also compares the counts of groups: one added on some ranks only raises on all)
        if self._follow("synchronize", err, reduce_mode(self.op, self.grad_weight)):
            return self.synchronize(grads)
        assert checked is not None
        return sharded_reduce.reduce_scatter(self, checked, w)

    def _weight(self):
        return _grad_weight(self.grad_weight, (self._gflat.dtype,))

    @contextlib.contextmanager
    def skip_synchronize(self):
        """Inside: ``step`` uses the slice from your last ``synchronize`` (e.g. after clipping it)."""
        self._skip = True
        try:
            yield self
        finally:
            self._skip = False

    def _check_step(self, grads) -> None:
        """``grads`` (the whole params', not this rank's slices) as this step checks them
        (``amp.GradScaler`` asks before unscaling them in place: against ``param_groups``, the
        local slices, every full-size gradient was refused; with a group added to ``opt.optimizer``
        directly, the step's layout once it follows it)."""
        added = [p for g in sharded_groups.added_directly(self) for p in g["params"]]
        check_grads(grads, self._user + added)

    def step(self, grads=None) -> None:
        """Reduce-scatter the gradients (unless skipped), step on the own slice, all-gather the params."""
        # the local step's own checks (hyper-parameters, its arrays) first: a step it would refuse
        # must not find the gradients reduced (they are this step's buffers, not the user's). The
        # outcome goes into the hyper-parameter check's allreduce, which every rank makes: a rank
        # alone with a bad value (an lr < 0 set on one rank, a gradient of another shape) raised
        # while the others waited in that allreduce or the reduce-scatter forever; now every rank
        # raises, at no extra message.
        self.comm._live("step")  # (after MPI.Finalize(): before the step's first copy, at any world size)
        if grown(self.optimizer, self._counts):
            sharded_groups.step_grown(self, grads)
            return
        err: Exception | None = None
        w, debug = None, False
        if self._skip and not self._synced:  # (agreed below: every rank raises it)
            err = RuntimeError(
                "step: inside skip_synchronize() but synchronize(grads) was not called since the last step"
            )
        try:
            sharded_setup.follow_tensors(self)  # (a tensor given new memory: read and written there)
            sharded_copy.check_layouts(self)  # (a param reshaped in place: before any copy or collective)
            check_optimizer_step(self.optimizer, self._local_grads)
            if not self._skip:
                if grads is None:
                    raise ValueError("grads: required outside skip_synchronize()")
                grads, w = check_grads(grads, self._user), self._weight()
            debug = hyper_check.check_replicas_flag(self)  # (a bad one: refused together)
        except (TypeError, ValueError) as e:
            err = e
        # (check_replicas, a debug mode: the params' hash rides in the allreduce below)
        digest = hyper_check.grads_digest(self._user) if debug and err is None else None
        # (every rank, before any collective of this step: an error on one rank raises on every
        # rank, as does a step inside skip_synchronize() on some ranks only)
        self._hyper_check(err, self._skip, reduce_mode(self.op, self.grad_weight), digest)
        if not self._skip:
            sharded_reduce.reduce_scatter(self, grads, w)
        self._read_params()
        if self._adagrad_norm:
            sharded_norm.reduce_sq_norms(self)
        self.optimizer.step(self._local_grads)
        self._synced = False
        own = self._flat[self.rank * self.chunk : (self.rank + 1) * self.chunk]
        self.comm.allgather(own, out=self._flat, check=False)
        sharded_copy.write_params(self)
        # (written through views autograd does not see: a graph that saved them refuses its backward,
        # as after torch's in-place step, instead of using the new values silently)
        _bump_torch_versions(getattr(self, "_given_tensors", []))

    def _read_params(self) -> None:
        """This rank's slice of the flat buffer from the arrays passed in, before its step.

        Those arrays are the parameters (as for an unsharded optimizer): whatever changed them
        since the last step -- a checkpoint's weights loaded in place, ``broadcast_params`` after
        construction, a re-initialisation -- is what this step updates, instead of the flat
        buffer's stale copy overwriting it. It costs one copy of 1/world of the parameters,
        against the step's own copies of all of them (gradients in, parameters out)."""
        sharded_copy.read_params(self)

    def _global_sq_norm(self, params, grads) -> float:
        """The group's reduced ``||g'||^2`` (``params``: its slice, or the slice's master)."""
        for gi, grp in enumerate(self.optimizer.param_groups):
            if any(p is params[0] for p in grp["params"]) or sharded_norm.master(self, gi) is params[0]:
                return self._sq_by_group[gi]
        raise AssertionError("a group of the local optimizer without its slice")  # (not reachable)
