"""Adagrad (torch.optim.Adagrad) and AdaGrad-Norm (Ward, Wu & Bottou 2019): the functional
forms ``adagrad_`` and ``adagrad_norm_`` and the classes."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import _backend
from . import _lowp_norm, _state_checks
from ._hyper import (  # (in_range ...: a float16 NumPy scalar refused)
    _check_params_dtype,
    _check_rate_bound,
    _flag,
    _lists,
    _namer,
    _native,
    _step_count,
    nonnegative,
    positive,
)
from ._lowp import LowPrecisionMixin, lowp_keywords
from .optimizer import Optimizer
from .sgd import SGDHyper, _sgd_call


class AdagradHyper(NamedTuple):
    lr: float
    lr_decay: float
    weight_decay: float
    eps: float
    maximize: bool
    initial_accumulator_value: float = 0.0
    float32_lr: bool = False  # (as AdamHyper's)


def _check_adagrad(
    where: str, lr, lr_decay, weight_decay, eps, maximize, initial_accumulator_value=0.0
) -> AdagradHyper:
    n = _namer(where)
    return AdagradHyper(
        nonnegative(n("lr"), lr),
        nonnegative(n("lr_decay"), lr_decay),
        nonnegative(n("weight_decay"), weight_decay),
        positive(n("eps"), eps),
        _flag(n("maximize"), maximize),
        nonnegative(n("initial_accumulator_value"), initial_accumulator_value),
    )


def _adagrad_call(mod, params, grads, sums, hp: AdagradHyper, step, dev=None) -> None:
    scalars = (hp.lr, hp.lr_decay, hp.weight_decay, hp.eps, hp.maximize, hp.float32_lr)
    _native(mod, "adagrad", (params, grads, sums, *scalars, step), dev)


def adagrad_(
    params, grads, sums, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False, float32_lr=False
):
    """Adagrad, in place: ``s <- s + g'^2``, ``p <- p - clr g' / (sqrt(s) + eps)``.

    ``g' = ±g + weight_decay p`` and ``clr = lr / (1 + (step - 1) lr_decay)``; ``step`` counts
    from 1 (this step included). ``float32_lr``: ``clr`` computed in a float32 op (both operands
    rounded to float32 first), as torch.optim computes it from a float32 tensor ``lr``.
    """
    mod, params, grads, st = _lists(params, grads, sums=sums)
    hp = _check_adagrad("", lr, lr_decay, weight_decay, eps, maximize)
    _check_params_dtype(hp, params)
    hp = hp._replace(float32_lr=_flag("float32_lr", float32_lr))
    _adagrad_call(mod, params, grads, st["sums"], hp, _step_count(step))


@lowp_keywords
class Adagrad(LowPrecisionMixin, Optimizer):
    """Adagrad, torch.optim.Adagrad's semantics and defaults.

    ``s <- s + g'^2``, ``p <- p - clr g' / (sqrt(s) + eps)``, ``clr = lr / (1 + (t - 1) lr_decay)``,
    ``g' = ±g + weight_decay p``; ``s`` starts at ``initial_accumulator_value``.
    State: ``step``, ``sum``. ``capturable=True`` (CuPy arrays): a step that can be captured in
    a CUDA graph, ``clr`` computed on the device (see :class:`~optkern.optim.Optimizer`).
    Low precision: the keywords of :class:`~optkern.optim.Adam` (:mod:`optkern.optim._lowp`).
    """

    _state_names = ("sum",)
    _capturable = True

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        *,
        maximize=False,
        capturable=False,
        **lowp,
    ):
        self._lowp_init(capturable, **lowp)
        super().__init__(
            params,
            dict(
                lr=lr,
                lr_decay=lr_decay,
                weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value,
                eps=eps,
                maximize=maximize,
                capturable=capturable,
            ),
        )

    def _check(self, g: dict, where: str) -> AdagradHyper:
        return _check_adagrad(
            where, g["lr"], g["lr_decay"], g["weight_decay"], g["eps"], g["maximize"], g["initial_accumulator_value"]
        )

    def _initial_value(self, name, hp):
        return hp.initial_accumulator_value

    def _update(self, run, grads, hp, t, dev=None):
        if self._lowp is not None:
            x = [hp.lr, hp.lr_decay, hp.weight_decay, hp.eps]
            return self._lowp_update(run, grads, "adagrad", x, [hp.maximize, hp.float32_lr], ("sum",))
        _adagrad_call(run.mod, run.params, grads, run.state["sum"], hp, t, dev)


# ---- AdaGrad-Norm ------------------------------------------------------------------


class AdagradNormHyper(NamedTuple):
    lr: float
    weight_decay: float
    maximize: bool
    b0: float = 1e-2


def _check_adagrad_norm(where: str, lr, weight_decay, maximize, b0=1e-2) -> AdagradNormHyper:
    n = _namer(where)
    return AdagradNormHyper(
        nonnegative(n("lr"), lr),
        nonnegative(n("weight_decay"), weight_decay),
        _flag(n("maximize"), maximize),
        positive(n("b0"), b0),
    )


def _adagrad_norm_call(mod, params, grads, b_sq, hp: AdagradNormHyper) -> None:
    mod.adagrad_norm_(params, grads, b_sq, hp.lr, hp.weight_decay, hp.maximize)


def adagrad_norm_(params, grads, b_sq, *, lr=1e-2, weight_decay=0.0, maximize=False):
    """AdaGrad-Norm (Ward, Wu & Bottou 2019), in place: one step size for all arrays.

    ``b^2 <- b^2 + ||g'||^2`` summed over every element of every array (float64,
    bitwise independent of the thread count), then ``p <- p - lr / b g'`` with
    ``g' = ±g + weight_decay p``.

    Args:
      b_sq: 1-element float64 array on the params' backend holding ``b^2`` (start it at
        ``b0^2 > 0``); updated in place.

    Limit (float64 params): ``||g'||^2`` is the float64 sum of the float64 squares, and ``b^2``
    a float64. Squares below float64's range (``|g| < ~2.2e-162``) add 0, an error of at most
    ``n 2^-1075`` for n elements: against a normal ``b^2`` (>= 2^-1022, any ``b0 >= 1.5e-154``) at
    most ``n 2^-53`` relative, the sum's own rounding bound. Only a ``b^2`` that is itself
    subnormal (from ``b_sq`` 0 or subnormal) loses digits: all of them where every square is
    below 2^-1075 (1e6 elements of 1e-162 sum to 0, not 1e-318), and then that step is skipped, as
    for a zero gradient. A scaled (nrm2-style) sum would keep 1e-318, to the subnormal spacing,
    but not the case of |g'| ~ 1e-170: ``||g'||^2`` is then below 2^-1074 for any practical n,
    and ``b_sq`` (a float64) cannot hold it. Start at ``b0^2 >= 2^-1022`` (the paper's b0 > 0).
    """
    mod, params, grads, _ = _lists(params, grads)
    hp = _check_adagrad_norm("", lr, weight_decay, maximize)
    _check_params_dtype(hp, params)
    if _check_b_sq(b_sq, hp.lr, params) == 0.0:
        _check_first_rate(mod, params, grads, hp)
    _adagrad_norm_call(mod, params, grads, b_sq, hp)


def _check_first_rate(mod, params, grads, hp: AdagradNormHyper) -> None:
    """``b^2 = 0`` (a functional call started at b0 = 0): the step's rate is ``lr / ||g'||``, and
    float32 gradients all of them subnormal (||g|| = 1.4e-45 at the least) made it overflow float32:
    every param written -inf / +inf (the paper's b0 > 0 never lets b be that small). Refused by the
    rate's bound, naming ``b_sq``, before anything is written. ``||g'||^2`` is the native sum the step
    adds (grad_sq_norm's, the same float64 sum of squares) where there is no weight decay; with one,
    the decayed gradient taken in float64 (within an ulp of the step's). float64 params: the rate fits
    for every float64 gradient but at lr past 1e-16."""
    dtype = getattr(params[0], "dtype", None) if params else None
    if dtype != np.float32 or any(getattr(g, "dtype", None) != dtype for g in grads):
        return  # (the native call names a wrong grad)
    xp = _backend.array_module(params[0])
    try:
        if hp.weight_decay == 0.0:
            buf = xp.zeros(1, np.float64)
            mod.grad_sq_norm(grads, buf)
            sq = float(_backend.to_numpy(buf)[0])
        else:
            sq = 0.0
            for p, g in zip(params, grads):
                d = (g.astype(np.float64) + hp.weight_decay * p.astype(np.float64)).astype(np.float32)
                sq += float(xp.sum(d.astype(np.float64) ** 2))
    except (TypeError, ValueError):
        return  # (the native call names what is wrong with the arrays)
    try:
        _check_rate_bound(hp.lr, sq, dtype, "b_sq", squared=True)  # (the bound; its wording is a b_sq's)
    except ValueError:
        top = float(np.finfo(np.float32).max)
        raise ValueError(
            f"b_sq: 0 plus this step's ||g'||^2 = {sq:.4g} makes the step size lr / sqrt(b^2) = "
            f"{hp.lr / math.sqrt(sq):.4g} overflow float32 (max {top:.4g}): every param would be written "
            f"inf; start at b0^2 > 0 (b0 > 0, as the paper's), at least {(hp.lr / top) ** 2:.4g} with lr={hp.lr!r}"
        ) from None


def _read_b_sq(buf) -> float | None:
    """The b^2 a 1-element buffer holds, read on the host; None while CuPy's stream captures a graph
    (a host read is not allowed there: the user's state, unchecked)."""
    if _backend.is_cupy(buf):
        from ._capturable import is_capturing

        if is_capturing(buf):
            return None
    return float(_backend.to_numpy(buf).reshape(-1)[0])


def _check_b_sq(b_sq, lr: float, params) -> float | None:
    """The ``b^2`` a functional call steps from: finite and >= 0, and not so small that the rate
    ``lr / b`` overflows the params' dtype (a zero gradient's step then turned every param into NaN;
    the rule the optimizer's ``b0`` obeys). A CuPy ``b_sq`` is read on the host: the kernel takes
    b^2 from the device without a synchronization, and stepped with a bad one silently. Not while
    CuPy's stream captures a graph (a host read is not allowed there): the user's state, unchecked."""
    if not (isinstance(b_sq, np.ndarray) or _backend.is_cupy(b_sq)) or b_sq.size != 1 or b_sq.dtype != np.float64:
        return None  # (the native call names anything else)
    v = _read_b_sq(b_sq)
    if v is None:
        return None
    if not (math.isfinite(v) and v >= 0.0):
        raise ValueError(f"b_sq: must hold a finite b^2 >= 0 (start at b0^2 > 0), got {v!r}")
    dtype = getattr(params[0], "dtype", None) if params else None
    if dtype in (np.float32, np.float64):  # (any other the native call names)
        _check_rate_bound(lr, v, dtype, "b_sq", squared=True)
    return v


@lowp_keywords
class AdagradNorm(LowPrecisionMixin, Optimizer):
    """AdaGrad-Norm (Ward, Wu & Bottou 2019): one adaptive step size per parameter group.

    ``b^2 <- b^2 + ||g'||^2`` over all parameters of the group (deterministic float64 sum),
    then ``p <- p - lr / b g'`` with ``g' = ±g + weight_decay p`` and ``b`` starting at ``b0 > 0``.
    State: ``step`` and ``b_sq`` (the group's ``b^2``, repeated in each parameter's entry). ``b^2``
    is a float64: its precision at subnormal scale (``b0 < 1.5e-154`` and tiny gradients) is
    ``adagrad_norm_``'s (see there).

    ``master_weights=True`` (``stochastic_rounding``, ``seed``): float16 / bfloat16 params with a
    float32 master (``master_param``), stepped as the float32 optimizer steps it, bit for bit: the
    step needs the whole gradient's norm before it moves any param, so the half grads are widened
    into float32 copies first (not one pass). There is no per-element state to store compactly.
    """

    _scalar_names = ("b_sq",)
    _one_run_per_group = True

    def __init__(self, params, lr=1e-2, b0=1e-2, weight_decay=0.0, *, maximize=False, capturable=False, **lowp):
        self._lowp_init(False, **lowp)
        # (capturable: held as every signature default is; True is refused by the group check)
        defaults = dict(lr=lr, b0=b0, weight_decay=weight_decay, maximize=maximize, capturable=capturable)
        super().__init__(params, defaults)

    def _lowp_init(self, capturable, **options) -> None:
        super()._lowp_init(capturable, **options)
        if self._lowp is not None and self._lowp.state_dtype != "float32":
            raise ValueError("state_dtype: AdaGrad-Norm keeps no per-element state to store compactly (only b^2)")

    def _check(self, g: dict, where: str) -> AdagradNormHyper:
        return _check_adagrad_norm(where, g["lr"], g["weight_decay"], g["maximize"], g["b0"])

    def _new_extra(self, run, hp):
        return {"b_sq": _backend.scalar_buffer(run.params[0], hp.b0 * hp.b0)}

    #: Sharded (ZeRO) training sets this to ``f(params, grads) -> float``: the group's ``||g'||^2``
    #: summed over every rank's slice (``optkern.distributed.ShardedOptimizer``). The step then
    #: adds that to ``b^2`` and takes the kernel's SGD step with ``lr / b``.
    global_sq_norm = None

    def _update(self, run, grads, hp, t, dev=None):
        params = run.params
        if self._lowp is not None:  # the float32 step on the masters and widened grads
            self._lowp_check([(run, grads)])  # (several native calls: every grad checked before the first)
            if _lowp_norm.skipped(self):
                return
            params, grads = _lowp_norm.float32_step_arrays(self, run, grads)
        if self.global_sq_norm is None:
            _adagrad_norm_call(run.mod, params, grads, run.extra["b_sq"], hp)
        else:
            lr, wd, maximize = hp.lr, hp.weight_decay, hp.maximize
            b_sq = run.extra["b_sq"]
            b_sq += self.global_sq_norm(params, grads)
            b2 = float(b_sq[0])
            # (the rule's rate, rules::adagrad_norm_at, stepped by the same kernel that the native
            # adagrad_norm_ applies. A derived rate, not a user's lr: the sgd_ checks' bound on a
            # user's lr (float32's max ** (1/4), 4.3e9: the Python layer's and, since hunt 50a, the
            # native step's too) refused a rate above it -- a small b0 and a zero first gradient --
            # after b^2 had been summed over the ranks and updated, where the unsharded optimizer
            # steps. So it goes in as the step's lr buffer, which replaces the host lr as it is;
            # the rate itself is bounded by b0's check, _check_rate_bound.)
            rate = lr / math.sqrt(b2) if b2 > 0 else 0.0
            hp_rate = SGDHyper(0.0, 0.0, 0.0, wd, False, maximize, False)
            _sgd_call(run.mod, params, grads, None, hp_rate, 2, (None, _backend.scalar_buffer(params[0], rate)))
        if self._lowp is not None:
            _lowp_norm.round_into_params(self, run)

    def _extra_to_state(self, run):
        return {"b_sq": float(run.extra["b_sq"][0])}

    def _extra_from_state(self, entry, where):
        # (as NAdam reads mu_product: a one-element array of any shape, as the state checks accept;
        # float() of one of ndim > 0 is a TypeError since NumPy 2)
        v = entry.get("b_sq")
        if v is None:
            raise ValueError(f"{where}: missing 'b_sq'")
        lo, hi, lo_open = _state_checks.SCALARS["b_sq"]
        return {"b_sq": _state_checks.check_scalar(v, f"{where}['b_sq']", lo, hi, lo_open)}

    def _parse_entry(self, saved_state, sid, p, hp):
        # (a loaded b^2 is bounded as a fresh b0 is, by the group's lr in the params' step dtype:
        # below b0^2 a zero gradient's step inf * 0 turned every param into NaN)
        step, arrays, extra = super()._parse_entry(saved_state, sid, p, hp)
        if "b_sq" in extra:
            where = f"state_dict['state'][{sid!r}]['b_sq']"
            _check_rate_bound(hp.lr, extra["b_sq"], self._math_dtype(p.dtype), where, squared=True)
        return step, arrays, extra

    def _prepared(self, grads):
        # b^2 was bounded against the lr of its time (b0 at the group check, a loaded b^2 at the
        # load); an lr raised since (param_groups[i]["lr"] = big, a schedule) made the rate overflow
        # and the step write inf / NaN. Rechecked here, before any write, with the current b^2 (it
        # only grows: a bound that held for an lr holds for any lower lr later, so a buffer is read
        # again, a host read on CuPy, only when its group's lr rose above the last lr checked)
        prepared = super()._prepared(grads)
        _, checked, runs, _, _ = prepared
        done = self.__dict__.get("_rate_checked") or {}
        now = {}
        for gi, group_runs in enumerate(runs):
            lr = checked[gi][0].lr
            for run in group_runs:
                buf = run.extra.get("b_sq")
                if buf is None:  # (a fresh run: b^2 = b0^2, bounded by the group check)
                    continue
                seen = done.get(id(buf))
                if seen is None or seen[0] is not buf or lr > seen[1]:
                    self._check_loaded_rate(buf, lr, run.params[0], gi)
                    seen = (buf, lr)
                now[id(buf)] = seen
        self._rate_checked = now
        return prepared

    def _check_loaded_rate(self, buf, lr: float, p, gi: int) -> None:
        v = _read_b_sq(buf)
        if v is None:
            return
        where = f"param_groups[{gi}]"
        _check_rate_bound(lr, v, self._math_dtype(p.dtype), "the state's b^2", True, f"{where}['lr']")

    def _make_runs(self, index, params, records, mod):
        runs = super()._make_runs(index, params, records, mod)
        for run in runs:  # the scalar becomes the 1-element buffer the kernel updates (params' device)
            if "b_sq" in run.extra:
                run.extra["b_sq"] = _backend.scalar_buffer(run.params[0], run.extra["b_sq"])
        return runs
