"""The checks of one optkern.torch step (a mixin of ``_Fused``): every run's hyper-parameters,
params, state tensors and grads as the native calls check them, and no grad or written tensor
sharing memory with a written one, before the first native call writes anything."""

from __future__ import annotations

import itertools
import math
import operator
from typing import TYPE_CHECKING, Any

import torch

from .. import _backend
from .._cpu import spans_clear as _spans_clear
from .._lowp_blocks import block_scale_name
from ..optim._hyper import _check_dtype
from . import _inference, _lowp, _views
from ._checks_inputs import check_grad
from ._overlaps import _check_overlaps, _grad_sig, _shape, _span, _written_spans
from ._state import _FLOAT_DTYPES, _STEP_DTYPES, _checked_scalar

_STRIDED = torch.strided
_TENSOR = torch.Tensor
# (unbound methods and getters: one call each per tensor in the per-step checks)
_data_ptr = torch.Tensor.data_ptr
_numpy = torch.Tensor.numpy
_is_contiguous = torch.Tensor.is_contiguous
_size = operator.attrgetter("size")


class _StepChecks:
    """A mixin of ``_Fused`` (its groups, state, views and hyper-parameters)."""

    _written_ok: tuple | None  # the written tensors' spans checked last (set in _Fused.__init__)

    if TYPE_CHECKING:  # everything else it reads is _Fused's

        def __getattr__(self, name: str) -> Any: ...

    def _check_grads(self, params: list, gi: int) -> None:
        """TypeError / ValueError naming the first grad of ``params`` optkern cannot update in place
        with its param (group ``gi``)."""
        index = {id(p): j for j, p in enumerate(self.param_groups[gi]["params"])}
        dtypes = _lowp.param_dtypes(self._lowp_cfg)
        for p in params:
            check_grad(p, p.grad, gi, index[id(p)], dtypes)

    def _names(self, group: dict, ps: list, gi: int) -> list:
        """How errors name the params ``ps`` of group ``gi``. A tensor listed twice in the group
        (appended to ``group["params"]`` again after construction; both in ``ps``) is named by its
        positions in turn: an aliasing error names the two places, not one twice."""
        where: dict = {}
        for j, p in enumerate(group["params"]):
            where.setdefault(id(p), []).append(j)
        return [f"param_groups[{gi}]['params'][{_next_place(where[id(p)])}]" for p in ps]

    def _scalar_values(self, group: dict, ps: list, gi: int, states: list) -> list:
        """The step count and per-param scalars (NAdam's mu_product) of each of ``states`` (the
        state dicts of params ``ps``, group ``gi``), a tuple of numbers each, in ``_run_keys``
        order, those held. TypeError / ValueError naming the first the step cannot read and
        advance in place after its native call wrote: each must be a 1-element real tensor
        (torch's optimizers refuse a number too: "singleton tensors"), finite, a step count >= 0
        (as ``load_state_dict`` checks them), mu_product floating-point (torch multiplies it in
        place by a float). Read where a step's runs are planned (``_layout``, SGD's runs that
        make buffers): a run of a cached layout holds checked ones (``_layout_holds``)."""
        keys = [(k, *((_STEP_DTYPES, 0.0) if k == "step" else (_FLOAT_DTYPES, -math.inf))) for k in self._run_keys]
        out = []
        for p, s in zip(ps, states):
            vals = []
            for k, dtypes, lo in keys:
                v = s.get(k)
                if v is None and k not in s:
                    continue
                if type(v) is _TENSOR and v.dtype in dtypes and v.numel() == 1:
                    x = v.item()
                    if lo <= x < math.inf and not (lo == 0 and x % 1):  # (a step count: whole)
                        vals.append(x)
                        continue
                vals.append(_checked_scalar(v, f"state[{self._names(group, [p], gi)[0]}][{k!r}]", dtypes, lo))
            out.append(tuple(vals))
        return out

    def _check_complete(self, group: dict, ps: list, gi: int, states: list, names: tuple = ()) -> None:
        """ValueError naming the first entry a step of params ``ps`` (group ``gi``; ``states``
        their state dicts) would read and that is missing from a non-empty dict (a param that has
        stepped; an empty one starts afresh, as in torch): the step count and per-param scalars
        of an optimizer that counts steps (a hand-built or edited state: counted from 1 again, the
        bias corrections and lr decay would silently restart), or a state tensor of ``names``
        (what the group's hyper-parameters need now: amsgrad, RMSprop's momentum or centered
        switched on since). torch.optim raises KeyError there, its step after the earlier groups
        were written; this is called where the step is planned, before anything is written. A
        missing (or None) SGD momentum buffer is made from the next grad, as torch makes it."""
        if not self._complete_state:
            return
        m = self._m
        keys = ("step", *m._scalar_names) if m._has_step else ()
        # (``names`` are the storage of the params' dtype: a master copy only for half params,
        # low-precision moments as stored; a loaded checkpoint's are converted by _lowp on load)
        names = tuple(n for n in names if n not in self._may_be_none)
        for p, s in zip(ps, states):
            if not s:
                continue
            # an 8-bit buffer the step makes (None, or none) has no scales yet: made with it (a state
            # dict without SGD's buffer loaded, then every step refused its missing scales)
            made = {block_scale_name(n) for n in self._may_be_none if s.get(n) is None}
            for k in keys + names:
                if k not in s and k not in made:
                    what = "step count" if k == "step" else "state"
                    raise ValueError(
                        f"state[{self._names(group, [p], gi)[0]}]: missing {what} {k!r} (a param's state holds "
                        "every entry its step reads, or none: an empty dict starts afresh)"
                    )

    def _run_views(self, group: dict, ps: list, gi: int) -> tuple:
        """(the params' NumPy views, [(state name, a view of that state of each param, None where
        it has none yet)]): what the run's native call writes, of the state that exists."""
        hp = self._hyper(group)
        hit = self._cached_views(group, ps, hp)
        if hit is not None:
            if hit[12] is not None and not _inference.enabled():  # (an inference tensor: outside, refused)
                _inference.refuse_found(self, group, ps, gi, hit[12])
            self._pre_hits[id(ps)] = hit  # (the step's _run need not check it again)
            return hit[1], list(hit[2].items())
        states = [self.state.get(p) or {} for p in ps]
        names = self._stored(hp, ps[0].dtype)
        self._check_complete(group, ps, gi, states, names)  # (a hyper-parameter may need more state now)
        _inference.check_run(self, group, ps, gi, names, states)  # (first: _relay may write a state tensor)
        self._check_state_layouts(group, ps, gi, states, names)
        return _views.views(ps), [(n, [_views.view(s[n]) if self._held(s, n) else None for s in states]) for n in names]

    def _held(self, st: dict, n: str) -> bool:
        """Whether state dict ``st`` holds state tensor ``n`` (else the step makes it): SGD's
        ``momentum_buffer`` may be None, which torch's SGD makes from the next grad as a missing
        one (``_may_be_none``); a None anything else is held, and refused by the checks."""
        return n in st and (st[n] is not None or n not in self._may_be_none)

    def _check_state_layouts(self, group: dict, ps: list, gi: int, states: list, names) -> None:
        """ValueError naming a state tensor of ``ps`` (group ``gi``) that is a negated or conjugated
        view (one a user set: a loaded one is resolved, ``_like_param``), or of another shape than
        its param's (``_check_shape``; 8-bit block scales excepted, one per block. Skipped for all
        low-precision storage, a param re-viewed to another shape, ``p.data = p.data.view(2, 3)``,
        was stepped with its old-shaped moments and master, and its ``state_dict()`` no longer
        loaded), or whose memory layout is not its param's (the step pairs them element by element in memory
        order: channels_last) and cannot be made so (``_relay``: one of its param's shape is put in
        its layout, as torch steps it). Run before the state is viewed, after the inference checks."""
        blocks = self._block_scales(self._hyper(group))
        for p, s in zip(ps, states):
            for n in names:
                t = s.get(n)
                if isinstance(t, torch.Tensor) and t.shape != p.shape and n not in blocks:
                    _check_shape(t, p, f"state[{self._names(group, [p], gi)[0]}][{n!r}]")
                if isinstance(t, torch.Tensor) and not (
                    t.is_contiguous() and p.is_contiguous() and not t.is_neg() and not t.is_conj()
                ):
                    name = f"state[{self._names(group, [p], gi)[0]}][{n!r}]"
                    if t.is_neg() or t.is_conj():
                        raise ValueError(f"{name}: {_views.NEG_VIEW if t.is_neg() else _views.CONJ_VIEW}")
                    self._relay(ps, t, p, name, self._names(group, [p], gi)[0])
                    _views.check_paired(t, p, name)

    def _drop_views(self, ps: list) -> None:
        """Forget the step's cached NumPy views of run ``ps``'s tensors (made again as the run is
        viewed): a view holds its tensor's storage, which ``_views.relay_state`` counts to find the
        views a user holds of a state tensor it would re-lay."""
        self._view_cache.pop(id(ps), None)
        self._pre_hits.pop(id(ps), None)
        self._written_ok = None

    def _relay(self, ps: list, t, p: torch.Tensor, name: str, pname: str) -> None:
        """State tensor ``t`` (named ``name``) of param ``p`` (named ``pname``, of run ``ps``), dense in
        another memory layout than ``p`` (the param given another one since the state was made:
        ``p.data = ...``), put in ``p``'s in place (``_views.relay_state``: torch.optim steps it as it
        is, reading elements by index); anything else left for the checks to name (not a tensor, a
        negated or conjugated view, another shape or device, gaps, a param with gaps). With
        low-precision storage, which runs over a param's elements in C order (its 8-bit blocks, its
        stochastic rounding's counters), a param that is not contiguous is refused by name instead
        (``_lowp.check_contiguous``). The one decision to re-lay a state tensor, for both passes of
        the checks (``_check_state_layouts``, ``_precheck_named``)."""
        if not isinstance(t, torch.Tensor) or t.is_conj():  # (a negated view: not relayable)
            return
        if t.dtype.is_complex == p.dtype.is_complex and t.device == p.device and _views.relayable(t, p):
            if self._lowp_core is not None:
                _lowp.check_contiguous(p, pname)
            self._drop_views(ps)  # (its cached views: not to be counted as a user's, relay_state)
            _views.relay_state(t, p, name)

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
            # (kept only for runs writing no inference tensor: those go through _run_views every step)
            if ok is not None and len(ok[0]) == len(hits) and all(map(operator.is_, ok[0], hits)):
                self._pre_hits.update(zip((id(ps) for *_, runs in work for ps in runs), hits))
                if self._grads_ok(work, ok):  # (the written tensors: as checked at an earlier step)
                    return
                self._precheck_named(work)
                return
            try:
                self._precheck_native(work, False)
                if all(h is not None and h[12] is None for h in hits):
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
        _, wlo, reach, sigs, pbytes, itemsizes, cx = ok
        if list(map(_grad_sig, gs)) != sigs:  # (the native calls compare sizes only, not shapes)
            return False
        if cx and any(gs[k].is_conj() for k in cx):  # (complex params' grads: a conjugated one is named)
            return False
        return _spans_clear(list(map(_data_ptr, gs)), pbytes, itemsizes, wlo, reach)

    def _precheck_named(self, work: list) -> None:
        """The checks, naming what fails (the slow pass: on failure, and off the CPU)."""
        dtypes = _lowp.param_dtypes(self._lowp_cfg)
        for group, _, gi, _, runs in work:  # on the tensors first: what a NumPy view cannot show
            hp = self._hyper(group)
            for ps in runs:
                self._check_grads(ps, gi)
                _inference.check_run(self, group, ps, gi, self._stored(hp, ps[0].dtype))
                for p, name in zip(ps, self._names(group, ps, gi)):
                    _views.check_tensor(p, name, dtypes)
                    st = self.state.get(p) or {}
                    for n in self._stored(hp, p.dtype):
                        if self._held(st, n):
                            self._relay(ps, st[n], p, f"state[{name}][{n!r}]", name)
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
                    names = [n for n in self._stored(hp, p.dtype) if self._held(st, n)]
                    ts = [(p, name)] + [(st[n], f"state[{name}][{n!r}]") for n in names]
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
            _check_shape(t, p, name)
        if t.layout is not _STRIDED:
            raise ValueError(f"{name}: tensor must be contiguous")
        _views.check_paired(t, p, name)

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
                hit = self._pre_hits.get(id(ps))  # (precheck_step_ compares sizes only: the shapes here)
                self._check_grad_shapes(ps, gi, gs, hit[13] if hit is not None else list(map(_shape, ps)))
                try:
                    gviews = list(map(_numpy, gs)) if same else [_views.view(g) for g in gs]
                except (TypeError, RuntimeError):
                    gviews = [_views.view(g) for g in gs]
                # (channels_last: flat, in memory order; complex: the real view)
                if not all(v.flags.c_contiguous and v.dtype.kind != "c" for v in gviews):
                    for g, p in zip(gs, ps):
                        if isinstance(g, torch.Tensor):
                            _views.check_paired(g, p, "grad")
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
                                    f"state[{pname}][{name!r}]: expected "
                                    f"{_backend.counted(sizes[k], 'element')} (its param's), "
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


def _check_shape(t: torch.Tensor, p: torch.Tensor, name: str) -> None:
    """ValueError naming ``t``, a state tensor of param ``p``, unless it has ``p``'s shape: torch's
    step fails on another (its element-wise ops broadcast, or refuse), while the native calls,
    which compare sizes, would pair the elements in memory order. (The loader checks it too.)"""
    if t.shape != p.shape:
        raise ValueError(f"{name}: expected shape {tuple(p.shape)} (its param's), got {tuple(t.shape)}")


def _next_place(places: list) -> int:
    """The first of a tensor's positions in its group, taken from ``places`` while another is left
    (``_names``: a tensor listed twice gets its second position the second time it is named)."""
    return places.pop(0) if len(places) > 1 else places[0]
