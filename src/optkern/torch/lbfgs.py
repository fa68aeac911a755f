"""optkern.torch.LBFGS: ``torch.optim.LBFGS`` on optkern's L-BFGS (:class:`optkern.optim.LBFGS`).

torch's algorithm, defaults, stopping tests and strong-Wolfe line search (the inner optimizer
follows torch's iteration step by step), with the inverse-Hessian product as two native passes over
the history instead of torch's ``4 k`` Python-level dot / axpy calls per iteration. The params are
updated in place through zero-copy views (CPU: NumPy; CUDA: DLPack on torch's current stream); the
closure is torch's: it re-evaluates the model, fills ``.grad`` and returns the loss.

The history lives in the inner optimizer's buffers; ``opt.state[first param]`` shows it after every
step in torch's layout (``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``,
``prev_flat_grad``, ``prev_loss``, ``n_iter``, ``func_evals``, ``al``; the vectors are tensors over
those buffers, not copies, as torch's state holds its own), plus ``gram_sy`` / ``gram_yy``, the
inner products optkern keeps (float64, CPU). So ``state_dict()`` is torch's format: a checkpoint
moves between ``torch.optim.LBFGS`` and this class both ways (torch ignores the two extra keys; loading
takes them, ``ro`` and ``H_diag`` from the vectors, never from the checkpoint). For params contiguous in
another order of their dims (channels_last) ``opt.state`` holds the vectors in the params' memory order
(the inner buffers) and ``state_dict()`` in torch's (their logical order), which ``load_state_dict``
takes; params given another layout, dtype or device between steps have the state carried over
(:mod:`._flat_order`).
"""

from __future__ import annotations

import torch

from .._serial import serialized
from ..optim import _lbfgs_state
from ..optim import lbfgs as _lbfgs
from ._host_values import host_group
from ._inner import ClosureOptimizer


class LBFGS(ClosureOptimizer):
    """torch.optim.LBFGS (same signature and semantics) on optkern's fused two-loop kernels.

    Complex params are stepped as their real views, as torch's (``view_as_real``: re and im
    interleaved in the flat vectors; complex64 with float32 params).

    Differences from torch: params must be float32 or float64 (or complex), of one real dtype and one device (dense:
    contiguous, or contiguous in another order of their dims, such as channels_last, whose grads then
    need the same layout); a NaN/Inf loss or gradient raises ValueError
    naming ``closure`` and puts the params back to the last iterate (torch goes on with NaN). The
    history's inner products are taken in float64 and the sums associated differently: iterates agree
    with torch's to rounding, not bit for bit. A tensor ``lr`` changed between steps (an LR
    scheduler's ``fill_``) steps as the float ``lr`` would: torch's LBFGS keeps the lr tensor itself as
    its last step length ``t``, so its next step's first curvature pair takes ``s = t d`` at the *new*
    lr, not the displacement it made (its tensor-lr run leaves its own float-lr run: 7% after four
    StepLR steps, gamma 0.7, on a quadratic); optkern's ``s`` is the displacement made. Matching it
    would repeat that stale pair inside the shared L-BFGS history (and follow the lr tensor's
    identity through the strong-Wolfe search), so it is not matched. A 0-d NumPy array ``lr``, which
    torch's LBFGS refuses (a TypeError of its ``add_(alpha=lr)``), is taken, as the float it holds
    (a superset of torch, as torch.optim's other classes take one; README's "From PyTorch").
    """

    _HYPER = _lbfgs._NAMES
    _dense_of_sparse = True  # (sparse grads read as their dense values, as torch's _gather_flat_grad reads them)
    _VECTORS = ("d", "prev_flat_grad", "old_dirs", "old_stps")  # (torch's: its params' logical order)

    def __init__(
        self,
        params,
        lr=1,
        max_iter=20,
        max_eval=None,
        tolerance_grad=1e-7,
        tolerance_change=1e-9,
        history_size=100,
        line_search_fn=None,
    ):
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError("lr: a tensor lr must have one element")
        hyper = dict(zip(self._HYPER, (lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size)))
        hyper["line_search_fn"] = line_search_fn
        if max_eval is None:  # torch's default, from a checked max_iter
            hyper["max_eval"] = _lbfgs.default_max_eval(max_iter)
        _lbfgs._check_group(host_group(hyper))
        self._setup(params, hyper)

    def _make_inner(self, views: list, hyper: dict) -> _lbfgs.LBFGS:
        return _lbfgs.LBFGS(views, **hyper)

    def _check_hyper(self, hyper: dict, where: str) -> None:
        _lbfgs._check_group(hyper, where)

    def _inner_entry(self) -> dict:
        return _lbfgs_state.state_dict(self._inner, copy=False)["state"].get(0, {})

    def _iterations(self) -> int:
        return int(self._inner_entry().get("n_iter", 0))

    @serialized
    @torch.no_grad()
    def step(self, closure):
        """Up to ``max_iter`` L-BFGS iterations; returns what ``closure`` returned at the start.

        ``closure()`` re-evaluates the model at the current params, fills their ``.grad`` (zero it
        first) and returns the loss; it runs with grad enabled, as in torch.
        """
        returned, _ = self._run(closure)
        return returned[0]
