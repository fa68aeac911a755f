"""Batch and layer normalization for the MLP: forward, backward and the R-operator.

Both normalize ``h`` of shape ``(N, D)`` over one axis (``axis=0``: batch
norm in training mode, statistics over the batch; ``axis=1``: layer norm,
statistics over the features) and apply a per-feature affine map:

    xhat = (h - mean) * rstd,  rstd = 1 / sqrt(var + eps),  y = gamma xhat + beta.

The R-operator is exact, including the dependence of the batch statistics on
the parameters. With ``P(u) = rstd (u - mean(u) - xhat mean(xhat u))`` (the
Jacobian of ``xhat``, symmetric under the mean inner product):

    R{xhat} = P(R{h}),     R{rstd} = -rstd^2 mean(xhat R{h})
    dh      = P(g),        g = gamma * dy
    R{dh}   = -rstd mean(xhat R{h}) dh
              + rstd (R{g} - mean(R{g}) - R{xhat} mean(g xhat) - xhat mean(R{g} xhat + g R{xhat}))

The forward and backward passes use the native kernels of ``optkern.norm``
(``batch_norm`` / ``layer_norm`` and their ``*_backward``), and the R-operators
the fused ``norm_rop_fwd`` / ``norm_rop_bwd`` kernels (cpp/norm_rop.cpp,
cuda/norm_rop.cu), when the forward ran natively; otherwise the array-generic
code below (NumPy / CuPy elementwise ops and reductions), which is also the
tests' independent formulation.
"""

from __future__ import annotations

from .. import _backend
from .. import norm as _NATIVE


def _mean(a, axis):
    return a.mean(axis=axis, keepdims=True)


class Saved:
    """What the backward pass and the R-operator need from a forward pass.

    ``xhat`` and ``rstd`` (broadcastable, ``keepdims`` along ``axis``) are
    formed on first use from the native kernel's statistics.
    """

    def __init__(self, h, native_saved=None, xhat=None, rstd=None, axis=0):
        self.h, self.native_saved, self.axis = h, native_saved, axis
        self._xhat, self._rstd = xhat, rstd

    def _stats(self):
        if self._rstd is None:
            shape = (1, -1) if self.axis == 0 else (-1, 1)
            mean = self.native_saved.mean.reshape(shape)
            self._rstd = self.native_saved.rstd.reshape(shape).astype(self.h.dtype, copy=False)
            self._xhat = (self.h - mean.astype(self.h.dtype, copy=False)) * self._rstd
        return self._xhat, self._rstd

    @property
    def xhat(self):
        return self._stats()[0]

    @property
    def rstd(self):
        return self._stats()[1]


def norm_forward(h, gamma, beta, eps: float, axis: int):
    """``y, saved``: normalize over ``axis``, then ``gamma * xhat + beta``.

    ``axis=0`` is batch norm (training mode: batch statistics), ``axis=1`` layer norm.
    """
    if axis == 0:
        y, ns = _NATIVE.batch_norm(h, gamma, beta, training=True, eps=eps)
    else:
        y, ns = _NATIVE.layer_norm(h, (h.shape[1],), gamma, beta, eps=eps)
    return y, Saved(h, ns, axis=axis)


def _generic_forward(h, gamma, beta, eps: float, axis: int):
    xp = _backend.array_module(h)
    mu = _mean(h, axis)
    c = h - mu
    var = _mean(c * c, axis)
    rstd = 1.0 / xp.sqrt(var + eps)
    xhat = c * rstd
    return gamma * xhat + beta, (xhat, rstd)


def _project(u, xhat, rstd, axis):
    return rstd * (u - _mean(u, axis) - xhat * _mean(xhat * u, axis))


def norm_backward(dy, gamma, saved: Saved, axis: int):
    """``dh, dgamma, dbeta`` from the output gradient ``dy``."""
    if saved.native_saved is not None:
        if axis == 0:
            return _NATIVE.batch_norm_backward(dy, saved.h, gamma, saved.native_saved)
        return _NATIVE.layer_norm_backward(dy, saved.h, gamma, saved.native_saved)
    xhat, rstd = saved.xhat, saved.rstd
    return _project(dy * gamma, xhat, rstd, axis), (dy * xhat).sum(axis=0), dy.sum(axis=0)


def _rop_module(saved):
    """The backend module whose fused kernels compute the R-operator for ``saved``; None for
    statistics from the generic forward (the tests' independent formulation)."""
    if saved.native_saved is None:
        return None
    return _backend.backend(("h", saved.h))


def _flat_stats(saved):
    """The forward's per-group mean and rstd as flat arrays of ``h``'s dtype."""
    dt = saved.h.dtype
    ns = saved.native_saved
    return ns.mean.reshape(-1).astype(dt, copy=False), ns.rstd.reshape(-1).astype(dt, copy=False)


def norm_rop_forward(rh, gamma, vgamma, vbeta, saved, axis: int):
    """``R{y}`` for a direction ``rh = R{h}`` and parameter directions ``vgamma, vbeta``.

    Returns ``(ry, rsaved)`` where ``rsaved = (R{xhat}, mean(xhat R{h}))`` (the
    mean flat, one per group) is what ``norm_rop_backward`` needs.
    """
    mod = _rop_module(saved)
    if mod is not None:
        xp = _backend.array_module(rh)
        mean, rstd = _flat_stats(saved)
        ry, rxhat = xp.empty_like(rh), xp.empty_like(rh)
        m_xr = xp.empty(rstd.shape, rh.dtype)
        mod.norm_rop_fwd(saved.h, mean, rstd, rh, gamma, vgamma, vbeta, ry, rxhat, m_xr, axis)
        return ry, (rxhat, m_xr)
    xhat, rstd = saved.xhat, saved.rstd
    rxhat = _project(rh, xhat, rstd, axis)
    m_xr = _mean(xhat * rh, axis)
    return vgamma * xhat + gamma * rxhat + vbeta, (rxhat, m_xr.reshape(-1))


def norm_rop_backward(dy, rdy, gamma, vgamma, saved, rsaved, axis: int):
    """``dh, R{dh}, R{dgamma}, R{dbeta}``: ``norm_backward``'s input gradient and its R-operator."""
    rxhat, m_xr = rsaved
    mod = _rop_module(saved)
    if mod is not None:
        xp = _backend.array_module(dy)
        mean, rstd = _flat_stats(saved)
        dh, rdh = xp.empty_like(dy), xp.empty_like(dy)
        rdgamma, rdbeta = xp.empty_like(gamma), xp.empty_like(gamma)
        mod.norm_rop_bwd(saved.h, mean, rstd, dy, rdy, gamma, vgamma, rxhat, m_xr, dh, rdh, rdgamma, rdbeta, axis)
        return dh, rdh, rdgamma, rdbeta
    xhat, rstd = saved.xhat, saved.rstd
    m_xr = m_xr.reshape((1, -1) if axis == 0 else (-1, 1))
    g = dy * gamma
    dh = _project(g, xhat, rstd, axis)
    rg = rdy * gamma + dy * vgamma
    rdh = (
        rstd * (rg - _mean(rg, axis) - rxhat * _mean(g * xhat, axis) - xhat * _mean(rg * xhat + g * rxhat, axis))
        - (rstd * m_xr) * dh
    )
    return dh, rdh, (rdy * xhat + dy * rxhat).sum(axis=0), rdy.sum(axis=0)
