"""mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on batches.

Both draw one ``lam ~ Beta(alpha, alpha)`` and one permutation per batch from
a host ``numpy.random.Generator`` (an int seed gives the same draw for NumPy
and CuPy batches), pair example i with example ``perm[i]``, and return soft
targets whose rows are the same convex combination of the two examples'
targets, so each row's label mass stays one.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from .. import _backend


class Mixed(NamedTuple):
    """A mixed batch: inputs, soft targets (N, K), the weight of the original
    example, the partner permutation, and (CutMix) the pasted box
    ``(y1, y2, x1, x2)`` in pixel rows/columns (None for mixup)."""

    x: object
    y: object
    lam: float
    perm: object
    box: tuple | None = None


def _host_rng(rng):
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(_backend.integer("rng", rng, 0))  # NumPy's error would not name rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"rng: expected an int seed, a numpy.random.Generator or None, got {type(rng).__name__}")


def _floating(dt) -> bool:
    """A floating dtype, ml_dtypes' bfloat16 included (a torch bfloat16 batch is viewed as one; NumPy
    does not count it among its floating types, and such a batch was refused as "x: expected a
    floating dtype, got bfloat16")."""
    return np.issubdtype(dt, np.floating) or _backend.is_bfloat16(dt)


_FLOATS = "float16, bfloat16, float32, float64"


def _check_x(x, ndim=None):
    if not (isinstance(x, np.ndarray) or _backend.is_cupy(x)):
        raise TypeError(f"x: expected a numpy or cupy array, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"x: expected an (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x: expected a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    if not _floating(x.dtype):
        raise TypeError(f"x: expected a floating dtype ({_FLOATS}), got {x.dtype}")
    return _backend.array_module(x)


def _float_dtype(dtype) -> np.dtype:
    """``dtype`` as a NumPy floating dtype, else TypeError naming ``dtype``: targets are
    probabilities (an integer or bool one-hot would be mixed in integer arithmetic, a complex one
    is no probability), and None would be NumPy's float64, not this function's default."""
    if dtype is None:
        raise TypeError(f"dtype: expected a floating dtype ({_FLOATS}), got None")
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):  # NumPy's message would not name dtype
        raise TypeError(f"dtype: expected a floating dtype ({_FLOATS}), got {dtype!r}") from None
    if not _floating(dt):
        raise TypeError(f"dtype: expected a floating dtype ({_FLOATS}), got {dt}")
    return dt


@_backend.on_array_device  # (torch tensors, DLPack / array-interface exporters: viewed)
def soft_targets(y, n, num_classes=None, dtype=np.float32):
    """(N, K) soft targets from integer labels (N,) (one-hot of ``dtype``, a floating dtype; needs
    num_classes) or soft targets (N, K) (returned as they are).

    ``n``: the batch size N that ``y`` must have (``x.shape[0]`` in :func:`mixup`). TypeError for a
    ``y`` that is not an integer or float array (or a non-float ``dtype``); ValueError naming ``y``
    for a shape or label out of place, naming ``num_classes`` where it is missing (integer labels),
    below 1 or unlike the soft targets' K."""
    dtype = _float_dtype(dtype)
    n = _backend.integer("n", n, 0)
    if not (isinstance(y, np.ndarray) or _backend.is_cupy(y)):
        raise TypeError(f"y: expected a numpy or cupy array, got {type(y).__name__}")
    xp = _backend.array_module(y)
    if y.shape[:1] != (n,):
        raise ValueError(f"y: expected {_backend.counted(n, 'target')} to match x, got shape {tuple(y.shape)}")
    if not (np.issubdtype(y.dtype, np.integer) or _floating(y.dtype)):
        # a wrong dtype is a TypeError (bool, complex, strings: neither labels nor probabilities)
        raise TypeError(f"y: expected integer labels or float soft targets, got {y.dtype}")
    if np.issubdtype(y.dtype, np.integer):
        if y.ndim != 1:
            raise ValueError(f"y: integer labels must have shape (N,), got {tuple(y.shape)}")
        if num_classes is None:
            raise ValueError("num_classes: required with integer labels")
        k = _backend.integer("num_classes", num_classes, 1)
        _backend.array_elements("num_classes", k, dtype, rows=n)  # (the (n, k) targets: their bytes)
        if n and (int(y.min()) < 0 or int(y.max()) >= k):
            raise ValueError(f"y: labels must be in [0, {k}), got range [{int(y.min())}, {int(y.max())}]")
        out = xp.zeros((n, k), dtype=dtype)
        out[xp.arange(n), y] = 1
        return out
    if y.ndim != 2:
        raise ValueError(
            f"y: expected integer labels (N,) or float soft targets (N, K), got {y.dtype} of shape {tuple(y.shape)}"
        )
    if num_classes is not None and y.shape[1] != _backend.integer("num_classes", num_classes, 1):
        raise ValueError(f"y: has {y.shape[1]} classes but num_classes is {num_classes}")
    # Summed in float64, within the rounding of y's dtype: float16 probabilities each rounded to
    # nearest sum to 1 only within half an ulp of 1 (4.9e-4), and summed in float16 land an ulp off
    # (9.8e-4); atol=1e-4 on the float16 sum refused such rows (a softmax's, at random).
    with np.errstate(invalid="ignore"):  # (inf + -inf: NaN, refused below by name, not NumPy's warning)
        sums = y.sum(axis=1, dtype=np.float64)
    atol = max(1e-4, 4 * float(np.finfo(y.dtype).eps))
    if bool((y < 0).any()) or not bool(xp.allclose(sums, 1.0, atol=atol)):
        raise ValueError("y: soft targets must be non-negative and sum to 1 per row")
    return y


def _targets(y, x, xp, num_classes):
    """``soft_targets`` of ``y`` for the batch ``x`` (on ``xp``, x's array module), y on x's
    module too: a NumPy y with a CuPy x (or the reverse) gave mixed inputs and targets on two
    devices, or an indexing error from the other module."""
    if (isinstance(y, np.ndarray) or _backend.is_cupy(y)) and _backend.array_module(y) is not xp:
        raise TypeError(f"y: expected a {xp.__name__} array like x, got a {_backend.array_module(y).__name__} one")
    return soft_targets(y, x.shape[0], num_classes, x.dtype)


def _draw(alpha, n, rng):
    alpha = _backend.positive("alpha", alpha)
    g = _host_rng(rng)
    return float(g.beta(alpha, alpha)), g.permutation(n), g


def _mix_targets(t, lam, perm):
    return t * t.dtype.type(lam) + t[perm] * t.dtype.type(1.0 - lam)


@_backend.on_array_device  # (torch tensors, DLPack / array-interface exporters: viewed)
def mixup(x, y, alpha=0.2, *, num_classes=None, rng=None) -> Mixed:
    """mixup: ``x' = lam x + (1 - lam) x[perm]``, ``y' = lam y + (1 - lam) y[perm]``.

    Args:
      x: float batch (N, ...), NumPy or CuPy (not modified).
      y: integer labels (N,) (then ``num_classes`` is required) or soft targets (N, K).
      alpha: Beta(alpha, alpha) concentration, > 0; small alpha keeps lam near 0 or 1.
      rng: int seed, numpy.random.Generator or None.
    Returns :class:`Mixed` (x', y', lam, perm).
    """
    xp = _check_x(x)
    n = x.shape[0]
    t = _targets(y, x, xp, num_classes)
    lam, perm, _ = _draw(alpha, n, rng)
    p = xp.asarray(perm)
    # (IEEE as torch's: +inf mixed with -inf is NaN, an overflow inf, without NumPy's warnings --
    # errors under -W error)
    with np.errstate(over="ignore", invalid="ignore"):
        xm = x * x.dtype.type(lam) + x[p] * x.dtype.type(1.0 - lam)
    return Mixed(xm, _mix_targets(t, lam, p), lam, p)


@_backend.on_array_device  # (torch tensors, DLPack / array-interface exporters: viewed)
def cutmix(x, y, alpha=1.0, *, num_classes=None, rng=None) -> Mixed:
    """CutMix: paste a random box of the partner image ``x[perm]`` into each image.

    The box has sides ``(int(H sqrt(1 - lam)), int(W sqrt(1 - lam)))`` around a
    uniform random centre, clipped at the border; targets are mixed with the
    box's actual area: ``lam' = 1 - box_area / (H W)`` is the weight of the
    original image (returned as ``lam``).

    Args:
      x: float batch (N, C, H, W), NumPy or CuPy (not modified).
      y: integer labels (N,) (with ``num_classes``) or soft targets (N, K).
      alpha: Beta(alpha, alpha) concentration, > 0.
      rng: int seed, numpy.random.Generator or None.
    Returns :class:`Mixed` (x', y', lam', perm, box=(y1, y2, x1, x2)).
    """
    xp = _check_x(x, ndim=4)
    n, _, h, w = x.shape
    if h == 0 or w == 0:  # no pixel to draw a box centre from
        raise ValueError(f"x: expected images of at least 1 x 1 pixels, got shape {tuple(x.shape)}")
    t = _targets(y, x, xp, num_classes)
    lam, perm, g = _draw(alpha, n, rng)
    r = math.sqrt(1.0 - lam)
    ch, cw = int(h * r), int(w * r)
    cy, cx = int(g.integers(h)), int(g.integers(w))
    y1, y2 = min(max(cy - ch // 2, 0), h), min(max(cy + ch // 2, 0), h)
    x1, x2 = min(max(cx - cw // 2, 0), w), min(max(cx + cw // 2, 0), w)
    p = xp.asarray(perm)
    out = x.copy()
    out[:, :, y1:y2, x1:x2] = x[p, :, y1:y2, x1:x2]
    lam_box = 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)
    return Mixed(out, _mix_targets(t, lam_box, p), lam_box, p, (y1, y2, x1, x2))
