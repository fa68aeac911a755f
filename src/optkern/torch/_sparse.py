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
uncoalesced grad into a contiguous param one entry after the other (into a channels_last one it
coalesces it first: ``_coalesced_by_torch``): the entries are stepped in rounds, the k-th of each
index in round k, so that each element sees its entries in torch's order, rounded as torch rounds
them: bit for bit torch's (where torch rounds each ``lr * v`` before adding it -- a coalesced or
one-entry grad without dense dims on the CPU -- the values are so rounded first and stepped with
lr 1: ``_rounds_products``). Adagrad's are its dense step's on the listed elements bit
for bit; torch's sparse path rounds twice where that step rounds once (its sum adds ``g.pow(2)``, its
param the update as ``torch.add`` of a sparse tensor adds, one fused multiply-add where ``addcdiv``
is not): an ulp or so apart. Untouched elements are not written (a ``-0.0`` stays; a dense step of
zeros would be ``p - lr * 0``). On the CPU the elements are gathered and scattered with NumPy (torch's
advanced indexing cost milliseconds a call on a loaded host, and SGD may make hundreds of rounds).
Steps whose state is made from the grad (SGD's momentum buffer, which torch keeps sparse) are refused
by name, as are the low-precision keywords' steps and complex params.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

# (_checks_inputs imports refuse from here: imported as a module, its names read at call time)
from .._foreign import host_number
from . import _checks_inputs, _inference, _views

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
    hps = []  # (each group's hyper-parameters, read once)
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
                _checks_inputs.mismatch(p, g, name)
            _check_indices(g, name)
        hps.append(opt._hyper(group))  # (its hyper-parameters: refused by name before anything is written)
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
    for (_, group, found), hp in zip(todo, hps):
        for p, _, g in found:
            _step_one(opt, group, hp, p, g)


class SparseIndexError(ValueError, IndexError):
    """A sparse grad's index outside its param: a ValueError naming the grad, and the IndexError
    torch's Adagrad raises for an index past the end (after the params before it moved)."""


def _check_indices(g: torch.Tensor, name: str) -> None:
    """SparseIndexError naming grad ``name`` unless each of ``g``'s indices is in [0, size) on its
    dimension. ``torch.sparse_coo_tensor`` builds a grad unchecked by default: NumPy's indexing
    raised an unnamed IndexError after the dense params and the earlier sparse ones were written,
    and read a negative index from the end (``[0, -1]`` stepped ``p[2]``); torch's SGD drops an
    index past the end or writes past the tensor, its Adagrad raises mid-step, a negative index
    corrupted its heap."""
    idx = g._indices()
    if idx.shape[1] == 0:
        return
    for d, (lo, hi) in enumerate(zip(idx.amin(dim=1).tolist(), idx.amax(dim=1).tolist())):
        n = g.shape[d]
        if lo < 0 or hi >= n:
            raise SparseIndexError(
                f"{name}: index {lo if lo < 0 else hi} is out of bounds for dimension {d} with size {n} "
                "(a sparse tensor built unchecked: torch.sparse_coo_tensor(..., check_invariants=True) refuses it)"
            )


def _step_one(opt: _Fused, group: dict, hp, p: torch.Tensor, g: torch.Tensor) -> None:
    """One param's update from its sparse grad ``g`` (``hp``: its group's hyper-parameters, ``opt._hyper``'s):
    the class's fused call on the listed elements."""
    names = opt._stored(hp, p.dtype)
    st: Any = opt.state[p] if names or opt._run_keys else {}
    if opt._run_keys and not st:
        opt._init_state(p, st, group)
    t = int(float(st["step"])) + 1 if "step" in st else 1
    # (torch's path for the grad as given: a grad it coalesces is added along its last path, which
    # rounds once, whatever the coalesced grad would look like)
    products = not opt._sparse_coalesce and _rounds_products(p, g)
    coalesce = opt._sparse_coalesce or _coalesced_by_torch(p, g)
    g = g.coalesce() if coalesce else g
    idx, vals = g._indices(), g._values().contiguous()
    run_group = group
    if products:
        vals, run_group = _rounded_products(vals, group)
    sd = g.sparse_dim()
    flat = torch.zeros(idx.shape[1], dtype=torch.int64, device=idx.device)
    for d, n in enumerate(g.shape[:sd]):  # (the entries' rows of the tensors seen as (rows, *dense dims))
        flat = flat * n + idx[d]
    written = [p] + [st[n] for n in names]
    rows = [r for r in (_rows(x.detach(), sd) for x in written) if r is not None]
    if p.is_cpu and len(rows) == len(written):
        # NumPy's indexing: torch's advanced indexing cost ~1-25 ms a call on a loaded 2-core host
        # (its parallel regions), a round of an uncoalesced grad's entries ~10 us here
        arrays = [r.numpy() for r in rows]
        flat_a, vals_a = flat.numpy(), vals.numpy()
        for sel in [None] if coalesce else _rounds(flat_a):
            at = flat_a if sel is None else flat_a[sel]
            got = [a[at] for a in arrays]
            gv = vals_a if sel is None else vals_a[sel]
            _call(opt, run_group, hp, names, got, gv, t)
            for a, x in zip(arrays, got):
                a[at] = x
        torch.autograd.graph.increment_version(written)  # (written through NumPy: autograd must see it)
    else:
        for sel in [None] if coalesce else _rounds(flat.cpu().numpy()):
            on = None if sel is None else torch.from_numpy(sel).to(idx.device)  # (idx, vals: the grad's device)
            at = idx if on is None else idx[:, on]
            got = [x.detach()[tuple(at)].contiguous() for x in written]
            gv = vals if on is None else vals[on].contiguous()
            _call(opt, run_group, hp, names, [_views.view(x) for x in got], _views.view(gv), t)
            for x, sub in zip(written, got):
                x.detach().index_put_(tuple(at), sub)
    if "step" in st:
        torch._foreach_add_([st["step"]], 1)


def _coalesced_by_torch(p: torch.Tensor, g: torch.Tensor) -> bool:
    """Whether torch's CPU add of sparse ``g`` into ``p`` coalesces it first (its path for a param not
    contiguous -- channels_last -- or values that are not: ``add_out_dense_sparse_cpu``'s last), the
    duplicates summed before they meet the param, not added one after the other."""
    return p.is_cpu and not (p.is_contiguous() and g._values().is_contiguous())


def _rounds_products(p: torch.Tensor, g: torch.Tensor) -> bool:
    """Whether torch's add of sparse grad ``g`` into ``p`` (SGD's ``p.add_(g, alpha=-lr)``) rounds
    each product before its sum: on the CPU, a grad without dense dims that torch takes as coalesced
    (flagged so, or of one entry) into a contiguous param goes through
    ``add_dense_sparse_worker_non_hybrid_cpu``, ``r[i] += alpha * v`` in the param's dtype, two
    roundings. Its other paths (BLAS axpy: dense dims, or several uncoalesced entries) round once,
    as the fused step does."""
    one = g.is_coalesced() or g._nnz() == 1
    return p.is_cpu and g.dense_dim() == 0 and one and p.is_contiguous() and g._values().is_contiguous()


def _rounded_products(vals: torch.Tensor, group: dict) -> tuple:
    """(the grad's values ``vals``, each v made ``lr * v`` rounded to its dtype as torch's two-rounding
    path rounds it (``_rounds_products``: ``alpha = -lr`` cast to the dtype, the same magnitude), and
    ``group`` with lr 1): the fused step's ``p - 1 * v'`` then rounds the sum alone, torch's bits."""
    lr = host_number(group["lr"], "lr")
    return vals * torch.tensor(lr, dtype=vals.dtype, device=vals.device), {**group, "lr": 1.0}


def _call(opt, group: dict, hp, names: tuple, arrays: list, grad, t: int) -> None:
    """The class's fused call on gathered arrays: the param's (``arrays[0]``), its state's (``names``)."""
    if len(arrays[0]):
        lists = {n: [a] for n, a in zip(names, arrays[1:])}
        opt._native_step(group, hp, None, [arrays[0]], [grad], lists, t, False)


def _rows(t: torch.Tensor, sd: int) -> torch.Tensor | None:
    """``t`` as (rows, *dense dims) over its memory, C-contiguous, or None where it has no such view."""
    try:
        r = t.view(-1, *t.shape[sd:])
    except RuntimeError:
        return None
    return r if r.is_contiguous() else None


def _rounds(flat) -> list:
    """The entries of an uncoalesced grad (``flat``: their rows, a NumPy array) in rounds of distinct
    rows: round k holds the k-th entry of each row, in the order they are listed (index arrays). One
    stable sort by row and one by rank: a Zipf-distributed batch of 4096 tokens lists a row 300 times."""
    n = flat.size
    if not n:
        return []
    order = np.argsort(flat, kind="stable")
    ranked = flat[order]
    first = np.ones(n, dtype=bool)
    first[1:] = ranked[1:] != ranked[:-1]
    starts = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts
    by_rank = np.argsort(rank, kind="stable")  # (within a round: the listed order)
    return np.split(by_rank, np.cumsum(np.bincount(rank))[:-1])
