"""What ``optkern.load`` restores in place and how: the kinds of targets (arrays, optkern optimizers,
objects with ``load_state_dict`` (torch ones get tensors back), containers of arrays), each with the
check that runs before any target is written, and the memory-overlap check across targets."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from . import _backend
from ._array_checks import byte_span
from ._checkpoint_codec import _host_copy, _torch
from ._overlap import shares
from ._words import article


class Kind(NamedTuple):
    """How one kind of object is saved and restored in place.

    ``accepts(obj)``: whether this kind handles ``obj``; ``dump(obj)``: its plain data (a
    tree of dicts, lists, tuples, numbers, strings and arrays); ``check(obj, data)``: raise
    if ``data`` cannot be applied to ``obj``, changing nothing; ``apply(obj, data)``: restore
    ``obj`` from ``data`` in place.
    """

    name: str
    accepts: Callable[[Any], bool]
    dump: Callable[[Any], Any]
    check: Callable[[Any, Any], None]
    apply: Callable[[Any, Any], None]


def _is_array(obj) -> bool:
    """A NumPy or CuPy array, or a foreign one (a torch tensor, any DLPack exporter) restored in place
    through its view (``_view``), as optkern's optimizers write such params: refused as "cannot restore
    a Tensor in place", a checkpoint of an optimizer over torch tensors could not give them back."""
    return isinstance(obj, np.ndarray) or _backend.is_cupy(obj) or _backend.is_foreign(obj)


def _view(target, where: str = "the target array"):
    """An array target as the NumPy / CuPy array written: a foreign one's view over its own memory
    (``as_array``: TypeError naming ``where`` for one that cannot be viewed, a read-only export stays
    read-only, for ``_check_array`` to refuse)."""
    return target if isinstance(target, np.ndarray) or _backend.is_cupy(target) else _backend.as_array(target, where)


def _has_state(obj) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


def _check_array(target, data) -> None:
    if not (isinstance(data, np.ndarray) or _backend.is_cupy(data)):  # (the file's arrays: NumPy)
        raise TypeError(f"expected a saved array, found {type(data).__name__}")
    target = _view(target)
    if tuple(data.shape) != tuple(target.shape) or data.dtype != target.dtype:
        raise ValueError(
            f"saved array is {data.dtype} {tuple(data.shape)}, the target is {target.dtype} {tuple(target.shape)}"
        )
    if isinstance(target, np.ndarray) and not target.flags.writeable:
        raise _backend.read_only("the target array", target)  # (an unversioned DLPack export: says why)
    # (a writable view whose elements share memory, e.g. of an expanded tensor: the last value
    # copied stayed in all of them, and the target held other values than the file's, silently)
    _backend.distinct_elements(target, "the target array")


def _copy_into(target, data) -> None:
    given, target = target, _view(target)
    _copy_values(target, data)
    if target is not given:  # a torch tensor written through a view autograd does not see: as a step bumps it
        from .optim._given import _bump_torch_versions, torch_tensors

        _bump_torch_versions(torch_tensors([given]))


def _copy_values(target, data) -> None:
    if _backend.is_cupy(target):
        with _backend._device_of(target):
            # CuPy's set takes a host array of the target's own shape into a contiguous target only:
            # reshaped (np.ascontiguousarray makes a 0-d array 1-d), and a strided view (a slice)
            # through a device copy ("Cannot set to non-contiguous array" otherwise)
            if target.flags.c_contiguous or target.flags.f_contiguous:
                target.set(np.ascontiguousarray(data).reshape(target.shape))
            else:
                target[...] = _backend.array_module(target).asarray(data)
    else:
        np.copyto(target, data)


def _check_optimizer(opt, data) -> None:
    # the optimizer's own check: a low-precision one converts its storage format first
    opt._check_state_dict(data)


def _check_tree(target, data, where: str = "") -> None:
    """A list / tuple / dict of arrays restored leaf by leaf: same structure, arrays at the leaves."""
    if _is_array(target):
        try:
            return _check_array(target, data)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{where}: {e}" if where else str(e)) from None
    at = f"{where}: " if where else ""
    if isinstance(target, (list, tuple)):
        if not isinstance(data, (list, tuple)) or len(data) != len(target):
            found = f"{len(data)} items" if isinstance(data, (list, tuple)) else article(type(data).__name__)
            raise ValueError(f"{at}expected a saved sequence of {len(target)} items, found {found}")
        for k, (t, d) in enumerate(zip(target, data)):
            _check_tree(t, d, f"{where}[{k}]")
        return None
    if isinstance(target, dict):
        if not isinstance(data, dict) or set(data) != set(target):
            raise ValueError(f"{at}the saved entry is not a dict with the target's keys")
        for k in target:
            _check_tree(target[k], data[k], f"{where}[{k!r}]")
        return None
    raise TypeError(
        f"{at}cannot restore {article(type(target).__name__)} in place (only arrays, containers of arrays "
        "and objects with load_state_dict); read it from load()'s result"
    )


def _apply_tree(target, data) -> None:
    if _is_array(target):
        _copy_into(target, data)
    elif isinstance(target, dict):
        for k in target:
            _apply_tree(target[k], data[k])
    else:
        for t, d in zip(target, data):
            _apply_tree(t, d)


def _is_optimizer(obj) -> bool:
    from .optim import Optimizer

    return isinstance(obj, Optimizer)


def _load_state(obj, data) -> None:
    obj.load_state_dict(data)


def _wants_torch(obj) -> bool:
    """Whether ``obj``'s ``load_state_dict`` takes torch tensors (a torch optimizer or module):
    its saved arrays are handed back to it as tensors."""
    torch = _torch()
    return torch is not None and isinstance(obj, (torch.optim.Optimizer, torch.nn.Module))


def _torch_optim_form(obj, data):
    """``data`` (a saved state dict, as tensors) in the form ``obj``'s loader takes: for a torch
    optimizer whose loader is ``torch.optim.Optimizer``'s own, an optkern.torch optimizer's 8-bit
    moments as float32 (``optkern.torch.to_torch_state_dict``; the saved type name matched: an
    ``optkern.torch.Adam(state_dtype="int8")`` checkpoint into a ``torch.optim.Adam``). torch's
    loader cast the uint8 codes to the param's dtype as values (an ``exp_avg`` of 183.0 for
    ~1e-3), and the restored optimizer's steps went wild, without a word. Likewise SGD's textbook
    momentum buffers (v = -lr b), which torch.optim.SGD read as its b: its steps went uphill."""
    torch = _torch()
    if torch is None or not isinstance(obj, torch.optim.Optimizer):
        return data
    if type(obj).load_state_dict is not torch.optim.Optimizer.load_state_dict:
        return data  # (its own loader: optkern.torch's converts any format; another library's is its own)
    from .torch._lowp import holds_8bit
    from .torch._torch_form import holds_textbook, to_torch_state_dict

    return to_torch_state_dict(data) if holds_8bit(data) or holds_textbook(data) else data


def _check_state(obj, data) -> None:
    """A torch optimizer's or module's saved state dict: what its loader needs, checked before any
    target is written (torch's own checks run while it loads: a failure there leaves earlier
    targets already written, and raises torch's RuntimeError instead of a ValueError naming the
    entry)."""
    torch = _torch()
    if torch is not None and isinstance(obj, torch.nn.Module):
        return _check_module_state(torch, obj, data)
    if torch is None or not isinstance(obj, torch.optim.Optimizer):
        return
    if not isinstance(data, dict) or not isinstance(data.get("state"), dict):
        raise ValueError("expected a saved optimizer state dict with 'state' and 'param_groups'")
    groups = data.get("param_groups")
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups
    ):
        raise ValueError("expected a saved 'param_groups' list of dicts with 'params'")
    if len(groups) != len(obj.param_groups):
        raise ValueError(f"holds {len(groups)} param groups, the optimizer has {len(obj.param_groups)}")
    for i, (g, mine) in enumerate(zip(groups, obj.param_groups)):
        if len(g["params"]) != len(mine["params"]):
            raise ValueError(
                f"['param_groups'][{i}] holds {len(g['params'])} params, the optimizer's group has "
                f"{len(mine['params'])}"
            )
    ids = {i for g in groups for i in g["params"]}
    odd = [k for k in data["state"] if k not in ids]
    if odd:
        raise ValueError(f"['state'] holds state for param {odd[0]!r}, which no saved param group lists")


def _check_module_state(torch, module, data) -> None:
    """What ``module.load_state_dict(data)`` (strict) checks, as a ValueError naming the entry: the
    same keys (missing and unexpected ones, as torch lists them), and each saved tensor with its
    entry's shape and dtype (torch would convert a dtype silently; optkern restores arrays only
    into their own dtype). Entries that are not tensors (a module's extra state) are its own."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a saved module state dict, found {article(type(data).__name__)}")
    ours = module.state_dict()
    missing = [k for k in ours if k not in data]
    unexpected = [k for k in data if k not in ours]
    if missing or unexpected:
        says = [f"missing key(s) {', '.join(map(repr, missing))}"] if missing else []
        says += [f"unexpected key(s) {', '.join(map(repr, unexpected))}"] if unexpected else []
        raise ValueError(f"does not fit the {type(module).__name__}: {'; '.join(says)}")
    for k, mine in ours.items():
        saved = data[k]
        if not isinstance(mine, torch.Tensor):
            continue
        if not isinstance(saved, torch.Tensor):
            raise ValueError(f"[{k!r}]: expected a saved tensor, found {type(saved).__name__}")
        if tuple(saved.shape) != tuple(mine.shape) or saved.dtype != mine.dtype:
            hint = " (convert one of them first)" if saved.shape == mine.shape else ""
            raise ValueError(
                f"[{k!r}]: saved tensor is {saved.dtype} {tuple(saved.shape)}, the module's is "
                f"{mine.dtype} {tuple(mine.shape)}{hint}"
            )


def _load_torch_state(obj, data) -> None:
    """``load_state_dict`` of a torch object; if it fails, the object gets its previous state back
    (an optimizer's own loader may fail after torch's loader replaced the state)."""
    if not _wants_torch(obj):
        return obj.load_state_dict(data)
    before = _host_copy(obj.state_dict(), type(obj).__name__, to_torch=True)
    try:
        obj.load_state_dict(data)
    except BaseException:
        obj.load_state_dict(before)
        raise
    return None


_KINDS: list = [
    Kind("array", _is_array, lambda a: a, _check_array, _copy_into),
    Kind("optimizer", _is_optimizer, lambda o: o.state_dict(), _check_optimizer, _load_state),
    Kind("state", _has_state, lambda o: o.state_dict(), _check_state, _load_torch_state),
    Kind("tree", lambda obj: True, lambda t: t, _check_tree, _apply_tree),
]


def register(kind: Kind) -> None:
    """Handle a new kind of object (tried before the built-in kinds, newest first)."""
    if not isinstance(kind, Kind):
        raise TypeError(f"kind: expected an optkern.checkpoint.Kind, got {type(kind).__name__}")
    _KINDS.insert(0, kind)


def _kind_of(obj) -> Kind:
    return next(k for k in _KINDS if k.accepts(obj))


def _array_leaves(target, where: str):
    """(name, array) for every array an array / tree target is restored into."""
    if _is_array(target):
        yield where, _view(target, where)
    elif isinstance(target, dict):
        for k, v in target.items():
            yield from _array_leaves(v, f"{where}[{k!r}]")
    elif isinstance(target, (list, tuple)):
        for k, v in enumerate(target):
            yield from _array_leaves(v, f"{where}[{k}]")


def _span(a) -> tuple:
    """(memory space, first byte, one past the last byte) of a non-empty array."""
    return ("host" if isinstance(a, np.ndarray) else ("cuda", a.device.id), *byte_span(a))


def _check_disjoint(path: str, targets: dict) -> None:
    """Refuse array targets that share memory (one would overwrite the other's restored values),
    before anything is written; ValueError naming both."""
    leaves = []
    for name, target in targets.items():
        if _kind_of(target).name in ("array", "tree"):
            leaves += [(where, a) for where, a in _array_leaves(target, f"[{name!r}]") if a.size]
    if len(leaves) < 2:
        return
    spans = sorted(((*_span(a), k) for k, (_, a) in enumerate(leaves)), key=lambda s: (str(s[0]), s[1]))
    for i, (space, _, hi, k) in enumerate(spans):
        for space2, lo2, _, k2 in spans[i + 1 :]:
            if space2 != space or lo2 >= hi:
                break
            a, b = leaves[k][1], leaves[k2][1]
            if shares(a, b):
                first, second = sorted((k, k2))
                raise ValueError(
                    f"{path}: targets {leaves[first][0]} and {leaves[second][0]} share memory "
                    "(restoring one would overwrite the other); pass separate arrays"
                )
