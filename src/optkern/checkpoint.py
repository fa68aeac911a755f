"""Checkpoints that a killed job cannot corrupt: ``optkern.save`` / ``optkern.load``.

.. code-block:: python

    optkern.save("ckpt.npz", opt=opt, sched=sched, params=params, epoch=epoch)
    ...                                  # killed at any moment, restarted:
    ckpt = optkern.load("ckpt.npz", opt=opt, sched=sched, params=params)  # applied in place
    epoch = ckpt["epoch"]

``save`` accepts, as keyword arguments, optimizers, schedulers and anything else with
``state_dict()`` / ``load_state_dict()`` (new kinds work unchanged, or :func:`register` a
:class:`Kind`), arrays (NumPy, CuPy; torch tensors are saved detached, from a host copy;
bfloat16, float8_* and ml_dtypes' other types as their tagged bits; torch's complex32 too, which
comes back as a complex32 tensor into a torch target and as complex64 -- the same values -- in
plain data, NumPy having no such type; one ml_dtypes lacks too -- torch's float4_e2m1fn_x2 -- is
its bits in plain data, itself again in a torch target), and plain data: dicts,
lists, tuples, numbers, strings, None and arrays nested in them (a container that holds itself
is refused: ValueError naming it).
torch optimizers and modules (``torch.optim``, ``optkern.torch``, ``torch.nn.Module``) are
saved through ``state_dict()`` and get their arrays back as tensors on load (an ``optkern.torch``
optimizer's 8-bit moments, and SGD's textbook momentum buffers, loaded into the ``torch.optim``
optimizer of its name as float32 values and torch's b = -v / lr, ``optkern.torch.to_torch_state_dict``:
torch's loader would take the codes as values, and v as its own b).

The file is one uncompressed ``.npz`` (readable with ``numpy.load(path, allow_pickle=False)``,
written to ``path`` as given): member ``meta`` holds UTF-8 JSON -- the format name and
version, every object's kind, type name and structure, each array's dtype, shape and
SHA-256 -- and ``meta_sha256`` the SHA-256 of ``meta``; members ``a0``, ``a1``... hold the
arrays (CuPy arrays are saved from a host copy). Arrays are saved bit for bit (NaN payloads,
infinities, -0.0, 0-size shapes) and C-contiguous: a Fortran-order or strided array loads as a
C-contiguous array of the same shape and values (a target restored in place keeps its own
layout). Arrays load in the machine's byte order (a file written big-endian restores as the same values).
NumPy scalars come back as Python numbers (an ``np.longdouble`` that a float cannot
hold as a 0-d array); a masked array, or a number a float cannot hold, is refused (TypeError).
It is written to a temporary file in the same directory, flushed and fsync'ed, renamed over
``path`` (atomic; an existing file's permission bits are kept; a symbolic link is written
through: its target replaced, as ``open`` would write it) and the directory is
fsync'ed: a reader, or a job restarted after a kill, sees the old file or the new one,
never a mix (a killed writer may leave a ``.<name>.<pid>.<random>.tmp`` file behind).

``load`` reads the whole file with ``allow_pickle=False`` and verifies every checksum,
the format and the version before it returns or applies anything; a truncated, altered or
foreign file raises one ValueError naming the file and the problem. It returns
``{name: data}`` with plain data (state dicts and arrays as NumPy arrays). Objects passed as
keyword targets are restored in place (foreign arrays -- torch tensors, DLPack exporters -- through
their views over their own memory, as optkern's optimizers write them; a torch tensor's version
counter is bumped), all or nothing: every target is checked first
(optimizers through their full state-dict validation; arrays by shape and dtype; torch
modules by their state dict's keys -- missing and unexpected ones, as torch's strict load --
and each tensor's shape and dtype; the saved type name must match; array targets must not
share memory), then each one's ``load_state_dict`` (arrays: a copy into the target, onto its
device) runs, and if one of them still fails, the targets already restored get their
previous state back (a Scheduler's groups too: the values it drives, as they were).
Optimizers copy the state onto their parameters' device. (Kinds of targets:
``_checkpoint_kinds.py``; the encoding: ``_checkpoint_codec.py``.)
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from typing import Any, NamedTuple

import numpy as np

from . import _atomic
from ._array_checks import restoring_own_state
from ._checkpoint_codec import _array_places, _decode, _encode, _host_copy, _sha256
from ._checkpoint_kinds import Kind, _check_disjoint, _kind_of, _torch_optim_form, _wants_torch, register
from ._words import article

__all__ = ["FORMAT", "VERSION", "Kind", "load", "register", "save"]

FORMAT = "optkern-checkpoint"
VERSION = 1


# ---- save ---------------------------------------------------------------------------------


def save(path, /, **objects) -> str:
    """Write ``objects`` (name=object) to the checkpoint ``path``, atomically; returns the path.

    Everything is encoded before the file is touched: an object that cannot be saved raises
    TypeError naming it, and ``path`` keeps its previous content.
    """
    path = _atomic.checked_path(path)
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
    """npz of ``members`` at ``path``: temporary file, fsync, rename, fsync of the directory
    (``_atomic.replace_atomically``: a crash or Ctrl-C leaves the previous checkpoint whole)."""
    with _atomic.replace_atomically(path, binary=True) as f:
        np.savez(f, **members)


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
    # (the entry each array belongs to, for the message of a damaged one: "array a3" alone left the
    # user to guess which object of the checkpoint was hit)
    places = {k: w for name, e in meta["objects"].items() for w, k in _array_places(e["data"], name)}
    for k, spec in enumerate(specs):
        try:
            a = z[f"a{k}"]
        except zipfile.BadZipFile as e:  # (the zip's CRC-32, checked before our SHA-256)
            where = places.get(k, "?")
            raise _Corrupt(f"damaged checkpoint: array a{k} of entry {where} ({type(e).__name__}: {e})") from None
        if a.dtype.str != spec["dtype"] or list(a.shape) != spec["shape"]:
            raise _Corrupt(
                f"array a{k} is {a.dtype.str} {list(a.shape)}, the metadata says {spec['dtype']} {spec['shape']}"
            )
        if _sha256(a) != spec["sha256"]:
            raise _Corrupt(f"array a{k} checksum mismatch (entry {places.get(k, '?')}; the file was altered)")
        if not a.dtype.isnative:
            # (a big-endian machine's file, or a byte-swapped array saved): this machine's order, the
            # same values -- an array target of the native dtype refused '>f8' as another dtype, and
            # torch.from_numpy refused it for a torch target with an error naming neither
            a = a.astype(a.dtype.newbyteorder("="))
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
            return _torch_optim_form(target, _decode(self.node, self.arrays, to_torch=True))
        return self.data


def load(path, /, **targets) -> dict:
    """Read the checkpoint ``path``; returns ``{name: data}`` (plain data, NumPy arrays).

    Objects passed as ``name=target`` (optimizers, schedulers, arrays, lists of arrays,
    anything saved through ``state_dict``) are restored in place from the entry of that
    name, all or nothing (see the module docstring). Raises ValueError naming the file for a
    truncated, altered or foreign file, and naming the entry for data that does not fit its
    target; the targets are then unchanged.

    Targets that load collectively (an ``optkern.distributed`` wrapper, whose ``load_state_dict``
    every rank calls together): a file refused or missing on one rank raises on every rank.
    """
    comm = _communicator(targets)
    path, stored, given = _prepared(path, targets) if comm is None else _prepared_together(comm, path, targets)
    _apply_all(path, targets, given)
    return {name: e.data for name, e in stored.items()}


def _communicator(targets: dict):
    """The Communicator of a target that loads collectively (a ``DistributedOptimizer`` or
    ``ShardedOptimizer``: its ``comm``), or None. (Only where optkern.distributed was imported:
    no such target exists otherwise.)"""
    mod = sys.modules.get("optkern.distributed.communicator")
    if mod is None:
        return None
    return next((t.comm for t in targets.values() if isinstance(getattr(t, "comm", None), mod.Communicator)), None)


def _prepared_together(comm, path, targets: dict) -> tuple:
    """:func:`_prepared` on every rank, its refusal agreed. Each rank reads its own file (a shard per
    rank): one truncated, altered or missing on one rank raised there while the others went on into
    the wrapper's collective load and waited in it forever."""
    from .distributed.agreement import refuse_together

    err, out = None, None
    try:
        out = _prepared(path, targets)
    except (TypeError, ValueError, OSError) as e:  # (a missing file too: the others must not wait)
        err = e
    refuse_together(comm, err, "load")
    assert out is not None  # (refuse_together raised where any rank refused)
    return out


def _prepared(path, targets: dict) -> tuple:
    """(the path, the file's entries, the data for each target), every target checked: nothing
    written yet."""
    path = _atomic.checked_path(path)
    stored = _read(path)
    given = {}
    for name, target in targets.items():
        if name not in stored:
            raise ValueError(f"{path}: has no entry {name!r} (it holds {', '.join(map(repr, stored)) or 'nothing'})")
        kind_name, type_name = stored[name].kind, stored[name].type
        data = given[name] = stored[name].data_for(target)
        kind = _kind_of(target)
        # a target that loads other saved forms of its state (a ShardedOptimizer: the consolidated
        # dict its README round trip saves, or the unsharded optimizer's) says so; checked by its load
        takes = getattr(target, "_loads_saved", None)
        if callable(takes) and takes(kind_name, type_name):
            pass
        elif kind.name != kind_name and {kind.name, kind_name} != _STRUCTURAL:
            raise ValueError(
                f"{path}[{name!r}]: holds a saved {kind_name} ({type_name}), cannot restore a "
                f"{type(target).__name__} from it"
            )
        elif kind.name in ("optimizer", "state") and type_name != type(target).__name__:
            raise ValueError(
                f"{path}[{name!r}]: was saved from {article(type_name)}, not {article(type(target).__name__)}; "
                f"load it with load(path)[{name!r}] and convert it yourself"
            )
        try:
            kind.check(target, data)
        except (TypeError, ValueError) as e:
            raise _named(e, path, name) from None
    _check_disjoint(path, targets)
    return path, stored, given


#: kinds restored by their data's structure alone (``_check_tree`` checks it): one saved as either
#: loads into the other. A lone torch tensor was saved as a "tree" before foreign arrays were array
#: targets (it is an "array" now), and such a file must still load into the tensor.
_STRUCTURAL = {"array", "tree"}


def _undo(kind, target, name: str):
    """A callable putting ``target`` back as it is now: its own ``_restore_point()`` where its load
    writes more than its state dict holds (a Scheduler: the optimizer's groups), else its state's host
    copy loaded back (the live arrays may change)."""
    point = getattr(target, "_restore_point", None)
    if callable(point):
        return point()
    before = _host_copy(kind.dump(target), name, to_torch=kind.name == "state" and _wants_torch(target))
    return lambda: kind.apply(target, before)


def _named(e: Exception, path: str, name: str) -> Exception:
    """``e`` (a TypeError / ValueError about an entry's data) naming the file and the entry."""
    sep = "" if str(e).startswith("[") else ": "  # a path inside the entry continues the name
    return type(e)(f"{path}[{name!r}]{sep}{e}")


def _apply_all(path: str, targets: dict, given: dict) -> None:
    """Restore every target; if one fails, put the ones already restored back as they were."""
    done = []
    items = list(targets.items())
    name: str | None = None
    try:
        for i, (name, target) in enumerate(items):
            kind = _kind_of(target)
            # only a later failure needs the current state: an undo for all targets but the last
            undo = _undo(kind, target, name) if i < len(items) - 1 else None
            kind.apply(target, given[name])
            done.append(undo)
    except BaseException as e:  # (Ctrl-C too: the targets restored so far must not stay so)
        # (each target's own state of before, as it was: a diverged one's NaN included)
        with restoring_own_state():
            for undo in reversed(done):
                undo()
        # a target that only its own loader checks (LBFGS, SAM, schedulers, GradScaler, averages,
        # ...) raised that loader's bare message: named as the checks before it name theirs
        if isinstance(e, Exception) and type(e) in (TypeError, ValueError) and name is not None:
            raise _named(e, path, name) from None  # (exact types: a subclass keeps its own message)
        raise
