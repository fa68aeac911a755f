"""Optimizer steps as functions, for users who own their state.

Every function updates ``params`` and the state lists in place with one native
call (one OpenMP region on the CPU, one launch per chunk table on the GPU),
using torch.optim's formulas and defaults. Arrays are NumPy (CPU) or CuPy
(CUDA), all of one dtype (float32 or float64), C-contiguous; ``grads`` match
``params`` in length and shapes, state lists in length and sizes. Per-step
scalars (bias corrections, the decayed learning rate, NAdam's momentum
schedule) are computed by the native rule from the hyper-parameters and
``step`` (``rules/optim.hpp``, ``Rule::at``). Hyper-parameters are checked
before anything is written -- in range, and representable in the arrays' dtype
(finite after rounding, ``eps`` > 0 after rounding; ``lr``, ``weight_decay`` and
``momentum`` at most the dtype's max ** (1/4): 4.3e9 for float32, 1.2e77 for
float64, so that their products with squared gradients stay finite); a bad one raises
ValueError (or TypeError) naming it.

The ``_check_*`` functions validate and normalise hyper-parameters into named
tuples and the ``_*_call`` functions pass them to the native module (its plain
or, given device buffers, its capturable function); the optimizer classes in
:mod:`optkern.optim` use them directly so that a step validates once.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np

from . import _backend
from ._backend import in_range, nonnegative, positive

__all__ = ["sgd_", "adagrad_", "adagrad_norm_", "rmsprop_", "adadelta_", "adam_", "adamw_", "nadam_"]


def _namer(where: str):
    """'lr' for functional calls, "param_groups[1]['lr']" for optimizer groups."""
    if not where:
        return lambda k: k
    return lambda k: f"{where}[{k!r}]"


def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, int, np.bool_, np.integer)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def _lists(params, grads, **states):
    """params, grads and state lists as lists; the native module that runs them."""
    params = _backend.as_list(params, "params")
    grads = _backend.as_list(grads, "grads")
    out = {k: (None if v is None else _backend.as_list(v, k)) for k, v in states.items()}
    named = [("params", params), ("grads", grads)] + [(k, v) for k, v in out.items() if v is not None]
    mod = _backend.backend(*named)
    _check_shapes(params, grads)
    return mod, params, grads, out


_shape = attrgetter("shape")


def _check_shapes(params, grads):
    """Raise ValueError naming the first grad with its param's size but another shape.

    The native calls compare sizes only, and a transposed gradient would pass them.
    Non-arrays and size mismatches are left to the native checks, which name them.
    """
    try:
        if list(map(_shape, grads)) == list(map(_shape, params)):
            return  # the common case, in one comparison
    except AttributeError:
        pass
    for i, (p, g) in enumerate(zip(params, grads)):
        shape = getattr(g, "shape", p.shape)
        if shape != p.shape and getattr(g, "size", None) == p.size:
            raise ValueError(f"grads[{i}]: expected shape {tuple(p.shape)}, got {tuple(shape)}")


def _step_count(step) -> int:
    return _backend.integer("step", step, lo=1)


# ---- hyper-parameters against the dtype they run in -------------------------------------
# The rules round these hyper-parameters (and scalars derived from them in double) to the
# arrays' dtype: each must stay finite there, and eps must stay > 0 (a zero eps divides 0 by
# 0 where a gradient is 0). lr_decay and momentum_decay are used in double only. b0 is
# squared into AdaGrad-Norm's float64 b^2, which must be finite and > 0.
_ROUNDED = frozenset(
    {
        "lr",
        "momentum",
        "dampening",
        "weight_decay",
        "eps",
        "alpha",
        "rho",
        "beta1",
        "beta2",
        "initial_accumulator_value",
    }
)
_POSITIVE = frozenset({"eps"})
_SQUARED = frozenset({"b0"})
# Multiplicative hyper-parameters meet each other and squared gradients in one product
# (Adam's (1 - beta2) (g + wd p)^2, SGD's lr (wd p + momentum b)): below float32's max ** (1/4)
# (4.3e9) such products of moderate data stay finite wherever a float64 evaluation is; float64's
# bound (1.2e77) does the same for the order in which the rules multiply. Narrower dtypes compute
# in float32.
_SCALES = frozenset({"lr", "weight_decay", "momentum"})
# NAdam keeps its momentum product in the arrays' dtype (torch keeps a float32 tensor): a beta1
# that rounds to 1 there makes every bias correction 1 - mu_product zero and the step infinite.
_BELOW_ONE_WITH = {"beta1": "momentum_decay"}
_F32_SCALE_MAX = float(np.finfo(np.float32).max) ** 0.25
_F64_SCALE_MAX = float(np.finfo(np.float64).max) ** 0.25


def _check_dtype(hp: Any, dtype, where: str = "", names=None) -> None:
    """Raise ValueError naming the first hyper-parameter of ``hp`` that ``dtype`` cannot run.

    ``names``: how errors name fields (default: the field name, in ``where``'s group).
    """
    dtype = np.dtype(dtype)
    n = _namer(where)
    for field, v in zip(hp._fields, hp):
        if isinstance(v, bool) or not isinstance(v, float):
            continue
        name = (names or {}).get(field) or n(field)
        if field in _ROUNDED:
            with np.errstate(over="ignore", under="ignore"):
                r = float(dtype.type(v))
            if not np.isfinite(r):
                raise ValueError(f"{name}: {v!r} is not finite in {dtype.name} (the arrays' dtype)")
            bound = _F32_SCALE_MAX if dtype.itemsize < 8 else _F64_SCALE_MAX
            if field in _SCALES and abs(v) > bound:
                kind = "float32" if dtype.itemsize < 8 else "float64"
                raise ValueError(
                    f"{name}: {v!r} is above {bound:.4g} ({kind}'s max ** (1/4)), the largest value "
                    f"a {dtype.name} step keeps finite"
                )
            if _BELOW_ONE_WITH.get(field) in hp._fields and not r < 1.0:
                raise ValueError(
                    f"{name}: {v!r} rounds to 1 in {dtype.name} (the arrays' dtype), where NAdam's "
                    f"momentum product would stay 1; the largest usable value is "
                    f"{float(np.nextafter(dtype.type(1), dtype.type(0)))!r}"
                )
            if field in _POSITIVE and not r > 0:
                raise ValueError(
                    f"{name}: {v!r} rounds to 0 in {dtype.name} (the arrays' dtype); "
                    f"the smallest usable value is {float(np.nextafter(dtype.type(0), dtype.type(1)))!r}"
                )
        elif field in _SQUARED and not (np.isfinite(v * v) and v * v > 0):
            raise ValueError(f"{name}: {v!r} squared is not a finite positive float64 (b^2 starts at b0^2)")


def _check_params_dtype(hp: tuple, params) -> None:
    dtype = getattr(params[0], "dtype", None) if params else None
    # A dtype the CPU module cannot run is the params' error (the native checks name them), not lr's.
    if dtype is not None and (dtype in (np.float32, np.float64) or not isinstance(params[0], np.ndarray)):
        _check_dtype(hp, dtype)


def _native(mod, rule: str, args: tuple, dev):
    """``mod.<rule>_(*args)``, or with ``dev = (counters, lr_buffer)`` its capturable variant."""
    if dev is None:
        return getattr(mod, rule + "_")(*args)
    return getattr(mod, rule + "_capturable")(*args, *dev)


# ---- SGD ---------------------------------------------------------------------------


class SGDHyper(NamedTuple):
    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool
    maximize: bool
    textbook: bool


def _check_sgd(where, lr, momentum, dampening, weight_decay, nesterov, maximize, momentum_form="pytorch"):
    n = _namer(where)
    lr = nonnegative(n("lr"), lr)
    momentum = nonnegative(n("momentum"), momentum)
    dampening = in_range(n("dampening"), dampening, 0.0, 1.0)
    weight_decay = nonnegative(n("weight_decay"), weight_decay)
    nesterov = _flag(n("nesterov"), nesterov)
    maximize = _flag(n("maximize"), maximize)
    if momentum_form not in ("pytorch", "textbook"):
        raise ValueError(f"{n('momentum_form')}: expected 'pytorch' or 'textbook', got {momentum_form!r}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(
            f"{n('nesterov')}: Nesterov momentum requires momentum > 0 and dampening = 0 "
            f"(got momentum={momentum}, dampening={dampening})"
        )
    return SGDHyper(lr, momentum, dampening, weight_decay, nesterov, maximize, momentum_form == "textbook")


def _sgd_call(mod, params, grads, bufs, hp: SGDHyper, step, dev=None):
    """``step``: the momentum buffers' step count (1: they start from this gradient)."""
    _native(mod, "sgd", (params, grads, bufs if hp.momentum != 0 else None, *hp, step), dev)


def sgd_(
    params,
    grads,
    momentum_buffers=None,
    *,
    lr=1e-3,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov=False,
    maximize=False,
    first=False,
    momentum_form="pytorch",
):
    """SGD with momentum, in place (torch.optim.SGD's update).

    ``g' = ±g + weight_decay p``; with momentum ``b <- momentum b + (1 - dampening) g'``
    (``b <- g'`` when ``first``), ``d = g' + momentum b`` (Nesterov) or ``b``; ``p <- p - lr d``.
    ``momentum_form="textbook"`` uses ``v <- momentum v - lr (1 - dampening) g'`` (``v <- -lr g'``
    when ``first``), ``p <- p + v`` (Nesterov: ``p <- p + momentum v - lr g'``), which differs
    from PyTorch's once ``lr`` changes between steps.

    Args:
      params, grads: lists of arrays.
      momentum_buffers: state list, required when ``momentum != 0`` (its contents are ignored
        when ``first``).
      first: True on the first step of the buffers.
    """
    mod, params, grads, st = _lists(params, grads, momentum_buffers=momentum_buffers)
    hp = _check_sgd("", lr, momentum, dampening, weight_decay, nesterov, maximize, momentum_form)
    _check_params_dtype(hp, params)
    first = _flag("first", first)
    if hp.momentum != 0 and st["momentum_buffers"] is None:
        raise ValueError("momentum_buffers: required when momentum != 0")
    _sgd_call(mod, params, grads, st["momentum_buffers"], hp, 1 if first else 2)


# ---- Adagrad ------------------------------------------------------------------------


class AdagradHyper(NamedTuple):
    lr: float
    lr_decay: float
    weight_decay: float
    eps: float
    maximize: bool
    initial_accumulator_value: float = 0.0


def _check_adagrad(where, lr, lr_decay, weight_decay, eps, maximize, initial_accumulator_value=0.0):
    n = _namer(where)
    return AdagradHyper(
        nonnegative(n("lr"), lr),
        nonnegative(n("lr_decay"), lr_decay),
        nonnegative(n("weight_decay"), weight_decay),
        positive(n("eps"), eps),
        _flag(n("maximize"), maximize),
        nonnegative(n("initial_accumulator_value"), initial_accumulator_value),
    )


def _adagrad_call(mod, params, grads, sums, hp: AdagradHyper, step, dev=None):
    _native(mod, "adagrad", (params, grads, sums, hp.lr, hp.lr_decay, hp.weight_decay, hp.eps, hp.maximize, step), dev)


def adagrad_(params, grads, sums, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False):
    """Adagrad, in place: ``s <- s + g'^2``, ``p <- p - clr g' / (sqrt(s) + eps)``.

    ``g' = ±g + weight_decay p`` and ``clr = lr / (1 + (step - 1) lr_decay)``; ``step`` counts
    from 1 (this step included).
    """
    mod, params, grads, st = _lists(params, grads, sums=sums)
    hp = _check_adagrad("", lr, lr_decay, weight_decay, eps, maximize)
    _check_params_dtype(hp, params)
    _adagrad_call(mod, params, grads, st["sums"], hp, _step_count(step))


# ---- AdaGrad-Norm ------------------------------------------------------------------


class AdagradNormHyper(NamedTuple):
    lr: float
    weight_decay: float
    maximize: bool
    b0: float = 1e-2


def _check_adagrad_norm(where, lr, weight_decay, maximize, b0=1e-2):
    n = _namer(where)
    return AdagradNormHyper(
        nonnegative(n("lr"), lr),
        nonnegative(n("weight_decay"), weight_decay),
        _flag(n("maximize"), maximize),
        positive(n("b0"), b0),
    )


def _adagrad_norm_call(mod, params, grads, b_sq, hp: AdagradNormHyper):
    mod.adagrad_norm_(params, grads, b_sq, hp.lr, hp.weight_decay, hp.maximize)


def adagrad_norm_(params, grads, b_sq, *, lr=1e-2, weight_decay=0.0, maximize=False):
    """AdaGrad-Norm (Ward, Wu & Bottou 2019), in place: one step size for all arrays.

    ``b^2 <- b^2 + ||g'||^2`` summed over every element of every array (float64,
    bitwise independent of the thread count), then ``p <- p - lr / b g'`` with
    ``g' = ±g + weight_decay p``.

    Args:
      b_sq: 1-element float64 array on the params' backend holding ``b^2`` (start it at
        ``b0^2 > 0``); updated in place.
    """
    mod, params, grads, _ = _lists(params, grads)
    hp = _check_adagrad_norm("", lr, weight_decay, maximize)
    _check_params_dtype(hp, params)
    _adagrad_norm_call(mod, params, grads, b_sq, hp)


# ---- RMSprop -----------------------------------------------------------------------


class RMSpropHyper(NamedTuple):
    lr: float
    alpha: float
    eps: float
    weight_decay: float
    momentum: float
    nesterov: bool
    maximize: bool
    centered: bool


def _check_rmsprop(where, lr, alpha, eps, weight_decay, momentum, maximize, nesterov=False, centered=False):
    n = _namer(where)
    lr = nonnegative(n("lr"), lr)
    alpha = in_range(n("alpha"), alpha, 0.0, 1.0)
    eps = positive(n("eps"), eps)
    weight_decay = nonnegative(n("weight_decay"), weight_decay)
    momentum = nonnegative(n("momentum"), momentum)
    maximize = _flag(n("maximize"), maximize)
    nesterov = _flag(n("nesterov"), nesterov)
    centered = _flag(n("centered"), centered)
    if nesterov and momentum <= 0:
        raise ValueError(f"{n('nesterov')}: Nesterov momentum requires momentum > 0, got momentum={momentum}")
    return RMSpropHyper(lr, alpha, eps, weight_decay, momentum, nesterov, maximize, centered)


def _rmsprop_call(mod, params, grads, square_avgs, grad_avgs, bufs, hp: RMSpropHyper, dev=None):
    _native(
        mod,
        "rmsprop",
        (
            params,
            grads,
            square_avgs,
            grad_avgs if hp.centered else None,
            bufs if hp.momentum > 0 else None,
            hp.lr,
            hp.alpha,
            hp.eps,
            hp.weight_decay,
            hp.momentum,
            hp.nesterov,
            hp.maximize,
        ),
        dev,
    )


def rmsprop_(
    params,
    grads,
    square_avgs,
    grad_avgs=None,
    momentum_buffers=None,
    *,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    nesterov=False,
    maximize=False,
):
    """RMSprop, in place (torch.optim.RMSprop's update, plus Nesterov momentum).

    ``v <- alpha v + (1 - alpha) g'^2``; centered (``grad_avgs`` given):
    ``a <- lerp(a, g', 1 - alpha)``, ``avg = sqrt(max(v - a^2, 0)) + eps`` (rounding can take
    ``v - a^2`` below 0, where torch gives NaN), else ``sqrt(v) + eps``.
    Without momentum ``p <- p - lr g'/avg``; with momentum ``b <- momentum b + g'/avg``,
    ``p <- p - lr b``, or with ``nesterov`` ``p <- p - lr (g'/avg + momentum b)``
    (Goodfellow et al., Alg. 8.6, in the look-ahead form SGD's Nesterov also uses).

    Args:
      grad_avgs: state list for the centered variant, or None.
      momentum_buffers: state list, required when ``momentum > 0``.
    """
    mod, params, grads, st = _lists(
        params, grads, square_avgs=square_avgs, grad_avgs=grad_avgs, momentum_buffers=momentum_buffers
    )
    hp = _check_rmsprop("", lr, alpha, eps, weight_decay, momentum, maximize, nesterov, grad_avgs is not None)
    _check_params_dtype(hp, params)
    if hp.momentum > 0 and st["momentum_buffers"] is None:
        raise ValueError("momentum_buffers: required when momentum > 0")
    _rmsprop_call(mod, params, grads, st["square_avgs"], st["grad_avgs"], st["momentum_buffers"], hp)


# ---- Adadelta -----------------------------------------------------------------------


class AdadeltaHyper(NamedTuple):
    lr: float
    rho: float
    eps: float
    weight_decay: float
    maximize: bool


def _check_adadelta(where, lr, rho, eps, weight_decay, maximize):
    n = _namer(where)
    return AdadeltaHyper(
        nonnegative(n("lr"), lr),
        in_range(n("rho"), rho, 0.0, 1.0),
        positive(n("eps"), eps),
        nonnegative(n("weight_decay"), weight_decay),
        _flag(n("maximize"), maximize),
    )


def _adadelta_call(mod, params, grads, square_avgs, acc_deltas, hp: AdadeltaHyper, dev=None):
    _native(mod, "adadelta", (params, grads, square_avgs, acc_deltas, *hp), dev)


def adadelta_(params, grads, square_avgs, acc_deltas, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    """Adadelta, in place: ``v <- rho v + (1 - rho) g'^2``,
    ``d = sqrt(u + eps) / sqrt(v + eps) g'``, ``u <- rho u + (1 - rho) d^2``, ``p <- p - lr d``."""
    mod, params, grads, st = _lists(params, grads, square_avgs=square_avgs, acc_deltas=acc_deltas)
    hp = _check_adadelta("", lr, rho, eps, weight_decay, maximize)
    _check_params_dtype(hp, params)
    _adadelta_call(mod, params, grads, st["square_avgs"], st["acc_deltas"], hp)


# ---- Adam / AdamW -------------------------------------------------------------------

_BETA_KEYWORDS = ("beta1", "beta2")  # the functional API's names for betas[0], betas[1]


class AdamHyper(NamedTuple):
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decoupled_weight_decay: bool
    maximize: bool
    amsgrad: bool


def _check_adam(where, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, beta_names=None):
    """``beta_names``: how errors name the betas (default ``betas[0]``, ``betas[1]``)."""
    n = _namer(where)
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"{n('betas')}: expected a pair (beta1, beta2), got {betas!r}") from None
    b1, b2 = beta_names or (n("betas") + "[0]", n("betas") + "[1]")
    return AdamHyper(
        nonnegative(n("lr"), lr),
        in_range(b1, beta1, 0.0, 1.0, hi_open=True),
        in_range(b2, beta2, 0.0, 1.0, hi_open=True),
        positive(n("eps"), eps),
        nonnegative(n("weight_decay"), weight_decay),
        _flag(n("decoupled_weight_decay"), decoupled_weight_decay),
        _flag(n("maximize"), maximize),
        _flag(n("amsgrad"), amsgrad),
    )


def _adam_call(mod, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, hp: AdamHyper, step, dev=None):
    _native(
        mod,
        "adam",
        (
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            max_exp_avg_sqs if hp.amsgrad else None,
            hp.lr,
            hp.beta1,
            hp.beta2,
            hp.eps,
            hp.weight_decay,
            hp.decoupled_weight_decay,
            hp.maximize,
            step,
        ),
        dev,
    )


def adam_(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    max_exp_avg_sqs=None,
    *,
    step,
    lr=1e-3,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    decoupled_weight_decay=False,
    maximize=False,
):
    """Adam / AMSGrad, in place (torch.optim.Adam's update).

    ``m <- lerp(m, g', 1 - beta1)``, ``v <- beta2 v + (1 - beta2) g'^2``,
    ``p <- p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`` with ``bc_i = 1 - beta_i^step``
    (``step`` counts from 1, this step included). AMSGrad when ``max_exp_avg_sqs`` is given
    (``vmax <- max(vmax, v)`` replaces ``v``). Weight decay is L2 (``g' = ±g + wd p``), or
    decoupled (``p <- p (1 - lr wd)`` first, AdamW) with ``decoupled_weight_decay``.
    """
    mod, params, grads, st = _lists(
        params, grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs, max_exp_avg_sqs=max_exp_avg_sqs
    )
    hp = _check_adam(
        "",
        lr,
        (beta1, beta2),
        eps,
        weight_decay,
        max_exp_avg_sqs is not None,
        maximize,
        decoupled_weight_decay,
        _BETA_KEYWORDS,
    )
    _check_params_dtype(hp, params)
    _adam_call(mod, params, grads, st["exp_avgs"], st["exp_avg_sqs"], st["max_exp_avg_sqs"], hp, _step_count(step))


def adamw_(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    max_exp_avg_sqs=None,
    *,
    step,
    lr=1e-3,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=1e-2,
    maximize=False,
):
    """AdamW, in place: :func:`adam_` with decoupled weight decay (default 1e-2)."""
    adam_(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        step=step,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        decoupled_weight_decay=True,
        maximize=maximize,
    )


# ---- NAdam -------------------------------------------------------------------------


class NAdamHyper(NamedTuple):
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    momentum_decay: float
    decoupled_weight_decay: bool
    maximize: bool


def _check_nadam(
    where, lr, betas, eps, weight_decay, momentum_decay, maximize, decoupled_weight_decay, beta_names=None
):
    a = _check_adam(where, lr, betas, eps, weight_decay, False, maximize, decoupled_weight_decay, beta_names)
    return NAdamHyper(
        a.lr,
        a.beta1,
        a.beta2,
        a.eps,
        a.weight_decay,
        nonnegative(_namer(where)("momentum_decay"), momentum_decay),
        a.decoupled_weight_decay,
        a.maximize,
    )


def _nadam_call(mod, params, grads, exp_avgs, exp_avg_sqs, hp: NAdamHyper, step, mu_product, dev=None):
    """One NAdam step; returns the new mu_product (None with device counters)."""
    return _native(mod, "nadam", (params, grads, exp_avgs, exp_avg_sqs, *hp, step, mu_product), dev)


def nadam_(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    *,
    step,
    mu_product=1.0,
    lr=2e-3,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    momentum_decay=4e-3,
    decoupled_weight_decay=False,
    maximize=False,
):
    """NAdam (Dozat 2016; torch.optim.NAdam's update), in place. Returns the new ``mu_product``.

    ``mu_t = beta1 (1 - 0.96^(t psi) / 2)`` with ``psi = momentum_decay``; ``mu_product`` is
    the product of ``mu_1 .. mu_{t-1}`` (1.0 before the first step) and the returned value
    includes ``mu_t``: pass it back on the next step. Moments as in Adam; then
    ``p <- p - lr (1 - mu_t) / (1 - prod_t) g' / d - lr mu_{t+1} / (1 - prod_t mu_{t+1}) m / d``,
    ``d = sqrt(v / bc2) + eps``.
    """
    mod, params, grads, st = _lists(params, grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs)
    hp = _check_nadam(
        "", lr, (beta1, beta2), eps, weight_decay, momentum_decay, maximize, decoupled_weight_decay, _BETA_KEYWORDS
    )
    _check_params_dtype(hp, params)
    mu_product = _backend.in_range("mu_product", mu_product, 0.0, 1.0, lo_open=True)
    return _nadam_call(mod, params, grads, st["exp_avgs"], st["exp_avg_sqs"], hp, _step_count(step), mu_product)
