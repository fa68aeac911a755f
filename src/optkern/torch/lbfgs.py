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
moves between ``torch.optim.LBFGS`` and this class both ways (torch ignores the two extra keys; a
checkpoint without them gets them recomputed).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _backend
from ..optim import _lbfgs_state
from ..optim import lbfgs as _lbfgs
from . import _views
from ._checks_step import check_grad, check_new_group
from ._host_values import host_group

_HYPER = _lbfgs._NAMES
_ONE_GROUP = "LBFGS doesn't support per-parameter options (parameter groups)"


class LBFGS(torch.optim.Optimizer):
    """torch.optim.LBFGS (same signature and semantics) on optkern's fused two-loop kernels.

    Differences from torch: params must be float32 or float64, of one dtype and one device (dense:
    contiguous, or contiguous in another order of their dims, such as channels_last, whose grads then
    need the same layout); sparse grads are refused; a NaN/Inf loss or gradient raises ValueError
    naming ``closure`` and puts the params back to the last iterate (torch goes on with NaN). The
    history's inner products are taken in float64 and the sums associated differently: iterates agree
    with torch's to rounding, not bit for bit.
    """

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
        hyper = dict(zip(_HYPER, (lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size)))
        hyper["line_search_fn"] = line_search_fn
        if max_eval is None:  # torch's default, from a checked max_iter
            hyper["max_eval"] = _backend.integer("max_iter", max_iter, lo=1) * 5 // 4
        _lbfgs._check_group(host_group(hyper))
        super().__init__(params, hyper)
        self._params = self.param_groups[0]["params"]
        ps = self._params
        for i, p in enumerate(ps):
            _views.check_tensor(p, f"param_groups[0]['params'][{i}]")
            if p.dtype is not ps[0].dtype or p.device != ps[0].device:
                raise TypeError(
                    f"param_groups[0]['params'][{i}]: {p.dtype} on {p.device}, the first param is {ps[0].dtype} "
                    f"on {ps[0].device} (L-BFGS keeps one flat vector of all params: one dtype, one device)"
                )
        self._inner = self._new_inner()
        self._show_state()

    def add_param_group(self, param_group: dict) -> None:
        """torch.optim.Optimizer's, for the one group ``__init__`` makes; a second one: ValueError."""
        if self.param_groups:
            raise ValueError(_ONE_GROUP)
        check_new_group(self.param_groups, param_group)
        super().add_param_group(param_group)

    # ---- the inner optimizer over views of the params ---------------------------------------------

    def _new_inner(self) -> _lbfgs.LBFGS:
        with _views.on_stream(self._params[0]):
            return _lbfgs.LBFGS(_views.views(self._params), **self._host_hyper())

    def _host_hyper(self, where: str = "") -> dict:
        """The group's hyper-parameters as the inner optimizer takes them (tensor lr read), checked;
        errors name them inside ``where`` (``param_groups[0]`` once the group is the user's to change)."""
        hyper = host_group({k: self.param_groups[0][k] for k in _HYPER})
        _lbfgs._check_group(hyper, where)
        return hyper

    def _grad_views(self) -> list:
        """Views of the params' grads (None where a param has none: zeros, as in torch), each checked
        against its param before the inner optimizer reads any."""
        out = []
        for i, p in enumerate(self._params):
            g = p.grad
            if g is not None:
                check_grad(p, g, 0, i)
                g = _views.view(g)
            out.append(g)
        return out

    # ---- step ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure):
        """Up to ``max_iter`` L-BFGS iterations; returns what ``closure`` returned at the start.

        ``closure()`` re-evaluates the model at the current params, fills their ``.grad`` (zero it
        first) and returns the loss; it runs with grad enabled, as in torch.
        """
        if not callable(closure):
            raise TypeError(
                "closure: LBFGS.step needs a callable that re-evaluates the model and returns the loss, "
                f"got {type(closure).__name__}"
            )
        closure = torch.enable_grad()(closure)
        inner = self._inner
        inner.param_groups[0].update(self._host_hyper("param_groups[0]"))
        inner.param_groups[0]["params"] = _views.views(self._params)  # (a user may swap p.data)
        first: list = []

        def evaluate():
            loss = closure()
            if not first:
                first.append(loss)
            return loss, self._grad_views()

        try:
            with _views.on_stream(self._params[0]):
                inner.step(evaluate)
        finally:
            self._show_state()
        return first[0] if first else None

    # ---- state: torch's layout over the inner optimizer's buffers ---------------------------------

    def _show_state(self) -> None:
        """``self.state[first param]`` in torch's layout, its vectors tensors over the inner buffers."""
        p0 = self._params[0]
        entry = _lbfgs_state.state_dict(self._inner, copy=False)["state"].get(0, {})
        if not entry.get("func_evals"):  # not stepped yet: no state, as in torch
            self.state.pop(p0, None)
            return
        with _views.on_stream(p0):
            shown = {k: _to_torch(v) for k, v in entry.items()}
        st = self.state[p0]
        st.clear()
        st.update(shown)

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore from a ``state_dict()`` of this class or of ``torch.optim.LBFGS`` (torch's format);
        everything is checked (errors name the entry) before anything changes."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        arrays = dict(state_dict)
        if isinstance(arrays.get("state"), dict):
            with _views.on_stream(self._params[0]):
                arrays["state"] = {k: _to_arrays(v) for k, v in arrays["state"].items()}
        groups = arrays.get("param_groups")
        saved = None
        if isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict):
            saved = groups[0]
            arrays["param_groups"] = [host_group(saved)]
        self._inner.load_state_dict(arrays)  # checks all, then writes
        group = self.param_groups[0]
        group.update({k: v for k, v in (saved or {}).items() if k != "params"})
        self._show_state()

    def __setstate__(self, state: dict) -> None:
        """Unpickling / ``copy.deepcopy``: the inner optimizer rebuilt over the params from ``state``."""
        super().__setstate__(state)
        self._params = self.param_groups[0]["params"]
        group = dict(self.param_groups[0], params=list(range(len(self._params))))
        entry = dict(self.state.get(self._params[0], {}))
        self._inner = self._new_inner()
        self.load_state_dict({"state": {0: entry} if entry else {}, "param_groups": [group]})


def _to_torch(v):
    """A state value as torch's LBFGS state holds it: arrays as tensors over the same memory (the
    Gram matrices, NumPy float64 copies, as CPU tensors), lists element-wise, numbers as they are."""
    if isinstance(v, list):
        return [_to_torch(x) for x in v]
    if isinstance(v, np.ndarray):
        return torch.from_numpy(v)
    if _backend.is_cupy(v):
        return torch.from_dlpack(v)  # (on torch's current stream: CuPy's current one here)
    return float(v) if isinstance(v, np.generic) else v


def _to_arrays(v):
    """A saved state value as the inner optimizer reads it: tensors as NumPy / CuPy views (0-d ones
    as Python numbers), lists element-wise; anything else as is (its checks name what is wrong)."""
    if isinstance(v, (list, tuple)):
        return [_to_arrays(x) for x in v]
    if isinstance(v, torch.Tensor):
        if v.dim() == 0 and not v.is_complex():
            return v.item()
        if v.layout is torch.strided and v.device.type in ("cpu", "cuda") and v.dtype in _views._FLOATS:
            return _views.view(v.contiguous())
        return v.detach().cpu().numpy() if v.layout is torch.strided else v
    return v
