"""Shuffled mini-batches whose size follows a batch-size schedule.

Pairs with :class:`optkern.schedules.batch_size_schedule` (Smith et al. 2018):
the batch size is looked up once per epoch, so it grows at epoch milestones.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

from . import _backend
from ._pickling import NativeByName

__all__ = ["BatchLoader"]

# What a position inside an epoch means (its examples), in a state taken there
_SETUP = ("n", "batch_size", "shuffle")


def _fixed(b: int, epoch) -> int:
    """A constant batch size (a partial of it pickles, where a lambda does not)."""
    return b


def _batch_size_fn(schedule):
    if isinstance(schedule, numbers.Integral) and not isinstance(schedule, bool):
        return functools.partial(_fixed, _backend.integer("batch_size_schedule", schedule, 1))
    if hasattr(schedule, "batch_size") and callable(schedule.batch_size):
        return schedule.batch_size
    if callable(schedule):
        return schedule
    raise TypeError(
        "batch_size_schedule: expected an int, an object with batch_size(epoch) "
        f"or a callable epoch -> int, got {type(schedule).__name__}"
    )


def _arrays(x, y):
    """``(x, y)`` checked: the constructor's arguments, and the attributes as read (a ``y`` assigned
    longer than ``x`` was paired with its first rows silently, a shorter one failed with NumPy's
    IndexError from inside an epoch then counted as done). A torch tensor or another DLPack exporter
    is read through its NumPy / CuPy view (``_backend.as_array``, zero-copy, as every optkern argument;
    it was refused): batches are gathered from its memory as NumPy / CuPy arrays. Every array goes
    through that one view: a masked array is refused naming it (its batches were masked arrays whose
    mask optkern's steps ignore), a ``np.matrix`` is batched as its plain ndarray."""
    x, y = (_backend.as_array(a, name) for a, name in ((x, "x"), (y, "y")))
    if not (isinstance(x, np.ndarray) or _backend.is_cupy(x)):
        raise TypeError(f"x: expected a numpy or cupy array, got {type(x).__name__}")
    if x.ndim < 1:
        raise ValueError("x: needs a leading example axis, got a 0-d array")
    if y is not None:
        if not (isinstance(y, np.ndarray) or _backend.is_cupy(y)):  # (a list would be named "y[0]")
            raise TypeError(f"y: expected a numpy or cupy array or None, got {type(y).__name__}")
        _backend.backend(("x", x), ("y", y))
        if y.ndim < 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"y: expected {x.shape[0]} examples to match x, got shape {tuple(y.shape)}")
    return x, y


def _epoch_seed(seed: int, epoch: int):
    """The entropy of ``epoch``'s shuffle. NumPy reads ``[seed, epoch]`` as 32-bit words, a trailing
    zero word the same as none: past 2**32, seed ``s + 2**32 j``'s epoch 0 (words ``[s, j, 0]``)
    was seed ``s``'s epoch ``j``. There the epoch is a spawn key, which SeedSequence appends after
    the seed padded to its 4-word pool (seeds below 2**128 stay apart); below 2**32,
    ``[seed, epoch]`` as ever (a one-word seed, so no collision), the shuffles unchanged."""
    if seed < 1 << 32:
        return [seed, epoch]
    return np.random.SeedSequence(seed, spawn_key=(epoch,))


class BatchLoader(NativeByName):
    """Epochs of shuffled mini-batches of ``(x, y)`` (NumPy or CuPy arrays; a torch tensor or other
    DLPack exporter is read through its view, zero-copy, and batched as NumPy / CuPy arrays; a
    ``np.matrix`` as its plain ndarray; a masked array is refused, TypeError naming it).

    Args:
      x: inputs, first axis = examples.
      y: targets with the same first axis, or None (then batches are ``x`` alone).
      batch_size_schedule: an int, a :class:`~optkern.schedules.batch_size_schedule`
        (its ``batch_size(epoch)`` is used) or a callable ``epoch -> int``.
      seed: the shuffle of epoch ``e`` is ``numpy.random.default_rng([seed, e])`` (for a seed
        from 2**32: ``default_rng(SeedSequence(seed, spawn_key=(e,)))``, see ``_epoch_seed``),
        so any epoch can be replayed and a resumed run sees the same batches.
      shuffle: False keeps the data order.
      drop_last: drop a final batch smaller than the batch size.

    Iterating the loader yields one epoch of ``(x_batch, y_batch)`` and then
    advances :attr:`epoch`. Batches are gathered with the arrays' own library
    (the index permutation is moved to the GPU for CuPy arrays). :meth:`state_dict` holds the
    epoch and, taken inside the loop, how many of its batches were handed out: a loader restored
    from it goes on with the next batch, as the run that went on did -- restored inside the loop too
    (a rollback): the loop goes on from the restored batch, or, restored to another epoch, ends
    there (leaving the loop keeps the restored position instead of ending the epoch).
    """

    def __init__(self, x, y=None, batch_size_schedule=32, seed=0, *, shuffle=True, drop_last=False):
        self.x, self.y = _arrays(x, y)
        self._size = _batch_size_fn(batch_size_schedule)
        self.seed = _backend.integer("seed", seed, 0)
        self.shuffle = _backend.flag("shuffle", shuffle)
        self.drop_last = _backend.flag("drop_last", drop_last)
        self.epoch = 0
        # (epoch, batches of it handed out): where an epoch stopped or a restored one resumes; an
        # epoch assigned to `epoch` by hand (another one) starts at its first batch
        self._pos = (0, 0)

    @property
    def n(self) -> int:
        return int(_arrays(self.x, self.y)[0].shape[0])

    def batch_size(self, epoch: int | None = None) -> int:
        """The batch size of ``epoch`` (default: the current one)."""
        e = self._epoch() if epoch is None else _backend.integer("epoch", epoch, 0)
        b = self._size(e)
        if isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 1:
            raise ValueError(f"batch_size_schedule: returned {b!r} for epoch {e}; expected an int >= 1")
        return int(b)

    def __len__(self) -> int:
        """Number of batches in the current epoch."""
        return self._count(self._epoch())

    def _count(self, epoch: int) -> int:
        b = self.batch_size(epoch)
        return self.n // b if self._option("drop_last") else -(-self.n // b)

    # The options are public attributes, assignable as the constructor's arguments: read checked by
    # name, as it checks them ("no" for shuffle or drop_last read as True silently; a seed of -1 or
    # None raised NumPy's or Python's unnamed errors, from inside an epoch already counted as begun).
    def _option(self, name: str) -> bool:
        v = getattr(self, name)
        return v if type(v) is bool else _backend.flag(name, v)

    def _seed(self) -> int:
        s = self.seed
        return s if type(s) is int and s >= 0 else _backend.integer("seed", s, 0)

    def _epoch(self) -> int:
        e = self.epoch  # (assigned by hand: -1 or "2" went into state_dict, refused by its load)
        return e if type(e) is int and e >= 0 else _backend.integer("epoch", e, 0)

    def _taken(self) -> int:
        """Batches of the current epoch handed out (0 unless it stopped or was restored inside it)."""
        e, k = getattr(self, "_pos", (0, 0))  # (a loader pickled before it kept a position: none)
        return k if e == self._epoch() else 0

    def order(self, epoch: int | None = None):
        """The example order of ``epoch`` (a host int64 array)."""
        e = self._epoch() if epoch is None else _backend.integer("epoch", epoch, 0)
        seed = self._seed()
        if not self._option("shuffle"):
            return np.arange(self.n)
        return np.random.default_rng(_epoch_seed(seed, e)).permutation(self.n)

    def batches(self, epoch: int | None = None, start: int = 0):
        """Yield the batches of ``epoch`` from its batch ``start`` on (at most its batch count), without
        changing :attr:`epoch`."""
        e = self._epoch() if epoch is None else epoch
        b = self.batch_size(e)
        x, y = _arrays(self.x, self.y)
        start = _backend.integer("start", start, 0)
        drop_last = self._option("drop_last")
        count = self.n // b if drop_last else -(-self.n // b)
        if start > count:  # (as load_state_dict's batch: past the end was an empty epoch, silently)
            raise ValueError(f"start: batch {start}, but epoch {e} has {count}")
        idx = _backend.array_module(x).asarray(self.order(e))
        stop = self.n - self.n % b if drop_last else self.n
        for s in range(start * b, stop, b):
            i = idx[s : s + b]
            yield x[i] if y is None else (x[i], y[i])

    def __iter__(self):
        e = self._epoch()
        self.batch_size(e)  # a schedule's bad size raises here, before the epoch counts as begun
        self._seed(), self._option("shuffle"), self._option("drop_last")  # (and options assigned since)
        _arrays(self.x, self.y)
        k = self._taken()
        mine = getattr(self, "_pos", None)  # (a loader pickled before it kept a position: none)
        try:
            while True:
                for batch in self.batches(e, k):
                    k += 1
                    # (counted when handed out: a state dict taken in the loop resumes after it)
                    self._pos = mine = (e, k)
                    yield batch
                    if self._pos is not mine or self.epoch != e:  # (loaded or assigned in the loop body)
                        break
                else:
                    break  # (the epoch's batches all handed out)
                if not self._restored_within(e):
                    break
                mine, k = self._pos, self._taken()
        finally:
            # the epoch done (or left early), unless the loop restored another position meanwhile
            # (load_state_dict, as a rollback on a NaN loss does, or an epoch assigned): advancing
            # overwrote it, and the restored run skipped the rest of its epoch
            if self.epoch == e and getattr(self, "_pos", None) is mine:
                self.epoch, self._pos = e + 1, (e + 1, 0)

    def _restored_within(self, e: int) -> bool:
        """Whether a position restored inside the loop over epoch ``e`` (``load_state_dict``, as a
        rollback on a NaN loss does) is in ``e``: the loop goes on from it. The loop went on after its
        own batch instead and recorded that over the restored one, the rollback lost. Another epoch
        (or one assigned) ends the loop there: the next loop starts from it."""
        return self.epoch == e and self._pos[0] == e

    def state_dict(self) -> dict:
        """The epoch, the seed and ``batch``: how many of the epoch's batches were handed out (0 outside
        the loop over it). Inside it, also what those batches were cut from: ``n`` examples, the
        epoch's ``batch_size`` and ``shuffle`` (a loader set up otherwise would have resumed at other
        examples: :meth:`load_state_dict` converts or refuses). Those three keys are newer than the
        position: an older optkern refuses them ("unknown key 'n'"), and a mid-epoch state loads only
        into this version or later, with the same ``n`` and ``shuffle``. A state taken at an epoch's
        boundary (before or after the loop over an epoch) holds ``epoch``, ``seed`` and ``batch`` = 0
        alone, which every version since the position was kept loads: take a checkpoint there to
        move it to an older optkern."""
        state = {"epoch": self._epoch(), "seed": self._seed(), "batch": self._taken()}
        if state["batch"]:
            state.update(n=self.n, batch_size=self.batch_size(), shuffle=self._option("shuffle"))
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`; the whole of ``state`` is checked before anything changes.

        A position inside an epoch resumes at the next example the saved loader would have handed
        out: under another batch size as well when the examples handed out are whole batches of it
        (else ValueError naming ``batch_size_schedule``); another dataset length or ``shuffle`` has
        another order, refused naming ``x`` / ``shuffle`` (unless every example was handed out: a state
        taken after the epoch's last batch loads at that epoch's end into any loader). ``drop_last``
        only decides the epoch's end: this loader's own applies to the rest of it."""
        # (an unknown key refused: {"epoch": 3, "seed": 1, "btach": 5} restarted the epoch silently)
        _backend.state_keys(state, ("epoch", "seed"), ("batch", *_SETUP), "a BatchLoader's")
        epoch = _backend.integer("state['epoch']", state["epoch"], 0)
        seed = _backend.integer("state['seed']", state["seed"], 0)
        # (a state saved before loaders kept a position has no 'batch': the epoch from its start)
        batch = _backend.integer("state['batch']", state.get("batch", 0), 0)
        setup = self._saved_setup(state)
        if batch and setup is not None:
            batch = self._resumed_batch(epoch, batch, *setup)
        elif batch:  # (a state from before the setup was saved: batches of this loader, as then)
            count = self._count(epoch)
            if batch > count:
                raise ValueError(f"state['batch']: {batch} batches taken, but epoch {epoch} has {count}")
        self.epoch, self.seed, self._pos = epoch, seed, (epoch, batch)

    @staticmethod
    def _saved_setup(state: dict):
        """``(n, batch_size, shuffle)`` of a state taken inside an epoch, checked; None if it has none."""
        given = [k for k in _SETUP if k in state]
        if not given:
            return None
        for k in _SETUP:
            if k not in state:
                raise ValueError(f"state: missing {k!r} (it holds {', '.join(repr(g) for g in given)})")
        return (
            _backend.integer("state['n']", state["n"], 0),
            _backend.integer("state['batch_size']", state["batch_size"], 1),
            _backend.flag("state['shuffle']", state["shuffle"]),
        )

    def _resumed_batch(self, epoch: int, batch: int, n: int, size: int, shuffle: bool) -> int:
        """This loader's batch of ``epoch`` at which the saved one (``batch`` batches of ``size`` handed
        out from ``n`` examples) goes on. Resumed by batch count alone, another length or shuffle went
        on in another order, another batch size at another example: skipped or repeated ones."""
        count = -(-n // size)
        if batch > count:
            raise ValueError(f"state['batch']: {batch} batches taken, but {n} examples make {count} of {size}")
        taken, b = min(batch * size, n), self.batch_size(epoch)
        if taken == n:  # (all handed out: the epoch's end, whatever its batches, length or order)
            return self._count(epoch)
        if n != self.n:
            raise ValueError(
                f"x: the state is {batch} batches into epoch {epoch} of {n} examples, x has {self.n} "
                "(their order differs: load it at an epoch's end, or into a loader over the same data)"
            )
        if shuffle != self._option("shuffle"):
            raise ValueError(
                f"shuffle: the state is {batch} batches into an epoch with shuffle={shuffle}, "
                f"this loader's is {not shuffle}"
            )
        if taken % b:
            raise ValueError(
                f"batch_size_schedule: gives {b} for epoch {epoch}, but the state's {batch} batches of "
                f"{size} handed out {taken} examples, not a whole number of batches of {b}"
            )
        return taken // b
