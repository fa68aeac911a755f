"""Fuzzing the normalization forwards and backwards and dropout against the contract in
fuzz_contract.py: one argument spoiled (an array, eps / momentum / p, the saved tuple, out, running
buffers aliasing the input), then TypeError / ValueError naming it with nothing written, or results
equal to the float64 references of tests/reference_norm.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import reference_norm as RN
from fuzz_contract import ARRAY_SPOILS, BAD_SCALARS, assert_close, check_call, extreme_reals, spoiled, still_valid
from optkern import norm

pytestmark = pytest.mark.fuzz

KINDS = ("batch", "layer", "rms", "group", "instance", "weight")
# reductions over up to ~1e3 values; float16: a valid spoil (x given as float16 storage), its results
# rounded to float16 (an ulp is 2**-10 of the value)
RTOL = {np.float16: 4e-3, np.float32: 2e-4, np.float64: 1e-9}
INPUTS = ("strided", "negative_stride", "broadcast", "fortran", "misaligned", "read_only")


@st.composite
def setups(draw, kind):
    """(forward keyword arguments, forward, reference forward, backward call builder)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    N = draw(st.sampled_from([1, 2, 5]))
    C = draw(st.sampled_from([1, 3, 4]))
    spatial = draw(st.sampled_from([(), (1,), (7,), (2, 3)]))
    shift = draw(st.sampled_from([0.0, 1.0, 1e3]))
    x = (rng.standard_normal((N, C) + spatial) + shift).astype(dtype)
    eps = float(draw(st.one_of(st.just(1e-5), extreme_reals(0.0, 1e30, lo_open=True))))
    affine = draw(st.booleans())
    w = (rng.standard_normal(C) + 1).astype(dtype) if affine else None
    b = rng.standard_normal(C).astype(dtype) if affine else None
    if kind == "batch":
        if N * int(np.prod(spatial)) <= 1:
            x = np.concatenate([x, x + 1]).astype(dtype)
        kw = dict(x=x, weight=w, bias=b, eps=eps)
        if draw(st.booleans()):
            sdt = np.float64 if dtype == np.float64 else np.float32
            kw.update(running_mean=np.zeros(C, sdt), running_var=np.ones(C, sdt), momentum=draw(st.floats(0, 1)))
        return kw, norm.batch_norm, lambda: RN.batch_norm(kw["x"], kw["weight"], kw["bias"], _eps(kw))[0]
    if kind in ("layer", "rms"):
        k = draw(st.integers(1, x.ndim))
        ns = x.shape[x.ndim - k :]
        w = (rng.standard_normal(ns) + 1).astype(dtype) if affine else None
        b = rng.standard_normal(ns).astype(dtype) if affine else None
        if kind == "layer":
            kw = dict(x=x, normalized_shape=ns, weight=w, bias=b, eps=eps)
            return kw, norm.layer_norm, lambda: RN.layer_norm(kw["x"], k, kw["weight"], kw["bias"], _eps(kw))[0]
        kw = dict(x=x, normalized_shape=ns, weight=w, eps=eps)
        return kw, norm.rms_norm, lambda: RN.rms_norm(kw["x"], k, kw["weight"], _rms_eps(kw))[0]
    if kind == "group":
        G = draw(st.sampled_from([g for g in (1, 2, 4) if C % g == 0]))
        if N * (C // G) * int(np.prod(spatial)) == 1:  # (torch's group norm refuses one value, as optkern's)
            x = np.concatenate([x, x + 1]).astype(dtype)
        kw = dict(x=x, num_groups=G, weight=w, bias=b, eps=eps)
        return kw, norm.group_norm, lambda: RN.group_norm(kw["x"], G, kw["weight"], kw["bias"], _eps(kw))[0]
    if kind == "instance":
        if not spatial or int(np.prod(spatial)) == 1:
            x = np.concatenate([x, x + 1], axis=-1).astype(dtype) if spatial else x[..., None].repeat(2, -1)
        kw = dict(x=x, weight=w, bias=b, eps=eps)
        # instance norm = group norm with one group per channel
        return kw, norm.instance_norm, lambda: RN.group_norm(kw["x"], C, kw["weight"], kw["bias"], _eps(kw))[0]
    v = (rng.standard_normal((C, 3)) + 0.5).astype(dtype)
    g = (rng.standard_normal(C) + 1).astype(dtype)
    kw = dict(v=v, g=g, dim=0)
    return kw, norm.weight_norm, lambda: RN.weight_norm(kw["v"], kw["g"], 0)


def _eps(kw):
    """eps as the statistics hold it: rounded to float32 for float32 x (a subnormal eps keeps few digits)."""
    x = np.asarray(kw["x"])
    return float(np.float32(kw["eps"])) if x.dtype == np.float32 else kw["eps"]


def _rms_eps(kw):
    """rms_norm's eps: None means finfo(x.dtype).eps (as in torch)."""
    return np.finfo(kw["x"].dtype).eps if kw["eps"] is None else _eps(kw)


def _backward(kind, kw, y, saved, dy):
    """(call, reference) of the backward for the forward ``kw`` produced."""
    x = kw.get("x")
    if kind == "batch":
        return (
            dict(dy=dy, x=x, weight=kw["weight"], saved=saved),
            norm.batch_norm_backward,
            lambda a: RN.batch_norm_backward(a["dy"], a["x"], a["weight"], _eps(kw)),
        )
    if kind in ("layer", "rms"):
        k = len(kw["normalized_shape"])
        a = dict(dy=dy, x=x, weight=kw["weight"], saved=saved, normalized_shape=kw["normalized_shape"])
        if kind == "layer":
            return (
                a,
                norm.layer_norm_backward,
                lambda a: RN.layer_norm_backward(a["dy"], a["x"], k, a["weight"], _eps(kw)),
            )
        return a, norm.rms_norm_backward, lambda a: RN.rms_norm_backward(a["dy"], a["x"], k, a["weight"], _rms_eps(kw))
    if kind in ("group", "instance"):
        G = kw.get("num_groups", x.shape[1])
        fn = norm.group_norm_backward if kind == "group" else norm.instance_norm_backward
        return (
            dict(dy=dy, x=x, weight=kw["weight"], saved=saved),
            fn,
            lambda a: RN.group_norm_backward(a["dy"], a["x"], G, a["weight"], _eps(kw)),
        )
    return (
        dict(dw=dy, v=kw["v"], g=kw["g"], saved=saved),
        norm.weight_norm_backward,
        lambda a: RN.weight_norm_backward(a["dw"], a["v"], a["g"], 0)[::-1],
    )


def _spoil(draw, kw, rng, written=("out", "running_mean", "running_var")):
    """Spoil one argument of ``kw`` in place; (names an error may start with, success allowed)."""
    arrays = [k for k, v in kw.items() if isinstance(v, np.ndarray)]
    what = draw(st.sampled_from(["none", "array", "scalar", "alias", "out"]))
    if what == "array" and arrays:
        key = draw(st.sampled_from(arrays))
        s = draw(st.sampled_from(ARRAY_SPOILS))
        orig = kw[key]
        kw[key] = spoiled(orig, s.kind, rng)
        note(f"{key} spoiled: {s.kind}")
        ok = still_valid(orig, kw[key]) or s.kind in ("nan", "inf")
        ok = ok or (key not in written and s.kind in INPUTS)  # inputs may be copied
        # running buffers are updated by NumPy: any writable layout works (test_bad_input_norm_nn.py)
        ok = ok or (key.startswith("running_") and s.kind in ("strided", "negative_stride", "fortran", "misaligned"))
        ok = ok or (s.kind == "none" and key in ("weight", "bias"))
        floats = [k for k in arrays if k != key and kw[k] is not None and kw[k].dtype.kind == "f"]
        ok = ok or (s.kind == "other_float" and not floats)  # the only array: its dtype is the call's
        # float16 storage (taken on the CPU since the 34th hunt), where no other array fixes the
        # call's dtype: float32 running buffers are its statistics' dtype
        fixing = [k for k in floats if not (k.startswith("running_") and kw[k].dtype == np.float32)]
        ok = ok or (s.kind == "float16" and not key.startswith("running_") and not fixing)
        ok = ok or (s.kind == "extra_dim" and key in ("x", "v", "dy", "g"))  # another valid layout (g: any shape)
        # a layer / RMS norm's x of another size whose trailing dims still are normalized_shape
        # (x (2, 1) -> (1,) with normalized_shape (1,): one row, as valid as two -- a fuzz seed)
        ns = kw.get("normalized_shape")
        if key == "x" and ns is not None and isinstance(kw[key], np.ndarray) and kw[key].dtype == orig.dtype:
            shape, ns = np.shape(kw[key]), tuple(np.atleast_1d(ns))
            ok = ok or (len(shape) >= len(ns) and shape[len(shape) - len(ns) :] == ns and s.kind.startswith("size"))
        # eps too: a float64 x may take an eps that rounds to 0 in float32 (its dtype decides)
        partners = tuple(arrays) + ("normalized_shape", "num_groups", "eps")
        if s.kind == "none" and key.startswith("running_"):
            # the running buffers come as a pair: "running_mean, running_var: give both or neither"
            partners = ("running_mean", "running_var")
            return ((key,) + partners), ok
        return ((key,) + (partners if s.partners or s.kind in STRUCTURAL_DTYPES else ())), ok
    scalars = [k for k in ("eps", "momentum") if k in kw]
    if what == "scalar" and scalars:
        key = draw(st.sampled_from(scalars))
        kw[key] = draw(BAD_SCALARS)
        note(f"{key} = {kw[key]!r}")
        return (key,), kw[key] is None and "normalized_shape" in kw and "bias" not in kw  # rms_norm's default eps
    if what == "alias" and "running_mean" in kw:
        key = draw(st.sampled_from(["running_mean", "running_var"]))
        other = draw(st.sampled_from([k for k in arrays if k != key]))
        src = kw[other]
        if src.size >= kw[key].size and src.dtype == kw[key].dtype:
            kw[key] = src.reshape(-1)[: kw[key].size]
            note(f"{key} aliases {other}")
            return (key, other), False
    if what == "out" and "v" not in kw:
        x = kw["x"] if "x" in kw else kw["dy"]
        choice = draw(st.sampled_from(["ok", "dtype", "shape", "read_only", "strided", "alias_x", "none"]))
        out = {
            "ok": np.empty_like(x),
            "dtype": np.empty(x.shape, np.float16),
            "shape": np.empty(x.size + 1, x.dtype),
            "read_only": np.broadcast_to(np.zeros(1, x.dtype), x.shape),
            "strided": np.empty(x.shape + (2,), x.dtype)[..., 0],
            "alias_x": x,
            "none": None,
        }[choice]
        kw["out"] = out
        note(f"out: {choice}")
        valid = choice in ("ok", "none") or (choice == "alias_x" and "dy" in kw) or still_valid(x, out)
        return ("out", "x", "dy"), valid
    return ("x",), True


STRUCTURAL_DTYPES = ("float16", "int32", "int64", "bool", "complex64", "complex128", "object")


def _half_floor(scale, dtype, rtol):
    """float16 results below its subnormal grid (2**-24 apart) round to it: at least half a step off."""
    return max(scale, 2.0**-25 / rtol) if dtype is np.float16 else scale


def _nan_rows(ref, kw):
    """Documented (rules/norm.hpp): a row holding NaN or inf normalizes to NaN everywhere. IEEE
    arithmetic agrees for the mean-centred norms; RMS norm's x * rsqrt(inf) would give 0 beside it."""
    x = np.asarray(kw["x"], np.float64)
    ns = kw.get("normalized_shape")
    m = int(np.prod(ns)) if ns is not None else (x.shape[-1] if x.ndim else 1)
    if x.size == 0 or m == 0 or x.size % m or ref.size != x.size:
        return ref
    bad = ~np.isfinite(x.reshape(-1, m)).all(axis=1)
    out = np.array(ref, np.float64).reshape(-1, m)
    out[bad] = np.nan
    return out.reshape(np.shape(ref))


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_norm_forward_and_backward(kind, data):
    kw, fwd, ref_fwd = data.draw(setups(kind))
    rng = np.random.default_rng(2)
    dtype = np.float64 if kw.get("x", kw.get("v")).dtype == np.float64 else np.float32
    names, ok = _spoil(data.draw, kw, rng)
    if dtype == np.float32 and isinstance(kw.get("eps"), float) and np.float32(kw["eps"]) == 0:
        names += ("eps",)  # documented: eps must stay > 0 in the float32 statistics
    if kind == "weight":  # a slice with a zero, NaN or inf norm raises (documented)
        names += ("v",) if not names[0] == "v" else ()
    done, res = check_call(lambda: fwd(**kw), names, state=kw, ok=ok)
    if not done:
        return
    y, saved = res
    # x may have been given in another dtype (float16 storage included: judged in its own)
    dtype = {8: np.float64, 2: np.float16}.get(y.dtype.itemsize, np.float32)
    with np.errstate(all="ignore"):
        ref = ref_fwd()
    if kind == "rms":
        ref = _nan_rows(ref, kw)
    # x - mean with the mean rounded to the statistics' dtype: an error of eps |x| rstd |w| (as in torch)
    scale = float(np.max(np.abs(ref), initial=0.0))
    if kind in ("batch", "layer", "group", "instance"):
        wmax = 1.0 if kw.get("weight") is None else float(np.max(np.abs(np.asarray(kw["weight"], float)), initial=0))
        rmax = float(np.max(np.asarray(saved.rstd, float), initial=0.0))
        scale += float(np.max(np.abs(np.asarray(kw["x"], float)), initial=0.0)) * rmax * wmax
    assert_close(y, ref, dtype, "y", scale=_half_floor(scale, dtype, RTOL[dtype]), rtol=RTOL[dtype])
    if not np.isfinite(ref).all():
        return
    # -- the backward of what the forward saved, possibly spoiled ---------------------------
    dy = (rng.standard_normal(y.shape)).astype(y.dtype)
    bkw, bwd, ref_bwd = _backward(kind, kw, y, saved, dy)
    bkw = {k: v for k, v in bkw.items() if not isinstance(v, np.ndarray) or v is not None}
    if data.draw(st.integers(0, 4)) != 0:
        names, ok = _spoil(data.draw, bkw, rng, written=("out",))
    else:
        field = data.draw(st.sampled_from(type(saved)._fields))
        bad = data.draw(st.sampled_from([None, "s", np.zeros(2, dtype), np.zeros(3, np.int32)]))
        if field in ("training", "groups", "dim"):
            return  # flags and layout fields: their own table tests (test_bad_input_norm_nn.py)
        was = getattr(saved, field)
        if isinstance(bad, np.ndarray) and was is not None and bad.dtype == was.dtype and bad.size == was.size:
            return  # statistics of the right size and dtype are trusted (their values cannot be checked)
        bkw["saved"] = saved._replace(**{field: bad})
        note(f"saved.{field} = {bad!r}")
        # (batch norm's lo None: no low parts handed over, the backward computes them -- the same bits)
        names, ok = ("saved",), field == "lo" and bad is None
    done, grads = check_call(lambda: bwd(**bkw), names, state=bkw, ok=ok)
    if not done:
        return
    with np.errstate(all="ignore"):
        refs = ref_bwd(bkw)
    if kind == "weight":
        grads = grads[::-1]  # (dv, dg), as the reference is ordered
    scale = float(np.max(np.abs(refs[0]), initial=0.0)) + float(
        np.max(np.abs(np.asarray(bkw.get("dy", dy), float)))
    ) * (1.0 if kind == "weight" else float(np.max(np.abs(np.asarray(saved[1] if kind != "rms" else saved[0])))))
    if kind in ("batch", "layer", "group", "instance"):
        # x̂ carries the statistics' rounding of the mean (eps |x| rstd, as in torch, whose float32
        # backward is as far off), and dx = w rstd (dy - mean(dy) - x̂ mean(dy x̂)) multiplies it by up
        # to 2 |w| rstd max|x̂| max|dy|, max|x̂| <= sqrt(m) over the m values of a statistic (found by a
        # fuzz seed: x ~ 1000 + 0.01 N(0, 1), a batch of two, dx off by 6% in optkern and torch alike)
        rmax = float(np.max(np.asarray(saved.rstd, float), initial=0.0))
        xmax = float(np.max(np.abs(np.asarray(kw["x"], float)), initial=0.0))
        wmax = 1.0 if kw.get("weight") is None else float(np.max(np.abs(np.asarray(kw["weight"], float)), initial=0))
        m = np.size(kw["x"]) / max(np.size(saved.rstd), 1)
        dymax = float(np.max(np.abs(np.asarray(bkw.get("dy", dy), float)), initial=0.0))
        # (a statistic of one value has an exact mean; Python floats: a huge rstd makes the bound inf,
        # not a NumPy overflow warning -- found by seed 9151: eps = 5e-324 on one value, rstd 4e161)
        xhat_err = float(np.finfo(dtype).eps) * xmax * rmax if m > 1 else 0.0
        scale += 2 * wmax * rmax * xhat_err * math.sqrt(m) * dymax / RTOL[dtype]
    assert_close(grads[0], refs[0], dtype, "dx", scale=_half_floor(scale, dtype, RTOL[dtype]), rtol=RTOL[dtype])
    # dweight sums dy * x̂, and x̂ carries the statistics' rounding of the mean, eps |x| rstd, with
    # one sign across a whole reduction: an absolute error of up to eps |x| rstd sum |dy|
    xhat_err = 0.0
    if kind in ("batch", "layer", "group", "instance"):
        rmax = float(np.max(np.asarray(saved.rstd, float), initial=0.0))
        xmax = float(np.max(np.abs(np.asarray(kw["x"], float)), initial=0.0))
        dysum = float(np.sum(np.abs(np.asarray(bkw.get("dy", dy), float))))
        xhat_err = 4 * float(np.finfo(dtype).eps) * xmax * rmax * dysum
    for name, got, want in zip(("dweight", "dbias"), grads[1:], refs[1:]):
        if got is not None and want is not None and kw.get("weight") is not None:
            rtol = RTOL[dtype] * 10
            scale = float(np.max(np.abs(want), initial=0.0)) + xhat_err / rtol
            assert_close(got, want, dtype, name, scale=_half_floor(scale, dtype, rtol), rtol=rtol)


@given(data=st.data())
def test_dropout(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = rng.standard_normal(data.draw(st.sampled_from([(0,), (1,), (7,), (3, 5), (1023,)]))).astype(dtype)
    kw = dict(x=x, p=float(data.draw(extreme_reals(0.0, 1.0))), seed=data.draw(st.integers(0, 2**64 - 1)))
    what = data.draw(st.sampled_from(["none", "x", "p", "seed", "offset"]))
    names, ok = ("x",), True
    if what == "x":
        s = data.draw(st.sampled_from(ARRAY_SPOILS))
        kw["x"] = spoiled(x, s.kind, rng)
        ok = (
            still_valid(x, kw["x"])
            or s.kind in ("nan", "inf", "other_float", "float16", "extra_dim", "size+1", "size-1") + INPUTS
        )  # (float16: a storage type since the 34th hunt)
    elif what != "none":
        kw[what] = data.draw(st.sampled_from([None, "1", -1, 2**64, 1.5, float("nan")]))
        names, ok = (what,), False
    note(f"{what}: {kw.get(what)!r} {s.kind if what == 'x' else ''}")
    done, res = check_call(lambda: norm.dropout(**kw, return_mask=True), names, state=kw, ok=ok)
    if not done:
        return
    y, mask = res
    xin = np.asarray(kw["x"], np.float64)
    with np.errstate(all="ignore"):
        # kept elements scale by 1 / (1 - p) computed in float64 and rounded once (as torch's dropout);
        # dropped ones are x * 0 (a NaN or inf stays NaN, as torch's x * mask * scale)
        scale = 1.0 / (1.0 - kw["p"]) if kw["p"] < 1.0 else 0.0  # (p = 1: nothing kept)
        ref = np.where(mask.astype(bool), xin * scale, xin * 0.0)
    dtype = y.dtype  # x may have been given in the other float dtype: judged in the one it has
    assert_close(y, ref, dtype, "y")
    dx = norm.dropout_backward(np.ascontiguousarray(kw["x"]), kw["p"], kw["seed"])
    assert_close(dx, ref, dtype, "dx")
