"""The machinery of optkern.torch's optimizers: ``_Fused``, a ``torch.optim.Optimizer`` whose
step groups a param group's tensors into runs (one device, dtype and step count), keeps
NumPy/CuPy views of the params and state of each run while they stay the same tensors, and
hands each run to the optkern.optim class it mirrors (``_core``). Here: construction, groups
and the step over the groups; the state a param has and starts with is the mixin
``_InitialState`` (``_initial_state.py``), checkpoints the mixin ``_StateDictIO``
(``_state_dict_io.py``), the runs themselves (layout, views, one run's call) the mixin ``_Runs``
(``_runs.py``), the checks the mixins of
``_checks_step.py`` and ``_checks_state.py``. The classes themselves (SGD ... NAdam: what each
passes to its fused kernel) are in ``sgd.py``, ``adaptive.py``, ``adam.py`` and ``adagrad_norm.py``.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from torch.optim import optimizer as _torch_optimizer

from .. import optim as _optim
from .._checked_values import cached, remember
from .._serial import serialized
from . import _lowp, _relaid, _sparse, _views
from ._autograd_marks import _increment_version, _is_neg, _refuse_neg_view, bump_before_write, restore_versions
from ._checks_inputs import check_new_group, step_closure
from ._checks_state import _StateDictChecks, host_read
from ._checks_step import _StepChecks
from ._impl_keywords import TORCH_IMPL_KEYWORDS, take_impl_keywords
from ._initial_state import _InitialState
from ._runs import _Runs
from ._state import _meta
from ._state_dict_io import _StateDictIO
from ._tracked import _TrackedEntry, _TrackedState, tracked


class _Fused(_InitialState, _StateDictIO, _StateDictChecks, _StepChecks, _Runs, torch.optim.Optimizer):
    """Groups, closure, grad=None skipping and runs; subclasses say how one run steps.

    Which state a param has, and its initial values, come from the optkern.optim class the
    adapter mirrors (``_core``). A group's run layout (which params share a step count, so one
    call) is computed when the set of params with a grad changes, and reused otherwise: the
    params of a run advance together. ``load_state_dict`` and ``add_param_group`` reset it.

    A 0-d NumPy array ``lr`` is taken in ``fused=True`` groups too, where torch's fused kernels
    raise a TypeError (a superset of torch, by choice: its for-loop steps take one): stepped as
    torch's fused step with a tensor lr of that value and dtype (scalars in double).
    """

    #: the optkern.optim class whose state layout this adapter keeps (in torch tensors)
    _core: type = _optim.Optimizer
    #: state tensors torch's namesake takes as None (made by the step: SGD's momentum_buffer)
    _may_be_none: tuple = ()
    #: whether a param's non-empty state must hold its step count and per-param scalars
    #: (``_check_complete``); AdagradNorm's params hold the group's b_sq before their first step
    _complete_state: bool = True
    #: state entries a step writes beyond the state tensors and run keys (AdagradNorm's b_sq)
    _written_extra: tuple = ()
    #: the implementation keywords the class takes: its torch namesake's (``_impl_keywords``)
    _impl_names: tuple = tuple(TORCH_IMPL_KEYWORDS)
    #: torch's RuntimeError message for a sparse grad, where its namesake refuses them (``_sparse``)
    _sparse_refusal: str | None = None
    #: whether a sparse grad is coalesced before its step (Adagrad's, as torch's; ``_sparse``)
    _sparse_coalesce: bool = False

    def __init__(self, params, defaults: dict, lowp: dict | None = None):
        lowp = dict(lowp or {})
        # torch's foreach=, fused=, ... (``_impl_keywords``): kept here, not in the groups
        self._impl = take_impl_keywords(lowp, type(self))
        # low-precision storage (``_lowp``): an optkern.optim instance configured by the keywords
        self._lowp_core = _lowp.make_core(self._core, lowp)
        # torch.amp.GradScaler hands a low-precision step its scale and found_inf (as to torch's fused
        # optimizers) instead of unscaling the grads first: it cannot unscale float16 grads at all
        self._step_supports_amp_scaling = self._lowp_core is not None
        self._reset_caches()
        super().__init__(params, defaults)
        self.state = tracked(self.state)
        for i, group in enumerate(self.param_groups):
            self._validate(group, f"param_groups[{i}]")

    def _reset_caches(self) -> None:
        """The step's caches, empty (made on the next step)."""
        self._drop_layouts()
        self._joined: dict = {}  # the running step's joined scalars (see _join_scalars)
        self._grads: list | None = None  # the stepping group's grads, when every param has one
        self._first_now: dict = {}  # group index -> SGD's params making buffers, as its step's _plan found them
        self._hyper_cache: dict = {}  # id(group) -> (keys, values, checked hyper-parameters, group)
        self._dtype_ok: tuple | None = None  # (checked hyper-parameters, dtype) that passed _check_dtype last
        self._needed_memo: tuple | None = None  # (checked hyper-parameters, their state names): _needed
        self._pre_grads: dict = {}  # id(run) -> the grad views the step's precheck made (reused by the step)
        self._runs_now: list | None = None  # the stepping group's runs (its layout), as planned
        self._elements: dict = {}  # group index -> (its runs as last planned, their elements): _uninterrupted
        self._pre_hits: dict = {}  # id(run) -> its view cache entry, as the step's precheck found it valid
        # (the view cache entries of a step's runs, their written tensors' sorted spans and reach) at
        # the last full precheck: while a step's runs have the very same entries, only grads are checked
        self._written_ok: tuple | None = None
        # (the state mapping and its version when the caches were last valid: _check_state_version)
        self._state_seen: tuple | None = None
        # (_TrackedEntry.changes at the end of the last step: while it stands, no per-param dict changed)
        self._entries_seen = -1

    def _drop_layouts(self) -> None:
        """Forget the run layouts and the views of their params and state (made again by the next
        step): after anything that may change which tensors a run holds."""
        self._layouts: dict = {}  # group index -> (ids of the params with grads, runs)
        # id(run) -> (validity key, param views, state views, joined scalars, optkern.optim run, the
        # per-param dicts, their entries, contiguous, dicts all the optimizer's own, the run keys held,
        # [joined tensors, their versions], run keys not joined, the first inference tensor the run
        # writes or None: _inference.first_written, the params' shapes): _Runs._run makes it
        self._view_cache: dict = {}

    def __getstate__(self) -> dict:
        """pickle / ``copy.deepcopy``: torch's (defaults, state, groups) and the storage options;
        the caches are made anew (``__setstate__``), torch's hooks dropped as torch drops them."""
        keep = ("_lowp_core", "_step_supports_amp_scaling", "_validated", "_impl")
        return {**super().__getstate__(), **{k: self.__dict__[k] for k in keep if k in self.__dict__}}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_impl", dict(TORCH_IMPL_KEYWORDS))  # (pickled before it was kept)
        self.state = tracked(self.state)
        self._reset_caches()

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
        self._drop_layouts()
        n = len(self.param_groups)
        check_new_group(self.param_groups, param_group, self._impl_names)
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
            if _views.is_lazy(p):  # a lazy module's, before its first forward: torch.optim takes it (its
                continue  # forward materializes the very same Parameter; the step checks it then)
            self._check_param(p, f"{where}['params'][{j}]")
        host = host_read(self, group, where)
        try:
            self._call(host, [], [], {}, 1, first=False)
        except (TypeError, ValueError) as e:
            # the functional form names the betas one by one; torch users set them as a pair
            msg = str(e).replace("beta1", "['betas'][0]").replace("beta2", "['betas'][1]")
            raise type(e)(f"{where}{'' if msg.startswith('[') else ': '}{msg}") from None
        self._m._check(host, where)  # (what every step checks: refused here too, not at the first step)
        self._refuse_tensor_hypers(group, where)
        self._validated = True

    #: Whether torch.optim's step takes a bool tensor lr (promoted as an integer one: ``lr_dtype``);
    #: the steps that negate it (``alpha=-lr``) raise torch's RuntimeError: refused naming lr (``host_read``).
    _BOOL_LR = False

    def _refuse_tensor_hypers(self, group: dict, where: str) -> None:
        """ValueError naming a tensor hyper-parameter of ``group`` whose step scalars torch computes in
        tensor ops this optimizer does not follow (``_tensor_hypers``); run with the group's checks."""

    def _sparse_check(self, group: dict, gi: int, names: list) -> None:
        """Raise as torch does for group ``gi``'s sparse grads (``names``), or where this step cannot
        take them (``_sparse``: the classes that take them say their rules here)."""
        _sparse.refuse(names[0])

    def _check_param(self, p, name: str) -> None:
        """A param this optimizer can update: its dtype and, with low-precision storage, C order.
        Run by the constructor and ``add_param_group``, and, with low-precision storage, when a
        step plans params it has not planned (``_layout``: one put into a group's list since)."""
        cfg = self._lowp_cfg
        _views.check_tensor(p, name, _lowp.param_dtypes(cfg), _lowp.COMPLEX_WHY, _lowp.HALF_HINT)
        if cfg is not None:
            _lowp.check_contiguous(p, name)

    # ---- one step ------------------------------------------------------------------

    @serialized
    def step(self, *args, **kwargs):
        """``step(closure=None)``: one update of every param with a grad; ``closure``
        (re-evaluated with grad enabled) returns the loss, which ``step`` returns.

        torch's step hooks (``register_step_pre_hook`` / ``post_hook``, global ones included) and
        its profiler's ``Optimizer.step#...`` range run as in torch, through torch's own wrapper,
        whenever one is registered or a profiler runs; otherwise the wrapper is skipped (it cost
        0.3 ms per step on a 16M-float model: 2% of the step). The caller's arguments go through
        as given, as torch's wrapper passes them: a hook sees ``args=(opt,)`` and
        ``kwargs={'closure': f}`` for ``step(closure=f)``, ``args=(opt, f)`` for ``step(f)``, and
        may return new ones."""
        if (
            self._optimizer_step_pre_hooks
            or self._optimizer_step_post_hooks
            or _GLOBAL_PRE_HOOKS
            or _GLOBAL_POST_HOOKS
            or torch.autograd._profiler_enabled()
        ):
            return _hooked_step(self, *args, **kwargs)
        return _plain_step(self, *args, **kwargs)

    step.hooked = True  # type: ignore[attr-defined]  # torch.optim.Optimizer leaves it unwrapped

    def _step(self, *args, **kwargs):
        """``step(closure=None)``, with grad disabled, as torch's (through torch's C switch: the
        ``torch.no_grad`` context cost 0.1 ms per step, its code cold after a large step's memory
        traffic). The arguments are bound here (``step_closure``) so that a bad call names the
        user's class, not this method.

        Every group's hyper-parameters are checked before anything is written, and when the step
        makes several native calls (param groups, dtypes, step counts) or creates state, every
        param, state tensor and grad of the step too (``_precheck``): a native call checks only its
        own arrays, after the calls before it wrote. One call checks everything itself."""
        loss = None
        closure = step_closure(self, args, kwargs) if args or kwargs else None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._step_supports_amp_scaling and _lowp.amp_skip(self):
            return loss
        try:  # (a grad laid out unlike its param is met by the checks too, before anything is written)
            self._grads_step()
        except _views.GradLayout:
            with _relaid.relaid_grads(self.param_groups, self.state):  # (read through copies in the params' layouts)
                self._grads_step()
        return loss

    def _grads_step(self) -> None:
        """The step of the params with a grad: ``_step`` without the closure."""
        try:  # (a sparse grad is met by the checks, before anything is written: no look for one per step)
            self._dense_step()
        except _sparse.SparseGrad:
            _sparse.step(self, self._dense_step)

    def _dense_step(self) -> None:
        """The step of the params with a (dense) grad: ``_step`` without the closure."""
        self._check_state_version()
        work: list = []
        calls, fresh = 0, False
        for i, group in enumerate(self.param_groups):
            params = group["params"]
            grads = [p.grad for p in params]
            given: list | None = grads  # (None: some params have none)
            try:  # (one pass: a None grad is a TypeError here, where a pass looking for one cost ~7 us more)
                neg = any(map(_is_neg, grads))
            except TypeError:  # some params have no grad: stepped without them. (No TypeError: every grad
                # up to the first negated one is a tensor, so _refuse_neg_view meets it before any None)
                params, given = [p for p, g in zip(params, grads) if g is not None], None
                neg = any(map(_is_neg, [p.grad for p in params]))
            if neg:
                _refuse_neg_view(params, i, group)
            if params:
                runs, new = self._plan(group, params, i)  # (checks the group's hyper-parameters)
                work.append((group, params, i, given, runs))
                calls, fresh = calls + len(runs), fresh or new
        enabled = torch.is_grad_enabled()
        _set_grad_enabled(False)
        try:
            if calls > 1 or fresh:
                self._precheck(work)
            # a Ctrl-C during a kernel is raised as it returns, before its run's step counts advance
            # (params at step n + 1, state at n) or the next run steps: deferred to the end of a
            # step long enough for the handler swaps not to matter, as optkern.optim's steps defer it
            with self._uninterrupted(work):
                # the native calls write the params through views autograd does not see: a graph that saved
                # them must refuse its backward after the step, as after torch's in-place step. Bumped now,
                # the params in cache (``bump_before_write``); put back if the step raises (nothing written)
                written = work[0][1] if len(work) == 1 else [p for _, ps, *_ in work for p in ps]
                bumped = bump_before_write(written)
                try:
                    for group, params, i, grads, runs in work:
                        self._grads = grads  # aligned with the params stepped (None: some params have none)
                        self._runs_now = runs
                        self._group_step(group, params, i)
                except BaseException:
                    if bumped:
                        restore_versions(written)
                    raise
                if not bumped:
                    _increment_version(written)
            st = self.state
            self._state_seen = (st, st.version) if type(st) is _TrackedState else None
            self._entries_seen = _TrackedEntry.changes
        finally:
            self._grads = self._runs_now = None
            self._pre_grads.clear()
            self._pre_hits.clear()
            _set_grad_enabled(enabled)

    def _check_state_version(self) -> None:
        """Drop the run layouts and view cache when a param's state dict was set, added or removed
        since the last step (``_TrackedState.version``; a ``self.state`` replaced by another mapping:
        every step): they hold the per-param dicts they found."""
        st, seen = self.state, self._state_seen
        if seen is None or seen[0] is not st or seen[1] != st.version:
            self._drop_layouts()

    def _plan(self, group: dict, params: list, gi: int, held: list | None = None) -> tuple:
        """(the runs of ``params``, one native call each; whether the step creates state for some),
        the group's hyper-parameters checked. Nothing is written. ``held``: the group's cached runs,
        when the caller found them holding for ``params`` this step (``_held_layout``)."""
        self._hyper(group)
        runs = held if held is not None else self._layout(group, params, gi)
        return runs, bool(self._layouts[gi][2])

    def _group_step(self, group: dict, params: list, gi: int) -> None:
        runs = self._runs_now or self._layout(group, params, gi)  # (the step's plan: this group's layout)
        self._init_pending(group, gi)
        for ps in runs:
            self._run(group, ps, gi, cache=True, grads=self._grads if len(runs) == 1 else None)

    def _init_pending(self, group: dict, gi: int) -> None:
        """Make the state of the layout's params that had none when it was made (none where the
        step keeps none: torch's plain SGD adds no entry to ``state``)."""
        pending = self._layouts[gi][2]
        if pending and not self._keeps_state(group, pending[0].dtype):
            pending.clear()
        for p in pending:
            if not self.state.get(p):
                self._init_state(p, self.state[p], group)
        pending.clear()

    def _hyper(self, group: dict) -> tuple:
        """The group's checked hyper-parameters (the optkern.optim class's ``_check``), reused while
        the group holds the very same keys and immutable values (a tensor or list value: checked
        every step, it may change in place)."""
        hp = cached(self._hyper_cache, id(group), group)
        if hp is not None:
            return hp
        gi = next((i for i, g in enumerate(self.param_groups) if g is group), 0)
        where = f"param_groups[{gi}]"  # (errors name the group's entry)
        hp = self._m._check(host_read(self, group, where), where)
        self._check_against_state(group, gi, hp)
        self._refuse_tensor_hypers(group, where)
        remember(self._hyper_cache, id(group), group, hp, group)  # (the group kept: its id stays its)
        return hp

    def _check_against_state(self, group: dict, gi: int, hp: tuple) -> None:
        """ValueError where group ``gi``'s new hyper-parameters ``hp`` cannot read the state it
        holds (SGD: buffers of the other momentum form). Run when they change, before any step
        writes: each change misses the ``_hyper`` cache."""

    def _core_extra(self) -> dict:
        return {}

    def _core_t(self, t: int, first: bool) -> int:
        return t

    def _first(self, group: dict, params: list) -> set:
        return set()

    def _after(self, group, params, states, t, out) -> None:
        """Advance the step counters (one op on the run's joined counters, else one foreach call).
        An int 1: an integer step tensor (torch's ``step_t += 1`` takes one) stays an integer.
        Joined NumPy counters (equal whole counts while the layout holds) are filled with ``t``,
        their count + 1 rounded as ``+= 1`` rounds: NumPy's add cost ~40 us after a large step
        (its code cold), a fill ~17."""
        joined = self._joined.get("step")
        if joined is not None:
            if type(joined) is np.ndarray:
                joined.fill(t)
            else:
                joined += 1
            return
        steps = [s["step"] for s in states if "step" in s]
        if steps:
            torch._foreach_add_(steps, 1)

    # ---- per optimizer -------------------------------------------------------------

    def _call(self, group, params, grads, lists, t, *, first):  # pragma: no cover - abstract
        raise NotImplementedError


# torch's registries of global step hooks (module-level dicts; empty stand-ins if a version lacks them)
_GLOBAL_PRE_HOOKS: dict = getattr(_torch_optimizer, "_global_optimizer_pre_hooks", {})
_GLOBAL_POST_HOOKS: dict = getattr(_torch_optimizer, "_global_optimizer_post_hooks", {})


def _plain_step(self: _Fused, *args, **kwargs):
    out = self._step(*args, **kwargs)
    self._optimizer_step_code()  # (what torch's profiler hooks into, as torch's wrapper calls it)
    return out


_hooked_step = torch.optim.Optimizer.profile_hook_step(_Fused._step)
# (``inspect.signature(opt.step)`` as torch's: ``(closure=None)``, as its wrapper shows it)
_Fused.step.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("closure", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
    ]
)
_set_grad_enabled = getattr(torch._C, "_set_grad_enabled", torch.set_grad_enabled)
