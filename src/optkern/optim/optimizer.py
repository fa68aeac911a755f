"""The Optimizer base class: parameter groups, lazy state, one native call per group per step.

A subclass names its state arrays (PyTorch's names), validates a group's
hyper-parameters into a tuple (``_check``), says which state arrays those
hyper-parameters need (``_needed``) and runs one native step for a list of
params (``_update``, and ``_update_capturable`` for ``capturable=True``).
Everything else lives here: groups, state creation with the params' array
module (NumPy or CuPy), validation of every group before the first write,
capturable mode's device buffers, and PyTorch-format ``state_dict`` /
``load_state_dict``.
"""
from __future__ import annotations

import bisect

import numpy as np

from .. import _backend
from .. import functional as F
from . import _capturable, _state_checks


class _Run:
    """Params of one group that share a step count and state layout: one native call per step.

    A group is one run unless a loaded state dict gave its params different step counts.
    """

    __slots__ = ("index", "sel", "params", "state", "step", "extra", "mod", "fresh", "dev", "_names")

    def __init__(self, index, params, mod, step=0, state=None, extra=None):
        self.index = list(index)  # global parameter indices
        contiguous = self.index == list(range(self.index[0], self.index[0] + len(self.index))) if index else True
        self.sel = slice(self.index[0], self.index[0] + len(self.index)) if (index and contiguous) else self.index
        self.params = params
        self.state = {} if state is None else state  # name -> list of arrays (aligned with params)
        self.step = step
        self.extra = {} if extra is None else extra  # per-run scalars (mu_product, b_sq buffer, ...)
        self.mod = mod
        self.fresh = set()  # state names created and not yet stepped (SGD's first-step buffers)
        # capturable mode: {"step": 0-d float64, "hp": float64 buffer, ...} on the params' device. While it
        # exists the device step counter is the truth; self.step then only counts step() calls.
        self.dev = None
        self._names = None  # cached check names: (key, written names, grad names)

    def grads(self, grads):
        s = self.sel
        return grads[s] if isinstance(s, slice) else [grads[i] for i in s]


def _data_span(a):
    """(first byte, one past the last byte) of an array's buffer (NumPy or CuPy)."""
    ptr = a.data.ptr if _backend.is_cupy(a) else a.__array_interface__["data"][0]
    return ptr, ptr + a.nbytes


def _type_name(a) -> str:
    """"list", "cupy.ndarray", ...: as the native checks name a wrong kind."""
    t = type(a)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__.split('.')[0]}.{t.__qualname__}"


class Optimizer:
    """Base class of the optkern optimizers (PyTorch-style, for NumPy and CuPy arrays).

    Args:
      params: a list of arrays, or a list of dicts each with ``"params"`` (a list of arrays)
        and per-group hyper-parameters overriding ``defaults``.
      defaults: the optimizer's hyper-parameters.

    ``param_groups`` holds the groups as dicts; hyper-parameters may be changed between steps
    (schedules) and are validated at every ``step``. Arrays are updated in place.

    Capturable mode (``capturable=True``, CuPy parameters only; like PyTorch's): the step
    counter lives on the device (a 0-d float64 CuPy array per group, ``state_dict()``'s
    ``step``) and each step computes its step-dependent scalars (bias corrections, decayed
    learning rate) on the device, on CuPy's current stream, without copies or host
    synchronization, so ``step()`` can be captured in a CUDA graph and replayed:

    .. code-block:: python

        opt = optkern.optim.AdamW(params, lr=1e-3, capturable=True)
        s = cupy.cuda.Stream(non_blocking=True)
        with s:
            opt.step(static_grads)      # warm-up: creates state, compiles kernels
            s.begin_capture()
            opt.step(static_grads)
            graph = s.end_capture()
            for batch in data:
                ...                     # write new gradients into static_grads
                graph.launch(s)         # one optimizer step

    A captured step reads the same arrays (``params``, the state, ``static_grads``) at every
    replay, and the host hyper-parameters (``lr``, betas, ...) as they were at capture
    time: changing ``group["lr"]`` afterwards has no effect on replays. For a schedule, set
    ``group["lr"]`` to a float64 CuPy array of one element (read on the device at every
    replay; update it in place, e.g. ``lr_dev.fill(x)`` on the capture stream, no range
    check) or capture again. Take at least one eager step before capturing: state arrays
    are created on the first step, and a step that would create state while the stream is
    capturing raises RuntimeError. Bitwise equal to the plain step for SGD, Adagrad,
    RMSprop and Adadelta; Adam's and NAdam's bias corrections use the device's ``pow``, which
    may differ from the host's in the last bit of a float64. An eager capturable step costs
    one more (one-thread) kernel launch than a plain one; setting ``capturable`` back to
    False brings the device counters to the host once (a synchronization).
    """

    #: Per-parameter state arrays this optimizer can hold, in PyTorch's names.
    _state_names: tuple = ()
    #: Per-parameter state scalars (besides ``step``) in the state dict.
    _scalar_names: tuple = ()
    #: Whether ``step`` appears in the state dict (not for SGD, like PyTorch).
    _has_step = True
    #: Keep a group in one run even after loading mixed step counts (global-norm optimizers).
    _one_run_per_group = False
    #: Native rule with a ``<rule>_capturable`` variant (None: no capturable mode).
    _capturable_rule = None

    def __init__(self, params, defaults: dict):
        self._checked(defaults, "")  # names the bad argument plainly: "lr: must be ..."
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self._runs: list[list[_Run]] = []  # per group
        self._n = 0
        if isinstance(params, dict):
            raise TypeError("params: expected a list of arrays or a list of dicts, got a dict")
        if isinstance(params, np.ndarray) or _backend.is_cupy(params):
            params = [params]
        groups = list(params)
        if not groups:
            raise ValueError("params: optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # ---- subclass hooks ------------------------------------------------------------

    def _check(self, group: dict, where: str) -> tuple:
        """Validated hyper-parameters of a group (raise ValueError/TypeError naming them)."""
        raise NotImplementedError

    def _needed(self, hp: tuple) -> tuple:
        """Names of the state arrays a step with these hyper-parameters uses."""
        return self._state_names

    def _new_state(self, name: str, p, hp: tuple):
        """A fresh state array for param ``p`` (zeros unless overridden)."""
        return _backend.array_module(p).zeros_like(p)

    def _new_extra(self, run: _Run, hp: tuple) -> dict:
        """Fresh per-run scalars (e.g. NAdam's mu_product)."""
        return {}

    def _update(self, run: _Run, grads: list, hp: tuple, t: int) -> None:
        """Native step number ``t`` (from 1) of ``run`` with ``grads``; updates ``run.extra``."""
        raise NotImplementedError

    def _update_capturable(self, run: _Run, grads: list, hp: tuple, lr_dev) -> None:
        """Capturable step of ``run``: scalars from ``run.dev`` (see :mod:`._capturable`)."""
        raise NotImplementedError

    def _new_dev(self, run: _Run) -> dict:
        """Capturable mode's device buffers for ``run``, from its host step (and extras)."""
        p = run.params[0]
        dev = {"hp": _capturable.hp_buffer(p, self._capturable_rule)}
        if self._has_step:
            dev["step"] = _capturable.device_scalar(p, run.step)
        return dev

    def _dev_to_host(self, run: _Run) -> None:
        """Leaving capturable mode: the device counters back into ``run.step`` / ``run.extra`` (syncs)."""
        if "step" in run.dev:
            run.step = int(run.dev["step"].get())

    def _extra_to_state(self, run: _Run) -> dict:
        """Per-parameter scalars for the state dict."""
        return {}

    def _extra_from_state(self, entry: dict, where: str) -> dict:
        """Per-run scalars from one parameter's state dict entry (validated)."""
        return {}

    # ---- groups -----------------------------------------------------------------

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (a dict with ``"params"`` and optional hyper-parameters)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_groups[{len(self.param_groups)}]: expected a dict, "
                            f"got {type(param_group).__name__}")
        gi = len(self.param_groups)
        where = f"param_groups[{gi}]"
        if "params" not in param_group:
            raise ValueError(f"{where}: missing 'params'")
        params = _backend.as_list(param_group["params"], f"{where}['params']")
        mod = _backend.backend((f"{where}['params']", params)) if params else _backend.cpu
        for i, p in enumerate(params):
            if p.dtype not in (np.float32, np.float64):
                raise TypeError(f"{where}['params'][{i}]: expected float32 or float64, got {p.dtype}")
            if not p.flags.c_contiguous:
                raise ValueError(f"{where}['params'][{i}]: array must be C-contiguous")
            if not _backend.is_cupy(p) and not p.flags.writeable:
                raise ValueError(f"{where}['params'][{i}]: array is read-only")
            if (p.data.ptr % p.itemsize != 0) if _backend.is_cupy(p) else not p.flags.aligned:
                raise ValueError(f"{where}['params'][{i}]: array data is misaligned")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if id(p) in seen:
                raise ValueError(f"{where}['params'][{i}]: appears in more than one parameter group")
            seen.add(id(p))
        group = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}, "params": params}
        _, cap, lr_dev = self._checked(group, where)
        if cap and params:
            flag = f"{where}['capturable']" if "capturable" in param_group else "capturable"
            self._check_capturable_arrays(flag, params[0], lr_dev, where)
        self.param_groups.append(group)
        self._runs.append([_Run(range(self._n, self._n + len(params)), params, mod)] if params else [])
        self._n += len(params)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])

    # ---- hyper-parameters and capturable mode ------------------------------------------

    def _checked(self, group: dict, where: str):
        """(hp tuple, capturable flag, device lr or None) of a group, validated.

        A CuPy ``lr`` (capturable mode only) is read on the device; the host checks see 0.0.
        """
        n = (lambda k: f"{where}[{k!r}]") if where else (lambda k: k)
        cap = False
        if self._capturable_rule is not None:
            cap = group.get("capturable", False)
            if not isinstance(cap, (bool, np.bool_)):
                raise TypeError(f"{n('capturable')}: expected a bool, got {type(cap).__name__}")
            cap = bool(cap)
        lr_dev = group.get("lr")
        if not _backend.is_cupy(lr_dev):
            return self._check(group, where), cap, None
        if not cap:
            raise TypeError(f"{n('lr')}: a CuPy array is read on the device only in capturable mode "
                            "(capturable=True); pass a float otherwise")
        if lr_dev.dtype != np.float64 or lr_dev.size != 1:
            raise TypeError(f"{n('lr')}: expected a float64 CuPy array of one element, got "
                            f"{lr_dev.dtype} with {lr_dev.size} elements")
        return self._check({**group, "lr": 0.0}, where), cap, lr_dev

    def _check_capturable_arrays(self, flag: str, p, lr_dev, where: str) -> None:
        """Capturable mode needs CuPy parameters (and a device lr on their device)."""
        if not _backend.is_cupy(p):
            raise ValueError(f"{flag}: needs CuPy arrays (the parameters are NumPy arrays); "
                             "capturable=True is for CUDA graphs")
        if lr_dev is not None and lr_dev.device.id != p.device.id:
            name = f"{where}['lr']" if where else "lr"
            raise ValueError(f"{name}: is on device {lr_dev.device.id} but the parameters are on device "
                             f"{p.device.id}")

    def _step_capturable(self, run: _Run, grads: list, hp: tuple, lr_dev) -> None:
        if run.dev is None or any(name not in run.state for name in self._needed(hp)):
            if _capturable.is_capturing(run.params[0]):
                raise RuntimeError("capturable: this step would create optimizer state while the stream is "
                                   "capturing a graph; take one eager step before capturing")
            self._ensure_state(run, hp)
            if run.dev is None:
                run.dev = self._new_dev(run)
        try:
            self._update_capturable(run, grads, hp, lr_dev)
        except Exception:  # the native call checks before it launches: only the counters moved
            _capturable.restore(run.dev, self._capturable_rule)
            raise

    # ---- step -----------------------------------------------------------------------

    def step(self, grads) -> None:
        """Update every parameter in place from ``grads``.

        Args:
          grads: arrays matching the parameters of all groups in shape and dtype, in order
            (one flat list).

        Every group's hyper-parameters, every gradient and every parameter and state array
        are checked before the first parameter is written; on error nothing changes.
        """
        if type(grads) is not list:
            grads = _backend.as_list(grads, "grads")
        if len(grads) != self._n:
            raise ValueError(f"grads: expected {self._n} arrays (one per parameter), got {len(grads)}")
        groups = self.param_groups
        checked = [self._checked(g, f"param_groups[{i}]") for i, g in enumerate(groups)]
        runs = self._runs
        for gi, (_, cap, lr_dev) in enumerate(checked):
            if cap and runs[gi]:
                where = f"param_groups[{gi}]"
                self._check_capturable_arrays(f"{where}['capturable']", runs[gi][0].params[0], lr_dev, where)
        if len(runs) != 1 or len(runs[0]) != 1:
            self._precheck(grads)
        else:  # one native call checks everything before it writes, but compares sizes, not shapes
            F._check_shapes(runs[0][0].params, grads)
        for gi, group_runs in enumerate(runs):
            hp, cap, lr_dev = checked[gi]
            for run in group_runs:
                if cap:
                    self._step_capturable(run, run.grads(grads), hp, lr_dev)
                else:
                    if run.dev is not None:
                        self._dev_to_host(run)
                        run.dev = None
                    self._ensure_state(run, hp)
                    self._update(run, run.grads(grads), hp, run.step + 1)
                run.step += 1
                run.fresh.clear()

    def _ensure_state(self, run: _Run, hp: tuple) -> None:
        for name in self._needed(hp):
            if name not in run.state:
                run.state[name] = [self._new_state(name, p, hp) for p in run.params]
                run.fresh.add(name)
        if run.step == 0 and not run.extra:
            run.extra = self._new_extra(run, hp)

    def _precheck(self, grads) -> None:
        """Checks of every param, state array and gradient, for steps made of several native calls
        (the native checks of a later call would come after an earlier call has written)."""
        runs = [run for group_runs in self._runs for run in group_runs]
        if all(run.mod is _backend.cpu for run in runs) and len(grads) == sum(len(r.params) for r in runs):
            self._precheck_native(runs, grads)
        else:
            self._precheck_python(grads)

    def _precheck_native(self, runs, grads) -> None:
        """One native pass (``precheck_step_``) over all runs of a NumPy step."""
        spec = []
        for run in runs:
            names = self._needed_any(run)
            written = run.params + [a for name in names for a in run.state[name]]
            key = (tuple(names), len(run.params))
            cached = run._names
            if cached is None or cached[0] != key:
                wn = [f"params[{i}]" for i in run.index] + [f"state[{i}][{n!r}]" for n in names for i in run.index]
                cached = (key, wn, [f"grads[{i}]" for i in run.index])
                run._names = cached
            g = run.grads(grads)
            if any(type(a) is not np.ndarray for a in g):  # the Python checks name the wrong kind
                return self._precheck_python(grads)
            spec.append((run.params[0].dtype, written, cached[1], g, run.params, cached[2]))
        _backend.cpu.precheck_step_(spec)

    def _precheck_python(self, grads) -> None:
        """The same checks in Python (CuPy steps, unusual inputs)."""
        written = []
        for group_runs in self._runs:
            for run in group_runs:
                self._check_run_arrays(run)
                for name in self._needed_any(run):
                    written += [_data_span(a) for a in run.state[name] if a.nbytes]
                written += [_data_span(p) for p in run.params if p.nbytes]
        written.sort()
        los = [w[0] for w in written]
        reach = []  # reach[k]: furthest end among the first k + 1 spans
        for _, hi in written:
            reach.append(max(hi, reach[-1]) if reach else hi)
        for group_runs in self._runs:
            for run in group_runs:
                for i, p in zip(run.index, run.params):
                    g = grads[i]
                    name = f"grads[{i}]"
                    if _backend.is_cupy(g) != _backend.is_cupy(p) or not hasattr(g, "dtype"):
                        kind = "cupy.ndarray" if _backend.is_cupy(p) else "numpy.ndarray"
                        raise TypeError(f"{name}: expected a {kind}, got {_type_name(g)}")
                    if g.dtype != p.dtype:
                        raise TypeError(f"{name}: expected {p.dtype}, got {g.dtype}")
                    if _backend.is_cupy(g) and g.device.id != p.device.id:
                        raise ValueError(f"{name}: is on device {g.device.id} but its parameter is on device "
                                         f"{p.device.id}")
                    if g.size != p.size:
                        raise ValueError(f"{name}: expected {p.size} elements, got {g.size}")
                    if g.shape != p.shape:
                        raise ValueError(f"{name}: expected shape {tuple(p.shape)}, got {tuple(g.shape)}")
                    if not g.flags.c_contiguous:
                        raise ValueError(f"{name}: array must be C-contiguous")
                    if not g.nbytes:
                        continue
                    lo, hi = _data_span(g)
                    if lo % g.itemsize:
                        raise ValueError(f"{name}: array data is misaligned")
                    k = bisect.bisect_left(los, hi)  # written spans starting below hi
                    if k and reach[k - 1] > lo:
                        raise ValueError(f"{name} shares memory with a parameter or state array "
                                         "(aliasing arrays cannot be updated in place)")

    def _check_run_arrays(self, run: _Run) -> None:
        """A run's params and state as its native call would check them, named by global index.

        A param can turn read-only after construction, and state arrays are the user's too
        (``state_dict`` hands out the live arrays).
        """
        dt = run.params[0].dtype
        if dt not in (np.float32, np.float64):
            raise TypeError(f"params[{run.index[0]}]: expected float32 or float64, got {dt}")
        names = self._needed_any(run)
        for k, (i, p) in enumerate(zip(run.index, run.params)):
            _backend.check_written(p, dt, f"params[{i}]")
            for name in names:
                _backend.check_written(run.state[name][k], dt, f"state[{i}][{name!r}]")

    def _needed_any(self, run: _Run):
        return [n for n in self._state_names if n in run.state]

    # ---- state dict -------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The optimizer state in PyTorch's format.

        ``{"state": {index: {"step": int, <state name>: array, ...}}, "param_groups":
        [{<hyper-parameters>, "params": [index, ...]}]}``, indices counting parameters across
        groups in order. Arrays are the live state (not copies), as in PyTorch; only
        parameters that have taken a step have an entry. State arrays are CuPy arrays for CuPy
        parameters; in capturable mode ``step`` is the live 0-d float64 CuPy array that the
        device increments (shared by the parameters of a group).
        """
        state = {}
        for group_runs in self._runs:
            for run in group_runs:
                if run.step == 0:
                    continue
                scalars = self._extra_to_state(run)
                for k, i in enumerate(run.index):
                    entry = {"step": run.dev["step"] if run.dev is not None else run.step} if self._has_step else {}
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

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Load a state dict from :meth:`state_dict` (or a PyTorch optimizer of the same kind).

        State arrays may be NumPy or CuPy arrays or CPU torch tensors; they are copied into
        new arrays on the parameters' backend and device, in the parameters' dtype
        (``step`` may be a number or a 0-d array of either kind). Hyper-parameters come from
        the state dict except ``capturable``, which stays this optimizer's (it says how steps
        run, not where training is). Everything is checked before anything changes (see
        :mod:`optkern.optim._state_checks`): each state array has its parameter's shape, is
        finite and obeys its sign (second moments, accumulators >= 0); steps are non-negative
        integers; a parameter's entry holds all the state its hyper-parameters need; each group
        has ``lr`` and the optimizer's core hyper-parameters; no unknown keys. ``strict=False``
        ignores unknown keys, keeps this optimizer's value of a missing hyper-parameter and
        reads an empty entry as "not stepped yet"; values are checked either way.
        """
        _state_checks.check_state_dict(self, state_dict, strict=strict)
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError("state_dict: expected a dict with 'state' and 'param_groups'")
        saved_groups = list(state_dict["param_groups"])
        saved_state = state_dict["state"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict: has {len(saved_groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        new_groups, new_runs = [], []
        start = 0
        for gi, (ours, saved) in enumerate(zip(self.param_groups, saved_groups)):
            where = f"state_dict['param_groups'][{gi}]"
            ids = list(saved.get("params", []))
            if len(ids) != len(ours["params"]):
                raise ValueError(f"{where}: has {len(ids)} parameters, this optimizer's group has "
                                 f"{len(ours['params'])}")
            group = {**ours, **{k: v for k, v in saved.items() if k not in ("params", "capturable")},
                     "params": ours["params"]}
            hp, cap, lr_dev = self._checked(group, where)
            if cap and ours["params"]:
                self._check_capturable_arrays(f"param_groups[{gi}]['capturable']", ours["params"][0], lr_dev, where)
            records = [self._parse_entry(saved_state, sid, p, hp) for sid, p in zip(ids, ours["params"])]
            new_groups.append(group)
            new_runs.append(self._make_runs(range(start, start + len(ids)), ours["params"], records,
                                            self._runs[gi][0].mod if self._runs[gi] else _backend.cpu))
            start += len(ids)
        for group, group_runs in zip(new_groups, new_runs):  # capturable: device counters now, not mid-capture
            if self._capturable_rule is not None and group.get("capturable", False):
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
        if self._has_step:
            step = _as_step(entry.get("step"), f"{where}['step']")
        else:
            step = 1 if arrays else 0
        if step > 0:
            missing = [n for n in self._needed(hp) if n not in arrays]
            if missing:
                raise ValueError(f"{where}: missing state {missing[0]!r} needed by these hyper-parameters")
        extra = self._extra_from_state(entry, where) if step > 0 else {}
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
            keys = [(r[0], tuple(sorted(r[1])), tuple(sorted(r[2].items(), key=lambda kv: kv[0])))
                    for r in records]
        runs = []
        for key in dict.fromkeys(keys):
            ks = [k for k, kk in enumerate(keys) if kk == key]
            step, _, extra = records[ks[0]]
            names = set.intersection(*(set(records[k][1]) for k in ks)) if step > 0 else set()
            state = {n: [records[k][1][n] for k in ks] for n in self._state_names if n in names}
            run = _Run([index[k] for k in ks], [params[k] for k in ks], mod, step, state, dict(extra))
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
        a = np.asarray(v)
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
        raise ValueError(f"{name}: expected {p.size} elements (like its parameter), got {src.size}")
    with _backend._device_of(p):
        return xp.array(src, dtype=p.dtype, copy=True).reshape(p.shape)
