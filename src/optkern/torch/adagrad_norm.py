"""optkern.torch.AdagradNorm: AdaGrad-Norm (Ward, Wu & Bottou 2019) as a torch.optim.Optimizer,
on optkern's fused step (one b^2 per group), with master weights through optkern.optim's."""

from __future__ import annotations

import torch

from .. import _backend
from .. import functional as F
from .. import optim as _optim
from ..optim._lowp_config import lowp_keywords
from ..optim._run import _Run
from . import _inference, _views
from ._checks_state import _check_scalar
from ._fused import _Fused
from ._host_values import host_group
from ._impl_keywords import impl_keywords
from ._lowp import amp_scale as _lowp_amp_scale
from ._lowp import new_state as _lowp_new_state
from ._state import _saved_ids, _step_tensor


@impl_keywords
@lowp_keywords
class AdagradNorm(_Fused):
    """AdaGrad-Norm (Ward, Wu & Bottou 2019), not in torch: one step size per group.

    State: ``step`` and ``b_sq`` (the group's ``b^2``, one float64 tensor shared by the
    group's params; a loaded state dict's copies are re-joined at the next step). A complex param
    steps as its real view (``torch.view_as_real``: its squared norm adds ``re^2 + im^2``), with
    the real params of that dtype (complex64 with float32).
    """

    _core = _optim.AdagradNorm
    _complete_state = False  # (a param without a grad so far may hold the group's b_sq, and no step)
    _written_extra = ("b_sq", "master_param")  # (a low-precision run mixes half and float32 params)

    def __init__(self, params, lr=1e-2, b0=1e-2, weight_decay=0.0, *, maximize=False, **lowp):
        super().__init__(params, dict(lr=lr, b0=b0, weight_decay=weight_decay, maximize=maximize), lowp)

    def _validate(self, group, where):
        super()._validate(group, where)  # (b0 a positive finite real: a NumPy scalar or 0-d tensor, as lr)
        b0 = self._m._check(host_group(group, where), where).b0
        if not b0 < 1e150:  # (b^2 = b0^2 + the squared grad norms must stay finite)
            # (the checked float: a NumPy scalar's or tensor's repr read "np.float64(1e+200)")
            raise ValueError(f"{where}['b0']: must be a finite number in (0, 1e150), got {b0!r}")

    def _init_state(self, p, state, group):
        state["step"] = _step_tensor()  # b_sq is the group's (one tensor, made at its first step)
        if self._lowp_core is not None:  # (a half param's master copy)
            _lowp_new_state(p, state, self._lowp_core, (), self._hyper(group))

    def _load(self, state_dict):
        """torch's loader casts every state tensor to its param's dtype: b_sq (float64) would come
        back rounded to float32 for float32 params. The saved values are restored in float64."""
        self._check_state_dict(state_dict)  # (before reading it)
        ids = _saved_ids(state_dict)
        entries = [state_dict["state"].get(i) for i in ids]
        saved = [e.get("b_sq") if isinstance(e, dict) else None for e in entries]
        for i, e, b in zip(ids, entries, saved):
            where = f"state_dict['state'][{i!r}]"
            if b is not None:
                _check_scalar(b, f"{where}['b_sq']", nonnegative=True, key="b_sq")
            elif isinstance(e, dict) and e.get("step") is not None:
                # (checked before it is read: float() of a bad step raised an unnamed ValueError)
                _check_scalar(e["step"], f"{where}['step']", nonnegative=True, whole=True, key="step")
                if float(e["step"]) > 0:
                    # (the group's b^2 made again from b0^2: every later step as large as the first, silently)
                    raise ValueError(f"{where}: missing 'b_sq' (a stepped param's entry holds its group's b^2)")
        super()._load(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        for p, b in zip(params, saved):
            if b is not None and "b_sq" in self.state[p]:
                # (a number too: optkern.optim.AdagradNorm saves b_sq as a float, which stayed one and
                # failed the next step)
                t = b.detach() if isinstance(b, torch.Tensor) else torch.tensor(float(b), dtype=torch.float64)
                self.state[p]["b_sq"] = t.to(device=p.device, dtype=torch.float64).reshape(-1).clone()

    def _plan(self, group, params, gi):
        self._hyper(group)
        return self._kinds(params), any("step" not in (self.state.get(p) or {}) for p in params)

    def _kinds(self, params: list) -> list:
        """The calls of a step: one per device and dtype (low precision: halves and float32 params
        of a device share one b^2; complex params are their real views: complex64 with float32)."""
        by_kind: dict = {}
        for p in params:
            by_kind.setdefault((p.device, None if self._lowp_core else _views.real_dtype(p.dtype)), []).append(p)
        return list(by_kind.values())

    def _group_step(self, group, params, gi):
        for ps in self._kinds(params):  # (a step of one call has no precheck: refused before anything)
            _inference.check_run(self, group, ps, gi, ())
            if self._lowp_core is not None:  # (a half param re-laid since its master copy was made: named)
                self._check_lowp_layouts(group, ps, gi)
        for p in params:
            if "step" not in self.state[p]:  # (a param without a grad so far may hold the group's b_sq)
                self._init_state(p, self.state[p], group)
        for ps in self._kinds(params):
            b = self._b_sq(group, ps)
            if self._lowp_core is not None:
                self._lowp_step(group, ps, gi, b)
                continue
            grads = self._grad_views(ps, gi)
            host = host_group(group)
            try:
                with _views.on_stream(ps[0]):
                    F.adagrad_norm_(
                        _views.views(ps),
                        grads,
                        _views.view(b),
                        lr=host["lr"],
                        weight_decay=host["weight_decay"],
                        maximize=host["maximize"],
                    )
            except (TypeError, ValueError):
                self._precheck_named([(group, ps, gi, None, [ps])])  # refused before writing: name it
                raise
            # (an int 1: an integer step tensor a checkpoint held stays one, as torch's ``step_t += 1``)
            torch._foreach_add_([self.state[p]["step"] for p in ps], 1)

    def _b_sq(self, group: dict, ps: list) -> torch.Tensor:
        """The b^2 tensor of the group's params like ``ps`` (one device; one dtype unless low
        precision), made or re-joined: one tensor for all of them, as the kernel updates one."""
        b = next((self.state[p]["b_sq"] for p in ps if "b_sq" in self.state[p]), None)
        if b is None:
            b = torch.full((1,), float(group["b0"]) ** 2, dtype=torch.float64, device=ps[0].device)
        elif b.dtype != torch.float64 or b.numel() != 1 or b.device != ps[0].device:
            b = b.detach().to(device=ps[0].device, dtype=torch.float64).reshape(1).clone()
        real = _views.real_dtype(ps[0].dtype)
        for p in group["params"]:
            if p.device == ps[0].device and (self._lowp_core is not None or _views.real_dtype(p.dtype) == real):
                self.state[p]["b_sq"] = b
        return b

    def _check_lowp_layouts(self, group: dict, ps: list, gi: int) -> None:
        """The other low-precision optimizers' refusals, named: a param laid out unlike its state,
        such as one given channels_last after its master copy was made (``_check_state_layouts``,
        over the state each of ``ps`` keeps: halves and float32 params share a run here), and one
        without state yet that its master copy could not follow (``_check_param``, as ``_layout``
        checks a param it has not planned: this class plans its own runs)."""
        for p, name in zip(ps, self._names(group, ps, gi)):
            if "step" not in (self.state.get(p) or {}):
                self._check_param(p, name)
        hp = self._hyper(group)
        names = tuple(dict.fromkeys(n for p in ps for n in self._stored(hp, p.dtype)))
        self._check_state_layouts(group, ps, gi, [self.state.get(p) or {} for p in ps], names)

    def _lowp_step(self, group: dict, ps: list, gi: int, b: torch.Tensor) -> None:
        """Master weights: optkern.optim.AdagradNorm's low-precision step over ``ps`` (half and
        float32 params of one device, one b^2), run on the views of the tensors and state."""
        m = self._lowp_core
        grads = self._grad_arrays(ps, gi)
        states = [self.state[p] for p in ps]
        t = int(float(states[0]["step"])) + 1
        masters = [_views.view(s["master_param"]) if "master_param" in s else None for s in states]
        pviews = _views.views(ps)
        run = _Run(range(len(ps)), pviews, _backend.backend(("params", pviews)), t - 1, {"master_param": masters})
        run.bases = self._element_bases(ps)
        run.extra = {"b_sq": _views.view(b)}
        m._amp_grad_scale = _lowp_amp_scale(self, ps[0])
        try:
            with _views.on_stream(ps[0]):
                m._update(run, grads, self._hyper(group), t)
        except (TypeError, ValueError):
            self._precheck_named([(group, ps, gi, None, [ps])])  # refused before writing: name it
            raise
        torch._foreach_add_([s["step"] for s in states], 1)

    def _call(self, group, params, grads, lists, t, *, first):
        import numpy as np

        F.adagrad_norm_(
            params, grads, np.ones(1), lr=group["lr"], weight_decay=group["weight_decay"], maximize=group["maximize"]
        )
