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

Array-generic (NumPy / CuPy): every step is a BLAS-free elementwise op or
a reduction of the array module.
"""
from __future__ import annotations

from .. import _backend


def _mean(a, axis):
    return a.mean(axis=axis, keepdims=True)


def norm_forward(h, gamma, beta, eps: float, axis: int):
    """``y, (xhat, rstd)``: normalize over ``axis``, then ``gamma * xhat + beta``."""
    xp = _backend.array_module(h)
    mu = _mean(h, axis)
    c = h - mu
    var = _mean(c * c, axis)
    rstd = 1.0 / xp.sqrt(var + eps)
    xhat = c * rstd
    return gamma * xhat + beta, (xhat, rstd)


def _project(u, xhat, rstd, axis):
    return rstd * (u - _mean(u, axis) - xhat * _mean(xhat * u, axis))


def norm_backward(dy, gamma, saved, axis: int):
    """``dh, dgamma, dbeta`` from the output gradient ``dy`` and ``saved = (xhat, rstd)``."""
    xhat, rstd = saved
    return _project(dy * gamma, xhat, rstd, axis), (dy * xhat).sum(axis=0), dy.sum(axis=0)


def norm_rop_forward(rh, gamma, vgamma, vbeta, saved, axis: int):
    """``R{y}`` for a direction ``rh = R{h}`` and parameter directions ``vgamma, vbeta``.

    Returns ``(ry, rsaved)`` where ``rsaved`` is what ``norm_rop_backward`` needs.
    """
    xhat, rstd = saved
    rxhat = _project(rh, xhat, rstd, axis)
    m_xr = _mean(xhat * rh, axis)
    return vgamma * xhat + gamma * rxhat + vbeta, (rxhat, m_xr)


def norm_rop_backward(dy, rdy, gamma, vgamma, saved, rsaved, dh, axis: int):
    """``R{dh}, R{dgamma}, R{dbeta}``: the R-operator of ``norm_backward``.

    ``dh`` is ``norm_backward``'s input gradient for the same ``dy``.
    """
    xhat, rstd = saved
    rxhat, m_xr = rsaved
    g = dy * gamma
    rg = rdy * gamma + dy * vgamma
    rdh = rstd * (rg - _mean(rg, axis) - rxhat * _mean(g * xhat, axis)
                  - xhat * _mean(rg * xhat + g * rxhat, axis)) - (rstd * m_xr) * dh
    return rdh, (rdy * xhat + dy * rxhat).sum(axis=0), rdy.sum(axis=0)
