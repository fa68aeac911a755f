"""The machinery of optkern.torch's optimizers: ``_Fused``, a ``torch.optim.Optimizer`` whose
step groups a param group's tensors into runs (one device, dtype and step count), keeps
NumPy/CuPy views of the params and state of each run while they stay the same tensors, and
hands each run to the optkern.optim class it mirrors (``_core``). The classes themselves
(SGD ... NAdam: what each passes to its fused kernel) are in ``optimizers.py``.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator

import numpy as np
import torch
import torch.utils.dlpack
from torch.optim import optimizer as _torch_optimizer

from .. import _backend
from .. import optim as _optim
from ..optim._hyper import _check_dtype
from ..optim._run import _Run
from . import _lowp, _views
from ._state import (
    _HOST_SCALARS,
    _entries,
    _join_scalars,
    _same_entries,
    _scalar_dtype,
    _scalars_to_host,
    _step_tensor,
    _zeros,
)


@functools.cache
def _meta(core: type[_optim.Optimizer]) -> _optim.Optimizer:
    """An uninitialised instance of an optkern.optim class: what its state is made of (``_check``,
    ``_needed``, ``_new_state``, ``_new_extra``, ``_has_step``, ``_scalar_names``) is said there
    once, and those methods read no instance state."""
    return object.__new__(core)


class _Fused(torch.optim.Optimizer):
    """Groups, closure, grad=None skipping and runs; subclasses say how one run steps.

    Which state a param has, and its initial values, come from the optkern.optim class the
    adapter mirrors (``_core``). A group's run layout (which params share a step count, so one
    call) is computed when the set of params with a grad changes, and reused otherwise: the
    params of a run advance together. ``load_state_dict`` and ``add_param_group`` reset it.
    """

    #: the optkern.optim class whose state layout this adapter keeps (in torch tensors)
    _core: type = _optim.Optimizer

    def __init__(self, params, defaults: dict, lowp: dict | None = None):
        # low-precision storage (``_lowp``): an optkern.optim instance configured by the keywords
        self._lowp_core = _lowp.make_core(self._core, lowp or {})
        # torch.amp.GradScaler hands a low-precision step its scale and found_inf (as to torch's fused
        # optimizers) instead of unscaling the grads first: it cannot unscale float16 grads at all
        self._step_supports_amp_scaling = self._lowp_core is not None
        self._layouts: dict = {}  # group index -> (ids of the params with grads, runs)
        self._view_cache: dict = {}  # id(run) -> (validity key, param views, state views, joined scalars)
        self._joined: dict = {}  # the running step's joined scalars (see _join_scalars)
        self._grads: list | None = None  # the stepping group's grads, when every param has one
        self._hyper_cache: dict = {}  # id(group) -> (keys, values, checked hyper-parameters, group)
        self._pre_grads: dict = {}  # id(run) -> the grad views the step's precheck made (reused by the step)
        self._runs_now: list | None = None  # the stepping group's runs (its layout), as planned
        self._pre_hits: dict = {}  # id(run) -> its view cache entry, as the step's precheck found it valid
        # (the view cache entries of a step's runs, their written tensors' sorted spans and reach) at
        # the last full precheck: while a step's runs have the very same entries, only grads are checked
        self._written_ok: tuple | None = None
        super().__init__(params, defaults)
        for i, group in enumerate(self.param_groups):
            self._validate(group, f"param_groups[{i}]")

    @property
    def _m(self) -> _optim.Optimizer:
        """The optkern.optim instance that says what the state is and runs a cached step: the
        low-precision one, or the class's uninitialised ``_meta``."""
        return self._lowp_core or _meta(self._core)

    @property
    def _lowp_cfg(self):
        return None if self._lowp_core is None else self._lowp_core._lowp

    @property
    def _run_keys(self) -> tuple:
        """State entries that split a group into runs (equal values share a call)."""
        m = self._m
        # (a low-precision step counts steps for every class: its stochastic-rounding stream)
        return ("step",) + tuple(m._scalar_names) if m._has_step or self._lowp_core else ()

    def add_param_group(self, param_group: dict) -> None:
        """torch's, then the new group checked (its params: no duplicates, within the group or with
        another group's, as torch refuses the latter; its hyper-parameters): a group refused is
        not added."""
        self._layouts, self._view_cache = {}, {}
        n = len(self.param_groups)
        if isinstance(param_group, dict) and not isinstance(param_group.get("params"), (torch.Tensor, set, type(None))):
            try:  # (as torch's add_param_group would: a generator is read once, here)
                param_group["params"] = list(param_group["params"])
            except TypeError:
                pass  # (torch's message)
            else:
                _check_duplicates(self.param_groups, param_group["params"], n)
        super().add_param_group(param_group)
        if len(self.param_groups) == n:  # (torch refused it)
            return
        try:
            if hasattr(self, "_validated"):  # after __init__: validate the new group now
                self._validate(self.param_groups[n], f"param_groups[{n}]")
        except (TypeError, ValueError):
            del self.param_groups[n:]
            raise

    def _validate(self, group: dict, where: str) -> None:
        """Hyper-parameters checked by the functional form on empty lists (nothing is written)."""
        for j, p in enumerate(group["params"]):
            _views.check_tensor(p, f"{where}['params'][{j}]", _lowp.param_dtypes(self._lowp_cfg))
        try:
            self._call(group, [], [], {}, 1, first=False)
        except (TypeError, ValueError) as e:
            # the functional form names the betas one by one; torch users set them as a pair
            msg = str(e).replace("beta1", "['betas'][0]").replace("beta2", "['betas'][1]")
            raise type(e)(f"{where}{'' if msg.startswith('[') else ': '}{msg}") from None
        self._m._check(group, where)  # (what every step checks: refused here too, not at the first step)
        self._validated = True

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's loader (casts state to each param's dtype and device), then the step counters and
        mu_product back on the CPU (``_scalars_to_host``), the hyper-parameters torch's format lacks
        (``momentum_form``, RMSprop's ``nesterov``...) filled from the defaults.

        The whole state dict is checked first (``_check_state_dict``: its structure, every group's
        hyper-parameters as the constructor checks them, every state entry against its param), and
        on any error the optimizer keeps its state and groups: nothing is assigned."""
        self._check_state_dict(state_dict)
        state_dict, exact = self._lowp_load(state_dict)
        self._check_state_entries(state_dict, exact)
        old: tuple = (self.state, self.param_groups)
        try:
            super().load_state_dict(state_dict)
            for p, entry in exact:  # (torch's loader cast them to the param's dtype: put back as stored)
                self.state[p].update(
                    {k: v.to(p.device) if isinstance(v, torch.Tensor) else v for k, v in entry.items()}
                )
            for state in self.state.values():
                _scalars_to_host(state)
            for i, group in enumerate(self.param_groups):
                for k, v in self.defaults.items():
                    group.setdefault(k, v)
                self._validate(group, f"param_groups[{i}]")
        except BaseException:
            self.state, self.param_groups = old[0], old[1]  # (torch's loader assigns new objects: the old are intact)
            raise
        finally:
            self._layouts, self._view_cache = {}, {}

    def _check_state_dict(self, sd) -> None:
        """TypeError / ValueError naming the first entry of ``sd`` this optimizer cannot load (its
        structure and the groups' hyper-parameters; the state entries: ``_check_state_entries``)."""
        if not isinstance(sd, dict):
            raise TypeError(f"state_dict: expected a dict (an optimizer's state_dict()), got {type(sd).__name__}")
        for key, kind in (("state", dict), ("param_groups", list)):
            if key not in sd:
                raise ValueError(f"state_dict: missing {key!r} (expected an optimizer's state_dict())")
            if not isinstance(sd[key], kind):
                raise TypeError(f"state_dict[{key!r}]: expected a {kind.__name__}, got {type(sd[key]).__name__}")
        groups = sd["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict['param_groups']: has {len(groups)} groups, this optimizer {len(self.param_groups)}"
            )
        seen: set = set()
        for i, (saved, own) in enumerate(zip(groups, self.param_groups)):
            where = f"state_dict['param_groups'][{i}]"
            if not isinstance(saved, dict):
                raise TypeError(f"{where}: expected a dict, got {type(saved).__name__}")
            ids = saved.get("params")
            if not isinstance(ids, (list, tuple)):
                raise TypeError(f"{where}['params']: expected a list of parameter ids, got {type(ids).__name__}")
            if len(ids) != len(own["params"]):
                raise ValueError(
                    f"{where}['params']: has {len(ids)} params, this optimizer's group {len(own['params'])}"
                )
            for j, k in enumerate(ids):
                try:
                    dup = k in seen
                    seen.add(k)
                except TypeError:
                    raise TypeError(
                        f"{where}['params'][{j}]: expected a parameter id, got {type(k).__name__}"
                    ) from None
                if dup:
                    raise ValueError(f"{where}['params'][{j}]: id {k!r} appears more than once")
            group = {**self.defaults, **saved, "params": own["params"]}  # (as it will be once loaded)
            self._m._check(group, where)
            self._validate(group, where)

    def _check_state_entries(self, sd: dict, exact: list) -> None:
        """Each param's saved state (``sd`` as torch's loader will see it; ``exact``: the entries
        that replace it, low precision) as a step of this optimizer reads it: a dict; the step count
        and per-param scalars finite numbers (or 1-element tensors), the step count >= 0; each
        state tensor a floating-point tensor of its param's shape. Names the first bad entry."""
        params = [p for g in self.param_groups for p in g["params"]]
        ids = [k for g in sd["param_groups"] for k in g["params"]]
        lowp = {id(p) for p, _ in exact}
        names = set(_meta(self._core)._state_names) - set(_HOST_SCALARS)
        for k, p in zip(ids, params):
            if k not in sd["state"]:
                continue
            entry, where = sd["state"][k], f"state_dict['state'][{k!r}]"
            if not isinstance(entry, dict):
                raise TypeError(f"{where}: expected a dict, got {type(entry).__name__}")
            for n in _HOST_SCALARS:
                if n in entry:
                    _check_scalar(entry[n], f"{where}[{n!r}]", nonnegative=n == "step")
            if id(p) in lowp:
                continue  # (its moments: converted and checked by _lowp.lowp_entry)
            for n in names:
                if n not in entry:
                    continue
                t = entry[n]
                if not isinstance(t, torch.Tensor):
                    raise TypeError(f"{where}[{n!r}]: expected a torch.Tensor, got {type(t).__name__}")
                if not (t.is_floating_point() and t.layout is _STRIDED):
                    raise TypeError(f"{where}[{n!r}]: expected a dense floating-point tensor, got {t.dtype} {t.layout}")
                if t.shape != p.shape:
                    raise ValueError(
                        f"{where}[{n!r}]: expected shape {tuple(p.shape)} (its param's), got {tuple(t.shape)}"
                    )

    def _lowp_load(self, state_dict: dict) -> tuple:
        """(``state_dict`` as torch's loader should see it, [(param, entry) it must not cast]):
        ``_lowp.convert_checkpoint`` for this optimizer's params, storage and moments."""
        params = [p for g in self.param_groups for p in g["params"]]
        return _lowp.convert_checkpoint(state_dict, params, self._lowp_cfg, _meta(self._core)._state_names)

    # ---- one step ------------------------------------------------------------------

    def step(self, closure=None):
        """One update of every param with a grad; ``closure`` (re-evaluated with grad enabled)
        returns the loss, which ``step`` returns.

        torch's step hooks (``register_step_pre_hook`` / ``post_hook``, global ones included) and
        its profiler's ``Optimizer.step#...`` range run as in torch, through torch's own wrapper,
        whenever one is registered or a profiler runs; otherwise the wrapper is skipped (it cost
        0.3 ms per step on a 16M-float model: 2% of the step)."""
        if (
            self._optimizer_step_pre_hooks
            or self._optimizer_step_post_hooks
            or _GLOBAL_PRE_HOOKS
            or _GLOBAL_POST_HOOKS
            or torch.autograd._profiler_enabled()
        ):
            return _hooked_step(self, closure)
        return _plain_step(self, closure)

    step.hooked = True  # type: ignore[attr-defined]  # torch.optim.Optimizer leaves it unwrapped

    def _step(self, closure=None):
        """The step with grad disabled, as torch's (through torch's C switch: the ``torch.no_grad``
        context cost 0.1 ms per step, its code cold after a large step's memory traffic).

        Every group's hyper-parameters are checked before anything is written, and when the step
        makes several native calls (param groups, dtypes, step counts) or creates state, every
        param, state tensor and grad of the step too (``_precheck``): a native call checks only its
        own arrays, after the calls before it wrote. One call checks everything itself."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._step_supports_amp_scaling and _lowp.amp_skip(self):
            return loss
        work, calls, fresh = [], 0, False
        for i, group in enumerate(self.param_groups):
            params = group["params"]
            grads = [p.grad for p in params]
            if not all(map(operator.is_not, grads, itertools.repeat(None))):
                params, grads = [p for p, g in zip(params, grads) if g is not None], None
            if params:
                runs, new = self._plan(group, params, i)  # (checks the group's hyper-parameters)
                work.append((group, params, i, grads, runs))
                calls, fresh = calls + len(runs), fresh or new
        enabled = torch.is_grad_enabled()
        _set_grad_enabled(False)
        try:
            if calls > 1 or fresh:
                self._precheck(work)
            for group, params, i, grads, runs in work:
                self._grads = grads  # aligned with the params stepped (None: some params have none)
                self._runs_now = runs
                self._group_step(group, params, i)
        finally:
            self._grads = self._runs_now = None
            self._pre_grads.clear()
            self._pre_hits.clear()
            _set_grad_enabled(enabled)
        return loss

    def _plan(self, group: dict, params: list, gi: int) -> tuple:
        """(the runs of ``params``, one native call each; whether the step creates state for some),
        the group's hyper-parameters checked. Nothing is written."""
        self._hyper(group)
        runs = self._layout(group, params, gi)
        return runs, bool(self._layouts[gi][2])

    def _group_step(self, group: dict, params: list, gi: int) -> None:
        runs = self._runs_now or self._layout(group, params, gi)  # (the step's plan: this group's layout)
        self._init_pending(group, gi)
        for ps in runs:
            self._run(group, ps, gi, cache=True, grads=self._grads if len(runs) == 1 else None)

    def _init_pending(self, group: dict, gi: int) -> None:
        """Make the state of the layout's params that had none when it was made."""
        pending = self._layouts[gi][2]
        for p in pending:
            if not self.state.get(p):
                self._init_state(p, self.state[p], group)
        pending.clear()

    def _grad_views(self, params: list, gi: int, capsules: bool = False, grads: list | None = None) -> list:
        """What the native call reads as the grads of ``params`` (one run: one device and dtype).

        On the CPU no checks here: torch's ``.grad`` setter and autograd keep a grad's dtype, size
        and device those of its param, and the native call checks dtype, size and layout again
        before it writes (an error it raises is then named by ``_precheck``). ``capsules``:
        DLPack capsules (``to_dlpack``, half the cost of ``Tensor.numpy()`` per tensor, which only
        the native calls take), else NumPy views. Anything either refuses (a sparse grad, one that
        requires grad, one on another device) goes through the checks that name it. The views
        the step's precheck made are reused."""
        pre = self._pre_grads.get(id(params))
        if pre is not None:
            return pre
        if params[0].is_cpu:
            if grads is None:
                grads = [p.grad for p in params]
            try:
                if capsules:
                    return list(map(_to_dlpack, grads))
                return [g.numpy() for g in grads]
            except (TypeError, RuntimeError):
                pass
        self._check_grads(params, gi)
        return _views.views([p.grad for p in params])

    def _grad_arrays(self, params: list, gi: int) -> list:
        """The grads of ``params`` as NumPy / CuPy arrays over their memory (bfloat16 as its uint16
        bits). Not checked here (the low-precision step checks their types, dtypes, sizes and
        layout before it writes; ``_run`` then names a bad one), except what a view refuses."""
        pre = self._pre_grads.get(id(params))
        if pre is not None:
            return pre
        try:
            return [_views.view(p.grad) for p in params]
        except (TypeError, RuntimeError, BufferError):
            self._check_grads(params, gi)
            raise

    def _check_grads(self, params: list, gi: int) -> None:
        """TypeError / ValueError naming the first grad of ``params`` optkern cannot update in place
        with its param (group ``gi``)."""
        index = {id(p): j for j, p in enumerate(self.param_groups[gi]["params"])}
        for p in params:
            g = p.grad
            if g.dtype is not p.dtype or g.layout is not _STRIDED or g.shape != p.shape or g.device != p.device:
                _bad_grad(p, g, f"param_groups[{gi}]['params'][{index[id(p)]}].grad")
            if not g.is_contiguous():
                _views.check_tensor(
                    g, f"param_groups[{gi}]['params'][{index[id(p)]}].grad", _lowp.param_dtypes(self._lowp_cfg)
                )

    # ---- the whole-step checks ---------------------------------------------------------

    def _precheck(self, work: list) -> None:
        """Every run's hyper-parameters in its dtype, and its params, state tensors and grads as
        the native calls check them (dtype, shape, layout, alignment, read-only), and no grad or
        written tensor sharing memory with a written one anywhere in the step, before the first
        call writes. ``work``: the step's (group, params, index, grads, runs). Errors name
        the tensors by their place in ``param_groups`` (``param_groups[1]['params'][0].grad``).

        CPU steps: one native pass (``precheck_step_``) over NumPy views (those of the params and
        state cached for the step; the grads' are handed to the step), without names, then again
        with names if it fails. Other devices: the same checks on the tensors, in Python."""
        if all(ps[0].is_cpu for *_, runs in work for ps in runs):
            hits = [self._cached_views(g, ps, self._hyper(g)) for g, *_, runs in work for ps in runs]
            ok = self._written_ok
            if ok is not None and len(ok[0]) == len(hits) and all(map(operator.is_, ok[0], hits)):
                self._pre_hits.update(zip((id(ps) for *_, runs in work for ps in runs), hits))
                if self._grads_ok(work, ok):  # (the written tensors: as checked at an earlier step)
                    return
                self._precheck_named(work)
                return
            try:
                self._precheck_native(work, False)
                if all(h is not None for h in hits):
                    self._written_ok = _written_spans(work, hits)
            except Exception:
                self._pre_grads.clear()
                self._precheck_named(work)  # (raises the same, naming it)
                raise
        else:
            self._precheck_named(work)

    def _grads_ok(self, work: list, ok: tuple) -> bool:
        """Whether every grad of the step is one the native calls take (a dense, contiguous CPU
        tensor of its param's dtype and size, aligned) sharing no memory with a param or state
        tensor of the step (``ok``: their spans, ``_written_spans``). Checked on the tensors' own
        attributes (a NumPy view per grad costs 1 us): False sends the step to the named checks."""
        gs: list = []
        for _, _, _, grads, runs in work:
            for ps in runs:
                gs += grads if grads is not None and len(runs) == 1 else [p.grad for p in ps]
        try:
            if not all(map(_is_contiguous, gs)):
                return False
        except (RuntimeError, TypeError, AttributeError):  # (a sparse grad, not a tensor)
            return False
        _, wlo, reach, dtypes, nbytes, pbytes, itemsizes = ok
        if list(map(_dtype, gs)) != dtypes or list(map(_nbytes, gs)) != nbytes or not all(map(_is_cpu, gs)):
            return False
        lo = np.fromiter(map(_data_ptr, gs), np.int64, len(gs))
        if (lo % itemsizes).any():
            return False
        if not len(wlo):
            return True
        hi = lo + pbytes
        k = np.searchsorted(wlo, hi, side="left")  # written spans starting below each grad's end
        prev = np.where(k > 0, reach[np.maximum(k - 1, 0)], 0)
        return not ((prev > lo) & (hi > lo)).any()

    def _precheck_named(self, work: list) -> None:
        """The checks, naming what fails (the slow pass: on failure, and off the CPU)."""
        dtypes = _lowp.param_dtypes(self._lowp_cfg)
        for group, _, gi, _, runs in work:  # on the tensors first: what a NumPy view cannot show
            hp = self._hyper(group)
            for ps in runs:
                self._check_grads(ps, gi)
                for p, name in zip(ps, self._names(group, ps, gi)):
                    _views.check_tensor(p, name, dtypes)
                    st = self.state.get(p) or {}
                    for n in self._stored(hp, p.dtype):
                        if n in st:
                            self._check_state(p, st[n], f"state[{name}][{n!r}]")
        if all(ps[0].is_cpu for *_, runs in work for ps in runs):
            self._precheck_native(work, True)
            return
        written, read = [], []
        for group, _, gi, _, runs in work:
            hp = self._hyper(group)
            for ps in runs:
                _check_dtype(hp, self._m._math_dtype(_views.view(ps[0]).dtype), f"param_groups[{gi}]")
                for p, name in zip(ps, self._names(group, ps, gi)):
                    st = self.state.get(p) or {}
                    ts = [(p, name)] + [(st[n], f"state[{name}][{n!r}]") for n in self._stored(hp, p.dtype) if n in st]
                    written += [_span(t, nm) for t, nm in ts if t.numel()]
                    if p.grad.numel():
                        read.append(_span(p.grad, name + ".grad"))
        _check_overlaps(written, read)

    def _check_state(self, p, t, name: str) -> None:
        """A state tensor of param ``p`` its step writes: a contiguous tensor on ``p``'s device (of
        ``p``'s dtype and size unless low precision, whose storage differs)."""
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.device != p.device:
            raise ValueError(f"{name}: is on {t.device}, its param on {p.device}")
        if self._lowp_core is None:
            if t.dtype != p.dtype:
                raise TypeError(f"{name}: expected {p.dtype} (its param's dtype), got {t.dtype}")
            if t.numel() != p.numel():
                raise ValueError(f"{name}: expected {p.numel()} elements (its param's), got {t.numel()}")
        if t.layout is not _STRIDED or not t.is_contiguous():
            raise ValueError(f"{name}: tensor must be contiguous")

    def _precheck_native(self, work: list, named: bool) -> None:
        spec: dict = {}  # NumPy dtype -> (written, their names, grads, their params, grad names)
        same = self._lowp_core is None  # (state of the params' dtype and size)
        for group, _, gi, grads, runs in work:
            hp = self._hyper(group)
            for ps in runs:
                pviews, state = self._run_views(group, ps, gi)
                dts = {v.dtype for v in pviews} if not same else (pviews[0].dtype,)
                for dt in dts:  # (AdaGrad-Norm's low-precision runs mix dtypes)
                    _check_dtype(hp, self._m._math_dtype(dt), f"param_groups[{gi}]")
                pnames = self._names(group, ps, gi) if named else None
                gs = grads if grads is not None and len(runs) == 1 else [p.grad for p in ps]
                try:
                    gviews = list(map(_numpy, gs)) if same else [_views.view(g) for g in gs]
                except (TypeError, RuntimeError):
                    gviews = [_views.view(g) for g in gs]
                self._pre_grads[id(ps)] = gviews
                if len(dts) == 1:
                    w, wn, g, gp, gn = spec.setdefault(pviews[0].dtype, ([], [], [], [], []))
                    w += pviews
                    g += gviews
                    gp += pviews
                    if pnames is not None:
                        wn += pnames
                        gn += [n + ".grad" for n in pnames]
                else:
                    for k, (pv, gv) in enumerate(zip(pviews, gviews)):
                        w, wn, g, gp, gn = spec.setdefault(pv.dtype, ([], [], [], [], []))
                        w.append(pv)
                        g.append(gv)
                        gp.append(pv)
                        if pnames is not None:
                            wn.append(pnames[k])
                            gn.append(pnames[k] + ".grad")
                sizes: list = list(map(_size, pviews)) if same else []
                for name, views in state:
                    if not all(map(operator.is_not, views, itertools.repeat(None))):  # (state the step makes)
                        keep = [k for k, v in enumerate(views) if v is not None]
                    else:
                        keep = None
                    if same and (keep is not None or list(map(_size, views)) != sizes):
                        for k in range(len(views)) if keep is None else keep:
                            if views[k].size != sizes[k]:  # (what precheck_step_ does not compare)
                                pname = self._names(group, [ps[k]], gi)[0]
                                raise ValueError(
                                    f"state[{pname}][{name!r}]: expected {sizes[k]} elements (its param's), "
                                    f"got {views[k].size}"
                                )
                    if keep is None and (same or len({v.dtype for v in views}) == 1):  # (one list)
                        w, wn, *_ = spec.setdefault(pviews[0].dtype if same else views[0].dtype, ([], [], [], [], []))
                        w += views
                        if pnames is not None:
                            wn += [f"state[{n}][{name!r}]" for n in pnames]
                        continue
                    for k in range(len(views)) if keep is None else keep:
                        v = views[k]
                        w, wn, *_ = spec.setdefault(pviews[k].dtype if same else v.dtype, ([], [], [], [], []))
                        w.append(v)
                        if pnames is not None:
                            wn.append(f"state[{pnames[k]}][{name!r}]")
        runs = []
        for dt, (w, wn, g, gp, gn) in spec.items():
            if not named:
                wn, gn = [""] * len(w), [""] * len(g)
            runs.append((dt, w, wn, g, gp, gn))
        _backend.cpu.precheck_step_(runs)

    def _names(self, group: dict, ps: list, gi: int) -> list:
        """How errors name the params ``ps`` of group ``gi``."""
        index = {id(p): j for j, p in enumerate(group["params"])}
        return [f"param_groups[{gi}]['params'][{index[id(p)]}]" for p in ps]

    def _run_views(self, group: dict, ps: list, gi: int) -> tuple:
        """(the params' NumPy views, [(state name, a view of that state of each param, None where
        it has none yet)]): what the run's native call writes, of the state that exists."""
        hp = self._hyper(group)
        hit = self._cached_views(group, ps, hp)
        if hit is not None:
            self._pre_hits[id(ps)] = hit  # (the step's _run need not check it again)
            return hit[1], list(hit[2].items())
        states = [self.state.get(p) or {} for p in ps]
        names = self._stored(hp, ps[0].dtype)
        return _views.views(ps), [(n, [_views.view(s[n]) if n in s else None for s in states]) for n in names]

    def _layout(self, group: dict, params: list, gi: int) -> list:
        """The runs of ``params`` (the group's params with a grad): params of one device, dtype and
        step count (and per-param scalars) share a call. Cached while the same params have grads.
        Writes nothing: params without state yet (made by the step, ``_init_pending``) run with
        the step count and scalars they will start at."""
        ids = tuple(map(id, params))
        cached = self._layouts.get(gi)
        if cached is not None and cached[0] == ids:
            return cached[1]
        runs: dict = {}
        keys = self._run_keys
        pending, fresh = [], None
        for p in params:
            st = self.state.get(p)
            if not st:
                pending.append(p)
                if fresh is None:
                    fresh = self._fresh_scalars(p, group)
                st = fresh
            key = (p.device, p.dtype) + tuple(float(st[k]) for k in keys if k in st)
            runs.setdefault(key, []).append(p)
        self._layouts[gi] = (ids, list(runs.values()), pending)
        self._view_cache = {}
        return self._layouts[gi][1]

    def _fresh_scalars(self, p, group: dict) -> dict:
        """The step count and per-param scalars a param's new state starts at (``_init_state``)."""
        m, hp = self._m, self._hyper(group)
        out = {"step": 0.0} if m._has_step or self._lowp_core else {}
        with _views.on_stream(p):
            extra = m._new_extra(_Run([0], [_views.view(p)], None), hp)
        out.update({k: float(torch.tensor(float(v), dtype=_scalar_dtype())) for k, v in extra.items()})
        return out

    def _cached_views(self, group: dict, params: list, hp: tuple, names: tuple | None = None):
        """The view cache's entry of run ``params`` while it still holds the run's tensors, else None.
        ``names``: ``_stored``'s, when the caller has them."""
        hit = self._view_cache.get(id(params))
        if hit is None:
            return None
        if names is None:
            names = self._stored(hp, params[0].dtype)
        scalars = [k for k in self._run_keys if k in hit[5][0]]
        key = (names, list(map(_data_ptr, params)))
        if hit[0] == key and _same_entries(hit[5], (*names, *scalars), hit[6]):
            return hit
        return None

    def _run(self, group: dict, params: list, gi: int, cache: bool = False, grads: list | None = None) -> None:
        """One fused call for params that share device, dtype and step count.

        ``cache``: reuse the views of the params and state tensors from the last step of this run
        (``params`` a list of the cached layout) while they are the same tensors over the same
        memory -- checked every step (``data_ptr`` and identity: a view keeps its tensor alive, so
        neither can be recycled meanwhile). Only the grads, new each step after ``zero_grad()``,
        are viewed anew. ``grads``: the grads of ``params`` when the caller has them."""
        hp = self._hyper(group)
        names = self._stored(hp, params[0].dtype)
        hit = (self._pre_hits.get(id(params)) or self._cached_views(group, params, hp, names)) if cache else None
        # (the per-param state dicts are torch's own until load_state_dict, which drops the cache;
        # looking 200 of them up by tensor costs 0.2 ms a step)
        states = hit[5] if hit is not None else [self.state[p] for p in params]
        t = int(float(states[0]["step"])) + 1 if "step" in states[0] else 1
        if hit is not None:
            pviews, lists, self._joined, core_run = hit[1], hit[2], hit[3], hit[4]
        else:
            scalars = [k for k in self._run_keys if k in states[0]]
            pviews = _views.views(params)
            lists = {n: _views.views([s[n] for s in states]) for n in names}
            self._joined = _join_scalars(states, scalars) if cache else {}
            core_run = None
            if cache or self._lowp_core:  # the optkern.optim run over the same views: its step,
                # without re-checking the lists (a low-precision step goes this way only)
                core_run = _Run(range(len(params)), pviews, _backend.backend(("params", pviews)), 0, dict(lists))
            if cache:
                key = (names, list(map(_data_ptr, params)))
                entries = (*names, *scalars)
                cached = (key, pviews, lists, self._joined, core_run, states, _entries(states, entries))
                self._view_cache[id(params)] = cached
        if self._lowp_core:  # (the low-precision step takes arrays, bfloat16 as uint16 bits)
            grads = self._grad_arrays(params, gi)
        else:
            grads = self._grad_views(params, gi, capsules=core_run is not None, grads=grads)
        first = id(params[0]) in self._first(group, params)
        try:
            with _views.on_stream(params[0]):
                if core_run is not None:
                    out = self._core_step(hp, core_run, grads, t, first)
                else:
                    out = self._call(group, pviews, grads, lists, t, first=first)
        except (TypeError, ValueError):
            # the native call refused before writing: name what it refused by its place in the groups
            self._pre_grads.clear()
            self._precheck_named([(group, params, gi, None, [params])])
            raise
        self._after(group, params, states, t, out)

    def _hyper(self, group: dict) -> tuple:
        """The group's checked hyper-parameters (the optkern.optim class's ``_check``), reused while
        the group holds the very same keys and immutable values (a tensor or list value: checked
        every step, it may change in place)."""
        keys, values = tuple(group), list(group.values())
        hit = self._hyper_cache.get(id(group))
        if hit is not None and hit[0] == keys and all(map(operator.is_, values, hit[1])):
            return hit[2]
        gi = next((i for i, g in enumerate(self.param_groups) if g is group), 0)
        hp = self._m._check(group, f"param_groups[{gi}]")  # (errors name the group's entry)
        if all(_immutable(v) for k, v in group.items() if k != "params"):
            self._hyper_cache[id(group)] = (keys, values, hp, group)  # (the group kept: its id stays its)
        return hp

    def _core_step(self, hp: tuple, run: _Run, grads: list, t: int, first: bool):
        """``run``'s step through optkern.optim's own ``_update`` (what ``optkern.optim.X.step``
        runs): the functional form's per-call list conversions and checks are skipped (the
        native call still checks every array before it writes). Returns the new per-run scalar
        (NAdam's mu_product) or None. ``hp``: the group's checked hyper-parameters."""
        m = self._m
        _check_dtype(hp, m._math_dtype(run.params[0].dtype))
        if self._lowp_core is not None:
            self._lowp_core._amp_grad_scale = _lowp.amp_scale(self, run.params[0])
        run.extra = self._core_extra()
        run.step = t - 1  # (what a low-precision step draws its stochastic rounding from)
        m._update(run, grads, hp, self._core_t(t, first))
        return run.extra.get("mu_product")

    def _core_extra(self) -> dict:
        return {}

    def _core_t(self, t: int, first: bool) -> int:
        return t

    def _first(self, group: dict, params: list) -> set:
        return set()

    def _after(self, group, params, states, t, out) -> None:
        """Advance the step counters (one add on the run's joined counters, else one foreach call)."""
        if "step" in self._joined:
            self._joined["step"] += 1.0
            return
        steps = [s["step"] for s in states if "step" in s]
        if steps:
            torch._foreach_add_(steps, 1.0)

    # ---- state: the optkern.optim class's -----------------------------------------------

    def _state_names(self, group: dict) -> tuple:
        """The state tensors a step with this group's hyper-parameters uses."""
        return tuple(self._m._needed(self._hyper(group)))

    def _stored(self, hp: tuple, dtype: torch.dtype) -> tuple:
        """Every state tensor a step of ``dtype`` params with checked hyper-parameters ``hp`` reads or writes."""
        names = tuple(self._m._needed(hp))
        cfg = self._lowp_cfg
        return names if cfg is None else _lowp.stored_names(cfg, names, dtype)

    def _init_state(self, p, state: dict, group: dict) -> None:
        """torch-format state for ``p``: a step counter, per-param scalars (NAdam's mu_product) and
        the state tensors, each initialised as the optkern.optim class initialises its arrays. (A
        step count or scalar ``state`` holds already is kept: SGD's buffers may come later.)"""
        m = self._m
        hp = self._hyper(group)
        if m._has_step or self._lowp_core:
            state.setdefault("step", _step_tensor())
        with _views.on_stream(p):
            for name, value in m._new_extra(_Run([0], [_views.view(p)], None), hp).items():
                state.setdefault(name, torch.tensor(float(value), dtype=_scalar_dtype()))
            if self._lowp_core:  # (the storage the low-precision step takes)
                _lowp.new_state(p, state, m, tuple(m._needed(hp)), hp)
                return
            for name in m._needed(hp):
                t = _zeros(p)
                _views.view(t)[...] = m._new_state(name, _views.view(t), hp)
                state[name] = t

    # ---- per optimizer -------------------------------------------------------------

    def _call(self, group, params, grads, lists, t, *, first):  # pragma: no cover - abstract
        raise NotImplementedError


_STRIDED = torch.strided


def _span(t: torch.Tensor, name: str) -> tuple:
    """(device, first byte, one past the last, name) of a contiguous tensor's memory."""
    lo = t.data_ptr()
    return (t.device, lo, lo + t.numel() * t.element_size(), name)


def _check_overlaps(written: list, read: list) -> None:
    """ValueError naming a written span (``_span``) that overlaps another, or a read span that
    overlaps a written one: aliasing tensors cannot be updated in place."""
    written = sorted(written, key=lambda s: (str(s[0]), s[1]))
    starts = [(str(w[0]), w[1]) for w in written]
    reach: list = []  # reach[k]: the span reaching furthest among the first k + 1 (of one device)
    for k, w in enumerate(written):
        prev = written[reach[-1]] if k and written[reach[-1]][0] == w[0] else None
        if prev is not None and prev[2] > w[1]:
            raise ValueError(f"{w[3]} shares memory with {prev[3]} (aliasing arrays cannot be updated in place)")
        reach.append(k if prev is None or w[2] >= prev[2] else reach[-1])
    for r in read:
        k = bisect.bisect_left(starts, (str(r[0]), r[2]))  # written spans of the device starting below r's end
        if k and written[reach[k - 1]][0] == r[0] and written[reach[k - 1]][2] > r[1]:
            w = written[reach[k - 1]]
            raise ValueError(f"{r[3]} shares memory with {w[3]} (aliasing arrays cannot be updated in place)")


def _written_spans(work: list, hits: list) -> tuple:
    """(``hits``, the sorted first bytes of the step's params and state tensors, the furthest end
    reached among the first k + 1, and the params' dtypes, sizes in bytes (a list and an array) and
    item sizes, in the step's order): what ``_grads_ok`` checks grads against."""
    spans = []
    runs = [ps for *_, rs in work for ps in rs]
    params = [p for ps in runs for p in ps]
    for ps, hit in zip(runs, hits):
        names = hit[0][0]
        ts = list(ps) + [st[n] for st in hit[5] for n in names]
        spans += [(t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in ts if t.numel()]
    spans.sort()
    lo = np.array([a for a, _ in spans], np.int64)
    reach = np.maximum.accumulate(np.array([b for _, b in spans], np.int64)) if spans else np.zeros(0, np.int64)
    nbytes = list(map(_nbytes, params))
    itemsizes = np.array(list(map(_element_size, params)), np.int64)
    return tuple(hits), lo, reach, list(map(_dtype, params)), nbytes, np.array(nbytes, np.int64), itemsizes


def _check_scalar(v, name: str, nonnegative: bool) -> None:
    """A saved step count or per-param scalar: a real number or a 1-element real tensor, finite
    (and >= 0 where ``nonnegative``)."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1 or v.is_complex() or v.dtype is torch.bool:
            raise TypeError(
                f"{name}: expected a number or a 1-element real tensor, got {v.dtype} of shape {tuple(v.shape)}"
            )
        v = float(v.detach().cpu().reshape(()))
    if nonnegative:
        _backend.nonnegative(name, v)
    else:
        _backend.real(name, v)


def _check_duplicates(groups: list, params: list, gi: int) -> None:
    """ValueError naming the first of ``params`` (group ``gi``'s, to be added to ``groups``) that
    is already a param of the optimizer or appears twice in the group: torch refuses the first and
    warns of the second; optkern refuses both (one tensor updated twice per step, its state kept
    once, and aliasing arrays in the step's native call)."""
    seen = {id(p): f"param_groups[{i}]['params'][{j}]" for i, g in enumerate(groups) for j, p in enumerate(g["params"])}
    for j, p in enumerate(params):
        where = f"param_groups[{gi}]['params'][{j}]"
        other = seen.setdefault(id(p), where)
        if other != where:
            raise ValueError(
                f"{where}: the same tensor as {other} (some parameters appear more than once in the "
                "optimizer; torch.optim refuses parameters in more than one parameter group)"
            )


# torch's registries of global step hooks (module-level dicts; empty stand-ins if a version lacks them)
_GLOBAL_PRE_HOOKS: dict = getattr(_torch_optimizer, "_global_optimizer_pre_hooks", {})
_GLOBAL_POST_HOOKS: dict = getattr(_torch_optimizer, "_global_optimizer_post_hooks", {})


def _plain_step(self: _Fused, closure):
    out = self._step(closure)
    self._optimizer_step_code()  # (what torch's profiler hooks into, as torch's wrapper calls it)
    return out


_hooked_step = torch.optim.Optimizer.profile_hook_step(_Fused._step)
_set_grad_enabled = getattr(torch._C, "_set_grad_enabled", torch.set_grad_enabled)
_data_ptr = torch.Tensor.data_ptr
_numpy = torch.Tensor.numpy
_is_contiguous = torch.Tensor.is_contiguous
_is_cpu = operator.attrgetter("is_cpu")
_dtype = operator.attrgetter("dtype")
_numel = torch.Tensor.numel
_nbytes = operator.attrgetter("nbytes")
_element_size = torch.Tensor.element_size
_size = operator.attrgetter("size")
_to_dlpack = torch.utils.dlpack.to_dlpack


def _immutable(v) -> bool:
    """Whether ``v`` is a value that cannot change while the same object (a hyper-parameter)."""
    if isinstance(v, tuple):
        return all(map(_immutable, v))
    return v is None or type(v) in (float, int, bool, str)


def _bad_grad(p, g, name: str) -> None:
    """Raise the error that names what is wrong with grad ``g`` of param ``p``."""
    if g.is_sparse:
        raise TypeError(f"{name}: sparse gradients are not supported")
    _views.check_tensor(g, name)
    raise ValueError(
        f"{name}: {tuple(g.shape)} {g.dtype} on {g.device} does not match its param "
        f"{tuple(p.shape)} {p.dtype} on {p.device}"
    )
