"""Stochastic weight averaging (Izmailov et al. 2018) and EMA of parameters,
with torch.optim.swa_utils.AveragedModel's semantics: the first
``update(params)`` copies the params; each later one folds them into the
average in one fused pass (``_cpu.swa_lerp_``, torch._foreach_lerp_'s
formula): ``avg <- lerp(avg, p, 1 / (n + 1))`` for ``mode="swa"`` (the running
mean of the n + 1 iterates) and ``avg <- lerp(avg, p, 1 - decay)`` for
``mode="ema"`` (torch's get_ema_multi_avg_fn).

Against torch's AveragedModel with its multi-tensor averages: float32 (SWA and EMA) and float64 EMA
are the same bits. float64 SWA is not, by choice: torch's ``get_swa_multi_avg_fn`` takes its weight
``1 / (n_averaged + 1)`` from its int64 count tensor, which makes a float32 tensor (torch's default
dtype), while the weight here is the exact double. torch's differs from this average by at most
2**-24 (~6e-8) times the largest ``|p - average|`` an update folded in (each weight's float32 error,
damped by the later updates): ``tests/test_hunt43i_swa_float64.py``. (torch's default on the CPU,
without ``multi_avg_fn``, is ``get_swa_avg_fn``'s ``avg + (p - avg) / (n + 1)``, rounded otherwise.)

A running mean rounds at every update, so its distance from the exact mean of the iterates grows
with their count, in either dtype (as torch's): after 1e4 updates, ~10 ulps of the mean typical
and ~70 at most (``tests/test_hunt46h_swa.py``; the docs said "the mean to float64 rounding").

NumPy or CuPy params (all of one kind): the averages live next to them (CuPy on their device)
and the update runs there (``_cuda.swa_lerp_``, the same rule and the same bits as on the CPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter

import numpy as np

from . import _backend
from ._array_checks import first_sharing, sharing_pairs
from ._atomic import deferring
from ._foreign import shown_values
from ._pickling import NativeByName
from ._serial import serialized
from ._update_bn import update_bn
from .lowp import _option
from .optim._given import _bump_torch_versions, torch_tensors

__all__ = ["AveragedParams", "update_bn"]

_MODES = ("swa", "ema")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_shape, _size = attrgetter("shape"), attrgetter("size")
_STATE_KEYS = ("mode", "decay", "n_averaged", "averages")


def _copy(p):
    """A C-contiguous copy of ``p`` (of its dtype) on its backend and device (C order, as
    ``swa_lerp_`` needs of an average, whatever the order of the array it is made from)."""
    with _backend._device_of(p):
        return _backend.array_module(p).array(p, dtype=p.dtype, copy=True, order="C")


def check_disjoint(arrays: list, names: list) -> None:
    """ValueError naming the later of two of ``arrays`` that share memory: arrays written in
    place one after another would see each other's writes (or one array be written twice).
    Byte ranges are compared first; only arrays whose ranges meet are tested exactly (views that
    interleave, like ``a[::2]`` and ``a[1::2]``, share no element)."""
    pair = first_sharing(arrays)
    if pair is not None:
        raise ValueError(f"{names[pair[1]]}: shares memory with {names[pair[0]]}")


def check_uncrossed(given: list, names: list, own: list, own_name: str) -> None:
    """ValueError naming the first of ``given`` (copied to or from ``own`` one by one, ``given[i]``
    with ``own[i]``) that shares memory with another of ``own`` than its own: one of the copies then
    wrote an array another copy read, or changed an array the call does not write (``copy_to`` into
    the averages crossed left both the first one's values, the average lost), silently. An array
    that is its own counterpart is taken: nothing is read after it was written. Arrays of another
    backend than ``own`` (a host checkpoint for GPU averages) share no memory with them."""
    if not own:
        return
    on_gpu = _backend.is_cupy(own[0])
    index = [i for i, a in enumerate(given) if a is not None and _backend.is_cupy(a) == on_gpu]
    pairs = sharing_pairs([given[i] for i in index] + list(own), apart=len(index))
    # (a pair across the two: the given array first; the first given array named, whatever the memory order)
    crossed = [(index[first], later - len(index)) for first, later in pairs if index[first] != later - len(index)]
    if crossed:
        i, j = min(crossed)
        raise ValueError(
            f"{names[i]} shares memory with {own_name}[{j}] (copied one by one, one copy would change what "
            "another reads)"
        )


def check_finite(arrays: list, name: str) -> None:
    """ValueError naming the first of a checkpoint's ``arrays`` that holds NaN or inf (an average of a
    diverged run: loaded, every later average is NaN too), by the optimizers' rule for such state
    (``_backend.check_finite``)."""
    for i, a in enumerate(arrays):
        _backend.check_finite(a, f"{name}[{i}]")


class AveragedParams(NativeByName):
    """The SWA or EMA average of ``params`` (float32 or float64 NumPy or CuPy arrays, all of one kind
    and one dtype: torch's AveragedModel takes any floating dtype; the average is kept in the params'
    dtype, as torch's; float64 SWA takes the exact weight, not torch's float32 one: the module
    docstring).

    ``mode="swa"``: the running mean of every ``update``'s params; ``mode="ema"``: an exponential
    moving average with ``decay`` in [0, 1] (see the module docstring for the formulas). The
    first ``update`` copies the params. ``averages`` holds the averages (arrays beside the
    params), ``n_averaged`` the updates so far; ``copy_to(params)`` writes the average back.
    """

    def __init__(self, params, mode: str = "swa", decay: float = 0.999):
        self.mode = _option("mode", mode, _MODES)
        self.decay = _backend.in_range("decay", decay, 0.0, 1.0)
        params = _backend.as_list(params, "params")
        for i, p in enumerate(params):
            if not (isinstance(p, np.ndarray) or _backend.is_cupy(p)) or p.dtype not in _DTYPES:
                raise TypeError(
                    f"params[{i}]: expected a float32 or float64 numpy or cupy array, "
                    f"got {getattr(p, 'dtype', type(p).__name__)}"
                )
            # one dtype: swa_lerp_ averages one per call, and a split into per-dtype calls would
            # name its arrays by their place in the split, not in params
            if p.dtype != params[0].dtype:
                raise TypeError(
                    f"params[{i}]: {p.dtype}, but params[0] is {params[0].dtype} "
                    "(an AveragedParams averages one dtype: make one per dtype)"
                )
            # the layout every update's swa_lerp_ reads params in, refused here by the optimizers'
            # rule for params: taken, such a param was refused by every update instead
            if not p.flags.c_contiguous:
                raise ValueError(f"params[{i}]: array must be C-contiguous")
            if (p.data.ptr % p.itemsize != 0) if _backend.is_cupy(p) else not p.flags.aligned:
                raise ValueError(f"params[{i}]: array data is misaligned")
        self._mod = _backend.backend(("params", params))  # (TypeError naming a param of the other kind)
        self.averages = [_copy(p) for p in params]
        self.n_averaged = 0

    @serialized
    def update(self, params) -> None:
        """Fold the current ``params`` (same shapes as at construction) into the average."""
        params = _backend.as_list(params, "params")
        self._check_shapes(params)
        w = self._weight()
        with deferring(sum(map(_size, self.averages))):  # (a Ctrl-C in the kernel: counted, then raised)
            with _backend._device_of(self.averages[0] if self.averages else None):
                self._mod.swa_lerp_(self.averages, params, w)  # (checks every array before it writes)
                if self.n_averaged == 0:
                    # the first update copies, as torch's AveragedModel does: the lerp at weight 1
                    # is p - (p - a) * 0, NaN where the construction-time copy held an inf or NaN
                    # (and +0 for a -0 param), where torch's average is the param
                    for a, p in zip(self.averages, params):
                        a[...] = p
            self.n_averaged += 1

    def _weight(self) -> float:
        """This update's lerp weight (1, an exact copy, for the first), from ``mode``, ``n_averaged``
        and ``decay`` checked by the constructor's and ``load_state_dict``'s rules, naming them: they
        are attributes (an EMA decay warmed up by assigning it), and the kernel takes any weight --
        a decay of 2 extrapolated (weight -1) and a NaN one made every average NaN, silently; a
        count of 2.5 went on as 3.5, and one of None raised after the averages were written."""
        mode = _option("mode", self.mode, _MODES)
        n = _backend.integer("n_averaged", self.n_averaged, lo=0, hi=_backend.INT64_MAX - 1)
        if n == 0:
            return 1.0
        return 1.0 / (n + 1) if mode == "swa" else 1.0 - _backend.in_range("decay", self.decay, 0.0, 1.0)

    def _check_shapes(self, params: list) -> None:
        """``params`` one per average, each of its average's shape, before ``swa_lerp_`` checks the
        rest (kind, dtype, layout, device, aliasing; sizes but not shapes) in
        ``check_list_like``'s wording: compared in C-level passes, the arrays named (by
        ``check_list_like``) only when they differ."""
        try:
            same = list(map(_shape, params)) == list(map(_shape, self.averages))
        except AttributeError:  # (something without a shape: named below)
            same = False
        if not same:
            _backend.check_list_like(params, self.averages, "params", of="average")

    def _like_averages(self, arrays, name: str, written: bool) -> list:
        """``arrays`` checked against the averages, all before anything is written: one per
        average, each an array of its dtype and shape; ``written``: also on the averages' backend (NumPy
        / CuPy), writable, no two elements of one sharing memory, and sharing no memory with one another."""
        arrays = _backend.as_list(arrays, name)
        _backend.check_list_like(arrays, self.averages, name, of="average", kind=written)
        if written:
            for i, p in enumerate(arrays):
                if isinstance(p, np.ndarray) and not p.flags.writeable:
                    raise _backend.read_only(f"{name}[{i}]", p)
                # (a zero-stride view kept the last element written: the average's, in all of them)
                _backend.distinct_elements(p, f"{name}[{i}]")
            check_disjoint(arrays, [f"{name}[{i}]" for i in range(len(arrays))])
        return arrays

    @serialized
    def copy_to(self, params) -> None:
        """Write the average into ``params`` (e.g. before recomputing batch-norm statistics).

        Torch tensors among them are written through NumPy / CuPy views autograd does not see: their
        version counters are bumped, as an optimizer's step bumps its params', so that a graph
        saved before refuses its backward (it differentiated the averaged values silently)."""
        given = _backend.read_once(params)  # (a generator: checked, written and counted alike)
        arrays = self._like_averages(given, "params", written=True)
        check_uncrossed(arrays, [f"params[{i}]" for i in range(len(arrays))], self.averages, "averages")
        for p, a in zip(arrays, self.averages):
            p[...] = a
        _bump_torch_versions(torch_tensors([given] if _backend.is_array(given) else given))

    @serialized
    def state_dict(self) -> dict:
        """``{"mode", "decay", "n_averaged", "averages"}``, the averages as copies (for
        ``load_state_dict`` or ``optkern.save``)."""
        return {
            "mode": self.mode,
            "decay": self.decay,
            "n_averaged": self.n_averaged,
            "averages": [_copy(a) for a in self.averages],
        }

    @serialized
    def load_state_dict(self, state_dict) -> None:
        """Restore :meth:`state_dict`'s output (averages of the same count, shapes and dtype, finite);
        everything is checked before anything is assigned."""
        self._load(state_dict, "state_dict")

    def _load(self, state_dict, name: str) -> None:
        """``load_state_dict`` of the state ``name`` (a checkpoint's entry: SWALP's average is its
        ``state_dict['swa']``, whose refusals named ``state_dict['averages'][0]``, a key its
        checkpoint does not have at that level)."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{name}: expected a dict, got {type(state_dict).__name__}")
        # (an unknown key refused, as the schedulers' and loaders' loads refuse one: a typo'd 'decya'
        # beside the saved 'decay' was ignored silently)
        _backend.state_keys(dict(state_dict), _STATE_KEYS, (), "an AveragedParams'", name=name)
        mode = _option(f"{name}['mode']", state_dict["mode"], _MODES)
        decay = _backend.in_range(f"{name}['decay']", state_dict["decay"], 0.0, 1.0)
        # (update's bound: 2**63 - 1 was loaded, and the next update refused it, far from the checkpoint)
        n = _backend.integer(f"{name}['n_averaged']", state_dict["n_averaged"], lo=0, hi=_backend.INT64_MAX - 1)
        saved = state_dict["averages"]  # (torch tensors as the values they show: copied, never viewed)
        saved = [shown_values(a) for a in saved] if isinstance(saved, (list, tuple)) else shown_values(saved)
        averages = self._like_averages(saved, f"{name}['averages']", written=False)
        check_uncrossed(averages, [f"{name}['averages'][{i}]" for i in range(len(averages))], self.averages, "averages")
        check_finite(averages, f"{name}['averages']")
        for a, src in zip(self.averages, averages):
            a[...] = _backend.asarray_like(src, a)  # (a host checkpoint onto the GPU, or back)
        self.mode, self.decay, self.n_averaged = mode, decay, n
