"""torch.optim.Optimizer subclasses whose steps run optkern's fused multi-tensor kernels.

Each class takes what its ``torch.optim`` namesake takes (``model.parameters()``
or param groups, the same hyper-parameters and defaults), keeps its state in
``self.state[p]`` under torch's names and types (``step`` a float32 CPU tensor,
``exp_avg`` ... tensors like the param), so ``state_dict()`` is torch's own
format: a checkpoint moves between ``torch.optim.AdamW`` and
``optkern.torch.AdamW`` both ways. ``step(closure=None)`` follows torch:
params whose ``.grad`` is None are skipped (their state untouched), the
closure is re-evaluated with grad enabled. The update runs in place on the
tensors' own memory: one optkern call per (device, dtype, step count) run of
a group, on torch's current CUDA stream for CUDA tensors.

The step keeps views of the params' and state tensors' memory while they stay the same tensors
over the same memory: a state tensor replaced (``opt.state[p]["exp_avg"] = t``, a cleared or new
dict), a param or a state tensor given other memory in place (``p.data = t``,
``opt.state[p]["exp_avg"].data = t`` or ``.set_(t)``) is followed, as torch.optim reads it. (Their
data pointers are read each step in the one native call that reads the params'.)

A float32 tensor ``lr`` (torch.optim takes one) steps as torch's for-loop steps with it: the step
scalars torch then computes in float32 tensor ops (Adam's and AdamW's ``lr / bc1``, NAdam's
coefficients, Adagrad's decayed lr, ``1 - lr * weight_decay``) are computed so (``_tensor_lr``). Adam's
and AdamW's tensor ``betas``, float16 / bfloat16 ``lr`` and tensor decoupled ``weight_decay`` step as
torch's for-loop steps with them too: their step scalars come from torch's own expressions, evaluated
with torch's ops (``_torch_scalars``). Other tensor hyper-parameters whose scalars torch computes in
ops of the tensor's dtype that optkern does not follow (a half ``lr`` of NAdam or of Adagrad with
``lr_decay``, a tensor ``lr_decay``, ``dampening`` / ``alpha`` / ``rho`` whose ``1 - x`` the dtype
rounds, NAdam's decoupled decay) are refused by name (``_tensor_hypers``). NAdam's tensor ``betas``
step as torch's too: its scalars and ``mu_product *= mu`` (a tensor ``mu``, promoted) in torch's ops.

Here SGD, Adagrad, RMSprop and Adadelta; the Adam family (``adam.py``) and
AdagradNorm (``adagrad_norm.py``) are imported from their own modules.
"""

from __future__ import annotations

import numbers

import torch

from .. import functional as F
from .. import optim as _optim
from ..optim._lowp_config import lowp_keywords
from . import _views
from ._fused import _Fused
from ._impl_keywords import impl_keywords
from ._state import _zeros
from ._tensor_hypers import refuse_half_lr, refuse_one_minus, refuse_tensor
from ._tensor_lr import Float32Lr
from .adagrad_norm import AdagradNorm
from .adam import Adam, AdamW, NAdam

__all__ = ["SGD", "Adagrad", "AdagradNorm", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]


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


@impl_keywords
@lowp_keywords
class Adagrad(Float32Lr, _Fused):
    """torch.optim.Adagrad (state created at construction, as torch does), and the low-precision
    keywords (see :mod:`optkern.torch`).

    One difference, deliberate: a param group's own ``initial_accumulator_value`` (given in the
    group's dict, or by ``add_param_group``) starts that group's sums. torch 2.x reads the
    constructor's value for every group, its own key ignored."""

    _core = _optim.Adagrad
    _impl_names = ("foreach", "differentiable", "fused")  # (torch.optim.Adagrad has no capturable)
    _sparse_coalesce = True  # (torch's: its update is not linear in the grad)

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        foreach=None,
        *,
        maximize=False,
        **lowp,
    ):
        lowp["foreach"] = foreach  # (positional in torch's signature: checked with the keyword ones)
        super().__init__(
            params,
            dict(
                lr=lr,
                lr_decay=lr_decay,
                weight_decay=weight_decay,
                eps=eps,
                initial_accumulator_value=initial_accumulator_value,
                maximize=maximize,
            ),
            lowp,
        )
        for i, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):  # (a lazy param has no shape yet: torch's refuses it too)
                if _views.is_lazy(p):
                    raise ValueError(f"param_groups[{i}]['params'][{j}]: Adagrad makes its state here: {_views.LAZY}")
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, self.state[p], group)

    def _sparse_check(self, group, gi, names) -> None:
        # torch.optim.Adagrad's rules for sparse grads (_sparse), in its order
        if group.get("fused", self._impl.get("fused")):
            raise RuntimeError("`fused` does not support sparse grad or complex param")
        if group["weight_decay"] != 0:
            raise RuntimeError("weight_decay option is not compatible with sparse gradients")

    def _refuse_tensor_hypers(self, group: dict, where: str) -> None:
        lr_decay = group["lr_decay"]
        if isinstance(lr_decay, torch.Tensor):  # (torch's lr / (1 + (t - 1) lr_decay): reciprocal * lr)
            refuse_tensor(where, "lr_decay", lr_decay, "whose decayed lr torch computes as a reciprocal times lr")
        if float(lr_decay) != 0.0:
            refuse_half_lr(group, where, "which torch's decayed lr is divided in")

    def _call(self, group, params, grads, lists, t, *, first):
        F.adagrad_(
            params,
            grads,
            lists.get("sum", []),
            step=t,
            lr=group["lr"],
            lr_decay=group["lr_decay"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
            float32_lr=self._float32_lr,
        )


@impl_keywords
@lowp_keywords
class RMSprop(_Fused):
    """torch.optim.RMSprop (centered, momentum), plus ``nesterov`` momentum (not in torch), and the
    low-precision keywords (see :mod:`optkern.torch`)."""

    _core = _optim.RMSprop
    _sparse_refusal = "RMSprop does not support sparse gradients"  # (torch's)
    _impl_names = ("capturable", "foreach", "differentiable")  # (torch.optim.RMSprop has no fused)

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        capturable=False,
        foreach=None,
        maximize=False,
        differentiable=False,
        *,
        nesterov=False,
        **lowp,
    ):
        # (positional in torch's signature: checked with the keyword ones)
        lowp.update(capturable=capturable, foreach=foreach, differentiable=differentiable)
        super().__init__(
            params,
            dict(
                lr=lr,
                alpha=alpha,
                eps=eps,
                weight_decay=weight_decay,
                momentum=momentum,
                centered=centered,
                maximize=maximize,
                nesterov=nesterov,
            ),
            lowp,
        )

    def _refuse_tensor_hypers(self, group: dict, where: str) -> None:
        refuse_one_minus(group, where, "alpha")

    def _call(self, group, params, grads, lists, t, *, first):
        # (a momentum that is not a number gets the buffers' list, for the call's checks to name it:
        # compared here first, Python's TypeError named nothing)
        momentum = group["momentum"]
        buffers = not isinstance(momentum, numbers.Real) or momentum > 0
        F.rmsprop_(
            params,
            grads,
            lists.get("square_avg", []),
            lists.get("grad_avg", []) if group["centered"] else None,
            lists.get("momentum_buffer", []) if buffers else None,
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
        )


@impl_keywords
@lowp_keywords
class Adadelta(_Fused):
    """torch.optim.Adadelta, and the low-precision keywords (see :mod:`optkern.torch`)."""

    _core = _optim.Adadelta
    _sparse_refusal = "Adadelta does not support sparse gradients"  # (torch's)
    _impl_names = ("foreach", "capturable", "differentiable")  # (torch.optim.Adadelta has no fused)

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, foreach=None, *, maximize=False, **lowp):
        lowp["foreach"] = foreach  # (positional in torch's signature: checked with the keyword ones)
        hp = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, hp, lowp)

    def _refuse_tensor_hypers(self, group: dict, where: str) -> None:
        refuse_one_minus(group, where, "rho")

    def _call(self, group, params, grads, lists, t, *, first):
        F.adadelta_(
            params,
            grads,
            lists.get("square_avg", []),
            lists.get("acc_delta", []),
            lr=group["lr"],
            rho=group["rho"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )
