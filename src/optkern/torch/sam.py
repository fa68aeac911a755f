"""optkern.torch.SAM: sharpness-aware minimization for torch models, with the API of the PyTorch
implementation most code uses (github.com/davda54/sam): ``SAM(params, base_optimizer, rho=0.05,
adaptive=False, **kwargs)``, ``first_step`` / ``second_step`` / ``step(closure)``.

The ascent step (the global gradient norm, the backup of ``w`` and the move, in one native call)
and the return to the very bits of ``w`` are optkern's fused multi-tensor kernels
(``sam_perturb_`` / ``sam_restore_``, :mod:`optkern.optim.sam`'s) on zero-copy views of the
tensors; the descent step is the base optimizer's (an ``optkern.torch`` one runs fused too).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _backend
from .._atomic import Uninterrupted, deferring
from .._foreign import host_number
from .._hyper_scalars import nonnegative  # (a NumPy float16 rho refused, as the optimizers refuse one)
from .._overlap import in_spans, tensor_span
from .._serial import serialized
from ..optim._lowp_config import LOWP_KEYWORDS
from . import _inference, _relaid, _views
from ._checks_inputs import check_grad

_EPS = 1e-12  # added to the norm, as in the reference implementation
# (the base optimizer's hint for half params, master_weights=True, does not hold here: the ascent
# step -- sam_perturb_ / sam_restore_ on the params themselves -- is float32 / float64 only)
_HALF_HINT = (
    "SAM's ascent step takes float32 / float64 params, with master_weights=True too: keep the "
    "params in float32 and run the forward pass in half precision under torch.autocast"
)


class SAM(torch.optim.Optimizer):
    """SAM (Foret et al. 2021) or adaptive SAM (ASAM, Kwon et al. 2021: ``adaptive=True``) around
    ``base_optimizer``, a ``torch.optim.Optimizer`` class built here over this optimizer's param
    groups with ``**kwargs`` (``SAM(model.parameters(), optkern.torch.SGD, lr=0.1, momentum=0.9)``);
    the low-precision keywords among them (``state_dtype="int8"``, ...) go to the base optimizer
    only, which takes them for all its groups.

    Usage as in the reference: ``loss_fn(model(x), y).backward(); opt.first_step(zero_grad=True);
    loss_fn(model(x), y).backward(); opt.second_step(zero_grad=True)``; or ``opt.step(closure)``
    after the first backward, where ``closure`` does the second forward and backward.

    Beyond the reference: ``state_dict()`` is the base optimizer's (its momentum or moments
    included, with ``rho`` / ``adaptive`` in the groups), so a checkpoint restores training; the
    reference's checkpoints (``old_p`` entries) load too. Params and grads must be float32/float64
    (complex: their real views, not with ``adaptive``) of one dtype and device (dense; a grad in its
    param's layout); every group must have the same
    ``rho`` and ``adaptive`` (one fused call). Errors name the argument; nothing is moved then.

    A grad in a param's memory (``p.grad = p.detach()``, the gradient of |w|^2 / 2 without a copy)
    steps as in the reference, whose arithmetic is defined there: its ascent reads the grads as they
    were before any param moved (the reference's ``e_w = p.grad * scale`` before ``p.add_(e_w)``;
    here through a copy), and ``second_step`` gives the param a copy of such a grad before writing
    ``w`` back in place (the reference rebinds ``p.data = old_p``, and the grad keeps the ascent
    point's values for the base optimizer).
    """

    def __init__(self, params, base_optimizer, rho=0.05, adaptive=False, **kwargs):
        rho = nonnegative("rho", host_number(rho, "rho"))  # (a 0-d tensor rho, as the reference takes)
        adaptive = _backend.flag("adaptive", adaptive)
        if not callable(base_optimizer):
            raise TypeError(
                f"base_optimizer: expected a torch.optim.Optimizer class (e.g. optkern.torch.SGD), got "
                f"{type(base_optimizer).__name__}"
            )
        # The low-precision keywords (state_dtype, master_weights, ...) configure the base optimizer
        # as a whole, never a group (its constructor refuses them in one): kept out of the groups'
        # defaults, where the reference puts every keyword, they go to the base's constructor only
        # (in the groups, state_dtype="int8" was refused as a group entry the caller never wrote).
        group_kw = {k: v for k, v in kwargs.items() if k not in LOWP_KEYWORDS}
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **group_kw))
        for gi, group in enumerate(self.param_groups):  # (before the base, whose own hint is not SAM's)
            _check_not_half(group["params"], gi)
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        if not isinstance(self.base_optimizer, torch.optim.Optimizer):
            raise TypeError(f"base_optimizer: made a {type(self.base_optimizer).__name__}, not a torch.optim.Optimizer")
        self._link()
        self.defaults.update(self.base_optimizer.defaults)
        self._backups: dict = {}  # id(param) -> its backup tensor (reused from step to step)
        self._moved: list | None = None  # the params the ascent step moved (None: not perturbed)
        self._norm: tuple | None = None  # (device, the 1-element float64 buffer the norm goes to)

    def add_param_group(self, param_group: dict) -> None:
        """A group added after construction goes to the base optimizer (its defaults filled in
        there), with this SAM's ``rho`` / ``adaptive`` unless it sets its own."""
        base = self.__dict__.get("base_optimizer")
        if base is None:  # (torch's __init__ building this optimizer's groups)
            return super().add_param_group(param_group)
        if isinstance(param_group, dict):
            ps = param_group.get("params")  # (a list read here; an iterator is the base's to consume)
            _check_not_half(
                [ps] if isinstance(ps, torch.Tensor) else ps if isinstance(ps, (list, tuple)) else (),
                len(self.param_groups),
            )
            param_group.setdefault("rho", self.defaults["rho"])
            param_group.setdefault("adaptive", self.defaults["adaptive"])
        base.add_param_group(param_group)
        self._link()

    def __getstate__(self) -> dict:
        """pickle / ``copy.deepcopy``: the base optimizer (whose groups and state this one shows)
        and, between ``first_step`` and ``second_step``, each moved param with its backup of ``w``."""
        moved = self._moved
        pairs = None if moved is None else [(p, self._backups[id(p)]) for p in moved]
        return {**super().__getstate__(), "base_optimizer": self.base_optimizer, "_moved_backups": pairs}

    def __setstate__(self, state: dict) -> None:
        pairs = state.pop("_moved_backups", None)
        super().__setstate__(state)
        self._link()
        self._backups = {id(p): b for p, b in pairs or ()}  # (keyed by the copies' ids)
        self._moved = None if pairs is None else [p for p, _ in pairs]
        self._norm = None

    def _link(self) -> None:
        """Share the base optimizer's groups and state (so ``opt.state[p]`` shows its momentum)."""
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state

    # ---- the two steps -------------------------------------------------------------------------

    def _hyper(self) -> tuple:
        """(rho, adaptive) of every group, checked: one value of each for the one fused call."""
        first: tuple | None = None
        for i, g in enumerate(self.param_groups):
            rho = f"param_groups[{i}]['rho']"
            here = (
                nonnegative(rho, host_number(g["rho"], rho)),
                _backend.flag(f"param_groups[{i}]['adaptive']", g["adaptive"]),
            )
            if first is not None and here != first:
                # (the checked values: a NumPy scalar's repr read "np.float64(0.2)")
                key, at = ("rho", 0) if here[0] != first[0] else ("adaptive", 1)
                raise ValueError(
                    f"param_groups[{i}]['{key}']: {here[at]!r}, param_groups[0]'s is {first[at]!r} "
                    "(one rho and one adaptive for all groups: the ascent step is one call over the global norm)"
                )
            first = first or here
        assert first is not None  # (an optimizer has a group)
        return first

    def _with_grads(self, adaptive: bool) -> tuple:
        """The params that have a grad, each checked with it (errors name both), and their names.
        ASAM's complex params are refused: the reference's scale ``p ** 2`` of a complex param is not
        its real view's."""
        ps, names = [], []
        for gi, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                if p.grad is not None:
                    names.append(f"param_groups[{gi}]['params'][{j}]")
                    _views.check_tensor(
                        p, names[-1], _views._FLOATS if adaptive else _views.TYPES, "with adaptive=True", _HALF_HINT
                    )
                    check_grad(p, p.grad, gi, j)
                    ps.append(p)
        _views.check_one_kind(ps, names, "the ascent step is one call: one dtype, one device")
        _inference.refuse_tensors(ps, names.__getitem__)  # (the reference's in-place ascent raises)
        return ps, names

    def _backup(self, p: torch.Tensor) -> torch.Tensor:
        b = self._backups.get(id(p))
        if (
            b is None
            or b.shape != p.shape
            or b.dtype is not p.dtype
            or b.device != p.device
            or b.stride() != p.stride()
            or (b.is_inference() and not _inference.enabled())  # (made inside inference mode; the reference clones)
        ):
            b = self._backups[id(p)] = torch.empty_like(p)  # (preserve_format: p's layout)
        return b

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """``w -> w + rho g / (||g|| + 1e-12)`` (ASAM: ``rho w^2 g / (||w g|| + 1e-12)``), ``w`` kept.
        Params without a grad stay where they are."""
        if self._moved is not None:
            raise RuntimeError("first_step: the params are already perturbed (call second_step first)")
        rho, adaptive = self._hyper()
        try:
            self._ascend(rho, adaptive)
        except _views.GradLayout:  # (met before anything is written: read through copies in the params' layouts)
            with _relaid.relaid_grads(self.param_groups, {}):  # (the ascent writes the params only)
                self._ascend(rho, adaptive)
        if zero_grad:
            self.zero_grad()

    def _ascend(self, rho: float, adaptive: bool) -> None:
        """``first_step``'s checks and move of the params with a grad."""
        ps, names = self._with_grads(adaptive)
        # a Ctrl-C during the kernel raised as it returned, before ``_moved`` recorded the move: the
        # params at the ascent point, w only in the backups, second_step refused (held: ``_atomic``)
        with deferring(sum(p.numel() for p in ps)):
            self._perturb(ps, names, rho, adaptive)

    def _perturb(self, ps: list, names: list, rho: float, adaptive: bool) -> None:
        """``first_step``'s move of ``ps`` (checked; ``names``: theirs in ``param_groups``) and its record."""
        if ps:
            grads = [p.grad for p in ps]
            backups = [self._backup(p) for p in ps]
            with _views.on_stream(ps[0]):
                mod = _backend.backend(("params", [_views.view(ps[0])]))
                if self._norm is None or self._norm[0] != ps[0].device:  # (one buffer per device, not per step)
                    self._norm = (ps[0].device, _backend.scalar_buffer(_views.view(ps[0])))
                out = self._norm[1]
                views, bviews = _views.views(ps), _views.views(backups)
                try:  # (the kernel refuses aliasing before it writes: the spans are looked at only then)
                    mod.sam_perturb_(views, _views.views(grads), bviews, rho, _EPS, out, adaptive)
                except ValueError:
                    # two params in one memory: the kernel named them params[1] / params[0], its own
                    # arguments; named here as the caller knows them (nothing was written)
                    _backend.check_disjoint([(*tensor_span(p), n) for p, n in zip(ps, names) if p.nbytes])
                    shared = _in_params(ps, grads)
                    if not shared:
                        raise
                    for i in shared:  # read as before the move, the reference's e_w = p.grad * scale
                        grads[i] = grads[i].clone()
                    mod.sam_perturb_(views, _views.views(grads), bviews, rho, _EPS, out, adaptive)
            # written through views autograd does not see: bumped as torch's in-place add_ bumps them, so a
            # backward through a graph that saved the params raises as with the reference (not silently wrong)
            torch.autograd.graph.increment_version(ps)
        self._moved = ps

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Back to the very bits of ``w``, then the base optimizer's step with the grads now in
        ``.grad`` (those of the ascent point)."""
        if self._moved is None:
            raise RuntimeError("second_step: call first_step first")
        with deferring(sum(p.numel() for p in self._moved)):  # (back at w and stepped, or neither)
            self._restore()
            self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def _restore(self) -> None:
        ps, self._moved = self._moved or [], None
        for i in _in_params(ps, [p.grad for p in ps]):
            # a grad in a param's memory: w written back there would replace the ascent point's
            # gradient the base optimizer steps with (the reference rebinds p.data instead)
            ps[i].grad = ps[i].grad.clone()
        if ps:
            with _views.on_stream(ps[0]):
                mod = _backend.backend(("params", [_views.view(ps[0])]))
                mod.sam_restore_(_views.views(ps), _views.views([self._backups[id(p)] for p in ps]))
            torch.autograd.graph.increment_version(ps)  # (as first_step's)

    @serialized
    @torch.no_grad()
    def step(self, closure=None):
        """``first_step(zero_grad=True)``, ``closure()`` (the forward and backward at the ascent
        point, with grad enabled), ``second_step()``; call it after the backward at ``w``. If the
        closure raises, the params go back to ``w`` first. Returns None, as the reference does."""
        if not callable(closure):
            raise TypeError(
                "closure: SAM.step needs a callable doing the second forward and backward, "
                f"got {type(closure).__name__}"
            )
        # the closure interruptible; a Ctrl-C during a write held until the closure is called (the
        # params then go back to w, as when it raises) or the step's end (``_atomic``)
        with Uninterrupted() as guard:
            self.first_step(zero_grad=True)
            try:
                guard.call(torch.enable_grad()(closure))
            except BaseException:
                self._restore()
                raise
            self.second_step()

    # ---- checkpoints: the base optimizer's ---------------------------------------------------------

    @serialized
    def state_dict(self) -> dict:
        """The base optimizer's ``state_dict`` (its groups hold ``rho`` and ``adaptive``), with the
        hooks registered on this optimizer run around it as torch's ``state_dict`` runs them (the
        reference's is torch's own: ``register_state_dict_pre_hook`` / ``post_hook`` on the SAM)."""
        for pre in list(self._optimizer_state_dict_pre_hooks.values()):
            pre(self)
        sd = self.base_optimizer.state_dict()
        for post in list(self._optimizer_state_dict_post_hooks.values()):
            out = post(self, sd)
            if out is not None:
                sd = out
        return sd

    @serialized
    def load_state_dict(self, state_dict: dict) -> None:
        """From :meth:`state_dict`, or the reference implementation's (its transient ``old_p``
        entries dropped); the base optimizer checks the rest. The load hooks registered on this
        optimizer run as torch's loader (the reference's) runs them: the pre-hooks first, on a
        shallow copy, what they return loaded; the post-hooks after."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        if self._moved is not None:
            raise RuntimeError("load_state_dict: the params are perturbed (call second_step first)")
        state_dict = state_dict.copy()
        for pre in list(self._optimizer_load_state_dict_pre_hooks.values()):
            out = pre(self, state_dict)
            if out is not None:
                state_dict = out
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: a load pre-hook returned a {type(state_dict).__name__}, not a dict")
        self._load(state_dict)
        for post in list(self._optimizer_load_state_dict_post_hooks.values()):
            post(self)

    def _load(self, state_dict: dict) -> None:
        sd = dict(state_dict)
        if isinstance(sd.get("state"), dict):
            sd["state"] = {
                k: {n: v for n, v in e.items() if n != "old_p"} if isinstance(e, dict) else e
                for k, e in sd["state"].items()
            }
            sd["state"] = {k: e for k, e in sd["state"].items() if e != {}}
        for i, g in enumerate(sd.get("param_groups") or []):
            if isinstance(g, dict):
                rho = f"state_dict['param_groups'][{i}]['rho']"
                nonnegative(rho, host_number(g.get("rho", self.defaults["rho"]), rho))
                _backend.flag(
                    f"state_dict['param_groups'][{i}]['adaptive']", g.get("adaptive", self.defaults["adaptive"])
                )
        self.base_optimizer.load_state_dict(sd)
        # a saved group without them (the base optimizer's own checkpoint) takes this SAM's, as a group
        # added without them does: torch's loader put the saved group in, and every step raised KeyError
        for g in self.base_optimizer.param_groups:
            g.setdefault("rho", self.defaults["rho"])
            g.setdefault("adaptive", self.defaults["adaptive"])
        self._link()


def _in_params(ps: list, grads: list) -> list:
    """The indices of the ``grads`` (of the params ``ps``, on their device; None for none) whose
    memory overlaps some param's (:func:`optkern._overlap.in_spans`): strided spans
    (:func:`optkern._overlap.tensor_span`; ``data_ptr() + nbytes`` missed a strided gradient reaching
    into a param), a conservative bound (an interleaved gradient is copied, never read moved)."""
    at = [i for i, g in enumerate(grads) if g is not None]
    if not ps or not at:
        return []
    lo, hi = np.array([tensor_span(p) for p in ps], np.int64).T
    glo, ghi = np.array([tensor_span(grads[i]) for i in at], np.int64).T
    return [at[j] for j in in_spans(lo, hi, glo, ghi)]


def _check_not_half(params, gi: int) -> None:
    """TypeError naming a float16 / bfloat16 param of group ``gi`` with SAM's hint (its ascent step
    refuses them at every step; the base optimizer's hint sent the caller to master_weights=True)."""
    for j, p in enumerate(params):
        if isinstance(p, torch.Tensor) and p.dtype in (torch.float16, torch.bfloat16):
            _views.check_tensor(p, f"param_groups[{gi}]['params'][{j}]", _views.TYPES, "", _HALF_HINT)
