"""optkern.torch.NewtonCG: Hessian-free Newton-CG (Martens 2010) for torch models.

:class:`optkern.optim.NewtonCG` (damped, truncated, preconditioned CG on a curvature operator,
Levenberg-Marquardt damping, a step that raises the loss undone) over zero-copy views of the
params, with torch's closure and ``torch.optim.Optimizer``'s machinery (LR schedulers, hooks,
``state_dict``). The curvature of a torch model comes from :func:`optkern.torch.hessian_operator`:

    def out_and_loss():
        z = model(x)
        return z, F.cross_entropy(z, y)

    opt = optkern.torch.NewtonCG(model.parameters(),
                                 lambda: optkern.torch.hessian_operator(out_and_loss, model.parameters(), kind="ggn"))
    def closure():
        opt.zero_grad(); loss = F.cross_entropy(model(x), y); loss.backward(); return loss
    opt.step(closure)
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _backend
from .._serial import serialized
from ..hessian import as_operator, from_hvp
from ..optim import newton_cg as _ncg
from . import _flat_order
from ._host_values import host_group
from ._inner import ClosureOptimizer


class NewtonCG(ClosureOptimizer):
    """Hessian-free Newton-CG (``optkern.optim.NewtonCG``'s algorithm and hyper-parameters) on torch params.

    Args:
      params: the model's params (one group; float32/float64, one dtype and device).
      curvature: a callable returning the step's curvature operator at the params' current values
        (``lambda: optkern.torch.hessian_operator(fn, model.parameters(), kind="ggn")``: built once
        per step, before the step moves the params), or an operator that evaluates at the params'
        current values on every product. Its vectors (and a ``preconditioner``'s diagonal) are the
        params flattened in their logical order, as ``hessian_operator``'s: for params contiguous in
        another order (channels_last) they are converted to the memory order the step works in.
      lr, damping, max_cg_iter, cg_tol, preconditioner, precond_exponent, warm_start, boost, drop,
        min_damping, max_damping: as in ``optkern.optim.NewtonCG``; ``damping`` in the group is the
        Levenberg-Marquardt ``lambda``, updated by every step.
      reuse_trial_gradient: False here (optkern.optim's default is True): a torch training loop
        usually hands every step a new batch, whose gradient the previous step's trial point does
        not have. True saves one closure call per step on a fixed batch.

    ``step(closure)``: ``closure()`` zeroes the grads, computes the loss, calls ``backward`` and
    returns the loss (torch's convention; run with grad enabled); it is called at the params and at
    the trial point. Returns the loss at the start. ``last`` holds the step's diagnostics (rho,
    damping, CG iterations and exit), ``num_grad_evals`` / ``num_hvps`` the counters (also in
    ``state``). A bad closure result raises TypeError / ValueError naming ``closure`` (or the grad)
    and leaves the params and the state as they were.
    """

    _HYPER = _ncg._HYPER
    _VECTORS = ("prev_step",)
    _EXTRA = ("_curvature", "_preconditioner", "_reuse")

    def __init__(
        self,
        params,
        curvature,
        lr=1.0,
        damping=1.0,
        max_cg_iter=50,
        cg_tol=5e-4,
        preconditioner=None,
        precond_exponent=0.75,
        warm_start=0.95,
        boost=1.5,
        drop=2.0 / 3.0,
        min_damping=1e-8,
        max_damping=1e8,
        reuse_trial_gradient=False,
    ):
        hyper = dict(
            zip(
                self._HYPER,
                (lr, damping, max_cg_iter, cg_tol, precond_exponent, warm_start, boost, drop, min_damping, max_damping),
            )
        )
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError("lr: a tensor lr must have one element")
        # a one-element tensor lr (torch's, an LR scheduler's) read as a number, as every step
        # reads it (``_host_hyper``) and as LBFGS takes it
        _ncg.NewtonCG._check(host_group(hyper))
        self._curvature, self._preconditioner = curvature, preconditioner
        # checked here too (as optkern.optim's NewtonCG checks it): the inner one is made at the end
        self._reuse = _backend.flag("reuse_trial_gradient", reuse_trial_gradient)
        self._setup(params, hyper)

    def _make_inner(self, views: list, hyper: dict) -> _ncg.NewtonCG:
        curvature, preconditioner = self._curvature, self._preconditioner
        lay = _flat_order.layout(self._params)
        if _flat_order.permuted(lay):  # (the inner vectors: memory order; the operator's: logical)
            curvature, preconditioner = _in_memory_order(curvature, preconditioner, lay)
        return _ncg.NewtonCG(views, curvature, **hyper, preconditioner=preconditioner, reuse_trial_gradient=self._reuse)

    def _check_hyper(self, hyper: dict, where: str) -> None:
        # (max_damping finite in the params' real dtype, where the inner optimizer's damping lives)
        single = self._params[0].dtype in (torch.float32, torch.complex64)
        _ncg.NewtonCG._check(hyper, where, np.float32 if single else np.float64)

    def _inner_entry(self) -> dict:
        """``optkern.optim.NewtonCG.state_dict``'s entry, its previous step the inner one's own array
        (a new one every step: nothing to copy)."""
        inner = self._inner
        entry = {"num_grad_evals": inner.num_grad_evals, "num_hvps": inner.num_hvps}
        if inner._p is not None:
            entry["prev_step"] = inner._p
        return entry

    def _after_step(self) -> None:
        self.param_groups[0]["damping"] = self._inner.param_groups[0]["damping"]  # (Levenberg-Marquardt's)
        self._show_state()

    @property
    def last(self) -> dict:
        """The last step's diagnostics (``optkern.optim.NewtonCG.last``)."""
        return self._inner.last

    @property
    def num_grad_evals(self) -> int:
        return self._inner.num_grad_evals

    @property
    def num_hvps(self) -> int:
        return self._inner.num_hvps

    @serialized
    @torch.no_grad()
    def step(self, closure):
        """One Newton-CG step; returns the closure's loss at the start (a float when the step reused
        the previous trial point's evaluation: ``reuse_trial_gradient``)."""
        cached = self._inner._cache is not None
        returned, start_loss = self._run(closure)
        return start_loss if cached else returned[0]


def _in_memory_order(curvature, preconditioner, lay: tuple) -> tuple:
    """``curvature`` and ``preconditioner`` over the memory order of params contiguous in another
    order of their dims (channels_last), where the inner optimizer's flat vectors are: the
    operators of :func:`optkern.torch.hessian_operator` (and a user's diagonal) take the params
    flattened in their logical order (``p.reshape(-1)``); unconverted, every curvature product
    paired the elements of another order (a wrong Newton step, silently)."""

    def reorder(v, to_memory: bool):
        """A NumPy / CuPy flat vector reordered (a new array of the same module)."""
        if isinstance(v, np.ndarray):
            return _flat_order._reorder(torch.from_numpy(v), lay, to_memory).numpy()
        import cupy

        return cupy.from_dlpack(_flat_order._reorder(torch.from_dlpack(v), lay, to_memory))

    def operator(op):
        if getattr(op, "shape", None) is None:
            return op  # (the inner optimizer names what is wrong with it)
        # a dense matrix (NumPy, CuPy, torch) or a SciPy LinearOperator is over the logical order
        # too: as an operator (errors naming ``curvature``), then converted (passed through, it
        # multiplied vectors in memory order: a wrong Newton step, silently)
        op = as_operator(op, "curvature")
        return from_hvp(
            lambda v: reorder(op.matvec(reorder(v, False)), True),
            op.shape[0],
            op.dtype,
            xp=op.xp,
            name=f"{getattr(op, 'name', 'curvature')} (memory order)",
        )

    def diagonal(d):
        # (a torch tensor, any foreign array: its NumPy / CuPy view, reordered as those are; passed
        # through, it preconditioned each element by another one's entry)
        if _backend.is_foreign(d):
            d = _backend.as_array(d, "preconditioner")
        return reorder(d, True) if isinstance(d, np.ndarray) or _backend.is_cupy(d) else d

    if hasattr(curvature, "matvec"):
        curv = operator(curvature)
    else:
        curv = lambda: operator(curvature())  # noqa: E731
    pre = preconditioner
    if callable(pre):
        pre = lambda: diagonal(preconditioner())  # noqa: E731
    elif pre is not None:
        pre = diagonal(pre)
    return curv, pre
