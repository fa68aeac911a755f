"""Float64 NumPy references for the normalization layers, written from the
definitions (statistics by np.mean / np.var on float64, gradients from the
chain rule through mean and variance), independent of the kernels."""

import numpy as np


def _norm_axes(x, axes, eps):
    x = np.asarray(x, np.float64)
    # Shift by one sample first: x - k is exact for data close to k, so the
    # mean keeps full precision even for 1e8 + 1e-3 N(0, 1).
    k = x[tuple(slice(0, 1) if a in axes else slice(None) for a in range(x.ndim))]
    mean = k + (x - k).mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    return (x - mean) * rstd, mean, var, rstd


def _norm_axes_backward(dxhat, xhat, rstd, axes):
    """Chain rule through x̂ = (x - μ) r, r = (σ² + ε)^(-1/2), with μ and σ² over `axes`:
    ∂L/∂x = r ∂L/∂x̂ + (∂L/∂μ) / m + (∂L/∂σ²) 2 (x - μ) / m."""
    m = np.prod([xhat.shape[a] for a in axes])
    x_minus_mu = xhat / rstd
    dmean = -(dxhat * rstd).sum(axis=axes, keepdims=True)
    dsigma2 = (dxhat * x_minus_mu).sum(axis=axes, keepdims=True) * (-0.5) * rstd**3
    return dxhat * rstd + dmean / m + dsigma2 * 2.0 * x_minus_mu / m


def batch_norm(x, w, b, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    xhat, mean, var, rstd = _norm_axes(x, axes, eps)
    shp = (1, -1) + (1,) * (x.ndim - 2)
    y = xhat * (1.0 if w is None else np.asarray(w, np.float64).reshape(shp)) + (
        0.0 if b is None else np.asarray(b, np.float64).reshape(shp)
    )
    return y, mean.ravel(), var.ravel()


def batch_norm_backward(dy, x, w, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    xhat, _, _, rstd = _norm_axes(x, axes, eps)
    shp = (1, -1) + (1,) * (x.ndim - 2)
    dy = np.asarray(dy, np.float64)
    dxhat = dy * (1.0 if w is None else np.asarray(w, np.float64).reshape(shp))
    return _norm_axes_backward(dxhat, xhat, rstd, axes), (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


def batch_norm_eval(x, w, b, rm, rv, eps):
    shp = (1, -1) + (1,) * (x.ndim - 2)
    xhat = (np.asarray(x, np.float64) - rm.reshape(shp)) / np.sqrt(rv.reshape(shp) + eps)
    wr = 1.0 if w is None else np.asarray(w, np.float64).reshape(shp)
    return xhat * wr + (0.0 if b is None else np.asarray(b, np.float64).reshape(shp))


def layer_norm(x, k, w, b, eps):
    """Normalize over the last k dims."""
    axes = tuple(range(x.ndim - k, x.ndim))
    xhat, mean, var, rstd = _norm_axes(x, axes, eps)
    y = xhat * (1.0 if w is None else np.asarray(w, np.float64)) + (0.0 if b is None else np.asarray(b, np.float64))
    lead = x.shape[: x.ndim - k]
    return y, mean.reshape(lead), rstd.reshape(lead)


def layer_norm_backward(dy, x, k, w, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    xhat, _, _, rstd = _norm_axes(x, axes, eps)
    dy = np.asarray(dy, np.float64)
    dxhat = dy * (1.0 if w is None else np.asarray(w, np.float64))
    lead = tuple(range(x.ndim - k))
    return _norm_axes_backward(dxhat, xhat, rstd, axes), (dy * xhat).sum(axis=lead), dy.sum(axis=lead)


def group_norm(x, G, w, b, eps):
    N, C = x.shape[:2]
    xg = np.asarray(x, np.float64).reshape(N, G, -1)
    xhat, mean, var, rstd = _norm_axes(xg, (2,), eps)
    xhat = xhat.reshape(x.shape)
    shp = (1, -1) + (1,) * (x.ndim - 2)
    y = xhat * (1.0 if w is None else np.asarray(w, np.float64).reshape(shp)) + (
        0.0 if b is None else np.asarray(b, np.float64).reshape(shp)
    )
    return y, mean.reshape(N, G), rstd.reshape(N, G)


def group_norm_backward(dy, x, G, w, eps):
    N, C = x.shape[:2]
    xg = np.asarray(x, np.float64).reshape(N, G, -1)
    xhat, _, _, rstd = _norm_axes(xg, (2,), eps)
    shp = (1, -1) + (1,) * (x.ndim - 2)
    dy = np.asarray(dy, np.float64)
    dxhat = (dy * (1.0 if w is None else np.asarray(w, np.float64).reshape(shp))).reshape(N, G, -1)
    dx = _norm_axes_backward(dxhat, xhat, rstd, (2,)).reshape(x.shape)
    red = (0,) + tuple(range(2, x.ndim))
    return dx, (dy * xhat.reshape(x.shape)).sum(axis=red), dy.sum(axis=red)


def rms_norm(x, k, w, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    x = np.asarray(x, np.float64)
    r = 1.0 / np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
    y = x * r * (1.0 if w is None else np.asarray(w, np.float64))
    return y, r.reshape(x.shape[: x.ndim - k])


def rms_norm_backward(dy, x, k, w, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    m = np.prod(x.shape[x.ndim - k :])
    ms = (x * x).mean(axis=axes, keepdims=True) + eps
    r = ms**-0.5
    g = dy * (1.0 if w is None else np.asarray(w, np.float64))
    # y = x r(x), ∂r/∂x = -x r³ / m
    dx = g * r - x * (r**3) * (g * x).sum(axis=axes, keepdims=True) / m
    return dx, (dy * x * r).sum(axis=tuple(range(x.ndim - k)))


def weight_norm(v, g, dim):
    v = np.asarray(v, np.float64)
    axes = tuple(a for a in range(v.ndim) if dim is None or a != dim % v.ndim)
    n = np.sqrt((v * v).sum(axis=axes, keepdims=True))
    gs = np.asarray(g, np.float64).reshape(n.shape)
    return gs * v / n


def weight_norm_backward(dw, v, g, dim):
    v = np.asarray(v, np.float64)
    dw = np.asarray(dw, np.float64)
    axes = tuple(a for a in range(v.ndim) if dim is None or a != dim % v.ndim)
    n = np.sqrt((v * v).sum(axis=axes, keepdims=True))
    gs = np.asarray(g, np.float64).reshape(n.shape)
    s = (dw * v).sum(axis=axes, keepdims=True)
    dg = (s / n).reshape(np.shape(g))
    dv = gs / n * dw - gs * s / n**3 * v
    return dg, dv
