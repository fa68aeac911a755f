"""Sparse (``torch.sparse_coo``) gradients, as torch.optim takes them.

torch's SGD (no momentum, no weight decay) and Adagrad (no weight decay) step a param with a sparse
grad (an ``nn.Embedding(sparse=True)``'s) at its listed elements only; RMSprop, Adadelta, Adam, AdamW
and NAdam refuse one with a RuntimeError. Here each class says which it is (``_sparse_refusal``: the
message torch raises, or None where it takes them; ``_sparse_check``: its rules on the group), and
a step with sparse grads is: every rule checked before anything is written (torch raises mid-step,
after the params before the refused one moved), the dense grads' step, then each sparse grad's.

A sparse grad's elements step through the class's own fused call (the one definition of its
update): the listed elements of the param and its state gathered into dense arrays, stepped with
the grad's values, scattered back. Adagrad's grad is coalesced first (duplicate indices summed:
torch's ``grad.coalesce()``, its update being non-linear). SGD's is not, as torch adds an
uncoalesced grad into the param one entry after the other: the entries are stepped in rounds, the
k-th of each index in round k, so that each element sees its entries in torch's order, rounded as
torch rounds them. Untouched elements are not written (a ``-0.0`` stays; a dense step of zeros
would be ``p - lr * 0``). Steps whose state is made from the grad (SGD's momentum buffer, which torch
keeps sparse) are refused by name, as are the low-precision keywords' steps and complex params.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from . import _inference, _views

if TYPE_CHECKING:
    from ._fused import _Fused


class SparseGrad(TypeError):
    """A sparse grad met by the step's checks: ``_Fused._step`` then steps as torch would
    (``step``), or raises this (its message names the grad) where the class takes none."""


def refuse(name: str) -> None:
    """The error for a sparse grad named ``name`` where the step does not take one."""
    raise SparseGrad(f"{name}: sparse gradients are not supported")


def sparse_params(opt: _Fused) -> list:
    """(group index, group, [(param, its place in the group, its sparse grad)]) per group holding one."""
    out = []
    for gi, group in enumerate(opt.param_groups):
        found = [(p, j, p.grad) for j, p in enumerate(group["params"]) if p.grad is not None and p.grad.is_sparse]
        if found:
            out.append((gi, group, found))
    return out


def step(opt: _Fused, dense_step) -> None:
    """A step with sparse grads: torch's refusals and the class's rules first (``_sparse_check``),
    then ``dense_step()`` (the params with dense grads; the sparse ones hidden from it), then the
    sparse grads' updates. Raises SparseGrad for a grad the class does not take."""
    todo = sparse_params(opt)
    for gi, group, found in todo:
        names = [f"param_groups[{gi}]['params'][{j}].grad" for _, j, _ in found]
        if opt._sparse_refusal is not None:
            raise RuntimeError(opt._sparse_refusal)  # (torch's own, as at its point: before any update)
        if opt._lowp_core is not None:
            refuse(names[0])
        for (p, _, g), name in zip(found, names):
            if p.is_complex() or p.dtype not in _views.TYPES:
                raise TypeError(f"{name}: sparse gradients of {p.dtype} params are not supported")
            if g.dtype != p.dtype or g.shape != p.shape or g.device != p.device:
                raise ValueError(
                    f"{name}: {tuple(g.shape)} {g.dtype} on {g.device} does not match its param "
                    f"{tuple(p.shape)} {p.dtype} on {p.device}"
                )
        opt._hyper(group)  # (its hyper-parameters: refused by name before anything is written)
        opt._sparse_check(group, gi, names)
        for p, j, _ in found:  # (an inference tensor written outside inference mode: torch's error, now)
            st = opt.state.get(p) or {}
            where = f"param_groups[{gi}]['params'][{j}]"
            _inference.refuse_tensors([p], lambda _, where=where: where)
            _inference.refuse_tensors(
                list(st.values()), lambda k, st=st, where=where: f"state[{where}][{list(st)[k]!r}]"
            )
    hidden = [(p, g) for _, _, found in todo for p, _, g in found]
    try:
        for p, _ in hidden:
            p.grad = None
        dense_step()
    finally:
        for p, g in hidden:
            p.grad = g
    for _, group, found in todo:
        for p, _, g in found:
            _step_one(opt, group, p, g)


def _step_one(opt: _Fused, group: dict, p: torch.Tensor, g: torch.Tensor) -> None:
    """One param's update from its sparse grad ``g``: the class's fused call on the listed elements."""
    hp = opt._hyper(group)
    names = opt._stored(hp, p.dtype)
    st: Any = opt.state[p] if names or opt._run_keys else {}
    if opt._run_keys and not st:
        opt._init_state(p, st, group)
    t = int(float(st["step"])) + 1 if "step" in st else 1
    coalesce = opt._sparse_coalesce
    g = g.coalesce() if coalesce else g
    idx, vals = g._indices(), g._values()
    for sel in [None] if coalesce else _rounds(idx, g.shape[: g.sparse_dim()]):
        at = tuple(idx if sel is None else idx[:, sel])
        if not at[0].numel():
            continue
        pv = p.detach()[at].contiguous()
        gv = (vals if sel is None else vals[sel]).contiguous()
        svs = [st[n].detach()[at].contiguous() for n in names]
        lists = {n: [_views.view(s)] for n, s in zip(names, svs)}
        opt._native_step(group, hp, None, [_views.view(pv)], [_views.view(gv)], lists, t, False)
        p.detach().index_put_(at, pv)
        for n, s in zip(names, svs):
            st[n].detach().index_put_(at, s)
    if "step" in st:
        torch._foreach_add_([st["step"]], 1)


def _rounds(idx: torch.Tensor, sizes) -> list:
    """The entries of an uncoalesced grad's indices ``idx`` (sparse dims ``sizes``) in rounds of
    distinct indices: round k holds the k-th entry of each index, in the order they are listed."""
    flat = torch.zeros(idx.shape[1], dtype=torch.int64, device=idx.device)
    for d, n in enumerate(sizes):
        flat = flat * n + idx[d]
    order = torch.sort(flat, stable=True).indices
    _, counts = torch.unique_consecutive(flat[order], return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=idx.device) - starts
    if not rank.numel():
        return []
    return [torch.nonzero(rank == k).reshape(-1) for k in range(int(rank.max()) + 1)]
