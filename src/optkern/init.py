"""Weight initializers (NumPy, CuPy, torch tensors, DLPack exporters), matching torch.nn.init's formulas.

Every random initializer comes twice: ``name_(w, ...)`` fills the array ``w`` in
place and returns it; ``name(shape, ..., dtype=float32, xp=numpy)`` returns
a new array (the fixed fills ``constant_``, ``ones_``, ``zeros_``, ``eye_`` and ``dirac_``
come only in place, as torch.nn.init's). Randomness comes from ``rng``: an int seed, a
``numpy.random.Generator``, a ``cupy.random.Generator`` or None (fresh
entropy). A seed gives a generator of the array's own library (NumPy for
NumPy arrays, CuPy for CuPy arrays); a NumPy generator also works for CuPy
arrays (numbers drawn on the host, copied over), which makes CPU and GPU
initializations identical: bit for bit where the draws are only scaled and shifted (the
normal / uniform families, ``sparse_``), to the device math library's rounding where more
runs on the device (``orthogonal_``'s QR, ``trunc_normal_``'s inverse CDF: its ``log``).

Every in-place initializer takes, besides NumPy and CuPy arrays, any array optkern views zero-copy
(DESIGN §3: a torch tensor, a DLPack or ``__cuda_array_interface__`` exporter): it fills that
array's own memory, strided views included, and returns the caller's object, as torch.nn.init
returns its tensor; a read-only export is refused naming ``w``.

Fans follow ``torch.nn.init._calculate_fan_in_and_fan_out``: a weight of
shape ``(out, in, *kernel)`` has ``fan_in = in * prod(kernel)`` and
``fan_out = out * prod(kernel)``.

Here the fans and gains and the variance-scaling initializers; the generators, draws and fills
they share are in ``_init_random``, ``orthogonal_`` and LSUV in ``_init_orthogonal``,
``trunc_normal_``, ``constant_``, ``ones_``, ``eye_``, ``dirac_`` and ``sparse_`` in
``_init_fill``, and imported here.
"""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np

from . import _backend
from ._init_fill import constant_ as constant_
from ._init_fill import dirac_ as dirac_
from ._init_fill import eye_ as eye_
from ._init_fill import ones_ as ones_
from ._init_fill import sparse_ as sparse_
from ._init_fill import trunc_normal_ as trunc_normal_
from ._init_orthogonal import lsuv_ as lsuv_
from ._init_orthogonal import lsuv_mlp_ as lsuv_mlp_
from ._init_orthogonal import orthogonal_ as orthogonal_
from ._init_random import _check_xp, _checked, _fill_normal_, _fill_uniform_, _in_place, _representable, _target
from ._init_random import make_rng as make_rng
from .random import _float_dtype, _shape

# (help() and pydoc list only what is defined here without it: orthogonal_, trunc_normal_ and the
# other imported initializers were missing, and ``import *`` brought math, np and warnings)
__all__ = [
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "constant_",
    "dirac_",
    "eye_",
    "geometric_normal",
    "geometric_normal_",
    "geometric_uniform",
    "geometric_uniform_",
    "kaiming_normal",
    "kaiming_normal_",
    "kaiming_uniform",
    "kaiming_uniform_",
    "lecun_normal",
    "lecun_normal_",
    "lecun_uniform",
    "lecun_uniform_",
    "lsuv_",
    "lsuv_mlp_",
    "make_rng",
    "normal",
    "normal_",
    "ones_",
    "orthogonal",
    "orthogonal_",
    "sparse",
    "sparse_",
    "trunc_normal",
    "trunc_normal_",
    "uniform",
    "uniform_",
    "xavier_normal",
    "xavier_normal_",
    "xavier_uniform",
    "xavier_uniform_",
    "zeros_",
]

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


def _fan_fill_(w, fill_, scale, rng, name="gain", *, warn_empty=False):
    """``fill_(w, scale(fan_in, fan_out), rng)``: the fan-based initializers, their other arguments
    checked. A zero-element ``w`` has a zero fan (every non-empty one has fans >= 1): filling it is
    a no-op, as in torch. torch warns of it ("Initializing zero-element tensors is a no-op") in
    its kaiming initializers only (``warn_empty``), before it computes the fans (a 1-D empty
    weight warns there, where its fans would be refused); its xavier ones are silent, and so are
    the initializers torch has not (lecun, geometric): they all warned here. A scale past ``w``'s
    dtype (only a huge ``name`` makes one: fans are >= 1) is refused before anything is drawn."""
    if warn_empty and w.size == 0:
        warnings.warn("Initializing zero-element tensors is a no-op", UserWarning, stacklevel=4)
        return w
    fans = calculate_fan_in_and_fan_out(w)
    if w.size == 0:
        return w
    s = scale(*fans)
    with np.errstate(over="ignore"):
        if not np.isfinite(w.dtype.type(s)):
            raise ValueError(f"{name}: gives a scale of {s:g}, not representable in the array's dtype {w.dtype}")
    if fill_ is _fill_normal_:  # a normal draw times s can still overflow (a uniform one stays within s)
        return fill_(w, s, rng, name=name)
    return fill_(w, s, rng)


# ---- variance-scaling families -------------------------------------------------


@_checked
def normal_(w, mean=0.0, std=1.0, *, rng=None):
    """Fill ``w`` with N(mean, std^2) (ValueError naming std, ``w`` untouched, if a draw overflows its dtype)."""
    std, mean = _backend.nonnegative("std", std), _backend.real("mean", mean)
    _representable("std", std, w)  # (both before the draws are written)
    _representable("mean", mean, w)
    return _fill_normal_(w, std, rng, mean)


@_checked
def uniform_(w, a=0.0, b=1.0, *, rng=None):
    """Fill ``w`` with U(a, b)."""
    a, b = _backend.real("a", a), _backend.real("b", b)
    if b < a:
        raise ValueError(f"b: must be >= a ({a}), got {b}")
    _representable("a", a, w)
    _representable("b", b, w)
    half, mid = (b - a) / 2, (a + b) / 2
    if not (math.isfinite(half) and math.isfinite(mid)):  # b - a past float64's range: halve first
        half, mid = b / 2 - a / 2, a / 2 + b / 2
    _representable("b", half, w)  # (a float32 / float16 width past its range: the bounds name it)
    return _fill_uniform_(w, half, rng, mid, (a, b))


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
    """N(0, gain^2 * 2 / (fan_in + fan_out)) (Glorot & Bengio 2010).

    ``gain >= 0``: 0 fills zeros (the draw still made), as torch's; a negative gain is refused, as
    torch refuses it (a negative std)."""
    # (nonnegative, not positive: gain=0 was refused where torch's xavier_normal_ zeroes the array)
    gain = _backend.nonnegative("gain", gain)
    return _fan_fill_(w, _fill_normal_, lambda fan_in, fan_out: gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


@_checked
def xavier_uniform_(w, gain=1.0, *, rng=None):
    """U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010).

    ``gain >= 0``: 0 fills zeros (the draw still made), as torch's; a negative gain is refused, as
    torch refuses it (an empty range)."""
    # (nonnegative, not positive: gain=0 was refused where torch's xavier_uniform_ zeroes the array)
    gain = _backend.nonnegative("gain", gain)
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
    return _fan_fill_(w, _fill_normal_, _kaiming_std(a, mode, nonlinearity), rng, warn_empty=True)


@_checked
def kaiming_uniform_(w, a=0.0, mode="fan_in", nonlinearity="leaky_relu", *, rng=None):
    """U(-b, b), b = sqrt(3) * gain(nonlinearity, a) / sqrt(fan) (He et al. 2015)."""
    std = _kaiming_std(a, mode, nonlinearity)
    return _fan_fill_(w, _fill_uniform_, lambda *fans: math.sqrt(3.0) * std(*fans), rng, warn_empty=True)


@_checked
def geometric_normal_(w, c=1.0, *, rng=None):
    """N(0, c / sqrt(fan_in * fan_out)): the geometric mean of the two fans."""
    c = _backend.positive("c", c)
    return _fan_fill_(w, _fill_normal_, lambda fan_in, fan_out: math.sqrt(c / math.sqrt(fan_in * fan_out)), rng, "c")


@_checked
def geometric_uniform_(w, c=1.0, *, rng=None):
    """U(-b, b) with variance c / sqrt(fan_in * fan_out): b = sqrt(3 c / sqrt(fan_in fan_out))."""
    c = _backend.positive("c", c)
    return _fan_fill_(
        w, _fill_uniform_, lambda fan_in, fan_out: math.sqrt(3.0 * (c / math.sqrt(fan_in * fan_out))), rng, "c"
    )


@_in_place
def zeros_(w):
    """Fill with zeros."""
    _target(w)
    w[...] = 0
    return w


# ---- return-new variants --------------------------------------------------------


def _new(fill, shape, dtype, xp, *args, **kw):
    _check_xp(xp)
    dt = _float_dtype(dtype)
    w = xp.empty(_shape(shape, itemsize=dt.itemsize), dtype=dt)
    return fill(w, *args, **kw)


def _make_new(fill_):
    def new(shape, *args, dtype=np.float32, xp=np, **kw):
        return _new(fill_, shape, dtype, xp, *args, **kw)

    name = fill_.__name__[:-1]
    new.__name__ = new.__qualname__ = name
    new.__doc__ = (
        f"A new array of ``shape`` (``dtype``, default float32, on ``xp``: numpy or cupy) "
        f"initialized by :func:`{fill_.__name__}`; other arguments as there."
    )
    # help() shows the arguments it takes, fill_'s in place of ``w``, not ``*args, **kw``
    fill_params = list(inspect.signature(fill_).parameters.values())[1:]
    keyword = inspect.Parameter.KEYWORD_ONLY
    new.__signature__ = inspect.Signature(
        [
            inspect.Parameter("shape", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            *fill_params,
            inspect.Parameter("dtype", keyword, default=np.float32),
            inspect.Parameter("xp", keyword, default=np),
        ]
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
trunc_normal = _make_new(trunc_normal_)
sparse = _make_new(sparse_)
