"""The random numbers and writes optkern.init's initializers share: generators from a seed, a
NumPy or CuPy Generator or None (``make_rng``, re-exported by :mod:`optkern.init`), standard
normal / uniform draws on the target array's device, the target array's checks, and the fills
the variance-scaling initializers are made of."""

from __future__ import annotations

import functools
import numbers

import numpy as np

from . import _backend, _foreign
from .optim._given import _bump_torch_versions, torch_tensors


def _is_cupy_generator(rng) -> bool:
    return type(rng).__module__.startswith("cupy")


def _check_rng(rng) -> None:
    """TypeError / ValueError naming ``rng`` unless it is None, a seed >= 0 or a Generator."""
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        _backend.integer("rng", rng, 0)  # NumPy's own error would not say which argument
    elif not (rng is None or isinstance(rng, np.random.Generator) or _is_cupy_generator(rng)):
        raise TypeError(f"rng: expected an int seed, a numpy/cupy Generator or None, got {type(rng).__name__}")


def _check_xp(xp):
    """``xp`` if it is the numpy or the cupy module, else TypeError naming ``xp``."""
    if xp is not np and getattr(xp, "__name__", None) != "cupy":
        raise TypeError(f"xp: expected the numpy or cupy module, got {type(xp).__name__}")
    return xp


def make_rng(rng, xp=np):
    """A generator for library ``xp`` (the numpy or cupy module) from an int seed, a Generator or None."""
    _check_rng(rng)
    _check_xp(xp)  # (a string or another module raised AttributeError, or passed with a Generator)
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
    a = a.astype(dtype, copy=False)
    if kind != "normal" and lib_dtype is np.float64 and np.dtype(dtype) != np.float64:
        # a float64 draw just below 1 rounds to 1.0 in float16: U(a, b) reached b (torch's stays
        # in [a, b)); its largest value below 1 instead
        t = np.dtype(dtype).type
        xp.minimum(a, np.nextafter(t(1), t(0)), out=a)
    return a


def _target(w, name="w"):
    # (a masked array is an ndarray: taken whole, its masked entries were drawn over and the fill's
    # MaskedArray assignment cleared the mask, where every other optkern argument refuses one)
    _foreign.refuse_masked(w, name)
    if not (isinstance(w, np.ndarray) or _backend.is_cupy(w)):
        raise TypeError(f"{name}: expected a numpy or cupy array, got {type(w).__name__}")
    if not np.issubdtype(w.dtype, np.floating):
        if w.dtype.name == "bfloat16":  # (ml_dtypes' is no NumPy floating type: "expected a floating dtype" misled)
            raise TypeError(
                f"{name}: bfloat16 is not supported (float16, float32 or float64): initialize a float32 "
                "array and round it (optkern.lowp.to_bfloat16)"
            )
        raise TypeError(f"{name}: expected a floating dtype, got {w.dtype}")
    if isinstance(w, np.ndarray) and not w.flags.writeable:
        raise _backend.read_only(name, w)  # (with why, for a view through the unversioned DLPack protocol)
    return _backend.array_module(w)


def _distinct_elements(w, name="w") -> None:
    """``_backend.distinct_elements``: the random fills write each element once, and a shared one kept
    the last draw (four equal rows of an "orthogonal" (4, 3) matrix; torch refuses these writes)."""
    _backend.distinct_elements(w, name)


def _representable(name: str, value: float, w) -> None:
    """ValueError naming ``name`` unless ``value`` stays finite in ``w``'s dtype: a std, mean, bound
    or gain past float32's (or float16's) range would fill ``w`` with inf / NaN -- and, under
    ``-W error``, raise NumPy's overflow warning half-way, after the draws were written."""
    with np.errstate(over="ignore"):
        ok = bool(np.isfinite(w.dtype.type(value)))
    if not ok:
        raise ValueError(f"{name}: {value!r} is not representable in the array's dtype {w.dtype}")


#: no standard normal draw of NumPy's or CuPy's generators reaches this (NumPy's ziggurat tops out
#: near 14): below it a scaled draw cannot overflow, and the fill skips its finiteness pass (a sync)
_Z_MAX = 64.0


def _fill_normal_(w, std, rng, mean=None, name="std"):
    """``w = z * std (+ mean)``, or ValueError naming ``name`` before ``w`` is written where a draw
    overflows the dtype (a representable std of 30000 in float16 does: an inf in the weights, or
    under ``-W error`` NumPy's overflow warning). Computed in float32 for a narrower ``w`` (torch's
    accumulate type for half) and rounded once: in float16, std and mean rounded to it first made
    a std below its normal range (6.1e-5) a step of its subnormal grid, N(0, 1e-6^2) 1.3% too
    wide, N(0, 1e-7^2) 20%. A float16 fill is so the float32 fill of the same seed, rounded."""
    xp = _target(w)
    work = np.promote_types(w.dtype, np.float32)  # (float32, float64, longdouble stay)
    t = work.type
    a = _draw(rng, "normal", w.shape, work, xp)
    with np.errstate(over="ignore", invalid="ignore"):
        a *= t(std)
        if mean is not None:
            a += t(mean)
        a = a.astype(w.dtype, copy=False)  # (float32 past 65504 becomes inf: refused below)
    shift = 0.0 if mean is None else abs(mean)
    if shift + _Z_MAX * std > float(np.finfo(w.dtype).max) and not bool(xp.isfinite(a).all()):
        what = f"N({mean}, {std}^2)" if mean is not None else f"N(0, {std}^2)"
        raise ValueError(f"{name}: draws of {what} overflow the array's dtype {w.dtype}")
    w[...] = a
    return w


def _fill_uniform_(w, bound, rng, mid=None, ends=None):
    """``w = (2u - 1) * bound (+ mid)``: U(a, b), ``a, b = mid -+ bound`` (or ``ends``).

    Computed, as the normal fills, in float32 for a narrower ``w`` and rounded once, a draw rounded
    up to b then taken as a (torch's half uniform_, which stays in [a, b) so): in float16, u, bound
    and mid each rounded to it first made U(-1e-6, 1e-6) 1.4% too wide and reach 1.013e-6, and
    U(-1e-7, 1e-7) 26%. ``ends=(a, b)``: in float32 / float64 the draws are clipped to them where a
    range reaches past half the dtype's max: there ``bound`` and ``mid``, each rounded to the
    dtype, can add up past its max (U(59584, 65504) in float16 wrote infs before)."""
    xp = _target(w)
    work = np.promote_types(w.dtype, np.float32)
    t = work.type
    u = _draw(rng, "uniform", w.shape, work, xp)
    with np.errstate(over="ignore"):
        u = (u * t(2.0) - t(1.0)) * t(bound)
        if mid is not None:
            u += t(mid)
        if work != w.dtype:
            a, b = ends if ends is not None else (-bound + (mid or 0.0), bound + (mid or 0.0))
            u = u.astype(w.dtype)
            u = xp.where(u == w.dtype.type(b), w.dtype.type(a), u)
    if work == w.dtype and ends is not None and max(abs(ends[0]), abs(ends[1])) > float(np.finfo(w.dtype).max) / 2:
        xp.clip(u, t(ends[0]), t(ends[1]), out=u)
    w[...] = u
    return w


def _in_place(fill_):
    """``fill_`` of a foreign ``w`` (a torch tensor, any DLPack or array-interface exporter) run on
    its NumPy / CuPy view (``_foreign.as_array``, the one conversion every optkern argument goes
    through), so the fill writes through to the caller's memory, zero-copy, strided views included
    (the fills assign ``w[...]``); the caller's own object is returned, as torch.nn.init returns its
    tensor. A read-only export is refused by ``_target``, naming ``w``. These were refused
    ("expected a numpy or cupy array, got Tensor") where DESIGN §3 accepts exporters everywhere."""

    @functools.wraps(fill_)
    def run(w, *args, **kw):
        if not _foreign.is_foreign(w):
            return fill_(w, *args, **kw)
        fill_(_foreign.as_array(w, "w"), *args, **kw)
        # written through a view autograd does not see: bumped as torch.nn.init's in-place fills
        # bump it, so a graph that saved w refuses its backward instead of using the new values
        _bump_torch_versions(torch_tensors([w]))
        return w

    return run


def _checked(fill_):
    """Validate the target array and ``rng`` before anything (fans, gains) is computed or written;
    a foreign ``w`` filled through its view (``_in_place``)."""

    @functools.wraps(fill_)
    def run(w, *args, **kw):
        _target(w)
        _distinct_elements(w)
        _check_rng(kw.get("rng"))
        return fill_(w, *args, **kw)

    return _in_place(run)
