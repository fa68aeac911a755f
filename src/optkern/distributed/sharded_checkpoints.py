"""Checkpoints of ``ShardedOptimizer`` (a mixin): this rank's shard (``state_dict``), the whole
state gathered from every rank (``consolidate_state_dict``) and loading either back, collectively
(``load_state_dict``: every rank loads, or none)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import hyper_check, sharded_state
from .agreement import first_unlike, load_together, loaded_apart, state_digest
from .groups import grown
from .sharded_setup import align_of


class ShardedCheckpoints:
    """A mixin of ``ShardedOptimizer`` (its local optimizer, communicator, layout and slices)."""

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...

    def state_dict(self) -> dict:
        """This rank's shard: ``{"zero": layout, "optimizer": the local optimizer's state dict}``.

        Loads back at the same world size; :meth:`consolidate_state_dict` gives a checkpoint
        for any world size (and for an unsharded optimizer).
        """
        if grown(self.optimizer, self._counts):  # (its state dict would hold a group of whole arrays)
            raise RuntimeError(
                "state_dict: a group was added to the local optimizer (opt.optimizer) directly and not yet "
                "followed: the next step, synchronize or consolidate_state_dict re-shards for it "
                "(add groups with opt.add_param_group, which re-shards at once)"
            )
        return {"zero": self._layout(), "optimizer": self.optimizer.state_dict()}

    def _loads_saved(self, kind: str, type_name: str) -> bool:
        """Whether ``optkern.load(path, opt=self)`` takes an entry saved as ``kind`` / ``type_name``
        besides this class's own shards: a consolidated dict saved as plain data
        (``optkern.save(path, opt=z.consolidate_state_dict(to=0))``, the one file that loads at any
        world size) and an unsharded optimizer of the wrapped class, both loaded (and checked) as
        :meth:`load_state_dict` loads them. (Refused before: "holds a saved tree (dict)".)"""
        return (kind == "tree" and type_name == "dict") or (kind == "optimizer" and type_name == self._class.__name__)

    def _layout(self) -> dict:
        return {
            "rank": self.rank,
            "world": self.world,
            "numel": self.numel,
            "chunk": self.chunk,
            "ranges": list(self._ranges),
            "offsets": list(self._offs),
            "shapes": [tuple(p.shape) for p in self._user],
            "dtype": str(self._flat.dtype),
            # (what the offsets and chunk were aligned for: a shard of another storage differs in
            # them, and loading it must say so, not ask for another world size)
            "state_dtype": self._hyper.get("state_dtype", "float32"),
            "block": align_of(self._hyper),
        }

    def consolidate_state_dict(self, to: int | None = 0):
        """The whole optimizer state, in the format of ``optimizer_class(params).state_dict()``;
        8-bit states (``state_dtype="int8"``) as their float32 values, without the codes' format
        keys (4 bytes an element: an unsharded 8-bit optimizer loads them back as its own codes).

        Collective. Returned on rank ``to`` (every rank with ``to=None``), None elsewhere; arrays
        are NumPy copies. It loads into an unsharded optimizer, or into a ShardedOptimizer of
        any world size (``load_state_dict``, re-sharded).
        """
        err = None
        try:  # (a `to` refused on one rank only left the others in the gather)
            if to is not None:
                self.comm._root(to)
        except (TypeError, ValueError) as e:
            err = type(e)(str(e).replace("root:", "to:", 1))
        # (named as the gather it precedes; `to` compared: to=0 on one rank, 1 on another, each waited)
        self._follow("gather_object", err, None, (("to", to if err is None else None),), "consolidate_state_dict")
        return self._consolidated(to)

    def _consolidated(self, to: int | None):
        """consolidate_state_dict's gather and assembly (``to`` agreed, the groups followed)."""
        pieces = sharded_state.local_pieces(self.optimizer, self._pieces)
        if to is None:
            gathered = self.comm.allgather_object(pieces)
        else:
            gathered = self.comm.gather_object(pieces, root=to)
            if self.rank != to:
                return None
        return sharded_state.consolidate(
            gathered, self.optimizer.param_groups, self._ranges, self._counts, self._user, self._offs
        )

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a consolidated state dict (any world size) or this rank's own shard (same world size).

        The optimizer's state only: load the parameters into the arrays passed in (the next
        step reads them). A consolidated dict is checked whole on every rank, as an unsharded
        optimizer checks it (each array its parameter's shape, ...), and the parameters of one
        group must have the same step count and scalars (a group's slice steps as one array):
        every rank loading the same dict raises the same ValueError naming the entry. Collective: a
        dict (or a shard) refused on one rank raises on every rank, and every rank keeps the state
        it had (a refusal on one rank only left the others stepping from the checkpoint, that rank
        from its old state: one optimizer, two states); so does a consolidated dict that differs
        between ranks (compared by a digest: each rank's slices cut from another state)."""
        # (a consolidated dict is the same on every rank: compared; a shard is each rank's own)
        self._follow("load_state_dict")  # (the groups every rank loads into: agreed first)
        shard = not isinstance(state_dict, dict) or "zero" in state_dict  # (not a dict: refused in load)
        opt, pieces = self.optimizer, self._pieces
        digest: Callable[[], object] = lambda: ("consolidated", state_digest(state_dict))  # noqa: E731
        if shard:  # (each rank its own: their steps compared, a mixed checkpoint diverged silently;
            # and their hyper-parameters, as the steps compare them: another lr in one rank's shard
            # loaded, then every step raised "changed after construction on some ranks only")
            digest = lambda: (  # noqa: E731
                "shard",
                (sharded_state.shard_counts(opt, pieces), hyper_check.signature(opt, self._counts)),
            )
        load_together(self.comm, opt, lambda: sharded_state.load(self, state_dict), digest, _loaded_apart)


def _loaded_apart(digests: list) -> ValueError | None:
    """The ValueError for ranks that loaded unlike states (None where they agree): ``digests`` are
    every rank's ``(kind, digest)``. A shard on some ranks and a consolidated dict on others were
    compared digest against digest of the other kind: refused, but with a message made of the
    characters of a hash ("rank 0 at b"), and another message on each rank. Shards: their step
    counts (:func:`sharded_state.shard_counts`), then their hyper-parameters as the steps compare
    them (:func:`hyper_check.signature`)."""
    kinds = [k for k, _ in digests]
    r = first_unlike(kinds)
    if r is not None:
        return ValueError(
            f"state_dict: rank {r} loaded a {kinds[r]} state dict, rank 0 a {kinds[0]} one (load the same "
            "kind on every rank: each rank's own shard, or the same consolidate_state_dict() dict)"
        )
    values = [d for _, d in digests]
    if kinds[0] != "shard":
        return loaded_apart(values)
    bad = sharded_state.shards_apart([counts for counts, _ in values])
    if bad is not None:
        return bad
    try:
        hyper_check.check_same_groups([sig for _, sig in values])
    except ValueError as e:
        return ValueError(f"state_dict: the ranks' shards hold other hyper-parameters: {e}")
    return None
