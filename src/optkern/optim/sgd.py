"""SGD with momentum, dampening, Nesterov, weight decay (torch.optim.SGD): the functional form
``sgd_`` and the class."""

from __future__ import annotations

from typing import NamedTuple

from .._serial import serialized
from ._hyper import (  # (in_range ...: a float16 NumPy scalar refused)
    _check_params_dtype,
    _flag,
    _lists,
    _namer,
    _native,
    in_range,
    nonnegative,
)
from ._lowp import LowPrecisionMixin, lowp_keywords
from .optimizer import Optimizer


class SGDHyper(NamedTuple):
    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool
    maximize: bool
    textbook: bool


def _check_sgd(
    where: str, lr, momentum, dampening, weight_decay, nesterov, maximize, momentum_form="pytorch"
) -> SGDHyper:
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


def _sgd_call(mod, params, grads, bufs, hp: SGDHyper, step, dev=None) -> None:
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


@lowp_keywords
class SGD(LowPrecisionMixin, Optimizer):
    """Stochastic gradient descent, torch.optim.SGD's semantics and defaults.

    ``g' = ±g + weight_decay p``; with momentum ``b <- momentum b + (1 - dampening) g'``
    (``b <- g'`` on the first step), ``d = g' + momentum b`` (Nesterov) or ``b``,
    ``p <- p - lr d``. ``momentum_form="textbook"`` uses ``v <- momentum v - lr (1 - dampening) g'``
    (``v <- -lr g'`` on the first step), ``p <- p + v`` (Nesterov: ``p <- p + momentum v - lr g'``)
    instead (Goodfellow et al., Alg. 8.2/8.3), equal to PyTorch's form while ``lr`` is constant
    (``v = -lr b``). State: ``momentum_buffer`` (``v`` in the textbook form; a step in the other
    ``momentum_form`` than the buffers were written in raises ValueError: opposite signs).
    ``capturable=True`` (CuPy arrays): a step that can be captured in a CUDA graph (see
    :class:`~optkern.optim.Optimizer`).
    Low precision (``master_weights``, ``stochastic_rounding``, ``state_dtype``, ``seed``,
    ``block_size``): as :class:`~optkern.optim.Adam`'s, for the momentum buffer.
    """

    _state_names = ("momentum_buffer",)
    _has_step = False
    _capturable = True

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
        capturable=False,
        **lowp,
    ):
        self._lowp_init(capturable, **lowp)
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
                capturable=capturable,
            ),
        )

    def _check(self, g: dict, where: str) -> SGDHyper:
        return _check_sgd(
            where,
            g["lr"],
            g["momentum"],
            g["dampening"],
            g["weight_decay"],
            g["nesterov"],
            g["maximize"],
            g["momentum_form"],
        )

    def _needed(self, hp):
        return ("momentum_buffer",) if hp.momentum != 0 else ()

    # ---- the form the momentum buffers are in ---------------------------------------------
    # b (PyTorch's) and v = -lr b (textbook) have opposite signs: a buffer read in the other form
    # steps uphill. Each run keeps the form its buffers were written in (run.extra["textbook"],
    # not in the state dict: the saved group's momentum_form says it), and a step that would read
    # them in the other form raises before anything is written.

    def _prepared(self, grads):
        out = super()._prepared(grads)
        for gi, ((hp, _, _), group_runs) in enumerate(zip(out[1], self._runs)):
            if hp.momentum == 0:
                continue  # (no buffer read: the form may change while momentum is off)
            for run in group_runs:
                held = run.extra.get("textbook")
                if held is not None and held != hp.textbook and "momentum_buffer" in run.state:
                    forms = ("pytorch", "textbook")
                    raise ValueError(
                        f"param_groups[{gi}]['momentum_form']: is {forms[hp.textbook]!r}, but the group's "
                        f"momentum buffers are in the {forms[held]!r} form (textbook v = -lr b: opposite "
                        f"signs); set it back to {forms[held]!r}"
                    )
        return out

    @serialized
    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        super().load_state_dict(state_dict, strict)
        # the loaded buffers are in the saved group's form; a group without one (PyTorch's state
        # dict, where the group keeps this optimizer's momentum_form) holds PyTorch's b
        for saved, group_runs in zip(state_dict["param_groups"], self._runs):
            textbook = saved.get("momentum_form", "pytorch") == "textbook"
            for run in group_runs:
                if "momentum_buffer" in run.state:
                    run.extra["textbook"] = textbook

    def _host_step(self, run):
        # the buffers' step: 1 starts them from the gradient (baked into a captured step, which
        # has no device counter: capture after the buffers' first step)
        return 1 if "momentum_buffer" in run.fresh else max(run.step + 1, 2)

    def _update(self, run, grads, hp, t, dev=None):
        if self._lowp is not None:
            x = [hp.lr, hp.momentum, hp.dampening, hp.weight_decay]
            flags = [hp.nesterov, hp.maximize, t == 1, hp.textbook]
            self._lowp_update(run, grads, "sgd", x, flags, self._needed(hp))
            return self._wrote_form(run, hp)
        _sgd_call(run.mod, run.params, grads, run.state.get("momentum_buffer"), hp, t, dev)
        self._wrote_form(run, hp)

    def _wrote_form(self, run, hp) -> None:
        if hp.momentum != 0:
            run.extra["textbook"] = hp.textbook
