"""The params as given to an optimizer (torch tensors among them, stepped through NumPy or CuPy
views of their memory) and copies of an optimizer (pickle, ``copy.copy``, ``copy.deepcopy``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from .. import _backend
from .._foreign import is_array
from .._serial import unlocked


class CopyMixin:
    """Pickling and copying of an :class:`~optkern.optim.Optimizer`."""

    _given: list
    _group_params: list
    _index_of: dict

    def __getstate__(self) -> dict:
        return unlocked(vars(self))  # (a copy makes a lock of its own: optkern._serial)

    def __setstate__(self, state: dict) -> None:
        self._copied_state(state)
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


def follow_tensors(tensors: Sequence, views: list, addresses: list, index_of: dict, group_params: list) -> None:
    """Each torch tensor among the params (``tensors``) whose memory moved since its NumPy / CuPy view
    (``views``, their ``addresses``: alike) was made -- ``tensor.data = ...``, ``tensor.set_(...)`` --
    viewed again and put in its group's list, where the step checks it as a param replaced in place
    (dtype, shape against its state). The step wrote the old memory, which the tensor no longer
    showed: its values never moved, silently (torch.optim steps what the tensor holds now). A slot
    the caller replaced with another array (not the view any more) is the caller's, left as it is.
    (The addresses only, compared in one pass: ~0.1 us a tensor; a shape compared too cost 0.3.)"""
    now = list(map(sys.modules["torch"].Tensor.data_ptr, tensors))
    if now == addresses:
        return
    for j, t in enumerate(tensors):
        if now[j] == addresses[j]:
            continue
        i, gi = index_of[id(t)], 0
        while i >= len(group_params[gi][0]):  # (its group's list, and its place in it)
            i, gi = i - len(group_params[gi][0]), gi + 1
        lst = group_params[gi][0]
        if lst[i] is views[j]:
            lst[i] = _backend.as_list([t], f"param_groups[{gi}]['params'][{i}]")[0]
            views[j], addresses[j] = lst[i], tensor_address(lst[i])


def given_torch_tensors(params) -> tuple:
    """``(params, tensors)`` for an optimizer of one list of params (LBFGS, NewtonCG): ``params`` as
    given (an iterator made a list: it is read twice) and the torch tensors among them, which it steps
    through views (``_backend.as_list``) and bumps (:func:`_bump_torch_versions`) where it writes."""
    if is_array(params):
        return params, torch_tensors([params])
    if not isinstance(params, (list, tuple)) and hasattr(params, "__next__"):
        params = list(params)
    return params, torch_tensors(list(params)) if isinstance(params, (list, tuple)) else []


class GivenTensorsMixin:
    """``_given_tensors``: the torch tensors among the params as given, bumped where a step writes
    them. A copy (pickle, ``copy.deepcopy``) keeps none: its params are arrays of its own, which no
    tensor shows (it bumped the original tensors for writes they never saw, or pickled them)."""

    _given_tensors: list | tuple = ()  # (an object unpickled from before the attribute: none)
    _tensor_views: Sequence = ()  # (their views and addresses, alike: follow_tensors)
    _tensor_addresses: Sequence = ()

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_given_tensors": [], "_tensor_views": [], "_tensor_addresses": []}  # type: ignore[misc]

    def __copy__(self):
        """A shallow copy steps the very arrays, the tensors' memory: it keeps the tensors."""
        new = object.__new__(type(self))
        # (an Optimizer's copy not relinked: it shares the original's tensors and lists)
        getattr(new, "_copied_state", new.__setstate__)(super().__getstate__())
        return new
