"""Fuzzing the optimizer classes (constructor and two steps) and gradient clipping against the
contract in fuzz_contract.py: a bad argument raises TypeError / ValueError naming it, with no
parameter, gradient or state array written; everything accepted matches the float64 reference."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import optkern
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
from optim_registry import OPTIMIZERS

pytestmark = pytest.mark.fuzz

RANGES = {  # (lo, hi, lo_open, hi_open) of each numeric hyper-parameter, as documented
    "lr": (0.0, None, False, False),
    "weight_decay": (0.0, None, False, False),
    "eps": (0.0, None, True, False),
    "alpha": (0.0, 1.0, False, False),
    "rho": (0.0, 1.0, False, False),
    "lr_decay": (0.0, None, False, False),
    "momentum_decay": (0.0, None, False, False),
    "initial_accumulator_value": (0.0, None, False, False),
    "b0": (0.0, None, True, False),
}
LAYOUT = ("strided", "negative_stride", "broadcast", "fortran", "misaligned", "read_only")


def _state_arrays(opt):
    return [(r.state, r.extra) for runs in opt._runs for r in runs]


@st.composite
def optimizer_cases(draw, info):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(info.dtypes))
    shapes = draw(st.lists(st.sampled_from([(0,), (1,), (7,), (3, 5), (513,)]), min_size=1, max_size=3))
    hp = dict(draw(st.sampled_from(info.valid)))
    accepted = inspect.signature(info.cls).parameters
    for name in [n for n in RANGES if n in accepted]:
        if draw(st.integers(0, 3)) == 0:
            lo, hi, lo_open, hi_open = RANGES[name]
            hp[name] = float(draw(extreme_reals(lo, hi, lo_open)))
    params = [(rng.standard_normal(s) + 0.01).astype(dtype) for s in shapes]
    grads = [[(rng.standard_normal(s) + 0.01).astype(dtype) for s in shapes] for _ in range(2)]
    what = draw(st.sampled_from(["none", "ctor_scalar", "ctor_param", "grad", "group_scalar", "grads_list"]))
    spoil = ("none",)
    if what in ("ctor_scalar", "group_scalar"):
        spoil = (what, draw(st.sampled_from(sorted(k for k in hp if k not in ("betas",)) or ["lr"])), draw(BAD_SCALARS))
    elif what in ("ctor_param", "grad"):
        spoil = (what, draw(st.integers(0, len(shapes) - 1)), draw(st.sampled_from(ARRAY_SPOILS)))
    elif what == "grads_list":
        spoil = (what, draw(st.sampled_from(["shorter", "longer", "none", "dict"])))
    return dtype, params, grads, hp, spoil


def _reference(info, params, grads, hp):
    p64 = [p.astype(np.float64) for p in params]
    g64 = [[g.astype(np.float64) for g in gs] for gs in grads]
    with np.errstate(all="ignore"):
        if info.name == "AdagradNorm":
            return R.adagrad_norm_run(p64, g64, **hp)[0]
        kw = {k: v for k, v in hp.items() if k != "decoupled_weight_decay" or info.name != "AdamW"}
        return R.run(info.name, p64, g64, kw)[0]


@pytest.mark.parametrize("info", OPTIMIZERS, ids=lambda i: i.name)
@given(data=st.data())
def test_optimizer(info, data):
    dtype, params, grads, hp, spoil = data.draw(optimizer_cases(info))
    note(f"hp={hp} spoil={spoil}")
    rng = np.random.default_rng(1)
    refusals = dtype_refusals(hp, dtype)
    names = tuple(refusals) + tuple(f"param_groups[0]['{k}']" for k in refusals)
    # -- the constructor --------------------------------------------------------------------
    ctor_ok = True
    if spoil[0] == "ctor_scalar":
        hp = dict(hp, **{spoil[1]: spoil[2]})
        names += (spoil[1], f"param_groups[0]['{spoil[1]}']")
        ctor_ok = False
    if spoil[0] == "ctor_param":
        i, s = spoil[1], spoil[2]
        orig = params[i]
        params[i] = spoiled(orig, s.kind, rng)
        names += ("params", "param_groups")
        # another float dtype, size or shape is a valid parameter (the steps are not taken then)
        ctor_ok = still_valid(orig, params[i]) or s.kind in (
            "nan",
            "inf",
            "extra_dim",
            "other_float",
            "size+1",
            "size-1",
        )
    built, opt = check_call(lambda: info.cls(params, **hp), names, state=[params], ok=ctor_ok or bool(refusals))
    if not built:
        return
    if spoil[0] == "ctor_param":
        return  # what it steps with is covered by the gradient spoils
    p0 = [p.copy() for p in params]
    opt.step(grads[0])
    if info.name == "RMSprop" and hp.get("centered") and hp.get("alpha", 0.99) < 0.5:
        return  # v - a^2 cancels (alpha -> 0: v = g^2, a = g): the step is ill-conditioned (test_fuzz_optim)
    ref1 = _reference(info, p0, grads[:1], hp)
    for i, (p, r) in enumerate(zip(params, ref1)):
        assert_close(p, r, dtype, f"params[{i}] after step 1", scale=max(np.max(np.abs(r), initial=0), 1.0))
    fmax = float(np.finfo(dtype).max)
    if any(np.any(np.abs(r) > fmax) for r in ref1):
        return  # step 1 left the dtype's range (inf where float64 holds 1e43): step 2 has no float64 twin
    # -- the second step, possibly spoiled ---------------------------------------------------
    g2 = list(grads[1])
    names2, ok = ("grads",), True
    skipped = None
    if spoil[0] == "grad":
        i, s = spoil[1], spoil[2]
        g2[i] = spoiled(grads[1][i], s.kind, rng)
        valid = still_valid(grads[1][i], g2[i]) or s.valid or s.kind in LAYOUT
        ok = valid
        if s.kind == "none":  # a None grad skips its param, like torch (test_optim_none_grads.py: the rest)
            ok, skipped = True, (i, params[i].copy())
    elif spoil[0] == "group_scalar":
        opt.param_groups[0][spoil[1]] = spoil[2]
        names2, ok = (f"param_groups[0]['{spoil[1]}']",), False
    elif spoil[0] == "grads_list":
        how = spoil[1]
        g2 = {"shorter": g2[:-1], "longer": g2 + [g2[0]], "none": None, "dict": {"a": g2[0]}}[how]
        ok = False
    done, _ = check_call(lambda: opt.step(g2), names2, state=[params, g2, _state_arrays(opt)], ok=ok)
    if not done:
        return
    if skipped is not None:
        assert np.array_equal(params[skipped[0]], skipped[1], equal_nan=True), "a param whose grad is None moved"
        return
    ref2 = _reference(info, p0, [grads[0], [np.asarray(g, dtype) for g in g2]], hp)
    for i, (p, r) in enumerate(zip(params, ref2)):
        # scaled by the largest magnitude on the way: step 2 may cancel most of a large step 1
        big = max(np.max(np.abs(r), initial=0), np.max(np.abs(ref1[i]), initial=0), 1.0)
        assert_close(p, r, dtype, f"params[{i}] after step 2", scale=big)


# ---- clipping -----------------------------------------------------------------------------

# gradients of any shape and values; None (a parameter without a gradient) is skipped, as in torch
CLIP_VALID = ("nan", "inf", "size+1", "size-1", "extra_dim", "none")
# a grad of another float dtype than the rest: valid alone (clipping takes float16 too, on float32
# copies: optkern.clip's _clip_half), refused beside others
CLIP_OWN_DTYPE = ("other_float", "float16")


def _live64(grads: list) -> tuple[list, list, type | None]:
    """The indices of the arrays in ``grads`` (not None), those arrays in float64, and their dtype."""
    index = [i for i, g in enumerate(grads) if g is not None]
    return index, [np.array(grads[i], np.float64) for i in index], (grads[index[0]].dtype.type if index else None)


@given(data=st.data())
def test_clip_grad_norm(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    shapes = data.draw(st.lists(st.sampled_from([(0,), (1,), (7,), (3, 5), (1023,)]), min_size=0, max_size=3))
    grads = [
        (rng.standard_normal(s) * data.draw(st.sampled_from([1e-3, 1.0, 1e3])) + 0.01).astype(dtype) for s in shapes
    ]
    kw = dict(
        max_norm=float(data.draw(extreme_reals(0.0, 1e30))),
        norm_type=data.draw(st.sampled_from([1.0, 2.0, 3.0, 1.5, float("inf"), "inf"])),
        error_if_nonfinite=data.draw(st.booleans()),
    )
    if data.draw(st.booleans()):
        kw["out"] = np.zeros(1, np.float64)
    what = data.draw(st.sampled_from(["none", "grad", "scalar", "out"]))
    names, ok = ("grads",), True
    if what == "grad" and grads:
        i = data.draw(st.integers(0, len(grads) - 1))
        s = data.draw(st.sampled_from(ARRAY_SPOILS))
        orig = grads[i]
        grads[i] = spoiled(orig, s.kind, rng)
        ok = still_valid(orig, grads[i]) or s.kind in CLIP_VALID or (s.kind in CLIP_OWN_DTYPE and len(grads) == 1)
        names = ("grads",)
    elif what == "scalar":
        key = data.draw(st.sampled_from(["max_norm", "norm_type", "error_if_nonfinite"]))
        kw[key] = data.draw(st.sampled_from([None, "2", -1.0, float("nan"), 0.5, [1.0]]))
        names, ok = (key,), key == "max_norm" and kw[key] == 0.5  # 0.5: a valid max_norm, not a valid p
    elif what == "out":
        kw["out"] = data.draw(st.sampled_from([np.zeros(2), np.zeros(1, np.float32), np.zeros((2,))[::2], 1.0, None]))
        names = ("out",)
        ok = kw["out"] is None or (
            isinstance(kw["out"], np.ndarray) and kw["out"].size == 1 and kw["out"].dtype == np.float64
        )
    note(f"{what} {kw}")
    index, g64, live_dtype = _live64(grads) if ok else ([], [], None)
    # the dtype the grads are scaled in: a one-array list of the other float dtype is valid (other_float)
    dtype = live_dtype or dtype
    done, total = check_call(lambda: optkern.clip_grad_norm_(grads, **kw), names, state=[grads, kw], ok=ok)
    if not done:
        return
    p = float("inf") if kw["norm_type"] == "inf" else kw["norm_type"]
    with np.errstate(all="ignore"):
        ref, n = R.clip_by_norm(g64, kw["max_norm"], p)
        if np.isnan(n):  # documented: a NaN norm scales every gradient by NaN (as in PyTorch)
            ref = [g * np.nan for g in g64]
    if kw["error_if_nonfinite"] and not np.isfinite(n):
        raise AssertionError("a non-finite total norm was accepted with error_if_nonfinite=True")
    # the norm is accumulated in float64 whatever the grads' dtype (documented): float64's tolerance
    assert_close(np.array([total]), np.array([n]), np.float64, "total norm")
    for i, g0, r in zip(index, g64, ref):
        assert_close(grads[i], r, dtype, f"grads[{i}]", scale=max(np.max(np.abs(g0), initial=0), 1e-300))


@given(data=st.data())
def test_clip_grad_value(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    shapes = data.draw(st.lists(st.sampled_from([(0,), (1,), (7,), (1023,)]), min_size=0, max_size=3))
    grads = [(rng.standard_normal(s) * 3).astype(dtype) for s in shapes]
    clip_value = float(data.draw(extreme_reals(0.0, 1e30)))
    names, ok = ("grads",), True
    if grads and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(grads) - 1))
        s = data.draw(st.sampled_from(ARRAY_SPOILS))
        orig = grads[i]
        grads[i] = spoiled(orig, s.kind, rng)
        ok = still_valid(orig, grads[i]) or s.kind in CLIP_VALID or (s.kind in CLIP_OWN_DTYPE and len(grads) == 1)
    elif data.draw(st.booleans()):
        clip_value = data.draw(BAD_SCALARS)
        names, ok = ("clip_value",), False
    index, g64, live_dtype = _live64(grads) if ok else ([], [], None)
    dtype = live_dtype or dtype  # (as in test_clip_grad_norm)
    done, _ = check_call(lambda: optkern.clip_grad_value_(grads, clip_value), names, state=[grads], ok=ok)
    if done:
        for i, r in zip(index, g64):
            assert_close(grads[i], np.clip(r, -clip_value, clip_value), dtype, f"grads[{i}]")
