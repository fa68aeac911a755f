"""Exact curvature operators of the built-in MLP (``optkern.nn.MLP``): the loss Hessian or
Gauss-Newton matrix at given parameters over one or many batches, optionally restricted to the
principal sub-matrix of some layers, and summed over MPI ranks."""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

from .. import _backend, _pool
from ._mlp_checks import _apart, _callers, _check_batches, _check_data, _ieee_quiet, _ready
from ._operator_pickling import refuse_local
from .operators import CurvatureOperator, _operator_class


@_backend.on_array_device  # (params, x, y as torch tensors, DLPack / array-interface exporters: viewed)
def from_mlp(
    model,
    params,
    x=None,
    y=None,
    *,
    kind: str = "hessian",
    batches=None,
    reduction: str = "mean",
    progress: Callable | None = None,
    block=None,
    block_size: int = 16,
    comm=None,
    fixed: bool = False,
    **kwargs,
) -> CurvatureOperator:
    """Exact curvature operator of an ``optkern.nn.MLP`` loss at ``params``.

    ``matmat`` pushes up to ``block_size`` vectors at a time through one forward
    pass (``MLP.hvp_block`` / ``ggn_block``: GEMMs of width ``k * batch``), so
    Hutch++ sketches, block Lanczos and multi-probe SLQ share the forward work.

    Args:
      model: the ``optkern.nn.MLP``.
      params: flat parameters (an array of the model's dtype and ``num_params`` entries, checked here; their
        values are read at each product, or at the first with ``fixed``).
      x, y: one batch; or give ``batches`` instead.
      kind: ``"hessian"`` (Pearlmutter HVP) or ``"ggn"`` (Gauss-Newton: PSD unless the model has a
        ``confidence_penalty``, whose entropy term makes the loss's Hessian in the logits indefinite).
      batches: a re-iterable sequence of ``(x, y)`` mini-batches; each product
        runs over all of them (data-parallel friendly: every batch is independent).
      reduction: ``"mean"`` weights batch ``b`` by ``n_b / sum n_b`` (the mean
        loss over all rows; with batch norm, the mean of per-batch losses),
        ``"sum"`` adds the per-batch products.
      progress: optional ``progress(done, total)`` called after each batch.
      comm: an ``optkern.distributed.Communicator`` (or mpi4py communicator) when the rows
        are split across ranks: ``x, y`` / ``batches`` are this rank's rows (possibly none),
        products are scaled by this rank's share of the global rows and summed over the
        ranks in rank order (``optkern.distributed.distributed``): every rank gets the
        single-process operator on the concatenated data, bit for bit the same everywhere. With
        ``norm="batch"`` each rank normalizes its own rows (as PyTorch's DDP without SyncBatchNorm,
        and as optkern's data-parallel training does): the single-process operator over
        ``batches=[each rank's rows]``, bit for bit, not over the concatenated batch.
      block: None (all parameters), or ``"layerI"`` (1-based: ``"layer1"`` is the
        first Linear layer with its bias and, if any, its normalization's
        ``gamma``/``beta``), or a sequence of such names: the operator is the
        principal sub-matrix of the curvature on those parameters (per-layer
        spectra, traces and top eigenvalues), of size ``block_indices(...)``.
      block_size: the most vectors one block product carries (memory: that many
        times a single product's R-activations).
      fixed: False (default): every product reads ``params`` and the batches as they are then
        (an optimizer may change them in place between products). True: the operator is the
        curvature at the values they hold at its first product, like ``jax.linearize``: it keeps
        a copy of the params and of each batch, and each batch's forward pass (activations, their
        derivatives, the loss head), which every later product reuses: products 1.3-1.6x faster
        (bench/RESULTS.md, 20th session) for the memory of one forward pass per batch.
        Later in-place changes to ``params`` or the batches are not seen: build a new operator.

    With ``comm``, an argument refused on one rank (another ``kind``, ``block`` or ``block_size``
    there, a bad batch) raises on every rank (ValueError / TypeError naming the rank); so do
    valid ones that differ (``kind``, ``block``, ``reduction``) and ``params`` holding other values
    on some rank (compared by a digest: copy rank 0's with ``broadcast_params`` first).
    """
    args = (model, params, x, y, kind, batches, reduction, progress, block, block_size, comm is None, fixed, kwargs)
    if comm is None:
        return _local_operator(*args)[0]
    from ..distributed import distributed, global_share
    from ..distributed.agreement import agree
    from ..distributed.communicator import as_communicator

    comm = as_communicator(comm)
    # this rank's arguments checked inside an exchange every rank makes: a rank alone with a bad one
    # raised while the others waited in global_share's exchange forever
    (op, total), shared = agree(comm, lambda: _with_kind(_local_operator(*args), reduction, params), "from_mlp")
    _check_alike(shared)
    # (a rank without rows takes part in every reduction without applying its operator: weight 0)
    return distributed(op, comm, global_share(total, comm) if reduction == "mean" else float(total > 0))


def _with_kind(local: tuple, reduction: str, params) -> tuple:
    """(``local``, what the ranks' operators must share: the curvature, the block, the reduction, and
    the point it is taken at -- ``params``, by a digest)."""
    from ..distributed.agreement import state_digest

    return local, (f"{local[0].name} (reduction={reduction!r})", state_digest(params))


def _check_alike(shared: list) -> None:
    """ValueError (on every rank: ``shared`` is every rank's :func:`_with_kind`) naming the first rank
    whose operator is another curvature, or at other parameters, than rank 0's: summed, a Hessian on
    one rank and a Gauss-Newton product on another (or two points) is the curvature of nothing."""
    kinds = [k for k, _ in shared]
    r = next((r for r, k in enumerate(kinds) if k != kinds[0]), None)
    if r is not None:
        raise ValueError(
            f"kind, block, reduction: {kinds[r]} on rank {r}, {kinds[0]} on rank 0 (every rank's operator must "
            "be the same curvature of its own rows: pass them alike)"
        )
    r = next((r for r, (_, d) in enumerate(shared) if d != shared[0][1]), None)
    if r is not None:
        raise ValueError(
            f"params: rank {r} holds other values than rank 0 (the curvature is taken at one point: copy rank "
            "0's parameters with optkern.distributed.broadcast_params first)"
        )


def _local_operator(
    model, params, x, y, kind, batches, reduction, progress, block, block_size, alone: bool, fixed, kwargs
) -> tuple:
    """(this rank's operator on its batches, its count of rows): ``from_mlp``'s arguments checked.
    ``alone``: no communicator (then at least one row is needed)."""
    if kwargs:
        raise TypeError(f"from_mlp: unexpected keyword argument {next(iter(kwargs))!r}")
    from ..nn import MLP

    if not isinstance(model, MLP):  # (else an AttributeError at the first product)
        raise TypeError(f"model: expected an optkern.nn.MLP, got {type(model).__name__}")
    # (their kind, dtype and shape cannot change before a product, their values may: an operator over
    # None or float64 params of a float32 model was made, and raised inside the estimator it was given)
    model._check_params(params)
    if progress is not None and not callable(progress):  # (else a TypeError mid-product, unnamed)
        raise TypeError(f"progress: expected a callable progress(done, total) or None, got {type(progress).__name__}")
    if kind not in ("hessian", "ggn"):
        raise ValueError(f"kind: expected 'hessian' or 'ggn', got {kind!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    block_size = _backend.integer("block_size", block_size, lo=1)
    pair = batches is None
    if batches is None:
        if x is None or y is None:
            raise ValueError("x, y: give one batch (x, y) or batches=[(x, y), ...]")
        # (named as the caller gave them: _check_batches below names the pair batches[0])
        for name, a, ndim in (("x", x, 1), ("y", y, 0)):
            if not (hasattr(a, "shape") and getattr(a, "ndim", -1) >= ndim):
                raise TypeError(f"{name}: expected an array, got {type(a).__name__}")
        batches = [(x, y)]
    elif x is not None or y is not None:
        raise ValueError("x, y: give either one batch (x, y) or batches, not both")
    elif isinstance(batches, tuple) and len(batches) == 2 and all(hasattr(b, "ndim") for b in batches):
        # (an (x, y) pair passed as batches would be read as two batches made of rows of x and y)
        raise TypeError("batches: expected a sequence of (x, y) batches, got one (x, y) pair: pass [(x, y)]")
    elif not hasattr(batches, "__iter__") or isinstance(batches, (str, bytes)):
        raise TypeError(f"batches: expected a sequence of (x, y) batches, got {type(batches).__name__}")
    batches = list(batches)  # (once: a generator is read here, and only here)
    _check_batches(batches)
    if not batches and alone:  # (a rank's share of the batches may be none: weight 0, as zero rows)
        raise ValueError("batches: needs at least one (x, y) batch")
    total = sum(int(bx.shape[0]) for bx, _ in batches)
    if total == 0 and alone:
        raise ValueError("x: needs at least one row (every batch is empty)")
    _check_data(model, params, batches, pair)
    # batches without rows add nothing (and the MLP refuses them): a rank's share may be empty
    batches = [(bx, by) for bx, by in batches if int(bx.shape[0])] or batches[:1]
    weights = [int(bx.shape[0]) / max(total, 1) if reduction == "mean" else 1.0 for bx, _ in batches]
    product = model.hvp if kind == "hessian" else model.ggn_vp
    product_block = model.hvp_block if kind == "hessian" else model.ggn_block
    if not isinstance(fixed, bool):
        raise TypeError(f"fixed: expected True or False, got {type(fixed).__name__}")
    held: dict = {}  # (fixed: the copies its first product takes, _frozen_products)
    if fixed:
        product, product_block, ready = _frozen_products(model, params, batches, kind, held)
    else:
        ready = functools.partial(_ready, model, params, batches)
    xp = _backend.array_module(params)
    idx = None if block is None else xp.asarray(block_indices(model, block))

    def over_batches(fn, v, into=None, quad=False):
        out, q = None, 0.0
        for i, ((bx, by), w) in enumerate(zip(batches, weights)):
            if out is None:  # the first batch's product goes straight to `into` when given
                out = fn(params, bx, by, v) if into is None else fn(params, bx, by, v, out=into)
                if quad:  # (fn gives (product, its quadratic form): the form weighted alike)
                    out, q = out[0], out[1] * w
                if w != 1.0:
                    out *= w
            else:
                hv = fn(params, bx, by, v)
                if quad:
                    hv, q = hv[0], q + hv[1] * w
                out += hv * w if w != 1.0 else hv
            if progress is not None:
                progress(i + 1, len(batches))
        return (out, q) if quad else out

    @_pool.pooled  # (the temporaries of every batch's product: optkern/_pool.py)
    def matvec(v):
        if idx is None:
            return over_batches(product, v)
        full = xp.zeros(model.num_params, dtype=model.dtype)
        full[idx] = v
        return over_batches(product, full)[idx]

    @_pool.pooled
    def matmat(V):  # V: (n, k) columns; the MLP takes directions as rows
        out = xp.empty(V.shape, dtype=model.dtype)
        for c0 in range(0, V.shape[1], block_size):
            c1 = min(c0 + block_size, V.shape[1])
            if idx is None:
                rows = xp.ascontiguousarray(V[:, c0:c1].T)
            else:
                rows = xp.zeros((c1 - c0, model.num_params), dtype=model.dtype)
                rows[:, idx] = V[:, c0:c1].T
            r = over_batches(product_block, rows)
            out[:, c0:c1] = (r if idx is None else r[:, idx]).T
        return out

    n = model.num_params if idx is None else int(idx.shape[0])
    name = f"mlp-{kind}" + ("" if block is None else f"[{block if isinstance(block, str) else ','.join(block)}]")

    @_pool.pooled
    def into(v, out):
        # The first batch's product is written straight into `out`, before the later batches are
        # read: each of them is checked first, and `out` against its arrays. Else a bad label in
        # batches[1] raised after `out` held half a product, and an `out` sharing memory with
        # batches[1]'s x was written over it before that batch was read (a wrong product, the
        # caller's data overwritten, no error).
        if len(batches) > 1:
            ready(v, out)
        over_batches(product, v, out)

    # (unchecked: the MLP's own products have the operator's shape and dtype; NaN params or data give
    # NaN products, which the estimators refuse, naming `op`)
    # (a layer block's product is copied into `out` once computed: `out` is checked against the
    # caller's arrays by the operator, as the full product's by MLP._product_out and _ready)
    avoid = None if idx is None else functools.partial(_callers, params, batches)
    op = _operator_class(xp)(
        matvec, n, model.dtype, xp, matmat, name, into if idx is None else None, check=None, avoid=avoid
    )
    if kind == "ggn" and idx is None:
        # (G v, v.G v) for hessian.cg: the curvature from the product's output-space intermediate, not a
        # pass over the n parameters (cpp/cg.cpp's cg_iteration_known_)
        with_form = functools.partial(product, quad=True) if fixed else model._ggn_vp_quad
        op._quad = _pool.pooled(lambda v: over_batches(with_form, v, quad=True))
        if len(batches) == 1 and xp is np:
            # hessian.cg's iteration inside the product (hessian/_cg_fused.py): then(p.G p) after the
            # forward pass, the update fed G p's slices by the backward pass (one batch: its weight is
            # 1 and G p is that batch's alone, complete slice by slice)
            (bx1, by1) = batches[0]

            def fused(v, then):
                out = with_form(params, bx1, by1, v, then=then)
                if progress is not None:
                    progress(1, 1)
                return out

            op._quad_then = _pool.pooled(fused)
    if alone:  # (a distributed operator's products hold a communicator: refused, _operator_pickling.py)
        options = {"kind": kind, "reduction": reduction, "progress": progress, "block": block}
        options.update(block_size=block_size, fixed=fixed)
        op._recipe = functools.partial(_recipe, model, params, batches, pair, options, held)
    return op, total


def _recipe(model, params, batches, pair, options, held, pickling: bool) -> tuple:
    """The operator's functions as pickle's ``(callable, args)``: ``from_mlp`` called again on its model,
    params and batches (the copies a ``fixed`` operator took at its first product, where it has made one:
    the curvature at that point, not at the values the caller's arrays hold now). Bound to no operator
    (its shallow copies share it): the counter, name and other attributes are the pickled operator's
    own, carried beside it (``_operator_pickling._own_state``).
    ``pickling``: a ``progress`` pickle cannot send is refused (a deep copy shares it)."""
    if pickling:
        refuse_local("progress", options["progress"])
    if "params" in held:
        params = held["params"]
        batches = [held.get((id(bx), id(by)), (bx, by))[:2] for bx, by in batches]
    return _rebuilt, (model, params, batches, pair, options)


def _rebuilt(model, params, batches, pair, options):
    """The operator :func:`_recipe` describes (in the process that unpickles it)."""
    x, y = batches[0] if pair else (None, None)
    return from_mlp(model, params, x, y, batches=None if pair else batches, **options)


def _frozen_products(model, params, batches, kind, held: dict):
    """``(product, product_block, ready)`` with the signatures of ``MLP.hvp`` / ``hvp_block`` and
    :func:`_ready` for ``fixed=True``: at a copy of ``params`` and of each batch taken at the first
    product, each batch's point (``MLP._point``) computed once (a batch is known by the identity of
    its arrays, which the operator's list of batches keeps alive), kept in ``held``. ``ready`` takes
    every batch's copy and point before a product is written into ``out``."""
    from ..nn import block as _block

    order = 2 if kind == "hessian" else 1
    single = model._hvp_at if kind == "hessian" else model._ggn_at
    many = _block.hvp_block_at if kind == "hessian" else _block.ggn_block_at
    # held: "params": the copy; (id(x), id(y)) of a batch -> (x, y, point)

    @_ieee_quiet
    def point(p, bx, by):
        if "params" not in held:
            # (every batch checked before the params' copy: a later batch refused in the first product
            # left the params of that refused call held, as a refused `out` did)
            for cx, cy in batches:
                xp, _, _ = model._check(p, cx, cy)
            held["params"] = xp.array(model._read(p))
        key = (id(bx), id(by))
        entry = held.get(key)
        if entry is None:
            xp, x, y = model._check(held["params"], bx, by)
            x, y = xp.array(x), xp.array(y)
            entry = held[key] = (x, y, model._point(held["params"], x, y, order))
        return entry

    def product(p, bx, by, v, out=None, quad=False, then=None):
        # `out` checked against the caller's params and batch, not the copies read here: the product
        # came out right over them, but the caller's weights (or data) were silently overwritten.
        # Before the copies are taken: an `out` over the params, refused, took them at that call,
        # and the operator was the curvature at params the caller then changed before its first product.
        out = model._product_out(out, p, v, bx, by) if then is None else None  # (then: no array, see _ggn_at)
        x, y, pt = point(p, bx, by)
        model._check(held["params"], x, y, v)
        # (quad: the Gauss-Newton product with its quadratic form, as MLP._ggn_vp_quad)
        return single(pt, model._direction(v), out, True, then) if quad else single(pt, model._direction(v), out)

    def product_block(p, bx, by, V):
        x, y, pt = point(p, bx, by)
        _, _, _, V = model._check_block(held["params"], x, y, V)
        with np.errstate(all="ignore"):
            return many(model, pt, V)

    def ready(v, out):
        # `out` over a later batch's x or y is refused as the live operator's _ready does (before
        # anything is written): the copies below would keep the product right, but the caller's data
        # was overwritten, no error
        _apart(out, batches)
        model._product_out(out, params, v, *batches[0])  # (the params and the first batch: as product's, first)
        for bx, by in batches:  # (the copies are taken here, before the first batch's product is written)
            point(params, bx, by)

    return product, product_block, ready


def block_indices(model, block):
    """Flat parameter indices (ascending NumPy int64) of ``block`` in ``model``'s layout.

    ``block``: ``"layerI"`` (1-based) or a sequence of such names; each names one
    Linear layer's ``W``, ``b`` and normalization ``gamma``/``beta``.
    """
    names = [block] if isinstance(block, str) else list(block) if isinstance(block, (list, tuple)) else None
    if not names or not all(isinstance(b, str) for b in names):
        raise TypeError(f"block: expected 'layerI' or a sequence of such names, got {block!r}")
    ranges = []
    for b in names:
        num = b[5:] if b.startswith("layer") else ""
        # (ASCII digits, few enough for int(): str.isdigit is also true of "²" and "①", which int()
        # refuses, and int() refuses more than 4300 digits; both raised its unnamed ValueError)
        digits = num.lstrip("0")
        k = int(digits) if num.isascii() and num.isdigit() and 0 < len(digits) <= 18 else 0
        if not 1 <= k <= model.num_layers:
            raise ValueError(f"block: expected 'layer1' ... 'layer{model.num_layers}', got {b!r}")
        entries = model.layout[k - 1].values()
        lo = min(off for off, _ in entries)
        hi = max(off + math.prod(shape) for off, shape in entries)
        ranges.append((lo, hi))
    if len(set(ranges)) != len(ranges):
        raise ValueError(f"block: names a layer twice: {block!r}")
    return np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi in sorted(ranges)])
