"""The params as given to an optimizer (torch tensors among them, stepped through NumPy or CuPy
views of their memory) and copies of an optimizer (pickle, ``copy.copy``, ``copy.deepcopy``)."""

from __future__ import annotations

import operator
import sys
from collections.abc import Sequence
from typing import cast

import numpy as np

from .. import _backend
from .._foreign import is_array
from .._serial import unlocked


class CopyMixin:
    """Pickling and copying of an :class:`~optkern.optim.Optimizer`."""

    _given: list
    _group_params: list
    _index_of: dict
    _tensor_sizes: Sequence  # (FollowsTensors')
    _tensor_dense: Sequence

    def __getstate__(self) -> dict:
        return unlocked(vars(self))  # (a copy makes a lock of its own: optkern._serial)

    def __setstate__(self, state: dict) -> None:
        self._copied_state(state)
        followed = vars(self).get("_followed", ())
        if len(vars(self).get("_tensor_dense", ())) != len(followed):
            # (unpickled from before sizes and layouts were followed: those of its tensors now,
            # else the first step's compare ran past the end of the empty lists)
            self._tensor_sizes, self._tensor_dense = _layouts(followed)
        # (each tensor over the array its slot holds now: a tensor given new memory since it was
        # added, ``tensor.data =``, is stepped in a view of that memory, not the one first made)
        _relink(self._given, [p for lst, _ in self._group_params for p in lst])

    def _copied_state(self, state: dict) -> None:
        vars(self).update(state)  # (id -> index made again: a copy kept the original's ids, `w in copy.state`)
        added = [p for _, arrays in self._group_params for p in arrays]
        self._index_of = {k: i for i, pair in enumerate(zip(self._given, added)) for k in map(id, pair)}


def _relink(given: list, added: list) -> None:
    """Each torch tensor of a copy made over its copied array's memory again.

    A deep copy (or pickle) copies a tensor and the NumPy view the optimizer steps apart: the
    copy's steps wrote arrays no tensor showed, and bumped the version counters of tensors they
    never wrote. ``tensor.data =`` keeps the copied tensor itself (a ``Parameter`` still one, the
    very object a model copied in the same ``deepcopy`` holds) and gives it the array's memory.
    (CPU tensors: a CUDA tensor's CuPy view is left as it is.)"""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    for g, p in zip(given, added):
        if isinstance(g, torch.Tensor) and isinstance(p, np.ndarray) and g.device.type == "cpu":
            if g.data_ptr() != p.ctypes.data and p.flags.c_contiguous and p.nbytes == g.nbytes:
                # (through bytes: a bfloat16 tensor's view is ml_dtypes' type, which torch does not take)
                g.data = torch.from_numpy(p.reshape(-1).view(np.uint8)).view(g.dtype).view(g.shape)


def torch_tensors(given: list) -> list:
    """The torch tensors among ``given`` (found once, when params are added: a scan of 200 params
    at every step cost ~80 us)."""
    torch = sys.modules.get("torch")
    return [] if torch is None else [p for p in given if isinstance(p, torch.Tensor)]


def _bump_torch_versions(tensors: Sequence) -> None:
    """The torch tensors among the params as given (:func:`torch_tensors`) were written through views
    autograd does not see: bump their version counters, so that a graph saved before the step
    refuses its backward (as after torch's in-place step) instead of silently using the new values."""
    if tensors:
        sys.modules["torch"].autograd.graph.increment_version(tensors)


def tensor_address(v) -> int:
    """The address of a torch tensor's NumPy / CuPy view (found once: ``ndarray.ctypes`` costs
    microseconds a call)."""
    return v.data.ptr if _backend.is_cupy(v) else v.ctypes.data


def follow(
    tensors: Sequence,
    views: list,
    addresses: list,
    dtypes: list,
    sizes: list,
    dense: list,
    slot,
    accept=None,
    accept_all=None,
) -> list:
    """Each torch tensor among the params (``tensors``) whose memory moved since its NumPy / CuPy view
    (``views``, their ``addresses`` and the tensors' ``dtypes``, ``sizes`` and ``is_contiguous()``,
    ``dense``, then: alike) was made --
    ``tensor.data = ...``, ``tensor.set_(...)``, the same memory re-viewed as another dtype
    (``tensor.data = tensor.data.view(torch.int32)``) or narrowed or widened at the same address
    (``tensor.data = tensor.data[:2]``) or laid out anew there (``tensor.data = tensor.data.t()``)
    -- viewed again and put in its slot
    (``slot(j, tensor) -> (list, index, name)``: where its view sits now); returns the indices ``j`` of
    those re-viewed. The step wrote the old memory, which the tensor no longer showed: its values never
    moved, silently (torch.optim steps what the tensor holds now); or, at the same address, wrote
    float updates into what the tensor shows as integers; or, narrowed, stepped elements the tensor no
    longer shows with grads of its old size (a grad of its new size refused, naming the grads); or,
    transposed (a square matrix: the grads' shape checks pass), stepped each element with another's
    grad. A
    slot the caller replaced with another array (not the view any more), or a list replaced, is the
    caller's, left as it is.
    ``accept(index, name, view)``: raises for a new view the optimizer cannot step, and
    ``accept_all([(index, view)])`` for the new views together (once a step: whether they share
    memory with each other or with the params that kept theirs), before any is put in: refused at
    every step until the tensor is given memory it can, nothing written (the step's own checks
    refuse a view of another dtype than the param's state).
    (Four cheap getters, each compared in one pass, ~0.05 us a tensor each, and the shapes, whose
    ``torch.Size`` costs 0.1-0.3 us a tensor: called where :func:`layout_key` found a change or cannot
    be read. A contiguous re-view of the same size at the same address, ``tensor.data =
    tensor.data.view(2, 3)``, is followed too: the very elements in the same order, of the tensor's
    new shape -- the step took grads of the old shape only, refusing the tensor's own; its state
    follows the shape, ``GroupTrackingMixin._check_state_shapes``.)"""
    tensor = sys.modules["torch"].Tensor
    now = list(map(tensor.data_ptr, tensors))
    kinds = list(map(_DTYPE, tensors))
    counts = list(map(tensor.numel, tensors))
    flat = list(map(tensor.is_contiguous, tensors))
    shaped = [t.shape == v.shape for t, v in zip(tensors, views)]
    if now == addresses and kinds == dtypes and counts == sizes and flat == dense and all(shaped):
        return []
    found = []
    for j, t in enumerate(tensors):
        same = now[j] == addresses[j] and kinds[j] is dtypes[j] and counts[j] == sizes[j] and flat[j] is dense[j]
        if same and shaped[j]:
            continue
        lst, i, name = slot(j, t)
        if i < len(lst) and lst[i] is views[j]:  # (a list the caller replaced may be shorter)
            new = _backend.as_list([t], name)[0]
            if accept is not None:
                accept(i, name, new)
            found.append((j, lst, i, new))
    if found and accept_all is not None:
        accept_all([(i, new) for _, _, i, new in found])
    for j, lst, i, new in found:
        lst[i] = views[j] = new
        addresses[j], dtypes[j], sizes[j], dense[j] = tensor_address(new), kinds[j], counts[j], flat[j]
    return [j for j, *_ in found]


def with_new(lst: list, new: list) -> list:
    """A copy of ``lst`` with ``accept_all``'s ``(index, view)`` pairs put in: what the list will hold,
    for a check of the moved views together before any is put in (:func:`follow`)."""
    now = list(lst)
    for i, v in new:
        now[i] = v
    return now


def _layouts(tensors) -> tuple[list, list]:
    """The sizes and contiguity of ``tensors``: what :func:`follow` compares a followed tensor's against
    (the one definition for ``_track`` and for a copy unpickled from before they were followed)."""
    return [t.numel() for t in tensors], [t.is_contiguous() for t in tensors]


#: a torch tensor's dtype (the getter itself: an attribute lookup a tensor less)
_DTYPE = operator.attrgetter("dtype")

#: whether the CPU module reads torch tensors' layouts through torch's DLPack exchange API (per type)
_EXCHANGE_USABLE: dict = {}


def layout_key(tensors: Sequence):
    """Where each of ``tensors`` (torch tensors) is and how it lays its memory out -- address, dtype,
    shape, strides -- as one bytes object (``_cpu.data_layouts``: one native call, about a fifth of
    the time of :func:`follow`'s four getters), or None where torch's DLPack exchange API cannot be
    used. Equal keys: nothing to follow; else :func:`follow` compares tensor by tensor."""
    tensor = sys.modules["torch"].Tensor
    usable = _EXCHANGE_USABLE.get(tensor)
    if usable is None:
        usable = _EXCHANGE_USABLE[tensor] = bool(_backend.cpu.dlpack_exchange_usable(tensor))
    if not usable or not isinstance(tensors, list):
        return None
    try:
        return _backend.cpu.data_layouts(tensors, tensor)
    except TypeError:  # (an item the API refuses: compared one by one)
        return None


class FollowsTensors:
    """The torch tensors among one list of params (LBFGS's and NewtonCG's group, ShardedOptimizer's
    arrays), followed to new memory at each step (:func:`follow`): the tensors (``_followed``), their
    views and addresses, and their places in the list. A copy (pickle, ``copy.deepcopy``) follows
    none (its params are arrays of its own)."""

    _followed: Sequence = ()
    _tensor_views: Sequence = ()
    _tensor_addresses: Sequence = ()
    _tensor_dtypes: Sequence = ()
    _tensor_sizes: Sequence = ()
    _tensor_dense: Sequence = ()
    _tensor_positions: Sequence = ()
    #: layout_key of ``_followed`` when last followed (None: not known, compared one by one)
    _tensor_key: bytes | None = None
    _FOLLOWED = (
        "_followed",
        "_tensor_views",
        "_tensor_addresses",
        "_tensor_dtypes",
        "_tensor_sizes",
        "_tensor_dense",
        "_tensor_positions",
    )

    def _track(self, given: list, arrays: list, start: int = 0) -> list:
        """The torch tensors among ``given`` (the params as given, ``arrays`` their views, at ``start``
        in the followed list) followed from now on, after those followed already; returns them."""
        tensors = torch_tensors(given)
        if tensors:
            ids = set(map(id, tensors))
            at = [k for k, g in enumerate(given) if id(g) in ids]
            views = [arrays[k] for k in at]
            # (lists of this object's own: a class default is a shared tuple)
            self._followed = [*self._followed, *(given[k] for k in at)]
            self._tensor_views = [*self._tensor_views, *views]
            self._tensor_addresses = [*self._tensor_addresses, *map(tensor_address, views)]
            self._tensor_dtypes = [*self._tensor_dtypes, *(given[k].dtype for k in at)]
            sizes, dense = _layouts([given[k] for k in at])
            self._tensor_sizes = [*self._tensor_sizes, *sizes]
            self._tensor_dense = [*self._tensor_dense, *dense]
            self._tensor_positions = [*self._tensor_positions, *(start + k for k in at)]
            self._tensor_key = None  # (the next step compares them one by one, then keeps the key)
        return tensors

    def _follows(self, at: int, view) -> bool:
        """Whether ``view`` is the view of the tensor followed at ``at`` (one :func:`follow` made)."""
        return any(k == at and v is view for k, v in zip(self._tensor_positions, self._tensor_views))

    def _retrack(self, at: int, given, view) -> None:
        """The param at ``at`` in the followed list replaced by ``given`` (its view ``view``): the tensor
        followed there before, if any, followed no more; ``given``, a torch tensor, from now on."""
        keep = [j for j, k in enumerate(self._tensor_positions) if k != at]
        if len(keep) < len(self._tensor_positions):
            for name in self._FOLLOWED:
                setattr(self, name, [getattr(self, name)[j] for j in keep])
            self._tensor_key = None
        self._track([given], [view], at)

    def _follow_tensors(self, lst: list, name: str, accept=None, accept_all=None) -> list:
        """:func:`follow` over ``lst`` (named ``name`` in errors); returns the places re-viewed."""
        return self._follow_places(lambda i: (lst, i, f"{name}[{i}]"), accept, accept_all)

    def _follow_places(self, place, accept=None, accept_all=None) -> list:
        """:func:`follow` with each tensor's slot found from its place in the followed list
        (``place(position) -> (list, index, name)``); returns the places re-viewed."""
        pos = self._tensor_positions
        if not pos:
            return []
        key = layout_key(self._followed)
        if key is not None and key == self._tensor_key:
            return []
        moved = follow(
            self._followed,
            cast(list, self._tensor_views),  # (lists once _track set them: pos is not empty)
            cast(list, self._tensor_addresses),
            cast(list, self._tensor_dtypes),
            cast(list, self._tensor_sizes),
            cast(list, self._tensor_dense),
            lambda j, t: place(pos[j]),
            accept,
            accept_all,
        )
        # (kept once followed and accepted: a refused tensor is compared again at every step)
        self._tensor_key = key
        return [pos[j] for j in moved]


def given_params(params):
    """``params`` as given to an optimizer of one list of params (LBFGS, NewtonCG): an iterator made a
    list (it is read twice: viewed by ``_backend.as_list``, its torch tensors found and followed)."""
    if not is_array(params) and not isinstance(params, (list, tuple)) and hasattr(params, "__next__"):
        return list(params)
    return params


def given_list(params) -> list:
    """The params as given (:func:`given_params`) as a list matching ``_backend.as_list``'s."""
    if is_array(params):
        return [params]
    return list(params) if isinstance(params, (list, tuple)) else []


class GivenTensorsMixin(FollowsTensors):
    """``_given_tensors``: the torch tensors among the params as given, bumped where a step writes
    them. A copy (pickle, ``copy.deepcopy``) keeps none: its params are arrays of its own, which no
    tensor shows (it bumped the original tensors for writes they never saw, or pickled them)."""

    _given_tensors: list | tuple = ()  # (an object unpickled from before the attribute: none)

    def __getstate__(self) -> dict:
        state = {**super().__getstate__(), "_given_tensors": [], **dict.fromkeys(self._FOLLOWED, ())}  # type: ignore[misc]
        # (L-BFGS's / Newton-CG's params seen at the last step: weak references to the original's
        # arrays, which pickle cannot take and which are not the copy's -- a copy starts unseen)
        state.pop("_params_seen", None)
        return state

    def __copy__(self):
        """A shallow copy steps the very arrays, the tensors' memory: it keeps the tensors."""
        new = object.__new__(type(self))
        # (an Optimizer's copy not relinked: it shares the original's tensors and lists)
        getattr(new, "_copied_state", new.__setstate__)(super().__getstate__())
        return new
