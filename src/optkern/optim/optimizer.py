"""The Optimizer base class: parameter groups, lazy state, one native call per group per step.

A subclass names its state arrays (PyTorch's names), validates a group's
hyper-parameters into a named tuple (``_check``), says which state arrays those
hyper-parameters need (``_needed``) and runs one native step for a list of
params (``_update``, plain or with capturable mode's device buffers).
Everything else lives here and in the mixins, one job each: whole-step array
checks (``_prechecks``), capturable mode (``_capturable``), PyTorch-format
``state_dict`` / ``load_state_dict`` (``_state_dict``), following ``param_groups``
between steps (``_group_tracking``), a group's hyper-parameter checks and their caches
(``_group_hyper``), and copies and the torch tensors among the params (``_given``).
"""

from __future__ import annotations

from operator import is_

import numpy as np

from .. import _backend
from .._atomic import deferring
from .._serial import serialized
from .._words import article
from . import _closure
from ._capturable import CapturableMixin
from ._given import CopyMixin, FollowsTensors, _bump_torch_versions
from ._group_hyper import GroupHyperMixin
from ._group_tracking import GroupTrackingMixin, refuse_unordered
from ._hyper import _check_shapes
from ._lowp_config import refuse_group_keywords
from ._prechecks import PrecheckMixin
from ._run import _merged, _Run
from ._state_dict import StateDictMixin


class Optimizer(
    CapturableMixin, PrecheckMixin, StateDictMixin, GroupTrackingMixin, GroupHyperMixin, CopyMixin, FollowsTensors
):
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
    #: Set by ``amp.GradScaler.step`` around a step: the grads it checked (``_check_step``) before
    #: unscaling them in place; the step does not check those same arrays again.
    _amp_checked: list | None = None

    def __init__(self, params, defaults: dict):
        self._dtype_checked: dict = {}  # where -> (hp, params list) last validated against the dtypes
        self._hp_checked: dict = {}  # where -> (keys, values, hp): _check's result for those very values
        self._checked(defaults, "")  # names the bad argument plainly: "lr: must be ..."
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self._runs: list[list[_Run]] = []  # per group
        self._n = 0
        self._index_of = {}  # id(param) -> global index, for the params as given and as viewed
        self._given: list = []  # the params as given (torch tensors stay alive with their views)
        self._given_tensors: list = []  # the torch tensors among them (followed to new memory: FollowsTensors)
        self._group_params: list[tuple] = []  # per group, (its params list, the arrays as added)
        self._seen: list[tuple] = []  # per group, the arrays its list held when last checked
        if isinstance(params, dict):
            raise TypeError("params: expected a list of arrays or a list of dicts, got a dict")
        if _backend.is_array(params):
            params = [params]
        refuse_unordered(params, "params")
        try:
            it = iter(params)
        except TypeError:  # (Python's "'NoneType' object is not iterable" named no argument)
            raise TypeError(
                f"params: expected a list of arrays or a list of dicts, got {type(params).__name__}"
            ) from None
        groups = list(it)
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

    def _initial_value(self, name: str, hp: tuple) -> float:
        """The value state array ``name`` starts at (0 unless overridden: Adagrad's accumulator)."""
        return 0.0

    def _new_state(self, name: str, p, hp: tuple):
        """A fresh state array for param ``p``, every element ``_initial_value``."""
        v = self._initial_value(name, hp)
        xp = _backend.array_module(p)
        return xp.full_like(p, v) if v else xp.zeros_like(p)

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

    @serialized
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (a dict with ``"params"`` and optional hyper-parameters)."""
        if not isinstance(param_group, dict):
            raise TypeError(
                f"param_groups[{len(self.param_groups)}]: expected a dict, got {type(param_group).__name__}"
            )
        self._check_param_groups()
        gi = len(self.param_groups)
        where = f"param_groups[{gi}]"
        if "params" not in param_group:
            raise ValueError(f"{where}: missing 'params'")
        refuse_group_keywords(param_group, where)
        given = param_group["params"]
        refuse_unordered(given, f"{where}['params']")
        if _backend.is_array(given):
            given = [given]
        elif not isinstance(given, list):
            try:
                given = list(given)  # (model.parameters(): a generator, read once)
            except TypeError:
                pass  # as_list names it
        params = _backend.as_list(given, f"{where}['params']")
        mod = _backend.backend((f"{where}['params']", params)) if params else _backend.cpu
        for i, p in enumerate(params):
            self._check_param_dtype(p, f"{where}['params'][{i}]")
            if not p.flags.c_contiguous:
                raise ValueError(f"{where}['params'][{i}]: array must be C-contiguous")
            if not _backend.is_cupy(p) and not p.flags.writeable:
                raise _backend.read_only(f"{where}['params'][{i}]", p)
            if (p.data.ptr % p.itemsize != 0) if _backend.is_cupy(p) else not p.flags.aligned:
                raise ValueError(f"{where}['params'][{i}]: array data is misaligned")
        self._check_one_dtype(params, where)
        seen: dict = dict.fromkeys(map(id, self._given))  # the objects given (a tensor's views are new arrays)
        for i, p in enumerate(given):
            if id(p) in seen:  # (this group's own position: listed twice in it was "in more than one group")
                at = seen[id(p)]
                say = "in more than one parameter group" if at is None else f"twice in the group (also at [{at}])"
                raise ValueError(f"{where}['params'][{i}]: appears {say}")
            seen[id(p)] = i
        group = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}, "params": params}
        _, cap, lr_dev = self._checked(group, where)
        if cap and params:
            flag = f"{where}['capturable']" if "capturable" in param_group else "capturable"
            self._check_capturable_arrays(flag, params[0], lr_dev, where)
        self.param_groups.append(group)
        self._group_params.append((params, tuple(params)))
        self._seen.append(tuple(params))
        self._runs.append([_Run(range(self._n, self._n + len(params)), params, mod)] if params else [])
        for k, (g, p) in enumerate(zip(given, params)):
            self._index_of[id(g)] = self._index_of[id(p)] = self._n + k
        self._given += given
        self._given_tensors += self._track(given, params, self._n)
        self._n += len(params)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])

    # ---- step -----------------------------------------------------------------------

    @serialized
    def step(self, grads=None, closure=None):
        """Update the parameters in place from ``grads``.

        Args:
          grads: arrays matching the parameters of all groups in shape and dtype, in order
            (one flat list). ``None`` in place of an array skips that parameter, as torch
            skips a parameter whose ``.grad`` is None: its state and step count stay as they
            are (and weight decay does not touch it). Any array type optkern accepts (NumPy,
            CuPy, torch tensors, DLPack exporters) may be mixed with None.
          closure: instead of ``grads``, a function returning ``(loss, grads)`` at the current
            parameters (called once); ``step`` then returns the loss.

        Gradients are matched to parameters by position and checked by shape and dtype: two
        gradients of the same shape and dtype passed in swapped order cannot be told apart
        and are applied as given (keep ``grads`` in the order of ``param_groups``).

        Every group's hyper-parameters, every gradient and every parameter and state array
        are checked before the first parameter is written; on error nothing changes.
        """
        loss = None
        if closure is not None:
            if grads is not None:
                raise TypeError("step: pass grads or closure, not both")
            if not callable(closure):
                raise TypeError(f"closure: expected a callable returning (loss, grads), got {type(closure).__name__}")
            self._check_param_groups()  # (before the closure runs a forward and backward pass)
            loss, grads = _closure.call(closure)
        elif grads is None:
            raise TypeError("grads: missing (pass a list of arrays, one per parameter, or closure=)")
        elif callable(grads) and not hasattr(grads, "__array__"):  # (torch's opt.step(closure), positional)
            raise TypeError(f"grads: got {article(type(grads).__name__)}; pass a closure as step(closure=f)")
        try:
            grads, checked, runs, layout, whole = self._prepared(grads)
            amp = self._amp_checked
            if amp is not None and len(amp) == len(grads) and all(map(is_, amp, grads)):
                pass  # (GradScaler.step checked these very arrays, then unscaled them in place)
            elif not whole:
                self._precheck(grads, runs)  # (native errors name positions in their call: global ones here)
            elif _check_shapes(runs[0][0].params, grads):  # one native call compares sizes, not shapes:
                # a capsule grad's shape (a transposed one of the same size) only the precheck can read
                self._precheck(grads, runs)
            # a Ctrl-C during a kernel was raised as it returned, before its run was counted (the arrays
            # at step n + 1, the state at n) or the next run stepped: deferred to the end of the step
            # where the kernels are long enough for the two handler swaps (~2 us) not to matter
            with deferring(sum(run.numel for group_runs in runs for run in group_runs)):
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
        except (TypeError, ValueError) as e:
            # a closure's grads named as the closure-based optimizers name them ("closure: grads[0]"):
            # "grads[0]: expected float32" named an argument this call did not pass. (The checks come
            # before any write: the step's one native call checks its arrays before it writes.)
            if closure is not None and type(e) in (TypeError, ValueError) and str(e).startswith("grads"):
                raise type(e)(f"closure: {e}") from None
            named = self._named_by_group(e)
            if named is e:
                raise
            raise named from None
        if layout is not None:
            for group_runs in runs:
                for run in group_runs:
                    if run.parent is not None:  # a global-norm group: the step counts for the group
                        run.parent.step, run.parent.extra = run.step, run.extra
            self._runs = [_merged(parts) for parts in layout]
            for (lst, _), group_runs in zip(self._group_params, self._runs):
                if len(group_runs) == 1 and len(group_runs[0].params) == len(lst):
                    group_runs[0].params = lst  # (rejoined: the group's own list again, see _follow_replaced)
        _bump_torch_versions(self._given_tensors)
        return loss

    def _follow_moved(self) -> None:
        """The torch tensors among the params given new memory since the last step, viewed there
        (``FollowsTensors._follow_places``; also before a wrapper such as SAM writes the params), put in its
        group's list, where the step checks it as a param replaced in place (dtype, shape against its state)."""
        self._follow_places(self._place)

    def _place(self, i: int) -> tuple:
        """``(list, index, name)`` of the param at global index ``i``: its group's list and its place
        there, walked over the groups as added (a list the caller shrank in place is refused by the
        step's ``_check_param_groups``, not walked here)."""
        gi = 0
        while i >= len(self._group_params[gi][1]):
            i, gi = i - len(self._group_params[gi][1]), gi + 1
        return self._group_params[gi][0], i, f"param_groups[{gi}]['params'][{i}]"

    def _prepared(self, grads):
        """The checks of a step that need no array pass: ``(grads as a list, [(hp, capturable,
        lr buffer)] per group, runs to step per group, run layout after the step or None, whether
        the step is one native call over every param)``. The array checks (``_precheck``) remain."""
        self._follow_moved()
        self._check_param_groups()
        self._follow_replaced()
        skips = False
        if type(grads) is not list or not set(map(type, grads)) <= _backend._NATIVE_TYPES:  # (else: no None either)
            grads = _backend.as_list(grads, "grads")
            skips = any(g is None for g in grads)
        if len(grads) != self._n:
            want = _backend.counted(self._n, "array")
            raise ValueError(f"grads: expected {want} (one per parameter), got {len(grads)}")
        groups = self.param_groups
        checked = [self._checked(g, f"param_groups[{i}]") for i, g in enumerate(groups)]
        runs, layout = self._runs, None
        if skips:
            runs, layout = self._live_runs(grads, checked)
        for gi, (_, cap, lr_dev) in enumerate(checked):
            if cap and runs[gi]:
                where = f"param_groups[{gi}]"
                self._check_capturable_arrays(f"{where}['capturable']", runs[gi][0].params[0], lr_dev, where)
        whole = len(runs) == 1 and len(runs[0]) == 1 and runs[0][0].sel == slice(0, self._n)
        return grads, checked, runs, layout, whole

    def _check_step(self, grads) -> None:
        """Raise what ``step(grads)`` would raise for bad input; change nothing (for wrappers that
        work on the gradients before they step, e.g. ``DistributedOptimizer``'s reduction)."""
        try:
            grads, _, runs, _, _ = self._prepared(grads)
            self._precheck(grads, runs)
        except (TypeError, ValueError) as e:
            named = self._named_by_group(e)
            if named is e:
                raise
            raise named from None

    def _ensure_state(self, run: _Run, hp: tuple) -> None:
        for name in self._needed(hp):
            if name not in run.state:
                run.state[name] = [self._new_state(name, p, hp) for p in run.params]
                run.fresh.add(name)
        if run.step == 0 and not run.extra:
            run.extra = self._new_extra(run, hp)
