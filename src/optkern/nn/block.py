"""Block curvature products of the MLP: ``k`` directions through ONE forward pass.

``hvp_block`` / ``ggn_block`` compute ``H v_d`` / ``G v_d`` for the ``k`` rows
``v_d`` of ``V`` (``(k, n)``) at once. The ordinary forward pass, the loss
head, and the plain gradient backward chain (``g``, ``g W``, ``f'``, the norm
backward of ``g``) do not depend on the direction: they run once. The
R-quantities of all directions are stacked as ``(k, N, width)`` arrays, so
products with the shared weights are ONE GEMM of width ``k N``
(``(k N, out) @ (out, in)``), and the per-direction ones (``a @ V_W^T``,
weight gradients) are batched GEMMs of the same shapes as ``k`` single
products. The result of each row equals ``MLP.hvp`` / ``MLP.ggn_vp`` of that
row, up to the order of floating-point additions.

Memory: ``k`` times the single product's R-activations (``k N width`` per
hidden layer) on top of one forward pass.
"""

from __future__ import annotations

import numpy as np

from .normalization import norm_backward, norm_rop_backward, norm_rop_forward

_NORM_AXIS = {"batch": 0, "layer": 1}


def block_views(model, V):
    """Per-layer dicts of ``(k, *shape)`` views into the rows of ``V`` (``(k, n)``)."""
    k = V.shape[0]
    return [
        {
            name: V[:, off : off + int(np.prod(shape))].reshape((k,) + tuple(shape))
            for name, (off, shape) in layer.items()
        }
        for layer in model.layout
    ]


def _rop_forward_block(model, P, VB, caches, k):
    """Stacked R-forward: per hidden layer ``Rz`` / ``Ra`` of shape ``(k, N, width)``; returns R{output}."""
    axis = _NORM_AXIS.get(model.norm)
    ra = None
    last = model.num_layers - 1
    for i, (p, v) in enumerate(zip(P, VB)):
        c = caches[i]
        rh = _xp(c["a"]).matmul(c["a"], v["W"].transpose(0, 2, 1))  # k GEMMs (N, in) x (in, out)
        rh += v["b"][:, None, :]
        if ra is not None:
            n_rows = ra.shape[1]
            rh += (ra.reshape(k * n_rows, -1) @ p["W"].T).reshape(k, n_rows, -1)  # one GEMM of width k N
        c["Ra"] = ra
        if i == last:
            return rh
        if model.norm:
            xp = _xp(rh)
            out = xp.empty_like(rh)
            rs = []
            for d in range(k):  # normalization statistics are per direction
                out[d], r = norm_rop_forward(rh[d], p["gamma"], v["gamma"][d], v["beta"][d], c["saved"], axis)
                rs.append(r)
            rh, c["rsaved"] = out, rs
        c["Rz"] = rh
        ra = c["d1"] * rh


def _xp(a):
    from .. import _backend

    return _backend.array_module(a)


def _loss_rop_block(model, head, rout):
    xp = _xp(rout)
    out = xp.empty_like(rout)
    for d in range(rout.shape[0]):
        out[d] = model._loss_rop(head, rout[d])
    return out


def _weight_grad_block(g, a, out, acc=False):
    """``out[d] = g[d]^T a[d]`` (or ``+=``) for stacked ``g`` (k, N, o) and ``a`` ((k,) N, i): batched GEMMs.

    As ``nn._gemm._weight_grad``: formed as ``(a^T g)^T`` (the faster shape of the batch contraction in
    OpenBLAS), stored transposed into the (k, o, i) views.
    """
    xp = _xp(out)
    aT = a.T if a.ndim == 2 else a.transpose(0, 2, 1)
    t = xp.matmul(aT, g).transpose(0, 2, 1)
    if acc:
        out += t
    else:
        out[...] = t


def hvp_block(model, params, x, y, V):
    """``H V^T`` row by row: ``(k, n)`` -> ``(k, n)``; arguments already checked by ``MLP``."""
    return hvp_block_at(model, model._point(params, x, y, 2), V)


def hvp_block_at(model, point, V):
    """``hvp_block`` at a point of ``MLP._point`` (order 2): its caches are copied, not written."""
    P, cached, g, head = point
    caches = [dict(c) for c in cached]
    xp = _xp(V)
    k = V.shape[0]
    VB = block_views(model, V)
    rg = _loss_rop_block(model, head, _rop_forward_block(model, P, VB, caches, k))
    HV = xp.empty_like(V)
    HB = block_views(model, HV)
    axis = _NORM_AXIS.get(model.norm)
    n_rows = caches[0]["a"].shape[0]
    for i in range(model.num_layers - 1, -1, -1):
        c, p, w = caches[i], P[i], VB[i]
        _weight_grad_block(rg, c["a"], HB[i]["W"])
        if c["Ra"] is not None:
            _weight_grad_block(g[None], c["Ra"], HB[i]["W"], acc=True)
        HB[i]["b"][...] = rg.sum(axis=1)
        if i == 0:
            break
        prev = caches[i - 1]
        ga = g @ p["W"]  # shared by every direction
        rga = (rg.reshape(k * n_rows, -1) @ p["W"]).reshape(k, n_rows, -1)
        rga += xp.matmul(g, w["W"])
        gz = ga * prev["d1"]
        rgz = prev["d2"] * prev["Rz"] * ga + prev["d1"] * rga
        if model.norm:
            pg = P[i - 1]["gamma"]
            new_rg = xp.empty_like(rgz)
            for d in range(k):
                dh, new_rg[d], HB[i - 1]["gamma"][d], HB[i - 1]["beta"][d] = norm_rop_backward(
                    gz, rgz[d], pg, VB[i - 1]["gamma"][d], prev["saved"], prev["rsaved"][d], axis
                )
            g, rg = dh, new_rg
        else:
            g, rg = gz, rgz
    return HV


def ggn_block(model, params, x, y, V):
    """``G V^T`` row by row (Gauss-Newton ``J^T H_L J``): ``(k, n)`` -> ``(k, n)``."""
    return ggn_block_at(model, model._point(params, x, y, 1), V)


def ggn_block_at(model, point, V):
    """``ggn_block`` at a point of ``MLP._point``: its caches are copied, not written."""
    P, cached, _, head = point
    caches = [dict(c) for c in cached]
    xp = _xp(V)
    k = V.shape[0]
    VB = block_views(model, V)
    rg = _loss_rop_block(model, head, _rop_forward_block(model, P, VB, caches, k))
    GV = xp.empty_like(V)
    GB = block_views(model, GV)
    axis = _NORM_AXIS.get(model.norm)
    n_rows = caches[0]["a"].shape[0]
    for i in range(model.num_layers - 1, -1, -1):
        c, p = caches[i], P[i]
        _weight_grad_block(rg, c["a"], GB[i]["W"])
        GB[i]["b"][...] = rg.sum(axis=1)
        if i == 0:
            break
        prev = caches[i - 1]
        rg = (rg.reshape(k * n_rows, -1) @ p["W"]).reshape(k, n_rows, -1) * prev["d1"]
        if model.norm:
            new_rg = xp.empty_like(rg)
            for d in range(k):
                new_rg[d], GB[i - 1]["gamma"][d], GB[i - 1]["beta"][d] = norm_backward(
                    rg[d], P[i - 1]["gamma"], prev["saved"], axis
                )
            rg = new_rg
    return GV
