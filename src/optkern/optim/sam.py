"""Sharpness-aware minimization (Foret, Kleiner, Mobahi & Neyshabur 2021) around any optkern optimizer.

One SAM step: the gradient ``g`` at ``w``; the ascent point ``w + rho g / (||g|| + eps)`` (one native
call: the global norm, then backup and move in one pass); the gradient ``g'`` there; back to the
very bits of ``w`` (a native copy) and the wrapped optimizer's step with ``g'``. With ``rho = 0``
the params never move and the result equals the wrapped optimizer's, bit for bit. Adaptive SAM
(ASAM, Kwon, Kim, Park & Choi 2021; ``adaptive=True``) scales the neighbourhood by the weights:
the ascent point ``w + rho w^2 g / (||w g|| + eps)`` (element-wise products).
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any

import numpy as np

from .. import _backend
from .._array_checks import byte_span
from .._atomic import Uninterrupted, deferring
from .._hyper_scalars import nonnegative  # (a NumPy float16 rho refused, as the optimizers refuse one)
from .._pickling import NativeByName
from .._serial import serialized
from ._closure import call, closure_loss
from ._given import _bump_torch_versions
from ._sam_alias import copy_shared, root


class SAM(NativeByName):
    """SAM wrapping an optkern optimizer (``base``), whose ``param_groups`` it shares.

    Args:
      base: any optkern optimizer exposing ``param_groups`` and ``step(grads)``.
      rho: the neighbourhood radius (>= 0).
      eps: added to ``||g||`` (as in the reference implementation; with ``eps = 0`` a zero ``||g||``
        leaves the ascent point at ``w``, as any ``eps > 0`` does, instead of ``rho / 0``). A
        norm so small that ``rho / (||g|| + eps)`` is past the params' dtype (float32 gradients
        below ~1e-38 with ``eps = 0``) still moves ``w`` by ``rho g / ||g||``, as the gradient
        scaled into range does (the scale's exponent carried apart: ``rules::sam_scale_split``), where
        the scale was inf and every moved param inf or NaN.
      adaptive: ASAM's ascent step (``w^2 g`` over ``||w g||``; rho of 0.5 to 2 is typical there).

    ``step(closure)``: ``closure() -> (loss, grads)`` at the current params (grads in the order of
    the params of all groups); evaluated twice. Returns the loss at ``w``. Or call
    ``first_step(grads)`` and ``second_step(grads)`` yourself. A None grad (a param without a
    gradient) leaves its param where it is in the ascent step, and the wrapped optimizer's step
    skips it. ``grad_norm`` holds ``||g||`` of the last ascent step. A bad closure result raises
    TypeError / ValueError naming ``closure``; an error at the ascent point (that, or the closure's
    own exception) first puts the params back to ``w``. A gradient in a param's memory (a closure of
    ``|w|^2 / 2`` returning ``w`` itself) steps as in the reference SAM (davda54/sam) and
    ``optkern.torch.SAM``: read as it was before any param moved, and given to the wrapped optimizer
    with the ascent point's values (``._sam_alias``).

    Non-finite values: ``step(closure)`` refuses a NaN / Inf loss or gradient from either
    evaluation (ValueError naming ``closure``, as LBFGS and NewtonCG refuse theirs), the params
    at ``w`` and the wrapped optimizer's state untouched. ``first_step`` / ``second_step`` take
    gradients as the wrapped optimizer's ``step(grads)`` does (optkern's, as PyTorch's, carries a
    NaN / Inf gradient entry into its param and state, no error): a first gradient with NaN / Inf
    entries has no ascent direction, so the params stay at ``w`` (``grad_norm`` NaN / inf), and
    ``second_step`` hands its gradients to the wrapped optimizer as they are. (The ascent step
    used to divide by a NaN norm: every param at the ascent point NaN, and so every gradient there.)
    """

    _dtype = None  # the params' dtype (set by the constructor)
    _disjoint_seen: list | tuple = ()  # the params whose byte spans _param_spans holds (_spans)
    _param_spans: list | tuple = ()
    _param_roots: set | frozenset = frozenset()  # id() of the objects owning their memory (root)

    def __init__(self, base, rho: float = 0.05, eps: float = 1e-12, adaptive: bool = False):
        if not hasattr(base, "param_groups") or not callable(getattr(base, "step", None)):
            raise TypeError(f"base: expected an optkern optimizer (param_groups, step), got {type(base).__name__}")
        from .lbfgs import LBFGS
        from .newton_cg import NewtonCG

        if isinstance(base, (LBFGS, NewtonCG, SAM)):
            # their step takes a closure, not grads: every SAM step evaluated the closure twice, then
            # raised a TypeError naming the closure (the grads were not a callable)
            raise TypeError(
                f"base: {type(base).__name__}.step takes a closure, not grads (SAM wraps an optimizer "
                "whose step(grads) takes the gradients at the ascent point)"
            )
        sharded = sys.modules.get("optkern.distributed.sharded")  # (not imported for this test: MPI)
        if sharded is not None and isinstance(base, sharded.ShardedOptimizer):
            # its param_groups are this rank's slices of its flat buffer, which each step overwrites
            # from the arrays passed in: the ascent step moved the slices, the closure read the
            # unmoved arrays, and the step was the wrapped optimizer's alone (SAM silently lost)
            raise TypeError(
                "base: a ShardedOptimizer's param_groups are its slices of a flat buffer, not the params the "
                "closure reads, and ZeRO-1 cannot shard SAM's whole-gradient ascent step: wrap SAM in "
                "DistributedOptimizer instead (it averages the closure's results)"
            )
        self.base = base
        self.rho = nonnegative("rho", rho)
        self.eps = nonnegative("eps", eps)
        self.adaptive = _backend.flag("adaptive", adaptive)
        ps = self._all_params()
        if len({(p.dtype, _backend.is_cupy(p)) for p in ps}) > 1:
            raise TypeError("base: SAM needs all params on one backend with one dtype")
        if ps:
            _check_ascent_dtype(ps[0].dtype, "base")
        # (None, None: a base whose groups hold no params yet; the first ones its add_param_group
        # takes set them, _checked_params)
        self._mod: Any = _backend.backend(("params", ps)) if ps else None
        self._dtype = ps[0].dtype if ps else None
        self._backups: list | None = None
        self._moved: list = []  # the indices of the params the ascent step moved
        self._perturbed = False
        self._norm_buf: Any = None

    @property
    def param_groups(self):
        return self.base.param_groups

    @property
    def state(self):
        return getattr(self.base, "state", None)

    def _all_params(self) -> list:
        return [p for g in self.base.param_groups for p in g["params"]]

    def _checked_params(self) -> list:
        """``_all_params()``, each checked as the ascent step writes it -- the dtype SAM was made with,
        updatable in place, sharing no memory with another -- and named by its place in
        ``param_groups``. Run before the closure: a group the wrapped optimizer took later
        (``add_param_group``) of another dtype, a param made read-only or two groups' params
        sharing memory were met by the ascent kernel after the closure had run, its error naming
        ``params[1]``, an argument SAM does not have. (A NumPy param's flags are read at once,
        ~0.5 us; the byte spans, ~7 us a param, only when the list holds other arrays than at the
        last check: an array's memory does not change.)"""
        ps: list = []
        dt = self._dtype
        if dt is None:
            # the first param's: a base made with no params (its groups filled later by add_param_group;
            # param_groups[0]['params'][0] was read here, a bare IndexError at every step) or a SAM
            # unpickled from before the dtype was kept. No params at all: nothing to check or move.
            groups = self.base.param_groups
            first = next(((gi, i) for gi, g in enumerate(groups) for i in range(len(g["params"]))), None)
            if first is None:
                return ps
            dt = groups[first[0]]["params"][first[1]].dtype
            _check_ascent_dtype(dt, _param_name(*first[:2]))
        for gi, group in enumerate(self.base.param_groups):
            for i, p in enumerate(group["params"]):
                f = p.flags
                if not (type(p) is np.ndarray and p.dtype == dt and f.c_contiguous and f.writeable and f.aligned):
                    _backend.check_written(p, dt, _param_name(gi, i))  # (raises, or passes a CuPy array)
                ps.append(p)
        self._spans(ps)
        if self._dtype is None or self._mod is None:  # (every param checked: the kind SAM moves from now on)
            self._dtype, self._mod = dt, _backend.backend(("params", ps))
        return ps

    def _spans(self, ps: list) -> list | tuple:
        """The params' ``(first byte, end, name)`` spans (the params ``ps``, as ``_all_params()`` lists
        them), found disjoint (else ValueError naming two); made again only when the list holds other
        arrays than at the last call: an array's memory does not change."""
        seen = self._disjoint_seen
        if len(seen) != len(ps) or any(a is not b for a, b in zip(seen, ps)):
            named = []
            for gi, group in enumerate(self.base.param_groups):
                named += [(*byte_span(p), _param_name(gi, i)) for i, p in enumerate(group["params"]) if p.nbytes]
            _backend.check_disjoint(named)  # (kept only once found disjoint)
            self._param_spans, self._disjoint_seen = named, ps
            self._param_roots = {id(root(p)) for p in ps}
        return self._param_spans

    def _check_grads(self, grads, name="grads") -> list:
        # (None: a param without a gradient)
        ps = self._all_params()
        grads = _backend.check_list_like(_backend.as_list(grads, name), ps, name, none=True)
        for i, g in enumerate(grads):
            # the ascent step's native call and the wrapped optimizer's step take C-contiguous arrays:
            # refused here, naming `name` (step's "closure: grads"), where they named their own "grads[i]"
            if g is not None and not _backend.as_array(g, f"{name}[{i}]").flags.c_contiguous:
                raise ValueError(f"{name}[{i}]: array must be C-contiguous")
        return grads

    def _copy_shared(self, grads: list) -> list:
        """``grads`` with a copy of each one in some param's memory (:func:`._sam_alias.copy_shared`)."""
        ps = self._all_params()
        return copy_shared(grads, ps, self._spans(ps), self._param_roots)

    def first_step(self, grads) -> None:
        """w -> w + rho g / (||g|| + eps), remembering w."""
        self._perturb(grads, "grads")

    def _prechecks(self) -> list:
        """What an ascent step checks before it reads any gradient (``step``: before the closure runs
        a forward and backward pass, where a bad ``rho`` set between steps, a step begun after
        ``first_step`` or a bad param was refused after it); returns the params, checked."""
        if self._perturbed:
            raise RuntimeError("first_step: the params are already perturbed (call second_step first)")
        # the attributes a user may set between steps, checked as the constructor checks them (an
        # adaptive of "yes" reached the native call: a TypeError naming none of SAM's arguments)
        self.rho = nonnegative("rho", self.rho)
        self.eps = nonnegative("eps", self.eps)
        self.adaptive = _backend.flag("adaptive", self.adaptive)
        # a torch tensor given new memory (tensor.data =) followed there first: the ascent step wrote
        # its old memory, the closure read the new one at w, not at the ascent point
        getattr(self.base, "_follow_moved", lambda: None)()
        return self._checked_params()

    def _perturb(self, grads, name: str, ps: list | None = None) -> list:
        """``first_step`` with ``grads`` named ``name`` in errors; returns them, checked, as a list.
        ``ps``: the params as ``_prechecks`` returned them (else it runs here)."""
        ps = self._prechecks() if ps is None else ps
        grads = self._check_grads(grads, name)
        if not ps:  # (a base with no params: the ascent point is w, ||g|| of no gradient 0)
            self._moved, self._perturbed, self._norm_buf = [], True, np.zeros(1)
            return grads
        xp = _backend.array_module(ps[0])
        if (
            self._backups is None
            or len(self._backups) != len(ps)
            or any(b.shape != p.shape for b, p in zip(self._backups, ps))
        ):
            with _backend._device_of(ps[0]):
                self._backups = [xp.empty_like(p) for p in ps]
        out = _backend.scalar_buffer(ps[0])
        moved = [i for i, g in enumerate(grads) if g is not None]
        # a Ctrl-C during the kernel raised as it returned, before the move was recorded: the params
        # at the ascent point, w only in the backups, and second_step refused (not perturbed)
        with deferring(_numel(ps)):
            try:  # (the kernel refuses aliasing before it writes: the spans are looked at only then)
                self._ascend(moved, ps, grads, out)
            except ValueError:
                shared = self._copy_shared(grads)
                if shared is grads:
                    raise
                grads = shared
                self._ascend(moved, ps, grads, out)
            self._bump()
            self._moved = moved
            self._perturbed = True
            self._norm_buf = out
            if self.eps == 0.0 and self.rho > 0.0 and self.grad_norm == 0.0:
                # rho / (||g|| + eps) = rho / 0: the kernel's scale is inf and inf * 0 made every moved
                # param NaN (the closure then saw NaN params; step() raised on their NaN loss). A zero
                # gradient has no ascent direction: the ascent point is w itself, as it is for eps > 0
                # (rho g / eps = 0). The backups hold w's bits. (Read only for eps = 0: a GPU sync.)
                self._mod.sam_restore_(*_pick(self._moved, ps, self._backups))
        return grads

    def _ascend(self, moved: list, ps: list, grads: list, out) -> None:
        """The native ascent step over the params ``moved`` indexes (their backups written too)."""
        self._mod.sam_perturb_(
            *_pick(moved, ps, grads, self._backups), float(self.rho), float(self.eps), out, self.adaptive
        )

    def second_step(self, grads) -> None:
        """Back to w (exactly), then the wrapped optimizer's step with ``grads`` (taken at the ascent point)."""
        if not self._perturbed:
            raise RuntimeError("second_step: call first_step first")
        grads = self._copy_shared(self._check_grads(grads))  # (before w is written back)
        with deferring(_numel(self._all_params())):  # (back at w and stepped, or neither)
            self._restore()
            self.base.step(grads)

    @serialized
    def step(self, closure):
        """One SAM step from ``closure() -> (loss, grads)`` (called twice: at ``w``, then at the
        ascent point); returns the loss at ``w``. TypeError / ValueError naming ``closure`` for a bad
        or non-finite result, the params then back at ``w`` (see the class)."""
        if not callable(closure):
            raise TypeError(f"closure: expected a callable returning (loss, grads), got {type(closure).__name__}")
        ps = self._prechecks()  # (before the closure runs a forward and backward pass)
        # the closure calls interruptible; a Ctrl-C during a write held until the second call (the
        # params then go back to w, as when it raises) or the step's end (``_atomic``)
        with Uninterrupted() as guard:
            closure = functools.partial(guard.call, closure)
            loss, grads = self._call(closure)
            grads = self._perturb(grads, "closure: grads", ps)
            # (the norm finite: every entry is; else the kernel left w unmoved, only backups written)
            if not math.isfinite(self.grad_norm) and not _all_finite(grads):
                self._perturbed = False
                raise ValueError("closure: returned a gradient with NaN or Inf entries (at w)")
            try:
                _, grads2 = self._call(closure)
                grads2 = self._check_grads(grads2, "closure: grads")
                if not _all_finite(grads2):
                    raise ValueError("closure: returned a gradient with NaN or Inf entries (at the ascent point)")
            except BaseException:  # a bad result, or the closure's own error (propagated unchanged)
                self._restore()  # leave w as it was
                raise
            self.second_step(grads2)
        return loss

    def _restore(self) -> None:
        """The params the ascent step moved back to the very bits of ``w``."""
        if self._moved:
            self._mod.sam_restore_(*_pick(self._moved, self._all_params(), self._backups))
        self._bump()
        self._perturbed = False

    def _bump(self) -> None:
        """After the ascent step or the return to ``w`` wrote the params: the version counters of the
        torch tensors among them bumped, as the wrapped optimizer's step bumps them (a graph that saved
        them then refuses its backward instead of differentiating the new values)."""
        _bump_torch_versions(getattr(self.base, "_given_tensors", []))

    @property
    def grad_norm(self):
        """``||g||`` of the last ascent step (None before the first; reading it synchronizes on the GPU)."""
        return None if self._norm_buf is None else float(_backend.to_numpy(self._norm_buf)[0])

    def _call(self, closure):
        loss, grads = call(closure)
        return closure_loss(loss), grads

    @serialized
    def state_dict(self) -> dict:
        """``{"base": the wrapped optimizer's state dict, "rho", "eps", "adaptive"}``. Between
        ``first_step`` and ``second_step``: RuntimeError (save after ``second_step``)."""
        # between the two steps the params hold the ascent point and only the backups hold w: a
        # checkpoint of that moment would resume from the ascent point, w lost. Refused, as
        # load_state_dict refuses that moment, rather than saving the
        # backups too: a SAM step is one call apart, and a checkpoint is taken between steps.
        if self._perturbed:
            raise RuntimeError("state_dict: the params are perturbed (call second_step first, then save)")
        return {"base": self.base.state_dict(), "rho": self.rho, "eps": self.eps, "adaptive": self.adaptive}

    @serialized
    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Restore from :meth:`state_dict`: ``rho``, ``eps`` and ``adaptive`` are checked, then the
        wrapped optimizer loads ``state_dict['base']`` (checking it before it changes anything), then
        they are set. ``strict=False`` ignores unknown keys and keeps this SAM's value of a missing
        ``rho`` / ``eps`` (and is passed on to the wrapped optimizer); a missing ``adaptive`` (a
        checkpoint from before ASAM) reads as False. Between ``first_step`` and ``second_step``:
        RuntimeError, nothing loaded."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        # between first_step and second_step the params hold the ascent point and the backups w:
        # second_step would put w back over what was loaded (optkern.torch.SAM refuses it too)
        if self._perturbed:
            raise RuntimeError("load_state_dict: the params are perturbed (call second_step first)")
        keys = ("base", "rho", "eps", "adaptive")
        for k in keys:
            if k not in state_dict and (strict or k == "base") and k != "adaptive":
                raise ValueError(f"state_dict: missing {k!r} (expected a dict with 'base', 'rho' and 'eps')")
        extra = [k for k in state_dict if k not in keys]
        if strict and extra:
            raise ValueError(
                f"state_dict: unknown key {extra[0]!r} (expected 'base', 'rho', 'eps' and 'adaptive'; "
                "load_state_dict(..., strict=False) ignores it)"
            )
        rho = nonnegative("state_dict['rho']", state_dict.get("rho", self.rho))
        eps = nonnegative("state_dict['eps']", state_dict.get("eps", self.eps))
        adaptive = _backend.flag("state_dict['adaptive']", state_dict.get("adaptive", False))
        base = state_dict["base"]
        if not isinstance(base, dict):
            raise TypeError(
                f"state_dict['base']: expected the wrapped optimizer's state dict, got {type(base).__name__}"
            )
        # strict is passed only when relaxed: a base whose load_state_dict takes no strict still loads
        try:
            self.base.load_state_dict(base, **({} if strict else {"strict": False}))
        except (TypeError, ValueError) as e:  # its messages name paths inside its own state dict
            raise (TypeError if isinstance(e, TypeError) else ValueError)(f"state_dict['base']: {e}") from e
        self.rho, self.eps, self.adaptive = rho, eps, adaptive


def _all_finite(grads: list) -> bool:
    """No NaN / Inf in ``grads`` (None entries skipped); one device sync for CuPy arrays."""
    gs = [g for g in grads if g is not None]
    if not gs:
        return True
    xp = _backend.array_module(gs[0])
    return bool(xp.stack([xp.isfinite(g).all() for g in gs]).all())


def _check_ascent_dtype(dt, name: str) -> None:
    """TypeError naming ``name`` unless the ascent kernels (``sam_perturb_`` / ``sam_restore_``, float32 /
    float64) take params of dtype ``dt``. (A master_weights base's half params: every step ran the
    closure, then sam_perturb_ refused them naming params[0], an argument SAM does not have.)"""
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{name}: SAM's ascent step takes float32 or float64 params, got {dt}")


def _param_name(group: int, i: int) -> str:
    return f"param_groups[{group}]['params'][{i}]"


def _numel(arrays: list) -> int:
    return sum(int(a.size) for a in arrays)


def _pick(index: list, *lists) -> list:
    """Each of ``lists`` at ``index`` only (all of it when ``index`` covers it: no copy needed)."""
    if all(len(index) == len(a) for a in lists):
        return list(lists)
    return [[a[i] for i in index] for a in lists]
