"""Weight initializers (NumPy or CuPy), matching torch.nn.init's formulas.

Every initializer comes twice: ``name_(w, ...)`` fills the array ``w`` in
place and returns it; ``name(shape, ..., dtype=float32, xp=numpy)`` returns
a new array. Randomness comes from ``rng``: an int seed, a
``numpy.random.Generator``, a ``cupy.random.Generator`` or None (fresh
entropy). A seed gives a generator of the array's own library (NumPy for
NumPy arrays, CuPy for CuPy arrays); a NumPy generator also works for CuPy
arrays (numbers drawn on the host, copied over), which makes CPU and GPU
initializations identical.

Fans follow ``torch.nn.init._calculate_fan_in_and_fan_out``: a weight of
shape ``(out, in, *kernel)`` has ``fan_in = in * prod(kernel)`` and
``fan_out = out * prod(kernel)``.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings

import numpy as np

from . import _backend
from .random import _float_dtype, _shape

# ---- fans and gains ----------------------------------------------------------


def _shape_of(w_or_shape) -> tuple:
    if hasattr(w_or_shape, "shape"):
        return tuple(int(s) for s in w_or_shape.shape)
    return _shape(w_or_shape, "w")


def calculate_fan_in_and_fan_out(w_or_shape) -> tuple:
    """(fan_in, fan_out) of a dense ``(out, in)`` or conv ``(out, in, *kernel)`` weight (or its shape)."""
    shape = _shape_of(w_or_shape)
    if len(shape) < 2:
        raise ValueError(f"w: fan in and fan out need at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _mode(mode) -> int:
    """The index of ``mode``'s fan in :func:`calculate_fan_in_and_fan_out`'s pair."""
    if mode == "fan_in":
        return 0
    if mode == "fan_out":
        return 1
    raise ValueError(f"mode: expected 'fan_in' or 'fan_out', got {mode!r}")


_UNIT_GAIN = {
    "linear",
    "identity",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
}


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for ``nonlinearity`` (torch.nn.init.calculate_gain).

    linear / conv / sigmoid: 1; tanh: 5/3; relu: sqrt(2); leaky_relu with
    negative slope ``param`` (default 0.01): sqrt(2 / (1 + param**2)); selu: 3/4.
    """
    if not isinstance(nonlinearity, str):
        raise TypeError(f"nonlinearity: expected a str, got {type(nonlinearity).__name__}")
    if nonlinearity in _UNIT_GAIN:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else _backend.real("param", param)
        if abs(slope) < 1e150:
            return math.sqrt(2.0 / (1 + slope**2))  # torch's formula, to the bit
        return math.sqrt(2.0) / abs(slope)  # where slope**2 overflows: the same number, to rounding
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"nonlinearity: unsupported {nonlinearity!r}")


# ---- random numbers ------------------------------------------------------------


def _is_cupy_generator(rng) -> bool:
    return type(rng).__module__.startswith("cupy")


def _check_rng(rng) -> None:
    """TypeError / ValueError naming ``rng`` unless it is None, a seed >= 0 or a Generator."""
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        _backend.integer("rng", rng, 0)  # NumPy's own error would not say which argument
    elif not (rng is None or isinstance(rng, np.random.Generator) or _is_cupy_generator(rng)):
        raise TypeError(f"rng: expected an int seed, a numpy/cupy Generator or None, got {type(rng).__name__}")


def make_rng(rng, xp=np):
    """A generator for library ``xp`` from an int seed, a Generator or None."""
    _check_rng(rng)
    if rng is None or isinstance(rng, numbers.Integral):
        return xp.random.default_rng(rng)
    return rng


def _draw(rng, kind: str, shape, dtype, xp):
    """standard normal or uniform[0, 1) numbers of ``dtype`` on ``xp``'s device."""
    rng = make_rng(rng, xp)
    host = isinstance(rng, np.random.Generator)
    lib_dtype = dtype if np.dtype(dtype) in (np.float32, np.float64) else np.float64
    if kind == "normal":
        a = rng.standard_normal(shape, dtype=lib_dtype)
    else:
        a = rng.random(shape, dtype=lib_dtype)
    if host and xp is not np:
        a = xp.asarray(a)
    elif not host and xp is np:
        a = a.get()
    return a.astype(dtype, copy=False)


def _target(w, name="w"):
    if not (isinstance(w, np.ndarray) or _backend.is_cupy(w)):
        raise TypeError(f"{name}: expected a numpy or cupy array, got {type(w).__name__}")
    if not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"{name}: expected a floating dtype, got {w.dtype}")
    if isinstance(w, np.ndarray) and not w.flags.writeable:
        raise ValueError(f"{name}: array is read-only")
    return _backend.array_module(w)


def _fill_normal_(w, std, rng):
    xp = _target(w)
    w[...] = _draw(rng, "normal", w.shape, w.dtype, xp) * w.dtype.type(std)
    return w


def _fill_uniform_(w, bound, rng):
    xp = _target(w)
    u = _draw(rng, "uniform", w.shape, w.dtype, xp)
    w[...] = (u * w.dtype.type(2.0) - w.dtype.type(1.0)) * w.dtype.type(bound)
    return w


def _fan_fill_(w, fill_, scale, rng):
    """``fill_(w, scale(fan_in, fan_out), rng)``: the fan-based initializers, their other arguments
    checked. A zero-element ``w`` has a zero fan (every non-empty one has fans >= 1): filling it is
    a no-op, as in torch, which warns the same way."""
    fans = calculate_fan_in_and_fan_out(w)
    if w.size == 0:
        warnings.warn("Initializing zero-element tensors is a no-op", UserWarning, stacklevel=4)
        return w
    return fill_(w, scale(*fans), rng)


def _checked(fill_):
    """Validate the target array and ``rng`` before anything (fans, gains) is computed or written."""

    @functools.wraps(fill_)
    def run(w, *args, **kw):
        _target(w)
        _check_rng(kw.get("rng"))
        return fill_(w, *args, **kw)

    return run


def _new(fill, shape, dtype, xp, *args, **kw):
    if xp is not np and getattr(xp, "__name__", None) != "cupy":
        raise TypeError(f"xp: expected the numpy or cupy module, got {type(xp).__name__}")
    dt = _float_dtype(dtype)
    w = xp.empty(_shape(shape, itemsize=dt.itemsize), dtype=dt)
    return fill(w, *args, **kw)


# ---- variance-scaling families -------------------------------------------------


@_checked
def normal_(w, mean=0.0, std=1.0, *, rng=None):
    """Fill ``w`` with N(mean, std^2)."""
    std, mean = _backend.nonnegative("std", std), _backend.real("mean", mean)
    _fill_normal_(w, std, rng)
    w += w.dtype.type(mean)
    return w


@_checked
def uniform_(w, a=0.0, b=1.0, *, rng=None):
    """Fill ``w`` with U(a, b)."""
    a, b = _backend.real("a", a), _backend.real("b", b)
    if b < a:
        raise ValueError(f"b: must be >= a ({a}), got {b}")
    _fill_uniform_(w, (b - a) / 2, rng)
    w += w.dtype.type((a + b) / 2)
    return w


@_checked
def lecun_normal_(w, *, rng=None):
    """N(0, 1 / fan_in) (LeCun et al. 1998; untruncated, unlike jax's)."""
    return _fan_fill_(w, _fill_normal_, lambda fan_in, fan_out: math.sqrt(1.0 / fan_in), rng)


@_checked
def lecun_uniform_(w, *, rng=None):
    """U(-b, b) with b = sqrt(3 / fan_in): variance 1 / fan_in."""
    return _fan_fill_(w, _fill_uniform_, lambda fan_in, fan_out: math.sqrt(3.0 / fan_in), rng)


@_checked
def xavier_normal_(w, gain=1.0, *, rng=None):
    """N(0, gain^2 * 2 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    gain = _backend.positive("gain", gain)
    return _fan_fill_(w, _fill_normal_, lambda fan_in, fan_out: gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


@_checked
def xavier_uniform_(w, gain=1.0, *, rng=None):
    """U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    gain = _backend.positive("gain", gain)
    return _fan_fill_(w, _fill_uniform_, lambda fan_in, fan_out: gain * math.sqrt(6.0 / (fan_in + fan_out)), rng)


def _kaiming_std(a, mode, nonlinearity):
    """fans -> the Kaiming std (its arguments checked now, naming ``a`` rather than ``param``)."""
    i = _mode(mode)
    gain = calculate_gain(nonlinearity, None if a is None else _backend.real("a", a))
    return lambda *fans: gain / math.sqrt(fans[i])


@_checked
def kaiming_normal_(w, a=0.0, mode="fan_in", nonlinearity="leaky_relu", *, rng=None):
    """N(0, std^2), std = gain(nonlinearity, a) / sqrt(fan) (He et al. 2015).

    ``mode="fan_in"`` preserves the forward variance, ``"fan_out"`` the
    backward one; ``a`` is the leaky-relu negative slope (torch's defaults).
    """
    return _fan_fill_(w, _fill_normal_, _kaiming_std(a, mode, nonlinearity), rng)


@_checked
def kaiming_uniform_(w, a=0.0, mode="fan_in", nonlinearity="leaky_relu", *, rng=None):
    """U(-b, b), b = sqrt(3) * gain(nonlinearity, a) / sqrt(fan) (He et al. 2015)."""
    std = _kaiming_std(a, mode, nonlinearity)
    return _fan_fill_(w, _fill_uniform_, lambda *fans: math.sqrt(3.0) * std(*fans), rng)


@_checked
def geometric_normal_(w, c=1.0, *, rng=None):
    """N(0, c / sqrt(fan_in * fan_out)): the geometric mean of the two fans."""
    c = _backend.positive("c", c)
    return _fan_fill_(w, _fill_normal_, lambda fan_in, fan_out: math.sqrt(c / math.sqrt(fan_in * fan_out)), rng)


@_checked
def geometric_uniform_(w, c=1.0, *, rng=None):
    """U(-b, b) with variance c / sqrt(fan_in * fan_out): b = sqrt(3 c / sqrt(fan_in fan_out))."""
    c = _backend.positive("c", c)
    return _fan_fill_(
        w, _fill_uniform_, lambda fan_in, fan_out: math.sqrt(3.0 * (c / math.sqrt(fan_in * fan_out))), rng
    )


@_checked
def orthogonal_(w, gain=1.0, *, rng=None):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014; torch.nn.init.orthogonal_).

    ``w`` is viewed as ``(rows, numel / rows)``; the Q factor of a QR of a
    Gaussian matrix (transposed when rows < cols) with columns multiplied by
    sign(diag R), which makes Q Haar-distributed. Rows (rows <= cols) or
    columns (rows > cols) come out orthonormal.
    """
    xp = _target(w)
    if w.ndim < 2:
        raise ValueError(f"w: orthogonal_ needs at least 2 dimensions, got shape {w.shape}")
    gain = _backend.real("gain", gain)
    rows = w.shape[0]
    cols = w.size // rows if rows else 0
    if w.size == 0:
        return w
    a = _draw(rng, "normal", (rows, cols), np.float64, xp)
    if rows < cols:
        a = a.T
    q, r = xp.linalg.qr(a)
    q = q * xp.sign(xp.diagonal(r))
    if rows < cols:
        q = q.T
    w[...] = (q * gain).reshape(w.shape).astype(w.dtype)
    return w


def zeros_(w):
    """Fill with zeros."""
    _target(w)
    w[...] = 0
    return w


# ---- return-new variants --------------------------------------------------------


def _make_new(fill_):
    def new(shape, *args, dtype=np.float32, xp=np, **kw):
        return _new(fill_, shape, dtype, xp, *args, **kw)

    name = fill_.__name__[:-1]
    new.__name__ = new.__qualname__ = name
    new.__doc__ = (
        f"A new array of ``shape`` (``dtype``, default float32, on ``xp``: numpy or cupy) "
        f"initialized by :func:`{fill_.__name__}`; other arguments as there."
    )
    return new


normal = _make_new(normal_)
uniform = _make_new(uniform_)
lecun_normal = _make_new(lecun_normal_)
lecun_uniform = _make_new(lecun_uniform_)
xavier_normal = _make_new(xavier_normal_)
xavier_uniform = _make_new(xavier_uniform_)
kaiming_normal = _make_new(kaiming_normal_)
kaiming_uniform = _make_new(kaiming_uniform_)
geometric_normal = _make_new(geometric_normal_)
geometric_uniform = _make_new(geometric_uniform_)
orthogonal = _make_new(orthogonal_)


# ---- LSUV --------------------------------------------------------------------------


def lsuv_(weights, forward, x, *, tol=0.1, max_iter=10, rng=None, orthogonal_start=True, eps=1e-8):
    """Layer-sequential unit-variance initialization (Mishkin & Matas 2016), in place.

    Protocol, so it works with any model:
      weights: the layers' weight arrays in forward order (each ``(out, in, ...)``).
      forward: ``forward(x) -> list of arrays``, the output of every layer
        (pre-activation: the result of multiplying by ``weights[i]``, plus its
        bias) for the batch ``x``, computed with the current weights.
      x: a batch of inputs (whatever ``forward`` takes).

    Each weight is first made orthogonal (``orthogonal_start``), then, layer by
    layer in order, divided by the standard deviation of its output until that
    output's variance is within ``tol`` of 1 or ``max_iter`` rescalings were
    done (``eps`` > 0 is added to the variance first). Returns the list of final
    output variances, one per layer. On any error (``forward`` raising or returning
    something else than one non-empty real array with a finite variance per weight)
    the weights are restored to what they were.
    """
    weights = _backend.as_list(weights, "weights")
    if not callable(forward):
        raise TypeError(f"forward: expected a callable, got {type(forward).__name__}")
    tol = _backend.positive("tol", tol)
    max_iter = _backend.integer("max_iter", max_iter, 1)
    eps = _backend.positive("eps", eps)  # a zero eps divides by the zero variance of a dead layer
    orthogonal_start = _backend.flag("orthogonal_start", orthogonal_start)
    for i, w in enumerate(weights):
        _target(w, f"weights[{i}]")
        if orthogonal_start and w.ndim < 2:
            raise ValueError(f"weights[{i}]: orthogonal_start needs at least 2 dimensions, got shape {w.shape}")
    gen = make_rng(rng, _backend.array_module(weights[0]) if weights else np)
    originals = [w.copy() for w in weights]
    try:
        return _lsuv_steps(weights, forward, x, tol, max_iter, eps, gen if orthogonal_start else None)
    except BaseException:
        for w, w0 in zip(weights, originals):
            w[...] = w0
        raise


def _lsuv_steps(weights, forward, x, tol, max_iter, eps, gen) -> list:
    """LSUV's writes (arguments checked): orthogonal starts drawn from ``gen`` (None: none), then the rescaling."""
    if gen is not None:
        for w in weights:
            orthogonal_(w, rng=gen)

    def variance(i):
        return _output_variance(forward(x), i, len(weights))

    out = []
    for i, w in enumerate(weights):
        var = variance(i)
        for _ in range(max_iter):
            if abs(var - 1.0) < tol:
                break
            w *= w.dtype.type(1.0 / math.sqrt(var + eps))
            var = variance(i)
        out.append(var)
    return out


def _output_variance(outs, i: int, n: int) -> float:
    """The variance of output ``i`` of ``forward``'s ``outs`` (one real array per weight), or
    TypeError / ValueError naming ``forward``."""
    if not isinstance(outs, (list, tuple)):
        raise TypeError(f"forward: expected it to return a list of arrays, got {type(outs).__name__}")
    if len(outs) != n:
        raise ValueError(f"forward: returned {len(outs)} outputs for {n} weights")
    o = _backend.as_array(outs[i], f"forward(x)[{i}]")
    if not (isinstance(o, np.ndarray) or _backend.is_cupy(o)) or o.dtype.kind not in "biuf" or o.size == 0:
        what = f"{o.dtype} array of shape {tuple(o.shape)}" if hasattr(o, "dtype") else type(o).__name__
        raise TypeError(f"forward: output {i} must be a non-empty real array, got {what}")
    var = float(o.astype("float64").var())
    if not math.isfinite(var):
        raise ValueError(f"forward: output {i} has variance {var}, expected a finite one")
    return var


def lsuv_mlp_(mlp, params, x, *, tol=0.1, max_iter=10, rng=None, orthogonal_start=True, zero_bias=True):
    """LSUV for the built-in :class:`optkern.nn.MLP`, in place on its flat ``params``.

    The ``W`` views of every Linear layer are made orthogonal and rescaled so
    that each layer's output (before normalization / activation) has unit
    variance on the batch ``x``; biases are zeroed first (``zero_bias``).
    Layer i's output is the prediction of the prefix network
    ``sizes[:i + 2]``, whose parameters are a prefix of the flat buffer, so
    only the MLP's public API is used. Returns the per-layer variances; on an
    error ``params`` is left as it was.
    """
    from .nn import MLP

    if not isinstance(mlp, MLP):
        raise TypeError(f"mlp: expected an optkern.nn.MLP, got {type(mlp).__name__}")
    _target(params, "params")
    if params.ndim != 1 or params.size != mlp.num_params:
        raise ValueError(f"params: expected a flat buffer of {mlp.num_params} values, got shape {tuple(params.shape)}")
    zero_bias = _backend.flag("zero_bias", zero_bias)
    original = params.copy()  # zeroing the biases comes before lsuv_'s own checks and forward passes
    try:
        return _lsuv_mlp_steps(
            mlp, params, x, zero_bias, dict(tol=tol, max_iter=max_iter, rng=rng, orthogonal_start=orthogonal_start)
        )
    except BaseException:
        params[...] = original
        raise


def _lsuv_mlp_steps(mlp, params, x, zero_bias, lsuv_kw) -> list:
    views = mlp.views(params)
    if zero_bias:
        for v in views:
            v["b"][...] = 0
    prefixes = []
    for i in range(mlp.num_layers):
        sub = type(mlp)(
            mlp.sizes[: i + 2],
            activation=mlp.activation,
            norm=mlp.norm,
            loss="mse",
            norm_eps=mlp.norm_eps,
            dtype=mlp.dtype,
            xp=mlp.xp,
        )
        off, shape = mlp.layout[i]["b"]
        if sub.num_params != off + shape[0]:  # layout changed under us: fail loudly, never silently
            raise RuntimeError("lsuv_mlp_: optkern.nn.MLP's parameter layout is not prefix-closed")
        prefixes.append((sub, sub.num_params))

    def forward(xb):
        return [sub.predict(params[:n], xb) for sub, n in prefixes]

    return lsuv_([v["W"] for v in views], forward, x, **lsuv_kw)
