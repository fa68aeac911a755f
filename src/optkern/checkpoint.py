"""Checkpoints that a killed job cannot corrupt: ``optkern.save`` / ``optkern.load``.

.. code-block:: python

    optkern.save("ckpt.npz", opt=opt, sched=sched, params=params, epoch=epoch)
    ...                                  # killed at any moment, restarted:
    ckpt = optkern.load("ckpt.npz", opt=opt, sched=sched, params=params)  # applied in place
    epoch = ckpt["epoch"]

``save`` accepts, as keyword arguments, optimizers, schedulers and anything else with
``state_dict()`` / ``load_state_dict()`` (new kinds work unchanged, or :func:`register` a
:class:`Kind`), arrays (NumPy, CuPy; torch tensors are saved detached, from a host copy,
bfloat16 as its tagged bits), and plain data: dicts, lists, tuples, numbers, strings, None
and arrays nested in them (a container that holds itself is refused: ValueError naming it).
torch optimizers and modules (``torch.optim``, ``optkern.torch``, ``torch.nn.Module``) are
saved through ``state_dict()`` and get their arrays back as tensors on load.

The file is one uncompressed ``.npz`` (readable with ``numpy.load(path, allow_pickle=False)``,
written to ``path`` as given): member ``meta`` holds UTF-8 JSON -- the format name and
version, every object's kind, type name and structure, each array's dtype, shape and
SHA-256 -- and ``meta_sha256`` the SHA-256 of ``meta``; members ``a0``, ``a1``... hold the
arrays (CuPy arrays are saved from a host copy). It is written to a temporary file in the
same directory, flushed and fsync'ed, renamed over ``path`` (atomic) and the directory is
fsync'ed: a reader, or a job restarted after a kill, sees the old file or the new one,
never a mix (a killed writer may leave a ``.<name>.<pid>.<random>.tmp`` file behind).

``load`` reads the whole file with ``allow_pickle=False`` and verifies every checksum,
the format and the version before it returns or applies anything; a truncated, altered or
foreign file raises one ValueError naming the file and the problem. It returns
``{name: data}`` with plain data (state dicts and arrays as NumPy arrays). Objects passed as
keyword targets are restored in place, all or nothing: every target is checked first
(optimizers through their full state-dict validation; arrays by shape and dtype; the saved
type name must match; array targets must not share memory), then each one's
``load_state_dict`` (arrays: a copy into the target, onto its device) runs, and if one of them still fails, the targets already restored get
their previous state back. Optimizers copy the state onto their parameters' device.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import secrets
import sys
from typing import Any, Callable, NamedTuple

import numpy as np

from . import _backend, lowp

FORMAT = "optkern-checkpoint"
VERSION = 1


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
    return isinstance(obj, np.ndarray) or _backend.is_cupy(obj)


def _has_state(obj) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


def _check_array(target, data) -> None:
    if not _is_array(data):
        raise TypeError(f"expected a saved array, found {type(data).__name__}")
    if tuple(data.shape) != tuple(target.shape) or data.dtype != target.dtype:
        raise ValueError(
            f"saved array is {data.dtype} {tuple(data.shape)}, the target is {target.dtype} {tuple(target.shape)}"
        )
    if isinstance(target, np.ndarray) and not target.flags.writeable:
        raise ValueError("the target array is read-only")


def _copy_into(target, data) -> None:
    if _backend.is_cupy(target):
        with _backend._device_of(target):
            target.set(np.ascontiguousarray(data))
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
            found = f"{len(data)} items" if isinstance(data, (list, tuple)) else f"a {type(data).__name__}"
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
        f"{at}cannot restore a {type(target).__name__} in place (only arrays, containers of arrays "
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


def _torch():
    """The torch module if it is imported already (optkern never imports it for a checkpoint)."""
    return sys.modules.get("torch")


def _is_torch_tensor(obj) -> bool:
    torch = _torch()
    return torch is not None and isinstance(obj, torch.Tensor)


def _wants_torch(obj) -> bool:
    """Whether ``obj``'s ``load_state_dict`` takes torch tensors (a torch optimizer or module):
    its saved arrays are handed back to it as tensors."""
    torch = _torch()
    return torch is not None and isinstance(obj, (torch.optim.Optimizer, torch.nn.Module))


def _check_state(obj, data) -> None:
    """A torch optimizer's saved state dict: the structure and group sizes its loader needs,
    checked before any target is written (torch's own checks, some of them after it has
    started to change the optimizer)."""
    torch = _torch()
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


def _kind_named(name: str) -> Kind | None:
    return next((k for k in _KINDS if k.name == name), None)


# ---- plain data <-> JSON + arrays ------------------------------------------------------------


def _encode(obj, arrays: list, where: str, _open: set | None = None):
    """JSON-able structure of ``obj``; its arrays (host copies) appended to ``arrays``.

    ``_open``: ids of the containers being encoded around ``obj`` (a container holding itself
    is a reference cycle, refused naming where it closes)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        f = float(obj)
        return f if np.isfinite(f) else {"__float__": repr(f)}
    if _is_torch_tensor(obj):
        return _encode_tensor(obj, arrays, where)
    if _backend.is_cupy(obj) or isinstance(obj, np.ndarray) or (hasattr(obj, "__array__") and hasattr(obj, "shape")):
        a = obj.get() if _backend.is_cupy(obj) else np.asarray(obj)
        if a.dtype.name == "bfloat16":  # ml_dtypes' type: its bits, tagged, so no pickle is needed
            arrays.append(np.ascontiguousarray(a).reshape(a.shape).view(np.uint16))
            return {"__array__": len(arrays) - 1, "dtype": "bfloat16"}
        if a.dtype.kind not in "biufc":
            raise TypeError(f"{where}: cannot save an array of dtype {a.dtype}")
        # reshape: ascontiguousarray makes a 0-d array (a capturable run's step) 1-d
        arrays.append(np.ascontiguousarray(a).reshape(a.shape))
        return {"__array__": len(arrays) - 1}
    if not isinstance(obj, (tuple, list, dict)):
        raise TypeError(
            f"{where}: cannot save a {type(obj).__name__} (arrays, numbers, strings, None, lists, tuples, "
            "dicts, or objects with state_dict / load_state_dict)"
        )
    _open = set() if _open is None else _open
    if id(obj) in _open:
        raise ValueError(f"{where}: contains itself (a reference cycle cannot be saved)")
    _open.add(id(obj))
    try:
        if isinstance(obj, tuple):
            return {"__tuple__": [_encode(v, arrays, f"{where}[{k}]", _open) for k, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [_encode(v, arrays, f"{where}[{k}]", _open) for k, v in enumerate(obj)]
        for key in obj:
            if isinstance(key, bool) or not isinstance(key, (str, numbers.Integral)):
                raise TypeError(f"{where}: cannot save a dict key of type {type(key).__name__} (str or int only)")
        items = [
            (k if isinstance(k, str) else int(k), _encode(v, arrays, f"{where}[{k!r}]", _open)) for k, v in obj.items()
        ]
        if all(isinstance(k, str) and not k.startswith("__") for k, _ in items):
            return dict(items)
        return {"__items__": [list(kv) for kv in items]}
    finally:
        _open.discard(id(obj))


def _encode_tensor(t, arrays: list, where: str):
    """A torch tensor saved as a host array (detached, bfloat16 as its tagged bits), so that it
    loads as a NumPy array, and as a tensor again into a torch optimizer or module."""
    torch = _torch()
    try:
        t = t.detach().resolve_conj().resolve_neg()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.dtype == torch.bfloat16:
            arrays.append(np.ascontiguousarray(t.view(torch.uint16).numpy()).reshape(tuple(t.shape)))
            return {"__array__": len(arrays) - 1, "dtype": "bfloat16"}
        a = t.numpy()
    except (TypeError, RuntimeError, NotImplementedError) as e:
        raise TypeError(f"{where}: cannot save this torch.Tensor ({t.dtype}, {t.layout}, on {t.device}): {e}") from None
    if a.dtype.kind not in "biufc":
        raise TypeError(f"{where}: cannot save a torch.Tensor of dtype {t.dtype}")
    arrays.append(np.ascontiguousarray(a).reshape(a.shape))
    return {"__array__": len(arrays) - 1}


def _decode(node, arrays: list, to_torch: bool = False):
    """Plain data from ``_encode``'s structure: NumPy arrays, or with ``to_torch`` torch tensors
    (copies: the loader of a torch optimizer may keep them as its state)."""
    if isinstance(node, list):
        return [_decode(v, arrays, to_torch) for v in node]
    if not isinstance(node, dict):
        return node
    if "__array__" in node:
        a = arrays[node["__array__"]]
        if to_torch:
            torch = _torch()
            t = torch.from_numpy(np.array(a.view(np.uint16) if node.get("dtype") == "bfloat16" else a))
            return t.view(torch.bfloat16) if node.get("dtype") == "bfloat16" else t
        bf16 = lowp.bfloat16_dtype() if node.get("dtype") == "bfloat16" else None
        return a.view(bf16) if bf16 is not None else a  # without ml_dtypes: the uint16 bits
    if "__float__" in node:
        return float(node["__float__"])
    if "__tuple__" in node:
        return tuple(_decode(v, arrays, to_torch) for v in node["__tuple__"])
    if "__items__" in node:
        return {k: _decode(v, arrays, to_torch) for k, v in node["__items__"]}
    return {k: _decode(v, arrays, to_torch) for k, v in node.items()}


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()


# ---- save ---------------------------------------------------------------------------------


def save(path, /, **objects) -> str:
    """Write ``objects`` (name=object) to the checkpoint ``path``, atomically; returns the path.

    Everything is encoded before the file is touched: an object that cannot be saved raises
    TypeError naming it, and ``path`` keeps its previous content.
    """
    path = os.fspath(path)
    if not objects:
        raise ValueError("save: nothing to save; pass objects as name=object")
    arrays: list = []
    entries = {}
    for name, obj in objects.items():
        kind = _kind_of(obj)
        try:
            data = _encode(kind.dump(obj), arrays, name)
        except RecursionError:
            raise ValueError(f"{name}: nested too deeply to save") from None
        entries[name] = {"kind": kind.name, "type": type(obj).__name__, "data": data}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "objects": entries,
        "arrays": [{"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _sha256(a)} for a in arrays],
    }
    raw = json.dumps(meta, allow_nan=False, separators=(",", ":")).encode()
    members = {
        "meta": np.frombuffer(raw, np.uint8),
        "meta_sha256": np.frombuffer(hashlib.sha256(raw).hexdigest().encode(), np.uint8),
    }
    members.update((f"a{k}", a) for k, a in enumerate(arrays))
    _write_atomic(path, members)
    return path


def _write_atomic(path: str, members: dict) -> None:
    """npz of ``members`` at ``path``: temporary file, fsync, rename, fsync of the directory."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **members)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # the rename itself durable (POSIX); some systems cannot open a directory
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# ---- load ---------------------------------------------------------------------------------


class _Corrupt(Exception):
    """A problem with the file's content (becomes one ValueError naming the file)."""


def _read(path: str) -> dict:
    """{name: (kind, type name, plain data)} from a verified checkpoint file."""
    # Our own file handle: np.load leaves the file it opened unclosed when the zip is truncated.
    with open(path, "rb") as fh:
        try:
            z = np.load(fh, allow_pickle=False)
        except Exception as e:
            raise ValueError(
                f"{path}: not a readable optkern checkpoint (truncated or not an .npz file: {e})"
            ) from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not an optkern checkpoint (a single .npy array, not an .npz file)")
        try:
            with z:
                return _read_members(z)
        except _Corrupt as e:
            raise ValueError(f"{path}: {e}") from None
        except Exception as e:
            raise ValueError(f"{path}: damaged checkpoint ({type(e).__name__}: {e})") from None


def _read_members(z) -> dict:
    files = set(z.files)
    if "meta" not in files or "meta_sha256" not in files:
        raise _Corrupt("not an optkern checkpoint (no 'meta' member)")
    raw = z["meta"].tobytes()
    if hashlib.sha256(raw).hexdigest().encode() != z["meta_sha256"].tobytes():
        raise _Corrupt("metadata checksum mismatch (the file was altered)")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise _Corrupt(f"not an optkern checkpoint (format {meta.get('format')!r})")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise _Corrupt(
            f"format version {version!r} is not supported (this optkern reads version {VERSION}"
            + ("; the file is from a newer optkern)" if isinstance(version, int) and version > VERSION else ")")
        )
    specs = meta["arrays"]
    expected = {"meta", "meta_sha256"} | {f"a{k}" for k in range(len(specs))}
    if files != expected:
        odd = min(files ^ expected)
        raise _Corrupt(f"member {odd!r} is {'unexpected' if odd in files else 'missing'}")
    arrays = []
    for k, spec in enumerate(specs):
        a = z[f"a{k}"]
        if a.dtype.str != spec["dtype"] or list(a.shape) != spec["shape"]:
            raise _Corrupt(
                f"array a{k} is {a.dtype.str} {list(a.shape)}, the metadata says {spec['dtype']} {spec['shape']}"
            )
        if _sha256(a) != spec["sha256"]:
            raise _Corrupt(f"array a{k} checksum mismatch (the file was altered)")
        arrays.append(a)
    return {
        name: _Entry(e["kind"], e["type"], _decode(e["data"], arrays), e["data"], arrays)
        for name, e in meta["objects"].items()
    }


class _Entry(NamedTuple):
    """One saved object: its kind and type name, its plain data, and its encoded form with the
    file's arrays (decoded again as torch tensors for a torch target)."""

    kind: str
    type: str
    data: Any
    node: Any
    arrays: list

    def data_for(self, target):
        """The data handed to ``target``'s check and restore: torch tensors for a torch object."""
        if self.kind == "state" and _wants_torch(target):
            return _decode(self.node, self.arrays, to_torch=True)
        return self.data


def load(path, /, **targets) -> dict:
    """Read the checkpoint ``path``; returns ``{name: data}`` (plain data, NumPy arrays).

    Objects passed as ``name=target`` (optimizers, schedulers, arrays, lists of arrays,
    anything saved through ``state_dict``) are restored in place from the entry of that
    name, all or nothing (see the module docstring). Raises ValueError naming the file for a
    truncated, altered or foreign file, and naming the entry for data that does not fit its
    target; the targets are then unchanged.
    """
    path = os.fspath(path)
    stored = _read(path)
    given = {}
    for name, target in targets.items():
        if name not in stored:
            raise ValueError(f"{path}: has no entry {name!r} (it holds {', '.join(map(repr, stored)) or 'nothing'})")
        kind_name, type_name = stored[name].kind, stored[name].type
        data = given[name] = stored[name].data_for(target)
        kind = _kind_of(target)
        if kind.name != kind_name:
            raise ValueError(
                f"{path}[{name!r}]: holds a saved {kind_name} ({type_name}), cannot restore a "
                f"{type(target).__name__} from it"
            )
        if kind.name in ("optimizer", "state") and type_name != type(target).__name__:
            raise ValueError(
                f"{path}[{name!r}]: was saved from a {type_name}, not a {type(target).__name__}; "
                f"load it with load(path)[{name!r}] and convert it yourself"
            )
        try:
            kind.check(target, data)
        except (TypeError, ValueError) as e:
            sep = "" if str(e).startswith("[") else ": "  # a path inside the entry continues the name
            raise type(e)(f"{path}[{name!r}]{sep}{e}") from None
    _check_disjoint(path, targets)
    _apply_all(path, targets, given)
    return {name: e.data for name, e in stored.items()}


def _array_leaves(target, where: str):
    """(name, array) for every array an array / tree target is restored into."""
    if _is_array(target):
        yield where, target
    elif isinstance(target, dict):
        for k, v in target.items():
            yield from _array_leaves(v, f"{where}[{k!r}]")
    elif isinstance(target, (list, tuple)):
        for k, v in enumerate(target):
            yield from _array_leaves(v, f"{where}[{k}]")


def _span(a) -> tuple:
    """(memory space, first byte, one past the last byte) of a non-empty array."""
    host = isinstance(a, np.ndarray)
    lo = hi = a.ctypes.data if host else a.data.ptr
    for n, st in zip(a.shape, a.strides):
        if st < 0:
            lo += st * (n - 1)
        else:
            hi += st * (n - 1)
    return ("host" if host else ("cuda", a.device.id), lo, hi + a.itemsize)


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
            if _backend.array_module(a).shares_memory(a, b):
                first, second = sorted((k, k2))
                raise ValueError(
                    f"{path}: targets {leaves[first][0]} and {leaves[second][0]} share memory "
                    "(restoring one would overwrite the other); pass separate arrays"
                )


def _apply_all(path: str, targets: dict, given: dict) -> None:
    """Restore every target; if one fails, put the ones already restored back as they were."""
    done = []
    items = list(targets.items())
    try:
        for i, (name, target) in enumerate(items):
            kind = _kind_of(target)
            # only a later failure needs the current state: a host copy for all targets but the last
            before = (
                _host_copy(kind.dump(target), name, to_torch=kind.name == "state" and _wants_torch(target))
                if i < len(items) - 1
                else None
            )
            kind.apply(target, given[name])
            done.append((kind, target, before))
    except Exception:
        for kind, target, before in reversed(done):
            kind.apply(target, before)
        raise


def _host_copy(data, name: str, to_torch: bool = False):
    """``data`` with every array replaced by a host copy (the live arrays may change); torch
    tensors with ``to_torch``."""
    arrays: list = []
    tree = _encode(data, arrays, name)
    return _decode(tree, [a.copy() for a in arrays], to_torch)
