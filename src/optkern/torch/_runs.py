"""The runs of an optkern.torch step (a mixin of ``_Fused``): a group's params with a grad split
into runs (one device, dtype and step count: one native call each), the NumPy/CuPy views of a
run's params and state kept while they stay the same tensors, the grads' views made anew, and
one run's fused call (the optkern.optim class's own ``_update``, or the adapter's ``_call``). What a
run's call reads as its grads: ``_run_grads``."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import _backend
from .._atomic import deferring
from ..optim._hyper import _check_dtype
from ..optim._lowp_config import element_starts
from ..optim._run import _Run
from . import _inference, _lowp, _views
from ._handover import _data_key, _flat_shapes
from ._host_values import host_group
from ._run_grads import _RunGrads
from ._state import _entries, _equal_scalars, _join_scalars, _same_entries, _scalar_dtype
from ._tracked import _TrackedEntry

_is_contiguous = torch.Tensor.is_contiguous
_numel = torch.Tensor.numel

_shape = operator.attrgetter("shape")
_version = operator.attrgetter("_version")  # (moved by every in-place op on a tensor or its views)


def _same_objects(a, b) -> bool:
    """Whether sequences ``a`` and ``b`` hold the very same objects in order (no element's own
    ``__eq__``; none read: a look at 200 cold tensors' ids cost ~20 us more after a large step)."""
    return len(a) == len(b) and all(map(operator.is_, a, b))


def _hashable(x) -> bool:
    """Whether ``x`` can be a dict key (a checked hyper-parameter tuple with no list or tensor in it)."""
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _elements_now(p) -> int:
    """``p``'s element count; 0 for a lazy module's param before its first forward (no shape yet)."""
    return 0 if _views.is_lazy(p) else _numel(p)


class _Runs(_RunGrads):
    """A mixin of ``_Fused`` (its groups, state, caches, hyper-parameters and per-optimizer hooks)."""

    # what it assigns (made, and described, in _Fused.__init__)
    _view_cache: dict
    _joined: dict
    _elements: dict
    _dtype_ok: tuple | None

    if TYPE_CHECKING:  # everything else it reads is _Fused's

        def __getattr__(self, name: str) -> Any: ...

    def _layout(self, group: dict, params: list, gi: int) -> list:
        """The runs of ``params`` (the group's params with a grad): params of one device, dtype and
        step count (and per-param scalars) share a call. Cached while the same params have grads
        and the runs still hold (``_layout_holds``). Writes nothing: params without state yet
        (made by the step, ``_init_pending``; a dict the user cleared too) run with the step count
        and scalars they will start at. A step count or scalar the step cannot advance in place
        is named (``_scalar_values``)."""
        held = self._held_layout(params, gi)
        if held is not None:
            return held
        self._drop_group_layout(gi)
        if self._lowp_cfg is not None:  # (a param put into the group's list since it was validated:
            # refused later, the low-precision step's dtype and layout refusals came after the
            # earlier groups had stepped)
            for p, name in zip(params, self._names(group, params, gi)):
                self._check_param(p, name)
        runs: dict = {}
        keys = self._run_keys
        states = [self.state.get(p) or {} for p in params]
        # each param against what a step of its own dtype stores (a group of half and float32 params
        # with master weights: the float32 ones have no master; checked against the first param's
        # dtype, their state refused every new layout -- after a load, a step without one's grad)
        hp = self._hyper(group)
        for dt in dict.fromkeys(p.dtype for p in params):
            ks = [k for k, p in enumerate(params) if p.dtype == dt]
            self._check_complete(group, [params[k] for k in ks], gi, [states[k] for k in ks], self._stored(hp, dt))
        values = self._scalar_values(group, params, gi, states) if keys else [()] * len(params)
        pending, fresh = [], None
        for p, st, vals in zip(params, states, values):
            if not st:
                pending.append(p)
                if fresh is None:
                    fresh = self._fresh_scalars(p, group)
                vals = tuple(fresh[k] for k in keys if k in fresh)
            runs.setdefault((p.device, p.dtype) + vals, []).append(p)
        # (the params themselves, compared by identity: their ids would be new ints, compared by value)
        self._layouts[gi] = (tuple(params), list(runs.values()), pending)
        return self._layouts[gi][1]

    def _held_layout(self, params: list, gi: int) -> list | None:
        """Group ``gi``'s cached runs while the very same ``params`` have grads and the runs hold
        (``_layout_holds``), else None. The cached layout holds its params (its runs do too), so
        none of them can be freed and another tensor take its place."""
        cached = self._layouts.get(gi)
        if cached is None or not _same_objects(cached[0], params) or not self._layout_holds(cached[1]):
            return None
        return cached[1]

    def _drop_group_layout(self, gi: int) -> None:
        """Forget group ``gi``'s run layout and its runs' view cache entries (keyed by the runs'
        ids: dropped before the lists are freed, so no new list finds an old entry)."""
        cached = self._layouts.pop(gi, None)
        if cached is not None:
            for ps in cached[1]:
                self._view_cache.pop(id(ps), None)

    def _layout_holds(self, runs: list) -> bool:
        """Whether a group's cached runs still stand: each run's per-param dicts hold the entries
        its view cache entry found (no state tensor, step count or scalar replaced or deleted, no
        dict cleared: a cleared param starts afresh, as in torch), and its params' step counts and
        scalars are still equal (one call steps them all with the first's).

        While no per-param dict changed (``_TrackedEntry.changes``) and no joined step tensor was
        changed in place (its ``_version``: ``_join_scalars``), this is one look-up and a version
        compare per run; otherwise the entries are compared, then the values read."""
        same = _TrackedEntry.changes == self._entries_seen
        for ps in runs:
            hit = self._view_cache.get(id(ps))
            if hit is None:
                return False  # (a step stopped between its plan and this run: plan again)
            if not (same and hit[8]) and not _same_entries(hit[5], hit[0][0] + hit[9], hit[6]):
                return False
            bufs, versions = hit[10]
            if hit[11] or list(map(_version, bufs)) != versions:
                if not _equal_scalars(hit[5], hit[9]):
                    return False
                versions[:] = map(_version, bufs)  # (changed alike: the run stands)
        return True

    def _uninterrupted(self, work: list):
        """``optkern._atomic.deferring`` for a step (``_step``'s ``work``: its groups and their
        runs), as optkern.optim's steps choose: a Ctrl-C during a kernel is raised as it returns, so inside
        it the step (its arrays, its step counts, every run) is whole first. Each group's count is
        kept while its runs are the same list (the cached layout: one look-up a step; counting 200
        params cost ~30 us on a loaded 2-core VM). A complex param counts its complex elements: a
        cost estimate."""
        n = 0
        for _, _, gi, _, runs in work:
            hit = self._elements.get(gi)
            if hit is None or hit[0] is not runs:
                hit = self._elements[gi] = (runs, sum(sum(map(_numel, ps)) for ps in runs))
            n += hit[1]
        return deferring(n)

    def _element_bases(self, params: list) -> list[int]:
        """The index of each param's element 0 among all elements of ``param_groups`` in order: the
        stochastic rounding's Philox counters (optkern.optim numbers its params' elements so)."""
        flat = [p for g in self.param_groups for p in g["params"]]
        starts: dict[int, int] = {}
        # (a lazy module's param before its first forward has no shape, and no grad: it counts none)
        for p, s in zip(flat, element_starts(self.param_groups, _elements_now)):
            starts.setdefault(id(p), s)  # (a tensor listed twice is refused by the step's checks)
        return [starts[id(p)] for p in params]

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
        key = (names, _data_key(hit[15]))  # (the params and state tensors viewed: their memory now)
        if hit[0] != key:
            return None
        # the run's per-param dicts all the optimizer's own and none changed since the last step
        # (_tracked.py), else each state entry compared with the cached one
        if hit[8] and _TrackedEntry.changes == self._entries_seen:
            return hit
        if _same_entries(hit[5], names + hit[9], hit[6]):
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
        if hit is not None:
            # (the per-param state dicts are torch's own until load_state_dict, which drops the
            # cache; looking 200 of them up by tensor costs 0.2 ms a step)
            states = hit[5]
            pviews, lists, self._joined, core_run, dense = hit[1], hit[2], hit[3], hit[4], hit[7]
            shapes = hit[13]
            if hit[12] is not None and not _inference.enabled():  # (an inference tensor: outside, refused)
                _inference.refuse_found(self, group, params, gi, hit[12])
        else:
            # (else channels_last ones: flat views, checked; complex ones: their real views. A run is one dtype)
            states = self._run_states(params, names)
            dense = all(map(_is_contiguous, params)) and not params[0].is_complex()
            shapes = list(map(_shape, params))  # (what the grads' shapes are compared with)
            scalars = tuple(k for k in self._run_keys if k in states[0])
            self._check_complete(group, params, gi, states, names)  # (a hyper-parameter may need more state now)
            # (checked once per cache entry: its tensors stay the same while it holds)
            written = _inference.check_run(self, group, params, gi, names, states)
            pviews = _views.views(params)
            self._check_state_layouts(group, params, gi, states, names)
            lists = {n: _views.views([s[n] for s in states]) for n in names}
            self._joined, bufs = _join_scalars(states, scalars) if cache else ({}, [])
            core_run = None
            if cache or self._lowp_core:  # the optkern.optim run over the same views: its step,
                # without re-checking the lists (a low-precision step goes this way only)
                core_run = _Run(range(len(params)), pviews, _backend.backend(("params", pviews)), 0, dict(lists))
                if self._lowp_core:
                    core_run.bases = self._element_bases(params)
            if cache:
                entries = (*names, *scalars)
                flat = _entries(states, entries)
                # the tensors whose memory the step views or reads: the params, their state tensors and
                # step counts (joined above: a count given other memory, ``.set_(t)``, is read anew)
                memory = params + flat
                key = (names, _data_key(memory))
                own = all(type(st) is _TrackedEntry for st in states)
                versions = [bufs, list(map(_version, bufs))]  # (see _layout_holds)
                unjoined = len(params) > 1 and len(self._joined) < len(scalars)  # (values read each step)
                cached: tuple = (key, pviews, lists, self._joined, core_run, states, flat, dense)
                cached += (own, scalars, versions, unjoined, written, shapes, _flat_shapes(shapes), memory)
                self._view_cache[id(params)] = cached
        # (read from the run's joined step counts, a NumPy array over the same memory as
        # ``states[0]["step"]``, where it has one: ``float()`` of a 0-d tensor costs ~45 us after a
        # large step's memory traffic has made torch's code cold, ``ndarray.item`` ~8)
        joined = self._joined.get("step")
        if type(joined) is np.ndarray:
            t = int(joined.item(0)) + 1
        else:
            t = int(float(states[0]["step"])) + 1 if "step" in states[0] else 1
        # (a cached dense CPU run's grads go as capsules whose shapes the native call compares with
        # the params' (``_held``): a mismatch is sorted out below, as ``_check_grad_shapes`` would)
        native_shapes = hit is not None and dense and not self._lowp_core and params[0].is_cpu
        if self._pre_grads.get(id(params)) is None and not native_shapes:  # (else the precheck checked them)
            self._check_grad_shapes(params, gi, grads, shapes)
        given = grads
        if self._lowp_core:  # (the low-precision step takes arrays, bfloat16 as uint16 bits)
            grads = self._grad_arrays(params, gi)
        else:
            dims = hit[14] if hit is not None and native_shapes else None
            grads = self._grad_views(params, gi, capsules=core_run is not None, grads=grads, dense=dense, shapes=dims)
        first = id(params[0]) in self._first(group, params)
        try:
            if params[0].is_cpu:  # (no stream to enter: the context's two calls cost ~5 us cold)
                out = self._native_step(group, hp, core_run, pviews, grads, lists, t, first)
            else:
                with _views.on_stream(params[0]):
                    out = self._native_step(group, hp, core_run, pviews, grads, lists, t, first)
        except (TypeError, ValueError):
            # the native call refused before writing. A grad of another shape than the view cache's:
            # named, or (a param given a new shape in place, ``p.data = ...``) the cache dropped and
            # the run made again from fresh views (``_check_grad_shapes``)
            if native_shapes and self._shapes_differ(params, given, shapes):
                self._check_grad_shapes(params, gi, given, shapes)
                self._pre_hits.pop(id(params), None)
                self._run(group, params, gi, cache, given)
                return
            # else name what it refused by its place in the groups
            self._pre_grads.clear()
            self._precheck_named([(group, params, gi, None, [params])])
            raise
        self._after(group, params, states, t, out)

    def _run_states(self, params: list, names: tuple) -> list:
        """The per-param state dicts of a run whose step keeps state tensors ``names``: a param
        without one gets its (empty) entry in ``state`` only if the step keeps some state, as
        torch's plain SGD adds none."""
        if names or self._run_keys:
            return [self.state[p] for p in params]
        return [self.state.get(p, {}) for p in params]

    def _native_step(self, group, hp, core_run, pviews, grads, lists, t, first):
        """A run's native call: through the optkern.optim run ``core_run`` where there is one
        (``_core_step``), else the adapter's ``_call``."""
        if core_run is not None:
            return self._core_step(hp, core_run, grads, t, first)
        return self._call(host_group(group, bool_lr=self._BOOL_LR), pviews, grads, lists, t, first=first)

    def _core_step(self, hp: tuple, run: _Run, grads: list, t: int, first: bool):
        """``run``'s step through optkern.optim's own ``_update`` (what ``optkern.optim.X.step``
        runs): the functional form's per-call list conversions and checks are skipped (the
        native call still checks every array before it writes). Returns the new per-run scalar
        (NAdam's mu_product) or None. ``hp``: the group's checked hyper-parameters."""
        m = self._m
        dt = m._math_dtype(run.params[0].dtype)
        # (checked once per (hp, dtype): hp is the group's cached, immutable checked tuple -- _hyper --
        # a hashable one as _check_dtype's own memo takes it; its key costs ~5 us a step cold)
        if self._dtype_ok is None or self._dtype_ok[0] is not hp or self._dtype_ok[1] != dt:
            _check_dtype(hp, dt)
            self._dtype_ok = (hp, dt) if _hashable(hp) else None
        if self._lowp_core is not None:
            self._lowp_core._amp_grad_scale = _lowp.amp_scale(self, run.params[0])
        run.extra = self._core_extra()
        run.step = t - 1  # (what a low-precision step draws its stochastic rounding from)
        m._update(run, grads, hp, self._core_t(t, first))
        return run.extra.get("mu_product")

    @staticmethod
    def _shapes_differ(params: list, grads: list | None, shapes: list) -> bool:
        """Whether a grad of ``params`` (``grads``, when the caller has them) is not of ``shapes``."""
        try:
            return list(map(_shape, grads if grads is not None else [p.grad for p in params])) != shapes
        except AttributeError:  # (a grad that is not a tensor: named by the checks)
            return False

    def _check_grad_shapes(self, params: list, gi: int, grads: list | None, shapes: list) -> None:
        """ValueError naming a grad of ``params`` (group ``gi``; ``grads`` their grads when the
        caller has them) of another shape than its param's, or a state tensor of another shape
        than a param given a new one in place (``p.data = p.data.view(...)``: ``shapes``, the
        params' shapes the run's views were made with, are then not the params' own). The native
        calls compare sizes only; torch's ``.grad`` setter keeps a grad's shape its param's, but
        ``p.grad.data = ...`` and ``p.data = ...`` go around it. One look at each grad's shape."""
        if list(map(_shape, grads if grads is not None else [p.grad for p in params])) == shapes:
            return
        self._check_grads(params, gi)  # (a grad that is not its param's shape is named)
        group = self.param_groups[gi]
        states = [self.state.get(p) or {} for p in params]
        self._check_state_layouts(group, params, gi, states, self._stored(self._hyper(group), params[0].dtype))
        self._view_cache.pop(id(params), None)  # (every shape is the param's: views made anew next step)
