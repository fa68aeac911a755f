"""PyTorch-format ``state_dict`` / ``load_state_dict`` of the optimizers."""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping

import numpy as np

from .. import _backend
from .._foreign import host_values
from .._serial import serialized
from . import _state_checks
from ._parts import OptimizerParts
from ._run import _Run


def follow_reshaped(run: _Run, per_block: Collection[str] = ()) -> None:
    """The state arrays of ``run``'s params reshaped since they were made -- a NumPy param's shape set
    in place (``a.shape = (2, 3)``), a reshape of it at its address put in its place, a torch tensor
    re-viewed so (``t.data = t.data.view(2, 3)``): the same memory read in the same order, which the
    step writes as before -- reshaped with them (views), so that the state is laid out as its param
    is and ``state_dict()`` loads back (its (6,) state was refused against the (2, 3) param). Done
    here, where the state is read, not at every step (a shape compare per param).

    ``per_block``: the states of one value per block, not per element (8-bit block scales), left as
    they are: a param of one element or none has as many blocks as elements, and its scales were
    shaped like it (a 0-d param's (), a (1, 1) one's (1, 1)), which ``load_state_dict`` refused."""
    for name, arrays in run.state.items():
        if name in per_block:
            continue
        for k, (a, p) in enumerate(zip(arrays, run.params)):
            # (a slot may hold what a refused step would not take -- None, a list: its state stays)
            shape = getattr(p, "shape", None)
            if shape is not None and a.shape != shape and a.size == getattr(p, "size", -1):
                arrays[k] = a.reshape(shape)


class StateDictMixin(OptimizerParts):
    """Optimizer's state dict (uses ``param_groups``, ``_runs`` and the subclass hooks)."""

    @property
    def state(self) -> Mapping:
        """The per-parameter state, like torch's ``optimizer.state``: a read-only mapping from each
        parameter that has taken a step (the array in ``param_groups``, or the object passed in,
        e.g. a torch tensor) to its ``state_dict()`` entry: ``{"step": ..., <state name>: array}``
        (the live arrays). Parameters are looked up by identity (NumPy arrays are not hashable)."""
        return _StateView(self)

    def _per_block_states(self) -> tuple:
        """The state names holding one value per block of a param, not one per element (none here;
        8-bit states' block scales: ``LowpStateDictMixin``)."""
        return ()

    @serialized
    def state_dict(self) -> dict:
        """The optimizer state in PyTorch's format.

        ``{"state": {index: {"step": int, <state name>: array, ...}}, "param_groups":
        [{<hyper-parameters>, "params": [index, ...]}]}``, indices counting parameters across
        groups in order. Arrays are the live state (not copies), as in PyTorch, and each group
        is a new dict of the group's own values (a ``betas`` list is shared, as in PyTorch); only
        parameters that have taken a step have an entry. State arrays are CuPy arrays for CuPy
        parameters; in capturable mode ``step`` is the live 0-d float64 CuPy array that the
        device increments (shared by the parameters of a group).

        Taken under the optimizer's lock (``optkern._serial``): a ``step`` in another thread runs
        before or after it, so the dict's entries are of one step count; but its arrays are the
        ones that later steps write in place, as torch's are. Copy them (``copy.deepcopy``) before
        stepping on to keep a snapshot, as with torch.
        """
        state = {}
        # SGD has no step count in torch's format; in low precision it keeps one (the step is the
        # stochastic rounding's Philox stream: a resumed run must not draw the same words again)
        counted = self._has_step or getattr(self, "_lowp", None) is not None
        for group_runs in self._runs:
            for run in group_runs:
                # (not stepped: no entry, unless it holds moments a checkpoint gave it at step 0 -- kept, as
                # torch keeps them -- rather than ones made for a step that was then refused)
                if run.step == 0 and run.fresh.issuperset(n for n in type(self)._state_names if n in run.state):
                    continue
                follow_reshaped(run, self._per_block_states())
                scalars = self._extra_to_state(run)
                for k, i in enumerate(run.index):
                    entry = {"step": run.dev["step"] if run.dev is not None else run.step} if counted else {}
                    for name in self._state_names:
                        if name in run.state:
                            entry[name] = run.state[name][k]
                    entry.update(scalars)
                    if entry:
                        state[i] = entry
        groups = []
        start = 0
        for g in self.param_groups:
            n = len(g["params"])
            d = {k: v for k, v in g.items() if k != "params"}
            d["params"] = list(range(start, start + n))
            start += n
            groups.append(d)
        return {"state": state, "param_groups": groups}

    def _check_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Raise what :meth:`load_state_dict` would raise for ``state_dict``; change nothing.

        ``optkern.load`` checks every target this way before it restores any of them.
        """
        _backend.flag("strict", strict)
        self._check_param_groups()
        _state_checks.check_state_dict(self, state_dict, strict=strict)

    @serialized
    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Load a state dict from :meth:`state_dict` (or a PyTorch optimizer of the same kind).

        State arrays may be NumPy or CuPy arrays or CPU torch tensors; they are copied into
        new arrays on the parameters' backend and device, in the parameters' dtype
        (``step`` may be a number or a 0-d array of either kind), and the groups' values are
        deep-copied (as PyTorch's loader copies them): the optimizer keeps nothing of
        ``state_dict``. Hyper-parameters come from
        the state dict except ``capturable``, which stays this optimizer's (it says how steps
        run, not where training is). Everything is checked before anything changes (see
        :mod:`optkern.optim._state_checks`): each state array has its parameter's shape, is
        finite and obeys its sign (second moments, accumulators >= 0); steps are non-negative
        integers; a parameter's entry holds all the state its hyper-parameters need; each group
        has ``lr`` and the optimizer's core hyper-parameters; no unknown keys at the top level or
        in a state entry (a group's other entries, such as a scheduler's ``initial_lr`` or
        torch's ``foreach``, are kept, as PyTorch keeps them). ``strict=False``
        ignores unknown keys, keeps this optimizer's value of a missing hyper-parameter and
        reads an empty entry as "not stepped yet"; values are checked either way.
        """
        _backend.flag("strict", strict)
        self._check_param_groups()
        _state_checks.check_state_dict(self, state_dict, strict=strict)
        saved_groups = list(state_dict["param_groups"])  # (their structure checked above)
        saved_state = state_dict["state"]
        new_groups, new_runs = [], []
        start = 0
        for gi, (ours, saved) in enumerate(zip(self.param_groups, saved_groups)):
            where = f"state_dict['param_groups'][{gi}]"
            ids = list(saved["params"])
            group = {
                **ours,
                # copies, as torch's loader deep-copies the saved groups: a mutable value (a betas
                # list, an extra entry) stayed shared with the caller's dict, whose later changes
                # then reached this optimizer
                **{k: copy.deepcopy(v) for k, v in _state_checks.saved_values(saved, where).items()},
                "params": ours["params"],
            }
            hp, cap, lr_dev = self._checked(group, where)
            if cap and ours["params"]:
                self._check_capturable_arrays(f"param_groups[{gi}]['capturable']", ours["params"][0], lr_dev, where)
            records = [self._parse_entry(saved_state, sid, p, hp) for sid, p in zip(ids, ours["params"])]
            new_groups.append(group)
            new_runs.append(
                self._make_runs(
                    range(start, start + len(ids)),
                    ours["params"],
                    records,
                    self._runs[gi][0].mod if self._runs[gi] else _backend.cpu,
                )
            )
            start += len(ids)
        for group, group_runs in zip(new_groups, new_runs):  # capturable: device counters now, not mid-capture
            if self._capturable and group.get("capturable", False):
                for run in group_runs:
                    run.dev = self._new_dev(run)
        for ours, new in zip(self.param_groups, new_groups):
            ours.clear()
            ours.update(new)
        self._runs = new_runs

    def _parse_entry(self, saved_state: dict, sid, p, hp):
        """(step, {name: array}, extra) for one parameter, arrays copied onto p's backend."""
        entry = saved_state.get(sid, saved_state.get(str(sid)))  # str keys after a JSON round trip
        where = f"state_dict['state'][{sid!r}]"
        if not entry:
            return 0, {}, {}
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a dict, got {type(entry).__name__}")
        arrays = {}
        for name in self._state_names:
            if entry.get(name) is not None:
                arrays[name] = _copy_like(entry[name], p, f"{where}[{name!r}]")
        if self._has_step or "step" in entry:
            step = _as_step(entry.get("step"), f"{where}['step']")
        else:
            step = 1 if arrays else 0
        if step > 0:
            missing = [n for n in self._needed(hp) if n not in arrays]
            if missing:
                raise ValueError(f"{where}: missing state {missing[0]!r} needed by these hyper-parameters")
        extra = self._extra_from_state(entry, where) if _state_checks.scalars_saved(self, entry, step) else {}
        return step, arrays, extra

    def _make_runs(self, index, params, records, mod):
        """Split a group into runs of equal step (and extra scalars), keeping parameter order."""
        index = list(index)
        if not index:
            return []
        if self._one_run_per_group:
            first = next((r for r in records if r[0] > 0), records[0])
            keys = [0] * len(records)
            records = [(first[0], r[1], first[2]) for r in records]
        else:
            keys = [(r[0], tuple(sorted(r[1])), tuple(sorted(r[2].items(), key=lambda kv: kv[0]))) for r in records]
        runs = []
        for key in dict.fromkeys(keys):
            ks = [k for k, kk in enumerate(keys) if kk == key]
            step, _, extra = records[ks[0]]
            # (a step-0 entry's moments too: torch.optim.Adagrad's made at construction, or any torch
            # checkpoint saved at step 0, which torch's next step reads -- they were dropped)
            names = set.intersection(*(set(records[k][1]) for k in ks))
            state = {n: [records[k][1][n] for k in ks] for n in self._state_names if n in names}
            # (a run of the whole group holds its list, where a param may be replaced in place)
            ps = params if len(ks) == len(params) else [params[k] for k in ks]
            run = _Run([index[k] for k in ks], ps, mod, step, state, dict(extra))
            runs.append(run)
        return runs


def _as_step(v, name: str) -> int:
    if v is None:
        raise ValueError(f"{name}: missing")
    if _backend.is_cupy(v):  # a capturable optimizer's device counter
        v = v.get()
    try:
        f = float(np.asarray(v).item()) if not isinstance(v, (int, float)) else float(v)
    except Exception:
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}") from None
    if not (f >= 0 and f == int(f)):
        raise ValueError(f"{name}: expected a non-negative integer, got {f}")
    return int(f)


def _to_host(v, name: str):
    if _backend.is_cupy(v):
        return v.get()
    try:
        a = host_values(v)  # (a torch tensor's values: see _foreign.host_values)
    except Exception:
        raise TypeError(f"{name}: expected an array, got {type(v).__name__}") from None
    return a


def _copy_like(v, p, name: str):
    """A new array on p's backend and device with p's dtype and shape holding v's values."""
    xp = _backend.array_module(p)
    same_device = xp is not np and _backend.is_cupy(v) and v.device.id == p.device.id
    src = v if same_device else _to_host(v, name)  # another GPU goes through the host (rare)
    if src.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a real array, got dtype {src.dtype}")
    if src.size != p.size:
        raise ValueError(f"{name}: expected {_backend.counted(p.size, 'element')} (like its parameter), got {src.size}")
    with _backend._device_of(p):
        # C order whatever the source's layout (a Fortran array, torch's channels_last state): the
        # native steps take C-contiguous arrays only, and refused the copy at every later step
        return xp.array(src, dtype=p.dtype, copy=True, order="C").reshape(p.shape)


class _StateView(Mapping):
    """``Optimizer.state``: param -> its state dict entry, read-only, looked up by identity."""

    def __init__(self, opt):
        self._opt = opt

    def _entries(self) -> dict:
        return self._opt.state_dict()["state"]

    def _index(self, param):
        """The global index of ``param``: a param in ``param_groups`` now (replaced ones included),
        else an object given for one at construction (a torch tensor for its view)."""
        for i, p in enumerate(p for g in self._opt.param_groups for p in g["params"]):
            if p is param:
                return i
        return self._opt._index_of.get(id(param))

    def __getitem__(self, param):
        i = self._index(param)
        entry = None if i is None else self._entries().get(i)
        if entry is None:
            raise KeyError("no state for this parameter (not a parameter of this optimizer, or not stepped yet)")
        return _Entry(entry)

    def __iter__(self):
        params = [p for g in self._opt.param_groups for p in g["params"]]
        return iter([params[i] for i in self._entries()])

    def __len__(self) -> int:
        return len(self._entries())

    def __contains__(self, param) -> bool:
        i = self._index(param)
        return i is not None and i in self._entries()

    def __repr__(self) -> str:
        return f"<optimizer state of {len(self)} parameters>"


class _Entry(dict):
    """One ``Optimizer.state[param]`` entry: read-only. It is made from ``state_dict()`` at each
    lookup, so a key assigned into it (torch's ``opt.state[p]["exp_avg"] = t``) reached nothing the
    optimizer reads: it stepped on with its old state, silently. Its arrays are the live state
    (change them in place); copies (``copy``, ``pickle``, ``dict(e)``, ``e | {}``) are plain dicts."""

    def _refuse(self, *args, **kwargs):
        raise TypeError(
            "optimizer.state[param]: is read-only (its arrays are the live state: change them in "
            "place; load_state_dict replaces state)"
        )

    __setitem__ = __delitem__ = __ior__ = update = pop = popitem = setdefault = clear = _refuse

    def __reduce__(self):
        return dict, (dict(self),)

    def copy(self) -> dict:
        return dict(self)

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo) -> dict:
        return copy.deepcopy(dict(self), memo)
