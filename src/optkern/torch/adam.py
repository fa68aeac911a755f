"""The Adam family of optkern.torch: ``Adam``, ``AdamW`` and ``NAdam`` as torch.optim.Optimizer
subclasses on optkern's fused steps (torch's signatures, state and ``state_dict`` format, as every
class of :mod:`optkern.torch.optimizers`, which re-exports them)."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from .. import _backend
from .. import functional as F
from .. import optim as _optim
from ..optim._hyper import _check_dtype, _native
from ..optim._lowp_config import lowp_keywords
from ..optim.adam import keep_decoupled
from ._fused import _Fused
from ._impl_keywords import group_foreach, impl_keywords, refuse_adam_constructor, refuse_adam_step, take_impl_keywords
from ._tensor_hypers import refuse_decoupled_decay, refuse_half_lr, refuse_tensor
from ._tensor_lr import Float32Lr, replaced
from ._torch_scalars import adam_scalars, nadam_scalars, plain_numbers, tensor_betas, torch_computed_key, torch_computes

__all__ = ["Adam", "AdamW", "NAdam"]


@impl_keywords
@lowp_keywords
class Adam(Float32Lr, _Fused):
    """torch.optim.Adam (AMSGrad, L2 or decoupled weight decay), and the low-precision keywords
    (see :mod:`optkern.torch`)."""

    _core = _optim.Adam
    _BOOL_LR = True  # (torch's lr / bias_correction1 promotes it as an integer one: lr_dtype)
    # (torch's message, AdamW's too)
    _sparse_refusal = "Adam does not support sparse gradients, please consider SparseAdam instead"

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        *,
        maximize=False,
        decoupled_weight_decay=False,
        **lowp,
    ):
        # (torch's default False, as its signature shows; None, which torch stores and steps as False, too)
        dwd = False if decoupled_weight_decay is None else decoupled_weight_decay
        # torch's own refusals of tensor lr / betas, before anything is made (the keywords checked first)
        refuse_adam_constructor(lr, betas, take_impl_keywords(dict(lowp), type(self)))
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
                maximize=maximize,
                decoupled_weight_decay=dwd,
            ),
            lowp,
        )

    def _refuse_tensor_hypers(self, group: dict, where: str) -> None:
        # (the low-precision step computes its scalars itself, in double: it cannot take torch's)
        key = torch_computed_key(group) if self._lowp_core is not None else None
        if key is not None:  # (named by the entry that makes torch compute them)
            what = {
                "betas": "tensor betas",
                "lr": f"a {getattr(group['lr'], 'dtype', '')} tensor lr",
                "weight_decay": "a tensor decoupled weight_decay",
            }[key]
            raise ValueError(
                f"{where}[{key!r}]: {what}, whose step scalars torch computes in tensor ops, with the "
                "low-precision keywords, whose step computes them in double: pass Python floats"
            )

    def _plan(self, group, params, gi, held=None):
        # (torch's foreach step refuses tensor lr and betas; plain numbers told by type, cheaply)
        if group_foreach(group, self._impl) and not plain_numbers(group):
            refuse_adam_step(group, f"param_groups[{gi}]", tensor_betas(group["betas"]))
        return super()._plan(group, params, gi, held)

    def _native_step(self, group, hp, core_run, pviews, grads, lists, t, first):
        if not torch_computes(group):
            return super()._native_step(group, hp, core_run, pviews, grads, lists, t, first)
        # torch's step scalars from its own tensor ops (``_torch_scalars``), Adam's update natively
        dtype = np.dtype(pviews[0].dtype)
        _check_dtype(hp, dtype)
        on_cpu = isinstance(pviews[0], np.ndarray)
        device = torch.device("cpu") if on_cpu else torch.device("cuda", pviews[0].device.id)
        scalars = adam_scalars(group, t, torch.from_numpy(np.empty(0, dtype)).dtype, device)
        mod = core_run.mod if core_run is not None else _backend.backend(("params", pviews))
        amsgrad = lists.get("max_exp_avg_sq") if group["amsgrad"] else None
        args = (pviews, grads, lists["exp_avg"], lists["exp_avg_sq"], amsgrad, *scalars, bool(group["maximize"]))
        _native(mod, "adam_given", args, None)
        return None

    def _call(self, group, params, grads, lists, t, *, first):
        beta1, beta2 = _betas(group)
        F.adam_(
            params,
            grads,
            lists.get("exp_avg", []),
            lists.get("exp_avg_sq", []),
            lists.get("max_exp_avg_sq", []) if group["amsgrad"] else None,
            step=t,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            maximize=group["maximize"],
            float32_lr=self._float32_lr,
        )


@impl_keywords
@lowp_keywords
class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default 1e-2)."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
        **lowp,
    ):
        if "decoupled_weight_decay" in lowp:  # (it reached Adam's: AdamW(decoupled_weight_decay=False) ran L2)
            raise TypeError("AdamW.__init__() got an unexpected keyword argument 'decoupled_weight_decay'")
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True, **lowp
        )

    def __setstate__(self, state: dict) -> None:
        # torch's AdamW.__setstate__ (which its load_state_dict calls): any state loaded into an
        # AdamW stays decoupled (a torch.optim.Adam state dict says False: it ran as L2 Adam)
        super().__setstate__(state)
        keep_decoupled(self.param_groups)


@impl_keywords
@lowp_keywords
class NAdam(Float32Lr, _Fused):
    """torch.optim.NAdam (momentum schedule with ``momentum_decay``; L2 or decoupled decay), and the
    low-precision keywords (see :mod:`optkern.torch`)."""

    _core = _optim.NAdam
    _sparse_refusal = "NAdam does not support sparse gradients"  # (torch's)
    _impl_names = ("foreach", "capturable", "differentiable")  # (torch.optim.NAdam has no fused)
    _float64_product = False  # (the run's: set by _run, read by its native call)

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        momentum_decay=4e-3,
        decoupled_weight_decay=False,  # (positional in torch's signature too)
        *,
        maximize=False,
        **lowp,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                momentum_decay=momentum_decay,
                decoupled_weight_decay=decoupled_weight_decay,
                maximize=maximize,
            ),
            lowp,
        )

    def _refuse_tensor_hypers(self, group: dict, where: str) -> None:
        # (the low-precision step computes its scalars itself, in double: it cannot take torch's)
        if self._lowp_core is not None and tensor_betas(group["betas"]) is not None:
            raise ValueError(
                f"{where}['betas']: tensor (or float32 array) betas, whose step scalars torch computes in "
                "their own dtype, with the "
                "low-precision keywords, whose step computes them in double: pass Python floats"
            )
        refuse_half_lr(group, where, "which torch's NAdam coefficients are divided in")
        refuse_decoupled_decay(group, where)
        md = group["momentum_decay"]
        if isinstance(md, torch.Tensor):  # (mu a tensor: torch's float32 mu_product *= mu promotes)
            refuse_tensor(where, "momentum_decay", md, "from which torch's momentum schedule is tensor ops")

    def _plan(self, group, params, gi, held=None):
        pair = tensor_betas(group["betas"]) if group_foreach(group, self._impl) else None
        if pair is not None and any(isinstance(b, torch.Tensor) for b in pair):
            # (torch's foreach NAdam fails on them mid-step, its state made and counted: refused first;
            # a float32 array's NumPy scalars it takes)
            raise RuntimeError(
                f"param_groups[{gi}]['betas']: betas as Tensors are not supported by torch.optim.NAdam "
                "with foreach=True (its step fails on them): pass floats or foreach=False"
            )
        return super()._plan(group, params, gi, held)

    def _call(self, group, params, grads, lists, t, *, first):
        beta1, beta2 = _betas(group)
        mu_product = self._mu_product if params else 1.0
        return F.nadam_(
            params,
            grads,
            lists.get("exp_avg", []),
            lists.get("exp_avg_sq", []),
            step=t,
            mu_product=mu_product,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum_decay=group["momentum_decay"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            maximize=group["maximize"],
            float64_product=self._float64_product,
            float32_lr=self._float32_lr,
        )

    def _run(self, group, params, gi, cache=False, grads=None):
        state = self.state[params[0]]
        mp = state["mu_product"]
        self._mu_product = float(mp)
        self._mp_state = mp
        # torch multiplies the product in its state's dtype: float64 under a float64 default dtype,
        # float32 params included (the rule would round it to theirs); a float32 one beside float64
        # params (torch's default dtype) the rule cannot keep: torch's own expressions then
        self._float64_product = isinstance(mp, torch.Tensor) and mp.dtype == torch.float64
        self._torch_product = _narrower_product(mp, params[0].dtype)
        super()._run(group, params, gi, cache, grads)

    def _native_step(self, group, hp, core_run, pviews, grads, lists, t, first):
        if self._torch_product or tensor_betas(group["betas"]) is not None:
            # torch's step scalars and product from its own expressions and tensor ops (``_torch_scalars``:
            # tensor betas; or a float32 product of float64 params, whose coefficients torch computes in
            # doubles from the float32 product), the update natively; returns the new product, which
            # ``_after`` stores
            _check_dtype(hp, np.dtype(pviews[0].dtype))
            mp = self._mp_state
            if not isinstance(mp, torch.Tensor):
                mp = torch.tensor(float(mp), dtype=torch.get_default_dtype())
            scalars, prod = nadam_scalars(group, t, mp)
            mod = core_run.mod if core_run is not None else _backend.backend(("params", pviews))
            args = (pviews, grads, lists["exp_avg"], lists["exp_avg_sq"], *scalars, bool(group["maximize"]))
            _native(mod, "nadam_given", args, None)
            return prod.item()
        if self._float64_product:
            hp = replaced(self, hp, float64_product=True)
        return super()._native_step(group, hp, core_run, pviews, grads, lists, t, first)

    def _core_extra(self):
        return {"mu_product": self._mu_product}

    def _after(self, group, params, states, t, out):
        super()._after(group, params, states, t, out)
        if "mu_product" in self._joined:
            self._joined["mu_product"][...] = out
            return
        for s in states:  # torch keeps mu_product as a scalar tensor per param
            s["mu_product"].fill_(out)


def _narrower_product(mp, dtype: torch.dtype) -> bool:
    """Whether NAdam's product ``mp`` is a float32 tensor beside float64 (complex128) params: torch's
    state under its float32 default dtype, multiplied in float32 (``mu_product *= mu``) and read back
    as a double by the coefficients of the params' float64 step. The rule keeps its product in one
    precision (the params' or float64): it was handed ``mp / mu_t`` for its ``* mu_t`` to give
    torch's product back, "or one float64 ulp off", and the ulp moved the params (momentum_decay
    1000: 4 of 1023 float64 elements an ulp apart at step 7)."""
    return isinstance(mp, torch.Tensor) and mp.dtype == torch.float32 and dtype in (torch.float64, torch.complex128)


def _betas(group):
    b = group["betas"]
    # (a one-element tensor came as a number from host_group: a tensor here is not one)
    # (a string, None or a complex is named here: float() raised a ValueError or named no beta)
    if not isinstance(b, (tuple, list)) or len(b) != 2 or not all(isinstance(x, numbers.Real) for x in b):
        raise TypeError(f"betas: expected a pair of numbers, got {b!r}")
    return float(b[0]), float(b[1])
