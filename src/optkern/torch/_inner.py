"""The closure-driven optkern.torch optimizers (LBFGS, NewtonCG): a ``torch.optim.Optimizer`` of
one param group around an ``optkern.optim`` optimizer (the inner one) that runs on zero-copy views
of the params.

What they share: the params checked (float32/float64, one dtype and device: the inner optimizer
keeps one flat vector of them), torch's closure (zero the grads, backward, return the loss) turned
into the inner optimizer's ``(loss, grads)`` with every grad checked by name, the inner state shown
in ``self.state[first param]`` as tensors over its own buffers after every step (torch's layout for
LBFGS), checkpoints converted both ways, and pickling / ``copy.deepcopy`` rebuilding the inner
optimizer from that state.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _backend
from . import _views
from ._checks_step import check_grad, check_new_group
from ._host_values import host_group


class ClosureOptimizer(torch.optim.Optimizer):
    """The shared part; a subclass sets ``_HYPER`` (the group keys the inner optimizer takes) and
    defines ``_make_inner(views, hyper)`` and ``_inner_entry()`` (the inner state entry: its own
    buffers, not copies)."""

    _HYPER: tuple = ()
    _EXTRA: tuple = ()  # attributes pickled / deep-copied with torch's three (what rebuilds the inner one)
    _ONE_GROUP = "doesn't support per-parameter options (parameter groups)"

    def _setup(self, params, hyper: dict) -> None:
        """torch's ``__init__`` with ``hyper`` as the defaults, then the params checked and the
        inner optimizer made over their views."""
        super().__init__(params, hyper)
        self._params = self.param_groups[0]["params"]
        ps = self._params
        names = [f"param_groups[0]['params'][{i}]" for i in range(len(ps))]
        for p, name in zip(ps, names):
            _views.check_tensor(p, name)
        _views.check_one_kind(ps, names, "one flat vector of all params: one dtype, one device")
        self._inner = self._new_inner()
        self._show_state()

    def add_param_group(self, param_group: dict) -> None:
        """torch.optim.Optimizer's, for the one group ``__init__`` makes; a second one: ValueError."""
        if self.param_groups:
            raise ValueError(f"{type(self).__name__} {self._ONE_GROUP}")
        check_new_group(self.param_groups, param_group)
        super().add_param_group(param_group)

    # ---- the inner optimizer over views of the params ----------------------------------------------

    def _make_inner(self, views: list, hyper: dict):  # pragma: no cover - abstract
        raise NotImplementedError

    def _inner_entry(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_hyper(self, hyper: dict, where: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _new_inner(self):
        with _views.on_stream(self._params[0]):
            return self._make_inner(_views.views(self._params), self._host_hyper())

    def _host_hyper(self, where: str = "") -> dict:
        """The group's hyper-parameters as the inner optimizer takes them (tensor lr read), checked;
        errors name them inside ``where`` (``param_groups[0]`` once the group is the user's to change)."""
        hyper = host_group({k: self.param_groups[0][k] for k in self._HYPER})
        self._check_hyper(hyper, where)
        return hyper

    def _grad_views(self) -> list:
        """Views of the params' grads (None where a param has none), each checked against its param
        before the inner optimizer reads any."""
        out = []
        for i, p in enumerate(self._params):
            g = p.grad
            if g is not None:
                check_grad(p, g, 0, i)
                g = _views.view(g)
            out.append(g)
        return out

    # ---- step ---------------------------------------------------------------------------------------

    def _run(self, closure) -> tuple:
        """The inner optimizer's step with torch's ``closure`` (run with grad enabled; its grads read
        from ``.grad``); returns (what the closure returned, in call order; the inner step's result)."""
        if not callable(closure):
            raise TypeError(
                f"closure: {type(self).__name__}.step needs a callable that re-evaluates the model and "
                f"returns the loss, got {type(closure).__name__}"
            )
        closure = torch.enable_grad()(closure)
        self._adopt_user_state()
        inner = self._inner
        hyper = self._host_hyper("param_groups[0]")
        inner.param_groups[0].update(hyper)
        inner.param_groups[0]["params"] = _views.views(self._params)  # (a user may swap p.data)
        returned: list = []

        def evaluate():
            loss = closure()
            returned.append(loss)
            return loss, self._grad_views()

        try:
            with _views.on_stream(self._params[0]):
                out = inner.step(evaluate)
        finally:
            self._after_step()
        return returned, out

    def _after_step(self) -> None:
        """What the inner step changed, back in the group (none by default) and the state shown."""
        self._show_state()

    # ---- state: tensors over the inner optimizer's buffers -----------------------------------------

    def _show_state(self) -> None:
        """``self.state[first param]``: the inner state entry, its vectors tensors over its buffers."""
        p0 = self._params[0]
        entry = self._inner_entry()
        self._shown: tuple | None = None  # (the dict shown, its entries): what _adopt_user_state compares
        if not any(entry.get(k) for k in ("func_evals", "num_grad_evals")):  # not stepped yet: none, as torch
            self.state.pop(p0, None)
            return
        with _views.on_stream(p0):
            shown = {k: to_torch(v) for k, v in entry.items()}
        st = self.state[p0]
        st.clear()
        st.update(shown)
        self._shown = (st, shown)

    def _adopt_user_state(self) -> None:
        """A state the user set, replaced or removed since it was shown (``opt.state[p] = {...}``,
        ``opt.state.clear()``, ``opt.state = defaultdict(dict)``: torch's ways to reset an optimizer)
        becomes the inner state: none starts afresh, as torch's optimizers do; any other is loaded
        (checked first, errors naming its entries). Tensors changed in place need nothing: they
        are the inner buffers."""
        st = self.state.get(self._params[0])
        shown = self._shown
        if shown is None:
            if not st:
                return
        elif st is shown[0] and st.keys() == shown[1].keys() and all(st[k] is v for k, v in shown[1].items()):
            return
        self._load_entry(dict(st or {}))

    def _load_entry(self, entry: dict) -> None:
        """A fresh inner optimizer over the params, then ``entry`` (a state entry in torch's layout;
        empty: none) and the group loaded into it."""
        group = dict(self.param_groups[0], params=list(range(len(self._params))))
        old = self.__dict__.get("_inner")
        self._inner = self._new_inner()
        try:
            self.load_state_dict({"state": {0: entry} if entry else {}, "param_groups": [group]})
        except BaseException:
            if old is not None:  # (refused: the optimizer keeps the inner state it had)
                self._inner = old
            raise

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore from a ``state_dict()`` (torch's format); everything is checked (errors name the
        entry) before anything changes."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        arrays = dict(state_dict)
        if isinstance(arrays.get("state"), dict):
            with _views.on_stream(self._params[0]):
                arrays["state"] = {k: to_arrays(v) for k, v in arrays["state"].items()}
        groups = arrays.get("param_groups")
        saved = None
        if isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict):
            saved = groups[0]
            arrays["param_groups"] = [host_group(saved)]
        self._inner.load_state_dict(arrays)  # checks all, then writes
        self.param_groups[0].update({k: v for k, v in (saved or {}).items() if k != "params"})
        self._show_state()

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        return {**state, **{k: getattr(self, k) for k in self._EXTRA}}

    def __setstate__(self, state: dict) -> None:
        """Unpickling / ``copy.deepcopy``: the inner optimizer rebuilt over the params from ``state``."""
        super().__setstate__(state)
        self._params = self.param_groups[0]["params"]
        self._load_entry(dict(self.state.get(self._params[0], {})))


def to_torch(v):
    """A state value as torch's state holds it: arrays as tensors over the same memory (the Gram
    matrices, NumPy float64 copies, as CPU tensors), lists element-wise, numbers as they are."""
    if isinstance(v, list):
        return [to_torch(x) for x in v]
    if isinstance(v, np.ndarray):
        return torch.from_numpy(v)
    if _backend.is_cupy(v):
        return torch.from_dlpack(v)  # (on torch's current stream: CuPy's current one here)
    return float(v) if isinstance(v, np.generic) else v


def to_arrays(v):
    """A saved state value as the inner optimizer reads it: tensors as NumPy / CuPy views (0-d ones
    as Python numbers), lists element-wise; anything else as is (its checks name what is wrong)."""
    if isinstance(v, (list, tuple)):
        return [to_arrays(x) for x in v]
    if isinstance(v, torch.Tensor):
        if v.dim() == 0 and not v.is_complex():
            return v.item()
        if v.layout is torch.strided and v.device.type in ("cpu", "cuda") and v.dtype in _views._FLOATS:
            return _views.view(v.contiguous())
        return v.detach().cpu().numpy() if v.layout is torch.strided else v
    return v
