"""The Optimizer base class: parameter groups, lazy state, one native call per group per step.

A subclass names its state arrays (PyTorch's names), validates a group's
hyper-parameters into a named tuple (``_check``), says which state arrays those
hyper-parameters need (``_needed``) and runs one native step for a list of
params (``_update``, plain or with capturable mode's device buffers).
Everything else lives here and in the mixins, one job each: whole-step array
checks (``_prechecks``), capturable mode (``_capturable``) and PyTorch-format
``state_dict`` / ``load_state_dict`` (``_state_dict``).
"""

from __future__ import annotations

import numpy as np

from .. import _backend
from .. import functional as F
from ._capturable import CapturableMixin
from ._prechecks import PrecheckMixin
from ._run import _Run
from ._state_dict import StateDictMixin


class Optimizer(CapturableMixin, PrecheckMixin, StateDictMixin):
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
    capturing raises RuntimeError. The device computes the step scalars with the host's
    function (``Rule::at`` in ``rules/optim.hpp``): bitwise equal to the plain step for SGD,
    Adagrad, RMSprop and Adadelta; Adam's and NAdam's bias corrections use the device's
    ``pow``, which may differ from the host's in the last bit of a float64. An eager
    capturable step costs one more (one-thread) kernel launch than a plain one, which
    advances the counters; setting ``capturable`` back to False brings the device counters
    to the host once (a synchronization).
    """

    #: Per-parameter state arrays this optimizer can hold, in PyTorch's names.
    _state_names: tuple = ()
    #: Per-parameter state scalars (besides ``step``) in the state dict.
    _scalar_names: tuple = ()
    #: Whether ``step`` appears in the state dict (not for SGD, like PyTorch).
    _has_step = True
    #: Keep a group in one run even after loading mixed step counts (global-norm optimizers).
    _one_run_per_group = False

    def __init__(self, params, defaults: dict):
        self._dtype_checked: dict = {}  # where -> (hp, params list) last validated against the dtypes
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
        """Validated hyper-parameters of a group, a named tuple (raise ValueError/TypeError naming them)."""
        raise NotImplementedError

    def _needed(self, hp: tuple) -> tuple:
        """Names of the state arrays a step with these hyper-parameters uses."""
        return self._state_names

    def _new_state(self, name: str, p, hp: tuple):
        """A fresh state array for param ``p`` (zeros unless overridden)."""
        return _backend.array_module(p).zeros_like(p)

    def _check_param_dtype(self, p, name: str) -> None:
        """Raise TypeError naming ``name`` unless ``p``'s dtype is one this optimizer updates."""
        if p.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected float32 or float64, got {p.dtype}")

    def _math_dtype(self, dt):
        """The dtype a step computes in for params of dtype ``dt`` (hyper-parameters are checked in it)."""
        return dt

    def _new_extra(self, run: _Run, hp: tuple) -> dict:
        """Fresh per-run scalars (e.g. NAdam's mu_product)."""
        return {}

    def _update(self, run: _Run, grads: list, hp: tuple, t: int, dev=None) -> None:
        """Native step number ``t`` (from 1) of ``run`` with ``grads``; updates ``run.extra``.

        ``dev``: None, or capturable mode's ``(counters, lr_buffer)`` (then the device counters,
        not ``t``, say which step this is).
        """
        raise NotImplementedError

    def _host_step(self, run: _Run) -> int:
        """The step count ``_update`` gets for the next step of ``run``."""
        return run.step + 1

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
            raise TypeError(
                f"param_groups[{len(self.param_groups)}]: expected a dict, got {type(param_group).__name__}"
            )
        gi = len(self.param_groups)
        where = f"param_groups[{gi}]"
        if "params" not in param_group:
            raise ValueError(f"{where}: missing 'params'")
        params = _backend.as_list(param_group["params"], f"{where}['params']")
        mod = _backend.backend((f"{where}['params']", params)) if params else _backend.cpu
        for i, p in enumerate(params):
            self._check_param_dtype(p, f"{where}['params'][{i}]")
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
                        self._leave_capturable(run)
                    self._ensure_state(run, hp)
                    self._update(run, run.grads(grads), hp, self._host_step(run))
                run.step += 1
                run.fresh.clear()

    def _ensure_state(self, run: _Run, hp: tuple) -> None:
        for name in self._needed(hp):
            if name not in run.state:
                run.state[name] = [self._new_state(name, p, hp) for p in run.params]
                run.fresh.add(name)
        if run.step == 0 and not run.extra:
            run.extra = self._new_extra(run, hp)

    def _check_group(self, group: dict, where: str):
        """A group's validated hyper-parameters (``_check``), also against its params' dtypes."""
        hp = self._check(group, where)
        params = group.get("params")
        if params:
            cached = self._dtype_checked.get(where)
            if cached is not None and cached[1] is params and cached[0] == hp:
                return hp  # checked when hp last changed: not every step
            names = {
                "beta1": f"{where}['betas'][0]" if where else "betas[0]",
                "beta2": f"{where}['betas'][1]" if where else "betas[1]",
            }
            for dt in sorted({self._math_dtype(p.dtype) for p in params}, key=str):
                F._check_dtype(hp, dt, where, names)
            self._dtype_checked[where] = (hp, params)
        return hp
