"""The closure-driven optkern.torch optimizers (LBFGS, NewtonCG): a ``torch.optim.Optimizer`` of
one param group around an ``optkern.optim`` optimizer (the inner one) that runs on zero-copy views
of the params.

What they share: the params checked (float32/float64, one dtype and device: the inner optimizer
keeps one flat vector of them; complex64/complex128 as their real views, re and im interleaved,
as torch's LBFGS flattens them), torch's closure (zero the grads, backward, return the loss) turned
into the inner optimizer's ``(loss, grads)`` with every grad checked by name, the inner state shown
in ``self.state[first param]`` as tensors over its own buffers after every step (torch's layout for
LBFGS), checkpoints converted both ways, and pickling / ``copy.deepcopy`` rebuilding the inner
optimizer from that state.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from .. import _backend
from .._atomic import Uninterrupted
from .._serial import serialized
from . import _flat_order, _inference, _views
from ._checks_inputs import check_grad, check_new_group
from ._host_values import host_group


class ClosureOptimizer(torch.optim.Optimizer):
    """The shared part; a subclass sets ``_HYPER`` (the group keys the inner optimizer takes) and
    defines ``_make_inner(views, hyper)`` and ``_inner_entry()`` (the inner state entry: its own
    buffers, not copies)."""

    #: whether a sparse grad is read as its dense values (torch.optim.LBFGS's), else refused
    _dense_of_sparse: bool = False

    _HYPER: tuple = ()
    _EXTRA: tuple = ()  # attributes pickled / deep-copied with torch's three (what rebuilds the inner one)
    _VECTORS: tuple = ()  # the state's flat vectors over all params (lists of them too): _flat_order
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
        """A new inner optimizer over the params as they are now (their layout kept: ``_layout``)."""
        with _views.on_stream(self._params[0]):
            inner = self._make_inner(_views.views(self._params), self._host_hyper())
        self._layout = _flat_order.layout(self._params)
        return inner

    def _follow_layout(self) -> None:
        """Params given another dtype, device or layout since the inner optimizer was made over them
        (``model.double()``, ``model.to(memory_format=torch.channels_last)``: torch's LBFGS reads the
        params afresh at every step): checked as the constructor checks them, then a new inner
        optimizer over them with the state carried over (cast, its vectors in the new memory order).
        A param of another size cannot keep the state: ValueError naming it."""
        ps, old = self._params, self._layout
        if _flat_order.layout(ps) == old:
            return
        names = [f"param_groups[0]['params'][{i}]" for i in range(len(ps))]
        for p, name in zip(ps, names):
            _views.check_tensor(p, name)
        _views.check_one_kind(ps, names, "one flat vector of all params: one dtype, one device")
        entry = dict(self.state.get(ps[0]) or {})
        if entry and any(k in entry for k in self._VECTORS):
            for p, name, (_, _, shape, _) in zip(ps, names, old):
                n = _flat_order.size(p)  # (a complex param: its real view's)
                if n != _flat_order._numel(shape):
                    raise ValueError(
                        f"{name}: has {n} elements, {_flat_order._numel(shape)} when the optimizer's state "
                        "was made (a state over the old sizes: load one of these sizes, or clear opt.state)"
                    )
        self._load_entry(_flat_order.reorder_entry(entry, self._VECTORS, old, to_memory=False), logical=True)

    def _host_hyper(self, where: str = "") -> dict:
        """The group's hyper-parameters as the inner optimizer takes them (tensor lr read), checked;
        errors name them inside ``where`` (``param_groups[0]`` once the group is the user's to change)."""
        hyper = host_group({k: self.param_groups[0][k] for k in self._HYPER}, where)
        self._check_hyper(hyper, where)
        return hyper

    def _grad_views(self) -> list:
        """Views of the params' grads (None where a param has none), each checked against its param
        before the inner optimizer reads any."""
        out = []
        for i, p in enumerate(self._params):
            g = p.grad
            if g is not None:
                if self._dense_of_sparse and g.is_sparse:  # (torch's LBFGS reads p.grad.to_dense())
                    g = g.to_dense()
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
        # (the params are moved in place: before the closure, as nothing is written then)
        _inference.refuse_tensors(self._params, "param_groups[0]['params'][{}]".format)
        # SIGINT held over the step, the state shown included; the inner step's windows (its closure
        # calls, Newton-CG's solve) are this one's: a Ctrl-C there raises at once (``_atomic``)
        with Uninterrupted():
            return self._run_inner(closure)

    def _run_inner(self, closure) -> tuple:
        self._follow_layout()
        self._adopt_user_state()
        inner = self._inner
        hyper = self._host_hyper("param_groups[0]")
        inner.param_groups[0].update(hyper)
        inner.param_groups[0]["params"] = _views.views(self._params)  # (a user may swap p.data)
        returned: list = []

        def evaluate():
            # the inner step moves the params through views autograd does not see: a graph saved at
            # the old point must refuse its backward, as after torch's in-place moves. Every call
            # after the first comes after a move (a graph made at the start, e.g. a curvature
            # operator's, stays valid until then)
            if returned:
                torch.autograd.graph.increment_version(self._params)
            loss = closure()
            returned.append(loss)
            return loss, self._grad_views()

        before = self._iterations()
        try:
            with _views.on_stream(self._params[0]):
                out = inner.step(evaluate)
        finally:
            if len(returned) > 1 or self._iterations() != before:  # (moved since the last call)
                torch.autograd.graph.increment_version(self._params)
            self._after_step()
        return returned, out

    def _iterations(self) -> int:
        """The inner step's iteration count (L-BFGS: each iteration moves the params, the last one
        possibly without a closure call after it); 0 where moves come with closure calls."""
        return 0

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

    def _load_entry(self, entry: dict, logical: bool = False) -> None:
        """A fresh inner optimizer over the params, then ``entry`` (a state entry in torch's layout;
        empty: none) and the group loaded into it. Its vectors are in the params' memory order, as
        ``opt.state`` shows them (``logical``: in torch's order, as a checkpoint holds them)."""
        group = dict(self.param_groups[0], params=list(range(len(self._params))))
        old, old_layout = self.__dict__.get("_inner"), self.__dict__.get("_layout")
        self._inner = self._new_inner()
        try:
            self._load({"state": {0: entry} if entry else {}, "param_groups": [group]}, logical)
        except BaseException:
            if old is not None:  # (refused: the optimizer keeps the inner state it had)
                self._inner, self._layout = old, old_layout
            raise

    @serialized
    def state_dict(self) -> dict:
        """torch's ``state_dict`` (hooks included), the flat vectors in torch's order: the params'
        logical order, where ``opt.state`` shows them in the memory order of params contiguous in
        another order of their dims (channels_last)."""
        p0 = self._params[0]
        if not _flat_order.permuted(self._layout) or p0 not in self.state:
            return super().state_dict()
        shown = self.state
        logical = _flat_order.reorder_entry(shown[p0], self._VECTORS, self._layout, to_memory=False)
        self.state = defaultdict(dict, {p0: logical})  # (what torch's state_dict packs, for this call)
        try:
            return super().state_dict()
        finally:
            self.state = shown

    @serialized
    def load_state_dict(self, state_dict: dict) -> None:
        """Restore from a ``state_dict()`` (torch's format); everything is checked (errors name the
        entry) before anything changes.

        torch's hooks run as torch's loader runs them: the ``register_load_state_dict_pre_hook``
        hooks first, on a shallow copy (what is checked and loaded is what they return: a hook may
        migrate an old checkpoint), the post-hooks after the load. Internal loads (a state the user
        set between steps, unpickling) run none, as torch's ``__setstate__`` runs none."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        state_dict = state_dict.copy()  # (torch's shallow copy: a hook may change the top level)
        for hook in list(self._optimizer_load_state_dict_pre_hooks.values()):
            out = hook(self, state_dict)
            if out is not None:
                state_dict = out
        self._follow_layout()  # (the checkpoint goes into the params as they are now)
        self._load(state_dict, logical=True)
        for post in list(self._optimizer_load_state_dict_post_hooks.values()):
            post(self)

    def _load(self, state_dict: dict, logical: bool) -> None:
        """``load_state_dict`` without the hooks: checked whole, then loaded; ``logical``: its flat
        vectors in torch's order (a checkpoint), else in the params' memory order (``opt.state``)."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        arrays = dict(state_dict)
        if isinstance(arrays.get("state"), dict):
            lay = self._layout
            with _views.on_stream(self._params[0]):
                arrays["state"] = {
                    k: to_arrays(_flat_order.reorder_entry(v, self._VECTORS, lay, True) if logical else v)
                    for k, v in arrays["state"].items()
                }
        groups = arrays.get("param_groups")
        saved = None
        if isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict):
            saved = groups[0]
            arrays["param_groups"] = [host_group(saved, "state_dict['param_groups'][0]")]
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
