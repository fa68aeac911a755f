"""Fuzzing the functional optimizer steps (optkern.functional) against the contract in fuzz_contract.py.

Each example builds a valid call (random sizes including 0 and 1, float32 or float64, hyper-parameters
drawn towards the extremes of their documented ranges), then spoils at most one thing: one array
(dtype, shape, layout, read-only, NaN/Inf, a Python object instead), an alias between a written array
and another argument, one hyper-parameter (wrong type, NaN, out of range) or the list structure. The
call must raise naming what was spoiled with nothing written, or match the float64 reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import optkern.functional as F
import reference as R
from fuzz_contract import (
    ARRAY_SPOILS,
    BAD_SCALARS,
    assert_close,
    check_call,
    dtype_refusals,
    extreme_reals,
    spoiled,
    still_valid,
)

pytestmark = pytest.mark.fuzz

UNIT = dict(lo=0.0, hi=1.0)


@dataclass(frozen=True)
class Fn:
    fn: object
    states: tuple  # (keyword, reference state key, nonnegative values)
    hps: dict  # keyword -> (lo, hi, lo_open, hi_open)
    step: bool = False
    ref: object = None


NONNEG = (0.0, None, False, False)
POS = (0.0, None, True, False)
FNS = {
    "sgd_": Fn(
        F.sgd_,
        (("momentum_buffers", "momentum_buffer", False),),
        dict(lr=NONNEG, momentum=NONNEG, dampening=(0.0, 1.0, False, False), weight_decay=NONNEG),
        ref=R.sgd_step,
    ),
    "adagrad_": Fn(
        F.adagrad_,
        (("sums", "sum", True),),
        dict(lr=NONNEG, lr_decay=NONNEG, weight_decay=NONNEG, eps=POS),
        step=True,
        ref=R.adagrad_step,
    ),
    "adagrad_norm_": Fn(F.adagrad_norm_, (), dict(lr=NONNEG, weight_decay=NONNEG)),
    "rmsprop_": Fn(
        F.rmsprop_,
        (
            ("square_avgs", "square_avg", True),
            ("grad_avgs", "grad_avg", False),
            ("momentum_buffers", "momentum_buffer", False),
        ),
        dict(lr=NONNEG, alpha=(0.0, 1.0, False, False), eps=POS, weight_decay=NONNEG, momentum=NONNEG),
        ref=R.rmsprop_step,
    ),
    "adadelta_": Fn(
        F.adadelta_,
        (("square_avgs", "square_avg", True), ("acc_deltas", "acc_delta", True)),
        dict(lr=NONNEG, rho=(0.0, 1.0, False, False), eps=POS, weight_decay=NONNEG),
        ref=R.adadelta_step,
    ),
    "adam_": Fn(
        F.adam_,
        (
            ("exp_avgs", "exp_avg", False),
            ("exp_avg_sqs", "exp_avg_sq", True),
            ("max_exp_avg_sqs", "max_exp_avg_sq", True),
        ),
        dict(lr=NONNEG, beta1=(0.0, 1.0, False, True), beta2=(0.0, 1.0, False, True), eps=POS, weight_decay=NONNEG),
        step=True,
        ref=R.adam_step,
    ),
    "nadam_": Fn(
        F.nadam_,
        (("exp_avgs", "exp_avg", False), ("exp_avg_sqs", "exp_avg_sq", True)),
        dict(
            lr=NONNEG,
            beta1=(0.0, 1.0, False, True),
            beta2=(0.0, 1.0, False, True),
            eps=POS,
            weight_decay=NONNEG,
            momentum_decay=NONNEG,
        ),
        step=True,
        ref=R.nadam_step,
    ),
}
FLAGS = {
    "sgd_": ("nesterov", "maximize"),
    "adagrad_": ("maximize",),
    "adagrad_norm_": ("maximize",),
    "rmsprop_": ("nesterov", "maximize"),
    "adadelta_": ("maximize",),
    "adam_": ("decoupled_weight_decay", "maximize"),
    "nadam_": ("decoupled_weight_decay", "maximize"),
}


def hp_value(rng_draw, spec):
    lo, hi, lo_open, hi_open = spec
    v = rng_draw(extreme_reals(lo, hi, lo_open))
    if hi_open and hi is not None and v >= hi:
        v = float(np.nextafter(hi, -np.inf))
    return float(v)


@st.composite
def calls(draw, name):
    """(keyword arguments, spoil description): a valid call with at most one thing spoiled."""
    spec = FNS[name]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    k = draw(st.integers(1, 3))
    shapes = [draw(st.sampled_from([(0,), (1,), (7,), (3, 5), (1023,), (2, 1, 3)])) for _ in range(k)]
    kw = {
        "params": [(rng.standard_normal(s) + 0.01).astype(dtype) for s in shapes],
        "grads": [
            (rng.standard_normal(s) * draw(st.sampled_from([1.0, 1e-3, 1e3])) + 0.01).astype(dtype) for s in shapes
        ],
    }
    hp = {}
    for h, r in spec.hps.items():
        if draw(st.booleans()):
            hp[h] = hp_value(draw, r)
    for f in FLAGS[name]:
        hp[f] = draw(st.booleans())
    # combinations the functions reject by design are not drawn as "valid"
    if hp.get("nesterov"):
        hp["momentum"] = max(hp.get("momentum", 0.0), 0.5)
        if name == "sgd_":
            hp["dampening"] = 0.0
    use_states = {}
    for kwd, _, nonneg in spec.states:
        use = True
        if kwd in ("grad_avgs", "max_exp_avg_sqs"):
            use = draw(st.booleans())
        if kwd == "momentum_buffers" and hp.get("momentum", 0.0) == 0.0:
            use = draw(st.booleans())
        if use:
            kw[kwd] = [
                (np.abs(rng.standard_normal(s)) if nonneg else rng.standard_normal(s)).astype(dtype) for s in shapes
            ]
        use_states[kwd] = use
    if name == "rmsprop_" and "grad_avgs" in kw and "square_avgs" in kw:
        # a centered variance needs v >= a^2 for the reference's clamp not to matter
        kw["square_avgs"] = [v + a * a for v, a in zip(kw["square_avgs"], kw["grad_avgs"])]
    if name == "sgd_":
        hp["first"] = draw(st.booleans())
        hp["momentum_form"] = draw(st.sampled_from(["pytorch", "textbook"]))
    if name == "adagrad_norm_":
        kw["b_sq"] = np.full(1, draw(st.sampled_from([1e-4, 1.0, 1e10])), np.float64)
    if spec.step:
        hp["step"] = draw(st.sampled_from([1, 2, 3, 10, 1000, 10**6]))
    if name == "nadam_":
        t, b1, psi = hp["step"], hp.get("beta1", 0.9), hp.get("momentum_decay", 4e-3)
        t = hp["step"] = min(t, 1000)
        hp["mu_product"] = math.prod(b1 * (1 - 0.5 * 0.96 ** (i * psi)) for i in range(1, t))
        if not hp["mu_product"] > 0:
            hp["mu_product"] = 1.0
            hp["step"] = 1
    kw.update(hp)
    return kw, draw(spoils(kw, name))


@st.composite
def spoils(draw, kw, name):
    arrays = [(k, i) for k, v in kw.items() if isinstance(v, list) for i in range(len(v))]
    scalars = [k for k, v in kw.items() if not isinstance(v, list) and k != "b_sq"]
    what = draw(st.sampled_from(["none", "array", "alias", "scalar", "list"]))
    if what == "array":
        key, i = draw(st.sampled_from(arrays))
        return ("array", key, i, draw(st.sampled_from(ARRAY_SPOILS)))
    if what == "alias":
        key, i = draw(st.sampled_from([a for a in arrays if a[0] != "grads"]))  # a written array
        other = draw(st.sampled_from([a for a in arrays if a != (key, i)] or [(key, i)]))
        return ("alias", key, i, other, draw(st.booleans()))
    if what == "scalar" and scalars:
        return ("scalar", draw(st.sampled_from(scalars)), draw(BAD_SCALARS))
    if what == "list":
        key = draw(st.sampled_from(sorted({a[0] for a in arrays})))
        return (
            "list",
            key,
            draw(st.sampled_from(["shorter", "longer", "none_item", "tuple", "array_not_list", "int"])),
        )
    return ("none",)


def apply_spoil(kw, sp, rng):
    """Spoil ``kw`` in place; returns (names an error may start with, success allowed)."""
    if sp[0] == "none" or (sp[1] == "momentum_buffers" and kw.get("momentum", 0.0) == 0.0):
        return ("params",), True  # (momentum buffers are not used without momentum)
    if sp[0] == "array":
        _, key, i, s = sp
        orig = kw[key][i]
        kw[key][i] = new = spoiled(orig, s.kind, rng)
        if still_valid(orig, new) or (s.kind in ("nan", "inf")):
            return (key,), True
        written = key != "grads"
        if s.kind == "extra_dim" and key not in ("params", "grads"):
            return (key,), True  # state lists match params in sizes only (documented)
        partners = ("params", "grads") + tuple(k for k, v in kw.items() if isinstance(v, list))
        names = (key,) + (partners if s.partners or (s.kind == "size-1" and orig.size <= 1) else ())
        ok = s.valid or (
            not written and s.kind in ("strided", "negative_stride", "broadcast", "fortran", "misaligned", "read_only")
        )
        return names, ok
    if sp[0] == "alias":
        _, key, i, (okey, oi), view = sp
        src = kw[okey][oi]
        if src.shape != kw[key][i].shape or src.size == 0:
            return ("params",), True
        kw[key][i] = src.view() if view else src
        unused = "momentum_buffers" in (key, okey) and kw.get("momentum", 0.0) == 0.0
        return (key, okey), (key, i) == (okey, oi) or unused
    if sp[0] == "scalar":
        _, key, bad = sp
        kw[key] = bad
        return (key,), False
    _, key, how = sp
    lst = kw[key]
    if how == "shorter":
        kw[key] = lst[:-1]
    elif how == "longer":
        kw[key] = lst + [lst[-1].copy()]
    elif how == "none_item":
        kw[key] = lst[:-1] + [None]
    elif how == "tuple":
        kw[key] = tuple(lst)
        return (key,), True
    elif how == "array_not_list":
        kw[key] = lst[0]
        return (key, "params", "grads"), len(lst) == 1
    else:
        kw[key] = 3
    return (key, "params", "grads"), False


def _as_list(v):
    if isinstance(v, np.ndarray):
        return [v]
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _adagrad_norm_reference(kw, hp, p64, g64):
    b_sq = float(kw["b_sq"][0])
    # The decay applies when weight_decay rounded to the arrays' dtype is not 0 (rules/optim.hpp,
    # effective_grad): a weight_decay of 1e-300 is no decay in float32, so an infinite param does not
    # make b infinite (and freeze every other param) as 1e-300 * inf would (seed 1771638658).
    wd = hp.get("weight_decay", 0.0)
    wd = wd if float(dtype_of(kw)(wd)) != 0.0 else 0.0
    g_eff = [(-g if hp.get("maximize") else g) + (wd * p if wd else 0.0) for p, g in zip(p64, g64)]
    b_sq += sum(float(np.sum(e * e)) for e in g_eff)
    return [p - hp.get("lr", 1e-2) / np.sqrt(b_sq) * e for p, e in zip(p64, g_eff)], {"b_sq": [np.array([b_sq])]}


def reference(name, kw):
    """Float64 params and state lists after one step of the reference on the arguments' values."""
    spec = FNS[name]
    p64 = [np.array(p, np.float64) for p in _as_list(kw["params"])]
    g64 = [np.array(g, np.float64) for g in _as_list(kw["grads"])]
    hp = {k: v for k, v in kw.items() if not isinstance(v, (list, tuple, np.ndarray))}
    t = hp.pop("step", 1)
    hp.pop("mu_product", None)
    if name == "adagrad_norm_":
        with np.errstate(all="ignore"):
            return _adagrad_norm_reference(kw, hp, p64, g64)
    if name == "sgd_":
        t = 1 if hp.pop("first") else 2
    # A state's decay factor that underflows to 0 in the arrays' dtype is 0 in the kernel, as in
    # torch's float32 `state.mul_(beta)`: an infinite state times it is NaN, not inf (seed 3407758982:
    # beta2 = 1e-300, exp_avg_sq inf, Adam's float32 param NaN as torch's)
    dt = dtype_of(kw)
    betas = [kw.get(b, d) for b, d in (("beta1", 0.9), ("beta2", 0.999))]
    betas = [b if float(dt(b)) != 0.0 else 0.0 for b in betas]  # (betas are in [0, 1]: no overflow)
    for b in ("beta1", "beta2"):
        hp.pop(b, None)
    if name in ("adam_", "nadam_"):
        hp["betas"] = tuple(betas)
    if name == "adam_":
        hp["amsgrad"] = "max_exp_avg_sqs" in kw
    if name == "rmsprop_":
        hp["centered"] = "grad_avgs" in kw
    if name == "sgd_" and "momentum_buffers" not in kw:
        hp["momentum"] = hp.get("momentum", 0.0)
    states = []
    for j in range(len(p64)):
        s = {}
        for kwd, key, _ in spec.states:
            if kwd in kw and (name != "sgd_" or t != 1):
                s[key] = np.array(_as_list(kw[kwd])[j], np.float64).reshape(p64[j].shape)
        states.append(s)
    with np.errstate(all="ignore"):
        for p, g, s in zip(p64, g64, states):
            spec.ref(p, g, s, t, **hp)
    out = {kwd: [s.get(key) for s in states] for kwd, key, _ in spec.states if kwd in kw}
    if name == "rmsprop_" and hp["centered"] and _cancelled(states, dtype_of(kw)):
        return None, {k: v for k, v in out.items() if k != "momentum_buffers"}
    return p64, out


def dtype_of(kw):
    first = _as_list(kw["params"])[:1]
    return np.float64 if first and getattr(first[0], "dtype", None) == np.float64 else np.float32


def _cancelled(states, dtype) -> bool:
    """Whether centered RMSprop's v - a^2 lost so many digits (rounding v and a to ``dtype``) that
    the step is not determined to the comparison's tolerance: the reference is ill-conditioned."""
    limit = 1e-2 if dtype == np.float32 else 1e-6
    for s in states:
        v, a = s["square_avg"], s["grad_avg"]
        with np.errstate(all="ignore"):
            if np.any(v - a * a < limit * v):
                return True
    return False


#: Hyper-parameters that multiply an array inside a sum: ``g + weight_decay * p``,
#: ``momentum * b + g / avg``. The kernel rounds their products (and the hyper-parameter itself)
#: in the arrays' dtype, so where the sum cancels, its error is relative to the product, not to the sum.
TERM_SCALES = ("weight_decay", "momentum")


def term_slack(name, kw, ref, dtype):
    """Per output array, what a relative change of ``rtol`` in each of TERM_SCALES moves the float64
    reference by, divided by ``rtol``: added to the comparison's scale, it measures a cancelling sum
    against the size of its terms (the dtype's rounding of ``weight_decay * p`` moves the result by
    ~1e-3 of that for float32: 949 p + g cancelling to 5e-5 of its terms took momentum_buffers 3.7e-5
    relative off, kernel and torch alike). 0 where nothing cancels or the key is absent."""
    rtol = 2e-5 if dtype == np.float32 else 1e-9
    params, states = ref
    slack = {"params": [0.0] * len(params or [])} | {k: [0.0] * len(v) for k, v in states.items()}
    for key in TERM_SCALES:
        v = kw.get(key)
        if not isinstance(v, float) or not (0.0 < v * (1 + rtol) < math.inf):
            continue
        p2, s2 = reference(name, dict(kw, **{key: v * (1 + rtol)}))
        pairs = [("params", params or [], p2 or [])] + [(k, states[k], s2.get(k) or []) for k in states]
        for k, a, b in pairs:
            for i, (x, y) in enumerate(zip(a, b)):
                if x is None or y is None:
                    continue
                with np.errstate(all="ignore"):
                    d = np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))
                d = d[np.isfinite(d)]
                slack[k][i] += float(np.max(d, initial=0.0)) / rtol
    return slack


def _abs_max(a) -> float:
    """The largest finite |element| of ``a`` (0 for none)."""
    with np.errstate(all="ignore"):
        x = np.abs(np.asarray(a, np.float64))
    return float(np.max(x[np.isfinite(x)], initial=0.0))


@pytest.mark.parametrize("name", list(FNS))
@given(data=st.data())
def test_functional_step(name, data):
    kw, sp = data.draw(calls(name))
    rng = np.random.default_rng(0)
    names, ok = apply_spoil(kw, sp, rng)
    note(f"hyper-parameters: { {k: v for k, v in kw.items() if not isinstance(v, list)} }")
    note(f"spoil: {sp}; error may name {names}; success allowed: {ok}")
    dtype = dtype_of(kw)
    names += dtype_refusals(kw, dtype)
    ref = reference(name, kw) if ok else None
    slack = term_slack(name, kw, ref, dtype) if ok else None
    # the params' sizes before the step: the new p = p + delta is rounded relative to its terms
    # (p = 2.05 stepped by -2.056 to -0.0055 in float32 is 4e-5 of the result off, one ulp of p)
    before = [_abs_max(a) for a in _as_list(kw["params"])] if ok and ref[0] is not None else []
    done, _ = check_call(lambda: FNS[name].fn(**kw), names, state=kw, ok=ok)
    if not done:
        return
    params, states = ref
    inf_in = sp[0] == "array" and sp[-1].kind == "inf"  # an infinite input: inf or NaN out (assert_close)
    out = _as_list(kw["params"]) if params is not None else []
    params = params or []
    scale = [
        max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)), before[i])
        for i, (a, b) in enumerate(zip(params, out))
    ]
    for i, (p, r) in enumerate(zip(out, params)):
        assert_close(p, r, dtype, f"params[{i}]", scale=max(scale[i], 1e-300) + slack["params"][i], nan_for_inf=inf_in)
    for kwd, refs in states.items():
        if kwd == "b_sq":
            assert_close(kw["b_sq"], refs[0], dtype, "b_sq")  # a sum of squares of dtype values
            continue
        for i, (s, r) in enumerate(zip(_as_list(kw[kwd]), refs)):
            # momentum buffers are not used without momentum (and may then alias anything)
            if r is not None and not (kwd == "momentum_buffers" and kw.get("momentum", 0.0) == 0):
                with np.errstate(all="ignore"):
                    a = np.abs(np.asarray(r, np.float64))
                top = float(np.max(a[a <= float(np.finfo(dtype).max)], initial=0.0))  # (as assert_close's)
                assert_close(s, r, dtype, f"{kwd}[{i}]", scale=max(top, 1e-300) + slack[kwd][i], nan_for_inf=inf_in)
