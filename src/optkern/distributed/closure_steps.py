"""The closure step of ``DistributedOptimizer`` (a mixin): L-BFGS, Newton-CG and SAM evaluate the
loss and gradient themselves, maybe several times a step; each evaluation is reduced over the ranks
before the optimizer sees it, so every rank takes the same decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _backend
from .agreement import reduce_mode, refuse_together
from .buckets import _shaped
from .groups import grown


class ClosureSteps:
    """A mixin of ``DistributedOptimizer`` (its optimizer, communicator, buffers, reductions and checks)."""

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...

    def _closure_step(self, closure):
        """``step(closure)`` of a closure optimizer: the closure's every result averaged over the
        ranks (:meth:`_averaged`) before the optimizer sees it. Returns the optimizer's step's value."""
        opt = self.optimizer
        err: Exception | None = None
        if not callable(closure):  # (step(grads) too: it averaged them in place, then LBFGS refused them)
            err = TypeError(
                f"closure: {type(opt).__name__} steps from a closure () -> (loss, grads) (the wrapper averages "
                f"both over the ranks at each call), got {type(closure).__name__}"
            )
        elif self._skip:
            err = RuntimeError(
                f"step: a {type(opt).__name__} step inside skip_synchronize(): the wrapper averages its "
                "closure's results itself (step outside it)"
            )
        added = grown(opt, self._counts)
        if added:
            self._hyper_check.counts = [len(g["params"]) for g in opt.param_groups]
        self._hyper_check(err, self._skip, reduce_mode(self.op, self.grad_weight))
        if added:
            self._follow()
        return opt.step(self._averaged(closure))

    def _averaged(self, closure):
        """``closure`` with its ``(loss, grads)`` reduced over the ranks, at every call. A call that
        fails on one rank (the closure raised, or returned a bad result) raises on every rank, before
        any reduction: one small allreduce (the call's header) agrees on it."""
        from ..optim import _closure
        from .data_parallel import _grad_weight  # (data_parallel imports this module)

        def averaged():
            err: BaseException | None = None
            # (each buffer in its param's shape: one reshaped in place since the buckets were made
            # was refused here, where the wrapped optimizer steps it)
            loss, w = 0.0, None
            bufs = [_shaped(b, p) for b, p in zip(self.grad_buffers(), self._params)]
            try:
                loss, grads = _closure.call(closure)
                loss = _closure.closure_loss(loss)
                grads = _backend.check_list_like(
                    _backend.as_list(grads, "closure: grads"), self._params, "closure: grads", none=True
                )
                w = _grad_weight(self.grad_weight, {p.dtype for p in self._params})
                for b, g in zip(bufs, grads):  # (ours: the closure's arrays are not written)
                    if g is None:
                        b.fill(0)
                    else:
                        b[...] = g
            except BaseException as e:  # (a Ctrl-C on one rank too: the others would wait forever)
                err = e
            said = err
            if err is not None and not isinstance(err, (TypeError, ValueError)):
                said = RuntimeError(f"closure: raised {type(err).__name__}: {err}")
            try:
                refuse_together(self.comm, said, "closure", reduce_mode(self.op, self.grad_weight))
            except BaseException:
                if err is not None:
                    raise err from None
                raise
            self._reduce(bufs, w)
            total = np.array([loss if w is None else loss * w])
            self.comm.allreduce(total, self.op if w is None else "sum", check=False)
            return float(total[0]), bufs

        return averaged
