"""torch.optim.SGD on optkern's fused step, and the form its momentum buffers are in (PyTorch's
``b`` or the textbook ``v = -lr b``). What every class of :mod:`optkern.torch.optimizers` shares
(torch's state names, checkpoints, tensor hyper-parameters) is said there."""

from __future__ import annotations

from .. import functional as F
from .. import optim as _optim
from ..optim._lowp_config import lowp_keywords
from ._fused import _Fused
from ._impl_keywords import impl_keywords
from ._state import _zeros
from ._tensor_hypers import refuse_one_minus

__all__ = ["SGD"]


@impl_keywords
@lowp_keywords
class SGD(_Fused):
    """torch.optim.SGD (momentum, dampening, Nesterov, maximize) on optkern's fused step;
    ``momentum_form="textbook"`` gives ``v <- mu v - lr (1 - dampening) g, p <- p + v`` (Nesterov:
    ``p <- p + mu v - lr g``; ``v <- -lr g`` on the first step). Low-precision
    keywords: see :mod:`optkern.torch` (a ``step`` count is then kept, as for Adam)."""

    _core = _optim.SGD
    _impl_names = ("foreach", "differentiable", "fused")  # (torch.optim.SGD has no capturable)
    _may_be_none = ("momentum_buffer",)  # (torch's SGD: None, or none, makes it from the next grad)

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0.0,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
        *,
        maximize=False,
        momentum_form="pytorch",
        **lowp,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
                momentum_form=momentum_form,
            ),
            lowp,
        )

    # ---- the form the momentum buffers are in ----------------------------------------------------
    # b (PyTorch's) and v = -lr b (textbook) have opposite signs: buffers read in the other form step
    # uphill (as optkern.optim.SGD). The form a group's buffers were made in is kept here (torch's
    # state dict has no place for it; the saved group's momentum_form says it, PyTorch's where it
    # has none); a changed form is checked as the group's hyper-parameters change.

    @property
    def _buffer_forms(self) -> dict:
        """group index -> whether its momentum buffers are textbook v (pickled with the optimizer)."""
        return self.__dict__.setdefault("_forms", {})

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_forms": self._buffer_forms}

    def _check_against_state(self, group, gi, hp) -> None:
        held = self._buffer_forms.get(gi)
        if hp.momentum == 0 or held is None or held == hp.textbook:
            return  # (no buffer read: the form may change while momentum is off)
        if any((self.state.get(p) or {}).get("momentum_buffer") is not None for p in group["params"]):
            forms = ("pytorch", "textbook")
            raise ValueError(
                f"param_groups[{gi}]['momentum_form']: is {forms[hp.textbook]!r}, but the group's momentum "
                f"buffers are in the {forms[held]!r} form (textbook v = -lr b: opposite signs); set it back "
                f"to {forms[held]!r}"
            )

    def _load(self, state_dict: dict) -> None:
        super()._load(state_dict)
        self._buffer_forms.clear()
        for i, saved in enumerate(state_dict["param_groups"]):
            self._buffer_forms[i] = saved.get("momentum_form", "pytorch") == "textbook"

    def _sparse_check(self, group, gi, names) -> None:
        # torch.optim.SGD's rules for sparse grads (_sparse), in its order: its fused step refuses them,
        # its weight decay adds the param to the grad (sparse + dense: refused by torch.add); with
        # momentum torch keeps a sparse buffer, which the fused step cannot hold
        if group.get("fused", self._impl.get("fused")):
            raise RuntimeError("`_fused_sgd` does not support sparse gradients")
        if group["weight_decay"] != 0:
            raise RuntimeError("add(sparse, dense) is not supported. Use add(dense, sparse) instead.")
        if group["momentum"] != 0:
            raise ValueError(
                f"{names[0]}: sparse gradients with momentum are not supported (torch.optim.SGD keeps a "
                "sparse momentum buffer; this step keeps dense state)"
            )

    def _first_params(self, group, params, gi) -> tuple:
        """(the params whose momentum buffer this step makes, the group's cached runs when they
        still hold for ``params`` or None: ``_held_layout``). torch makes a buffer from the next
        gradient where there is none, or None (a torch 1.x checkpoint's, a user's reset): those
        params run with first=True. Writes nothing."""
        if not self._state_names(group):
            return [], None
        # a layout is only made once every buffer exists (momentum may have been switched on since:
        # then the first param has none either); while its runs hold (no buffer deleted, set to
        # None or a dict cleared since: _layout_holds), every buffer does
        held = self._held_layout(params, gi)
        # (any param's dict tells: the first run's first, as its view cache entry holds it -- looking
        # it up by tensor, through Tensor.__hash__, cost ~8 us a step with the code cold)
        if held is not None and self._view_cache[id(held[0])][5][0].get("momentum_buffer") is not None:
            return [], held
        return [p for p in params if (self.state.get(p) or {}).get("momentum_buffer") is None], held

    def _plan(self, group, params, gi):
        # (the cached runs looked at once a step: _Fused._plan and _group_step take what is found here)
        first, held = self._first_params(group, params, gi)
        self._first_now[gi] = first
        if not first:
            return super()._plan(group, params, gi, held)
        # (runs outside the layout: a low-precision step count, advanced after the call wrote, checked here)
        self._scalar_values(group, params, gi, [self.state.get(p) or {} for p in params])
        return self._first_runs(params, first), True

    @staticmethod
    def _first_runs(params, first) -> list:
        """The calls of a step that makes buffers: the new ones', then the others', per device and dtype."""
        ids = {id(p) for p in first}
        runs: list = []
        for ps in (first, [p for p in params if id(p) not in ids]):
            by_kind: dict = {}
            for p in ps:
                by_kind.setdefault((p.device, p.dtype), []).append(p)
            runs += by_kind.values()
        return runs

    def _group_step(self, group, params, gi):
        self._first_set: set = set()
        # (what this step's _plan found: nothing is written between a step's plan and its groups' steps)
        first = self._first_now.pop(gi, None)
        if first is None:
            first = self._first_params(group, params, gi)[0]
        if not first:  # no momentum, or every buffer made: the cached layout and views
            super()._group_step(group, params, gi)
            return
        # torch creates the buffer from the first step's gradient: those params run with first=True.
        # The cached layout's views may hold a buffer the user dropped: made anew next step
        self._drop_group_layout(gi)
        for p in first:
            if self._lowp_core is not None:  # (its step count, master and buffer storage)
                self._init_state(p, self.state[p], group)
            else:
                self.state[p]["momentum_buffer"] = _zeros(p)
        self._first_set = {id(p) for p in first}
        self._buffer_forms[gi] = group["momentum_form"] == "textbook"  # (the form checked: _hyper)
        for run in self._first_runs(params, first):
            self._run(group, run, gi)

    def _first(self, group, params):
        return getattr(self, "_first_set", set())

    def _core_t(self, t, first):
        return 1 if first else 2  # the buffers' step: 1 makes them from the gradient

    def _refuse_tensor_hypers(self, group: dict, where: str) -> None:
        refuse_one_minus(group, where, "dampening")

    def _call(self, group, params, grads, lists, t, *, first):
        F.sgd_(
            params,
            grads,
            lists.get("momentum_buffer", [] if not params else None),
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
            first=first,
            momentum_form=group["momentum_form"],
        )

    def _after(self, group, params, states, t, out):
        if self._lowp_core is not None:  # (torch's SGD counts no steps; a low-precision one does)
            super()._after(group, params, states, t, out)
