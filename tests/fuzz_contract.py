"""The contract every public function is fuzzed against (tests/test_fuzz_*.py), and the strategies.

A call with (possibly) bad arguments must do one of two things:

* raise TypeError or ValueError whose message starts with the name of the argument that was made
  bad (``grads[1]: ...``, ``saved.mean: ...``, ``param_groups[0]['lr']: ...``), or of the argument
  it conflicts with (aliasing, mismatched shapes or dtypes), having written nothing: every array
  reachable from the arguments holds the same bytes as before;
* or succeed, with a result equal to the float64 reference (finite where the reference is finite in
  the result's dtype).

Any other exception (AttributeError, OverflowError, IndexError, a crash) breaks the contract.

Strategies build a valid call first and then spoil at most one argument (``spoil``), so a failure
names exactly what was wrong; ``hypothesis`` shrinks to the smallest such case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

# ---- nothing written ------------------------------------------------------------------------


def _arrays(obj, out, seen):
    if isinstance(obj, np.ndarray):
        if id(obj) not in seen:
            seen.add(id(obj))
            out.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _arrays(v, out, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _arrays(v, out, seen)
    return out


def _bytes(a: np.ndarray):
    if a.dtype == object:
        return [id(v) for v in a.ravel()]  # identity: nothing replaced
    return np.ascontiguousarray(a).tobytes()


class Snapshot:
    """The bytes of every array reachable from ``objs`` (lists, tuples, dicts), to compare later."""

    def __init__(self, *objs):
        self.arrays = _arrays(objs, [], set())
        self.before = [_bytes(a) for a in self.arrays]

    def changed(self) -> list[int]:
        return [i for i, (a, b) in enumerate(zip(self.arrays, self.before)) if _bytes(a) != b]


# ---- the contract ---------------------------------------------------------------------------


class ContractError(AssertionError):
    pass


def _names_pattern(names) -> str:
    alts = "|".join(re.escape(n) for n in names)
    # name, then an index, a field or a group key, then ':', a space or ',' ("a, b: give both"); the
    # name may come later in such a leading list ("normalized_shape, saved.mean: ..." blames both)
    return rf"^(?:[\w.]+(?:\[[^\]]*\])*, )*(?:{alts})(?:\[[^\]]*\]|\.\w+)*(?::| |,)"


def check_call(call, names, *, state=(), ok=True):
    """Run ``call()``; enforce the error half of the contract; return (True, result) on success.

    ``names``: argument names an error may start with (the spoiled one first). ``state``: extra
    objects holding arrays that must not change on error. ``ok``: whether success is allowed
    at all (False: the spoiled argument is invalid whatever the function does with it).
    """
    snap = Snapshot(state)
    try:
        result = call()
    except (TypeError, ValueError) as e:
        msg = str(e)
        if not re.match(_names_pattern(names), msg):
            raise ContractError(f"{type(e).__name__} names the wrong argument (expected {names}): {msg}") from e
        changed = snap.changed()
        if changed:
            raise ContractError(f"{type(e).__name__} ({msg}) after writing {len(changed)} array(s)") from e
        return False, e
    except Exception as e:
        raise ContractError(f"wrong exception type {type(e).__name__} (expected {names}): {e}") from e
    if not ok:
        raise ContractError(f"invalid {names[0]} accepted (no error raised)")
    return True, result


def assert_close(out, ref, dtype, what="result", scale=None, rtol=None, nan_for_inf=False):
    """``out`` equals the float64 ``ref`` to the dtype's precision, normwise (cancellation in an
    update is measured against the size of its terms: ``scale``, default max |ref|), NaN only where
    ``ref`` is NaN (or, with ``nan_for_inf``, infinite: from an infinite input, inf or NaN depends on
    how a formula is written -- torch's ``lerp`` gives inf + w (g - inf) = NaN where the textbook
    ``b m + (1 - b) g`` gives inf), and finite wherever ``ref`` is finite in ``dtype``."""
    out = np.asarray(out)
    ref = np.asarray(ref, np.float64)
    assert out.shape == ref.shape or out.size == ref.size, f"{what}: shape {out.shape}, reference {ref.shape}"
    o = out.astype(np.float64).reshape(ref.shape)
    fmax = float(np.finfo(dtype).max) if np.dtype(dtype).kind == "f" else np.inf
    representable = np.isfinite(ref) & (np.abs(ref) <= fmax)
    bad_nan = np.isnan(o) & ~np.isnan(ref) & ~(nan_for_inf & np.isinf(ref))
    if bad_nan.any():
        raise ContractError(f"{what}: NaN at {np.argwhere(bad_nan)[:3].tolist()} where the reference is not NaN")
    not_finite = ~np.isfinite(o) & representable
    if not_finite.any():
        i = tuple(np.argwhere(not_finite)[0])
        raise ContractError(f"{what}: {o[i]} at {list(i)} where the float64 reference is {ref[i]!r}")
    if not representable.any():
        return
    if rtol is None:
        rtol = {2: 2e-3, 4: 2e-5, 8: 1e-9}.get(np.dtype(dtype).itemsize, 1e-5)
    s = float(np.max(np.abs(ref[representable]))) if scale is None else float(scale)
    with np.errstate(all="ignore"):
        err = np.abs(o - ref)[representable]
    limit = rtol * max(s, 1e-30) + 1e-300
    if err.size and float(err.max()) > limit:
        i = int(np.argmax(err))
        raise ContractError(
            f"{what}: differs from the float64 reference by {float(err.max()):.3g} (> {limit:.3g}); "
            f"{o[representable][i]!r} vs {ref[representable][i]!r}"
        )


F32_SCALE_MAX = float(np.finfo(np.float32).max) ** 0.25  # the documented bound (optkern.functional)


def dtype_refusals(kw, dtype) -> tuple:
    """Hyper-parameters the arrays' dtype cannot run, by the documented rule: not finite after
    rounding, eps rounding to 0, lr / weight_decay / momentum above the dtype's max ** (1/4), and an
    AdaGrad-Norm b0 whose step size lr / b0 overflows the dtype."""
    out = []
    for k, v in kw.items():
        if not isinstance(v, float) or k == "mu_product":
            continue
        with np.errstate(all="ignore"):
            r = float(np.dtype(dtype).type(v))
        bound = F32_SCALE_MAX if dtype == np.float32 else float(np.finfo(np.float64).max) ** 0.25
        scale = k in ("lr", "weight_decay", "momentum") and v > bound
        squared = k == "b0" and not (np.isfinite(v * v) and v * v > 0)  # AdaGrad-Norm's b^2 = b0^2
        # AdaGrad-Norm's largest step size lr / b0 must be finite in the step's dtype (float32 below float64)
        top = float(np.finfo(np.float64 if dtype == np.float64 else np.float32).max)
        rate = k == "b0" and v > 0 and isinstance(kw.get("lr"), float) and kw["lr"] / v > top
        # NAdam's momentum product lives in the arrays' dtype: beta1 must round below 1 there
        nadam_beta1 = k == "beta1" and ("momentum_decay" in kw or "mu_product" in kw) and not r < 1.0
        if not np.isfinite(r) or (k == "eps" and r == 0) or scale or squared or rate or nadam_beta1:
            out.append(k)
    return tuple(out)


# ---- spoiled arrays -------------------------------------------------------------------------

BAD_DTYPES = (np.float16, np.int32, np.int64, np.bool_, np.complex64, np.complex128, object)
STRUCTURAL = ("float16", "int32", "int64", "bool", "complex64", "complex128", "object")


@dataclass(frozen=True)
class Spoil:
    """One way to spoil an array argument. ``valid``: the library may accept it (then the result
    must still match the reference); ``partners``: another argument an error may name instead."""

    kind: str
    valid: bool = False
    partners: bool = False


ARRAY_SPOILS = (
    # dtypes
    *(Spoil(name) for name in STRUCTURAL),
    Spoil("other_float", partners=True),
    # shape and layout
    Spoil("size+1", partners=True),
    Spoil("size-1", partners=True),
    Spoil("extra_dim", partners=True),
    Spoil("strided"),
    Spoil("negative_stride"),
    Spoil("broadcast"),
    Spoil("fortran"),
    Spoil("misaligned"),
    Spoil("read_only"),
    # values
    Spoil("nan", valid=True),
    Spoil("inf", valid=True),
    # Python objects
    Spoil("none"),
    Spoil("list"),
    Spoil("scalar"),
    Spoil("string"),
    # torch tensors are valid arrays since the core API takes DLPack / torch CPU tensors zero-copy
    # (issue 12): tests/test_dlpack.py checks them against the NumPy path, bit for bit.
)


def _torch_tensor(a):
    try:
        import torch
    except ImportError:  # the list is what a torch-less user would pass
        return a.tolist()
    return torch.from_numpy(np.ascontiguousarray(a))


def spoiled(a: np.ndarray, kind: str, rng: np.random.Generator):
    """``a`` spoiled in the way ``kind`` names (a new object; ``a`` is not modified)."""
    with np.errstate(all="ignore"):  # float16 of a huge value is inf, as intended
        return _spoiled(a, kind, rng)


def _spoiled(a, kind, rng):
    if kind in STRUCTURAL:
        if kind == "object":
            return a.astype(object)
        dt = np.dtype(kind)
        if dt.kind == "c":
            return (a + 1j).astype(dt)
        return a.astype(dt)
    if kind == "other_float":
        return a.astype(np.float64 if a.dtype == np.float32 else np.float32)
    if kind == "size+1":
        return np.resize(a, a.size + 1).astype(a.dtype)
    if kind == "size-1":
        return a.reshape(-1)[: max(a.size - 1, 0)].copy() if a.size else np.zeros(1, a.dtype)
    if kind == "extra_dim":
        return a.reshape((1,) + a.shape + (1,)).copy() if a.ndim < 3 else a.reshape(-1).copy()
    if kind == "strided":
        big = np.repeat(a.reshape(-1), 2).reshape(a.shape[:-1] + (2 * a.shape[-1],)) if a.ndim else a
        return big[..., ::2] if a.ndim and a.size > 1 else _strided_1(a)
    if kind == "negative_stride":
        return a.copy()[..., ::-1] if a.ndim and a.shape[-1] > 1 else _strided_1(a)[::-1]
    if kind == "broadcast":
        first = a.reshape(-1)[:1] if a.size else np.zeros(1, a.dtype)
        return np.broadcast_to(first.reshape((1,) * a.ndim) if a.ndim else first[0], a.shape)
    if kind == "fortran":
        if a.ndim >= 2 and a.shape[0] > 1 and a.shape[-1] > 1:
            return np.asfortranarray(a)
        return _strided_1(a)
    if kind == "misaligned":
        buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
        m = buf[1 : 1 + a.nbytes].view(a.dtype).reshape(a.shape) if a.nbytes else buf[1:1].view(a.dtype)
        m[...] = a
        return m.reshape(a.shape)
    if kind == "read_only":
        r = a.copy()
        r.setflags(write=False)
        return r
    if kind in ("nan", "inf"):
        r = a.copy()
        if r.size and r.dtype.kind == "f":  # (integer labels cannot hold them)
            r.reshape(-1)[rng.integers(r.size)] = np.nan if kind == "nan" else -np.inf
        return r
    if kind == "none":
        return None
    if kind == "list":
        return a.tolist()
    if kind == "scalar":
        return 1.5
    if kind == "string":
        return "x"
    if kind == "torch":
        return _torch_tensor(a)
    raise AssertionError(kind)


def _strided_1(a):
    """A view of ``a``'s values with a stride of 2 elements (for any shape, size >= 1)."""
    big = np.repeat(a.reshape(-1), 2)
    return big[::2].reshape(a.shape) if a.size else big[::2]


def still_valid(orig: np.ndarray, new) -> bool:
    """Whether ``new`` is still a C-contiguous, aligned, writable array of ``orig``'s dtype and shape
    (a strided view of one element is contiguous; NaN in an empty array changes nothing)."""
    if type(new).__module__.startswith("torch") and hasattr(new, "numpy"):  # taken zero-copy (DLPack)
        new = new.detach().numpy()
    return (
        isinstance(new, np.ndarray)
        and new.dtype == orig.dtype
        and new.shape == orig.shape
        and new.flags.c_contiguous
        and new.flags.aligned
        and new.flags.writeable
    )


# ---- strategies -----------------------------------------------------------------------------

ODD_SIZES = st.sampled_from([0, 1, 2, 3, 7, 17, 64, 1023])
FLOATS = st.sampled_from([np.float32, np.float64])


def values(rng: np.random.Generator, shape, dtype, scale=1.0):
    """Fresh random values, never all zeros."""
    return (rng.standard_normal(shape) * scale + 0.01).astype(dtype)


def seeds():
    return st.integers(0, 2**32 - 1)


def extreme_reals(lo=0.0, hi=None, lo_open=False):
    """Finite reals in [lo, hi] weighted to the extremes (tiny, huge, ends, subnormal)."""
    picks = [1e-300, 5e-324, 1e-45, 1e-38, 1e-8, 1e-3, 0.5, 1.0, 10.0, 1e8, 1e30, 1e38, 1e300, 1.7e308]
    if hi is not None:
        picks += [hi, np.nextafter(hi, -np.inf), hi - 1e-8]
    if not lo_open:
        picks.append(lo)
    picks = [p for p in picks if (p > lo or (p == lo and not lo_open)) and (hi is None or p <= hi)]
    return st.one_of(st.sampled_from(picks), st.floats(lo, hi if hi is not None else 1e3, exclude_min=lo_open))


#: Values of the wrong Python type, or out of any range, for a scalar argument.
BAD_SCALARS = st.sampled_from([None, "0.1", [0.1], (0.1,), float("nan"), float("inf"), -float("inf"), -1.0, 1j])
