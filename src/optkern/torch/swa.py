"""optkern.torch.AveragedModel: ``torch.optim.swa_utils.AveragedModel`` whose update folds every
float32 parameter (and buffer, with ``use_buffers``) into the average in one fused pass.

torch averages on the CPU one tensor at a time (its foreach kernels are for CUDA): ``a + (p - a) /
(n + 1)`` per tensor for SWA, ``torch._foreach_lerp_`` (a loop over the tensors) for EMA. Here the
float32 tensors go to optkern's ``swa_lerp_`` in one call (CPU: one OpenMP pass over all of them;
CUDA: one launch on torch's current stream), with torch's lerp: ``lerp(a, p, 1 / (n + 1))`` for SWA,
``lerp(a, p, 1 - decay)`` for EMA (torch's CUDA bits). torch's CPU SWA formula rounds differently,
and the two averages drift apart as updates accumulate rounding: after 200 updates of a Linear(64, 64)
a third of the elements differed, most by a few ulps, but by thousands of ulps of the result where the
mean is near 0 (cancellation). Both are equally accurate: against the float64 mean of the iterates,
each erred by at most 2.6 float32 eps times the largest |mean| (0.23 on average). complex64 tensors
are averaged as their float32 real views (a lerp with a real weight is one per component). Tensors of
other dtypes, or on another device than their average, take torch's own formula. The first update copies,
as torch's does.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch.optim import swa_utils

from .. import _backend
from .._atomic import deferring
from . import _inference, _views
from ._handover import _data_key


def get_ema_multi_avg_fn(decay: float = 0.999):
    """torch's ``get_ema_multi_avg_fn(decay)`` (the same function, usable with torch's own
    AveragedModel), marked so that :class:`AveragedModel` runs it fused."""
    fn = swa_utils.get_ema_multi_avg_fn(decay)
    fn._optkern_ema_decay = float(decay)
    return fn


class AveragedModel(swa_utils.AveragedModel):
    """``torch.optim.swa_utils.AveragedModel`` (same signature), its SWA average (no ``avg_fn`` /
    ``multi_avg_fn``) and its EMA (``multi_avg_fn=optkern.torch.get_ema_multi_avg_fn(decay)``) fused
    over the float32 tensors; any other ``avg_fn`` / ``multi_avg_fn`` runs as in torch."""

    def _lerp_weight(self) -> float | None:
        """The lerp weight of this update, or None where the average is not one optkern fuses: another
        rule, or a weight outside [0, 1] (an EMA decay above 1 or NaN, a count set below 0), which
        torch's formula takes (extrapolating) and the fused kernel refuses."""
        n = int(self.n_averaged)
        if self.avg_fn is None and self.multi_avg_fn is None:
            w = 1.0 / (n + 1) if n != -1 else math.nan
        else:
            decay = getattr(self.multi_avg_fn, "_optkern_ema_decay", None)
            if self.avg_fn is not None or decay is None:
                return None
            w = 1.0 - decay
        return w if 0.0 <= w <= 1.0 else None

    def _tensors(self, module) -> list:
        return list(module.parameters()) + (list(module.buffers()) if self.use_buffers else [])

    def _plan(self, model) -> tuple:
        """(views of the fused averages, of their model tensors, the (average, model tensor, torch's SWA
        rule for them: ``_swa_rule``) triples torch's formula takes), kept while the same tensors hold
        the same memory: the per-tensor checks and views cost more than the fused pass on a many-tensor
        model."""
        ours, theirs = self._tensors(self.module), self._tensors(model)
        both = ours + theirs
        # (where their memory is and how they lay it out: a model param transposed in place, or
        # narrowed, at the same address kept its old view, averaged with other elements than torch's)
        key = (tuple(map(id, both)), _data_key(both))
        cached = getattr(self, "_fused_plan", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        fused, rest = [], []
        for a, p in zip(ours, theirs):
            a, p = a.detach(), p.detach()
            same = a.dtype in _FUSED and p.dtype is a.dtype and a.device == p.device
            same = same and not (a.is_conj() or p.is_conj())
            # an average and its model tensor in one memory (``update_parameters(avg.module)``, which
            # torch takes): the fused pass refuses aliasing arrays, torch's formula does not
            same = same and not _shares_storage(a, p)
            if same and a.device.type in ("cpu", "cuda") and _views.same_layout(a, p) and _dense(a):
                fused.append((a, p))
            else:
                rest.append((a, p, _swa_rule(a)))  # (its device and dtype: fixed while the plan holds)
        first = fused[0][0] if fused else None  # (the device and stream of the fused call)
        n = sum(a.numel() for a in ours)  # (what an update writes: ``deferring``'s measure)
        plan = ([_views.view(a) for a, _ in fused], [_views.view(p) for _, p in fused], rest, first, n)
        if cached is not None:
            cached[2].detach()
        # (its views hold the model's memory: dropped when the model is, not at the next update; made
        # per update instead, they cost a third of a 200-tensor update)
        self._fused_plan = (key, plan, weakref.finalize(model, _drop_plan, weakref.ref(self), key))
        return plan

    def __getstate__(self) -> dict:
        """pickle / ``torch.save`` / ``copy.deepcopy``: torch's module state without the fused plan,
        made again by the next update. It holds views of this average's and of the last model's
        memory (a pickle carried copies of both; a deep copy's views were the original's) and torch's
        rules for the tensors the fused pass leaves as local functions, which cannot be pickled."""
        state = super().__getstate__()
        state.pop("_fused_plan", None)
        return state

    @torch.no_grad()
    def update_parameters(self, model) -> None:
        """Fold ``model``'s current parameters (and buffers, with ``use_buffers``) into the average."""
        # torch's update writes the averages (through .detach(), which torch lets by) and then raises
        # on ``n_averaged += 1`` when that is an inference tensor (a model made inside inference
        # mode) outside inference mode: refused here before anything is written
        _inference.refuse_tensors([self.n_averaged], lambda _: "n_averaged")
        w = self._lerp_weight()
        if w is None or int(self.n_averaged) == 0:  # (torch's: another rule, or the first copy)
            return super().update_parameters(model)
        averages, params, rest, first, n = self._plan(model)
        # (torch's: the buffers kept in sync with the model's; paired before anything is written)
        synced = [] if self.use_buffers else _paired_buffers(self.module, model)
        # a Ctrl-C during the fused kernel raised as it returned, before ``n_averaged`` counted the
        # update: the next one then weighted it 1 / n for 1 / (n + 1) (held to the end: ``_atomic``)
        with deferring(n):
            if first is not None:
                with _views.on_stream(first):
                    mod = _backend.backend(("averages", averages[:1]))
                    mod.swa_lerp_(averages, params, w)
            for a, p, rule in rest:
                self._torch_rule(a, p.to(a.device), rule)
            for b, mb in synced:
                b.detach().copy_(mb.detach().to(b.device))
            self.n_averaged += 1

    def _torch_rule(self, a: torch.Tensor, p: torch.Tensor, rule) -> None:
        """One tensor the fused pass does not take, averaged as torch averages it: by ``multi_avg_fn``
        where one is given, else by ``rule`` (``_swa_rule(a)``: torch's SWA rule for its device)."""
        n = self.n_averaged.to(a.device)
        if self.multi_avg_fn is not None:
            self.multi_avg_fn([a], [p], n)
        else:
            rule(a, p, n)


def _drop_plan(ref, key) -> None:
    """The averaged model ``ref()``'s fused plan dropped, if still the one made with ``key``: its model
    was freed (a finalizer's callback, holding the averaged model weakly)."""
    avg = ref()
    cached = None if avg is None else avg.__dict__.get("_fused_plan")
    if cached is not None and cached[0] == key:
        del avg.__dict__["_fused_plan"]


def _swa_rule(a: torch.Tensor):
    """torch's SWA rule for ``a``'s device and dtype, as ``rule(a, p, n)`` writing ``a``: the foreach lerp
    by ``1 / (n + 1)`` (a float32 weight) for floating tensors on the devices with foreach kernels (CUDA),
    and ``a + (p - a) / (n + 1)`` elsewhere. (The latter for every tensor: a float64 or 16-bit tensor on
    the GPU was averaged apart from torch's, by up to 3e-8 after 6 updates in float64.) An integer buffer
    (``use_buffers=True``: BatchNorm's ``num_batches_tracked``) keeps the latter on every device: torch's
    foreach rule for it raises "Integer division with addcdiv is no longer supported" at the second
    update on the GPU."""
    if _foreach_device(a) and (a.is_floating_point() or a.is_complex()):
        multi = swa_utils.get_swa_multi_avg_fn()
        return lambda a, p, n: multi([a], [p], n)
    single = swa_utils.get_swa_avg_fn()
    return lambda a, p, n: a.copy_(single(a, p, n))


def _foreach_device(t: torch.Tensor) -> bool:
    """Whether torch's AveragedModel averages ``t``'s device with its foreach rule (torch's own test;
    a torch without it, before its multi-tensor averages, has no such rule: none)."""
    devices = getattr(swa_utils, "_get_foreach_kernels_supported_devices", None)
    return devices is not None and t.device.type in devices()


def _paired_buffers(module, model) -> list:
    """(the average's buffer, the model's) pairs, or ValueError naming ``model`` where their counts
    differ (torch pairs them with ``zip(..., strict=True)``: Python 3.9 has no ``strict``, and its
    TypeError came at every update; and zip's ValueError came after the averages were written,
    before ``n_averaged`` counted them)."""
    ours, theirs = list(module.buffers()), list(model.buffers())
    if len(ours) != len(theirs):
        raise ValueError(f"model: has {len(theirs)} buffers, the averaged module {len(ours)} (kept in sync with them)")
    return list(zip(ours, theirs))


_FUSED = (torch.float32, torch.complex64)  # (complex64: its float32 real view)


def _dense(t: torch.Tensor) -> bool:
    """Contiguous, or contiguous in another order of its dims (what ``_views.view`` takes)."""
    return t.is_contiguous() or _views.dense_order(t) is not None


def _shares_storage(a: torch.Tensor, p: torch.Tensor) -> bool:
    """Whether ``a`` and ``p`` are views into one storage (of any overlap)."""
    ptr = a.untyped_storage().data_ptr()
    return ptr != 0 and ptr == p.untyped_storage().data_ptr()
